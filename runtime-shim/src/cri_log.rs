//! Reading CRI logs (kubelet's format): `<RFC3339Nano> <stdout|stderr> <F|P> <content>\n`, one
//! record per line; `F` ends a line, `P` is part of one (the writer appended the newline).

/// Which output stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A CRI log that is not well formed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed CRI log record {index}: {record:?}")]
pub struct CriLogError {
    /// The record's number, from 0.
    pub index: usize,
    /// The record, as text.
    pub record: String,
}

/// One record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The timestamp, as written.
    pub timestamp: &'a [u8],
    /// Its stream.
    pub stream: Stream,
    /// Whether it ends a line (`F`) rather than being part of one (`P`).
    pub full: bool,
    /// The content, as written (a full record's newline included).
    pub content: &'a [u8],
}

impl Record<'_> {
    /// The bytes the container wrote: the content without the newline a partial record had
    /// appended.
    pub fn bytes(&self) -> &[u8] {
        if self.full {
            self.content
        } else {
            self.content.strip_suffix(b"\n").unwrap_or(self.content)
        }
    }
}

/// The records of `log`, in order.
pub fn records(log: &[u8]) -> impl Iterator<Item = Result<Record<'_>, CriLogError>> {
    log.split_inclusive(|&b| b == b'\n')
        .enumerate()
        .map(|(index, line)| parse_record(line).ok_or_else(|| malformed(index, line)))
}

fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut fields = line.splitn(4, |&b| b == b' ');
    let (timestamp, stream, tag, content) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    let stream = match stream {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let full = match tag {
        b"F" => true,
        b"P" => false,
        _ => return None,
    };
    Some(Record {
        timestamp,
        stream,
        full,
        content,
    })
}

fn malformed(index: usize, line: &[u8]) -> CriLogError {
    CriLogError {
        index,
        record: String::from_utf8_lossy(line).into_owned(),
    }
}

/// The bytes the container wrote to `stream` (to both, interleaved as logged, for `None`).
///
/// # Errors
/// The first malformed record.
pub fn reassemble(log: &[u8], stream: Option<Stream>) -> Result<Vec<u8>, CriLogError> {
    let mut out = Vec::with_capacity(log.len());
    for record in records(log) {
        let record = record?;
        if stream.is_none_or(|wanted| wanted == record.stream) {
            out.extend_from_slice(record.bytes());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &[u8] = b"2026-11-29T10:00:00.1Z stdout P hel\n\
2026-11-29T10:00:00.2Z stderr F oops\n\
2026-11-29T10:00:00.3Z stdout F lo\n";

    #[test]
    fn partial_records_join_and_streams_separate() {
        assert_eq!(reassemble(LOG, Some(Stream::Stdout)).unwrap(), b"hello\n");
        assert_eq!(reassemble(LOG, Some(Stream::Stderr)).unwrap(), b"oops\n");
        assert_eq!(reassemble(LOG, None).unwrap(), b"heloops\nlo\n");
    }

    #[test]
    fn malformed_records_are_named() {
        let err = reassemble(b"ts stdout F ok\nts stdin F x\n", None).unwrap_err();
        assert_eq!(err.index, 1);
        assert_eq!(err.record, "ts stdin F x\n");
        assert!(reassemble(b"ts stdout X y\n", None).is_err());
        assert!(reassemble(b"no-fields\n", None).is_err());
    }
}
