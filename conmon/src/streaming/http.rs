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
#[path = "http_tests.rs"]
mod tests;
