//! `gantry secret …`: project keys, encryption in zuul-client's format, decryption.
use std::io::Read;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::config::ConfigArgs;
use super::{CliError, Exit, UsageExt};
use crate::job::{keys, secrets};

#[derive(Args, Debug, Clone)]
pub struct KeyArgs {
    /// Project the key belongs to (e.g. org/app).
    #[arg(long)]
    pub project: String,
    /// Directory of project keys (default: $GANTRY_KEY_DIR, else ~/.config/gantry/keys).
    #[arg(long, env = "GANTRY_KEY_DIR", value_name = "DIR")]
    pub key_dir: Option<PathBuf>,
}

impl KeyArgs {
    fn dir(&self) -> Result<PathBuf, CliError> {
        if let Some(d) = &self.key_dir {
            return Ok(d.clone());
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
        match base {
            Some(b) => Ok(b.join("gantry").join("keys")),
            None => Err(anyhow::anyhow!(
                "no --key-dir given and neither XDG_CONFIG_HOME nor HOME is set"
            ))
            .usage(),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum SecretCommand {
    /// Create a project's RSA-4096 key pair (private key mode 0600); prints the public key path.
    ///
    /// Example: gantry secret keygen --project org/app
    Keygen {
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Encrypt a value with a project's public key and print a `- secret:` stanza in
    /// zuul-client's format.
    ///
    /// Example: printf %s "$PASSWORD" | gantry secret encrypt --project org/app --name registry --field password
    Encrypt {
        #[command(flatten)]
        key: KeyArgs,
        /// Encrypt with this public key (PEM) instead of the project's key in --key-dir;
        /// a key fetched from Zuul's API works unchanged.
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
        /// Read the plaintext from this file (default: stdin), byte for byte.
        #[arg(long, value_name = "FILE")]
        infile: Option<PathBuf>,
        /// Secret name in the stanza.
        #[arg(long, default_value = "<name>")]
        name: String,
        /// Field name in the stanza's data.
        #[arg(long, default_value = "<fieldname>")]
        field: String,
    },
    /// Decrypt a secret of a configuration with the project's private key and print its
    /// data as JSON (for checking a stanza; gantry run decrypts on its own).
    ///
    /// Example: gantry secret decrypt --project org/app --name registry ~/src/app
    Decrypt {
        /// Directory of project keys (default: $GANTRY_KEY_DIR, else ~/.config/gantry/keys);
        /// the key used is the one of --project (default: the directory's name).
        #[arg(long, env = "GANTRY_KEY_DIR", value_name = "DIR")]
        key_dir: Option<PathBuf>,
        /// Secret stanza name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

pub fn run(cmd: SecretCommand) -> Result<Exit, CliError> {
    match cmd {
        SecretCommand::Keygen { key } => {
            let dir = key.dir()?;
            let (private, public) = keys::keygen(&dir, &key.project).usage()?;
            tracing::info!("wrote {}", private.display());
            println!("{}", public.display());
            Ok(Exit::Success)
        }
        SecretCommand::Encrypt {
            key,
            public_key,
            infile,
            name,
            field,
        } => {
            let public = match public_key {
                Some(path) => {
                    let pem = std::fs::read_to_string(&path)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
                        .usage()?;
                    secrets::PublicKey::from_pem(&pem)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
                        .usage()?
                }
                None => keys::load_public(&key.dir()?, &key.project).usage()?,
            };
            let plaintext = match infile {
                Some(path) => std::fs::read_to_string(&path)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
                    .usage()?,
                None => {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .map_err(|e| anyhow::anyhow!("reading stdin: {e}"))
                        .usage()?;
                    s
                }
            };
            let chunks = public.encrypt(&plaintext)?;
            print!("{}", secrets::secret_stanza(&name, &field, &chunks));
            Ok(Exit::Success)
        }
        SecretCommand::Decrypt {
            key_dir,
            name,
            config,
        } => {
            let cfg = config.load()?;
            let key = KeyArgs {
                project: cfg.project_name.clone(),
                key_dir,
            };
            let Some(secret) = cfg.secrets.get(&name) else {
                let hint =
                    crate::text::suggest::hint(&name, cfg.secrets.keys().map(String::as_str));
                return Err(anyhow::anyhow!("Secret {name} not found{hint}")).usage();
            };
            let private = if secret.data.is_encrypted() {
                Some(keys::load_private(&key.dir()?, &key.project).usage()?)
            } else {
                None
            };
            let data = secret.decrypt(private.as_ref()).usage()?;
            println!("{}", serde_json::to_string_pretty(&data)?);
            Ok(Exit::Success)
        }
    }
}
