//! Endurance: one monitor through 200 containers created, run and exited, then 1000 exec-syncs
//! 50 at a time. What it holds afterwards (descriptors, anonymous memory) shows what it leaks.

use anyhow::Result;
use testkit::*;

use super::{CRIO_FLAGS, WAIT};

const CONTAINERS: usize = 200;
const WARM_UP: usize = 10;
const EXECS: usize = 1000;
const CONCURRENT: usize = 50;

/// Descriptors and anonymous RSS (KiB) of the pod's monitor.
fn footprint(pod: &Pod) -> Result<(usize, u64)> {
    Ok((pod.fd_targets()?.len(), pod.anonymous_rss_kib()?))
}

/// Runs container `n` to its exit, with a CRI log, stdin and some output.
async fn run_one(pod: &Pod, client: &MonitorClient, n: usize) -> Result<()> {
    let id = format!("endure-{n}");
    let mut request = pod.script_request(&id, "echo out; echo err >&2; head -c 65536 /dev/zero")?;
    request.stdin = true;
    request.log_drivers = log_to(LogFormat::Cri, &pod.path(&format!("{id}.log")), 0);
    pod.start_container(client, &request).await?;
    anyhow::ensure!(wait_for_file(&request.exit_paths[0], WAIT).await? == "0");
    Ok(())
}

pub(super) async fn endurance(report: &mut String) -> Result<()> {
    let pod = Pod::start_with(None, &CRIO_FLAGS)?;
    let client = pod.client().await?;
    for n in 0..WARM_UP {
        run_one(&pod, &client, n).await?;
    }
    let (fds_warm, anon_warm) = footprint(&pod)?;
    for n in WARM_UP..CONTAINERS {
        run_one(&pod, &client, n).await?;
    }
    // Retiring follows each exit file closely; let the last one settle.
    wait_for("the last container retired", WAIT, || {
        (pod.fd_targets().ok()?.len() <= fds_warm + 5).then_some(())
    })
    .await
    .ok();
    let (fds_containers, anon_containers) = footprint(&pod)?;

    let target = pod.create_request(
        "endure-exec",
        pod.bundle("endure-exec", &["sleep", "100000"])?,
    );
    pod.start_container(&client, &target).await?;
    let mut wrong = 0;
    for batch in 0..EXECS / CONCURRENT {
        let calls = (0..CONCURRENT).map(|n| {
            let word = format!("exec-{batch}-{n}");
            let request = exec_request("endure-exec", &["echo", &word]);
            let client = &client;
            async move {
                let reply = client.exec_sync(&request).await;
                reply.is_ok_and(|r| r.exit_code == 0 && r.stdout == format!("{word}\n").as_bytes())
            }
        });
        wrong += futures::future::join_all(calls)
            .await
            .iter()
            .filter(|ok| !**ok)
            .count();
    }
    let (fds_execs, anon_execs) = footprint(&pod)?;
    let verdict = |ok: bool| if ok { "within" } else { "**over**" };
    report.push_str(&format!(
        "## Endurance\n\nOne monitor: {CONTAINERS} containers created, run and exited (CRI log, \
         stdin, 64 KiB of output each), then {EXECS} exec-syncs, {CONCURRENT} at a time \
         ({wrong} wrong or failed). Target: descriptors within +5 of the value after the first \
         {WARM_UP} containers, anonymous RSS within 1 MiB of it.\n\n\
         | after | open fds | anonymous RSS |\n|---|---|---|\n\
         | {WARM_UP} containers | {fds_warm} | {anon_warm} KiB |\n\
         | {CONTAINERS} containers | {fds_containers} ({}) | {anon_containers} KiB ({}) |\n\
         | + {EXECS} exec-syncs (1 container running) | {fds_execs} | {anon_execs} KiB ({}) |\n\n",
        verdict(fds_containers <= fds_warm + 5),
        verdict(anon_containers <= anon_warm + 1024),
        verdict(anon_execs <= anon_warm + 1024),
    ));
    Ok(())
}
