//! Idle memory: conmond as CRI-O starts it, alone and ten at once (one per pod).

use std::time::Duration;

use anyhow::Result;
use testkit::otlp;
use testkit::*;

use super::{CRIO_FLAGS, memory};

/// How the executable's pages got into the page cache decides how much of it an idle
/// process maps: the kernel maps the cached pages around each page touched (fault-around), and
/// a file just written is cached page by page, while one read from disk is cached in large
/// folios. Both states happen on a node (right after an install; after a reboot or eviction).
#[derive(Clone, Copy)]
enum Cache {
    /// As `cp` (or a package install, or a build) left it.
    Written,
    /// Dropped from the cache, so the first monitor reads it from disk.
    ReadFromDisk,
}

/// A copy of the conmond under test, in the cache state `cache`.
fn binary_copy(dir: &std::path::Path, cache: Cache) -> Result<std::path::PathBuf> {
    let copy = dir.join("conmond");
    std::fs::copy(conmond_binary(), &copy)?;
    if let Cache::ReadFromDisk = cache {
        // Written back first: only clean pages can be dropped.
        run_ok(&["sync", &copy.to_string_lossy()])?;
        let input = format!("if={}", copy.display());
        run_ok(&["dd", &input, "iflag=nocache", "count=0", "status=none"])?;
    }
    Ok(copy)
}

fn run_ok(argv: &[&str]) -> Result<()> {
    let status = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .status()?;
    anyhow::ensure!(status.success(), "{argv:?}: {status}");
    Ok(())
}

/// Idle memory of conmond as CRI-O starts it (log driver none, level info, one persistent
/// client), without and with trace export, with the executable in either cache state.
pub(super) async fn idle_memory(report: &mut String) -> Result<()> {
    report.push_str("## Idle memory\n\nconmond as CRI-O starts it (`--log-driver none --log-level info`), one client connected after a `version` call. The executable is a fresh copy of the one under test, either as written (its page cache from the copy, as after an install or build) or read from disk (its cache dropped first, as after a reboot): the kernel maps cached pages around each page a process touches, and a file cached page by page as it was written gets many more of them mapped than one read from disk into large folios. Release builds keep the functions conmond runs together in `.text.hot` (README, \"Where conmond's code sits in its executable\"), so that what it maps is mostly what it runs.\n\n| | executable | RSS | PSS | target |\n|---|---|---|---|---|\n");
    let receiver = otlp::Receiver::start(otlp::free_addr()?).await?;
    let endpoint = receiver.endpoint();
    let flags = CRIO_FLAGS;
    let traced: Vec<&str> = flags
        .iter()
        .copied()
        .chain(["--enable-tracing", "--tracing-endpoint", &endpoint])
        .collect();
    let no_metrics: Vec<&str> = traced
        .iter()
        .copied()
        .chain(["--disable-metrics"])
        .collect();
    for (cache, cache_label) in [
        (Cache::Written, "as written"),
        (Cache::ReadFromDisk, "read from disk"),
    ] {
        let dir = tempfile::tempdir()?;
        let copy = binary_copy(dir.path(), cache)?;
        // The launcher runs the copy with conmond's arguments (`$0` is the original's path).
        let script = format!("exec '{}' \"$@\"", copy.display());
        let launcher = [std::ffi::OsStr::new("sh"), "-c".as_ref(), script.as_ref()];
        let arms = [
            ("tracing off", &flags[..]),
            ("tracing on", &traced[..]),
            ("tracing on, metrics off", &no_metrics[..]),
        ];
        for (label, args) in arms {
            let pod = Pod::start_via(&launcher, None, args)?;
            let client = pod.client().await?;
            client.version(false).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let (rss, pss) = memory(pod.pid)?;
            report.push_str(&format!(
                "| conmond, {label} | {cache_label} | {rss} KiB | {pss} KiB | PSS ≤ 2000 KiB |\n"
            ));
        }
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
        "| conmond, tracing off, mean of {PODS} running at once (one per pod) | as built | {} KiB | {} KiB | |\n\n",
        rss_total / PODS as u64,
        pss_total / PODS as u64
    ));
    Ok(())
}
