//! `.dockerignore` patterns, matched as Docker matches them: Go `filepath.Match` syntax per
//! path segment (`*`, `?`, `[a-z]`, `\` escapes) plus `**` for any number of segments; a
//! pattern also matches every path under a directory it matches; `!pattern` re-includes;
//! the last pattern that matches decides.
//!
//! PURE: no I/O (the caller reads the file and walks the context).

/// A pattern that cannot be parsed (an unterminated `[` class).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(".dockerignore line {line}: bad pattern {pattern:?}")]
pub struct PatternError {
    pub line: usize,
    pub pattern: String,
}

#[derive(Clone, Debug)]
struct Pattern {
    segments: Vec<String>,
    exclusion: bool,
}

/// The patterns of one `.dockerignore`.
#[derive(Clone, Debug, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    pub fn parse(text: &str) -> Result<Ignore, PatternError> {
        let mut patterns = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (exclusion, p) = match l.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, l),
            };
            let cleaned = clean(p);
            if cleaned.is_empty() {
                continue;
            }
            let segments: Vec<String> = cleaned.split('/').map(String::from).collect();
            for s in &segments {
                if !valid_segment(s) {
                    return Err(PatternError {
                        line: i + 1,
                        pattern: p.to_string(),
                    });
                }
            }
            patterns.push(Pattern {
                segments,
                exclusion,
            });
        }
        Ok(Ignore { patterns })
    }

    /// True when some `!` pattern exists (an excluded directory may hold included files).
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// True when `path` (relative to the context, `/`-separated) is excluded.
    pub fn excluded(&self, path: &str) -> bool {
        let parts: Vec<&str> = path
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .collect();
        let mut matched = false;
        for p in &self.patterns {
            // Only a pattern that could change the verdict needs evaluating.
            if p.exclusion != matched {
                continue;
            }
            let hit = (1..=parts.len()).any(|n| match_segments(&p.segments, &parts[..n]));
            if hit {
                matched = !p.exclusion;
            }
        }
        matched
    }
}

/// `filepath.Clean` for patterns: no leading `/`, no `.` segments, `..` resolved.
fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for s in p.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    out.join("/")
}

fn valid_segment(s: &str) -> bool {
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '\\' => i += 2,
            '[' => match c[i + 1..].iter().position(|&x| x == ']') {
                Some(p) => i += p + 2,
                None => return false,
            },
            _ => i += 1,
        }
    }
    true
}

fn match_segments(pat: &[String], path: &[&str]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| match_segments(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((p, prest)) => glob(first, p) && match_segments(rest, prest),
            None => false,
        },
    }
}

/// Go `filepath.Match` for one segment (no `/` on either side).
pub fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob_at(&p, &n)
}

fn glob_at(p: &[char], n: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') => (0..=n.len()).any(|k| glob_at(&p[1..], &n[k..])),
        Some('?') => !n.is_empty() && glob_at(&p[1..], &n[1..]),
        Some('[') => {
            let Some(end) = p.iter().skip(1).position(|&c| c == ']').map(|e| e + 1) else {
                return false;
            };
            let Some(&c) = n.first() else {
                return false;
            };
            let mut class = &p[1..end];
            let negate = matches!(class.first(), Some('^' | '!'));
            if negate {
                class = &class[1..];
            }
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == '-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit != negate && glob_at(&p[end + 1..], &n[1..])
        }
        Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && glob_at(&p[2..], &n[1..]),
        Some(c) => n.first() == Some(c) && glob_at(&p[1..], &n[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_semantics() {
        let ig = Ignore::parse(
            "# comment\n*.log\n/build\n!build/keep.txt\n**/tmp\nsecret?.txt\n[ab]dir/x\n",
        )
        .unwrap();
        assert!(ig.excluded("a.log"));
        assert!(!ig.excluded("sub/a.log"), "*.log only matches at the top");
        assert!(ig.excluded("build"));
        assert!(ig.excluded("build/out/x.o"), "parent directory matches");
        assert!(!ig.excluded("build/keep.txt"), "exception");
        assert!(ig.excluded("tmp") && ig.excluded("a/b/tmp/c"));
        assert!(ig.excluded("secret1.txt") && !ig.excluded("secret12.txt"));
        assert!(ig.excluded("adir/x") && !ig.excluded("cdir/x"));
        assert!(!ig.excluded("src/main.rs"));
        assert!(ig.has_exceptions());
        let all = Ignore::parse("*\n!keep\n").unwrap();
        assert!(all.excluded("x") && !all.excluded("keep"));
        assert!(Ignore::parse("a[b\n").is_err());
    }

    #[test]
    fn globs() {
        assert!(glob("*.rs", "main.rs"));
        assert!(glob("m??n.rs", "main.rs"));
        assert!(glob("[!a]x", "bx") && !glob("[!a]x", "ax"));
        assert!(glob("[a-c]", "b") && !glob("[a-c]", "d"));
        assert!(glob("\\*", "*") && !glob("\\*", "a"));
    }
}
