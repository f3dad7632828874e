//! How Ansible (Python's Jinja) prints values inside a string template: `True`, `None`,
//! `['a', 'b']`, `{'k': 1}`, and an error for an undefined value (never "").

use minijinja::value::{Value as JValue, ValueKind};
use minijinja::{Error as JError, ErrorKind, Output, State};

/// The formatter for `{{ … }}` inside a string: strings as they are, the rest as Python's
/// `str()` shows it.
pub(super) fn format(out: &mut Output, _state: &State, v: &JValue) -> Result<(), JError> {
    if v.is_undefined() {
        return Err(JError::new(
            ErrorKind::UndefinedError,
            "undefined value printed",
        ));
    }
    let text = match v.as_str() {
        Some(s) if v.kind() == ValueKind::String => s.to_string(),
        _ => repr(v),
    };
    out.write_str(&text)
        .map_err(|e| JError::new(ErrorKind::WriteFailure, e.to_string()))
}

/// Python's `repr()` of a value.
pub(super) fn repr(v: &JValue) -> String {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => "None".into(),
        ValueKind::Bool => if v.is_true() { "True" } else { "False" }.into(),
        ValueKind::String => quote(v.as_str().unwrap_or("")),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<String> = v
                .try_iter()
                .map(|it| it.map(|x| repr(&x)).collect())
                .unwrap_or_default();
            format!("[{}]", items.join(", "))
        }
        ValueKind::Map => {
            let items: Vec<String> = v
                .try_iter()
                .map(|it| {
                    it.map(|k| {
                        let val = v.get_item(&k).unwrap_or_default();
                        format!("{}: {}", repr(&k), repr(&val))
                    })
                    .collect()
                })
                .unwrap_or_default();
            format!("{{{}}}", items.join(", "))
        }
        _ => v.to_string(),
    }
}

/// A string literal as Python writes it: single quotes unless the text has one and no
/// double quote.
fn quote(s: &str) -> String {
    let q = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

/// Python methods on values: `str.format` here, the rest from minijinja-contrib's
/// `pycompat` (`split`, `startswith`, `replace`, `items`, `get`, …).
pub(super) fn methods(
    state: &State,
    value: &JValue,
    method: &str,
    args: &[JValue],
) -> Result<JValue, JError> {
    if method == "format"
        && let Some(s) = value.as_str()
    {
        return Ok(JValue::from(py_format(s, args)?));
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// `'{} {0} {name}'.format(…)` with positional and keyword arguments (no format specs
/// beyond the field name).
fn py_format(s: &str, args: &[JValue]) -> Result<String, JError> {
    let (positional, kwargs): (Vec<&JValue>, Option<&JValue>) =
        match args.last().filter(|a| a.is_kwargs()) {
            Some(kw) => (args[..args.len() - 1].iter().collect(), Some(kw)),
            None => (args.iter().collect(), None),
        };
    let show = |v: &JValue| match v.as_str() {
        Some(s) if v.kind() == ValueKind::String => s.to_string(),
        _ => repr(v),
    };
    let mut out = String::new();
    let mut next = 0;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let mut field = String::new();
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                    field.push(c);
                }
                let name = field.split(':').next().unwrap_or("");
                let v = if name.is_empty() {
                    next += 1;
                    positional.get(next - 1).copied().cloned()
                } else if let Ok(i) = name.parse::<usize>() {
                    positional.get(i).copied().cloned()
                } else {
                    kwargs
                        .and_then(|k| k.get_attr(name).ok())
                        .filter(|v| !v.is_undefined())
                };
                let v = v.ok_or_else(|| {
                    JError::new(
                        ErrorKind::InvalidOperation,
                        format!("format: no argument for {{{field}}}"),
                    )
                })?;
                out.push_str(&show(&v));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}
