//! The two-party RPC system both ends run on a Unix stream: the monitor serves `Conmon` on each
//! accepted connection, a client bootstraps it.

use capnp::message::ReaderOptions;
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{RpcSystem, twoparty};
use futures::AsyncReadExt as _;
use tokio::net::UnixStream;
use tokio_util::compat::TokioAsyncReadCompatExt as _;

use crate::conmon;

/// Largest request message the serving end reads. A request holds paths, arguments and
/// metadata (an argv is at most 2 MiB on Linux); capnp's default of 64 MiB would let every
/// connection pin that much memory with one message.
pub const MAX_REQUEST_BYTES: u64 = 4 << 20;

/// The RPC system serving `server` on one accepted connection; drive it until it ends.
/// Messages over [`MAX_REQUEST_BYTES`] end the connection.
pub fn serve(stream: UnixStream, server: &conmon::Client) -> RpcSystem<Side> {
    let limits = *ReaderOptions::new().traversal_limit_in_words(Some(
        usize::try_from(MAX_REQUEST_BYTES / 8).unwrap_or(usize::MAX),
    ));
    RpcSystem::new(
        network(stream, Side::Server, limits),
        Some(server.clone().client),
    )
}

/// The client of the monitor at the other end of `stream`, and the RPC system to drive while
/// it is used.
pub fn connect(stream: UnixStream) -> (conmon::Client, RpcSystem<Side>) {
    let mut rpc = RpcSystem::new(network(stream, Side::Client, ReaderOptions::new()), None);
    (rpc.bootstrap(Side::Server), rpc)
}

fn network(
    stream: UnixStream,
    side: Side,
    limits: ReaderOptions,
) -> Box<twoparty::VatNetwork<impl futures::AsyncRead + Unpin>> {
    let (reader, writer) = stream.compat().split();
    Box::new(twoparty::VatNetwork::new(
        futures::io::BufReader::new(reader),
        futures::io::BufWriter::new(writer),
        side,
        limits,
    ))
}
