//! The exporter's HTTP/2 client, HPACK decoder and endpoint parser
//! (`telemetry/src/export/{h2c,hpack,huffman,otlp}.rs`), fed arbitrary bytes: as header blocks
//! decoded in turn by one decoder, as everything a server sends after the client's request
//! (whose body is up to 255 KiB, so that flow control is exercised), and as an endpoint.
//!
//! Invariants: nothing panics or hangs (a debug assertion checks the dynamic table's size);
//! decoded header lists and response bodies stay within their bounds; an accepted endpoint
//! parses the same from its own authority.
#![no_main]

use conmon_telemetry::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    hpack(first, rest);
    if let Ok((_, _, body)) = fuzzing::h2c_exchange(rest, usize::from(first) * 1024) {
        assert!(body.len() <= fuzzing::MAX_RESPONSE_BODY);
    }
    endpoint(&String::from_utf8_lossy(rest));
});

fn hpack(blocks: u8, data: &[u8]) {
    let count = usize::from(blocks % 8) + 1;
    let size = data.len().div_ceil(count).max(1);
    let blocks: Vec<&[u8]> = data.chunks(size).collect();
    if let Ok(lists) = fuzzing::hpack_blocks(&blocks) {
        for list in lists {
            let size: usize = list.iter().map(|(n, v)| n.len() + v.len() + 32).sum();
            assert!(size <= fuzzing::MAX_HEADER_LIST, "header list of {size} bytes");
        }
    }
}

fn endpoint(text: &str) {
    if let Ok((host, port, authority)) = fuzzing::endpoint(text) {
        assert!(!host.is_empty());
        let again = fuzzing::endpoint(&format!("http://{authority}"));
        assert_eq!(again, Ok((host, port, authority)), "{text:?}");
    }
}
