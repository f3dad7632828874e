//! The modules the interpreter runs and the play and task keywords it knows.

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
    IncludeVars,
    Lineinfile,
    Tempfile,
    Slurp,
    Setup,
    WaitFor,
    Uri,
    Package,
    Pip,
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
        Module::IncludeVars,
        Module::Lineinfile,
        Module::Tempfile,
        Module::Slurp,
        Module::Setup,
        Module::WaitFor,
        Module::Uri,
        Module::Package,
        Module::Pip,
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
            Module::IncludeVars => "include_vars",
            Module::Lineinfile => "lineinfile",
            Module::Tempfile => "tempfile",
            Module::Slurp => "slurp",
            Module::Setup => "setup",
            Module::WaitFor => "wait_for",
            Module::Uri => "uri",
            Module::Package => "package",
            Module::Pip => "pip",
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
            Module::ZuulReturn => &["data", "secret_data", "file", "secret_file", "path"],
            Module::IncludeVars => &[
                "_raw_params",
                "file",
                "name",
                "dir",
                "depth",
                "files_matching",
                "ignore_files",
                "extensions",
                "ignore_unknown_extensions",
                "hash_behaviour",
            ],
            Module::Lineinfile => &[
                "path",
                "dest",
                "name",
                "line",
                "regexp",
                "state",
                "insertafter",
                "insertbefore",
                "create",
                "mode",
                "owner",
                "group",
                "backup",
                "backrefs",
                "firstmatch",
                "search_string",
            ],
            Module::Tempfile => &["state", "path", "prefix", "suffix"],
            Module::Slurp => &["src", "path"],
            Module::Setup => &["gather_subset", "filter", "gather_timeout", "fact_path"],
            Module::WaitFor => &[
                "path",
                "port",
                "host",
                "timeout",
                "delay",
                "sleep",
                "state",
                "connect_timeout",
                "msg",
                "search_regex",
            ],
            Module::Uri => &[
                "url",
                "method",
                "body",
                "body_format",
                "headers",
                "status_code",
                "return_content",
                "validate_certs",
                "timeout",
                "force_basic_auth",
                "url_username",
                "url_password",
                "dest",
            ],
            Module::Package => &["name", "state", "use"],
            Module::Pip => &[
                "name",
                "state",
                "requirements",
                "virtualenv",
                "virtualenv_command",
                "extra_args",
                "executable",
                "chdir",
                "version",
            ],
        })
    }

    /// Parameters that must be present (checked when the arguments are not a template).
    pub(super) fn required(self) -> &'static [&'static [&'static str]] {
        match self {
            Module::Copy => &[&["dest"], &["content", "src"]],
            Module::Template => &[&["src"], &["dest"]],
            Module::File | Module::Stat => &[&["path", "dest", "name"]],
            Module::Assert => &[&["that"]],
            Module::Shell => &[&["_raw_params", "cmd"]],
            Module::Command => &[&["_raw_params", "cmd", "argv"]],
            Module::IncludeVars => &[&["_raw_params", "file", "dir"]],
            Module::Lineinfile => &[&["path", "dest", "name"]],
            Module::Slurp => &[&["src", "path"]],
            _ => &[],
        }
    }

    /// Modules whose string argument is a command line (`shell: echo hi`), not `k=v` pairs.
    pub(super) fn free_form(self) -> bool {
        matches!(self, Module::Shell | Module::Command | Module::IncludeVars)
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
    "with_sequence",
    "with_together",
    "with_subelements",
    "with_fileglob",
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
pub(super) const CONTROL_ACTIONS: &[&str] = &[
    "block",
    "meta",
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

/// A control action's name without `ansible.builtin.` / `ansible.legacy.`, when it is one.
pub(super) fn control_action(name: &str) -> Option<&'static str> {
    let short = name
        .strip_prefix("ansible.builtin.")
        .or_else(|| name.strip_prefix("ansible.legacy."))
        .unwrap_or(name);
    CONTROL_ACTIONS.iter().copied().find(|a| *a == short)
}

/// Options a free-form `command`/`shell` line may carry as `key=value` words
/// (`command: chdir=/tmp ls`), as Ansible reads them.
pub(super) const FREE_FORM_OPTIONS: &[&str] =
    &["chdir", "creates", "removes", "executable", "stdin"];
