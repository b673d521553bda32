//! Passphrases of encrypted key files (docs/key-management.md, "Key files"): from
//! `--passphrase-file FILE`, else from `ARCA_KEY_PASSPHRASE`, else asked on the terminal without
//! echo. Commands whose standard input is not a terminal never prompt: they take the file or the
//! variable, or refuse in one line that names them.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use arca_keys::{KeyFile, SigningKey, Zeroizing};

/// The environment variable that holds the passphrase of encrypted key files.
pub const ENV: &str = "ARCA_KEY_PASSPHRASE";

/// The `--passphrase-file` flag of every command that reads or writes a private key.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct PassphraseArgs {
    /// Read the passphrase of encrypted key files from FILE's first line (default:
    /// ARCA_KEY_PASSPHRASE, else asked on the terminal).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

impl PassphraseArgs {
    /// Reads a private key file: an unencrypted one as it is, an encrypted one with its
    /// passphrase. A wrong passphrase is an error naming the file.
    pub fn read_key(&self, path: &Path) -> anyhow::Result<SigningKey> {
        match KeyFile::read(path)? {
            KeyFile::Plain(key) => Ok(key),
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
                Ok(enc.decrypt(pass.as_bytes())?)
            }
        }
    }

    /// Reads every key file in `paths` (see [`PassphraseArgs::read_key`]), all before any is
    /// used, so that one that cannot be read stops the command before anything is signed.
    pub fn read_keys(&self, paths: &[PathBuf]) -> anyhow::Result<Vec<SigningKey>> {
        paths.iter().map(|p| self.read_key(p)).collect()
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
}

/// Asks on the controlling terminal with echo off; restores the terminal whatever happens.
fn ask(prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .context("opening the terminal (/dev/tty) to ask for the passphrase")?;
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
    read.context("reading the passphrase")?;
    restored.context("restoring the terminal's settings")?;
    let len = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(len);
    Ok(line)
}
