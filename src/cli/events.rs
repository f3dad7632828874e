//! `gantry events ls|show|replay`: the event log of `gantry serve` (read straight from
//! `<state>/events.db`; works while the server runs).

use std::path::PathBuf;

use anyhow::anyhow;
use clap::{Args, Subcommand};

use super::{CliError, Exit, UsageExt};
use crate::trigger::EventLog;
use crate::trigger::eventlog::EventRow;

#[derive(Args, Debug)]
pub struct StateArgs {
    /// The state directory `gantry serve` uses.
    #[arg(long, env = "GANTRY_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum EventsCommand {
    /// List recent events with their outcome.
    ///
    /// Example: gantry events ls --state-dir /var/lib/gantry
    Ls {
        #[command(flatten)]
        state: StateArgs,
        /// How many (newest first).
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One event, and its execution if it started one.
    Show {
        id: i64,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Queue an event again: a running `gantry serve` runs it (never deduplicated).
    Replay {
        id: i64,
        #[command(flatten)]
        state: StateArgs,
    },
}

pub fn open(state: &StateArgs) -> Result<EventLog, CliError> {
    let dir = super::run::state_dir(&state.state_dir)?;
    EventLog::open(&dir).usage()
}

fn line(e: &EventRow) -> String {
    format!(
        "{}\t{}\t{}\t{}:{}\t{}\t{}",
        e.id,
        e.trigger,
        e.source,
        e.push.repository,
        e.push.tag,
        e.digest.as_deref().unwrap_or("-"),
        if e.state == "pending" {
            format!("pending {}", e.outcome)
        } else {
            e.outcome.clone()
        }
    )
}

pub fn run(cmd: EventsCommand) -> Result<Exit, CliError> {
    match cmd {
        EventsCommand::Ls { state, limit } => {
            let log = open(&state)?;
            let rows = log.events(limit)?;
            if state.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for e in &rows {
                    println!("{}", line(e));
                }
            }
        }
        EventsCommand::Show { id, state } => {
            let log = open(&state)?;
            let e = log
                .event(id)?
                .ok_or_else(|| anyhow!("no event {id}"))
                .usage()?;
            let x = match &e.execution {
                Some(x) => log.execution(x)?,
                None => None,
            };
            if state.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"event": e, "execution": x}))?
                );
            } else {
                println!("{}", line(&e));
                if let Some(x) = x {
                    println!(
                        "execution {} {} ({} builds)",
                        x.id,
                        x.status,
                        x.builds.len()
                    );
                    for b in &x.builds {
                        println!(
                            "  {}\t{}\t{} ms",
                            b.job,
                            b.result.as_deref().unwrap_or("RUNNING"),
                            b.duration_ms.unwrap_or(0)
                        );
                    }
                }
            }
        }
        EventsCommand::Replay { id, state } => {
            let log = open(&state)?;
            if !log.replay(id)? {
                return Err(anyhow!("no event {id}")).usage();
            }
            eprintln!("event {id} queued again");
        }
    }
    Ok(Exit::Success)
}
