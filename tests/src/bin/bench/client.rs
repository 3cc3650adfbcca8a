//! The bench's client process: `bench client MODE --key value… [-- COMMAND…]`, a hidden
//! subcommand the bench runs as a separate process, as an engine is one. It makes `--calls`
//! calls (`--concurrency` at a time, default 1) and prints each call's duration in nanoseconds,
//! one a line, on stdout. Every clock is read right around the call: request sent → response
//! received for conmond, spawn → wait returned for runc. Connecting and one warm-up call (unless
//! `--warm-up 0`) come before any clock.
//!
//! Modes: `exec` (execSyncContainer over `--socket` in container `--id`), `runc-exec` (`runc
//! --root R exec ID COMMAND`, its output read through pipes as an engine would), `stream`
//! (serveExecContainer, websocket, output to the end), `spdy` (the same over SPDY/3.1, as
//! client-go's SPDY executor), `create` (createContainer of
//! `--bundle` as `--prefix`-N), `runc-create` (`runc create` of the same bundle) and
//! `interleave` (an `exec` call, then a `runc-exec` call, in turn, as the old bench timed
//! them: the lines alternate between the two). Created containers are deleted after each call,
//! off the clock.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use testkit::*;
use tokio::io::{AsyncRead, AsyncReadExt as _};

/// Parsed `--key value` pairs and the command after `--`.
struct Args {
    options: BTreeMap<String, String>,
    command: Vec<String>,
}

impl Args {
    fn parse(args: &[String]) -> Result<Self> {
        let mut options = BTreeMap::new();
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            if arg == "--" {
                break;
            }
            let key = arg
                .strip_prefix("--")
                .with_context(|| format!("bad argument {arg}"))?;
            let value = rest
                .next()
                .with_context(|| format!("{arg} needs a value"))?;
            options.insert(key.to_owned(), value.clone());
        }
        let command: Vec<String> = rest.cloned().collect();
        Ok(Self {
            options,
            command: if command.is_empty() {
                vec!["true".into()]
            } else {
                command
            },
        })
    }

    fn get(&self, key: &str) -> Result<&str> {
        self.options
            .get(key)
            .map(String::as_str)
            .with_context(|| format!("--{key} missing"))
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        Ok(PathBuf::from(self.get(key)?))
    }

    fn number(&self, key: &str, default: usize) -> Result<usize> {
        self.options.get(key).map_or(Ok(default), |v| {
            v.parse().with_context(|| format!("--{key}"))
        })
    }
}

/// Runs the client subcommand (`args` follow `client`).
#[allow(clippy::print_stdout, reason = "the samples are the client's output")]
pub(super) fn main(args: &[String]) -> Result<()> {
    let (mode, rest) = args.split_first().context("client: mode missing")?;
    let args = Args::parse(rest)?;
    let samples = run_local(run(mode, &args))?;
    let lines: String = samples
        .iter()
        .map(|d| format!("{}\n", d.as_nanos()))
        .collect();
    print!("{lines}");
    Ok(())
}

async fn run(mode: &str, args: &Args) -> Result<Vec<Duration>> {
    let calls = args.number("calls", 1)?;
    let concurrency = args.number("concurrency", 1)?;
    let warm_up = args.number("warm-up", 1)? > 0;
    let expect = args
        .options
        .get("expect-bytes")
        .map(|v| v.parse())
        .transpose()?;
    let command: Vec<&str> = args.command.iter().map(String::as_str).collect();
    match mode {
        "exec" => {
            let socket = args.path("socket")?;
            let client = MonitorClient::connect(&socket).await?;
            let mut request = exec_request(args.get("id")?, &command);
            let timeout = args.number("timeout", 0)?;
            request.timeout = (timeout > 0).then(|| Duration::from_secs(timeout as u64));
            // As conmon-rs's Go client before v1.0 (CRI-O ≤ 1.34) calls: a new connection for
            // every call, on the clock.
            let per_call = args.number("connect-per-call", 0)? > 0;
            timed(calls, concurrency, warm_up, async |_| {
                let start = Instant::now();
                let reply = if per_call {
                    let client = MonitorClient::connect(&socket).await?;
                    client.exec_sync(&request).await?
                } else {
                    client.exec_sync(&request).await?
                };
                let elapsed = start.elapsed();
                ensure!(reply.exit_code == 0, "exec failed: {reply:?}");
                check_bytes(reply.stdout.len(), expect)?;
                Ok(elapsed)
            })
            .await
        }
        "interleave" => {
            let client = MonitorClient::connect(&args.path("socket")?).await?;
            let (root, id) = (args.path("root")?, args.get("id")?);
            let request = exec_request(id, &command);
            // Even calls go to conmond, odd ones to runc, one at a time.
            timed(2 * calls, 1, warm_up, async |n| {
                if n % 2 == 1 {
                    return runc_exec(&root, id, &command, expect).await;
                }
                let start = Instant::now();
                let reply = client.exec_sync(&request).await?;
                let elapsed = start.elapsed();
                ensure!(reply.exit_code == 0, "exec failed: {reply:?}");
                Ok(elapsed)
            })
            .await
        }
        "runc-exec" => {
            let (root, id) = (args.path("root")?, args.get("id")?);
            timed(calls, concurrency, warm_up, async |_| {
                runc_exec(&root, id, &command, expect).await
            })
            .await
        }
        "stream" | "spdy" => {
            let spdy = mode == "spdy";
            let client = MonitorClient::connect(&args.path("socket")?).await?;
            let request = ServeExec {
                id: args.get("id")?.to_owned(),
                command: args.command.clone(),
                stdout: true,
                stderr: true,
                cgroup_manager: CgroupManager::Cgroupfs,
                ..ServeExec::default()
            };
            timed(calls, concurrency, warm_up, async |_| match spdy {
                true => spdy_stream(&client, &request, expect).await,
                false => stream(&client, &request, expect).await,
            })
            .await
        }
        "create" => {
            let client = MonitorClient::connect(&args.path("socket")?).await?;
            let (root, bundle, dir) = (args.path("root")?, args.path("bundle")?, args.path("dir")?);
            let prefix = args.get("prefix")?;
            timed(calls, 1, warm_up, async |n| {
                let id = format!("{prefix}-{n}");
                let request = CreateContainer {
                    id: id.clone(),
                    bundle: bundle.clone(),
                    exit_paths: vec![dir.join(format!("{id}.exit"))],
                    cgroup_manager: CgroupManager::Cgroupfs,
                    ..CreateContainer::default()
                };
                let start = Instant::now();
                client.create_container(&request).await?;
                let elapsed = start.elapsed();
                runc(&root, &["delete", "--force", &id]).await?;
                Ok(elapsed)
            })
            .await
        }
        "runc-create" => {
            let (root, bundle, dir) = (args.path("root")?, args.path("bundle")?, args.path("dir")?);
            let prefix = args.get("prefix")?;
            timed(calls, 1, warm_up, async |n| {
                let id = format!("{prefix}-{n}");
                let pidfile = dir.join(format!("{id}.pid"));
                let start = Instant::now();
                let status = runc_command(&root)
                    .arg("create")
                    .arg("--bundle")
                    .arg(&bundle)
                    .arg("--pid-file")
                    .arg(&pidfile)
                    .arg(&id)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .await?;
                let elapsed = start.elapsed();
                ensure!(status.success(), "runc create {id}: {status}");
                runc(&root, &["delete", "--force", &id]).await?;
                Ok(elapsed)
            })
            .await
        }
        other => bail!("client: unknown mode {other}"),
    }
}

/// Makes one untimed warm-up call (if `warm_up`), then `calls` calls numbered from 0,
/// `concurrency` at a time (each worker calls in turn); returns what each call measured.
async fn timed(
    calls: usize,
    concurrency: usize,
    warm_up: bool,
    one: impl AsyncFn(usize) -> Result<Duration>,
) -> Result<Vec<Duration>> {
    if warm_up {
        one(calls).await.context("warm-up call")?;
    }
    let concurrency = concurrency.max(1);
    let one = &one;
    let workers = (0..concurrency).map(|worker| async move {
        let mut samples = Vec::new();
        for n in (worker..calls).step_by(concurrency) {
            samples.push(one(n).await?);
        }
        Ok::<_, anyhow::Error>(samples)
    });
    let mut all = Vec::with_capacity(calls);
    for samples in futures::future::join_all(workers).await {
        all.extend(samples?);
    }
    Ok(all)
}

fn check_bytes(got: usize, expect: Option<usize>) -> Result<()> {
    match expect {
        Some(want) if want != got => bail!("got {got} bytes of output, expected {want}"),
        _ => Ok(()),
    }
}

fn runc_command(root: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(RUNC);
    command.arg("--root").arg(root);
    command
}

/// `runc --root R ARGS`, off the clock (deletes).
async fn runc(root: &Path, args: &[&str]) -> Result<()> {
    let output = runc_command(root).args(args).output().await?;
    ensure!(
        output.status.success(),
        "runc {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// Reads `from` to its end, counting the bytes.
async fn count(mut from: impl AsyncRead + Unpin) -> std::io::Result<usize> {
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0;
    loop {
        match from.read(&mut buf).await? {
            0 => return Ok(total),
            n => total += n,
        }
    }
}

/// One `runc exec ID COMMAND` with stdout and stderr on pipes read to their end, as an engine
/// calling runc itself would run it; timed from spawn to the wait.
async fn runc_exec(
    root: &Path,
    id: &str,
    command: &[&str],
    expect: Option<usize>,
) -> Result<Duration> {
    let start = Instant::now();
    let mut child = runc_command(root)
        .arg("exec")
        .arg(id)
        .args(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let (out, err) = tokio::join!(
        count(stdout.context("stdout")?),
        count(stderr.context("stderr")?)
    );
    let status = child.wait().await?;
    let elapsed = start.elapsed();
    ensure!(status.success(), "runc exec: {status}");
    let (out, _) = (out?, err?);
    check_bytes(out, expect)?;
    Ok(elapsed)
}

/// One streaming exec: URL, websocket, output to the end, status.
async fn stream(
    client: &MonitorClient,
    request: &ServeExec,
    expect: Option<usize>,
) -> Result<Duration> {
    let start = Instant::now();
    let url = client.serve_exec(request).await?;
    let mut session = k8s::connect(&url, "v5.channel.k8s.io").await?;
    let mut bytes = 0;
    // Counted as they come: the output is not kept.
    while session.receive().await? {
        if let Some(out) = session.received.remove(&k8s::STDOUT) {
            bytes += out.len();
        }
    }
    stream_done(start, session.status()?, bytes, expect)
}

/// One streaming exec over SPDY: URL, upgrade, the error, stdout and stderr streams (as
/// client-go opens them), output to the end, status.
async fn spdy_stream(
    client: &MonitorClient,
    request: &ServeExec,
    expect: Option<usize>,
) -> Result<Duration> {
    let start = Instant::now();
    let url = client.serve_exec(request).await?;
    let mut session = spdy::connect(&url, &["v4.channel.k8s.io"]).await?;
    let streams = session.open_streams(&["stdout", "stderr"]).await?;
    let mut bytes = 0;
    // Counted as they come: the output is not kept.
    while session.receive().await? {
        if let Some(out) = session.received.remove(&streams["stdout"]) {
            bytes += out.len();
        }
    }
    stream_done(start, session.status()?, bytes, expect)
}

/// The end of a streaming exec started at `start`: the clock stops, the status and the bytes
/// are checked.
fn stream_done(
    start: Instant,
    status: serde_json::Value,
    bytes: usize,
    expect: Option<usize>,
) -> Result<Duration> {
    let elapsed = start.elapsed();
    ensure!(
        status["status"] == "Success",
        "streaming exec failed: {status}"
    );
    check_bytes(bytes, expect)?;
    Ok(elapsed)
}

/// Runs `bench client MODE ARGS` as a separate process and returns the durations it printed.
/// Async, so that the bench's own tasks (an OTLP receiver) keep running meanwhile.
pub(super) async fn spawn(mode: &str, args: &[OsString]) -> Result<Vec<Duration>> {
    let output = tokio::process::Command::new(std::env::current_exe()?)
        .arg("client")
        .arg(mode)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .context("run the bench client")?;
    ensure!(
        output.status.success(),
        "bench client {mode} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)?
        .lines()
        .map(|line| Ok(Duration::from_nanos(line.parse()?)))
        .collect()
}

/// `--key value` arguments for [`spawn`].
pub(super) fn args<const N: usize>(
    pairs: [(&str, &dyn AsRef<std::ffi::OsStr>); N],
) -> Vec<OsString> {
    pairs
        .iter()
        .flat_map(|(key, value)| {
            [
                OsString::from(format!("--{key}")),
                value.as_ref().to_owned(),
            ]
        })
        .collect()
}
