//! `arca key gen --out FILE`, `arca key encrypt FILE`, `arca key id FILE`

use std::path::PathBuf;

use arca_keys::{KeyFile, SigningKey};

use super::passphrase::PassphraseArgs;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Write a new ed25519 private key to FILE (mode 0600), encrypted with a passphrase unless
    /// --unencrypted, and its public key to FILE.pub; print the key id.
    Gen {
        /// Where to write the private key.
        #[arg(long)]
        out: PathBuf,
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
    /// Print the key id of a key file (private or .pub).
    Id {
        /// The key file (private, or FILE.pub).
        file: PathBuf,
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
}

pub fn run(c: Command) -> anyhow::Result<i32> {
    match c {
        Command::Gen {
            out,
            unencrypted,
            passphrase,
        } => {
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
            let id = match KeyFile::read(&file) {
                Ok(_) => passphrase.read_key(&file)?.key_id(),
                Err(_) => arca_keys::PublicKey::read_file(&file)?.key_id(),
            };
            println!("{id}");
        }
    }
    Ok(0)
}
