//! Data-key caches: the writer's current key, rotated by age and use count, and the readers'
//! unwrapped keys, kept for a TTL. Both zeroize keys when they drop them.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use encrypt_repo_format::{DataKey, DataKeyId};
use tokio::time::Instant;

use crate::error::Result;

/// How long and how much a data key is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// A writer starts a new data key once its current one is this old (default 1 hour).
    pub rotation_interval: Duration,
    /// …or once it has sealed this many objects (default 1,000,000).
    pub max_objects_per_key: u64,
    /// Readers keep an unwrapped key this long before asking the provider again (default
    /// 1 hour), so revoking a master key ends access within this time. Must be non-zero.
    pub reader_ttl: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            rotation_interval: Duration::from_secs(3600),
            max_objects_per_key: 1_000_000,
            reader_ttl: Duration::from_secs(3600),
        }
    }
}

struct Current {
    id: DataKeyId,
    key: DataKey,
    created: Instant,
    uses: u64,
}

/// The writer's current data key. Concurrent callers share one rotation: only one of them calls
/// the provider, the others wait for its key.
#[derive(Clone)]
pub struct WriterKey {
    policy: CachePolicy,
    slot: Arc<tokio::sync::Mutex<Option<Current>>>,
}

impl std::fmt::Debug for WriterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterKey")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl WriterKey {
    /// An empty slot with `policy`.
    #[must_use]
    pub fn new(policy: CachePolicy) -> Self {
        Self {
            policy,
            slot: Arc::default(),
        }
    }

    /// The key to seal the next object with. If there is none, or it is too old or too used,
    /// `rotate` is called (once, however many callers are waiting) to make the next one.
    ///
    /// # Errors
    /// Whatever `rotate` returns; the slot is left empty so the next call tries again.
    pub async fn current<F, Fut>(&self, rotate: F) -> Result<(DataKeyId, DataKey)>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(DataKeyId, DataKey)>>,
    {
        let mut slot = self.slot.lock().await;
        let fresh = slot.as_ref().is_some_and(|c| {
            c.created.elapsed() < self.policy.rotation_interval
                && c.uses < self.policy.max_objects_per_key
        });
        if !fresh {
            *slot = None; // drops (zeroizes) the old key before asking for a new one
            let (id, key) = rotate().await?;
            *slot = Some(Current {
                id,
                key,
                created: Instant::now(),
                uses: 0,
            });
        }
        let Some(c) = slot.as_mut() else {
            unreachable!("slot was just filled")
        };
        c.uses += 1;
        Ok((c.id, c.key.clone()))
    }

    /// Forgets the current key: the next write starts a new one.
    pub async fn rotate_now(&self) {
        *self.slot.lock().await = None;
    }
}

type Entry = Arc<tokio::sync::Mutex<Option<(DataKey, Instant)>>>;

/// Unwrapped data keys for readers, each kept for the policy's TTL. Concurrent cold reads of the
/// same key share one unwrap.
#[derive(Clone)]
pub struct ReaderCache {
    ttl: Duration,
    entries: Arc<Mutex<HashMap<DataKeyId, Entry>>>,
}

impl std::fmt::Debug for ReaderCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReaderCache")
            .field("ttl", &self.ttl)
            .field("entries", &self.len())
            .finish()
    }
}

impl ReaderCache {
    /// An empty cache with `policy.reader_ttl`.
    #[must_use]
    pub fn new(policy: CachePolicy) -> Self {
        Self {
            ttl: policy.reader_ttl,
            entries: Arc::default(),
        }
    }

    /// The key `id`, from the cache or, if absent or expired, from `unwrap` (called once however
    /// many callers wait for the same id).
    ///
    /// # Errors
    /// Whatever `unwrap` returns; nothing is cached then.
    pub async fn get<F, Fut>(&self, id: DataKeyId, unwrap: F) -> Result<DataKey>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<DataKey>>,
    {
        let entry = self.lock_entries().entry(id).or_default().clone();
        let mut slot = entry.lock().await;
        if let Some((key, at)) = slot.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(key.clone());
        }
        *slot = None; // expired: zeroize now, not at the next successful unwrap
        let key = unwrap().await?;
        *slot = Some((key.clone(), Instant::now()));
        Ok(key)
    }

    /// Drops (and zeroizes) the cached key `id`, if any.
    pub fn forget(&self, id: DataKeyId) {
        self.lock_entries().remove(&id);
    }

    /// Drops (and zeroizes) every cached key.
    pub fn flush(&self) {
        self.lock_entries().clear();
    }

    /// Number of ids with an entry (cached or being unwrapped).
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock_entries().len()
    }

    /// True if nothing is cached.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock_entries(&self) -> std::sync::MutexGuard<'_, HashMap<DataKeyId, Entry>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts and
        // clears), so a poisoned lock is still usable.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    fn policy() -> CachePolicy {
        CachePolicy {
            rotation_interval: Duration::from_secs(3600),
            max_objects_per_key: 100,
            reader_ttl: Duration::from_secs(600),
        }
    }

    async fn counting_rotate(calls: &AtomicU64) -> Result<(DataKeyId, DataKey)> {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await; // let the other writers pile up on the lock
        Ok((DataKeyId([n as u8; 16]), DataKey::generate()?))
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_writers_share_one_rotation_per_interval() {
        let w = WriterKey::new(policy());
        let calls = AtomicU64::new(0);
        let ids = futures_join(16, || w.current(|| counting_rotate(&calls))).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "16 concurrent writers, one provider call"
        );
        assert!(
            ids.iter()
                .all(|r| r.as_ref().unwrap().0 == DataKeyId([0; 16]))
        );

        tokio::time::advance(Duration::from_secs(3599)).await;
        w.current(|| counting_rotate(&calls)).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "still inside the interval");
        tokio::time::advance(Duration::from_secs(2)).await;
        let (id, _) = w.current(|| counting_rotate(&calls)).await.unwrap();
        assert_eq!(
            (calls.load(Ordering::SeqCst), id),
            (2, DataKeyId([1; 16])),
            "rotated after the interval"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn writer_rotates_by_use_count_and_on_demand() {
        let w = WriterKey::new(policy());
        let calls = AtomicU64::new(0);
        for _ in 0..100 {
            w.current(|| counting_rotate(&calls)).await.unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        w.current(|| counting_rotate(&calls)).await.unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "the 101st object gets a new key"
        );
        w.rotate_now().await;
        w.current(|| counting_rotate(&calls)).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_rotation_is_retried() {
        let w = WriterKey::new(policy());
        let err = w
            .current(|| async {
                Err(crate::Error::Provider {
                    provider: "t".into(),
                    message: "down".into(),
                })
            })
            .await;
        assert!(err.is_err());
        let calls = AtomicU64::new(0);
        w.current(|| counting_rotate(&calls)).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn readers_unwrap_once_per_key_per_ttl() {
        let cache = ReaderCache::new(policy());
        let calls = AtomicU64::new(0);
        let unwrap = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok(DataKey::from_bytes([7; 32]))
        };
        let id = DataKeyId([1; 16]);
        let got = futures_join(16, || cache.get(id, unwrap)).await;
        assert!(
            got.iter()
                .all(|k| k.as_ref().unwrap().expose_secret() == &[7; 32])
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "16 cold readers, one unwrap"
        );
        tokio::time::advance(Duration::from_secs(599)).await;
        cache.get(id, unwrap).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        cache.get(id, unwrap).await.unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "expired after the TTL: the provider is asked again"
        );
        cache.flush();
        assert!(cache.is_empty());
        cache.get(id, unwrap).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3, "flushed: asked again");
    }

    #[tokio::test]
    async fn failed_unwrap_caches_nothing() {
        let cache = ReaderCache::new(policy());
        let id = DataKeyId([1; 16]);
        let r = cache
            .get(id, || async {
                Err(crate::Error::UnwrapFailed {
                    provider: "t".into(),
                    data_key_id: "x".into(),
                })
            })
            .await;
        assert!(r.is_err());
        let k = cache
            .get(id, || async { Ok(DataKey::from_bytes([3; 32])) })
            .await
            .unwrap();
        assert_eq!(k.expose_secret(), &[3; 32]);
    }

    /// Runs `n` copies of a future concurrently on the current task and collects the results.
    async fn futures_join<F, Fut, T>(n: usize, make: F) -> Vec<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = T>,
    {
        let futs: Vec<_> = (0..n).map(|_| Box::pin(make())).collect();
        let mut out = Vec::new();
        let mut pending: Vec<_> = futs.into_iter().map(Some).collect();
        std::future::poll_fn(|cx| {
            let mut all = true;
            for slot in &mut pending {
                if let Some(f) = slot {
                    match f.as_mut().poll(cx) {
                        std::task::Poll::Ready(v) => {
                            out.push(v);
                            *slot = None;
                        }
                        std::task::Poll::Pending => all = false,
                    }
                }
            }
            if all {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
        out
    }
}
