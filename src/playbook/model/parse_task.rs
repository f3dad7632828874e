//! The YAML → model parser for tasks: keywords, loops, the action and its arguments.

use serde_json::{Map, Value};

use super::args::split_args;
use super::keywords::{CONTROL_ACTIONS, FREE_FORM_OPTIONS, control_action};
use super::parse::Parser;
use super::{Action, Loop, LoopKind, Module, TASK_KEYWORDS, Task, key_values, to_json};
use crate::text::suggest;
use crate::text::yaml::{Node, Value as Y};

impl Parser<'_> {
    pub(super) fn task_list(&mut self, node: &Node, what: &str) -> Vec<Task> {
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
                import: false,
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
                "loop" | "with_items" | "with_list" | "with_dict" | "with_sequence"
                | "with_together" | "with_subelements" | "with_fileglob" => {
                    if task.looping.is_some() {
                        self.error(
                            k.mark,
                            "a task has one loop (loop, with_items, with_list or with_dict)".into(),
                        );
                    }
                    let kind = match key.as_str() {
                        "with_items" => LoopKind::WithItems,
                        "with_dict" => LoopKind::WithDict,
                        "with_sequence" => LoopKind::WithSequence,
                        "with_together" => LoopKind::WithTogether,
                        "with_subelements" => LoopKind::WithSubelements,
                        "with_fileglob" => LoopKind::WithFileglob,
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
                other if Module::from_name(other).is_some() || control_action(other).is_some() => {
                    if let Some((first, _, _)) = &action {
                        self.error(
                            k.mark,
                            format!("conflicting action statements: {first}, {other}"),
                        );
                    } else {
                        let key = control_action(&key).map(str::to_string).unwrap_or(key);
                        action = Some((key, k, v));
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
            // Actions (`include_role`, …) are suggested for either.
            let hint = |word: &str, names: &[&str]| {
                suggest::hint(word, names.iter().chain(CONTROL_ACTIONS).copied())
            };
            let message = if module_reported || near_keyword {
                format!(
                    "unknown task keyword \"{key}\"{}; supported: {}",
                    hint(key, TASK_KEYWORDS),
                    TASK_KEYWORDS.join(", ")
                )
            } else {
                module_reported = true;
                format!(
                    "unknown module \"{key}\"{}; supported modules: {}; and {}",
                    hint(
                        key.strip_prefix("ansible.builtin.").unwrap_or(key),
                        &modules
                    ),
                    modules.join(", "),
                    CONTROL_ACTIONS.join(", ")
                )
            };
            self.error(k.mark, message);
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
            "meta" => {
                const META: &[&str] = &[
                    "flush_handlers",
                    "noop",
                    "end_play",
                    "end_host",
                    "clear_host_errors",
                    "refresh_inventory",
                    "reset_connection",
                ];
                let what = self.string(v, "meta")?;
                if !META.contains(&what.as_str()) {
                    self.error(
                        v.mark,
                        format!(
                            "meta: unsupported \"{what}\"; supported: {}",
                            META.join(", ")
                        ),
                    );
                    return None;
                }
                Action::Meta { what }
            }
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
                Action::Tasks {
                    file,
                    import: key == "import_tasks",
                }
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
            import: key == "import_role",
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
                // `chdir=/tmp ls` and friends: options among the words, as Ansible reads
                // them; the rest is the command line.
                let words = split_args(s);
                let is_option = |w: &str| {
                    w.split_once('=')
                        .is_some_and(|(k, _)| FREE_FORM_OPTIONS.contains(&k))
                };
                if words.iter().any(|w| is_option(w)) {
                    let mut rest = Vec::new();
                    for w in words {
                        match w.split_once('=') {
                            Some((k, v)) if FREE_FORM_OPTIONS.contains(&k) => {
                                map.insert(k.to_string(), Value::String(super::args::unquote(v)));
                            }
                            _ => rest.push(w),
                        }
                    }
                    map.insert("_raw_params".into(), Value::String(rest.join(" ")));
                } else {
                    map.insert("_raw_params".into(), Value::String(s.clone()));
                }
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
