//! Bad request fields, one RPC at a time.

use std::time::Duration;

use anyhow::Result;
use testkit::*;

use crate::{Table, WAIT, exec_text, text};

#[test]
fn bad_requests_are_errors_that_say_what_was_wrong() -> Result<()> {
    with_pod(async |pod, client| {
        let mut table = Table::new(pod, client);
        let running = pod.create_request("run", pod.bundle("run", &["sleep", "1000"])?);
        pod.start_container(client, &running).await?;
        let exited = pod.script_request("gone", "exit 4")?;
        pod.start_container(client, &exited).await?;
        wait_for_file(&exited.exit_paths[0], WAIT).await?;
        creates(&mut table).await?;
        execs(&mut table).await?;
        others(&mut table).await?;
        let cases = table.finish()?;
        assert!(cases >= 32, "{cases} cases");
        Ok(())
    })
}

/// A create request for `id` with a `true` bundle.
fn create(pod: &Pod, id: &str) -> Result<CreateContainer> {
    pod.script_request(id, "true")
}

async fn creates(t: &mut Table<'_>) -> Result<()> {
    let (pod, client) = (t.pod, t.client);
    let send = async |request: CreateContainer| text(client.create_container(&request).await);
    let mut r = create(pod, "x1")?;
    r.id = String::new();
    t.case("create: empty id", "container id \"\" is empty", send(r))
        .await;
    let mut r = create(pod, "x2")?;
    r.id = "a/b".into();
    t.case("create: id with a slash", "may hold only", send(r))
        .await;
    let mut r = create(pod, "x3")?;
    r.id = "..".into();
    t.case("create: id '..'", "may hold only", send(r)).await;
    let mut r = create(pod, "x4")?;
    r.id = "x".repeat(201);
    t.case("create: 201-byte id", "longer than 200", send(r))
        .await;
    let mut r = create(pod, "x5")?;
    r.id = "nul\0id".into();
    t.case("create: id with NUL", "may hold only", send(r))
        .await;
    let r = pod.create_request("run", pod.bundle("run2", &["true"])?);
    t.case("create: duplicate id", "'run' is already in use", send(r))
        .await;
    let r = pod.create_request("nobundle", pod.path("no/such/bundle"));
    t.case("create: missing bundle", "runtime create failed", send(r))
        .await;
    let file = pod.path("plain-file");
    std::fs::write(&file, "")?;
    let r = pod.create_request("filebundle", file.clone());
    t.case("create: bundle is a file", "runtime create failed", send(r))
        .await;
    let mut r = create(pod, "nologdir")?;
    r.log_drivers = log_to(LogFormat::Cri, &pod.path("no/dir/ctr.log"), 0);
    t.case(
        "create: log dir missing",
        "No such file or directory",
        send(r),
    )
    .await;
    let fifo = pod.path("fifo");
    crate::faults::mkfifo(&fifo)?;
    let mut r = create(pod, "fifolog")?;
    r.log_drivers = log_to(LogFormat::Cri, &fifo, 0);
    t.case("create: log path is a FIFO", "FIFO", send(r)).await;
    let link = pod.path("link.log");
    std::os::unix::fs::symlink(&file, &link)?;
    let mut r = create(pod, "linklog")?;
    r.log_drivers = log_to(LogFormat::Cri, &link, 0);
    t.case("create: log path is a symlink", "symbolic link", send(r))
        .await;
    let mut r = create(pod, "dirlog")?;
    r.log_drivers = log_to(LogFormat::Json, &pod.path("bundles"), 0);
    t.case("create: log path is a directory", "directory", send(r))
        .await;
    let mut r = create(pod, "rellog")?;
    r.log_drivers = log_to(LogFormat::Cri, "relative.log".as_ref(), 0);
    t.case(
        "create: relative log path",
        "is not an absolute path",
        send(r),
    )
    .await;
    let mut r = create(pod, "relexit")?;
    r.exit_paths = vec!["relative.exit".into()];
    t.case(
        "create: relative exit path",
        "is not an absolute path",
        send(r),
    )
    .await;
    let mut r = create(pod, "noexitdir")?;
    r.exit_paths = vec![pod.path("no/dir/exit")];
    t.case("create: exit dir missing", "cannot be used", send(r))
        .await;
    let mut r = create(pod, "procexit")?;
    r.exit_paths = vec!["/proc/sys/exit".into()];
    t.case("create: exit path on /proc", "file system", send(r))
        .await;
    let mut r = create(pod, "noexe")?;
    r.bundle = pod.bundle("noexe-bundle", &["/no/such/program"])?;
    t.case(
        "create: missing executable",
        "no such file or directory",
        send(r),
    )
    .await;
    Ok(())
}

async fn execs(t: &mut Table<'_>) -> Result<()> {
    let client = t.client;
    let send = async |request: ExecSync| exec_text(client.exec_sync(&request).await);
    t.case(
        "exec: empty command",
        "exec command is empty",
        send(exec_request("run", &[])),
    )
    .await;
    let r = exec_request("run", &[""]);
    t.case("exec: empty program", "empty program name", send(r))
        .await;
    let r = exec_request("run", &["echo", "a\0b"]);
    t.case("exec: NUL in an argument", "NUL byte", send(r))
        .await;
    let r = exec_request("ghost", &["true"]);
    t.case(
        "exec: unknown container",
        "container 'ghost' not found",
        send(r),
    )
    .await;
    let r = exec_request("gone", &["true"]);
    t.case("exec: exited container", "exited with code 4", send(r))
        .await;
    let r = exec_request("run", &["/no/such/program"]);
    t.case("exec: missing executable", "no such file", send(r))
        .await;
    let big = "y".repeat(3 << 20);
    let r = exec_request("run", &["echo", &big]);
    t.case("exec: 3 MiB argument", "rgument list too long", send(r))
        .await;
    let mut r = exec_request("run", &["echo", "no deadline"]);
    r.timeout = Some(Duration::from_secs(u64::MAX));
    t.case("exec: timeout of 2^64-1 s", "no deadline", send(r))
        .await;
    let mut r = exec_request("run", &["sleep", "30"]);
    r.timeout = Some(Duration::from_secs(1));
    t.case("exec: deadline reached", "timed_out: true", send(r))
        .await;
    let mut r = exec_request("run", &["true"]);
    r.env = (0..20_000)
        .map(|n| (format!("K{n}"), "v".repeat(32)))
        .collect();
    t.case("exec: 20000 environment entries", "exit_code: 0", send(r))
        .await;
    Ok(())
}

async fn others(t: &mut Table<'_>) -> Result<()> {
    let (pod, client) = (t.pod, t.client);
    let attach = |id: &str, socket: std::path::PathBuf| Attach {
        id: id.into(),
        socket_path: socket,
        ..Attach::default()
    };
    let r = attach("ghost", pod.path("a.sock"));
    t.check(
        "attach: unknown container",
        "not found",
        text(client.attach(&r).await),
    )
    .await;
    let r = attach("run", pod.path("plain-file"));
    t.check(
        "attach: path is a regular file",
        "not a socket",
        text(client.attach(&r).await),
    )
    .await;
    let r = attach("run", "relative.sock".into());
    t.check(
        "attach: relative path",
        "not an absolute path",
        text(client.attach(&r).await),
    )
    .await;
    let mut r = attach("run", pod.path("s.sock"));
    r.exec_session_id = "nope".into();
    t.check(
        "attach: unknown exec session",
        "nope",
        text(client.attach(&r).await),
    )
    .await;
    let size = WindowSize {
        id: "run".into(),
        width: u16::MAX,
        height: 0,
    };
    let resized = text(client.set_window_size(&size).await);
    t.check(
        "resize: container without a terminal",
        "has no terminal",
        resized,
    )
    .await;
    let reopened = text(client.reopen_log("ghost").await);
    t.check("reopen log: unknown container", "not found", reopened)
        .await;
    let serve = ServeExec {
        id: "run".into(),
        ..ServeExec::default()
    };
    let served = text(client.serve_exec(&serve).await);
    t.check("serve exec: empty command", "exec command is empty", served)
        .await;
    let serve = ServeAttach {
        id: "gone".into(),
        ..ServeAttach::default()
    };
    let served = text(client.serve_attach(&serve).await);
    t.check(
        "serve attach: exited container",
        "exited with code 4",
        served,
    )
    .await;
    let served = text(client.serve_port_forward("".as_ref()).await);
    t.check("port forward: empty netns path", "path is empty", served)
        .await;
    let served = text(client.serve_port_forward(&pod.path("fifo")).await);
    t.check("port forward: netns path is a FIFO", "is a FIFO", served)
        .await;
    let served = text(client.serve_port_forward(&pod.path("plain-file")).await);
    t.check(
        "port forward: not a namespace",
        "not a network namespace",
        served,
    )
    .await;
    Ok(())
}
