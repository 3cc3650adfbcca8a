use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;

/// The server's end, scripted by each test.
struct Server(DuplexStream);

impl Server {
    async fn frame(&mut self) -> Frame {
        let mut header = [0u8; 9];
        self.0.read_exact(&mut header).await.unwrap();
        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let mut payload = vec![0; length];
        self.0.read_exact(&mut payload).await.unwrap();
        Frame {
            kind: header[3],
            flags: header[4],
            stream: u32::from_be_bytes([header[5], header[6], header[7], header[8]]),
            payload,
        }
    }

    async fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let mut out = Vec::new();
        push_frame(&mut out, kind, flags, stream, payload);
        self.0.write_all(&out).await.unwrap();
    }

    /// Reads the preface and the client's SETTINGS; sends ours.
    async fn accept(&mut self, settings: &[(u16, u32)]) {
        let mut preface = [0u8; PREFACE.len()];
        self.0.read_exact(&mut preface).await.unwrap();
        assert_eq!(preface, PREFACE);
        let client_settings = self.frame().await;
        assert_eq!(
            (client_settings.kind, client_settings.stream),
            (SETTINGS, 0)
        );
        let payload: Vec<u8> = settings
            .iter()
            .flat_map(|(id, value)| id.to_be_bytes().into_iter().chain(value.to_be_bytes()))
            .collect();
        self.send(SETTINGS, 0, 0, &payload).await;
    }

    /// Answers stream `id` with status 200, `body` and `grpc-status: 0` trailers.
    async fn respond(&mut self, id: u32, body: &[u8]) {
        self.send(HEADERS, END_HEADERS, id, &[0x88]).await;
        self.send(DATA, 0, id, body).await;
        let mut trailers = Vec::new();
        hpack::encode_literal(&mut trailers, 0, "grpc-status", "0");
        self.send(HEADERS, END_HEADERS | END_STREAM, id, &trailers)
            .await;
    }
}

/// A scripted exchange that goes wrong must fail the test, not hang it.
async fn bounded<T>(exchange: impl Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(10), exchange)
        .await
        .expect("exchange finished in time")
}

fn pair() -> (DuplexStream, Server) {
    let (client, server) = tokio::io::duplex(1 << 20);
    (client, Server(server))
}

#[tokio::test]
async fn a_body_larger_than_the_windows_waits_for_window_updates() {
    let (client, mut server) = pair();
    let body: Vec<u8> = (0..250_000u32).map(|n| n as u8).collect();
    let expected = body.clone();
    let serve = async move {
        server
            .accept(&[(SETTINGS_INITIAL_WINDOW_SIZE, 40_000)])
            .await;
        let mut received = Vec::new();
        let mut acked = false;
        let mut pinged = false;
        let mut granted = false;
        let mut regranted = false;
        loop {
            let frame = server.frame().await;
            match frame.kind {
                SETTINGS => acked |= frame.flags & ACK != 0,
                HEADERS => assert_eq!(frame.stream, 1),
                PING => {
                    assert_eq!(
                        (frame.flags, frame.payload.as_slice()),
                        (ACK, &b"12345678"[..])
                    );
                    pinged = true;
                }
                DATA => {
                    assert!(frame.payload.len() <= DEFAULT_MAX_FRAME);
                    received.extend_from_slice(&frame.payload);
                    if frame.flags & END_STREAM != 0 {
                        break;
                    }
                    // The client sends before it reads our SETTINGS, so up to the default
                    // windows (65 535) before it needs an update.
                    assert!(received.len() <= 65_535 || granted, "{}", received.len());
                    if !granted && received.len() >= 40_000 {
                        server.send(PING, 0, 0, b"12345678").await;
                        let grant = 200_000u32.to_be_bytes();
                        server.send(WINDOW_UPDATE, 0, 1, &grant).await;
                        server.send(WINDOW_UPDATE, 0, 0, &grant).await;
                        granted = true;
                    }
                    // Our SETTINGS made the stream window 40 000 - 65 535 + 200 000 after the
                    // grant: the client stops at 240 000 until the stream gets more.
                    assert!(received.len() <= 240_000 || regranted, "{}", received.len());
                    if received.len() == 240_000 {
                        server
                            .send(WINDOW_UPDATE, 0, 1, &20_000u32.to_be_bytes())
                            .await;
                        regranted = true;
                    }
                }
                other => panic!("unexpected frame type {other}"),
            }
        }
        assert!(acked && pinged && regranted);
        assert_eq!(received, expected);
        server.respond(1, b"ok").await;
        server
    };
    let request = async move {
        let mut connection = Connection::handshake(client).await.unwrap();
        let response = connection.request(&[0x83], &body).await.unwrap();
        (connection, response)
    };
    let (_server, (connection, response)) = bounded(async { tokio::join!(serve, request) }).await;
    assert_eq!(hpack::header_lines(&response.headers), [":status: 200"]);
    assert_eq!(hpack::header_lines(&response.trailers), ["grpc-status: 0"]);
    assert_eq!(response.body, b"ok");
    assert!(connection.is_open());
    assert_eq!(connection.next_stream, 3);
}

#[tokio::test]
async fn padding_priority_and_continuation_are_read() {
    let (client, mut server) = pair();
    let serve = async move {
        server.accept(&[]).await;
        server.frame().await; // SETTINGS ack
        server.frame().await; // HEADERS, END_STREAM
        // HEADERS padded with priority, the block split over a CONTINUATION.
        let mut headers = vec![2, 0, 0, 0, 0, 16, 0x88];
        headers.extend([0, 0]);
        server.send(HEADERS, PADDED | PRIORITY, 1, &headers).await;
        let mut rest = Vec::new();
        hpack::encode_literal(&mut rest, 31, "", "application/grpc");
        server.send(CONTINUATION, END_HEADERS, 1, &rest).await;
        server
            .send(DATA, PADDED | END_STREAM, 1, &[3, b'h', b'i', 0, 0, 0])
            .await;
        server
    };
    let request = async move {
        let mut connection = Connection::handshake(client).await.unwrap();
        connection.request(&[0x83], &[]).await.unwrap()
    };
    let (_server, response) = bounded(async { tokio::join!(serve, request) }).await;
    assert_eq!(
        hpack::header_lines(&response.headers),
        [":status: 200", "content-type: application/grpc"]
    );
    assert_eq!(response.body, b"hi");
    assert!(response.trailers.is_empty());
}

/// Runs one request against a server that answers with `frames` after the request's HEADERS.
async fn request_answered_by(frames: Vec<(u8, u8, u32, Vec<u8>)>) -> Result<Response, H2Error> {
    let (client, mut server) = pair();
    let serve = async move {
        server.accept(&[]).await;
        server.frame().await;
        server.frame().await;
        for (kind, flags, stream, payload) in frames {
            server.send(kind, flags, stream, &payload).await;
        }
        server
    };
    let request = async move {
        let mut connection = Connection::handshake(client).await?;
        connection.request(&[0x83], &[]).await
    };
    bounded(async { tokio::join!(serve, request) }).await.1
}

#[tokio::test]
async fn resets_goaways_and_protocol_errors_fail_the_request() {
    let goaway = |last: u32| [last.to_be_bytes(), 2u32.to_be_bytes()].concat();
    let cases = [
        (
            vec![(RST_STREAM, 0, 1, 8u32.to_be_bytes().to_vec())],
            "HTTP/2 error code 8",
        ),
        (
            vec![(GOAWAY, 0, 0, goaway(0))],
            "GOAWAY, HTTP/2 error code 2",
        ),
        (vec![(DATA, 0, 0, vec![1])], "DATA on stream 0"),
        (
            vec![(PUSH_PROMISE, END_HEADERS, 1, vec![0; 4])],
            "PUSH_PROMISE",
        ),
        (
            vec![(WINDOW_UPDATE, 0, 0, vec![0; 4])],
            "WINDOW_UPDATE of 0",
        ),
        (
            vec![(WINDOW_UPDATE, 0, 0, vec![0x7f, 0xff, 0xff, 0xff])],
            "above 2^31-1",
        ),
        (vec![(SETTINGS, 0, 0, vec![0; 5])], "multiple of 6"),
        (
            vec![(SETTINGS, 0, 0, vec![0, 5, 0, 0, 0, 1])],
            "max frame size",
        ),
        (vec![(PING, 0, 0, vec![0; 7])], "8 bytes"),
        (vec![(HEADERS, END_HEADERS, 1, vec![0xbe])], "index 62"),
        (
            vec![(HEADERS, 0, 1, vec![0x88]), (DATA, 0, 1, vec![])],
            "interrupted",
        ),
        (vec![(DATA, PADDED, 1, vec![5, 1])], "padding longer"),
        (
            vec![(CONTINUATION, END_HEADERS, 1, vec![])],
            "outside a header block",
        ),
        (
            vec![
                (HEADERS, END_HEADERS, 1, vec![0x88]),
                (HEADERS, END_HEADERS, 1, vec![0x88]),
            ],
            "trailers without END_STREAM",
        ),
    ];
    for (frames, expected) in cases {
        let error = request_answered_by(frames).await.unwrap_err().to_string();
        assert!(error.contains(expected), "{error:?} lacks {expected:?}");
    }
}

#[tokio::test]
async fn oversized_frames_and_bodies_are_refused() {
    let oversized = vec![(DATA, 0, 1, vec![0; DEFAULT_MAX_FRAME + 1])];
    let error = request_answered_by(oversized).await.unwrap_err();
    assert!(
        error.to_string().contains("larger than our max frame size"),
        "{error}"
    );
    let mut frames = vec![(HEADERS, END_HEADERS, 1, vec![0x88])];
    frames.extend((0..2).map(|_| (DATA, 0, 1, vec![0; MAX_RESPONSE_BODY / 2 + 1])));
    let error = request_answered_by(frames).await.unwrap_err();
    assert!(
        error.to_string().contains("response body too large"),
        "{error}"
    );
    // A closed connection is an I/O error, not a hang.
    let (client, server) = pair();
    drop(server);
    assert!(matches!(
        Connection::handshake(client).await,
        Err(H2Error::Io(_))
    ));
}

#[tokio::test]
async fn frames_of_other_streams_are_skipped_but_their_headers_decoded() {
    let mut indexed = Vec::new();
    // Literal with incremental indexing: goes into the table at 62.
    indexed.push(0x40);
    indexed.extend([11]);
    indexed.extend(b"grpc-status");
    indexed.extend([1, b'0']);
    let frames = vec![
        (HEADERS, END_HEADERS | END_STREAM, 7, indexed),
        (DATA, END_STREAM, 7, b"stale".to_vec()),
        (RST_STREAM, 0, 7, vec![0; 4]),
        (0xfa, 0, 0, vec![1, 2, 3]),
        (HEADERS, END_HEADERS, 1, vec![0x88]),
        (HEADERS, END_HEADERS | END_STREAM, 1, vec![0xbe]),
    ];
    let response = request_answered_by(frames).await.unwrap();
    assert_eq!(hpack::header_lines(&response.trailers), ["grpc-status: 0"]);
    assert!(response.body.is_empty());
}
