//! Bytes waiting to be written to one peer, and the splicing that builds
//! them from a read buffer without copying forwarded frames.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use crate::transport::Transport;
use bytes::{Buf, Bytes, BytesMut};

/// Chunks queued for a socket. Forwarded frames are slices of the buffer
/// they were read into (`Bytes` sharing its allocation), so a frame is
/// never copied on its way through.
#[derive(Default)]
pub(crate) struct OutQueue {
    chunks: VecDeque<Bytes>,
    bytes: usize,
}

impl OutQueue {
    pub(crate) fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.bytes += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    pub(crate) fn len(&self) -> usize {
        self.bytes
    }

    /// Gives the chunk list's storage back while nothing is queued: a
    /// mostly idle client should not keep the room its last transaction
    /// needed (see `Session::flush_and_maybe_release`).
    pub(crate) fn release_storage(&mut self) {
        if self.chunks.is_empty() && self.chunks.capacity() > 0 {
            self.chunks = VecDeque::new();
        }
    }

    /// Writes what the socket takes without waiting (through TLS, what
    /// rustls takes, then what the socket takes of its records).
    pub(crate) fn try_flush(&mut self, stream: &mut Transport) -> io::Result<usize> {
        let mut written = 0;
        while !self.chunks.is_empty() {
            let result = if self.chunks.len() == 1 {
                stream.try_write(&self.chunks[0])
            } else {
                let mut slices = [IoSlice::new(&[]); 16];
                let mut n = 0;
                for (slot, chunk) in slices.iter_mut().zip(&self.chunks) {
                    *slot = IoSlice::new(chunk);
                    n += 1;
                }
                stream.try_write_vectored(&slices[..n])
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    written += n;
                    self.consume(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if stream.is_tls() {
            stream.try_flush_tls()?;
        }
        Ok(written)
    }

    fn consume(&mut self, mut n: usize) {
        self.bytes -= n;
        while n > 0 {
            let front = self
                .chunks
                .front_mut()
                .expect("consumed no more than queued");
            if front.len() <= n {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}

/// Walks a read buffer frame by frame, deciding for each whether it goes
/// out as it came (`keep`), not at all (`skip`), or is replaced by other
/// bytes (`insert`). Runs of kept frames leave as one zero-copy chunk.
pub(crate) struct Splicer<'a> {
    src: &'a mut BytesMut,
    at: usize,
    out: &'a mut OutQueue,
}

impl<'a> Splicer<'a> {
    pub(crate) fn new(src: &'a mut BytesMut, out: &'a mut OutQueue) -> Self {
        Splicer { src, at: 0, out }
    }

    /// The bytes not yet decided on.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.src[self.at..]
    }

    pub(crate) fn keep(&mut self, n: usize) {
        self.at += n;
    }

    pub(crate) fn skip(&mut self, n: usize) {
        self.flush();
        self.src.advance(n);
    }

    pub(crate) fn insert(&mut self, bytes: Bytes) {
        self.flush();
        self.out.push(bytes);
    }

    pub(crate) fn out_len(&self) -> usize {
        self.out.len() + self.at
    }

    fn flush(&mut self) {
        if self.at > 0 {
            self.out.push(self.src.split_to(self.at).freeze());
            self.at = 0;
        }
    }
}

impl Drop for Splicer<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_runs_leave_as_one_chunk_and_replacements_keep_order() {
        let mut src = BytesMut::from(&b"aaabbbccc"[..]);
        let mut out = OutQueue::default();
        {
            let mut s = Splicer::new(&mut src, &mut out);
            s.keep(3);
            s.skip(3);
            s.insert(Bytes::from_static(b"XY"));
            s.keep(3);
        }
        let all: Vec<u8> = out.chunks.iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(all, b"aaaXYccc");
        assert_eq!(out.chunks.len(), 3);
        assert!(src.is_empty());
    }

    #[test]
    fn storage_is_given_back_only_when_nothing_is_queued() {
        let mut out = OutQueue::default();
        out.push(Bytes::from_static(b"abc"));
        out.release_storage();
        assert_eq!(out.len(), 3, "a queued chunk survives");
        assert!(out.chunks.capacity() > 0);
        out.consume(3);
        assert!(out.is_empty());
        assert!(out.chunks.capacity() > 0);
        out.release_storage();
        assert_eq!(out.chunks.capacity(), 0);
        out.push(Bytes::from_static(b"de"));
        assert_eq!(out.len(), 2);
    }
}
