//! Hardening: inputs and faults that once crashed, blocked or leaked the monitor. Each test
//! checks that the monitor answers correctly and keeps serving afterwards.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::Result;
use testkit::*;

const WAIT: Duration = Duration::from_secs(30);

/// The monitor still answers, as the same process.
async fn still_serving(pod: &Pod, client: &MonitorClient) -> Result<()> {
    assert!(pod.daemon_alive(), "conmond died");
    assert_eq!(client.version(false).await?.process_id, pod.pid);
    Ok(())
}

/// Descriptors the monitor holds once it has accepted `client`'s connection (it accepts only
/// when it gets to it: a round trip makes sure).
async fn settled_fd_count(pod: &Pod, client: &MonitorClient) -> Result<usize> {
    still_serving(pod, client).await?;
    Ok(pod.fd_targets()?.len())
}

#[test]
fn an_exec_timeout_too_large_for_a_deadline_means_no_deadline() -> Result<()> {
    with_pod(async |pod, client| {
        let request = pod.create_request("t", pod.bundle("t", &["sleep", "1000"])?);
        pod.start_container(client, &request).await?;
        let mut exec = exec_request("t", &["echo", "in time"]);
        exec.timeout = Some(Duration::from_secs(u64::MAX));
        let reply = client.exec_sync(&exec).await?;
        assert_eq!((reply.exit_code, reply.timed_out), (0, false));
        assert_eq!(reply.stdout, b"in time\n");
        still_serving(pod, client).await
    })
}

#[test]
fn exited_containers_release_their_descriptors() -> Result<()> {
    with_pod(async |pod, client| {
        let run = async |id: &str| -> Result<()> {
            let mut request = pod.script_request(id, "echo out; echo err >&2")?;
            request.stdin = true;
            request.log_drivers = log_to(LogFormat::Cri, &pod.path(&format!("{id}.log")), 0);
            pod.start_container(client, &request).await?;
            assert_eq!(wait_for_file(&request.exit_paths[0], WAIT).await?, "0");
            Ok(())
        };
        // After one container, whatever the monitor opens once is open.
        run("first").await?;
        let baseline = pod.fd_targets()?.len();
        for n in 0..30 {
            run(&format!("c{n}")).await?;
        }
        // Retiring follows the exit file closely, but not in the same instant.
        wait_for("descriptors back at the baseline", WAIT, || {
            let fds = pod.fd_targets().ok()?;
            (fds.len() <= baseline + 2).then_some(())
        })
        .await?;
        // What a later request learns about an exited container.
        let err = error_text(client.exec_sync(&exec_request("c7", &["true"])).await);
        assert!(
            err.contains("container 'c7' is not running (exited with code 0)"),
            "{err}"
        );
        let err = error_text(client.reopen_log("c7").await);
        assert!(err.contains("exited with code 0"), "{err}");
        still_serving(pod, client).await
    })
}

#[test]
fn running_out_of_descriptors_backs_off_instead_of_spinning() -> Result<()> {
    with_pod(async |pod, client| {
        let baseline = settled_fd_count(pod, client).await?;
        let limit = baseline + 4;
        pod.set_fd_limit(limit)?;
        // Clients beyond the limit wait in the listen backlog while accepts fail with EMFILE.
        let clients: Vec<UnixStream> = (0..20)
            .map(|_| UnixStream::connect(pod.socket()))
            .collect::<Result<_, _>>()?;
        wait_for("conmond at its descriptor limit", WAIT, || {
            (pod.fd_targets().ok()?.len() >= limit).then_some(())
        })
        .await?;
        // A measurement window, not a synchronisation: a spinning accept loop burns it all.
        let before = pod.cpu_ticks()?;
        std::thread::sleep(Duration::from_secs(2));
        let used = pod.cpu_ticks()? - before;
        assert!(
            used < 20,
            "conmond used {used} ticks of CPU in 2 s at EMFILE"
        );
        let warnings = pod.log_text().matches("accept rpc connection").count();
        assert!(warnings <= 2, "{warnings} accept warnings in 2 s");
        drop(clients);
        pod.set_fd_limit(1024)?;
        still_serving(pod, client).await
    })
}

#[test]
fn a_connection_flood_is_capped_and_released() -> Result<()> {
    with_pod(async |pod, client| {
        let baseline = settled_fd_count(pod, client).await?;
        let mut clients: Vec<UnixStream> = (0..300)
            .map(|_| UnixStream::connect(pod.socket()))
            .collect::<Result<_, _>>()?;
        // Connections past the cap are closed at once: their first read sees end of file.
        let refused = clients.pop().expect("300 clients");
        refused.set_read_timeout(Some(WAIT))?;
        assert_eq!(
            (&refused).read(&mut [0; 8])?,
            0,
            "the 300th connection was served"
        );
        let held = pod.fd_targets()?.len();
        assert!(held <= baseline + 256, "conmond holds {held} descriptors");
        drop(clients);
        wait_for("flood released", WAIT, || {
            (pod.fd_targets().ok()?.len() <= baseline).then_some(())
        })
        .await?;
        still_serving(pod, client).await
    })
}

#[test]
fn an_oversized_request_frame_ends_its_connection_only() -> Result<()> {
    with_pod(async |pod, client| {
        let rss = pod.anonymous_rss_kib()?;
        let mut stream = UnixStream::connect(pod.socket())?;
        stream.set_read_timeout(Some(WAIT))?;
        // A frame header announcing one segment of 2^24 words (128 MiB), then some of it.
        let mut frame = vec![0, 0, 0, 0, 0, 0, 0, 1];
        frame.extend_from_slice(&[0xAB; 64 * 1024]);
        // The monitor may close the connection before all of it is written.
        let _ = stream.write_all(&frame);
        // The monitor may say why (an RPC abort message) before it closes the connection, or
        // reset it for the bytes it left unread.
        match stream.read_to_end(&mut Vec::new()) {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(err) => anyhow::bail!("the connection stays open: {err}"),
        }
        let grown = pod.anonymous_rss_kib()?.saturating_sub(rss);
        assert!(grown < 8 * 1024, "conmond grew by {grown} KiB");
        still_serving(pod, client).await
    })
}

/// Makes a FIFO at `path`.
fn mkfifo(path: &std::path::Path) -> Result<()> {
    let made = std::process::Command::new("mkfifo").arg(path).status()?;
    anyhow::ensure!(made.success(), "mkfifo {}: {made}", path.display());
    Ok(())
}

#[test]
fn fifo_paths_are_refused_without_blocking_the_monitor() -> Result<()> {
    with_pod(async |pod, client| {
        let fifo = pod.path("log.fifo");
        mkfifo(&fifo)?;
        let mut request = pod.script_request("fifo", "echo hi")?;
        request.log_drivers = log_to(LogFormat::Cri, &fifo, 0);
        let err = error_text(client.create_container(&request).await);
        assert!(err.contains("log.fifo") && err.contains("FIFO"), "{err}");
        let err = error_text(client.serve_port_forward(&fifo).await);
        assert!(
            err.contains("log.fifo") && err.contains("is a FIFO"),
            "{err}"
        );
        assert!(pod.runc_containers()?.is_empty(), "a container was left");
        still_serving(pod, client).await
    })
}

#[test]
fn symlinks_at_log_and_exit_paths_are_not_written_through() -> Result<()> {
    with_pod(async |pod, client| {
        let victim = pod.path("victim");
        std::fs::write(&victim, "precious")?;
        let link = pod.path("ctr.log");
        std::os::unix::fs::symlink(&victim, &link)?;
        let mut request = pod.script_request("link", "echo overwritten")?;
        request.log_drivers = log_to(LogFormat::Cri, &link, 0);
        let err = error_text(client.create_container(&request).await);
        assert!(err.contains("symbolic link"), "{err}");

        // An exit path that is a symlink is replaced, not written through.
        let exit_link = pod.path("exit-link");
        std::os::unix::fs::symlink(&victim, &exit_link)?;
        let mut request = pod.script_request("exit", "exit 3")?;
        request.exit_paths = vec![exit_link.clone()];
        pod.start_container(client, &request).await?;
        wait_for("the exit file in place of the link", WAIT, || {
            (!exit_link.is_symlink()).then_some(())
        })
        .await?;
        assert_eq!(std::fs::read_to_string(&exit_link)?, "3");
        assert_eq!(std::fs::read_to_string(&victim)?, "precious");
        still_serving(pod, client).await
    })
}

#[test]
fn an_attach_path_replaces_only_a_stale_socket() -> Result<()> {
    with_pod(async |pod, client| {
        let request = pod.create_request("att", pod.bundle("att", &["sleep", "1000"])?);
        pod.start_container(client, &request).await?;
        let file = pod.path("not-a-socket");
        std::fs::write(&file, "keep")?;
        let attach = Attach {
            id: "att".into(),
            socket_path: file.clone(),
            ..Attach::default()
        };
        let err = error_text(client.attach(&attach).await);
        assert!(
            err.contains("not-a-socket") && err.contains("not a socket"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&file)?, "keep");
        // A socket someone listens on is not taken over either.
        let live = pod.path("live.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&live)?;
        let attach = Attach {
            socket_path: live,
            ..attach
        };
        let err = error_text(client.attach(&attach).await);
        assert!(err.contains("in use"), "{err}");
        still_serving(pod, client).await
    })
}

#[test]
fn console_sockets_live_in_the_monitors_own_directory() -> Result<()> {
    with_pod(async |pod, client| {
        let bundle = pod.bundle_with("tty", &["sleep", "1000"], |config| {
            config["process"]["terminal"] = true.into();
        })?;
        let mut request = pod.create_request("tty", bundle);
        request.terminal = true;
        pod.start_container(client, &request).await?;
        let dir = pod.runtime_dir.join("term");
        assert_eq!(std::fs::metadata(&dir)?.permissions().mode() & 0o777, 0o700);
        let mut exec = exec_request("tty", &["tty"]);
        exec.terminal = true;
        let reply = client.exec_sync(&exec).await?;
        assert_eq!(
            reply.exit_code,
            0,
            "{:?}",
            String::from_utf8_lossy(&reply.stdout)
        );
        // Nothing of the monitor's in the shared temporary directory.
        let shared = std::fs::read_dir(std::env::temp_dir())?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.starts_with("conmond-term"))
            .count();
        assert_eq!(shared, 0);
        still_serving(pod, client).await
    })
}

#[test]
fn shim_names_never_reach_outside_the_root() -> Result<()> {
    let cli = ShimEnv::new("")?;
    let outside = cli.dir().join("outside");
    std::fs::create_dir_all(&outside)?;
    for args in [
        ["pod", "rm", "../../outside"],
        ["pod", "stop", "../outside"],
        ["logs", "..", ""],
    ] {
        let args: Vec<&str> = args.into_iter().filter(|a| !a.is_empty()).collect();
        let output = cli.run(&args)?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(
            stderr.contains("invalid") || stderr.contains("name"),
            "{args:?}: {stderr}"
        );
        assert!(
            outside.is_dir(),
            "{args:?} removed a directory outside the root"
        );
    }
    Ok(())
}

/// A runtime wrapper in its own directory: runc, except that for `subcommand` it runs `shell`
/// (with the arguments in `$@`).
fn wrapped_runc(subcommand: &str, shell: &str) -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let script = format!(
        "#!/bin/sh\nfor a in \"$@\"; do if [ \"$a\" = {subcommand} ]; then {shell}; fi; done\nexec {RUNC} \"$@\"\n"
    );
    let path = dir.path().join("runc");
    std::fs::write(&path, script)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

/// How long hung runtimes sleep: unique to each test, so their processes can be found.
const HUNG_CREATE: &str = "4321.0123";
const HUNG_EXEC: &str = "4321.0456";

/// Runs `test` against a pod whose runtime is runc wrapped by [`wrapped_runc`], with a 2 s
/// runtime timeout.
fn with_wrapped_runc(
    subcommand: &str,
    shell: &str,
    test: impl AsyncFnOnce(&Pod, &MonitorClient) -> Result<()>,
) -> Result<()> {
    let runtime = wrapped_runc(subcommand, shell)?;
    let runtime = runtime.path().join("runc");
    let runtime = runtime.to_str().expect("a UTF-8 temporary path");
    let pod = Pod::start_with(None, &["--runtime", runtime, "--runtime-timeout", "2"])?;
    run_local(async {
        let client = pod.client().await?;
        test(&pod, &client).await
    })
}

#[test]
fn a_hung_create_is_killed_deleted_and_its_id_released() -> Result<()> {
    let hang = format!("exec sleep {HUNG_CREATE}");
    let after_create = format!("{RUNC} \"$@\"; exec sleep {HUNG_CREATE}");
    for (case, shell) in [("hangs", hang), ("creates, then hangs", after_create)] {
        with_wrapped_runc("create", &shell, async |pod, client| {
            let request = pod.create_request("hung", pod.bundle("hung", &["true"])?);
            let err = error_text(client.create_container(&request).await);
            assert!(
                err.contains("runtime create did not finish"),
                "{case}: {err}"
            );
            assert!(
                pod.runc_containers()?.is_empty(),
                "{case}: a container was left"
            );
            assert!(
                processes_mentioning(HUNG_CREATE).is_empty(),
                "{case}: the runtime lives on"
            );
            // The ID is free again: the same request fails the same way, not as a duplicate.
            let again = error_text(client.create_container(&request).await);
            assert!(again.contains("did not finish"), "{case}: {again}");
            still_serving(pod, client).await
        })?;
    }
    Ok(())
}

#[test]
fn an_exec_deadline_kills_a_hung_runtime_exec() -> Result<()> {
    with_wrapped_runc(
        "exec",
        &format!("exec sleep {HUNG_EXEC}"),
        async |pod, client| {
            let request = pod.create_request("e", pod.bundle("e", &["sleep", "1000"])?);
            pod.start_container(client, &request).await?;
            let mut exec = exec_request("e", &["true"]);
            exec.timeout = Some(Duration::from_secs(1));
            let reply = client.exec_sync(&exec).await?;
            assert!(reply.timed_out, "{reply:?}");
            assert!(
                processes_mentioning(HUNG_EXEC).is_empty(),
                "the runtime lives on"
            );
            still_serving(pod, client).await
        },
    )
}

#[test]
fn a_create_whose_client_left_is_still_supervised() -> Result<()> {
    // The runtime takes a second longer than the client waits.
    let slow = format!("{RUNC} \"$@\"; sleep 1; exit");
    with_wrapped_runc("create", &slow, async |pod, client| {
        let request = pod.script_request("left", "echo bye")?;
        let gave_up = tokio::time::timeout(Duration::from_millis(300), async {
            client.create_container(&request).await
        })
        .await;
        assert!(gave_up.is_err(), "the create did not outlast the client");
        // The create completes in the monitor: it knows the container and supervises it.
        wait_for_async("the abandoned create to finish", WAIT, async || {
            client.reopen_log("left").await.ok()
        })
        .await?;
        pod.runc(&["start", "left"])?;
        assert_eq!(wait_for_file(&request.exit_paths[0], WAIT).await?, "0");
        still_serving(pod, client).await
    })
}

/// A tmpfs of `size` mounted at `dir` for the life of the value.
struct SmallFs(std::path::PathBuf);

impl SmallFs {
    fn mount(dir: std::path::PathBuf, size: &str) -> Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()?;
        anyhow::ensure!(mounted.success(), "mount tmpfs: {mounted}");
        Ok(Self(dir))
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_log_file_system_drops_whole_records_and_resumes() -> Result<()> {
    with_pod(async |pod, client| {
        let small = SmallFs::mount(pod.path("small"), "64k")?;
        let filler = small.0.join("filler");
        std::fs::write(&filler, vec![b'x'; 32 * 1024])?;
        let log = small.0.join("ctr.log");
        let reached = pod.path("bundles/full/rootfs/tmp/reached");
        let gate = pod.path("bundles/full/rootfs/tmp/go");
        // Far more output than fits, then a line once space came back.
        let script = "i=0; while [ $i -lt 3000 ]; do echo line-$i-abcdefghijklmnopqrstuvwxyz; \
                      i=$((i+1)); done; touch /tmp/reached; \
                      while [ ! -e /tmp/go ]; do sleep 0.05; done; echo after-space-returned";
        let mut request = pod.script_request("full", script)?;
        request.log_drivers = log_to(LogFormat::Cri, &log, 0);
        pod.start_container(client, &request).await?;
        // The container is not blocked by the full file system.
        wait_for("the container past its output", WAIT, || {
            reached.exists().then_some(())
        })
        .await?;
        std::fs::remove_file(&filler)?;
        std::fs::write(&gate, "")?;
        assert_eq!(wait_for_file(&request.exit_paths[0], WAIT).await?, "0");
        let text = std::fs::read_to_string(&log)?;
        assert!(
            text.ends_with("stdout F after-space-returned\n"),
            "the log did not resume"
        );
        for line in text.lines() {
            let fields: Vec<&str> = line.splitn(4, ' ').collect();
            let whole = fields.len() == 4
                && fields[1] == "stdout"
                && fields[2] == "F"
                && (fields[3] == "after-space-returned"
                    || fields[3]
                        .strip_prefix("line-")
                        .and_then(|rest| rest.strip_suffix("-abcdefghijklmnopqrstuvwxyz"))
                        .is_some_and(|n| n.parse::<u32>().is_ok()));
            assert!(whole, "a torn record: {line:?}");
        }
        // Each outage is reported when it starts and when it ends. Near the limit a record can
        // still fit the room a failed one left in the file's last page, so one outage may show
        // as several.
        let conmond = pod.log_text();
        let failing = conmond.matches("until it works again").count();
        let resumed = conmond
            .matches("resumed after dropping whole records")
            .count();
        assert!(failing >= 1 && failing == resumed, "{conmond}");
        still_serving(pod, client).await
    })
}

#[test]
fn exit_files_on_an_unusable_file_system_fail_the_create() -> Result<()> {
    with_pod(async |pod, client| {
        let small = SmallFs::mount(pod.path("full"), "16k")?;
        std::fs::write(small.0.join("filler"), vec![b'x'; 16 * 1024]).ok();
        let mut request = pod.script_request("nospace", "true")?;
        request.exit_paths = vec![small.0.join("nospace.exit")];
        let err = error_text(client.create_container(&request).await);
        assert!(
            err.contains("nospace.exit") && err.contains("full file system"),
            "{err}"
        );
        let mut request = pod.script_request("nodir", "true")?;
        request.exit_paths = vec![pod.path("missing/nodir.exit")];
        let err = error_text(client.create_container(&request).await);
        assert!(
            err.contains("nodir.exit") && err.contains("cannot be used"),
            "{err}"
        );
        assert!(pod.runc_containers()?.is_empty());
        still_serving(pod, client).await
    })
}
