//! `gantry login HOST` and `gantry logout HOST`: credentials in docker's `config.json`
//! (or its credential helper), shared with docker, podman and skopeo. The credentials are
//! checked against the registry before anything is written.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::anyhow;
use clap::Args;

use super::{CliError, Exit, UsageExt};
use crate::client::docker_config;
use crate::client::{ClientOptions, Credentials, StoreFactory};

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Registry host[:port] (docker.io for Docker Hub).
    pub host: String,
    /// User name (asked on a terminal when not given).
    #[arg(short, long)]
    pub username: Option<String>,
    /// Read the password from stdin (one line), keeping it out of `ps` and shell history.
    #[arg(long)]
    pub password_stdin: bool,
    /// Trust this CA certificate (PEM) for the check; repeatable.
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_certs: Vec<std::path::PathBuf>,
    /// Allow plain HTTP and unverified TLS for the check.
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// Registry host[:port].
    pub host: String,
}

/// `https://host:port/` → `host:port`, validated like a reference's registry part.
fn host(s: &str) -> Result<String, CliError> {
    let h = s
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_start_matches("docker://")
        .trim_end_matches('/');
    crate::oci::Reference::parse(&format!("{h}/x"))
        .map_err(|e| anyhow!("registry {s:?}: {e}"))
        .usage()?;
    if h.contains('/') || h.is_empty() {
        return Err(anyhow!("registry {s:?}: give host[:port] only")).usage();
    }
    Ok(h.to_string())
}

fn prompt(what: &str, echo: bool) -> Result<String, CliError> {
    eprint!("{what}: ");
    let _ = std::io::stderr().flush();
    let stdin = std::io::stdin();
    let restore = if echo {
        None
    } else {
        let fd = stdin.lock();
        match rustix::termios::tcgetattr(&fd) {
            Ok(old) => {
                let mut t = old.clone();
                t.local_modes -= rustix::termios::LocalModes::ECHO;
                let _ = rustix::termios::tcsetattr(&fd, rustix::termios::OptionalActions::Now, &t);
                Some(old)
            }
            Err(_) => None,
        }
    };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(old) = restore {
        let _ =
            rustix::termios::tcsetattr(stdin.lock(), rustix::termios::OptionalActions::Now, &old);
        eprintln!();
    }
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub async fn login(a: LoginArgs) -> Result<Exit, CliError> {
    let host = host(&a.host)?;
    let terminal = std::io::stdin().is_terminal();
    let username = match a.username {
        Some(u) => u,
        None if terminal && !a.password_stdin => prompt("Username", true)?,
        None => return Err(anyhow!("give --username when stdin is not a terminal")).usage(),
    };
    if username.is_empty() || username.contains(':') {
        return Err(anyhow!(
            "user name {username:?}: must be non-empty and without ':'"
        ))
        .usage();
    }
    let password = if a.password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else if terminal {
        prompt("Password", false)?
    } else {
        return Err(anyhow!(
            "no terminal to ask for the password: use --password-stdin"
        ))
        .usage();
    };
    if password.is_empty() {
        return Err(anyhow!("empty password")).usage();
    }
    let opts = ClientOptions {
        credentials: Some(Credentials::Basic {
            username: username.clone(),
            password: password.clone(),
        }),
        ca_certs: a.ca_certs,
        insecure: a.insecure,
        ..ClientOptions::default()
    };
    let client = StoreFactory::new(opts)
        .client(&host)
        .map_err(super::image::failed)?;
    client.ping().await.map_err(super::image::failed)?;
    let (h, u) = (host.clone(), username.clone());
    let stored = tokio::task::spawn_blocking(move || docker_config::store(&h, &u, &password))
        .await?
        .map_err(|e| CliError {
            status: Exit::Failure,
            error: e.into(),
        })?;
    eprintln!("logged in to {host} as {username}; credentials in {stored}");
    Ok(Exit::Success)
}

pub async fn logout(a: LogoutArgs) -> Result<Exit, CliError> {
    let host = host(&a.host)?;
    let h = host.clone();
    let erased = tokio::task::spawn_blocking(move || docker_config::erase(&h))
        .await?
        .map_err(|e| CliError {
            status: Exit::Failure,
            error: e.into(),
        })?;
    match erased {
        Some(from) => eprintln!("logged out of {host}; removed from {from}"),
        None => eprintln!("not logged in to {host}"),
    }
    Ok(Exit::Success)
}
