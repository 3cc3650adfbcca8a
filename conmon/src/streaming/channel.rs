//! The websocket of one streaming session, split so that input and output can wait at once, and
//! the rules for a client's input to the process.

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use super::protocol::{self, Incoming, Protocol};
use crate::io_hub::ProcessIo;

/// The byte stream under a session's websocket: the client's TCP connection (or, in tests, an
/// in-memory pipe).
pub(super) trait Transport: AsyncRead + AsyncWrite + Unpin {}

impl<T: AsyncRead + AsyncWrite + Unpin> Transport for T {}

/// A session's websocket.
pub(super) type Socket = WebSocketStream<Box<dyn Transport>>;

/// The websocket of a session, split so that input and output can wait at once.
pub(super) struct Channels {
    sink: SplitSink<Socket, Message>,
    source: SplitStream<Socket>,
    /// The subprotocol the client and the server agreed on.
    pub(super) protocol: Protocol,
}

/// How a client's message is to be handled.
pub(super) enum ClientMessage {
    /// A data message, binary or text (channel first; see [`protocol::incoming`]).
    Data(Bytes),
    /// Ping, pong: nothing to do.
    Ignored,
    /// The client closed the websocket or the connection.
    Gone,
}

/// The client disconnected.
#[derive(Debug)]
pub(super) struct ClientGone;

impl Channels {
    pub(super) fn new(socket: Socket, protocol: Protocol) -> Self {
        let (sink, source) = socket.split();
        Self {
            sink,
            source,
            protocol,
        }
    }

    /// The next message from the client. Cancel-safe.
    pub(super) async fn receive(&mut self) -> ClientMessage {
        match self.source.next().await {
            Some(Ok(Message::Binary(bytes))) => ClientMessage::Data(bytes),
            Some(Ok(Message::Text(text))) => ClientMessage::Data(text.into()),
            Some(Ok(Message::Close(_))) | None => ClientMessage::Gone,
            Some(Err(err)) => {
                tracing::info!(error = %err, "streaming connection failed");
                ClientMessage::Gone
            }
            Some(Ok(_)) => ClientMessage::Ignored,
        }
    }

    /// Sends one message; an error means the client is gone.
    pub(super) async fn send(&mut self, message: Message) -> Result<(), ClientGone> {
        self.sink.send(message).await.map_err(|err| {
            tracing::info!(error = %err, "streaming client gone");
            ClientGone
        })
    }

    /// Kubelet's greeting: an empty message on the first channel the client reads.
    pub(super) async fn greet(&mut self, stdout: bool, stderr: bool) -> Result<(), ClientGone> {
        let first = match (stdout, stderr) {
            (true, _) => protocol::STDOUT,
            (false, true) => protocol::STDERR,
            (false, false) => protocol::STATUS,
        };
        self.send_frame(first, &[]).await
    }

    /// Sends `data` on `channel`, encoded for the session's subprotocol.
    pub(super) async fn send_frame(&mut self, channel: u8, data: &[u8]) -> Result<(), ClientGone> {
        self.send(protocol::frame(self.protocol, channel, data))
            .await
    }

    /// Ends the session with `status` on the status channel and a normal close.
    pub(super) async fn finish(mut self, status: Option<Message>) {
        if let Some(status) = status
            && self.send(status).await.is_err()
        {
            return;
        }
        let close = CloseFrame {
            code: CloseCode::Normal,
            // conmon-rs's reason, for clients that show it.
            reason: "done".into(),
        };
        if self.send(Message::Close(Some(close))).await.is_ok() {
            let _ = self.sink.close().await;
        }
    }
}

/// Applies a client's message to the process: input, a resize, or the end of input (which
/// closes the process's stdin if `close_stdin`).
pub(super) async fn apply_input(
    io: &ProcessIo,
    incoming: Incoming<'_>,
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
