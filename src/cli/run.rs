//! `gantry run` (main job) and `gantry builds ls`.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;
use serde_json::{Map, Value};

use super::{CliError, Exit, UsageExt};
use crate::client::{ClientOptions, Credentials};
use crate::registry::{Registry, RegistryConfig};
use crate::report::console::{self, ConsoleOptions};
use crate::roles::Endpoint;
use crate::runner::pipeline::{self, PipelineRequest};
use crate::runner::records;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The project directory (zuul.yaml, zuul.d/, .zuul.yaml, .zuul.d/).
    #[arg(default_value = ".")]
    pub project_dir: PathBuf,
    /// Pipeline to run: check, gate, promote (or any the project lists).
    #[arg(long, short)]
    pub pipeline: String,
    /// The change under test (its images get temporary tags change_<N>_<tag>).
    #[arg(long)]
    pub change: Option<String>,
    #[arg(long, default_value = "1")]
    pub patchset: String,
    /// Project name (default: the directory's name).
    #[arg(long)]
    pub project: Option<String>,
    /// The hostname of the project's canonical name in `zuul.projects` and
    /// `zuul.project.canonical_name` (Zuul's connection `canonical_hostname`), for playbooks
    /// that read `zuul.projects['opendev.org/openstack/kolla']` (default: localhost).
    #[arg(long, value_name = "HOST")]
    pub canonical_hostname: Option<String>,
    /// A change ahead of this one: CHANGE (same project) or PROJECT:CHANGE (PROJECT may be
    /// a project directory). Repeat in queue order, furthest first.
    #[arg(long = "ahead", value_name = "[PROJECT:]CHANGE")]
    pub ahead: Vec<String>,
    /// Builds running at once.
    #[arg(long = "jobs", short = 'j', default_value_t = 4)]
    pub concurrency: usize,
    /// Extra variable for every playbook (highest precedence), k=v (v parsed as YAML).
    #[arg(long = "var", value_name = "K=V")]
    pub vars: Vec<String>,
    /// Use this intermediate registry (host:port) instead of gantry's local one.
    #[arg(long)]
    pub intermediate_registry: Option<String>,
    /// Credentials for --intermediate-registry.
    #[arg(long, env = "GANTRY_INTERMEDIATE_CREDS", hide_env_values = true)]
    pub intermediate_creds: Option<String>,
    /// CA certificate for --intermediate-registry.
    #[arg(long)]
    pub intermediate_ca: Option<PathBuf>,
    /// Publish to a stand-in registry: REGISTRY=HOST:PORT (e.g. docker.io=127.0.0.1:5000).
    #[arg(long = "publish-to", value_name = "REG=HOST:PORT")]
    pub publish_to: Vec<String>,
    /// State directory: the local intermediate registry and build logs (default:
    /// $XDG_STATE_HOME/gantry or ~/.local/state/gantry).
    #[arg(long, env = "GANTRY_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Root for host configuration written by use-buildset-registry (default: <state>/host).
    #[arg(long)]
    pub host_root: Option<PathBuf>,
    /// Directory of project secret keys (default: $GANTRY_KEY_DIR, else ~/.config/gantry/keys).
    #[arg(long, env = "GANTRY_KEY_DIR")]
    pub key_dir: Option<PathBuf>,
    /// The shipped job library (default: the one installed with gantry).
    #[arg(long)]
    pub jobs_dir: Option<PathBuf>,
    /// A repository of the Zuul tenant, [NAME=]DIR; repeatable, read in order after the
    /// library and before the project.
    #[arg(long = "config-repo", value_name = "[NAME=]DIR")]
    pub config_repos: Vec<String>,
    /// Trust this CA for publication registries; repeatable.
    #[arg(long = "ca-cert")]
    pub ca_certs: Vec<PathBuf>,
    /// Keep gantry's local intermediate registry serving after the run (until Ctrl-C).
    #[arg(long)]
    pub keep_registry: bool,
    /// Print the buildset report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Who runs the playbooks: `builtin` (gantry's interpreter), `ansible` (real
    /// ansible-playbook, ansible-core >= 2.16), or `auto`: builtin when every playbook is
    /// supported, else ansible when installed.
    #[arg(long, default_value = "auto", value_name = "auto|builtin|ansible")]
    pub executor: crate::runner::ExecutorKind,
    /// The ansible-playbook to use (default: the venv of `gantry setup ansible`, else PATH).
    #[arg(long, env = "GANTRY_ANSIBLE")]
    pub ansible: Option<PathBuf>,
    /// Image builder of the build roles: native (daemonless), docker, or auto (docker when
    /// an engine answers). A job's `gantry_builder` variable overrides it.
    #[arg(
        long,
        env = "GANTRY_BUILDER",
        default_value = "auto",
        value_name = "auto|native|docker"
    )]
    pub builder: String,
    #[command(flatten)]
    pub change_info: super::config::MatchArgs,
}

pub(crate) fn state_dir(arg: &Option<PathBuf>) -> Result<PathBuf, CliError> {
    if let Some(d) = arg {
        return Ok(d.clone());
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")));
    base.map(|b| b.join("gantry"))
        .ok_or_else(|| anyhow!("no --state-dir given and neither XDG_STATE_HOME nor HOME is set"))
        .usage()
}

pub(crate) fn key_dir(arg: &Option<PathBuf>) -> Option<PathBuf> {
    arg.clone().or_else(|| {
        std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .map(|b| b.join("gantry/keys"))
    })
}

pub(crate) fn parse_vars(vars: &[String]) -> Result<Map<String, Value>, CliError> {
    let mut out = Map::new();
    for v in vars {
        let (k, val) = v
            .split_once('=')
            .ok_or_else(|| anyhow!("--var {v:?}: expected K=V"))
            .usage()?;
        let parsed: Value =
            serde_saphyr::from_str(val).unwrap_or_else(|_| Value::String(val.to_string()));
        out.insert(k.to_string(), parsed);
    }
    Ok(out)
}

pub async fn run(args: RunArgs, quiet: bool, verbose: bool) -> Result<Exit, CliError> {
    let state = state_dir(&args.state_dir)?;
    let extra_vars = parse_vars(&args.vars)?;
    let intermediate = match &args.intermediate_registry {
        Some(host) => {
            let mut o = ClientOptions::default();
            if let Some(c) = &args.intermediate_creds {
                o.credentials = Some(Credentials::parse(c).usage()?);
            }
            o.ca_certs.extend(args.intermediate_ca.clone());
            Some(Endpoint {
                host: host.clone(),
                options: o,
            })
        }
        None => None,
    };
    let mut publish_to = HashMap::new();
    for p in &args.publish_to {
        let (reg, host) = p
            .split_once('=')
            .ok_or_else(|| anyhow!("--publish-to {p:?}: expected REGISTRY=HOST:PORT"))
            .usage()?;
        publish_to.insert(reg.to_string(), host.to_string());
    }
    let req = PipelineRequest {
        project_dir: args.project_dir.clone(),
        project: args.project.clone(),
        canonical_hostname: args.canonical_hostname.clone(),
        pipeline: args.pipeline.clone(),
        change: args.change.clone(),
        patchset: args.patchset.clone(),
        ahead: args.ahead.clone(),
        concurrency: args.concurrency,
        extra_vars,
        data_vars: Default::default(),
        intermediate,
        publish_to,
        state_dir: state,
        host_root: args.host_root.clone(),
        key_dir: key_dir(&args.key_dir),
        library_dir: args
            .jobs_dir
            .clone()
            .or_else(super::config::default_library_dir),
        change_info: args.change_info.change(&args.project_dir)?,
        config_repos: args
            .config_repos
            .iter()
            .map(|s| crate::job::ConfigRepo::parse(s))
            .collect(),
        ca_certs: args.ca_certs.clone(),
        executor: args.executor,
        ansible: args.ansible.clone(),
        builder: match args.builder.as_str() {
            "auto" | "" => None,
            "native" => Some(crate::build::BuilderKind::Native),
            "docker" => Some(crate::build::BuilderKind::Docker),
            other => {
                return Err(anyhow!(
                    "--builder {other:?}: expected auto, native or docker"
                ))
                .usage();
            }
        },
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    {
        let c = cancel.clone();
        tokio::spawn(async move {
            super::registry::shutdown_signal().await;
            eprintln!("interrupted: stopping builds, running cleanup playbooks");
            c.cancel();
        });
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let reporter = tokio::spawn(console::follow(
        rx,
        ConsoleOptions {
            quiet: quiet || args.json,
            verbose,
        },
    ));
    let note = move |line: String| {
        if !quiet {
            eprintln!("{line}");
        }
    };
    let outcome = pipeline::run_pipeline(req, tx, cancel.clone(), &note).await;
    let _ = reporter.await;
    let outcome = match outcome {
        Ok(o) => o,
        Err(e @ pipeline::PipelineError::NoJobSelected { .. }) => {
            // Not a failure (Zuul enqueues nothing), but never a silent "SUCCESS".
            println!("{e}");
            return Ok(Exit::Success);
        }
        Err(e) if e.is_usage() => return Err(anyhow!("{e}")).usage(),
        Err(e) => return Err(anyhow!("{e}").into()),
    };
    if let Some(w) = &outcome.record_warning {
        eprintln!(
            "warning: writing build records to {}: {w}",
            outcome.intermediate
        );
    }
    let report = outcome.report;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", console::table(&report));
    }
    if let Some((addr, task)) = outcome.local_registry {
        if args.keep_registry && !cancel.is_cancelled() {
            eprintln!("intermediate registry still serving on {addr} (Ctrl-C to stop)");
            super::registry::shutdown_signal().await;
        }
        task.abort();
    }
    Ok(if report.succeeded() {
        Exit::Success
    } else {
        Exit::Failure
    })
}

#[derive(Args, Debug)]
pub struct BuildsLsArgs {
    /// Project name.
    #[arg(long)]
    pub project: String,
    /// Only this change.
    #[arg(long)]
    pub change: Option<String>,
    /// Intermediate registry (default: gantry's local one in the state dir).
    #[arg(long)]
    pub intermediate_registry: Option<String>,
    #[arg(long, env = "GANTRY_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

pub async fn builds_ls(args: BuildsLsArgs) -> Result<Exit, CliError> {
    let mut task = None;
    let ep = match &args.intermediate_registry {
        Some(h) => Endpoint {
            host: h.clone(),
            options: ClientOptions::default(),
        },
        None => {
            let state = state_dir(&args.state_dir)?;
            let reg = Registry::new(RegistryConfig::new(state.join("intermediate")))
                .map_err(|e| anyhow!("{e}"))?;
            let (addr, t) = reg
                .spawn("127.0.0.1:0".parse().map_err(|e| anyhow!("{e}"))?)
                .await
                .map_err(|e| anyhow!("{e}"))?;
            task = Some(t);
            Endpoint {
                host: addr.to_string(),
                options: ClientOptions::default(),
            }
        }
    };
    let mut list = records::list(&ep, &args.project)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    if let Some(c) = &args.change {
        list.retain(|(_, r)| r.change.as_deref() == Some(c.as_str()));
    }
    if args.json {
        let v: Vec<&records::BuildsetRecord> = list.iter().map(|(_, r)| r).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (tag, r) in &list {
            for b in &r.builds {
                println!(
                    "{tag}\t{}\t{}\t{}\t{} artifacts",
                    b.job,
                    b.uuid,
                    b.result
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| "RUNNING".into()),
                    b.artifacts.len()
                );
            }
        }
    }
    if let Some(t) = task {
        t.abort();
    }
    Ok(Exit::Success)
}
