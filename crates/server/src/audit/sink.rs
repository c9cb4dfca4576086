//! Where events go: standard output as JSON lines, and encrypted, batched objects in the system
//! repository, `audit/<yyyy-mm-dd>/<node>-<unix-ms>-<seq>.jsonl` (one event per line).
//!
//! Producers never wait: an event is serialized and handed to a bounded queue
//! ([`SinkSettings::queue`] events). One background task takes events off the queue, passes
//! each line to a stdout writer thread (its own bounded queue, so a stdout nobody reads cannot
//! stall the task) and buffers it for the next object. The buffer is written as one object every
//! [`SinkSettings::flush_events`] events or [`SinkSettings::flush_seconds`] seconds, whichever
//! comes first, and on shutdown. Memory stays bounded: when a queue is full (the sink is stuck —
//! stdout not read, the system repository unreachable) events are dropped, counted, and a
//! warning says how many; a batch that cannot be written is kept for the next attempt up to
//! [`MAX_PENDING_BATCHES`] batches, then the oldest is dropped the same way.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt as _;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use super::Event;

/// An event time or a `--from` / `--to` bound.
pub type Timestamp = DateTime<Utc>;

/// The prefix of audit objects in the system repository.
pub const AUDIT_PREFIX: &str = "audit";
/// Failed batches kept for a later attempt before the oldest is dropped.
pub const MAX_PENDING_BATCHES: usize = 16;

fn default_flush_events() -> usize {
    1000
}
fn default_flush_seconds() -> u64 {
    10
}
fn default_queue() -> usize {
    10_000
}
fn yes() -> bool {
    true
}

/// `server.audit`: static settings of the sinks (the audit *configuration* is the dynamic
/// document of the REST API).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSettings {
    /// This node's name in events and object names (default: the host name). Letters, digits,
    /// `.`, `_` and `-`; anything else becomes `_`.
    #[serde(default)]
    pub node_id: Option<String>,
    /// Write an object after this many events (default 1000).
    #[serde(default = "default_flush_events")]
    pub flush_events: usize,
    /// … or after this many seconds with events pending (default 10).
    #[serde(default = "default_flush_seconds")]
    pub flush_seconds: u64,
    /// Events waiting for the sink at most; more are dropped and counted (default 10000).
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Print events on standard output as JSON lines (default true).
    #[serde(default = "yes")]
    pub stdout: bool,
    /// Answer a request only once its events are stored in the system repository (as Vault
    /// does); when they cannot be stored the client gets 503 instead of the handler's answer
    /// (default false: events are buffered, and a crash loses at most the last
    /// `flush_seconds` seconds or `flush_events` events).
    #[serde(default)]
    pub fail_closed: bool,
}

impl Default for SinkSettings {
    fn default() -> Self {
        Self {
            node_id: None,
            flush_events: default_flush_events(),
            flush_seconds: default_flush_seconds(),
            queue: default_queue(),
            stdout: true,
            fail_closed: false,
        }
    }
}

impl SinkSettings {
    /// Checks the bounds.
    ///
    /// # Errors
    /// The key at fault.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=100_000).contains(&self.flush_events) {
            return Err("server.audit.flush_events: 1 … 100000".into());
        }
        if !(1..=3600).contains(&self.flush_seconds) {
            return Err("server.audit.flush_seconds: 1 … 3600".into());
        }
        if !(16..=1_000_000).contains(&self.queue) {
            return Err("server.audit.queue: 16 … 1000000".into());
        }
        Ok(())
    }

    /// The node id: configured, or the host name, made safe for object names.
    #[must_use]
    pub fn node(&self) -> String {
        let raw = self.node_id.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .or_else(|_| std::fs::read_to_string("/etc/hostname"))
                .map(|s| s.trim().to_owned())
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "node".into())
        });
        raw.chars()
            .take(64)
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

/// What the sink task is asked to do.
#[derive(Debug)]
pub(super) enum Msg {
    /// One serialized event, with its day.
    Event(String, NaiveDate),
    /// Write what is buffered, then answer.
    Flush(oneshot::Sender<()>),
    /// Events of one request in fail-closed mode: written at once (with whatever else is
    /// queued, as one object), then answered `true` if they are in the system repository.
    Durable(Vec<(String, NaiveDate)>, oneshot::Sender<bool>),
}

/// Counters shared with the producers.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) dropped: AtomicU64,
}

impl Counters {
    pub(super) fn drop_one(&self, why: &str) {
        self.drop_n(1, why);
    }

    pub(super) fn drop_n(&self, count: u64, why: &str) {
        let before = self.dropped.fetch_add(count, Ordering::Relaxed);
        let n = before + count;
        // Warn when the count crosses a power of two or a multiple of 1000.
        let crossed = |f: fn(u64) -> u64| f(n) != f(before);
        if crossed(|x| 64 - u64::from(x.leading_zeros())) || crossed(|x| x / 1000) {
            tracing::warn!(
                dropped = n,
                why,
                "audit events dropped: the audit sink is stuck"
            );
        }
    }
}

/// Lines also collected in memory (tests), as they go to stdout.
pub(super) type Capture = Arc<Mutex<Option<Vec<String>>>>;

struct Sink<S: ?Sized> {
    store: Arc<S>,
    node: String,
    settings: SinkSettings,
    buffer: Vec<String>,
    day: Option<NaiveDate>,
    pending: VecDeque<(NaiveDate, Bytes)>,
    seq: u64,
    stdout: Option<std::sync::mpsc::SyncSender<String>>,
    capture: Capture,
    counters: Arc<Counters>,
}

/// Starts the sink task; it ends (after a last flush) when every sender is dropped.
pub(super) fn spawn<S: ObjectStore + ?Sized>(
    store: Arc<S>,
    node: String,
    settings: SinkSettings,
    capture: Capture,
    counters: Arc<Counters>,
) -> (mpsc::Sender<Msg>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(settings.queue);
    let stdout = settings.stdout.then(|| stdout_thread(settings.queue));
    let sink = Sink {
        store,
        node,
        settings,
        buffer: Vec::new(),
        day: None,
        pending: VecDeque::new(),
        seq: 0,
        stdout,
        capture,
        counters,
    };
    (tx, tokio::spawn(sink.run(rx)))
}

/// [`spawn`] with the time-based flushes triggered by `ticks` instead of a clock.
#[cfg(test)]
fn spawn_with_ticks<S: ObjectStore + ?Sized>(
    store: Arc<S>,
    settings: SinkSettings,
    capture: Capture,
    counters: Arc<Counters>,
    ticks: impl futures::Stream<Item = ()> + Send + 'static,
) -> (mpsc::Sender<Msg>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(settings.queue);
    let sink = Sink {
        store,
        node: "t".into(),
        settings,
        buffer: Vec::new(),
        day: None,
        pending: VecDeque::new(),
        seq: 0,
        stdout: None,
        capture,
        counters,
    };
    (tx, tokio::spawn(sink.run_with(rx, ticks)))
}

/// A thread that writes lines to stdout, so a stdout pipe nobody reads blocks only it.
fn stdout_thread(queue: usize) -> std::sync::mpsc::SyncSender<String> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<String>(queue);
    let spawned = std::thread::Builder::new()
        .name("audit-stdout".into())
        .spawn(move || {
            use std::io::Write as _;
            for line in rx {
                let mut out = std::io::stdout().lock();
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no audit stdout thread; events go to the system repository only");
    }
    tx
}

impl<S: ObjectStore + ?Sized> Sink<S> {
    async fn run(self, rx: mpsc::Receiver<Msg>) {
        let every = Duration::from_secs(self.settings.flush_seconds);
        // `interval` would tick at once: a flush right after the first event, splitting the
        // first batch. The first tick is one interval after the start.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ticks = futures::stream::poll_fn(move |cx| tick.poll_tick(cx).map(|_| Some(())));
        self.run_with(rx, ticks).await;
    }

    /// The loop, with the time-based flushes coming from `ticks` (tests drive them by hand).
    async fn run_with(
        mut self,
        mut rx: mpsc::Receiver<Msg>,
        ticks: impl futures::Stream<Item = ()> + Send,
    ) {
        let mut ticks = std::pin::pin!(ticks);
        loop {
            tokio::select! {
                // Messages first: a flush is never chosen over an event already queued.
                biased;
                msg = rx.recv() => match msg {
                    Some(Msg::Event(line, day)) => {
                        self.take(line, day);
                        if self.buffer.len() >= self.settings.flush_events {
                            self.flush().await;
                        }
                    }
                    Some(Msg::Flush(done)) => {
                        self.flush().await;
                        let _ = done.send(());
                    }
                    Some(Msg::Durable(lines, done)) => {
                        for (line, day) in lines {
                            self.take(line, day);
                        }
                        self.group_commit(&mut rx, vec![done]).await;
                    }
                    None => {
                        self.flush().await;
                        return;
                    }
                },
                Some(()) = futures::StreamExt::next(&mut ticks) => self.flush().await,
            }
        }
    }

    /// Fail-closed writes: takes every message already queued (other requests' events), writes
    /// them as one object, and tells each waiter whether its events are stored. A waiter's
    /// events are in the newest batch, which is written only after every older one, so they are
    /// stored exactly when nothing is left pending.
    async fn group_commit(
        &mut self,
        rx: &mut mpsc::Receiver<Msg>,
        mut waiters: Vec<oneshot::Sender<bool>>,
    ) {
        let mut flushes = Vec::new();
        // At most one queue's worth, so a steady stream of events cannot hold the answers back.
        for _ in 0..self.settings.queue {
            let Ok(msg) = rx.try_recv() else { break };
            match msg {
                Msg::Event(line, day) => self.take(line, day),
                Msg::Durable(lines, done) => {
                    for (line, day) in lines {
                        self.take(line, day);
                    }
                    waiters.push(done);
                }
                Msg::Flush(done) => flushes.push(done),
            }
        }
        self.flush().await;
        let stored = self.pending.is_empty();
        for w in waiters {
            let _ = w.send(stored);
        }
        for f in flushes {
            let _ = f.send(());
        }
    }

    fn take(&mut self, line: String, day: NaiveDate) {
        if let Some(out) = &self.stdout {
            match out.try_send(line.clone()) {
                Ok(()) => {}
                Err(std::sync::mpsc::TrySendError::Full(_)) => {
                    self.counters.drop_one("stdout is not being read");
                }
                Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                    tracing::warn!(
                        "standard output is closed: audit events go to the system repository only"
                    );
                    self.stdout = None;
                }
            }
        }
        if let Some(lines) = self
            .capture
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
        {
            lines.push(line.clone());
        }
        self.day.get_or_insert(day);
        self.buffer.push(line);
    }

    async fn flush(&mut self) {
        if !self.buffer.is_empty() {
            let mut body = self.buffer.join("\n");
            body.push('\n');
            self.buffer.clear();
            let day = self.day.take().unwrap_or_else(|| Utc::now().date_naive());
            if self.pending.len() >= MAX_PENDING_BATCHES
                && let Some((_, oldest)) = self.pending.pop_front()
            {
                let events = oldest.iter().filter(|&&b| b == b'\n').count() as u64;
                self.counters
                    .drop_n(events, "the system repository refuses audit objects");
            }
            self.pending.push_back((day, Bytes::from(body)));
        }
        while let Some((day, body)) = self.pending.front().cloned() {
            if let Err(e) = self.write(day, body).await {
                tracing::warn!(error = %e, batches = self.pending.len(), "writing an audit object failed; kept for the next attempt");
                return;
            }
            self.pending.pop_front();
        }
    }

    async fn write(&mut self, day: NaiveDate, body: Bytes) -> object_store::Result<()> {
        for _ in 0..8 {
            self.seq += 1;
            let path = Path::from(format!(
                "{AUDIT_PREFIX}/{}/{}-{:013}-{:06}.jsonl",
                day.format("%Y-%m-%d"),
                self.node,
                Utc::now().timestamp_millis(),
                self.seq
            ));
            let opts = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            match self
                .store
                .put_opts(&path, PutPayload::from(body.clone()), opts)
                .await
            {
                Err(object_store::Error::AlreadyExists { .. }) => continue,
                r => return r.map(|_| ()),
            }
        }
        Err(object_store::Error::Generic {
            store: "audit",
            source: "no free audit object name".into(),
        })
    }
}

/// Why audit objects could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Listing or reading failed (including decryption).
    #[error("reading audit objects: {0}")]
    Store(#[from] object_store::Error),
    /// A line is not an event.
    #[error("audit object {object} line {line}: not an audit event ({error})")]
    Parse {
        /// The object.
        object: String,
        /// 1-based line.
        line: usize,
        /// What the parser said.
        error: String,
    },
}

/// Reads the events stored in `store` (the opened system repository) with `from <= timestamp <
/// to`, in time order. Only the day directories that can hold such events are listed.
///
/// # Errors
/// [`ReadError`].
pub async fn read_events<S: ObjectStore + ?Sized>(
    store: &S,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<Vec<Event>, ReadError> {
    let days = store
        .list_with_delimiter(Some(&Path::from(AUDIT_PREFIX)))
        .await?;
    let mut events = Vec::new();
    for dir in days.common_prefixes {
        let Some(day) = dir
            .filename()
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        else {
            continue;
        };
        // A batch is filed under the day of its first event: it may hold the next day's too.
        if from.is_some_and(|f| day.succ_opt().is_some_and(|next| next < f.date_naive()))
            || to.is_some_and(|t| day > t.date_naive())
        {
            continue;
        }
        let metas: Vec<_> = store.list(Some(&dir)).try_collect().await?;
        for m in metas {
            let bytes = store.get(&m.location).await?.bytes().await?;
            for (i, line) in String::from_utf8_lossy(&bytes).lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let e: Event = serde_json::from_str(line).map_err(|e| ReadError::Parse {
                    object: m.location.to_string(),
                    line: i + 1,
                    error: e.to_string(),
                })?;
                let at = e.time();
                if from.is_some_and(|f| at.is_none_or(|a| a < f))
                    || to.is_some_and(|t| at.is_none_or(|a| a >= t))
                {
                    continue;
                }
                events.push(e);
            }
        }
    }
    events.sort_by_key(Event::time);
    Ok(events)
}

/// A `--from` / `--to` bound: RFC 3339, or a date `YYYY-MM-DD` meaning the start of that day
/// (`end = false`) or the start of the next day (`end = true`, so `--to DAY` includes DAY).
#[must_use]
pub fn parse_time_bound(s: &str, end: bool) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Some(t.with_timezone(&Utc));
    }
    let day = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()?;
    let day = if end { day.succ_opt()? } else { day };
    Some(day.and_hms_opt(0, 0, 0)?.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SinkSettings {
        SinkSettings {
            node_id: Some("t".into()),
            flush_events: 2,
            flush_seconds: 3600,
            queue: 16,
            stdout: false,
            fail_closed: false,
        }
    }

    async fn objects(store: &object_store::local::LocalFileSystem) -> Vec<String> {
        let mut bodies = Vec::new();
        let mut metas: Vec<_> = store
            .list(Some(&Path::from(AUDIT_PREFIX)))
            .try_collect()
            .await
            .expect("list");
        metas.sort_by(|a, b| a.location.cmp(&b.location));
        for m in metas {
            let b = store
                .get(&m.location)
                .await
                .expect("get")
                .bytes()
                .await
                .expect("body");
            bodies.push(String::from_utf8(b.to_vec()).expect("utf-8"));
        }
        bodies
    }

    #[tokio::test]
    async fn a_store_refusing_objects_keeps_at_most_16_batches_then_drops_and_counts_events() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("system");
        std::fs::create_dir(&root).expect("root");
        // `audit` is a file: every object put under it fails (the repository "unreachable").
        std::fs::write(root.join(AUDIT_PREFIX), b"").expect("blocker");
        let store =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&root).expect("store"));
        let counters = Arc::new(Counters::default());
        let (tx, task) = spawn(
            store.clone(),
            "t".into(),
            settings(),
            Capture::default(),
            counters.clone(),
        );
        let day = Utc::now().date_naive();
        // 40 events in batches of 2: 20 batches, 16 kept, the 4 oldest (8 events) dropped.
        for i in 0..40 {
            tx.send(Msg::Event(format!("{{\"n\":{i}}}"), day))
                .await
                .expect("sink runs");
        }
        let (done, wait) = oneshot::channel();
        tx.send(Msg::Flush(done)).await.expect("sink runs");
        wait.await.expect("flushed");
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 8);
        // The repository is back: the kept batches are written, oldest first, nothing lost
        // beyond the counted ones.
        std::fs::remove_file(root.join(AUDIT_PREFIX)).expect("unblock");
        let (done, wait) = oneshot::channel();
        tx.send(Msg::Flush(done)).await.expect("sink runs");
        wait.await.expect("flushed");
        let bodies = objects(&store).await;
        assert_eq!(bodies.len(), MAX_PENDING_BATCHES);
        let all: String = bodies.concat();
        let expected: String = (8..40).map(|i| format!("{{\"n\":{i}}}\n")).collect();
        assert_eq!(all, expected);
        drop(tx);
        task.await.expect("sink ends when its senders go");
    }

    /// Waits (without a time bound that could fail by chance: the test harness's own timeout
    /// is the limit) until `cond` holds, yielding to the sink task in between.
    async fn until(mut cond: impl FnMut() -> bool) {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn captured(c: &Capture) -> usize {
        c.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map_or(0, Vec::len)
    }

    fn store_in(dir: &std::path::Path) -> Arc<object_store::local::LocalFileSystem> {
        let root = dir.join("system");
        std::fs::create_dir_all(&root).expect("root");
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&root).expect("store"))
    }

    #[tokio::test]
    async fn a_flush_happens_on_a_tick_and_never_before_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_in(dir.path());
        let capture: Capture = Arc::new(Mutex::new(Some(Vec::new())));
        let (tick_tx, tick_rx) = mpsc::unbounded_channel::<()>();
        let ticks =
            futures::stream::unfold(
                tick_rx,
                |mut rx| async move { rx.recv().await.map(|t| (t, rx)) },
            );
        let (tx, task) = spawn_with_ticks(
            store.clone(),
            SinkSettings {
                flush_events: 1000,
                ..settings()
            },
            capture.clone(),
            Arc::default(),
            ticks,
        );
        let day = Utc::now().date_naive();
        tx.send(Msg::Event("{\"n\":0}".into(), day))
            .await
            .expect("sink runs");
        until(|| captured(&capture) == 1).await;
        assert!(objects(&store).await.is_empty(), "no tick, no object");
        tick_tx.send(()).expect("ticks");
        loop {
            let bodies = objects(&store).await;
            if !bodies.is_empty() {
                assert_eq!(bodies, ["{\"n\":0}\n"]);
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(tx);
        task.await.expect("ends");
    }

    #[tokio::test]
    async fn the_first_timed_flush_is_one_interval_after_the_start() {
        // The production clock: with a one-hour interval, 40 events sent in bursts are never
        // split by a timed flush (tokio's plain `interval` ticked at once and did split them).
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_in(dir.path());
        let (tx, task) = spawn(
            store.clone(),
            "t".into(),
            SinkSettings {
                flush_events: 4,
                ..settings()
            },
            Capture::default(),
            Arc::default(),
        );
        let day = Utc::now().date_naive();
        for i in 0..40 {
            tx.send(Msg::Event(format!("{{\"n\":{i}}}"), day))
                .await
                .expect("sink runs");
            tokio::task::yield_now().await;
        }
        let (done, wait) = oneshot::channel();
        tx.send(Msg::Flush(done)).await.expect("sink runs");
        wait.await.expect("flushed");
        let bodies = objects(&store).await;
        assert_eq!(bodies.len(), 10, "{bodies:?}");
        assert!(bodies.iter().all(|b| b.lines().count() == 4), "{bodies:?}");
        drop(tx);
        task.await.expect("ends");
    }

    #[tokio::test]
    async fn durable_events_are_answered_true_once_stored_and_false_when_they_cannot_be() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_in(dir.path());
        let (tx, task) = spawn(
            store.clone(),
            "t".into(),
            SinkSettings {
                flush_events: 1000,
                ..settings()
            },
            Capture::default(),
            Arc::default(),
        );
        let day = Utc::now().date_naive();
        let durable = |n: u32| {
            let tx = tx.clone();
            async move {
                let (done, wait) = oneshot::channel();
                tx.send(Msg::Durable(vec![(format!("{{\"n\":{n}}}"), day)], done))
                    .await
                    .expect("sink runs");
                wait.await.expect("answered")
            }
        };
        assert!(durable(1).await);
        // Stored before the answer: no flush needed to see it.
        assert_eq!(objects(&store).await, ["{\"n\":1}\n"]);
        // The repository refuses objects: the answer says so, and the event is kept.
        std::fs::remove_dir_all(dir.path().join("system").join(AUDIT_PREFIX)).expect("rm");
        std::fs::write(dir.path().join("system").join(AUDIT_PREFIX), b"").expect("blocker");
        assert!(!durable(2).await);
        std::fs::remove_file(dir.path().join("system").join(AUDIT_PREFIX)).expect("unblock");
        assert!(durable(3).await);
        let all: String = objects(&store).await.concat();
        assert_eq!(all.lines().count(), 2, "{all}");
        assert!(
            all.contains("{\"n\":2}") && all.contains("{\"n\":3}"),
            "{all}"
        );
        drop(tx);
        task.await.expect("ends");
    }
}
