//! The Kubernetes channel protocols spoken over the streaming websockets, as kubelet's streaming
//! library serves them: every message starts with a channel. Exec and attach use channels
//! 0 stdin, 1 stdout, 2 stderr, 3 status, 4 resize; port-forward uses 2i for the data and
//! 2i+1 for the errors of the i-th requested port.
//!
//! The binary protocols (`channel.k8s.io`, `v4.channel.k8s.io`, `v5.channel.k8s.io`, and no
//! subprotocol at all) carry the channel as the first byte of a binary message; the base64 ones
//! (`base64.channel.k8s.io`, `v4.base64.channel.k8s.io`) as an ASCII digit starting a text
//! message whose rest is the data in base64. From v4 on, the status channel carries a
//! Kubernetes `Status` as JSON; before, only an error's message, and nothing on success. Only
//! v5 has the close signal.
//!
//! Over SPDY (see [`spdy`](super::spdy)) each channel is a stream of its own, and the
//! protocols are named by `X-Stream-Protocol-Version`: `v4.channel.k8s.io` down to
//! `channel.k8s.io` for exec and attach, `portforward.k8s.io` for port-forward.

use data_encoding::BASE64;
use serde_json::json;

use crate::stream::Stream;
use tokio_tungstenite::tungstenite::{Bytes, Message};

/// Client input.
pub(crate) const STDIN: u8 = 0;
/// Process output.
pub(crate) const STDOUT: u8 = 1;
/// Process error output.
pub(crate) const STDERR: u8 = 2;
/// The outcome.
pub(crate) const STATUS: u8 = 3;
/// Terminal size changes, as `{"Width":W,"Height":H}`.
pub(crate) const RESIZE: u8 = 4;
/// v5 only: `[CLOSE, c]` says the client will send nothing more on channel `c`.
const CLOSE: u8 = 255;

/// The negotiated subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// The client offered none: binary, as `channel.k8s.io`.
    Unnamed,
    /// `channel.k8s.io`.
    Channel,
    /// `base64.channel.k8s.io`.
    Base64Channel,
    /// `v4.channel.k8s.io`.
    V4,
    /// `v4.base64.channel.k8s.io`.
    V4Base64,
    /// `v5.channel.k8s.io`.
    V5,
    /// SPDY only: `v2.channel.k8s.io` (as `channel.k8s.io`, with an error stream).
    V2,
    /// SPDY only: `v3.channel.k8s.io` (v2 with a resize stream).
    V3,
    /// SPDY only: `portforward.k8s.io`.
    PortForward,
}

impl Protocol {
    /// Those exec and attach speak, as kubelet's library, plus v5 (what the API server speaks).
    pub(crate) const REMOTE_COMMAND: [Self; 6] = [
        Self::Unnamed,
        Self::Channel,
        Self::Base64Channel,
        Self::V4,
        Self::V4Base64,
        Self::V5,
    ];
    /// Those port-forward speaks: kubelet's library's, plus v5, which conmon-rs's server offers
    /// for port-forward (so its clients may send it; it adds nothing there).
    pub(crate) const PORT_FORWARD: [Self; 4] = [Self::Unnamed, Self::V4, Self::V4Base64, Self::V5];
    /// Those exec and attach speak over SPDY (`X-Stream-Protocol-Version`), as kubelet's library.
    pub(crate) const SPDY_REMOTE_COMMAND: [Self; 4] = [Self::V4, Self::V3, Self::V2, Self::Channel];
    /// The one port-forward speaks over SPDY.
    pub(crate) const SPDY_PORT_FORWARD: [Self; 1] = [Self::PortForward];

    /// The `Sec-WebSocket-Protocol` name; `None` for [`Protocol::Unnamed`].
    pub(crate) fn name(self) -> Option<&'static str> {
        match self {
            Self::Unnamed => None,
            Self::Channel => Some("channel.k8s.io"),
            Self::Base64Channel => Some("base64.channel.k8s.io"),
            Self::V4 => Some("v4.channel.k8s.io"),
            Self::V4Base64 => Some("v4.base64.channel.k8s.io"),
            Self::V5 => Some("v5.channel.k8s.io"),
            Self::V2 => Some("v2.channel.k8s.io"),
            Self::V3 => Some("v3.channel.k8s.io"),
            Self::PortForward => Some("portforward.k8s.io"),
        }
    }

    fn base64(self) -> bool {
        matches!(self, Self::Base64Channel | Self::V4Base64)
    }

    /// The status channel carries a JSON `Status` (v4 and later).
    fn json_status(self) -> bool {
        matches!(self, Self::V4 | Self::V4Base64 | Self::V5)
    }

    /// Picks, as kubelet does, the first of the client's `offered` names (in its order) that
    /// is one of `supported`; a client that offers none gets [`Protocol::Unnamed`].
    pub(crate) fn negotiate(supported: &[Self], offered: &[&str]) -> Option<Self> {
        if offered.is_empty() {
            return supported.contains(&Self::Unnamed).then_some(Self::Unnamed);
        }
        offered.iter().find_map(|name| {
            supported
                .iter()
                .copied()
                .find(|protocol| protocol.name() == Some(*name))
        })
    }
}

/// What a client's message says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// Bytes for a channel.
    Data { channel: u8, data: Bytes },
    /// The client closed its side of a channel.
    Close(u8),
}

/// Decodes a client's message (binary or text, as kubelet reads either); `None` for an empty
/// one, or for base64 that does not decode.
pub(crate) fn incoming(protocol: Protocol, message: &Bytes) -> Option<Incoming> {
    let (&first, data) = message.split_first()?;
    if protocol == Protocol::V5
        && first == CLOSE
        && let &[closed] = data
    {
        return Some(Incoming::Close(closed));
    }
    if !protocol.base64() {
        return Some(Incoming::Data {
            channel: first,
            data: message.slice(1..),
        });
    }
    let channel = first.checked_sub(b'0')?;
    let data = BASE64.decode(data).ok()?;
    Some(Incoming::Data {
        channel,
        data: Bytes::from(data),
    })
}

/// The channel that carries output `stream`.
pub(crate) fn output_channel(stream: Stream) -> u8 {
    match stream {
        Stream::Stdout => STDOUT,
        Stream::Stderr => STDERR,
    }
}

/// A message for `channel`, encoded as `protocol` wants.
pub(crate) fn frame(protocol: Protocol, channel: u8, data: &[u8]) -> Message {
    if protocol.base64() {
        let mut text = String::with_capacity(BASE64.encode_len(data.len()) + 1);
        text.push(char::from(b'0'.saturating_add(channel)));
        text.push_str(&BASE64.encode(data));
        return Message::Text(text.into());
    }
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

/// What the status channel says about a command that exited with `code` (Kubernetes'
/// `NonZeroExitCode` for anything but 0); before v4, success says nothing.
pub(crate) fn exit_status(protocol: Protocol, code: i32) -> Option<Vec<u8>> {
    let message = format!("command terminated with non-zero exit code {code}");
    let status = match (code, protocol.json_status()) {
        (0, false) => return None,
        (_, false) => return Some(message.into_bytes()),
        (0, true) => json!({"metadata": {}, "status": "Success"}),
        (_, true) => json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
    };
    Some(status.to_string().into_bytes())
}

/// What the status channel says about a session that failed for `message`.
pub(crate) fn internal_error(protocol: Protocol, message: &str) -> Vec<u8> {
    if !protocol.json_status() {
        return message.as_bytes().to_vec();
    }
    let status = json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    });
    status.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_of(status: Option<Vec<u8>>) -> serde_json::Value {
        serde_json::from_slice(&status.expect("a status")).expect("status is JSON")
    }

    fn data(channel: u8, data: &'static [u8]) -> Option<Incoming> {
        Some(Incoming::Data {
            channel,
            data: Bytes::from_static(data),
        })
    }

    fn incoming(protocol: Protocol, message: &'static [u8]) -> Option<Incoming> {
        super::incoming(protocol, &Bytes::from_static(message))
    }

    #[test]
    fn close_signal_only_exists_in_v5() {
        assert_eq!(incoming(Protocol::V5, &[255, 0]), Some(Incoming::Close(0)));
        assert_eq!(incoming(Protocol::V4, &[255, 0]), data(255, &[0]));
        assert_eq!(incoming(Protocol::V5, b"\x00ls\n"), data(STDIN, b"ls\n"));
        assert_eq!(incoming(Protocol::V5, b""), None);
    }

    #[test]
    fn base64_protocols_carry_a_digit_and_base64() {
        for protocol in [Protocol::Base64Channel, Protocol::V4Base64] {
            let Message::Text(text) = frame(protocol, STDOUT, b"hi\n") else {
                panic!("base64 frames are text");
            };
            assert_eq!(text.as_str(), "1aGkK");
            assert_eq!(incoming(protocol, b"0bHMK"), data(STDIN, b"ls\n"));
            assert_eq!(incoming(protocol, b"0not base64!"), None);
            assert_eq!(incoming(protocol, b"\x00bHMK"), None);
        }
        let Message::Binary(bytes) = frame(Protocol::Unnamed, STDERR, b"x") else {
            panic!("binary frames are binary");
        };
        assert_eq!(&bytes[..], b"\x02x");
    }

    #[test]
    fn negotiation_follows_the_clients_order_and_defaults_to_binary() {
        let exec = &Protocol::REMOTE_COMMAND;
        let pick = |offered: &[&str]| Protocol::negotiate(exec, offered);
        assert_eq!(
            pick(&["v5.channel.k8s.io", "v4.channel.k8s.io"]),
            Some(Protocol::V5)
        );
        assert_eq!(
            pick(&["v4.channel.k8s.io", "v5.channel.k8s.io"]),
            Some(Protocol::V4)
        );
        assert_eq!(
            pick(&["SPDY/3.1", "base64.channel.k8s.io"]),
            Some(Protocol::Base64Channel)
        );
        assert_eq!(pick(&[]), Some(Protocol::Unnamed));
        assert_eq!(pick(&["SPDY/3.1"]), None);
        let forward = &Protocol::PORT_FORWARD;
        assert_eq!(Protocol::negotiate(forward, &["channel.k8s.io"]), None);
        assert_eq!(
            Protocol::negotiate(forward, &["v4.channel.k8s.io", "v5.channel.k8s.io"]),
            Some(Protocol::V4)
        );
        assert_eq!(
            Protocol::negotiate(forward, &["v4.base64.channel.k8s.io"]),
            Some(Protocol::V4Base64)
        );
    }

    #[test]
    fn resize_reads_kubernetes_field_names() {
        assert_eq!(resize(br#"{"Width":80,"Height":24}"#), Ok((80, 24)));
        assert!(resize(b"80x24").unwrap_err().contains("invalid resize"));
    }

    #[test]
    fn non_zero_exit_is_reported_like_kubelet() {
        let status = json_of(exit_status(Protocol::V4, 7));
        assert_eq!(status["status"], "Failure");
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "7");
        assert_eq!(json_of(exit_status(Protocol::V5, 0))["status"], "Success");
        let error = json_of(Some(internal_error(
            Protocol::V5,
            "container 'x' not found",
        )));
        assert_eq!(error["reason"], "InternalError");
        assert_eq!(error["message"], "container 'x' not found");
    }

    #[test]
    fn before_v4_the_status_channel_has_only_error_messages() {
        assert_eq!(exit_status(Protocol::Channel, 0), None);
        assert_eq!(
            exit_status(Protocol::Unnamed, 2).unwrap(),
            b"command terminated with non-zero exit code 2"
        );
        assert_eq!(internal_error(Protocol::Base64Channel, "boom"), b"boom");
    }
}
