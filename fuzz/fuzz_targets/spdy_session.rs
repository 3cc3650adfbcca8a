//! The streaming server's SPDY/3.1 session (`conmon/src/streaming/spdy/session.rs`, with the
//! framing of `conmon-spdy`) fed a client's bytes, every stream accepted and echoed.
//!
//! Invariants: the session ends (the input ends, or it stops at a protocol error) without a
//! panic; streams the client opened have new odd IDs, in increasing order; everything the
//! server wrote is whole frames, and a protocol error is answered last with GOAWAY.
#![no_main]

use conmon::fuzzing;
use conmon_spdy::frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let outcome = fuzzing::spdy_session(data);
    let last = outcome.events.last().expect("the session reports its end");
    assert!(last.starts_with("Ended("), "{last}");
    assert!(outcome.opened.iter().all(|id| id % 2 == 1), "{:?}", outcome.opened);
    assert!(outcome.opened.windows(2).all(|w| w[0] < w[1]), "{:?}", outcome.opened);
    let mut rest = &outcome.written[..];
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let (frame, length) = frame::parse(rest)
            .expect("the server writes valid frames")
            .expect("the server writes whole frames");
        frames.push(format!("{frame:?}"));
        rest = &rest[length..];
    }
    if last.starts_with("Ended(Err") && !last.contains("connection failed") {
        let goaway = frames.last().expect("an answer to the error");
        assert!(goaway.starts_with("GoAway"), "{goaway}");
    }
});
