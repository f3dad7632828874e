//! `gantry build`: build an image from a context and push it to every `--tag`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;

use super::image::RegistryOpts;
use super::{CliError, Exit};
use crate::build::{self, BuildError, BuildRequest, BuilderKind, BuildsetRegistry, Sibling};
use crate::client::{ClientOptions, Credentials, ImageRef};

/// Build an image from a Dockerfile and push it to every --tag; prints `REF@DIGEST` lines.
///
/// The docker builder drives a Docker engine (RUN works); the native builder needs no
/// daemon and makes reproducible layers for Dockerfiles without RUN. With a buildset
/// registry, FROM images are taken from it first (speculative images).
///
/// Example: gantry build . --tag 127.0.0.1:5000/app:change_12_latest --change 12
#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The build context directory.
    pub context: PathBuf,
    /// Where to push (host/repo:tag); repeatable.
    #[arg(long = "tag", short = 't', required = true, value_name = "REF")]
    pub tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Build this stage (default: the last).
    #[arg(long)]
    pub target: Option<String>,
    /// Build argument K=V (or K to take it from the environment); repeatable.
    #[arg(long = "build-arg", value_name = "K=V")]
    pub build_args: Vec<String>,
    /// Label K=V for the image; repeatable.
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// Target platform os/arch[/variant] (default: this machine's).
    #[arg(long)]
    pub platform: Option<String>,
    /// docker (a Docker engine), native (daemonless, no RUN) or auto (docker when an
    /// engine answers, else native).
    #[arg(long, default_value = "auto", value_parser = ["docker", "native", "auto"])]
    pub builder: String,
    /// Buildset registry (host:port) holding speculative images, tried first for FROM.
    #[arg(long, value_name = "HOST:PORT")]
    pub buildset_registry: Option<String>,
    /// CA certificate (PEM) of the buildset registry.
    #[arg(long, value_name = "FILE", requires = "buildset_registry")]
    pub buildset_ca: Option<PathBuf>,
    /// Credentials user:password for the buildset registry.
    #[arg(
        long,
        env = "GANTRY_BUILDSET_CREDS",
        hide_env_values = true,
        requires = "buildset_registry"
    )]
    pub buildset_creds: Option<String>,
    /// The change number: adds the label org.zuul-ci.change.
    #[arg(long)]
    pub change: Option<String>,
    /// The change URL: adds the label org.zuul-ci.change_url.
    #[arg(long)]
    pub change_url: Option<String>,
    /// Sibling project to copy into CONTEXT/.zuul-siblings for the build: NAME=DIR, or DIR
    /// (a relative DIR is also its name, as `cp --parents` keeps it); repeatable.
    #[arg(long = "siblings", value_name = "DIR", num_args = 1..)]
    pub siblings: Vec<String>,
    #[command(flatten)]
    pub reg: RegistryOpts,
}

fn usage(msg: impl Into<String>) -> CliError {
    CliError {
        status: Exit::Usage,
        error: anyhow::anyhow!(msg.into()),
    }
}

fn kv(what: &str, s: &str) -> Result<(String, String), CliError> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(usage(format!("{what} {s:?}: expected KEY=VALUE"))),
    }
}

impl BuildArgs {
    /// Arguments → a validated request (nothing runs yet).
    fn request(&self) -> Result<(Option<BuilderKind>, BuildRequest), CliError> {
        let kind = match self.builder.as_str() {
            "docker" => Some(BuilderKind::Docker),
            "native" => Some(BuilderKind::Native),
            _ => None,
        };
        if !self.context.is_dir() {
            return Err(usage(format!(
                "build context {}: no such directory",
                self.context.display()
            )));
        }
        let tags = self
            .tags
            .iter()
            .map(|t| ImageRef::parse(t).map_err(|e| usage(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let mut build_args = Vec::new();
        for a in &self.build_args {
            match a.split_once('=') {
                Some(_) => build_args.push(kv("--build-arg", a)?),
                // `--build-arg K` takes K from the environment, or is skipped when unset.
                None => {
                    if let Ok(v) = std::env::var(a) {
                        build_args.push((a.clone(), v));
                    }
                }
            }
        }
        let mut labels = BTreeMap::new();
        for l in &self.labels {
            let (k, v) = kv("--label", l)?;
            labels.insert(k, v);
        }
        let platform = self
            .platform
            .as_deref()
            .map(build::parse_platform)
            .transpose()
            .map_err(|e| usage(e.to_string()))?;
        let registry = self.options()?;
        let buildset = match &self.buildset_registry {
            Some(b) => {
                let host = b
                    .trim_start_matches("https://")
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_string();
                if host.is_empty() || host.contains('/') {
                    return Err(usage(format!(
                        "--buildset-registry {b:?}: expected HOST:PORT"
                    )));
                }
                let credentials = self
                    .buildset_creds
                    .as_deref()
                    .map(Credentials::parse)
                    .transpose()
                    .map_err(|e| usage(e.to_string()))?;
                let mut ca_certs = registry.ca_certs.clone();
                ca_certs.extend(self.buildset_ca.clone());
                Some(BuildsetRegistry {
                    host,
                    options: ClientOptions {
                        credentials,
                        ca_certs,
                        insecure: registry.insecure,
                        ..ClientOptions::default()
                    },
                })
            }
            None => None,
        };
        let siblings = self
            .siblings
            .iter()
            .map(|s| {
                let (name, dir) = match s.split_once('=') {
                    Some((n, d)) => (n.to_string(), PathBuf::from(d)),
                    None => {
                        let p = PathBuf::from(s);
                        let name = if p.is_absolute() {
                            p.file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default()
                        } else {
                            s.trim_end_matches('/').to_string()
                        };
                        (name, p)
                    }
                };
                Sibling { name, dir }
            })
            .collect();
        let source_date_epoch = build::source_date_epoch().map_err(|e| usage(e.to_string()))?;
        let req = BuildRequest {
            context: self.context.clone(),
            dockerfile: self.file.clone(),
            tags,
            target: self.target.clone(),
            build_args,
            labels,
            platform,
            buildset,
            siblings,
            registry,
            source_date_epoch,
            output: None,
            progress: crate::client::copy::Progress::Quiet,
        }
        .with_change(self.change.as_deref(), self.change_url.as_deref());
        Ok((kind, req))
    }

    fn options(&self) -> Result<ClientOptions, CliError> {
        let credentials = self
            .reg
            .creds
            .as_deref()
            .map(Credentials::parse)
            .transpose()
            .map_err(|e| usage(e.to_string()))?;
        Ok(ClientOptions {
            credentials,
            ca_certs: self.reg.ca_certs.clone(),
            insecure: self.reg.insecure,
            limits: self.reg.limits(),
            ..ClientOptions::default()
        })
    }
}

fn failed(e: BuildError) -> CliError {
    CliError {
        status: if e.is_usage() {
            Exit::Usage
        } else {
            Exit::Failure
        },
        error: e.into(),
    }
}

pub async fn run(a: BuildArgs, quiet: bool) -> Result<Exit, CliError> {
    let (kind, mut req) = a.request()?;
    // The build's own output (RUN steps) streams to stderr unless -q; data stays on stdout.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    req.output = Some(tx);
    req.progress = crate::client::copy::Progress::for_stderr(quiet);
    if let crate::client::copy::Progress::Bar(b) = &req.progress {
        b.set_message("pushing");
    }
    let printer = tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            if !quiet {
                eprintln!("{line}");
            }
        }
    });
    let result = build::build(kind, &req).await;
    drop(req);
    let _ = printer.await;
    let result = result.map_err(failed)?;
    if a.reg.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        for i in &result.images {
            println!("{}@{}", i.reference, i.digest);
        }
    }
    Ok(Exit::Success)
}
