//! The playbook interpreter as the runner's [`PlaybookExecutor`].

use std::path::Path;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::{PlaybookExecutor, PlaybookResult, PlaybookRun};

/// The playbook interpreter `gantry run` uses.
pub fn interpreter() -> Arc<dyn PlaybookExecutor> {
    Arc::new(Unavailable)
}

/// Stands in until the interpreter is wired (never reached by a finished build).
struct Unavailable;

impl PlaybookExecutor for Unavailable {
    fn run<'a>(
        &'a self,
        playbook: &'a Path,
        _: PlaybookRun<'a>,
    ) -> BoxFuture<'a, Result<PlaybookResult, String>> {
        Box::pin(async move {
            Err(format!(
                "{}: the playbook interpreter is not available yet",
                playbook.display()
            ))
        })
    }
}
