//! `gantry version`, `gantry completions SHELL` and `gantry manpage`: facts about the
//! binary itself, generated from the same clap definitions the parser uses.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, CommandFactory, ValueEnum};

use super::{Cli, CliError, Exit, UsageExt};

/// `0.1.0 (commit abc123def456)`; the commit comes from build.rs ("unknown" outside a
/// git checkout).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("GANTRY_GIT_COMMIT"),
    ")"
);

#[derive(Args, Debug)]
pub struct VersionArgs {
    /// Version and commit as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    pub shell: Shell,
}

#[derive(Args, Debug)]
pub struct ManpageArgs {
    /// Write gantry.1 and one page per subcommand (gantry-image-copy.1, …) into DIR
    /// instead of printing gantry.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn version(a: &VersionArgs) -> Result<Exit, CliError> {
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "commit": env!("GANTRY_GIT_COMMIT"),
            })
        );
    } else {
        println!("gantry {VERSION}");
    }
    Ok(Exit::Success)
}

pub fn completions(a: &CompletionsArgs) -> Result<Exit, CliError> {
    let shell = match a.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "gantry", &mut out);
    write_stdout(&out)
}

pub fn manpage(a: &ManpageArgs) -> Result<Exit, CliError> {
    let cmd = Cli::command();
    match &a.dir {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            return write_stdout(&out);
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))
                .usage()?;
            clap_mangen::generate_to(cmd, dir)
                .map_err(|e| anyhow::anyhow!("writing man pages to {}: {e}", dir.display()))?;
            eprintln!("wrote man pages to {}", dir.display());
        }
    }
    Ok(Exit::Success)
}

/// Writes generated text; a reader that went away (`| head`) ends the command quietly.
fn write_stdout(bytes: &[u8]) -> Result<Exit, CliError> {
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(Exit::Success),
    }
}
