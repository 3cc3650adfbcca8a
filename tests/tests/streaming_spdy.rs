//! The streaming server over SPDY/3.1 with real containers, driven by a client that opens
//! streams as client-go's SPDY executor and port forwarder do, and by clients that break the
//! protocol.

use std::time::Duration;

use anyhow::Result;
use testkit::spdy;
use testkit::*;

const WAIT: Duration = Duration::from_secs(30);
const V4: &str = "v4.channel.k8s.io";

fn exec(id: &str, command: &[&str]) -> ServeExec {
    ServeExec {
        id: id.into(),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        stdout: true,
        stderr: true,
        cgroup_manager: CgroupManager::Cgroupfs,
        ..ServeExec::default()
    }
}

async fn start_sleeper(pod: &Pod, client: &MonitorClient, prefix: &str) -> Result<(String, u32)> {
    let id = unique_id(prefix);
    let request = pod.create_request(&id, pod.bundle(&id, &["sleep", "1000"])?);
    let pid = pod.start_container(client, &request).await?;
    Ok((id, pid))
}

/// Runs `command` over SPDY with stdin, stdout and stderr; returns the finished session.
async fn run_exec(
    client: &MonitorClient,
    id: &str,
    command: &[&str],
    stdin: &[u8],
) -> Result<spdy::Session> {
    let mut request = exec(id, command);
    request.stdin = true;
    let url = client.serve_exec(&request).await?;
    let mut session = spdy::connect(&url, &["v5.channel.k8s.io", V4, "v3.channel.k8s.io"]).await?;
    let ids = session.open_streams(&["stdin", "stdout", "stderr"]).await?;
    session.send(ids["stdin"], stdin, true).await?;
    session.receive_to_end().await?;
    Ok(session)
}

#[test]
fn exec_over_spdy_carries_stdio_and_reports_the_exit_like_kubelet() -> Result<()> {
    with_pod(async |pod, client| {
        let (id, _) = start_sleeper(pod, client, "sp").await?;
        // More than SPDY's initial 64 KiB window, which client-go never opens.
        let input = vec![b'x'; 200 * 1024];
        let session = run_exec(
            client,
            &id,
            &["sh", "-c", "cat; echo to-stderr >&2; exit 3"],
            &input,
        )
        .await?;
        assert_eq!(session.protocol, V4, "the client's first the server speaks");
        assert_eq!(session.text("stdout").len(), input.len());
        assert_eq!(session.text("stderr"), "to-stderr\n");
        let status = session.status()?;
        assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
        assert_eq!(status["details"]["causes"][0]["message"], "3");
        assert!(session.went_away_ok());
        assert!(session.resets.is_empty(), "{:?}", session.resets);
        let finished = session
            .streams
            .keys()
            .filter(|s| session.finished.contains(s))
            .count();
        assert_eq!(finished, 4, "every stream ends with FIN");

        // Before v4 the error stream says nothing on success, and only the message on failure.
        for (version, command, want) in [
            ("v3.channel.k8s.io", "exit 0", ""),
            (
                "channel.k8s.io",
                "exit 2",
                "command terminated with non-zero exit code 2",
            ),
        ] {
            let url = client
                .serve_exec(&exec(&id, &["sh", "-c", command]))
                .await?;
            let mut session = spdy::connect(&url, &[version]).await?;
            assert_eq!(session.protocol, version);
            session.open_streams(&["stdout", "stderr"]).await?;
            session.receive_to_end().await?;
            assert_eq!(session.text("error"), want, "{version}");
        }
        Ok(())
    })
}

#[test]
fn tty_exec_and_attach_over_spdy() -> Result<()> {
    with_pod(async |pod, client| {
        let (id, _) = start_sleeper(pod, client, "st").await?;
        let mut request = exec(
            &id,
            &[
                "sh",
                "-c",
                "while [ \"$(stty size)\" != '40 100' ]; do sleep 0.05; done; echo resized",
            ],
        );
        request.tty = true;
        request.stderr = false;
        let url = client.serve_exec(&request).await?;
        let mut session = spdy::connect(&url, &[V4]).await?;
        let ids = session.open_streams(&["stdout", "resize"]).await?;
        // Two sizes in one frame and one split over two: each is applied in turn.
        session
            .send(
                ids["resize"],
                br#"{"Width":80,"Height":24}{"Width":1"#,
                false,
            )
            .await?;
        session
            .send(ids["resize"], b"00,\"Height\":40}\n", false)
            .await?;
        session.receive_to_end().await?;
        assert!(
            session.text("stdout").contains("resized\r\n"),
            "{:?}",
            session.text("stdout")
        );
        assert_eq!(session.status()?["status"], "Success");

        let url = client
            .serve_attach(&ServeAttach {
                id: id.clone(),
                stdout: true,
                stderr: true,
                ..ServeAttach::default()
            })
            .await?;
        let mut attached = spdy::connect(&url, &[V4]).await?;
        let ids = attached.open_streams(&["stdout", "stderr"]).await?;
        let write = exec_request(&id, &["sh", "-c", "echo attached-line > /proc/1/fd/1"]);
        let deadline = std::time::Instant::now() + WAIT;
        while !attached.text("stdout").contains("attached-line\n") {
            assert!(
                std::time::Instant::now() < deadline,
                "no output on the attach stream"
            );
            client.exec_sync(&write).await?;
            tokio::time::timeout(Duration::from_millis(200), attached.receive())
                .await
                .ok();
        }
        assert!(ids.contains_key("error"));
        Ok(())
    })
}

#[test]
fn port_forward_over_spdy_pairs_streams_by_request_id() -> Result<()> {
    with_pod(async |pod, client| {
        let id = unique_id("spp");
        let pid = pod
            .start_web_server(client, &id, "hello from the pod\n")
            .await?;
        let url = client
            .serve_port_forward(format!("/proc/{pid}/ns/net").as_ref())
            .await?;
        let mut session = spdy::connect(&url, &["portforward.k8s.io"]).await?;
        assert_eq!(session.protocol, "portforward.k8s.io");
        let open =
            async |session: &mut spdy::Session, port: &str, request: &str| -> Result<(u32, u32)> {
                let error = session
                    .open(&[
                        ("streamtype", "error"),
                        ("port", port),
                        ("requestid", request),
                    ])
                    .await?;
                let data = session
                    .open(&[
                        ("streamtype", "data"),
                        ("port", port),
                        ("requestid", request),
                    ])
                    .await?;
                Ok((error, data))
            };
        // Two connections to the server, one to a port where nothing listens.
        let (_, first) = open(&mut session, "8080", "0").await?;
        let (_, second) = open(&mut session, "8080", "1").await?;
        let (refused_error, refused_data) = open(&mut session, "8081", "2").await?;
        for data in [first, second] {
            session
                .send(data, b"GET /index.html HTTP/1.0\r\n\r\n", true)
                .await?;
        }
        let deadline = std::time::Instant::now() + WAIT;
        let done = |session: &spdy::Session| {
            session.finished.contains(&first)
                && session.finished.contains(&second)
                && session.resets.iter().any(|(s, _)| *s == refused_data)
        };
        while !done(&session) {
            assert!(std::time::Instant::now() < deadline, "forwards never ended");
            assert!(session.receive().await?, "session ended early");
        }
        for data in [first, second] {
            let response = String::from_utf8_lossy(&session.received[&data]).into_owned();
            assert!(response.starts_with("HTTP/1.1 200 OK"), "{response:?}");
            assert!(response.ends_with("hello from the pod\n"), "{response:?}");
        }
        let refused = String::from_utf8_lossy(&session.received[&refused_error]).into_owned();
        assert!(refused.contains("error forwarding port 8081"), "{refused}");
        assert!(refused.contains("Connection refused"), "{refused}");

        // Streams without kubelet's headers are refused, each by name in conmond's log.
        for headers in [
            vec![("streamtype", "data")],
            vec![("streamtype", "data"), ("port", "http")],
            vec![("streamtype", "data"), ("port", "0")],
            vec![("port", "8080")],
            vec![("streamtype", "stdin"), ("port", "8080")],
        ] {
            let err = session.open(&headers).await.unwrap_err();
            assert!(err.to_string().contains("refused"), "{headers:?}: {err}");
        }
        Ok(())
    })
}

#[test]
fn malformed_spdy_gets_an_answer_and_leaves_the_monitor_serving() -> Result<()> {
    with_pod(async |pod, client| {
        let (id, _) = start_sleeper(pod, client, "sm").await?;
        let mut ping5 = Vec::new();
        conmon_spdy::frame::ping(&mut ping5, 1);
        ping5[7] = 5;
        ping5.push(0);
        let mut bad_block = Vec::new();
        conmon_spdy::frame::syn_stream(&mut bad_block, 1, false, b"\x78\xbbgarbage");
        let huge_data = [0, 0, 0, 1, 0, 0xff, 0xff, 0xff];
        // A client that never opens a stream, held open while the others come and go: it is
        // given up on after kubelet's 30 s (a unit test checks that with a paused clock).
        let silent = spdy::connect(&client.serve_exec(&exec(&id, &["true"])).await?, &[V4]).await?;
        for (name, bytes) in [
            ("bad PING length", &ping5[..]),
            ("header block that does not inflate", &bad_block[..]),
            ("oversized DATA frame", &huge_data[..]),
        ] {
            let url = client.serve_exec(&exec(&id, &["true"])).await?;
            let mut session = spdy::connect(&url, &[V4]).await?;
            session.send_raw(bytes).await?;
            session.receive_to_end().await?;
            assert_eq!(
                session.go_away,
                Some(1),
                "{name}: GOAWAY with PROTOCOL_ERROR"
            );
        }
        // DATA for a stream never opened: reset, and the session goes on.
        let url = client
            .serve_exec(&exec(&id, &["echo", "still here"]))
            .await?;
        let mut session = spdy::connect(&url, &[V4]).await?;
        session.send(99, b"who?", false).await?;
        session.open_streams(&["stdout", "stderr"]).await?;
        session.receive_to_end().await?;
        assert_eq!(session.resets, [(99, 2)], "INVALID_STREAM for stream 99");
        assert_eq!(session.text("stdout"), "still here\n");
        assert_eq!(session.status()?["status"], "Success");
        drop(silent);
        // The monitor is unaffected.
        let result = client
            .exec_sync(&exec_request(&id, &["echo", "ok"]))
            .await?;
        assert_eq!(result.stdout, b"ok\n");
        Ok(())
    })
}

#[test]
fn refused_spdy_upgrades_say_why_with_kubelets_status_codes() -> Result<()> {
    with_pod(async |pod, client| {
        let (id, _) = start_sleeper(pod, client, "sr").await?;
        let url = client.serve_exec(&exec(&id, &["true"])).await?;
        let (status, head, _, _) = spdy::upgrade(&url, &["v99.channel.k8s.io"]).await?;
        assert_eq!(status, 403, "{head}");
        assert!(
            head.contains("X-Accepted-Stream-Protocol-Versions: v4.channel.k8s.io\r\n"),
            "{head}"
        );
        let (status, _, _, _) = spdy::upgrade(&url, &[]).await?;
        assert_eq!(status, 400);
        // Neither consumed the URL.
        let mut session = spdy::connect(&url, &[V4]).await?;
        session.open_streams(&["stdout", "stderr"]).await?;
        session.receive_to_end().await?;
        assert_eq!(session.status()?["status"], "Success");
        Ok(())
    })
}
