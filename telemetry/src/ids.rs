//! Random identifiers: streaming session tokens, operation IDs. The bytes come from the
//! kernel's `/dev/urandom`; a failed read is an error, never a predictable identifier.

use std::fs::File;
use std::io::{self, Read as _};

/// Fills `buf` with random bytes from `/dev/urandom`.
///
/// # Errors
/// `/dev/urandom` could not be opened or read.
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    File::open("/dev/urandom")?.read_exact(buf)
}

/// A random version 4 UUID in its hyphenated lowercase form.
///
/// # Errors
/// As [`random_bytes`].
pub fn uuid_v4() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    random_bytes(&mut bytes)?;
    // RFC 9562: version 4 in the high nibble of byte 6, variant 0b10 in the top bits of byte 8.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_fresh_version_4_uuids() -> io::Result<()> {
        let a = uuid_v4()?;
        let b = uuid_v4()?;
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
        Ok(())
    }

    #[test]
    fn random_bytes_fill_the_whole_buffer() -> io::Result<()> {
        // 64 zero bytes from a working source are practically impossible.
        let mut buf = [0u8; 64];
        random_bytes(&mut buf)?;
        assert!(buf.iter().any(|&b| b != 0));
        Ok(())
    }
}
