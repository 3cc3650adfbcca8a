//! SPDY/3.1 framing (draft-mbelshe-httpbis-spdy-00, with SPDY/3.1's session flow control), the
//! transport kubelet's streaming protocols still run on: [`frame`] parses and encodes frames,
//! [`headers`] their zlib-compressed header blocks. No I/O here: conmond's streaming server
//! drives sessions with it, and the tests play clients with it.
//!
//! No maintained Rust crate serves SPDY: `spdy-mux` (0.1) is a client only, built for its
//! author's websocket tunnel, and brings its own runtime choices.

mod dictionary;
pub mod frame;
pub mod headers;
