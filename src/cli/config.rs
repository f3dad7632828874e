//! `gantry config …`: check Zuul configuration.
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{CliError, Exit, UsageExt};
use crate::job::{self, Config, ConfigErrors, LoadOptions};

/// Where the configuration comes from; shared by `config`, `job` and `secret decrypt`.
#[derive(Args, Debug, Clone)]
pub struct ConfigArgs {
    /// Project directory holding zuul.yaml, zuul.d/, .zuul.yaml or .zuul.d/.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The shipped job library (default: $GANTRY_JOBS_DIR, else the jobs/ installed with gantry).
    #[arg(long, env = "GANTRY_JOBS_DIR", value_name = "DIR")]
    pub jobs_dir: Option<PathBuf>,
    /// Do not load the shipped job library.
    #[arg(long)]
    pub no_library: bool,
    /// Name of the project under test (default: the directory's name).
    #[arg(long)]
    pub project: Option<String>,
    /// Accept jobs, parents and project-templates defined in other repositories (warnings,
    /// not errors); jobs inheriting from them cannot be frozen.
    #[arg(long, alias = "allow-external-parents")]
    pub allow_external: bool,
    /// A repository of the Zuul tenant, [NAME=]DIR (NAME: its canonical name, default the
    /// directory's name). Repeatable; read in order after the library, before the project.
    #[arg(long = "config-repo", value_name = "[NAME=]DIR")]
    pub config_repos: Vec<String>,
}

impl ConfigArgs {
    pub fn options(&self) -> LoadOptions {
        LoadOptions {
            library_dir: if self.no_library {
                None
            } else {
                self.jobs_dir.clone().or_else(default_library_dir)
            },
            project_name: self.project.clone(),
            allow_external: self.allow_external,
            config_repos: self
                .config_repos
                .iter()
                .map(|s| job::ConfigRepo::parse(s))
                .collect(),
        }
    }

    /// Load, printing warnings to stderr; errors become exit 2.
    pub fn load(&self) -> Result<Config, CliError> {
        if !self.dir.is_dir() {
            return Err(anyhow::anyhow!("{}: not a directory", self.dir.display())).usage();
        }
        match job::load(&self.dir, &self.options()) {
            Ok(config) => {
                for w in &config.warnings {
                    eprintln!("warning: {w}");
                }
                Ok(config)
            }
            Err(e) => {
                for w in &e.warnings {
                    eprintln!("warning: {w}");
                }
                Err(e).usage()
            }
        }
    }
}

/// The library installed with gantry: `<prefix>/share/gantry/jobs` next to `<prefix>/bin`,
/// or the source tree's `jobs/` for a binary under `target/<profile>/`, else the copy
/// compiled into the binary (`cargo install` puts the binary alone in `~/.cargo/bin`).
pub fn default_library_dir() -> Option<PathBuf> {
    let beside = std::env::current_exe().ok().and_then(|exe| {
        let bin = exe.parent()?;
        let candidates = [
            bin.join("../share/gantry/jobs"),
            bin.join("../../jobs"),
            bin.join("../../../jobs"),
        ];
        candidates.into_iter().find(|p| p.is_dir())
    });
    beside.or_else(super::library::embedded_jobs_dir)
}

/// What the change is, for Zuul's matchers (`branches`, `files`, `irrelevant-files`).
#[derive(Args, Debug, Clone, Default)]
pub struct MatchArgs {
    /// Target branch of the change (default: the checkout's git branch when DIR is a
    /// checkout's root, else master).
    #[arg(long)]
    pub branch: Option<String>,
    /// A file the change touches (repeatable); evaluates files / irrelevant-files.
    #[arg(long = "changed-file", value_name = "PATH")]
    pub changed_files: Vec<String>,
    /// Take the changed files from `git diff --name-only REF...HEAD` of the checkout.
    #[arg(long, value_name = "REF", conflicts_with = "changed_files")]
    pub diff_base: Option<String>,
}

impl MatchArgs {
    /// The branch and files of the change in `dir` (runs git for the defaults).
    pub fn change(&self, dir: &std::path::Path) -> Result<job::matchers::ChangeInfo, CliError> {
        let git = |args: &[&str]| -> Option<String> {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(args)
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        };
        // Only a checkout's root says which branch it is on (a directory inside another
        // repository does not).
        let branch = self.branch.clone().unwrap_or_else(|| {
            dir.join(".git")
                .exists()
                .then(|| git(&["rev-parse", "--abbrev-ref", "HEAD"]))
                .flatten()
                .map(|b| b.trim().to_string())
                .filter(|b| !b.is_empty() && b != "HEAD")
                .unwrap_or_else(|| "master".into())
        });
        let files = if let Some(base) = &self.diff_base {
            let range = format!("{base}...HEAD");
            let out = git(&["diff", "--name-only", &range])
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--diff-base {base}: git diff --name-only {range} failed in {}",
                        dir.display()
                    )
                })
                .usage()?;
            Some(
                out.lines()
                    .map(str::to_string)
                    .filter(|l| !l.is_empty())
                    .collect(),
            )
        } else if self.changed_files.is_empty() {
            None
        } else {
            Some(self.changed_files.clone())
        };
        Ok(job::matchers::ChangeInfo {
            branch: Some(branch),
            files,
        })
    }
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Check a project's Zuul configuration and report every error at once.
    ///
    /// Example: gantry config validate ~/src/app
    Validate {
        #[command(flatten)]
        config: ConfigArgs,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: ConfigCommand) -> Result<Exit, CliError> {
    match cmd {
        ConfigCommand::Validate { config, json } => validate(&config, json),
    }
}

fn validate(args: &ConfigArgs, json: bool) -> Result<Exit, CliError> {
    if !args.dir.is_dir() {
        return Err(anyhow::anyhow!("{}: not a directory", args.dir.display())).usage();
    }
    let result = job::load(&args.dir, &args.options()).and_then(|config| {
        let errors = job::pipelines::check_pipelines(&config);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors {
                errors,
                warnings: config.warnings,
            })
        }
    });
    if json {
        let value = match &result {
            Ok(c) => serde_json::json!({
                "valid": true,
                "errors": [],
                "warnings": c.warnings,
                "summary": summary_json(c),
            }),
            Err(ConfigErrors { errors, warnings }) => serde_json::json!({
                "valid": false,
                "errors": errors,
                "warnings": warnings,
            }),
        };
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(if result.is_ok() {
            Exit::Success
        } else {
            Exit::Usage
        });
    }
    match result {
        Ok(config) => {
            for w in &config.warnings {
                eprintln!("warning: {w}");
            }
            println!("{}", summary(&config));
            Ok(Exit::Success)
        }
        Err(e) => {
            for w in &e.warnings {
                eprintln!("warning: {w}");
            }
            Err(e).usage()
        }
    }
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

fn summary(c: &Config) -> String {
    let pipelines = c.pipeline_names();
    format!(
        "valid: {}, {}, {}, {} ({}) from {}",
        count(
            c.jobs.len() - usize::from(c.jobs.contains_key("noop")),
            "job"
        ),
        count(c.secrets.len(), "secret"),
        count(c.projects.len(), "project stanza"),
        count(pipelines.len(), "pipeline"),
        pipelines.join(", "),
        count(c.files.len(), "file"),
    )
}

fn summary_json(c: &Config) -> serde_json::Value {
    serde_json::json!({
        "files": c.files.iter().map(|f| f.file.to_string()).collect::<Vec<_>>(),
        "jobs": c.jobs.len() - usize::from(c.jobs.contains_key("noop")),
        "secrets": c.secrets.len(),
        "projects": c.project_names(),
        "pipelines": c.pipeline_names(),
        "external": c.external,
    })
}
