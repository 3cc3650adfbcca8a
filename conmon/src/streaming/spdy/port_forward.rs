//! Port-forward over SPDY, as kubelet serves it: for each forwarded connection the client opens
//! an `error` and a `data` stream carrying the same `port` and `requestID` headers. Once both
//! are there, the data stream is joined to a new TCP connection to that port on localhost inside
//! the pod's network namespace; a failure is written to the error stream, and both streams are
//! reset. A pair not complete within the stream creation timeout gets an error. The session
//! lasts until the client leaves.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::session::Event;
use super::{LINGER, SpdySession};
use crate::streaming::port_forward::{PodEvent, connect, failure_message, read_pod};
use conmon_spdy::frame::ResetStatus;
use conmon_spdy::headers::Headers;

/// Bytes the client may send for a connection still being made.
const MAX_EARLY_INPUT: usize = 1024 * 1024;

/// One forwarded connection.
#[derive(Debug, Default)]
struct Pair {
    port: u16,
    data: Option<u32>,
    error: Option<u32>,
    /// Input that arrived before the connection was made.
    early: Vec<u8>,
    /// The client ended its input before the connection was made.
    early_fin: bool,
    writer: Option<OwnedWriteHalf>,
}

/// What the session's helpers report, about the pair of a request ID.
enum Report {
    Connected(String, io::Result<tokio::net::TcpStream>),
    Expired(String),
}

/// Which stream of a pair a stream is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Data,
    Error,
}

/// Serves a port-forward session in `namespace` (opened from `path`).
pub(crate) async fn run(
    namespace: File,
    path: &Path,
    mut session: SpdySession,
    creation_timeout: Duration,
) {
    let namespace = Rc::new(namespace);
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut streams: HashMap<u32, (String, Role)> = HashMap::new();
    let (reports, mut reported) = mpsc::channel(16);
    let (pod_events, mut from_pod) = mpsc::channel(16);
    // Dropping the set stops the helpers: nothing outlives the session.
    let mut helpers = JoinSet::new();
    loop {
        tokio::select! {
            event = session.next() => match event {
                Event::Opened { stream, headers } => {
                    let (request, role, port) = match classify(stream, &headers) {
                        Ok(found) => found,
                        Err(message) => {
                            tracing::warn!(stream, %message, "port-forward stream refused");
                            if session.reset(stream, ResetStatus::RefusedStream).await.is_err() {
                                break;
                            }
                            continue;
                        }
                    };
                    if session.accept(stream).await.is_err() {
                        break;
                    }
                    let pair = pairs.entry(request.clone()).or_insert_with(|| {
                        let (reports, request) = (reports.clone(), request.clone());
                        helpers.spawn_local(crate::tasks::counted(async move {
                            tokio::time::sleep(creation_timeout).await;
                            let _ = reports.send(Report::Expired(request)).await;
                        }));
                        Pair { port, ..Pair::default() }
                    });
                    let slot = match role {
                        Role::Data => &mut pair.data,
                        Role::Error => &mut pair.error,
                    };
                    if slot.is_some() {
                        let kind = if role == Role::Data { "data" } else { "error" };
                        let message = format!("error processing stream for request {request}: {kind} stream already assigned");
                        tracing::warn!(%message, "port-forward");
                        if let Some(error) = pair.error && session.send(error, message.as_bytes(), false).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    *slot = Some(stream);
                    streams.insert(stream, (request.clone(), role));
                    // Complete now (a slot is never filled twice): make the connection.
                    if pair.data.is_some() && pair.error.is_some() {
                        let (reports, namespace, port) = (reports.clone(), namespace.clone(), pair.port);
                        helpers.spawn_local(crate::tasks::counted(async move {
                            let connected = connect(&namespace, port).await;
                            let _ = reports.send(Report::Connected(request, connected)).await;
                        }));
                    }
                }
                Event::Data { stream, data } => {
                    let Some((request, Role::Data)) = streams.get(&stream) else { continue };
                    let Some(pair) = pairs.get_mut(request) else { continue };
                    match &mut pair.writer {
                        Some(writer) => {
                            if let Err(err) = writer.write_all(&data).await {
                                let request = request.clone();
                                fail(&mut session, &mut pairs, &mut streams, &request, path, &err).await;
                            }
                        }
                        None if pair.early.len() + data.len() <= MAX_EARLY_INPUT => pair.early.extend_from_slice(&data),
                        None => {
                            let request = request.clone();
                            let err = io::Error::other("more input than is held until the connection is made");
                            fail(&mut session, &mut pairs, &mut streams, &request, path, &err).await;
                        }
                    }
                }
                Event::Finished { stream } => {
                    let Some((request, Role::Data)) = streams.get(&stream) else { continue };
                    if let Some(pair) = pairs.get_mut(request) {
                        match &mut pair.writer {
                            Some(writer) => { let _ = writer.shutdown().await; }
                            None => pair.early_fin = true,
                        }
                    }
                }
                Event::Reset { stream } => {
                    if let Some((request, _)) = streams.get(&stream).cloned() {
                        tracing::debug!(stream, %request, "client reset a port-forward stream");
                        close_pair(&mut session, &mut pairs, &mut streams, &request).await;
                    }
                }
                Event::Ended(_) => return,
            },
            Some(report) = reported.recv() => match report {
                Report::Connected(request, Ok(connection)) => {
                    let Some(pair) = pairs.get_mut(&request) else { continue };
                    tracing::info!(port = pair.port, %request, "forwarding port");
                    let (reader, mut writer) = connection.into_split();
                    let early = std::mem::take(&mut pair.early);
                    let mut written = writer.write_all(&early).await;
                    if pair.early_fin && written.is_ok() {
                        written = writer.shutdown().await;
                    }
                    if let Err(err) = written {
                        fail(&mut session, &mut pairs, &mut streams, &request, path, &err).await;
                        continue;
                    }
                    pair.writer = Some(writer);
                    helpers.spawn_local(crate::tasks::counted(read_pod(request, reader, pod_events.clone())));
                }
                Report::Connected(request, Err(err)) => {
                    fail(&mut session, &mut pairs, &mut streams, &request, path, &err).await;
                }
                Report::Expired(request) => {
                    let Some(pair) = pairs.get(&request) else { continue };
                    if pair.data.is_none() || pair.error.is_none() {
                        let message = format!("timed out waiting for streams of request {request}");
                        tracing::warn!(%message, "port-forward");
                        if let Some(error) = pair.error {
                            let _ = session.send(error, message.as_bytes(), true).await;
                        }
                        close_pair(&mut session, &mut pairs, &mut streams, &request).await;
                    }
                }
            },
            Some(event) = from_pod.recv() => match event {
                PodEvent::Data(request, data) => {
                    let Some(data_stream) = pairs.get(&request).and_then(|pair| pair.data) else { continue };
                    if session.send(data_stream, &data, false).await.is_err() {
                        break;
                    }
                }
                PodEvent::Closed(request, Some(err)) => {
                    fail(&mut session, &mut pairs, &mut streams, &request, path, &err).await;
                }
                PodEvent::Closed(request, None) => {
                    close_pair(&mut session, &mut pairs, &mut streams, &request).await;
                }
            },
            Some(_) = helpers.join_next(), if !helpers.is_empty() => {}
        }
    }
    helpers.abort_all();
    session.close(LINGER).await;
}

/// The request ID, role and port of a new stream, or why it is refused (kubelet's texts).
fn classify(stream: u32, headers: &Headers) -> Result<(String, Role, u16), String> {
    let port = headers.get("port").unwrap_or_default();
    if port.is_empty() {
        return Err("\"port\" header is required".into());
    }
    let port: u16 = port
        .parse()
        .map_err(|err| format!("unable to parse {port:?} as a port: {err}"))?;
    if port == 0 {
        return Err("port \"0\" must be > 0".into());
    }
    let role = match headers.get("streamtype").unwrap_or_default() {
        "" => return Err("\"streamType\" header is required".into()),
        "data" => Role::Data,
        "error" => Role::Error,
        other => return Err(format!("invalid stream type {other:?}")),
    };
    // Old clients send no request ID: kubelet pairs a data stream with the error stream
    // opened just before it.
    let request = match headers.get("requestid") {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ if role == Role::Data => stream.saturating_sub(2).to_string(),
        _ => stream.to_string(),
    };
    Ok((request, role, port))
}

/// Reports `err` on the pair's error stream and resets both streams, as kubelet does.
async fn fail(
    session: &mut SpdySession,
    pairs: &mut HashMap<String, Pair>,
    streams: &mut HashMap<u32, (String, Role)>,
    request: &str,
    path: &Path,
    err: &io::Error,
) {
    let Some(pair) = pairs.remove(request) else {
        return;
    };
    let message = failure_message(pair.port, path, err);
    tracing::warn!(port = pair.port, %request, error = %err, "port forward failed");
    if let Some(error) = pair.error {
        let _ = session.send(error, message.as_bytes(), false).await;
    }
    for stream in [pair.data, pair.error].into_iter().flatten() {
        streams.remove(&stream);
        let _ = session.reset(stream, ResetStatus::Cancel).await;
    }
}

/// Ends a pair: FIN on both streams, the connection dropped.
async fn close_pair(
    session: &mut SpdySession,
    pairs: &mut HashMap<String, Pair>,
    streams: &mut HashMap<u32, (String, Role)>,
    request: &str,
) {
    let Some(pair) = pairs.remove(request) else {
        return;
    };
    for stream in [pair.data, pair.error].into_iter().flatten() {
        streams.remove(&stream);
        let _ = session.send(stream, &[], true).await;
    }
}
