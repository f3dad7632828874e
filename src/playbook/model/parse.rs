//! The YAML → model parser: its helpers and plays, hosts and role lists (tasks are in
//! `parse_task.rs`).

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Cond, PLAY_KEYWORDS, Play, PlaybookError, Pos, RoleRef, to_json};
use crate::text::suggest;
use crate::text::yaml::{Mark, Node, Value as Y};

pub(super) struct Parser<'e> {
    pub(super) file: Arc<str>,
    pub(super) path: Arc<Path>,
    pub(super) errors: &'e mut Vec<PlaybookError>,
}

impl Parser<'_> {
    pub(super) fn pos(&self, mark: Mark) -> Pos {
        Pos {
            file: self.file.clone(),
            path: self.path.clone(),
            line: mark.line,
            column: mark.column,
        }
    }

    pub(super) fn error(&mut self, mark: Mark, message: String) {
        let pos = self.pos(mark);
        self.errors.push(PlaybookError::Invalid { pos, message });
    }

    /// The entries of a mapping, with duplicate keys reported.
    pub(super) fn entries<'n>(
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

    pub(super) fn string(&mut self, node: &Node, what: &str) -> Option<String> {
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

    pub(super) fn mapping(&mut self, node: &Node, what: &str) -> Map<String, Value> {
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
    pub(super) fn names(&mut self, node: &Node, what: &str) -> Vec<String> {
        match &node.value {
            Y::Seq(items) => items.iter().filter_map(|i| self.string(i, what)).collect(),
            _ => self.string(node, what).into_iter().collect(),
        }
    }

    pub(super) fn conditions(&mut self, node: &Node, what: &str) -> Vec<Cond> {
        match &node.value {
            Y::Seq(items) => items
                .iter()
                .filter_map(|i| self.condition(i, what))
                .collect(),
            _ => self.condition(node, what).into_iter().collect(),
        }
    }

    pub(super) fn condition(&mut self, node: &Node, what: &str) -> Option<Cond> {
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

    pub(super) fn play(&mut self, node: &Node) -> Option<Play> {
        let entries = self.entries(node, "a play")?;
        let mut play = Play {
            pos: self.pos(node.mark),
            hosts: Vec::new(),
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
                    play.hosts = self.hosts(v);
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
                "a play needs \"hosts\" (a host pattern such as all)".into(),
            );
        }
        Some(play)
    }

    /// `hosts`: a pattern or a list of them (evaluated over the job's inventory when the
    /// play runs; a pattern that selects nothing skips the play, as in Ansible).
    pub(super) fn hosts(&mut self, node: &Node) -> Vec<String> {
        self.host_patterns(node)
    }

    fn host_patterns(&mut self, node: &Node) -> Vec<String> {
        match &node.value {
            Y::Str(s) => vec![s.clone()],
            Y::Seq(items) => items
                .iter()
                .filter_map(|i| self.string(i, "a host"))
                .collect(),
            _ => {
                self.error(
                    node.mark,
                    format!("hosts must be a string or a list, found {}", node.kind()),
                );
                Vec::new()
            }
        }
    }

    pub(super) fn roles(&mut self, node: &Node) -> Vec<RoleRef> {
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
}
