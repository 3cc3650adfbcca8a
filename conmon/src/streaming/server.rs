//! The loopback HTTP server: it starts with the first session, reads each connection's request
//! head, completes the upgrade (websocket or SPDY) for a session it holds (or answers with an
//! error), and runs that session in its own span, a child of the RPC that created it.

use std::cell::Cell;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tracing::Instrument as _;

use super::channel::{Channels, Transport};
use super::http::{self, Handshake, Kind, Rejection, Upgrade};
use super::registry::{Registry, Session};
use super::spdy::{self, RemoteCommand};
use super::{attach, exec, port_forward, protocol, query};
use crate::error::MonitorError;
use crate::gate::Gate;
use crate::metrics;
use crate::monitor::Monitor;
use conmon_telemetry::propagation;

/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Open connections at most, sessions included (any local user can connect to the port).
const MAX_CONNECTIONS: usize = 128;

/// The server, once listening, and the sessions it serves.
#[derive(Debug)]
pub(super) struct Server {
    monitor: Rc<Monitor>,
    pub(super) sessions: Rc<Registry>,
    /// Where the server listens, once started.
    address: Cell<Option<SocketAddr>>,
    /// Sessions being served right now.
    active: Cell<usize>,
}

impl Server {
    pub(super) fn new(monitor: Rc<Monitor>, sessions: Rc<Registry>) -> Rc<Self> {
        Rc::new(Self {
            monitor,
            sessions,
            address: Cell::new(None),
            active: Cell::new(0),
        })
    }

    /// Sessions being served right now.
    pub(super) fn active(&self) -> usize {
        self.active.get()
    }

    /// Starts the server unless it runs already; returns its address.
    pub(super) fn listen(self: &Rc<Self>) -> Result<SocketAddr, MonitorError> {
        if let Some(address) = self.address.get() {
            return Ok(address);
        }
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| {
                listener.set_nonblocking(true)?;
                TcpListener::from_std(listener)
            })
            .map_err(MonitorError::Streaming)?;
        let address = listener.local_addr().map_err(MonitorError::Streaming)?;
        self.address.set(Some(address));
        tracing::info!(%address, "streaming server listening");
        crate::tasks::spawn_local(self.clone().accept(listener));
        Ok(address)
    }

    async fn accept(self: Rc<Self>, listener: TcpListener) {
        let gate = Gate::new("streaming", MAX_CONNECTIONS);
        loop {
            if let Some(((stream, _), permit)) = gate.admit(listener.accept().await).await {
                let connection = self.clone().connection(stream);
                crate::tasks::spawn_local(async move {
                    connection.await;
                    drop(permit);
                });
            }
        }
    }

    /// Serves one connection: the request head, then the session it names.
    async fn connection(self: Rc<Self>, mut stream: TcpStream) {
        let head = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await;
        let (upgrade, leftover) = match head {
            Ok(Ok(Some(head))) => head,
            Ok(Ok(None)) | Err(_) => return,
            Ok(Err(rejection)) => return reject(stream, &rejection).await,
        };
        // Over SPDY, each forwarded connection names its port; over a websocket, the query.
        let ports = match (upgrade.kind, &upgrade.handshake) {
            (Kind::PortForward, Handshake::WebSocket { .. }) => {
                match query::ports(&upgrade.query) {
                    Ok(ports) => ports,
                    Err(message) => return reject(stream, &Rejection::new(400, message)).await,
                }
            }
            _ => Vec::new(),
        };
        let pending = match self.sessions.take(upgrade.kind, &upgrade.token) {
            Ok(pending) => pending,
            Err(rejection) => return reject(stream, &rejection).await,
        };
        if let Err(err) = stream.write_all(&upgrade.accept()).await {
            tracing::debug!(error = %err, "streaming client left during the handshake");
            return;
        }
        let transport: Box<dyn Transport> = Box::new(stream);
        let span = session_span(&upgrade, pending.session.container_id());
        propagation::set_parent_context(&span, &pending.origin);
        self.active.set(self.active.get() + 1);
        let monitor = &self.monitor;
        let session = async move {
            let _active = metrics::streaming_session(upgrade.kind.path(), upgrade.transport());
            tracing::info!("streaming client connected");
            let protocol = upgrade.protocol;
            let channels = match upgrade.handshake {
                Handshake::WebSocket { .. } => {
                    let socket = WebSocketStream::from_partially_read(
                        transport,
                        leftover,
                        Role::Server,
                        None,
                    )
                    .await;
                    Channels::websocket(socket, protocol)
                }
                Handshake::Spdy => {
                    let spdy =
                        spdy::SpdySession::new(transport, leftover, spdy::STREAM_IDLE_TIMEOUT);
                    let wanted = match pending.session {
                        Session::PortForward { namespace, path } => {
                            let timeout = spdy::STREAM_CREATION_TIMEOUT;
                            spdy::port_forward::run(namespace, &path, spdy, timeout).await;
                            tracing::info!("streaming session ended");
                            return;
                        }
                        Session::Exec(ref request) => wanted_streams(
                            request.stdin,
                            request.stdout,
                            request.stderr && !request.tty,
                        ),
                        Session::Attach(ref request) => {
                            wanted_streams(request.stdin, request.stdout, request.stderr)
                        }
                    };
                    match RemoteCommand::establish(spdy, &wanted, spdy::STREAM_CREATION_TIMEOUT)
                        .await
                    {
                        Ok(streams) => Channels::spdy(streams, protocol),
                        Err(message) => {
                            tracing::warn!(%message, "streaming session not established");
                            return;
                        }
                    }
                }
            };
            match pending.session {
                Session::Exec(request) => {
                    exec::run(monitor, request, &upgrade.token, channels).await;
                }
                Session::Attach(request) => attach::run(monitor, request, channels).await,
                Session::PortForward { namespace, path } => {
                    port_forward::run(namespace, &path, ports, channels).await;
                }
            }
            tracing::info!("streaming session ended");
        };
        session.instrument(span).await;
        self.active.set(self.active.get() - 1);
    }
}

/// The channels an exec or attach session needs streams for, besides the error stream.
fn wanted_streams(stdin: bool, stdout: bool, stderr: bool) -> Vec<u8> {
    [
        (stdin, protocol::STDIN),
        (stdout, protocol::STDOUT),
        (stderr, protocol::STDERR),
    ]
    .into_iter()
    .filter_map(|(wanted, channel)| wanted.then_some(channel))
    .collect()
}

/// The span a session runs in.
fn session_span(upgrade: &Upgrade, container_id: &str) -> tracing::Span {
    let span = tracing::info_span!(
        parent: None,
        "stream",
        otel.name = format!("stream {}", upgrade.kind.path()),
        otel.kind = "server",
        container.id = tracing::field::Empty,
        session.id = %upgrade.token,
        streaming.transport = upgrade.transport(),
        streaming.protocol = upgrade.protocol.name(),
    );
    if !container_id.is_empty() {
        span.record("container.id", container_id);
    }
    span
}

/// Reads the request head; returns the upgrade and any bytes read past the head.
async fn read_head(stream: &mut TcpStream) -> Result<Option<(Upgrade, Vec<u8>)>, Rejection> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0; 1024];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some((upgrade, length)) = http::parse(&buf)? {
            return Ok(Some((upgrade, buf.split_off(length))));
        }
    }
}

async fn reject(mut stream: TcpStream, rejection: &Rejection) {
    tracing::info!(status = rejection.status, message = %rejection.message, "streaming request refused");
    let _ = stream.write_all(&rejection.render()).await;
    let _ = stream.shutdown().await;
}
