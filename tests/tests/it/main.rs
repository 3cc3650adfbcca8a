//! Integration tests: conmond driving real runc containers with a busybox rootfs, as root.

use std::time::Duration;

use anyhow::Result;
use testkit::*;

pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// Creates `id` running `args`, starts it, and returns its exit file contents.
pub(crate) async fn run_to_exit(
    pod: &Pod,
    client: &MonitorClient,
    request: CreateContainer,
) -> Result<String> {
    let exit_path = request.exit_paths[0].clone();
    pod.start_container(client, &request).await?;
    wait_for_file(&exit_path, WAIT).await
}

mod exec;
mod fds;
mod journald;
mod logs;
mod monitor_cgroup;
mod namespaces;
mod oom;
mod systemd_scope;
mod terminal;

/// A running container for exec tests.
pub(crate) async fn running(pod: &Pod, client: &MonitorClient, id: &str) -> Result<()> {
    let request = pod.create_request(id, pod.bundle(id, &["sleep", "1000"])?);
    pod.start_container(client, &request).await?;
    Ok(())
}

#[test]
fn version_reports_the_daemon() -> Result<()> {
    with_pod(async |pod, client| {
        let info = client.version(false).await?;
        assert_eq!(info.process_id, pod.pid);
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
        assert!(!info.commit.is_empty() && !info.rust_version.is_empty());
        assert!(info.cargo_tree.is_empty());
        assert!(client.version(true).await?.cargo_tree.contains("capnp"));
        Ok(())
    })
}

#[test]
fn exit_files_hold_the_exit_code() -> Result<()> {
    with_pod(async |pod, client| {
        for (id, code) in [("zero", "0"), ("three", "3")] {
            let bundle = pod.bundle(id, &["sh", "-c", &format!("exit {code}")])?;
            let request = pod.create_request(id, bundle);
            assert_eq!(
                run_to_exit(pod, client, request).await?,
                code,
                "container {id}"
            );
        }
        Ok(())
    })
}

#[test]
fn signal_gives_128_plus_n_and_every_exit_path_is_written() -> Result<()> {
    with_pod(async |pod, client| {
        let mut request = pod.create_request("sig", pod.bundle("sig", &["sleep", "1000"])?);
        let second = pod.path("second/sig.exit");
        std::fs::create_dir_all(second.parent().unwrap())?;
        request.exit_paths.push(second.clone());
        pod.start_container(client, &request).await?;
        pod.runc(&["kill", "sig", "KILL"])?;
        assert_eq!(wait_for_file(&request.exit_paths[0], WAIT).await?, "137");
        assert_eq!(wait_for_file(&second, WAIT).await?, "137");
        Ok(())
    })
}

#[test]
fn unknown_and_duplicate_containers_are_errors_that_say_so() -> Result<()> {
    with_pod(async |pod, client| {
        let err = error_text(client.exec_sync(&exec_request("ghost", &["true"])).await);
        assert!(err.contains("container 'ghost' not found"), "{err}");
        let err = error_text(client.reopen_log("ghost").await);
        assert!(err.contains("container 'ghost' not found"), "{err}");
        running(pod, client, "dup").await?;
        let again = pod.create_request("dup", pod.bundle("dup2", &["true"])?);
        let err = error_text(client.create_container(&again).await);
        assert!(
            err.contains("container id 'dup' is already in use"),
            "{err}"
        );
        Ok(())
    })
}

#[test]
fn long_runtime_dir_still_serves() -> Result<()> {
    let deep = format!("{}/{}", "a".repeat(60), "b".repeat(60));
    let pod = Pod::start_with(Some(&deep), &[])?;
    assert!(pod.socket().as_os_str().len() > 108);
    run_local(async {
        let client = pod.client().await?;
        assert_eq!(client.version(false).await?.process_id, pod.pid);
        let request = pod.create_request("long", pod.bundle("long", &["true"])?);
        assert_eq!(run_to_exit(&pod, &client, request).await?, "0");
        Ok(())
    })
}

#[test]
fn sigterm_kills_created_containers_and_leaves_nothing() -> Result<()> {
    with_pod(async |pod, client| {
        let request = pod.create_request("term", pod.bundle("term", &["sleep", "1000"])?);
        let exit_path = request.exit_paths[0].clone();
        client.create_container(&request).await?;
        assert_eq!(pod.runc_containers()?, ["term"]);
        pod.terminate(WAIT).await?;
        assert_eq!(std::fs::read_to_string(&exit_path)?, "137");
        assert!(
            pod.runc_containers()?.is_empty(),
            "runc still has containers"
        );
        assert!(!pod.socket().exists(), "socket left behind");
        Ok(())
    })
}

#[test]
fn cleanup_command_runs_after_the_exit_file() -> Result<()> {
    with_pod(async |pod, client| {
        let mut request =
            pod.create_request("clean", pod.bundle("clean", &["sh", "-c", "exit 5"])?);
        let exit_path = request.exit_paths[0].display().to_string();
        let marker = pod.path("cleanup.out");
        // The cleanup command copies the exit file: proof it ran, and ran after the file existed.
        // It renames its output into place so the test never reads a half-written file.
        request.cleanup_cmd = vec![
            "/bin/sh".into(),
            "-c".into(),
            format!(
                "cat {exit_path} > {m}.tmp && mv {m}.tmp {m}",
                m = marker.display()
            ),
        ];
        assert_eq!(run_to_exit(pod, client, request).await?, "5");
        assert_eq!(wait_for_file(&marker, WAIT).await?, "5");
        Ok(())
    })
}

#[test]
fn command_line_answers_version_queries_and_rejects_bad_flags() -> Result<()> {
    let output = std::process::Command::new(conmond_binary())
        .arg("--version-json")
        .output()?;
    assert!(output.status.success());
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(json["cargo_tree"], "");
    let text = std::process::Command::new(conmond_binary())
        .arg("--version")
        .output()?;
    assert!(String::from_utf8(text.stdout)?.starts_with("version: "));

    let bad = std::process::Command::new(conmond_binary())
        .args(["--runtime", RUNC, "--log-driver", "carrier-pigeon"])
        .output()?;
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("carrier-pigeon") && stderr.contains("--log-driver"),
        "{stderr}"
    );

    let env = std::process::Command::new(conmond_binary())
        .env("CONMON_LOG_LEVEL", "loud")
        .output()?;
    assert_eq!(env.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&env.stderr).contains("loud"));
    Ok(())
}

#[test]
fn descriptors_inherited_from_the_engine_are_not_kept() -> Result<()> {
    require_privileged();
    let dir = tempfile::tempdir()?;
    let fifo = dir.path().join("engine.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status()?;
    assert!(made.success(), "mkfifo: {made}");
    // The shell opens the FIFO as fd 7 (not close-on-exec) and executes conmond with it.
    let script = r#"exec 7<>"$0"; exec "$@""#;
    let launcher = [
        "sh".as_ref(),
        "-c".as_ref(),
        script.as_ref(),
        fifo.as_os_str(),
    ];
    let pod = Pod::start_via(&launcher, None, &[])?;
    let held = pod.fd_targets()?;
    assert!(!held.contains(&fifo), "conmond holds {held:?}");
    // Executed again to shed them, it keeps its name (ps, the journal's _COMM).
    let name = std::fs::read_to_string(format!("/proc/{}/comm", pod.pid))?;
    assert_eq!(name.trim_end(), "conmond");
    run_local(async {
        let client = pod.client().await?;
        assert_eq!(client.version(false).await?.process_id, pod.pid);
        Ok(())
    })
}
