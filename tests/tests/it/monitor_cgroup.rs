//! `monitor_cgroup` with cgroupfs: runtime-shim moves each pod monitor it spawns into the
//! configured cgroup in every mounted hierarchy (cgroup v1 controllers, `name=systemd` and the
//! unified one), and removes what it created with the pod.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, Result, ensure};
use testkit::*;

/// The hierarchies' mount points: every directory in `/sys/fs/cgroup` (on a pure cgroup v2
/// host, `/sys/fs/cgroup` itself).
pub(crate) fn hierarchy_mounts() -> Result<Vec<PathBuf>> {
    let root = PathBuf::from("/sys/fs/cgroup");
    if root.join("cgroup.procs").exists() {
        return Ok(vec![root]);
    }
    let mut mounts = Vec::new();
    for entry in std::fs::read_dir(&root)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            mounts.push(entry.path());
        }
    }
    ensure!(
        !mounts.is_empty(),
        "no cgroup hierarchy under {}",
        root.display()
    );
    Ok(mounts)
}

/// The cgroup of `pid` in each hierarchy, keyed by its controllers (`""` for the unified one).
pub(crate) fn cgroups_of(pid: u32) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    text.lines()
        .map(|line| {
            let mut fields = line.splitn(3, ':');
            let (Some(_id), Some(controllers), Some(path)) =
                (fields.next(), fields.next(), fields.next())
            else {
                anyhow::bail!("malformed /proc/{pid}/cgroup line {line:?}");
            };
            Ok((controllers.to_owned(), path.to_owned()))
        })
        .collect()
}

/// Requires `pid` in `cgroup` in every hierarchy, the memory, pids, named systemd and unified
/// ones among them.
fn assert_everywhere(pid: u32, cgroup: &str) -> Result<()> {
    let cgroups = cgroups_of(pid)?;
    for controllers in ["memory", "pids", "name=systemd", ""] {
        ensure!(
            cgroups.contains_key(controllers),
            "no {controllers:?} in {cgroups:?}"
        );
    }
    for (controllers, path) in &cgroups {
        ensure!(
            path == cgroup,
            "pid {pid} is in {path} for {controllers:?}, not {cgroup}: {cgroups:?}"
        );
    }
    for mount in hierarchy_mounts()? {
        let dir = mount.join(cgroup.trim_start_matches('/'));
        ensure!(dir.is_dir(), "{} missing", dir.display());
    }
    Ok(())
}

/// The number after `label` in runtime-shim's output (`monitor pid N`, `pid N`).
pub(crate) fn number_after(output: &str, label: &str) -> Result<u32> {
    let at = output
        .rfind(label)
        .with_context(|| format!("no {label:?} in {output:?}"))?;
    let digits: String = output[at + label.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Ok(digits.parse()?)
}

/// A top-level test cgroup, removed from every hierarchy (deepest first) when dropped, in case
/// a test failed before its pod was removed.
pub(crate) struct TestCgroup(pub(crate) String);

impl TestCgroup {
    pub(crate) fn new(prefix: &str) -> Self {
        Self(unique_id(prefix))
    }

    /// Whether its directory exists in any hierarchy.
    pub(crate) fn exists_anywhere(&self) -> Result<bool> {
        Ok(hierarchy_mounts()?.iter().any(|m| m.join(&self.0).exists()))
    }

    /// Creates it in every hierarchy as an administrator would (a v1 cpuset gets its
    /// parent's CPUs and memory nodes, or it could hold no process).
    fn create(&self) -> Result<()> {
        for mount in hierarchy_mounts()? {
            let dir = mount.join(&self.0);
            std::fs::create_dir(&dir)?;
            for file in ["cpuset.cpus", "cpuset.mems"] {
                if dir.join(file).exists() {
                    std::fs::write(dir.join(file), std::fs::read(mount.join(file))?)?;
                }
            }
        }
        Ok(())
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for mount in hierarchy_mounts().unwrap_or_default() {
            let mut dirs = Vec::new();
            let mut stack = vec![mount.join(&self.0)];
            while let Some(dir) = stack.pop() {
                let entries = std::fs::read_dir(&dir).into_iter().flatten().flatten();
                stack.extend(entries.filter(|e| e.path().is_dir()).map(|e| e.path()));
                dirs.push(dir);
            }
            for dir in dirs.iter().rev() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

#[test]
fn pod_monitor_cgroup_is_under_the_pod_parent_and_goes_with_the_pod() -> Result<()> {
    let top = TestCgroup::new("shim-cg-pod");
    let env = ShimEnv::with_monitor_cgroup("cgroupfs", "pod")?;
    let (pod, ctr) = (unique_id("cgpod"), unique_id("cgctr"));
    let parent = format!("/{}/{pod}", top.0);
    let without = env.run(&["pod", "run", &pod])?;
    let stderr = String::from_utf8_lossy(&without.stderr);
    ensure!(
        !without.status.success(),
        "pod run without a parent: {stderr}"
    );
    assert!(stderr.contains("--cgroup-parent"), "{stderr}");

    let out = env.ok(&["pod", "run", &pod, "--cgroup-parent", &parent])?;
    let monitor = number_after(&out, "monitor pid ")?;
    assert_everywhere(monitor, &format!("{parent}/crio-conmon-{pod}"))?;
    // Its containers go beside it, under the pod's parent, as CRI-O names them.
    let init = number_after(&env.ok(&["create", &pod, &ctr])?, "pid ")?;
    assert_eq!(cgroups_of(init)?["memory"], format!("{parent}/crio-{ctr}"));
    let other = env.run(&["pod", "run", &pod, "--cgroup-parent", "/elsewhere"])?;
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert!(
        stderr.contains(&parent) && stderr.contains("/elsewhere"),
        "{stderr}"
    );

    env.ok(&["pod", "rm", &pod])?;
    // Every directory runtime-shim made is gone, the top one included.
    ensure!(!top.exists_anywhere()?, "{} left behind", top.0);
    Ok(())
}

#[test]
fn monitor_cgroup_path_is_joined_and_only_what_was_created_is_removed() -> Result<()> {
    let top = TestCgroup::new("shim-cg-path");
    top.create()?;
    let monitors = format!("/{}/monitors", top.0);
    let env = ShimEnv::with_monitor_cgroup("cgroupfs", &monitors)?;
    let (pod, ctr) = (unique_id("cgpod"), unique_id("cgctr"));
    let monitor = number_after(&env.ok(&["pod", "run", &pod])?, "monitor pid ")?;
    assert_everywhere(monitor, &monitors)?;
    // A container of a pod without a parent goes under CRI-O's default parent, not into the
    // monitor's cgroup.
    let init = number_after(&env.ok(&["create", &pod, &ctr])?, "pid ")?;
    assert_eq!(cgroups_of(init)?["memory"], format!("/crio/crio-{ctr}"));

    env.ok(&["pod", "rm", &pod])?;
    for mount in hierarchy_mounts()? {
        let made = mount.join(monitors.trim_start_matches('/'));
        ensure!(!made.exists(), "{} left behind", made.display());
        // The test made the top cgroup, not runtime-shim: it stays.
        ensure!(mount.join(&top.0).is_dir(), "{} removed", top.0);
    }
    Ok(())
}
