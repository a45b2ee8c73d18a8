//! The log's records and their framing.
//!
//! Every record is `u32 length | u32 CRC-32 of the payload | payload`, both
//! numbers little-endian. The payload starts with a kind byte:
//!
//! - `1` accept: varint seq, varint plugin count, per plugin (varint name
//!   length, name, varint attempts made), then the event's JSON to the end;
//! - `2` done: varint plugin name length, name, varint count, then the seqs
//!   in ascending order, the first as is and each next as the difference
//!   from the one before;
//! - `3` attempt: varint seq, varint attempts made, then the plugin name to
//!   the end.
//!
//! A later accept of the same seq (compaction copies live events forward)
//! replaces what came before it: its plugins are those still pending.

/// Bytes before each payload: its length and its CRC-32.
pub(crate) const HEADER_LEN: usize = 8;

const KIND_ACCEPT: u8 = 1;
const KIND_DONE: u8 = 2;
const KIND_ATTEMPT: u8 = 3;

/// One decoded record, borrowing from the bytes it was read from.
#[derive(Debug, PartialEq)]
pub(crate) enum Record<'a> {
    /// An event and the plugins that must still complete it, with the
    /// attempts each has made.
    Accept {
        seq: u64,
        plugins: Vec<(&'a str, u32)>,
        json: &'a str,
    },
    /// A plugin completed these events (handled or dead-lettered).
    Done { plugin: &'a str, seqs: Vec<u64> },
    /// A plugin has made `attempts` attempts at an event.
    Attempt {
        seq: u64,
        plugin: &'a str,
        attempts: u32,
    },
}

/// Where a segment stops holding valid records.
#[derive(Debug, PartialEq)]
pub(crate) struct Corrupt {
    /// Byte offset of the first record that is short, fails its CRC or
    /// does not decode.
    pub(crate) offset: usize,
}

/// Appends an accept record for `seq` to `buf`.
pub(crate) fn encode_accept<'p>(
    buf: &mut Vec<u8>,
    seq: u64,
    plugins: impl ExactSizeIterator<Item = (&'p str, u32)>,
    json: &str,
) {
    frame(buf, |buf| {
        buf.push(KIND_ACCEPT);
        put_varint(buf, seq);
        put_varint(buf, plugins.len() as u64);
        for (plugin, attempts) in plugins {
            put_varint(buf, plugin.len() as u64);
            buf.extend_from_slice(plugin.as_bytes());
            put_varint(buf, u64::from(attempts));
        }
        buf.extend_from_slice(json.as_bytes());
    });
}

/// Appends a done record to `buf`; `seqs` must be sorted ascending.
pub(crate) fn encode_done(buf: &mut Vec<u8>, plugin: &str, seqs: &[u64]) {
    frame(buf, |buf| {
        buf.push(KIND_DONE);
        put_varint(buf, plugin.len() as u64);
        buf.extend_from_slice(plugin.as_bytes());
        put_varint(buf, seqs.len() as u64);
        let mut previous = 0;
        for &seq in seqs {
            put_varint(buf, seq - previous);
            previous = seq;
        }
    });
}

/// Appends an attempt record to `buf`.
pub(crate) fn encode_attempt(buf: &mut Vec<u8>, plugin: &str, seq: u64, attempts: u32) {
    frame(buf, |buf| {
        buf.push(KIND_ATTEMPT);
        put_varint(buf, seq);
        put_varint(buf, u64::from(attempts));
        buf.extend_from_slice(plugin.as_bytes());
    });
}

/// Decodes every record of a segment in order, calling `each` with it and
/// its offset; stops at the first one that is short, fails its CRC or does
/// not decode, and says where.
pub(crate) fn read_all<'a>(
    bytes: &'a [u8],
    mut each: impl FnMut(Record<'a>),
) -> Result<(), Corrupt> {
    let mut offset = 0;
    while offset < bytes.len() {
        let corrupt = Corrupt { offset };
        let Some(header) = bytes.get(offset..offset + HEADER_LEN) else {
            return Err(corrupt);
        };
        let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().unwrap());
        let start = offset + HEADER_LEN;
        let Some(payload) = start.checked_add(len).and_then(|end| bytes.get(start..end)) else {
            return Err(corrupt);
        };
        if len == 0 || crc32fast::hash(payload) != crc {
            return Err(corrupt);
        }
        each(decode(payload).ok_or(corrupt)?);
        offset = start + len;
    }
    Ok(())
}

/// Writes a header placeholder, lets `payload` append the payload, then
/// fills the header in.
fn frame(buf: &mut Vec<u8>, payload: impl FnOnce(&mut Vec<u8>)) {
    let header_at = buf.len();
    buf.extend_from_slice(&[0; HEADER_LEN]);
    payload(buf);
    let body = &buf[header_at + HEADER_LEN..];
    let len = u32::try_from(body.len()).expect("a record is under 4 GiB");
    let crc = crc32fast::hash(body);
    buf[header_at..header_at + 4].copy_from_slice(&len.to_le_bytes());
    buf[header_at + 4..header_at + HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
}

fn decode(payload: &[u8]) -> Option<Record<'_>> {
    let (&kind, mut rest) = payload.split_first()?;
    match kind {
        KIND_ACCEPT => {
            let seq = take_varint(&mut rest)?;
            let count = take_varint(&mut rest)?;
            let mut plugins = Vec::with_capacity(count.min(64) as usize);
            for _ in 0..count {
                let name = take_str(&mut rest)?;
                let attempts = u32::try_from(take_varint(&mut rest)?).ok()?;
                plugins.push((name, attempts));
            }
            let json = std::str::from_utf8(rest).ok()?;
            Some(Record::Accept { seq, plugins, json })
        }
        KIND_DONE => {
            let plugin = take_str(&mut rest)?;
            let count = take_varint(&mut rest)?;
            let mut seqs = Vec::with_capacity(count.min(4096) as usize);
            let mut seq = 0u64;
            for _ in 0..count {
                seq = seq.checked_add(take_varint(&mut rest)?)?;
                seqs.push(seq);
            }
            rest.is_empty().then_some(Record::Done { plugin, seqs })
        }
        KIND_ATTEMPT => {
            let seq = take_varint(&mut rest)?;
            let attempts = u32::try_from(take_varint(&mut rest)?).ok()?;
            let plugin = std::str::from_utf8(rest).ok()?;
            Some(Record::Attempt {
                seq,
                plugin,
                attempts,
            })
        }
        _ => None,
    }
}

fn put_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push(value as u8 | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn take_str<'a>(bytes: &mut &'a [u8]) -> Option<&'a str> {
    let len = usize::try_from(take_varint(bytes)?).ok()?;
    let (text, rest) = (bytes.get(..len)?, &bytes[len..]);
    *bytes = rest;
    std::str::from_utf8(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> (Vec<Record<'_>>, Result<(), Corrupt>) {
        let mut records = Vec::new();
        let result = read_all(bytes, |record| records.push(record));
        (records, result)
    }

    #[test]
    fn records_round_trip() {
        let mut buf = Vec::new();
        encode_accept(
            &mut buf,
            300,
            [("slack", 0), ("sql", 2)].into_iter(),
            r#"{"a":1}"#,
        );
        encode_done(&mut buf, "sql", &[1, 300, 301, 100_000]);
        encode_attempt(&mut buf, "slack", 300, 7);
        let (records, result) = decode_all(&buf);
        assert_eq!(result, Ok(()));
        assert_eq!(
            records,
            vec![
                Record::Accept {
                    seq: 300,
                    plugins: vec![("slack", 0), ("sql", 2)],
                    json: r#"{"a":1}"#
                },
                Record::Done {
                    plugin: "sql",
                    seqs: vec![1, 300, 301, 100_000]
                },
                Record::Attempt {
                    seq: 300,
                    plugin: "slack",
                    attempts: 7
                },
            ]
        );
    }

    #[test]
    fn a_short_or_altered_record_ends_the_valid_part() {
        let mut buf = Vec::new();
        encode_attempt(&mut buf, "p", 1, 1);
        let first_len = buf.len();
        encode_attempt(&mut buf, "p", 2, 1);
        let (records, result) = decode_all(&buf[..buf.len() - 1]);
        assert_eq!(records.len(), 1);
        assert_eq!(result, Err(Corrupt { offset: first_len }));

        let last = buf.len() - 1;
        buf[last] ^= 1;
        let (records, result) = decode_all(&buf);
        assert_eq!(records.len(), 1);
        assert_eq!(result, Err(Corrupt { offset: first_len }));

        let (records, result) = decode_all(&[0; 20]);
        assert!(records.is_empty());
        assert_eq!(result, Err(Corrupt { offset: 0 }));
    }
}
