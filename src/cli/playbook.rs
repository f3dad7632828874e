//! `gantry playbook check PLAYBOOK…`: would gantry's built-in interpreter run these
//! playbooks? Reads each one with everything it names (roles, included files) and lists
//! what the interpreter does not support, with file:line:column — what `--executor auto`
//! decides on before a run (anything listed goes to real Ansible).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use futures_util::future::BoxFuture;

use super::{CliError, Exit, UsageExt};
use crate::playbook::{NativeRoleError, NativeRoles, RoleCall, RoleOutcome};

#[derive(Subcommand, Debug)]
pub enum PlaybookCommand {
    /// List what the built-in interpreter does not support in playbooks (exit 1 if any).
    ///
    /// Example: gantry playbook check playbooks/*.yaml --project .
    Check(CheckArgs),
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Playbook files.
    #[arg(required = true)]
    pub playbooks: Vec<PathBuf>,
    /// The project the playbooks belong to (its `roles/` is on the role path). Default:
    /// the nearest directory above each playbook holding Zuul configuration.
    #[arg(long)]
    pub project: Option<PathBuf>,
    /// More role directories (a job's `roles:`), in order; repeatable.
    #[arg(long = "role-path", value_name = "DIR")]
    pub role_paths: Vec<PathBuf>,
}

/// gantry's native roles by name: what a playbook may name without shipping it.
struct NativeNames;

impl NativeRoles for NativeNames {
    fn has(&self, name: &str) -> bool {
        crate::roles::ROLES.contains(&name)
    }
    fn names(&self) -> Vec<String> {
        crate::roles::ROLES.iter().map(|r| r.to_string()).collect()
    }
    fn run<'a>(
        &'a self,
        name: &'a str,
        _: RoleCall<'a>,
    ) -> BoxFuture<'a, Result<RoleOutcome, NativeRoleError>> {
        Box::pin(async move { Err(NativeRoleError::Unknown(name.to_string())) })
    }
}

/// The nearest directory at or above `dir` with Zuul configuration, else `dir`.
fn project_of(dir: &Path) -> PathBuf {
    let roots = ["zuul.yaml", "zuul.d", ".zuul.yaml", ".zuul.d"];
    dir.ancestors()
        .find(|d| roots.iter().any(|r| d.join(r).exists()))
        .unwrap_or(dir)
        .to_path_buf()
}

pub async fn run(cmd: PlaybookCommand) -> Result<Exit, CliError> {
    let PlaybookCommand::Check(args) = cmd;
    if let Some(missing) = args.playbooks.iter().find(|p| !p.is_file()) {
        return Err(anyhow::anyhow!(
            "{}: no such playbook file",
            missing.display()
        ))
        .usage();
    }
    Ok(tokio::task::spawn_blocking(move || check(&args)).await?)
}

fn check(args: &CheckArgs) -> Exit {
    let mut rejected = 0;
    for pb in &args.playbooks {
        let dir = pb.parent().unwrap_or(Path::new("."));
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let project = args.project.clone().unwrap_or_else(|| project_of(dir));
        match crate::playbook::check_playbook_with(pb, &project, &args.role_paths, &NativeNames) {
            Ok(()) => println!("{}: ok", pb.display()),
            Err(errors) => {
                rejected += 1;
                for e in errors {
                    println!("{e}");
                }
            }
        }
    }
    let n = args.playbooks.len();
    if rejected == 0 {
        println!("{n} playbook(s): the built-in interpreter runs them all");
        Exit::Success
    } else {
        println!(
            "{rejected} of {n} playbook(s) use what the built-in interpreter does not support: \
             `gantry run --executor ansible` (or auto, with Ansible installed) runs them"
        );
        Exit::Failure
    }
}
