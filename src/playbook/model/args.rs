//! Ansible's `key=value` argument strings.

use serde_json::{Map, Value};

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
pub(super) fn split_args(s: &str) -> Vec<String> {
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

pub(super) fn unquote(v: &str) -> String {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            let inner = &v[1..v.len() - 1];
            // As Ansible's `parse_kv`: the quotes go, escapes stay (`'\\2'` is Jinja's).
            return inner.to_string();
        }
    }
    v.to_string()
}
