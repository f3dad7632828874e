//! Typed reading of YAML nodes that records problems instead of stopping.
//!
//! Owns: "expected a string, found a list" style checks, unknown and duplicate attribute
//! detection with suggestions. Must not: know what a job or a project is (callers pass the
//! allowed attribute names).

use std::sync::Arc;

use super::{ConfigError, Loc};
use crate::text::suggest;
use crate::text::yaml::{Mark, Node, Tag, Value};

/// Error sink for one file and one stanza.
pub(crate) struct Checker<'e> {
    pub file: Arc<str>,
    pub stanza: String,
    pub errors: &'e mut Vec<ConfigError>,
    /// Problems that do not stop loading (deprecated forms); the loader keeps them.
    pub warnings: Vec<ConfigError>,
}

impl Checker<'_> {
    pub fn loc(&self, mark: Mark) -> Loc {
        Loc {
            file: self.file.clone(),
            line: mark.line,
            column: mark.column,
        }
    }

    pub fn error(&mut self, mark: Mark, message: impl Into<String>) {
        self.errors.push(ConfigError {
            loc: self.loc(mark),
            stanza: self.stanza.clone(),
            message: message.into(),
        });
    }

    pub fn warn(&mut self, mark: Mark, message: impl Into<String>) {
        let loc = self.loc(mark);
        self.warnings.push(ConfigError {
            loc,
            stanza: self.stanza.clone(),
            message: message.into(),
        });
    }

    fn expected(&mut self, node: &Node, what: &str, attr: &str) {
        let message = format!("\"{attr}\" must be {what}, found {}", node.kind());
        self.error(node.mark, message);
    }

    /// The string value of `field` in a mapping whose keys are all in `allowed` (e.g. the
    /// `name` of `{name: x, resources-first: true}`); other problems are reported.
    pub fn field_string(
        &mut self,
        node: &Node,
        what: &str,
        allowed: &[&str],
        field: &str,
        attr: &str,
    ) -> Option<String> {
        let fields = self.fields(node, what, allowed)?;
        let mut out = None;
        for (k, _, v) in fields {
            if k == field {
                out = self.string(v, attr);
            }
        }
        out
    }

    /// The entries of a mapping whose keys are all in `allowed`; unknown and repeated keys
    /// are reported (with a suggestion) and left out. `None` if the node is not a mapping.
    pub fn fields<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        allowed: &[&str],
    ) -> Option<Vec<(&'n str, &'n Node, &'n Node)>> {
        let Value::Map(entries) = &node.value else {
            self.expected(node, "a mapping", what);
            return None;
        };
        let mut out: Vec<(&str, &Node, &Node)> = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let Some(key) = k.as_str() else {
                self.error(
                    k.mark,
                    format!("attribute names must be strings, found {}", k.kind()),
                );
                continue;
            };
            if let Some((_, first, _)) = out.iter().find(|(name, _, _)| *name == key) {
                let line = first.mark.line;
                self.error(
                    k.mark,
                    format!("duplicate attribute \"{key}\" (first set on line {line})"),
                );
                continue;
            }
            if !allowed.contains(&key) {
                let hint = suggest::hint(key, allowed.iter().copied());
                self.error(
                    k.mark,
                    format!("unknown attribute \"{key}\" in {what}{hint}"),
                );
                continue;
            }
            out.push((key, k, v));
        }
        Some(out)
    }

    /// Reject tags on attributes that do not take one.
    pub fn no_tag(&mut self, node: &Node, attr: &str) {
        if let Some(tag) = &node.tag {
            self.error(
                node.mark,
                format!("the {tag} tag is not allowed on \"{attr}\""),
            );
        }
    }

    /// `!override` → `Some(true)`, `!inherit` → `Some(false)`, untagged → `None`.
    pub fn override_tag(&mut self, node: &Node, attr: &str) -> Option<bool> {
        match &node.tag {
            None => None,
            Some(Tag::Override) => Some(true),
            Some(Tag::Inherit) => Some(false),
            Some(tag) => {
                self.error(
                    node.mark,
                    format!("the {tag} tag is not allowed on \"{attr}\""),
                );
                None
            }
        }
    }

    pub fn string(&mut self, node: &Node, attr: &str) -> Option<String> {
        self.no_tag(node, attr);
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            _ => {
                self.expected(node, "a string", attr);
                None
            }
        }
    }

    /// A string, or a number YAML read as one (`ansible-version: 2.9`).
    pub fn scalar_text(&mut self, node: &Node, attr: &str) -> Option<String> {
        match &node.value {
            Value::Int(i) => Some(i.to_string()),
            Value::Float(x) => Some(x.to_string()),
            _ => self.string(node, attr),
        }
    }

    pub fn boolean(&mut self, node: &Node, attr: &str) -> Option<bool> {
        self.no_tag(node, attr);
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.expected(node, "a boolean", attr);
                None
            }
        }
    }

    pub fn unsigned(&mut self, node: &Node, attr: &str) -> Option<u64> {
        self.no_tag(node, attr);
        match node.value {
            Value::Int(i) if i >= 0 => Some(i as u64),
            Value::Int(i) => {
                self.error(
                    node.mark,
                    format!("\"{attr}\" must be a non-negative integer, found {i}"),
                );
                None
            }
            _ => {
                self.expected(node, "a non-negative integer", attr);
                None
            }
        }
    }

    /// Zuul's `to_list`: one item or a list of items. Tags are the caller's business.
    pub fn items<'n>(&mut self, node: &'n Node) -> Vec<&'n Node> {
        match &node.value {
            Value::Seq(items) => items.iter().collect(),
            Value::Null => vec![],
            _ => vec![node],
        }
    }

    /// One string or a list of strings.
    pub fn strings(&mut self, node: &Node, attr: &str) -> Vec<String> {
        let mut out = vec![];
        for item in self.items(node) {
            match &item.value {
                Value::Str(s) => out.push(s.clone()),
                _ => self.expected(item, "a string or a list of strings", attr),
            }
        }
        out
    }

    /// A plain mapping of variables (no `!encrypted` inside), as JSON.
    pub fn vars(
        &mut self,
        node: &Node,
        attr: &str,
    ) -> Option<serde_json::Map<String, serde_json::Value>> {
        if node.is_null() {
            return Some(serde_json::Map::new());
        }
        if !matches!(node.value, Value::Map(_)) {
            self.expected(node, "a mapping", attr);
            return None;
        }
        self.no_encrypted(node, attr);
        match node.to_json() {
            serde_json::Value::Object(map) => Some(map),
            _ => None,
        }
    }

    fn no_encrypted(&mut self, node: &Node, attr: &str) {
        if node.tag == Some(Tag::Encrypted) {
            self.error(
                node.mark,
                format!("encrypted values belong in a secret, not in \"{attr}\""),
            );
        }
        match &node.value {
            Value::Seq(items) => items.iter().for_each(|n| self.no_encrypted(n, attr)),
            Value::Map(entries) => entries.iter().for_each(|(_, v)| self.no_encrypted(v, attr)),
            _ => {}
        }
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`: what Ansible accepts as a variable name.
pub(crate) fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
