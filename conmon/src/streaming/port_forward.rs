//! A port-forward session, kubelet's websocket protocol: for the i-th port of `?port=`, channel
//! 2i carries the data and 2i+1 the errors, and the first message on each is the port (two
//! bytes, little-endian). Each port is one TCP connection to localhost inside the pod's network
//! namespace, made when the client connects; a port is done when the server in the pod closes
//! its side, and the session when every port is done or the client leaves.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd as _;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::channel::{Channels, ClientGone, ClientMessage};
use super::protocol::Incoming;
use crate::sys;

/// How long connecting to a port in the pod may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes read from a pod connection at a time.
const READ_CHUNK: usize = 32 * 1024;

/// What a pod connection's reader reports about the connection `K` names.
pub(super) enum PodEvent<K> {
    Data(K, Vec<u8>),
    /// The pod side closed (with the error, if it failed).
    Closed(K, Option<io::Error>),
}

pub(super) async fn run(namespace: File, path: &Path, ports: Vec<u16>, mut channels: Channels) {
    for (index, port) in ports.iter().enumerate() {
        let [data, error] = channels_of(index);
        for channel in [data, error] {
            if channels
                .send_frame(channel, &port.to_le_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    }
    let (events, mut received) = mpsc::channel(16);
    // Dropping the set aborts the readers: nothing outlives the session.
    let mut readers = JoinSet::new();
    let mut writers: Vec<Option<OwnedWriteHalf>> = Vec::with_capacity(ports.len());
    let mut open = 0;
    for (index, &port) in ports.iter().enumerate() {
        match connect(&namespace, port).await {
            Ok(stream) => {
                tracing::info!(port, "forwarding port");
                let (reader, writer) = stream.into_split();
                readers.spawn_local(crate::tasks::counted(read_pod(
                    index,
                    reader,
                    events.clone(),
                )));
                writers.push(Some(writer));
                open += 1;
            }
            Err(err) => {
                writers.push(None);
                if report(&mut channels, index, port, path, &err)
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
    drop(events);
    while open > 0 {
        tokio::select! {
            event = received.recv() => match event {
                Some(PodEvent::Data(index, data)) => {
                    let [channel, _] = channels_of(index);
                    if channels.send_frame(channel, &data).await.is_err() {
                        return;
                    }
                }
                Some(PodEvent::Closed(index, error)) => {
                    if let Some(err) = error
                        && report(&mut channels, index, ports[index], path, &err).await.is_err()
                    {
                        return;
                    }
                    if writers[index].take().is_some() {
                        open -= 1;
                    }
                }
                None => break,
            },
            message = channels.receive() => match message {
                ClientMessage::Input(incoming) => {
                    let (channel, data) = match incoming {
                        Incoming::Data { channel, data } => (channel, Some(data)),
                        Incoming::Close(channel) => (channel, None),
                    };
                    let index = usize::from(channel / 2);
                    let writer = match writers.get_mut(index) {
                        Some(Some(writer)) if channel % 2 == 0 => writer,
                        _ => {
                            tracing::debug!(channel, "client message for no open port ignored");
                            continue;
                        }
                    };
                    let written = match data {
                        Some(data) => writer.write_all(&data).await,
                        None => writer.shutdown().await,
                    };
                    if let Err(err) = written {
                        writers[index] = None;
                        open -= 1;
                        if report(&mut channels, index, ports[index], path, &err).await.is_err() {
                            return;
                        }
                    }
                }
                ClientMessage::Ignored => {}
                ClientMessage::Gone => return,
            },
        }
    }
    channels.finish(None).await;
}

/// The data and error channels of the port at `index`.
fn channels_of(index: usize) -> [u8; 2] {
    // `protocol::ports` allows no more ports than fit the channel byte.
    let data = u8::try_from(index * 2).unwrap_or(u8::MAX - 1);
    [data, data + 1]
}

async fn report(
    channels: &mut Channels,
    index: usize,
    port: u16,
    path: &Path,
    err: &io::Error,
) -> Result<(), ClientGone> {
    tracing::warn!(port, error = %err, "port forward failed");
    let [_, error] = channels_of(index);
    let message = failure_message(port, path, err);
    channels.send_frame(error, message.as_bytes()).await
}

/// What the client is told when forwarding `port` failed.
pub(super) fn failure_message(port: u16, path: &Path, err: &io::Error) -> String {
    format!(
        "error forwarding port {port} in network namespace {}: {err}",
        path.display()
    )
}

/// Copies what the pod sends into `events` until it closes.
pub(super) async fn read_pod<K: Clone>(
    key: K,
    mut reader: OwnedReadHalf,
    events: mpsc::Sender<PodEvent<K>>,
) {
    let mut buf = vec![0; READ_CHUNK];
    loop {
        let event = match reader.read(&mut buf).await {
            Ok(0) => PodEvent::Closed(key.clone(), None),
            Ok(n) => PodEvent::Data(key.clone(), buf[..n].to_vec()),
            Err(err) => PodEvent::Closed(key.clone(), Some(err)),
        };
        let closed = matches!(event, PodEvent::Closed(..));
        if events.send(event).await.is_err() || closed {
            return;
        }
    }
}

/// Connects to `port` on localhost inside `namespace`: a short-lived thread enters the
/// namespace and makes the socket there (a socket stays in the namespace it was made in).
pub(super) async fn connect(namespace: &File, port: u16) -> io::Result<TcpStream> {
    let namespace = namespace.try_clone()?;
    let (sender, receiver) = oneshot::channel();
    std::thread::Builder::new()
        .name("conmond-netns".into())
        .spawn(move || {
            let _ = sender.send(connect_in(&namespace, port));
        })?;
    let stream = receiver
        .await
        .map_err(|_| io::Error::other("network namespace thread failed"))??;
    stream.set_nonblocking(true)?;
    TcpStream::from_std(stream)
}

/// Tries IPv4 then IPv6 localhost, as kubelet's runtimes do.
fn connect_in(namespace: &File, port: u16) -> io::Result<std::net::TcpStream> {
    sys::enter_network_namespace(namespace.as_fd())?;
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    std::net::TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT).or_else(|v4_err| {
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
        std::net::TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|_| v4_err)
    })
}
