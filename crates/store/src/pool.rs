//! [`BufferPool`]: recycled byte buffers handed out as [`Bytes`] that come back when dropped.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Buffers recycled through the [`Bytes`] made from them: when the last clone of such a `Bytes`
/// is dropped (by a backend that wrote a part, a consumer that used a piece) its buffer returns
/// here, so a long stream reuses a few buffers instead of allocating and zero-filling a fresh one
/// per piece. At most [`BufferPool::keep`] idle buffers are held; more are freed.
#[derive(Debug, Clone)]
pub struct BufferPool {
    idle: Arc<Mutex<Vec<Vec<u8>>>>,
    keep: usize,
}

/// A pooled buffer's first `len` bytes, given back to the pool on drop.
struct Pooled {
    buf: Vec<u8>,
    len: usize,
    pool: BufferPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if let Ok(mut idle) = self.pool.idle.lock()
            && idle.len() < self.pool.keep
        {
            idle.push(buf);
        }
    }
}

impl BufferPool {
    /// A pool that holds at most `keep` idle buffers.
    #[must_use]
    pub fn new(keep: usize) -> Self {
        Self {
            idle: Arc::default(),
            keep,
        }
    }

    /// How many idle buffers it holds at most.
    #[must_use]
    pub fn keep(&self) -> usize {
        self.keep
    }

    /// A buffer of exactly `len` bytes whose contents are unspecified (a recycled one holds
    /// whatever it held): the caller overwrites what it uses.
    #[must_use]
    pub fn take(&self, len: usize) -> Vec<u8> {
        match self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            Some(b) if b.len() == len => b,
            _ => vec![0; len],
        }
    }

    /// `buf[..len]` as `Bytes` that give `buf` back to this pool when the last clone is dropped.
    ///
    /// # Panics
    /// If `len > buf.len()`.
    #[must_use]
    pub fn bytes(&self, buf: Vec<u8>, len: usize) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            len,
            pool: self.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_their_bytes_go_and_at_most_keep_are_held() {
        let pool = BufferPool::new(2);
        let a = pool.take(8);
        let ptr = a.as_ptr();
        let bytes = pool.bytes(a, 5);
        assert_eq!(bytes.len(), 5);
        let clone = bytes.clone();
        drop(bytes);
        assert!(
            pool.idle.lock().expect("lock").is_empty(),
            "a clone still holds it"
        );
        drop(clone);
        let again = pool.take(8);
        assert_eq!(again.as_ptr(), ptr, "the same buffer, reused");
        // A buffer of another size is not handed out for this one.
        drop(pool.bytes(again, 8));
        assert_eq!(pool.take(16).len(), 16);
        // At most `keep` idle buffers.
        let bufs: Vec<_> = (0..4).map(|_| pool.bytes(pool.take(8), 8)).collect();
        drop(bufs);
        assert_eq!(pool.idle.lock().expect("lock").len(), 2);
    }
}
