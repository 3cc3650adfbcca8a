//! SPDY/3 header blocks: name/value pairs (32-bit lengths, names lowercase, several values of
//! one name separated by NUL), compressed by one zlib stream per direction that lives as long
//! as the session and starts from [`DICTIONARY`].

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::dictionary::DICTIONARY;

/// The most a header block may inflate to (a kubelet client sends a few dozen bytes).
const MAX_INFLATED: usize = 64 * 1024;
/// The most pairs a block may hold.
const MAX_PAIRS: usize = 256;

/// A header block's pairs, names lowercased.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// The first value of `name` (lowercase), as Go's `http.Header.Get`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.split('\0').next())
    }

    /// Pairs given as `(name, value)`; names must be lowercase.
    pub fn of(pairs: &[(&str, &str)]) -> Self {
        Self(
            pairs
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        )
    }
}

/// Why a header block is unusable; the session's compression state is then lost with it.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("header block does not inflate: {0}")]
    Inflate(String),
    #[error("header block inflates to more than {MAX_INFLATED} bytes")]
    TooLarge,
    #[error("malformed header block: {0}")]
    Malformed(&'static str),
}

/// One session's two zlib streams.
pub struct Codec {
    inflate: Decompress,
    deflate: Compress,
    primed: bool,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Codec")
    }
}

impl Default for Codec {
    fn default() -> Self {
        Self::new()
    }
}

impl Codec {
    /// Both streams, fresh.
    pub fn new() -> Self {
        Self {
            inflate: Decompress::new(true),
            deflate: Compress::new(Compression::fast(), true),
            primed: false,
        }
    }

    /// Inflates and parses one block.
    pub fn decode(&mut self, block: &[u8]) -> Result<Headers, HeaderError> {
        let mut inflated = Vec::with_capacity(256);
        let mut input = block;
        loop {
            if inflated.len() == inflated.capacity() {
                if inflated.len() >= MAX_INFLATED {
                    return Err(HeaderError::TooLarge);
                }
                inflated.reserve(inflated.len().max(256));
            }
            let before = self.inflate.total_in();
            let result = self
                .inflate
                .decompress_vec(input, &mut inflated, FlushDecompress::Sync);
            input = &input[(self.inflate.total_in() - before) as usize..];
            match result {
                Ok(Status::StreamEnd) => {
                    return Err(HeaderError::Inflate("the zlib stream ended".into()));
                }
                Ok(_) if input.is_empty() && inflated.len() < inflated.capacity() => break,
                Ok(_) => {}
                Err(err) if err.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(DICTIONARY)
                        .map_err(|err| HeaderError::Inflate(err.to_string()))?;
                }
                Err(err) => return Err(HeaderError::Inflate(err.to_string())),
            }
        }
        parse_block(&inflated)
    }

    /// Encodes and deflates one block (a sync flush ends it, as every block must end).
    pub fn encode(&mut self, headers: &Headers) -> Vec<u8> {
        if !self.primed {
            // Fails only on a stream already started, which this one is not.
            let _ = self.deflate.set_dictionary(DICTIONARY);
            self.primed = true;
        }
        let mut block = Vec::new();
        block.extend_from_slice(&(headers.0.len() as u32).to_be_bytes());
        for (name, value) in &headers.0 {
            for part in [name, value] {
                block.extend_from_slice(&(part.len() as u32).to_be_bytes());
                block.extend_from_slice(part.as_bytes());
            }
        }
        let mut out = Vec::with_capacity(block.len() + 64);
        let mut input = &block[..];
        loop {
            out.reserve(64);
            let before = self.deflate.total_in();
            // Deflating into memory fails only on a corrupt stream, which ours cannot be.
            let _ = self
                .deflate
                .compress_vec(input, &mut out, FlushCompress::Sync);
            input = &input[(self.deflate.total_in() - before) as usize..];
            // A sync flush is complete once it had room to spare.
            if input.is_empty() && out.len() < out.capacity() {
                return out;
            }
        }
    }
}

fn parse_block(mut block: &[u8]) -> Result<Headers, HeaderError> {
    fn take<'a>(block: &mut &'a [u8], n: usize) -> Result<&'a [u8], HeaderError> {
        if block.len() < n {
            return Err(HeaderError::Malformed("truncated"));
        }
        let (head, rest) = block.split_at(n);
        *block = rest;
        Ok(head)
    }
    fn length(block: &mut &[u8]) -> Result<usize, HeaderError> {
        let bytes = take(block, 4)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize)
    }
    let count = length(&mut block)?;
    if count > MAX_PAIRS {
        return Err(HeaderError::Malformed("too many pairs"));
    }
    let mut pairs = Vec::with_capacity(count);
    for _ in 0..count {
        let n = length(&mut block)?;
        let name = take(&mut block, n)?;
        let n = length(&mut block)?;
        let value = take(&mut block, n)?;
        let (Ok(name), Ok(value)) = (std::str::from_utf8(name), std::str::from_utf8(value)) else {
            return Err(HeaderError::Malformed("not UTF-8"));
        };
        if name.is_empty() {
            return Err(HeaderError::Malformed("empty name"));
        }
        pairs.push((name.to_ascii_lowercase(), value.to_owned()));
    }
    if !block.is_empty() {
        return Err(HeaderError::Malformed("bytes after the last pair"));
    }
    Ok(Headers(pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two blocks of one stream, as real zlib (Python's) compresses them with SPDY's dictionary.
    const ERROR_BLOCK: &str = "78bbe3c6a7c202a62346703a2b294a4dcc851625aca9a08006000000ffff";
    const STDOUT_BLOCK: &str = "c22a054ccc29f9a52500000000ffff";

    fn hex(text: &str) -> Vec<u8> {
        data_encoding::HEXLOWER.decode(text.as_bytes()).unwrap()
    }

    #[test]
    fn decodes_blocks_from_real_zlib_with_the_dictionary() {
        let mut codec = Codec::new();
        let first = codec.decode(&hex(ERROR_BLOCK)).unwrap();
        assert_eq!(first.get("streamtype"), Some("error"));
        let second = codec.decode(&hex(STDOUT_BLOCK)).unwrap();
        assert_eq!(second.get("streamtype"), Some("stdout"));
        assert_eq!(second.get("port"), None);
    }

    #[test]
    fn encoded_blocks_decode_in_order() {
        let (mut ours, mut theirs) = (Codec::new(), Codec::new());
        for pairs in [
            vec![],
            vec![("streamtype", "data"), ("port", "8080"), ("requestid", "0")],
            vec![("x", "a\0b")],
        ] {
            let headers = Headers::of(&pairs);
            assert_eq!(theirs.decode(&ours.encode(&headers)).unwrap(), headers);
        }
        assert_eq!(Headers::of(&[("x", "a\0b")]).get("x"), Some("a"));
    }

    #[test]
    fn bad_blocks_are_errors() {
        let err = Codec::new().decode(b"not zlib at all").unwrap_err();
        assert!(matches!(err, HeaderError::Inflate(_)), "{err}");

        let block = Codec::new().encode(&Headers::of(&[("a", "b")]));
        let err = Codec::new().decode(&block[..block.len() - 6]).unwrap_err();
        assert!(matches!(err, HeaderError::Malformed("truncated")), "{err}");

        let big = "x".repeat(MAX_INFLATED);
        let block = Codec::new().encode(&Headers::of(&[("big", &big)]));
        let err = Codec::new().decode(&block).unwrap_err();
        assert!(matches!(err, HeaderError::TooLarge), "{err}");

        let mut raw = 1u32.to_be_bytes().to_vec();
        raw.extend_from_slice(&0u32.to_be_bytes());
        raw.extend_from_slice(&0u32.to_be_bytes());
        assert!(matches!(
            parse_block(&raw),
            Err(HeaderError::Malformed("empty name"))
        ));
    }
}
