//! The connection of one exec or attach session (a websocket or SPDY streams), and the rules
//! for a client's input to the process.

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::protocol::{self, Incoming, Protocol};
use super::spdy::RemoteCommand;
use crate::io_hub::ProcessIo;

/// The byte stream under a session's websocket: the client's TCP connection (or, in tests, an
/// in-memory pipe).
pub(super) trait Transport: AsyncRead + AsyncWrite + Unpin {}

impl<T: AsyncRead + AsyncWrite + Unpin> Transport for T {}

/// A session's websocket.
pub(super) type Socket = WebSocketStream<Box<dyn Transport>>;

/// The connection of an exec or attach session, split into its channels.
pub(super) struct Channels {
    link: Link,
    /// The subprotocol the client and the server agreed on.
    pub(super) protocol: Protocol,
}

enum Link {
    /// Split so that input and output can wait at once.
    WebSocket {
        sink: SplitSink<Socket, Message>,
        source: SplitStream<Socket>,
    },
    Spdy(Box<RemoteCommand>),
}

/// How a client's message is to be handled.
pub(super) enum ClientMessage {
    /// Input for a channel, or the end of it.
    Input(Incoming),
    /// Ping, pong, an empty or undecodable message: nothing to do.
    Ignored,
    /// The client closed the connection.
    Gone,
}

/// The client disconnected.
#[derive(Debug)]
pub(super) struct ClientGone;

impl Channels {
    pub(super) fn websocket(socket: Socket, protocol: Protocol) -> Self {
        let (sink, source) = socket.split();
        Self {
            link: Link::WebSocket { sink, source },
            protocol,
        }
    }

    pub(super) fn spdy(streams: RemoteCommand, protocol: Protocol) -> Self {
        Self {
            link: Link::Spdy(Box::new(streams)),
            protocol,
        }
    }

    /// The next message from the client. Cancel-safe.
    pub(super) async fn receive(&mut self) -> ClientMessage {
        let message = match &mut self.link {
            Link::Spdy(streams) => {
                return match streams.receive().await {
                    Ok(incoming) => ClientMessage::Input(incoming),
                    Err(ClientGone) => ClientMessage::Gone,
                };
            }
            Link::WebSocket { source, .. } => source.next().await,
        };
        let bytes = match message {
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Text(text))) => text.into(),
            Some(Ok(Message::Close(_))) | None => return ClientMessage::Gone,
            Some(Err(err)) => {
                tracing::info!(error = %err, "streaming connection failed");
                return ClientMessage::Gone;
            }
            Some(Ok(_)) => return ClientMessage::Ignored,
        };
        match protocol::incoming(self.protocol, &bytes) {
            Some(incoming) => ClientMessage::Input(incoming),
            None => ClientMessage::Ignored,
        }
    }

    /// Sends one websocket message; an error means the client is gone.
    async fn send(
        sink: &mut SplitSink<Socket, Message>,
        message: Message,
    ) -> Result<(), ClientGone> {
        sink.send(message).await.map_err(|err| {
            tracing::info!(error = %err, "streaming client gone");
            ClientGone
        })
    }

    /// Kubelet's websocket greeting: an empty message on the first channel the client reads.
    /// SPDY has none.
    pub(super) async fn greet(&mut self, stdout: bool, stderr: bool) -> Result<(), ClientGone> {
        if let Link::Spdy(_) = self.link {
            return Ok(());
        }
        let first = match (stdout, stderr) {
            (true, _) => protocol::STDOUT,
            (false, true) => protocol::STDERR,
            (false, false) => protocol::STATUS,
        };
        self.send_frame(first, &[]).await
    }

    /// Sends `data` on `channel`.
    pub(super) async fn send_frame(&mut self, channel: u8, data: &[u8]) -> Result<(), ClientGone> {
        match &mut self.link {
            Link::WebSocket { sink, .. } => {
                Self::send(sink, protocol::frame(self.protocol, channel, data)).await
            }
            Link::Spdy(streams) => streams.send(channel, data).await,
        }
    }

    /// Ends the session with `status` on the status channel and a normal close.
    pub(super) async fn finish(self, status: Option<Vec<u8>>) {
        let (mut sink, source) = match self.link {
            Link::Spdy(streams) => return streams.finish(status).await,
            Link::WebSocket { sink, source } => (sink, source),
        };
        if let Some(status) = status {
            let message = protocol::frame(self.protocol, protocol::STATUS, &status);
            if Self::send(&mut sink, message).await.is_err() {
                return;
            }
        }
        let close = CloseFrame {
            code: CloseCode::Normal,
            // conmon-rs's reason, for clients that show it.
            reason: "done".into(),
        };
        if Self::send(&mut sink, Message::Close(Some(close)))
            .await
            .is_ok()
        {
            let _ = sink.close().await;
        }
        drop(source);
    }
}

/// Applies a client's message to the process: input, a resize, or the end of input (which
/// closes the process's stdin if `close_stdin`).
pub(super) async fn apply_input(
    io: &ProcessIo,
    incoming: Incoming,
    stdin_open: &mut bool,
    close_stdin: bool,
) {
    match incoming {
        Incoming::Data {
            channel: protocol::STDIN,
            data,
        } if *stdin_open => {
            if let Err(err) = io.stdin.write_all(&data).await {
                tracing::info!(error = %err, "write to stdin; input closed");
                *stdin_open = false;
            }
        }
        Incoming::Data {
            channel: protocol::RESIZE,
            data,
        } => match protocol::resize(&data) {
            Ok((width, height)) => match io.resize(width, height) {
                Ok(true) => tracing::debug!(width, height, "terminal resized"),
                Ok(false) => tracing::debug!("resize without a terminal ignored"),
                Err(err) => tracing::warn!(error = %err, "resize terminal"),
            },
            Err(message) => tracing::warn!(%message, "resize ignored"),
        },
        Incoming::Close(protocol::STDIN) if *stdin_open => {
            *stdin_open = false;
            if close_stdin {
                io.stdin.close();
            }
        }
        Incoming::Data { channel, .. } | Incoming::Close(channel) => {
            tracing::debug!(channel, "client message ignored");
        }
    }
}
