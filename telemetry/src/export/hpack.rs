//! HPACK (RFC 7541) for a client that sends few, fixed headers and must read whatever a
//! server's encoder produces: the decoder is complete (static and dynamic table, Huffman,
//! size updates); the encoder writes literals without indexing, which any decoder accepts.

use std::collections::VecDeque;

use super::huffman;

/// Why a header block could not be decoded; the connection cannot be used after one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HpackError {
    /// The block ended inside a representation.
    #[error("header block truncated")]
    Truncated,
    /// An integer longer than any table or string this decoder accepts.
    #[error("header block integer too large")]
    Integer,
    /// An index past the static and dynamic tables.
    #[error("header index {0} out of range")]
    Index(usize),
    /// A Huffman-coded string with EOS, or padding that is not a short prefix of EOS.
    #[error("invalid Huffman-coded string")]
    Huffman,
    /// A dynamic table size update above what we advertised, or after the first header.
    #[error("invalid dynamic table size update")]
    SizeUpdate,
    /// The decoded headers exceed `MAX_HEADER_LIST`.
    #[error("header list larger than {MAX_HEADER_LIST} bytes")]
    TooLarge,
}

/// The dynamic table size we advertise (SETTINGS_HEADER_TABLE_SIZE's default).
pub(super) const TABLE_SIZE: usize = 4096;
/// Upper bound of a decoded header list (names, values and 32 bytes each, as RFC 9113 counts).
pub(super) const MAX_HEADER_LIST: usize = 16 * 1024;
/// Per-entry overhead in the table size (RFC 7541, section 4.1).
const ENTRY_OVERHEAD: usize = 32;

/// The static table (RFC 7541, Appendix A), index 1 first.
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// A decoded header: name and value as sent (HPACK does not require UTF-8).
pub(super) type Header = (Vec<u8>, Vec<u8>);

/// The decoding context of one connection: header blocks must be decoded in the order they
/// arrive, each completely, since each may change the dynamic table.
#[derive(Debug)]
pub(super) struct Decoder {
    /// Newest entry first (index 62).
    table: VecDeque<Header>,
    size: usize,
    max_size: usize,
}

impl Decoder {
    pub(super) fn new() -> Self {
        Self {
            table: VecDeque::new(),
            size: 0,
            max_size: TABLE_SIZE,
        }
    }

    /// Decodes one complete header block.
    pub(super) fn decode(&mut self, mut block: &[u8]) -> Result<Vec<Header>, HpackError> {
        let mut headers = Vec::new();
        let mut list_size = 0;
        let input = &mut block;
        while let Some(&first) = input.first() {
            let header = if first & 0x80 != 0 {
                let index = integer(input, 7)?;
                self.entry(index)?
            } else if first & 0xc0 == 0x40 {
                let header = self.literal(input, 6)?;
                self.insert(header.clone());
                header
            } else if first & 0xe0 == 0x20 {
                let size = integer(input, 5)?;
                if size > TABLE_SIZE || !headers.is_empty() {
                    return Err(HpackError::SizeUpdate);
                }
                self.max_size = size;
                self.evict(0);
                continue;
            } else {
                // Literal without indexing (0000) or never indexed (0001).
                self.literal(input, 4)?
            };
            list_size += header.0.len() + header.1.len() + ENTRY_OVERHEAD;
            if list_size > MAX_HEADER_LIST {
                return Err(HpackError::TooLarge);
            }
            headers.push(header);
        }
        Ok(headers)
    }

    fn entry(&self, index: usize) -> Result<Header, HpackError> {
        match index {
            0 => Err(HpackError::Index(0)),
            1..=61 => {
                let (name, value) = STATIC[index - 1];
                Ok((name.into(), value.into()))
            }
            _ => self
                .table
                .get(index - 62)
                .cloned()
                .ok_or(HpackError::Index(index)),
        }
    }

    /// A literal whose name is an index (prefix bits `prefix`) or, with index 0, a string.
    fn literal(&self, input: &mut &[u8], prefix: u8) -> Result<Header, HpackError> {
        let name = match integer(input, prefix)? {
            0 => string(input)?,
            index => self.entry(index)?.0,
        };
        Ok((name, string(input)?))
    }

    fn insert(&mut self, header: Header) {
        let size = header.0.len() + header.1.len() + ENTRY_OVERHEAD;
        self.evict(size);
        // An entry larger than the table empties it and is not added (RFC 7541, 4.4).
        if size <= self.max_size {
            self.size += size;
            self.table.push_front(header);
        }
        debug_assert!(self.size <= self.max_size);
    }

    /// Evicts the oldest entries until `room` more bytes fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            let Some((name, value)) = self.table.pop_back() else {
                break;
            };
            self.size -= name.len() + value.len() + ENTRY_OVERHEAD;
        }
    }
}

/// Reads an integer with a `prefix`-bit prefix (RFC 7541, 5.1); values above 2^24 are refused.
fn integer(input: &mut &[u8], prefix: u8) -> Result<usize, HpackError> {
    let (&first, rest) = input.split_first().ok_or(HpackError::Truncated)?;
    *input = rest;
    let max_prefix = (1usize << prefix) - 1;
    let mut value = usize::from(first) & max_prefix;
    if value < max_prefix {
        return Ok(value);
    }
    let mut shift = 0;
    loop {
        // Four continuation bytes carry 28 bits, more than any accepted value.
        if shift > 21 {
            return Err(HpackError::Integer);
        }
        let (&byte, rest) = input.split_first().ok_or(HpackError::Truncated)?;
        *input = rest;
        value += usize::from(byte & 0x7f) << shift;
        if value > 1 << 24 {
            return Err(HpackError::Integer);
        }
        if byte & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
    }
}

/// Reads a string literal (RFC 7541, 5.2), Huffman-coded or raw.
fn string(input: &mut &[u8]) -> Result<Vec<u8>, HpackError> {
    let huffman_coded = input.first().is_some_and(|first| first & 0x80 != 0);
    let length = integer(input, 7)?;
    if length > input.len() {
        return Err(HpackError::Truncated);
    }
    let (bytes, rest) = input.split_at(length);
    *input = rest;
    if huffman_coded {
        let mut decoded = Vec::with_capacity(length * 8 / 5);
        huffman::decode(bytes, &mut decoded)?;
        Ok(decoded)
    } else {
        Ok(bytes.to_vec())
    }
}

/// Appends a header as a literal without indexing; the name as static index `name_index`
/// when not 0.
pub(super) fn encode_literal(out: &mut Vec<u8>, name_index: usize, name: &str, value: &str) {
    encode_integer(out, 0x00, 4, name_index);
    if name_index == 0 {
        encode_string(out, name);
    }
    encode_string(out, value);
}

/// Appends a fully indexed header field (static table entry `index`).
pub(super) fn encode_indexed(out: &mut Vec<u8>, index: usize) {
    encode_integer(out, 0x80, 7, index);
}

fn encode_string(out: &mut Vec<u8>, text: &str) {
    encode_integer(out, 0x00, 7, text.len());
    out.extend_from_slice(text.as_bytes());
}

fn encode_integer(out: &mut Vec<u8>, flags: u8, prefix: u8, mut value: usize) {
    let max_prefix = (1usize << prefix) - 1;
    if value < max_prefix {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max_prefix as u8);
    value -= max_prefix;
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Headers as `name: value` lines, for tests to compare.
#[cfg(test)]
pub(super) fn header_lines(headers: &[Header]) -> Vec<String> {
    headers
        .iter()
        .map(|(name, value)| {
            format!(
                "{}: {}",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(value)
            )
        })
        .collect()
}

#[cfg(test)]
#[path = "hpack_tests.rs"]
mod tests;
