//! `gantry trigger enable|disable|test`: switch a trigger of `gantry serve` on or off
//! (kept in the database, read by every replica at each event) and explain which
//! filters a tag passes.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Subcommand;

use super::events::{StateArgs, open};
use super::{CliError, Exit, UsageExt};
use crate::trigger::ServeConfig;

#[derive(Subcommand, Debug)]
pub enum TriggerCommand {
    /// Let a trigger start runs again.
    ///
    /// Example: gantry trigger enable app --state-dir /var/lib/gantry --config gantry-serve.yaml
    Enable {
        name: String,
        #[command(flatten)]
        state: StateArgs,
        /// The configuration that defines the trigger (an unknown name exits 2).
        #[arg(long, default_value = "gantry-serve.yaml")]
        config: PathBuf,
    },
    /// Record a trigger's events as "disabled" without running anything.
    Disable {
        name: String,
        #[command(flatten)]
        state: StateArgs,
        /// The configuration that defines the trigger (an unknown name exits 2).
        #[arg(long, default_value = "gantry-serve.yaml")]
        config: PathBuf,
    },
    /// Explain whether a tag (and image) would start a run, filter by filter.
    ///
    /// Example: gantry trigger test app --tag v1.2.3 --config gantry-serve.yaml
    Test {
        name: String,
        #[arg(long)]
        tag: String,
        /// Repository to check against the image regex (default: skip that check).
        #[arg(long)]
        image: Option<String>,
        /// The configuration whose filters are tested, as `gantry serve --config` reads it
        /// (the test reads no state, so it takes no --state-dir).
        #[arg(long, default_value = "gantry-serve.yaml")]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: TriggerCommand) -> Result<Exit, CliError> {
    match cmd {
        TriggerCommand::Enable {
            name,
            state,
            config,
        } => set_enabled(&name, &state, &config, true).await,
        TriggerCommand::Disable {
            name,
            state,
            config,
        } => set_enabled(&name, &state, &config, false).await,
        TriggerCommand::Test {
            name,
            tag,
            image,
            config,
            json,
        } => test(&name, &tag, image.as_deref(), &config, json),
    }
}

async fn set_enabled(
    name: &str,
    state: &StateArgs,
    config: &std::path::Path,
    enabled: bool,
) -> Result<Exit, CliError> {
    // A name the configuration does not define is a usage error, not a silent success.
    let cfg = ServeConfig::load(config).usage()?;
    if !cfg.triggers.contains_key(name) {
        let known: Vec<&str> = cfg.triggers.keys().map(String::as_str).collect();
        return Err(anyhow!(
            "{}: no trigger {name:?} (triggers: {})",
            config.display(),
            known.join(", ")
        ))
        .usage();
    }
    let log = open(state).await?;
    log.set_enabled(name, enabled).await?;
    eprintln!(
        "trigger {name} {}",
        if enabled { "enabled" } else { "disabled" }
    );
    Ok(Exit::Success)
}

fn test(
    name: &str,
    tag: &str,
    image: Option<&str>,
    config: &std::path::Path,
    json: bool,
) -> Result<Exit, CliError> {
    let cfg = ServeConfig::load(config).usage()?;
    let t = cfg
        .triggers
        .get(name)
        .ok_or_else(|| anyhow!("{}: no trigger {name:?}", config.display()))
        .usage()?;
    let mut checks: Vec<(String, bool)> = Vec::new();
    if let Some(img) = image {
        checks.push((
            format!(
                "image /{}/ matches {img}",
                t.image_text.as_deref().unwrap_or(".*")
            ),
            t.image_matches(img),
        ));
    }
    for c in t.tags.explain(tag) {
        checks.push((c.check, c.pass));
    }
    if let Some(p) = &t.poll {
        checks.push((
            format!("poll order {} admits the tag", p.order.describe()),
            p.order.admits(tag),
        ));
    }
    checks.push((
        format!("trigger enabled in {}", config.display()),
        t.enabled,
    ));
    let pass = checks.iter().all(|(_, p)| *p);
    if json {
        let v: Vec<_> = checks
            .iter()
            .map(|(c, p)| serde_json::json!({"check": c, "pass": p}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"trigger": name, "tag": tag, "pass": pass, "checks": v})
            )?
        );
    } else {
        for (c, p) in &checks {
            println!("{}  {c}", if *p { "pass" } else { "FAIL" });
        }
        println!(
            "{name}: tag {tag} {}",
            if pass {
                "would start a run"
            } else {
                "would not start a run"
            }
        );
    }
    Ok(if pass { Exit::Success } else { Exit::Failure })
}
