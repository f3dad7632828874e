//! What reaches the log: every line gantry writes through `tracing` has the userinfo
//! (`user:password@`) and the query string (`?token=…`) of any URL in it removed, whichever
//! module wrote it and whichever error text (an HTTP client's "error sending request for
//! url (…)") it quotes.
//!
//! Owns: [`redact_urls`] and the writer the CLI installs. Must not: filter or format events.

use std::borrow::Cow;
use std::io::Write;
use std::sync::LazyLock;

static URL: LazyLock<regex::Regex> = LazyLock::new(|| {
    // scheme://[userinfo@]rest[?query]; the rest stops at whitespace, quotes and brackets.
    regex::Regex::new(
        r#"([A-Za-z][A-Za-z0-9+.-]*://)(?:[^/\s@?#"'()<>]*@)?([^\s?#"'()<>]*)(\?[^\s#"'()<>]*)?"#,
    )
    .unwrap_or_else(|_| unreachable!("a constant, valid pattern"))
});

/// `text` with URL userinfo dropped and query strings replaced by `?…`.
pub fn redact_urls(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    URL.replace_all(text, |c: &regex::Captures<'_>| {
        let query = if c.get(3).is_some() { "?…" } else { "" };
        format!("{}{}{query}", &c[1], &c[2])
    })
}

/// A `tracing_subscriber` writer: stderr, through [`redact_urls`]. The fmt layer writes
/// each event with one `write_all`, so a URL is never split between two writes.
#[derive(Clone, Copy, Debug, Default)]
pub struct RedactingStderr;

impl Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(redact_urls(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingStderr;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingStderr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_and_query_go() {
        assert_eq!(
            redact_urls(
                "notification failed (error sending request for url (http://u:p@127.0.0.1:9/hooks/registry/own?token=s3cret)) again"
            ),
            "notification failed (error sending request for url (http://127.0.0.1:9/hooks/registry/own?…)) again"
        );
        assert_eq!(redact_urls("GET /v2/ 200"), "GET /v2/ 200");
        assert_eq!(
            redact_urls(
                "to https://registry.example/v2/x/blobs/uploads/1?_state=abc&digest=sha256:1 done"
            ),
            "to https://registry.example/v2/x/blobs/uploads/1?… done"
        );
        assert_eq!(
            redact_urls("see https://example.com/a."),
            "see https://example.com/a."
        );
    }
}
