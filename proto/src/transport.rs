//! The two-party RPC system both ends run on a Unix stream: the monitor serves `Conmon` on each
//! accepted connection, a client bootstraps it.

use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{RpcSystem, twoparty};
use futures::AsyncReadExt as _;
use tokio::net::UnixStream;
use tokio_util::compat::TokioAsyncReadCompatExt as _;

use crate::conmon;

/// The RPC system serving `server` on one accepted connection; drive it until it ends.
pub fn serve(stream: UnixStream, server: &conmon::Client) -> RpcSystem<Side> {
    RpcSystem::new(network(stream, Side::Server), Some(server.clone().client))
}

/// The client of the monitor at the other end of `stream`, and the RPC system to drive while
/// it is used.
pub fn connect(stream: UnixStream) -> (conmon::Client, RpcSystem<Side>) {
    let mut rpc = RpcSystem::new(network(stream, Side::Client), None);
    (rpc.bootstrap(Side::Server), rpc)
}

fn network(
    stream: UnixStream,
    side: Side,
) -> Box<twoparty::VatNetwork<impl futures::AsyncRead + Unpin>> {
    let (reader, writer) = stream.compat().split();
    Box::new(twoparty::VatNetwork::new(
        futures::io::BufReader::new(reader),
        futures::io::BufWriter::new(writer),
        side,
        Default::default(),
    ))
}
