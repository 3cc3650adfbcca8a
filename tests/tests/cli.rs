//! The `runtime-shim` CLI as an engine operator uses it: separate invocations sharing state
//! under `--root`, with a CRI-O configuration, real conmond and runc.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Result;
use testkit::otlp::{self, Receiver};
use testkit::*;

const WAIT: Duration = Duration::from_secs(30);

fn sockets_under(dir: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::FileTypeExt as _;
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let kind = entry.file_type();
            match kind {
                Ok(kind) if kind.is_dir() => stack.push(entry.path()),
                Ok(kind) if kind.is_socket() => found.push(entry.path()),
                _ => {}
            }
        }
    }
    found
}

#[test]
fn a_full_pod_lifecycle_leaves_nothing_behind() -> Result<()> {
    let cli = ShimEnv::new("")?;
    // Container IDs are cgroup names too: unique across concurrently running tests.
    let (c1, c2) = (unique_id("life"), unique_id("life"));
    let (c1, c2) = (c1.as_str(), c2.as_str());
    cli.ok(&["pod", "run", "p1"])?;
    let script = "echo hello; echo oops >&2; sleep 1000";
    cli.ok(&["create", "p1", c1, "--", "sh", "-c", script])?;
    cli.ok(&["start", c1])?;
    let exec = cli.run(&["exec", c1, "--", "echo", "from exec"])?;
    assert_eq!(
        (exec.status.code(), exec.stdout.as_slice()),
        (Some(0), &b"from exec\n"[..])
    );
    let failing = cli.run(&["exec", c1, "--", "sh", "-c", "exit 3"])?;
    assert_eq!(
        failing.status.code(),
        Some(3),
        "exec exits with the command's code"
    );
    let logs = run_local(wait_for("container output in the log", WAIT, || {
        cli.ok(&["logs", c1])
            .ok()
            .filter(|logs| logs.contains("oops"))
    }))?;
    assert_eq!(logs, "hello\noops\n");
    let ps = cli.ok(&["ps"])?;
    assert!(ps.contains(&format!("p1\t{c1}\trunning")), "{ps}");
    let pods = cli.ok(&["pod", "ls"])?;
    assert!(pods.contains("p1\tpid "), "{pods}");
    let stopped = cli.ok(&["stop", "--timeout", "1", c1])?;
    assert!(stopped.contains("exited with 137"), "{stopped}");
    cli.ok(&["rm", c1])?;
    cli.ok(&["create", "p1", c2])?;
    cli.ok(&["pod", "rm", "p1"])?;

    assert!(
        processes_mentioning(&cli.root().display().to_string()).is_empty(),
        "monitor left running"
    );
    assert!(cli.runc_containers()?.is_empty(), "runc state left behind");
    assert!(
        sockets_under(&cli.root()).is_empty(),
        "sockets left: {:?}",
        sockets_under(&cli.root())
    );
    assert_eq!(
        std::fs::read_dir(cli.root().join("pods"))?.count(),
        0,
        "pod state left behind"
    );
    Ok(())
}

#[test]
fn usage_errors_are_clear_and_exit_non_zero() -> Result<()> {
    let cli = ShimEnv::new("")?;
    let missing = cli.run(&["start", "ghost"])?;
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no container 'ghost'"));
    let bad_name = cli.run(&["pod", "run", "../escape"])?;
    assert!(String::from_utf8_lossy(&bad_name.stderr).contains("invalid pod name"));
    // `trace` needs no configuration, only a trace id and a Jaeger to ask.
    let bad_trace = cli.run(&["trace", "not-a-trace-id"])?;
    assert_eq!(bad_trace.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad_trace.stderr);
    assert!(stderr.contains("\"not-a-trace-id\" is not 32"), "{stderr}");
    let no_jaeger = cli.run(&["trace", &"ab".repeat(16), "--jaeger", "http://127.0.0.1:1"])?;
    assert_eq!(no_jaeger.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&no_jaeger.stderr);
    assert!(
        stderr.contains("query http://127.0.0.1:1/api/traces/abab") && stderr.contains("refused"),
        "{stderr}"
    );
    std::fs::write(
        cli.dir().join("crio.conf.d/50-bad.conf"),
        "[crio.runtime.runtimes.x]\nruntime_type = \"vm\"\n",
    )?;
    let bad_config = cli.run(&["pod", "ls"])?;
    assert_eq!(bad_config.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad_config.stderr);
    assert!(
        stderr.contains("50-bad.conf") && stderr.contains("runtime_type"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn concurrent_pod_runs_start_one_monitor() -> Result<()> {
    let cli = ShimEnv::new("")?;
    // Both processes run before either is waited for: they race for the pod's monitor.
    let children = (0..2)
        .map(|_| {
            cli.command(&["pod", "run", "p1"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut outputs = Vec::new();
    for child in children {
        let output = child.wait_with_output()?;
        assert!(output.status.success(), "{output:?}");
        outputs.push(String::from_utf8(output.stdout)?);
    }
    let run_dir = cli.root().join("pods/p1/run");
    let monitors = processes_mentioning(&run_dir.display().to_string());
    assert_eq!(monitors.len(), 1, "{monitors:?}");
    for output in outputs {
        assert_eq!(
            output.trim(),
            format!("pod p1: monitor pid {}", monitors[0])
        );
    }
    cli.ok(&["pod", "rm", "p1"])?;
    Ok(())
}

#[test]
fn one_trace_covers_shim_monitor_and_runtime_across_invocations() -> Result<()> {
    run_local(async {
        let receiver = Receiver::start(otlp::free_addr()?).await?;
        let endpoint = receiver.endpoint().trim_start_matches("http://").to_owned();
        let tracing = format!(
            "[crio.tracing]\nenable_tracing = true\ntracing_endpoint = \"{endpoint}\"\ntracing_sampling_rate_per_million = 0\n"
        );
        let cli = ShimEnv::new(&tracing)?;
        // No parent and rate 0: no spans are exported for these, only metrics.
        let ctr = unique_id("traced");
        for args in [
            &["pod", "run", "p1"][..],
            &["create", "p1", &ctr],
            &["start", &ctr],
        ] {
            off_thread(cli.command(args)).await?;
        }
        // A later invocation (a "restarted" shim reusing the monitor) with a sampled parent.
        let trace = "5bf92f3577b34da6a3ce929d0e0e4736";
        let parent = "00f067aa0ba902b7";
        let mut command =
            cli.command(&["--log-level", "info", "exec", &ctr, "--", "echo", "traced"]);
        command.env("TRACEPARENT", format!("00-{trace}-{parent}-01"));
        off_thread(command).await?;
        let spans = wait_for("the exec trace", WAIT, || {
            let spans: Vec<otlp::Span> = receiver
                .spans()
                .into_iter()
                .filter(|s| s.trace_id == trace)
                .collect();
            let complete = ["runtime exec", "/runtime.v1.RuntimeService/ExecSync"]
                .iter()
                .all(|name| spans.iter().any(|s| s.name == *name));
            complete.then_some(spans)
        })
        .await?;
        let find = |name: &str| {
            spans
                .iter()
                .find(|s| s.name == name)
                .unwrap_or_else(|| panic!("no {name} span in {spans:#?}"))
        };
        let root = find("/runtime.v1.RuntimeService/ExecSync");
        assert_eq!(root.parent_span_id, parent);
        assert_eq!(root.resource["service.name"], "runtime-shim");
        let rpc = find("Conmon/execSyncContainer");
        assert_eq!(rpc.parent_span_id, root.span_id);
        assert_eq!(rpc.resource["service.name"], "conmond");
        assert_eq!(find("runtime exec").parent_span_id, rpc.span_id);
        let exec_log = root.events.iter().find(|event| {
            event.name == "log"
                && event
                    .attributes
                    .get("log.message")
                    .is_some_and(|m| m == "exec finished")
        });
        let attrs = &exec_log.expect("log event on the shim span").attributes;
        assert_eq!(attrs["name"], "/runtime.v1.RuntimeService/ExecSync");
        assert!(!attrs["id"].is_empty());

        shim_metrics_follow_operations(&receiver, root).await?;

        let unsampled = [
            "/runtime.v1.RuntimeService/RunPodSandbox",
            "Conmon/createContainer",
            "runtime start",
        ];
        assert!(
            !receiver
                .spans()
                .iter()
                .any(|s| unsampled.contains(&s.name.as_str())),
            "operations without a sampled parent were exported at rate 0"
        );
        off_thread(cli.command(&["pod", "rm", "p1"])).await?;
        Ok(())
    })
}

/// Runs a shim command off this thread, where the receiver runs and must answer the command's
/// exports; fails unless it succeeds.
async fn off_thread(mut command: Command) -> Result<()> {
    let what = format!("{command:?}");
    let output = tokio::task::spawn_blocking(move || command.output()).await??;
    anyhow::ensure!(output.status.success(), "{what}: {output:?}");
    Ok(())
}

/// Each invocation exported its operation and its RPCs to conmond as metrics, sampled or
/// not; the sampled exec's points carry its span as exemplar and its spans' resource.
async fn shim_metrics_follow_operations(receiver: &Receiver, exec_span: &otlp::Span) -> Result<()> {
    let histogram = |name: &str, attributes: &[(&str, &str)]| {
        let point = receiver.latest_metric(name, attributes)?;
        match point.value {
            otlp::MetricValue::Histogram {
                count, exemplars, ..
            } => Some((count, exemplars, point.resource)),
            _ => None,
        }
    };
    let exec = [
        ("operation", "/runtime.v1.RuntimeService/ExecSync"),
        ("outcome", "ok"),
    ];
    let (count, exemplars, resource) = wait_for("the exec's metrics", WAIT, || {
        histogram("runtime_shim.operation.duration", &exec)
    })
    .await?;
    assert_eq!(count, 1);
    assert_eq!(
        exemplars,
        [(exec_span.trace_id.clone(), exec_span.span_id.clone())]
    );
    assert_eq!(resource, exec_span.resource);
    let pod_run = [
        ("operation", "/runtime.v1.RuntimeService/RunPodSandbox"),
        ("outcome", "ok"),
    ];
    let (count, exemplars, _) =
        histogram("runtime_shim.operation.duration", &pod_run).expect("pod run's metrics");
    assert_eq!(count, 1);
    assert!(exemplars.is_empty(), "unsampled, yet {exemplars:?}");
    let rpc = [("rpc.method", "execSyncContainer"), ("outcome", "ok")];
    let (count, exemplars, _) =
        histogram("rpc.client.call.duration", &rpc).expect("the exec's RPC metrics");
    assert_eq!(count, 1);
    assert_eq!(exemplars[0].0, exec_span.trace_id);
    Ok(())
}

#[test]
fn demo_prints_one_trace_with_both_services() -> Result<()> {
    require_privileged();
    let output = Command::new(shim_binary())
        .arg("demo")
        .env_remove("TRACEPARENT")
        .env("COLUMNS", "200")
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("trace "), "{stdout}");
    // One waterfall line per span: name (indented), service, bar, duration.
    let span_line = |name: &str, service: &str| {
        stdout.lines().any(|line| {
            line.trim_start().starts_with(&format!("{name} "))
                && line.contains(&format!(" {service} "))
                && line.contains('│')
        })
    };
    for (name, service) in [
        ("runtime-shim demo", "runtime-shim"),
        ("/runtime.v1.RuntimeService/CreateContainer", "runtime-shim"),
        ("Conmon/createContainer", "conmond"),
        ("runtime exec", "conmond"),
    ] {
        assert!(
            span_line(name, service),
            "no {name} line of {service} in {stdout}"
        );
    }
    assert!(
        stdout
            .lines()
            .any(|line| line.contains("◆ +") && line.contains("INFO container created")),
        "{stdout}"
    );
    assert!(!stdout.contains('\x1b'), "colour on a pipe: {stdout}");
    // The metrics summary: the container's one line of output, its exit on SIGTERM (a trap
    // exits 0), the one exec-sync, and the lifecycle's six operations.
    for line in [
        "\nmetrics:\n",
        "conmond       containers: 1 created, exited 1 zero\n",
        "conmond       exec-sync: 1, mean ",
        "conmond       log: 30 B stdout\n",
        "runtime-shim  operations: 6, mean ",
        "runtime-shim  RPCs to conmond: ",
    ] {
        assert!(stdout.contains(line), "no {line:?} in {stdout}");
    }
    Ok(())
}

#[test]
fn an_oci_handler_runs_each_container_under_debian_conmon() -> Result<()> {
    let conmon = Path::new("/usr/bin/conmon");
    assert!(
        conmon.exists(),
        "Debian's conmon is missing: apt-get install conmon"
    );
    let cli = ShimEnv::with_handler("oci", conmon, "")?;
    let id = unique_id("oci");
    cli.ok(&["pod", "run", "p1"])?;
    cli.ok(&[
        "create",
        "p1",
        &id,
        "--",
        "sh",
        "-c",
        "echo hi from conmon; sleep 1000",
    ])?;
    let conmons = processes_mentioning(&format!("--cid\0{id}"));
    assert_eq!(conmons.len(), 1, "one conmon for the container");
    cli.ok(&["start", &id])?;
    let logs = run_local(wait_for("output in conmon's log", WAIT, || {
        cli.ok(&["logs", &id])
            .ok()
            .filter(|logs| logs.contains("hi from conmon"))
    }))?;
    assert_eq!(logs, "hi from conmon\n");
    let stopped = cli.ok(&["stop", "--timeout", "1", &id])?;
    assert!(stopped.contains("exited with 137"), "{stopped}");
    cli.ok(&["pod", "rm", "p1"])?;
    assert!(cli.runc_containers()?.is_empty());
    run_local(wait_for("conmon to exit", WAIT, || {
        processes_mentioning(&format!("--cid\0{id}"))
            .is_empty()
            .then_some(())
    }))?;
    Ok(())
}

#[test]
fn attach_streams_both_ways_and_exits_with_the_containers_code() -> Result<()> {
    use std::io::Write as _;
    let cli = ShimEnv::new("")?;
    let (piped, tty) = (unique_id("att"), unique_id("att"));
    cli.ok(&["pod", "run", "p1"])?;
    let script = "read name; echo hello $name; echo oops >&2; exit 7";
    cli.ok(&["create", "p1", &piped, "-i", "--", "sh", "-c", script])?;
    cli.ok(&["start", &piped])?;
    let mut attach = cli
        .command(&["attach", &piped, "--stdin-once"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut stdin = attach.stdin.take().expect("piped stdin");
    stdin.write_all(b"shim\n")?;
    drop(stdin);
    let output = attach.wait_with_output()?;
    assert_eq!(output.status.code(), Some(7), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hello shim\n");
    assert!(String::from_utf8_lossy(&output.stderr).contains("oops\n"));

    // On a terminal the input is echoed and every line ends in CRLF.
    cli.ok(&["create", "p1", &tty, "-i", "-t", "--", "sh"])?;
    cli.ok(&["start", &tty])?;
    let mut attach = cli
        .command(&["attach", &tty])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut stdin = attach.stdin.take().expect("piped stdin");
    stdin.write_all(b"echo on-$((40+2))\nexit 3\n")?;
    let output = attach.wait_with_output()?;
    drop(stdin);
    let out = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{out}");
    assert!(out.contains("on-42\r\n"), "{out:?}");
    cli.ok(&["pod", "rm", "p1"])?;
    Ok(())
}
