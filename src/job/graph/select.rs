//! Which frozen jobs of a pipeline run for a change: branch and file matchers applied to a
//! frozen job (the patterns themselves are `job::matchers`, which knows nothing of jobs).

use crate::job::config::Config;
use crate::job::freeze::{FrozenJob, PipelineContext};
use crate::job::matchers::{ChangeInfo, branch_matches};

/// Does a variant of `name` itself (not a parent's) match the change's branch? A job
/// defined nowhere is left for the freeze to report.
pub fn some_variant_matches(config: &Config, name: &str, change: &ChangeInfo) -> bool {
    config.jobs.get(name).is_none_or(|variants| {
        variants.iter().any(|v| {
            branch_matches(
                v.branches.as_deref().unwrap_or_default(),
                change.branch.as_deref(),
            )
        })
    })
}

/// Does one of the project-pipeline entries listing the job match the change's branch?
/// Zuul runs a listed job only then ("No matching pipeline variants"); an entry without
/// `branches` matches every branch.
pub fn some_pipeline_variant_matches(ctx: &PipelineContext<'_>, change: &ChangeInfo) -> bool {
    ctx.variants.is_empty()
        || ctx.variants.iter().any(|v| {
            branch_matches(
                v.branches.as_deref().unwrap_or_default(),
                change.branch.as_deref(),
            )
        })
}

/// Does `job` run for `change`? `config_files` are the files (relative to the project) the
/// job's definitions come from.
pub fn job_runs(job: &FrozenJob, change: &ChangeInfo, config_files: &[String]) -> bool {
    if !branch_matches(&job.branches, change.branch.as_deref()) {
        return false;
    }
    let Some(files) = &change.files else {
        return true;
    };
    let on_config_updates = job
        .other
        .get("match-on-config-updates")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(true);
    if on_config_updates && files.iter().any(|f| config_files.contains(f)) {
        return true;
    }
    if files.is_empty() {
        return true;
    }
    if !job.files.is_empty() && !files.iter().any(|f| job.files.iter().any(|m| m.matches(f))) {
        return false;
    }
    if !job.irrelevant_files.is_empty()
        && files
            .iter()
            .all(|f| job.irrelevant_files.iter().any(|m| m.matches(f)))
    {
        return false;
    }
    true
}
