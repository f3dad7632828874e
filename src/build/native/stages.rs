//! Stage selection and arguments: the stages a target needs (step 1, RUN refused, all
//! errors at once), global and stage ARGs, base images fetched once per build.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::state::ImageState;
use super::{Build, looks_like_stage, stage_ref};
use crate::build::BuildError;
use crate::build::dockerfile::{Dockerfile, DockerfileError, Instruction, LineError};
use crate::build::image::{self, BaseImage};
use crate::build::words::{self, Vars};
use crate::oci::Platform;

impl Build {
    pub(super) fn at(&self, line: usize, message: impl Into<String>) -> BuildError {
        BuildError::Instruction {
            file: self.file.clone(),
            line,
            message: message.into(),
        }
    }

    /// Platform args BuildKit predefines, usable in FROM lines.
    pub(super) fn platform_args(&self) -> Vec<(String, String)> {
        let p = &self.platform;
        let host = crate::build::host_platform();
        let plat = |p: &Platform| match &p.variant {
            Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
            None => format!("{}/{}", p.os, p.architecture),
        };
        vec![
            ("TARGETPLATFORM".into(), plat(p)),
            ("TARGETOS".into(), p.os.clone()),
            ("TARGETARCH".into(), p.architecture.clone()),
            (
                "TARGETVARIANT".into(),
                p.variant.clone().unwrap_or_default(),
            ),
            ("BUILDPLATFORM".into(), plat(&host)),
            ("BUILDOS".into(), host.os.clone()),
            ("BUILDARCH".into(), host.architecture.clone()),
            ("BUILDVARIANT".into(), String::new()),
        ]
    }

    pub(super) fn global_args(
        &mut self,
        df: &Dockerfile,
    ) -> Result<BTreeMap<String, Option<String>>, BuildError> {
        let mut globals: BTreeMap<String, Option<String>> = self
            .platform_args()
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            .collect();
        for ins in &df.global_args {
            for (name, default) in
                self.arg_words(ins, &|n: &str| globals.get(n).cloned().flatten())?
            {
                let v = match self.build_args.get(&name) {
                    Some(v) => {
                        self.used_args.insert(name.clone());
                        Some(v.clone())
                    }
                    None => default,
                };
                globals.insert(name, v);
            }
        }
        Ok(globals)
    }

    /// `ARG a=1 b` → [(a, Some(1)), (b, None)], defaults substituted.
    pub(super) fn arg_words(
        &self,
        ins: &Instruction,
        vars: &dyn Vars,
    ) -> Result<Vec<(String, Option<String>)>, BuildError> {
        let raw = words::split_raw(ins.shell(), self.escape)
            .map_err(|e| self.at(ins.line, e.to_string()))?;
        let mut out = Vec::new();
        for w in raw {
            let (name, default) = match w.split_once('=') {
                Some((n, d)) => (
                    n.to_string(),
                    Some(
                        words::process_word(d, vars, self.escape)
                            .map_err(|e| self.at(ins.line, e.to_string()))?,
                    ),
                ),
                None => (w.clone(), None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(self.at(ins.line, format!("ARG: invalid name {name:?}")));
            }
            out.push((name, default));
        }
        Ok(out)
    }

    pub(super) fn subst_global(
        &self,
        s: &str,
        globals: &BTreeMap<String, Option<String>>,
        line: usize,
    ) -> Result<String, BuildError> {
        words::process_word(s, &|n: &str| globals.get(n).cloned().flatten(), self.escape)
            .map_err(|e| self.at(line, e.to_string()))
    }

    /// Step 1: the stages the target needs, checked for what this builder cannot do.
    pub(super) fn check(
        &self,
        df: &Dockerfile,
        globals: &BTreeMap<String, Option<String>>,
        target: usize,
    ) -> Result<Vec<usize>, BuildError> {
        let mut needed = BTreeSet::new();
        let mut todo = vec![target];
        let mut errors = Vec::new();
        while let Some(i) = todo.pop() {
            if !needed.insert(i) {
                continue;
            }
            let stage = &df.stages[i];
            if let Ok(base) = self.subst_global(&stage.base, globals, stage.line)
                && let Some(dep) = stage_ref(df, &base, i)
            {
                todo.push(dep);
            }
            for ins in &stage.instructions {
                match ins.keyword.as_str() {
                    "RUN" => errors.push(LineError {
                        line: ins.line,
                        message: "RUN needs a container; the native builder runs none: build with --builder docker".into(),
                    }),
                    "COPY" | "ADD" => {
                        if let Some(from) = ins.flag("from") {
                            let from = self.subst_global(from, globals, ins.line).unwrap_or_else(|_| from.to_string());
                            match stage_ref(df, &from, i) {
                                Some(dep) => todo.push(dep),
                                None if from.parse::<usize>().is_ok() => errors.push(LineError {
                                    line: ins.line,
                                    message: format!("--from={from}: no stage {from} before this one"),
                                }),
                                None if looks_like_stage(&from) => {
                                    let names: Vec<&str> = df.stages[..i].iter().filter_map(|s| s.name.as_deref()).collect();
                                    errors.push(LineError {
                                        line: ins.line,
                                        message: format!(
                                            "--from={from}: unknown stage (stages before this one: {}); name an image with its registry or tag, e.g. docker.io/library/{from}:latest",
                                            if names.is_empty() { "none".to_string() } else { names.join(", ") }
                                        ),
                                    });
                                }
                                None => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        if errors.is_empty() {
            Ok(needed.into_iter().collect())
        } else {
            errors.sort_by_key(|e| e.line);
            Err(DockerfileError {
                file: self.file.clone(),
                errors,
            }
            .into())
        }
    }

    pub(super) async fn image(&mut self, name: &str, line: usize) -> Result<BaseImage, BuildError> {
        if let Some(i) = self.images.get(name) {
            return Ok(i.clone());
        }
        let img = image::fetch(
            name,
            &self.platform,
            &self.factory,
            self.buildset.as_deref(),
        )
        .await
        .map_err(|e| {
            if e.is_usage() {
                self.at(line, e.to_string())
            } else {
                e.into()
            }
        })?;
        self.images.insert(name.to_string(), img.clone());
        Ok(img)
    }

    pub(super) fn history(&self, st: &mut ImageState, ins: &Instruction, empty: bool) {
        let mut h =
            json!({"created": self.created, "created_by": ins.text, "comment": "gantry build"});
        if empty {
            h["empty_layer"] = json!(true);
        }
        st.history.push(h);
    }
}
