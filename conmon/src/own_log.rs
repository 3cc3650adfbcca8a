//! conmond's own log output (`--log-level`, `--log-driver`).

use std::io::{self, Write};
use std::sync::Mutex;

use tracing::{Level, Metadata};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{LogDriver, LogLevel};
use crate::logs::Journald;

impl From<LogLevel> for LevelFilter {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Trace => Self::TRACE,
            LogLevel::Debug => Self::DEBUG,
            LogLevel::Info => Self::INFO,
            LogLevel::Warn => Self::WARN,
            LogLevel::Error => Self::ERROR,
            LogLevel::Off => Self::OFF,
        }
    }
}

/// Installs the global subscriber for conmond's own messages.
pub(crate) fn init(level: LogLevel, driver: LogDriver) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(LevelFilter::from(level))
        .with_ansi(false);
    let installed = match driver {
        LogDriver::None => return,
        LogDriver::Stdout => builder.with_writer(io::stdout).try_init(),
        LogDriver::Systemd => match Journald::connect() {
            Ok(journald) => builder
                .without_time()
                .with_writer(JournaldWriter(Mutex::new(journald)))
                .try_init(),
            // No journal on this host: stderr is the only place left.
            Err(_) => builder.with_writer(io::stderr).try_init(),
        },
    };
    // Only fails if a subscriber exists already, which then keeps serving.
    drop(installed);
}

/// Sends each formatted message to the journal as one entry, with a priority from its level.
struct JournaldWriter(Mutex<Journald>);

impl<'a> MakeWriter<'a> for JournaldWriter {
    type Writer = JournaldEntry<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        JournaldEntry {
            journald: &self.0,
            priority: b"6",
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        let priority: &'static [u8] = match *meta.level() {
            Level::ERROR => b"3",
            Level::WARN => b"4",
            Level::INFO => b"6",
            Level::DEBUG | Level::TRACE => b"7",
        };
        JournaldEntry {
            journald: &self.0,
            priority,
            buf: Vec::new(),
        }
    }
}

struct JournaldEntry<'a> {
    journald: &'a Mutex<Journald>,
    priority: &'static [u8],
    buf: Vec<u8>,
}

impl Write for JournaldEntry<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for JournaldEntry<'_> {
    fn drop(&mut self) {
        let message = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
        if let Ok(mut journald) = self.journald.lock() {
            // A log line that cannot be delivered has nowhere else to go.
            let _ = journald.send(&[
                ("MESSAGE", message),
                ("PRIORITY", self.priority),
                ("SYSLOG_IDENTIFIER", b"conmond"),
            ]);
        }
    }
}
