//! The server side of one SPDY/3.1 session: it reads the client's frames one at a time (so a
//! slow consumer slows the client down through TCP, as in kubelet's spdystream), answers PINGs,
//! refuses what is malformed, and sends data within the client's flow-control windows.
//!
//! Flow control: every byte received is given back with WINDOW_UPDATE (stream and session), so a
//! strict client never stalls. Go's spdystream, which kubelet and client-go use, neither sends
//! nor honours WINDOW_UPDATE; so the client's windows are enforced once it shows it keeps them,
//! by a SETTINGS frame with an initial window size or a WINDOW_UPDATE.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::time::Instant;

mod receive;

use conmon_spdy::frame::{self, FrameError, GoAwayStatus, ResetStatus};
use conmon_spdy::headers::{Codec, HeaderError, Headers};

/// SPDY/3's initial window, per stream and for the session.
const DEFAULT_WINDOW: i64 = 64 * 1024;
/// Received bytes are acknowledged in steps of this many.
const WINDOW_UPDATE_STEP: u32 = 32 * 1024;
/// Streams a client may have open at once.
const MAX_STREAMS: usize = 64;
/// Bytes of input held while the client's windows keep our output waiting.
const MAX_BACKLOG: usize = 4 * 1024 * 1024;
/// How long a last frame (a GOAWAY) may take to leave.
const LAST_WORDS: Duration = Duration::from_secs(1);

/// What the client did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A new stream, to be accepted or reset.
    Opened {
        stream: u32,
        headers: Headers,
    },
    Data {
        stream: u32,
        data: Vec<u8>,
    },
    /// The client sends nothing more on the stream.
    Finished {
        stream: u32,
    },
    /// The client reset the stream.
    Reset {
        stream: u32,
    },
    /// The session is over: the client left (`Ok`) or it failed (already answered with GOAWAY).
    Ended(Result<(), String>),
}

/// Why a session ended early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Headers(#[from] HeaderError),
    #[error("no frame for {0:?}")]
    Idle(Duration),
    #[error("the client sent {0} bytes while its flow-control window kept our output waiting")]
    Backlog(usize),
    #[error("connection failed: {0}")]
    Io(#[from] io::Error),
}

#[derive(Debug)]
struct StreamState {
    /// We may still send.
    local_open: bool,
    /// The client may still send.
    remote_open: bool,
    send_window: i64,
    unacknowledged: u32,
}

/// One session over `io` (the connection after the HTTP upgrade).
pub(crate) struct Session<T> {
    io: T,
    input: Vec<u8>,
    /// Parsed bytes at the start of `input`.
    consumed: usize,
    output: Vec<u8>,
    /// Written bytes at the start of `output`.
    written: usize,
    codec: Codec,
    streams: HashMap<u32, StreamState>,
    last_opened: u32,
    backlog: VecDeque<Event>,
    backlog_bytes: usize,
    /// The client keeps flow-control windows (see the module's comment).
    windows_enforced: bool,
    initial_window: i64,
    session_window: i64,
    session_unacknowledged: u32,
    idle_timeout: Duration,
    last_activity: Instant,
    /// Why the session is over, once it is (reported once).
    ended: Option<Result<(), String>>,
}

impl<T> std::fmt::Debug for Session<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("streams", &self.streams.len())
            .field("last_opened", &self.last_opened)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Session<T> {
    /// A session on `io`, which already holds `leftover` (bytes read past the HTTP head); it
    /// ends when no frame passed in either direction for `idle_timeout`.
    pub(crate) fn new(io: T, leftover: Vec<u8>, idle_timeout: Duration) -> Self {
        Self {
            io,
            input: leftover,
            consumed: 0,
            output: Vec::new(),
            written: 0,
            codec: Codec::new(),
            streams: HashMap::new(),
            last_opened: 0,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            windows_enforced: false,
            initial_window: DEFAULT_WINDOW,
            session_window: DEFAULT_WINDOW,
            session_unacknowledged: 0,
            idle_timeout,
            last_activity: Instant::now(),
            ended: None,
        }
    }

    /// The client's next action. Cancel-safe.
    pub(crate) async fn next(&mut self) -> Event {
        loop {
            // Answers (PING, WINDOW_UPDATE, RST_STREAM) leave before the caller gets busy.
            if self.ended.is_none()
                && let Err(err) = self.flush().await
            {
                self.end(err.into()).await;
            }
            if let Some(event) = self.backlog.pop_front() {
                if let Event::Data { data, .. } = &event {
                    self.backlog_bytes -= data.len();
                }
                return event;
            }
            if let Some(ended) = &self.ended {
                return Event::Ended(ended.clone());
            }
            if let Err(err) = self.step().await {
                self.end(err).await;
            }
        }
    }

    /// Accepts a stream the client opened (SYN_REPLY, no headers).
    pub(crate) async fn accept(&mut self, stream: u32) -> io::Result<()> {
        let block = self.codec.encode(&Headers::default());
        frame::syn_reply(&mut self.output, stream, &block);
        self.flush().await
    }

    /// Resets a stream: nothing more is sent or received on it.
    pub(crate) async fn reset(&mut self, stream: u32, status: ResetStatus) -> io::Result<()> {
        self.streams.remove(&stream);
        frame::rst_stream(&mut self.output, stream, status);
        self.flush().await
    }

    /// Sends `data` on `stream`, the last of it with FIN if `fin`; `Ok(false)` if the stream is
    /// closed on our side or was reset by the client (the data is dropped).
    pub(crate) async fn send(&mut self, stream: u32, data: &[u8], fin: bool) -> io::Result<bool> {
        let mut rest = data;
        loop {
            let Some(state) = self.streams.get(&stream).filter(|s| s.local_open) else {
                return Ok(false);
            };
            let window = state.send_window.min(self.session_window);
            let n = match self.windows_enforced {
                true if !rest.is_empty() && window <= 0 => {
                    self.wait_for_window().await?;
                    continue;
                }
                true => rest.len().min(usize::try_from(window).unwrap_or(0)),
                false => rest.len(),
            };
            let (chunk, tail) = rest.split_at(n.min(frame::MAX_DATA_FRAME));
            let last = tail.is_empty();
            frame::data(&mut self.output, stream, fin && last, chunk);
            let sent = chunk.len() as i64;
            self.session_window -= sent;
            if let Some(state) = self.streams.get_mut(&stream) {
                state.send_window -= sent;
                if fin && last {
                    state.local_open = false;
                    if !state.remote_open {
                        self.streams.remove(&stream);
                    }
                }
            }
            self.flush().await?;
            if last {
                return Ok(true);
            }
            rest = tail;
        }
    }

    /// Ends the session: FIN on every stream still open on our side, GOAWAY, then the
    /// connection is closed once the client closed it or `linger` passed.
    pub(crate) async fn close(mut self, linger: Duration) {
        if let Some(Err(_)) = self.ended {
            // Already answered with GOAWAY.
            let _ = tokio::time::timeout(LAST_WORDS, self.io.shutdown()).await;
            return;
        }
        let open: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, state)| state.local_open)
            .map(|(&id, _)| id)
            .collect();
        for stream in open {
            frame::data(&mut self.output, stream, true, &[]);
        }
        frame::go_away(&mut self.output, self.last_opened, GoAwayStatus::Ok);
        let goodbye = async {
            self.flush().await?;
            self.io.shutdown().await?;
            // Read until the client closes: closing with its data unread would reset the
            // connection, and could destroy our last frames before it read them.
            let mut scratch = vec![0; 16 * 1024];
            while self.io.read(&mut scratch).await? > 0 {}
            io::Result::Ok(())
        };
        let _ = tokio::time::timeout(linger, goodbye).await;
    }

    /// Parses and handles one frame, reading first if none is complete.
    async fn step(&mut self) -> Result<(), SessionError> {
        // Moved out while a frame borrows from it.
        let input = std::mem::take(&mut self.input);
        let parsed = frame::parse(&input[self.consumed..]).map(|frame| {
            frame.map(|(frame, length)| {
                self.consumed += length;
                self.last_activity = Instant::now();
                self.handle(frame)
            })
        });
        self.input = input;
        if let Some(handled) = parsed? {
            return handled;
        }
        if self.consumed > 0 {
            self.input.drain(..self.consumed);
            self.consumed = 0;
        }
        // Answers (PING, WINDOW_UPDATE, RST_STREAM) leave before more is read.
        self.flush().await?;
        self.input.reserve(64 * 1024);
        let deadline = self.last_activity + self.idle_timeout;
        tokio::select! {
            read = self.io.read_buf(&mut self.input) => match read? {
                0 => Err(SessionError::Io(io::ErrorKind::UnexpectedEof.into())),
                _ => Ok(()),
            },
            () = tokio::time::sleep_until(deadline) => Err(SessionError::Idle(self.idle_timeout)),
        }
    }

    /// Handles the client's frames (keeping what it sends for [`Session::next`]) until a window
    /// may have opened.
    async fn wait_for_window(&mut self) -> io::Result<()> {
        let result = match self.step().await {
            Ok(()) if self.backlog_bytes > MAX_BACKLOG => {
                Err(SessionError::Backlog(self.backlog_bytes))
            }
            result => result,
        };
        if let Err(err) = result {
            let message = err.to_string();
            self.end(err).await;
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, message));
        }
        Ok(())
    }

    /// Records why the session ended; a protocol error is answered with GOAWAY.
    async fn end(&mut self, err: SessionError) {
        let status = match &err {
            SessionError::Io(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                self.ended = Some(Ok(()));
                return;
            }
            SessionError::Io(_) => None,
            SessionError::Idle(_) => Some(GoAwayStatus::Ok),
            SessionError::Frame(_) | SessionError::Headers(_) | SessionError::Backlog(_) => {
                Some(GoAwayStatus::ProtocolError)
            }
        };
        tracing::warn!(error = %err, "SPDY session ended");
        if let Some(status) = status {
            frame::go_away(&mut self.output, self.last_opened, status);
            let _ = tokio::time::timeout(LAST_WORDS, self.flush()).await;
        }
        self.ended = Some(Err(err.to_string()));
    }

    /// Writes what is queued. Cancel-safe: the progress is kept.
    async fn flush(&mut self) -> io::Result<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        while self.written < self.output.len() {
            match self.io.write(&self.output[self.written..]).await? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => self.written += n,
            }
        }
        self.output.clear();
        self.written = 0;
        self.last_activity = Instant::now();
        Ok(())
    }
}
