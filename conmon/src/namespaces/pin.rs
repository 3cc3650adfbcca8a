//! The filesystem side of pinning: the files the namespaces are bind-mounted on, the mounts,
//! and their removal. Blocking: run on the blocking pool, since the base path is the caller's.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use conmon_proto::types::Namespace;

use super::NamespaceError;
use super::plan::{ANSWER_ORDER, Plan, name};
use crate::sys;

/// A file created for a namespace to be mounted on.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) namespace: Namespace,
    pub(super) path: PathBuf,
    file: File,
}

/// Pinned namespaces, unpinned by [`Pinned::release`].
#[derive(Debug, Default)]
pub(super) struct Pinned {
    /// Every namespace in answer order, with its path.
    pub(super) paths: Vec<(Namespace, PathBuf)>,
    mounted: Vec<PathBuf>,
    created: Vec<PathBuf>,
    /// A new PID namespace's init.
    pub(super) init: Option<super::PodInit>,
}

/// Creates `<base>/<name>ns/<pod ID>` for each namespace. Nothing is left behind on failure.
pub(super) fn create_targets(plan: &Plan) -> Result<Vec<Target>, NamespaceError> {
    let mut targets = Vec::new();
    for namespace in ANSWER_ORDER {
        let path = plan.path(namespace);
        match create_target(&path) {
            Ok(file) => targets.push(Target {
                namespace,
                path,
                file,
            }),
            Err(source) => {
                remove_files(targets.iter().map(|t| t.path.as_path()));
                return Err(NamespaceError::Target { path, source });
            }
        }
    }
    Ok(targets)
}

fn create_target(path: &Path) -> io::Result<File> {
    let dir = path.parent().unwrap_or(path);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)?;
    // The directory is ours to create the file in: a symbolic link there could point anywhere.
    if !std::fs::symlink_metadata(dir)?.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    // A new file, never one that exists (a symbolic link, or another pod's pin).
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Bind-mounts each namespace on its target: the holder's (`holder` is its PID) for those it
/// created (a new PID namespace: its `init`'s), the monitor's own for the others. On failure,
/// nothing stays mounted or created.
pub(super) fn mount(
    plan: &Plan,
    targets: Vec<Target>,
    holder: u32,
    init: Option<u32>,
) -> Result<Pinned, NamespaceError> {
    let mut pinned = Pinned {
        paths: targets
            .iter()
            .map(|t| (t.namespace, t.path.clone()))
            .collect(),
        mounted: Vec::new(),
        created: targets.iter().map(|t| t.path.clone()).collect(),
        init: None,
    };
    for target in &targets {
        let source = source(plan, target.namespace, holder, init);
        let mounted = CString::new(source.clone())
            .map_err(io::Error::other)
            .and_then(|source| sys::bind_mount(&source, target.file.as_fd()));
        if let Err(source_err) = mounted {
            pinned.release();
            return Err(NamespaceError::Mount {
                namespace: name(target.namespace),
                source: source.clone(),
                path: target.path.clone(),
                error: source_err,
            });
        }
        pinned.mounted.push(target.path.clone());
    }
    Ok(pinned)
}

/// What a namespace's pin is mounted from.
fn source(plan: &Plan, namespace: Namespace, holder: u32, init: Option<u32>) -> String {
    match (plan.create.contains(&namespace), namespace, init) {
        (false, ..) => format!("/proc/self/ns/{}", name(namespace)),
        (true, Namespace::Pid, Some(init)) => format!("/proc/{init}/ns/pid"),
        (true, ..) => format!("/proc/{holder}/ns/{}", name(namespace)),
    }
}

impl Pinned {
    /// Unmounts and removes every pin; failures are logged, the rest still goes.
    pub(super) fn release(&mut self) {
        for path in self.mounted.drain(..) {
            let unmounted = CString::new(path.as_os_str().as_encoded_bytes())
                .map_err(io::Error::other)
                .and_then(|path| sys::unmount(&path));
            if let Err(err) = unmounted {
                tracing::warn!(path = %path.display(), error = %err, "unmount pinned namespace");
            }
        }
        remove_files(self.created.iter().map(PathBuf::as_path));
        self.created.clear();
        if let Some(init) = self.init.take() {
            init.stop();
        }
    }
}

fn remove_files<'a>(paths: impl Iterator<Item = &'a Path>) {
    for path in paths {
        if let Err(err) = std::fs::remove_file(path) {
            tracing::warn!(path = %path.display(), error = %err, "remove namespace pin file");
        }
    }
}

/// Removes targets no namespace was mounted on.
pub(super) fn discard(targets: Vec<Target>) {
    remove_files(targets.iter().map(|t| t.path.as_path()));
}
