//! SPDY/3.1 frames (draft-mbelshe-httpbis-spdy-00 with SPDY/3.1's session flow control):
//! parsing from and encoding into bytes. Header blocks stay compressed here; see
//! [`headers`](crate::headers).

/// The version every control frame carries.
const VERSION: u16 = 3;
/// The largest length a frame header can state (24 bits).
const MAX_LENGTH: usize = (1 << 24) - 1;
/// The largest control frame accepted: ours carry small header blocks, settings or ids.
pub const MAX_CONTROL_FRAME: usize = 64 * 1024;
/// The largest data frame accepted (client-go sends at most 32 KiB at a time).
pub const MAX_DATA_FRAME: usize = 1024 * 1024;

/// `FLAG_FIN`: the sender's last frame on the stream.
pub const FLAG_FIN: u8 = 0x01;

/// `SETTINGS_INITIAL_WINDOW_SIZE`.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;

/// RST_STREAM status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ResetStatus {
    ProtocolError = 1,
    InvalidStream = 2,
    RefusedStream = 3,
    Cancel = 5,
    StreamInUse = 8,
    StreamAlreadyClosed = 9,
}

/// GOAWAY status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum GoAwayStatus {
    Ok = 0,
    ProtocolError = 1,
}

/// A frame, its header block (if any) still compressed.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Data {
        stream: u32,
        fin: bool,
        data: &'a [u8],
    },
    SynStream {
        stream: u32,
        fin: bool,
        headers: &'a [u8],
    },
    SynReply {
        stream: u32,
        headers: &'a [u8],
    },
    RstStream {
        stream: u32,
        status: u32,
    },
    /// `(id, value)` pairs.
    Settings(Vec<(u32, u32)>),
    Ping(u32),
    GoAway {
        last_stream: u32,
        status: u32,
    },
    Headers {
        stream: u32,
        fin: bool,
        headers: &'a [u8],
    },
    WindowUpdate {
        stream: u32,
        delta: u32,
    },
    /// A control frame type SPDY/3 does not define (to be ignored, says the spec).
    Unknown(u16),
}

/// Why bytes are not a frame; each is a session error.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("control frame of version {0}, want 3")]
    Version(u16),
    #[error("{kind} frame of {length} bytes, more than the {max} accepted")]
    TooLarge {
        kind: &'static str,
        length: usize,
        max: usize,
    },
    #[error("{kind} frame of {length} bytes, want {want}")]
    Length {
        kind: &'static str,
        length: usize,
        want: &'static str,
    },
    #[error("{kind} frame for stream 0")]
    StreamZero { kind: &'static str },
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(word)
}

fn stream_at(bytes: &[u8], at: usize) -> u32 {
    u32_at(bytes, at) & 0x7fff_ffff
}

/// Parses the frame at the start of `buf`: `Ok(None)` while it is incomplete, otherwise the
/// frame and its length.
pub fn parse(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let Some(head) = buf.get(..8) else {
        return Ok(None);
    };
    let flags = head[4];
    let length = (u32_at(head, 4) & 0x00ff_ffff) as usize;
    let control = head[0] & 0x80 != 0;
    let (kind, max) = match control {
        true => ("control", MAX_CONTROL_FRAME),
        false => ("data", MAX_DATA_FRAME),
    };
    if length > max {
        return Err(FrameError::TooLarge { kind, length, max });
    }
    let Some(body) = buf.get(8..8 + length) else {
        return Ok(None);
    };
    let fin = flags & FLAG_FIN != 0;
    if !control {
        let stream = stream_at(head, 0);
        if stream == 0 {
            return Err(FrameError::StreamZero { kind: "DATA" });
        }
        let frame = Frame::Data {
            stream,
            fin,
            data: body,
        };
        return Ok(Some((frame, 8 + length)));
    }
    let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
    if version != VERSION {
        return Err(FrameError::Version(version));
    }
    let frame = control_frame(u16::from_be_bytes([head[2], head[3]]), fin, body)?;
    Ok(Some((frame, 8 + length)))
}

fn control_frame(kind: u16, fin: bool, body: &[u8]) -> Result<Frame<'_>, FrameError> {
    let length = body.len();
    let check = |kind: &'static str, ok: bool, want: &'static str| match ok {
        true => Ok(()),
        false => Err(FrameError::Length { kind, length, want }),
    };
    let frame = match kind {
        1 => {
            check("SYN_STREAM", length >= 10, "at least 10")?;
            Frame::SynStream {
                stream: stream_at(body, 0),
                fin,
                headers: &body[10..],
            }
        }
        2 => {
            check("SYN_REPLY", length >= 4, "at least 4")?;
            Frame::SynReply {
                stream: stream_at(body, 0),
                headers: &body[4..],
            }
        }
        3 => {
            check("RST_STREAM", length == 8, "8")?;
            Frame::RstStream {
                stream: stream_at(body, 0),
                status: u32_at(body, 4),
            }
        }
        4 => {
            let entries = body.get(..4).map(|count| u32_at(count, 0) as usize);
            let ok = entries
                .is_some_and(|n| n.checked_mul(8).and_then(|b| b.checked_add(4)) == Some(length));
            check("SETTINGS", ok, "4 + 8 per entry")?;
            let pairs = body[4..].chunks_exact(8);
            Frame::Settings(
                pairs
                    .map(|pair| (u32_at(pair, 0) & 0x00ff_ffff, u32_at(pair, 4)))
                    .collect(),
            )
        }
        6 => {
            check("PING", length == 4, "4")?;
            Frame::Ping(u32_at(body, 0))
        }
        7 => {
            check("GOAWAY", length == 8, "8")?;
            Frame::GoAway {
                last_stream: stream_at(body, 0),
                status: u32_at(body, 4),
            }
        }
        8 => {
            check("HEADERS", length >= 4, "at least 4")?;
            Frame::Headers {
                stream: stream_at(body, 0),
                fin,
                headers: &body[4..],
            }
        }
        9 => {
            check("WINDOW_UPDATE", length == 8, "8")?;
            Frame::WindowUpdate {
                stream: stream_at(body, 0),
                delta: stream_at(body, 4),
            }
        }
        other => Frame::Unknown(other),
    };
    Ok(frame)
}

fn control_head(out: &mut Vec<u8>, kind: u16, flags: u8, length: usize) {
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&((u32::from(flags) << 24) | length as u32).to_be_bytes());
}

/// Appends a DATA frame; `data` must fit one frame.
pub fn data(out: &mut Vec<u8>, stream: u32, fin: bool, data: &[u8]) {
    debug_assert!(data.len() <= MAX_LENGTH);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    let flags = if fin { FLAG_FIN } else { 0 };
    out.extend_from_slice(&((u32::from(flags) << 24) | data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
}

/// Appends a SYN_REPLY frame with a compressed header block.
pub fn syn_reply(out: &mut Vec<u8>, stream: u32, headers: &[u8]) {
    control_head(out, 2, 0, 4 + headers.len());
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(headers);
}

/// Appends a RST_STREAM frame.
pub fn rst_stream(out: &mut Vec<u8>, stream: u32, status: ResetStatus) {
    control_head(out, 3, 0, 8);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(&(status as u32).to_be_bytes());
}

/// Appends a PING frame.
pub fn ping(out: &mut Vec<u8>, id: u32) {
    control_head(out, 6, 0, 4);
    out.extend_from_slice(&id.to_be_bytes());
}

/// Appends a GOAWAY frame.
pub fn go_away(out: &mut Vec<u8>, last_stream: u32, status: GoAwayStatus) {
    control_head(out, 7, 0, 8);
    out.extend_from_slice(&last_stream.to_be_bytes());
    out.extend_from_slice(&(status as u32).to_be_bytes());
}

/// Appends a WINDOW_UPDATE frame (stream 0: the session's window).
pub fn window_update(out: &mut Vec<u8>, stream: u32, delta: u32) {
    control_head(out, 9, 0, 8);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(&delta.to_be_bytes());
}

/// Appends a SETTINGS frame.
pub fn settings(out: &mut Vec<u8>, pairs: &[(u32, u32)]) {
    control_head(out, 4, 0, 4 + 8 * pairs.len());
    out.extend_from_slice(&(pairs.len() as u32).to_be_bytes());
    for (id, value) in pairs {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

/// Appends a SYN_STREAM frame (priority 0, no associated stream).
pub fn syn_stream(out: &mut Vec<u8>, stream: u32, fin: bool, headers: &[u8]) {
    control_head(out, 1, u8::from(fin), 10 + headers.len());
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(headers);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(bytes: &[u8]) -> Frame<'_> {
        let (frame, length) = parse(bytes).unwrap().unwrap();
        assert_eq!(length, bytes.len());
        frame
    }

    #[test]
    fn encoded_frames_parse_back() {
        let mut out = Vec::new();
        data(&mut out, 3, true, b"hi");
        assert_eq!(
            one(&out),
            Frame::Data {
                stream: 3,
                fin: true,
                data: b"hi"
            }
        );
        type Encoder = fn(&mut Vec<u8>);
        let cases: [(Encoder, Frame<'_>); 6] = [
            (
                |o| syn_reply(o, 5, b"zz"),
                Frame::SynReply {
                    stream: 5,
                    headers: b"zz",
                },
            ),
            (
                |o| rst_stream(o, 7, ResetStatus::Cancel),
                Frame::RstStream {
                    stream: 7,
                    status: 5,
                },
            ),
            (|o| ping(o, 9), Frame::Ping(9)),
            (
                |o| go_away(o, 11, GoAwayStatus::ProtocolError),
                Frame::GoAway {
                    last_stream: 11,
                    status: 1,
                },
            ),
            (
                |o| window_update(o, 0, 4096),
                Frame::WindowUpdate {
                    stream: 0,
                    delta: 4096,
                },
            ),
            (
                |o| settings(o, &[(SETTINGS_INITIAL_WINDOW_SIZE, 1024)]),
                Frame::Settings(vec![(7, 1024)]),
            ),
        ];
        for (encode, want) in cases {
            let mut out = Vec::new();
            encode(&mut out);
            assert_eq!(one(&out), want);
        }
        let mut out = Vec::new();
        syn_stream(&mut out, 1, false, b"block");
        assert_eq!(
            one(&out),
            Frame::SynStream {
                stream: 1,
                fin: false,
                headers: b"block"
            }
        );
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let mut out = Vec::new();
        data(&mut out, 1, false, &[7; 100]);
        for cut in [0, 7, 8, 107] {
            assert_eq!(parse(&out[..cut]), Ok(None), "cut at {cut}");
        }
        let mut two = out.clone();
        ping(&mut two, 1);
        assert_eq!(parse(&two).unwrap().unwrap().1, 108);
    }

    #[test]
    fn bad_frames_are_named() {
        let mut ping5 = Vec::new();
        control_head(&mut ping5, 6, 0, 5);
        ping5.extend_from_slice(&[0; 5]);
        let err = parse(&ping5).unwrap_err();
        assert_eq!(err.to_string(), "PING frame of 5 bytes, want 4");

        let mut v2 = Vec::new();
        ping(&mut v2, 1);
        v2[1] = 2;
        assert_eq!(parse(&v2).unwrap_err(), FrameError::Version(2));

        let huge = [0, 0, 0, 1, 0, 0x20, 0, 0];
        let err = parse(&huge).unwrap_err();
        assert!(err.to_string().contains("2097152 bytes"), "{err}");

        let stream_zero = [0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            parse(&stream_zero).unwrap_err(),
            FrameError::StreamZero { kind: "DATA" }
        );

        let mut settings_bad = Vec::new();
        control_head(&mut settings_bad, 4, 0, 8);
        settings_bad.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 0]);
        assert!(matches!(
            parse(&settings_bad),
            Err(FrameError::Length { .. })
        ));

        let mut unknown = Vec::new();
        control_head(&mut unknown, 10, 0, 3);
        unknown.extend_from_slice(&[1, 2, 3]);
        assert_eq!(one(&unknown), Frame::Unknown(10));
    }
}
