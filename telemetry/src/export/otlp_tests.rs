use super::*;

#[test]
fn endpoints_parse_as_collectors_are_named() {
    let parsed = |text: &str| Endpoint::parse(text).map(|e| (e.host, e.port, e.authority));
    let ok = |host: &str, port, authority: &str| Ok((host.into(), port, authority.into()));
    assert_eq!(
        parsed("http://127.0.0.1:4317"),
        ok("127.0.0.1", 4317, "127.0.0.1:4317")
    );
    assert_eq!(
        parsed("http://localhost:4317/"),
        ok("localhost", 4317, "localhost:4317")
    );
    assert_eq!(parsed("http://[::1]:4317"), ok("::1", 4317, "[::1]:4317"));
    assert_eq!(parsed("http://collector"), ok("collector", 80, "collector"));
    // CRI-O's configuration names the endpoint without a scheme.
    assert_eq!(parsed("0.0.0.0:4317"), ok("0.0.0.0", 4317, "0.0.0.0:4317"));
    assert_eq!(parsed("https://collector:4317"), Err(EndpointError::Tls));
    for bad in [
        "collector",
        "http://:4317",
        "http://host:port",
        "http://host:70000",
        "http://::1:4317",
        "http://[::1:4317",
        "http://host/path:1",
        "",
    ] {
        assert!(
            matches!(Endpoint::parse(bad), Err(EndpointError::Malformed(_))),
            "{bad:?} accepted"
        );
    }
}

fn response(headers: &[(&str, &str)], trailers: &[(&str, &str)], body: &[u8]) -> Response {
    let own = |fields: &[(&str, &str)]| {
        fields
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    };
    Response {
        headers: own(headers),
        trailers: own(trailers),
        body: body.to_vec(),
    }
}

#[test]
fn grpc_responses_yield_their_message_or_status() {
    let ok = [(":status", "200"), ("content-type", "application/grpc")];
    let status_0 = [("grpc-status", "0")];
    let message = grpc_message(response(&ok, &status_0, &[0, 0, 0, 0, 2, 8, 1])).unwrap();
    assert_eq!(message, [8, 1]);
    assert_eq!(grpc_message(response(&ok, &status_0, &[])).unwrap(), b"");
    // Trailers-Only.
    let only = [
        (":status", "200"),
        ("grpc-status", "14"),
        ("grpc-message", "unavailable"),
    ];
    let error = grpc_message(response(&only, &[], &[])).unwrap_err();
    assert_eq!(error.to_string(), "gRPC status 14: unavailable");
    let errors = [
        (response(&[(":status", "503")], &[], &[]), "HTTP status 503"),
        (
            response(&ok, &[], &[0, 0, 0, 0, 0]),
            "without a gRPC status",
        ),
        (
            response(&ok, &status_0, &[0, 0, 0, 0, 9, 1]),
            "length differs",
        ),
        (
            response(&ok, &status_0, &[1, 0, 0, 0, 0]),
            "compressed or malformed",
        ),
        (response(&ok, &status_0, &[0, 0]), "length differs"),
    ];
    for (response, expected) in errors {
        let error = grpc_message(response).unwrap_err().to_string();
        assert!(error.contains(expected), "{error:?} lacks {expected:?}");
    }
}

#[test]
fn request_headers_are_what_a_grpc_server_expects() {
    let block = request_headers(TRACE_PATH, "127.0.0.1:4317");
    let headers = hpack::Decoder::new().decode(&block).unwrap();
    let text = hpack::header_lines(&headers);
    assert_eq!(
        text[..6],
        [
            ":method: POST",
            ":scheme: http",
            ":path: /opentelemetry.proto.collector.trace.v1.TraceService/Export",
            ":authority: 127.0.0.1:4317",
            "content-type: application/grpc",
            "te: trailers"
        ]
    );
    assert!(text[6].starts_with("user-agent: conmon-telemetry/"));
    let partial = opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess {
        rejected_spans: 1,
        error_message: String::new(),
    };
    assert_eq!(grpc_frame(&partial), [0, 0, 0, 0, 2, 8, 1]);
}
