//! The session against a scripted client over an in-memory pipe.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};

use super::RemoteCommand;
use super::session::{Event, Session};
use crate::streaming::protocol::{self, Incoming};
use conmon_spdy::frame::{self, Frame, GoAwayStatus, ResetStatus, SETTINGS_INITIAL_WINDOW_SIZE};
use conmon_spdy::headers::{Codec, Headers};
use tokio_tungstenite::tungstenite::Bytes;

const IDLE: Duration = Duration::from_secs(60);

/// The client's end: writes frames, reads the server's.
struct Client {
    io: DuplexStream,
    codec: Codec,
    input: Vec<u8>,
}

/// A server frame, detached from the client's buffer.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Data(u32, bool, Vec<u8>),
    Reply(u32),
    Rst(u32, u32),
    Ping(u32),
    GoAway(u32),
    Window(u32, u32),
}

impl Client {
    async fn send(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap();
    }

    async fn open(&mut self, stream: u32, pairs: &[(&str, &str)]) {
        let block = self.codec.encode(&Headers::of(pairs));
        let mut out = Vec::new();
        frame::syn_stream(&mut out, stream, false, &block);
        self.send(&out).await;
    }

    async fn data(&mut self, stream: u32, fin: bool, data: &[u8]) {
        let mut out = Vec::new();
        frame::data(&mut out, stream, fin, data);
        self.send(&out).await;
    }

    /// The server's next frame.
    async fn next(&mut self) -> Seen {
        loop {
            if let Some((frame, length)) = frame::parse(&self.input).unwrap() {
                let seen = match frame {
                    Frame::Data { stream, fin, data } => Seen::Data(stream, fin, data.to_vec()),
                    Frame::SynReply { stream, headers } => {
                        self.codec.decode(headers).unwrap();
                        Seen::Reply(stream)
                    }
                    Frame::RstStream { stream, status } => Seen::Rst(stream, status),
                    Frame::Ping(id) => Seen::Ping(id),
                    Frame::GoAway { status, .. } => Seen::GoAway(status),
                    Frame::WindowUpdate { stream, delta } => Seen::Window(stream, delta),
                    other => panic!("unexpected frame {other:?}"),
                };
                self.input.drain(..length);
                return seen;
            }
            let mut chunk = [0; 4096];
            let n = self.io.read(&mut chunk).await.unwrap();
            assert!(n > 0, "server closed the connection");
            self.input.extend_from_slice(&chunk[..n]);
        }
    }
}

fn pair() -> (Session<DuplexStream>, Client) {
    let (server, client) = tokio::io::duplex(1 << 20);
    let client = Client {
        io: client,
        codec: Codec::new(),
        input: Vec::new(),
    };
    (Session::new(server, Vec::new(), IDLE), client)
}

fn opened(event: Event) -> (u32, Headers) {
    match event {
        Event::Opened { stream, headers } => (stream, headers),
        other => panic!("want Opened, got {other:?}"),
    }
}

#[tokio::test]
async fn streams_open_carry_data_both_ways_and_finish() {
    let (mut session, mut client) = pair();
    client.open(1, &[("streamtype", "stdin")]).await;
    let (stream, headers) = opened(session.next().await);
    assert_eq!((stream, headers.get("streamtype")), (1, Some("stdin")));
    session.accept(1).await.unwrap();
    assert_eq!(client.next().await, Seen::Reply(1));

    client.data(1, false, b"hello").await;
    client.data(1, true, b"").await;
    let data = session.next().await;
    assert_eq!(
        data,
        Event::Data {
            stream: 1,
            data: b"hello".to_vec()
        }
    );
    assert_eq!(session.next().await, Event::Finished { stream: 1 });

    assert!(session.send(1, b"out", true).await.unwrap());
    assert_eq!(client.next().await, Seen::Data(1, true, b"out".to_vec()));
    // Closed both ways: gone.
    assert!(!session.send(1, b"more", false).await.unwrap());
    drop(client.io);
    assert_eq!(session.next().await, Event::Ended(Ok(())));
}

#[tokio::test]
async fn pings_are_echoed_and_received_data_is_given_back() {
    let (mut session, mut client) = pair();
    client.open(1, &[("streamtype", "stdin")]).await;
    opened(session.next().await);
    session.accept(1).await.unwrap();
    assert_eq!(client.next().await, Seen::Reply(1));
    let mut ping = Vec::new();
    frame::ping(&mut ping, 3);
    client.send(&ping).await;
    client.data(1, false, &[0; 40 * 1024]).await;
    client.data(1, false, b"x").await;
    assert!(matches!(session.next().await, Event::Data { .. }));
    assert!(matches!(session.next().await, Event::Data { .. }));
    assert_eq!(client.next().await, Seen::Ping(3));
    assert_eq!(client.next().await, Seen::Window(1, 40 * 1024));
    assert_eq!(client.next().await, Seen::Window(0, 40 * 1024));
}

#[tokio::test]
async fn unknown_and_reused_streams_are_reset_and_the_session_goes_on() {
    let (mut session, mut client) = pair();
    client.data(9, false, b"who?").await;
    client.open(2, &[("streamtype", "stdin")]).await;
    client.open(5, &[("streamtype", "stdout")]).await;
    client.open(3, &[("streamtype", "stderr")]).await;
    let (stream, _) = opened(session.next().await);
    assert_eq!(stream, 5);
    assert_eq!(
        client.next().await,
        Seen::Rst(9, ResetStatus::InvalidStream as u32)
    );
    assert_eq!(
        client.next().await,
        Seen::Rst(2, ResetStatus::ProtocolError as u32)
    );
    client.data(5, false, b"ok").await;
    assert_eq!(
        session.next().await,
        Event::Data {
            stream: 5,
            data: b"ok".to_vec()
        }
    );
    assert_eq!(
        client.next().await,
        Seen::Rst(3, ResetStatus::ProtocolError as u32)
    );
}

#[tokio::test]
async fn malformed_frames_end_the_session_with_goaway_and_a_reason() {
    let mut bad_ping = Vec::new();
    frame::ping(&mut bad_ping, 1);
    bad_ping[7] = 5;
    bad_ping.push(0);
    let mut bad_block = Vec::new();
    frame::syn_stream(&mut bad_block, 1, false, b"\x78\xbbnot a zlib stream");
    let mut huge = vec![0, 0, 0, 1, 0, 0xff, 0xff, 0xff];
    huge.extend_from_slice(&[0; 16]);
    for (bytes, reason) in [
        (bad_ping, "PING frame of 5 bytes, want 4"),
        (bad_block, "header block does not inflate"),
        (huge, "data frame of 16777215 bytes"),
    ] {
        let (mut session, mut client) = pair();
        client.send(&bytes).await;
        let Event::Ended(Err(message)) = session.next().await else {
            panic!("{reason}: the session goes on");
        };
        assert!(message.contains(reason), "{message}");
        assert_eq!(
            client.next().await,
            Seen::GoAway(GoAwayStatus::ProtocolError as u32)
        );
    }
}

#[tokio::test]
async fn a_client_that_keeps_windows_gets_no_more_than_they_allow() {
    let (mut session, mut client) = pair();
    let mut settings = Vec::new();
    frame::settings(&mut settings, &[(SETTINGS_INITIAL_WINDOW_SIZE, 1000)]);
    client.send(&settings).await;
    client.open(1, &[("streamtype", "stdout")]).await;
    opened(session.next().await);
    session.accept(1).await.unwrap();
    let sender = async {
        assert!(session.send(1, &[1; 2500], true).await.unwrap());
        session
    };
    let receiver = async {
        assert_eq!(client.next().await, Seen::Reply(1));
        let mut got = 0;
        for window in [1000, 1000, 500] {
            let Seen::Data(1, fin, data) = client.next().await else {
                panic!("want data");
            };
            assert_eq!(data.len(), window);
            got += data.len();
            assert_eq!(fin, got == 2500);
            if got < 2500 {
                let mut update = Vec::new();
                frame::window_update(&mut update, 1, 1000);
                client.send(&update).await;
            }
        }
        client
    };
    let (mut session, mut client) = tokio::join!(sender, receiver);
    // Input that came while the output waited is kept.
    client.data(1, false, b"in").await;
    assert_eq!(
        session.next().await,
        Event::Data {
            stream: 1,
            data: b"in".to_vec()
        }
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_session_is_closed() {
    let (mut session, mut client) = pair();
    let Event::Ended(Err(message)) = session.next().await else {
        panic!("not ended");
    };
    assert!(message.contains("no frame for 60s"), "{message}");
    assert_eq!(client.next().await, Seen::GoAway(GoAwayStatus::Ok as u32));
}

#[tokio::test(start_paused = true)]
async fn a_client_that_opens_no_streams_is_given_up_on() {
    let (server, _client) = tokio::io::duplex(1024);
    let session = super::SpdySession::new(Box::new(server), Vec::new(), IDLE);
    let wanted = [protocol::STDOUT];
    let err = RemoteCommand::establish(session, &wanted, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(
        err.contains("timed out waiting for client to create streams"),
        "{err}"
    );
}

#[tokio::test]
async fn remote_command_streams_map_to_channels_and_resizes_split_per_size() {
    let (server, client) = tokio::io::duplex(1 << 20);
    let mut client = Client {
        io: client,
        codec: Codec::new(),
        input: Vec::new(),
    };
    let session = super::SpdySession::new(Box::new(server), Vec::new(), IDLE);
    let script = async {
        client.open(1, &[("streamtype", "error")]).await;
        client.open(3, &[("streamtype", "stdin")]).await;
        client.open(5, &[("streamtype", "resize")]).await;
        client
            .data(5, false, br#"{"Width":80,"Height":24}{"Width":1"#)
            .await;
        client.data(5, false, b"00,\"Height\":40}\n").await;
        client.data(3, true, b"in").await;
        client
    };
    let wanted = [protocol::STDIN];
    let (command, mut client) = tokio::join!(
        RemoteCommand::establish(session, &wanted, Duration::from_secs(30)),
        script
    );
    let mut command = command.unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(command.receive().await.unwrap());
    }
    let data = |channel, data: &'static [u8]| Incoming::Data {
        channel,
        data: Bytes::from_static(data),
    };
    assert_eq!(
        got,
        [
            data(protocol::RESIZE, br#"{"Width":80,"Height":24}"#),
            data(protocol::RESIZE, br#"{"Width":100,"Height":40}"#),
            data(protocol::STDIN, b"in"),
            Incoming::Close(protocol::STDIN),
        ]
    );
    for stream in [1, 3, 5] {
        assert_eq!(client.next().await, Seen::Reply(stream));
    }
    command.send(protocol::STATUS, b"status").await.unwrap();
    // No stdout stream: dropped.
    command.send(protocol::STDOUT, b"nobody").await.unwrap();
    assert_eq!(
        client.next().await,
        Seen::Data(1, false, b"status".to_vec())
    );
}
