//! The registry of containers: an ID is reserved while `runtime create` runs, then holds the
//! created container with the exec sessions that can be attached to, until its exit has been
//! recorded. The container is then retired: its logs, pipes, terminal and sessions are released
//! and only its exit code is kept, for the errors of later requests about it, for at most
//! [`EXITED_KEPT`] exited containers (the oldest are forgotten first).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use tokio::sync::watch;

use crate::error::MonitorError;
use crate::io_hub::ProcessIo;
use crate::logs::LogSet;

/// How many exited containers are remembered (by ID and exit code, a few dozen bytes each).
pub(super) const EXITED_KEPT: usize = 1024;

/// The containers of one monitor, by ID.
#[derive(Debug, Default)]
pub(super) struct Registry {
    containers: RefCell<HashMap<String, Slot>>,
    /// IDs of retired containers, oldest first.
    retired: RefCell<VecDeque<String>>,
}

#[derive(Debug)]
enum Slot {
    /// `runtime create` is in progress for this ID.
    Creating,
    Created(Rc<Container>),
    /// The container exited with this code and was retired.
    Exited(i32),
}

/// A container created by this monitor.
#[derive(Debug)]
pub(crate) struct Container {
    pub(crate) id: String,
    pub(crate) pid: u32,
    pub(super) logs: Rc<RefCell<LogSet>>,
    /// `Some(code)` once the container exited and its exit files were written.
    pub(super) exited: watch::Receiver<Option<i32>>,
    /// The container's stdio, for attach clients.
    pub(crate) io: Rc<ProcessIo>,
    /// Running exec sessions (streaming execs), by session ID: they can be attached to.
    exec_sessions: RefCell<HashMap<String, Rc<ProcessIo>>>,
}

impl Container {
    /// A container whose exit is announced on `exited`.
    pub(super) fn new(
        id: String,
        pid: u32,
        logs: Rc<RefCell<LogSet>>,
        exited: watch::Receiver<Option<i32>>,
        io: Rc<ProcessIo>,
    ) -> Self {
        Self {
            id,
            pid,
            logs,
            exited,
            io,
            exec_sessions: RefCell::default(),
        }
    }

    pub(crate) fn exit_code(&self) -> Option<i32> {
        *self.exited.borrow()
    }

    /// Makes an exec session's stdio attachable under `session_id` until it is removed.
    pub(crate) fn add_exec_session(&self, session_id: &str, io: Rc<ProcessIo>) {
        self.exec_sessions
            .borrow_mut()
            .insert(session_id.to_owned(), io);
    }

    pub(crate) fn remove_exec_session(&self, session_id: &str) {
        self.exec_sessions.borrow_mut().remove(session_id);
    }

    /// The stdio of exec session `session_id`, while it runs.
    pub(super) fn exec_session(&self, session_id: &str) -> Option<Rc<ProcessIo>> {
        self.exec_sessions.borrow().get(session_id).cloned()
    }
}

impl Slot {
    fn holds(&self, container: &Rc<Container>) -> bool {
        matches!(self, Self::Created(held) if Rc::ptr_eq(held, container))
    }
}

/// An ID reserved for a container being created; released unless [`Reservation::fill`]ed.
#[derive(Debug)]
pub(super) struct Reservation<'a> {
    registry: &'a Registry,
    id: &'a str,
    done: bool,
}

impl Reservation<'_> {
    /// Registers the created container under the reserved ID.
    pub(super) fn fill(mut self, container: Rc<Container>) {
        self.registry
            .containers
            .borrow_mut()
            .insert(self.id.to_owned(), Slot::Created(container));
        self.done = true;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.registry.containers.borrow_mut().remove(self.id);
        }
    }
}

impl Registry {
    /// Reserves `id` for a container about to be created.
    pub(super) fn reserve<'a>(&'a self, id: &'a str) -> Result<Reservation<'a>, MonitorError> {
        let mut containers = self.containers.borrow_mut();
        match containers.get(id) {
            Some(Slot::Creating) => return Err(MonitorError::ContainerExists(id.to_owned())),
            Some(Slot::Created(container)) if container.exit_code().is_none() => {
                return Err(MonitorError::ContainerExists(id.to_owned()));
            }
            // An exited container's ID may be reused; the runtime decides whether that works.
            Some(Slot::Exited(_)) => self.retired.borrow_mut().retain(|retired| retired != id),
            _ => {}
        }
        containers.insert(id.to_owned(), Slot::Creating);
        Ok(Reservation {
            registry: self,
            id,
            done: false,
        })
    }

    /// The container registered under `id`; a retired one is an error with its exit code.
    pub(super) fn get(&self, id: &str) -> Result<Rc<Container>, MonitorError> {
        match self.containers.borrow().get(id) {
            Some(Slot::Created(container)) => Ok(container.clone()),
            Some(&Slot::Exited(exit_code)) => Err(MonitorError::ContainerExited {
                id: id.to_owned(),
                exit_code,
            }),
            Some(Slot::Creating) | None => Err(MonitorError::UnknownContainer(id.to_owned())),
        }
    }

    /// Replaces `container`, whose exit has been recorded, by its exit code: the registry no
    /// longer holds its resources. Beyond [`EXITED_KEPT`] retired containers, the oldest is
    /// forgotten.
    pub(super) fn retire(&self, container: &Rc<Container>) {
        let Some(exit_code) = container.exit_code() else {
            return;
        };
        let mut containers = self.containers.borrow_mut();
        match containers.get_mut(&container.id) {
            Some(slot @ Slot::Created(_)) if slot.holds(container) => {
                *slot = Slot::Exited(exit_code);
            }
            _ => return,
        }
        let mut retired = self.retired.borrow_mut();
        retired.push_back(container.id.clone());
        while retired.len() > EXITED_KEPT {
            if let Some(oldest) = retired.pop_front() {
                containers.remove(&oldest);
            }
        }
    }

    /// IDs of retired containers, oldest first.
    pub(super) fn retired(&self) -> Vec<String> {
        self.retired.borrow().iter().cloned().collect()
    }

    /// Every created container not yet retired.
    pub(super) fn created(&self) -> Vec<Rc<Container>> {
        self.containers
            .borrow()
            .values()
            .filter_map(|slot| match slot {
                Slot::Created(container) => Some(container.clone()),
                Slot::Creating | Slot::Exited(_) => None,
            })
            .collect()
    }

    /// Counts for diagnostics: running containers, and their exec sessions.
    pub(super) fn counts(&self) -> (usize, usize) {
        let running = self.created();
        let running = running.iter().filter(|c| c.exit_code().is_none());
        running.fold((0, 0), |(containers, sessions), container| {
            (
                containers + 1,
                sessions + container.exec_sessions.borrow().len(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(id: &str, exited: watch::Receiver<Option<i32>>) -> Rc<Container> {
        let logs = LogSet::open(id, None, &[]).expect("no drivers to open");
        let io = Rc::new(ProcessIo::new(None, None));
        Rc::new(Container::new(
            id.into(),
            1,
            Rc::new(RefCell::new(logs)),
            exited,
            io,
        ))
    }

    #[test]
    fn an_id_is_taken_while_creating_and_running_and_free_once_exited() {
        let registry = Registry::default();
        let reservation = registry.reserve("c").unwrap();
        assert!(matches!(
            registry.reserve("c"),
            Err(MonitorError::ContainerExists(_))
        ));
        assert!(matches!(
            registry.get("c"),
            Err(MonitorError::UnknownContainer(_))
        ));
        let (exited_tx, exited) = watch::channel(None);
        reservation.fill(container("c", exited));
        assert!(matches!(
            registry.reserve("c"),
            Err(MonitorError::ContainerExists(_))
        ));
        assert_eq!(registry.counts(), (1, 0));
        exited_tx.send_replace(Some(0));
        assert_eq!(registry.counts(), (0, 0));
        assert!(registry.reserve("c").is_ok());
    }

    #[test]
    fn a_retired_container_is_released_and_remembered_by_its_exit_code() {
        let registry = Registry::default();
        let (exited_tx, exited) = watch::channel(None);
        let created = container("c", exited);
        registry.reserve("c").unwrap().fill(created.clone());
        // Not exited yet: nothing to retire.
        registry.retire(&created);
        assert!(registry.get("c").is_ok());
        exited_tx.send_replace(Some(3));
        registry.retire(&created);
        assert_eq!(Rc::strong_count(&created), 1, "the registry still holds it");
        assert!(matches!(
            registry.get("c"),
            Err(MonitorError::ContainerExited { exit_code: 3, .. })
        ));
        assert_eq!(registry.retired(), ["c"]);
        // The ID can be used again, and is then no longer counted as retired.
        drop(registry.reserve("c").unwrap());
        assert!(registry.retired().is_empty());
    }

    #[test]
    fn only_the_newest_retired_containers_are_remembered() {
        let registry = Registry::default();
        for n in 0..=EXITED_KEPT {
            let id = format!("c{n}");
            let (_exited_tx, exited) = watch::channel(Some(0));
            let created = container(&id, exited);
            registry.reserve(&id).unwrap().fill(created.clone());
            registry.retire(&created);
        }
        assert!(matches!(
            registry.get("c0"),
            Err(MonitorError::UnknownContainer(_))
        ));
        assert!(matches!(
            registry.get("c1"),
            Err(MonitorError::ContainerExited { .. })
        ));
        assert_eq!(registry.retired().len(), EXITED_KEPT);
    }

    #[test]
    fn a_failed_create_releases_its_id() {
        let registry = Registry::default();
        drop(registry.reserve("c").unwrap());
        assert!(registry.reserve("c").is_ok());
    }
}
