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

use crate::text::suggest;
use crate::text::yaml::{self, Mark, Node, Value as Y};

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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Module {
    Shell,
    Command,
    SetFact,
    Debug,
    Fail,
    Assert,
    Copy,
    Template,
    File,
    Stat,
    ZuulReturn,
}

impl Module {
    pub const ALL: &'static [Module] = &[
        Module::Shell,
        Module::Command,
        Module::SetFact,
        Module::Debug,
        Module::Fail,
        Module::Assert,
        Module::Copy,
        Module::Template,
        Module::File,
        Module::Stat,
        Module::ZuulReturn,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Module::Shell => "shell",
            Module::Command => "command",
            Module::SetFact => "set_fact",
            Module::Debug => "debug",
            Module::Fail => "fail",
            Module::Assert => "assert",
            Module::Copy => "copy",
            Module::Template => "template",
            Module::File => "file",
            Module::Stat => "stat",
            Module::ZuulReturn => "zuul_return",
        }
    }

    pub fn from_name(name: &str) -> Option<Module> {
        let short = name
            .strip_prefix("ansible.builtin.")
            .or_else(|| name.strip_prefix("ansible.legacy."))
            .unwrap_or(name);
        Module::ALL.iter().copied().find(|m| m.name() == short)
    }

    /// The parameters a module takes; `None`: any (set_fact's keys are the facts).
    /// `owner`, `group` and friends are accepted and ignored: everything runs as the user
    /// running gantry, on this machine.
    pub fn params(self) -> Option<&'static [&'static str]> {
        Some(match self {
            Module::Shell => &[
                "_raw_params",
                "cmd",
                "chdir",
                "executable",
                "creates",
                "removes",
                "stdin",
                "warn",
            ],
            Module::Command => &[
                "_raw_params",
                "cmd",
                "argv",
                "chdir",
                "creates",
                "removes",
                "stdin",
                "warn",
            ],
            Module::SetFact => return None,
            Module::Debug => &["msg", "var", "verbosity"],
            Module::Fail => &["msg"],
            Module::Assert => &["that", "fail_msg", "msg", "success_msg", "quiet"],
            Module::Copy => &[
                "content",
                "src",
                "dest",
                "mode",
                "remote_src",
                "force",
                "owner",
                "group",
                "backup",
            ],
            Module::Template => &["src", "dest", "mode", "force", "owner", "group", "backup"],
            Module::File => &[
                "path", "dest", "name", "state", "mode", "src", "owner", "group", "recurse",
                "force",
            ],
            Module::Stat => &["path", "follow", "get_checksum", "get_md5", "get_mime"],
            Module::ZuulReturn => &["data", "secret_data", "file"],
        })
    }

    /// Parameters that must be present (checked when the arguments are not a template).
    fn required(self) -> &'static [&'static [&'static str]] {
        match self {
            Module::Copy => &[&["dest"], &["content", "src"]],
            Module::Template => &[&["src"], &["dest"]],
            Module::File | Module::Stat => &[&["path", "dest", "name"]],
            Module::Assert => &[&["that"]],
            Module::Shell => &[&["_raw_params", "cmd"]],
            Module::Command => &[&["_raw_params", "cmd", "argv"]],
            _ => &[],
        }
    }

    /// Modules whose string argument is a command line (`shell: echo hi`), not `k=v` pairs.
    fn free_form(self) -> bool {
        matches!(self, Module::Shell | Module::Command)
    }
}

/// Task keywords (besides the action itself).
pub const TASK_KEYWORDS: &[&str] = &[
    "name",
    "when",
    "loop",
    "with_items",
    "with_list",
    "with_dict",
    "loop_control",
    "vars",
    "register",
    "failed_when",
    "changed_when",
    "ignore_errors",
    "no_log",
    "environment",
    "args",
    "until",
    "retries",
    "delay",
    "rescue",
    "always",
    "notify",
    "listen",
    // Accepted and ignored: every task runs on this machine as this user (`delegate_to`
    // may only name this machine), tags select nothing, and there is one host.
    "delegate_to",
    "tags",
    "become",
    "become_user",
    "run_once",
    "check_mode",
    "diff",
];

/// Actions that are not modules.
const CONTROL_ACTIONS: &[&str] = &[
    "block",
    "include_role",
    "import_role",
    "include_tasks",
    "import_tasks",
];

/// Play keywords.
pub const PLAY_KEYWORDS: &[&str] = &[
    "hosts",
    "name",
    "vars",
    "vars_files",
    "roles",
    "pre_tasks",
    "tasks",
    "post_tasks",
    "handlers",
    "environment",
    // Accepted and ignored: facts are not gathered (there is nothing to gather about the
    // one local host that a job needs), privilege escalation is not done (tasks run as
    // the user running gantry), and with one host every error is fatal anyway.
    "gather_facts",
    "become",
    "become_user",
    "any_errors_fatal",
    "tags",
    "connection",
    "strategy",
    "serial",
    "ignore_unreachable",
];

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
    /// `include_role` / `import_role` (both run when reached; `when` applies once).
    Role {
        name: String,
        tasks_from: Option<String>,
        vars_from: Option<String>,
        defaults_from: Option<String>,
        /// `vars:` given inside the include (role parameters).
        params: Map<String, Value>,
    },
    /// `include_tasks` / `import_tasks`: a file relative to the including file.
    Tasks { file: String },
}

impl Action {
    /// What a task without a name is called in the log (`shell`, `include_role`, …).
    pub fn label(&self) -> &'static str {
        match self {
            Action::Module { module, .. } => module.name(),
            Action::Block { .. } => "block",
            Action::Role { .. } => "include_role",
            Action::Tasks { .. } => "include_tasks",
        }
    }
}

/// Shows paths relative to the project directory when they are inside it.
#[derive(Clone, Debug)]
pub struct Files {
    pub project_dir: PathBuf,
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
        let node = yaml::parse(&text).map_err(|e| PlaybookError::Yaml {
            file: file.to_string(),
            mark: e.mark,
            message: e.message,
        })?;
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

/// YAML → JSON for values the interpreter templates. `mode: 0644` is octal to PyYAML but
/// our YAML reader reads it as the float 644.0; give modes back their digits as a string.
fn to_json(n: &Node) -> Value {
    match &n.value {
        Y::Float(f) if f.fract() == 0.0 && *f >= 0.0 && *f < 1e5 => {
            let digits = format!("{}", *f as u64);
            if digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                Value::String(format!("0{digits}"))
            } else {
                n.to_json()
            }
        }
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

struct Parser<'e> {
    file: Arc<str>,
    path: Arc<Path>,
    errors: &'e mut Vec<PlaybookError>,
}

impl Parser<'_> {
    fn pos(&self, mark: Mark) -> Pos {
        Pos {
            file: self.file.clone(),
            path: self.path.clone(),
            line: mark.line,
            column: mark.column,
        }
    }

    fn error(&mut self, mark: Mark, message: String) {
        let pos = self.pos(mark);
        self.errors.push(PlaybookError::Invalid { pos, message });
    }

    /// The entries of a mapping, with duplicate keys reported.
    fn entries<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
    ) -> Option<Vec<(String, &'n Node, &'n Node)>> {
        let Y::Map(entries) = &node.value else {
            self.error(
                node.mark,
                format!("{what} must be a mapping, found {}", node.kind()),
            );
            return None;
        };
        let mut out: Vec<(String, &Node, &Node)> = Vec::new();
        for (k, v) in entries {
            let key = k.key_text();
            if out.iter().any(|(seen, _, _)| *seen == key) {
                self.error(k.mark, format!("duplicate key \"{key}\" in {what}"));
                continue;
            }
            out.push((key, k, v));
        }
        Some(out)
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.value {
            Y::Str(s) => Some(s.clone()),
            Y::Int(_) | Y::Float(_) | Y::Bool(_) => Some(node.key_text()),
            _ => {
                self.error(
                    node.mark,
                    format!("{what} must be a string, found {}", node.kind()),
                );
                None
            }
        }
    }

    fn mapping(&mut self, node: &Node, what: &str) -> Map<String, Value> {
        match to_json(node) {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            _ => {
                self.error(
                    node.mark,
                    format!("{what} must be a mapping, found {}", node.kind()),
                );
                Map::new()
            }
        }
    }

    /// A name or a list of names.
    fn names(&mut self, node: &Node, what: &str) -> Vec<String> {
        match &node.value {
            Y::Seq(items) => items.iter().filter_map(|i| self.string(i, what)).collect(),
            _ => self.string(node, what).into_iter().collect(),
        }
    }

    fn conditions(&mut self, node: &Node, what: &str) -> Vec<Cond> {
        match &node.value {
            Y::Seq(items) => items
                .iter()
                .filter_map(|i| self.condition(i, what))
                .collect(),
            _ => self.condition(node, what).into_iter().collect(),
        }
    }

    fn condition(&mut self, node: &Node, what: &str) -> Option<Cond> {
        match &node.value {
            Y::Bool(b) => Some(Cond::Bool(*b)),
            Y::Str(s) => Some(Cond::Expr(s.clone())),
            Y::Int(i) => Some(Cond::Bool(*i != 0)),
            _ => {
                self.error(
                    node.mark,
                    format!(
                        "{what} must be a condition (a string or a boolean), found {}",
                        node.kind()
                    ),
                );
                None
            }
        }
    }

    fn play(&mut self, node: &Node) -> Option<Play> {
        let entries = self.entries(node, "a play")?;
        let mut play = Play {
            pos: self.pos(node.mark),
            name: None,
            vars: Map::new(),
            vars_files: Vec::new(),
            environment: None,
            roles: Vec::new(),
            pre_tasks: Vec::new(),
            tasks: Vec::new(),
            post_tasks: Vec::new(),
            handlers: Vec::new(),
        };
        let mut hosts = false;
        for (key, k, v) in entries {
            match key.as_str() {
                "hosts" => {
                    hosts = true;
                    self.hosts(v);
                }
                "name" => play.name = self.string(v, "a play's name"),
                "vars" => play.vars = self.mapping(v, "a play's vars"),
                "vars_files" => {
                    let files: Vec<&Node> = match &v.value {
                        Y::Seq(items) => items.iter().collect(),
                        _ => vec![v],
                    };
                    for f in files {
                        if let Some(s) = self.string(f, "a vars_files entry") {
                            play.vars_files.push((self.pos(f.mark), s));
                        }
                    }
                }
                "environment" => play.environment = Some(to_json(v)),
                "roles" => play.roles = self.roles(v),
                "pre_tasks" => play.pre_tasks = self.task_list(v, "pre_tasks"),
                "tasks" => play.tasks = self.task_list(v, "tasks"),
                "post_tasks" => play.post_tasks = self.task_list(v, "post_tasks"),
                "handlers" => play.handlers = self.task_list(v, "handlers"),
                other if PLAY_KEYWORDS.contains(&other) => {}
                other => {
                    let hint = suggest::hint(other, PLAY_KEYWORDS.iter().copied());
                    self.error(
                        k.mark,
                        format!(
                            "unknown play keyword \"{other}\"{hint}; supported: {}",
                            PLAY_KEYWORDS.join(", ")
                        ),
                    );
                }
            }
        }
        if !hosts {
            self.error(
                node.mark,
                "a play needs \"hosts\" (all or localhost)".into(),
            );
        }
        Some(play)
    }

    /// `hosts`: everything runs on this machine, so only the names meaning "here" are valid.
    fn hosts(&mut self, node: &Node) {
        let names: Vec<(Mark, String)> = match &node.value {
            Y::Str(s) => s
                .split([',', ':'])
                .map(|h| (node.mark, h.trim().to_string()))
                .filter(|(_, h)| !h.is_empty())
                .collect(),
            Y::Seq(items) => items
                .iter()
                .filter_map(|i| self.string(i, "a host").map(|s| (i.mark, s)))
                .collect(),
            _ => {
                self.error(
                    node.mark,
                    format!("hosts must be a string or a list, found {}", node.kind()),
                );
                return;
            }
        };
        for (mark, h) in names {
            if !matches!(h.as_str(), "all" | "localhost" | "127.0.0.1") {
                self.error(
                    mark,
                    format!("hosts \"{h}\": gantry runs every play on this machine; use \"all\" or \"localhost\""),
                );
            }
        }
    }

    fn roles(&mut self, node: &Node) -> Vec<RoleRef> {
        let Y::Seq(items) = &node.value else {
            self.error(
                node.mark,
                format!("roles must be a list, found {}", node.kind()),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            match &item.value {
                Y::Str(name) => out.push(RoleRef {
                    pos: self.pos(item.mark),
                    name: name.clone(),
                    params: Map::new(),
                    when: Vec::new(),
                }),
                Y::Map(_) => {
                    let Some(entries) = self.entries(item, "a role entry") else {
                        continue;
                    };
                    let mut name = None;
                    let mut params = Map::new();
                    let mut when = Vec::new();
                    for (key, _, v) in entries {
                        match key.as_str() {
                            "role" | "name" => name = self.string(v, "a role name"),
                            "vars" => params.extend(self.mapping(v, "a role's vars")),
                            "when" => when = self.conditions(v, "when"),
                            "tags" | "become" | "become_user" | "delegate_to" => {}
                            _ => {
                                params.insert(key, to_json(v));
                            }
                        }
                    }
                    match name {
                        Some(name) => out.push(RoleRef {
                            pos: self.pos(item.mark),
                            name,
                            params,
                            when,
                        }),
                        None => self.error(
                            item.mark,
                            "a role entry needs \"role\" (the role's name)".into(),
                        ),
                    }
                }
                _ => self.error(
                    item.mark,
                    format!(
                        "a role entry is a name or a mapping with \"role\", found {}",
                        item.kind()
                    ),
                ),
            }
        }
        out
    }

    fn task_list(&mut self, node: &Node, what: &str) -> Vec<Task> {
        match &node.value {
            Y::Null => Vec::new(),
            Y::Seq(items) => items.iter().filter_map(|t| self.task(t)).collect(),
            _ => {
                self.error(
                    node.mark,
                    format!("{what} must be a list of tasks, found {}", node.kind()),
                );
                Vec::new()
            }
        }
    }

    fn task(&mut self, node: &Node) -> Option<Task> {
        let entries = self.entries(node, "a task")?;
        let mut task = Task {
            pos: self.pos(node.mark),
            name: None,
            when: Vec::new(),
            looping: None,
            vars: Map::new(),
            register: None,
            failed_when: None,
            changed_when: None,
            ignore_errors: None,
            no_log: None,
            environment: None,
            until: None,
            retries: None,
            delay: None,
            notify: Vec::new(),
            listen: Vec::new(),
            action: Action::Tasks {
                file: String::new(),
            },
        };
        let mut action: Option<(String, &Node, &Node)> = None;
        let mut unknown: Vec<(String, &Node)> = Vec::new();
        let mut args: Option<&Node> = None;
        let mut loop_control: Option<&Node> = None;
        let mut rescue: Option<&Node> = None;
        let mut always: Option<&Node> = None;
        for (key, k, v) in entries {
            match key.as_str() {
                "name" => task.name = self.string(v, "a task's name"),
                "when" => task.when = self.conditions(v, "when"),
                "loop" | "with_items" | "with_list" | "with_dict" => {
                    if task.looping.is_some() {
                        self.error(
                            k.mark,
                            "a task has one loop (loop, with_items, with_list or with_dict)".into(),
                        );
                    }
                    let kind = match key.as_str() {
                        "with_items" => LoopKind::WithItems,
                        "with_dict" => LoopKind::WithDict,
                        _ => LoopKind::Loop,
                    };
                    task.looping = Some(Loop {
                        kind,
                        items: to_json(v),
                        var: "item".into(),
                        label: None,
                        index_var: None,
                        extended: false,
                    });
                }
                "loop_control" => loop_control = Some(v),
                "vars" => task.vars = self.mapping(v, "a task's vars"),
                "register" => task.register = self.string(v, "register"),
                "failed_when" => task.failed_when = Some(self.conditions(v, "failed_when")),
                "changed_when" => task.changed_when = Some(self.conditions(v, "changed_when")),
                "until" => task.until = Some(self.conditions(v, "until")),
                "ignore_errors" => task.ignore_errors = self.condition(v, "ignore_errors"),
                "no_log" => task.no_log = self.condition(v, "no_log"),
                "environment" => task.environment = Some(to_json(v)),
                "notify" => task.notify = self.names(v, "notify"),
                "listen" => task.listen = self.names(v, "listen"),
                "retries" => task.retries = Some(to_json(v)),
                "delay" => task.delay = Some(to_json(v)),
                "args" => args = Some(v),
                "rescue" => rescue = Some(v),
                "always" => always = Some(v),
                "delegate_to" => {
                    if let Some(s) = v.as_str()
                        && !matches!(s, "localhost" | "127.0.0.1" | "::1")
                    {
                        self.error(
                            v.mark,
                            format!("delegate_to \"{s}\": gantry runs every task on this machine; only localhost is accepted"),
                        );
                    }
                }
                other if TASK_KEYWORDS.contains(&other) => {}
                other if Module::from_name(other).is_some() || CONTROL_ACTIONS.contains(&other) => {
                    if let Some((first, _, _)) = &action {
                        self.error(
                            k.mark,
                            format!("conflicting action statements: {first}, {other}"),
                        );
                    } else {
                        action = Some((key.clone(), k, v));
                    }
                }
                _ => unknown.push((key, k)),
            }
        }
        let modules: Vec<&str> = Module::ALL.iter().map(|m| m.name()).collect();
        // With no action, the first unknown key that does not look like a misspelled
        // keyword is the module the author meant.
        let mut module_reported = action.is_some();
        for (key, k) in &unknown {
            let near_keyword = suggest::closest(key, TASK_KEYWORDS.iter().copied()).is_some();
            if module_reported || near_keyword {
                let hint = suggest::hint(
                    key,
                    TASK_KEYWORDS
                        .iter()
                        .copied()
                        .chain(CONTROL_ACTIONS.iter().copied()),
                );
                self.error(
                    k.mark,
                    format!(
                        "unknown task keyword \"{key}\"{hint}; supported: {}",
                        TASK_KEYWORDS.join(", ")
                    ),
                );
            } else {
                let hint = suggest::hint(
                    key.strip_prefix("ansible.builtin.").unwrap_or(key),
                    modules
                        .iter()
                        .copied()
                        .chain(CONTROL_ACTIONS.iter().copied()),
                );
                self.error(
                    k.mark,
                    format!(
                        "unknown module \"{key}\"{hint}; supported modules: {}; and {}",
                        modules.join(", "),
                        CONTROL_ACTIONS.join(", ")
                    ),
                );
                module_reported = true;
            }
        }
        if let Some(lc) = loop_control {
            self.loop_control(lc, &mut task.looping);
        }
        let Some((key, k, v)) = action else {
            if unknown.is_empty() {
                self.error(
                    node.mark,
                    "a task needs an action: a module, block, include_role or include_tasks".into(),
                );
            }
            return None;
        };
        if key != "block" && (rescue.is_some() || always.is_some()) {
            self.error(k.mark, "rescue and always belong to a block".into());
        }
        task.action = match key.as_str() {
            "block" => {
                if task.looping.is_some() {
                    self.error(
                        k.mark,
                        "a block cannot loop (loop over an include_tasks instead)".into(),
                    );
                }
                Action::Block {
                    block: self.task_list(v, "block"),
                    rescue: rescue
                        .map(|r| self.task_list(r, "rescue"))
                        .unwrap_or_default(),
                    always: always
                        .map(|a| self.task_list(a, "always"))
                        .unwrap_or_default(),
                }
            }
            "include_role" | "import_role" => self.role_action(v, &key)?,
            "include_tasks" | "import_tasks" => {
                let file = match &v.value {
                    Y::Map(_) => {
                        let mut file = None;
                        for (key, kk, vv) in self.entries(v, &key)? {
                            match key.as_str() {
                                "file" => file = self.string(vv, "file"),
                                "apply" => {}
                                other => self.error(
                                    kk.mark,
                                    format!("unknown {key} parameter \"{other}\"; supported: file"),
                                ),
                            }
                        }
                        file
                    }
                    _ => self.string(v, &key),
                };
                let Some(file) = file else {
                    self.error(v.mark, format!("{key} needs a file"));
                    return None;
                };
                Action::Tasks { file }
            }
            _ => {
                let module = Module::from_name(&key)?;
                Action::Module {
                    module,
                    args: self.module_args(module, v, args)?,
                }
            }
        };
        Some(task)
    }

    fn loop_control(&mut self, node: &Node, looping: &mut Option<Loop>) {
        let Some(entries) = self.entries(node, "loop_control") else {
            return;
        };
        let Some(l) = looping else {
            return self.error(node.mark, "loop_control without a loop".into());
        };
        const KEYS: &[&str] = &["loop_var", "label", "index_var", "extended", "pause"];
        for (key, k, v) in entries {
            match key.as_str() {
                "loop_var" => l.var = self.string(v, "loop_var").unwrap_or_else(|| "item".into()),
                "label" => l.label = self.string(v, "label"),
                "index_var" => l.index_var = self.string(v, "index_var"),
                "extended" => l.extended = matches!(v.value, Y::Bool(true)),
                "pause" => {}
                other => {
                    let hint = suggest::hint(other, KEYS.iter().copied());
                    self.error(
                        k.mark,
                        format!(
                            "unknown loop_control key \"{other}\"{hint}; supported: {}",
                            KEYS.join(", ")
                        ),
                    );
                }
            }
        }
    }

    fn role_action(&mut self, node: &Node, key: &str) -> Option<Action> {
        const KEYS: &[&str] = &[
            "name",
            "tasks_from",
            "vars_from",
            "defaults_from",
            "vars",
            "public",
            "allow_duplicates",
            "apply",
            "handlers_from",
            "rolespec_validate",
        ];
        let mut name = None;
        let mut tasks_from = None;
        let mut vars_from = None;
        let mut defaults_from = None;
        let mut params = Map::new();
        for (k, kn, v) in self.entries(node, key)? {
            match k.as_str() {
                "name" => name = self.string(v, "a role name"),
                "tasks_from" => tasks_from = self.string(v, "tasks_from"),
                "vars_from" => vars_from = self.string(v, "vars_from"),
                "defaults_from" => defaults_from = self.string(v, "defaults_from"),
                "vars" => params = self.mapping(v, "vars"),
                other if KEYS.contains(&other) => {}
                other => {
                    let hint = suggest::hint(other, KEYS.iter().copied());
                    self.error(
                        kn.mark,
                        format!(
                            "unknown {key} parameter \"{other}\"{hint}; supported: {}",
                            KEYS.join(", ")
                        ),
                    );
                }
            }
        }
        let Some(name) = name else {
            self.error(node.mark, format!("{key} needs \"name\""));
            return None;
        };
        Some(Action::Role {
            name,
            tasks_from,
            vars_from,
            defaults_from,
            params,
        })
    }

    /// Module arguments as one mapping: `args:` first, then the module's own (which win).
    fn module_args(&mut self, module: Module, node: &Node, args: Option<&Node>) -> Option<Value> {
        let mut map = Map::new();
        if let Some(a) = args {
            match to_json(a) {
                Value::Object(m) => map = m,
                _ => self.error(
                    a.mark,
                    format!("args must be a mapping, found {}", a.kind()),
                ),
            }
        }
        match &node.value {
            Y::Null => {}
            Y::Map(_) => {
                if let Value::Object(m) = to_json(node) {
                    map.extend(m);
                }
            }
            Y::Str(s) if module.free_form() => {
                map.insert("_raw_params".into(), Value::String(s.clone()));
            }
            Y::Str(s) => match key_values(s) {
                Some(kv) => map.extend(kv),
                None => {
                    self.error(
                        node.mark,
                        format!(
                            "{} takes key=value pairs or a mapping, found \"{s}\"",
                            module.name()
                        ),
                    );
                    return None;
                }
            },
            _ => {
                self.error(
                    node.mark,
                    format!(
                        "{} arguments must be a mapping, found {}",
                        module.name(),
                        node.kind()
                    ),
                );
                return None;
            }
        }
        if let Some(allowed) = module.params() {
            for key in map.keys() {
                if !allowed.contains(&key.as_str()) {
                    let shown: Vec<&str> = allowed
                        .iter()
                        .copied()
                        .filter(|p| *p != "_raw_params")
                        .collect();
                    let hint = suggest::hint(key, shown.iter().copied());
                    self.error(
                        node.mark,
                        format!(
                            "unsupported parameter \"{key}\" for module {}{hint}; supported: {}",
                            module.name(),
                            shown.join(", ")
                        ),
                    );
                }
            }
            for any_of in module.required() {
                if !any_of.iter().any(|k| map.contains_key(*k)) {
                    let shown: Vec<&str> = any_of
                        .iter()
                        .copied()
                        .filter(|p| *p != "_raw_params")
                        .collect();
                    let what = if module.free_form() {
                        "a command"
                    } else {
                        "parameter"
                    };
                    self.error(
                        node.mark,
                        format!(
                            "module {} needs {what} {}",
                            module.name(),
                            shown.join(" or ")
                        ),
                    );
                }
            }
        }
        Some(Value::Object(map))
    }
}

/// `a=1 b="two words" c={{ x }}` → a mapping; `None` when the text is not such pairs.
pub fn key_values(s: &str) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    for word in split_args(s) {
        let (k, v) = word.split_once('=')?;
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        out.insert(k.to_string(), Value::String(unquote(v)));
    }
    Some(out)
}

/// Splits on whitespace outside quotes and outside `{{ }}` / `{% %}`, as Ansible's
/// `split_args` does, keeping quotes (removed by [`unquote`]).
fn split_args(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut depth = 0usize;
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match quote {
            Some(q) => {
                if c == '\\' && next.is_some() {
                    cur.push(c);
                    cur.extend(next);
                    i += 2;
                    continue;
                }
                if c == q {
                    quote = None;
                }
                cur.push(c);
            }
            None if c == '{' && matches!(next, Some('{') | Some('%')) => {
                depth += 1;
                cur.push(c);
                cur.extend(next);
                i += 2;
                continue;
            }
            None if depth > 0 && matches!(c, '}' | '%') && next == Some('}') => {
                depth -= 1;
                cur.push(c);
                cur.push('}');
                i += 2;
                continue;
            }
            None if (c == '"' || c == '\'') && depth == 0 => {
                quote = Some(c);
                cur.push(c);
            }
            None if c.is_whitespace() && depth == 0 => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            None => cur.push(c),
        }
        i += 1;
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

fn unquote(v: &str) -> String {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            let inner = &v[1..v.len() - 1];
            return if q == '"' {
                inner.replace("\\\"", "\"").replace("\\\\", "\\")
            } else {
                inner.to_string()
            };
        }
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_tasks(text: &str) -> (Vec<Task>, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tasks.yaml");
        std::fs::write(&path, text).unwrap();
        let files = Files {
            project_dir: dir.path().to_path_buf(),
        };
        match files.tasks(&path) {
            Ok(t) => (t, Vec::new()),
            Err(e) => (Vec::new(), e.iter().map(ToString::to_string).collect()),
        }
    }

    #[test]
    fn modules_with_prefix_and_free_form() {
        let (tasks, errors) = parse_tasks(
            "- ansible.builtin.shell: echo hi\n  args: {chdir: /tmp}\n- debug: msg=\"a b\" verbosity=0\n- command:\n    argv: [ls, -l]\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let Action::Module { module, args } = &tasks[0].action else {
            panic!()
        };
        assert_eq!(*module, Module::Shell);
        assert_eq!(args["_raw_params"], "echo hi");
        assert_eq!(args["chdir"], "/tmp");
        let Action::Module { args, .. } = &tasks[1].action else {
            panic!()
        };
        assert_eq!(args["msg"], "a b");
        assert_eq!(tasks[2].pos.line, 4);
    }

    #[test]
    fn unknown_module_and_keyword_suggest() {
        let (_, errors) = parse_tasks("- name: x\n  shel: echo hi\n- shell: echo\n  whne: true\n");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("tasks.yaml:2:3: unknown module \"shel\" (did you mean \"shell\"?); supported modules: shell, command"),
            "{}",
            errors[0]
        );
        assert!(
            errors[1].starts_with(
                "tasks.yaml:4:3: unknown task keyword \"whne\" (did you mean \"when\"?)"
            ),
            "{}",
            errors[1]
        );
    }

    #[test]
    fn bad_parameters_and_missing_ones() {
        let (_, errors) = parse_tasks("- copy: {dset: x, content: y}\n- file: {}\n- shell:\n");
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(
            errors[0].contains(
                "unsupported parameter \"dset\" for module copy (did you mean \"dest\"?)"
            )
        );
        assert!(errors[1].contains("module copy needs parameter dest"));
        assert!(errors[2].contains("module file needs parameter path or dest or name"));
        assert!(errors[3].contains("module shell needs a command cmd"));
    }

    #[test]
    fn blocks_loops_and_includes() {
        let (tasks, errors) = parse_tasks(
            "- block:\n    - debug: {msg: a}\n  rescue:\n    - debug: {msg: b}\n  always:\n    - debug: {msg: c}\n- include_role: {name: r, tasks_from: other}\n  loop: [1, 2]\n  loop_control: {loop_var: x, label: '{{ x }}'}\n- include_tasks: more.yaml\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let Action::Block {
            block,
            rescue,
            always,
        } = &tasks[0].action
        else {
            panic!()
        };
        assert_eq!((block.len(), rescue.len(), always.len()), (1, 1, 1));
        assert!(
            matches!(&tasks[1].action, Action::Role { name, tasks_from: Some(t), .. } if name == "r" && t == "other")
        );
        assert_eq!(tasks[1].looping.as_ref().unwrap().var, "x");
        assert!(matches!(&tasks[2].action, Action::Tasks { file } if file == "more.yaml"));
    }

    #[test]
    fn misplaced_and_conflicting() {
        let (_, errors) = parse_tasks(
            "- shell: a\n  command: b\n- debug: {msg: x}\n  rescue: []\n- name: nothing\n",
        );
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("conflicting action statements: shell, command"));
        assert!(errors[1].contains("rescue and always belong to a block"));
        assert!(errors[2].contains("a task needs an action"));
    }

    #[test]
    fn modes_keep_their_octal_digits() {
        let (tasks, _) =
            parse_tasks("- file: {path: x, mode: 0755}\n- file: {path: x, mode: 493}\n");
        let Action::Module { args, .. } = &tasks[0].action else {
            panic!()
        };
        assert_eq!(args["mode"], "0755");
        let Action::Module { args, .. } = &tasks[1].action else {
            panic!()
        };
        assert_eq!(args["mode"], 493);
    }

    #[test]
    fn key_value_pairs() {
        let kv = key_values("msg=\"hello {{ a }}\" path={{ b | default('x y') }} n=1").unwrap();
        assert_eq!(kv["msg"], "hello {{ a }}");
        assert_eq!(kv["path"], "{{ b | default('x y') }}");
        assert_eq!(kv["n"], "1");
        assert!(key_values("just words").is_none());
    }
}
