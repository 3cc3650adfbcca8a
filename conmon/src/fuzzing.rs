//! Entry points for the fuzz targets in `fuzz/` (compiled only under `cargo fuzz`, which builds
//! with `--cfg fuzzing`).
//!
//! The parsers fuzzed here sit in private modules (`logs::render`, `logs::timestamp`,
//! `streaming::http`, `streaming::protocol`, `streaming::query`), which no path from the crate root reaches, and
//! their visibility stays as it is. So their source files are compiled a second time, unchanged,
//! as children of this module (`#[path]`): the code fuzzed is the same text the monitor runs.
//! The `super::` items they import (`timestamp`, `protocol`) are provided here under the same
//! names. The functions below are thin wrappers with plain types.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    reason = "the mirrored modules are only partly used by the fuzz targets"
)]

use std::time::SystemTime;

pub use crate::stream::Stream;

#[path = "streaming/http.rs"]
mod http;
#[path = "streaming/protocol.rs"]
mod protocol;
#[path = "streaming/query.rs"]
mod query;
#[path = "logs/render.rs"]
mod render;
#[path = "logs/timestamp.rs"]
mod timestamp;

/// A chunk rendered as CRI records: the bytes, and the end offset of each record.
pub fn cri(stream: Stream, chunk: &[u8], time: SystemTime) -> (Vec<u8>, Vec<usize>) {
    let (mut buf, mut records) = (Vec::new(), Vec::new());
    render::cri(&mut buf, &mut records, stream, chunk, time);
    (buf, records)
}

/// A chunk rendered as JSON-lines records: the bytes, and the end offset of each record.
pub fn json(stream: Stream, chunk: &[u8], time: SystemTime) -> (Vec<u8>, Vec<usize>) {
    let (mut buf, mut records) = (Vec::new(), Vec::new());
    render::json(&mut buf, &mut records, stream, chunk, time);
    (buf, records)
}

/// `time` as the CRI log timestamp (RFC 3339 with nanoseconds, UTC).
pub fn rfc3339_nano(time: SystemTime) -> Vec<u8> {
    let mut out = Vec::new();
    timestamp::write_rfc3339_nano(&mut out, time);
    out
}

/// The stream's name in log records.
pub fn stream_name(stream: Stream) -> &'static str {
    stream.name()
}

/// Most bytes the streaming server reads for a request head.
pub const MAX_HEAD: usize = http::MAX_HEAD;

/// What the streaming server makes of the bytes of a request head.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// Not complete yet: the server reads more.
    Incomplete,
    /// A valid upgrade.
    Upgrade {
        /// `exec`, `attach` or `port-forward`.
        kind: &'static str,
        /// `websocket` or `SPDY/3.1`.
        transport: &'static str,
        token: String,
        query: String,
        /// The negotiated subprotocol's (or SPDY protocol version's) name; none for a
        /// websocket without a subprotocol.
        protocol: Option<&'static str>,
        /// The length of the head.
        length: usize,
        /// The `101 Switching Protocols` response.
        accept: Vec<u8>,
    },
    /// An error response.
    Rejected {
        status: u16,
        message: String,
        /// The rendered response.
        response: Vec<u8>,
    },
}

/// `streaming::http::parse` on `buf`.
pub fn http_parse(buf: &[u8]) -> Head {
    match http::parse(buf) {
        Ok(None) => Head::Incomplete,
        Ok(Some((upgrade, length))) => Head::Upgrade {
            kind: upgrade.kind.path(),
            transport: upgrade.transport(),
            accept: upgrade.accept(),
            token: upgrade.token,
            query: upgrade.query,
            protocol: upgrade.protocol.name(),
            length,
        },
        Err(rejection) => Head::Rejected {
            status: rejection.status,
            response: rejection.render(),
            message: rejection.message,
        },
    }
}

/// `streaming::query::ports`: the ports of a port-forward query string.
pub fn ports(query: &str) -> Result<Vec<u16>, String> {
    query::ports(query)
}

/// `streaming::protocol::resize`: a terminal size from the resize channel.
pub fn resize(data: &[u8]) -> Result<(u16, u16), String> {
    protocol::resize(data)
}

/// A client's binary message, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Data { channel: u8, data: Vec<u8> },
    Close(u8),
}

/// `streaming::protocol::incoming` for `v5.channel.k8s.io` (`v5`) or `v4.channel.k8s.io`.
pub fn incoming(v5: bool, message: &[u8]) -> Option<Incoming> {
    let protocol = if v5 {
        protocol::Protocol::V5
    } else {
        protocol::Protocol::V4
    };
    let message = tokio_tungstenite::tungstenite::Bytes::copy_from_slice(message);
    protocol::incoming(protocol, &message).map(|incoming| match incoming {
        protocol::Incoming::Data { channel, data } => Incoming::Data {
            channel,
            data: data.to_vec(),
        },
        protocol::Incoming::Close(channel) => Incoming::Close(channel),
    })
}

/// `streaming::protocol::frame` for `v4.channel.k8s.io`: the payload of the binary message
/// for `channel`.
pub fn frame(channel: u8, data: &[u8]) -> Vec<u8> {
    protocol::frame(protocol::Protocol::V4, channel, data)
        .into_data()
        .to_vec()
}

/// What a SPDY session made of a client's bytes.
#[derive(Debug)]
pub struct SpdyOutcome {
    /// The events, in order (`Debug` of each), the last being the end.
    pub events: Vec<String>,
    /// Stream IDs of the streams the client opened.
    pub opened: Vec<u32>,
    /// Everything the server wrote back.
    pub written: Vec<u8>,
}

/// Runs the streaming server's SPDY session on `input` (then end of file), accepting every
/// stream the client opens and echoing its data back.
pub fn spdy_session(input: &[u8]) -> SpdyOutcome {
    use crate::streaming::spdy_session::{Event, Session};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let (server, mut client) = tokio::io::duplex(1 << 22);
        client.write_all(input).await.expect("write the input");
        client.shutdown().await.expect("end the input");
        let mut session = Session::new(server, Vec::new(), std::time::Duration::from_secs(3600));
        let (mut events, mut opened) = (Vec::new(), Vec::new());
        loop {
            let event = session.next().await;
            events.push(format!("{event:?}"));
            let echoed = match event {
                Event::Opened { stream, .. } => {
                    opened.push(stream);
                    session.accept(stream).await
                }
                Event::Data { stream, data } => session.send(stream, &data, false).await.map(drop),
                Event::Finished { stream } => session.send(stream, &[], true).await.map(drop),
                Event::Reset { .. } => Ok(()),
                Event::Ended(_) => break,
            };
            if echoed.is_err() {
                break;
            }
        }
        drop(session);
        let mut written = Vec::new();
        client
            .read_to_end(&mut written)
            .await
            .expect("read the output");
        SpdyOutcome {
            events,
            opened,
            written,
        }
    })
}

/// `validate::container_id`: the error message, if `id` is refused.
pub fn validate_container_id(id: &str) -> Result<(), String> {
    crate::validate::container_id(id).map_err(|err| err.to_string())
}

/// `validate::command`: the error message, if `command` is refused.
pub fn validate_command(command: &[String]) -> Result<(), String> {
    crate::validate::command(command).map_err(|err| err.to_string())
}
