//! Subscriptions: catch-up then live, woken by `LISTEN/NOTIFY`, with polling as the
//! fallback.
//!
//! A subscription is one reader of the `events` table by position: each round reads one
//! page of matching events at or after its position together with the head (the next
//! position to be assigned) **in one statement**, so in that statement's snapshot every
//! position below the head is committed (positions are assigned in commit order,
//! docs/postgres.md). When the page is not full the subscription has examined everything
//! up to the head and moves its position there; with nothing new it sleeps until a
//! notification (sent by every append at commit, received by one `LISTEN` connection per
//! store) or the poll interval. Whatever the listener misses — its connection dropped,
//! a notification lost — costs at most one poll interval, never an event: the subscription
//! reads by position, not from the notifications. A query that fails (a dropped pooled
//! connection) is retried on a fresh connection from the same position, so nothing is
//! skipped or repeated.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use chronicle::{Error, RecordedEvent, Result};
use futures_util::StreamExt;
use tokio_postgres::AsyncMessage;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::types::ToSql;

use crate::error::{db, to_i64, to_u64};
use crate::read::{PAGE_BYTES_MAX, PAGE_EVENTS_MAX};
use crate::store::{PostgresStore, Shared};
use chronicle::Filter;

/// Longest durable consumer name, in bytes.
pub const CONSUMER_NAME_BYTES_MAX: usize = 128;

pub(crate) fn validate_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= CONSUMER_NAME_BYTES_MAX
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidInput {
            message: format!(
                "consumer name {name:?}: use 1 to {CONSUMER_NAME_BYTES_MAX} bytes of ASCII letters, digits, '_', '-', '.', not starting with '.'"
            ),
        })
    }
}

/// A durable consumer's claim on its name: a session advisory lock (key from the schema and
/// the name) held on a connection of its own for the subscription's life. PostgreSQL
/// releases it when the connection ends, so a crashed process or a broken connection never
/// leaves a name claimed; a subscription whose lock connection broke takes the lock again
/// before its next read, or fails with [`Error::ConsumerInUse`] if another handle has it.
///
/// The connection is taken out of the pool once the lock is held (the pool opens another
/// in its place): live durable consumers never use up the pool, so any number of them can
/// read, ack and append through it (found by the conformance suite's partitioned
/// consumers: four of them on a pool of four starved every read).
pub(crate) struct ConsumerLock {
    key: i64,
    client: Option<deadpool_postgres::ClientWrapper>,
}

impl std::fmt::Debug for ConsumerLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerLock").field("key", &self.key).field("held", &self.client.is_some()).finish()
    }
}

impl ConsumerLock {
    /// Takes the lock of consumer `name`, or [`Error::ConsumerInUse`] if a session (of
    /// any process) holds it.
    pub(crate) async fn take(shared: Arc<Shared>, name: String) -> Result<ConsumerLock> {
        let key = crate::schema::advisory_key(&format!("chronicle-consumer:{}:", shared.sql.schema), &name);
        let client = shared.client().await?;
        let row = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .await
            .map_err(db("lock the durable consumer's name"))?;
        let taken: bool = row.try_get(0).map_err(db("lock the durable consumer's name"))?;
        if taken {
            Ok(ConsumerLock { key, client: Some(deadpool_postgres::Object::take(client)) })
        } else {
            Err(Error::ConsumerInUse { name })
        }
    }

    /// Whether the lock's connection broke (then the server has released the lock).
    fn lost(&self) -> bool {
        self.client.as_ref().is_none_or(|c| c.is_closed())
    }

    /// Unlocks, so that the name is free at once, and closes the connection (which would
    /// release the lock too, once the server notices).
    pub(crate) async fn release(mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.query_one("SELECT pg_advisory_unlock($1)", &[&self.key]).await;
        }
    }
}

/// Wakes waiting subscriptions: a generation counter bumped by every notification (and
/// after the listener reconnects), with a condition variable.
#[derive(Debug, Default)]
pub(crate) struct Notifier {
    generation: Mutex<u64>,
    changed: Condvar,
}

impl Notifier {
    fn current(&self) -> u64 {
        match self.generation.lock() {
            Ok(g) => *g,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    pub(crate) fn bump(&self) {
        let mut generation = match self.generation.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *generation = generation.wrapping_add(1);
        self.changed.notify_all();
    }

    /// Waits until the generation differs from `seen` or `timeout` passes.
    fn wait(&self, seen: u64, timeout: Duration) {
        let guard = match self.generation.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let _ = self.changed.wait_timeout_while(guard, timeout, |g| *g == seen);
    }
}

/// Holds a `LISTEN` connection for as long as the store's runtime runs; re-establishes it
/// after any failure (waking every subscription, which then re-reads from its position).
pub(crate) async fn listen_forever<T>(
    config: tokio_postgres::Config,
    tls: T,
    channel: String,
    notifier: Arc<Notifier>,
    retry: Duration,
) where
    T: MakeTlsConnect<tokio_postgres::Socket> + Clone + Send + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<tokio_postgres::Socket>>::Future: Send,
{
    let backoff_max = Duration::from_secs(5).max(retry);
    let mut backoff = Duration::from_millis(50);
    loop {
        match config.connect(tls.clone()).await {
            Ok((client, mut connection)) => {
                let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                // The channel name is chronicle_<schema>, a checked identifier.
                let listen_sql = format!("LISTEN \"{channel}\"");
                let listen = client.batch_execute(&listen_sql);
                tokio::pin!(listen);
                let mut listening = false;
                loop {
                    tokio::select! {
                        done = &mut listen, if !listening => {
                            if done.is_err() { break; }
                            listening = true;
                            backoff = Duration::from_millis(50);
                            // Anything committed while nobody listened: look now.
                            notifier.bump();
                        }
                        message = messages.next() => match message {
                            Some(Ok(AsyncMessage::Notification(_))) => notifier.bump(),
                            Some(Ok(_)) => {}
                            Some(Err(error)) => {
                                tracing::warn!(%error, "chronicle-postgres: LISTEN connection failed; reconnecting");
                                break;
                            }
                            None => break,
                        },
                    }
                }
                notifier.bump();
            }
            Err(error) => tracing::warn!(%error, "chronicle-postgres: cannot open the LISTEN connection; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(backoff_max);
    }
}

/// One round: matching events from `position` (at most one page) and the head, read in
/// one statement.
async fn round(shared: Arc<Shared>, position: i64, filter: Filter) -> Result<(Vec<RecordedEvent>, u64, bool)> {
    let client = shared.client().await?;
    let (condition, params) = crate::filter::sql(&filter, &shared.sql.schema, 2);
    let n = params.len() + 2;
    let s = format!("\"{}\"", shared.sql.schema);
    let columns = crate::sql::EVENT_COLUMNS;
    let sql = format!(
        "WITH head AS (SELECT next_position FROM {s}.log_head WHERE id = 0) \
         SELECT head.next_position, q.* FROM head LEFT JOIN LATERAL (\
           SELECT {columns} FROM (\
             SELECT p.*, CAST(sum(octet_length(p.data)::bigint + octet_length(p.metadata)) OVER (ORDER BY p.position) AS bigint) AS upto, \
               row_number() OVER (ORDER BY p.position) AS rn \
             FROM (SELECT {columns} FROM {s}.events WHERE position >= $1 AND position < head.next_position{condition} \
                   ORDER BY position LIMIT ${n}) p\
           ) w WHERE w.rn = 1 OR w.upto <= ${b}\
         ) q ON true ORDER BY q.position",
        b = n + 1
    );
    let limit = PAGE_EVENTS_MAX as i64;
    let bytes = PAGE_BYTES_MAX as i64;
    let statement = client.prepare_cached(&sql).await.map_err(db("prepare subscription read"))?;
    let mut all: Vec<&(dyn ToSql + Sync)> = vec![&position];
    all.extend(crate::filter::borrow(&params));
    all.push(&limit);
    all.push(&bytes);
    let rows = client.query(&statement, &all).await.map_err(db("subscription read"))?;
    let mut head = 0u64;
    let mut events = Vec::new();
    for row in &rows {
        head = to_u64(row.try_get(0).map_err(db("subscription read"))?, "head position")?;
        let position: Option<i64> = row.try_get(1).map_err(db("subscription read"))?;
        if position.is_some() {
            // The event's columns follow the head's.
            events.push(event_from_offset_row(row)?);
        }
    }
    let full = events.len() >= PAGE_EVENTS_MAX;
    Ok((events, head, full))
}

fn event_from_offset_row(row: &tokio_postgres::Row) -> Result<RecordedEvent> {
    // The head is column 0, the event's columns follow.
    crate::read::event_from_row_at(row, 1)
}

/// The events matching a [`Filter`] from a position on: first those already committed,
/// then each new one as it commits, in position order, each exactly once.
///
/// Created by [`PostgresStore::subscribe`] or [`PostgresStore::subscribe_durable`]. As an
/// [`Iterator`], `next()` blocks until a matching event commits and returns `None` once
/// the subscription is stopped ([`StopHandle::stop`]). A database error is an error item;
/// the subscription is still usable afterwards and resumes from the same position (the
/// next call retries on a fresh connection).
#[derive(Debug)]
pub struct Subscription {
    store: PostgresStore,
    filter: Filter,
    /// Every position below this was delivered or examined.
    position: u64,
    buffer: VecDeque<RecordedEvent>,
    /// Examined up to here once `buffer` is delivered.
    pending: u64,
    stop: Arc<AtomicBool>,
    consumer: Option<(String, Option<u64>)>,
    /// A durable consumer's claim on its name, across every handle and process.
    lock: Option<ConsumerLock>,
}

/// Stops a [`Subscription`] from any thread: a `next()` blocked on it returns `None`.
#[derive(Debug, Clone)]
pub struct StopHandle {
    stop: Arc<AtomicBool>,
    notifier: Arc<Notifier>,
}

impl StopHandle {
    /// Stops the subscription: its current or next `next()` returns `None`, a
    /// `recv_timeout` returns `Ok(None)`.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.notifier.bump();
    }
}

impl Subscription {
    pub(crate) fn new(
        store: PostgresStore,
        from_position: u64,
        filter: Filter,
        consumer: Option<(String, Option<u64>)>,
        lock: Option<ConsumerLock>,
    ) -> Self {
        Subscription {
            store,
            filter,
            position: from_position,
            buffer: VecDeque::new(),
            pending: 0,
            stop: Arc::new(AtomicBool::new(false)),
            consumer,
            lock,
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Where the subscription would resume: just past the last event it delivered or
    /// examined (non-matching events count as examined).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// A handle that stops this subscription from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle { stop: Arc::clone(&self.stop), notifier: Arc::clone(&self.store.shared().notifier) }
    }

    /// Whether the subscription was stopped.
    pub fn is_finished(&self) -> bool {
        self.stopped()
    }

    /// The durable consumer's name, if this subscription is one.
    pub fn consumer_name(&self) -> Option<&str> {
        self.consumer.as_ref().map(|(name, _)| name.as_str())
    }

    /// The next matching event, waiting at most `timeout` for one to commit.
    ///
    /// # Errors
    /// `Ok(None)` when nothing new matched in time, or once stopped; [`Error::Backend`]
    /// if the database could not be read until the deadline (the subscription stays at
    /// its position and can be called again).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<RecordedEvent>> {
        let deadline = Instant::now().checked_add(timeout);
        let poll = self.store.shared().options.poll_interval;
        let notifier = Arc::clone(&self.store.shared().notifier);
        loop {
            if self.stopped() {
                return Ok(None);
            }
            if let Some(event) = self.buffer.pop_front() {
                self.position = event.position.saturating_add(1);
                if self.buffer.is_empty() {
                    self.position = self.position.max(self.pending);
                }
                return Ok(Some(event));
            }
            self.keep_consumer_lock()?;
            let seen = notifier.current();
            let position = to_i64(self.position, "position")?;
            let shared = Arc::clone(self.store.shared());
            match self.store.runner().block(round(shared, position, self.filter.clone())) {
                Ok((events, head, full)) => {
                    // Unless the page was cut, everything below the head was examined in
                    // that snapshot: the position moves there once the page is delivered.
                    let examined = if full { 0 } else { head };
                    if !events.is_empty() {
                        self.pending = examined;
                        self.buffer = events.into();
                        continue;
                    }
                    self.position = self.position.max(examined);
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    if left.is_some_and(|left| left.is_zero()) {
                        return Ok(None);
                    }
                    notifier.wait(seen, left.map_or(poll, |left| left.min(poll)));
                }
                Err(error) => {
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    if left.is_some_and(|left| left.is_zero()) {
                        return Err(error);
                    }
                    tracing::debug!(%error, "chronicle-postgres: subscription read failed; retrying");
                    std::thread::sleep(left.map_or(poll, |left| left.min(poll)).min(Duration::from_millis(100)));
                }
            }
        }
    }

    /// Acknowledges every event at or before `position` for this durable consumer: its
    /// checkpoint row moves there (committed when this returns `Ok`); a later
    /// [`PostgresStore::subscribe_durable`] with the same name starts just after it.
    /// Acknowledging a position at or below the current checkpoint changes nothing.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] if this is not a durable subscription or `position` is at or
    /// past [`Subscription::position`]; [`Error::Backend`].
    pub fn ack(&mut self, position: u64) -> Result<()> {
        let examined = Subscription::position(self);
        let Some((name, acked)) = &self.consumer else {
            return Err(Error::InvalidInput {
                message: "ack on a subscription that is not durable (use PostgresStore::subscribe_durable)".into(),
            });
        };
        if position >= examined {
            return Err(Error::InvalidInput {
                message: format!(
                    "ack of position {position}, but the subscription has delivered or examined only positions below {examined}"
                ),
            });
        }
        if acked.is_some_and(|acked| acked >= position) {
            return Ok(());
        }
        let shared = Arc::clone(self.store.shared());
        let name = name.clone();
        let value = to_i64(position, "position")?;
        self.store.runner().block(async move {
            let client = shared.client().await?;
            client.execute(&shared.sql.consumer_ack, &[&name, &value]).await.map_err(db("ack"))?;
            Ok(())
        })?;
        if let Some((_, acked)) = &mut self.consumer {
            *acked = Some(position);
        }
        Ok(())
    }
}

impl Subscription {
    pub(crate) fn hold(&mut self, lock: ConsumerLock) {
        self.lock = Some(lock);
    }

    /// Starts just after the consumer's checkpoint `acked` (at 0 without one).
    pub(crate) fn resume_after(&mut self, acked: Option<u64>) {
        self.position = acked.map_or(0, |p| p.saturating_add(1));
        if let Some((_, checkpoint)) = &mut self.consumer {
            *checkpoint = acked;
        }
    }

    /// A durable consumer whose lock connection broke takes the lock again before it
    /// reads on: it never delivers while another handle may hold the name.
    fn keep_consumer_lock(&mut self) -> Result<()> {
        let (Some(lock), Some((name, _))) = (&self.lock, &self.consumer) else { return Ok(()) };
        if !lock.lost() {
            return Ok(());
        }
        let shared = Arc::clone(self.store.shared());
        let name = name.clone();
        let fresh = self.store.runner().block(ConsumerLock::take(shared, name))?;
        self.lock = Some(fresh);
        Ok(())
    }
}

impl Iterator for Subscription {
    type Item = Result<RecordedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.stopped() {
                return None;
            }
            match self.recv_timeout(Duration::from_secs(1)) {
                Ok(Some(event)) => return Some(Ok(event)),
                Ok(None) => {}
                Err(error) => return Some(Err(error)),
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some((name, _)) = &self.consumer {
            let mut in_use = match self.store.shared().consumers_in_use.lock() {
                Ok(in_use) => in_use,
                Err(poisoned) => poisoned.into_inner(),
            };
            in_use.remove(name);
        }
        if let Some(lock) = self.lock.take() {
            // Waits (bounded by the operation timeout) so that the name is free when drop
            // returns; on failure the connection is closed, which frees it too.
            let _ = self.store.runner().block(async move {
                lock.release().await;
                Ok(())
            });
        }
    }
}

impl chronicle::SubscriptionStop for StopHandle {
    fn stop(&self) {
        StopHandle::stop(self);
    }
}

impl chronicle::LogSubscription for Subscription {
    type Stop = StopHandle;

    fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<RecordedEvent>> {
        Subscription::recv_timeout(self, timeout)
    }

    fn position(&self) -> u64 {
        Subscription::position(self)
    }

    fn ack(&mut self, position: u64) -> Result<()> {
        Subscription::ack(self, position)
    }

    fn stop_handle(&self) -> StopHandle {
        Subscription::stop_handle(self)
    }
}
