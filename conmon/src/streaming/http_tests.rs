//! The request-head parser and its responses.

use super::*;

fn request(method: &str, target: &str, extra: &str) -> String {
    format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

/// Parses a GET of `target` sending each of `protocols` as a `Sec-WebSocket-Protocol`
/// header; also checks that the whole head was consumed.
fn upgrade(target: &str, protocols: &[&str]) -> Upgrade {
    let headers: String = protocols
        .iter()
        .map(|value| format!("Sec-WebSocket-Protocol: {value}\r\n"))
        .collect();
    let head = request("GET", target, &headers);
    let (upgrade, length) = parse(head.as_bytes()).unwrap().unwrap();
    assert_eq!(length, head.len());
    upgrade
}

#[test]
fn exec_upgrade_takes_the_clients_first_protocol_and_accepts_like_rfc_6455() {
    let upgrade = upgrade(
        "/exec/abc?command=sh",
        &["v5.channel.k8s.io, v4.channel.k8s.io"],
    );
    assert_eq!(upgrade.kind, Kind::Exec);
    assert_eq!(upgrade.token, "abc");
    assert_eq!(upgrade.query, "command=sh");
    assert_eq!(upgrade.protocol, Protocol::V5);
    let response = String::from_utf8(upgrade.accept()).unwrap();
    // The example handshake of RFC 6455 section 1.3.
    assert!(response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(response.contains("Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n"));
}

#[test]
fn repeated_protocol_headers_count_and_none_means_binary_without_a_header() {
    let upgrade = upgrade(
        "/port-forward/t?port=80",
        &["SPDY/3.1", "v4.base64.channel.k8s.io"],
    );
    assert_eq!(upgrade.kind, Kind::PortForward);
    assert_eq!(upgrade.protocol, Protocol::V4Base64);
    let bare = self::upgrade("/attach/t", &[]);
    assert_eq!(bare.protocol, Protocol::Unnamed);
    let response = String::from_utf8(bare.accept()).unwrap();
    assert!(!response.contains("Sec-WebSocket-Protocol"), "{response}");
}

#[test]
fn incomplete_head_waits_and_huge_head_is_refused() {
    assert_eq!(parse(b"GET /exec/abc HTTP/1.1\r\nHost: x\r\n"), Ok(None));
    let huge = format!("GET /exec/abc HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD));
    assert_eq!(parse(huge.as_bytes()).unwrap_err().status, 431);
}

#[test]
fn wrong_requests_get_errors_that_say_why() {
    let v5 = "Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n";
    let put = request("PUT", "/exec/abc", v5);
    let err = parse(put.as_bytes()).unwrap_err();
    assert_eq!(err.status, 405);
    assert!(
        String::from_utf8(err.render())
            .unwrap()
            .contains("Allow: GET, POST\r\n")
    );
    let post = request("POST", "/exec/abc", v5);
    assert_eq!(
        parse(post.as_bytes()).unwrap().unwrap().0.protocol,
        Protocol::V5
    );

    let unknown = request("GET", "/shell/abc", v5);
    assert_eq!(parse(unknown.as_bytes()).unwrap_err().status, 404);
    assert_eq!(
        parse(request("GET", "/exec/", v5).as_bytes())
            .unwrap_err()
            .status,
        404
    );

    let plain = "GET /exec/abc HTTP/1.1\r\nHost: x\r\n\r\n";
    let err = parse(plain.as_bytes()).unwrap_err();
    assert_eq!(err.status, 400);
    assert!(
        err.message
            .contains("X-Stream-Protocol-Version is required")
    );
    let keyless = "GET /exec/abc HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let err = parse(keyless.as_bytes()).unwrap_err();
    assert!(err.message.contains("Sec-WebSocket-Key"), "{}", err.message);

    let spdy = request("GET", "/exec/abc", "Sec-WebSocket-Protocol: SPDY/3.1\r\n");
    let err = parse(spdy.as_bytes()).unwrap_err();
    assert!(
        err.message.contains("offered: 'SPDY/3.1'"),
        "{}",
        err.message
    );

    let err = parse(b"NOT HTTP\r\n\r\n").unwrap_err();
    assert_eq!(err.status, 400);
}

fn spdy_request(target: &str, versions: &[&str]) -> String {
    let versions: String = versions
        .iter()
        .map(|v| format!("X-Stream-Protocol-Version: {v}\r\n"))
        .collect();
    format!(
        "POST {target} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n\
         Upgrade: SPDY/3.1\r\n{versions}\r\n"
    )
}

#[test]
fn spdy_upgrades_negotiate_like_kubelet() {
    let head = spdy_request(
        "/exec/abc",
        &[
            "v5.channel.k8s.io",
            "v3.channel.k8s.io",
            "v4.channel.k8s.io",
        ],
    );
    let (upgrade, length) = parse(head.as_bytes()).unwrap().unwrap();
    assert_eq!(length, head.len());
    assert_eq!(upgrade.handshake, Handshake::Spdy);
    assert_eq!(upgrade.protocol, Protocol::V3);
    let response = String::from_utf8(upgrade.accept()).unwrap();
    assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(response.contains("Upgrade: SPDY/3.1\r\n"));
    assert!(response.contains("X-Stream-Protocol-Version: v3.channel.k8s.io\r\n"));

    let forward = spdy_request("/port-forward/t", &["portforward.k8s.io"]);
    let (upgrade, _) = parse(forward.as_bytes()).unwrap().unwrap();
    assert_eq!(upgrade.protocol, Protocol::PortForward);

    let v1 = spdy_request("/attach/t", &["channel.k8s.io"]);
    assert_eq!(
        parse(v1.as_bytes()).unwrap().unwrap().0.protocol,
        Protocol::Channel
    );
}

#[test]
fn spdy_refusals_carry_kubelets_codes() {
    let none = spdy_request("/exec/abc", &[]);
    let err = parse(none.as_bytes()).unwrap_err();
    assert_eq!(err.status, 400);

    let unknown = spdy_request("/exec/abc", &["v99.channel.k8s.io"]);
    let err = parse(unknown.as_bytes()).unwrap_err();
    assert_eq!(err.status, 403);
    let text = String::from_utf8(err.render()).unwrap();
    assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{text}");
    assert!(text.contains("X-Accepted-Stream-Protocol-Versions: v4.channel.k8s.io\r\n"));
    assert!(text.contains("X-Accepted-Stream-Protocol-Versions: channel.k8s.io\r\n"));
    assert!(
        text.contains("client supports [v99.channel.k8s.io]"),
        "{text}"
    );

    let websocket_names = spdy_request("/port-forward/t", &["v4.channel.k8s.io"]);
    assert_eq!(parse(websocket_names.as_bytes()).unwrap_err().status, 403);

    let no_upgrade =
        "POST /exec/abc HTTP/1.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n";
    let err = parse(no_upgrade.as_bytes()).unwrap_err();
    assert_eq!(err.status, 400);
    assert!(
        err.message.contains("missing upgrade headers"),
        "{}",
        err.message
    );
}

#[test]
fn rejection_renders_a_complete_response() {
    let text = String::from_utf8(Rejection::new(404, "gone away").render()).unwrap();
    assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
    assert!(text.contains("Content-Length: 10\r\n"));
    assert!(text.ends_with("\r\n\r\ngone away\n"));
}
