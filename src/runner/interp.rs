//! The playbook interpreter as the runner's [`PlaybookExecutor`].

use std::path::Path;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::{PlaybookExecutor, PlaybookResult, PlaybookRun};
use crate::playbook::{PlaybookContext, run_playbook};

/// The playbook interpreter `gantry run` uses.
pub fn interpreter() -> Arc<dyn PlaybookExecutor> {
    Arc::new(Interpreter)
}

/// `playbook::run_playbook`; an invalid playbook (with its file:line) is the `Err`.
struct Interpreter;

impl PlaybookExecutor for Interpreter {
    fn run<'a>(
        &'a self,
        playbook: &'a Path,
        run: PlaybookRun<'a>,
    ) -> BoxFuture<'a, Result<PlaybookResult, String>> {
        Box::pin(async move {
            let ctx = PlaybookContext {
                project_dir: run.project_dir,
                work_dir: run.work_dir,
                vars: run.vars,
                native: run.native,
                log: run.log,
                cancel: run.cancel,
            };
            let outcome = run_playbook(playbook, &ctx)
                .await
                .map_err(|e| e.to_string())?;
            Ok(PlaybookResult {
                ok: outcome.ok,
                error: outcome.error,
                returned: outcome.returned,
                facts: outcome.facts,
            })
        })
    }
}
