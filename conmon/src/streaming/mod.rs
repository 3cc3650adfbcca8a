//! The Kubernetes streaming server behind `serveExecContainer`, `serveAttachContainer` and
//! `servePortForwardContainer`.
//!
//! Each RPC stores a session ([`registry`](self::registry)) and returns a one-shot URL on a
//! loopback HTTP server ([`server`](self::server)), started with the first session:
//! `http://127.0.0.1:PORT/{exec,attach,port-forward}/TOKEN`. Opening the URL with a websocket
//! upgrade (`v5.channel.k8s.io` or `v4.channel.k8s.io`, see [`protocol`](self::protocol))
//! consumes the session and runs it; a URL not opened within the time to live expires. Each
//! session runs in a span that is a child of the RPC that created it.

mod attach;
mod channel;
mod exec;
mod http;
mod port_forward;
mod protocol;
mod query;
mod registry;
mod server;
mod spdy;

/// For the `spdy_session` fuzz target.
#[cfg(fuzzing)]
pub(crate) use spdy::session as spdy_session;

use std::os::fd::AsFd as _;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use self::registry::{Registry, Session};
use self::server::Server;
use crate::caller_path;
use crate::error::MonitorError;
use crate::monitor::Monitor;
use crate::sys;
use crate::validate;
pub use conmon_proto::types::{ServeAttach, ServeExec};

/// The streaming server and its sessions.
#[derive(Debug)]
pub struct Streaming {
    monitor: Rc<Monitor>,
    server: Rc<Server>,
}

impl Streaming {
    /// A server for `monitor`'s containers whose URLs are valid for `ttl`; it listens once the
    /// first session is requested.
    pub fn new(monitor: Rc<Monitor>, ttl: Duration) -> Rc<Self> {
        let server = Server::new(monitor.clone(), Registry::new(ttl));
        Rc::new(Self { monitor, server })
    }

    /// A URL that runs `request.command` in the container when opened.
    pub fn serve_exec(&self, request: ServeExec) -> Result<String, MonitorError> {
        validate::command(&request.command)?;
        self.monitor.running_container(&request.id)?;
        self.register(Session::Exec(request))
    }

    /// A URL that attaches to the container's stdio when opened.
    pub fn serve_attach(&self, request: ServeAttach) -> Result<String, MonitorError> {
        self.monitor.running_container(&request.id)?;
        self.register(Session::Attach(request))
    }

    /// A URL that forwards TCP ports inside the network namespace at `path` when opened.
    pub fn serve_port_forward(&self, path: PathBuf) -> Result<String, MonitorError> {
        if path.as_os_str().is_empty() {
            return Err(MonitorError::InvalidRequest(
                "network namespace path is empty".into(),
            ));
        }
        let error = |source| MonitorError::NetworkNamespace {
            path: path.clone(),
            source,
        };
        let namespace = caller_path::open_regular_following(&path).map_err(error)?;
        if !sys::is_network_namespace(namespace.as_fd()).map_err(error)? {
            return Err(error(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "is not a network namespace",
            )));
        }
        self.register(Session::PortForward { namespace, path })
    }

    /// Counts for diagnostics: sessions waiting for their URL, and sessions being served.
    pub fn session_counts(&self) -> (usize, usize) {
        (self.server.sessions.len(), self.server.active())
    }

    fn register(&self, session: Session) -> Result<String, MonitorError> {
        let address = self.server.listen()?;
        let path = self.server.sessions.insert(session)?;
        Ok(format!("http://{address}{path}"))
    }
}
