//! Sessions waiting for their URL to be opened: each is stored under a random token, taken
//! (once) by the connection that opens its URL, and dropped unopened when its time to live ends.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use opentelemetry::trace::SpanContext;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::http::{Kind, Rejection};
use crate::error::MonitorError;
use conmon_proto::types::{ServeAttach, ServeExec};
use conmon_telemetry::{ids, propagation};

/// Sessions waiting for their URL to be opened, at most.
const MAX_PENDING: usize = 1024;

/// What a URL runs when it is opened.
#[derive(Debug)]
pub(super) enum Session {
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

    /// The container the session is about; empty for port-forward.
    pub(super) fn container_id(&self) -> &str {
        match self {
            Self::Exec(request) => &request.id,
            Self::Attach(request) => &request.id,
            Self::PortForward { .. } => "",
        }
    }
}

/// A session waiting for its URL to be opened.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) session: Session,
    expires: Instant,
    /// The RPC span that created the session.
    pub(super) origin: SpanContext,
    /// Dropped with the session: ends its expiry timer.
    _taken: oneshot::Sender<()>,
}

/// The sessions waiting for their URL, by token.
#[derive(Debug)]
pub(super) struct Registry {
    /// How long a URL stays valid.
    ttl: Duration,
    pending: RefCell<HashMap<String, Pending>>,
}

impl Registry {
    pub(super) fn new(ttl: Duration) -> Rc<Self> {
        Rc::new(Self {
            ttl,
            pending: RefCell::default(),
        })
    }

    /// Sessions waiting for their URL.
    pub(super) fn len(&self) -> usize {
        self.pending.borrow().len()
    }

    /// Stores `session`, a child of the current span, under a fresh token; returns the URL path
    /// (`/KIND/TOKEN`). Unless taken first, the session is dropped once its time to live ends.
    pub(super) fn insert(self: &Rc<Self>, session: Session) -> Result<String, MonitorError> {
        let mut pending = self.pending.borrow_mut();
        if pending.len() >= MAX_PENDING {
            return Err(MonitorError::TooManyStreams(MAX_PENDING));
        }
        let token = ids::uuid_v4().map_err(MonitorError::Streaming)?;
        let path = format!("/{}/{token}", session.kind().path());
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
        let registry = Rc::downgrade(self);
        crate::tasks::spawn_local(async move {
            tokio::select! {
                () = tokio::time::sleep_until(expires) => {}
                _ = &mut not_taken => return,
            }
            if let Some(registry) = registry.upgrade()
                && registry.pending.borrow_mut().remove(&token).is_some()
            {
                tracing::debug!(session_id = %token, "streaming session expired unopened");
            }
        });
        Ok(path)
    }

    /// Takes the `kind` session stored under `token`: a URL works once, and only before it
    /// expired.
    pub(super) fn take(&self, kind: Kind, token: &str) -> Result<Pending, Rejection> {
        let mut sessions = self.pending.borrow_mut();
        let unknown = || {
            Rejection::new(
                404,
                format!(
                    "no {} session '{token}': it was never issued, was used already, or expired",
                    kind.path(),
                ),
            )
        };
        let pending = sessions.remove(token).ok_or_else(unknown)?;
        if pending.session.kind() != kind {
            sessions.insert(token.to_owned(), pending);
            return Err(unknown());
        }
        if pending.expires <= Instant::now() {
            return Err(Rejection::new(
                404,
                format!(
                    "{} session '{token}' expired: URLs must be opened within {} ms",
                    kind.path(),
                    self.ttl.as_millis()
                ),
            ));
        }
        Ok(pending)
    }
}

#[cfg(test)]
mod tests {
    use tokio::task::LocalSet;

    use super::*;
    use conmon_proto::types::CgroupManager;

    const TTL: Duration = Duration::from_secs(60);

    fn exec_session() -> Session {
        Session::Exec(ServeExec {
            id: "c".into(),
            command: vec!["sh".into()],
            tty: false,
            stdin: true,
            stdout: true,
            stderr: true,
            cgroup_manager: CgroupManager::Cgroupfs,
        })
    }

    /// A registry holding one exec session, and the session's URL path.
    fn with_exec_session() -> (Rc<Registry>, String) {
        let registry = Registry::new(TTL);
        let path = registry.insert(exec_session()).unwrap();
        (registry, path)
    }

    fn token(path: &str) -> &str {
        path.rsplit('/').next().unwrap_or_default()
    }

    #[tokio::test(start_paused = true)]
    async fn unopened_session_is_dropped_at_its_ttl() {
        LocalSet::new()
            .run_until(async {
                let (registry, path) = with_exec_session();
                assert!(path.starts_with("/exec/"));
                tokio::time::sleep(TTL - Duration::from_millis(1)).await;
                assert_eq!(registry.len(), 1);
                tokio::time::sleep(Duration::from_millis(1)).await;
                tokio::task::yield_now().await;
                assert_eq!(registry.len(), 0);
                let err = registry.take(Kind::Exec, token(&path)).unwrap_err();
                assert_eq!(err.status, 404);
                assert!(err.message.contains("never issued"), "{}", err.message);
            })
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_url_works_once_and_for_its_own_kind_only() {
        let local = LocalSet::new();
        let _entered = local.enter();
        let (registry, path) = with_exec_session();
        let wrong_kind = registry.take(Kind::Attach, token(&path)).unwrap_err();
        assert!(wrong_kind.message.starts_with("no attach session"));
        let pending = registry.take(Kind::Exec, token(&path)).unwrap();
        assert_eq!(pending.session.container_id(), "c");
        let used = registry.take(Kind::Exec, token(&path)).unwrap_err();
        assert_eq!(used.status, 404);
        assert!(used.message.contains("used already"), "{}", used.message);
    }

    #[tokio::test(start_paused = true)]
    async fn a_url_opened_past_its_ttl_says_it_expired() {
        let local = LocalSet::new();
        // The expiry task is spawned but never run: the URL is opened before it would be.
        let _entered = local.enter();
        let (registry, path) = with_exec_session();
        tokio::time::advance(TTL).await;
        let err = registry.take(Kind::Exec, token(&path)).unwrap_err();
        assert_eq!(err.status, 404);
        assert_eq!(
            err.message,
            format!(
                "exec session '{}' expired: URLs must be opened within 60000 ms",
                token(&path)
            )
        );
    }
}
