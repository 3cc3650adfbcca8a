//! A minimal HTTP/2 client over cleartext TCP (h2c with prior knowledge, RFC 9113) for unary
//! gRPC calls: one request at a time, each on a new stream. It is what an OTLP exporter needs
//! and no more, so that a monitor with tracing on runs (and maps) little code: flow control in
//! both directions, SETTINGS, PING, GOAWAY, RST_STREAM, CONTINUATION and padding are handled;
//! server push is refused in our SETTINGS.
//!
//! Any error leaves the connection in an unknown state: the caller drops it.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use super::hpack::{self, Decoder, Header, HpackError};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

const SETTINGS_ENABLE_PUSH: u16 = 0x2;
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;

/// Flow-control windows and frame sizes before SETTINGS say otherwise.
const DEFAULT_WINDOW: i64 = 65_535;
const DEFAULT_MAX_FRAME: usize = 16_384;
const MAX_WINDOW: i64 = (1 << 31) - 1;
const MAX_STREAM_ID: u32 = (1 << 31) - 1;
/// Bound on a response body: OTLP responses are a few bytes, and staying below the stream's
/// receive window means we only ever replenish the connection's.
pub(super) const MAX_RESPONSE_BODY: usize = 16 * 1024;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum H2Error {
    /// Reading or writing the socket failed, or the server closed it.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The server broke the protocol.
    #[error("HTTP/2 protocol error: {0}")]
    Protocol(&'static str),
    /// A header block the decoder refused.
    #[error("HTTP/2 header block: {0}")]
    Hpack(#[from] HpackError),
    /// The server reset the request's stream.
    #[error("stream reset by the server (HTTP/2 error code {0})")]
    Reset(u32),
    /// The server is closing the connection without processing the request.
    #[error("server closing the connection (GOAWAY, HTTP/2 error code {0})")]
    GoAway(u32),
}

/// A complete response: header fields, trailer fields (empty when the headers ended the
/// stream) and body.
#[derive(Debug, Default)]
pub(super) struct Response {
    pub(super) headers: Vec<Header>,
    pub(super) trailers: Vec<Header>,
    pub(super) body: Vec<u8>,
}

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// The request in flight and what has arrived of its response.
struct Stream {
    id: u32,
    send_window: i64,
    response: Response,
    got_headers: bool,
    ended: bool,
}

/// An HTTP/2 connection on which this client sends one request at a time.
pub(super) struct Connection<S> {
    io: BufReader<S>,
    decoder: Decoder,
    next_stream: u32,
    send_window: i64,
    peer_initial_window: i64,
    peer_max_frame: usize,
    going_away: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Sends the connection preface and our SETTINGS; the server's arrive with the first response.
    pub(super) async fn handshake(io: S) -> Result<Self, H2Error> {
        let mut connection = Self {
            io: BufReader::with_capacity(4096, io),
            decoder: Decoder::new(),
            next_stream: 1,
            send_window: DEFAULT_WINDOW,
            peer_initial_window: DEFAULT_WINDOW,
            peer_max_frame: DEFAULT_MAX_FRAME,
            going_away: false,
        };
        let mut settings = Vec::with_capacity(12);
        for (id, value) in [
            (SETTINGS_ENABLE_PUSH, 0),
            (SETTINGS_MAX_HEADER_LIST_SIZE, hpack::MAX_HEADER_LIST as u32),
        ] {
            settings.extend(id.to_be_bytes());
            settings.extend(value.to_be_bytes());
        }
        let mut out = PREFACE.to_vec();
        push_frame(&mut out, SETTINGS, 0, 0, &settings);
        connection.io.write_all(&out).await?;
        connection.io.flush().await?;
        Ok(connection)
    }

    /// Whether a new request may start here (no GOAWAY, stream ids left).
    pub(super) fn is_open(&self) -> bool {
        !self.going_away && self.next_stream <= MAX_STREAM_ID
    }

    /// Sends a request with the encoded `header_block` and `body`, and waits for the whole
    /// response.
    pub(super) async fn request(
        &mut self,
        header_block: &[u8],
        body: &[u8],
    ) -> Result<Response, H2Error> {
        if header_block.len() > DEFAULT_MAX_FRAME {
            return Err(H2Error::Protocol("request header block too large"));
        }
        let mut stream = Stream {
            id: self.next_stream,
            send_window: self.peer_initial_window,
            response: Response::default(),
            got_headers: false,
            ended: false,
        };
        self.next_stream += 2;
        let flags = END_HEADERS | if body.is_empty() { END_STREAM } else { 0 };
        self.write_frame(HEADERS, flags, stream.id, header_block)
            .await?;
        let mut rest = body;
        while !rest.is_empty() && !stream.ended {
            let window = self.send_window.min(stream.send_window).max(0) as usize;
            if window == 0 {
                let frame = self.read_frame().await?;
                self.handle(frame, &mut stream).await?;
                continue;
            }
            let (chunk, remaining) = rest.split_at(window.min(self.peer_max_frame).min(rest.len()));
            let flags = if remaining.is_empty() { END_STREAM } else { 0 };
            self.write_frame(DATA, flags, stream.id, chunk).await?;
            self.send_window -= chunk.len() as i64;
            stream.send_window -= chunk.len() as i64;
            rest = remaining;
        }
        if !rest.is_empty() {
            // The server answered before reading the whole request; tell it we are done.
            self.write_frame(RST_STREAM, 0, stream.id, &0u32.to_be_bytes())
                .await?;
        }
        while !stream.ended {
            let frame = self.read_frame().await?;
            self.handle(frame, &mut stream).await?;
        }
        Ok(stream.response)
    }

    async fn handle(&mut self, frame: Frame, stream: &mut Stream) -> Result<(), H2Error> {
        let ours = frame.stream == stream.id;
        match frame.kind {
            DATA => {
                if frame.stream == 0 {
                    return Err(H2Error::Protocol("DATA on stream 0"));
                }
                // Give back what the frame took of the connection's receive window.
                if !frame.payload.is_empty() {
                    let increment = (frame.payload.len() as u32).to_be_bytes();
                    self.write_frame(WINDOW_UPDATE, 0, 0, &increment).await?;
                }
                if ours {
                    let data = unpadded(&frame.payload, frame.flags)?;
                    if stream.response.body.len() + data.len() > MAX_RESPONSE_BODY {
                        return Err(H2Error::Protocol("response body too large"));
                    }
                    stream.response.body.extend_from_slice(data);
                    stream.ended |= frame.flags & END_STREAM != 0;
                }
            }
            HEADERS => {
                // Every header block is decoded, whatever its stream: each may change the table.
                let (flags, block) = self.header_block(frame).await?;
                let headers = self.decoder.decode(&block)?;
                if ours {
                    if stream.got_headers {
                        if flags & END_STREAM == 0 {
                            return Err(H2Error::Protocol("trailers without END_STREAM"));
                        }
                        stream.response.trailers = headers;
                    } else {
                        stream.response.headers = headers;
                        stream.got_headers = true;
                    }
                    stream.ended |= flags & END_STREAM != 0;
                }
            }
            RST_STREAM if ours => return Err(H2Error::Reset(u32_at(&frame.payload, 4)?)),
            SETTINGS => self.settings(&frame, stream).await?,
            PUSH_PROMISE => return Err(H2Error::Protocol("PUSH_PROMISE though push is disabled")),
            PING if frame.flags & ACK == 0 => {
                if frame.payload.len() != 8 {
                    return Err(H2Error::Protocol("PING payload is not 8 bytes"));
                }
                self.write_frame(PING, ACK, 0, &frame.payload).await?;
            }
            GOAWAY => {
                let last_stream = u32_at(&frame.payload, 8)? & MAX_STREAM_ID;
                let code = u32_at(&frame.payload[4..], 4)?;
                self.going_away = true;
                if last_stream < stream.id {
                    return Err(H2Error::GoAway(code));
                }
            }
            WINDOW_UPDATE => {
                let increment = i64::from(u32_at(&frame.payload, 4)? & MAX_STREAM_ID);
                if increment == 0 {
                    return Err(H2Error::Protocol("WINDOW_UPDATE of 0"));
                }
                let window = match frame.stream {
                    0 => &mut self.send_window,
                    _ if ours => &mut stream.send_window,
                    _ => return Ok(()),
                };
                *window += increment;
                if *window > MAX_WINDOW {
                    return Err(H2Error::Protocol("flow-control window above 2^31-1"));
                }
            }
            CONTINUATION => return Err(H2Error::Protocol("CONTINUATION outside a header block")),
            // PRIORITY, PING acks, resets of finished streams, unknown types: nothing to do.
            _ => {}
        }
        Ok(())
    }

    /// The header block fragment of a HEADERS frame and its CONTINUATION frames, whole.
    async fn header_block(&mut self, frame: Frame) -> Result<(u8, Vec<u8>), H2Error> {
        let mut fragment = unpadded(&frame.payload, frame.flags)?;
        if frame.flags & PRIORITY != 0 {
            fragment = fragment
                .get(5..)
                .ok_or(H2Error::Protocol("HEADERS too short for its priority"))?;
        }
        let mut block = fragment.to_vec();
        let mut end = frame.flags & END_HEADERS != 0;
        while !end {
            let next = self.read_frame().await?;
            if next.kind != CONTINUATION || next.stream != frame.stream {
                return Err(H2Error::Protocol("header block interrupted"));
            }
            if block.len() + next.payload.len() > 2 * hpack::MAX_HEADER_LIST {
                return Err(H2Error::Hpack(HpackError::TooLarge));
            }
            block.extend_from_slice(&next.payload);
            end = next.flags & END_HEADERS != 0;
        }
        Ok((frame.flags, block))
    }

    async fn settings(&mut self, frame: &Frame, stream: &mut Stream) -> Result<(), H2Error> {
        if frame.stream != 0 {
            return Err(H2Error::Protocol("SETTINGS on a stream"));
        }
        if frame.flags & ACK != 0 {
            return Ok(());
        }
        if !frame.payload.len().is_multiple_of(6) {
            return Err(H2Error::Protocol("SETTINGS length not a multiple of 6"));
        }
        for setting in frame.payload.chunks_exact(6) {
            let id = u16::from_be_bytes([setting[0], setting[1]]);
            let value = u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
            match id {
                SETTINGS_INITIAL_WINDOW_SIZE => {
                    let value = i64::from(value);
                    if value > MAX_WINDOW {
                        return Err(H2Error::Protocol("initial window size above 2^31-1"));
                    }
                    // Applies to open streams as a change (RFC 9113, 6.9.2).
                    stream.send_window += value - self.peer_initial_window;
                    self.peer_initial_window = value;
                }
                SETTINGS_MAX_FRAME_SIZE => {
                    if !(16_384..=16_777_215).contains(&value) {
                        return Err(H2Error::Protocol("max frame size out of range"));
                    }
                    self.peer_max_frame = value as usize;
                }
                // The header table size concerns an encoder that indexes (ours does not);
                // the others do not change what one request at a time does.
                _ => {}
            }
        }
        self.write_frame(SETTINGS, ACK, 0, &[]).await
    }

    async fn read_frame(&mut self) -> Result<Frame, H2Error> {
        let mut header = [0u8; 9];
        self.io.read_exact(&mut header).await?;
        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        // We never raise SETTINGS_MAX_FRAME_SIZE above its default.
        if length > DEFAULT_MAX_FRAME {
            return Err(H2Error::Protocol("frame larger than our max frame size"));
        }
        let mut payload = vec![0; length];
        self.io.read_exact(&mut payload).await?;
        Ok(Frame {
            kind: header[3],
            flags: header[4],
            stream: u32::from_be_bytes([header[5], header[6], header[7], header[8]])
                & MAX_STREAM_ID,
            payload,
        })
    }

    async fn write_frame(
        &mut self,
        kind: u8,
        flags: u8,
        stream: u32,
        payload: &[u8],
    ) -> Result<(), H2Error> {
        let mut out = Vec::with_capacity(9 + payload.len());
        push_frame(&mut out, kind, flags, stream, payload);
        self.io.write_all(&out).await?;
        self.io.flush().await?;
        Ok(())
    }
}

fn push_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.extend(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// A payload without its padding when the frame is PADDED.
fn unpadded(payload: &[u8], flags: u8) -> Result<&[u8], H2Error> {
    if flags & PADDED == 0 {
        return Ok(payload);
    }
    let (&pad, rest) = payload
        .split_first()
        .ok_or(H2Error::Protocol("padded frame without a pad length"))?;
    rest.len()
        .checked_sub(usize::from(pad))
        .map(|end| &rest[..end])
        .ok_or(H2Error::Protocol("padding longer than the frame"))
}

/// The big-endian u32 at the start of a payload that must be `length` bytes long.
fn u32_at(payload: &[u8], length: usize) -> Result<u32, H2Error> {
    match payload {
        [a, b, c, d, ..] if payload.len() >= length => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => Err(H2Error::Protocol("frame payload too short")),
    }
}

#[cfg(test)]
#[path = "h2c_tests.rs"]
mod tests;
