//! `gantry events ls|show|replay`: the event log of `gantry serve` (read straight from its
//! database — `<state>/events.db` or `--database`; works while the servers run).

use std::path::PathBuf;

use anyhow::anyhow;
use clap::{Args, Subcommand};

use super::{CliError, Exit, UsageExt};
use crate::trigger::Store;
use crate::trigger::store::EventRow;

#[derive(Args, Debug)]
pub struct StateArgs {
    /// The state directory `gantry serve` uses.
    #[arg(long, env = "GANTRY_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// The database of `gantry serve --database` (default: <state>/events.db).
    #[arg(long, env = "GANTRY_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
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

pub async fn open(state: &StateArgs) -> Result<Store, CliError> {
    let url = match &state.database {
        Some(u) => u.clone(),
        None => Store::default_url(&super::run::state_dir(&state.state_dir)?),
    };
    Store::open(&url).await.usage()
}

/// What came of an event: its outcome, and for one that started a run, how the run went
/// and on which replica (`started → failed on a`).
fn outcome(e: &EventRow) -> String {
    match (&e.run, e.state.as_str()) {
        (_, "pending") => format!("pending {}", e.outcome),
        (Some(r), _) => format!(
            "{} → {}{}",
            e.outcome,
            r.state,
            r.replica
                .as_deref()
                .map(|n| format!(" on {n}"))
                .unwrap_or_default()
        ),
        (None, _) => e.outcome.clone(),
    }
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
        outcome(e)
    )
}

pub async fn run(cmd: EventsCommand) -> Result<Exit, CliError> {
    match cmd {
        EventsCommand::Ls { state, limit } => {
            let log = open(&state).await?;
            let rows = log.events(limit).await?;
            if state.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for e in &rows {
                    println!("{}", line(e));
                }
            }
        }
        EventsCommand::Show { id, state } => {
            let log = open(&state).await?;
            let e = log
                .event(id)
                .await?
                .ok_or_else(|| anyhow!("no event {id}"))
                .usage()?;
            let x = match &e.execution {
                Some(x) => log.execution(x).await?,
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
                        "execution {} {} {} ({} builds)",
                        x.id,
                        x.status,
                        x.state,
                        x.builds.len()
                    );
                    for a in &x.attempts {
                        println!(
                            "  attempt {} on {}: {} {} → {}{}",
                            a.attempt,
                            a.replica,
                            a.state,
                            a.started,
                            a.ended.as_deref().unwrap_or("-"),
                            a.reason
                                .as_deref()
                                .map(|r| format!(" ({r})"))
                                .unwrap_or_default()
                        );
                    }
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
            let log = open(&state).await?;
            if !log.replay(id).await? {
                return Err(anyhow!("no event {id}")).usage();
            }
            eprintln!("event {id} queued again");
        }
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::store::RunSummary;

    #[test]
    fn ls_marks_a_failed_run_and_where_it_ran() {
        let mut e = EventRow {
            id: 1,
            trigger: "app".into(),
            source: "registry".into(),
            received_ms: 0,
            push: Default::default(),
            state: "done".into(),
            outcome: "started".into(),
            attempts: 0,
            digest: None,
            execution: Some("x".into()),
            run: Some(RunSummary {
                state: "failed".into(),
                status: "FAILURE".into(),
                replica: Some("ci-2".into()),
            }),
            replay: false,
        };
        assert_eq!(outcome(&e), "started → failed on ci-2");
        e.run = None;
        e.outcome = "filtered: tag x fails include".into();
        assert_eq!(outcome(&e), "filtered: tag x fails include");
    }
}
