//! Random identifiers (operation ids, one-shot URL tokens) from the kernel's generator. A read
//! failure is an error, never a predictable id.

use std::fs::File;
use std::io::{self, Read as _};

/// Fills `buf` from `/dev/urandom`.
///
/// # Errors
/// When the generator cannot be read.
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    File::open("/dev/urandom")?.read_exact(buf)
}

/// `len` random bytes as lowercase hex.
///
/// # Errors
/// When the generator cannot be read.
pub fn random_hex(len: usize) -> io::Result<String> {
    let mut bytes = vec![0; len];
    random_bytes(&mut bytes)?;
    Ok(hex(&bytes))
}

/// A random (version 4) UUID in its hyphenated form.
///
/// # Errors
/// When the generator cannot be read.
pub fn uuid_v4() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    random_bytes(&mut bytes)?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex(&bytes);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_fresh_version_4() {
        let (a, b) = (uuid_v4().unwrap(), uuid_v4().unwrap());
        assert_ne!(a, b);
        let groups: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
    }

    #[test]
    fn hex_ids_have_the_asked_length() {
        let id = random_hex(16).unwrap();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
