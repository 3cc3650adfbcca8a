//! Exec-sync and create latency as an engine sees them: every call is made and timed by a
//! separate client process (`bench client`), conmond's over conmon.sock, bare runc's by
//! spawning `runc` and waiting for it; the arms alternate over rounds.

use std::time::{Duration, Instant};

use anyhow::Result;
use testkit::*;

use super::client::{self, args};
use super::stats::{Arm, alternate, ms, ms_diff, percentile, ratio};
use super::{CRIO_FLAGS, exec_target};

/// Rounds each latency comparison alternates over: many short batches, so that a burst of
/// noise from elsewhere on the machine lands on one batch of one arm only.
pub(super) const ROUNDS: usize = 20;
/// (concurrent callers, calls per arm per round, rounds). On this kind of 2-core VM the median
/// of 150 samples per arm still moved by ±1 ms between runs; 400 settle it better.
const EXEC_LOADS: [(usize, usize, usize); 2] = [(1, 10, 40), (10, 50, 10)];
const CREATE_ROUNDS: usize = 25;
const CREATE_CALLS: usize = 4;

/// A batch of `calls` exec-syncs of `true` in `exec-bench`, `concurrency` at a time, by a
/// client process: through conmond (`exec`, with `extra` options) or bare runc (`runc-exec`).
pub(super) async fn exec_batch(
    pod: &Pod,
    mode: &str,
    calls: usize,
    concurrency: usize,
    extra: &[(&str, &str)],
) -> Result<Vec<Duration>> {
    let (calls, concurrency) = (calls.to_string(), concurrency.to_string());
    let mut list = args([
        ("id", &"exec-bench"),
        ("calls", &calls),
        ("concurrency", &concurrency),
    ]);
    list.extend(match mode {
        "runc-exec" => args([("root", &pod.runc_root)]),
        _ => args([("socket", &pod.socket())]),
    });
    for (key, value) in extra {
        list.extend(args([(key, value)]));
    }
    client::spawn(mode, &list).await
}

/// One table row comparing `ours` with its floor `bare`.
fn row(label: &str, bare: &Arm, ours: &Arm, target: &str) -> String {
    format!(
        "| {label} | {} / {} | {} / {} | **{}** / {} | {:.3} | {} | {} | {target} |\n",
        ms(bare.p50()),
        ms(bare.p99()),
        ms(ours.p50()),
        ms(ours.p99()),
        ms_diff(ours.p50(), bare.p50()),
        ms_diff(ours.p99(), bare.p99()),
        ratio(ours.p50(), bare.p50()),
        ours.round_spread(bare),
        ours.samples.len(),
    )
}

const HEADER: &str = "| | bare runc p50 / p99 | conmond p50 / p99 | overhead p50 / p99 | ratio p50 \
    | overhead of round medians (min … max) | samples per arm | target |\n\
    |---|---|---|---|---|---|---|---|\n";

pub(super) async fn exec_latency(report: &mut String) -> Result<()> {
    let pod = Pod::start_with(None, &CRIO_FLAGS)?;
    let client = pod.client().await?;
    exec_target(&pod, &client).await?;
    report.push_str(&format!(
        "## Exec-sync latency (`true`)\n\nEach arm is timed by a separate client process \
         (`bench client`), as an engine would time it: conmond's from sending \
         execSyncContainer on conmon.sock to its reply (one connection, made before the \
         clock, as runtime-shim and the conmon-rs Go client v1.0 keep it), bare runc's from \
         spawning `runc exec` (stdout and stderr read through pipes) to its exit. The arms \
         alternate over rounds ({} batches of {} calls with 1 caller, {} of {} with 10); p50 \
         and p99 are over all samples. The last three rows time the calls as the old bench \
         did (one conmond call, then one runc call, in turn; or from inside the bench \
         process), kept to show what that hid (see the note at the top).\n\n{HEADER}",
        EXEC_LOADS[0].2, EXEC_LOADS[0].1, EXEC_LOADS[1].2, EXEC_LOADS[1].1,
    ));
    let (callers, calls, rounds) = EXEC_LOADS[0];
    let single = alternate(rounds, 3, async |arm| match arm {
        0 => exec_batch(&pod, "runc-exec", calls, callers, &[]).await,
        1 => exec_batch(&pod, "exec", calls, callers, &[]).await,
        _ => exec_batch(&pod, "exec", calls, callers, &[("connect-per-call", "1")]).await,
    })
    .await?;
    report.push_str(&row(
        "1 caller",
        &single[0],
        &single[1],
        "p50 overhead ≤ 1.0 ms",
    ));
    let (callers, calls, rounds) = EXEC_LOADS[1];
    let ten = alternate(rounds, 2, async |arm| {
        let mode = if arm == 0 { "runc-exec" } else { "exec" };
        exec_batch(&pod, mode, calls, callers, &[]).await
    })
    .await?;
    report.push_str(&row(
        &format!("{callers} callers at once (one connection)"),
        &ten[0],
        &ten[1],
        "",
    ));
    report.push_str(&row(
        "1 caller, a new connection per call (on the clock; conmon-rs Go client v0.6, CRI-O ≤ 1.34)",
        &single[0],
        &single[2],
        "",
    ));
    let (_, calls, rounds) = EXEC_LOADS[0];
    let pairs = alternate(rounds, 1, async |_| {
        exec_batch(
            &pod,
            "interleave",
            calls,
            1,
            &[("root", &pod.runc_root.display().to_string())],
        )
        .await
    })
    .await?;
    let (bare, ours) = split_pairs(&pairs[0]);
    report.push_str(&row(
        "1 caller, one conmond call then one runc call in turn (client process)",
        &bare,
        &ours,
        "",
    ));
    let (bare, ours) = old_method(&pod, &client, false).await?;
    report.push_str(&row(
        "old method: client in the bench process, batches",
        &bare,
        &ours,
        "",
    ));
    let (bare, ours) = old_method(&pod, &client, true).await?;
    report.push_str(&row(
        "old method: client in the bench process, one call each in turn",
        &bare,
        &ours,
        "",
    ));
    report.push('\n');
    Ok(())
}

/// The runc (odd) and conmond (even) samples of an `interleave` arm.
fn split_pairs(pairs: &Arm) -> (Arm, Arm) {
    let pick = |parity: usize| {
        let samples: Vec<Duration> = pairs
            .samples
            .iter()
            .skip(parity)
            .step_by(2)
            .copied()
            .collect();
        let per_round = samples.len() / pairs.round_p50.len();
        Arm {
            round_p50: samples
                .chunks(per_round)
                .map(|c| percentile(c, 0.5))
                .collect(),
            samples,
        }
    };
    (pick(1), pick(0))
}

/// The old bench's way: conmond called by a client inside the bench process, runc run by the
/// bench process itself; in batches like the arms above, or (`one_each`) one conmond call
/// then one runc call in turn, as the old bench did.
async fn old_method(pod: &Pod, client: &MonitorClient, one_each: bool) -> Result<(Arm, Arm)> {
    let request = exec_request("exec-bench", &["true"]);
    let (_, calls, rounds) = EXEC_LOADS[0];
    let conmond = async || -> Result<Duration> {
        let start = Instant::now();
        anyhow::ensure!(client.exec_sync(&request).await?.exit_code == 0);
        Ok(start.elapsed())
    };
    let runc = || -> Result<Duration> {
        let start = Instant::now();
        pod.runc(&["exec", "exec-bench", "true"])?;
        Ok(start.elapsed())
    };
    if !one_each {
        let arms = alternate(rounds, 2, async |arm| {
            let mut samples = Vec::new();
            for _ in 0..calls {
                samples.push(if arm == 0 { runc()? } else { conmond().await? });
            }
            Ok(samples)
        })
        .await?;
        return Ok((arms[0].clone(), arms[1].clone()));
    }
    let (mut bare, mut ours) = (Arm::default(), Arm::default());
    for _ in 0..rounds {
        let (mut b, mut o) = (Vec::new(), Vec::new());
        for _ in 0..calls {
            o.push(conmond().await?);
            b.push(runc()?);
        }
        bare.round_p50.push(percentile(&b, 0.5));
        ours.round_p50.push(percentile(&o, 0.5));
        bare.samples.extend(b);
        ours.samples.extend(o);
    }
    Ok((bare, ours))
}

pub(super) async fn create_latency(report: &mut String) -> Result<()> {
    let pod = Pod::start_with(None, &CRIO_FLAGS)?;
    let client = pod.client().await?;
    client.version(false).await?;
    let bundle = pod.bundle("create-bench", &["true"])?;
    let dir = pod.path("create");
    std::fs::create_dir_all(&dir)?;
    let arms = alternate(CREATE_ROUNDS, 2, async |arm| {
        let mode = if arm == 0 { "runc-create" } else { "create" };
        let (calls, prefix) = (CREATE_CALLS.to_string(), unique_id(mode));
        let mut list = args([
            ("root", &pod.runc_root),
            ("bundle", &bundle),
            ("dir", &dir),
            ("calls", &calls),
            ("prefix", &prefix),
        ]);
        if arm == 1 {
            list.extend(args([("socket", &pod.socket())]));
        }
        client::spawn(mode, &list).await
    })
    .await?;
    report.push_str(&format!(
        "## Create latency\n\nA container running `true`, created and then deleted (off the \
         clock) by a separate client process: createContainer on conmon.sock against spawning \
         `runc create` and waiting for it. {CREATE_ROUNDS} alternating rounds of {CREATE_CALLS}.\n\n\
         {HEADER}{}\n",
        row("create", &arms[0], &arms[1], "p50 overhead ≤ 1.5 ms"),
    ));
    Ok(())
}
