//! Bad bytes on the RPC socket: each arrives on a connection of its own, which the monitor
//! may close; the other connections and the monitor carry on.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::Result;
use testkit::*;

use crate::{Table, WAIT};

/// Sends `bytes` on a fresh connection (then closes its writing side when `hang_up`), and
/// says how the monitor ended it.
fn send_raw(pod: &Pod, bytes: &[u8], hang_up: bool) -> Result<String> {
    let mut stream = UnixStream::connect(pod.socket())?;
    stream.set_read_timeout(Some(WAIT))?;
    // The monitor may close before everything is written.
    let _ = stream.write_all(bytes);
    if hang_up {
        stream.shutdown(std::net::Shutdown::Write)?;
    }
    let mut answer = Vec::new();
    Ok(match stream.read_to_end(&mut answer) {
        Ok(_) => "closed".into(),
        Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => "closed".into(),
        Err(err) => format!("still open: {err}"),
    })
}

/// A frame header: `segments` segments, the first of `words` words.
fn header(segments: u32, words: u32) -> Vec<u8> {
    let mut bytes = (segments - 1).to_le_bytes().to_vec();
    bytes.extend_from_slice(&words.to_le_bytes());
    bytes
}

#[test]
fn bad_bytes_end_their_connection_only() -> Result<()> {
    with_pod(async |pod, client| {
        let mut t = Table::new(pod, client);
        let garbage: Vec<u8> = (0..4096u32).map(|n| (n * 7919 % 251) as u8).collect();
        t.case("wire: garbage", "closed", async {
            send_raw(pod, &garbage, false)
        })
        .await;
        let mut truncated = header(1, 100);
        truncated.extend_from_slice(&[0; 80]);
        let frame = async { send_raw(pod, &truncated, true) };
        t.case("wire: truncated frame", "closed", frame).await;
        let frame = async { send_raw(pod, &header(10_000, 1), false) };
        t.case("wire: 10000 segments", "closed", frame).await;
        let frame = async { send_raw(pod, &header(1, u32::MAX), false) };
        t.case("wire: 32 GiB segment", "closed", frame).await;
        let mut zeros = header(1, 1);
        zeros.extend_from_slice(&[0; 8]);
        let frame = async { send_raw(pod, &zeros, false) };
        t.case("wire: empty message", "closed", frame).await;
        t.case("wire: hang-up before a byte", "closed", async {
            send_raw(pod, &[], true)
        })
        .await;
        // A client that leaves in the middle of a call: the call's command still runs out.
        let left = async {
            let other = pod.client().await?;
            let mut exec = exec_request("wire", &["sleep", "1"]);
            exec.timeout = Some(Duration::from_secs(5));
            let call = other.exec_sync(&exec);
            let gave_up = tokio::time::timeout(Duration::from_millis(200), call).await;
            drop(other);
            Ok(format!("left: {}", gave_up.is_err()))
        };
        let request = pod.create_request("wire", pod.bundle("wire", &["sleep", "1000"])?);
        pod.start_container(client, &request).await?;
        t.case("wire: client leaves mid-call", "left: true", left)
            .await;
        // Metadata of a megabyte and a malformed trace context are no reason to fail.
        let metadata = async {
            client.set_metadata(
                (0..10_000)
                    .map(|n| (format!("key-{n}"), "v".repeat(100)))
                    .chain([("traceparent".to_owned(), "00-not-a-trace".to_owned())])
                    .collect(),
            );
            let reply = client.exec_sync(&exec_request("wire", &["true"])).await;
            client.set_metadata(Default::default());
            Ok(format!("exit_code: {}", reply?.exit_code))
        };
        t.case(
            "wire: 1 MB metadata, bad traceparent",
            "exit_code: 0",
            metadata,
        )
        .await;
        let cases = t.finish()?;
        assert!(cases >= 8, "{cases} cases");
        Ok(())
    })
}
