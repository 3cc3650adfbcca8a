//! Integration tests: conmond driving real runc containers with a busybox rootfs, as root.

use std::time::Duration;

use anyhow::Result;
use testkit::*;

const WAIT: Duration = Duration::from_secs(30);

/// Creates `id` running `args`, starts it, and returns its exit file contents.
async fn run_to_exit(
    pod: &Pod,
    client: &MonitorClient,
    request: CreateContainer,
) -> Result<String> {
    let exit_path = request.exit_paths[0].clone();
    client.create_container(&request).await?;
    pod.runc(&["start", &request.id])?;
    wait_for_file(&exit_path, WAIT).await
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
        client.create_container(&request).await?;
        pod.runc(&["start", "sig"])?;
        pod.runc(&["kill", "sig", "KILL"])?;
        assert_eq!(wait_for_file(&request.exit_paths[0], WAIT).await?, "137");
        assert_eq!(wait_for_file(&second, WAIT).await?, "137");
        Ok(())
    })
}

#[test]
fn cri_log_has_stdout_stderr_and_partial_lines() -> Result<()> {
    with_pod(async |pod, client| {
        let log = pod.path("cri.log");
        let script = "echo hello; echo oops >&2; printf partial";
        let mut request = pod.create_request("cri", pod.bundle("cri", &["sh", "-c", script])?);
        request.log_drivers = log_to(LogFormat::Cri, &log, 0);
        assert_eq!(run_to_exit(pod, client, request).await?, "0");
        let text = std::fs::read_to_string(&log)?;
        let records: Vec<(&str, &str)> = text
            .lines()
            .map(|line| {
                let (ts, rest) = line.split_once(' ').unwrap();
                assert!(ts.ends_with('Z') && ts.contains('T'), "timestamp {ts}");
                (ts, rest)
            })
            .collect();
        let rest: Vec<&str> = records.iter().map(|(_, rest)| *rest).collect();
        assert!(rest.contains(&"stdout F hello"), "{text}");
        assert!(rest.contains(&"stderr F oops"), "{text}");
        assert!(rest.contains(&"stdout P partial"), "{text}");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&log)?.permissions().mode() & 0o777, 0o600);
        Ok(())
    })
}

#[test]
fn max_size_keeps_the_log_small_and_recent() -> Result<()> {
    with_pod(async |pod, client| {
        let log = pod.path("max.log");
        let script = "for i in $(seq 1 200); do echo line-$i; done";
        let mut request = pod.create_request("max", pod.bundle("max", &["sh", "-c", script])?);
        request.log_drivers = log_to(LogFormat::Cri, &log, 1000);
        assert_eq!(run_to_exit(pod, client, request).await?, "0");
        let text = std::fs::read_to_string(&log)?;
        assert!(text.len() <= 1000, "log is {} bytes", text.len());
        assert!(text.ends_with("stdout F line-200\n"), "{text}");
        assert!(!text.contains("line-1\n"), "{text}");
        Ok(())
    })
}

#[test]
fn reopen_after_rotation_writes_a_new_file() -> Result<()> {
    with_pod(async |pod, client| {
        let log = pod.path("rot.log");
        let rotated = pod.path("rot.log.1");
        let gate = pod.path("bundles/rot/rootfs/tmp/go");
        let script = "echo before; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo after";
        let mut request = pod.create_request("rot", pod.bundle("rot", &["sh", "-c", script])?);
        request.log_drivers = log_to(LogFormat::Cri, &log, 0);
        let exit_path = request.exit_paths[0].clone();
        client.create_container(&request).await?;
        pod.runc(&["start", "rot"])?;
        wait_for("first line", WAIT, || {
            std::fs::read_to_string(&log)
                .ok()
                .filter(|t| t.contains("before"))
        })
        .await?;
        std::fs::rename(&log, &rotated)?;
        client.reopen_log("rot").await?;
        std::fs::write(&gate, "")?;
        assert_eq!(wait_for_file(&exit_path, WAIT).await?, "0");
        let old = std::fs::read_to_string(&rotated)?;
        let new = std::fs::read_to_string(&log)?;
        assert!(
            old.contains("stdout F before") && !old.contains("after"),
            "{old}"
        );
        assert!(
            new.contains("stdout F after") && !new.contains("before"),
            "{new}"
        );
        Ok(())
    })
}

#[test]
fn json_log_has_one_object_per_line() -> Result<()> {
    with_pod(async |pod, client| {
        let log = pod.path("ctr.json");
        let script = "echo '  indented \"q\"'; echo err >&2";
        let mut request = pod.create_request("json", pod.bundle("json", &["sh", "-c", script])?);
        request.log_drivers = log_to(LogFormat::Json, &log, 0);
        assert_eq!(run_to_exit(pod, client, request).await?, "0");
        let records: Vec<serde_json::Value> = std::fs::read_to_string(&log)?
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        let find = |pipe: &str| records.iter().find(|r| r["pipe"] == pipe).cloned().unwrap();
        assert_eq!(find("stdout")["message"], "  indented \"q\"");
        assert_eq!(find("stderr")["message"], "err");
        assert!(find("stdout")["timestamp"].as_u64().unwrap() > 1_700_000_000);
        Ok(())
    })
}

/// A running container for exec tests.
async fn running(pod: &Pod, client: &MonitorClient, id: &str) -> Result<()> {
    let request = pod.create_request(id, pod.bundle(id, &["sleep", "1000"])?);
    client.create_container(&request).await?;
    pod.runc(&["start", id])?;
    Ok(())
}

#[test]
fn exec_sync_returns_output_and_codes() -> Result<()> {
    with_pod(async |pod, client| {
        let log = pod.path("exec.log");
        let mut request = pod.create_request("ex", pod.bundle("ex", &["sleep", "1000"])?);
        request.log_drivers = log_to(LogFormat::Cri, &log, 0);
        client.create_container(&request).await?;
        pod.runc(&["start", "ex"])?;

        let echo = client
            .exec_sync(&exec_request(
                "ex",
                &["sh", "-c", "echo out; echo err >&2; exit 4"],
            ))
            .await?;
        assert_eq!((echo.exit_code, echo.timed_out), (4, false));
        assert_eq!(
            (echo.stdout.as_slice(), echo.stderr.as_slice()),
            (&b"out\n"[..], &b"err\n"[..])
        );

        let invalid = client
            .exec_sync(&exec_request("ex", &["busybox", "invalid"]))
            .await?;
        assert_eq!(invalid.exit_code, 127);
        assert!(String::from_utf8_lossy(&invalid.stderr).contains("invalid: applet not found"));

        let mut slow = exec_request("ex", &["sleep", "30"]);
        slow.timeout = Some(Duration::from_secs(1));
        let started = std::time::Instant::now();
        let timed = client.exec_sync(&slow).await?;
        assert!(timed.timed_out);
        assert!(started.elapsed() < Duration::from_secs(10));

        // Exec output never reaches the container log.
        let text = std::fs::read_to_string(&log)?;
        assert!(!text.contains("out") && !text.contains("err"), "{text}");
        Ok(())
    })
}

#[test]
fn concurrent_exec_syncs_each_get_their_own_output() -> Result<()> {
    with_pod(async |pod, client| {
        running(pod, client, "conc").await?;
        let requests: Vec<ExecSync> = (0..10)
            .map(|i| {
                exec_request(
                    "conc",
                    &["sh", "-c", &format!("sleep 0.2; echo out-{i}; exit {i}")],
                )
            })
            .collect();
        let results = futures::future::join_all(requests.iter().map(|r| client.exec_sync(r))).await;
        for (i, result) in results.into_iter().enumerate() {
            let result = result?;
            assert_eq!(result.exit_code, i as i32);
            assert_eq!(result.stdout, format!("out-{i}\n").into_bytes());
        }
        Ok(())
    })
}

#[test]
fn one_mebibyte_of_exec_output_comes_back_whole() -> Result<()> {
    with_pod(async |pod, client| {
        running(pod, client, "big").await?;
        let result = client
            .exec_sync(&exec_request(
                "big",
                &["sh", "-c", "yes 0123456789abcdef | head -c 1048576"],
            ))
            .await?;
        assert_eq!(result.exit_code, 0);
        assert_eq!(result.stdout.len(), 1 << 20);
        let expected: Vec<u8> = b"0123456789abcdef\n"
            .iter()
            .copied()
            .cycle()
            .take(1 << 20)
            .collect();
        assert!(
            result.stdout == expected,
            "exec output differs from what was written"
        );
        Ok(())
    })
}

#[test]
fn a_256_mib_burst_loses_no_log_byte() -> Result<()> {
    const SIZE: usize = 256 << 20;
    with_pod(async |pod, client| {
        let log = pod.path("burst.log");
        let script = format!("yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c {SIZE}");
        let mut request = pod.create_request("burst", pod.bundle("burst", &["sh", "-c", &script])?);
        request.log_drivers = log_to(LogFormat::Cri, &log, 0);
        assert_eq!(run_to_exit(pod, client, request).await?, "0");
        let stream = cri_stream(&std::fs::read(&log)?, "stdout")?;
        assert_eq!(
            stream.len(),
            SIZE,
            "bytes in the log differ from bytes written"
        );
        let line = b"0123456789abcdefghijklmnopqrstuvwxyz\n";
        let intact = stream
            .chunks(line.len())
            .all(|chunk| line.starts_with(chunk));
        assert!(intact, "log content differs from what the container wrote");
        Ok(())
    })
}

#[test]
fn missing_executable_reports_runc_error_text() -> Result<()> {
    with_pod(async |pod, client| {
        let request = pod.create_request("noexec", pod.bundle("noexec", &["/bin/does-not-exist"])?);
        let err = client
            .create_container(&request)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no such file or directory") || err.contains("not found in $PATH"),
            "{err}"
        );
        assert!(
            pod.runc_containers()?.is_empty(),
            "failed create left a container"
        );
        Ok(())
    })
}

#[test]
fn unknown_and_duplicate_containers_are_errors_that_say_so() -> Result<()> {
    with_pod(async |pod, client| {
        let err = client
            .exec_sync(&exec_request("ghost", &["true"]))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("container 'ghost' not found"), "{err}");
        let err = client.reopen_log("ghost").await.unwrap_err().to_string();
        assert!(err.contains("container 'ghost' not found"), "{err}");
        running(pod, client, "dup").await?;
        let again = pod.create_request("dup", pod.bundle("dup2", &["true"])?);
        let err = client
            .create_container(&again)
            .await
            .unwrap_err()
            .to_string();
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
        std::process::Command::new("kill")
            .args(["-TERM", &pod.pid.to_string()])
            .status()?;
        wait_for("conmond to exit", WAIT, || {
            (!pod.daemon_alive()).then_some(())
        })
        .await?;
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
fn calls_of_later_features_are_clear_errors() -> Result<()> {
    with_pod(async |pod, client| {
        let mut request = client.capnp_client().start_fd_socket_request();
        request.get().init_request();
        let err = request
            .send()
            .promise
            .await
            .err()
            .expect("fd passing is not implemented yet");
        assert_eq!(err.kind, capnp::ErrorKind::Unimplemented);
        assert!(
            err.to_string().contains("not implemented: startFdSocket"),
            "{err}"
        );
        // The monitor keeps serving.
        assert_eq!(client.version(false).await?.process_id, pod.pid);
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
fn terminal_containers_log_tty_output_and_resize() -> Result<()> {
    with_pod(async |pod, client| {
        let log = pod.path("tty.log");
        let gate = pod.path("bundles/tty/rootfs/tmp/go");
        let script = "echo on-a-tty; while [ ! -e /tmp/go ]; do sleep 0.05; done; stty size";
        let bundle = pod.bundle_with("tty", &["sh", "-c", script], |config| {
            config["process"]["terminal"] = true.into();
        })?;
        let mut request = pod.create_request("tty", bundle);
        request.terminal = true;
        request.log_drivers = log_to(LogFormat::Cri, &log, 0);
        let exit_path = request.exit_paths[0].clone();
        client.create_container(&request).await?;
        pod.runc(&["start", "tty"])?;
        client
            .set_window_size(&WindowSize {
                id: "tty".into(),
                width: 91,
                height: 37,
            })
            .await?;
        std::fs::write(&gate, "")?;
        assert_eq!(wait_for_file(&exit_path, WAIT).await?, "0");
        let text = std::fs::read_to_string(&log)?;
        // Terminal output: one stream, CRLF line ends.
        assert!(text.contains("stdout F on-a-tty\r\n"), "{text}");
        assert!(text.contains("stdout F 37 91\r\n"), "{text}");
        assert!(!text.contains("stderr"), "{text}");

        // A container without a terminal cannot be resized.
        running(pod, client, "pipes").await?;
        let err = client
            .set_window_size(&WindowSize {
                id: "pipes".into(),
                width: 80,
                height: 24,
            })
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("container 'pipes' has no terminal"), "{err}");
        Ok(())
    })
}

#[test]
fn attach_streams_output_takes_input_and_ends_on_stdin_eof() -> Result<()> {
    with_pod(async |pod, client| {
        let script = "while read line; do echo out:$line; echo err:$line >&2; done";
        let mut request = pod.create_request("att", pod.bundle("att", &["sh", "-c", script])?);
        request.stdin = true;
        let exit_path = request.exit_paths[0].clone();
        client.create_container(&request).await?;
        pod.runc(&["start", "att"])?;
        let socket = pod.path("att/attach");
        let attach = Attach {
            id: "att".into(),
            socket_path: socket.clone(),
            stop_after_stdin_eof: true,
            ..Attach::default()
        };
        client.attach(&attach).await?;
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&socket)?.permissions().mode() & 0o777,
            0o700
        );
        let socket_path = socket.clone();
        // Blocking socket I/O runs off the thread that serves the RPC connection.
        tokio::task::spawn_blocking(move || -> Result<()> {
            let first = seqpacket_connect(&socket_path)?;
            let second = seqpacket_connect(&socket_path)?;
            first.send_input(b"hello\n")?;
            for reader in [&first, &second] {
                let (out, err, _) = read_attach(reader, |out, err| {
                    out.ends_with(b"out:hello\n") && err.ends_with(b"err:hello\n")
                })?;
                assert_eq!(
                    (out.as_slice(), err.as_slice()),
                    (&b"out:hello\n"[..], &b"err:hello\n"[..])
                );
            }
            // stdin EOF ends the container's input: its loop ends, the container exits, and
            // the clients get the end packet.
            first.close_input()?;
            let (_, _, ended) = read_attach(&second, |_, _| false)?;
            assert!(ended, "no end packet");
            Ok(())
        })
        .await??;
        assert_eq!(wait_for_file(&exit_path, WAIT).await?, "0");
        wait_for("attach socket removed", WAIT, || {
            (!socket.exists()).then_some(())
        })
        .await?;
        Ok(())
    })
}

#[test]
fn attach_to_a_terminal_echoes_input_and_forwards_it() -> Result<()> {
    with_pod(async |pod, client| {
        let bundle = pod.bundle_with("ttyatt", &["sh"], |config| {
            config["process"]["terminal"] = true.into();
        })?;
        let mut request = pod.create_request("ttyatt", bundle);
        request.terminal = true;
        request.stdin = true;
        client.create_container(&request).await?;
        pod.runc(&["start", "ttyatt"])?;
        let socket = pod.path("ttyatt/attach");
        let attach = Attach {
            id: "ttyatt".into(),
            socket_path: socket.clone(),
            ..Attach::default()
        };
        client.attach(&attach).await?;
        tokio::task::spawn_blocking(move || -> Result<()> {
            let attached = seqpacket_connect(&socket)?;
            attached.send_input(b"echo tty-$((6*7))\n")?;
            let (out, err, _) = read_attach(&attached, |out, _| {
                String::from_utf8_lossy(out).contains("tty-42\r\n")
            })?;
            let out = String::from_utf8_lossy(&out);
            // The terminal echoes the typed line, then the shell's output follows; all on stdout.
            assert!(out.contains("echo tty-$((6*7))"), "{out}");
            assert!(err.is_empty());
            attached.send_input(b"exit 4\n")?;
            Ok(())
        })
        .await??;
        assert_eq!(wait_for_file(&request.exit_paths[0], WAIT).await?, "4");
        Ok(())
    })
}

#[test]
fn exec_sync_on_a_terminal_returns_one_crlf_stream() -> Result<()> {
    with_pod(async |pod, client| {
        let id = unique_id("ttyexec");
        running(pod, client, &id).await?;
        let mut request = exec_request(&id, &["sh", "-c", "tty; echo out; echo err >&2; exit 2"]);
        request.terminal = true;
        let result = client.exec_sync(&request).await?;
        let out = String::from_utf8_lossy(&result.stdout);
        assert_eq!(result.exit_code, 2, "{out}");
        assert!(out.starts_with("/dev/pts/"), "{out:?}");
        assert!(out.ends_with("out\r\nerr\r\n"), "{out:?}");
        assert!(result.stderr.is_empty());

        let mut request = exec_request(&id, &["sleep", "100"]);
        request.terminal = true;
        request.timeout = Some(Duration::from_secs(1));
        let result = client.exec_sync(&request).await?;
        assert!(result.timed_out);
        assert_eq!(result.exit_code, -3);
        Ok(())
    })
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
    let held: Vec<std::path::PathBuf> = std::fs::read_dir(format!("/proc/{}/fd", pod.pid))?
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .collect();
    assert!(!held.contains(&fifo), "conmond holds {held:?}");
    run_local(async {
        let client = pod.client().await?;
        assert_eq!(client.version(false).await?.process_id, pod.pid);
        Ok(())
    })
}
