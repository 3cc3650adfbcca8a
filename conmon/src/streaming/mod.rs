//! The Kubernetes streaming server behind `serveExecContainer`, `serveAttachContainer` and
//! `servePortForwardContainer`.
//!
//! Each RPC stores a session and returns a one-shot URL on a loopback HTTP server, started with
//! the first session: `http://127.0.0.1:PORT/{exec,attach,port-forward}/TOKEN`. Opening the URL
//! with a websocket upgrade (`v5.channel.k8s.io` or `v4.channel.k8s.io`) consumes the session
//! and runs it; a URL not opened within the time to live expires. Each session runs in a span
//! that is a child of the RPC that created it.

mod attach;
mod channel;
mod exec;
mod http;
mod port_forward;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt as _, StreamExt as _};
use opentelemetry::trace::SpanContext;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::{Role, frame::coding::CloseCode};
use tracing::Instrument as _;

use self::channel::{Incoming, Protocol};
use self::http::{Kind, Rejection, Upgrade};
use crate::attach::Endpoint;
use crate::error::MonitorError;
use crate::monitor::Monitor;
pub use conmon_proto::types::{ServeAttach, ServeExec};
use conmon_telemetry::{ids, propagation};

/// Sessions waiting for their URL to be opened, at most.
const MAX_PENDING: usize = 1024;

/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

type Sink = SplitSink<WebSocketStream<TcpStream>, Message>;
type Source = SplitStream<WebSocketStream<TcpStream>>;

/// The streaming server and its sessions.
#[derive(Debug)]
pub struct Streaming {
    monitor: Rc<Monitor>,
    /// How long a URL stays valid.
    ttl: Duration,
    pending: RefCell<HashMap<String, Pending>>,
    /// Where the server listens, once started.
    address: Cell<Option<SocketAddr>>,
    /// Sessions being served right now.
    active: Cell<usize>,
}

#[derive(Debug)]
struct Pending {
    session: Session,
    expires: Instant,
    /// The RPC span that created the session.
    origin: SpanContext,
    /// Dropped with the session: ends its expiry timer.
    _taken: oneshot::Sender<()>,
}

#[derive(Debug)]
enum Session {
    Exec(ServeExec),
    Attach(ServeAttach),
    PortForward {
        /// Held open from the request on, so the namespace cannot vanish before the URL is used.
        namespace: File,
        path: PathBuf,
    },
}

impl Session {
    fn kind(&self) -> Kind {
        match self {
            Self::Exec(_) => Kind::Exec,
            Self::Attach(_) => Kind::Attach,
            Self::PortForward { .. } => Kind::PortForward,
        }
    }

    fn container_id(&self) -> &str {
        match self {
            Self::Exec(request) => &request.id,
            Self::Attach(request) => &request.id,
            Self::PortForward { .. } => "",
        }
    }
}

impl Streaming {
    /// A server for `monitor`'s containers whose URLs are valid for `ttl`; it listens once the
    /// first session is requested.
    pub fn new(monitor: Rc<Monitor>, ttl: Duration) -> Rc<Self> {
        Rc::new(Self {
            monitor,
            ttl,
            pending: RefCell::default(),
            address: Cell::new(None),
            active: Cell::new(0),
        })
    }

    /// A URL that runs `request.command` in the container when opened.
    pub fn serve_exec(self: &Rc<Self>, request: ServeExec) -> Result<String, MonitorError> {
        if request.command.is_empty() {
            return Err(MonitorError::InvalidRequest("exec command is empty".into()));
        }
        self.monitor.running_container(&request.id)?;
        self.register(Session::Exec(request))
    }

    /// A URL that attaches to the container's stdio when opened.
    pub fn serve_attach(self: &Rc<Self>, request: ServeAttach) -> Result<String, MonitorError> {
        self.monitor.running_container(&request.id)?;
        self.register(Session::Attach(request))
    }

    /// A URL that forwards TCP ports inside the network namespace at `path` when opened.
    pub fn serve_port_forward(self: &Rc<Self>, path: PathBuf) -> Result<String, MonitorError> {
        if path.as_os_str().is_empty() {
            return Err(MonitorError::InvalidRequest(
                "network namespace path is empty".into(),
            ));
        }
        let namespace = File::open(&path).map_err(|source| MonitorError::NetworkNamespace {
            path: path.clone(),
            source,
        })?;
        self.register(Session::PortForward { namespace, path })
    }

    /// Counts for diagnostics: sessions waiting for their URL, and sessions being served.
    pub fn session_counts(&self) -> (usize, usize) {
        (self.pending.borrow().len(), self.active.get())
    }

    fn register(self: &Rc<Self>, session: Session) -> Result<String, MonitorError> {
        let address = self.listen()?;
        let mut pending = self.pending.borrow_mut();
        if pending.len() >= MAX_PENDING {
            return Err(MonitorError::TooManyStreams(MAX_PENDING));
        }
        let token = ids::uuid_v4().map_err(MonitorError::Streaming)?;
        let url = format!("http://{address}/{}/{token}", session.kind().path());
        tracing::info!(session_id = %token, kind = session.kind().path(), "streaming session ready");
        let expires = Instant::now() + self.ttl;
        let (taken, mut not_taken) = oneshot::channel();
        pending.insert(
            token.clone(),
            Pending {
                session,
                expires,
                origin: propagation::span_context(&tracing::Span::current()),
                _taken: taken,
            },
        );
        // An unopened URL must not hold its session (a namespace, for port-forward) for long.
        let streaming = Rc::downgrade(self);
        tokio::task::spawn_local(async move {
            tokio::select! {
                () = tokio::time::sleep_until(expires) => {}
                _ = &mut not_taken => return,
            }
            if let Some(streaming) = streaming.upgrade()
                && streaming.pending.borrow_mut().remove(&token).is_some()
            {
                tracing::debug!(session_id = %token, "streaming session expired unopened");
            }
        });
        Ok(url)
    }

    /// Starts the server unless it runs already; returns its address.
    fn listen(self: &Rc<Self>) -> Result<SocketAddr, MonitorError> {
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
        tokio::task::spawn_local(self.clone().accept(listener));
        Ok(address)
    }

    async fn accept(self: Rc<Self>, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::task::spawn_local(self.clone().connection(stream));
                }
                Err(err) => {
                    // Out of descriptors, typically: let some close instead of spinning.
                    tracing::warn!(error = %err, "accept streaming connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
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
        let ports = match upgrade.kind {
            Kind::PortForward => match channel::ports(&upgrade.query) {
                Ok(ports) => ports,
                Err(message) => return reject(stream, &Rejection::new(400, message)).await,
            },
            Kind::Exec | Kind::Attach => Vec::new(),
        };
        let pending = match self.take(&upgrade) {
            Ok(pending) => pending,
            Err(rejection) => return reject(stream, &rejection).await,
        };
        if let Err(err) = stream.write_all(&upgrade.accept()).await {
            tracing::debug!(error = %err, "streaming client left during the handshake");
            return;
        }
        let ws = WebSocketStream::from_partially_read(stream, leftover, Role::Server, None).await;
        let span = tracing::info_span!(
            parent: None,
            "stream",
            otel.name = format!("stream {}", upgrade.kind.path()),
            otel.kind = "server",
            container.id = tracing::field::Empty,
            session.id = %upgrade.token,
            websocket.protocol = upgrade.protocol.name(),
        );
        let container_id = pending.session.container_id();
        if !container_id.is_empty() {
            span.record("container.id", container_id);
        }
        propagation::set_parent_context(&span, &pending.origin);
        self.active.set(self.active.get() + 1);
        let (sink, source) = ws.split();
        let channels = Channels {
            sink,
            source,
            protocol: upgrade.protocol,
        };
        let monitor = self.monitor.clone();
        let session = async move {
            tracing::info!("streaming client connected");
            match pending.session {
                Session::Exec(request) => {
                    exec::run(&monitor, request, &upgrade.token, channels).await;
                }
                Session::Attach(request) => attach::run(&monitor, request, channels).await,
                Session::PortForward { namespace, path } => {
                    port_forward::run(namespace, &path, ports, channels).await;
                }
            }
            tracing::info!("streaming session ended");
        };
        session.instrument(span).await;
        self.active.set(self.active.get() - 1);
    }

    /// Consumes the session `upgrade` names.
    fn take(&self, upgrade: &Upgrade) -> Result<Pending, Rejection> {
        let mut sessions = self.pending.borrow_mut();
        let unknown = || {
            Rejection::new(
                404,
                format!(
                    "no {} session '{}': it was never issued, was used already, or expired",
                    upgrade.kind.path(),
                    upgrade.token
                ),
            )
        };
        let pending = sessions.remove(&upgrade.token).ok_or_else(unknown)?;
        if pending.session.kind() != upgrade.kind {
            sessions.insert(upgrade.token.clone(), pending);
            return Err(unknown());
        }
        if pending.expires <= Instant::now() {
            return Err(Rejection::new(
                404,
                format!(
                    "{} session '{}' expired: URLs must be opened within {} ms",
                    upgrade.kind.path(),
                    upgrade.token,
                    self.ttl.as_millis()
                ),
            ));
        }
        Ok(pending)
    }
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

/// The websocket of a session, split so that input and output can wait at once.
struct Channels {
    sink: Sink,
    source: Source,
    protocol: Protocol,
}

/// How a client's message is to be handled.
enum ClientMessage {
    /// A binary message (channel byte first).
    Binary(tokio_tungstenite::tungstenite::Bytes),
    /// Text, ping, pong: nothing to do.
    Ignored,
    /// The client closed the websocket or the connection.
    Gone,
}

impl Channels {
    /// The next message from the client. Cancel-safe.
    async fn receive(&mut self) -> ClientMessage {
        match self.source.next().await {
            Some(Ok(Message::Binary(bytes))) => ClientMessage::Binary(bytes),
            Some(Ok(Message::Close(_))) | None => ClientMessage::Gone,
            Some(Err(err)) => {
                tracing::info!(error = %err, "streaming connection failed");
                ClientMessage::Gone
            }
            Some(Ok(_)) => ClientMessage::Ignored,
        }
    }

    /// Sends one message; an error means the client is gone.
    async fn send(&mut self, message: Message) -> Result<(), ClientGone> {
        self.sink.send(message).await.map_err(|err| {
            tracing::info!(error = %err, "streaming client gone");
            ClientGone
        })
    }

    /// Kubelet's greeting: an empty message on the first channel the client reads.
    async fn greet(&mut self, stdout: bool, stderr: bool) -> Result<(), ClientGone> {
        let first = match (stdout, stderr) {
            (true, _) => channel::STDOUT,
            (false, true) => channel::STDERR,
            (false, false) => channel::STATUS,
        };
        self.send(channel::frame(first, &[])).await
    }

    /// Ends the session with `status` on the status channel and a normal close.
    async fn finish(mut self, status: Option<Message>) {
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
async fn apply_input(
    io: &Endpoint,
    incoming: Incoming<'_>,
    stdin_open: &mut bool,
    close_stdin: bool,
) {
    match incoming {
        Incoming::Data {
            channel: channel::STDIN,
            data,
        } if *stdin_open => {
            if let Err(err) = io.stdin.write_all(data).await {
                tracing::info!(error = %err, "write to stdin; input closed");
                *stdin_open = false;
            }
        }
        Incoming::Data {
            channel: channel::RESIZE,
            data,
        } => match channel::resize(data) {
            Ok((width, height)) => match io.resize(width, height) {
                Ok(true) => tracing::debug!(width, height, "terminal resized"),
                Ok(false) => tracing::debug!("resize without a terminal ignored"),
                Err(err) => tracing::warn!(error = %err, "resize terminal"),
            },
            Err(message) => tracing::warn!(%message, "resize ignored"),
        },
        Incoming::Close(channel::STDIN) if *stdin_open => {
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

/// The client disconnected.
#[derive(Debug)]
struct ClientGone;
