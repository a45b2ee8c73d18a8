//! Lines of a stream of JSON lines (stdin for `hookhost run`), read as raw
//! bytes with a bound on how much of one line is ever held.
//!
//! `BufRead::lines` keeps reading until it sees a newline, so one line of
//! gigabytes (or an endless stream without newlines) would be buffered
//! whole before anything could refuse it. Here a line is collected only up
//! to the event size limit; past it, the rest of the line is read and
//! dropped chunk by chunk until its newline, so memory stays at the limit
//! plus one read buffer whatever the input. Bytes are checked here too: a
//! line that is not UTF-8 or holds a NUL byte is refused with its line
//! number instead of reaching the JSON reader.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One line of input, numbered from 1.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line within the limit, valid UTF-8 without NUL bytes, without its
    /// line ending (`\n` or `\r\n`).
    Text(String),
    /// The line grew past the limit: the caller is told at once, with the
    /// bytes read of it so far; the rest of it is dropped unread by the
    /// caller (the next call skips to its end).
    TooLong {
        /// Bytes of the line read when it passed the limit.
        length_so_far: u64,
    },
    /// The line is not UTF-8; `offset` is the 0-based byte offset of the
    /// first byte that is not.
    NotUtf8 {
        /// Where the invalid bytes start.
        offset: usize,
    },
    /// The line holds a NUL byte at this 0-based byte offset.
    Nul {
        /// Where the first NUL byte is.
        offset: usize,
    },
}

/// Reads numbered lines from `reader`, holding at most `max` bytes of one
/// (in a buffer whose capacity may reach twice that as it grows).
pub struct BoundedLines<R> {
    reader: R,
    max: usize,
    /// The current line so far (never more than `max` bytes).
    line: Vec<u8>,
    /// Number of the current line.
    number: u64,
    /// `true` while dropping the rest of a line already reported too long.
    discarding: bool,
}

impl<R: AsyncBufRead + Unpin> BoundedLines<R> {
    /// Lines of `reader`; a line longer than `max` bytes (line ending not
    /// counted) is reported as [`Line::TooLong`] and skipped.
    pub fn new(reader: R, max: usize) -> Self {
        BoundedLines {
            reader,
            max,
            line: Vec::new(),
            number: 0,
            discarding: false,
        }
    }

    /// The next line and its number, or `None` at the end of input. A last
    /// line without a newline is still a line.
    ///
    /// Cancel-safe: everything consumed from the reader is kept in `self`,
    /// so dropping the future between reads loses nothing.
    pub async fn next_line(&mut self) -> std::io::Result<Option<(u64, Line)>> {
        loop {
            let chunk = self.reader.fill_buf().await?;
            if chunk.is_empty() {
                // End of input: a pending unterminated line is the last one.
                if self.discarding {
                    self.discarding = false;
                    return Ok(None);
                }
                if self.line.is_empty() {
                    return Ok(None);
                }
                self.number += 1;
                let line = std::mem::take(&mut self.line);
                return Ok(Some((self.number, check(line))));
            }
            let newline = memchr::memchr(b'\n', chunk);
            let take = newline.unwrap_or(chunk.len());
            if self.discarding {
                self.reader.consume(take + usize::from(newline.is_some()));
                if newline.is_some() {
                    self.discarding = false;
                }
                continue;
            }
            // The usual case, a whole line in what was read: one copy.
            if let (Some(end), true) = (newline, self.line.is_empty()) {
                let text = chunk[..end].strip_suffix(b"\r").unwrap_or(&chunk[..end]);
                if text.len() <= self.max {
                    let line = check(text.to_vec());
                    self.reader.consume(end + 1);
                    self.number += 1;
                    return Ok(Some((self.number, line)));
                }
            }
            // A line ending in "\r\n" may be exactly `max` bytes plus the
            // "\r"; allow one byte over here and judge once the line ends.
            if self.line.len() + take > self.max.saturating_add(1) {
                let length_so_far = (self.line.len() + take) as u64;
                self.reader.consume(take + usize::from(newline.is_some()));
                self.line = Vec::new();
                self.discarding = newline.is_none();
                self.number += 1;
                return Ok(Some((self.number, Line::TooLong { length_so_far })));
            }
            self.line.extend_from_slice(&chunk[..take]);
            self.reader.consume(take + usize::from(newline.is_some()));
            if newline.is_some() {
                self.number += 1;
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > self.max {
                    let length_so_far = line.len() as u64;
                    return Ok(Some((self.number, Line::TooLong { length_so_far })));
                }
                return Ok(Some((self.number, check(line))));
            }
        }
    }
}

/// The line as text, or why it is refused.
fn check(line: Vec<u8>) -> Line {
    if let Some(offset) = memchr::memchr(0, &line) {
        return Line::Nul { offset };
    }
    match String::from_utf8(line) {
        Ok(text) => Line::Text(text),
        Err(err) => Line::NotUtf8 {
            offset: err.utf8_error().valid_up_to(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of `input`, read through a buffer of `buffer` bytes so
    /// that lines straddle reads.
    async fn lines(input: &[u8], max: usize, buffer: usize) -> Vec<(u64, Line)> {
        let reader = tokio::io::BufReader::with_capacity(buffer, input);
        let mut lines = BoundedLines::new(reader, max);
        let mut out = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            out.push(line);
        }
        out
    }

    fn text(s: &str) -> Line {
        Line::Text(s.to_owned())
    }

    #[tokio::test]
    async fn splits_lines_and_keeps_an_unterminated_last_one() {
        for buffer in [1, 2, 3, 64] {
            assert_eq!(
                lines(b"ab\r\n\ncd\nlast", 4, buffer).await,
                [
                    (1, text("ab")),
                    (2, text("")),
                    (3, text("cd")),
                    (4, text("last"))
                ]
            );
        }
    }

    #[tokio::test]
    async fn a_long_line_is_reported_once_and_the_next_one_read() {
        for buffer in [1, 3, 64] {
            let got = lines(b"okay\n0123456789\nnext\n0123456789", 4, buffer).await;
            assert_eq!(got.len(), 4, "{got:?}");
            assert_eq!(got[0], (1, text("okay")));
            assert!(matches!(got[1], (2, Line::TooLong { length_so_far }) if length_so_far > 4));
            assert_eq!(got[2], (3, text("next")));
            assert!(matches!(got[3], (4, Line::TooLong { .. })));
        }
    }

    #[tokio::test]
    async fn a_line_of_exactly_the_limit_passes_with_either_ending() {
        for buffer in [1, 2, 64] {
            let got = lines(b"abcd\r\nefgh\nijklm\r\n", 4, buffer).await;
            assert_eq!(got[..2], [(1, text("abcd")), (2, text("efgh"))]);
            assert!(matches!(got[2], (3, Line::TooLong { .. })), "{got:?}");
            assert_eq!(got.len(), 3);
        }
    }

    #[tokio::test]
    async fn bad_bytes_are_reported_with_their_offset() {
        assert_eq!(
            lines(b"a\xffb\nx\0y\nok\n", 16, 64).await,
            [
                (1, Line::NotUtf8 { offset: 1 }),
                (2, Line::Nul { offset: 1 }),
                (3, text("ok"))
            ]
        );
    }
}
