//! `createNamespaces`: the pod's namespaces, created by a short-lived holder process and pinned
//! by bind mounts at `<base>/<name>ns/<pod ID>` (pinns' job, conmon-rs's layout), until the
//! monitor shuts down.
//!
//! Only the requested namespaces are created. The answer lists all five, as conmon-rs's does
//! and its clients expect: a namespace that was not requested is the monitor's own (the
//! host's), pinned at its path so that joining every answered path means the same as not
//! asking. A user namespace comes first and gets its ID maps before the others are created
//! inside it.

mod pin;
mod plan;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use conmon_proto::types::{CreateNamespaces, Namespace};
use tokio::net::UnixDatagram;

use self::pin::Pinned;
use self::plan::{Plan, name};
use crate::reaper::Reaper;
use crate::sys::{self, HolderMessage, HolderPlan, HolderStep};

/// How long the holder may take to create the namespaces and to exit.
const HOLDER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why namespaces could not be created.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    /// conmon-rs's wording.
    #[error("no pod ID provided")]
    NoPodId,
    /// The pod ID would not be a plain file name.
    #[error("pod ID '{0}' must be one path component of letters, digits and _+-.")]
    PodId(String),
    /// The base path is relative (or empty).
    #[error("base path '{}' is not absolute", .0.display())]
    BasePath(PathBuf),
    /// A user namespace was asked for without mappings (conmon-rs's wording).
    #[error("{0} ID mappings are empty")]
    NoMappings(&'static str),
    /// Mappings were sent without a user namespace to apply them to.
    #[error("ID mappings were given, but no user namespace was requested")]
    MappingsWithoutUserNamespace,
    /// A mapping is not three numbers with a non-zero count.
    #[error("{kind} ID mapping '{mapping}' is not '<inside> <outside> <count>'")]
    Mapping {
        /// user or group.
        kind: &'static str,
        /// As sent.
        mapping: String,
    },
    /// A sysctl that cannot be set here.
    #[error("sysctl '{key}' {problem}")]
    Sysctl {
        /// The key.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The pod's namespaces are pinned already, differently.
    #[error("namespaces of pod '{0}' are already pinned, with other settings")]
    AlreadyPinned(String),
    /// Another request for the pod is still running.
    #[error("namespaces of pod '{0}' are being created by another request")]
    InProgress(String),
    /// A pin file could not be created.
    #[error("create {}", path.display())]
    Target {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The holder could not be started or talked to.
    #[error("namespace holder: {step}")]
    Holder {
        /// What was being done.
        step: String,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// A step of the holder failed.
    #[error("{step}")]
    Step {
        /// The step, naming its namespace or sysctl.
        step: String,
        /// The system call's error.
        #[source]
        source: io::Error,
    },
    /// A namespace could not be bind-mounted.
    #[error("bind-mount the {namespace} namespace ({source}) on {}", path.display())]
    Mount {
        /// Which.
        namespace: &'static str,
        /// The namespace file.
        source: String,
        /// The pin.
        path: PathBuf,
        /// Why.
        #[source]
        error: io::Error,
    },
}

/// The pods' pinned namespaces.
#[derive(Debug)]
pub(crate) struct PodNamespaces {
    reaper: Rc<Reaper>,
    /// By pod ID; `None` while a request creates them.
    pods: RefCell<BTreeMap<String, Option<(Plan, Pinned)>>>,
}

impl PodNamespaces {
    pub(crate) fn new(reaper: Rc<Reaper>) -> Self {
        Self {
            reaper,
            pods: RefCell::default(),
        }
    }

    /// Creates and pins the requested namespaces; returns all five with their paths, in
    /// conmon-rs's order. The same request again returns the same paths.
    pub(crate) async fn create(
        &self,
        request: CreateNamespaces,
    ) -> Result<Vec<(Namespace, PathBuf)>, NamespaceError> {
        let plan = Plan::new(request)?;
        let pod_id = plan.pod_id.clone();
        match self.pods.borrow_mut().entry(pod_id.clone()) {
            std::collections::btree_map::Entry::Occupied(entry) => {
                return match entry.get() {
                    Some((pinned_plan, pinned)) if *pinned_plan == plan => Ok(pinned.paths.clone()),
                    Some(_) => Err(NamespaceError::AlreadyPinned(pod_id)),
                    None => Err(NamespaceError::InProgress(pod_id)),
                };
            }
            std::collections::btree_map::Entry::Vacant(entry) => {
                entry.insert(None);
            }
        }
        let created = self.pin(&plan).await;
        let mut pods = self.pods.borrow_mut();
        match created {
            Ok(pinned) => {
                let paths = pinned.paths.clone();
                tracing::info!(pod = %pod_id, created = ?plan.create, "namespaces pinned");
                pods.insert(pod_id, Some((plan, pinned)));
                Ok(paths)
            }
            Err(err) => {
                pods.remove(&pod_id);
                Err(err)
            }
        }
    }

    async fn pin(&self, plan: &Plan) -> Result<Pinned, NamespaceError> {
        let targets = pin::create_targets(plan)?;
        let (holder, init) = match self.start_holder(plan).await {
            Ok(started) => started,
            Err(err) => {
                pin::discard(targets);
                return Err(err);
            }
        };
        let init_pid = init.as_ref().map(|init| init.pid);
        let pinned = pin::mount(plan, targets, holder.pid, init_pid);
        let channel = holder.finish().await;
        match (pinned, init) {
            (Ok(mut pinned), Some(mut init)) => {
                // The init ends when this end closes: keep it for the pod's life.
                init.channel = channel;
                pinned.init = Some(init);
                Ok(pinned)
            }
            (Ok(pinned), None) => Ok(pinned),
            (Err(err), init) => {
                if let Some(init) = init {
                    init.stop();
                }
                Err(err)
            }
        }
    }

    /// Starts the holder and waits until it has created every namespace; with a new PID
    /// namespace, also returns its init.
    async fn start_holder(&self, plan: &Plan) -> Result<(Holder, Option<PodInit>), NamespaceError> {
        let holder_error = |step: &str| {
            let step = step.to_owned();
            move |source| NamespaceError::Holder { step, source }
        };
        let (ours, theirs) = sys::seqpacket_pair().map_err(holder_error("socket pair"))?;
        let flags: Vec<libc::c_int> = unshared(plan).map(|(_, flag)| flag).collect();
        let sysctls = plan.sysctl_files();
        let holder_plan = HolderPlan {
            user: plan.create.contains(&Namespace::User),
            namespaces: &flags,
            sysctls: &sysctls,
        };
        let pid =
            sys::spawn_namespace_holder(&holder_plan, &theirs).map_err(holder_error("fork"))?;
        drop(theirs);
        let holder = Holder {
            pid,
            exit: Some(self.reaper.watch(pid)),
            channel: Some(channel(ours).map_err(holder_error("register socket"))?),
        };
        let ready = tokio::time::timeout(HOLDER_TIMEOUT, holder.until_ready(plan));
        match ready.await {
            Ok(Ok(init)) => {
                let init = init.map(|pid| PodInit {
                    pid,
                    exit: Some(self.reaper.watch(pid)),
                    channel: None,
                });
                Ok((holder, init))
            }
            Ok(Err(err)) => {
                holder.kill().await;
                Err(err)
            }
            Err(_) => {
                holder.kill().await;
                Err(NamespaceError::Holder {
                    step: "create the namespaces".into(),
                    source: io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no answer within {HOLDER_TIMEOUT:?}"),
                    ),
                })
            }
        }
    }

    /// Unpins every pod's namespaces (at shutdown).
    pub(crate) fn release_all(&self) {
        for (pod_id, pinned) in std::mem::take(&mut *self.pods.borrow_mut()) {
            if let Some((_, mut pinned)) = pinned {
                pinned.release();
                tracing::info!(pod = %pod_id, "namespaces unpinned");
            }
        }
    }
}

/// The namespaces the holder unshares one by one after the user namespace, with their flags,
/// in the order the holder reports failures by.
fn unshared(plan: &Plan) -> impl Iterator<Item = (Namespace, libc::c_int)> + '_ {
    plan.create.iter().filter_map(|namespace| {
        let flag = match namespace {
            Namespace::Ipc => libc::CLONE_NEWIPC,
            Namespace::Net => libc::CLONE_NEWNET,
            Namespace::Pid => libc::CLONE_NEWPID,
            Namespace::Uts => libc::CLONE_NEWUTS,
            // Created first, on its own.
            Namespace::User => return None,
        };
        Some((*namespace, flag))
    })
}

fn channel(fd: OwnedFd) -> io::Result<UnixDatagram> {
    // recv and send on a SOCK_SEQPACKET socket behave as on a datagram socket.
    let socket = std::os::unix::net::UnixDatagram::from(fd);
    socket.set_nonblocking(true)?;
    UnixDatagram::from_std(socket)
}

/// The running holder.
struct Holder {
    pid: u32,
    exit: Option<tokio::sync::oneshot::Receiver<crate::reaper::ExitStatus>>,
    channel: Option<UnixDatagram>,
}

impl Holder {
    /// Waits for the holder's [`HolderMessage::Ready`]; returns the init's PID if any.
    async fn until_ready(&self, plan: &Plan) -> Result<Option<u32>, NamespaceError> {
        let Some(channel) = &self.channel else {
            return Ok(None);
        };
        let io_error = |step: &'static str| {
            move |source| NamespaceError::Holder {
                step: step.into(),
                source,
            }
        };
        let mut record = [0u8; sys::RECORD_LEN + 1];
        loop {
            let len = channel
                .recv(&mut record)
                .await
                .map_err(io_error("read its answer"))?;
            if len == 0 {
                return Err(NamespaceError::Holder {
                    step: "wait for the namespaces".into(),
                    source: io::Error::new(io::ErrorKind::UnexpectedEof, "it exited"),
                });
            }
            match HolderMessage::parse(&record[..len]) {
                Some(HolderMessage::Ready { init }) => return Ok(init),
                Some(HolderMessage::UserNamespaceReady) => {
                    self.write_id_maps(plan)?;
                    channel.send(&[1]).await.map_err(io_error("resume it"))?;
                }
                Some(HolderMessage::Failed { step, index, errno }) => {
                    return Err(NamespaceError::Step {
                        step: describe(plan, step, index),
                        source: io::Error::from_raw_os_error(errno),
                    });
                }
                None => {
                    return Err(NamespaceError::Holder {
                        step: "read its answer".into(),
                        source: io::Error::new(io::ErrorKind::InvalidData, "malformed record"),
                    });
                }
            }
        }
    }

    /// Writes the user namespace's ID maps (gid first, as runc does).
    fn write_id_maps(&self, plan: &Plan) -> Result<(), NamespaceError> {
        for (file, map) in [("gid_map", &plan.gid_map), ("uid_map", &plan.uid_map)] {
            let path = format!("/proc/{}/{file}", self.pid);
            std::fs::write(&path, map).map_err(|source| NamespaceError::Step {
                step: format!("write {file} of the user namespace"),
                source,
            })?;
        }
        Ok(())
    }

    /// Lets the holder exit (the mounts keep the namespaces) and reaps it; returns the
    /// channel, which a PID namespace's init watches.
    async fn finish(mut self) -> Option<UnixDatagram> {
        let channel = self.channel.take();
        if let Some(channel) = &channel
            && let Err(err) = channel.send(&[1]).await
        {
            tracing::warn!(pid = self.pid, error = %err, "release namespace holder");
        }
        self.reap().await;
        channel
    }

    async fn kill(mut self) {
        self.channel = None;
        if let Err(err) = sys::kill(self.pid, libc::SIGKILL) {
            tracing::warn!(pid = self.pid, error = %err, "kill namespace holder");
        }
        self.reap().await;
    }

    async fn reap(&mut self) {
        let Some(exit) = self.exit.take() else {
            return;
        };
        match tokio::time::timeout(HOLDER_TIMEOUT, exit).await {
            Ok(Ok(status)) if status.code() == 0 => {}
            Ok(Ok(status)) => {
                tracing::debug!(
                    pid = self.pid,
                    code = status.code(),
                    "namespace holder ended"
                );
            }
            Ok(Err(_)) | Err(_) => {
                tracing::warn!(pid = self.pid, "namespace holder was not reaped");
            }
        }
    }
}

/// PID 1 of a pod's new PID namespace, which lives as long as the namespace must.
#[derive(Debug)]
pub(super) struct PodInit {
    pid: u32,
    /// Dropped unread: the reaper then forgets the status.
    exit: Option<tokio::sync::oneshot::Receiver<crate::reaper::ExitStatus>>,
    /// The init exits when this closes, also when the monitor dies.
    channel: Option<UnixDatagram>,
}

impl PodInit {
    /// Ends the init, and with it every process left in its namespace.
    pub(super) fn stop(self) {
        if let Err(err) = sys::kill(self.pid, libc::SIGKILL) {
            tracing::warn!(pid = self.pid, error = %err, "stop the pod's PID namespace init");
        }
        drop(self.exit);
    }
}

fn describe(plan: &Plan, step: HolderStep, index: u8) -> String {
    let index = usize::from(index);
    match step {
        HolderStep::UnshareUser => "create the user namespace".into(),
        HolderStep::AwaitMaps => "wait for the user namespace's ID maps".into(),
        HolderStep::StartInit => "start the pid namespace's init".into(),
        HolderStep::Unshare => {
            let namespace = unshared(plan)
                .nth(index)
                .map_or("?", |(namespace, _)| name(namespace));
            format!("create the {namespace} namespace")
        }
        HolderStep::Sysctl => {
            let (key, value) = plan
                .sysctls
                .iter()
                .nth(index)
                .map_or(("?", "?"), |(k, v)| (k.as_str(), v.as_str()));
            format!("set sysctl {key}={value}")
        }
    }
}
