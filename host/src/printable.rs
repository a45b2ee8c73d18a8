//! Text from outside the host (file names, plugin names, event ids, what a
//! plugin logs or prints) made safe to print: control characters are
//! written as escapes, so a newline or an ANSI escape in a file name or a
//! log message cannot forge a log line or a summary row; and cut to a
//! length without splitting a character.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::path::Path;

/// `text` with every control character (newlines, carriage returns, tabs,
/// escapes, the C1 range, and the Unicode line and paragraph separators)
/// written as `\u{..}`; borrowed when there is none.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            let _ = write!(escaped, "\\u{{{:x}}}", c as u32);
        } else {
            escaped.push(c);
        }
    }
    Cow::Owned(escaped)
}

/// `text` cut to at most `max` bytes without splitting a character.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A path as [`escape_controls`] prints it (lossy for non-UTF-8 names).
pub fn path(path: &Path) -> String {
    escape_controls(&path.to_string_lossy()).into_owned()
}

fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert!(matches!(escape_controls("orders ü 表"), Cow::Borrowed(_)));
        assert_eq!(
            escape_controls("a\nINFO forged\r\u{1b}[31m\u{85}"),
            "a\\u{a}INFO forged\\u{d}\\u{1b}[31m\\u{85}"
        );
        assert_eq!(path(Path::new("x\ny.wasm")), "x\\u{a}y.wasm");
    }
}
