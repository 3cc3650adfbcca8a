//! `startFdSocket`: a SOCK_SEQPACKET socket where an engine hands over descriptors for later
//! `createContainer` requests (`additionalFds`, `leakFds`), in conmon-rs's protocol.
//!
//! A request is an 8-byte little-endian header, `(request id << 32) | fd count`, with the
//! descriptors attached as SCM_RIGHTS. The answer echoes the header and gives one
//! little-endian u64 slot number per descriptor. An error answer is the header with its low 32
//! bits all set, then a UTF-8 message: the marker conmon-rs's Go client checks for (conmon-rs
//! itself sets only the low byte, so its client never shows the message). The all-zero header
//! closes the descriptors the connection passed that no container took; so does hanging up.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use socket2::SockRef;
use tokio::io::unix::AsyncFd;

use crate::attach;
use crate::error::MonitorError;
use crate::gate::Gate;
use crate::sys;

/// Descriptors one request may carry (what conmon-rs's Go client allows).
const MAX_FDS_PER_REQUEST: usize = 253;
/// Descriptors held for later requests at most: a client cannot exhaust the monitor's table.
const MAX_STORED: usize = 1024;
/// Clients of the socket at once.
const MAX_CLIENTS: usize = 16;
const ERROR_MARKER: u64 = 0xffff_ffff;

/// Descriptors handed over and not yet taken, by slot.
#[derive(Debug, Default)]
struct Store {
    /// Slot → (the connection that passed it, the descriptor).
    slots: BTreeMap<u64, (u64, OwnedFd)>,
    next_slot: u64,
}

/// The fd socket, started by the first `startFdSocket`.
#[derive(Debug)]
pub(crate) struct FdSocket {
    path: PathBuf,
    store: Rc<RefCell<Store>>,
    started: Cell<bool>,
}

impl FdSocket {
    /// The socket at `<runtime dir>/conmon-fd.sock`, not started yet.
    pub(crate) fn new(runtime_dir: &Path) -> Self {
        Self {
            path: runtime_dir.join("conmon-fd.sock"),
            store: Rc::default(),
            started: Cell::new(false),
        }
    }

    /// Starts serving the socket unless it runs already; returns its path.
    pub(crate) fn start(&self) -> Result<PathBuf, MonitorError> {
        if !self.started.get() {
            let listener =
                attach::bind_socket(&self.path).map_err(|source| MonitorError::FdSocket {
                    path: self.path.clone(),
                    source,
                })?;
            crate::tasks::spawn_local(serve(listener, self.store.clone()));
            self.started.set(true);
            tracing::info!(path = %self.path.display(), "fd socket started");
        }
        Ok(self.path.clone())
    }

    /// Takes the descriptors in `slots`: all of them, or none when a slot is empty.
    pub(crate) fn take(&self, slots: &[u64]) -> Result<Vec<OwnedFd>, MonitorError> {
        let mut store = self.store.borrow_mut();
        if let Some(missing) = slots.iter().find(|slot| !store.slots.contains_key(slot)) {
            return Err(MonitorError::InvalidRequest(format!(
                "no file descriptor in slot {missing}"
            )));
        }
        let mut unique = slots.to_vec();
        unique.sort_unstable();
        unique.dedup();
        if unique.len() != slots.len() {
            return Err(MonitorError::InvalidRequest(format!(
                "file descriptor slots {slots:?} name one slot twice"
            )));
        }
        Ok(slots
            .iter()
            .filter_map(|slot| store.slots.remove(slot).map(|(_, fd)| fd))
            .collect())
    }

    /// Stops accepting and removes the socket (at shutdown).
    pub(crate) fn remove(&self) {
        if self.started.get()
            && let Err(err) = std::fs::remove_file(&self.path)
            && err.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %err, "remove fd socket");
        }
    }
}

async fn serve(listener: AsyncFd<File>, store: Rc<RefCell<Store>>) {
    let gate = Gate::new("fd socket", MAX_CLIENTS);
    let mut next_connection = 0u64;
    loop {
        let Some((connection, permit)) = gate.admit(attach::accept(&listener).await).await else {
            continue;
        };
        next_connection += 1;
        let (id, store) = (next_connection, store.clone());
        crate::tasks::spawn_local(async move {
            match sys::async_fd(connection) {
                Ok(connection) => serve_client(&connection, id, &store).await,
                Err(err) => tracing::warn!(error = %err, "fd socket client"),
            }
            // Whatever this client passed and no container took goes with it.
            store
                .borrow_mut()
                .slots
                .retain(|_, (owner, _)| *owner != id);
            drop(permit);
        });
    }
}

async fn serve_client(connection: &AsyncFd<File>, id: u64, store: &RefCell<Store>) {
    // One byte more than a request, to tell a longer message apart.
    let mut data = [0u8; 9];
    loop {
        let received = loop {
            let Ok(mut ready) = connection.readable().await else {
                return;
            };
            match sys::recv_with_fds(
                connection.get_ref().as_fd(),
                &mut data,
                MAX_FDS_PER_REQUEST + 1,
            ) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => ready.clear_ready(),
                other => break other,
            }
        };
        let received = match received {
            Ok(received) if received.len == 0 && received.fds.is_empty() => return,
            Ok(received) => received,
            Err(err) => {
                tracing::debug!(error = %err, "fd socket client");
                return;
            }
        };
        let Some(answer) = answer(id, store, &data, received) else {
            continue;
        };
        if let Err(err) = send(connection, &answer).await {
            tracing::debug!(error = %err, "fd socket client left");
            return;
        }
    }
}

/// The answer to one request; `None` for the close request, which has none.
fn answer(
    connection: u64,
    store: &RefCell<Store>,
    data: &[u8],
    received: sys::Received,
) -> Option<Vec<u8>> {
    let header = data
        .get(..8)
        .filter(|_| received.len >= 8)
        .map_or(0, |h| u64::from_le_bytes(h.try_into().unwrap_or_default()));
    let error = |message: String| {
        let mut answer = ((header & !ERROR_MARKER) | ERROR_MARKER)
            .to_le_bytes()
            .to_vec();
        answer.extend_from_slice(message.as_bytes());
        tracing::warn!(error = %message, "fd socket request refused");
        Some(answer)
    };
    if received.len != 8 || received.truncated {
        return error(format!(
            "a request is 8 bytes, this one was {}",
            if received.truncated {
                "longer".to_owned()
            } else {
                received.len.to_string()
            }
        ));
    }
    let expected = header & ERROR_MARKER;
    if header == 0 && received.fds.is_empty() {
        store
            .borrow_mut()
            .slots
            .retain(|_, (owner, _)| *owner != connection);
        return None;
    }
    if received.fds_truncated || received.fds.len() > MAX_FDS_PER_REQUEST {
        return error(format!(
            "more than {MAX_FDS_PER_REQUEST} fds in one request"
        ));
    }
    if u64::try_from(received.fds.len()).ok() != Some(expected) {
        return error(format!(
            "received {} fds, but expected {expected} fds",
            received.fds.len()
        ));
    }
    let mut store = store.borrow_mut();
    if store.slots.len() + received.fds.len() > MAX_STORED {
        return error(format!(
            "the monitor holds {} passed fds already, at most {MAX_STORED}",
            store.slots.len()
        ));
    }
    let mut answer = header.to_le_bytes().to_vec();
    for fd in received.fds {
        let slot = store.free_slot();
        store.slots.insert(slot, (connection, fd));
        answer.extend_from_slice(&slot.to_le_bytes());
    }
    Some(answer)
}

impl Store {
    /// The next slot number not in use, counting up from 1.
    fn free_slot(&mut self) -> u64 {
        loop {
            self.next_slot = self.next_slot.checked_add(1).unwrap_or(1);
            if !self.slots.contains_key(&self.next_slot) {
                return self.next_slot;
            }
        }
    }
}

async fn send(connection: &AsyncFd<File>, packet: &[u8]) -> io::Result<()> {
    loop {
        let mut ready = connection.writable().await?;
        match SockRef::from(connection.get_ref()).send(packet) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => ready.clear_ready(),
            other => return other.map(drop),
        }
    }
}

#[cfg(test)]
#[path = "fd_socket_tests.rs"]
mod tests;
