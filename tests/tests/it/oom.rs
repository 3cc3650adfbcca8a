//! OOM kills: noticed while the container runs, in the cgroup it was created in or moved to,
//! and at exit.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, ensure};
use testkit::*;

use crate::{WAIT, run_to_exit};

/// A script that starts a memory hog once `/tmp/<gate>` exists and survives its OOM kill,
/// then exits 0 once `/tmp/done` exists.
fn hog_after(gate: &str) -> String {
    format!(
        "while [ ! -e /tmp/{gate} ]; do sleep 0.05; done; tail /dev/zero; \
         while [ ! -e /tmp/done ]; do sleep 0.05; done"
    )
}

fn limit_memory(config: &mut serde_json::Value) {
    let limit = 16 << 20;
    config["linux"]["resources"]["memory"] = serde_json::json!({"limit": limit, "swap": limit});
}

#[test]
fn oom_killed_container_gets_its_oom_file() -> Result<()> {
    with_pod(async |pod, client| {
        let limit = 16 << 20;
        let bundle = pod.bundle_with(
            "oom",
            &["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"],
            |config| {
                config["linux"]["resources"]["memory"] =
                    serde_json::json!({"limit": limit, "swap": limit});
            },
        )?;
        let mut request = pod.create_request("oom", bundle);
        let oom_path = pod.path("oom.marker");
        request.oom_exit_paths = vec![oom_path.clone()];
        assert_eq!(run_to_exit(pod, client, request).await?, "137");
        assert_eq!(std::fs::read(&oom_path)?, b"");

        let calm = pod.bundle("calm", &["true"])?;
        let mut request = pod.create_request("calm", calm);
        let calm_oom = pod.path("calm.marker");
        request.oom_exit_paths = vec![calm_oom.clone()];
        assert_eq!(run_to_exit(pod, client, request).await?, "0");
        assert!(
            !calm_oom.exists(),
            "OOM file for a container that was not OOM-killed"
        );
        Ok(())
    })
}

#[test]
fn the_oom_file_is_written_while_the_container_still_runs() -> Result<()> {
    with_pod(async |pod, client| {
        let bundle = pod.bundle_with("hog", &["sh", "-c", &hog_after("go")], limit_memory)?;
        let rootfs = bundle.join("rootfs/tmp");
        let mut request = pod.create_request("hog", bundle);
        let oom_path = pod.path("hog.oom");
        request.oom_exit_paths = vec![oom_path.clone()];
        let exit_path = request.exit_paths[0].clone();
        pod.start_container(client, &request).await?;
        std::fs::write(rootfs.join("go"), "")?;
        // The hog is killed, its shell lives on: the OOM file comes before any exit.
        wait_for_file(&oom_path, WAIT).await?;
        ensure!(!exit_path.exists(), "the container exited");
        std::fs::write(rootfs.join("done"), "")?;
        ensure!(wait_for_file(&exit_path, WAIT).await? == "0", "exit code");
        ensure!(std::fs::read(&oom_path)?.is_empty(), "OOM file not empty");
        Ok(())
    })
}

/// The memory cgroup directory of `pid`, and whether it is cgroup v2's.
fn memory_cgroup(pid: u32) -> Result<(PathBuf, bool)> {
    let unified = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let table = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let relative = table
        .lines()
        .find_map(|line| {
            let mut fields = line.splitn(3, ':').skip(1);
            let (controllers, path) = (fields.next()?, fields.next()?);
            let memory = if unified {
                controllers.is_empty()
            } else {
                controllers.split(',').any(|c| c == "memory")
            };
            memory.then(|| path.trim_start_matches('/').to_owned())
        })
        .context("no memory cgroup")?;
    let root = if unified {
        "/sys/fs/cgroup"
    } else {
        "/sys/fs/cgroup/memory"
    };
    Ok((Path::new(root).join(relative), unified))
}

#[test]
fn an_oom_kill_is_noticed_in_the_cgroup_the_process_was_moved_to() -> Result<()> {
    with_pod(async |pod, client| {
        let bundle = pod.bundle("moved", &["sh", "-c", &hog_after("go")])?;
        let rootfs = bundle.join("rootfs/tmp");
        let mut request = pod.create_request("moved", bundle);
        let oom_path = pod.path("moved.oom");
        request.oom_exit_paths = vec![oom_path.clone()];
        let exit_path = request.exit_paths[0].clone();
        let pid = pod.start_container(client, &request).await?;

        // Move the container into a limited cgroup of its own, and remove the one it left.
        let (created_in, unified) = memory_cgroup(pid)?;
        let moved_to = created_in.with_file_name(unique_id("conmond-moved"));
        std::fs::create_dir(&moved_to)?;
        let limit = if unified {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        std::fs::write(moved_to.join(limit), (16 << 20).to_string())?;
        // Its shell starts `sleep`s: move processes until the old cgroup is empty.
        wait_for("the container's processes to move", WAIT, || {
            let procs = std::fs::read_to_string(created_in.join("cgroup.procs")).ok()?;
            for moving in procs.lines() {
                let _ = std::fs::write(moved_to.join("cgroup.procs"), moving);
            }
            std::fs::remove_dir(&created_in).ok()
        })
        .await?;

        std::fs::write(rootfs.join("go"), "")?;
        let noticed = wait_for_file(&oom_path, WAIT).await;
        std::fs::write(rootfs.join("done"), "")?;
        let exited = wait_for_file(&exit_path, WAIT).await;
        std::fs::remove_dir(&moved_to)?;
        noticed?;
        ensure!(exited? == "0", "exit code");
        Ok(())
    })
}
