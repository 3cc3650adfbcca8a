//! A SPDY/3.1 streaming client, as client-go's SPDY executor and port forwarder speak to a
//! kubelet: an HTTP upgrade offering `X-Stream-Protocol-Version`, then one stream per channel
//! opened by the client and named by its `streamType` header. It also sends raw bytes, to play
//! clients that break the protocol.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use conmon_spdy::frame::{self, Frame, GoAwayStatus};
use conmon_spdy::headers::{Codec, Headers};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// How long a test waits for the server.
const WAIT: Duration = Duration::from_secs(30);

/// A session after the upgrade.
#[derive(Debug)]
pub struct Session {
    io: TcpStream,
    codec: Codec,
    input: Vec<u8>,
    next_stream: u32,
    /// The protocol version the server chose.
    pub protocol: String,
    /// Streams opened, by ID: their `streamType`.
    pub streams: BTreeMap<u32, String>,
    /// Data received so far, by stream ID. Tests may take it out as it comes.
    pub received: BTreeMap<u32, Vec<u8>>,
    /// Streams the server accepted (SYN_REPLY).
    pub accepted: BTreeSet<u32>,
    /// Streams the server finished (FIN).
    pub finished: BTreeSet<u32>,
    /// Streams the server reset, with the status.
    pub resets: Vec<(u32, u32)>,
    /// The server's GOAWAY status, once it came.
    pub go_away: Option<u32>,
    /// PING ids the server echoed.
    pub pongs: Vec<u32>,
}

/// The response to an upgrade request: its status and head, and the connection.
pub async fn upgrade(url: &str, versions: &[&str]) -> Result<(u16, String, TcpStream, Vec<u8>)> {
    let rest = url.strip_prefix("http://").context("not an http:// URL")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut io = TcpStream::connect(host).await?;
    let versions: String = versions
        .iter()
        .map(|v| format!("X-Stream-Protocol-Version: {v}\r\n"))
        .collect();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
         {versions}Content-Length: 0\r\n\r\n"
    );
    io.write_all(request.as_bytes()).await?;
    let mut buf = Vec::new();
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let mut chunk = [0; 1024];
        let n = tokio::time::timeout(WAIT, io.read(&mut chunk)).await??;
        ensure!(n > 0, "connection closed during the upgrade");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .context("no status line")?;
    Ok((status, head, io, buf.split_off(end)))
}

/// Upgrades `url` offering `versions`, in order; a refusal is an error with status and body.
pub async fn connect(url: &str, versions: &[&str]) -> Result<Session> {
    let (status, head, mut io, leftover) = upgrade(url, versions).await?;
    if status != 101 {
        let mut body = leftover;
        let _ = tokio::time::timeout(WAIT, io.read_to_end(&mut body)).await;
        bail!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body).trim_end()
        );
    }
    let protocol = head
        .lines()
        .find_map(|line| line.strip_prefix("X-Stream-Protocol-Version: "))
        .unwrap_or_default()
        .to_owned();
    Ok(Session {
        io,
        codec: Codec::new(),
        input: leftover,
        next_stream: 1,
        protocol,
        streams: BTreeMap::new(),
        received: BTreeMap::new(),
        accepted: BTreeSet::new(),
        finished: BTreeSet::new(),
        resets: Vec::new(),
        go_away: None,
        pongs: Vec::new(),
    })
}

impl Session {
    /// Opens a stream with `headers` and waits for the server's reply.
    pub async fn open(&mut self, headers: &[(&str, &str)]) -> Result<u32> {
        let stream = self.next_stream;
        self.next_stream += 2;
        let block = self.codec.encode(&Headers::of(headers));
        let mut out = Vec::new();
        frame::syn_stream(&mut out, stream, false, &block);
        self.send_raw(&out).await?;
        let kind = headers
            .iter()
            .find(|(name, _)| *name == "streamtype")
            .map_or("", |(_, value)| value);
        self.streams.insert(stream, kind.to_owned());
        // Whatever comes before the reply is handled on the way.
        while !self.accepted.contains(&stream) {
            ensure!(
                !self.resets.iter().any(|(reset, _)| *reset == stream),
                "stream {stream} refused"
            );
            ensure!(
                self.receive().await?,
                "session ended before stream {stream} was accepted"
            );
        }
        Ok(stream)
    }

    /// Opens the streams of a remote command: `error` first, then each of `types`, as client-go.
    pub async fn open_streams(&mut self, types: &[&str]) -> Result<BTreeMap<String, u32>> {
        let mut ids = BTreeMap::new();
        for kind in std::iter::once(&"error").chain(types) {
            ids.insert(
                (*kind).to_owned(),
                self.open(&[("streamtype", kind)]).await?,
            );
        }
        Ok(ids)
    }

    /// Sends `data` on `stream`, with FIN if `fin`.
    pub async fn send(&mut self, stream: u32, data: &[u8], fin: bool) -> Result<()> {
        let mut out = Vec::new();
        frame::data(&mut out, stream, fin, data);
        self.send_raw(&out).await
    }

    /// Sends bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.io.write_all(bytes).await?;
        Ok(())
    }

    /// Handles one frame from the server; `false` once it closed the connection.
    pub async fn receive(&mut self) -> Result<bool> {
        loop {
            if let Some((frame, length)) = frame::parse(&self.input)? {
                match frame {
                    Frame::Data { stream, fin, data } => {
                        self.received
                            .entry(stream)
                            .or_default()
                            .extend_from_slice(data);
                        if fin {
                            self.finished.insert(stream);
                        }
                    }
                    Frame::SynReply { stream, headers } => {
                        self.codec.decode(headers)?;
                        self.accepted.insert(stream);
                    }
                    Frame::RstStream { stream, status } => self.resets.push((stream, status)),
                    Frame::GoAway { status, .. } => self.go_away = Some(status),
                    Frame::Ping(id) => self.pongs.push(id),
                    Frame::WindowUpdate { .. } | Frame::Settings(_) => {}
                    other => bail!("unexpected frame from the server: {other:?}"),
                }
                self.input.drain(..length);
                return Ok(true);
            }
            let mut chunk = vec![0; 64 * 1024];
            let n = tokio::time::timeout(WAIT, self.io.read(&mut chunk))
                .await
                .context("server silent")??;
            if n == 0 {
                return Ok(false);
            }
            self.input.extend_from_slice(&chunk[..n]);
        }
    }

    /// Receives until the server closed the connection.
    pub async fn receive_to_end(&mut self) -> Result<()> {
        while self.receive().await? {}
        Ok(())
    }

    /// What came on the stream of type `kind`, as text.
    pub fn text(&self, kind: &str) -> String {
        let id = self
            .streams
            .iter()
            .find(|(_, k)| *k == kind)
            .map(|(id, _)| *id);
        let data = id.and_then(|id| self.received.get(&id));
        String::from_utf8_lossy(data.map_or(&[][..], Vec::as_slice)).into_owned()
    }

    /// The `Status` the error stream carried (v4).
    pub fn status(&self) -> Result<serde_json::Value> {
        serde_json::from_str(&self.text("error")).context("error stream is not a JSON Status")
    }

    /// The server ended the session normally.
    pub fn went_away_ok(&self) -> bool {
        self.go_away == Some(GoAwayStatus::Ok as u32)
    }
}
