//! Kubelet's SPDY/3.1 streaming protocols (`k8s.io/kubelet/pkg/cri/streaming`, over
//! `k8s.io/apimachinery/pkg/util/httpstream/spdy`), which kubelet and `kubectl` still speak to a
//! CRI streaming server. After the HTTP upgrade the client opens one SPDY stream per channel,
//! named by its `streamType` header: for exec and attach `error`, `stdin`, `stdout`, `stderr`
//! and `resize`; for port-forward a `data` and an `error` stream per request, paired by the
//! `requestID` header and naming the `port`.
//!
//! The framing is `conmon_spdy`'s; [`session`] drives it.

pub(crate) mod port_forward;
pub(crate) mod session;
#[cfg(test)]
mod session_tests;

use std::collections::VecDeque;
use std::time::Duration;

use tokio_tungstenite::tungstenite::Bytes;

use self::session::{Event, Session};
use super::channel::{ClientGone, Transport};
use super::protocol::{self, Incoming};

/// kubelet's default: a client has this long to open the streams a session needs.
pub(crate) const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// kubelet's default (`StreamIdleTimeout`): a session without a frame for this long is closed.
pub(crate) const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(4 * 60 * 60);
/// How long a closed session waits for the client to close the connection.
const LINGER: Duration = Duration::from_secs(5);

/// A session's connection.
pub(super) type SpdySession = Session<Box<dyn Transport>>;

/// The channel a remote-command stream type stands for.
fn channel_of(stream_type: &str) -> Option<u8> {
    match stream_type {
        "stdin" => Some(protocol::STDIN),
        "stdout" => Some(protocol::STDOUT),
        "stderr" => Some(protocol::STDERR),
        "error" => Some(protocol::STATUS),
        "resize" => Some(protocol::RESIZE),
        _ => None,
    }
}

/// The streams of an exec or attach session, by channel.
#[derive(Debug)]
pub(super) struct RemoteCommand {
    session: SpdySession,
    streams: [Option<u32>; 5],
    /// Input decoded but not yet taken.
    pending: VecDeque<Incoming>,
    /// The start of a resize message whose rest is still to come.
    resize: Vec<u8>,
}

impl RemoteCommand {
    /// Accepts the client's streams until it opened the error stream and one for each of
    /// `wanted` (channels), as kubelet waits for them; a stream of another type is accepted
    /// and ignored. Fails after `timeout`, or when the session ends first.
    pub(super) async fn establish(
        session: SpdySession,
        wanted: &[u8],
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut this = Self {
            session,
            streams: [None; 5],
            pending: VecDeque::new(),
            resize: Vec::new(),
        };
        let complete = |streams: &[Option<u32>; 5]| {
            streams[usize::from(protocol::STATUS)].is_some()
                && wanted.iter().all(|&c| streams[usize::from(c)].is_some())
        };
        let deadline = tokio::time::Instant::now() + timeout;
        while !complete(&this.streams) {
            let next = tokio::time::timeout_at(deadline, this.take_input());
            match next.await {
                Ok(Ok(())) => {}
                Ok(Err(ClientGone)) => {
                    return Err("the client left before opening its streams".into());
                }
                Err(_) => {
                    this.session.close(Duration::ZERO).await;
                    return Err("timed out waiting for client to create streams".into());
                }
            }
        }
        Ok(this)
    }

    /// The client's next input. Cancel-safe.
    pub(super) async fn receive(&mut self) -> Result<Incoming, ClientGone> {
        loop {
            if let Some(incoming) = self.pending.pop_front() {
                return Ok(incoming);
            }
            self.take_input().await?;
        }
    }

    /// Handles one event of the session: streams are accepted, input is queued.
    async fn take_input(&mut self) -> Result<(), ClientGone> {
        let event = self.session.next().await;
        let channel_of_stream = |streams: &[Option<u32>; 5], id: u32| {
            let index = streams.iter().position(|s| *s == Some(id))?;
            u8::try_from(index).ok()
        };
        match event {
            Event::Opened { stream, headers } => {
                let stream_type = headers.get("streamtype").unwrap_or_default();
                match channel_of(stream_type) {
                    Some(channel) => self.streams[usize::from(channel)] = Some(stream),
                    None => tracing::info!(
                        stream,
                        stream_type,
                        "stream of unknown type accepted and ignored"
                    ),
                }
                self.session.accept(stream).await.map_err(gone)?;
            }
            Event::Data { stream, data } => match channel_of_stream(&self.streams, stream) {
                Some(protocol::RESIZE) => self.resize_messages(&data),
                Some(channel) => self.pending.push_back(Incoming::Data {
                    channel,
                    data: Bytes::from(data),
                }),
                None => {}
            },
            Event::Finished { stream } => {
                if let Some(channel) = channel_of_stream(&self.streams, stream) {
                    self.pending.push_back(Incoming::Close(channel));
                }
            }
            Event::Reset { stream } => tracing::debug!(stream, "client reset a stream"),
            Event::Ended(_) => return Err(ClientGone),
        }
        Ok(())
    }

    /// Splits the resize stream (JSON sizes, one after another, in frames of any size) into
    /// one message per size.
    fn resize_messages(&mut self, data: &[u8]) {
        self.resize.extend_from_slice(data);
        let mut sizes =
            serde_json::Deserializer::from_slice(&self.resize).into_iter::<serde::de::IgnoredAny>();
        let mut start = 0;
        loop {
            match sizes.next() {
                Some(Ok(_)) => {
                    let end = sizes.byte_offset();
                    let message = self.resize[start..end].trim_ascii().to_vec();
                    self.pending.push_back(Incoming::Data {
                        channel: protocol::RESIZE,
                        data: Bytes::from(message),
                    });
                    start = end;
                }
                Some(Err(err)) if err.is_eof() => break,
                None => break,
                Some(Err(err)) => {
                    tracing::warn!(error = %err, "resize stream is not JSON; ignored");
                    start = self.resize.len();
                    break;
                }
            }
        }
        self.resize.drain(..start);
    }

    /// Sends `data` on the stream of `channel`; dropped if the client opened none.
    pub(super) async fn send(&mut self, channel: u8, data: &[u8]) -> Result<(), ClientGone> {
        let Some(stream) = self.streams.get(usize::from(channel)).copied().flatten() else {
            return Ok(());
        };
        self.session.send(stream, data, false).await.map_err(gone)?;
        Ok(())
    }

    /// Ends the session: `status` on the error stream, then FIN on every stream and GOAWAY.
    pub(super) async fn finish(mut self, status: Option<Vec<u8>>) {
        if let Some(status) = status
            && self.send(protocol::STATUS, &status).await.is_err()
        {
            return;
        }
        self.session.close(LINGER).await;
    }
}

fn gone(err: std::io::Error) -> ClientGone {
    tracing::info!(error = %err, "streaming client gone");
    ClientGone
}
