//! `createNamespaces`: namespaces created as requested, pinned, joined by containers, and
//! unpinned when the monitor shuts down.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Result, ensure};
use testkit::*;

use crate::{WAIT, run_to_exit};

const ALL: [Namespace; 5] = [
    Namespace::Ipc,
    Namespace::Pid,
    Namespace::Net,
    Namespace::User,
    Namespace::Uts,
];

fn name(namespace: Namespace) -> &'static str {
    match namespace {
        Namespace::Ipc => "ipc",
        Namespace::Net => "net",
        Namespace::Pid => "pid",
        Namespace::User => "user",
        Namespace::Uts => "uts",
    }
}

fn request(pod_id: &str, base: &Path, namespaces: &[Namespace]) -> CreateNamespaces {
    let user = namespaces.contains(&Namespace::User);
    let mapping = || {
        if user {
            vec!["0 0 65536".to_owned()]
        } else {
            vec![]
        }
    };
    CreateNamespaces {
        namespaces: namespaces.to_vec(),
        uid_mappings: mapping(),
        gid_mappings: mapping(),
        base_path: base.to_owned(),
        pod_id: pod_id.to_owned(),
        sysctls: BTreeMap::new(),
    }
}

/// The inode of this process's namespace of `namespace`'s type (the host's).
fn host_inode(namespace: Namespace) -> Result<u64> {
    Ok(std::fs::metadata(format!("/proc/self/ns/{}", name(namespace)))?.ino())
}

/// Mounts under `base` (from this process's mount table, which conmond shares).
fn mounts_under(base: &Path) -> Result<usize> {
    let table = std::fs::read_to_string("/proc/self/mountinfo")?;
    let base = base.to_string_lossy();
    Ok(table
        .lines()
        .filter(|line| {
            line.split(' ')
                .nth(4)
                .is_some_and(|m| m.starts_with(&*base))
        })
        .count())
}

#[test]
fn every_combination_is_created_as_requested_and_unpinned_at_shutdown() -> Result<()> {
    let pod = Pod::start()?;
    let base = pod.path("ns");
    let mut pinned: Vec<PathBuf> = Vec::new();
    run_local(async {
        let client = pod.client().await?;
        for mask in 0..32u8 {
            let requested: Vec<Namespace> = (0..5)
                .filter(|bit| mask & (1 << bit) != 0)
                .map(|bit| ALL[bit])
                .collect();
            let pod_id = format!("pod-{mask}");
            let answer = client
                .create_namespaces(&request(&pod_id, &base, &requested))
                .await?;
            let types: Vec<Namespace> = answer.iter().map(|(t, _)| *t).collect();
            ensure!(types == ALL, "answer order for {requested:?}: {types:?}");
            for (namespace, path) in answer {
                let expected = base.join(format!("{}ns", name(namespace))).join(&pod_id);
                ensure!(path == expected, "{path:?} for {namespace:?}");
                let meta = std::fs::symlink_metadata(&path)?;
                ensure!(meta.is_file() && meta.len() == 0, "{path:?}: {meta:?}");
                ensure!(
                    meta.permissions().mode() & 0o777 == 0o444,
                    "mode of {path:?}"
                );
                let new = meta.ino() != host_inode(namespace)?;
                ensure!(
                    new == requested.contains(&namespace),
                    "{namespace:?} of {requested:?}: new namespace {new}"
                );
                pinned.push(path);
            }
        }
        Ok(())
    })?;
    ensure!(mounts_under(&base)? == 32 * 5, "pins mounted");
    run_local(pod.terminate(WAIT))?;
    let left: Vec<&PathBuf> = pinned.iter().filter(|p| p.exists()).collect();
    ensure!(left.is_empty(), "pins left after shutdown: {left:?}");
    ensure!(mounts_under(&base)? == 0, "mounts left after shutdown");
    Ok(())
}

#[test]
fn containers_join_the_pinned_namespaces_with_their_mappings_and_sysctls() -> Result<()> {
    with_pod(async |pod, client| {
        let base = pod.path("ns");
        let mut spec = request("joined", &base, &ALL);
        spec.uid_mappings = vec!["0 0 1000".into(), "1000 101000 1000".into()];
        spec.sysctls = BTreeMap::from([
            ("net.ipv4.ip_forward".to_owned(), "1".to_owned()),
            ("kernel.hostname".to_owned(), "pinned-host".to_owned()),
            ("kernel.shmmni".to_owned(), "1234".to_owned()),
        ]);
        let answer: BTreeMap<&str, PathBuf> = client
            .create_namespaces(&spec)
            .await?
            .into_iter()
            .map(|(namespace, path)| (name(namespace), path))
            .collect();
        let joined = answer.clone();
        let script = "for ns in ipc net pid user uts; do readlink /proc/self/ns/$ns; done; \
                      cat /proc/self/uid_map /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni; \
                      hostname; echo parent $PPID";
        let bundle = pod.bundle_with("joined", &["sh", "-c", script], move |config| {
            let oci_type = |ns: &str| if ns == "net" { "network" } else { ns }.to_owned();
            let mut namespaces: Vec<serde_json::Value> = joined
                .iter()
                .map(|(ns, path)| serde_json::json!({"type": oci_type(ns), "path": path}))
                .collect();
            namespaces.push(serde_json::json!({"type": "mount"}));
            config["linux"]["namespaces"] = namespaces.into();
            let identity = serde_json::json!([{"containerID": 0, "hostID": 0, "size": 1000}]);
            config["linux"]["uidMappings"] = identity.clone();
            config["linux"]["gidMappings"] = identity;
            config.as_object_mut().map(|c| c.remove("hostname"));
        })?;
        let log = pod.path("joined.log");
        let mut create = pod.create_request("joined", bundle);
        create.log_drivers = log_to(LogFormat::Cri, &log, 0);
        ensure!(
            run_to_exit(pod, client, create).await? == "0",
            "container failed"
        );
        let output = String::from_utf8(cri_stream(&std::fs::read(&log)?, "stdout")?)?;
        let mut expected = String::new();
        for ns in ["ipc", "net", "pid", "user", "uts"] {
            let inode = std::fs::metadata(&answer[ns])?.ino();
            expected.push_str(&format!("{ns}:[{inode}]\n"));
        }
        ensure!(
            output.starts_with(&expected),
            "{output}\nwanted first:\n{expected}"
        );
        let maps: Vec<Vec<&str>> = output
            .lines()
            .skip(5)
            .take(2)
            .map(|l| l.split_whitespace().collect())
            .collect();
        ensure!(
            maps == [["0", "0", "1000"], ["1000", "101000", "1000"]],
            "{output}"
        );
        // The pod's PID namespace has its own init, pid 1, which the container's is not.
        ensure!(
            output.ends_with("1\n1234\npinned-host\nparent 0\n"),
            "{output}"
        );
        Ok(())
    })
}

#[test]
fn bad_requests_are_refused_by_name_and_leave_nothing_behind() -> Result<()> {
    with_pod(async |pod, client| {
        let base = pod.path("ns");
        let refused = async |spec: CreateNamespaces, wanted: &str| -> Result<()> {
            let err = error_text(client.create_namespaces(&spec).await);
            ensure!(err.contains(wanted), "{err}\nwanted: {wanted}");
            Ok(())
        };
        refused(request("", &base, &[]), "no pod ID provided").await?;
        refused(
            request("../up", &base, &[]),
            "pod ID '../up' must be one path",
        )
        .await?;
        refused(
            request("p", Path::new("rel"), &[]),
            "base path 'rel' is not absolute",
        )
        .await?;
        let mut no_maps = request("p", &base, &[Namespace::User]);
        no_maps.gid_mappings.clear();
        refused(no_maps, "group ID mappings are empty").await?;
        let mut bad_map = request("p", &base, &[Namespace::User]);
        bad_map.uid_mappings = vec!["0 x 1".into()];
        refused(bad_map, "user ID mapping '0 x 1' is not").await?;
        let mut host_sysctl = request("p", &base, &[Namespace::Net]);
        host_sysctl
            .sysctls
            .insert("vm.swappiness".into(), "1".into());
        refused(host_sysctl, "sysctl 'vm.swappiness' is not namespaced").await?;
        let mut no_net = request("p", &base, &[Namespace::Ipc]);
        no_net
            .sysctls
            .insert("net.ipv4.ip_forward".into(), "1".into());
        refused(no_net, "needs a new net namespace").await?;
        // Fails in the holder, after the pin files were created: they go again.
        let mut missing = request("p", &base, &[Namespace::Net]);
        missing
            .sysctls
            .insert("net.ipv4.no_such_knob".into(), "1".into());
        refused(missing, "set sysctl net.ipv4.no_such_knob=1: No such file").await?;
        let files = |dir: &str| std::fs::read_dir(base.join(dir)).map(Iterator::count);
        for ns in ALL {
            ensure!(files(&format!("{}ns", name(ns)))? == 0, "{ns:?} pin left");
        }
        // A symbolic link where a pin goes is not followed.
        let outside = pod.path("outside");
        std::os::unix::fs::symlink(&outside, base.join("utsns/linked"))?;
        refused(request("linked", &base, &[Namespace::Uts]), "utsns/linked").await?;
        ensure!(
            !outside.exists() && files("ipcns")? == 0,
            "pin through a symlink"
        );

        // The same request again answers the same pins; another one for the pod is refused.
        let first = client
            .create_namespaces(&request("p", &base, &[Namespace::Net]))
            .await?;
        let again = client
            .create_namespaces(&request("p", &base, &[Namespace::Net]))
            .await?;
        ensure!(first == again, "{first:?} then {again:?}");
        let other = request("p", &base, &[Namespace::Ipc]);
        refused(other, "namespaces of pod 'p' are already pinned").await?;
        ensure!(pod.daemon_alive(), "monitor died");
        Ok(())
    })
}
