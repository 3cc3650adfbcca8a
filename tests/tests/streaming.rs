//! The Kubernetes streaming server (serveExecContainer, serveAttachContainer,
//! servePortForwardContainer) with real containers and a websocket client speaking kubectl's
//! channel protocol.

use std::time::Duration;

use anyhow::Result;
use testkit::k8s::{self, STDERR, STDIN, STDOUT};
use testkit::*;

const WAIT: Duration = Duration::from_secs(30);
const V5_V4: &str = "v5.channel.k8s.io, v4.channel.k8s.io";

/// Creates and starts container `id` running `args` (with stdin open when `stdin`); returns
/// its PID.
async fn start(
    pod: &Pod,
    client: &MonitorClient,
    id: &str,
    args: &[&str],
    stdin: bool,
) -> Result<u32> {
    let mut request = pod.create_request(id, pod.bundle(id, args)?);
    request.stdin = stdin;
    let pid = pod.start_container(client, &request).await?;
    Ok(pid)
}

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

#[test]
fn exec_streams_pipes_takes_stdin_until_half_close_and_reports_the_exit() -> Result<()> {
    with_pod(async |pod, client| {
        let id = unique_id("sx");
        start(pod, client, &id, &["sleep", "1000"], false).await?;

        let mut request = exec(&id, &["sh", "-c", "cat; echo to-stderr >&2; exit 3"]);
        request.stdin = true;
        let url = client.serve_exec(&request).await?;
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        assert!(url.contains("/exec/"), "{url}");
        let mut session = k8s::connect(&url, V5_V4).await?;
        assert_eq!(session.protocol, "v5.channel.k8s.io");
        session.send(STDIN, b"hello over stdin\n").await?;
        session
            .receive_until("the echo", |received| {
                received
                    .get(&STDOUT)
                    .is_some_and(|out| out.ends_with(b"\n"))
            })
            .await?;
        // Half-close: cat sees end of file, the rest of the script runs.
        session.close_channel(STDIN).await?;
        session.receive_to_end().await?;
        assert_eq!(session.channel_text(STDOUT), "hello over stdin\n");
        assert_eq!(session.channel_text(STDERR), "to-stderr\n");
        let status = session.status()?;
        assert_eq!(status["status"], "Failure", "{status}");
        assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
        assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "3");
        assert_eq!(session.close_code, Some(1000));

        // An older client (v4 only) gets the same, and Success for exit 0.
        let url = client.serve_exec(&exec(&id, &["echo", "fine"])).await?;
        let mut session = k8s::connect(&url, "v4.channel.k8s.io").await?;
        assert_eq!(session.protocol, "v4.channel.k8s.io");
        session.receive_to_end().await?;
        assert_eq!(session.channel_text(STDOUT), "fine\n");
        assert_eq!(session.status()?["status"], "Success");

        // The exec's output never reaches the container's own output.
        let result = client.exec_sync(&exec_request(&id, &["true"])).await?;
        assert_eq!(result.exit_code, 0);
        Ok(())
    })
}

#[test]
fn exec_speaks_every_subprotocol_kubelets_library_serves() -> Result<()> {
    with_pod(async |pod, client| {
        let id = unique_id("sproto");
        start(pod, client, &id, &["sleep", "1000"], false).await?;
        for protocol in [
            "",
            "channel.k8s.io",
            "base64.channel.k8s.io",
            "v4.channel.k8s.io",
            "v4.base64.channel.k8s.io",
            "v5.channel.k8s.io",
        ] {
            let mut request = exec(&id, &["sh", "-c", "head -c 3; echo; echo e >&2; exit 3"]);
            request.stdin = true;
            let url = client.serve_exec(&request).await?;
            let mut session = k8s::connect(&url, protocol).await?;
            assert_eq!(session.protocol, protocol);
            session.send(STDIN, b"abc").await?;
            session.receive_to_end().await?;
            assert_eq!(session.channel_text(STDOUT), "abc\n", "{protocol}");
            assert_eq!(session.channel_text(STDERR), "e\n", "{protocol}");
            if protocol.starts_with('v') {
                let status = session.status()?;
                assert_eq!(status["reason"], "NonZeroExitCode", "{protocol}: {status}");
            } else {
                // Before v4 the status channel carries the error's message only.
                let text = session.channel_text(k8s::STATUS);
                assert_eq!(
                    text, "command terminated with non-zero exit code 3",
                    "{protocol}"
                );
            }
        }
        Ok(())
    })
}

#[test]
fn exec_on_a_tty_echoes_and_sees_resizes() -> Result<()> {
    with_pod(async |pod, client| {
        let id = unique_id("stty");
        start(pod, client, &id, &["sleep", "1000"], false).await?;
        let mut request = exec(&id, &["sh"]);
        request.tty = true;
        request.stdin = true;
        request.stderr = false;
        let url = client.serve_exec(&request).await?;
        let mut session = k8s::connect(&url, V5_V4).await?;
        session.resize(123, 45).await?;
        session.send(STDIN, b"stty size; exit 5\n").await?;
        session.receive_to_end().await?;
        let out = session.channel_text(STDOUT);
        // The terminal echoes the typed line; the answer follows with CRLF.
        assert!(out.contains("stty size; exit 5"), "{out:?}");
        assert!(out.contains("45 123\r\n"), "{out:?}");
        assert!(session.channel_text(STDERR).is_empty());
        let status = session.status()?;
        assert_eq!(status["details"]["causes"][0]["message"], "5", "{status}");
        Ok(())
    })
}

#[test]
fn attach_streams_reach_every_client_and_end_with_the_container() -> Result<()> {
    with_pod(async |pod, client| {
        let id = unique_id("sat");
        let script =
            "while read l; do [ \"$l\" = quit ] && exit 0; echo out:$l; echo err:$l >&2; done";
        let command = format!("echo early; {script}");
        let mut request = pod.script_request(&id, &command)?;
        request.stdin = true;
        let log = pod.path("sat.log");
        request.log_drivers = log_to(LogFormat::Cri, &log, 0);
        pod.start_container(client, &request).await?;
        // Output from before the attach, which it must not replay.
        wait_for_text(&log, "early", WAIT).await?;
        let attach = ServeAttach {
            id: id.clone(),
            stdin: true,
            stdout: true,
            stderr: true,
        };
        let mut first = k8s::connect(&client.serve_attach(&attach).await?, V5_V4).await?;
        let mut second = k8s::connect(&client.serve_attach(&attach).await?, V5_V4).await?;
        first.send(STDIN, b"one\n").await?;
        for session in [&mut first, &mut second] {
            session
                .receive_until("out:one and err:one", |received| {
                    received
                        .get(&STDOUT)
                        .is_some_and(|o| o.ends_with(b"out:one\n"))
                        && received
                            .get(&STDERR)
                            .is_some_and(|e| e.ends_with(b"err:one\n"))
                })
                .await?;
            // No replay of output from before the attach.
            assert_eq!(session.channel_text(STDOUT), "out:one\n");
        }
        // Input from the second client reaches the same container.
        second.send(STDIN, b"two\nquit\n").await?;
        for session in [&mut first, &mut second] {
            session.receive_to_end().await?;
            assert_eq!(session.channel_text(STDOUT), "out:one\nout:two\n");
            assert_eq!(session.status()?["status"], "Success");
            assert_eq!(session.close_code, Some(1000));
        }
        assert_eq!(
            wait_for_file(&pod.path(&format!("{id}.exit")), WAIT).await?,
            "0"
        );
        Ok(())
    })
}

#[test]
fn port_forward_reaches_a_server_inside_the_pod_network_namespace() -> Result<()> {
    with_pod(async |pod, client| {
        let id = unique_id("spf");
        let pid = pod
            .start_web_server(client, &id, "hello from the pod\n")
            .await?;
        let netns = format!("/proc/{pid}/ns/net");

        let url = client.serve_port_forward(netns.as_ref()).await?;
        assert!(url.contains("/port-forward/"), "{url}");
        // Port 8080 has the server; 8081 has nothing listening.
        let mut session = k8s::connect(&format!("{url}?ports=8080,8081"), V5_V4).await?;
        // The client's first choice, as kubelet picks.
        assert_eq!(session.protocol, "v5.channel.k8s.io");
        session
            .send(0, b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n")
            .await?;
        session.receive_to_end().await?;
        // The first message on each channel is its port, little-endian.
        let firsts: Vec<&(u8, Vec<u8>)> = (0..4)
            .map(|channel| {
                session
                    .messages
                    .iter()
                    .find(|(c, _)| *c == channel)
                    .expect("a message on every channel")
            })
            .collect();
        assert_eq!(firsts[0].1, 8080u16.to_le_bytes());
        assert_eq!(firsts[1].1, 8080u16.to_le_bytes());
        assert_eq!(firsts[2].1, 8081u16.to_le_bytes());
        assert_eq!(firsts[3].1, 8081u16.to_le_bytes());
        let text =
            |channel: u8| String::from_utf8_lossy(&session.received[&channel][2..]).into_owned();
        let response = text(0);
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response:?}");
        assert!(response.ends_with("hello from the pod\n"), "{response:?}");
        let refused = text(3);
        assert!(refused.contains("error forwarding port 8081"), "{refused}");
        assert!(refused.contains("Connection refused"), "{refused}");
        assert_eq!(text(1), "", "no error for 8080");
        assert_eq!(session.close_code, Some(1000));

        // kubelet's `port` parameter, in each subprotocol its library serves for port-forward.
        for protocol in ["", "v4.channel.k8s.io", "v4.base64.channel.k8s.io"] {
            let url = client.serve_port_forward(netns.as_ref()).await?;
            let mut session = k8s::connect(&format!("{url}?port=8080"), protocol).await?;
            assert_eq!(session.protocol, protocol);
            session.send(0, b"GET / HTTP/1.0\r\n\r\n").await?;
            session.receive_to_end().await?;
            let response = String::from_utf8_lossy(&session.received[&0][2..]).into_owned();
            assert!(
                response.ends_with("hello from the pod\n"),
                "{protocol}: {response:?}"
            );
        }
        Ok(())
    })
}

#[test]
fn bad_urls_and_requests_get_clear_errors() -> Result<()> {
    let pod = Pod::start_with(None, &["--streaming-url-ttl-ms", "300"])?;
    run_local(async {
        let client = pod.client().await?;
        let id = unique_id("sbad");
        start(&pod, &client, &id, &["sleep", "1000"], false).await?;

        let err = error_text(
            client
                .serve_exec(&exec("no-such-container", &["true"]))
                .await,
        );
        assert!(
            err.contains("container 'no-such-container' not found"),
            "{err}"
        );
        let err = error_text(
            client
                .serve_port_forward("/nonexistent/netns".as_ref())
                .await,
        );
        assert!(
            err.contains("open network namespace '/nonexistent/netns'"),
            "{err}"
        );

        let url = client.serve_exec(&exec(&id, &["true"])).await?;
        let base = &url[..url.find("/exec/").expect("exec URL")];
        let err = k8s::connect(&format!("{base}/exec/not-a-token"), V5_V4)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("HTTP 404"), "{err}");
        assert!(err.contains("no exec session 'not-a-token'"), "{err}");
        // A client speaking only SPDY is told what we speak; the URL survives.
        let err = k8s::connect(&url, "SPDY/3.1")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("HTTP 400") && err.contains("v5.channel.k8s.io"),
            "{err}"
        );
        // One use only.
        k8s::connect(&url, V5_V4).await?.receive_to_end().await?;
        let err = k8s::connect(&url, V5_V4).await.unwrap_err().to_string();
        assert!(
            err.contains("HTTP 404") && err.contains("used already"),
            "{err}"
        );

        // Expiry is what is under test here, so waiting past it is the point.
        let url = client.serve_exec(&exec(&id, &["true"])).await?;
        tokio::time::sleep(Duration::from_millis(600)).await;
        let err = k8s::connect(&url, V5_V4).await.unwrap_err().to_string();
        assert!(err.contains("HTTP 404") && err.contains("expired"), "{err}");

        // A command the runtime cannot start: the runtime's own error on the status channel.
        let url = client.serve_exec(&exec(&id, &["/no/such/binary"])).await?;
        let mut session = k8s::connect(&url, V5_V4).await?;
        session.receive_to_end().await?;
        let status = session.status()?;
        assert_eq!(status["reason"], "InternalError", "{status}");
        let message = status["message"].as_str().unwrap_or_default();
        assert!(message.contains("runtime exec failed"), "{message}");
        assert!(message.contains("no such file or directory"), "{message}");

        // A port-forward URL without ports.
        let url = client
            .serve_port_forward("/proc/self/ns/net".as_ref())
            .await?;
        let err = k8s::connect(&url, V5_V4).await.unwrap_err().to_string();
        assert!(
            err.contains("HTTP 400") && err.contains(r#"query parameter "port" is required"#),
            "{err}"
        );
        Ok(())
    })
}

#[test]
fn an_exec_session_can_be_attached_to_by_its_id() -> Result<()> {
    with_pod(async |pod, client| {
        let id = unique_id("sxa");
        start(pod, client, &id, &["sleep", "1000"], false).await?;
        let mut request = exec(
            &id,
            &["sh", "-c", "read x; echo got:$x; read y; echo got:$y"],
        );
        request.stdin = true;
        let url = client.serve_exec(&request).await?;
        let session_id = url.rsplit('/').next().unwrap_or_default().to_owned();
        let mut session = k8s::connect(&url, V5_V4).await?;
        // Wait until the exec runs: its first line comes back.
        session.send(STDIN, b"first\n").await?;
        session
            .receive_until("got:first", |r| {
                r.get(&STDOUT).is_some_and(|o| o.ends_with(b"got:first\n"))
            })
            .await?;

        let socket = pod.path("sxa/attach");
        let mut attach = Attach {
            id: id.clone(),
            socket_path: socket.clone(),
            exec_session_id: "no-such-session".into(),
            ..Attach::default()
        };
        let err = error_text(client.attach(&attach).await);
        assert!(
            err.contains("has no exec session 'no-such-session'"),
            "{err}"
        );
        attach.exec_session_id = session_id;
        client.attach(&attach).await?;
        let reader = tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
            let attached = seqpacket_connect(&socket)?;
            // Input from the attach client goes to the exec too.
            attached.send_input(b"second\n")?;
            let (out, _, ended) = read_attach(&attached, |_, _| false)?;
            assert!(ended, "no end packet when the exec ended");
            Ok(out)
        });
        session.receive_to_end().await?;
        assert_eq!(session.channel_text(STDOUT), "got:first\ngot:second\n");
        assert_eq!(reader.await??, b"got:second\n");
        Ok(())
    })
}

#[test]
fn clients_that_vanish_mid_stream_leak_nothing() -> Result<()> {
    // Unopened URLs expire within the test's patience.
    let pod = Pod::start_with(None, &["--streaming-url-ttl-ms", "1000"])?;
    run_local(async {
        let client = pod.client().await?;
        let id = unique_id("sleak");
        let pid = start(
            &pod,
            &client,
            &id,
            &["sh", "-c", "while true; do echo tick; sleep 0.05; done"],
            true,
        )
        .await?;
        let netns = format!("/proc/{pid}/ns/net");
        // Warm up: the server and the runtime's lazily made state exist from here on, and so
        // does an attach socket.
        let url = client.serve_exec(&exec(&id, &["true"])).await?;
        k8s::connect(&url, V5_V4).await?.receive_to_end().await?;
        let socket = pod.path("sleak.attach");
        let attach_socket = Attach {
            id: id.clone(),
            socket_path: socket.clone(),
            ..Attach::default()
        };
        client.attach(&attach_socket).await?;
        let baseline = pod.state().await?;
        let threads_before = threads(pod.pid)?;

        let marker = unique_id("leak-marker");
        for round in 0..3 {
            // An exec that would run forever, dropped mid-output.
            let script = format!("while true; do echo {marker}; sleep 0.05; done");
            let url = client
                .serve_exec(&exec(&id, &["sh", "-c", &script]))
                .await?;
            let mut session = k8s::connect(&url, V5_V4).await?;
            session
                .receive_until("exec output", |r| r.contains_key(&STDOUT))
                .await?;
            session.abandon();
            // An attach, dropped mid-output.
            let attach = ServeAttach {
                id: id.clone(),
                stdin: true,
                stdout: true,
                stderr: true,
            };
            let mut session = k8s::connect(&client.serve_attach(&attach).await?, V5_V4).await?;
            session
                .receive_until("attach output", |r| r.contains_key(&STDOUT))
                .await?;
            session.abandon();
            // An attach-socket client, gone mid-output.
            let socket = socket.clone();
            tokio::task::spawn_blocking(move || -> Result<()> {
                let attached = seqpacket_connect(&socket)?;
                read_attach(&attached, |out, _| !out.is_empty())?;
                Ok(())
            })
            .await??;
            // A port-forward to nothing, dropped; and a URL never opened (it expires).
            let url = client.serve_port_forward(netns.as_ref()).await?;
            k8s::connect(&format!("{url}?ports=9"), V5_V4)
                .await?
                .abandon();
            if round == 0 {
                client.serve_exec(&exec(&id, &["true"])).await?;
            }
        }

        // The abandoned execs are killed; the container and the monitor carry on.
        wait_for("abandoned execs killed", WAIT, || {
            processes_mentioning(&marker).is_empty().then_some(())
        })
        .await?;
        let settled = wait_until_state(&pod, |state| {
            state["active_streams"] == 0
                && state["pending_streams"] == 0
                && state["exec_sessions"] == 0
                && state["tasks"] == baseline["tasks"]
                && state["open_fds"] == baseline["open_fds"]
        })
        .await?;
        assert_eq!(settled["containers"], 1, "{settled:?}");
        assert_eq!(threads(pod.pid)?, threads_before);
        let url = client
            .serve_exec(&exec(&id, &["echo", "still serving"]))
            .await?;
        let mut session = k8s::connect(&url, V5_V4).await?;
        session.receive_to_end().await?;
        assert_eq!(session.channel_text(STDOUT), "still serving\n");
        assert!(pod.daemon_alive());
        assert!(
            !pod.path(&format!("{id}.exit")).exists(),
            "container exited"
        );
        Ok(())
    })
}

/// Polls the daemon's state until `settled` holds (it may take a moment for closed
/// connections to be noticed); returns that state or fails with the last one.
async fn wait_until_state(
    pod: &Pod,
    settled: impl Fn(&std::collections::BTreeMap<String, u64>) -> bool,
) -> Result<std::collections::BTreeMap<String, u64>> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let state = pod.state().await?;
        if settled(&state) {
            return Ok(state);
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "daemon state never settled: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn threads(pid: u32) -> Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/task"))?.count())
}
