//! The console reporter: progress on stderr while the buildset runs, the final table on
//! stdout.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::job::BuildResult;
use crate::runner::{BuildsetReport, Event};

/// How much to show.
#[derive(Clone, Copy, Debug)]
pub struct ConsoleOptions {
    pub quiet: bool,
    /// Also print every build log line.
    pub verbose: bool,
}

/// Consumes events until the runner drops its sender.
pub async fn follow(mut rx: UnboundedReceiver<Event>, opts: ConsoleOptions) {
    let live = !opts.quiet && std::io::stderr().is_terminal();
    let multi = MultiProgress::new();
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    let style = ProgressStyle::with_template("{spinner} {prefix:<40} {msg} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    while let Some(ev) = rx.recv().await {
        if opts.quiet {
            continue;
        }
        let line = match &ev {
            Event::BuildsetStarted {
                project,
                pipeline,
                jobs,
                ..
            } => Some(format!(
                "{pipeline} pipeline of {project}: {} jobs",
                jobs.len()
            )),
            Event::BuildStarted { job, uuid } => {
                if live {
                    let b = multi.add(ProgressBar::new_spinner());
                    b.set_style(style.clone());
                    b.set_prefix(job.clone());
                    b.set_message("running");
                    b.enable_steady_tick(Duration::from_millis(120));
                    bars.insert(job.clone(), b);
                    None
                } else {
                    Some(format!("started  {job} ({uuid})"))
                }
            }
            Event::BuildPaused { job } => match bars.get(job) {
                Some(b) => {
                    b.set_message("paused");
                    None
                }
                None => Some(format!("paused   {job}")),
            },
            Event::BuildResumed { job } => match bars.get(job) {
                Some(b) => {
                    b.set_message("resumed");
                    None
                }
                None => Some(format!("resumed  {job}")),
            },
            Event::BuildFinished {
                job,
                result,
                duration,
                message,
                ..
            } => {
                let text = format!(
                    "{:<8} {job} in {:.1}s{}",
                    result.to_string(),
                    duration.as_secs_f64(),
                    message
                        .as_ref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                );
                match bars.remove(job) {
                    Some(b) => {
                        b.finish_and_clear();
                        let _ = multi.println(text);
                        None
                    }
                    None => Some(text),
                }
            }
            Event::BuildSkipped { job, reason } => Some(format!("SKIPPED  {job}: {reason}")),
            Event::Log { job, line } if opts.verbose => Some(format!("[{job}] {line}")),
            Event::Log { .. } => None,
        };
        if let Some(l) = line {
            if live {
                let _ = multi.println(l);
            } else {
                eprintln!("{l}");
            }
        }
    }
    for (_, b) in bars {
        b.finish_and_clear();
    }
}

/// The final table (stdout).
pub fn table(report: &BuildsetReport) -> String {
    let width = report
        .builds
        .iter()
        .map(|b| b.job.len())
        .max()
        .unwrap_or(3)
        .max(3);
    let mut out = format!(
        "{:<width$}  {:<13} {:>9}  {}\n",
        "job", "result", "duration", "details"
    );
    for b in &report.builds {
        let details = match (&b.message, b.result) {
            (Some(m), _) => m.clone(),
            (None, BuildResult::Success) if b.paused => "paused, resumed".to_string(),
            (None, _) => b
                .log
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        };
        out.push_str(&format!(
            "{:<width$}  {:<13} {:>8.1}s  {}\n",
            b.job,
            b.result.to_string(),
            b.duration_ms as f64 / 1000.0,
            details
        ));
    }
    let verdict = if report.succeeded() {
        "SUCCESS"
    } else {
        "FAILURE"
    };
    out.push_str(&format!(
        "buildset {} of {}{} in {}: {verdict}\n",
        report.buildset,
        report.project,
        report
            .change
            .as_ref()
            .map(|c| format!(" change {c}"))
            .unwrap_or_default(),
        report.pipeline
    ));
    out
}
