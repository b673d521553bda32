//! Passphrases of encrypted key files (docs/key-management.md, "Key files"): from
//! `--passphrase-file FILE`, else from `ARCA_KEY_PASSPHRASE`, else asked on the terminal without
//! echo. Commands whose standard input is not a terminal never prompt: they take the file or the
//! variable, or refuse in one line that names them.
//!
//! Every key argument may also be a `pkcs11:` URI (docs/key-management.md, "Keys in hardware"):
//! the key is opened on its token, with the module from the URI's `module-path` or
//! `ARCA_PKCS11_MODULE`, and the PIN from the URI (`pin-value`, `pin-source`), else
//! `ARCA_PKCS11_PIN`, else `--passphrase-file`, else asked on the terminal.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use arca_keys::pkcs11::{Pkcs11Key, Pkcs11Uri};
use arca_keys::{KeyFile, PublicKey, Signer, Zeroizing};

/// The environment variable that holds the passphrase of encrypted key files.
pub const ENV: &str = "ARCA_KEY_PASSPHRASE";
/// The environment variable naming the PKCS#11 module when a URI has no `module-path`.
pub const MODULE_ENV: &str = "ARCA_PKCS11_MODULE";
/// The environment variable that holds the token's user PIN when a URI carries none.
pub const PIN_ENV: &str = "ARCA_PKCS11_PIN";

/// The `pkcs11:` URI `path` is, if it is one (a key file whose name starts with `pkcs11:` is
/// still reachable as `./pkcs11:...`).
pub fn pkcs11_uri(path: &Path) -> anyhow::Result<Option<Pkcs11Uri>> {
    match path.to_str() {
        Some(s) if arca_keys::pkcs11::is_uri(s) => Ok(Some(Pkcs11Uri::parse(s)?)),
        _ => Ok(None),
    }
}

/// The PKCS#11 module for `uri`: its `module-path`, else `ARCA_PKCS11_MODULE`.
pub fn pkcs11_module(uri: &Pkcs11Uri) -> anyhow::Result<PathBuf> {
    if let Some(p) = &uri.module_path {
        return Ok(p.clone());
    }
    match std::env::var_os(MODULE_ENV) {
        Some(v) if !v.is_empty() => Ok(PathBuf::from(v)),
        _ => bail!(
            "{uri}: no PKCS#11 module: add ?module-path=/path/to/module.so to the URI or set \
             {MODULE_ENV}"
        ),
    }
}

/// The public key of a key file (private, read with its passphrase, or `.pub`) or of a token's
/// key pair (read without logging in).
pub fn read_public(path: &Path, passphrase: &PassphraseArgs) -> anyhow::Result<PublicKey> {
    if let Some(uri) = pkcs11_uri(path)? {
        return Ok(Pkcs11Key::read_public(&uri, &pkcs11_module(&uri)?)?);
    }
    match KeyFile::read(path) {
        Ok(_) => Ok(passphrase.read_key(path)?.public()),
        Err(_) => Ok(PublicKey::read_file(path)?),
    }
}

/// The `--passphrase-file` flag of every command that reads or writes a private key.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct PassphraseArgs {
    /// Read the passphrase of encrypted key files (and a PKCS#11 token's PIN) from FILE's
    /// first line (default: ARCA_KEY_PASSPHRASE, ARCA_PKCS11_PIN, else asked on the terminal).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

impl PassphraseArgs {
    /// Reads a private key file: an unencrypted one as it is, an encrypted one with its
    /// passphrase. A wrong passphrase is an error naming the file. A `pkcs11:` URI opens the
    /// key on its token and logs in (a refused PIN is an error naming the token).
    pub fn read_key(&self, path: &Path) -> anyhow::Result<Box<dyn Signer>> {
        if let Some(uri) = pkcs11_uri(path)? {
            let module = pkcs11_module(&uri)?;
            let pin = self.pin(&uri)?;
            return Ok(Box::new(Pkcs11Key::open(&uri, &module, &pin)?));
        }
        match KeyFile::read(path)? {
            KeyFile::Plain(key) => Ok(Box::new(key)),
            KeyFile::Encrypted(enc) => {
                let pass = match self.given()? {
                    Some(p) => p,
                    None if std::io::stdin().is_terminal() => {
                        ask(&format!("passphrase for {}: ", path.display()))?
                    }
                    None => bail!(
                        "{} is encrypted and no passphrase was given: set {ENV}, give \
                         --passphrase-file FILE, or run on a terminal to be asked",
                        path.display()
                    ),
                };
                Ok(Box::new(enc.decrypt(pass.as_bytes())?))
            }
        }
    }

    /// Reads every key file in `paths` (see [`PassphraseArgs::read_key`]), all before any is
    /// used, so that one that cannot be read (or a token that refuses its PIN) stops the
    /// command before anything is signed.
    pub fn read_keys(&self, paths: &[PathBuf]) -> anyhow::Result<Vec<Box<dyn Signer>>> {
        paths.iter().map(|p| self.read_key(p)).collect()
    }

    /// The user PIN of `uri`'s token: the URI's `pin-value` or `pin-source` file, else
    /// `ARCA_PKCS11_PIN`, else `--passphrase-file`, else asked on the terminal. Without a
    /// terminal it refuses, naming the ways.
    pub fn pin(&self, uri: &Pkcs11Uri) -> anyhow::Result<Zeroizing<String>> {
        if let Some(v) = &uri.pin_value {
            return Ok(v.clone());
        }
        if let Some(file) = &uri.pin_source {
            let text = Zeroizing::new(
                std::fs::read_to_string(file)
                    .with_context(|| format!("{uri}: reading pin-source {}", file.display()))?,
            );
            let line = text.lines().next().unwrap_or("");
            if line.is_empty() {
                bail!(
                    "{uri}: pin-source {}: the first line is empty",
                    file.display()
                );
            }
            return Ok(Zeroizing::new(line.to_owned()));
        }
        if let Some(v) = std::env::var_os(PIN_ENV) {
            let v = Zeroizing::new(
                v.into_string()
                    .map_err(|_| anyhow::anyhow!("{PIN_ENV} is not UTF-8"))?,
            );
            if v.is_empty() {
                bail!("{PIN_ENV} is set but empty");
            }
            return Ok(v);
        }
        if let Some(p) = self.passphrase_file_line()? {
            return Ok(p);
        }
        if !std::io::stdin().is_terminal() {
            bail!(
                "{uri}: no PIN for token {:?} and no terminal to ask on: add ?pin-source=FILE \
                 to the URI, set {PIN_ENV}, or give --passphrase-file FILE",
                uri.token_name()
            );
        }
        ask(&format!("PIN for token {:?}: ", uri.token_name()))
    }

    /// The passphrase to encrypt the new key file `path` with: the file's, the variable's, or
    /// asked twice on the terminal. Without any of them it refuses, naming the ways (and
    /// `--unencrypted`).
    pub fn new_passphrase(&self, path: &Path) -> anyhow::Result<Zeroizing<String>> {
        if let Some(p) = self.given()? {
            return Ok(p);
        }
        if !std::io::stdin().is_terminal() {
            bail!(
                "no passphrase to encrypt {} with and no terminal to ask on: give \
                 --passphrase-file FILE, set {ENV}, or add --unencrypted to write it unencrypted",
                path.display()
            );
        }
        let first = ask(&format!("passphrase for {}: ", path.display()))?;
        if first.is_empty() {
            bail!("empty passphrase (add --unencrypted for an unencrypted key)");
        }
        let again = ask("the same passphrase again: ")?;
        if *first != *again {
            bail!("the passphrases differ");
        }
        Ok(first)
    }

    /// The passphrase from `--passphrase-file` or the environment, if either is given.
    fn given(&self) -> anyhow::Result<Option<Zeroizing<String>>> {
        if let Some(p) = self.passphrase_file_line()? {
            return Ok(Some(p));
        }
        match std::env::var_os(ENV) {
            None => Ok(None),
            Some(v) => {
                let v = Zeroizing::new(
                    v.into_string()
                        .map_err(|_| anyhow::anyhow!("{ENV} is not UTF-8"))?,
                );
                if v.is_empty() {
                    bail!("{ENV} is set but empty");
                }
                Ok(Some(v))
            }
        }
    }

    /// The first line of `--passphrase-file`, if it is given.
    fn passphrase_file_line(&self) -> anyhow::Result<Option<Zeroizing<String>>> {
        if let Some(file) = &self.passphrase_file {
            let text = Zeroizing::new(
                std::fs::read_to_string(file)
                    .with_context(|| format!("reading --passphrase-file {}", file.display()))?,
            );
            let line = text.lines().next().unwrap_or("");
            if line.is_empty() {
                bail!(
                    "--passphrase-file {}: the first line is empty",
                    file.display()
                );
            }
            return Ok(Some(Zeroizing::new(line.to_owned())));
        }
        Ok(None)
    }
}

/// Asks on the controlling terminal with echo off; restores the terminal whatever happens.
fn ask(prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .context("opening the terminal (/dev/tty) to ask for the passphrase or PIN")?;
    let saved = tcgetattr(&tty).context("reading the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    (&tty).write_all(prompt.as_bytes())?;
    (&tty).flush()?;
    tcsetattr(&tty, SetArg::TCSAFLUSH, &quiet).context("turning the terminal's echo off")?;
    let mut line = Zeroizing::new(String::new());
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    let restored = tcsetattr(&tty, SetArg::TCSAFLUSH, &saved);
    read.context("reading from the terminal")?;
    restored.context("restoring the terminal's settings")?;
    let len = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(len);
    Ok(line)
}
