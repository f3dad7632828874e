//! Dockerfile words: variable substitution (`$VAR`, `${VAR}`, `${VAR:-default}`,
//! `${VAR:+alt}`, `${VAR-default}`, `${VAR+alt}`, `${VAR:?msg}`), quote removal and
//! splitting on unquoted whitespace, as Docker's shell-word processor does for ENV, LABEL,
//! ARG, COPY, WORKDIR, USER, EXPOSE, VOLUME, STOPSIGNAL and FROM.
//!
//! PURE: no I/O. Must not know about instructions; the parser and builders call it.

/// A substitution error, e.g. `${X:?must be set}` with `X` unset or an unterminated `${`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WordsError {
    #[error("unterminated ${{ in {0:?}")]
    Unterminated(String),
    #[error("unterminated quote in {0:?}")]
    Quote(String),
    #[error("{name}: {message}")]
    Required { name: String, message: String },
    #[error("bad substitution {0:?}")]
    Bad(String),
}

/// Where variable values come from.
pub trait Vars: Sync {
    fn get(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String> + Sync> Vars for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Substitutes and unquotes `s`, splitting it into words on unquoted whitespace.
pub fn process_words(s: &str, vars: &dyn Vars, escape: char) -> Result<Vec<String>, WordsError> {
    Processor::new(s, vars, escape).run(true)
}

/// Substitutes and unquotes `s` as one word (whitespace kept).
pub fn process_word(s: &str, vars: &dyn Vars, escape: char) -> Result<String, WordsError> {
    Ok(Processor::new(s, vars, escape)
        .run(false)?
        .into_iter()
        .next()
        .unwrap_or_default())
}

/// Splits on unquoted whitespace keeping quotes and escapes (for `key=value` lists, whose
/// keys and values are then processed one by one).
pub fn split_raw(s: &str, escape: char) -> Result<Vec<String>, WordsError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut started = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == escape && q == '"' {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                } else if c == q {
                    quote = None;
                }
            }
            None if c.is_whitespace() => {
                if started {
                    words.push(std::mem::take(&mut cur));
                    started = false;
                }
            }
            None => {
                started = true;
                cur.push(c);
                if c == escape {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                } else if c == '"' || c == '\'' {
                    quote = Some(c);
                }
            }
        }
    }
    if quote.is_some() {
        return Err(WordsError::Quote(s.to_string()));
    }
    if started {
        words.push(cur);
    }
    Ok(words)
}

struct Processor<'a> {
    src: &'a str,
    chars: Vec<char>,
    pos: usize,
    vars: &'a dyn Vars,
    escape: char,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl<'a> Processor<'a> {
    fn new(src: &'a str, vars: &'a dyn Vars, escape: char) -> Self {
        Processor {
            src,
            chars: src.chars().collect(),
            pos: 0,
            vars,
            escape,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn run(mut self, split: bool) -> Result<Vec<String>, WordsError> {
        let mut words = Vec::new();
        let mut cur = String::new();
        let mut started = false;
        while let Some(c) = self.next() {
            if split && c.is_whitespace() {
                if started {
                    words.push(std::mem::take(&mut cur));
                    started = false;
                }
                continue;
            }
            started = true;
            if c == self.escape {
                // Outside quotes the escape character makes the next one literal.
                match self.next() {
                    Some(n) => cur.push(n),
                    None => cur.push(c),
                }
            } else if c == '\'' {
                loop {
                    match self.next() {
                        Some('\'') => break,
                        Some(n) => cur.push(n),
                        None => return Err(WordsError::Quote(self.src.to_string())),
                    }
                }
            } else if c == '"' {
                loop {
                    match self.next() {
                        Some('"') => break,
                        Some('$') => cur.push_str(&self.dollar()?),
                        Some(n) if n == self.escape => match self.peek() {
                            Some(m) if m == '"' || m == '$' || m == self.escape => {
                                self.pos += 1;
                                cur.push(m);
                            }
                            _ => cur.push(n),
                        },
                        Some(n) => cur.push(n),
                        None => return Err(WordsError::Quote(self.src.to_string())),
                    }
                }
            } else if c == '$' {
                cur.push_str(&self.dollar()?);
            } else {
                cur.push(c);
            }
        }
        if started || !split {
            words.push(cur);
        }
        Ok(words)
    }

    /// After a `$`: a name, `{…}`, or a literal `$`.
    fn dollar(&mut self) -> Result<String, WordsError> {
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                self.braced()
            }
            Some(c) if is_name_char(c) => {
                let mut name = String::new();
                while let Some(c) = self.peek().filter(|c| is_name_char(*c)) {
                    name.push(c);
                    self.pos += 1;
                }
                Ok(self.vars.get(&name).unwrap_or_default())
            }
            _ => Ok("$".to_string()),
        }
    }

    fn braced(&mut self) -> Result<String, WordsError> {
        let mut name = String::new();
        while let Some(c) = self.peek().filter(|c| is_name_char(*c)) {
            name.push(c);
            self.pos += 1;
        }
        if name.is_empty() {
            return Err(WordsError::Bad(self.src.to_string()));
        }
        let value = self.vars.get(&name);
        match self.next() {
            Some('}') => Ok(value.unwrap_or_default()),
            None => Err(WordsError::Unterminated(self.src.to_string())),
            Some(':') => {
                let op = self
                    .next()
                    .ok_or_else(|| WordsError::Unterminated(self.src.to_string()))?;
                let word = self.word_until_brace()?;
                let set = value.as_deref().is_some_and(|v| !v.is_empty());
                self.apply(&name, op, word, value, set)
            }
            Some(op @ ('-' | '+' | '?')) => {
                let word = self.word_until_brace()?;
                let set = value.is_some();
                self.apply(&name, op, word, value, set)
            }
            Some(_) => Err(WordsError::Bad(self.src.to_string())),
        }
    }

    fn apply(
        &self,
        name: &str,
        op: char,
        word: String,
        value: Option<String>,
        set: bool,
    ) -> Result<String, WordsError> {
        match op {
            '-' => Ok(if set { value.unwrap_or_default() } else { word }),
            '+' => Ok(if set { word } else { String::new() }),
            '?' if set => Ok(value.unwrap_or_default()),
            '?' => Err(WordsError::Required {
                name: name.to_string(),
                message: if word.is_empty() {
                    "is not set".to_string()
                } else {
                    word
                },
            }),
            _ => Err(WordsError::Bad(self.src.to_string())),
        }
    }

    /// The word of `${name:-word}` up to the matching `}`, itself substituted.
    fn word_until_brace(&mut self) -> Result<String, WordsError> {
        let mut out = String::new();
        loop {
            match self.next() {
                Some('}') => return Ok(out),
                Some('$') => out.push_str(&self.dollar()?),
                Some(c) if c == self.escape => {
                    if let Some(n) = self.next() {
                        out.push(n);
                    }
                }
                Some(c) => out.push(c),
                None => return Err(WordsError::Unterminated(self.src.to_string())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "SP" => Some("two words".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn w(s: &str) -> Vec<String> {
        process_words(s, &vars, '\\').unwrap()
    }

    #[test]
    fn substitution() {
        assert_eq!(w("$A ${A}x"), ["alpha", "alphax"]);
        assert_eq!(w("${NOPE:-def} ${A:-def}"), ["def", "alpha"]);
        assert_eq!(w("${EMPTY:-def} ${EMPTY-def}"), ["def", ""]);
        assert_eq!(w("${A:+yes} ${NOPE:+yes}x"), ["yes", "x"]);
        assert_eq!(w("${NOPE:-${A}}"), ["alpha"]);
        assert_eq!(w("a$ b"), ["a$", "b"]);
        assert_eq!(w("\\$A"), ["$A"]);
        assert_eq!(w("'$A' \"$A\""), ["$A", "alpha"]);
        assert_eq!(w("\"$SP\""), ["two words"]);
        assert_eq!(w("\"\""), [""]);
        assert_eq!(
            process_word("$SP and ${A}", &vars, '\\').unwrap(),
            "two words and alpha"
        );
        assert_eq!(process_words("`$A", &vars, '`').unwrap(), ["$A"]);
    }

    #[test]
    fn errors() {
        assert!(matches!(
            process_words("${A", &vars, '\\'),
            Err(WordsError::Unterminated(_))
        ));
        assert!(matches!(
            process_words("\"abc", &vars, '\\'),
            Err(WordsError::Quote(_))
        ));
        assert_eq!(
            process_words("${NOPE:?must be set}", &vars, '\\')
                .unwrap_err()
                .to_string(),
            "NOPE: must be set"
        );
        assert!(process_words("${}", &vars, '\\').is_err());
    }

    #[test]
    fn raw_split() {
        assert_eq!(
            split_raw(r#"a="x y" b=c\ d 'e f'"#, '\\').unwrap(),
            [r#"a="x y""#, r"b=c\ d", "'e f'"]
        );
    }
}
