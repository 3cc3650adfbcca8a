use super::*;

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

#[test]
fn decodes_rfc_7541_c3_requests_with_the_dynamic_table() {
    let mut decoder = Decoder::new();
    let first = decoder
        .decode(&hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d"))
        .unwrap();
    assert_eq!(
        header_lines(&first),
        [
            ":method: GET",
            ":scheme: http",
            ":path: /",
            ":authority: www.example.com"
        ]
    );
    assert_eq!(decoder.size, 57);
    let second = decoder
        .decode(&hex("8286 84be 5808 6e6f 2d63 6163 6865"))
        .unwrap();
    assert_eq!(
        header_lines(&second)[3..],
        [":authority: www.example.com", "cache-control: no-cache"]
    );
    assert_eq!(decoder.size, 110);
    let third = decoder
        .decode(&hex(
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ))
        .unwrap();
    assert_eq!(
        header_lines(&third),
        [
            ":method: GET",
            ":scheme: https",
            ":path: /index.html",
            ":authority: www.example.com",
            "custom-key: custom-value"
        ]
    );
    assert_eq!(decoder.size, 164);
}

#[test]
fn decodes_huffman_coded_literals() {
    // hpack-test-case, go-hpack story 28, case 0: every string Huffman-coded, new names.
    let wire = hex(
        "0085b8848d36a38264010086a0e41a4c7abf929d29aee30c78f1e17a0d5752c86a9721e963008a21ea496a\
         4ad416a9933f8107008390692f96dc34fd280654d27eea0801128166e059b8cbea62d1bf0085416cee5b3f\
         86a0d34e94d727",
    );
    assert_eq!(
        header_lines(&Decoder::new().decode(&wire).unwrap()),
        [
            ":status: 301",
            "location: http://www.linkedin.com/",
            "content-length: 0",
            "date: Sat, 03 Nov 2012 13:13:39 GMT",
            "server: lighttpd"
        ]
    );
}

#[test]
fn size_updates_evict_and_bound_the_table() {
    let mut decoder = Decoder::new();
    // A size update to 100, then C.3.1 (57 bytes in the table).
    let mut block = vec![0x3f, 0x45];
    block.extend(hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d"));
    decoder.decode(&block).unwrap();
    assert_eq!(decoder.max_size, 100);
    // cache-control (53 bytes) evicts :authority.
    decoder.decode(&hex("5808 6e6f 2d63 6163 6865")).unwrap();
    assert_eq!(decoder.size, 53);
    assert_eq!(
        header_lines(&decoder.decode(&[0xbe]).unwrap()),
        ["cache-control: no-cache"]
    );
    assert_eq!(decoder.decode(&[0xbf]), Err(HpackError::Index(63)));
    // Above what we advertised, or after a header.
    assert_eq!(
        decoder.decode(&[0x3f, 0xe2, 0x1f]),
        Err(HpackError::SizeUpdate)
    );
    assert_eq!(decoder.decode(&[0x82, 0x20]), Err(HpackError::SizeUpdate));
    // Size 0 empties the table.
    decoder.decode(&[0x20]).unwrap();
    assert_eq!((decoder.size, decoder.table.len()), (0, 0));
}

#[test]
fn malformed_blocks_are_errors() {
    let mut decoder = Decoder::new();
    assert_eq!(decoder.decode(&[0x80]), Err(HpackError::Index(0)));
    assert_eq!(decoder.decode(&[0xff, 0x00]), Err(HpackError::Index(127)));
    // Literal with a new name whose length runs past the block.
    assert_eq!(
        decoder.decode(&[0x00, 0x05, b'a']),
        Err(HpackError::Truncated)
    );
    assert_eq!(decoder.decode(&[0x40]), Err(HpackError::Truncated));
    // An integer continued forever, and one too large.
    assert_eq!(
        decoder.decode(&[0xff, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]),
        Err(HpackError::Integer)
    );
    assert_eq!(
        decoder.decode(&[0xff, 0xff, 0xff, 0xff, 0x7f]),
        Err(HpackError::Integer)
    );
    // A header list over the bound.
    let mut big = vec![0x00, 0x01, b'x', 0x7f];
    encode_integer_for_test(&mut big, MAX_HEADER_LIST);
    big.extend(std::iter::repeat_n(b'v', MAX_HEADER_LIST));
    assert_eq!(decoder.decode(&big), Err(HpackError::TooLarge));
}

/// The continuation of a 7-bit-prefix integer whose prefix byte (0x7f) was already written.
fn encode_integer_for_test(out: &mut Vec<u8>, value: usize) {
    let mut encoded = Vec::new();
    encode_integer(&mut encoded, 0, 7, value);
    out.extend(&encoded[1..]);
}

#[test]
fn encoded_literals_decode_back() {
    let mut block = Vec::new();
    encode_indexed(&mut block, 3);
    encode_literal(
        &mut block,
        4,
        "",
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    );
    encode_literal(&mut block, 0, "te", "trailers");
    encode_literal(&mut block, 0, "x-long", &"y".repeat(300));
    let headers = Decoder::new().decode(&block).unwrap();
    assert_eq!(
        header_lines(&headers)[..3],
        [
            ":method: POST",
            ":path: /opentelemetry.proto.collector.trace.v1.TraceService/Export",
            "te: trailers"
        ]
    );
    assert_eq!(headers[3].1.len(), 300);
}
