//! Playbook and task files → plays and tasks, each with the `file:line:column` it came from.
//!
//! Owns: reading a playbook, a role's task/defaults/vars file or an included task file, and
//! turning it into [`Play`]s and [`Task`]s; every unknown keyword, unknown module, unknown
//! module parameter and malformed value is collected (not only the first) with its position
//! and, where a typo is likely, a "did you mean". Must not: template anything, run anything,
//! or decide which role a name means (that needs the native roles: see `interp`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::text::yaml::{self, Mark, Node, Value as Y};

mod args;
mod keywords;
mod parse;
mod parse_task;
#[cfg(test)]
mod tests;

pub use args::key_values;
pub use keywords::{Module, PLAY_KEYWORDS, TASK_KEYWORDS};
use parse::Parser;

/// Where a play, task or value was written. `file` is the path as the user thinks of it
/// (relative to the project directory when it is inside it), `path` the one to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pos {
    pub file: Arc<str>,
    pub path: Arc<Path>,
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

impl Pos {
    /// `file:line`, the form task failures are reported in.
    pub fn short(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    /// The directory of the file (include_tasks paths are relative to it).
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }
}

/// A playbook, task or vars file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PlaybookError {
    #[error("{file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{mark}: invalid YAML: {message}")]
    Yaml {
        file: String,
        mark: Mark,
        message: String,
    },
    #[error("{pos}: {message}")]
    Invalid { pos: Pos, message: String },
    /// More than one of the above (every problem of a playbook is reported at once).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Several(Vec<PlaybookError>),
}

impl PlaybookError {
    /// One error for a list of them (the list is never empty in practice).
    pub fn from_list(mut errors: Vec<PlaybookError>) -> PlaybookError {
        if errors.len() == 1 {
            errors.remove(0)
        } else {
            PlaybookError::Several(errors)
        }
    }
}

/// The modules the interpreter runs (`ansible.builtin.` / `ansible.legacy.` prefixes accepted).
/// A condition (`when`, `failed_when`, …): a literal boolean or a Jinja expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Cond {
    Bool(bool),
    Expr(String),
}

/// A boolean keyword that may be a template (`no_log: "{{ x }}"`).
pub type Flag = Cond;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoopKind {
    /// `loop:` — the list as it is.
    Loop,
    /// `with_items:` — flattened one level.
    WithItems,
    /// `with_dict:` — `{key, value}` items.
    WithDict,
    /// `with_sequence: start=1 end=3 format=x%02d` (or `count=`, `stride=`).
    WithSequence,
    /// `with_together:` — lists zipped (shorter ones padded with null).
    WithTogether,
    /// `with_subelements: [list, key]` — `(element, sub-item)` pairs.
    WithSubelements,
    /// `with_fileglob:` — files matching the patterns (relative to `files/`).
    WithFileglob,
}

#[derive(Clone, Debug)]
pub struct Loop {
    pub kind: LoopKind,
    pub items: Value,
    /// `loop_control.loop_var` (default `item`).
    pub var: String,
    pub label: Option<String>,
    pub index_var: Option<String>,
    /// `loop_control.extended`: `ansible_loop` with index, first, last, length.
    pub extended: bool,
}

#[derive(Clone, Debug)]
pub struct Play {
    pub pos: Pos,
    /// The host pattern (`all`, `localhost`, `all[0]`, `all:!x`, …), evaluated over the
    /// job's inventory (one host, `localhost`, in the groups `all` and `ungrouped`).
    pub hosts: Vec<String>,
    pub name: Option<String>,
    pub vars: Map<String, Value>,
    pub vars_files: Vec<(Pos, String)>,
    pub environment: Option<Value>,
    pub roles: Vec<RoleRef>,
    pub pre_tasks: Vec<Task>,
    pub tasks: Vec<Task>,
    pub post_tasks: Vec<Task>,
    pub handlers: Vec<Task>,
}

/// An entry of a play's `roles:`.
#[derive(Clone, Debug)]
pub struct RoleRef {
    pub pos: Pos,
    pub name: String,
    /// `vars:` and any other key of the entry (role parameters).
    pub params: Map<String, Value>,
    pub when: Vec<Cond>,
}

#[derive(Clone, Debug)]
pub struct Task {
    pub pos: Pos,
    pub name: Option<String>,
    pub when: Vec<Cond>,
    pub looping: Option<Loop>,
    pub vars: Map<String, Value>,
    pub register: Option<String>,
    pub failed_when: Option<Vec<Cond>>,
    pub changed_when: Option<Vec<Cond>>,
    pub ignore_errors: Option<Flag>,
    pub no_log: Option<Flag>,
    pub environment: Option<Value>,
    pub until: Option<Vec<Cond>>,
    pub retries: Option<Value>,
    pub delay: Option<Value>,
    /// Handlers to run (once, at the end of the play's section) when this task changed.
    pub notify: Vec<String>,
    /// A handler's extra names (`listen`).
    pub listen: Vec<String>,
    pub action: Action,
}

#[derive(Clone, Debug)]
pub enum Action {
    Module {
        module: Module,
        /// Always a mapping; a free-form command line is under `_raw_params`.
        args: Value,
    },
    Block {
        block: Vec<Task>,
        rescue: Vec<Task>,
        always: Vec<Task>,
    },
    /// `include_role` / `import_role` (both run when reached). The `when` of an
    /// include applies once; that of an import to each task of the role, as Ansible's
    /// static import copies it onto them.
    Role {
        name: String,
        tasks_from: Option<String>,
        vars_from: Option<String>,
        defaults_from: Option<String>,
        /// `vars:` given inside the include (role parameters).
        params: Map<String, Value>,
        /// `import_role` (not `include_role`).
        import: bool,
    },
    /// `include_tasks` / `import_tasks`: a file relative to the including file; for an
    /// import (`import: true`) the `when` goes onto each task of the file.
    Tasks { file: String, import: bool },
    /// `meta: flush_handlers` (or `noop`, `end_play`, `end_host`, `clear_host_errors`,
    /// `refresh_inventory`, `reset_connection`).
    Meta { what: String },
}

impl Action {
    /// What a task without a name is called in the log (`shell`, `include_role`, …).
    pub fn label(&self) -> &'static str {
        match self {
            Action::Module { module, .. } => module.name(),
            Action::Block { .. } => "block",
            Action::Role { .. } => "include_role",
            Action::Tasks { .. } => "include_tasks",
            Action::Meta { .. } => "meta",
        }
    }
}

/// Shows paths relative to the project directory when they are inside it.
#[derive(Clone, Debug)]
pub struct Files {
    pub project_dir: PathBuf,
    /// The job's role directories (`roles:`), after the project's.
    pub role_paths: Vec<PathBuf>,
}

impl Files {
    pub fn display(&self, path: &Path) -> Arc<str> {
        let shown = path.strip_prefix(&self.project_dir).unwrap_or(path);
        Arc::from(shown.to_string_lossy().as_ref())
    }

    fn read(&self, path: &Path) -> Result<(Arc<str>, Option<Node>), PlaybookError> {
        let file = self.display(path);
        let text = std::fs::read_to_string(path).map_err(|source| PlaybookError::Read {
            file: file.to_string(),
            source,
        })?;
        let mut node = yaml::parse(&text).map_err(|e| PlaybookError::Yaml {
            file: file.to_string(),
            mark: e.mark,
            message: e.message,
        })?;
        if let Some(n) = &mut node {
            pyyaml_scalars(n, &text);
        }
        Ok((file, node))
    }

    /// A playbook: a list of plays (`import_playbook` entries expanded in place), and
    /// every problem found; the plays that could be read are returned even with problems,
    /// so that later checks (roles, included files) report theirs too.
    pub fn playbook(&self, path: &Path) -> (Vec<Play>, Vec<PlaybookError>) {
        let mut errors = Vec::new();
        let mut plays = Vec::new();
        self.playbook_into(path, &mut plays, &mut errors, 0);
        (plays, errors)
    }

    fn playbook_into(
        &self,
        path: &Path,
        plays: &mut Vec<Play>,
        errors: &mut Vec<PlaybookError>,
        depth: usize,
    ) {
        let (file, node) = match self.read(path) {
            Ok(x) => x,
            Err(e) => return errors.push(e),
        };
        let mut p = Parser {
            file,
            path: Arc::from(path),
            errors,
        };
        let Some(node) = node else { return };
        let Y::Seq(items) = &node.value else {
            return p.error(
                node.mark,
                format!("a playbook is a list of plays, found {}", node.kind()),
            );
        };
        for item in items {
            let import = match &item.value {
                Y::Map(entries) => entries.iter().find(|(k, _)| {
                    matches!(
                        k.key_text().as_str(),
                        "import_playbook" | "ansible.builtin.import_playbook"
                    )
                }),
                _ => None,
            };
            if let Some((_, target)) = import {
                let Some(target) = target.as_str() else {
                    p.error(target.mark, "import_playbook takes a file name".into());
                    continue;
                };
                if depth > 16 {
                    p.error(
                        item.mark,
                        "import_playbook nested too deeply (a cycle?)".into(),
                    );
                    continue;
                }
                let target = path.parent().unwrap_or(Path::new(".")).join(target);
                self.playbook_into(&target, plays, p.errors, depth + 1);
            } else if let Some(play) = p.play(item) {
                plays.push(play);
            }
        }
    }

    /// A task file (role `tasks/*.yaml`, `include_tasks`): a list of tasks.
    pub fn tasks(&self, path: &Path) -> Result<Vec<Task>, Vec<PlaybookError>> {
        let (file, node) = self.read(path).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        let mut p = Parser {
            file,
            path: Arc::from(path),
            errors: &mut errors,
        };
        let tasks = match node {
            None => Vec::new(),
            Some(n) => p.task_list(&n, "a task file"),
        };
        if errors.is_empty() {
            Ok(tasks)
        } else {
            Err(errors)
        }
    }

    /// A vars file (role `defaults/`, `vars/`, `vars_files`): a mapping, or nothing.
    pub fn vars(&self, path: &Path) -> Result<Map<String, Value>, PlaybookError> {
        let (file, node) = self.read(path)?;
        match node {
            None => Ok(Map::new()),
            Some(n) => match to_json(&n) {
                Value::Object(m) => Ok(m),
                _ => Err(PlaybookError::Invalid {
                    pos: Pos {
                        file,
                        path: Arc::from(path),
                        line: n.mark.line,
                        column: n.mark.column,
                    },
                    message: format!("a vars file is a mapping, found {}", n.kind()),
                }),
            },
        }
    }
}

/// Plain scalars as PyYAML (YAML 1.1, Ansible's reader) resolves them: `010` and `0o17`,
/// `0x1F`, `0b101`, `1_000`, sexagesimal `1:30` (= 90) are integers or strings as PyYAML
/// says; a float needs a dot (`1e3` is a string, `1.0e+3` a float).
fn pyyaml_scalars(n: &mut Node, text: &str) {
    let raw = n.source(text).map(str::trim);
    match &mut n.value {
        Y::Seq(items) => items.iter_mut().for_each(|i| pyyaml_scalars(i, text)),
        Y::Map(entries) => entries
            .iter_mut()
            .for_each(|(_, v)| pyyaml_scalars(v, text)),
        Y::Int(_) | Y::Float(_) | Y::Str(_) if n.tag.is_none() => {
            let Some(raw) = raw else {
                return;
            };
            if raw.starts_with(['"', '\'', '|', '>', '*', '&', '!']) || raw.contains('\n') {
                return;
            }
            if let Some(v) = yaml11_number(raw) {
                n.value = v;
            } else if matches!(n.value, Y::Int(_) | Y::Float(_)) {
                n.value = Y::Str(raw.to_string());
            }
        }
        _ => {}
    }
}

fn yaml11_number(raw: &str) -> Option<Y> {
    let (neg, body) = match raw.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, raw.strip_prefix('+').unwrap_or(raw)),
    };
    if body.is_empty() {
        return None;
    }
    let sign = |i: i64| if neg { -i } else { i };
    let clean = body.replace('_', "");
    let int = |digits: &str, radix: u32| {
        i64::from_str_radix(digits, radix)
            .ok()
            .map(|i| Y::Int(sign(i)))
    };
    if let Some(b) = clean.strip_prefix("0b") {
        return int(b, 2);
    }
    if let Some(h) = clean.strip_prefix("0x") {
        return int(h, 16);
    }
    if !clean.is_empty() && clean.bytes().all(|b| b.is_ascii_digit()) {
        if clean.len() > 1 && clean.starts_with('0') {
            return if clean.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                int(&clean, 8)
            } else {
                None
            };
        }
        return int(&clean, 10);
    }
    if body.contains(':') && !body.contains('.') {
        let parts: Vec<&str> = clean.split(':').collect();
        if parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            && !parts[0].starts_with('0')
            && parts[1..]
                .iter()
                .all(|p| p.parse::<u32>().is_ok_and(|x| x < 60))
        {
            let v = parts
                .iter()
                .fold(0i64, |acc, p| acc * 60 + p.parse::<i64>().unwrap_or(0));
            return Some(Y::Int(sign(v)));
        }
        return None;
    }
    let lower = body.to_ascii_lowercase();
    if lower == ".inf" {
        return Some(Y::Float(if neg {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        }));
    }
    if lower == ".nan" && !neg {
        return Some(Y::Float(f64::NAN));
    }
    let re = regex::Regex::new(r"^([0-9][0-9_]*)?\.[0-9_]*([eE][-+][0-9]+)?$").ok()?;
    if re.is_match(body) && body != "." {
        return clean
            .parse::<f64>()
            .ok()
            .map(|f| Y::Float(if neg { -f } else { f }));
    }
    None
}

/// YAML → JSON for values the interpreter templates.
pub(crate) fn to_json(n: &Node) -> Value {
    match &n.value {
        Y::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        Y::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.key_text(), to_json(v)))
                .collect(),
        ),
        _ => n.to_json(),
    }
}

/// A YAML text as Ansible's `from_yaml` reads it (PyYAML's YAML 1.1 scalars).
pub(crate) fn yaml_value(text: &str) -> Result<Value, String> {
    let mut node = yaml::parse(text).map_err(|e| format!("{}: {}", e.mark, e.message))?;
    Ok(match &mut node {
        Some(n) => {
            pyyaml_scalars(n, text);
            to_json(n)
        }
        None => Value::Null,
    })
}
