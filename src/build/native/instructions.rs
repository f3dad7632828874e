//! The instructions that change only the config (ENV, ARG, LABEL, WORKDIR, USER, EXPOSE,
//! VOLUME, CMD, ENTRYPOINT, HEALTHCHECK, …) and the dispatch of every instruction of a stage;
//! COPY/ADD make a layer through `copy`.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::state::{ImageState, Layer, labels, object};
use super::{Build, StageScope};
use crate::build::BuildError;
use crate::build::dockerfile::{Args, Dockerfile, Instruction};
use crate::build::words::{self, Vars};

impl Build {
    pub(super) async fn apply(
        &mut self,
        ins: &Instruction,
        st: &mut ImageState,
        scope: &mut StageScope,
        df: &Dockerfile,
        built: &[Option<ImageState>],
        stage: usize,
    ) -> Result<(), BuildError> {
        let env: HashMap<String, String> = scope.args.clone().into_iter().chain(st.env()).collect();
        let vars = move |n: &str| env.get(n).cloned();
        let line = ins.line;
        let word = |s: &str| {
            words::process_word(s, &vars, self.escape).map_err(|e| self.at(line, e.to_string()))
        };
        let words_of = |s: &str| {
            words::process_words(s, &vars, self.escape).map_err(|e| self.at(line, e.to_string()))
        };
        match ins.keyword.as_str() {
            "COPY" | "ADD" => {
                let entries = self.copy(ins, st, df, built, stage, &vars).await?;
                let blobs_dir = self.blobs_dir.clone();
                let epoch = self.epoch;
                let entries = Arc::new(entries);
                let e2 = entries.clone();
                let layer = tokio::task::spawn_blocking(move || {
                    crate::build::layer::write_layer(&e2, epoch, &blobs_dir)
                })
                .await
                .map_err(|e| BuildError::io("writing a layer", std::io::Error::other(e)))??;
                tracing::info!(
                    "{}:{line}: {} → layer {} ({} bytes)",
                    self.file,
                    ins.keyword,
                    layer.digest,
                    layer.size
                );
                st.diff_ids.push(json!(layer.diff_id));
                st.layers.push(Layer::Built {
                    built: layer,
                    entries,
                });
                self.history(st, ins, false);
                return Ok(());
            }
            "ENV" => {
                for (k, v) in self.pairs(ins, &vars)? {
                    st.set_env(&k, &v);
                }
            }
            "ARG" => {
                let globals = scope.globals.clone();
                for (name, default) in self.arg_words(ins, &vars)? {
                    let v = match self.build_args.get(&name) {
                        Some(v) => {
                            self.used_args.insert(name.clone());
                            Some(v.clone())
                        }
                        // `ARG NAME` inside a stage takes the global value.
                        None => default.or_else(|| globals.get(&name).cloned().flatten()),
                    };
                    if let Some(v) = v {
                        scope.args.insert(name, v);
                    } else {
                        scope.args.remove(&name);
                    }
                }
            }
            "LABEL" => {
                for (k, v) in self.pairs(ins, &vars)? {
                    labels(&mut st.config).insert(k, Value::String(v));
                }
            }
            "MAINTAINER" => st.author = Some(word(ins.shell())?),
            "WORKDIR" => {
                let w = word(ins.shell())?;
                let abs = if w.starts_with('/') {
                    w
                } else {
                    format!("{}/{w}", st.workdir())
                };
                let clean = format!("/{}", crate::build::context::clean_destination(&abs));
                st.config.insert("WorkingDir".into(), json!(clean));
            }
            "USER" => {
                st.config.insert("User".into(), json!(word(ins.shell())?));
            }
            "EXPOSE" => {
                for p in words_of(ins.shell())? {
                    for port in expose(&p).map_err(|m| self.at(line, m))? {
                        object(&mut st.config, "ExposedPorts").insert(port, json!({}));
                    }
                }
            }
            "VOLUME" => {
                let vols = match &ins.args {
                    Args::Json(v) => v.iter().map(|s| word(s)).collect::<Result<Vec<_>, _>>()?,
                    Args::Shell(s) => words_of(s)?,
                };
                for v in vols {
                    if v.is_empty() {
                        return Err(self.at(line, "VOLUME: empty path"));
                    }
                    object(&mut st.config, "Volumes").insert(v, json!({}));
                }
            }
            "STOPSIGNAL" => {
                st.config
                    .insert("StopSignal".into(), json!(word(ins.shell())?));
            }
            "ENTRYPOINT" => {
                let v = self.command(ins, st);
                st.config.insert("Entrypoint".into(), v);
                if !scope.cmd_set {
                    st.config.insert("Cmd".into(), Value::Null);
                }
            }
            "CMD" => {
                let v = self.command(ins, st);
                st.config.insert("Cmd".into(), v);
                scope.cmd_set = true;
            }
            "SHELL" => {
                if let Args::Json(v) = &ins.args {
                    st.config.insert("Shell".into(), json!(v));
                }
            }
            "HEALTHCHECK" => {
                let hc = self.healthcheck(ins, st)?;
                st.config.insert("Healthcheck".into(), hc);
            }
            "ONBUILD" => {
                let trig = ins.shell().trim().to_string();
                let v = st.config.entry("OnBuild").or_insert_with(|| json!([]));
                if let Value::Array(a) = v {
                    a.push(json!(trig));
                } else {
                    *v = json!([trig]);
                }
            }
            // Refused in `check`; kept here so a new caller cannot slip one through.
            "RUN" => {
                return Err(self.at(line, "RUN needs a container: build with --builder docker"));
            }
            other => {
                return Err(self.at(
                    line,
                    format!("{other} is not supported by the native builder"),
                ));
            }
        }
        self.history(st, ins, true);
        Ok(())
    }

    /// `KEY=value …` (or the legacy `KEY value`) with values substituted.
    pub(super) fn pairs(
        &self,
        ins: &Instruction,
        vars: &dyn Vars,
    ) -> Result<Vec<(String, String)>, BuildError> {
        let line = ins.line;
        let err = |e: words::WordsError| self.at(line, e.to_string());
        let raw = words::split_raw(ins.shell(), self.escape).map_err(err)?;
        if let Some(first) = raw.first()
            && !first.contains('=')
        {
            // Legacy form: the rest of the line is the value.
            let rest = ins.shell().trim_start()[first.len()..].trim();
            if ins.keyword == "LABEL" || rest.is_empty() {
                return Err(self.at(
                    line,
                    format!("{}: expected KEY=value, got {:?}", ins.keyword, ins.shell()),
                ));
            }
            return Ok(vec![(
                words::process_word(first, vars, self.escape).map_err(err)?,
                words::process_word(rest, vars, self.escape).map_err(err)?,
            )]);
        }
        let mut out = Vec::new();
        for w in raw {
            let Some((k, v)) = w.split_once('=') else {
                return Err(self.at(
                    line,
                    format!("{}: expected KEY=value, got {w:?}", ins.keyword),
                ));
            };
            let k = words::process_word(k, vars, self.escape).map_err(err)?;
            if k.is_empty() {
                return Err(self.at(line, format!("{}: empty key in {w:?}", ins.keyword)));
            }
            out.push((k, words::process_word(v, vars, self.escape).map_err(err)?));
        }
        Ok(out)
    }

    /// CMD/ENTRYPOINT: exec form as is, shell form wrapped in the stage's SHELL.
    pub(super) fn command(&self, ins: &Instruction, st: &ImageState) -> Value {
        match &ins.args {
            Args::Json(v) if v.is_empty() => Value::Null,
            Args::Json(v) => json!(v),
            Args::Shell(s) if s.trim().is_empty() => Value::Null,
            Args::Shell(s) => {
                let mut c = st.shell();
                c.push(s.trim().to_string());
                json!(c)
            }
        }
    }

    pub(super) fn healthcheck(
        &self,
        ins: &Instruction,
        st: &ImageState,
    ) -> Result<Value, BuildError> {
        let line = ins.line;
        let s = ins.shell().trim();
        let (first, rest) = s.split_once(char::is_whitespace).unwrap_or((s, ""));
        if first.eq_ignore_ascii_case("NONE") {
            if !rest.trim().is_empty() || !ins.flags.is_empty() {
                return Err(self.at(line, "HEALTHCHECK NONE takes no arguments"));
            }
            return Ok(json!({"Test": ["NONE"]}));
        }
        let rest = rest.trim();
        let test = match serde_json::from_str::<Vec<String>>(rest) {
            Ok(v) if rest.starts_with('[') => {
                let mut t = vec!["CMD".to_string()];
                t.extend(v);
                t
            }
            _ if rest.is_empty() => return Err(self.at(line, "HEALTHCHECK CMD needs a command")),
            _ => {
                let _ = st;
                vec!["CMD-SHELL".to_string(), rest.to_string()]
            }
        };
        let mut hc = Map::new();
        hc.insert("Test".into(), json!(test));
        for (name, key) in [
            ("interval", "Interval"),
            ("timeout", "Timeout"),
            ("start-period", "StartPeriod"),
            ("start-interval", "StartInterval"),
        ] {
            if let Some(v) = ins.flag(name) {
                let ns = duration_ns(v).ok_or_else(|| {
                    self.at(
                        line,
                        format!("HEALTHCHECK --{name}={v}: not a duration (e.g. 30s, 1m30s)"),
                    )
                })?;
                hc.insert(key.into(), json!(ns));
            }
        }
        if let Some(r) = ins.flag("retries") {
            let n: u64 = r
                .parse()
                .map_err(|_| self.at(line, format!("HEALTHCHECK --retries={r}: not a number")))?;
            hc.insert("Retries".into(), json!(n));
        }
        Ok(Value::Object(hc))
    }
}

/// `80`, `80/udp`, `8000-8002/tcp` → `["80/tcp"]`, ….
pub(super) fn expose(p: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match p.split_once('/') {
        Some((a, b)) => (a, b.to_ascii_lowercase()),
        None => (p, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("EXPOSE {p}: protocol must be tcp, udp or sctp"));
    }
    let num = |s: &str| s.parse::<u16>().ok().filter(|n| *n > 0);
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (num(a), num(b)),
        None => (num(ports), num(ports)),
    };
    match (lo, hi) {
        (Some(lo), Some(hi)) if lo <= hi => Ok((lo..=hi).map(|n| format!("{n}/{proto}")).collect()),
        _ => Err(format!("EXPOSE {p}: invalid port")),
    }
}

/// Go duration syntax (`1m30s`, `500ms`) in nanoseconds.
pub(super) fn duration_ns(s: &str) -> Option<u64> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[u..];
    }
    Some(total as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_durations() {
        assert_eq!(expose("80").unwrap(), ["80/tcp"]);
        assert_eq!(expose("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(expose("8000-8002").unwrap().len(), 3);
        assert!(expose("0").is_err() && expose("80/foo").is_err() && expose("x").is_err());
        assert_eq!(duration_ns("1m30s"), Some(90_000_000_000));
        assert_eq!(duration_ns("500ms"), Some(500_000_000));
        assert_eq!(duration_ns("5"), None);
        assert_eq!(duration_ns(""), None);
    }
}
