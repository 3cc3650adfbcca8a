//! The monitor's tasks, counted: they run on a `LocalSet`, whose tasks tokio's runtime metrics
//! do not see, and their number is what shows a leak (the `state` line, the `conmond.tasks`
//! gauge).

use std::sync::atomic::{AtomicUsize, Ordering};

use futures::FutureExt as _;
use tokio::task::JoinHandle;

static ALIVE: AtomicUsize = AtomicUsize::new(0);

/// Tasks spawned and not yet finished or dropped.
pub(crate) fn alive() -> usize {
    ALIVE.load(Ordering::Relaxed)
}

/// `tokio::task::spawn_local`, counted.
pub(crate) fn spawn_local<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    tokio::task::spawn_local(counted(future))
}

/// `future`, counted as a task from now until it completes or is dropped (for a `JoinSet`).
/// Not an `async` block: one that awaits a captured future keeps room for it twice (the
/// capture and the awaited value are not overlapped), which doubled every task's memory.
pub(crate) fn counted<F: Future>(future: F) -> impl Future<Output = F::Output> {
    let alive = Alive::new();
    future.map(move |output| {
        drop(alive);
        output
    })
}

struct Alive;

impl Alive {
    fn new() -> Self {
        ALIVE.fetch_add(1, Ordering::Relaxed);
        Self
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        ALIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counted_future_takes_little_more_room_than_the_future() {
        let future = async {
            let buffer = [0u8; 4096];
            std::future::ready(()).await;
            buffer.len()
        };
        let size = size_of_val(&future);
        let counted = counted(future);
        assert!(
            size_of_val(&counted) <= size + 16,
            "{} for {size}",
            size_of_val(&counted)
        );
    }
}
