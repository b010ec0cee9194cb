//! PostgreSQL wire-protocol framing for a proxy.
//!
//! A proxy forwards almost everything untouched, so this crate is built
//! around the 5-byte frame header (`tag`, big-endian `length`): walking
//! headers is cheap, and only the few message types the proxy must
//! understand get a typed, borrowed view. Nothing here allocates a `String`
//! from message text, so non-UTF-8 traffic survives byte for byte. The one
//! exception is the startup packet, whose parameter names and values become
//! (lossily decoded) Strings: they are settings, not traffic.
//!
//! No sockets and no clocks: every function works on byte slices, so the
//! framing is tested, fuzzed and benchmarked on its own.

pub mod backend;
mod cursor;
pub mod frame;
pub mod frontend;
pub mod startup;

pub use frame::{FrameError, FrameHeader, HEADER_LEN};
