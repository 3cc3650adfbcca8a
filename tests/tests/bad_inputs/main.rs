//! The table of bad inputs and faults: each case names what it does and the error text (or
//! behaviour) expected, and after every case the monitor must still answer. All cases run,
//! and the table of outcomes is printed, before the test fails on the first mismatch.

mod faults;
mod requests;
mod wire;

use std::future::Future;
use std::time::Duration;

use anyhow::Result;
use testkit::*;

use runtime_shim::client::ExecSyncResult;

const WAIT: Duration = Duration::from_secs(30);

/// Runs cases against one monitor and keeps their outcomes.
struct Table<'a> {
    pod: &'a Pod,
    client: &'a MonitorClient,
    rows: Vec<(String, &'static str, Result<String, String>)>,
}

impl<'a> Table<'a> {
    fn new(pod: &'a Pod, client: &'a MonitorClient) -> Self {
        Self {
            pod,
            client,
            rows: Vec::new(),
        }
    }

    /// Runs one case: `observed` gives the error text or output it produced, which must hold
    /// `expect`; the monitor must then still serve.
    async fn case(
        &mut self,
        name: &str,
        expect: &'static str,
        observed: impl Future<Output = Result<String>>,
    ) {
        let outcome = match observed.await {
            Ok(text) if text.contains(expect) => match self.client.version(false).await {
                Ok(info) if info.process_id == self.pod.pid => Ok(text),
                Ok(info) => Err(format!("answered by PID {}", info.process_id)),
                Err(err) => Err(format!("monitor gone after the case: {err}")),
            },
            Ok(text) => Err(format!("got {text:?}")),
            Err(err) => Err(format!("case failed: {err:#}")),
        };
        self.rows.push((name.to_owned(), expect, outcome));
    }

    /// Like [`Table::case`], for an outcome already observed.
    async fn check(&mut self, name: &str, expect: &'static str, observed: Result<String>) {
        self.case(name, expect, std::future::ready(observed)).await;
    }

    /// Prints the table and fails if any case did not behave.
    fn finish(self) -> Result<usize> {
        let mut failed = 0;
        for (name, expect, outcome) in &self.rows {
            match outcome {
                Ok(_) => println!("ok   | {name} | {expect}"),
                Err(why) => {
                    failed += 1;
                    println!("FAIL | {name} | {expect} | {why}");
                }
            }
        }
        anyhow::ensure!(failed == 0, "{failed} of {} cases failed", self.rows.len());
        Ok(self.rows.len())
    }
}

/// The error text of a result expected to fail, or the output (stdout) of an exec.
fn text<T: std::fmt::Debug>(result: Result<T, runtime_shim::error::ShimError>) -> Result<String> {
    Ok(match result {
        Ok(value) => format!("{value:?}"),
        Err(err) => err.to_string(),
    })
}

/// The error text of a failed exec, or what it returned.
fn exec_text(result: Result<ExecSyncResult, runtime_shim::error::ShimError>) -> Result<String> {
    Ok(match result {
        Ok(reply) => format!(
            "exit_code: {} timed_out: {} stdout: {} stderr: {}",
            reply.exit_code,
            reply.timed_out,
            String::from_utf8_lossy(&reply.stdout),
            String::from_utf8_lossy(&reply.stderr)
        ),
        Err(err) => err.to_string(),
    })
}
