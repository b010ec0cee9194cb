//! Reading fields out of a message body without copying.

use crate::FrameError;

pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Cursor { buf, what }
    }

    fn malformed(&self) -> FrameError {
        FrameError::Malformed { what: self.what }
    }

    /// A NUL-terminated string, returned without its terminator.
    pub(crate) fn cstr(&mut self) -> Result<&'a [u8], FrameError> {
        // memchr compares a word (or vector) at a time: a query's text is
        // the longest field the proxy walks on every message.
        let end = memchr::memchr(0, self.buf).ok_or_else(|| self.malformed())?;
        let s = &self.buf[..end];
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, FrameError> {
        let (&b, rest) = self.buf.split_first().ok_or_else(|| self.malformed())?;
        self.buf = rest;
        Ok(b)
    }

    pub(crate) fn i32(&mut self) -> Result<i32, FrameError> {
        if self.buf.len() < 4 {
            return Err(self.malformed());
        }
        let v = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        self.buf = &self.buf[4..];
        Ok(v)
    }

    pub(crate) fn rest(self) -> &'a [u8] {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cstr_ends_at_the_first_nul_whatever_its_length() {
        for len in [0usize, 1, 15, 16, 17, 40, 200] {
            let mut buf = vec![b'x'; len];
            buf.extend_from_slice(b"\0tail\0");
            let mut c = Cursor::new(&buf, "test");
            assert_eq!(c.cstr().unwrap().len(), len);
            assert_eq!(c.cstr().unwrap(), b"tail");
            assert!(c.cstr().is_err());
        }
        for len in [0usize, 15, 16, 17, 40] {
            let buf = vec![b'x'; len];
            assert!(Cursor::new(&buf, "test").cstr().is_err());
        }
    }
}
