//! The journald log driver: each line of container output becomes one journal entry carrying
//! the fields C conmon writes (`CONTAINER_ID_FULL`, `CONTAINER_ID`, `CONTAINER_NAME`,
//! `SYSLOG_IDENTIFIER`, `PRIORITY` by stream, `CONTAINER_PARTIAL_MESSAGE`), so the same
//! `journalctl` queries find it.
//!
//! Unlike the file drivers, a line split across reads is held back and sent whole, as C conmon
//! does: a journal entry is what readers see, and `CONTAINER_PARTIAL_MESSAGE=true` then marks
//! only a line longer than [`LINE_MAX`] or one the output ended without a newline.

use conmon_telemetry::journald::{Journald, SOCKET};

use super::error::LogError;
use crate::stream::Stream;

/// Most bytes of a line one entry carries (C conmon's buffer, `STDIO_BUF_SIZE`): a longer
/// line is sent in pieces of this size marked partial, and the entries stay far below the
/// datagram size the journald socket accepts.
const LINE_MAX: usize = 8192;

/// Length of `CONTAINER_ID`, the short ID docker and C conmon cut from the full one.
const SHORT_ID_LEN: usize = 12;

/// The journald driver of one container.
#[derive(Debug)]
pub(super) struct JournalLog {
    journald: Journald,
    /// Fields every entry carries, after `MESSAGE` and `PRIORITY`.
    fields: Vec<(&'static str, Vec<u8>)>,
    /// Line cutting of stdout and stderr.
    lines: [Lines; 2],
}

impl JournalLog {
    /// Connects to journald for container `id`, named `name` if the engine gave a name.
    pub(super) fn connect(id: &str, name: Option<&str>) -> Result<Self, LogError> {
        let journald = Journald::connect().map_err(|source| LogError::JournaldConnect {
            socket: SOCKET,
            source,
        })?;
        let short_id = id.get(..SHORT_ID_LEN).unwrap_or(id);
        let mut fields = vec![
            ("CONTAINER_ID_FULL", id.as_bytes().to_vec()),
            ("CONTAINER_ID", short_id.as_bytes().to_vec()),
        ];
        if let Some(name) = name {
            fields.push(("CONTAINER_NAME", name.as_bytes().to_vec()));
        }
        // What `journalctl -t` selects: the name, else the short ID, as with C conmon.
        let identifier = name.unwrap_or(short_id);
        fields.push(("SYSLOG_IDENTIFIER", identifier.as_bytes().to_vec()));
        Ok(Self {
            journald,
            fields,
            lines: [Lines::default(), Lines::default()],
        })
    }

    /// Sends every line `chunk` completes, and holds back the start of a line it does not end.
    pub(super) fn write(&mut self, stream: Stream, chunk: &[u8]) -> Result<(), LogError> {
        let Self {
            journald,
            fields,
            lines,
        } = self;
        lines[index(stream)].push(chunk, |message, partial| {
            send(journald, fields, stream, message, partial)
        })
    }

    /// Sends what is held of `stream`'s last line, once the stream has ended.
    pub(super) fn finish(&mut self, stream: Stream) -> Result<(), LogError> {
        let Self {
            journald,
            fields,
            lines,
        } = self;
        lines[index(stream)]
            .finish(|message, partial| send(journald, fields, stream, message, partial))
    }
}

/// Sends one line (or piece of one) of `stream` as an entry.
fn send(
    journald: &mut Journald,
    fields: &[(&'static str, Vec<u8>)],
    stream: Stream,
    message: &[u8],
    partial: bool,
) -> Result<(), LogError> {
    // Priorities as C conmon sets them: info for stdout, error for stderr.
    let priority: &[u8] = match stream {
        Stream::Stdout => b"6",
        Stream::Stderr => b"3",
    };
    let mut entry: Vec<(&str, &[u8])> = Vec::with_capacity(fields.len() + 4);
    entry.extend([("MESSAGE", message), ("PRIORITY", priority)]);
    entry.extend(fields.iter().map(|(key, value)| (*key, value.as_slice())));
    entry.push(("CONTAINER_STREAM", stream.name().as_bytes()));
    if partial {
        entry.push(("CONTAINER_PARTIAL_MESSAGE", b"true"));
    }
    journald
        .send(&entry)
        .map_err(|source| LogError::JournaldSend {
            socket: SOCKET,
            source,
        })
}

fn index(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

/// Cuts one stream into messages: lines without their newline, at most [`LINE_MAX`] bytes
/// each, the start of a line held back until its end arrives.
#[derive(Debug, Default)]
struct Lines {
    held: Vec<u8>,
}

impl Lines {
    /// Hands `emit` every message `chunk` completes, with whether it is partial (a piece of
    /// a longer line).
    fn push<E>(
        &mut self,
        chunk: &[u8],
        mut emit: impl FnMut(&[u8], bool) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut rest = chunk;
        while !rest.is_empty() {
            let room = LINE_MAX - self.held.len();
            // A newline right after `room` bytes still ends a line that fits.
            let window = &rest[..rest.len().min(room + 1)];
            if let Some(newline) = memchr::memchr(b'\n', window) {
                self.emit(&rest[..newline], false, &mut emit)?;
                rest = &rest[newline + 1..];
            } else if rest.len() > room {
                self.emit(&rest[..room], true, &mut emit)?;
                rest = &rest[room..];
            } else {
                self.held.extend_from_slice(rest);
                break;
            }
        }
        Ok(())
    }

    /// Hands `emit` the held start of a line, as a partial message, when the stream ends.
    fn finish<E>(&mut self, mut emit: impl FnMut(&[u8], bool) -> Result<(), E>) -> Result<(), E> {
        if self.held.is_empty() {
            return Ok(());
        }
        self.emit(&[], true, &mut emit)
    }

    /// Emits the held bytes followed by `tail` as one message; nothing is held afterwards,
    /// even if `emit` fails (the entry is lost, not sent twice).
    fn emit<E>(
        &mut self,
        tail: &[u8],
        partial: bool,
        emit: &mut impl FnMut(&[u8], bool) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.held.is_empty() {
            return emit(tail, partial);
        }
        self.held.extend_from_slice(tail);
        let emitted = emit(&self.held, partial);
        self.held.clear();
        emitted
    }
}

#[cfg(test)]
mod tests {
    use super::{LINE_MAX, Lines};

    /// The messages `chunks` make, with `P` before partial ones, after the stream ends.
    fn messages(chunks: &[&[u8]]) -> Vec<String> {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        let mut collect = |message: &[u8], partial: bool| {
            let tag = if partial { "P " } else { "" };
            out.push(format!("{tag}{}", String::from_utf8_lossy(message)));
            Ok::<_, ()>(())
        };
        for chunk in chunks {
            lines.push(chunk, &mut collect).unwrap();
        }
        lines.finish(&mut collect).unwrap();
        out
    }

    #[test]
    fn lines_split_across_reads_are_sent_whole() {
        assert_eq!(
            messages(&[b"one\ntw", b"o\n\nthr", b"ee"]),
            ["one", "two", "", "P three"]
        );
        assert!(messages(&[b"", b"a\n"]) == ["a"]);
    }

    #[test]
    fn long_lines_are_cut_at_line_max() {
        let exact = [vec![b'x'; LINE_MAX], b"\n".to_vec()].concat();
        assert_eq!(messages(&[&exact]), ["x".repeat(LINE_MAX)]);
        let long = [vec![b'y'; LINE_MAX + 3], b"\nz".to_vec()].concat();
        let (first, second) = long.split_at(100);
        assert_eq!(
            messages(&[first, second]),
            [
                format!("P {}", "y".repeat(LINE_MAX)),
                "yyy".into(),
                "P z".into()
            ]
        );
    }

    #[test]
    fn a_failed_send_holds_nothing_back() {
        let mut lines = Lines::default();
        lines.push(b"held", |_, _| Ok::<_, ()>(())).unwrap();
        assert_eq!(lines.push(b" more\n", |_, _| Err(())), Err(()));
        let mut sent = Vec::new();
        lines
            .push(b"next\n", |m, _| {
                sent.push(m.to_vec());
                Ok::<_, ()>(())
            })
            .unwrap();
        assert_eq!(sent, [b"next".to_vec()]);
    }
}
