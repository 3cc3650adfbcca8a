//! Pipes between the monitor and the processes it supervises, read asynchronously.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd as _, OwnedFd};

use futures::FutureExt as _;
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::net::unix::pipe;

use crate::sys;

/// Pipe buffer requested for container output: a larger pipe lets a fast writer run longer
/// between the monitor's reads. The kernel caps it (`/proc/sys/fs/pipe-max-size`).
const PIPE_SIZE: i32 = 1 << 20;

/// Bytes read from a pipe at a time, into the thread's one scratch buffer: a quarter of the
/// pipe (fewer reads and writes per burst); there is one such buffer, not one per stream.
const READ_CHUNK: usize = 256 * 1024;

/// Bytes the first read of a chunk takes, into the reading task's own buffer: each waiting
/// reader holds only this much, and a line of output is read and handed on in one read.
const FIRST_READ: usize = 512;

thread_local! {
    /// Where bursts are read: every reader on the thread shares it (they run one at a time, and
    /// a chunk is handed on before the next read), so the memory for reading output does not
    /// grow with the number of containers.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

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
    while read_next(reader, &mut sink).await? {}
    Ok(())
}

/// Waits for output, then hands what is there now (up to [`READ_CHUNK`] bytes) to `sink` in
/// one piece; `false` at end of file. Cancel-safe: nothing is read until the first read
/// completes, and the rest runs without waiting.
pub(crate) async fn read_next<R: AsyncRead + Unpin>(
    reader: &mut R,
    sink: &mut impl FnMut(&[u8]),
) -> io::Result<bool> {
    let mut first = [0; FIRST_READ];
    let n = read_chunk(reader, &mut first).await?;
    if n == 0 {
        return Ok(false);
    }
    if n < FIRST_READ {
        sink(&first[..n]);
        return Ok(true);
    }
    // A burst: the rest of what the pipe holds goes into the shared buffer.
    with_scratch(|buf| {
        buf[..n].copy_from_slice(&first);
        let (filled, more) = read_ready(reader, buf, n);
        sink(&buf[..filled]);
        more
    })
}

/// Like [`read_next`], but gives the chunk as its own copy, for a consumer that waits before
/// it is done with it; `None` at end of file. An end (or error) met right after a chunk shows
/// on the next call.
pub(crate) async fn read_owned<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> io::Result<Option<Vec<u8>>> {
    let mut chunk = Vec::new();
    let read = read_next(reader, &mut |bytes: &[u8]| chunk.extend_from_slice(bytes)).await;
    match read {
        _ if !chunk.is_empty() => Ok(Some(chunk)),
        Ok(_) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Fills `buf` from `filled` on with what `reader` has ready, without waiting; gives the
/// bytes now in `buf` and whether the stream is still open (an error after some bytes ends it
/// too, once those are handed on).
fn read_ready<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
    mut filled: usize,
) -> (usize, io::Result<bool>) {
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]).now_or_never() {
            None => break,
            Some(Ok(0)) => return (filled, Ok(false)),
            Some(Ok(n)) => filled += n,
            Some(Err(err)) if err.kind() == io::ErrorKind::Interrupted => {}
            Some(Err(err)) if err.raw_os_error() == Some(libc::EIO) => return (filled, Ok(false)),
            Some(Err(err)) => return (filled, Err(err)),
        }
    }
    (filled, Ok(true))
}

/// Runs `read` with the thread's scratch buffer ([`READ_CHUNK`] bytes), or with a buffer of
/// its own if a reader on this thread holds the scratch one already.
fn with_scratch<T>(read: impl FnOnce(&mut [u8]) -> T) -> T {
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.is_empty() {
                // Fresh zeroed memory: pages are only touched by the reads that need them.
                *buf = vec![0; READ_CHUNK];
            }
            read(&mut buf)
        }
        Err(_) => read(&mut vec![0; READ_CHUNK]),
    })
}

/// Reads the next chunk into `buf`; 0 at end of file. A terminal master whose other side was
/// closed by every process reports EIO: that is its end of file. Cancel-safe.
async fn read_chunk<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf).await {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if err.raw_os_error() == Some(libc::EIO) => return Ok(0),
            result => return result,
        }
    }
}

/// Reads whatever is buffered in the pipe right now, without waiting for more. Usually nothing
/// is (a runtime's output after it succeeded): that costs no allocation.
pub(crate) fn read_available(reader: &mut PipeReader) -> Vec<u8> {
    let mut first = [0; FIRST_READ];
    let (n, _) = read_ready(reader, &mut first, 0);
    let mut out = first[..n].to_vec();
    if n == FIRST_READ {
        with_scratch(|buf| {
            loop {
                let (n, open) = read_ready(reader, buf, 0);
                out.extend_from_slice(&buf[..n]);
                if n < buf.len() || !matches!(open, Ok(true)) {
                    break;
                }
            }
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    /// A pipe with `bytes` in it, its write end closed when `close` is set.
    fn pipe_with(bytes: &[u8], close: bool) -> (PipeReader, Option<std::fs::File>) {
        let (reader, writer) = output_pipe().unwrap();
        let mut writer = std::fs::File::from(writer);
        writer.write_all(bytes).unwrap();
        (reader, (!close).then_some(writer))
    }

    #[tokio::test]
    async fn a_line_is_one_chunk() {
        let (mut reader, _writer) = pipe_with(b"one line\n", false);
        let mut chunks = Vec::new();
        let open = read_next(&mut reader, &mut |c: &[u8]| chunks.push(c.to_vec())).await;
        assert!(open.unwrap());
        assert_eq!(chunks, [b"one line\n".to_vec()]);
    }

    #[tokio::test]
    async fn a_burst_is_read_whole_into_the_scratch_buffer() {
        let burst: Vec<u8> = (0..READ_CHUNK + 100).map(|i| i as u8).collect();
        let (mut reader, _) = pipe_with(&burst, true);
        let mut chunks = Vec::new();
        read_until_eof(&mut reader, |c| chunks.push(c.to_vec()))
            .await
            .unwrap();
        // Everything there at once arrives in as few chunks as the buffer allows.
        assert_eq!(
            chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            [READ_CHUNK, 100]
        );
        assert_eq!(chunks.concat(), burst);
    }

    #[tokio::test]
    async fn what_is_available_is_read_whole_without_waiting() {
        for len in [0, 10, FIRST_READ, FIRST_READ + 1, READ_CHUNK * 2 + 3] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let (mut reader, _writer) = pipe_with(&bytes, false);
            if len > 0 {
                // The reactor must have seen the pipe readable, as after a runtime exited.
                reader.readable().await.unwrap();
            }
            assert_eq!(read_available(&mut reader), bytes, "{len} bytes");
        }
    }

    #[tokio::test]
    async fn owned_chunks_come_before_the_end() {
        let (mut reader, _) = pipe_with(&[7; 2000], true);
        assert_eq!(read_owned(&mut reader).await.unwrap(), Some(vec![7; 2000]));
        assert_eq!(read_owned(&mut reader).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_reader_inside_a_sink_gets_a_buffer_of_its_own() {
        let (mut outer, _) = pipe_with(&[1; 4000], true);
        let (mut inner, _) = pipe_with(&[2; 4000], true);
        let mut seen = Vec::new();
        read_until_eof(&mut outer, |c| {
            seen.extend_from_slice(c);
            // A sink never reads, but if one did it must not find the buffer taken.
            with_scratch(|buf| {
                let (filled, _) = read_ready(&mut inner, buf, 0);
                seen.extend_from_slice(&buf[..filled]);
            });
        })
        .await
        .unwrap();
        assert_eq!(seen.len(), 8000);
    }
}
