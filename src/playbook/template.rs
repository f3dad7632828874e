//! Jinja templating with Ansible's semantics, on minijinja.
//!
//! - Strict undefined: `{{ missing }}` is an error naming the variable, never "".
//! - A string that is exactly one `{{ expr }}` renders to the expression's native value
//!   (a list stays a list), as Ansible does; anything else renders to a string.
//! - Variables are templated lazily on lookup, so `vars: {a: "{{ b }}"}` works in any
//!   order; values marked *unsafe* (secrets, `zuul_return` secret data) are returned
//!   verbatim and never rendered (ZUUL.md §3).
//! - The Ansible filters and tests playbooks use: `default`/`d`, `bool`, `to_json`,
//!   `from_json`, `to_yaml`, `from_yaml`, `regex_replace`, `regex_search`, `b64encode`,
//!   `b64decode`, `combine`, `dict2items`, `items2dict`, `basename`, `dirname`, `quote`,
//!   `mandatory`, `ternary`, `unique`, `flatten`, `difference`, `union`, `intersect`,
//!   plus minijinja's builtins (`selectattr`, `map`, `join`, `length`, ...); tests
//!   `match`, `search`, `regex`, `success`/`succeeded`, `failed`, `changed`, `skipped`.
//!
//! Owns templating only: no I/O except the lookups (in `template/filters.rs`).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, Value as JValue};
use minijinja::{Environment, Error as JError, ErrorKind, UndefinedBehavior};
use serde_json::Value;

mod ansible;
mod filters;
mod lookup;
mod percent;
mod pyfmt;

use filters::add_filters;
pub use filters::merge;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

fn jerr(e: JError) -> TemplateError {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    TemplateError(msg)
}

/// One variable: its value, whether it may be templated, and whether it is a secret.
#[derive(Clone, Debug, PartialEq)]
pub struct Var {
    pub value: Value,
    /// Never rendered: secrets, and values that came from outside any template
    /// (registered command output, facts) — Ansible's "unsafe".
    pub unsafe_: bool,
    /// A secret: never rendered and never logged (its strings are redacted).
    pub secret: bool,
    /// Passed as Ansible extra vars (job `extra-vars`, `--var`, trigger data): above
    /// everything a playbook or the inventory sets.
    pub extra: bool,
}

/// The variables visible to a task (already merged by precedence).
#[derive(Clone, Debug, Default)]
pub struct Vars {
    pub map: BTreeMap<String, Var>,
}

impl Vars {
    pub fn set(&mut self, k: impl Into<String>, v: Value) {
        self.put(k, v, false, false, false);
    }

    /// A secret: never templated, and its strings are in [`Vars::secret_strings`].
    pub fn set_unsafe(&mut self, k: impl Into<String>, v: Value) {
        self.put(k, v, true, true, false);
    }

    /// A value used as it is, never templated, but no secret: registered results and
    /// facts (command output holding `{{` must not be evaluated).
    pub fn set_verbatim(&mut self, k: impl Into<String>, v: Value) {
        self.put(k, v, true, false, false);
    }

    /// An extra var (Ansible's `-e`): templated, above play, inventory and facts.
    pub fn set_extra(&mut self, k: impl Into<String>, v: Value) {
        self.put(k, v, false, false, true);
    }

    fn put(
        &mut self,
        k: impl Into<String>,
        value: Value,
        unsafe_: bool,
        secret: bool,
        extra: bool,
    ) {
        let var = Var {
            value,
            unsafe_,
            secret,
            extra,
        };
        self.map.insert(k.into(), var);
    }

    /// Data from outside passed as an extra var: never templated.
    pub fn set_extra_verbatim(&mut self, k: impl Into<String>, v: Value) {
        self.map.insert(
            k.into(),
            Var {
                value: v,
                unsafe_: true,
                secret: false,
                extra: true,
            },
        );
    }

    pub fn get(&self, k: &str) -> Option<&Value> {
        self.map.get(k).map(|v| &v.value)
    }

    /// Every string a secret holds, for log redaction.
    pub fn secret_strings(&self) -> Vec<super::redact::Secret> {
        self.map
            .values()
            .filter(|v| v.secret)
            .flat_map(|v| super::redact::secret_leaves(&v.value))
            .collect()
    }
}

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Lazily templated variables, as a minijinja object.
#[derive(Debug)]
struct Scope {
    vars: Vars,
    env: Arc<Environment<'static>>,
}

impl Object for Scope {
    fn get_value(self: &Arc<Self>, key: &JValue) -> Option<JValue> {
        if key.as_str() == Some(lookup::SCOPE) {
            return Some(JValue::from_dyn_object(self.clone()));
        }
        let var = self.vars.map.get(key.as_str()?)?;
        if var.unsafe_ {
            return Some(JValue::from_serialize(&var.value));
        }
        // Guard against `a: "{{ a }}"`.
        let depth = DEPTH.with(|d| d.get());
        if depth > 32 {
            return Some(JValue::from_serialize(&var.value));
        }
        DEPTH.with(|d| d.set(depth + 1));
        let rendered = render_value_in(&self.env, &var.value, self);
        DEPTH.with(|d| d.set(depth));
        Some(match rendered {
            Ok(v) => JValue::from_serialize(&v),
            // The error surfaces when the value is used.
            Err(_) => JValue::from_serialize(&var.value),
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let keys: Vec<JValue> = self
            .vars
            .map
            .keys()
            .map(|k| JValue::from(k.as_str()))
            .collect();
        Enumerator::Values(keys)
    }
}

/// True when `s` holds template syntax.
pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

/// `{{ expr }}` alone (whitespace around allowed) → `expr`.
fn single_expression(s: &str) -> Option<&str> {
    let t = s.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("{%") {
        return None;
    }
    Some(inner.trim())
}

/// Strict undefined errors say only "undefined value"; name what is undefined, as
/// Ansible does (`'nope' is undefined`), when it can be found.
fn explain(
    env: &Environment<'static>,
    src: &str,
    expr: bool,
    vars: &Vars,
    e: JError,
) -> TemplateError {
    if e.kind() != ErrorKind::UndefinedError {
        return jerr(e);
    }
    let names = if expr {
        env.compile_expression(&percent::expression(src))
            .map(|x| x.undeclared_variables(true))
    } else {
        env.template_from_str(&percent::template(src))
            .map(|t| t.undeclared_variables(true))
    };
    let mut missing: Vec<String> = names
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n != percent::FUNCTION && !resolves(vars, n))
        .collect();
    missing.sort();
    match missing.as_slice() {
        [] => jerr(e),
        [one] => TemplateError(format!("'{one}' is undefined (in {src:?})")),
        many => TemplateError(format!(
            "{} are undefined (in {src:?})",
            many.iter()
                .map(|m| format!("'{m}'"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Whether `a.b.c` can be looked up (or might be: a template string on the way is not
/// followed, so it is not reported).
fn resolves(vars: &Vars, dotted: &str) -> bool {
    let mut parts = dotted.split('.');
    let Some(mut v) = parts.next().and_then(|root| vars.get(root)) else {
        return false;
    };
    for p in parts {
        v = match v {
            Value::Object(o) => match o.get(p) {
                Some(x) => x,
                None => return false,
            },
            _ => return true,
        };
    }
    true
}

fn render_value_in(
    env: &Environment<'static>,
    v: &Value,
    scope: &Arc<Scope>,
) -> Result<Value, TemplateError> {
    Ok(match v {
        Value::String(s) if is_template(s) => {
            let ctx = JValue::from_dyn_object(scope.clone());
            // Only a string that is exactly one `{{ … }}` keeps its value's type; text
            // around it, even a newline (`"{{ out.stdout }}\n"`), makes a string, as
            // Ansible's concatenation of template nodes does.
            let alone = s.starts_with("{{") && s.ends_with("}}");
            if let Some(expr) = single_expression(s).filter(|_| alone) {
                // Ansible returns a number or boolean named alone as it is (`{{ n }}`).
                if expr.chars().all(|c| c.is_alphanumeric() || c == '_')
                    && let Some(var) = scope.vars.map.get(expr)
                    && matches!(var.value, Value::Number(_) | Value::Bool(_))
                {
                    return Ok(var.value.clone());
                }
                let src = percent::expression(expr);
                let e = env.compile_expression(&src).map_err(jerr)?;
                let out = e
                    .eval(ctx)
                    .map_err(|e| explain(env, expr, true, &scope.vars, e))?;
                if out.is_undefined() {
                    return Err(TemplateError(format!("'{expr}' is undefined")));
                }
                ansible_concat(
                    serde_json::to_value(&out).map_err(|e| TemplateError(e.to_string()))?,
                )
            } else {
                Value::String(
                    env.render_str(&percent::template(s), ctx)
                        .map_err(|e| explain(env, s, false, &scope.vars, e))?,
                )
            }
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| render_value_in(env, x, scope))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| {
                    let k = if is_template(k) {
                        env.render_str(
                            &percent::template(k),
                            JValue::from_dyn_object(scope.clone()),
                        )
                        .map_err(jerr)?
                    } else {
                        k.clone()
                    };
                    Ok((k, render_value_in(env, x, scope)?))
                })
                .collect::<Result<_, TemplateError>>()?,
        ),
        other => other.clone(),
    })
}

/// What Ansible 2.16 (`jinja2_native` off) makes of a template that is one expression:
/// lists, mappings and booleans stay as they are, numbers become their text (`"3"`),
/// `None` the empty string, and text that reads as a Python list or mapping becomes one.
fn ansible_concat(v: Value) -> Value {
    match v {
        Value::Number(n) => Value::String(pyfmt::repr(&JValue::from_serialize(&n))),
        Value::Null => Value::String(String::new()),
        Value::String(s) if s.starts_with(['[', '{']) && !s.contains('"') => {
            serde_json::from_str(&s).unwrap_or(Value::String(s))
        }
        other => other,
    }
}

/// The value of `omit`: a module parameter set to it is left out.
pub const OMIT: &str = "__omit_place_holder__gantry";

/// The template engine of one run.
#[derive(Clone)]
pub struct Templar {
    env: Arc<Environment<'static>>,
    /// For the `template` module: Ansible renders files with `trim_blocks`.
    file_env: Arc<Environment<'static>>,
}

impl Default for Templar {
    fn default() -> Self {
        Templar::new()
    }
}

impl Templar {
    pub fn new() -> Templar {
        let mut file_env = Templar::environment();
        file_env.set_trim_blocks(true);
        Templar {
            env: Arc::new(Templar::environment()),
            file_env: Arc::new(file_env),
        }
    }

    fn environment() -> Environment<'static> {
        let mut env = Environment::new();
        // Chainable: `nope.a | default('d')` and `nope.a is defined` work, as in Ansible;
        // printing an undefined value is still an error (the formatter, and the checks of
        // single expressions and conditions below).
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_keep_trailing_newline(true);
        env.set_formatter(pyfmt::format);
        env.set_unknown_method_callback(pyfmt::methods);
        add_filters(&mut env);
        lookup::add(&mut env);
        percent::add(&mut env);
        env
    }

    /// Renders a template file's text (`template` module): `trim_blocks` on, as Ansible.
    pub fn render_file(&self, s: &str, vars: &Vars) -> Result<String, TemplateError> {
        self.file_env
            .render_str(
                &percent::template(s),
                JValue::from_dyn_object(self.scope(vars)),
            )
            .map_err(|e| explain(&self.file_env, s, false, vars, e))
    }

    fn scope(&self, vars: &Vars) -> Arc<Scope> {
        Arc::new(Scope {
            vars: vars.clone(),
            env: self.env.clone(),
        })
    }

    /// Renders every template in `v` (strings, keys, nested lists and maps).
    pub fn render(&self, v: &Value, vars: &Vars) -> Result<Value, TemplateError> {
        render_value_in(&self.env, v, &self.scope(vars))
    }

    /// Renders a string template to a string (for file contents: `template` module).
    pub fn render_string(&self, s: &str, vars: &Vars) -> Result<String, TemplateError> {
        self.env
            .render_str(
                &percent::template(s),
                JValue::from_dyn_object(self.scope(vars)),
            )
            .map_err(|e| explain(&self.env, s, false, vars, e))
    }

    /// Evaluates an expression to its value, as it is (`debug: var=x`).
    pub fn expression(&self, expr: &str, vars: &Vars) -> Result<Value, TemplateError> {
        let src = percent::expression(expr);
        let e = self.env.compile_expression(&src).map_err(jerr)?;
        let v = e
            .eval(JValue::from_dyn_object(self.scope(vars)))
            .map_err(|e| explain(&self.env, expr, true, vars, e))?;
        if v.is_undefined() {
            return Err(TemplateError(format!("'{expr}' is undefined")));
        }
        serde_json::to_value(&v).map_err(|e| TemplateError(e.to_string()))
    }

    /// Evaluates a bare expression (`when`, `failed_when`, `until`) to a boolean.
    /// A bare string that is itself `{{ … }}` is accepted too, as Ansible does.
    pub fn condition(&self, expr: &str, vars: &Vars) -> Result<bool, TemplateError> {
        let expr = single_expression(expr).unwrap_or(expr).trim();
        let src = percent::expression(expr);
        let e = self.env.compile_expression(&src).map_err(jerr)?;
        // Chainable undefined would make `nope == 1` false; Ansible fails on an undefined
        // name that the condition does not guard with `defined` or `default`.
        if !expr.contains("defined") && !expr.contains("default") && !expr.contains("d(") {
            const GLOBALS: &[&str] = &[
                "lookup",
                "query",
                "q",
                "now",
                "range",
                "dict",
                "namespace",
                "omit",
                percent::FUNCTION,
            ];
            let mut missing: Vec<String> = e
                .undeclared_variables(false)
                .into_iter()
                .filter(|n| !GLOBALS.contains(&n.as_str()) && vars.get(n).is_none())
                .collect();
            missing.sort();
            if let Some(first) = missing.first() {
                return Err(TemplateError(format!(
                    "'{first}' is undefined (in {expr:?})"
                )));
            }
        }
        let v = e
            .eval(JValue::from_dyn_object(self.scope(vars)))
            .map_err(|e| explain(&self.env, expr, true, vars, e))?;
        if v.is_undefined() {
            return Err(TemplateError(format!("'{expr}' is undefined")));
        }
        Ok(truthy(&v))
    }
}

/// Python truthiness, as Ansible's conditionals use it: any non-empty string is true
/// (`when: s` with `s: "false"` runs).
fn truthy(v: &JValue) -> bool {
    v.is_true()
}

fn to_json(v: &JValue) -> Result<Value, JError> {
    serde_json::to_value(v).map_err(|e| JError::new(ErrorKind::InvalidOperation, e.to_string()))
}

fn from_json_value(v: Value) -> JValue {
    JValue::from_serialize(&v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: Value) -> Vars {
        let mut out = Vars::default();
        for (k, x) in v.as_object().unwrap() {
            out.set(k.clone(), x.clone());
        }
        out
    }

    #[test]
    fn native_values_and_strings() {
        let t = Templar::new();
        let v = vars(json!({"l": [1, 2], "n": "x"}));
        assert_eq!(t.render(&json!("{{ l }}"), &v).unwrap(), json!([1, 2]));
        assert_eq!(t.render(&json!("a-{{ n }}"), &v).unwrap(), json!("a-x"));
        assert_eq!(
            t.render(&json!({"k": ["{{ n }}"]}), &v).unwrap(),
            json!({"k": ["x"]})
        );
    }

    #[test]
    fn strict_undefined_names_the_variable() {
        let t = Templar::new();
        let e = t
            .render(&json!("{{ nope }}"), &Vars::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("undefined"), "{e}");
        assert_eq!(
            t.render(&json!("{{ nope | default('d') }}"), &Vars::default())
                .unwrap(),
            json!("d")
        );
    }

    #[test]
    fn lazy_vars_and_unsafe_secrets() {
        let t = Templar::new();
        let mut v = vars(json!({"a": "{{ b }}-a", "b": "bee"}));
        v.set_unsafe("secret", json!({"password": "{{ not rendered }}"}));
        assert_eq!(t.render(&json!("{{ a }}"), &v).unwrap(), json!("bee-a"));
        assert_eq!(
            t.render(&json!("{{ secret.password }}"), &v).unwrap(),
            json!("{{ not rendered }}")
        );
        assert_eq!(v.secret_strings(), vec!["{{ not rendered }}".to_string()]);
    }

    #[test]
    fn undefined_names_are_named() {
        let t = Templar::new();
        let v = vars(json!({"zuul": {"project": {"name": "p"}}, "lazy": "{{ zuul }}"}));
        let e = |s: &str| t.render(&json!(s), &v).unwrap_err().to_string();
        assert_eq!(
            e("echo {{ nope }}"),
            "'nope' is undefined (in \"echo {{ nope }}\")"
        );
        assert_eq!(e("{{ missing.attr }}"), "'missing.attr' is undefined");
        assert!(e("{{ zuul.project.nope }}x").starts_with("'zuul.project.nope' is undefined"));
        assert!(e("{{ a }}{{ b }}").starts_with("'a', 'b' are undefined"));
        let c = t.condition("nope2 == 1", &v).unwrap_err().to_string();
        assert_eq!(c, "'nope2' is undefined (in \"nope2 == 1\")");
    }

    #[test]
    fn conditions() {
        let t = Templar::new();
        let v = vars(json!({"x": 3, "s": "no", "r": {"failed": false, "changed": true}}));
        assert!(t.condition("x > 2", &v).unwrap());
        assert!(t.condition("buildset_registry is not defined", &v).unwrap());
        assert!(!t.condition("s | bool", &v).unwrap());
        assert!(t.condition("r is changed and r is success", &v).unwrap());
        assert!(t.condition("{{ x == 3 }}", &v).unwrap());
        assert!(t.condition("nope", &v).is_err());
    }

    #[test]
    fn ansible_filters() {
        let t = Templar::new();
        let v =
            vars(json!({"d": {"a": 1, "b": {"c": 2}}, "l": [[1], [2, [3]]], "s": "hello world"}));
        let r = |e: &str| t.render(&json!(e), &v).unwrap();
        assert_eq!(
            r("{{ d | combine({'b': {'e': 3}}, recursive=true) }}"),
            json!({"a": 1, "b": {"c": 2, "e": 3}})
        );
        assert_eq!(r("{{ d | combine({'b': 5}) }}"), json!({"a": 1, "b": 5}));
        assert_eq!(
            r("{{ {'a': 1} | dict2items }}"),
            json!([{"key": "a", "value": 1}])
        );
        assert_eq!(r("{{ l | flatten }}"), json!([1, 2, 3]));
        assert_eq!(
            r("{{ s | regex_replace('(\\\\w+) world', '\\\\1 there') }}"),
            json!("hello there")
        );
        assert_eq!(r("{{ 'x' | b64encode | b64decode }}"), json!("x"));
        assert_eq!(
            r("{{ d | to_json | from_json }}"),
            json!({"a": 1, "b": {"c": 2}})
        );
        assert_eq!(r("{{ '/a/b/c.txt' | basename }}"), json!("c.txt"));
        assert_eq!(r("{{ \"it's\" | quote }}"), json!("'it'\"'\"'s'"));
        assert_eq!(
            r(
                "{{ [{'n': 1, 'ok': true}, {'n': 2, 'ok': false}] | selectattr('ok') | map(attribute='n') | list }}"
            ),
            json!([1])
        );
        assert_eq!(r("{{ 'yes' | bool }}"), json!(true));
        assert_eq!(r("{{ [1, 2, 2] | unique }}"), json!([1, 2]));
    }
}
