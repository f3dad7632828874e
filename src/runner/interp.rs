//! The playbook interpreter as the runner's [`PlaybookExecutor`].

use std::path::Path;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::PlaybookExecutor;
use crate::playbook::{PlaybookContext, PlaybookOutcome, run_playbook};

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
        ctx: PlaybookContext<'a>,
    ) -> BoxFuture<'a, Result<PlaybookOutcome, String>> {
        Box::pin(async move {
            run_playbook(playbook, &ctx)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
