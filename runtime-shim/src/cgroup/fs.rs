//! cgroupfs: moving a process into one cgroup in every hierarchy mounted under
//! `/sys/fs/cgroup` (each cgroup v1 hierarchy, named ones like `name=systemd` included, and the
//! unified one), as runc's cgroupfs driver joins a container to all of them.
//!
//! The hierarchies come from `/proc/self/mountinfo`, never from a list of names. Every path is
//! walked from `/` one component at a time with `O_NOFOLLOW`, so no symlink is followed and
//! nothing outside `/sys/fs/cgroup` is written. Directories are created as needed, each one
//! recorded so that it can be removed with the pod.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};

use super::{CgroupError, CgroupPath};
use crate::sys;

/// Where every hierarchy this module uses must be mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Mount options of a v1 hierarchy that are not controllers.
const NOT_CONTROLLERS: &[&str] = &[
    "rw",
    "ro",
    "xattr",
    "noprefix",
    "clone_children",
    "cpuset_v2_mode",
];

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Its controllers (`memory`, `cpu,cpuacct`, `name=systemd`), or `unified` for cgroup v2.
    pub controllers: String,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The cgroup its mount shows (`/` unless only a subtree is mounted).
    pub root: String,
}

impl Hierarchy {
    fn is_cpuset(&self) -> bool {
        self.controllers.split(',').any(|c| c == "cpuset")
    }

    /// The components of `cgroup` below this mount's root.
    pub(super) fn relative<'c>(&self, cgroup: &'c CgroupPath) -> Result<Vec<&'c str>, CgroupError> {
        let mut components = cgroup.components();
        for expected in self.root.split('/').filter(|c| !c.is_empty()) {
            if components.next() != Some(expected) {
                return Err(CgroupError::OutsideMount {
                    cgroup: cgroup.clone(),
                    controller: self.controllers.clone(),
                    root: self.root.clone(),
                });
            }
        }
        Ok(components.collect())
    }
}

/// The cgroup hierarchies mounted under `/sys/fs/cgroup`, each once.
///
/// # Errors
/// An unreadable mountinfo, or no hierarchy at all.
pub fn hierarchies() -> Result<Vec<Hierarchy>, CgroupError> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(CgroupError::Mountinfo)?;
    let found = parse_mountinfo(&text);
    if found.is_empty() {
        return Err(CgroupError::NoHierarchy);
    }
    Ok(found)
}

/// The cgroup hierarchies in a mountinfo text (see proc(5)): `cgroup` and `cgroup2` mounts
/// under `/sys/fs/cgroup`, the first mount of each file system (`major:minor`) only.
pub fn parse_mountinfo(text: &str) -> Vec<Hierarchy> {
    let mut seen = Vec::new();
    let mut found = Vec::new();
    for line in text.lines() {
        let Some((mount, fs)) = line.split_once(" - ") else {
            continue;
        };
        let mount: Vec<&str> = mount.split(' ').collect();
        let mut fs = fs.split(' ');
        let (Some(fs_type), Some(_source), Some(options)) = (fs.next(), fs.next(), fs.next())
        else {
            continue;
        };
        let ([_id, _parent, device, root, mount_point, ..], "cgroup" | "cgroup2") =
            (mount.as_slice(), fs_type)
        else {
            continue;
        };
        let mount_point = PathBuf::from(unescape(mount_point));
        if !plainly_under_cgroup_root(&mount_point) || seen.contains(device) {
            continue;
        }
        seen.push(*device);
        let controllers = if fs_type == "cgroup2" {
            "unified".to_owned()
        } else {
            let names: Vec<&str> = options
                .split(',')
                .filter(|o| !NOT_CONTROLLERS.contains(o) && !o.starts_with("release_agent="))
                .collect();
            names.join(",")
        };
        found.push(Hierarchy {
            controllers,
            mount_point,
            root: unescape(root),
        });
    }
    found
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(digits)) => {
                let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `path` is `/sys/fs/cgroup` or below it, without `..` or control characters.
fn plainly_under_cgroup_root(path: &Path) -> bool {
    path.starts_with(CGROUP_ROOT)
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && !path.as_os_str().as_bytes().iter().any(u8::is_ascii_control)
}

/// A cgroup directory this module created, to be removed with the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedDir {
    /// Its hierarchy's controllers.
    pub controllers: String,
    /// Where its hierarchy is mounted.
    pub mount_point: PathBuf,
    /// Its path below that mount.
    pub path: CgroupPath,
}

/// Moves process `pid` into `cgroup` in every hierarchy, creating missing directories; each
/// directory created is pushed to `created`, also when a later step fails.
///
/// # Errors
/// The first failure, naming the cgroup and the hierarchy.
pub fn move_process(
    cgroup: &CgroupPath,
    pid: u32,
    created: &mut Vec<CreatedDir>,
) -> Result<(), CgroupError> {
    for hierarchy in hierarchies()? {
        let fail = |action| {
            let hierarchy = &hierarchy;
            move |source| CgroupError::Fs {
                action,
                cgroup: cgroup.clone(),
                controller: hierarchy.controllers.clone(),
                mount: hierarchy.mount_point.clone(),
                source,
            }
        };
        let mut dir = open_mount(&hierarchy.mount_point).map_err(fail("open the hierarchy of"))?;
        let mut below = String::new();
        for name in hierarchy.relative(cgroup)? {
            below.push('/');
            below.push_str(name);
            let name = c_name(name.as_bytes()).map_err(fail("create"))?;
            let fresh = match sys::mkdir_at(dir.as_fd(), &name, 0o755) {
                Ok(()) => true,
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => false,
                Err(err) => return Err(fail("create")(err)),
            };
            if fresh {
                created.push(CreatedDir {
                    controllers: hierarchy.controllers.clone(),
                    mount_point: hierarchy.mount_point.clone(),
                    path: CgroupPath::parse(&below)?,
                });
            }
            let child = sys::open_at(dir.as_fd(), &name, libc::O_RDONLY | libc::O_DIRECTORY)
                .map_err(fail("open"))?;
            if fresh && hierarchy.is_cpuset() {
                inherit_cpuset(&dir, &child).map_err(fail("set up the cpuset of"))?;
            }
            dir = child;
        }
        let procs = sys::open_at(dir.as_fd(), c"cgroup.procs", libc::O_WRONLY)
            .map_err(fail("open cgroup.procs of"))?;
        File::from(procs)
            .write_all(pid.to_string().as_bytes())
            .map_err(fail("move the monitor into"))?;
    }
    Ok(())
}

/// A new cgroup v1 cpuset has no CPUs and memory nodes, and takes no process until it has
/// some: give it its parent's.
fn inherit_cpuset(parent: &OwnedFd, child: &OwnedFd) -> io::Result<()> {
    for file in [c"cpuset.cpus", c"cpuset.mems"] {
        let read = |dir: &OwnedFd| -> io::Result<String> {
            let mut text = String::new();
            File::from(sys::open_at(dir.as_fd(), file, libc::O_RDONLY)?)
                .read_to_string(&mut text)?;
            Ok(text)
        };
        if read(child)?.trim().is_empty() {
            let value = read(parent)?;
            File::from(sys::open_at(child.as_fd(), file, libc::O_WRONLY)?)
                .write_all(value.trim().as_bytes())?;
        }
    }
    Ok(())
}

/// Removes the directories `move_process` created, deepest first. One that is gone already
/// is fine; one still in use (another pod's monitor in a shared cgroup) is left in place.
///
/// # Errors
/// The first other failure; the remaining directories are still tried.
pub fn remove_created(created: &[CreatedDir]) -> Result<(), CgroupError> {
    let mut first_error = None;
    for dir in created.iter().rev() {
        match remove_dir(dir) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) if matches!(err.raw_os_error(), Some(libc::EBUSY | libc::ENOTEMPTY)) => {
                tracing::warn!(cgroup = %dir.path, controller = %dir.controllers, "cgroup still in use; left in place");
            }
            Err(source) => {
                first_error.get_or_insert(CgroupError::Fs {
                    action: "remove",
                    cgroup: dir.path.clone(),
                    controller: dir.controllers.clone(),
                    mount: dir.mount_point.clone(),
                    source,
                });
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn remove_dir(dir: &CreatedDir) -> io::Result<()> {
    let names: Vec<&str> = dir.path.components().collect();
    let Some((last, parents)) = names.split_last() else {
        return Ok(());
    };
    let mut fd = open_mount(&dir.mount_point)?;
    for name in parents {
        fd = sys::open_at(
            fd.as_fd(),
            &c_name(name.as_bytes())?,
            libc::O_RDONLY | libc::O_DIRECTORY,
        )?;
    }
    sys::rmdir_at(fd.as_fd(), &c_name(last.as_bytes())?)
}

/// Opens a hierarchy's mount point, walking from `/` without following links.
fn open_mount(mount_point: &Path) -> io::Result<OwnedFd> {
    if !plainly_under_cgroup_root(mount_point) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not below {CGROUP_ROOT}", mount_point.display()),
        ));
    }
    let mut fd = OwnedFd::from(File::open("/")?);
    for component in mount_point.components() {
        if let Component::Normal(name) = component {
            fd = sys::open_at(
                fd.as_fd(),
                &c_name(name.as_bytes())?,
                libc::O_RDONLY | libc::O_DIRECTORY,
            )?;
        }
    }
    Ok(fd)
}

fn c_name(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

/// Writes the record of created directories (one `controllers<TAB>mount point<TAB>path` line
/// each).
///
/// # Errors
/// [`CgroupError::Record`] when it cannot be written.
pub fn save_record(path: &Path, created: &[CreatedDir]) -> Result<(), CgroupError> {
    let text: String = created
        .iter()
        .map(|dir| {
            format!(
                "{}\t{}\t{}\n",
                dir.controllers,
                dir.mount_point.display(),
                dir.path
            )
        })
        .collect();
    std::fs::write(path, text).map_err(|err| CgroupError::Record {
        path: path.to_owned(),
        message: err.to_string(),
    })
}

/// Reads a record [`save_record`] wrote; none when there is no record.
///
/// # Errors
/// [`CgroupError::Record`] for an unreadable record or a line that is not one it writes.
pub fn load_record(path: &Path) -> Result<Vec<CreatedDir>, CgroupError> {
    let record_error = |message: String| CgroupError::Record {
        path: path.to_owned(),
        message,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(record_error(err.to_string())),
    };
    text.lines()
        .map(|line| {
            let mut fields = line.split('\t');
            let (Some(controllers), Some(mount_point), Some(dir), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(record_error(format!("malformed line {line:?}")));
            };
            let mount_point = PathBuf::from(mount_point);
            if !plainly_under_cgroup_root(&mount_point) {
                return Err(record_error(format!("{line:?} is not below {CGROUP_ROOT}")));
            }
            Ok(CreatedDir {
                controllers: controllers.to_owned(),
                mount_point,
                path: CgroupPath::parse(dir).map_err(|err| record_error(err.to_string()))?,
            })
        })
        .collect()
}
