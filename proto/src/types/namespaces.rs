//! `createNamespaces`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{EncodeError, count, path_text, read_strings, write_strings};
use crate::conmon;
/// Namespaces `createNamespaces` can pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    /// IPC.
    Ipc,
    /// Network.
    Net,
    /// PID.
    Pid,
    /// User.
    User,
    /// UTS.
    Uts,
}

/// `createNamespaces`: pin a pod's namespaces under `base_path`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateNamespaces {
    /// Namespaces to create.
    pub namespaces: Vec<Namespace>,
    /// `"<container id> <host id> <size>"` mappings for a user namespace.
    pub uid_mappings: Vec<String>,
    /// Same for groups.
    pub gid_mappings: Vec<String>,
    /// Where the bind mounts go.
    pub base_path: PathBuf,
    /// The pod.
    pub pod_id: String,
    /// Namespaced sysctls to set in the new namespaces (conmond's appended field).
    pub sysctls: BTreeMap<String, String>,
}

impl Namespace {
    /// The wire enum.
    pub fn to_wire(self) -> conmon::Namespace {
        match self {
            Self::Ipc => conmon::Namespace::Ipc,
            Self::Net => conmon::Namespace::Net,
            Self::Pid => conmon::Namespace::Pid,
            Self::User => conmon::Namespace::User,
            Self::Uts => conmon::Namespace::Uts,
        }
    }

    /// Decodes a wire namespace.
    ///
    /// # Errors
    /// Values this schema does not know.
    pub fn read(value: Result<conmon::Namespace, capnp::NotInSchema>) -> capnp::Result<Self> {
        Ok(
            match value.map_err(|capnp::NotInSchema(n)| {
                capnp::Error::failed(format!("unknown namespace {n}"))
            })? {
                conmon::Namespace::Ipc => Self::Ipc,
                conmon::Namespace::Net => Self::Net,
                conmon::Namespace::Pid => Self::Pid,
                conmon::Namespace::User => Self::User,
                conmon::Namespace::Uts => Self::Uts,
            },
        )
    }
}

impl CreateNamespaces {
    /// Decodes a request.
    ///
    /// # Errors
    /// Malformed messages, non-UTF-8 text and unknown namespaces.
    pub fn read(r: conmon::create_namespaces_request::Reader<'_>) -> capnp::Result<Self> {
        Ok(Self {
            namespaces: r
                .get_namespaces()?
                .iter()
                .map(Namespace::read)
                .collect::<capnp::Result<_>>()?,
            uid_mappings: read_strings(r.get_uid_mappings()?)?,
            gid_mappings: read_strings(r.get_gid_mappings()?)?,
            base_path: PathBuf::from(r.get_base_path()?.to_string()?),
            pod_id: r.get_pod_id()?.to_string()?,
            sysctls: crate::map::read(r.get_sysctls()?)?,
        })
    }

    /// Encodes the request into `r`.
    ///
    /// # Errors
    /// A base path that is not UTF-8.
    pub fn write(
        &self,
        mut r: conmon::create_namespaces_request::Builder<'_>,
    ) -> Result<(), EncodeError> {
        let mut namespaces = r.reborrow().init_namespaces(count(self.namespaces.len()));
        for (i, namespace) in (0u32..).zip(&self.namespaces) {
            namespaces.set(i, namespace.to_wire());
        }
        write_strings(
            |n| r.reborrow().init_uid_mappings(n),
            self.uid_mappings.iter().map(String::as_str),
        );
        write_strings(
            |n| r.reborrow().init_gid_mappings(n),
            self.gid_mappings.iter().map(String::as_str),
        );
        r.set_base_path(path_text(&self.base_path)?);
        r.set_pod_id(&self.pod_id);
        if !self.sysctls.is_empty() {
            crate::map::write(
                r.init_sysctls(count(self.sysctls.len())),
                self.sysctls.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            );
        }
        Ok(())
    }
}
