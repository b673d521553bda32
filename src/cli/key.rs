//! `arca key gen --out FILE`

use std::path::PathBuf;

use arca_keys::SigningKey;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Write a new ed25519 private key to FILE (mode 0600) and its public key to FILE.pub; print the key id.
    Gen {
        /// Where to write the private key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the key id of a key file (private or .pub).
    Id {
        /// The key file (private, or FILE.pub).
        file: PathBuf,
    },
}

pub fn run(c: Command) -> anyhow::Result<i32> {
    match c {
        Command::Gen { out } => {
            let key = SigningKey::generate()?;
            key.write_files(&out)?;
            println!("{}", key.key_id());
        }
        Command::Id { file } => {
            let id = match SigningKey::read_file(&file) {
                Ok(k) => k.key_id(),
                Err(_) => arca_keys::PublicKey::read_file(&file)?.key_id(),
            };
            println!("{id}");
        }
    }
    Ok(0)
}
