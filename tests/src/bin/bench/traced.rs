//! Tracing overhead on exec-sync and streaming exec, each arm timed by a separate client
//! process (`bench client`) in alternating rounds.

use std::time::Duration;

use anyhow::Result;
use testkit::otlp;
use testkit::*;

use super::client::{self, args};
use super::latency::{ROUNDS, exec_batch};
use super::stats::{alternate, ms, ratio};
use super::{CRIO_FLAGS, exec_target};

const CALLS: usize = 10;

/// Exec-sync with tracing off, on at 100 % sampling (collector up; metrics on, as by default,
/// and off) and on with the collector down.
pub(super) async fn tracing_overhead(report: &mut String) -> Result<()> {
    let receiver = otlp::Receiver::start(otlp::free_addr()?).await?;
    let off = Pod::start_with(None, &CRIO_FLAGS)?;
    let on = Pod::start_traced(&receiver.endpoint(), &CRIO_FLAGS)?;
    let down = Pod::start_traced(&format!("http://{}", otlp::free_addr()?), &CRIO_FLAGS)?;
    let mut no_metrics_flags = CRIO_FLAGS.to_vec();
    no_metrics_flags.push("--disable-metrics");
    let no_metrics = Pod::start_traced(&receiver.endpoint(), &no_metrics_flags)?;
    let mut clients = Vec::new();
    for pod in [&off, &on, &down, &no_metrics] {
        let client = pod.client().await?;
        exec_target(pod, &client).await?;
        clients.push(client);
    }
    let pods = [&off, &on, &down, &no_metrics];
    let arms = alternate(ROUNDS, 4, async |arm| {
        exec_batch(pods[arm], "exec", CALLS, 1, &[]).await
    })
    .await?;
    // Each batch makes one warm-up call besides its timed ones (two monitors export).
    let expected = 2 * ROUNDS * (CALLS + 1);
    // Distinct span ids: an exporter that timed out waiting for an answer sends again.
    let exported = || {
        receiver
            .spans()
            .iter()
            .filter(|s| s.name == "Conmon/execSyncContainer")
            .map(|s| s.span_id.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    // Export is asynchronous: poll until the last batch has arrived (or give up and report).
    let _ = wait_for("all exec spans", Duration::from_secs(10), || {
        (exported() >= expected).then_some(())
    })
    .await;
    let exported = exported();
    let (off50, on50, down50) = (arms[0].p50(), arms[1].p50(), arms[2].p50());
    let no_metrics50 = arms[3].p50();
    report.push_str(&format!(
        "## Tracing overhead on exec-sync\n\nexecSyncContainer of `true` from a separate client \
         process; four monitors, {ROUNDS} alternating rounds of {CALLS}. Metrics are on with \
         tracing unless `--disable-metrics`.\n\n\
         | | p50 | p99 | ratio to off (p50) | target |\n|---|---|---|---|---|\n\
         | tracing off | {} | {} | 1.000 | |\n\
         | tracing on, 100 % sampled, collector up | {} | {} | {:.3} | ≤ 1.03 |\n\
         | tracing on, collector down | {} | {} | {:.3} | ≤ 1.05 |\n\
         | tracing on, metrics off | {} | {} | {:.3} | |\n\n\
         Metrics on vs off (p50, both traced): {:.3} (target ≤ 1.02). execSyncContainer spans \
         received by the collector: {exported} of {expected}.\n\n",
        ms(off50),
        ms(arms[0].p99()),
        ms(on50),
        ms(arms[1].p99()),
        ratio(on50, off50),
        ms(down50),
        ms(arms[2].p99()),
        ratio(down50, off50),
        ms(no_metrics50),
        ms(arms[3].p99()),
        ratio(no_metrics50, off50),
        ratio(on50, no_metrics50),
    ));
    Ok(())
}

/// A batch of `calls` of `command` in `exec-bench` by a client process: a streaming exec
/// (`stream`: serveExecContainer, websocket v5, output to the end) or bare `runc exec` with its
/// output on pipes (`runc-exec`).
async fn batch(
    pod: &Pod,
    mode: &str,
    calls: usize,
    warm_up: bool,
    command: &[&str],
) -> Result<Vec<Duration>> {
    let (calls, warm) = (calls.to_string(), if warm_up { "1" } else { "0" });
    let mut list = args([
        ("id", &"exec-bench"),
        ("calls", &calls),
        ("warm-up", &warm),
        ("expect-bytes", &expected_bytes(command)),
    ]);
    list.extend(match mode {
        "runc-exec" => args([("root", &pod.runc_root)]),
        _ => args([("socket", &pod.socket())]),
    });
    list.push("--".into());
    list.extend(command.iter().map(Into::into));
    client::spawn(mode, &list).await
}

/// Bytes of stdout `command` gives: `head -c N` gives N, `true` none.
fn expected_bytes(command: &[&str]) -> String {
    match command {
        ["head", "-c", count, ..] => (*count).to_owned(),
        _ => "0".to_owned(),
    }
}

/// Streaming exec, over a websocket and over SPDY, against bare `runc exec` with its stdio on
/// pipes: latency of `true` and throughput of a large output.
pub(super) async fn streaming_exec(report: &mut String) -> Result<()> {
    const TOTAL: usize = 256 << 20;
    let pod = Pod::start_with(None, &CRIO_FLAGS)?;
    let client = pod.client().await?;
    exec_target(&pod, &client).await?;
    const MODES: [&str; 3] = ["runc-exec", "stream", "spdy"];
    let latency = alternate(ROUNDS, 3, async |arm| {
        batch(&pod, MODES[arm], CALLS, true, &["true"]).await
    })
    .await?;
    let count = TOTAL.to_string();
    let big = ["head", "-c", &count, "/dev/zero"];
    let bulk = alternate(3, 3, async |arm| {
        batch(&pod, MODES[arm], 1, false, &big).await
    })
    .await?;
    let mib_s = |d: Duration| TOTAL as f64 / (1 << 20) as f64 / d.as_secs_f64();
    let row = |name: &str, values: [Duration; 3], cell: &dyn Fn(Duration) -> String| {
        let [runc, websocket, spdy] = values;
        format!(
            "| {name} | {} | {} | {} | {:.3} | {:.3} |\n",
            cell(runc),
            cell(websocket),
            cell(spdy),
            ratio(websocket, runc),
            ratio(spdy, runc),
        )
    };
    let p50 = [0, 1, 2].map(|arm| latency[arm].p50());
    let p99 = [0, 1, 2].map(|arm| latency[arm].p99());
    let bulk = [0, 1, 2].map(|arm| bulk[arm].p50());
    report.push_str(&format!(
        "## Streaming exec (serveExecContainer: websocket v5, SPDY/3.1 v4)\n\nFrom a separate \
         client process: URL, connect, run, output to the end and status, against spawning \
         `runc exec` with its stdio on pipes read to the end. {ROUNDS} alternating rounds of \
         {CALLS} for `true`; median of 3 alternating runs for the bulk output. Ratios are of \
         time (for the bulk output: ≥ 0.8 × runc's throughput means a time ratio ≤ 1.25).\n\n\
         | | bare `runc exec` (pipes) | websocket | SPDY | ratio websocket / runc | ratio SPDY / runc |\n\
         |---|---|---|---|---|---|\n{}{}{}\n",
        row("`true`, p50", p50, &ms),
        row("`true`, p99", p99, &ms),
        row(&format!("{} MiB of stdout", TOTAL >> 20), bulk, &|d| format!("{:.0} MiB/s", mib_s(d))),
    ));
    Ok(())
}
