//! A Kubernetes streaming client, as kubectl's websocket executor speaks it: the channel
//! protocols (binary: `v5.channel.k8s.io`, `v4.channel.k8s.io`, `channel.k8s.io` or none; text:
//! the base64 ones) over tokio-tungstenite.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use data_encoding::BASE64;
use futures::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Channel numbers of exec and attach.
pub const STDIN: u8 = 0;
/// Process output.
pub const STDOUT: u8 = 1;
/// Process error output.
pub const STDERR: u8 = 2;
/// The Kubernetes `Status`.
pub const STATUS: u8 = 3;
/// Terminal size.
pub const RESIZE: u8 = 4;

/// How long a test waits for the server.
const WAIT: Duration = Duration::from_secs(30);

/// A connected streaming session.
#[derive(Debug)]
pub struct Session {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The subprotocol the server chose (empty for none).
    pub protocol: String,
    /// Messages are text: a channel digit, then base64.
    base64: bool,
    /// Everything received so far, by channel.
    pub received: BTreeMap<u8, Vec<u8>>,
    /// Every message received, in order (channel, payload).
    pub messages: Vec<(u8, Vec<u8>)>,
    /// The close code, once the server closed.
    pub close_code: Option<u16>,
}

/// Opens `url` offering `protocols` (comma-separated, like kubectl; none if empty). A refused
/// request is an error carrying the HTTP status and body.
pub async fn connect(url: &str, protocols: &str) -> Result<Session> {
    // The serve RPCs return http:// URLs; the websocket upgrade goes to the same place.
    let url = url.replacen("http://", "ws://", 1);
    let mut request = url.into_client_request()?;
    if !protocols.is_empty() {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", protocols.parse()?);
    }
    let connected = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .context("connect timed out")?;
    let (ws, response) = match connected {
        Ok(connected) => connected,
        Err(tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_ref()
                .map(|body| String::from_utf8_lossy(body).into_owned())
                .unwrap_or_default();
            bail!("HTTP {}: {}", response.status().as_u16(), body.trim_end());
        }
        Err(err) => return Err(err.into()),
    };
    let protocol = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok(Session {
        ws,
        base64: protocol.contains("base64"),
        protocol,
        received: BTreeMap::new(),
        messages: Vec::new(),
        close_code: None,
    })
}

impl Session {
    /// Sends `data` on `channel`.
    pub async fn send(&mut self, channel: u8, data: &[u8]) -> Result<()> {
        let message = if self.base64 {
            let text = format!("{}{}", char::from(b'0' + channel), BASE64.encode(data));
            Message::Text(text.into())
        } else {
            let mut message = vec![channel];
            message.extend_from_slice(data);
            Message::Binary(message.into())
        };
        self.ws.send(message).await?;
        Ok(())
    }

    /// v5: closes the client's side of `channel`.
    pub async fn close_channel(&mut self, channel: u8) -> Result<()> {
        self.ws
            .send(Message::Binary(vec![255, channel].into()))
            .await?;
        Ok(())
    }

    /// Sends a terminal size.
    pub async fn resize(&mut self, width: u16, height: u16) -> Result<()> {
        let size = format!(r#"{{"Width":{width},"Height":{height}}}"#);
        self.send(RESIZE, size.as_bytes()).await
    }

    /// Receives one message; `false` once the server closed the session.
    pub async fn receive(&mut self) -> Result<bool> {
        let message = tokio::time::timeout(WAIT, self.ws.next())
            .await
            .context("timed out waiting for the server")?;
        match message {
            Some(Ok(Message::Binary(bytes))) if !self.base64 => {
                let (&channel, data) = bytes.split_first().context("empty message")?;
                self.record(channel, data.to_vec());
                Ok(true)
            }
            Some(Ok(Message::Text(text))) if self.base64 => {
                let (&digit, data) = text.as_bytes().split_first().context("empty message")?;
                let channel = digit.checked_sub(b'0').context("no channel digit")?;
                self.record(channel, BASE64.decode(data)?);
                Ok(true)
            }
            Some(Ok(Message::Binary(_) | Message::Text(_))) => {
                bail!("a message in the wrong encoding for {:?}", self.protocol)
            }
            Some(Ok(Message::Close(frame))) => {
                self.close_code = Some(frame.map_or(1005, |frame| u16::from(frame.code)));
                Ok(false)
            }
            Some(Ok(_)) => Ok(true),
            Some(Err(err)) => Err(err.into()),
            None => Ok(false),
        }
    }

    fn record(&mut self, channel: u8, data: Vec<u8>) {
        self.received
            .entry(channel)
            .or_default()
            .extend_from_slice(&data);
        self.messages.push((channel, data));
    }

    /// Receives until `done` holds for what arrived so far; fails if the session ends first.
    pub async fn receive_until(
        &mut self,
        what: &str,
        done: impl Fn(&BTreeMap<u8, Vec<u8>>) -> bool,
    ) -> Result<()> {
        while !done(&self.received) {
            if !self.receive().await? {
                bail!("session ended before {what}: {:?}", self.text());
            }
        }
        Ok(())
    }

    /// Receives until the server closes the session.
    pub async fn receive_to_end(&mut self) -> Result<()> {
        while self.receive().await? {}
        Ok(())
    }

    /// What arrived on `channel`, as text.
    pub fn channel_text(&self, channel: u8) -> String {
        String::from_utf8_lossy(self.received.get(&channel).map_or(&[][..], Vec::as_slice))
            .into_owned()
    }

    /// Every channel's text, for failure messages.
    pub fn text(&self) -> BTreeMap<u8, String> {
        self.received
            .keys()
            .map(|&channel| (channel, self.channel_text(channel)))
            .collect()
    }

    /// The `Status` on the status channel.
    pub fn status(&self) -> Result<serde_json::Value> {
        let bytes = self.received.get(&STATUS).context("no status received")?;
        Ok(serde_json::from_slice(bytes)?)
    }

    /// Drops the connection without a websocket close, as a crashed client would.
    pub fn abandon(self) {
        drop(self.ws);
    }
}
