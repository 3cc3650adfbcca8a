//! Terminal containers and attach sockets.

use anyhow::Result;
use testkit::*;

use crate::{WAIT, running};

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
        pod.start_container(client, &request).await?;
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
        let mut request = pod.script_request("att", script)?;
        request.stdin = true;
        let exit_path = request.exit_paths[0].clone();
        pod.start_container(client, &request).await?;
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
        pod.start_container(client, &request).await?;
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
fn a_runtime_failing_after_connecting_the_console_reports_its_own_error() -> Result<()> {
    with_pod(async |pod, client| {
        // runc 1.1's init alone needs more than 1 MiB, so runc connects to the console socket
        // and then fails setting the limit.
        let bundle = pod.bundle_with("tight", &["true"], |config| {
            config["process"]["terminal"] = true.into();
            config["linux"]["resources"]["memory"] = serde_json::json!({"limit": 1 << 20});
        })?;
        let mut request = pod.create_request("tight", bundle);
        request.terminal = true;
        let err = error_text(client.create_container(&request).await);
        assert!(err.contains("runtime create failed"), "{err}");
        assert!(err.contains("memory limit"), "{err}");
        Ok(())
    })
}
