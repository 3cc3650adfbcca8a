//! Exec-sync: output, exit codes, concurrency, large output, runtime errors, terminals.

use std::time::Duration;

use anyhow::Result;
use testkit::*;

use crate::running;

#[test]
fn exec_sync_returns_output_and_codes() -> Result<()> {
    with_pod(async |pod, client| {
        let log = pod.path("exec.log");
        let mut request = pod.create_request("ex", pod.bundle("ex", &["sleep", "1000"])?);
        request.log_drivers = log_to(LogFormat::Cri, &log, 0);
        pod.start_container(client, &request).await?;

        let echo = client
            .exec_sync(&exec_request(
                "ex",
                &["sh", "-c", "echo out; echo err >&2; exit 4"],
            ))
            .await?;
        assert_eq!((echo.exit_code, echo.timed_out), (4, false));
        assert_eq!(
            (echo.stdout.as_slice(), echo.stderr.as_slice()),
            (&b"out\n"[..], &b"err\n"[..])
        );

        let invalid = client
            .exec_sync(&exec_request("ex", &["busybox", "invalid"]))
            .await?;
        assert_eq!(invalid.exit_code, 127);
        assert!(String::from_utf8_lossy(&invalid.stderr).contains("invalid: applet not found"));

        let mut slow = exec_request("ex", &["sleep", "30"]);
        slow.timeout = Some(Duration::from_secs(1));
        let started = std::time::Instant::now();
        let timed = client.exec_sync(&slow).await?;
        assert!(timed.timed_out);
        assert!(started.elapsed() < Duration::from_secs(10));

        // Exec output never reaches the container log.
        let text = std::fs::read_to_string(&log)?;
        assert!(!text.contains("out") && !text.contains("err"), "{text}");
        Ok(())
    })
}

#[test]
fn concurrent_exec_syncs_each_get_their_own_output() -> Result<()> {
    with_pod(async |pod, client| {
        running(pod, client, "conc").await?;
        let requests: Vec<ExecSync> = (0..10)
            .map(|i| {
                exec_request(
                    "conc",
                    &["sh", "-c", &format!("sleep 0.2; echo out-{i}; exit {i}")],
                )
            })
            .collect();
        let results = futures::future::join_all(requests.iter().map(|r| client.exec_sync(r))).await;
        for (i, result) in results.into_iter().enumerate() {
            let result = result?;
            assert_eq!(result.exit_code, i as i32);
            assert_eq!(result.stdout, format!("out-{i}\n").into_bytes());
        }
        Ok(())
    })
}

#[test]
fn one_mebibyte_of_exec_output_comes_back_whole() -> Result<()> {
    with_pod(async |pod, client| {
        running(pod, client, "big").await?;
        let result = client
            .exec_sync(&exec_request(
                "big",
                &["sh", "-c", "yes 0123456789abcdef | head -c 1048576"],
            ))
            .await?;
        assert_eq!(result.exit_code, 0);
        assert_eq!(result.stdout.len(), 1 << 20);
        let expected: Vec<u8> = b"0123456789abcdef\n"
            .iter()
            .copied()
            .cycle()
            .take(1 << 20)
            .collect();
        assert!(
            result.stdout == expected,
            "exec output differs from what was written"
        );
        Ok(())
    })
}

#[test]
fn missing_executable_reports_runc_error_text() -> Result<()> {
    with_pod(async |pod, client| {
        let request = pod.create_request("noexec", pod.bundle("noexec", &["/bin/does-not-exist"])?);
        let err = error_text(client.create_container(&request).await);
        assert!(
            err.contains("no such file or directory") || err.contains("not found in $PATH"),
            "{err}"
        );
        assert!(
            pod.runc_containers()?.is_empty(),
            "failed create left a container"
        );
        Ok(())
    })
}

#[test]
fn exec_sync_on_a_terminal_returns_one_crlf_stream() -> Result<()> {
    with_pod(async |pod, client| {
        let id = unique_id("ttyexec");
        running(pod, client, &id).await?;
        let mut request = exec_request(&id, &["sh", "-c", "tty; echo out; echo err >&2; exit 2"]);
        request.terminal = true;
        let result = client.exec_sync(&request).await?;
        let out = String::from_utf8_lossy(&result.stdout);
        assert_eq!(result.exit_code, 2, "{out}");
        assert!(out.starts_with("/dev/pts/"), "{out:?}");
        assert!(out.ends_with("out\r\nerr\r\n"), "{out:?}");
        assert!(result.stderr.is_empty());

        let mut request = exec_request(&id, &["sleep", "100"]);
        request.terminal = true;
        request.timeout = Some(Duration::from_secs(1));
        let result = client.exec_sync(&request).await?;
        assert!(result.timed_out);
        assert_eq!(result.exit_code, -3);
        Ok(())
    })
}
