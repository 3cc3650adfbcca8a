//! Log throughput: one container writes lines as fast as it can, and the bytes go through
//! (a) `cat` into a file on the same filesystem (the floor: a fast copy, no monitor),
//! (b) conmond into a CRI log and (c) Debian's conmon into a CRI log. The arms alternate over
//! rounds; each is timed from `runc start` to the point where the output is complete (`cat`
//! exited; the exit file, which both monitors write after draining the output).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use testkit::*;

use super::stats::{alternate, ratio};
use super::{CONMON, CRIO_FLAGS, WAIT};

/// (line size, bytes per run, rounds).
const LOADS: [(usize, usize, usize); 2] = [(128, 256 << 20, 5), (2, 16 << 20, 3)];
/// Bytes in the data file the producer copies repeatedly.
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

/// A bundle `id` whose process writes `total` bytes of `line_size`-byte lines: one `cat` of a
/// 1 MiB file named as often as needed, so that the producer (large writes, no process per
/// MiB) is not the bottleneck.
fn producer_bundle(pod: &Pod, id: &str, line_size: usize, total: usize) -> Result<PathBuf> {
    let mut args = vec!["cat"];
    args.extend(std::iter::repeat_n("/data", total / DATA_SIZE));
    let bundle = pod.bundle(id, &args)?;
    write_data(&bundle.join("rootfs/data"), line_size)?;
    Ok(bundle)
}

/// Polls every millisecond until `path` exists.
async fn wait_exists(path: &Path) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    while !path.exists() {
        if Instant::now() >= deadline {
            bail!("timed out waiting for {}", path.display());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

fn runc(pod: &Pod) -> Command {
    let mut command = Command::new(RUNC);
    command.arg("--root").arg(&pod.runc_root);
    command
}

/// The floor: the container created by `runc create` with its stdout the write end of a pipe
/// whose reader is `cat > file`. Returns the time from `runc start` to `cat`'s exit and the
/// bytes lost.
fn through_cat(pod: &Pod, id: &str, line_size: usize, total: usize) -> Result<(Duration, usize)> {
    let bundle = producer_bundle(pod, id, line_size, total)?;
    let out = pod.path(&format!("{id}.out"));
    let mut cat = Command::new("/bin/cat")
        .stdin(Stdio::piped())
        .stdout(File::create(&out)?)
        .spawn()?;
    let pipe = cat.stdin.take().context("cat's stdin")?;
    // The container inherits runc create's stdio; the command (and its copy of the pipe) is
    // dropped at the end of the statement, so the container holds the only write end.
    let status = runc(pod)
        .args(["create", "--bundle"])
        .arg(&bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::from(pipe))
        .stderr(Stdio::null())
        .status()?;
    ensure!(status.success(), "runc create {id}: {status}");
    let start = Instant::now();
    pod.runc(&["start", id])?;
    ensure!(cat.wait()?.success(), "cat failed");
    let elapsed = start.elapsed();
    let recovered = std::fs::metadata(&out)?.len() as usize;
    end_run(pod, id, &out, elapsed, total, recovered)
}

/// The result of a run that took `elapsed` and left `recovered` of its `total` bytes, once its
/// `output` (a file or a directory) and its container `id` are removed.
fn end_run(
    pod: &Pod,
    id: &str,
    output: &Path,
    elapsed: Duration,
    total: usize,
    recovered: usize,
) -> Result<(Duration, usize)> {
    if output.is_dir() {
        std::fs::remove_dir_all(output)?;
    } else {
        std::fs::remove_file(output)?;
    }
    pod.runc(&["delete", "--force", id])?;
    Ok((elapsed, total.saturating_sub(recovered)))
}

/// conmond (the pod's monitor) writing a CRI log.
async fn through_conmond(
    pod: &Pod,
    client: &MonitorClient,
    id: &str,
    line_size: usize,
    total: usize,
) -> Result<(Duration, usize)> {
    let bundle = producer_bundle(pod, id, line_size, total)?;
    let log = pod.path(&format!("{id}.log"));
    let mut request = pod.create_request(id, bundle);
    request.log_drivers = log_to(LogFormat::Cri, &log, 0);
    client.create_container(&request).await?;
    let start = Instant::now();
    pod.runc(&["start", id])?;
    wait_exists(&request.exit_paths[0]).await?;
    let elapsed = start.elapsed();
    let recovered = cri_stream(&std::fs::read(&log)?, "stdout")?.len();
    end_run(pod, id, &log, elapsed, total, recovered)
}

/// Debian's conmon writing a CRI log, one monitor process per container (as CRI-O's "oci"
/// runtime type runs it, with `--no-sync-log` like conmond, which does not sync either).
async fn through_conmon(
    pod: &Pod,
    id: &str,
    line_size: usize,
    total: usize,
) -> Result<(Duration, usize)> {
    let bundle = producer_bundle(pod, id, line_size, total)?;
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
    wait_exists(&exit_dir.join(id)).await?;
    let elapsed = start.elapsed();
    // conmon exits once it has finished with the container; count what it left in the log.
    let conmon_pid = std::fs::read_to_string(&conmon_pidfile)?.trim().to_owned();
    wait_for("conmon to exit", WAIT, || {
        (!PathBuf::from(format!("/proc/{conmon_pid}/exe")).exists()).then_some(())
    })
    .await?;
    let recovered = cri_stream(&std::fs::read(&log)?, "stdout")?.len();
    end_run(pod, id, &dir, elapsed, total, recovered)
}

pub(super) async fn log_throughput(report: &mut String) -> Result<()> {
    let pod = Pod::start_with(None, &CRIO_FLAGS)?;
    let client = pod.client().await?;
    report.push_str(
        "## Log throughput\n\nOne container writes the bytes as fast as it can (one busybox \
         `cat` of a 1 MiB file of lines, named as often as needed). Floor: the same container created by `runc create` \
         with its stdout on a pipe read by `cat` into a file on the same filesystem. Each arm \
         is timed from `runc start` to complete output (`cat` exited; the monitor's exit \
         file, written after the output is drained); the arms alternate over the rounds and \
         the figures are medians. Lost = bytes written minus bytes found in the file or \
         recovered from the CRI log, summed over the rounds.\n\n\
         | line size | bytes per run × rounds | floor: `cat` into a file | conmond | Debian \
         conmon | conmond / conmon (× faster) | conmond / floor (share of the floor) | lost: \
         floor / conmond / conmon | target |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for (line_size, total, rounds) in LOADS {
        let mut lost = [0usize; 3];
        let arms = alternate(rounds, 3, async |arm| {
            let id = unique_id(&format!("log-{line_size}-{arm}"));
            let (elapsed, missing) = match arm {
                0 => through_cat(&pod, &id, line_size, total)?,
                1 => through_conmond(&pod, &client, &id, line_size, total).await?,
                _ => through_conmon(&pod, &id, line_size, total).await?,
            };
            lost[arm] += missing;
            Ok(vec![elapsed])
        })
        .await?;
        let (floor, ours, peer) = (arms[0].p50(), arms[1].p50(), arms[2].p50());
        let mib_s = |d: Duration| total as f64 / (1 << 20) as f64 / d.as_secs_f64();
        let target = if line_size == 128 {
            "≥ 2 × conmon, ≥ 0.5 × floor, 0 lost"
        } else {
            ""
        };
        report.push_str(&format!(
            "| {line_size} B | {} MiB × {rounds} | {:.0} MiB/s | {:.0} MiB/s | {:.0} MiB/s | \
             **{:.2}** | **{:.2}** | {} B / {} B / {} B | {target} |\n",
            total >> 20,
            mib_s(floor),
            mib_s(ours),
            mib_s(peer),
            ratio(peer, ours),
            ratio(floor, ours),
            lost[0],
            lost[1],
            lost[2],
        ));
    }
    report.push('\n');
    Ok(())
}
