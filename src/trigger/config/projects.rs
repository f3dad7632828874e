//! Start-up check of `gantry serve`'s triggers: each trigger's project loads and its
//! pipeline selects jobs, so a trigger that could never run is refused before serving.

use std::path::Path;

use super::ServeConfig;
use crate::trigger::TriggerError;

impl ServeConfig {
    /// Loads every trigger's project and builds its pipeline's job graph, so a trigger
    /// that could never run is refused at start (each error `file:line:column: ...`).
    /// Records each trigger's jobs for the page.
    pub fn check_projects(&mut self, library_dir: Option<&Path>) -> Result<(), TriggerError> {
        let mut errors = Vec::new();
        for t in self.triggers.values_mut() {
            let project =
                crate::runner::pipeline::project_name(&t.project_dir.display().to_string());
            let loaded = crate::job::load(
                &t.project_dir,
                &crate::job::LoadOptions {
                    library_dir: library_dir.map(Path::to_path_buf),
                    project_name: Some(project.clone()),
                    allow_external: false,
                    config_repos: t.config_repos.clone(),
                },
            );
            let problem = match loaded {
                Ok(cfg) => match crate::job::JobGraph::build(&cfg, &project, &t.pipeline) {
                    Ok(g) if g.is_empty() => Some(format!(
                        "pipeline {} runs no job for project {project}",
                        t.pipeline
                    )),
                    Ok(g) => {
                        t.jobs = g.jobs().map(|j| j.name.clone()).collect();
                        None
                    }
                    Err(e) => Some(e.to_string()),
                },
                Err(e) => Some(e.to_string()),
            };
            if let Some(p) = problem {
                errors.push(format!(
                    "{}: trigger {}: project {}: {}",
                    t.at,
                    t.name,
                    t.project_dir.display(),
                    p.replace('\n', "\n    ")
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(TriggerError::Config(errors))
        }
    }
}
