//! The journald drivers against a real `systemd-journald` (a private one per test, see
//! `testkit::journal`), read back with `journalctl`: container output with the fields CRI-O
//! and C conmon users query, conmond's own log, and the error where journald does not run.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};
use testkit::journal::{PrivateJournal, field, text};
use testkit::*;

use crate::{WAIT, run_to_exit};

/// A full container ID as CRI-O makes them (64 hex digits).
const ID: &str = "4f1d2c3b4a5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8";

/// The one journald driver (its path is unused).
fn journald_driver() -> Vec<LogDriver> {
    log_to(LogFormat::Journald, Path::new(""), 0)
}

/// `(stream, message, partial)` of each entry, in the order journald received them.
fn lines(entries: &[Value]) -> Vec<(String, Vec<u8>, bool)> {
    entries
        .iter()
        .map(|entry| {
            let stream = text(entry, "CONTAINER_STREAM").unwrap_or_default();
            let message = field(entry, "MESSAGE").unwrap_or_default();
            let partial = text(entry, "CONTAINER_PARTIAL_MESSAGE").as_deref() == Some("true");
            (stream, message, partial)
        })
        .collect()
}

#[test]
fn container_output_reaches_the_journal_with_crio_fields() -> Result<()> {
    let journal = PrivateJournal::start()?;
    let pod = journal.start_pod(&[])?;
    let name = "k8s_web_shop_prod_5f1c-77_1";
    run_local(async {
        let client = pod.client().await?;
        // An empty line, bytes that are not UTF-8, a line longer than the driver's buffer
        // (8192 bytes), and output that ends without a newline.
        let script = "echo hello; echo oops >&2; echo; printf '\\377\\376 raw\\n'; \
                      head -c 10000 /dev/zero | tr '\\0' x; echo; printf tail";
        let bundle = pod.bundle_with(ID, &["sh", "-c", script], |config| {
            config["annotations"] = json!({"io.kubernetes.cri-o.Name": name});
        })?;
        let mut request = pod.create_request(ID, bundle);
        request.log_drivers = journald_driver();
        assert_eq!(run_to_exit(&pod, &client, request).await?, "0");

        let by_id = format!("CONTAINER_ID_FULL={ID}");
        let entries = journal.wait_for_entries(&[&by_id], 7, WAIT).await?;
        let (out, err): (Vec<_>, Vec<_>) = lines(&entries)
            .into_iter()
            .partition(|(stream, ..)| stream == "stdout");
        let message = |text: &[u8], partial| ("stdout".to_owned(), text.to_vec(), partial);
        assert_eq!(
            out,
            [
                message(b"hello", false),
                message(b"", false),
                message(b"\xff\xfe raw", false),
                message(&[b'x'; 8192], true),
                message(&[b'x'; 10000 - 8192], false),
                message(b"tail", true),
            ]
        );
        assert_eq!(err, [("stderr".to_owned(), b"oops".to_vec(), false)]);
        for entry in &entries {
            let stderr = text(entry, "CONTAINER_STREAM").as_deref() == Some("stderr");
            let priority = if stderr { "3" } else { "6" };
            assert_eq!(
                text(entry, "PRIORITY").as_deref(),
                Some(priority),
                "{entry}"
            );
            assert_eq!(text(entry, "CONTAINER_ID").as_deref(), Some(&ID[..12]));
            assert_eq!(text(entry, "CONTAINER_NAME").as_deref(), Some(name));
            assert_eq!(text(entry, "SYSLOG_IDENTIFIER").as_deref(), Some(name));
            // Sent by conmond itself over the native protocol.
            assert_eq!(text(entry, "_TRANSPORT").as_deref(), Some("journal"));
            assert_eq!(text(entry, "_PID"), Some(pod.pid.to_string()));
        }
        // The queries users run: `journalctl -t <name>` and by name.
        assert_eq!(journal.entries(&["-t", name])?.len(), 7);
        assert_eq!(
            journal.entries(&[&format!("CONTAINER_NAME={name}")])?.len(),
            7
        );
        Ok(())
    })
}

#[test]
fn container_without_a_name_is_known_by_its_short_id() -> Result<()> {
    let journal = PrivateJournal::start()?;
    let pod = journal.start_pod(&[])?;
    run_local(async {
        let client = pod.client().await?;
        let mut request = pod.script_request(ID, "echo anonymous")?;
        request.log_drivers = journald_driver();
        assert_eq!(run_to_exit(&pod, &client, request).await?, "0");
        let entries = journal
            .wait_for_entries(&[&format!("CONTAINER_ID={}", &ID[..12])], 1, WAIT)
            .await?;
        let [entry] = entries.as_slice() else {
            panic!("one entry expected: {entries:#?}");
        };
        assert_eq!(text(entry, "MESSAGE").as_deref(), Some("anonymous"));
        assert_eq!(text(entry, "CONTAINER_ID_FULL").as_deref(), Some(ID));
        assert_eq!(text(entry, "SYSLOG_IDENTIFIER").as_deref(), Some(&ID[..12]));
        assert_eq!(text(entry, "CONTAINER_NAME"), None);
        Ok(())
    })
}

#[test]
fn own_log_goes_to_the_journal_with_a_priority_per_level() -> Result<()> {
    let journal = PrivateJournal::start()?;
    let pod = journal.start_pod(&["--log-driver", "systemd", "--log-level", "debug"])?;
    run_local(async {
        let client = pod.client().await?;
        let err = error_text(client.reopen_log("no-such-container").await);
        assert!(err.contains("no-such-container"), "{err}");
        // A cleanup command that fails is a warning.
        let mut request = pod.script_request("own", "true")?;
        request.cleanup_cmd = vec!["/bin/false".into()];
        assert_eq!(run_to_exit(&pod, &client, request).await?, "0");

        let own = ["SYSLOG_IDENTIFIER=conmond", "_TRANSPORT=journal"];
        let find = async |priority: &str, needle: &str| -> Result<Value> {
            let found = wait_for(
                &format!("a conmond entry of priority {priority} with {needle:?}"),
                WAIT,
                || {
                    let entries = journal.entries(&own).ok()?;
                    entries.into_iter().find(|entry| {
                        text(entry, "PRIORITY").as_deref() == Some(priority)
                            && text(entry, "MESSAGE").is_some_and(|m| m.contains(needle))
                    })
                },
            )
            .await;
            found.with_context(|| format!("conmond's entries: {:#?}", journal.entries(&own)))
        };
        // The message carries the event's fields and those of its span (the RPC, with the
        // container ID the request named).
        let failed = find("3", "request failed").await?;
        let message = text(&failed, "MESSAGE").unwrap_or_default();
        assert!(
            message.contains(r#"container.id="no-such-container""#),
            "{message}"
        );
        assert!(
            message.contains("error=container 'no-such-container' not found"),
            "{message}"
        );
        find("4", "cleanup command failed").await?;
        let created = find("6", "container created").await?;
        assert!(
            text(&created, "MESSAGE")
                .unwrap_or_default()
                .contains("container_id=own")
        );
        let debug = find("7", "runtime create").await?;
        assert_eq!(text(&debug, "_PID"), Some(pod.pid.to_string()));
        anyhow::Ok(())
    })?;
    // journald took the lines: no fallback file, no complaint.
    assert!(!pod.runtime_dir.join("conmond.log").exists());
    assert!(
        !pod.log_text().contains("journald is not reachable"),
        "{}",
        pod.log_text()
    );
    Ok(())
}

/// Where journald does not run (this machine), a journald driver fails the create with an
/// error naming journald's socket, before the runtime runs.
#[test]
fn journald_driver_without_journald_fails_the_create_clearly() -> Result<()> {
    let socket = PathBuf::from("/run/systemd/journal/socket");
    assert!(
        !socket.exists(),
        "journald runs here: this test checks the host without it"
    );
    with_pod(async |pod, client| {
        let mut request = pod.script_request("nojournal", "echo lost")?;
        request.log_drivers = journald_driver();
        let err = error_text(client.create_container(&request).await);
        assert!(
            err.contains(
                "journald log driver: cannot connect to journald at /run/systemd/journal/socket"
            ),
            "{err}"
        );
        assert!(pod.runc_containers()?.is_empty(), "the runtime ran");
        assert!(!request.bundle.join("pidfile").exists(), "the runtime ran");
        // The ID is free again: the same container with a log file is created.
        request.log_drivers = log_to(LogFormat::Cri, &pod.path("nojournal.log"), 0);
        assert_eq!(run_to_exit(pod, client, request).await?, "0");
        Ok(())
    })
}
