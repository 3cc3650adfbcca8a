//! Pipes between the monitor and the processes it supervises, read asynchronously.

use std::io;
use std::os::fd::{AsFd as _, OwnedFd};

use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::net::unix::pipe;

use crate::sys;

/// Pipe buffer requested for container output: a larger pipe lets a fast writer run longer
/// between the monitor's reads. The kernel caps it (`/proc/sys/fs/pipe-max-size`).
const PIPE_SIZE: i32 = 1 << 20;

/// Bytes read from a pipe at a time.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// The read end of an output pipe, registered with the runtime.
pub(crate) type PipeReader = pipe::Receiver;

/// Creates a pipe for a child's output; returns the monitor's non-blocking read end and the
/// write end to hand to the child.
pub(crate) fn output_pipe() -> io::Result<(PipeReader, OwnedFd)> {
    let (read, write) = sys::pipe()?;
    if let Err(err) = sys::set_pipe_size(read.as_fd(), PIPE_SIZE) {
        tracing::debug!(error = %err, "could not grow pipe buffer");
    }
    Ok((pipe::Receiver::from_owned_fd(read)?, write))
}

/// Reads `reader` until end of file, handing every chunk to `sink`.
pub(crate) async fn read_until_eof<R: AsyncRead + Unpin>(
    reader: &mut R,
    mut sink: impl FnMut(&[u8]),
) -> io::Result<()> {
    let mut buf = vec![0; READ_CHUNK];
    loop {
        match read_chunk(reader, &mut buf).await? {
            0 => return Ok(()),
            n => sink(&buf[..n]),
        }
    }
}

/// Reads the next chunk into `buf`; 0 at end of file. A terminal master whose other side was
/// closed by every process reports EIO: that is its end of file. Cancel-safe.
pub(crate) async fn read_chunk<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
) -> io::Result<usize> {
    loop {
        match reader.read(buf).await {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if err.raw_os_error() == Some(libc::EIO) => return Ok(0),
            result => return result,
        }
    }
}

/// Reads whatever is buffered in the pipe right now, without waiting for more.
pub(crate) fn read_available(reader: &PipeReader) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0; READ_CHUNK];
    loop {
        match reader.try_read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return out,
        }
    }
}
