//! `gantry registry serve|gc|htpasswd`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};

use super::{CliError, Exit, UsageExt};
use crate::registry::{self, Auth, Htpasswd, Registry, RegistryConfig, TokenAuthority};

#[derive(Subcommand, Debug)]
pub enum RegistryCommand {
    /// Serve the OCI distribution API (v1.1) from a data directory.
    ///
    /// Example: gantry registry serve --listen 127.0.0.1:0 --data-dir /var/lib/gantry \
    ///   --tls-self-signed /var/lib/gantry/tls --htpasswd /etc/gantry/htpasswd
    ///
    /// The first line on stdout is `listening on ADDR`.
    Serve(Box<ServeArgs>),
    /// Delete blobs, manifests and upload sessions no tag reaches.
    ///
    /// Example: gantry registry gc --data-dir /var/lib/gantry --dry-run
    Gc(GcArgs),
    /// Add or update a bcrypt entry in an htpasswd file.
    ///
    /// Example: gantry registry htpasswd zuul --file /etc/gantry/htpasswd
    /// (prints a generated password unless --password-stdin is given)
    Htpasswd(HtpasswdArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (`:5000` every interface, `localhost:5000`); port 0 picks a
    /// free port.
    #[arg(long, default_value = "127.0.0.1:5000", value_parser = super::listen::parse_listen)]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Require Basic credentials from this htpasswd file (bcrypt entries only).
    #[arg(long)]
    pub htpasswd: Option<PathBuf>,
    /// Use the Docker token flow: a Bearer challenge pointing at this server's /token.
    #[arg(long)]
    pub token_auth: bool,
    /// PEM (PKCS#8) P-256 key to sign tokens with; default: a key generated per start.
    #[arg(long, requires = "token_auth")]
    pub token_key: Option<PathBuf>,
    /// Token realm URL to advertise (default: <scheme>://<request host>/token).
    #[arg(long, requires = "token_auth")]
    pub token_realm: Option<String>,
    /// Service name in tokens and challenges.
    #[arg(long, default_value = "gantry")]
    pub service: String,
    /// Allow pulls without credentials.
    #[arg(long)]
    pub anonymous_read: bool,
    /// Send distribution notifications (manifest pushes with a tag) to this URL, from a
    /// persistent queue under the data dir, with retries; repeatable.
    ///
    /// Example: --notify 'http://127.0.0.1:8080/hooks/registry/app?token=s3cret'
    #[arg(long = "notify", value_name = "URL")]
    pub notify: Vec<String>,
    /// TLS certificate (PEM).
    #[arg(long, requires = "tls_key", conflicts_with = "tls_self_signed")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Generate a CA and a server certificate in DIR (clients trust DIR/ca.crt).
    #[arg(long, value_name = "DIR")]
    pub tls_self_signed: Option<PathBuf>,
    /// Require client certificates (mutual TLS) signed by a CA in this PEM file; with
    /// --tls-cert or --tls-self-signed.
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Extra subject alternative names for --tls-self-signed (the listen host, 127.0.0.1,
    /// ::1 and localhost are always included).
    #[arg(long = "tls-san", value_name = "NAME")]
    pub tls_sans: Vec<String>,
    /// Refuse every write.
    #[arg(long)]
    pub read_only: bool,
    /// Largest manifest accepted, in bytes.
    #[arg(long, default_value_t = registry::DEFAULT_MAX_MANIFEST)]
    pub max_manifest_size: usize,
    /// Collect garbage in-process this often (e.g. 1h); safe beside live pushes.
    #[arg(long, value_parser = parse_duration)]
    pub interval: Option<Duration>,
    /// Grace period of the in-process collections (see `gantry registry gc --grace`).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub grace: Duration,
    /// Upload sessions idle this long are removed at start and by in-process collections.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub upload_max_age: Duration,
}

#[derive(Args, Debug)]
pub struct GcArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Report what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep anything referenced within this long (pushes in progress: their manifest must
    /// arrive within it), e.g. 0, 30s, 10m, 1h. Safe beside a live registry.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub grace: Duration,
    /// Delete upload sessions older than this.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub upload_max_age: Duration,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Where a registry keeps its bytes: one of the two.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct StoreArgs {
    /// Storage location: a directory, file:///DIR, or s3://BUCKET[/PREFIX] (S3 settings
    /// from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL,
    /// AWS_ALLOW_HTTP). Replicas may share one bucket.
    #[arg(long, env = "GANTRY_REGISTRY_STORAGE", value_name = "URL")]
    pub storage: Option<String>,
    /// Where blobs, manifests and uploads live (shorthand for --storage DIR).
    #[arg(long, env = "GANTRY_REGISTRY_DATA")]
    pub data_dir: Option<PathBuf>,
}

impl StoreArgs {
    fn location(&self) -> Result<registry::storage::Location, CliError> {
        match (&self.storage, &self.data_dir) {
            (Some(url), _) => registry::storage::Location::parse(url)
                .map_err(|e| anyhow!("--storage: {e}"))
                .usage(),
            (None, Some(dir)) => Ok(registry::storage::Location::Dir(dir.clone())),
            (None, None) => Err(anyhow!("--storage URL or --data-dir DIR is required")).usage(),
        }
    }
}

#[derive(Args, Debug)]
pub struct HtpasswdArgs {
    /// User name.
    pub user: String,
    /// File to add the entry to (created if missing); without it the entry is printed.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Read the password from stdin instead of generating one.
    #[arg(long)]
    pub password_stdin: bool,
    /// bcrypt cost.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(4..=31))]
    pub cost: u32,
}

/// Parses `90`, `30s`, `10m`, `24h`, `7d` into a duration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('s') => (&s[..s.len() - 1], 1),
        Some('m') => (&s[..s.len() - 1], 60),
        Some('h') => (&s[..s.len() - 1], 3600),
        Some('d') => (&s[..s.len() - 1], 86400),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .map(|n| Duration::from_secs(n * mult))
        .map_err(|_| format!("invalid duration {s:?} (examples: 0, 30s, 10m, 24h, 7d)"))
}

pub async fn run(cmd: RegistryCommand) -> Result<Exit, CliError> {
    match cmd {
        RegistryCommand::Serve(args) => serve(*args).await,
        RegistryCommand::Gc(args) => gc(args).await,
        RegistryCommand::Htpasswd(args) => htpasswd(args),
    }
}

async fn serve(args: ServeArgs) -> Result<Exit, CliError> {
    let mut auth = Auth {
        anonymous_read: args.anonymous_read,
        realm: args.token_realm.clone(),
        ..Auth::default()
    };
    if let Some(path) = &args.htpasswd {
        auth.htpasswd = Some(Arc::new(Htpasswd::load(path).usage()?));
    }
    if args.token_auth {
        let t = match &args.token_key {
            Some(path) => TokenAuthority::from_file(&args.service, path).usage()?,
            None => TokenAuthority::generate(&args.service)?,
        };
        if auth.htpasswd.is_none() && !args.anonymous_read {
            return Err(anyhow!(
                "--token-auth needs --htpasswd (users) or --anonymous-read"
            ))
            .usage();
        }
        auth.tokens = Some(t);
    }
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("binding {}", args.listen))
        .usage()?;
    let addr = listener.local_addr()?;
    let tls = if let Some(dir) = &args.tls_self_signed {
        let mut hosts = vec![addr.ip().to_string()];
        hosts.extend(args.tls_sans.iter().cloned());
        let files = registry::tls::self_signed(dir, &hosts)?;
        eprintln!("TLS CA certificate: {}", files.ca_cert.display());
        let ca = args.tls_client_ca.as_deref();
        Some(registry::tls::server_config_with_client_ca(&files.cert, &files.key, ca).usage()?)
    } else if let (Some(c), Some(k)) = (&args.tls_cert, &args.tls_key) {
        let ca = args.tls_client_ca.as_deref();
        Some(registry::tls::server_config_with_client_ca(c, k, ca).usage()?)
    } else if args.tls_client_ca.is_some() {
        return Err(CliError {
            status: Exit::Usage,
            error: anyhow!(
                "--tls-client-ca needs TLS: add --tls-cert/--tls-key or --tls-self-signed"
            ),
        });
    } else {
        None
    };
    let location = args.store.location()?;
    if !args.notify.is_empty() && !matches!(location, registry::storage::Location::Dir(_)) {
        return Err(anyhow!(
            "--notify needs filesystem storage (its queue lives in the data directory)"
        ))
        .usage();
    }
    let mut config = RegistryConfig::at(location);
    config.auth = auth;
    config.read_only = args.read_only;
    config.tls = tls;
    config.max_manifest_size = args.max_manifest_size;
    config.notify = args.notify.clone();
    config.gc_interval = args.interval.filter(|d| !d.is_zero());
    config.gc = registry::gc::GcOptions {
        dry_run: false,
        grace: args.grace,
        upload_max_age: args.upload_max_age,
    };
    let registry = Registry::new(config).usage()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}")?;
        out.flush()?;
    }
    registry.serve(listener, shutdown_signal()).await?;
    Ok(Exit::Success)
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

async fn gc(args: GcArgs) -> Result<Exit, CliError> {
    let location = args.store.location()?;
    if let registry::storage::Location::Dir(dir) = &location
        && !dir.join("blobs").is_dir()
    {
        return Err(anyhow!(
            "{} is not a registry data directory (no blobs/)",
            dir.display()
        ))
        .usage();
    }
    let storage = registry::Storage::at(&location)?;
    let opts = registry::gc::GcOptions {
        dry_run: args.dry_run,
        grace: args.grace,
        upload_max_age: args.upload_max_age,
    };
    let report = registry::gc::collect(&storage, &opts)
        .await
        .map_err(|e| CliError {
            // Another gc holding the lock is an operation that could not run, not a bug.
            status: match e {
                registry::storage::StorageError::Busy(_) => super::Exit::Failure,
                _ => super::Exit::Internal,
            },
            error: e.into(),
        })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let verb = if args.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        for (repo, d) in &report.manifests_deleted {
            println!("{verb} manifest {repo}@{d}");
        }
        for d in &report.blobs_deleted {
            println!("{verb} blob {d}");
        }
        println!(
            "{verb} {} blobs ({} bytes), {} manifests, {} links, {} upload sessions, {} staging files; kept {} blobs",
            report.blobs_deleted.len(),
            report.bytes_freed,
            report.manifests_deleted.len(),
            report.links_removed,
            report.uploads_removed,
            report.tmp_removed,
            report.blobs_kept
        );
    }
    Ok(Exit::Success)
}

fn htpasswd(args: HtpasswdArgs) -> Result<Exit, CliError> {
    if args.user.is_empty() || args.user.contains(':') {
        return Err(anyhow!(
            "invalid user name {:?}: must be non-empty without ':'",
            args.user
        ))
        .usage();
    }
    let (password, generated) = if args.password_stdin {
        let mut s = String::new();
        std::io::stdin().read_line(&mut s)?;
        let p = s.trim_end_matches(['\r', '\n']).to_string();
        if p.is_empty() {
            return Err(anyhow!("empty password on stdin")).usage();
        }
        (p, false)
    } else {
        (registry::auth::htpasswd::random_password(20), true)
    };
    let line = registry::auth::htpasswd::entry(&args.user, &password, args.cost)?;
    match &args.file {
        None => println!("{line}"),
        Some(path) => {
            let existing = match std::fs::read_to_string(path) {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(anyhow!("reading {}: {e}", path.display())).usage(),
            };
            let prefix = format!("{}:", args.user);
            let mut lines: Vec<String> = existing
                .lines()
                .filter(|l| !l.starts_with(&prefix))
                .map(String::from)
                .collect();
            lines.push(line);
            let mut text = lines.join("\n");
            text.push('\n');
            std::fs::write(path, text)
                .with_context(|| format!("writing {}", path.display()))
                .usage()?;
            eprintln!("wrote entry for {} to {}", args.user, path.display());
        }
    }
    if generated {
        println!("{password}");
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86400)));
        assert!(parse_duration("1y").is_err());
    }
}
