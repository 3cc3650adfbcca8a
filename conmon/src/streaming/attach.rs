//! A streaming attach session: the container's output from the moment the client connects
//! (no replay), its input and terminal size from the client, until the container's output ends.
//! Several sessions and attach-socket clients can be attached at once; each gets all output.

use std::rc::Rc;

use super::channel::{Channels, ClientMessage, apply_input};
use super::protocol;
use crate::error::error_chain;
use crate::io_hub::Output;
use crate::monitor::Monitor;
use crate::stream::Stream;
use conmon_proto::types::ServeAttach;

pub(super) async fn run(monitor: &Rc<Monitor>, request: ServeAttach, mut channels: Channels) {
    let container = match monitor.running_container(&request.id) {
        Ok(container) => container,
        Err(err) => {
            let message = error_chain(&err);
            tracing::error!(error = %message, "attach failed");
            let status = protocol::internal_error(channels.protocol, &message);
            return channels.finish(Some(status)).await;
        }
    };
    let io = container.io.clone();
    let mut output = io.subscribe();
    let mut stdin_open = request.stdin;
    if channels
        .greet(request.stdout, request.stderr)
        .await
        .is_err()
    {
        return;
    }
    let status = loop {
        tokio::select! {
            output = output.recv() => {
                let (stream, data) = match output {
                    Some(Output::Data(stream, data)) => (stream, data),
                    Some(Output::End) => break protocol::exit_status(channels.protocol, 0),
                    None => {
                        let message = "the client did not keep up with the container's output";
                        tracing::warn!("{message}; detached");
                        break Some(protocol::internal_error(channels.protocol, message));
                    }
                };
                let wanted = match stream {
                    Stream::Stdout => request.stdout,
                    Stream::Stderr => request.stderr,
                };
                let channel = protocol::output_channel(stream);
                if wanted && channels.send_frame(channel, &data).await.is_err() {
                    return;
                }
            }
            message = channels.receive() => match message {
                ClientMessage::Input(incoming) => {
                    // Other clients may still write: the end of this one's input leaves the
                    // container's stdin open.
                    apply_input(&io, incoming, &mut stdin_open, false).await;
                }
                ClientMessage::Ignored => {}
                ClientMessage::Gone => return,
            },
        }
    };
    tracing::info!("container output ended");
    channels.finish(status).await;
}
