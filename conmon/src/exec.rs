//! Commands run in a running container (`runtime exec`): what starting one takes and yields,
//! and exec-sync's deadline state machine, which meets the OS only through the futures and the
//! kill function it is given (so it is tested with fakes, in paused time).
//!
//! Output is read from the moment the runtime starts, so nothing is lost however fast the
//! command writes. Each stream keeps at most [`OUTPUT_CAP`] bytes; beyond that output is read and
//! discarded so the command never blocks on a full pipe.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::error::MonitorError;
use crate::io_hub::ProcessIo;
use crate::reaper::ExitStatus;
use crate::stdio::PipeReader;
use crate::sys;
use conmon_proto::types::CgroupManager;
pub use conmon_proto::types::{ExecSync, ExecSyncResult};

/// Bytes kept per output stream.
pub const OUTPUT_CAP: usize = 16 * 1024 * 1024;

/// Exit code reported when the command was killed at its deadline (conmon-rs's value).
pub const EXIT_CODE_TIMED_OUT: i32 = -3;

/// How long output is still read after the command exited, when a process it left behind
/// keeps the pipes open; afterwards the result is returned without that process's output.
pub(crate) const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// How long a killed command may take to be reaped.
pub(crate) const KILL_WAIT: Duration = Duration::from_secs(5);

/// A command to start in a container.
#[derive(Debug)]
pub(crate) struct ExecStart<'a> {
    pub(crate) id: &'a str,
    pub(crate) command: &'a [String],
    pub(crate) cgroup_manager: CgroupManager,
    /// Added to the runtime's environment.
    pub(crate) env: &'a BTreeMap<String, String>,
    /// Run on a new terminal.
    pub(crate) terminal: bool,
    /// Give the command an input the monitor writes to.
    pub(crate) stdin: bool,
}

/// A command started in a container; `R` reads its output (a pipe or terminal, or a fake).
#[derive(Debug)]
pub(crate) struct StartedExec<R = PipeReader> {
    pub(crate) pid: u32,
    /// Its exit status, once it exited.
    pub(crate) exit: oneshot::Receiver<ExitStatus>,
    /// Its output, or its terminal.
    pub(crate) stdout: R,
    /// Its error output; `None` on a terminal.
    pub(crate) stderr: Option<R>,
    /// Its input, terminal and attach clients.
    pub(crate) io: Rc<ProcessIo>,
}

/// The reply to an exec-sync: the command's result (`None` if even the runtime did not finish
/// by the deadline) and its output.
pub(crate) fn sync_result(
    result: Option<Result<ExitStatus, MonitorError>>,
    timed_out: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
) -> Result<ExecSyncResult, MonitorError> {
    let hung = result.is_none();
    let exit_code = match result {
        Some(Ok(status)) if !timed_out => status.code(),
        Some(Err(err)) if !timed_out => return Err(err),
        // Killed at the deadline (a runtime that hung, say), or never finished: the timeout.
        _ => EXIT_CODE_TIMED_OUT,
    };
    Ok(ExecSyncResult {
        exit_code,
        stdout,
        stderr,
        timed_out: timed_out || hung,
    })
}

/// Drives the process and its output together: returns when the process exited and its output
/// reached end of file, when output stays open [`DRAIN_AFTER_EXIT`] past the exit, or at the
/// deadline, where `kill` is called (it returns whether there was a command to kill: the
/// runtime may not have reported one yet). Returns the process result (if it finished) and
/// whether the deadline was hit.
pub(crate) async fn run_until_done<P, O>(
    mut process: Pin<&mut P>,
    mut output: Pin<&mut O>,
    deadline: Option<Instant>,
    kill: impl FnOnce() -> bool,
) -> (Option<Result<ExitStatus, MonitorError>>, bool)
where
    P: Future<Output = Result<ExitStatus, MonitorError>>,
    O: Future<Output = ()>,
{
    let mut result = None;
    let mut output_done = false;
    let mut drain_until: Option<Instant> = None;
    loop {
        let wake_at = match (deadline, drain_until) {
            (Some(d), Some(g)) => Some(d.min(g)),
            (d, g) => d.or(g),
        };
        let sleep = async {
            match wake_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut output, if !output_done => output_done = true,
            r = &mut process, if result.is_none() => {
                result = Some(r);
                drain_until = Some(Instant::now() + DRAIN_AFTER_EXIT);
            }
            () = sleep => {
                if result.is_some() {
                    // Exited; a leftover process holds the pipes. Return what we have.
                    return (result, false);
                }
                break;
            }
        }
        if output_done && result.is_some() {
            return (result, false);
        }
    }
    // Deadline reached before the command exited: kill it and collect its status.
    if kill() {
        let result = tokio::time::timeout(KILL_WAIT, &mut process).await.ok();
        return (result, true);
    }
    (None, true)
}

/// Kills an exec'd command (its exit still comes through the reaper); failures are logged.
pub(crate) fn kill_command(pid: u32) {
    if let Err(err) = sys::kill(pid, libc::SIGKILL) {
        tracing::warn!(pid, error = %err, "kill exec");
    }
}

/// Collects output up to [`OUTPUT_CAP`] bytes and counts the rest.
#[derive(Debug, Default)]
pub(crate) struct Capped {
    pub(crate) bytes: Vec<u8>,
    pub(crate) discarded: usize,
}

impl Capped {
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        let room = OUTPUT_CAP - self.bytes.len();
        let take = room.min(chunk.len());
        self.bytes.extend_from_slice(&chunk[..take]);
        self.discarded += chunk.len() - take;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::pin::pin;
    use std::rc::Rc;

    use tokio::io::{AsyncWriteExt as _, DuplexStream};

    use super::*;
    use crate::stdio;

    #[test]
    fn capped_output_keeps_the_first_bytes_only() {
        let mut capped = Capped::default();
        capped.push(&vec![b'a'; OUTPUT_CAP - 1]);
        capped.push(b"bcd");
        assert_eq!(capped.bytes.len(), OUTPUT_CAP);
        assert_eq!(capped.bytes.last(), Some(&b'b'));
        assert_eq!(capped.discarded, 2);
    }

    /// The fake command's exit: sent once, by its script or by a kill.
    type Exit = Rc<RefCell<Option<oneshot::Sender<ExitStatus>>>>;

    fn send_exit(exit: &Exit, status: ExitStatus) {
        if let Some(sender) = exit.borrow_mut().take() {
            let _ = sender.send(status);
        }
    }

    /// Runs the state machine over a fake command played by `script`, which is given the
    /// command's exit and its output pipe; a kill makes it exit with SIGKILL's status. Returns
    /// the reply, when the run ended, and when the command was killed (if it was).
    async fn drive(
        timeout: Duration,
        script: impl AsyncFnOnce(Exit, DuplexStream),
    ) -> (ExecSyncResult, Duration, Option<Duration>) {
        let (exit, exited) = oneshot::channel();
        let exit: Exit = Rc::new(RefCell::new(Some(exit)));
        let (output, mut reader) = tokio::io::duplex(1024);
        let start = Instant::now();
        let killed_at = Cell::new(None);
        let mut out = Capped::default();
        let ((result, timed_out), ended) = {
            let process = async { exited.await.map_err(|_| MonitorError::ShuttingDown) };
            let output_read = async {
                let read = stdio::read_until_eof(&mut reader, |chunk| out.push(chunk)).await;
                assert!(read.is_ok(), "in-memory pipes do not fail");
            };
            let kill = || {
                killed_at.set(Some(start.elapsed()));
                send_exit(&exit, ExitStatus::Signaled(libc::SIGKILL));
                true
            };
            let deadline = Some(start + timeout);
            let (process, output_read) = (pin!(process), pin!(output_read));
            let done = async {
                let outcome = run_until_done(process, output_read, deadline, kill).await;
                (outcome, start.elapsed())
            };
            // The script may outlive the state machine (a process left behind).
            let (outcome, ()) = tokio::join!(done, script(exit.clone(), output));
            outcome
        };
        let reply = sync_result(result, timed_out, out.bytes, Vec::new());
        (
            reply.expect("a fake command cannot fail"),
            ended,
            killed_at.get(),
        )
    }

    /// What a reply says: timed out, exit code, stdout.
    fn outcome(reply: &ExecSyncResult) -> (bool, i32, &[u8]) {
        (reply.timed_out, reply.exit_code, &reply.stdout)
    }

    #[tokio::test(start_paused = true)]
    async fn command_outliving_its_timeout_is_killed_at_the_deadline() {
        let timeout = Duration::from_secs(5);
        // Never exits on its own, and keeps its output open.
        let (reply, ended, killed_at) = drive(timeout, async |_exit, mut output| {
            output.write_all(b"working\n").await.unwrap();
            tokio::time::sleep(Duration::from_secs(3600)).await;
        })
        .await;
        assert_eq!((ended, killed_at), (timeout, Some(timeout)));
        assert_eq!(
            outcome(&reply),
            (true, EXIT_CODE_TIMED_OUT, &b"working\n"[..])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn output_held_open_after_exit_is_drained_for_the_grace_only() {
        let (reply, ended, killed_at) = drive(Duration::from_secs(60), async |exit, mut output| {
            tokio::time::sleep(Duration::from_secs(1)).await;
            output.write_all(b"last words\n").await.unwrap();
            send_exit(&exit, ExitStatus::Exited(0));
            // A process left behind holds the output open.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        })
        .await;
        let grace_over = Duration::from_secs(1) + DRAIN_AFTER_EXIT;
        assert_eq!((ended, killed_at), (grace_over, None));
        assert_eq!(outcome(&reply), (false, 0, &b"last words\n"[..]));
    }

    #[tokio::test(start_paused = true)]
    async fn command_finishing_before_the_deadline_is_not_killed() {
        let (reply, ended, killed_at) = drive(Duration::from_secs(5), async |exit, mut output| {
            output.write_all(b"done\n").await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(output);
            send_exit(&exit, ExitStatus::Exited(7));
        })
        .await;
        assert_eq!((ended, killed_at), (Duration::from_secs(1), None));
        assert_eq!(outcome(&reply), (false, 7, &b"done\n"[..]));
    }

    #[test]
    fn a_runtime_failure_after_the_deadline_is_the_timeout() {
        let killed = MonitorError::RuntimeFailed {
            action: "exec",
            status: ExitStatus::Signaled(libc::SIGKILL),
            stderr: String::new(),
        };
        let reply = sync_result(Some(Err(killed)), true, Vec::new(), Vec::new()).unwrap();
        assert_eq!(outcome(&reply), (true, EXIT_CODE_TIMED_OUT, &b""[..]));
    }

    #[tokio::test(start_paused = true)]
    async fn runtime_hanging_past_the_deadline_times_out_with_nothing_to_kill() {
        let start = Instant::now();
        let process = std::future::pending::<Result<ExitStatus, MonitorError>>();
        let output = std::future::pending::<()>();
        let deadline = Some(start + Duration::from_secs(2));
        let (result, timed_out) =
            run_until_done(pin!(process), pin!(output), deadline, || false).await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        let reply = sync_result(result, timed_out, Vec::new(), Vec::new()).unwrap();
        assert_eq!(outcome(&reply), (true, EXIT_CODE_TIMED_OUT, &b""[..]));
    }
}
