//! Admission for accept loops: a cap on open connections, and a back-off with rate-limited
//! warnings when accepting fails (typically out of descriptors, EMFILE or ENFILE), where a
//! plain retry would spin a core and flood the log.

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use tokio::time::Instant;

/// First pause after a failed accept; doubled on each failure in a row.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// Longest pause between accepts that keep failing.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// At most one warning per interval for each gate; the others are counted.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// The admission of one listening socket.
#[derive(Debug)]
pub(crate) struct Gate {
    what: &'static str,
    max_open: usize,
    open: Rc<Cell<usize>>,
    backoff: Cell<Duration>,
    last_warning: Cell<Option<Instant>>,
    unreported: Cell<u64>,
}

/// An admitted connection's place; the place is free again when this is dropped.
#[derive(Debug)]
pub(crate) struct Permit(Rc<Cell<usize>>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

impl Gate {
    /// A gate admitting up to `max_open` connections at once to the `what` socket.
    pub(crate) fn new(what: &'static str, max_open: usize) -> Self {
        Self {
            what,
            max_open,
            open: Rc::default(),
            backoff: Cell::new(FIRST_BACKOFF),
            last_warning: Cell::new(None),
            unreported: Cell::new(0),
        }
    }

    /// Takes the outcome of one accept: an admitted connection with its permit, or `None`
    /// after a failure (once a back-off pause is over) or when the gate is full (the
    /// connection is then dropped, which closes it).
    pub(crate) async fn admit<T>(&self, accepted: io::Result<T>) -> Option<(T, Permit)> {
        let connection = match accepted {
            Ok(connection) => connection,
            Err(err) => {
                self.warn(&format!("accept {} connection: {err}", self.what));
                let pause = self.backoff.get();
                self.backoff.set((pause * 2).min(MAX_BACKOFF));
                tokio::time::sleep(pause).await;
                return None;
            }
        };
        self.backoff.set(FIRST_BACKOFF);
        if self.open.get() >= self.max_open {
            self.warn(&format!(
                "{} connections at their limit of {}; refusing a new one",
                self.what, self.max_open
            ));
            return None;
        }
        self.open.set(self.open.get() + 1);
        Some((connection, Permit(self.open.clone())))
    }

    /// Logs `message` unless this gate warned less than [`WARN_INTERVAL`] ago; the warnings
    /// left out are counted in the next one.
    fn warn(&self, message: &str) {
        let now = Instant::now();
        if self
            .last_warning
            .get()
            .is_some_and(|last| now < last + WARN_INTERVAL)
        {
            self.unreported.set(self.unreported.get() + 1);
            return;
        }
        let unreported = self.unreported.replace(0);
        self.last_warning.set(Some(now));
        tracing::warn!(unreported, "{message}");
    }

    #[cfg(test)]
    fn backoff(&self) -> Duration {
        self.backoff.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> io::Result<()> {
        Err(io::Error::from_raw_os_error(libc::EMFILE))
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially_up_to_a_second_and_success_resets() {
        let gate = Gate::new("test", 1);
        let start = Instant::now();
        for _ in 0..10 {
            assert!(gate.admit(emfile()).await.is_none());
        }
        // 10 + 20 + ... + 640 ms, then 1 s three times.
        assert_eq!(start.elapsed(), Duration::from_millis(1270 + 3000));
        assert_eq!(gate.backoff(), MAX_BACKOFF);
        assert!(gate.admit(Ok(())).await.is_some());
        assert_eq!(gate.backoff(), FIRST_BACKOFF);
    }

    #[tokio::test(start_paused = true)]
    async fn warnings_are_rate_limited_and_count_what_they_left_out() {
        let gate = Gate::new("test", 1);
        for _ in 0..10 {
            gate.admit(emfile()).await;
        }
        // The first failure warned; nine came within the interval.
        assert_eq!(gate.unreported.get(), 9);
        tokio::time::advance(WARN_INTERVAL).await;
        gate.admit(emfile()).await;
        assert_eq!(gate.unreported.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_gate_refuses_until_a_permit_is_dropped() {
        let gate = Gate::new("test", 2);
        let first = gate.admit(Ok(1)).await.expect("room for the first");
        let _second = gate.admit(Ok(2)).await.expect("room for the second");
        assert!(gate.admit(Ok(3)).await.is_none());
        assert_eq!(gate.open.get(), 2);
        drop(first);
        assert_eq!(gate.admit(Ok(4)).await.map(|(n, _)| n), Some(4));
    }
}
