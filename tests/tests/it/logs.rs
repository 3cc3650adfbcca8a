//! Container output in CRI and JSON log files: records, size limits, rotation, bursts; and
//! conmond's own log where journald does not run.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use anyhow::Result;
use testkit::*;

use crate::{WAIT, run_to_exit};

#[test]
fn cri_log_has_stdout_stderr_and_partial_lines() -> Result<()> {
    with_pod(async |pod, client| {
        let log = pod.path("cri.log");
        let script = "echo hello; echo oops >&2; printf partial";
        let mut request = pod.script_request("cri", script)?;
        request.log_drivers = log_to(LogFormat::Cri, &log, 0);
        assert_eq!(run_to_exit(pod, client, request).await?, "0");
        let text = std::fs::read_to_string(&log)?;
        let records: Vec<(&str, &str)> = text
            .lines()
            .map(|line| {
                let (ts, rest) = line.split_once(' ').unwrap();
                assert!(ts.ends_with('Z') && ts.contains('T'), "timestamp {ts}");
                (ts, rest)
            })
            .collect();
        let rest: Vec<&str> = records.iter().map(|(_, rest)| *rest).collect();
        assert!(rest.contains(&"stdout F hello"), "{text}");
        assert!(rest.contains(&"stderr F oops"), "{text}");
        assert!(rest.contains(&"stdout P partial"), "{text}");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&log)?.permissions().mode() & 0o777, 0o600);
        Ok(())
    })
}

#[test]
fn max_size_keeps_the_log_small_and_recent() -> Result<()> {
    with_pod(async |pod, client| {
        let log = pod.path("max.log");
        let script = "for i in $(seq 1 200); do echo line-$i; done";
        let mut request = pod.script_request("max", script)?;
        request.log_drivers = log_to(LogFormat::Cri, &log, 1000);
        assert_eq!(run_to_exit(pod, client, request).await?, "0");
        let text = std::fs::read_to_string(&log)?;
        assert!(text.len() <= 1000, "log is {} bytes", text.len());
        assert!(text.ends_with("stdout F line-200\n"), "{text}");
        assert!(!text.contains("line-1\n"), "{text}");
        Ok(())
    })
}

#[test]
fn reopen_after_rotation_writes_a_new_file() -> Result<()> {
    with_pod(async |pod, client| {
        let log = pod.path("rot.log");
        let rotated = pod.path("rot.log.1");
        let gate = pod.path("bundles/rot/rootfs/tmp/go");
        let script = "echo before; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo after";
        let mut request = pod.script_request("rot", script)?;
        request.log_drivers = log_to(LogFormat::Cri, &log, 0);
        let exit_path = request.exit_paths[0].clone();
        pod.start_container(client, &request).await?;
        wait_for_text(&log, "before", WAIT).await?;
        std::fs::rename(&log, &rotated)?;
        client.reopen_log("rot").await?;
        std::fs::write(&gate, "")?;
        assert_eq!(wait_for_file(&exit_path, WAIT).await?, "0");
        let old = std::fs::read_to_string(&rotated)?;
        let new = std::fs::read_to_string(&log)?;
        assert!(
            old.contains("stdout F before") && !old.contains("after"),
            "{old}"
        );
        assert!(
            new.contains("stdout F after") && !new.contains("before"),
            "{new}"
        );
        Ok(())
    })
}

#[test]
fn json_log_has_one_object_per_line() -> Result<()> {
    with_pod(async |pod, client| {
        let log = pod.path("ctr.json");
        let script = "echo '  indented \"q\"'; echo err >&2";
        let mut request = pod.script_request("json", script)?;
        request.log_drivers = log_to(LogFormat::Json, &log, 0);
        assert_eq!(run_to_exit(pod, client, request).await?, "0");
        let records: Vec<serde_json::Value> = std::fs::read_to_string(&log)?
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        let find = |pipe: &str| records.iter().find(|r| r["pipe"] == pipe).cloned().unwrap();
        assert_eq!(find("stdout")["message"], "  indented \"q\"");
        assert_eq!(find("stderr")["message"], "err");
        assert!(find("stdout")["timestamp"].as_u64().unwrap() > 1_700_000_000);
        Ok(())
    })
}

#[test]
fn a_256_mib_burst_loses_no_log_byte() -> Result<()> {
    const SIZE: usize = 256 << 20;
    with_pod(async |pod, client| {
        let log = pod.path("burst.log");
        let script = format!("yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c {SIZE}");
        let mut request = pod.script_request("burst", &script)?;
        request.log_drivers = log_to(LogFormat::Cri, &log, 0);
        assert_eq!(run_to_exit(pod, client, request).await?, "0");
        let stream = cri_stream(&std::fs::read(&log)?, "stdout")?;
        assert_eq!(
            stream.len(),
            SIZE,
            "bytes in the log differ from bytes written"
        );
        let line = b"0123456789abcdefghijklmnopqrstuvwxyz\n";
        let intact = stream
            .chunks(line.len())
            .all(|chunk| line.starts_with(chunk));
        assert!(intact, "log content differs from what the container wrote");
        Ok(())
    })
}

/// CRI-O starts the monitor with `--log-driver systemd` and stdio on /dev/null; where journald
/// does not run (this machine), the lines go to a bounded file in the runtime dir instead.
#[test]
fn own_log_without_journald_goes_to_the_runtime_dir() -> Result<()> {
    let journald = Path::new("/run/systemd/journal/socket");
    assert!(
        !journald.exists(),
        "journald runs here: this test checks the host without it"
    );
    let pod = Pod::start_with(None, &["--log-driver", "systemd"])?;
    let fallback = pod.runtime_dir.join("conmond.log");
    run_local(async {
        let client = pod.client().await?;
        let err = error_text(client.reopen_log("no-such-container").await);
        assert!(err.contains("no-such-container"), "{err}");
        let log = wait_for_text(&fallback, "no-such-container", WAIT).await?;
        let first = log.lines().next().unwrap_or_default();
        assert!(
            first.contains("journald is not reachable")
                && first.contains(&*fallback.to_string_lossy()),
            "first line: {first}"
        );
        anyhow::Ok(())
    })?;
    let mode = std::fs::metadata(&fallback)?.permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // The same one line on stderr, for whoever started conmond by hand.
    assert!(
        pod.log_text().contains("journald is not reachable"),
        "{}",
        pod.log_text()
    );
    Ok(())
}
