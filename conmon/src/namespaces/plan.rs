//! A `createNamespaces` request checked and turned into what the holder and the mounts need.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};

use conmon_proto::types::{CreateNamespaces, Namespace};

use super::NamespaceError;

/// Every namespace in the order conmon-rs answers with.
pub(crate) const ANSWER_ORDER: [Namespace; 5] = [
    Namespace::Ipc,
    Namespace::Pid,
    Namespace::Net,
    Namespace::User,
    Namespace::Uts,
];

/// A checked request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) pod_id: String,
    pub(crate) base: PathBuf,
    /// The namespaces to create, without duplicates, user first.
    pub(crate) create: Vec<Namespace>,
    /// `/proc/self/{uid,gid}_map` contents, when a user namespace is created.
    pub(crate) uid_map: String,
    pub(crate) gid_map: String,
    pub(crate) sysctls: BTreeMap<String, String>,
}

impl Plan {
    /// Checks `request`.
    ///
    /// # Errors
    /// A missing or unusable pod ID or base path, a user namespace without mappings (or
    /// mappings without one), malformed mappings, and sysctls that are not namespaced or whose
    /// namespace is not created.
    pub(crate) fn new(request: CreateNamespaces) -> Result<Self, NamespaceError> {
        check_pod_id(&request.pod_id)?;
        if !request.base_path.is_absolute() {
            return Err(NamespaceError::BasePath(request.base_path));
        }
        let mut create: Vec<Namespace> = Vec::new();
        for namespace in [Namespace::User].iter().chain(&ANSWER_ORDER) {
            if request.namespaces.contains(namespace) && !create.contains(namespace) {
                create.push(*namespace);
            }
        }
        let user = create.contains(&Namespace::User);
        let (uid_map, gid_map) = if user {
            (
                id_map("user", &request.uid_mappings)?,
                id_map("group", &request.gid_mappings)?,
            )
        } else if request.uid_mappings.is_empty() && request.gid_mappings.is_empty() {
            (String::new(), String::new())
        } else {
            return Err(NamespaceError::MappingsWithoutUserNamespace);
        };
        for (key, value) in &request.sysctls {
            check_sysctl(key, value, &create)?;
        }
        Ok(Self {
            pod_id: request.pod_id,
            base: request.base_path,
            create,
            uid_map,
            gid_map,
            sysctls: request.sysctls,
        })
    }

    /// Where `namespace` is pinned: `<base>/<name>ns/<pod ID>`, conmon-rs's layout.
    pub(crate) fn path(&self, namespace: Namespace) -> PathBuf {
        self.base
            .join(format!("{}ns", name(namespace)))
            .join(&self.pod_id)
    }

    /// The sysctls as `/proc/sys` files and values, for the holder.
    pub(crate) fn sysctl_files(&self) -> Vec<(CString, Vec<u8>)> {
        self.sysctls
            .iter()
            .filter_map(|(key, value)| {
                let file = Path::new("/proc/sys").join(key.replace('.', "/"));
                let file = CString::new(file.into_os_string().into_encoded_bytes()).ok()?;
                Some((file, value.clone().into_bytes()))
            })
            .collect()
    }
}

/// The namespace's name in `/proc/<pid>/ns` and in the pinned path.
pub(crate) fn name(namespace: Namespace) -> &'static str {
    match namespace {
        Namespace::Ipc => "ipc",
        Namespace::Net => "net",
        Namespace::Pid => "pid",
        Namespace::User => "user",
        Namespace::Uts => "uts",
    }
}

/// The pod ID becomes a file name: one path component of the characters runc allows in IDs.
fn check_pod_id(pod_id: &str) -> Result<(), NamespaceError> {
    if pod_id.is_empty() {
        return Err(NamespaceError::NoPodId);
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_+-.".contains(c);
    if !pod_id.chars().all(allowed) || pod_id.starts_with('.') || pod_id.len() > 255 {
        return Err(NamespaceError::PodId(pod_id.to_owned()));
    }
    Ok(())
}

/// Turns `"<inside> <outside> <count>"` mappings into an ID map file's contents.
fn id_map(kind: &'static str, mappings: &[String]) -> Result<String, NamespaceError> {
    if mappings.is_empty() {
        return Err(NamespaceError::NoMappings(kind));
    }
    let mut map = String::new();
    for mapping in mappings {
        let numbers: Vec<Option<u32>> =
            mapping.split_whitespace().map(|n| n.parse().ok()).collect();
        let [Some(inside), Some(outside), Some(count)] = numbers[..] else {
            return Err(NamespaceError::Mapping {
                kind,
                mapping: mapping.clone(),
            });
        };
        if count == 0 {
            return Err(NamespaceError::Mapping {
                kind,
                mapping: mapping.clone(),
            });
        }
        map.push_str(&format!("{inside} {outside} {count}\n"));
    }
    Ok(map)
}

/// Only sysctls of the namespaces being created may be set: anything else would change the
/// host.
fn check_sysctl(key: &str, value: &str, create: &[Namespace]) -> Result<(), NamespaceError> {
    let valid_key = !key.is_empty()
        && key.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
        });
    if !valid_key || value.contains(['\0', '\n']) {
        return Err(NamespaceError::Sysctl {
            key: key.to_owned(),
            problem: "is not a well-formed sysctl".into(),
        });
    }
    let namespace = if key.starts_with("net.") {
        Namespace::Net
    } else if key.starts_with("fs.mqueue.")
        || [
            "kernel.shmmax",
            "kernel.shmall",
            "kernel.shmmni",
            "kernel.shm_rmid_forced",
        ]
        .contains(&key)
        || [
            "kernel.msgmax",
            "kernel.msgmnb",
            "kernel.msgmni",
            "kernel.sem",
        ]
        .contains(&key)
    {
        Namespace::Ipc
    } else if ["kernel.hostname", "kernel.domainname"].contains(&key) {
        Namespace::Uts
    } else {
        return Err(NamespaceError::Sysctl {
            key: key.to_owned(),
            problem: "is not namespaced: setting it would change the host".into(),
        });
    };
    if !create.contains(&namespace) {
        return Err(NamespaceError::Sysctl {
            key: key.to_owned(),
            problem: format!(
                "needs a new {} namespace, which was not requested",
                name(namespace)
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
