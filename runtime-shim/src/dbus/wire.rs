//! The D-Bus wire format: method call messages, and the marshalling of the few types the
//! callers use.

/// Message types.
const METHOD_CALL: u8 = 1;
/// A method's reply.
pub(super) const METHOD_RETURN: u8 = 2;
/// An error reply.
pub(super) const ERROR: u8 = 3;
/// A signal.
pub const SIGNAL: u8 = 4;

/// A received message: header fields and the body, still marshalled.
#[derive(Debug, Clone, Default)]
pub struct Message {
    /// Its type.
    pub kind: u8,
    /// `PATH`.
    pub path: String,
    /// `INTERFACE`.
    pub interface: String,
    /// `MEMBER`.
    pub member: String,
    /// `ERROR_NAME`.
    pub error_name: String,
    /// `REPLY_SERIAL`.
    pub reply_serial: u32,
    /// `SIGNATURE` of the body.
    pub signature: String,
    /// The body.
    pub body: Vec<u8>,
    /// Whether it is big-endian.
    pub big_endian: bool,
}

impl Message {
    /// A reader of the body.
    pub fn body(&self) -> Reader<'_> {
        Reader {
            buf: &self.body,
            pos: 0,
            big_endian: self.big_endian,
        }
    }
}

/// A method call to send.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    /// The bus name called.
    pub destination: &'a str,
    /// The object.
    pub path: &'a str,
    /// The interface.
    pub interface: &'a str,
    /// The method.
    pub member: &'a str,
    /// The body's signature.
    pub signature: &'a str,
    /// The body, marshalled little-endian.
    pub body: Vec<u8>,
}

/// A method call message, little-endian.
pub(super) fn encode(serial: u32, call: &Call<'_>) -> Vec<u8> {
    let mut header = Writer::default();
    header.bytes(&[b'l', METHOD_CALL, 0, 1]);
    header.u32(u32::try_from(call.body.len()).unwrap_or(u32::MAX));
    header.u32(serial);
    let fields: [(u8, &str, &str); 5] = [
        (1, "o", call.path),
        (2, "s", call.interface),
        (3, "s", call.member),
        (6, "s", call.destination),
        (8, "g", call.signature),
    ];
    header.array(8, |w| {
        for (code, signature, value) in fields {
            if value.is_empty() {
                continue;
            }
            w.align(8);
            w.bytes(&[code]);
            w.signature(signature);
            if signature == "g" {
                w.signature(value);
            } else {
                w.string(value);
            }
        }
    });
    header.align(8);
    let mut message = header.0;
    message.extend_from_slice(&call.body);
    message
}

/// Marshals values little-endian, aligned from the start of its buffer (a body starts
/// 8-aligned in its message, so this matches the message's alignment).
#[derive(Debug, Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    /// Pads to a multiple of `n`.
    pub fn align(&mut self, n: usize) {
        self.0.resize(self.0.len().next_multiple_of(n), 0);
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    /// `u`.
    pub fn u32(&mut self, value: u32) {
        self.align(4);
        self.bytes(&value.to_le_bytes());
    }

    /// `i`.
    pub fn i32(&mut self, value: i32) {
        self.align(4);
        self.bytes(&value.to_le_bytes());
    }

    /// `b`.
    pub fn bool(&mut self, value: bool) {
        self.u32(u32::from(value));
    }

    /// `s` or `o`.
    pub fn string(&mut self, value: &str) {
        self.u32(u32::try_from(value.len()).unwrap_or(u32::MAX));
        self.bytes(value.as_bytes());
        self.bytes(&[0]);
    }

    /// `g`, and a variant's type.
    pub fn signature(&mut self, value: &str) {
        self.bytes(&[u8::try_from(value.len()).unwrap_or(u8::MAX)]);
        self.bytes(value.as_bytes());
        self.bytes(&[0]);
    }

    /// `a…`: the length, padding to the elements' alignment, then what `elements` writes.
    pub fn array(&mut self, element_alignment: usize, elements: impl FnOnce(&mut Self)) {
        self.u32(0);
        let length_at = self.0.len() - 4;
        self.align(element_alignment);
        let start = self.0.len();
        elements(self);
        let length = u32::try_from(self.0.len() - start).unwrap_or(u32::MAX);
        self.0[length_at..length_at + 4].copy_from_slice(&length.to_le_bytes());
    }
}

/// A header field's value.
pub(super) enum Value {
    Text(String),
    Number(u32),
}

/// Reads marshalled values; `None` when the data ends early or is malformed.
#[derive(Debug)]
pub struct Reader<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
    pub(super) big_endian: bool,
}

impl Reader<'_> {
    pub(super) fn align(&mut self, n: usize) {
        self.pos = self.pos.next_multiple_of(n);
    }

    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let bytes = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(bytes)
    }

    /// `u`.
    pub fn u32(&mut self) -> Option<u32> {
        self.align(4);
        let bytes: [u8; 4] = self.take(4)?.try_into().ok()?;
        Some(if self.big_endian {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        })
    }

    /// `s` or `o`.
    pub fn string(&mut self) -> Option<String> {
        let len = self.u32()? as usize;
        let text = std::str::from_utf8(self.take(len)?).ok()?.to_owned();
        (self.take(1)? == [0]).then_some(text)
    }

    /// `g`.
    fn signature(&mut self) -> Option<String> {
        let len = usize::from(*self.take(1)?.first()?);
        let text = std::str::from_utf8(self.take(len)?).ok()?.to_owned();
        (self.take(1)? == [0]).then_some(text)
    }

    /// One `(yv)` header field whose value is a string, object path, signature or `u`.
    pub(super) fn header_field(&mut self) -> Option<(u8, Value)> {
        let code = *self.take(1)?.first()?;
        let value = match self.signature()?.as_str() {
            "s" | "o" => Value::Text(self.string()?),
            "g" => Value::Text(self.signature()?),
            "u" => Value::Number(self.u32()?),
            // Only the types above are defined for header fields.
            _ => return None,
        };
        Some((code, value))
    }
}
