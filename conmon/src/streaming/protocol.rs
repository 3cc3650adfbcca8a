//! The Kubernetes channel protocol spoken over the streaming websockets
//! (`v5.channel.k8s.io`, `v4.channel.k8s.io`): every binary message starts with a channel byte.
//! Exec and attach use channels 0 stdin, 1 stdout, 2 stderr, 3 status, 4 resize; port-forward
//! uses 2i for the data and 2i+1 for the errors of the i-th requested port.

use serde_json::json;

use crate::stream::Stream;
use tokio_tungstenite::tungstenite::{Bytes, Message};

/// Client input.
pub(crate) const STDIN: u8 = 0;
/// Process output.
pub(crate) const STDOUT: u8 = 1;
/// Process error output.
pub(crate) const STDERR: u8 = 2;
/// The outcome, as a Kubernetes `Status` object.
pub(crate) const STATUS: u8 = 3;
/// Terminal size changes, as `{"Width":W,"Height":H}`.
pub(crate) const RESIZE: u8 = 4;
/// v5 only: `[CLOSE, c]` says the client will send nothing more on channel `c`.
const CLOSE: u8 = 255;

/// The negotiated subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// `v4.channel.k8s.io`: no close signal.
    V4,
    /// `v5.channel.k8s.io`: adds the close signal.
    V5,
}

impl Protocol {
    /// The `Sec-WebSocket-Protocol` name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::V4 => "v4.channel.k8s.io",
            Self::V5 => "v5.channel.k8s.io",
        }
    }
}

/// What a client's binary message says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming<'a> {
    /// Bytes for a channel.
    Data { channel: u8, data: &'a [u8] },
    /// The client closed its side of a channel.
    Close(u8),
}

/// Decodes a client's binary message; `None` for an empty one.
pub(crate) fn incoming(protocol: Protocol, message: &[u8]) -> Option<Incoming<'_>> {
    let (&channel, data) = message.split_first()?;
    match (protocol, channel, data) {
        (Protocol::V5, CLOSE, &[closed]) => Some(Incoming::Close(closed)),
        _ => Some(Incoming::Data { channel, data }),
    }
}

/// The channel that carries output `stream`.
pub(crate) fn output_channel(stream: Stream) -> u8 {
    match stream {
        Stream::Stdout => STDOUT,
        Stream::Stderr => STDERR,
    }
}

/// A message for `channel`.
pub(crate) fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(Bytes::from(bytes))
}

/// A terminal size from the resize channel: `(width, height)`.
pub(crate) fn resize(data: &[u8]) -> Result<(u16, u16), String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Size {
        width: u16,
        height: u16,
    }
    serde_json::from_slice::<Size>(data)
        .map(|size| (size.width, size.height))
        .map_err(|err| format!("invalid resize message: {err}"))
}

/// The `Status` of a command that exited with `code` (Kubernetes' `NonZeroExitCode` for
/// anything but 0).
pub(crate) fn exit_status(code: i32) -> Message {
    let status = if code == 0 {
        json!({"metadata": {}, "status": "Success"})
    } else {
        json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        })
    };
    frame(STATUS, status.to_string().as_bytes())
}

/// The `Status` of a session that failed for `message`.
pub(crate) fn internal_error(message: &str) -> Message {
    let status = json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    });
    frame(STATUS, status.to_string().as_bytes())
}

/// Most ports one port-forward session carries.
const MAX_PORTS: usize = 127;

/// The ports of a port-forward request, from its `ports` query parameters (each a
/// comma-separated list; kubelet's form).
pub(crate) fn ports(query: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "ports" {
            continue;
        }
        let value = percent_decode(value).ok_or_else(|| format!("malformed query '{pair}'"))?;
        for port in value.split(',').map(str::trim) {
            match port.parse::<u16>() {
                Ok(port) if port > 0 => ports.push(port),
                _ => return Err(format!("invalid port '{port}'")),
            }
        }
    }
    if ports.is_empty() {
        return Err("at least one port must be given as ?ports=PORT[,PORT…]".into());
    }
    // Two channels a port, in one channel byte.
    if ports.len() > MAX_PORTS {
        return Err(format!(
            "at most {MAX_PORTS} ports can be forwarded at once"
        ));
    }
    Ok(ports)
}

/// Decodes `%XX` escapes and `+` (a space in forms).
fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        match byte {
            b'%' => {
                // Exactly two hex digits (`from_str_radix` alone would take `+8`).
                let digits = rest.get(..2)?;
                let value = |digit: u8| char::from(digit).to_digit(16);
                let (high, low) = (value(digits[0])?, value(digits[1])?);
                bytes.push(u8::try_from(high * 16 + low).ok()?);
                rest = &rest[2..];
            }
            b'+' => bytes.push(b' '),
            byte => bytes.push(byte),
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_take_exactly_two_hex_digits() {
        assert_eq!(percent_decode("a%2Fb+c").as_deref(), Some("a/b c"));
        assert_eq!(percent_decode("%+8"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%zz"), None);
    }

    fn json_of(message: &Message) -> serde_json::Value {
        let Message::Binary(bytes) = message else {
            panic!("not binary: {message:?}");
        };
        assert_eq!(bytes[0], STATUS);
        serde_json::from_slice(&bytes[1..]).expect("status is JSON")
    }

    #[test]
    fn close_signal_only_exists_in_v5() {
        assert_eq!(incoming(Protocol::V5, &[255, 0]), Some(Incoming::Close(0)));
        assert_eq!(
            incoming(Protocol::V4, &[255, 0]),
            Some(Incoming::Data {
                channel: 255,
                data: &[0]
            })
        );
        assert_eq!(
            incoming(Protocol::V5, b"\x00ls\n"),
            Some(Incoming::Data {
                channel: STDIN,
                data: b"ls\n"
            })
        );
        assert_eq!(incoming(Protocol::V5, b""), None);
    }

    #[test]
    fn resize_reads_kubernetes_field_names() {
        assert_eq!(resize(br#"{"Width":80,"Height":24}"#), Ok((80, 24)));
        assert!(resize(b"80x24").unwrap_err().contains("invalid resize"));
    }

    #[test]
    fn non_zero_exit_is_reported_like_kubelet() {
        let status = json_of(&exit_status(7));
        assert_eq!(status["status"], "Failure");
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "7");
        assert_eq!(json_of(&exit_status(0))["status"], "Success");
        let error = json_of(&internal_error("container 'x' not found"));
        assert_eq!(error["reason"], "InternalError");
        assert_eq!(error["message"], "container 'x' not found");
    }

    #[test]
    fn ports_accept_lists_repeats_and_escaped_commas() {
        assert_eq!(ports("ports=80"), Ok(vec![80]));
        assert_eq!(ports("ports=80,8080&x=1&ports=9"), Ok(vec![80, 8080, 9]));
        assert_eq!(ports("ports=80%2C81"), Ok(vec![80, 81]));
        assert!(ports("").unwrap_err().contains("at least one port"));
        assert!(ports("ports=0").unwrap_err().contains("invalid port '0'"));
        assert!(ports("ports=http").unwrap_err().contains("invalid port"));
        assert!(ports("ports=%zz").unwrap_err().contains("malformed"));
    }
}
