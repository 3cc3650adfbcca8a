//! Pod scale: one monitor holding N running containers, as a pod with many containers does.
//! What each container costs the monitor (memory, descriptors) is the figure that multiplies.

use anyhow::Result;
use testkit::*;

use super::{CRIO_FLAGS, memory};

/// Containers per pod measured, with the PSS each may reach.
const SCALES: [(usize, u64); 2] = [(50, 3000), (200, 6000)];

/// PSS, RSS, anonymous RSS (KiB) and open descriptors of the pod's monitor.
fn footprint(pod: &Pod) -> Result<[u64; 4]> {
    let (rss, pss) = memory(pod.pid)?;
    Ok([
        pss,
        rss,
        pod.anonymous_rss_kib()?,
        pod.fd_targets()?.len() as u64,
    ])
}

/// Starts `count` containers that print a line and then wait, each with a CRI log and stdin,
/// as CRI-O creates them.
async fn fill(pod: &Pod, client: &MonitorClient, count: usize) -> Result<()> {
    for n in 0..count {
        let id = format!("scale-{n}");
        let mut request = pod.script_request(&id, "echo started; exec sleep 100000")?;
        request.stdin = true;
        request.log_drivers = log_to(LogFormat::Cri, &pod.path(&format!("{id}.log")), 0);
        pod.start_container(client, &request).await?;
    }
    Ok(())
}

pub(super) async fn pod_scale(report: &mut String) -> Result<()> {
    report.push_str(
        "## Pod scale\n\nOne monitor (`--log-driver none --log-level info`) with N running \
         containers (CRI log, stdin, one line of output each); per container = (with N − idle) \
         / N.\n\n| containers | PSS | target | RSS | anonymous RSS | open fds | PSS per container \
         | anonymous RSS per container | fds per container |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for (count, target) in SCALES {
        let pod = Pod::start_with(None, &CRIO_FLAGS)?;
        let client = pod.client().await?;
        client.version(false).await?;
        let idle = footprint(&pod)?;
        fill(&pod, &client, count).await?;
        let last = pod.path(&format!("scale-{}.log", count - 1));
        wait_for_text(&last, "started", super::WAIT).await?;
        let [pss, rss, anon, fds] = footprint(&pod)?;
        let per = |now: u64, before: u64| now.saturating_sub(before) as f64 / count as f64;
        let verdict = if pss <= target { "within" } else { "**over**" };
        report.push_str(&format!(
            "| {count} | {pss} KiB | ≤ {target} KiB ({verdict}) | {rss} KiB | {anon} KiB | {fds} | \
             {:.1} KiB | {:.1} KiB | {:.2} |\n",
            per(pss, idle[0]),
            per(anon, idle[2]),
            per(fds, idle[3]),
        ));
    }
    report.push('\n');
    Ok(())
}
