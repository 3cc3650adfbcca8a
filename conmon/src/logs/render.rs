//! Rendering of output chunks into log file records: CRI lines and JSON lines.

use std::time::{SystemTime, UNIX_EPOCH};

use super::timestamp;
use crate::stream::Stream;

/// Splits a chunk into line segments: each ends with `\n`, except possibly the last one.
/// `memchr` finds the newlines many bytes at a time instead of testing each byte.
fn segments(chunk: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = chunk;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |newline| newline + 1);
        let (segment, tail) = rest.split_at(end);
        rest = tail;
        Some(segment)
    })
}

/// Input rendered at a time: a chunk is rendered and written in pieces of about this much, each
/// ending at a newline (a longer line stays whole), so the rendered records (a 2-byte line
/// takes ~40 bytes) stay small enough to remain in the CPU's cache.
const RENDER_STEP: usize = 64 * 1024;

/// The pieces of `chunk` to render one at a time; no line is split.
pub(super) fn pieces(chunk: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = chunk;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = match rest.get(..RENDER_STEP) {
            None => rest.len(),
            Some(window) => match memchr::memrchr(b'\n', window) {
                Some(newline) => newline + 1,
                None => memchr::memchr(b'\n', &rest[RENDER_STEP..])
                    .map_or(rest.len(), |newline| RENDER_STEP + newline + 1),
            },
        };
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

/// Renders CRI records into `buf`, pushing the end offset of each record onto `records`.
pub(super) fn cri(
    buf: &mut Vec<u8>,
    records: &mut Vec<usize>,
    stream: Stream,
    chunk: &[u8],
    time: SystemTime,
) {
    let mut prefix = Vec::with_capacity(48);
    timestamp::write_rfc3339_nano(&mut prefix, time);
    prefix.push(b' ');
    prefix.extend_from_slice(stream.name().as_bytes());
    buf.reserve(chunk.len() + prefix.len() + 4);
    for segment in segments(chunk) {
        buf.extend_from_slice(&prefix);
        if segment.ends_with(b"\n") {
            buf.extend_from_slice(b" F ");
            buf.extend_from_slice(segment);
        } else {
            buf.extend_from_slice(b" P ");
            buf.extend_from_slice(segment);
            buf.push(b'\n');
        }
        records.push(buf.len());
    }
}

#[derive(serde::Serialize)]
struct JsonRecord<'a> {
    timestamp: u64,
    pipe: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    partial: bool,
}

/// Renders JSON records (`timestamp` in Unix seconds, `pipe`, `message` without its newline,
/// and `partial: true` for a segment that did not end a line).
pub(super) fn json(
    buf: &mut Vec<u8>,
    records: &mut Vec<usize>,
    stream: Stream,
    chunk: &[u8],
    time: SystemTime,
) {
    let timestamp = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    for segment in segments(chunk) {
        let (line, partial) = match segment.strip_suffix(b"\n") {
            Some(line) => (line, false),
            None => (segment, true),
        };
        let message = String::from_utf8_lossy(line);
        let record = JsonRecord {
            timestamp,
            pipe: stream.name(),
            message: &message,
            partial,
        };
        // Serializing plain strings and integers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *buf, &record);
        buf.push(b'\n');
        records.push(buf.len());
    }
}

#[cfg(test)]
mod tests {
    use super::{RENDER_STEP, pieces, segments};

    #[test]
    fn segments_end_at_newlines_and_keep_the_last_partial_one() {
        let split = |chunk: &'static [u8]| segments(chunk).collect::<Vec<_>>();
        assert_eq!(split(b"a\nbc\n\nd"), [&b"a\n"[..], b"bc\n", b"\n", b"d"]);
        assert_eq!(split(b"\n"), [&b"\n"[..]]);
        assert_eq!(split(b"no newline"), [&b"no newline"[..]]);
        assert!(split(b"").is_empty());
    }

    #[test]
    fn pieces_end_at_newlines_and_never_split_a_line() {
        let lines = "x".repeat(99) + "\n";
        let chunk = lines.repeat(2000).into_bytes(); // 200 000 bytes
        let split: Vec<&[u8]> = pieces(&chunk).collect();
        assert!(split.len() > 1);
        assert!(
            split
                .iter()
                .all(|p| p.len() <= RENDER_STEP && p.ends_with(b"\n"))
        );
        assert_eq!(split.concat(), chunk);
        let long_line = [vec![b'y'; RENDER_STEP * 2], b"\nz".to_vec()].concat();
        let split: Vec<&[u8]> = pieces(&long_line).collect();
        assert_eq!(split, [&long_line[..RENDER_STEP * 2 + 1], b"z"]);
    }
}
