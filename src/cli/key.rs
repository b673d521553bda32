//! `arca key gen --out FILE`, `arca key encrypt FILE`, `arca key id FILE`, `arca key pub KEY`;
//! `--out pkcs11:...` generates the key on a token instead (docs/key-management.md, "Keys in
//! hardware").

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use arca_keys::pkcs11::Pkcs11Key;
use arca_keys::{KeyFile, PublicKey, SigningKey};

use super::passphrase::{PassphraseArgs, pkcs11_module, pkcs11_uri, read_public};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Write a new ed25519 private key to FILE (mode 0600), encrypted with a passphrase unless
    /// --unencrypted, and its public key to FILE.pub; print the key id. With --out pkcs11:URI,
    /// generate it on the token (never extractable) and write the public key to --pub FILE.
    Gen {
        /// Where to write the private key: a file, or a pkcs11: URI naming the token and the
        /// new key's object label.
        #[arg(long)]
        out: PathBuf,
        /// For a key on a token: where to write its public key (TUF key JSON, as FILE.pub is
        /// for files; default: print it after the key id).
        #[arg(long = "pub", value_name = "FILE")]
        pub_file: Option<PathBuf>,
        /// Write the private key unencrypted (for keys that must sign unattended, and tests).
        #[arg(long, conflicts_with = "passphrase_file")]
        unencrypted: bool,
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
    /// Encrypt an unencrypted private key file in place (atomically, mode 0600); print the key id.
    Encrypt {
        /// The unencrypted private key file.
        file: PathBuf,
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
    /// Print the key id of a key file (private or .pub) or of a key on a token (pkcs11: URI).
    Id {
        /// The key file (private, or FILE.pub), or a pkcs11: URI.
        file: PathBuf,
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
    /// Print (or write to --out FILE) the public key, as TUF key JSON for `arca trust add-key`,
    /// of a key on a token (e.g. one made with softhsm2-util, pkcs11-tool or on a YubiKey) or of
    /// a private key file.
    Pub {
        /// The key: a pkcs11: URI, or a private key file.
        key: PathBuf,
        /// Write it to FILE (never overwriting) instead of printing it.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
}

/// The TUF key JSON of `key`, as FILE.pub holds it.
fn pub_json(key: &PublicKey) -> String {
    let mut s = serde_json::to_string_pretty(&key.to_tuf()).expect("a key encodes");
    s.push('\n');
    s
}

/// Writes `key`'s TUF key JSON to a new file (never overwriting, as key files are not).
fn write_pub(path: &Path, key: &PublicKey) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| {
            format!(
                "creating {} (a key file is never overwritten)",
                path.display()
            )
        })?;
    f.write_all(pub_json(key).as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

pub fn run(c: Command) -> anyhow::Result<i32> {
    match c {
        Command::Gen {
            out,
            pub_file,
            unencrypted,
            passphrase,
        } => {
            if let Some(uri) = pkcs11_uri(&out)? {
                if unencrypted {
                    bail!("--unencrypted is for key files: a key on a token never leaves it");
                }
                if let Some(p) = &pub_file
                    && p.exists()
                {
                    bail!("{} exists: a key file is never overwritten", p.display());
                }
                let module = pkcs11_module(&uri)?;
                let pin = passphrase.pin(&uri)?;
                let key = Pkcs11Key::generate(&uri, &module, &pin)?;
                println!("{}", key.key_id());
                match &pub_file {
                    Some(p) => write_pub(p, &key).with_context(|| {
                        format!("the key is on the token: `arca key pub '{uri}' --out FILE` writes its public key")
                    })?,
                    None => print!("{}", pub_json(&key)),
                }
                return Ok(0);
            }
            if pub_file.is_some() {
                bail!("--pub is for keys on a token: a key file's public key goes to FILE.pub");
            }
            if out.exists() {
                anyhow::bail!("{} exists: a key file is never overwritten", out.display());
            }
            let pass = if unencrypted {
                None
            } else {
                Some(passphrase.new_passphrase(&out)?)
            };
            let key = SigningKey::generate()?;
            match pass {
                Some(p) => key.write_encrypted_files(&out, p.as_bytes())?,
                None => key.write_files(&out)?,
            }
            println!("{}", key.key_id());
        }
        Command::Encrypt { file, passphrase } => {
            if let KeyFile::Encrypted(_) = KeyFile::read(&file)? {
                anyhow::bail!("{} is already encrypted", file.display());
            }
            let pass = passphrase.new_passphrase(&file)?;
            let key = SigningKey::encrypt_file(&file, pass.as_bytes())?;
            println!("{}", key.key_id());
        }
        Command::Id { file, passphrase } => {
            println!("{}", read_public(&file, &passphrase)?.key_id());
        }
        Command::Pub {
            key,
            out,
            passphrase,
        } => {
            let public = read_public(&key, &passphrase)?;
            match &out {
                Some(p) => {
                    write_pub(p, &public)?;
                    println!("{}", public.key_id());
                }
                None => print!("{}", pub_json(&public)),
            }
        }
    }
    Ok(0)
}
