//! End-to-end tracing: the caller's trace continues in conmond and arrives at a real OTLP gRPC
//! receiver with spans, log events and log records; nothing blocks and nothing is lost.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use testkit::otlp::{self, Receiver};
use testkit::*;

const WAIT: Duration = Duration::from_secs(30);
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn trace_id(tag: u8) -> String {
    format!("4bf92f3577b34da6a3ce929d0e0e47{tag:02x}")
}

fn metadata(trace: &str, sampled: bool) -> BTreeMap<String, String> {
    let flags = if sampled { "01" } else { "00" };
    BTreeMap::from([(
        "traceparent".to_owned(),
        format!("00-{trace}-{CALLER_SPAN}-{flags}"),
    )])
}

/// Waits until the receiver holds spans satisfying `done`; returns all spans of `trace`.
async fn spans_of(
    receiver: &Receiver,
    trace: &str,
    what: &str,
    done: impl Fn(&[otlp::Span]) -> bool,
) -> Result<Vec<otlp::Span>> {
    wait_for(what, WAIT, || {
        let spans: Vec<otlp::Span> = receiver
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == trace)
            .collect();
        done(&spans).then_some(spans)
    })
    .await
}

fn named<'a>(spans: &'a [otlp::Span], name: &str) -> Vec<&'a otlp::Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[test]
fn caller_trace_continues_through_rpc_and_runtime_spans_with_logs() -> Result<()> {
    run_local(async {
        let receiver = Receiver::start(otlp::free_addr()?).await?;
        // The runtime is a wrapper that records the trace context it was given.
        let dir = tempfile::tempdir()?;
        let env_log = dir.path().join("runtime-env");
        let wrapper = dir.path().join("runc-wrapper");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\necho \"$TRACEPARENT\" >> {}\nexec {RUNC} \"$@\"\n",
                env_log.display()
            ),
        )?;
        std::fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        let wrapper = wrapper.display().to_string();
        // The default-less log driver `none` must not switch export off (it does in conmon-rs).
        let pod = Pod::start_traced(
            &receiver.endpoint(),
            &["--log-driver", "none", "--runtime", &wrapper],
        )?;
        let client = pod.client().await?;
        let trace = trace_id(1);
        client.set_metadata(metadata(&trace, true));

        let request = pod.create_request("traced", pod.bundle("traced", &["sleep", "1000"])?);
        pod.start_container(&client, &request).await?;
        let output = client
            .exec_sync(&exec_request("traced", &["echo", "hi"]))
            .await?;
        assert_eq!(output.stdout, b"hi\n");
        pod.runc(&["kill", "traced", "KILL"])?;
        wait_for_file(&request.exit_paths[0], WAIT).await?;

        let spans = spans_of(
            &receiver,
            &trace,
            "create, exec and runtime spans",
            |spans| {
                named(spans, "Conmon/createContainer").len() == 1
                    && named(spans, "Conmon/execSyncContainer").len() == 1
                    && named(spans, "runtime create").len() == 1
                    && named(spans, "runtime exec").len() == 1
            },
        )
        .await?;
        let create = named(&spans, "Conmon/createContainer")[0];
        let exec_rpc = named(&spans, "Conmon/execSyncContainer")[0];
        for rpc in [create, exec_rpc] {
            assert_eq!(rpc.parent_span_id, CALLER_SPAN, "{rpc:?}");
            assert_eq!(rpc.kind, 2, "RPC spans are server spans: {rpc:?}");
            assert_eq!(rpc.attributes["rpc.system"], "capnp");
            assert_eq!(rpc.attributes["container.id"], "traced");
        }
        assert_eq!(create.attributes["rpc.method"], "createContainer");
        assert_eq!(
            named(&spans, "runtime create")[0].parent_span_id,
            create.span_id
        );
        let runtime_exec = named(&spans, "runtime exec")[0];
        assert_eq!(runtime_exec.parent_span_id, exec_rpc.span_id);
        assert_eq!(runtime_exec.attributes["runtime.exit_code"], "0");

        // Log lines are `log` events on the span they happened in.
        let created_event = create.events.iter().find(|event| {
            event.name == "log"
                && event
                    .attributes
                    .get("log.message")
                    .is_some_and(|m| m == "container created")
        });
        assert_eq!(
            created_event
                .expect("log event on the create span")
                .attributes["log.severity"],
            "INFO"
        );

        // ... and OTLP log records with that trace and span.
        let record = wait_for("log record of the create span", WAIT, || {
            receiver.logs().into_iter().find(|l| {
                l.trace_id == trace && l.span_id == create.span_id && l.body == "container created"
            })
        })
        .await?;
        assert_eq!(record.severity, "INFO");

        let resource = &create.resource;
        assert_eq!(resource["service.name"], "conmond");
        assert_eq!(resource["service.version"], env!("CARGO_PKG_VERSION"));
        assert!(!resource["host.name"].is_empty());
        assert_eq!(resource["process.pid"], pod.pid.to_string());

        // The runtime got the context of its own span.
        let env = std::fs::read_to_string(&env_log)?;
        let create_runtime = named(&spans, "runtime create")[0];
        assert!(
            env.contains(&format!("00-{trace}-{}-01", create_runtime.span_id)),
            "{env}"
        );

        // The exit is its own span, linked to the create span.
        let exit = wait_for("container exit span", WAIT, || {
            receiver
                .spans()
                .into_iter()
                .find(|s| s.name == "container exit" && s.links.contains(&create.span_id))
        })
        .await?;
        assert_eq!(exit.attributes["container.exit_code"], "137");
        assert_eq!(exit.attributes["container.oom_killed"], "false");
        Ok(())
    })
}

#[test]
fn an_oom_kill_is_a_span_when_it_happens_and_an_oom_event_on_the_exit_span() -> Result<()> {
    run_local(async {
        let receiver = Receiver::start(otlp::free_addr()?).await?;
        let pod = Pod::start_traced(&receiver.endpoint(), &[])?;
        let client = pod.client().await?;
        client.set_metadata(metadata(&trace_id(4), true));
        // The hog is OOM-killed; its shell lives on and exits 3.
        let bundle = pod.bundle_with("hog", &["sh", "-c", "tail /dev/zero; exit 3"], |config| {
            let limit = 16 << 20;
            config["linux"]["resources"]["memory"] =
                serde_json::json!({"limit": limit, "swap": limit});
        })?;
        let request = pod.create_request("hog", bundle);
        pod.start_container(&client, &request).await?;
        assert_eq!(wait_for_file(&request.exit_paths[0], WAIT).await?, "3");

        let linked_to_create = |name: &str| {
            let spans = receiver.spans();
            let create = spans.iter().find(|s| s.name == "Conmon/createContainer")?;
            spans
                .iter()
                .find(|s| s.name == name && s.links.contains(&create.span_id))
                .cloned()
        };
        let has_oom_event = |span: &otlp::Span| {
            span.events.iter().any(|event| {
                event.name == "log"
                    && event
                        .attributes
                        .get("log.message")
                        .is_some_and(|m| m == "oom")
            })
        };
        let oom = wait_for("container oom span", WAIT, || {
            linked_to_create("container oom")
        })
        .await?;
        assert!(has_oom_event(&oom), "{oom:?}");
        let exit = wait_for("container exit span", WAIT, || {
            linked_to_create("container exit")
        })
        .await?;
        assert_eq!(exit.attributes["container.oom_killed"], "true");
        assert!(has_oom_event(&exit), "{exit:?}");
        // The kill came first.
        assert!(
            oom.start_unix_nano <= exit.start_unix_nano,
            "{oom:?} {exit:?}"
        );
        Ok(())
    })
}

#[test]
fn unsampled_parent_exports_nothing() -> Result<()> {
    run_local(async {
        let receiver = Receiver::start(otlp::free_addr()?).await?;
        let pod = Pod::start_traced(&receiver.endpoint(), &[])?;
        let client = pod.client().await?;
        let (unsampled, marker) = (trace_id(2), trace_id(3));
        client.set_metadata(metadata(&unsampled, false));
        let request = pod.create_request("quiet", pod.bundle("quiet", &["sleep", "1000"])?);
        pod.start_container(&client, &request).await?;
        client.exec_sync(&exec_request("quiet", &["true"])).await?;
        // Export is in order: once a later sampled request arrived, the earlier one would have.
        client.set_metadata(metadata(&marker, true));
        client.exec_sync(&exec_request("quiet", &["true"])).await?;
        spans_of(&receiver, &marker, "marker spans", |spans| {
            !spans.is_empty()
        })
        .await?;
        wait_for("marker log records", WAIT, || {
            receiver
                .logs()
                .iter()
                .any(|l| l.trace_id == marker)
                .then_some(())
        })
        .await?;
        assert!(
            !receiver.spans().iter().any(|s| s.trace_id == unsampled),
            "unsampled spans exported"
        );
        assert!(
            !receiver.logs().iter().any(|l| l.trace_id == unsampled),
            "unsampled logs exported"
        );
        Ok(())
    })
}

#[test]
fn spans_of_a_collector_outage_arrive_when_it_returns() -> Result<()> {
    run_local(async {
        let addr = otlp::free_addr()?;
        let pod = Pod::start_traced(&format!("http://{addr}"), &[])?;
        let client = pod.client().await?;
        let trace = trace_id(4);
        client.set_metadata(metadata(&trace, true));
        let request = pod.create_request("outage", pod.bundle("outage", &["sleep", "1000"])?);
        pod.start_container(&client, &request).await?;
        const EXECS: usize = 20;
        for i in 0..EXECS {
            let output = client
                .exec_sync(&exec_request("outage", &["echo", &i.to_string()]))
                .await?;
            assert_eq!(output.exit_code, 0);
        }
        // Only now does the collector come up.
        let receiver = Receiver::start(addr).await?;
        let result = spans_of(&receiver, &trace, "every span of the outage", |spans| {
            named(spans, "Conmon/createContainer").len() == 1
                && named(spans, "Conmon/execSyncContainer").len() == EXECS
                && named(spans, "runtime exec").len() == EXECS
        })
        .await;
        if result.is_err() {
            let names: Vec<String> = receiver
                .spans()
                .into_iter()
                .map(|s| format!("{} {}", s.trace_id, s.name))
                .collect();
            eprintln!("received: {names:#?}");
        }
        result?;
        Ok(())
    })
}

#[test]
fn sigterm_with_an_unreachable_collector_exits_within_5_seconds() -> Result<()> {
    run_local(async {
        let addr = otlp::free_addr()?;
        let pod = Pod::start_traced(&format!("http://{addr}"), &[])?;
        let client = pod.client().await?;
        client.set_metadata(metadata(&trace_id(5), true));
        for _ in 0..10 {
            client.version(false).await?;
        }
        let started = Instant::now();
        pod.terminate(Duration::from_secs(10)).await?;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
        Ok(())
    })
}

#[test]
fn streaming_sessions_and_attach_stay_in_the_callers_trace() -> Result<()> {
    streaming_sessions_trace(false)
}

#[test]
fn spdy_streaming_sessions_stay_in_the_callers_trace_too() -> Result<()> {
    streaming_sessions_trace(true)
}

/// Exec, attach and port-forward sessions over a websocket, or over SPDY if `spdy`.
fn streaming_sessions_trace(spdy: bool) -> Result<()> {
    use testkit::{k8s, spdy};
    run_local(async {
        let receiver = Receiver::start(otlp::free_addr()?).await?;
        let pod = Pod::start_traced(&receiver.endpoint(), &[])?;
        let client = pod.client().await?;
        let trace = trace_id(5);
        client.set_metadata(metadata(&trace, true));
        let id = unique_id("tstream");
        let mut request = pod.create_request(&id, pod.bundle(&id, &["sleep", "1000"])?);
        request.stdin = true;
        let pid = pod.start_container(&client, &request).await?;
        let protocols = "v5.channel.k8s.io";

        let exec = ServeExec {
            id: id.clone(),
            command: vec!["echo".into(), "traced".into()],
            stdout: true,
            cgroup_manager: CgroupManager::Cgroupfs,
            ..ServeExec::default()
        };
        let attach = ServeAttach {
            id: id.clone(),
            stdout: true,
            ..ServeAttach::default()
        };
        let netns = format!("/proc/{pid}/ns/net");
        let (exec_url, attach_url) = (
            client.serve_exec(&exec).await?,
            client.serve_attach(&attach).await?,
        );
        let forward_url = client.serve_port_forward(netns.as_ref()).await?;
        if spdy {
            let v4 = ["v4.channel.k8s.io"];
            let mut session = spdy::connect(&exec_url, &v4).await?;
            session.open_streams(&["stdout"]).await?;
            session.receive_to_end().await?;
            spdy::connect(&attach_url, &v4)
                .await?
                .open_streams(&["stdout"])
                .await?;
            let mut forward = spdy::connect(&forward_url, &["portforward.k8s.io"]).await?;
            let headers = |kind| [("streamtype", kind), ("port", "9"), ("requestid", "0")];
            forward.open(&headers("error")).await?;
            let data = forward.open(&headers("data")).await?;
            while !forward.resets.iter().any(|(stream, _)| *stream == data) {
                assert!(forward.receive().await?, "port-forward session ended early");
            }
        } else {
            let mut session = k8s::connect(&exec_url, protocols).await?;
            session.receive_to_end().await?;
            k8s::connect(&attach_url, protocols).await?.abandon();
            k8s::connect(&format!("{forward_url}?ports=9"), protocols)
                .await?
                .receive_to_end()
                .await?;
        }
        let socket = pod.path("tstream.attach");
        client
            .attach(&Attach {
                id: id.clone(),
                socket_path: socket.clone(),
                ..Attach::default()
            })
            .await?;
        tokio::task::spawn_blocking(move || -> Result<()> {
            seqpacket_connect(&socket)?.close_input()?;
            Ok(())
        })
        .await??;

        let spans = spans_of(&receiver, &trace, "stream spans", |spans| {
            ["stream exec", "stream attach", "stream port-forward"]
                .iter()
                .all(|name| named(spans, name).len() == 1)
                && named(spans, "runtime exec").len() == 1
                && named(spans, "Conmon/attachContainer").len() == 1
                && named(spans, "attach client").len() == 1
        })
        .await?;
        let has_event = |span: &otlp::Span, message: &str| {
            span.events.iter().any(|event| {
                event
                    .attributes
                    .get("log.message")
                    .is_some_and(|m| m == message)
            })
        };
        for (rpc, stream) in [
            ("Conmon/serveExecContainer", "stream exec"),
            ("Conmon/serveAttachContainer", "stream attach"),
            ("Conmon/servePortForwardContainer", "stream port-forward"),
        ] {
            let rpc = named(&spans, rpc)[0];
            let stream = named(&spans, stream)[0];
            assert_eq!(rpc.parent_span_id, CALLER_SPAN, "{rpc:?}");
            assert!(has_event(rpc, "streaming session ready"), "{rpc:?}");
            // The session runs after its RPC returned, as the RPC's child.
            assert_eq!(stream.parent_span_id, rpc.span_id, "{stream:?}");
            assert_eq!(stream.kind, 2, "{stream:?}");
            assert!(
                has_event(stream, "streaming client connected"),
                "{stream:?}"
            );
            assert!(has_event(stream, "streaming session ended"), "{stream:?}");
            let transport = if spdy { "SPDY/3.1" } else { "websocket" };
            assert_eq!(stream.attributes["streaming.transport"], transport);
        }
        let stream_exec = named(&spans, "stream exec")[0];
        assert_eq!(stream_exec.attributes["container.id"], id);
        assert!(has_event(stream_exec, "exec started"), "{stream_exec:?}");
        assert!(has_event(stream_exec, "exec exited"), "{stream_exec:?}");
        assert_eq!(
            named(&spans, "runtime exec")[0].parent_span_id,
            stream_exec.span_id
        );
        let forward = named(&spans, "stream port-forward")[0];
        assert!(has_event(forward, "port forward failed"), "{forward:?}");
        let attach_rpc = named(&spans, "Conmon/attachContainer")[0];
        assert!(
            has_event(attach_rpc, "attach socket ready"),
            "{attach_rpc:?}"
        );
        let attach_client = named(&spans, "attach client")[0];
        assert_eq!(attach_client.parent_span_id, attach_rpc.span_id);
        assert!(has_event(attach_client, "attach client connected"));
        Ok(())
    })
}
