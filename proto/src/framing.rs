//! conmon's attach-socket framing (`attachContainer`), as C conmon and conmon-rs speak it on a
//! SOCK_SEQPACKET socket: every packet from the monitor is one type byte followed by output, at
//! most [`MAX_PACKET`] bytes in all; a packet of the single byte [`END`] says the output has
//! ended. Clients send raw input bytes, in packets of at most [`MAX_PACKET`] bytes.

/// Type byte of a packet carrying standard output (all output, on a terminal).
pub const STDOUT: u8 = 2;

/// Type byte of a packet carrying standard error.
pub const STDERR: u8 = 3;

/// The whole end-of-output packet.
pub const END: u8 = 0;

/// Largest packet either side sends, type byte included.
pub const MAX_PACKET: usize = 8192;

/// Largest output payload of one packet.
pub const MAX_PAYLOAD: usize = MAX_PACKET - 1;
