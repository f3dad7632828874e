//! `with_sequence`: the items of `start=1 end=5 stride=1 format=%d` and its forms.

use serde_json::Value;

/// `with_sequence`: `start=1 end=5 stride=1 format=%d` or `count=5` (or `1-5/2`).
pub(super) fn sequence(spec: &str) -> Result<Vec<Value>, String> {
    let bad = || format!("with_sequence: cannot read {spec:?}");
    let (mut start, mut end, mut stride, mut count, mut format) =
        (1i64, None, 1i64, None, "%d".to_string());
    match crate::playbook::model::key_values(spec) {
        Some(kv) => {
            for (k, v) in kv {
                let v = v.as_str().unwrap_or("").to_string();
                let num = || -> Result<i64, String> {
                    let t = v.trim();
                    if let Some(h) = t.strip_prefix("0x") {
                        i64::from_str_radix(h, 16).map_err(|_| bad())
                    } else {
                        t.parse().map_err(|_| bad())
                    }
                };
                match k.as_str() {
                    "start" => start = num()?,
                    "end" => end = Some(num()?),
                    "stride" => stride = num()?,
                    "count" => count = Some(num()?),
                    "format" => format = v,
                    _ => return Err(bad()),
                }
            }
        }
        None => {
            let (range, step) = spec.split_once('/').unwrap_or((spec, "1"));
            let (a, b) = range.split_once('-').unwrap_or(("1", range));
            start = a.trim().parse().map_err(|_| bad())?;
            end = Some(b.trim().parse().map_err(|_| bad())?);
            stride = step.trim().parse().map_err(|_| bad())?;
        }
    }
    let end = match (end, count) {
        (_, Some(c)) => start + (c - 1) * stride,
        (Some(e), None) => e,
        (None, None) => return Err("with_sequence: must specify count or end".into()),
    };
    if stride == 0 {
        return Err("with_sequence: stride must not be 0".into());
    }
    let mut out = Vec::new();
    let mut i = start;
    while (stride > 0 && i <= end) || (stride < 0 && i >= end) {
        out.push(Value::String(printf(&format, i)));
        i += stride;
    }
    Ok(out)
}

/// The `%d`, `%0Nd`, `%x`, `%o`, `%s` of Python's `%` with one integer.
fn printf(format: &str, n: i64) -> String {
    let re = regex::Regex::new(r"%(0?)(\d*)([dixXos])").ok();
    let Some(re) = re else {
        return format.to_string();
    };
    re.replace(format, |c: &regex::Captures<'_>| {
        let width: usize = c[2].parse().unwrap_or(0);
        let body = match &c[3] {
            "x" => format!("{n:x}"),
            "X" => format!("{n:X}"),
            "o" => format!("{n:o}"),
            _ => n.to_string(),
        };
        let pad = if &c[1] == "0" { '0' } else { ' ' };
        let mut s = body;
        while s.len() < width {
            s.insert(0, pad);
        }
        s
    })
    .into_owned()
}
