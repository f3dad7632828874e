//! Dockerfile syntax: text → stages of instructions, each with its line number.
//!
//! Handles parser directives (`# escape=`, `# syntax=`), comments, continuation lines,
//! JSON (exec) and shell forms, flags (`--from=`, `--chown=`, ...), `ARG` before the first
//! `FROM`, and `FROM image AS name`. Every error in the file is collected, with its line,
//! before the parse fails.
//!
//! PURE: no I/O, no variable substitution (that needs the build's values; `words` does it
//! when a builder evaluates an instruction).

use std::fmt;

/// One instruction as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line of the instruction's first line.
    pub line: usize,
    /// Upper-case keyword (`COPY`).
    pub keyword: String,
    /// Leading `--name=value` flags (`--name` alone has an empty value).
    pub flags: Vec<(String, String)>,
    pub args: Args,
    /// The instruction's text, continuation lines joined (for history and messages).
    pub text: String,
}

/// The arguments after the keyword and flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Args {
    /// `["a", "b"]` (exec form).
    Json(Vec<String>),
    /// Anything else, raw (substitution happens when the instruction is evaluated).
    Shell(String),
}

impl Instruction {
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn shell(&self) -> &str {
        match &self.args {
            Args::Shell(s) => s,
            Args::Json(_) => "",
        }
    }
}

/// A `FROM` and the instructions up to the next one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage {
    pub index: usize,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    /// The image (or earlier stage) as written, before substitution.
    pub base: String,
    /// `--platform=` of the FROM.
    pub platform: Option<String>,
    pub line: usize,
    pub instructions: Vec<Instruction>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dockerfile {
    pub escape: char,
    /// `ARG` instructions before the first `FROM` (usable in `FROM` lines).
    pub global_args: Vec<Instruction>,
    pub stages: Vec<Stage>,
}

/// One problem at one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

/// Every syntax error of a Dockerfile, in line order.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub struct DockerfileError {
    pub file: String,
    pub errors: Vec<LineError>,
}

impl fmt::Display for DockerfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if e.line == 0 {
                write!(f, "{}: {}", self.file, e.message)?;
            } else {
                write!(f, "{}:{}: {}", self.file, e.line, e.message)?;
            }
        }
        Ok(())
    }
}

const KEYWORDS: [&str; 18] = [
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "MAINTAINER",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
];

/// Instructions whose arguments may be a JSON array.
const JSON_FORM: [&str; 7] = ["RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "VOLUME"];

/// Instructions that take leading `--flag` words.
const TAKES_FLAGS: [&str; 5] = ["FROM", "COPY", "ADD", "RUN", "HEALTHCHECK"];

/// Parses a Dockerfile; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Dockerfile, DockerfileError> {
    let mut errors = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let (escape, first) = directives(&lines, &mut errors);
    let mut instructions = Vec::new();
    let mut i = first;
    while i < lines.len() {
        let start = i;
        let line = lines[i];
        i += 1;
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let mut joined = String::new();
        let mut cur = line.trim_end();
        loop {
            match cur.strip_suffix(escape) {
                Some(head) => {
                    joined.push_str(head);
                    // Continuation: skip comment and empty lines inside the instruction.
                    let mut next = None;
                    while i < lines.len() {
                        let l = lines[i];
                        i += 1;
                        let lt = l.trim_start();
                        if lt.is_empty() || lt.starts_with('#') {
                            continue;
                        }
                        next = Some(l.trim_end());
                        break;
                    }
                    match next {
                        Some(n) => cur = n,
                        None => break,
                    }
                }
                None => {
                    joined.push_str(cur);
                    break;
                }
            }
        }
        match instruction(start + 1, joined.trim()) {
            Ok(ins) => instructions.push(ins),
            Err(message) => errors.push(LineError {
                line: start + 1,
                message,
            }),
        }
    }
    let df = stages(instructions, escape, &mut errors);
    if errors.is_empty() {
        Ok(df)
    } else {
        errors.sort_by_key(|e| e.line);
        Err(DockerfileError {
            file: file.to_string(),
            errors,
        })
    }
}

/// Reads parser directives at the top; returns the escape character and the first line
/// after them.
fn directives(lines: &[&str], errors: &mut Vec<LineError>) -> (char, usize) {
    let mut escape = '\\';
    let mut seen = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(body) = l.trim().strip_prefix('#') else {
            return (escape, i);
        };
        let Some((k, v)) = body.split_once('=') else {
            return (escape, i);
        };
        let key = k.trim().to_ascii_lowercase();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            return (escape, i);
        }
        let v = v.trim();
        if seen.contains(&key) {
            errors.push(LineError {
                line: i + 1,
                message: format!("parser directive {key:?} given twice"),
            });
        }
        seen.push(key.clone());
        match key.as_str() {
            "escape" => match v {
                "\\" => escape = '\\',
                "`" => escape = '`',
                _ => errors.push(LineError {
                    line: i + 1,
                    message: format!("invalid escape character {v:?}: must be \\ or `"),
                }),
            },
            // `syntax` selects a BuildKit frontend; the subset here is the same either way.
            "syntax" | "check" => {}
            _ => return (escape, i),
        }
    }
    (escape, lines.len())
}

fn instruction(line: usize, text: &str) -> Result<Instruction, String> {
    let (kw, rest) = match text.split_once(char::is_whitespace) {
        Some((k, r)) => (k, r.trim_start()),
        None => (text, ""),
    };
    let keyword = kw.to_ascii_uppercase();
    if !KEYWORDS.contains(&keyword.as_str()) {
        return Err(format!("unknown instruction {kw:?}"));
    }
    let mut rest = rest;
    let mut flags = Vec::new();
    if TAKES_FLAGS.contains(&keyword.as_str()) {
        while let Some(f) = rest.strip_prefix("--") {
            let (word, after) = match f.split_once(char::is_whitespace) {
                Some((w, a)) => (w, a.trim_start()),
                None => (f, ""),
            };
            let (name, value) = match word.split_once('=') {
                Some((n, v)) => (n, v),
                None => (word, ""),
            };
            if name.is_empty() {
                return Err(format!("{keyword}: empty flag name in {text:?}"));
            }
            flags.push((name.to_string(), value.to_string()));
            rest = after;
        }
    }
    let args = if JSON_FORM.contains(&keyword.as_str()) && rest.starts_with('[') {
        match serde_json::from_str::<Vec<String>>(rest) {
            Ok(v) => Args::Json(v),
            Err(_) if keyword == "SHELL" => {
                return Err(format!("SHELL requires a JSON array, got {rest:?}"));
            }
            // Docker falls back to the shell form for text that is not a JSON array.
            Err(_) => Args::Shell(rest.to_string()),
        }
    } else if keyword == "SHELL" {
        return Err(format!("SHELL requires a JSON array, got {rest:?}"));
    } else {
        Args::Shell(rest.to_string())
    };
    let ins = Instruction {
        line,
        keyword,
        flags,
        args,
        text: text.to_string(),
    };
    check_arity(&ins)?;
    Ok(ins)
}

/// Shape checks that need no variable values.
fn check_arity(ins: &Instruction) -> Result<(), String> {
    let empty = match &ins.args {
        Args::Json(v) => v.is_empty(),
        Args::Shell(s) => s.trim().is_empty(),
    };
    let k = ins.keyword.as_str();
    if empty && !matches!(k, "CMD" | "ENTRYPOINT" | "RUN") {
        return Err(format!("{k} requires at least one argument"));
    }
    match k {
        "COPY" | "ADD" => {
            let n = match &ins.args {
                Args::Json(v) => v.len(),
                Args::Shell(s) => s.split_whitespace().count(),
            };
            if n < 2 {
                return Err(format!(
                    "{k} requires at least two arguments: source and destination"
                ));
            }
            for (f, _) in &ins.flags {
                if !matches!(
                    f.as_str(),
                    "from"
                        | "chown"
                        | "chmod"
                        | "link"
                        | "checksum"
                        | "keep-git-dir"
                        | "parents"
                        | "exclude"
                ) {
                    return Err(format!("{k}: unknown flag --{f}"));
                }
            }
        }
        "FROM" => {
            let words: Vec<&str> = ins.shell().split_whitespace().collect();
            match words.as_slice() {
                [_] => {}
                [_, as_, _] if as_.eq_ignore_ascii_case("as") => {}
                _ => {
                    return Err(format!(
                        "FROM requires IMAGE [AS NAME], got {:?}",
                        ins.shell()
                    ));
                }
            }
            for (f, _) in &ins.flags {
                if f != "platform" {
                    return Err(format!("FROM: unknown flag --{f}"));
                }
            }
        }
        "HEALTHCHECK" => {
            let s = ins.shell().trim();
            let first = s
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            if first != "NONE" && first != "CMD" {
                return Err(format!("HEALTHCHECK must be NONE or CMD …, got {s:?}"));
            }
            for (f, _) in &ins.flags {
                if !matches!(
                    f.as_str(),
                    "interval" | "timeout" | "start-period" | "start-interval" | "retries"
                ) {
                    return Err(format!("HEALTHCHECK: unknown flag --{f}"));
                }
            }
        }
        "ONBUILD" => {
            let inner = ins
                .shell()
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            if matches!(inner.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                return Err(format!("ONBUILD {inner} is not allowed"));
            }
        }
        _ => {}
    }
    Ok(())
}

fn valid_stage_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn stages(instructions: Vec<Instruction>, escape: char, errors: &mut Vec<LineError>) -> Dockerfile {
    let mut df = Dockerfile {
        escape,
        global_args: Vec::new(),
        stages: Vec::new(),
    };
    for ins in instructions {
        if ins.keyword == "FROM" {
            let words: Vec<&str> = ins.shell().split_whitespace().collect();
            let name = words.get(2).map(|n| n.to_ascii_lowercase());
            if let Some(n) = &name {
                if !valid_stage_name(n) {
                    errors.push(LineError {
                        line: ins.line,
                        message: format!("invalid stage name {n:?}: use lower-case letters, digits, '-', '_' and '.'"),
                    });
                } else if df
                    .stages
                    .iter()
                    .any(|s| s.name.as_deref() == Some(n.as_str()))
                {
                    errors.push(LineError {
                        line: ins.line,
                        message: format!("duplicate stage name {n:?}"),
                    });
                }
            }
            df.stages.push(Stage {
                index: df.stages.len(),
                name,
                base: words.first().map(|s| s.to_string()).unwrap_or_default(),
                platform: ins.flag("platform").map(String::from),
                line: ins.line,
                instructions: Vec::new(),
            });
        } else if let Some(stage) = df.stages.last_mut() {
            stage.instructions.push(ins);
        } else if ins.keyword == "ARG" {
            df.global_args.push(ins);
        } else {
            errors.push(LineError {
                line: ins.line,
                message: format!(
                    "{} before the first FROM (only ARG may come first)",
                    ins.keyword
                ),
            });
        }
    }
    if df.stages.is_empty() && errors.is_empty() {
        errors.push(LineError {
            line: 0,
            message: "no FROM instruction".to_string(),
        });
    }
    df
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_flags_and_forms() {
        let text = "# syntax=docker/dockerfile:1\n\
                    ARG BASE=scratch\n\
                    FROM --platform=linux/amd64 $BASE AS Build\n\
                    # a comment\n\
                    COPY --chown=1:2 --chmod=755 a b \\\n\
                    # comment inside\n\
                    \n\
                      /dst/\n\
                    FROM build\n\
                    CMD [\"/bin/app\", \"-v\"]\n\
                    entrypoint echo hi\n";
        let df = parse("Dockerfile", text).unwrap();
        assert_eq!(df.global_args.len(), 1);
        assert_eq!(df.stages.len(), 2);
        let s = &df.stages[0];
        assert_eq!(s.name.as_deref(), Some("build"));
        assert_eq!(s.base, "$BASE");
        assert_eq!(s.platform.as_deref(), Some("linux/amd64"));
        let copy = &s.instructions[0];
        assert_eq!(copy.line, 5);
        assert_eq!(copy.flag("chown"), Some("1:2"));
        assert_eq!(copy.flag("chmod"), Some("755"));
        assert_eq!(
            copy.shell().split_whitespace().collect::<Vec<_>>(),
            ["a", "b", "/dst/"]
        );
        let cmd = &df.stages[1].instructions[0];
        assert_eq!(cmd.args, Args::Json(vec!["/bin/app".into(), "-v".into()]));
        assert_eq!(df.stages[1].instructions[1].keyword, "ENTRYPOINT");
    }

    #[test]
    fn escape_directive() {
        let df = parse("D", "# escape=`\nFROM scratch\nCOPY a `\n  b\n").unwrap();
        assert_eq!(df.escape, '`');
        assert_eq!(df.stages[0].instructions[0].shell(), "a   b");
    }

    #[test]
    fn errors_are_collected_with_lines() {
        let e = parse(
            "app/Dockerfile",
            "COPY a b\nFROM scratch\nFOO bar\nCOPY a\nFROM x AS y\nFROM z AS y\n",
        )
        .unwrap_err();
        let msg = e.to_string();
        assert_eq!(
            e.errors.iter().map(|e| e.line).collect::<Vec<_>>(),
            [1, 3, 4, 6],
            "{msg}"
        );
        assert!(
            msg.contains("app/Dockerfile:3: unknown instruction \"FOO\""),
            "{msg}"
        );
        assert!(
            msg.contains("app/Dockerfile:6: duplicate stage name \"y\""),
            "{msg}"
        );
        assert_eq!(
            parse("D", "# only a comment\n").unwrap_err().to_string(),
            "D: no FROM instruction"
        );
        assert!(parse("D", "FROM a b\n").is_err());
        assert!(parse("D", "FROM a\nSHELL sh -c\n").is_err());
        assert!(parse("D", "FROM a\nCOPY --bogus=1 a b\n").is_err());
    }
}
