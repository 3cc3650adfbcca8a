//! Benchmarks conmond against its floor (bare runc, a raw pipe) and its peer (Debian's C conmon),
//! in one run on this machine. Prints a Markdown report of ratios; absolute times are given
//! for context only. Needs root, runc, busybox-static and conmon.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod endurance;
mod scale;

use anyhow::{Context as _, Result, bail};
use testkit::otlp;
use testkit::*;

const EXEC_ROUNDS: usize = 100;
const CREATE_ROUNDS: usize = 20;
const LOG_ROUNDS: usize = 3;
const WAIT: Duration = Duration::from_secs(120);
const CONMON: &str = "/usr/bin/conmon";
/// conmond's own logging as CRI-O configures it by default.
const CRIO_FLAGS: [&str; 4] = ["--log-driver", "none", "--log-level", "info"];

#[allow(clippy::print_stdout, reason = "the report is the program's output")]
fn main() -> Result<()> {
    require_privileged();
    anyhow::ensure!(
        Path::new(CONMON).exists(),
        "{CONMON} missing: apt-get install conmon"
    );
    let mut report = String::new();
    report.push_str("# conmond benchmark\n\n");
    report.push_str(&format!(
        "Machine: {} cores; runc {}; Debian conmon {}. Ratios compare runs made in this one \
         invocation.\n\n",
        std::thread::available_parallelism().map_or(0, usize::from),
        first_line(&["/usr/sbin/runc", "--version"]),
        first_line(&[CONMON, "--version"]),
    ));
    // BENCH_ONLY=scale (say) runs that section alone.
    if std::env::var("BENCH_ONLY").as_deref() == Ok("scale") {
        run_local(scale::pod_scale(&mut report))?;
        println!("{report}");
        return Ok(());
    }
    run_local(async {
        idle_memory(&mut report).await?;
        scale::pod_scale(&mut report).await?;
        endurance::endurance(&mut report).await?;
        let pod = Pod::start_with(None, &CRIO_FLAGS)?;
        let client = pod.client().await?;
        exec_latency(&pod, &client, &mut report).await?;
        tracing_overhead(&client, &mut report).await?;
        streaming_exec(&pod, &client, &mut report).await?;
        create_latency(&pod, &client, &mut report).await?;
        report.push_str("## Log throughput\n\nThe container writes the bytes as fast as it can; time runs from `runc start` to the exit file (logs complete). Lost = bytes written minus bytes recovered from the CRI log.\n\n");
        report.push_str("| line size | total | raw pipe→file | conmond | Debian conmon | conmond vs conmon (× faster) | conmond / raw (× slower) | lost: conmond | lost: conmon |\n|---|---|---|---|---|---|---|---|---|\n");
        log_throughput(&pod, &client, 128, 256 << 20, &mut report).await?;
        log_throughput(&pod, &client, 2, 16 << 20, &mut report).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    // The report file gets the report only (dropped pods print their logs to stdout).
    if let Some(path) = std::env::args_os().nth(1) {
        std::fs::write(&path, &report).with_context(|| format!("write {}", path.display()))?;
    }
    println!("{report}");
    Ok(())
}

fn first_line(argv: &[&str]) -> String {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_default()
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() - 1) as f64 * p).round() as usize;
    samples[index]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// PSS and RSS of a process, in KiB.
fn memory(pid: u32) -> Result<(u64, u64)> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    let field = |name: &str| -> Result<u64> {
        rollup
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .with_context(|| format!("{name} missing in smaps_rollup"))
    };
    Ok((field("Rss:")?, field("Pss:")?))
}

/// Idle memory of conmond as CRI-O starts it (log driver none, level info, one persistent
/// client), without and with trace export.
async fn idle_memory(report: &mut String) -> Result<()> {
    report.push_str("## Idle memory\n\nconmond as CRI-O starts it (`--log-driver none --log-level info`), one client connected after a `version` call.\n\n| | RSS | PSS | target |\n|---|---|---|---|\n");
    let receiver = otlp::Receiver::start(otlp::free_addr()?).await?;
    let endpoint = receiver.endpoint();
    let flags = CRIO_FLAGS;
    let traced: Vec<&str> = flags
        .iter()
        .copied()
        .chain(["--enable-tracing", "--tracing-endpoint", &endpoint])
        .collect();
    for (label, args, target) in [
        ("tracing off", &flags[..], "PSS ≤ 2000 KiB"),
        ("tracing on", &traced[..], ""),
    ] {
        let pod = Pod::start_with(None, args)?;
        let client = pod.client().await?;
        client.version(false).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (rss, pss) = memory(pod.pid)?;
        report.push_str(&format!(
            "| conmond, {label} | {rss} KiB | {pss} KiB | {target} |\n"
        ));
    }
    // A node runs one conmond per pod: the binary's pages are shared among them.
    const PODS: usize = 10;
    let mut pods = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..PODS {
        let pod = Pod::start_with(None, &flags)?;
        let client = pod.client().await?;
        client.version(false).await?;
        pods.push(pod);
        clients.push(client);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut pss_total = 0;
    let mut rss_total = 0;
    for pod in &pods {
        let (rss, pss) = memory(pod.pid)?;
        rss_total += rss;
        pss_total += pss;
    }
    report.push_str(&format!(
        "| conmond, tracing off, mean of {PODS} running at once (one per pod) | {} KiB | {} KiB | |\n\n",
        rss_total / PODS as u64,
        pss_total / PODS as u64
    ));
    Ok(())
}

/// Starts a long-running container `exec-bench` in `pod` and returns an exec request for it.
async fn exec_target(pod: &Pod, client: &MonitorClient) -> Result<ExecSync> {
    let bundle = pod.bundle("exec-bench", &["sleep", "100000"])?;
    client
        .create_container(&pod.create_request("exec-bench", bundle))
        .await?;
    pod.runc(&["start", "exec-bench"])?;
    Ok(exec_target_request())
}

async fn timed_exec(client: &MonitorClient, request: &ExecSync) -> Result<Duration> {
    let start = Instant::now();
    let result = client.exec_sync(request).await?;
    anyhow::ensure!(result.exit_code == 0, "exec failed: {result:?}");
    Ok(start.elapsed())
}

/// Exec-sync with tracing off, on at 100 % sampling (collector up) and on with the collector
/// down, interleaved.
async fn tracing_overhead(off_client: &MonitorClient, report: &mut String) -> Result<()> {
    let receiver = otlp::Receiver::start(otlp::free_addr()?).await?;
    let traced = Pod::start_traced(&receiver.endpoint(), &CRIO_FLAGS)?;
    let down = Pod::start_traced(&format!("http://{}", otlp::free_addr()?), &CRIO_FLAGS)?;
    let (traced_client, down_client) = (traced.client().await?, down.client().await?);
    // `off` already runs `exec-bench` (from the exec latency run).
    let off_request = exec_target_request();
    let traced_request = exec_target(&traced, &traced_client).await?;
    let down_request = exec_target(&down, &down_client).await?;
    let (mut t_off, mut t_on, mut t_down) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..EXEC_ROUNDS {
        t_off.push(timed_exec(off_client, &off_request).await?);
        t_on.push(timed_exec(&traced_client, &traced_request).await?);
        t_down.push(timed_exec(&down_client, &down_request).await?);
    }
    let exported = || {
        let spans = receiver.spans();
        spans
            .iter()
            .filter(|s| s.name == "Conmon/execSyncContainer")
            .count()
    };
    // Export is asynchronous: give the last batch its moment, then count.
    let _ = wait_for("all exec spans", Duration::from_secs(10), || {
        (exported() == EXEC_ROUNDS).then_some(())
    })
    .await;
    let exported = exported();
    let (off50, on50, down50) = (
        percentile(&mut t_off, 0.5),
        percentile(&mut t_on, 0.5),
        percentile(&mut t_down, 0.5),
    );
    report.push_str(&format!(
        "## Tracing overhead on exec-sync ({EXEC_ROUNDS} interleaved rounds)\n\n| | p50 | ratio to off | target |\n|---|---|---|---|\n| tracing off | {} | 1.000 | |\n| tracing on, 100 % sampled, collector up | {} | {:.3} | ≤ 1.03 |\n| tracing on, collector down | {} | {:.3} | ≤ 1.05 |\n\nexecSyncContainer spans received by the collector: {exported} of {EXEC_ROUNDS}.\n\n",
        ms(off50), ms(on50), on50.as_secs_f64() / off50.as_secs_f64(),
        ms(down50), down50.as_secs_f64() / off50.as_secs_f64(),
    ));
    Ok(())
}

fn exec_target_request() -> ExecSync {
    ExecSync {
        id: "exec-bench".into(),
        command: vec!["true".into()],
        cgroup_manager: CgroupManager::Cgroupfs,
        ..ExecSync::default()
    }
}

async fn exec_latency(pod: &Pod, client: &MonitorClient, report: &mut String) -> Result<()> {
    let request = exec_target(pod, client).await?;
    let (mut ours, mut bare) = (Vec::new(), Vec::new());
    // Interleaved, so machine noise hits both alike.
    for _ in 0..EXEC_ROUNDS {
        ours.push(timed_exec(client, &request).await?);
        let start = Instant::now();
        pod.runc(&["exec", "exec-bench", "true"])?;
        bare.push(start.elapsed());
    }
    let (p50, p99) = (percentile(&mut ours, 0.5), percentile(&mut ours, 0.99));
    let (b50, b99) = (percentile(&mut bare, 0.5), percentile(&mut bare, 0.99));
    report.push_str(&format!(
        "## Exec-sync latency ({EXEC_ROUNDS} rounds of `true`)\n\n| | p50 | p99 |\n|---|---|---|\n| bare `runc exec` | {} | {} |\n| conmond execSyncContainer | {} | {} |\n| overhead | {} | {} |\n| ratio conmond / runc | {:.3} | {:.3} |\n\nTarget: overhead ≤ 1 ms at p50.\n\n",
        ms(b50), ms(b99), ms(p50), ms(p99),
        ms(p50.saturating_sub(b50)), ms(p99.saturating_sub(b99)),
        p50.as_secs_f64() / b50.as_secs_f64(), p99.as_secs_f64() / b99.as_secs_f64(),
    ));
    Ok(())
}

/// One streaming exec of `command` in `exec-bench`: URL, websocket, output to the end. Returns
/// the time taken and the stdout bytes received.
async fn timed_stream(client: &MonitorClient, command: &[&str]) -> Result<(Duration, usize)> {
    let start = Instant::now();
    let url = client
        .serve_exec(&ServeExec {
            id: "exec-bench".into(),
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            stdout: true,
            stderr: true,
            cgroup_manager: CgroupManager::Cgroupfs,
            ..ServeExec::default()
        })
        .await?;
    let mut session = k8s::connect(&url, "v5.channel.k8s.io").await?;
    let mut bytes = 0;
    loop {
        // Counted as they come: the output is not kept.
        if !session.receive().await? {
            break;
        }
        if let Some(out) = session.received.remove(&k8s::STDOUT) {
            bytes += out.len();
        }
    }
    let status = session.status()?;
    anyhow::ensure!(
        status["status"] == "Success",
        "streaming exec failed: {status}"
    );
    Ok((start.elapsed(), bytes))
}

/// Streaming exec (serveExecContainer + websocket) against bare `runc exec` with its stdio on
/// pipes: latency of `true` and throughput of a large output.
async fn streaming_exec(pod: &Pod, client: &MonitorClient, report: &mut String) -> Result<()> {
    let (mut ours, mut bare) = (Vec::new(), Vec::new());
    for _ in 0..EXEC_ROUNDS {
        ours.push(timed_stream(client, &["true"]).await?.0);
        let start = Instant::now();
        pod.runc(&["exec", "exec-bench", "true"])?;
        bare.push(start.elapsed());
    }
    let (p50, b50) = (percentile(&mut ours, 0.5), percentile(&mut bare, 0.5));
    const TOTAL: usize = 256 << 20;
    let count = TOTAL.to_string();
    let (streamed, bytes) = timed_stream(client, &["head", "-c", &count, "/dev/zero"]).await?;
    anyhow::ensure!(bytes == TOTAL, "streamed {bytes} of {TOTAL} bytes");
    let start = Instant::now();
    let output = Command::new("/usr/sbin/runc")
        .arg("--root")
        .arg(&pod.runc_root)
        .args(["exec", "exec-bench", "head", "-c", &count, "/dev/zero"])
        .output()?;
    let piped = start.elapsed();
    anyhow::ensure!(
        output.stdout.len() == TOTAL,
        "runc exec gave {} bytes",
        output.stdout.len()
    );
    let mib_s = |d: Duration| TOTAL as f64 / (1 << 20) as f64 / d.as_secs_f64();
    report.push_str(&format!(
        "## Streaming exec (serveExecContainer, websocket v5)

| | bare `runc exec` (pipes) | conmond stream | ratio conmond / runc |
|---|---|---|---|
| `true`, p50 of {EXEC_ROUNDS} (URL, connect, run, status) | {} | {} | {:.3} |
| 256 MiB of stdout | {:.0} MiB/s | {:.0} MiB/s | {:.3} (time) |

",
        ms(b50),
        ms(p50),
        p50.as_secs_f64() / b50.as_secs_f64(),
        mib_s(piped),
        mib_s(streamed),
        streamed.as_secs_f64() / piped.as_secs_f64(),
    ));
    Ok(())
}

async fn create_latency(pod: &Pod, client: &MonitorClient, report: &mut String) -> Result<()> {
    let bundle = pod.bundle("create-bench", &["true"])?;
    let (mut ours, mut bare) = (Vec::new(), Vec::new());
    for round in 0..CREATE_ROUNDS {
        let id = format!("create-{round}");
        let start = Instant::now();
        client
            .create_container(&pod.create_request(&id, bundle.clone()))
            .await?;
        ours.push(start.elapsed());
        pod.runc(&["delete", "--force", &id])?;

        let bare_id = format!("bare-{round}");
        let pidfile = bundle.join("bare.pid");
        let start = Instant::now();
        let status = Command::new(RUNC)
            .arg("--root")
            .arg(&pod.runc_root)
            .args(["create", "--bundle"])
            .arg(&bundle)
            .arg("--pid-file")
            .arg(&pidfile)
            .arg(&bare_id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        bare.push(start.elapsed());
        anyhow::ensure!(status.success(), "bare runc create failed");
        pod.runc(&["delete", "--force", &bare_id])?;
    }
    let (p50, b50) = (percentile(&mut ours, 0.5), percentile(&mut bare, 0.5));
    report.push_str(&format!(
        "## Create latency ({CREATE_ROUNDS} rounds)\n\n| | p50 |\n|---|---|\n| bare `runc create` | {} |\n| conmond createContainer | {} |\n| ratio conmond / runc | {:.3} |\n\n",
        ms(b50), ms(p50), p50.as_secs_f64() / b50.as_secs_f64(),
    ));
    Ok(())
}

/// Bytes in the data file a producer copies repeatedly.
const DATA_SIZE: usize = 1 << 20;

/// Writes `DATA_SIZE` bytes of `line_size`-byte lines to `path`.
fn write_data(path: &Path, line_size: usize) -> Result<()> {
    let mut line: Vec<u8> = b"abcdefghijklmnopqrstuvwxyz0123456789"
        .iter()
        .copied()
        .cycle()
        .take(line_size - 1)
        .collect();
    line.push(b'\n');
    let data: Vec<u8> = line.iter().copied().cycle().take(DATA_SIZE).collect();
    std::fs::create_dir_all(path.parent().context("data path has a parent")?)?;
    Ok(std::fs::write(path, data)?)
}

/// The producer: `total` bytes of lines, copied from `data` with large writes so the producer
/// is not the bottleneck.
fn producer(data: &str, total: usize) -> String {
    let reps = total / DATA_SIZE;
    format!("n=0; while [ $n -lt {reps} ]; do cat {data}; n=$((n+1)); done")
}

async fn log_throughput(
    pod: &Pod,
    client: &MonitorClient,
    line_size: usize,
    total: usize,
    report: &mut String,
) -> Result<()> {
    let host_data = pod.path("data");
    write_data(&host_data, line_size)?;
    let (mut raw, mut ours, mut peer) = (Vec::new(), Vec::new(), Vec::new());
    let (mut lost_ours, mut lost_peer) = (0usize, 0usize);
    for round in 0..LOG_ROUNDS {
        // Floor: the same bytes through a pipe into a file, no monitor, no container.
        let out = pod.path("raw.out");
        let start = Instant::now();
        let status = Command::new(BUSYBOX)
            .args([
                "sh",
                "-c",
                &format!(
                    "({}) | cat > {}",
                    producer(&host_data.display().to_string(), total),
                    out.display()
                ),
            ])
            .status()?;
        raw.push(start.elapsed());
        anyhow::ensure!(status.success() && std::fs::metadata(&out)?.len() == total as u64);
        std::fs::remove_file(&out)?;

        let id = format!("log-{line_size}-{round}");
        let script = producer("/data", total);
        let bundle = pod.bundle(&id, &["sh", "-c", &script])?;
        write_data(&bundle.join("rootfs/data"), line_size)?;
        let log = pod.path(&format!("{id}.log"));
        let mut request = pod.create_request(&id, bundle);
        request.log_drivers = log_to(LogFormat::Cri, &log, 0);
        client.create_container(&request).await?;
        let start = Instant::now();
        pod.runc(&["start", &id])?;
        wait_for_file(&request.exit_paths[0], WAIT).await?;
        ours.push(start.elapsed());
        lost_ours += total.saturating_sub(cri_stream(&std::fs::read(&log)?, "stdout")?.len());
        std::fs::remove_file(&log)?;
        pod.runc(&["delete", "--force", &id])?;

        let (elapsed, lost) =
            run_under_conmon(pod, &format!("c{id}"), &script, line_size, total).await?;
        peer.push(elapsed);
        lost_peer += lost;
    }
    let (r, o, p) = (
        percentile(&mut raw, 0.5),
        percentile(&mut ours, 0.5),
        percentile(&mut peer, 0.5),
    );
    let mib_s = |d: Duration| total as f64 / (1 << 20) as f64 / d.as_secs_f64();
    report.push_str(&format!(
        "| {line_size} B | {} MiB × {LOG_ROUNDS} | {:.0} MiB/s | {:.0} MiB/s | {:.0} MiB/s | {:.2} | {:.2} | {lost_ours} B | {lost_peer} B |\n",
        total >> 20, mib_s(r), mib_s(o), mib_s(p),
        p.as_secs_f64() / o.as_secs_f64(), o.as_secs_f64() / r.as_secs_f64(),
    ));
    Ok(())
}

/// Runs one container under Debian's conmon (one monitor process per container, as CRI-O's
/// "oci" runtime type does); returns the time from start to exit file and the bytes lost.
async fn run_under_conmon(
    pod: &Pod,
    id: &str,
    script: &str,
    line_size: usize,
    total: usize,
) -> Result<(Duration, usize)> {
    let bundle = pod.bundle(id, &["sh", "-c", script])?;
    write_data(&bundle.join("rootfs/data"), line_size)?;
    let dir = pod.path(&format!("{id}.conmon"));
    let exit_dir = dir.join("exits");
    std::fs::create_dir_all(&exit_dir)?;
    let log = dir.join("ctr.log");
    let conmon_pidfile = dir.join("conmon.pid");
    let status = Command::new(CONMON)
        .args(["--cid", id, "--cuuid", id, "--name", id, "--runtime", RUNC])
        .arg("--runtime-arg")
        .arg(format!("--root={}", pod.runc_root.display()))
        .arg("--bundle")
        .arg(&bundle)
        .arg("--container-pidfile")
        .arg(bundle.join("pidfile"))
        .arg("--conmon-pidfile")
        .arg(&conmon_pidfile)
        .arg("--log-path")
        .arg(&log)
        .arg("--exit-dir")
        .arg(&exit_dir)
        .arg("--socket-dir-path")
        .arg(&dir)
        .arg("--no-sync-log")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("conmon failed to create {id}: {status}");
    }
    // Without an engine's sync pipe, conmon returns before `runc create` is done.
    wait_for("conmon's container to be created", WAIT, || {
        pod.runc(&["state", id])
            .ok()
            .filter(|state| state.contains("\"created\""))
            .map(drop)
    })
    .await?;
    let start = Instant::now();
    pod.runc(&["start", id])?;
    wait_for_file(&exit_dir.join(id), WAIT).await?;
    let elapsed = start.elapsed();
    // conmon exits once it has finished with the container; count what it left in the log.
    let conmon_pid = std::fs::read_to_string(&conmon_pidfile)?.trim().to_owned();
    wait_for("conmon to exit", WAIT, || {
        (!PathBuf::from(format!("/proc/{conmon_pid}/exe")).exists()).then_some(())
    })
    .await?;
    let lost = total.saturating_sub(cri_stream(&std::fs::read(&log)?, "stdout")?.len());
    std::fs::remove_dir_all(&dir)?;
    pod.runc(&["delete", "--force", id])?;
    Ok((elapsed, lost))
}
