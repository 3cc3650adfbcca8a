//! Entry points for the fuzz targets in `fuzz/` (compiled only under `cargo fuzz`, which builds
//! with `--cfg fuzzing`). The exporter's HTTP/2 client, HPACK decoder and endpoint parser sit
//! in private modules; their files are compiled a second time here, unchanged, as children of
//! this module, so the code fuzzed is the text the exporter runs.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    reason = "the mirrored modules are only partly used by the fuzz targets"
)]

#[path = "export/h2c.rs"]
mod h2c;
#[path = "export/hpack.rs"]
mod hpack;
#[path = "export/huffman.rs"]
mod huffman;
#[path = "export/otlp.rs"]
mod otlp;

use tokio::io::AsyncReadExt as _;

/// The decoded headers of each block in turn (one decoder for all), or the first error.
pub fn hpack_blocks(blocks: &[&[u8]]) -> Result<Vec<Vec<(Vec<u8>, Vec<u8>)>>, String> {
    let mut decoder = hpack::Decoder::new();
    blocks
        .iter()
        .map(|block| decoder.decode(block).map_err(|err| err.to_string()))
        .collect()
}

/// The decoded-header bound the decoder promises.
pub const MAX_HEADER_LIST: usize = hpack::MAX_HEADER_LIST;
/// The response-body bound the client promises.
pub const MAX_RESPONSE_BODY: usize = h2c::MAX_RESPONSE_BODY;

/// One request with a `body_len`-byte body against a server that sends `server` and then
/// closes its side; returns the response's header and trailer counts and body, or the error.
pub fn h2c_exchange(server: &[u8], body_len: usize) -> Result<(usize, usize, Vec<u8>), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (client, mut server_end) = tokio::io::duplex(1 << 20);
        let (mut server_read, mut server_write) = tokio::io::split(&mut server_end);
        let script = async {
            use tokio::io::AsyncWriteExt as _;
            server_write.write_all(server).await.expect("duplex write");
            server_write.shutdown().await.expect("duplex shutdown");
        };
        // Whatever the client writes is read and dropped, so it never blocks on a full pipe.
        let drain = async {
            let mut sink = Vec::new();
            let _ = server_read.read_to_end(&mut sink).await;
        };
        let request = async {
            let mut connection = h2c::Connection::handshake(client)
                .await
                .map_err(|err| err.to_string())?;
            let response = connection
                .request(&[0x83], &vec![0x5a; body_len])
                .await
                .map_err(|err| err.to_string());
            drop(connection);
            response
        };
        let (response, (), ()) = tokio::join!(request, script, drain);
        let response = response?;
        Ok((
            response.headers.len(),
            response.trailers.len(),
            response.body,
        ))
    })
}

/// An endpoint as the exporter parses it: host, port and `:authority`.
pub fn endpoint(text: &str) -> Result<(String, u16, String), String> {
    otlp::Endpoint::parse(text)
        .map(|endpoint| (endpoint.host, endpoint.port, endpoint.authority))
        .map_err(|err| err.to_string())
}
