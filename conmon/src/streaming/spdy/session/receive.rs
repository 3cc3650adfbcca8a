//! How the session handles each frame the client sends.

use conmon_spdy::frame::{self, Frame, ResetStatus};
use conmon_spdy::headers::Headers;

use super::{Event, MAX_STREAMS, Session, SessionError, StreamState, WINDOW_UPDATE_STEP};

impl<T> Session<T> {
    pub(super) fn handle(&mut self, frame: Frame<'_>) -> Result<(), SessionError> {
        match frame {
            Frame::Data { stream, fin, data } => self.on_data(stream, fin, data),
            Frame::SynStream {
                stream,
                fin,
                headers,
            } => {
                // Decoded first, even for a stream refused, to keep the zlib stream in step.
                let headers = self.codec.decode(headers)?;
                self.on_syn_stream(stream, fin, headers);
            }
            Frame::SynReply { stream, headers } => {
                self.codec.decode(headers)?;
                tracing::debug!(stream, "SYN_REPLY for a stream we never opened");
                frame::rst_stream(&mut self.output, stream, ResetStatus::InvalidStream);
            }
            Frame::Headers {
                stream,
                fin,
                headers,
            } => {
                self.codec.decode(headers)?;
                self.on_data(stream, fin, &[]);
            }
            Frame::RstStream { stream, status } => {
                if self.streams.remove(&stream).is_some() {
                    tracing::debug!(stream, status, "client reset a stream");
                    self.backlog.push_back(Event::Reset { stream });
                }
            }
            Frame::Settings(pairs) => {
                for (id, value) in pairs {
                    if id == frame::SETTINGS_INITIAL_WINDOW_SIZE {
                        let delta = i64::from(value) - self.initial_window;
                        self.initial_window = i64::from(value);
                        self.windows_enforced = true;
                        for state in self.streams.values_mut() {
                            state.send_window += delta;
                        }
                    }
                }
            }
            // Odd: the client's; even ones would answer ours, and we send none.
            Frame::Ping(id) if id % 2 == 1 => frame::ping(&mut self.output, id),
            Frame::Ping(_) | Frame::GoAway { .. } | Frame::Unknown(_) => {}
            Frame::WindowUpdate { stream, delta } => {
                self.windows_enforced = true;
                let delta = i64::from(delta);
                match stream {
                    0 => self.session_window += delta,
                    _ => {
                        if let Some(state) = self.streams.get_mut(&stream) {
                            state.send_window += delta;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn on_syn_stream(&mut self, stream: u32, fin: bool, headers: Headers) {
        let refusal = if self.streams.contains_key(&stream) {
            Some((ResetStatus::StreamInUse, "in use"))
        } else if stream.is_multiple_of(2) || stream <= self.last_opened {
            Some((ResetStatus::ProtocolError, "not a new client stream ID"))
        } else if self.streams.len() >= MAX_STREAMS {
            Some((ResetStatus::RefusedStream, "too many open streams"))
        } else {
            None
        };
        if let Some((status, why)) = refusal {
            tracing::info!(stream, why, "SYN_STREAM refused");
            frame::rst_stream(&mut self.output, stream, status);
            return;
        }
        self.last_opened = stream;
        let state = StreamState {
            local_open: true,
            remote_open: !fin,
            send_window: self.initial_window,
            unacknowledged: 0,
        };
        self.streams.insert(stream, state);
        self.backlog.push_back(Event::Opened { stream, headers });
        if fin {
            self.backlog.push_back(Event::Finished { stream });
        }
    }

    fn on_data(&mut self, stream: u32, fin: bool, data: &[u8]) {
        let Some(state) = self.streams.get_mut(&stream) else {
            let status = match stream <= self.last_opened {
                true => ResetStatus::StreamAlreadyClosed,
                false => ResetStatus::InvalidStream,
            };
            tracing::info!(
                stream,
                ?status,
                "frame for a stream that is not open; reset"
            );
            frame::rst_stream(&mut self.output, stream, status);
            return;
        };
        if !state.remote_open {
            tracing::info!(stream, "data after the client's FIN; reset");
            self.streams.remove(&stream);
            frame::rst_stream(&mut self.output, stream, ResetStatus::StreamAlreadyClosed);
            return;
        }
        let length = data.len() as u32;
        state.unacknowledged += length;
        if state.unacknowledged >= WINDOW_UPDATE_STEP {
            frame::window_update(&mut self.output, stream, state.unacknowledged);
            state.unacknowledged = 0;
        }
        self.session_unacknowledged += length;
        if self.session_unacknowledged >= WINDOW_UPDATE_STEP {
            frame::window_update(&mut self.output, 0, self.session_unacknowledged);
            self.session_unacknowledged = 0;
        }
        if fin {
            state.remote_open = false;
            if !state.local_open {
                self.streams.remove(&stream);
            }
        }
        if !data.is_empty() {
            self.backlog_bytes += data.len();
            self.backlog.push_back(Event::Data {
                stream,
                data: data.to_vec(),
            });
        }
        if fin {
            self.backlog.push_back(Event::Finished { stream });
        }
    }
}
