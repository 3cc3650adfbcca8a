//! Idle memory: conmond as CRI-O starts it, alone and ten at once (one per pod).

use std::time::Duration;

use anyhow::Result;
use testkit::otlp;
use testkit::*;

use super::{CRIO_FLAGS, memory};

/// Idle memory of conmond as CRI-O starts it (log driver none, level info, one persistent
/// client), without and with trace export.
pub(super) async fn idle_memory(report: &mut String) -> Result<()> {
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
