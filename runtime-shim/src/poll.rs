//! Waiting for a condition outside this process (a file, a process, the runtime's state) with
//! a deadline: the one polling loop of the library.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// First pause between checks; doubles up to [`MAX_PAUSE`], so fast events are seen quickly
/// and slow ones cost little.
const FIRST_PAUSE: Duration = Duration::from_millis(5);
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// Calls `check` until it returns `Some` or `timeout` has passed (checking once more at the
/// deadline); `None` on timeout.
pub(crate) async fn until<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = FIRST_PAUSE;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn returns_the_first_value_and_gives_up_at_the_deadline() {
        let calls = Cell::new(0);
        let found = until(Duration::from_secs(1), || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move { (n == 3).then_some(n) }
        })
        .await;
        assert_eq!(found, Some(3));

        let start = Instant::now();
        let never = until(Duration::from_secs(1), || async { None::<()> }).await;
        assert_eq!(never, None);
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }
}
