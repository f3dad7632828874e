//! `.dockerignore` patterns, matched as Docker matches them (moby's patternmatcher): Go
//! `filepath.Match` syntax per path segment (`*` and `?` never cross `/`, `[a-z]` and
//! `[^a]` classes, `\` escapes) plus `**` for any number of segments; a pattern also
//! matches every path under a directory it matches; `!pattern` re-includes; the last
//! pattern that matches decides. Patterns are relative to the context root: a leading `/`
//! or `./` is dropped, `..` resolved, a trailing `/` ignored.
//!
//! The matching itself is globset's (ripgrep's matcher), after a translation of the few
//! places where Go's syntax and globset's differ (`{a,b}` is literal in Go, `[!a]` is a
//! class holding `!` and `a`, not a negation).
//!
//! PURE: no I/O (the caller reads the file and walks the context).

use globset::{GlobBuilder, GlobMatcher};

/// A pattern that cannot be parsed (an unterminated `[` class, a trailing `\`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(".dockerignore line {line}: bad pattern {pattern:?}")]
pub struct PatternError {
    pub line: usize,
    pub pattern: String,
}

#[derive(Clone, Debug)]
struct Pattern {
    matcher: GlobMatcher,
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
            let matcher = matcher(&cleaned).ok_or_else(|| PatternError {
                line: i + 1,
                pattern: p.to_string(),
            })?;
            patterns.push(Pattern { matcher, exclusion });
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
        // The path and each of its parents: a pattern naming a directory covers its contents.
        let prefixes: Vec<String> = (1..=parts.len()).map(|n| parts[..n].join("/")).collect();
        let mut matched = false;
        for p in &self.patterns {
            // Only a pattern that could change the verdict needs evaluating.
            if p.exclusion != matched {
                continue;
            }
            if prefixes.iter().any(|x| p.matcher.is_match(x)) {
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

/// A Go-syntax pattern compiled with globset, or `None` when Go would call it malformed.
pub fn matcher(pattern: &str) -> Option<GlobMatcher> {
    let translated = translate(pattern)?;
    GlobBuilder::new(&translated)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .ok()
        .map(|g| g.compile_matcher())
}

/// Go `filepath.Match` syntax → globset syntax: braces made literal, `[!…]` made a plain
/// class (Go negates only with `^`), escapes kept. `None` for an unterminated class or a
/// trailing `\`, which Go rejects.
fn translate(pattern: &str) -> Option<String> {
    let c: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '\\' => {
                out.push('\\');
                out.push(*c.get(i + 1)?);
                i += 2;
            }
            '{' | '}' => {
                out.push('\\');
                out.push(c[i]);
                i += 1;
            }
            '[' => {
                // Go: `[`, an optional `^`, then ranges up to the first unescaped `]`.
                let mut j = i + 1;
                let negated = c.get(j) == Some(&'^');
                if negated {
                    j += 1;
                }
                let start = j;
                while j < c.len() && c[j] != ']' {
                    j += if c[j] == '\\' { 2 } else { 1 };
                }
                if j >= c.len() || j == start {
                    return None;
                }
                let mut body = String::new();
                let mut k = start;
                let mut bang = false;
                while k < j {
                    match c[k] {
                        '\\' => {
                            body.push(c[k + 1]);
                            k += 2;
                        }
                        // A literal `!` goes last, where globset cannot read it as negation.
                        '!' => {
                            bang = true;
                            k += 1;
                        }
                        // `[` and `]` would be read as POSIX classes or the class's end.
                        '[' | ']' => return None,
                        ch => {
                            body.push(ch);
                            k += 1;
                        }
                    }
                }
                out.push('[');
                if negated {
                    out.push('!');
                }
                out.push_str(&body);
                if bang {
                    out.push('!');
                }
                out.push(']');
                i = j + 1;
            }
            ch => {
                out.push(ch);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Go `filepath.Match` for one segment (no `/` on either side); a malformed pattern
/// matches nothing.
pub fn glob(pattern: &str, name: &str) -> bool {
    matcher(pattern).is_some_and(|m| m.is_match(name))
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
        assert!(Ignore::parse("a\\\n").is_err());
    }

    #[test]
    fn star_does_not_cross_a_slash_and_double_star_does() {
        let ig = Ignore::parse("a/*/c\ndocs/**\n./x/./y/\nz/../w\n").unwrap();
        assert!(ig.excluded("a/b/c") && !ig.excluded("a/b/b/c"));
        // `docs/**` is everything inside docs, not docs itself (moby's patternmatcher).
        assert!(ig.excluded("docs/a") && ig.excluded("docs/a/b") && !ig.excluded("docs"));
        assert!(ig.excluded("x/y/z"), "./ and trailing / are cleaned");
        assert!(ig.excluded("w") && !ig.excluded("z"), ".. resolved");
        let mid = Ignore::parse("a/**/b\n").unwrap();
        assert!(mid.excluded("a/b") && mid.excluded("a/x/y/b") && !mid.excluded("b"));
    }

    #[test]
    fn last_match_wins() {
        let ig = Ignore::parse("*.md\n!README*.md\nREADME-secret.md\n").unwrap();
        assert!(ig.excluded("a.md"));
        assert!(!ig.excluded("README.md"));
        assert!(ig.excluded("README-secret.md"));
    }

    #[test]
    fn globs() {
        assert!(glob("*.rs", "main.rs"));
        assert!(glob("m??n.rs", "main.rs"));
        // Go negates a class with `^` only; `[!a]` holds `!` and `a`.
        assert!(glob("[^a]x", "bx") && !glob("[^a]x", "ax"));
        assert!(glob("[!a]x", "ax") && glob("[!a]x", "!x") && !glob("[!a]x", "bx"));
        assert!(glob("[a-c]", "b") && !glob("[a-c]", "d"));
        assert!(glob("\\*", "*") && !glob("\\*", "a"));
        // Braces are literal in Go.
        assert!(glob("{a,b}", "{a,b}") && !glob("{a,b}", "a"));
        assert!(!glob("*", "a/b"));
        assert!(!glob("[", "["));
    }
}
