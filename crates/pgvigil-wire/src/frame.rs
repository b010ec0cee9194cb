//! The frame header every message after startup begins with.

use thiserror::Error;

/// One tag byte plus a 4-byte length that counts itself but not the tag.
pub const HEADER_LEN: usize = 5;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("invalid message length {length} for message type {tag:?}")]
    BadLength { tag: char, length: u32 },
    #[error("message of type {tag:?} is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        tag: char,
        size: usize,
        limit: usize,
    },
    #[error("malformed {what} message")]
    Malformed { what: &'static str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub tag: u8,
    /// Length of the whole frame on the wire, tag and length field included.
    pub frame_len: usize,
}

impl FrameHeader {
    /// Reads the header at the start of `buf`, if five bytes are there.
    ///
    /// `max_frame` bounds what a peer can make us buffer; frames above it
    /// are an error for the caller to report, not something to allocate.
    #[inline]
    pub fn peek(buf: &[u8], max_frame: usize) -> Result<Option<FrameHeader>, FrameError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let tag = buf[0];
        let length = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
        if length < 4 {
            return Err(FrameError::BadLength {
                tag: tag as char,
                length,
            });
        }
        // Saturating: where usize is 32 bits, u32::MAX + 1 would overflow.
        let frame_len = (length as usize).saturating_add(1);
        if frame_len > max_frame {
            return Err(FrameError::TooLarge {
                tag: tag as char,
                size: frame_len,
                limit: max_frame,
            });
        }
        Ok(Some(FrameHeader { tag, frame_len }))
    }

    pub fn body_len(&self) -> usize {
        self.frame_len - HEADER_LEN
    }
}

/// Splits `buf` into the complete frames at its start.
///
/// Returns each frame's header and the number of bytes they cover; a
/// trailing partial frame is left for the next read.
pub fn complete_frames(
    buf: &[u8],
    max_frame: usize,
) -> Result<(Vec<FrameHeader>, usize), FrameError> {
    let mut headers = Vec::new();
    let mut at = 0;
    while let Some(h) = FrameHeader::peek(&buf[at..], max_frame)? {
        if buf.len() - at < h.frame_len {
            break;
        }
        headers.push(h);
        at += h.frame_len;
    }
    Ok((headers, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_needs_five_bytes() {
        assert_eq!(FrameHeader::peek(b"Q\0\0\0", 100), Ok(None));
    }

    #[test]
    fn length_below_four_is_rejected() {
        assert!(matches!(
            FrameHeader::peek(b"Q\0\0\0\x03", 100),
            Err(FrameError::BadLength { .. })
        ));
    }

    #[test]
    fn oversized_frame_is_rejected_before_buffering() {
        assert!(matches!(
            FrameHeader::peek(b"Q\x7f\0\0\0", 1 << 20),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn complete_frames_stops_at_partial_frame() {
        let mut buf = b"Z\0\0\0\x05I".to_vec();
        buf.extend_from_slice(b"C\0\0\0\x09SEL");
        let (headers, used) = complete_frames(&buf, 1 << 20).unwrap();
        assert_eq!(headers.len(), 1);
        assert_eq!(used, 6);
    }
}
