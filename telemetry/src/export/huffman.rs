//! HPACK's Huffman code (RFC 7541, Appendix B), decoding only: the code is canonical, so the
//! length of each symbol's code determines the code, and decoding needs no table of codes.

use super::hpack::HpackError;

/// The length in bits of the code of each symbol: bytes 0–255, then EOS (256).
const CODE_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, //
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, //
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, //
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, //
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, //
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, //
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, //
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, //
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, //
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, //
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, //
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, //
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, //
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, //
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, //
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, //
    30,
];

const EOS: u16 = 256;
const MAX_LENGTH: usize = 30;

/// The canonical code, per length: how many codes have it, the first of them, and where
/// their symbols start in `SYMBOLS`.
struct Canonical {
    count: [u32; MAX_LENGTH + 1],
    first: [u32; MAX_LENGTH + 1],
    offset: [u16; MAX_LENGTH + 1],
    /// Symbols ordered by code length, then by value: the order of their codes.
    symbols: [u16; 257],
}

const CANONICAL: Canonical = canonical();

const fn canonical() -> Canonical {
    let mut count = [0u32; MAX_LENGTH + 1];
    let mut symbol = 0;
    while symbol < 257 {
        count[CODE_LENGTHS[symbol] as usize] += 1;
        symbol += 1;
    }
    let mut first = [0u32; MAX_LENGTH + 1];
    let mut offset = [0u16; MAX_LENGTH + 1];
    let mut length = 1;
    while length <= MAX_LENGTH {
        first[length] = (first[length - 1] + count[length - 1]) << 1;
        offset[length] = offset[length - 1] + count[length - 1] as u16;
        length += 1;
    }
    let mut symbols = [0u16; 257];
    let mut next = offset;
    let mut symbol = 0;
    while symbol < 257 {
        let length = CODE_LENGTHS[symbol] as usize;
        symbols[next[length] as usize] = symbol as u16;
        next[length] += 1;
        symbol += 1;
    }
    Canonical {
        count,
        first,
        offset,
        symbols,
    }
}

/// Decodes a Huffman-coded string literal, appending to `out`. The padding must be the
/// shortest prefix of EOS's code (fewer than 8 ones), and EOS itself must not appear.
pub(super) fn decode(encoded: &[u8], out: &mut Vec<u8>) -> Result<(), HpackError> {
    let code_table = &CANONICAL;
    let mut code: u32 = 0;
    let mut length = 0;
    for byte in encoded {
        for shift in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> shift) & 1);
            length += 1;
            if length > MAX_LENGTH {
                return Err(HpackError::Huffman);
            }
            let index = code.wrapping_sub(code_table.first[length]);
            if index < code_table.count[length] {
                let symbol =
                    code_table.symbols[usize::from(code_table.offset[length]) + index as usize];
                if symbol == EOS {
                    return Err(HpackError::Huffman);
                }
                out.push(symbol as u8);
                code = 0;
                length = 0;
            }
        }
    }
    if length >= 8 || code != (1 << length) - 1 {
        return Err(HpackError::Huffman);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(encoded: &[u8]) -> Result<String, HpackError> {
        let mut out = Vec::new();
        decode(encoded, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn decodes_rfc_7541_examples() {
        // Appendix C.4 and C.6.
        let cases: [(&[u8], &str); 5] = [
            (
                &[
                    0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
                ],
                "www.example.com",
            ),
            (&[0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf], "no-cache"),
            (
                &[0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f],
                "custom-key",
            ),
            (
                &[0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf],
                "custom-value",
            ),
            (&[0x64, 0x02], "302"),
        ];
        for (encoded, text) in cases {
            assert_eq!(decoded(encoded).unwrap(), text);
        }
        assert_eq!(decoded(&[]).unwrap(), "");
    }

    #[test]
    fn rejects_bad_padding_and_eos() {
        // "0" is 00000: padded with zeros instead of ones.
        assert_eq!(decoded(&[0x00]), Err(HpackError::Huffman));
        // A whole byte of padding.
        assert_eq!(decoded(&[0x07, 0xff]), Err(HpackError::Huffman));
        // EOS (30 ones) inside the string.
        assert_eq!(decoded(&[0xff, 0xff, 0xff, 0xff]), Err(HpackError::Huffman));
        // "0" then 3 bits of padding is fine.
        assert_eq!(decoded(&[0x07]).unwrap(), "0");
    }
}
