//! Faults around the monitor: its runtime missing or failing, signals to it, a container's
//! child killed.

use std::path::Path;
use std::process::Command;

use anyhow::Result;
use testkit::*;

use crate::{Table, WAIT, text};

/// Makes a FIFO at `path`.
pub(crate) fn mkfifo(path: &Path) -> Result<()> {
    let made = Command::new("mkfifo").arg(path).status()?;
    anyhow::ensure!(made.success(), "mkfifo {}: {made}", path.display());
    Ok(())
}

fn signal(pid: u32, name: &str) -> Result<()> {
    let sent = Command::new("kill")
        .args([name, &pid.to_string()])
        .status()?;
    anyhow::ensure!(sent.success(), "kill {name} {pid}: {sent}");
    Ok(())
}

#[test]
fn a_missing_runtime_stops_the_start_with_its_path() -> Result<()> {
    require_privileged();
    let dir = tempfile::tempdir()?;
    let output = Command::new(conmond_binary())
        .args(["--runtime", "/no/such/runtime", "--log-driver", "none"])
        .arg("--runtime-dir")
        .arg(dir.path())
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    let named = stderr.contains("'/no/such/runtime' does not exist");
    assert!(named, "{stderr}");
    Ok(())
}

#[test]
fn a_failing_runtime_is_an_error_that_says_so() -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    // runc, except that every create fails.
    let dir = tempfile::tempdir()?;
    let runtime = dir.path().join("runc");
    let script = format!(
        "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = create ] && {{ echo create refused >&2; exit 1; }}; done\nexec {RUNC} \"$@\"\n"
    );
    std::fs::write(&runtime, script)?;
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o755))?;
    let runtime = runtime.to_str().expect("a UTF-8 temporary path");
    let pod = Pod::start_with(None, &["--runtime", runtime])?;
    run_local(async {
        let client = pod.client().await?;
        let mut t = Table::new(&pod, &client);
        let request = pod.script_request("r", "true")?;
        let created = text(client.create_container(&request).await);
        let expect = "runtime create failed with exit code 1: create refused";
        t.check("runtime failing its create", expect, created).await;
        t.finish().map(drop)
    })
}

#[test]
fn signals_and_killed_children_leave_the_monitor_serving() -> Result<()> {
    with_pod(async |pod, client| {
        let mut t = Table::new(pod, client);
        let stopped = async {
            signal(pod.pid, "-STOP")?;
            let during =
                tokio::time::timeout(std::time::Duration::from_millis(300), client.version(false))
                    .await;
            signal(pod.pid, "-CONT")?;
            Ok(format!("answered while stopped: {}", during.is_ok()))
        };
        t.case(
            "SIGSTOP, then SIGCONT",
            "answered while stopped: false",
            stopped,
        )
        .await;
        let usr1 = async {
            signal(pod.pid, "-USR1")?;
            Ok(format!("{:?}", pod.state().await?.get("containers")))
        };
        t.case("SIGUSR1 (state)", "Some(0)", usr1).await;
        let hup = async {
            signal(pod.pid, "-HUP")?;
            Ok("sent".to_owned())
        };
        t.case("SIGHUP", "sent", hup).await;
        let child_killed = async {
            let request = pod.script_request("kids", "sleep 1000 & wait")?;
            pod.start_container(client, &request).await?;
            let child = wait_for("the container's child", WAIT, || {
                processes_mentioning("sleep 1000").into_iter().find(|&pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
                        status.contains("\nPPid:") && !status.contains("\nPPid:\t1\n")
                    })
                })
            })
            .await?;
            signal(child, "-KILL")?;
            Ok(format!(
                "exit file: {}",
                wait_for_file(&request.exit_paths[0], WAIT).await?
            ))
        };
        t.case(
            "SIGKILL of a container's child",
            "exit file: 137",
            child_killed,
        )
        .await;
        t.finish().map(drop)
    })
}
