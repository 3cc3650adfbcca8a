//! Benchmarks conmond against its floor (bare runc, `cat` into a file) and its peer (Debian's C
//! conmon), in one run on this machine. Prints a Markdown report of ratios; absolute times are
//! given for context only. Needs root, runc, busybox-static and conmon.
//!
//! Latency arms are timed by a separate client process, the bench binary itself run as
//! `bench client …` (see `client.rs`), so that conmond is measured as an engine sees it.
//! `BENCH_ONLY=exec,logs` (say) runs those sections alone and writes no report file.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod client;
mod endurance;
mod idle;
mod latency;
mod logs;
mod scale;
mod stats;
mod traced;

use anyhow::{Context as _, Result};
use testkit::*;

const WAIT: Duration = Duration::from_secs(120);
const CONMON: &str = "/usr/bin/conmon";
/// conmond's own logging as CRI-O configures it by default.
const CRIO_FLAGS: [&str; 4] = ["--log-driver", "none", "--log-level", "info"];
/// Section names, in report order.
const SECTIONS: [&str; 8] = [
    "idle",
    "scale",
    "endurance",
    "exec",
    "tracing",
    "streaming",
    "create",
    "logs",
];

/// Why this bench once disagreed with a measurement from outside.
const FINDING: &str = include_str!("finding.md");

#[allow(clippy::print_stdout, reason = "the report is the program's output")]
fn main() -> Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("client") {
        return client::main(&argv[2..]);
    }
    require_privileged();
    anyhow::ensure!(
        Path::new(CONMON).exists(),
        "{CONMON} missing: apt-get install conmon"
    );
    let only = std::env::var("BENCH_ONLY").ok();
    let chosen: Vec<&str> = match &only {
        Some(list) => list.split(',').map(str::trim).collect(),
        None => SECTIONS.to_vec(),
    };
    if let Some(unknown) = chosen.iter().find(|name| !SECTIONS.contains(name)) {
        anyhow::bail!("BENCH_ONLY: no section {unknown:?} (sections: {SECTIONS:?})");
    }
    let mut report = String::new();
    report.push_str("# conmond benchmark\n\n");
    report.push_str(&format!(
        "Machine: {} cores; runc {}; Debian conmon {}. Ratios compare runs made in this one \
         invocation.\n\n{FINDING}\n",
        std::thread::available_parallelism().map_or(0, usize::from),
        first_line(&["/usr/sbin/runc", "--version"]),
        first_line(&[CONMON, "--version"]),
    ));
    run_local(async {
        for section in SECTIONS.iter().filter(|s| chosen.contains(s)) {
            let started = std::time::Instant::now();
            match *section {
                "idle" => idle::idle_memory(&mut report).await?,
                "scale" => scale::pod_scale(&mut report).await?,
                "endurance" => endurance::endurance(&mut report).await?,
                "exec" => latency::exec_latency(&mut report).await?,
                "tracing" => traced::tracing_overhead(&mut report).await?,
                "streaming" => traced::streaming_exec(&mut report).await?,
                "create" => latency::create_latency(&mut report).await?,
                _ => logs::log_throughput(&mut report).await?,
            }
            eprintln!("bench: {section} took {:.0?}", started.elapsed());
        }
        Ok::<_, anyhow::Error>(())
    })?;
    // The report file gets the report only (dropped pods print their logs to stdout), and only
    // from a full run.
    if let (Some(path), None) = (std::env::args_os().nth(1), &only) {
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

/// Starts a long-running container `exec-bench` in `pod` for exec calls, in a cgroup of its
/// own (runc's default, the container ID, would be shared by the pods of one section).
async fn exec_target(pod: &Pod, client: &MonitorClient) -> Result<()> {
    let cgroup = format!("/{}", unique_id("exec-bench"));
    let bundle = pod.bundle_with("exec-bench", &["sleep", "100000"], |config| {
        config["linux"]["cgroupsPath"] = cgroup.into();
    })?;
    pod.start_container(client, &pod.create_request("exec-bench", bundle))
        .await?;
    Ok(())
}
