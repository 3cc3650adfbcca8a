//! The streaming server's request-head parser (`conmon/src/streaming/http.rs`, `parse`) and the
//! pure decoders of its channel protocol (`conmon/src/streaming/protocol.rs`: `ports` on the
//! query, `incoming` and `frame` for channel messages, `resize`), all fed the same bytes.
//!
//! Invariants: an incomplete head is under the size limit; a complete upgrade routes to a
//! known kind with a non-empty token without '/', parses the same from its own head alone, and
//! answers `101` naming the negotiated subprotocol (websocket) or protocol version (SPDY); a
//! rejection renders a response whose `Content-Length` is its body; accepted ports are 1 to 127 non-zero ports; a message and the
//! frame of its channel and data are the same bytes, and only v5's `[255, c]` is a close.
#![no_main]

use conmon::fuzzing::{self, Head, Incoming};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    head(data);
    check_ports(&String::from_utf8_lossy(data));
    channel(data);
    if let Ok((width, height)) = fuzzing::resize(data) {
        let again = format!(r#"{{"Width":{width},"Height":{height}}}"#);
        assert_eq!(fuzzing::resize(again.as_bytes()), Ok((width, height)));
    }
});

fn head(data: &[u8]) {
    match fuzzing::http_parse(data) {
        Head::Incomplete => assert!(data.len() < fuzzing::MAX_HEAD, "incomplete at the limit"),
        Head::Upgrade {
            kind,
            transport,
            token,
            query,
            protocol,
            length,
            accept,
        } => {
            assert!(length <= data.len());
            assert!(["exec", "attach", "port-forward"].contains(&kind), "{kind}");
            assert!(!token.is_empty() && !token.contains('/'), "token {token:?}");
            let accept = String::from_utf8(accept).expect("101 response is text");
            assert!(accept.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
            assert!(accept.ends_with("\r\n\r\n"));
            let named = match (transport, protocol) {
                ("websocket", Some(name)) => format!("\r\nSec-WebSocket-Protocol: {name}\r\n"),
                ("websocket", None) => "\r\nUpgrade: websocket\r\n".to_owned(),
                ("SPDY/3.1", Some(name)) => format!("\r\nX-Stream-Protocol-Version: {name}\r\n"),
                other => panic!("upgrade {other:?}"),
            };
            assert!(accept.contains(&named), "{accept}");
            if transport == "websocket" {
                assert!(!accept.contains("Sec-WebSocket-Protocol") || protocol.is_some());
            }
            let alone = fuzzing::http_parse(&data[..length]);
            let Head::Upgrade {
                token: token_alone,
                query: query_alone,
                length: length_alone,
                ..
            } = &alone
            else {
                panic!("head {:?} alone parses as {alone:?}", &data[..length]);
            };
            assert_eq!(
                (token_alone, query_alone, *length_alone),
                (&token, &query, length)
            );
            if kind == "port-forward" {
                check_ports(&query);
            }
        }
        Head::Rejected {
            status,
            message,
            response,
        } => {
            assert!([400, 403, 404, 405, 431].contains(&status), "status {status}");
            let response = String::from_utf8(response).expect("response is text");
            assert!(
                response.starts_with(&format!("HTTP/1.1 {status} ")),
                "{response}"
            );
            let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
            assert_eq!(body, format!("{message}\n"));
            assert!(
                head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())),
                "{response}"
            );
        }
    }
}

fn check_ports(query: &str) {
    if let Ok(ports) = fuzzing::ports(query) {
        assert!((1..=127).contains(&ports.len()), "{} ports", ports.len());
        assert!(!ports.contains(&0), "port 0 accepted from {query:?}");
    }
}

fn channel(data: &[u8]) {
    let Some((&channel, rest)) = data.split_first() else {
        assert_eq!(fuzzing::incoming(true, data), None);
        assert_eq!(fuzzing::incoming(false, data), None);
        return;
    };
    assert_eq!(fuzzing::frame(channel, rest), data);
    let as_data = Some(Incoming::Data {
        channel,
        data: rest.to_vec(),
    });
    assert_eq!(fuzzing::incoming(false, data), as_data);
    let expected_v5 = match (channel, rest) {
        (255, &[closed]) => Some(Incoming::Close(closed)),
        _ => as_data.clone(),
    };
    assert_eq!(fuzzing::incoming(true, data), expected_v5);
}
