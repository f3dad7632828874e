//! YAML → a location-carrying value tree ([`Node`]).
//!
//! Owns: parsing one YAML text with serde-saphyr into plain nodes that keep their line and
//! column and their tag (`!encrypted/pkcs1-oaep`, `!override`, `!inherit`), so that later
//! stages can report *every* problem with a position. Must not: know about Zuul stanzas,
//! read files, or stop at the first schema problem (only YAML syntax errors stop a file).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Spanned, Tagged};

/// A position in a YAML text, 1-based like editors show it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mark {
    pub line: u32,
    pub column: u32,
}

/// Where a scalar's source text is (byte offset and length), when the parser knows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ScalarSource {
    offset: Option<u64>,
    len: Option<u64>,
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// The YAML tags Zuul gives a meaning to; anything else is kept verbatim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tag {
    /// `!encrypted/pkcs1-oaep`: base64 RSA-OAEP ciphertext (one string or a list of chunks).
    Encrypted,
    /// `!override`: replace the inherited value instead of merging.
    Override,
    /// `!inherit`: merge with the inherited value (the default for most attributes).
    Inherit,
    Other(String),
}

impl Tag {
    fn from_raw(raw: &str) -> Tag {
        match raw {
            "!encrypted/pkcs1-oaep" => Tag::Encrypted,
            "!override" => Tag::Override,
            "!inherit" => Tag::Inherit,
            other => Tag::Other(other.to_string()),
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tag::Encrypted => f.write_str("!encrypted/pkcs1-oaep"),
            Tag::Override => f.write_str("!override"),
            Tag::Inherit => f.write_str("!inherit"),
            Tag::Other(t) => f.write_str(t),
        }
    }
}

/// One YAML node with where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub mark: Mark,
    pub tag: Option<Tag>,
    pub value: Value,
    raw: ScalarSource,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in document order; duplicate keys are kept so the checker can report them.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The scalar's source text in `text` (the document it was parsed from), when known.
    pub fn source<'t>(&self, text: &'t str) -> Option<&'t str> {
        let (off, len) = (self.raw.offset? as usize, self.raw.len? as usize);
        text.get(off..off + len)
    }

    /// A word for the node's type, used in "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// Plain JSON, tags dropped (`!encrypted` leaves are never turned into JSON by callers).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(x) => serde_json::Number::from_f64(*x).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => {
                let mut map = serde_json::Map::new();
                for (k, v) in entries {
                    map.insert(k.key_text(), v.to_json());
                }
                J::Object(map)
            }
        }
    }

    /// The text of a mapping key (`5000: x` has key "5000").
    pub fn key_text(&self) -> String {
        match &self.value {
            Value::Str(s) => s.clone(),
            Value::Null => "null".to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(x) => x.to_string(),
            Value::Seq(_) | Value::Map(_) => format!("<{}>", self.kind()),
        }
    }
}

/// A YAML syntax error: the file cannot be read further.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    pub mark: Mark,
    pub message: String,
}

/// Parse one YAML document. An empty document (or one holding only comments) is `None`.
pub fn parse(text: &str) -> Result<Option<Node>, YamlError> {
    if text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    }) {
        return Ok(None);
    }
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
    };
    match serde_saphyr::from_str_with_options::<Node>(text, options) {
        Ok(mut node) => {
            pyyaml_booleans(&mut node, text);
            Ok(Some(node))
        }
        Err(e) => {
            let mark = e
                .location()
                .map(|l| Mark {
                    line: l.line() as u32,
                    column: l.column() as u32,
                })
                .unwrap_or_default();
            // The rendered form repeats the location and a snippet; keep the first line.
            let message = e.to_string();
            let mut message = message.lines().next().unwrap_or("invalid yaml");
            message = message.strip_prefix("error: ").unwrap_or(message);
            // "line 3 column 10: unclosed bracket" → the position is reported separately.
            if message.starts_with("line ")
                && let Some((_, rest)) = message.split_once(": ")
            {
                message = rest;
            }
            let message = message.to_string();
            Err(YamlError { mark, message })
        }
    }
}

/// Zuul reads YAML with PyYAML, whose booleans are `yes/no/on/off/true/false` in three
/// spellings each (`yes`, `Yes`, `YES`). serde-saphyr's YAML 1.1 mode also takes `y`, `n`
/// and mixed case; turn those back into the strings PyYAML sees.
fn pyyaml_booleans(node: &mut Node, text: &str) {
    const PYYAML: &[&str] = &[
        "yes", "Yes", "YES", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE",
        "on", "On", "ON", "off", "Off", "OFF",
    ];
    match &mut node.value {
        Value::Bool(_) => {
            let (Some(off), Some(len)) = (node.raw.offset, node.raw.len) else {
                return;
            };
            let (off, len) = (off as usize, len as usize);
            // Only plain spellings serde-saphyr reads as booleans are candidates (an alias
            // `*x` to a boolean must stay a boolean).
            if let Some(raw) = text.get(off..off + len).map(str::trim)
                && ["y", "n", "yes", "no", "on", "off", "true", "false"]
                    .iter()
                    .any(|b| raw.eq_ignore_ascii_case(b))
                && !PYYAML.contains(&raw)
            {
                node.value = Value::Str(raw.to_string());
            }
        }
        Value::Seq(items) => items.iter_mut().for_each(|n| pyyaml_booleans(n, text)),
        Value::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            pyyaml_booleans(k, text);
            pyyaml_booleans(v, text);
        }),
        _ => {}
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        let spanned: Spanned<Tagged<Raw>> = Spanned::deserialize(d)?;
        let loc = spanned.referenced;
        let defined = spanned.defined;
        let Tagged(Raw(value), tag) = spanned.value;
        Ok(Node {
            mark: Mark {
                line: loc.line() as u32,
                column: loc.column() as u32,
            },
            tag: tag.as_deref().map(Tag::from_raw),
            value,
            // The text of an aliased scalar is at its anchor, not at the alias.
            raw: ScalarSource {
                offset: defined.span().byte_offset(),
                len: defined.span().byte_len(),
            },
        })
    }
}

struct Raw(Value);

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Raw, D::Error> {
        d.deserialize_any(RawVisitor).map(Raw)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any yaml value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(RawVisitor)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v)
            .map(Value::Int)
            .or(Ok(Value::Float(v as f64)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<Node, Node>()? {
            entries.push((k, v));
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_marks_tags_and_duplicates() {
        let text = "- job:\n    name: a\n    vars: !override\n      x: 1\n    name: b\n- secret:\n    data:\n      password: !encrypted/pkcs1-oaep\n        - AAA\n        - BBB\n      port: 5000\n      tls: true\n      empty:\n";
        let node = parse(text).unwrap().unwrap();
        let Value::Seq(items) = &node.value else {
            panic!("{node:?}")
        };
        assert_eq!(node.mark, Mark { line: 1, column: 1 });
        let Value::Map(job) = &items[0].value else {
            panic!()
        };
        let Value::Map(attrs) = &job[0].1.value else {
            panic!()
        };
        assert_eq!(attrs.len(), 3, "duplicate key kept");
        assert_eq!(attrs[0].0.mark, Mark { line: 2, column: 5 });
        assert_eq!(attrs[1].1.tag, Some(Tag::Override));
        assert_eq!(attrs[2].1.as_str(), Some("b"));
        let Value::Map(secret) = &items[1].value else {
            panic!()
        };
        let Value::Map(sattrs) = &secret[0].1.value else {
            panic!()
        };
        let Value::Map(data) = &sattrs[0].1.value else {
            panic!()
        };
        assert_eq!(data[0].1.tag, Some(Tag::Encrypted));
        assert!(matches!(&data[0].1.value, Value::Seq(v) if v.len() == 2));
        assert_eq!(data[1].1.value, Value::Int(5000));
        assert_eq!(data[2].1.value, Value::Bool(true));
        assert_eq!(data[3].1.value, Value::Null);
    }

    #[test]
    fn tagged_scalar_and_empty_docs() {
        let node = parse("k: !encrypted/pkcs1-oaep abc==\n").unwrap().unwrap();
        let Value::Map(m) = &node.value else { panic!() };
        assert_eq!(m[0].1.tag, Some(Tag::Encrypted));
        assert_eq!(m[0].1.as_str(), Some("abc=="));
        assert!(parse("# only a comment\n\n").unwrap().is_none());
    }

    #[test]
    fn booleans_as_pyyaml_reads_them() {
        let node = parse("[yes, No, ON, off, y, n, Y, yEs, 'yes', true]")
            .unwrap()
            .unwrap();
        let Value::Seq(items) = node.value else {
            panic!()
        };
        let got: Vec<String> = items.iter().map(|n| format!("{:?}", n.value)).collect();
        assert_eq!(
            got,
            [
                "Bool(true)",
                "Bool(false)",
                "Bool(true)",
                "Bool(false)",
                "Str(\"y\")",
                "Str(\"n\")",
                "Str(\"Y\")",
                "Str(\"yEs\")",
                "Str(\"yes\")",
                "Bool(true)"
            ]
        );
    }

    #[test]
    fn syntax_error_has_a_position() {
        let err = parse("- job:\n    name: [a\n").unwrap_err();
        assert!(err.mark.line >= 2, "{err:?}");
    }
}
