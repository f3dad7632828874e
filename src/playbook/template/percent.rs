//! Python's `%` operator in templates, which Jinja takes from Python and minijinja lacks:
//! `"%s-%02d" % (name, n)`, `"%(k)s" % d`, and the remainder of numbers (`7 % 3`).
//!
//! minijinja has no operator hook, so a source whose parse holds a `%` operator is
//! rewritten before it is compiled: minijinja's own parser gives the tree with source
//! spans, and each `A % B` becomes `__pymod((A), (B), tuple)`, where `tuple` says whether
//! `B` is written as a tuple `(x, y)` (its items are the arguments, as in Python; a list
//! or any other value is one argument). Never a text pattern: a `%` inside a string
//! literal, in `{% … %}` delimiters or in plain text is left as it is.

use std::borrow::Cow;

use minijinja::machinery::ast::{BinOpKind, CallArg, Expr, Stmt};
use minijinja::machinery::{Span, WhitespaceConfig, parse, parse_expr};
use minijinja::value::{Value as JValue, ValueKind};
use minijinja::{Environment, Error as JError, ErrorKind};

use super::pyfmt::repr;

/// The function the rewritten source calls.
pub(super) const FUNCTION: &str = "__pymod";

pub(super) fn add(env: &mut Environment<'static>) {
    env.add_function(FUNCTION, pymod);
}

/// A template's source with its `%` operators rewritten (unchanged when it has none or
/// does not parse: then minijinja reports the error on the original).
pub(super) fn template(src: &str) -> Cow<'_, str> {
    if !has_operator_candidate(src) {
        return Cow::Borrowed(src);
    }
    match parse(
        src,
        "<template>",
        Default::default(),
        WhitespaceConfig::default(),
    ) {
        Ok(tree) => rewrite(src, |out| stmt(&tree, out)),
        Err(_) => Cow::Borrowed(src),
    }
}

/// An expression's source (`when:`, `{{ … }}` alone) with its `%` operators rewritten.
pub(super) fn expression(src: &str) -> Cow<'_, str> {
    if !src.contains('%') {
        return Cow::Borrowed(src);
    }
    match parse_expr(src) {
        Ok(e) => rewrite(src, |out| expr(&e, out)),
        Err(_) => Cow::Borrowed(src),
    }
}

/// Whether a `%` stands anywhere but in `{%`/`%}` delimiters (cheap; the parse decides).
fn has_operator_candidate(src: &str) -> bool {
    // Most templates have no `%` at all: no allocation for them.
    src.contains('%') && src.replace("{%", "").replace("%}", "").contains('%')
}

/// One `A % B`: byte ranges of the whole, of `A` and of `B`.
struct Rem {
    whole: (usize, usize),
    left: (usize, usize),
    right: (usize, usize),
    /// `B` is a list or tuple literal (a tuple when its source starts with `(`).
    list: bool,
}

fn range(s: Span) -> (usize, usize) {
    (s.start_offset as usize, s.end_offset as usize)
}

/// The source range of `e` with all its operands: a filter's or attribute's own span
/// may start after the expression it applies to.
fn full(e: &Expr<'_>) -> (usize, usize) {
    let union = |a: (usize, usize), b: (usize, usize)| (a.0.min(b.0), a.1.max(b.1));
    let own = range(e.span());
    let inner: Vec<&Expr<'_>> = match e {
        Expr::Var(_) | Expr::Const(_) | Expr::List(_) | Expr::Map(_) => vec![],
        Expr::Slice(s) => vec![&s.expr],
        Expr::UnaryOp(u) => vec![&u.expr],
        Expr::BinOp(b) => vec![&b.left, &b.right],
        Expr::Compare(c) => std::iter::once(&c.expr)
            .chain(c.ops.iter().map(|o| &o.expr))
            .collect(),
        Expr::IfExpr(i) => std::iter::once(&i.test_expr)
            .chain([&i.true_expr])
            .chain(i.false_expr.iter())
            .collect(),
        Expr::Filter(f) => f.expr.iter().collect(),
        Expr::Test(t) => vec![&t.expr],
        Expr::GetAttr(g) => vec![&g.expr],
        Expr::GetItem(g) => vec![&g.expr],
        Expr::Call(c) => vec![&c.expr],
    };
    inner.into_iter().map(full).fold(own, union)
}

fn rewrite<'a>(src: &'a str, collect: impl FnOnce(&mut Vec<Rem>)) -> Cow<'a, str> {
    let mut rems = Vec::new();
    collect(&mut rems);
    if rems.is_empty() {
        return Cow::Borrowed(src);
    }
    rems.sort_by_key(|r| (r.whole.0, std::cmp::Reverse(r.whole.1)));
    Cow::Owned(emit(src, (0, src.len()), &rems))
}

/// `src[at]` with every outermost `%` inside it rewritten, recursively.
fn emit(src: &str, at: (usize, usize), rems: &[Rem]) -> String {
    let mut out = String::new();
    let mut pos = at.0;
    for r in rems {
        let inside = r.whole.0 >= at.0 && r.whole.1 <= at.1;
        if !inside || r.whole.0 < pos {
            continue; // outside this range, or nested in one already emitted
        }
        out.push_str(&src[pos..r.whole.0]);
        let tuple = r.list && src[r.right.0..].starts_with('(');
        out.push_str(&format!(
            "__pymod(({}), ({}), {tuple})",
            emit(src, r.left, rems),
            emit(src, r.right, rems),
        ));
        pos = r.whole.1;
    }
    out.push_str(&src[pos..at.1]);
    out
}

fn stmts(list: &[Stmt<'_>], out: &mut Vec<Rem>) {
    list.iter().for_each(|s| stmt(s, out));
}

fn stmt(s: &Stmt<'_>, out: &mut Vec<Rem>) {
    match s {
        Stmt::Template(t) => stmts(&t.children, out),
        Stmt::EmitExpr(e) => expr(&e.expr, out),
        Stmt::EmitRaw(_) | Stmt::Continue(_) | Stmt::Break(_) => {}
        Stmt::ForLoop(f) => {
            expr(&f.iter, out);
            f.filter_expr.iter().for_each(|e| expr(e, out));
            stmts(&f.body, out);
            stmts(&f.else_body, out);
        }
        Stmt::IfCond(c) => {
            expr(&c.expr, out);
            stmts(&c.true_body, out);
            stmts(&c.false_body, out);
        }
        Stmt::WithBlock(w) => {
            w.assignments.iter().for_each(|(_, e)| expr(e, out));
            stmts(&w.body, out);
        }
        Stmt::Set(s) => expr(&s.expr, out),
        Stmt::SetBlock(s) => {
            s.filter.iter().for_each(|e| expr(e, out));
            stmts(&s.body, out);
        }
        Stmt::AutoEscape(a) => stmts(&a.body, out),
        Stmt::FilterBlock(f) => {
            expr(&f.filter, out);
            stmts(&f.body, out);
        }
        Stmt::Block(b) => stmts(&b.body, out),
        Stmt::Import(i) => expr(&i.expr, out),
        Stmt::FromImport(i) => expr(&i.expr, out),
        Stmt::Extends(e) => expr(&e.name, out),
        Stmt::Include(i) => expr(&i.name, out),
        Stmt::Macro(m) => {
            m.defaults.iter().for_each(|e| expr(e, out));
            stmts(&m.body, out);
        }
        Stmt::CallBlock(c) => {
            expr(&c.call.expr, out);
            args(&c.call.args, out);
            stmts(&c.macro_decl.body, out);
        }
        Stmt::Do(d) => {
            expr(&d.call.expr, out);
            args(&d.call.args, out);
        }
    }
}

fn args(list: &[CallArg<'_>], out: &mut Vec<Rem>) {
    for a in list {
        match a {
            CallArg::Pos(e)
            | CallArg::Kwarg(_, e)
            | CallArg::PosSplat(e)
            | CallArg::KwargSplat(e) => expr(e, out),
        }
    }
}

fn expr(e: &Expr<'_>, out: &mut Vec<Rem>) {
    match e {
        Expr::Var(_) | Expr::Const(_) => {}
        Expr::Slice(s) => {
            expr(&s.expr, out);
            for x in [&s.start, &s.stop, &s.step].into_iter().flatten() {
                expr(x, out);
            }
        }
        Expr::UnaryOp(u) => expr(&u.expr, out),
        Expr::BinOp(b) => {
            expr(&b.left, out);
            expr(&b.right, out);
            if matches!(b.op, BinOpKind::Rem) {
                let (l, r, w) = (full(&b.left), full(&b.right), range(b.span()));
                out.push(Rem {
                    whole: (w.0.min(l.0), w.1.max(r.1)),
                    left: l,
                    right: r,
                    list: matches!(&b.right, Expr::List(_)),
                });
            }
        }
        Expr::Compare(c) => {
            expr(&c.expr, out);
            c.ops.iter().for_each(|o| expr(&o.expr, out));
        }
        Expr::IfExpr(i) => {
            expr(&i.test_expr, out);
            expr(&i.true_expr, out);
            i.false_expr.iter().for_each(|x| expr(x, out));
        }
        Expr::Filter(f) => {
            f.expr.iter().for_each(|x| expr(x, out));
            args(&f.args, out);
        }
        Expr::Test(t) => {
            expr(&t.expr, out);
            args(&t.args, out);
        }
        Expr::GetAttr(g) => expr(&g.expr, out),
        Expr::GetItem(g) => {
            expr(&g.expr, out);
            expr(&g.subscript_expr, out);
        }
        Expr::Call(c) => {
            expr(&c.expr, out);
            args(&c.args, out);
        }
        Expr::List(l) => l.items.iter().for_each(|x| expr(x, out)),
        Expr::Map(m) => {
            m.keys.iter().for_each(|x| expr(x, out));
            m.values.iter().for_each(|x| expr(x, out));
        }
    }
}

fn err(msg: impl Into<String>) -> JError {
    JError::new(ErrorKind::InvalidOperation, msg.into())
}

/// `a % b` as Python computes it.
fn pymod(a: JValue, b: JValue, tuple: bool) -> Result<JValue, JError> {
    if a.kind() == ValueKind::String {
        let fmt = a.as_str().unwrap_or_default();
        let args: Vec<JValue> = if tuple {
            b.try_iter()?.collect()
        } else {
            vec![b]
        };
        return printf(fmt, &args).map(JValue::from);
    }
    if a.kind() != ValueKind::Number || b.kind() != ValueKind::Number {
        return Err(err(format!(
            "unsupported operand type(s) for %: {} and {}",
            a.kind(),
            b.kind()
        )));
    }
    match (i64::try_from(a.clone()), i64::try_from(b.clone())) {
        (Ok(x), Ok(y)) if a.is_integer() && b.is_integer() => {
            if y == 0 {
                return Err(err("integer division or modulo by zero"));
            }
            Ok(JValue::from(
                x.rem_euclid(y) + if y < 0 && x.rem_euclid(y) != 0 { y } else { 0 },
            ))
        }
        _ => {
            let (x, y) = (f64::try_from(a)?, f64::try_from(b)?);
            if y == 0.0 {
                return Err(err("float modulo"));
            }
            Ok(JValue::from(x - y * (x / y).floor()))
        }
    }
}

/// One conversion: `%(key)` flags width .precision type.
#[derive(Default)]
struct Spec {
    key: Option<String>,
    left: bool,
    zero: bool,
    plus: bool,
    space: bool,
    alt: bool,
    width: usize,
    precision: Option<usize>,
}

/// Python's printf-style formatting (`str % args`).
fn printf(fmt: &str, args: &[JValue]) -> Result<String, JError> {
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    let mut next = 0;
    let mut used_mapping = false;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        if chars.peek() == Some(&'(') {
            chars.next();
            let key: String = chars.by_ref().take_while(|c| *c != ')').collect();
            spec.key = Some(key);
        }
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.left = true,
                '0' => spec.zero = true,
                '+' => spec.plus = true,
                ' ' => spec.space = true,
                '#' => spec.alt = true,
                _ => break,
            }
            chars.next();
        }
        let mut width = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(*d);
            chars.next();
        }
        spec.width = width.parse().unwrap_or(0);
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(*d);
                chars.next();
            }
            spec.precision = Some(p.parse().unwrap_or(0));
        }
        while matches!(chars.peek(), Some('h' | 'l' | 'L')) {
            chars.next();
        }
        let Some(ty) = chars.next() else {
            return Err(err("incomplete format"));
        };
        if ty == '%' {
            out.push('%');
            continue;
        }
        let value = match &spec.key {
            Some(k) => {
                used_mapping = true;
                let map = args
                    .first()
                    .filter(|m| m.kind() == ValueKind::Map)
                    .ok_or_else(|| err("format requires a mapping"))?;
                let v = map.get_item(&JValue::from(k.as_str()))?;
                if v.is_undefined() {
                    return Err(err(format!("KeyError: '{k}'")));
                }
                v
            }
            None => {
                let v = args
                    .get(next)
                    .cloned()
                    .ok_or_else(|| err("not enough arguments for format string"))?;
                next += 1;
                v
            }
        };
        out.push_str(&convert(&spec, ty, &value)?);
    }
    if !used_mapping && next < args.len() {
        return Err(err("not all arguments converted during string formatting"));
    }
    Ok(out)
}

fn number(ty: char, v: &JValue) -> Result<f64, JError> {
    match v.kind() {
        ValueKind::Number | ValueKind::Bool => {
            Ok(f64::try_from(v.clone()).unwrap_or_else(|_| if v.is_true() { 1.0 } else { 0.0 }))
        }
        k => Err(err(format!(
            "%{ty} format: a real number is required, not {k}"
        ))),
    }
}

fn integer(ty: char, v: &JValue) -> Result<i128, JError> {
    if let Ok(i) = i128::try_from(v.clone()) {
        return Ok(i);
    }
    Ok(number(ty, v)?.trunc() as i128)
}

fn convert(spec: &Spec, ty: char, v: &JValue) -> Result<String, JError> {
    let (sign_of, body): (bool, String) = match ty {
        's' | 'r' | 'a' => {
            let mut s = match (ty, v.as_str()) {
                ('s', Some(s)) if v.kind() == ValueKind::String => s.to_string(),
                _ => repr(v),
            };
            if let Some(p) = spec.precision {
                s = s.chars().take(p).collect();
            }
            return Ok(pad(spec, String::new(), s, false));
        }
        'c' => {
            let s = match v.as_str() {
                Some(s) if s.chars().count() == 1 => s.to_string(),
                _ => char::from_u32(integer(ty, v)? as u32)
                    .map(String::from)
                    .ok_or_else(|| err("%c arg not in range"))?,
            };
            return Ok(pad(spec, String::new(), s, false));
        }
        'd' | 'i' | 'u' => {
            let i = integer(ty, v)?;
            (i < 0, i.unsigned_abs().to_string())
        }
        'x' | 'X' | 'o' => {
            let i = integer(ty, v)?;
            let digits = match ty {
                'x' => format!("{:x}", i.unsigned_abs()),
                'X' => format!("{:X}", i.unsigned_abs()),
                _ => format!("{:o}", i.unsigned_abs()),
            };
            let prefix = match (spec.alt, ty) {
                (true, 'x') => "0x",
                (true, 'X') => "0X",
                (true, _) => "0o",
                _ => "",
            };
            (i < 0, format!("{prefix}{digits}"))
        }
        'f' | 'F' | 'e' | 'E' | 'g' | 'G' => {
            let x = number(ty, v)?;
            (x.is_sign_negative() && x != 0.0, float(ty, x.abs(), spec))
        }
        other => {
            return Err(err(format!("unsupported format character '{other}'")));
        }
    };
    let sign = if sign_of {
        "-"
    } else if spec.plus {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    };
    Ok(pad(spec, sign.to_string(), body, true))
}

/// A non-negative float in Python's `%f`/`%e`/`%g` forms.
fn float(ty: char, x: f64, spec: &Spec) -> String {
    let p = spec.precision.unwrap_or(6);
    let exp = |p: usize| {
        // Rust writes `1.5e3`; Python `1.500000e+03`.
        let s = format!("{x:.p$e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let e: i32 = e.parse().unwrap_or(0);
        format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
    };
    let s = match ty {
        'f' | 'F' => format!("{x:.p$}"),
        'e' | 'E' => exp(p),
        _ => {
            let p = p.max(1);
            let e = if x == 0.0 {
                0
            } else {
                x.log10().floor() as i32
            };
            let s = if e < -4 || e >= p as i32 {
                exp(p - 1)
            } else {
                format!("{x:.*}", (p as i32 - 1 - e).max(0) as usize)
            };
            if spec.alt { s } else { trim_zeros(&s) }
        }
    };
    if ty.is_ascii_uppercase() {
        s.to_uppercase()
    } else {
        s
    }
}

/// `1.500000` → `1.5`, `2.000` → `2`, `1.50e+03` → `1.5e+03` (`%g`).
fn trim_zeros(s: &str) -> String {
    let (m, e) = match s.split_once('e') {
        Some((m, e)) => (m, format!("e{e}")),
        None => (s, String::new()),
    };
    let m = if m.contains('.') {
        m.trim_end_matches('0').trim_end_matches('.')
    } else {
        m
    };
    format!("{m}{e}")
}

fn pad(spec: &Spec, sign: String, body: String, numeric: bool) -> String {
    let len = sign.chars().count() + body.chars().count();
    let fill = spec.width.saturating_sub(len);
    if spec.left {
        format!("{sign}{body}{}", " ".repeat(fill))
    } else if spec.zero && numeric {
        format!("{sign}{}{body}", "0".repeat(fill))
    } else {
        format!("{}{sign}{body}", " ".repeat(fill))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str, ctx: JValue) -> String {
        let mut env = Environment::new();
        add(&mut env);
        env.set_formatter(super::super::pyfmt::format);
        env.render_str(&template(src), ctx).unwrap()
    }

    #[test]
    fn formats_as_python() {
        let ctx = minijinja::context! { name => "app", n => 7, d => minijinja::context!{ k => "v" }, l => vec![1, 2] };
        let cases = [
            ("{{ '%s-%02d' % (name, n) }}", "app-07"),
            ("{{ '%(k)s!' % d }}", "v!"),
            ("{{ '%s' % l }}", "[1, 2]"),
            (
                "{{ '%5.1f|%-4d|%x|%#o|%e' % (3.14159, n, 255, 8, 1500.0) }}",
                "  3.1|7   |ff|0o10|1.500000e+03",
            ),
            ("{{ '%g %g %g' % (0.5, 1500000.0, 2.0) }}", "0.5 1.5e+06 2"),
            ("{{ '%r %s %%' % ('a', none) }}", "'a' None %"),
            ("{{ 7 % 3 }} {{ -7 % 3 }} {{ 7 % -3 }}", "1 2 -2"),
            ("{% if n % 2 %}odd{% endif %} 100%", "odd 100%"),
            ("{{ 'a%sb' % ('%s' % name) }}", "aappb"),
            ("{{ ('%s' ~ '-%s') % (1, 2) }}", "1-2"),
            ("{{ '%s' % name | upper }}", "APP"),
        ];
        for (src, want) in cases {
            assert_eq!(render(src, ctx.clone()), want, "{src}");
        }
    }

    #[test]
    fn a_percent_in_a_string_literal_or_text_is_left_alone() {
        assert_eq!(
            template("{{ '50%' }} 10% {% raw %}%{% endraw %}"),
            "{{ '50%' }} 10% {% raw %}%{% endraw %}"
        );
        assert_eq!(expression("x == '%'"), "x == '%'");
    }

    #[test]
    fn python_errors() {
        let mut env = Environment::new();
        add(&mut env);
        for (src, msg) in [
            ("{{ '%s %s' % (1,) }}", "not enough arguments"),
            ("{{ '%s' % (1, 2) }}", "not all arguments converted"),
            ("{{ '%d' % 'x' }}", "a real number is required"),
        ] {
            let e = env.render_str(&template(src), ()).unwrap_err();
            assert!(e.to_string().contains(msg), "{src}: {e}");
        }
    }
}
