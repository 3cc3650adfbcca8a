//! The HTTP side of the streaming server: one request head per connection, which must be an
//! upgrade (`GET` or `POST`, as kubelet's routes) of `/exec/TOKEN`, `/attach/TOKEN` or
//! `/port-forward/TOKEN` to a websocket offering a subprotocol we speak, or else, as kubelet's
//! library decides, to SPDY/3.1 with an `X-Stream-Protocol-Version` we speak. Anything else gets
//! a plain-text error response with kubelet's status code.

use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::protocol::Protocol;

/// Most bytes a request head may take.
pub(crate) const MAX_HEAD: usize = 16 * 1024;

/// What a streaming URL serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Exec,
    Attach,
    PortForward,
}

impl Kind {
    /// The first path segment of its URLs.
    pub(crate) fn path(self) -> &'static str {
        match self {
            Self::Exec => "exec",
            Self::Attach => "attach",
            Self::PortForward => "port-forward",
        }
    }

    /// The subprotocols it is served with over a websocket.
    fn protocols(self) -> &'static [Protocol] {
        match self {
            Self::Exec | Self::Attach => &Protocol::REMOTE_COMMAND,
            Self::PortForward => &Protocol::PORT_FORWARD,
        }
    }

    /// The protocol versions it is served with over SPDY.
    fn spdy_protocols(self) -> &'static [Protocol] {
        match self {
            Self::Exec | Self::Attach => &Protocol::SPDY_REMOTE_COMMAND,
            Self::PortForward => &Protocol::SPDY_PORT_FORWARD,
        }
    }
}

/// What the connection is upgraded to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Handshake {
    /// With the client's `Sec-WebSocket-Key`.
    WebSocket {
        key: String,
    },
    Spdy,
}

/// A valid websocket upgrade request for a streaming session.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Upgrade {
    pub(crate) kind: Kind,
    pub(crate) token: String,
    /// The query string, without `?`.
    pub(crate) query: String,
    pub(crate) handshake: Handshake,
    pub(crate) protocol: Protocol,
}

impl Upgrade {
    /// The `101 Switching Protocols` response that completes the handshake.
    pub(crate) fn accept(&self) -> Vec<u8> {
        let name = self.protocol.name().unwrap_or_default();
        let response = match &self.handshake {
            Handshake::WebSocket { key } => {
                let protocol = match name {
                    "" => String::new(),
                    name => format!("Sec-WebSocket-Protocol: {name}\r\n"),
                };
                format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{protocol}\r\n",
                    derive_accept_key(key.as_bytes()),
                )
            }
            Handshake::Spdy => format!(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
                 X-Stream-Protocol-Version: {name}\r\n\r\n"
            ),
        };
        response.into_bytes()
    }

    /// How the session's transport is named in traces.
    pub(crate) fn transport(&self) -> &'static str {
        match self.handshake {
            Handshake::WebSocket { .. } => "websocket",
            Handshake::Spdy => "SPDY/3.1",
        }
    }
}

/// An HTTP error response.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub(crate) status: u16,
    pub(crate) message: String,
    /// Header lines (with CRLF) the response adds.
    headers: String,
}

impl Rejection {
    pub(crate) fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            headers: String::new(),
        }
    }

    /// The response: the message as a plain-text body, and the connection closed after it.
    pub(crate) fn render(&self) -> Vec<u8> {
        let reason = match self.status {
            400 => "Bad Request",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            410 => "Gone",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            _ => "Error",
        };
        let body = format!("{}\n", self.message);
        format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n{}\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.status,
            self.headers,
            body.len()
        )
        .into_bytes()
    }
}

/// Parses a request head at the start of `buf`. `Ok(None)` while it is incomplete; otherwise
/// the upgrade and the length of the head.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<(Upgrade, usize)>, Rejection> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    let length = match request.parse(buf) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(Rejection::new(431, "request head too large"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => {
            return Err(Rejection::new(
                400,
                format!("malformed HTTP request: {err}"),
            ));
        }
    };
    let target = request.path.unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (kind, token) = route(path).ok_or_else(|| {
        Rejection::new(
            404,
            format!(
                "no streaming endpoint at '{path}': URLs are /exec/TOKEN, /attach/TOKEN and \
                 /port-forward/TOKEN, as returned by the serve RPCs"
            ),
        )
    })?;
    if !matches!(request.method, Some("GET" | "POST")) {
        let mut rejection = Rejection::new(
            405,
            "request method must be GET or POST (an upgrade to a websocket or SPDY/3.1)",
        );
        rejection.headers.push_str("Allow: GET, POST\r\n");
        return Err(rejection);
    }
    let headers = request.headers;
    let connection_upgrade =
        header_values(headers, "connection").any(|v| v.eq_ignore_ascii_case("upgrade"));
    let websocket_upgrade =
        header_values(headers, "upgrade").any(|v| v.eq_ignore_ascii_case("websocket"));
    // Kubelet's test: a websocket if it says so, SPDY otherwise.
    let (handshake, protocol) = match connection_upgrade && websocket_upgrade {
        true => websocket(kind, headers)?,
        false => spdy(kind, headers, connection_upgrade)?,
    };
    let upgrade = Upgrade {
        kind,
        token: token.to_owned(),
        query: query.to_owned(),
        handshake,
        protocol,
    };
    Ok(Some((upgrade, length)))
}

fn websocket(
    kind: Kind,
    headers: &[httparse::Header<'_>],
) -> Result<(Handshake, Protocol), Rejection> {
    let key = header_values(headers, "sec-websocket-key").next();
    let version_13 = header_values(headers, "sec-websocket-version").any(|v| v == "13");
    let (Some(key), true) = (key, version_13) else {
        return Err(Rejection::new(
            400,
            "a websocket upgrade needs Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key",
        ));
    };
    let offered: Vec<&str> = header_values(headers, "sec-websocket-protocol")
        .filter(|name| !name.is_empty())
        .collect();
    let protocol = Protocol::negotiate(kind.protocols(), &offered).ok_or_else(|| {
        let supported: Vec<&str> = kind.protocols().iter().filter_map(|p| p.name()).collect();
        Rejection::new(
            400,
            format!(
                "no supported websocket subprotocol offered (offered: '{}'; supported: {}, \
                 or none)",
                offered.join(", "),
                supported.join(", ")
            ),
        )
    })?;
    let handshake = Handshake::WebSocket {
        key: key.to_owned(),
    };
    Ok((handshake, protocol))
}

/// Kubelet's SPDY handshake: the protocol version first (400 without one, 403 naming the
/// accepted ones if none fits), then the upgrade headers.
fn spdy(
    kind: Kind,
    headers: &[httparse::Header<'_>],
    connection_upgrade: bool,
) -> Result<(Handshake, Protocol), Rejection> {
    let offered: Vec<&str> = header_values(headers, "x-stream-protocol-version")
        .filter(|name| !name.is_empty())
        .collect();
    if offered.is_empty() {
        return Err(Rejection::new(
            400,
            "unable to upgrade: X-Stream-Protocol-Version is required (for SPDY/3.1; a \
             websocket upgrade needs Connection: Upgrade and Upgrade: websocket)",
        ));
    }
    let supported = kind.spdy_protocols();
    let Some(protocol) = Protocol::negotiate(supported, &offered) else {
        let names: Vec<&str> = supported.iter().filter_map(|p| p.name()).collect();
        let mut rejection = Rejection::new(
            403,
            format!(
                "unable to upgrade: unable to negotiate protocol: client supports [{}], server \
                 accepts [{}]",
                offered.join(" "),
                names.join(" ")
            ),
        );
        for name in names {
            rejection.headers += &format!("X-Accepted-Stream-Protocol-Versions: {name}\r\n");
        }
        return Err(rejection);
    };
    let spdy_upgrade =
        header_values(headers, "upgrade").any(|v| v.eq_ignore_ascii_case("SPDY/3.1"));
    if !(connection_upgrade && spdy_upgrade) {
        return Err(Rejection::new(
            400,
            "unable to upgrade: missing upgrade headers in request (Connection: Upgrade, \
             Upgrade: SPDY/3.1)",
        ));
    }
    Ok((Handshake::Spdy, protocol))
}

/// The comma-separated values of every header called `name`.
fn header_values<'a>(
    headers: &'a [httparse::Header<'a>],
    name: &'static str,
) -> impl Iterator<Item = &'a str> {
    headers
        .iter()
        .filter(move |header| header.name.eq_ignore_ascii_case(name))
        .filter_map(|header| std::str::from_utf8(header.value).ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
}

fn route(path: &str) -> Option<(Kind, &str)> {
    let (prefix, token) = path.strip_prefix('/')?.split_once('/')?;
    let kind = [Kind::Exec, Kind::Attach, Kind::PortForward]
        .into_iter()
        .find(|kind| kind.path() == prefix)?;
    (!token.is_empty() && !token.contains('/')).then_some((kind, token))
}

#[cfg(test)]
mod tests {
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
}
