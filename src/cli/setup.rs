//! `gantry setup ansible`: a venv with a pinned ansible-core from PyPI, where
//! `gantry run --executor ansible|auto` finds it (`playbook::ansible::setup_dir`).

use std::path::PathBuf;

use anyhow::anyhow;
use clap::{Args, Subcommand};

use super::{CliError, Exit, UsageExt};
use crate::playbook::ansible::{Ansible, PINNED, setup_dir};

#[derive(Subcommand, Debug)]
pub enum SetupCommand {
    /// Create a Python venv with ansible-core (pinned) for `--executor ansible`.
    ///
    /// Example: gantry setup ansible
    Ansible(SetupAnsibleArgs),
}

#[derive(Args, Debug)]
pub struct SetupAnsibleArgs {
    /// Where to make the venv (default: $XDG_DATA_HOME/gantry/ansible or
    /// ~/.local/share/gantry/ansible, where gantry looks for it).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The Python 3 that makes the venv.
    #[arg(long, default_value = "python3")]
    pub python: String,
}

pub async fn run(cmd: SetupCommand) -> Result<Exit, CliError> {
    let SetupCommand::Ansible(args) = cmd;
    let dir = args
        .dir
        .or_else(setup_dir)
        .ok_or_else(|| anyhow!("no HOME: pass --dir"))
        .usage()?;
    let step = |what: &str, program: PathBuf, argv: Vec<String>| {
        let what = what.to_string();
        async move {
            eprintln!("{what}");
            let status = tokio::process::Command::new(&program)
                .args(&argv)
                .status()
                .await
                .map_err(|e| anyhow!("running {}: {e}", program.display()))?;
            if !status.success() {
                return Err(anyhow!(
                    "{} {} failed: {status}",
                    program.display(),
                    argv.join(" ")
                ));
            }
            Ok(())
        }
    };
    step(
        &format!("creating the venv {}", dir.display()),
        PathBuf::from(&args.python),
        vec!["-m".into(), "venv".into(), dir.display().to_string()],
    )
    .await?;
    step(
        &format!("installing {PINNED} from PyPI"),
        dir.join("bin/pip"),
        vec![
            "install".into(),
            "--quiet".into(),
            "--disable-pip-version-check".into(),
            PINNED.into(),
        ],
    )
    .await?;
    let a = Ansible::locate(Some(&dir.join("bin/ansible-playbook"))).await?;
    println!(
        "{} (ansible-core {}): gantry run --executor ansible uses it",
        a.playbook.display(),
        a.version
    );
    Ok(Exit::Success)
}
