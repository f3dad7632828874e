//! Tag filters and tag orderings: which tags a trigger fires for, and which of several
//! tags is the "latest" one a poll reports.
//!
//! Owns: pure string logic (no I/O). The include regex is matched against the whole tag
//! (`match: full`, the default: `v1` does not pass `v1.2`) or anywhere in it (`match:
//! find`, GoCD's docker poller behaviour). Exclude patterns are globs (`*`, `?`); the
//! default excludes cosign's signature, attestation and SBOM tags.

use std::cmp::Ordering;

use super::TriggerError;

/// cosign stores signatures, attestations and SBOMs under `sha256-<hex>.sig|att|sbom` tags;
/// those pushes are not new images.
pub const DEFAULT_EXCLUDE: &[&str] = &["sha256-*.sig", "sha256-*.att", "sha256-*.sbom"];

#[derive(Clone, Debug)]
pub struct TagFilter {
    include: Option<(String, regex::Regex)>,
    full: bool,
    exclude: Vec<(String, regex::Regex)>,
}

impl Default for TagFilter {
    fn default() -> Self {
        TagFilter::new(None, None, None).unwrap_or(TagFilter {
            include: None,
            full: true,
            exclude: vec![],
        })
    }
}

fn glob(pattern: &str) -> Result<regex::Regex, regex::Error> {
    let mut re = String::from("^");
    for c in pattern.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re)
}

/// One check of [`TagFilter::explain`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct Check {
    pub check: String,
    pub pass: bool,
}

impl TagFilter {
    pub fn new(
        include: Option<&str>,
        mode: Option<&str>,
        exclude: Option<Vec<String>>,
    ) -> Result<TagFilter, TriggerError> {
        let full = match mode.unwrap_or("full") {
            "full" => true,
            "find" => false,
            other => {
                return Err(TriggerError::Filter(format!(
                    "match {other:?}: expected full or find"
                )));
            }
        };
        let include = match include {
            Some(re) => {
                let src = if full {
                    format!("^(?:{re})$")
                } else {
                    re.to_string()
                };
                let r = regex::Regex::new(&src)
                    .map_err(|e| TriggerError::Filter(format!("include {re:?}: {e}")))?;
                Some((re.to_string(), r))
            }
            None => None,
        };
        let patterns =
            exclude.unwrap_or_else(|| DEFAULT_EXCLUDE.iter().map(|s| s.to_string()).collect());
        let mut ex = Vec::new();
        for p in patterns {
            let r = glob(&p).map_err(|e| TriggerError::Filter(format!("exclude {p:?}: {e}")))?;
            ex.push((p, r));
        }
        Ok(TagFilter {
            include,
            full,
            exclude: ex,
        })
    }

    pub fn matches(&self, tag: &str) -> bool {
        self.explain(tag).iter().all(|c| c.pass)
    }

    /// Every check, in order, and whether `tag` passes it.
    pub fn explain(&self, tag: &str) -> Vec<Check> {
        let mut out = Vec::new();
        match &self.include {
            Some((src, r)) => out.push(Check {
                check: format!(
                    "include /{src}/ ({})",
                    if self.full { "full match" } else { "find" }
                ),
                pass: r.is_match(tag),
            }),
            None => out.push(Check {
                check: "include: any tag".into(),
                pass: true,
            }),
        }
        for (src, r) in &self.exclude {
            out.push(Check {
                check: format!("exclude {src}"),
                pass: !r.is_match(tag),
            });
        }
        out
    }
}

/// A tag as a semantic version: a leading `v` is allowed and a missing minor or patch is 0
/// (`v1.2` is 1.2.0), as registries' tags are often written.
fn version(tag: &str) -> Option<semver::Version> {
    let s = tag.strip_prefix('v').unwrap_or(tag);
    let cut = s.find(['-', '+']).unwrap_or(s.len());
    let (core, rest) = s.split_at(cut);
    let padded = match core.split('.').count() {
        1 => format!("{core}.0.0{rest}"),
        2 => format!("{core}.0{rest}"),
        _ => s.to_string(),
    };
    semver::Version::parse(&padded).ok()
}

/// A range in Cargo's syntax (`>=1.2, <2`; a bare `1.2` is `^1.2`); comparators may also be
/// separated by spaces only (`>=1.2 <2`). As Cargo and npm do, a pre-release is only in a
/// range that names a pre-release of the same version (`<2` does not admit `2.0.0-rc1`).
fn version_req(s: &str) -> Result<semver::VersionReq, TriggerError> {
    let text = if s.contains(',') {
        s.to_string()
    } else {
        s.split_whitespace().collect::<Vec<_>>().join(", ")
    };
    semver::VersionReq::parse(&text).map_err(|e| TriggerError::Filter(format!("range {s:?}: {e}")))
}

/// How a poll orders tags to find the latest matching one.
#[derive(Clone, Debug, Default)]
pub enum Order {
    /// Semantic versions (tags that are not are ignored), optionally within a range.
    Semver(Option<RangeBox>),
    /// Tags made only of digits, as numbers.
    Numerical,
    Alphabetical,
    /// Digit runs compared as numbers: `build-9 < build-10`.
    #[default]
    Natural,
}

/// A semver range, kept with its text for messages.
#[derive(Clone, Debug)]
pub struct RangeBox {
    text: String,
    range: semver::VersionReq,
}

impl Order {
    pub fn parse(order: Option<&str>, range: Option<&str>) -> Result<Order, TriggerError> {
        let o = match order.unwrap_or("natural") {
            "semver" => Order::Semver(match range {
                Some(r) => Some(RangeBox {
                    text: r.to_string(),
                    range: version_req(r)?,
                }),
                None => None,
            }),
            "numerical" => Order::Numerical,
            "alphabetical" => Order::Alphabetical,
            "natural" => Order::Natural,
            other => {
                return Err(TriggerError::Filter(format!(
                    "order {other:?}: expected semver, numerical, alphabetical or natural"
                )));
            }
        };
        if range.is_some() && !matches!(o, Order::Semver(_)) {
            return Err(TriggerError::Filter("`range` needs order: semver".into()));
        }
        Ok(o)
    }

    /// Can this tag take part in the ordering (semver: parses and lies in the range)?
    pub fn admits(&self, tag: &str) -> bool {
        match self {
            Order::Semver(r) => {
                version(tag).is_some_and(|v| r.as_ref().is_none_or(|r| r.range.matches(&v)))
            }
            Order::Numerical => !tag.is_empty() && tag.bytes().all(|b| b.is_ascii_digit()),
            _ => true,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Order::Semver(Some(r)) => format!("semver in {}", r.text),
            Order::Semver(None) => "semver".into(),
            Order::Numerical => "numerical".into(),
            Order::Alphabetical => "alphabetical".into(),
            Order::Natural => "natural".into(),
        }
    }

    pub fn cmp(&self, a: &str, b: &str) -> Ordering {
        match self {
            Order::Semver(_) => match (version(a), version(b)) {
                (Some(x), Some(y)) => x.cmp(&y),
                _ => a.cmp(b),
            },
            Order::Numerical => {
                let (x, y) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            Order::Alphabetical => a.cmp(b),
            Order::Natural => natural_cmp(a, b),
        }
    }

    /// The latest admitted tag.
    pub fn latest<'a>(&self, tags: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
        tags.into_iter()
            .filter(|t| self.admits(t))
            .max_by(|a, b| self.cmp(a, b))
    }
}

/// Digit-aware comparison: runs of digits compare as numbers.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    fn runs(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ra, rb) = (runs(a), runs(b));
    for ((da, xa), (db, xb)) in ra.iter().zip(rb.iter()) {
        let o = if *da && *db {
            let (x, y) = (xa.trim_start_matches('0'), xb.trim_start_matches('0'));
            x.len().cmp(&y.len()).then_with(|| x.cmp(y))
        } else {
            xa.cmp(xb)
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    ra.len().cmp(&rb.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_find() {
        let f = TagFilter::new(Some("v1"), None, None).unwrap();
        assert!(f.matches("v1") && !f.matches("v1.2"));
        let f = TagFilter::new(Some("v1"), Some("find"), None).unwrap();
        assert!(f.matches("v1.2"));
    }

    #[test]
    fn cosign_tags_excluded_by_default() {
        let f = TagFilter::default();
        assert!(!f.matches("sha256-abcd.sig") && !f.matches("sha256-abcd.att"));
        assert!(f.matches("latest"));
        let f = TagFilter::new(None, None, Some(vec![])).unwrap();
        assert!(f.matches("sha256-abcd.sig"));
    }

    #[test]
    fn orderings() {
        let tags = ["v1.9.0", "v1.10.0", "v2.0.0-rc1", "latest", "v2.0.0"];
        assert_eq!(
            Order::parse(Some("semver"), None).unwrap().latest(tags),
            Some("v2.0.0")
        );
        let r = Order::parse(Some("semver"), Some(">=1.0, <2")).unwrap();
        assert_eq!(r.latest(tags), Some("v1.10.0"));
        assert_eq!(
            Order::Natural.latest(["build-9", "build-10"]),
            Some("build-10")
        );
        assert_eq!(
            Order::Alphabetical.latest(["build-9", "build-10"]),
            Some("build-9")
        );
        assert_eq!(Order::Numerical.latest(["9", "10", "x"]), Some("10"));
        let r = Order::parse(Some("semver"), Some(">=1.0.0 <2.0.0")).unwrap();
        assert_eq!(r.latest(tags), Some("v1.10.0"));
        let rc = Order::parse(Some("semver"), Some(">=2.0.0-rc0")).unwrap();
        assert_eq!(rc.latest(["v2.0.0-rc1", "v1.0"]), Some("v2.0.0-rc1"));
        assert!(Order::parse(Some("semver"), Some(">>1")).is_err());
    }
}
