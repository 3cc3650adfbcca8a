//! The I/O hub of a supervised process (a container or an exec session): its output offered to
//! any number of subscribers as typed messages, the input they share, and its terminal.
//!
//! Subscribers (attach-socket clients, streaming sessions) get the output from the moment they
//! subscribe, never a replay. Each has a bounded queue: one too slow to take its messages is
//! dropped, never stalling the process or the other subscribers. Encoding for a wire (conmon's
//! attach framing, Kubernetes channels) is the subscribers' business.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd as _, OwnedFd};
use std::rc::Rc;

use tokio::net::unix::pipe;
use tokio::sync::{mpsc, watch};

use crate::stream::Stream;
use crate::sys;

/// Largest piece of output in one message: one attach packet's payload, so that queues of
/// [`QUEUE`] messages bound every subscriber's memory the same way.
pub(crate) const MAX_MESSAGE: usize = conmon_proto::framing::MAX_PAYLOAD;

/// Messages queued per subscriber before it counts as too slow.
const QUEUE: usize = 1024;

/// What subscribers receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Output {
    /// Output of one stream (at most [`MAX_MESSAGE`] bytes), shared by all subscribers.
    Data(Stream, Rc<[u8]>),
    /// The output has ended; nothing follows.
    End,
}

/// The stdio of one process.
#[derive(Debug)]
pub(crate) struct ProcessIo {
    subscribers: RefCell<Vec<mpsc::Sender<Output>>>,
    /// Where subscribers' input goes.
    pub(crate) stdin: Stdin,
    /// The terminal master, for processes on a terminal (resizing).
    terminal: Option<OwnedFd>,
    ended: watch::Sender<bool>,
}

impl ProcessIo {
    /// The hub of a process with `stdin` as its input (if it takes any) and `terminal` as its
    /// terminal master (if it has one).
    pub(crate) fn new(stdin: Option<pipe::Sender>, terminal: Option<OwnedFd>) -> Self {
        Self {
            subscribers: RefCell::default(),
            stdin: Stdin::new(stdin),
            terminal,
            ended: watch::Sender::new(false),
        }
    }

    /// Offers a chunk of output to every subscriber.
    pub(crate) fn broadcast(&self, stream: Stream, chunk: &[u8]) {
        let mut subscribers = self.subscribers.borrow_mut();
        if subscribers.is_empty() {
            return;
        }
        for piece in chunk.chunks(MAX_MESSAGE) {
            let message = Output::Data(stream, Rc::from(piece));
            subscribers.retain(|subscriber| match subscriber.try_send(message.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!("attach client does not keep up with the output; detached");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        }
    }

    /// A new subscriber: it gets the output from now on, until [`Output::End`]. A receiver that
    /// ends without it was dropped for being too slow.
    pub(crate) fn subscribe(&self) -> mpsc::Receiver<Output> {
        let (sender, receiver) = mpsc::channel(QUEUE);
        self.subscribers.borrow_mut().push(sender);
        receiver
    }

    /// The process's output has ended: every subscriber gets [`Output::End`] (unless its queue
    /// is full) and is let go; [`ProcessIo::ended`] resolves.
    pub(crate) fn finish(&self) {
        for subscriber in self.subscribers.borrow_mut().drain(..) {
            let _ = subscriber.try_send(Output::End);
        }
        self.ended.send_replace(true);
    }

    /// Resolves once [`ProcessIo::finish`] was called.
    pub(crate) async fn ended(&self) {
        let mut ended = self.ended.subscribe();
        let _ = ended.wait_for(|ended| *ended).await;
    }

    /// Sets the terminal's size; `Ok(false)` when the process has no terminal.
    pub(crate) fn resize(&self, width: u16, height: u16) -> io::Result<bool> {
        match &self.terminal {
            Some(terminal) => sys::set_window_size(terminal.as_fd(), height, width).map(|()| true),
            None => Ok(false),
        }
    }
}

/// A process's stdin, shared by its subscribers; closing it ends the process's input.
#[derive(Debug, Default)]
pub(crate) struct Stdin(RefCell<Option<Rc<pipe::Sender>>>);

impl Stdin {
    fn new(sender: Option<pipe::Sender>) -> Self {
        Self(RefCell::new(sender.map(Rc::new)))
    }

    /// Writes all of `bytes`; without an input (or once closed) they are dropped.
    pub(crate) async fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        let Some(sender) = self.0.borrow().clone() else {
            return Ok(());
        };
        while !bytes.is_empty() {
            sender.writable().await?;
            match sender.try_write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Ends the process's input (writers still holding the pipe finish their write).
    pub(crate) fn close(&self) {
        self.0.borrow_mut().take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_reaches_every_subscriber_in_pieces_then_ends() {
        let io = ProcessIo::new(None, None);
        let mut a = io.subscribe();
        let mut b = io.subscribe();
        io.broadcast(Stream::Stderr, &vec![7; MAX_MESSAGE + 1]);
        io.finish();
        for receiver in [&mut a, &mut b] {
            let Ok(Output::Data(Stream::Stderr, first)) = receiver.try_recv() else {
                panic!("no first piece");
            };
            assert_eq!(first.len(), MAX_MESSAGE);
            let Ok(Output::Data(Stream::Stderr, second)) = receiver.try_recv() else {
                panic!("no second piece");
            };
            assert_eq!(*second, [7]);
            assert_eq!(receiver.try_recv(), Ok(Output::End));
        }
    }

    #[test]
    fn a_subscriber_that_falls_behind_is_dropped() {
        let io = ProcessIo::new(None, None);
        let mut slow = io.subscribe();
        for _ in 0..=QUEUE {
            io.broadcast(Stream::Stdout, b"x");
        }
        let mut received = 0;
        while let Ok(Output::Data(..)) = slow.try_recv() {
            received += 1;
        }
        assert_eq!(received, QUEUE);
        // Disconnected, not just empty: the hub let go of it.
        assert_eq!(
            slow.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        );
    }
}
