//! `PostgresStore`: connect, the owned runtime, and every `EventStore` operation.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use chronicle::{
    AppendCondition, AppendResult, Error, EventStore, ExpectedVersion, NewEvent, Result, SNAPSHOT_BYTES_MAX,
    SNAPSHOTS_KEPT, Snapshot, StreamAppend,
};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use futures_util::TryFutureExt;
use futures_util::future::try_join3;
use tokio::runtime::{Handle, Runtime};

use crate::error::{bad_row, db, from_db, to_i64, to_u64};
use crate::read::{Cursor, PgEvents, deleted, u128_from};
use crate::sql::{Sql, check_schema_name};
use crate::subscription::{ConsumerLock, Notifier, Subscription};
use chronicle::Filter;

/// How a [`PostgresStore`] connects and behaves.
///
/// ```
/// use std::time::Duration;
/// let options = chronicle_postgres::PostgresOptions::default()
///     .schema("orders")
///     .pool_size(8)
///     .operation_timeout(Duration::from_secs(10));
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    pub(crate) schema: String,
    pub(crate) pool_size: usize,
    pub(crate) operation_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) runtime_threads: usize,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            schema: "chronicle".into(),
            pool_size: 16,
            operation_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(500),
            runtime_threads: 2,
        }
    }
}

impl PostgresOptions {
    /// The PostgreSQL schema holding the store's tables (default `chronicle`): several
    /// stores can share a database, one schema each. 1 to
    /// [`SCHEMA_NAME_BYTES_MAX`](crate::SCHEMA_NAME_BYTES_MAX) bytes of `a-z`, `0-9`, `_`.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Most connections the store's pool opens (default 16).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Longest any one operation (one append, one page of a read, waiting for a pooled
    /// connection included) may take before it fails with [`Error::Backend`] (default 30 s).
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Longest a new connection may take (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How often a waiting subscription looks for new events when no notification arrives
    /// (default 500 ms): the fallback when `LISTEN` is unavailable or a notification is
    /// lost while the listening connection is re-established.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Worker threads of the store's own tokio runtime (default 2).
    pub fn runtime_threads(mut self, threads: usize) -> Self {
        self.runtime_threads = threads.max(1);
        self
    }
}

/// What every operation needs; lives in tasks on the runtime (never owns the runtime).
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) pool: Pool,
    pub(crate) sql: Sql,
    pub(crate) options: PostgresOptions,
    pub(crate) notifier: Arc<Notifier>,
    ids: Mutex<IdGenerator>,
    pub(crate) consumers_in_use: Mutex<HashSet<String>>,
}

impl Shared {
    pub(crate) async fn client(&self) -> Result<Object> {
        self.pool.get().await.map_err(crate::error::pool)
    }
}

/// The store's own runtime: its threads run every query. Dropped with the last handle
/// (store clone, iterator, subscription); `shutdown_background` never blocks and never
/// panics, even when the last handle drops inside another runtime.
#[derive(Debug)]
struct OwnedRuntime {
    runtime: Mutex<Option<Runtime>>,
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        let runtime = match self.runtime.get_mut() {
            Ok(runtime) => runtime.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(runtime) = runtime {
            runtime.shutdown_background();
        }
    }
}

/// Runs futures on the store's runtime and waits for them on the calling thread.
#[derive(Debug, Clone)]
pub(crate) struct Runner {
    handle: Handle,
    timeout: Duration,
    _owner: Arc<OwnedRuntime>,
}

impl Runner {
    /// Runs `future` on the store's runtime (bounded by the operation timeout) and blocks
    /// the calling thread until it is done. Never calls `block_on`: safe on any thread,
    /// though inside an async runtime it blocks that executor thread while it waits (use
    /// the `*_async` methods or `spawn_blocking` there).
    pub(crate) fn block<T: Send + 'static>(
        &self,
        future: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        self.start(future).wait()
    }

    /// Starts `future` on the store's runtime (bounded by the operation timeout) without
    /// waiting: [`Pending::wait`] blocks for its answer (a read-ahead overlaps the next
    /// page's query with the caller's work on the current one).
    pub(crate) fn start<T: Send + 'static>(
        &self,
        future: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Pending<T> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        let timeout = self.timeout;
        self.handle.spawn(async move {
            let _ = sender.send(bounded(timeout, future).await);
        });
        Pending { receiver, timeout }
    }

    /// Runs `future` on the store's runtime and awaits it from any executor.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        future: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let timeout = self.timeout;
        match self.handle.spawn(bounded(timeout, future)).await {
            Ok(result) => result,
            Err(error) => Err(Error::backend(format!("the store's runtime dropped the operation: {error}"), None)),
        }
    }

    pub(crate) fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        self.handle.spawn(future);
    }
}

/// An operation started on the store's runtime ([`Runner::start`]).
#[derive(Debug)]
pub(crate) struct Pending<T> {
    receiver: std::sync::mpsc::Receiver<Result<T>>,
    timeout: Duration,
}

impl<T> Pending<T> {
    /// Blocks until the operation answers.
    pub(crate) fn wait(self) -> Result<T> {
        // The task answers within `timeout`; the margin covers scheduling.
        match self.receiver.recv_timeout(self.timeout.saturating_add(Duration::from_secs(5))) {
            Ok(result) => result,
            Err(_) => Err(Error::backend(
                format!("no answer from the store's runtime within {:?} (is it shutting down?)", self.timeout),
                None,
            )),
        }
    }
}

async fn bounded<T>(timeout: Duration, future: impl Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(timeout, future).await {
        Ok(result) => result,
        Err(_) => Err(Error::backend(
            format!(
                "operation timed out after {timeout:?}; an append that timed out may or may not have committed (retry it with event ids)"
            ),
            None,
        )),
    }
}

/// An event store in PostgreSQL, with the semantics of the embedded [`chronicle::Store`]:
/// implements [`chronicle::EventStore`] (and passes the same conformance suite), so the
/// typed layer runs on it unchanged.
///
/// A clone-able handle (clones share the pool). The blocking methods run their queries on
/// a small tokio runtime the store owns (its own threads, see
/// [`PostgresOptions::runtime_threads`]) and wait for them on the caller's thread; they
/// never call `block_on`, so they cannot panic inside another runtime, but there they
/// block an executor thread: async code calls the `*_async` methods (which run on the
/// store's runtime and can be awaited from any executor) or wraps the blocking ones in
/// `spawn_blocking`.
///
/// Global positions are dense and assigned in commit order (docs/postgres.md): a reader
/// that saw position `p` has seen, or will never see, every position below it.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    runner: Runner,
    shared: Arc<Shared>,
    committer: tokio::sync::mpsc::Sender<Request>,
    listen: Option<Arc<ListenConfig>>,
    listener: Arc<Once>,
}

#[derive(Debug)]
struct ListenConfig {
    config: tokio_postgres::Config,
    #[cfg(feature = "tls")]
    tls: bool,
}

fn build_runtime(options: &PostgresOptions) -> Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.runtime_threads)
        .thread_name("chronicle-pg")
        .enable_all()
        .build()
        .map_err(|e| Error::backend(format!("start the store's runtime: {e}"), Some(Arc::new(e))))
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`, or the
    /// `key=value` form; `host=/path/to/socket/dir` for a Unix socket) with default
    /// [`PostgresOptions`], and migrates the schema.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a malformed URL; [`Error::Backend`] if the server cannot
    /// be reached or the schema is newer than this code.
    ///
    /// ```no_run
    /// let store = chronicle_postgres::PostgresStore::connect("postgres://chronicle@127.0.0.1:5432/app")?;
    /// # Ok::<(), chronicle::Error>(())
    /// ```
    pub fn connect(url: &str) -> Result<PostgresStore> {
        PostgresStore::connect_with(url, PostgresOptions::default())
    }

    /// [`PostgresStore::connect`] with options (schema, pool size, timeouts).
    ///
    /// # Errors
    /// As [`PostgresStore::connect`]; [`Error::InvalidInput`] for a bad schema name.
    pub fn connect_with(url: &str, options: PostgresOptions) -> Result<PostgresStore> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| Error::InvalidInput { message: format!("PostgreSQL URL: {e}") })?;
        config.connect_timeout(options.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("chronicle");
        }
        let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        #[cfg(feature = "tls")]
        let (manager, tls) = if matches!(config.get_ssl_mode(), tokio_postgres::config::SslMode::Disable) {
            (Manager::from_config(config.clone(), tokio_postgres::NoTls, manager_config), false)
        } else {
            (Manager::from_config(config.clone(), crate::tls::connector(), manager_config), true)
        };
        #[cfg(not(feature = "tls"))]
        let manager = Manager::from_config(config.clone(), tokio_postgres::NoTls, manager_config);
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(options.operation_timeout))
            .create_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| Error::backend(format!("build the connection pool: {e}"), None))?;
        let listen = ListenConfig {
            config,
            #[cfg(feature = "tls")]
            tls,
        };
        PostgresStore::start(pool, options, Some(Arc::new(listen)))
    }

    /// A store on an existing pool (its connections must be usable from any tokio
    /// runtime, which deadpool's are). Subscriptions then poll
    /// ([`PostgresOptions::poll_interval`]) instead of listening, as a pooled connection
    /// cannot receive notifications.
    ///
    /// # Errors
    /// As [`PostgresStore::connect_with`].
    pub fn with_pool(pool: Pool, options: PostgresOptions) -> Result<PostgresStore> {
        PostgresStore::start(pool, options, None)
    }

    fn start(pool: Pool, options: PostgresOptions, listen: Option<Arc<ListenConfig>>) -> Result<PostgresStore> {
        check_schema_name(&options.schema)?;
        let runtime = build_runtime(&options)?;
        let handle = runtime.handle().clone();
        let owner = Arc::new(OwnedRuntime { runtime: Mutex::new(Some(runtime)) });
        let runner = Runner { handle, timeout: options.operation_timeout, _owner: owner };
        let shared = Arc::new(Shared {
            pool,
            sql: Sql::new(&options.schema),
            options,
            notifier: Arc::new(Notifier::default()),
            ids: Mutex::new(IdGenerator::new()),
            consumers_in_use: Mutex::new(HashSet::new()),
        });
        let migrating = Arc::clone(&shared);
        runner.block(async move {
            let mut client = migrating.client().await?;
            crate::schema::migrate(&mut client, &migrating.sql.schema).await.map(|_| ())
        })?;
        let (committer, queue) = tokio::sync::mpsc::channel(COMMIT_QUEUE_DEPTH_MAX);
        runner.spawn(self::committer(Arc::clone(&shared), queue));
        Ok(PostgresStore { runner, shared, committer, listen, listener: Arc::new(Once::new()) })
    }

    pub(crate) fn runner(&self) -> &Runner {
        &self.runner
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The schema this store lives in.
    pub fn schema(&self) -> &str {
        &self.shared.sql.schema
    }

    /// Starts the `LISTEN` task once (a connection of its own, re-established after a
    /// failure); without a URL (a store from [`PostgresStore::with_pool`]) there is none.
    pub(crate) fn ensure_listener(&self) {
        let Some(listen) = &self.listen else { return };
        self.listener.call_once(|| {
            let notifier = Arc::clone(&self.shared.notifier);
            let channel = self.shared.sql.channel.clone();
            let listen = Arc::clone(listen);
            let retry = self.shared.options.poll_interval;
            self.runner.spawn(async move {
                #[cfg(feature = "tls")]
                if listen.tls {
                    crate::subscription::listen_forever(
                        listen.config.clone(),
                        crate::tls::connector(),
                        channel,
                        notifier,
                        retry,
                    )
                    .await;
                    return;
                }
                crate::subscription::listen_forever(
                    listen.config.clone(),
                    tokio_postgres::NoTls,
                    channel,
                    notifier,
                    retry,
                )
                .await;
            });
        });
    }

    fn prepare_events(&self, events: &mut [NewEvent]) {
        if events.iter().all(|e| e.id().is_some()) {
            return;
        }
        let mut ids = match self.shared.ids.lock() {
            Ok(ids) => ids,
            Err(poisoned) => poisoned.into_inner(),
        };
        for event in events.iter_mut() {
            if event.id().is_none() {
                let id = ids.next_id();
                *event = event.clone().with_id(id);
            }
        }
    }

    fn prepare(&self, parts: Vec<StreamAppend>) -> Result<Vec<Part>> {
        chronicle::check_append(&parts)?;
        Ok(parts
            .into_iter()
            .map(|part| {
                let all_ids = part.events().iter().all(|e| e.id().is_some());
                let (stream, expected, mut events) = part.into_parts();
                self.prepare_events(&mut events);
                Part { stream, expected, events, all_ids }
            })
            .collect())
    }

    /// As [`EventStore::append`].
    ///
    /// # Errors
    /// As [`chronicle::Store::append`]; [`Error::Backend`] when the database fails (its
    /// message says whether the append is known not to have been written).
    pub fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: impl IntoIterator<Item = NewEvent>,
    ) -> Result<AppendResult> {
        let mut results = self.append_multi([StreamAppend::new(stream, expected, events)])?;
        results.pop().ok_or_else(|| Error::backend("an append of one stream returned no result", None))
    }

    /// As [`EventStore::append_multi`]: all parts in one transaction.
    ///
    /// # Errors
    /// As [`PostgresStore::append`].
    pub fn append_multi(&self, parts: impl IntoIterator<Item = StreamAppend>) -> Result<Vec<AppendResult>> {
        let parts = self.prepare(parts.into_iter().collect())?;
        self.runner.block(submit(self.committer.clone(), parts, None))
    }

    /// As [`EventStore::append_if`] (the embedded `Store::append_if`): appends `parts`
    /// atomically only if no event matching `condition.filter` was committed after
    /// `condition.after_position`. The condition is checked inside the append's
    /// transaction after it took the position counter's lock, which every append and
    /// deletion holds through its COMMIT: of two racing conditional appends (from any
    /// processes) whose conditions each exclude the other's events, at most one succeeds.
    ///
    /// # Errors
    /// [`Error::ConditionFailed`] naming the first conflicting event (nothing written);
    /// [`Error::InvalidInput`] for a filter built from bad input or no parts; otherwise
    /// as [`PostgresStore::append_multi`].
    ///
    /// ```no_run
    /// use chronicle::{AppendCondition, ExpectedVersion, Filter, NewEvent, StreamAppend};
    /// # let store = chronicle_postgres::PostgresStore::connect("postgres://localhost/app")?;
    /// let booked = Filter::category("seat").with_event_types(["SeatBooked"]);
    /// let book = [StreamAppend::new("seat-12A", ExpectedVersion::Any, [NewEvent::new("SeatBooked", "ann")])];
    /// store.append_if(AppendCondition::new(booked, None), book)?;
    /// # Ok::<(), chronicle::Error>(())
    /// ```
    pub fn append_if(
        &self,
        condition: AppendCondition,
        parts: impl IntoIterator<Item = StreamAppend>,
    ) -> Result<Vec<AppendResult>> {
        condition.filter.validate()?;
        let parts: Vec<StreamAppend> = parts.into_iter().collect();
        if parts.is_empty() {
            return Err(Error::InvalidInput { message: "append_if has no streams".into() });
        }
        let parts = self.prepare(parts)?;
        self.runner.block(submit(self.committer.clone(), parts, Some(Arc::new(condition))))
    }

    /// [`PostgresStore::append_multi`] for async code: runs on the store's runtime,
    /// awaitable from any executor.
    ///
    /// # Errors
    /// As [`PostgresStore::append`].
    pub async fn append_multi_async(&self, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>> {
        let parts = self.prepare(parts)?;
        self.runner.run(submit(self.committer.clone(), parts, None)).await
    }

    /// [`PostgresStore::append`] for async code.
    ///
    /// # Errors
    /// As [`PostgresStore::append`].
    pub async fn append_async(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult> {
        let mut results = self.append_multi_async(vec![StreamAppend::new(stream, expected, events)]).await?;
        results.pop().ok_or_else(|| Error::backend("an append of one stream returned no result", None))
    }

    /// A stream's events from `next`: the first page is read here, in one statement; only
    /// when it is empty does a second one tell a missing or exhausted stream (empty) from a
    /// deleted one (an error). Any row proves the stream is not deleted: a deletion
    /// removes the events in the transaction that marks it.
    fn stream_cursor(&self, stream: &str, next: i64, backward: bool) -> Result<PgEvents> {
        chronicle::check_stream_id(stream)?;
        let cursor = Cursor::Stream { stream: stream.as_bytes().to_vec(), next, backward };
        let mut events = PgEvents::new(self.runner.clone(), Arc::clone(&self.shared), cursor);
        if events.first_page()? > 0 {
            return Ok(events);
        }
        let state = self.runner.block(stream_state(Arc::clone(&self.shared), stream.as_bytes().to_vec()))?;
        if state.is_some_and(|(_, deleted)| deleted) {
            return Err(deleted(stream));
        }
        Ok(events)
    }

    /// As [`EventStore::read_stream`]: read lazily, one page at a time.
    ///
    /// # Errors
    /// [`Error::StreamDeleted`], [`Error::InvalidInput`] for an invalid stream id,
    /// [`Error::Backend`].
    pub fn read_stream(&self, stream: &str, from_version: u64) -> Result<PgEvents> {
        let from = i64::try_from(from_version).unwrap_or(i64::MAX);
        self.stream_cursor(stream, from, false)
    }

    /// As [`EventStore::read_stream_backward`].
    ///
    /// # Errors
    /// As [`PostgresStore::read_stream`].
    pub fn read_stream_backward(&self, stream: &str, from_version: Option<u64>) -> Result<PgEvents> {
        let from = from_version.map_or(i64::MAX, |v| i64::try_from(v).unwrap_or(i64::MAX));
        self.stream_cursor(stream, from, true)
    }

    /// As [`EventStore::read_all`].
    ///
    /// # Errors
    /// [`Error::Backend`] (items too).
    pub fn read_all(&self, from_position: u64) -> Result<PgEvents> {
        let next = i64::try_from(from_position).unwrap_or(i64::MAX);
        Ok(PgEvents::new(self.runner.clone(), Arc::clone(&self.shared), Cursor::All { next, backward: false }))
    }

    /// As [`EventStore::read_all_backward`].
    ///
    /// # Errors
    /// [`Error::Backend`] (items too).
    pub fn read_all_backward(&self, from_position: Option<u64>) -> Result<PgEvents> {
        let next = from_position.map_or(i64::MAX, |p| i64::try_from(p).unwrap_or(i64::MAX));
        Ok(PgEvents::new(self.runner.clone(), Arc::clone(&self.shared), Cursor::All { next, backward: true }))
    }

    /// The events matching `filter` in position order from `from_position` on (the
    /// embedded store's `read_all_filtered`); conditions are evaluated by the server.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a filter built from bad input; [`Error::Backend`].
    pub fn read_all_filtered(&self, from_position: u64, filter: Filter) -> Result<PgEvents> {
        filter.validate()?;
        let next = i64::try_from(from_position).unwrap_or(i64::MAX);
        Ok(PgEvents::new(self.runner.clone(), Arc::clone(&self.shared), Cursor::Filtered { next, filter }))
    }

    /// Up to `max_events` events of `stream` from `from_version` on, for async code (one
    /// page; call again from the last version + 1 for more).
    ///
    /// # Errors
    /// As [`PostgresStore::read_stream`].
    pub async fn read_stream_async(
        &self,
        stream: &str,
        from_version: u64,
        max_events: usize,
    ) -> Result<Vec<chronicle::RecordedEvent>> {
        chronicle::check_stream_id(stream)?;
        let shared = Arc::clone(&self.shared);
        let id = stream.as_bytes().to_vec();
        let name = stream.to_owned();
        let next = i64::try_from(from_version).unwrap_or(i64::MAX);
        self.runner
            .run(async move {
                if stream_state(Arc::clone(&shared), id.clone()).await?.is_some_and(|(_, deleted)| deleted) {
                    return Err(deleted(&name));
                }
                let (mut events, _) =
                    crate::read::fetch_page(shared, Cursor::Stream { stream: id, next, backward: false }).await?;
                events.truncate(max_events);
                Ok(events)
            })
            .await
    }

    /// Up to `max_events` events from `from_position` on, for async code (one page).
    ///
    /// # Errors
    /// [`Error::Backend`].
    pub async fn read_all_async(&self, from_position: u64, max_events: usize) -> Result<Vec<chronicle::RecordedEvent>> {
        let next = i64::try_from(from_position).unwrap_or(i64::MAX);
        let shared = Arc::clone(&self.shared);
        let (mut events, _) =
            self.runner.run(crate::read::fetch_page(shared, Cursor::All { next, backward: false })).await?;
        events.truncate(max_events);
        Ok(events)
    }

    /// As [`EventStore::stream_version`].
    ///
    /// # Errors
    /// [`Error::StreamDeleted`], [`Error::InvalidInput`], [`Error::Backend`].
    pub fn stream_version(&self, stream: &str) -> Result<Option<u64>> {
        chronicle::check_stream_id(stream)?;
        match self.runner.block(stream_state(Arc::clone(&self.shared), stream.as_bytes().to_vec()))? {
            Some((_, true)) => Err(deleted(stream)),
            Some((last, false)) => Ok(last),
            None => Ok(None),
        }
    }

    /// Every stream id with at least one event and not deleted, sorted.
    ///
    /// # Errors
    /// [`Error::Backend`].
    pub fn streams(&self) -> Result<Vec<String>> {
        let shared = Arc::clone(&self.shared);
        self.runner.block(async move {
            let client = shared.client().await?;
            let rows = client.query(&shared.sql.streams, &[]).await.map_err(db("list streams"))?;
            rows.iter()
                .map(|row| {
                    let id: Vec<u8> = row.try_get(0).map_err(db("list streams"))?;
                    String::from_utf8(id).map_err(|_| bad_row("stream id is not UTF-8"))
                })
                .collect()
        })
    }

    /// The position the next committed event will get: every event below it is committed
    /// (or was deleted with its stream).
    ///
    /// # Errors
    /// [`Error::Backend`].
    pub fn head_position(&self) -> Result<u64> {
        self.runner.block(head(Arc::clone(&self.shared)))
    }

    /// As [`EventStore::save_snapshot`]: the newest [`SNAPSHOTS_KEPT`] per stream are kept.
    ///
    /// # Errors
    /// As [`chronicle::Store::save_snapshot`]; [`Error::Backend`].
    pub fn save_snapshot(&self, stream: &str, version: u64, state: &[u8]) -> Result<()> {
        chronicle::check_stream_id(stream)?;
        if state.len() > SNAPSHOT_BYTES_MAX {
            return Err(Error::InvalidInput {
                message: format!("snapshot of {} bytes, above the limit of {SNAPSHOT_BYTES_MAX}", state.len()),
            });
        }
        let version_sql = to_i64(version, "snapshot version")?;
        let shared = Arc::clone(&self.shared);
        let name = stream.to_owned();
        let state = Arc::new(state.to_vec());
        self.runner.block(crate::error::retry(move || {
            let (shared, name, state) = (Arc::clone(&shared), name.clone(), Arc::clone(&state));
            async move {
                let id = name.as_bytes();
                let mut client = shared.client().await?;
                let tx = client.transaction().await.map_err(db("begin snapshot"))?;
                let row =
                    tx.query_opt(&shared.sql.lock_stream_shared, &[&id]).await.map_err(db("snapshot: lock stream"))?;
                let (last, is_deleted) = match row {
                    Some(row) => {
                        let last: Option<i64> = row.try_get(0).map_err(db("snapshot"))?;
                        let is_deleted: bool = row.try_get(1).map_err(db("snapshot"))?;
                        (last, is_deleted)
                    }
                    None => (None, false),
                };
                if is_deleted {
                    return Err(deleted(&name));
                }
                match last {
                    None => {
                        return Err(Error::InvalidInput {
                            message: format!("snapshot of stream {name:?}, which has no events"),
                        });
                    }
                    Some(last) if version_sql > last => {
                        return Err(Error::InvalidInput {
                            message: format!(
                                "snapshot of stream {name:?} at version {version}, but its last version is Some({last})"
                            ),
                        });
                    }
                    Some(_) => {}
                }
                tx.execute(&shared.sql.save_snapshot, &[&id, &version_sql, &*state])
                    .await
                    .map_err(db("save snapshot"))?;
                let kept = SNAPSHOTS_KEPT as i64;
                tx.execute(&shared.sql.prune_snapshots, &[&id, &kept]).await.map_err(db("prune snapshots"))?;
                tx.commit().await.map_err(|e| commit_failed("save_snapshot", e))
            }
        }))
    }

    /// As [`EventStore::load_snapshot`].
    ///
    /// # Errors
    /// [`Error::StreamDeleted`], [`Error::InvalidInput`], [`Error::Backend`].
    pub fn load_snapshot(&self, stream: &str) -> Result<Option<Snapshot>> {
        chronicle::check_stream_id(stream)?;
        let shared = Arc::clone(&self.shared);
        let name = stream.to_owned();
        self.runner.block(crate::error::retry(move || {
            let (shared, name) = (Arc::clone(&shared), name.clone());
            async move {
                let client = shared.client().await?;
                let row = client
                    .query_one(&shared.sql.load_snapshot, &[&name.as_bytes()])
                    .await
                    .map_err(db("load snapshot"))?;
                let is_deleted: Option<bool> = row.try_get(0).map_err(db("load snapshot"))?;
                if is_deleted == Some(true) {
                    return Err(deleted(&name));
                }
                let version: Option<i64> = row.try_get(1).map_err(db("load snapshot"))?;
                let data: Option<Vec<u8>> = row.try_get(2).map_err(db("load snapshot"))?;
                match (version, data) {
                    (Some(version), Some(data)) => {
                        Ok(Some(Snapshot { version: to_u64(version, "snapshot version")?, data: data.into() }))
                    }
                    _ => Ok(None),
                }
            }
        }))
    }

    /// As [`EventStore::delete_stream`]: permanent. The stream's events and snapshots are
    /// removed in the same transaction that marks it deleted; its id can never be used
    /// again.
    ///
    /// # Errors
    /// As [`chronicle::Store::delete_stream`]; [`Error::Backend`].
    pub fn delete_stream(&self, stream: &str, expected: ExpectedVersion) -> Result<()> {
        chronicle::check_stream_id(stream)?;
        let shared = Arc::clone(&self.shared);
        let stream = stream.to_owned();
        self.runner.block(crate::error::retry(move || delete(Arc::clone(&shared), stream.clone(), expected)))
    }

    /// Follows the log: the events matching `filter` from `from_position` on, first those
    /// already committed, then each one as it commits, in position order, each exactly
    /// once (see [`Subscription`]).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a filter built from bad input.
    pub fn subscribe(&self, from_position: u64, filter: Filter) -> Result<Subscription> {
        filter.validate()?;
        self.ensure_listener();
        Ok(Subscription::new(self.clone(), from_position, filter, None, None))
    }

    /// A durable consumer: a subscription that starts just after the last position
    /// acknowledged ([`Subscription::ack`]) under `name` (at 0 the first time); the
    /// checkpoint is a row of the `consumers` table, written by `ack` in its own
    /// transaction. Delivery is at-least-once. One live subscription per name across every
    /// handle and process: the subscription holds a session advisory lock on the name (on
    /// a connection of its own, taken out of the pool so that live consumers never use it
    /// up) until it is dropped or its connection dies.
    ///
    /// # Errors
    /// [`Error::ConsumerInUse`] if a live subscription of any store handle or process
    /// holds the name; [`Error::InvalidInput`] for an invalid name (empty, over
    /// [`CONSUMER_NAME_BYTES_MAX`](crate::CONSUMER_NAME_BYTES_MAX) bytes, or other than ASCII
    /// letters, digits, `_`, `-`, `.`) or a bad filter; [`Error::Backend`].
    pub fn subscribe_durable(&self, name: &str, filter: Filter) -> Result<Subscription> {
        crate::subscription::validate_name(name)?;
        filter.validate()?;
        {
            let mut in_use = match self.shared.consumers_in_use.lock() {
                Ok(in_use) => in_use,
                Err(poisoned) => poisoned.into_inner(),
            };
            if !in_use.insert(name.to_owned()) {
                return Err(Error::ConsumerInUse { name: name.to_owned() });
            }
        }
        // The subscription (or this early return) frees the in-process claim on drop.
        let mut subscription = Subscription::new(self.clone(), 0, filter, Some((name.to_owned(), None)), None);
        // Read the checkpoint only once the name is ours: nobody else can ack meanwhile.
        let lock = self.runner.block(ConsumerLock::take(Arc::clone(&self.shared), name.to_owned()))?;
        subscription.hold(lock);
        let acked = self.consumer_position(name)?;
        subscription.resume_after(acked);
        self.ensure_listener();
        Ok(subscription)
    }

    /// The last position acknowledged by durable consumer `name`; `None` if it never
    /// acknowledged one (or was deleted).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an invalid name; [`Error::Backend`].
    pub fn consumer_position(&self, name: &str) -> Result<Option<u64>> {
        crate::subscription::validate_name(name)?;
        let shared = Arc::clone(&self.shared);
        let name = name.to_owned();
        self.runner.block(async move {
            let client = shared.client().await?;
            let row =
                client.query_opt(&shared.sql.consumer_position, &[&name]).await.map_err(db("consumer position"))?;
            match row {
                Some(row) => Ok(Some(to_u64(row.try_get(0).map_err(db("consumer position"))?, "consumer position")?)),
                None => Ok(None),
            }
        })
    }

    /// Deletes durable consumer `name`'s checkpoint: a later
    /// [`PostgresStore::subscribe_durable`] with this name starts at 0. Deleting a consumer
    /// that has no checkpoint is not an error. Holds the name's lock while deleting, so no
    /// subscription of any handle or process can claim it meanwhile.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an invalid name; [`Error::ConsumerInUse`] while a live
    /// subscription of any store handle or process holds the name (nothing deleted), as
    /// the embedded store; [`Error::Backend`].
    pub fn delete_consumer(&self, name: &str) -> Result<()> {
        crate::subscription::validate_name(name)?;
        let held = match self.shared.consumers_in_use.lock() {
            Ok(in_use) => in_use.contains(name),
            Err(poisoned) => poisoned.into_inner().contains(name),
        };
        if held {
            return Err(Error::ConsumerInUse { name: name.to_owned() });
        }
        let shared = Arc::clone(&self.shared);
        let name = name.to_owned();
        self.runner.block(async move {
            let lock = ConsumerLock::take(Arc::clone(&shared), name.clone()).await?;
            let deleted = match shared.client().await {
                Ok(client) => client
                    .execute(&shared.sql.consumer_delete, &[&name])
                    .await
                    .map(|_| ())
                    .map_err(db("delete consumer")),
                Err(error) => Err(error),
            };
            lock.release().await;
            deleted
        })
    }
}

pub(crate) async fn head(shared: Arc<Shared>) -> Result<u64> {
    let client = shared.client().await?;
    let row = client.query_one(&shared.sql.head, &[]).await.map_err(db("read the head position"))?;
    to_u64(row.try_get(0).map_err(db("read the head position"))?, "head position")
}

/// `(last_version, deleted)` of a stream row, `None` without a row.
async fn stream_state(shared: Arc<Shared>, stream: Vec<u8>) -> Result<Option<(Option<u64>, bool)>> {
    crate::error::retry(|| stream_state_once(Arc::clone(&shared), stream.clone())).await
}

async fn stream_state_once(shared: Arc<Shared>, stream: Vec<u8>) -> Result<Option<(Option<u64>, bool)>> {
    let client = shared.client().await?;
    let statement = client.prepare_cached(&shared.sql.stream_state).await.map_err(db("prepare stream state"))?;
    let row = client.query_opt(&statement, &[&stream]).await.map_err(db("read stream state"))?;
    let Some(row) = row else { return Ok(None) };
    let last: Option<i64> = row.try_get(0).map_err(db("read stream state"))?;
    let is_deleted: bool = row.try_get(1).map_err(db("read stream state"))?;
    Ok(Some((last.map(|v| to_u64(v, "version")).transpose()?, is_deleted)))
}

/// One validated part of an append, every event with an id.
#[derive(Debug)]
pub(crate) struct Part {
    stream: String,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    /// Every event carried a caller-given id (so it may be a retry).
    all_ids: bool,
}

enum Check {
    Proceed(Option<u64>),
    Idempotent(AppendResult),
    Fail(Error),
}

fn expected_ok(expected: ExpectedVersion, actual: Option<u64>) -> bool {
    match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => actual.is_none(),
        ExpectedVersion::StreamExists => actual.is_some(),
        ExpectedVersion::Exact(v) => actual == Some(v),
    }
}

/// `(version, id, position)` of `stream`'s events `first..=last`.
async fn stored_ids(
    tx: &Object,
    shared: &Shared,
    stream: &str,
    first: u64,
    last: u64,
) -> Result<Vec<(u64, u128, u64)>> {
    let statement = tx.prepare_cached(&shared.sql.recent_events).await.map_err(db("prepare retry check"))?;
    let rows = tx
        .query(&statement, &[&stream.as_bytes(), &to_i64(first, "version")?, &to_i64(last, "version")?])
        .await
        .map_err(db("read events to recognise a retry"))?;
    rows.iter()
        .map(|row| {
            let version: i64 = row.try_get(0).map_err(db("retry check"))?;
            let id: Vec<u8> = row.try_get(1).map_err(db("retry check"))?;
            let position: i64 = row.try_get(2).map_err(db("retry check"))?;
            Ok((to_u64(version, "version")?, u128_from(&id, "event id")?, to_u64(position, "position")?))
        })
        .collect()
}

fn result_of(stored: &[(u64, u128, u64)]) -> Option<AppendResult> {
    let (first, last) = (stored.first()?, stored.last()?);
    Some(AppendResult { first_version: first.0, last_version: last.0, first_position: first.2, last_position: last.2 })
}

/// The embedded writer's `check_part` (src/writer/check.rs), against the locked stream row.
async fn check_part(tx: &Object, shared: &Shared, part: &Part, state: (Option<u64>, bool)) -> Result<Check> {
    let (actual, is_deleted) = state;
    if is_deleted {
        return Ok(Check::Fail(deleted(&part.stream)));
    }
    let wrong = || Error::WrongExpectedVersion { stream: part.stream.clone(), expected: part.expected, actual };
    let count = part.events.len() as u64;
    if expected_ok(part.expected, actual) {
        let recent = part.all_ids && matches!(part.expected, ExpectedVersion::Any | ExpectedVersion::StreamExists);
        let Some(last) = actual.filter(|_| recent) else { return Ok(Check::Proceed(actual)) };
        let first = last.saturating_sub(count.saturating_sub(1));
        let stored = stored_ids(tx, shared, &part.stream, first, last).await?;
        let same = stored.len() == part.events.len()
            && stored
                .iter()
                .zip(&part.events)
                .enumerate()
                .all(|(i, ((version, id, _), event))| *version == first + i as u64 && event.id() == Some(*id));
        if same && let Some(result) = result_of(&stored) {
            return Ok(Check::Idempotent(result));
        }
        let ids: HashSet<u128> = stored.iter().map(|(_, id, _)| *id).collect();
        if part.events.iter().any(|e| e.id().is_some_and(|id| ids.contains(&id))) {
            return Ok(Check::Fail(wrong()));
        }
        return Ok(Check::Proceed(actual));
    }
    let first = match part.expected {
        ExpectedVersion::NoStream => Some(0),
        ExpectedVersion::Exact(v) => v.checked_add(1),
        ExpectedVersion::Any | ExpectedVersion::StreamExists => None,
    };
    if let Some(first) = first
        && part.all_ids
        && let Some(last) = first.checked_add(count - 1)
        && actual.is_some_and(|actual| actual >= last)
    {
        let stored = stored_ids(tx, shared, &part.stream, first, last).await?;
        let same = stored.len() == part.events.len()
            && stored
                .iter()
                .zip(&part.events)
                .enumerate()
                .all(|(i, ((version, id, _), event))| *version == first + i as u64 && event.id() == Some(*id));
        if same && let Some(result) = result_of(&stored) {
            return Ok(Check::Idempotent(result));
        }
    }
    Ok(Check::Fail(wrong()))
}

/// Opens a transaction and locks the rows of `streams` (sorted, so that concurrent
/// transactions lock in one order and cannot deadlock), creating missing ones; returns
/// each stream's state. `BEGIN`, the insert and the locking select are pipelined: one
/// round trip. (futures-util's joins poll in order, so the requests leave in order.)
async fn begin_and_lock_streams(
    tx: &Object,
    shared: &Shared,
    streams: &[&[u8]],
) -> Result<HashMap<Vec<u8>, (Option<u64>, bool)>> {
    let mut sorted: Vec<&[u8]> = streams.to_vec();
    sorted.sort_unstable();
    let ensure = tx.prepare_cached(&shared.sql.ensure_streams).await.map_err(db("prepare"))?;
    let lock = tx.prepare_cached(&shared.sql.lock_streams).await.map_err(db("prepare"))?;
    let hashes: Vec<i64> = sorted.iter().map(|id| crate::filter::partition_hash(id)).collect();
    let ensure_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&sorted, &hashes];
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&sorted];
    let (_, _, rows) =
        try_join3(tx.batch_execute("BEGIN"), tx.execute(&ensure, &ensure_params), tx.query(&lock, &params))
            .await
            .map_err(db("lock streams"))?;
    let mut states = HashMap::with_capacity(rows.len());
    for row in &rows {
        let id: Vec<u8> = row.try_get(0).map_err(db("lock streams"))?;
        let last: Option<i64> = row.try_get(1).map_err(db("lock streams"))?;
        let is_deleted: bool = row.try_get(2).map_err(db("lock streams"))?;
        states.insert(id, (last.map(|v| to_u64(v, "version")).transpose()?, is_deleted));
    }
    Ok(states)
}

/// A connection in a transaction: dropped before [`Discard::release`] (the operation's
/// future was dropped, e.g. at the operation timeout), it closes the connection instead
/// of returning it to the pool mid-transaction; the server then rolls back.
struct Discard(Option<Object>);

impl Discard {
    fn release(mut self) {
        // Back to the pool: the transaction is over.
        drop(self.0.take());
    }
}

impl Drop for Discard {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(Object::take(client));
        }
    }
}

/// How a transaction ended without committing.
enum Failure {
    /// Nothing was written; the transaction is to be rolled back.
    NotWritten(Error),
    /// COMMIT was sent and its answer lost: the connection is discarded.
    Unknown(Error),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::NotWritten(error)
    }
}

/// Runs `body` on a fresh connection; rolls back unless it committed. The connection
/// goes back to the pool only outside a transaction.
async fn in_transaction<T>(shared: &Arc<Shared>, body: impl AsyncFnOnce(&Object) -> Result<T, Failure>) -> Result<T> {
    let guard = Discard(Some(shared.client().await?));
    let Some(client) = guard.0.as_ref() else { return Err(Error::backend("lost the connection", None)) };
    match body(client).await {
        Ok(value) => {
            guard.release();
            Ok(value)
        }
        Err(Failure::NotWritten(error)) => {
            if !client.is_closed() && client.batch_execute("ROLLBACK").await.is_ok() {
                guard.release();
            }
            Err(error)
        }
        // Dropping the guard closes the connection.
        Err(Failure::Unknown(error)) => Err(error),
    }
}

/// The outcome of a failed COMMIT is unknown to the client (the server may have committed
/// before the connection broke).
fn commit_failed(what: &str, error: tokio_postgres::Error) -> Error {
    let message = format!(
        "COMMIT failed, so whether the {what} was done is unknown (it is whole or absent, never partial; retry an append with event ids to find out): {error}"
    );
    Error::backend(message, Some(Arc::new(crate::error::OutcomeUnknown(error))))
}

/// Most appends one group commit takes.
const GROUP_REQUESTS_MAX: usize = 512;
/// Most bytes of event data and metadata one group commit takes (a single larger append,
/// up to the batch limit, is a group of its own).
const GROUP_PAYLOAD_BYTES_MAX: usize = chronicle::BATCH_BYTES_MAX_DEFAULT;
/// Appends waiting for the committer, at most.
const COMMIT_QUEUE_DEPTH_MAX: usize = chronicle::WRITER_QUEUE_DEPTH_MAX;

/// One caller's append, queued for the committer.
pub(crate) struct Request {
    parts: Vec<Part>,
    /// An `append_if` condition: such a request is a group of its own.
    condition: Option<Arc<AppendCondition>>,
    events: usize,
    bytes: usize,
    reply: tokio::sync::oneshot::Sender<Result<Vec<AppendResult>>>,
}

impl Request {
    pub(crate) fn new(
        parts: Vec<Part>,
        condition: Option<Arc<AppendCondition>>,
    ) -> (Self, tokio::sync::oneshot::Receiver<Result<Vec<AppendResult>>>) {
        let events = parts.iter().map(|p| p.events.len()).sum();
        let bytes = parts.iter().flat_map(|p| &p.events).map(|e| e.data().len() + e.metadata().len()).sum();
        let (reply, answer) = tokio::sync::oneshot::channel();
        (Request { parts, condition, events, bytes, reply }, answer)
    }
}

/// Queues `parts` for the store's committer and waits for the answer.
pub(crate) async fn submit(
    queue: tokio::sync::mpsc::Sender<Request>,
    parts: Vec<Part>,
    condition: Option<Arc<AppendCondition>>,
) -> Result<Vec<AppendResult>> {
    let (request, answer) = Request::new(parts, condition);
    queue.send(request).await.map_err(|_| Error::backend("the store's committer has stopped", None))?;
    answer.await.map_err(|_| {
        Error::backend("the store's committer dropped the append; it may or may not have committed", None)
    })?
}

/// The committer: one task per store that turns every append queued meanwhile into one
/// transaction (group commit, as the embedded writer does): one stream-lock round trip,
/// one insert, one COMMIT and one WAL flush for the whole group. Appends of one group touch
/// disjoint streams (an append to a stream already in the group waits for the next), so
/// each is checked exactly as it would be alone; a refused or retried append is answered
/// without affecting the others.
pub(crate) async fn committer(shared: Arc<Shared>, mut queue: tokio::sync::mpsc::Receiver<Request>) {
    let mut pending: VecDeque<Request> = VecDeque::new();
    loop {
        if pending.is_empty() {
            match queue.recv().await {
                Some(request) => pending.push_back(request),
                None => return,
            }
        }
        while pending.len() < GROUP_REQUESTS_MAX * 2 {
            match queue.try_recv() {
                Ok(request) => pending.push_back(request),
                Err(_) => break,
            }
        }
        let mut group: Vec<Request> = Vec::new();
        let mut streams: HashSet<String> = HashSet::new();
        let mut blocked: HashSet<String> = HashSet::new();
        let (mut events, mut bytes) = (0usize, 0usize);
        let mut later = VecDeque::new();
        for request in pending.drain(..) {
            let touches = |set: &HashSet<String>| request.parts.iter().any(|p| set.contains(&p.stream));
            // A conditional append is a group of its own: its condition is checked under
            // the counter lock against everything committed before it.
            let alone = request.condition.is_some() || group.first().is_some_and(|r| r.condition.is_some());
            let fits = group.is_empty()
                || (!alone
                    && group.len() < GROUP_REQUESTS_MAX
                    && events + request.events <= chronicle::BATCH_EVENTS_MAX
                    && bytes + request.bytes <= GROUP_PAYLOAD_BYTES_MAX);
            if fits && !touches(&streams) && !touches(&blocked) {
                streams.extend(request.parts.iter().map(|p| p.stream.clone()));
                events += request.events;
                bytes += request.bytes;
                group.push(request);
            } else {
                // Keeps the order of appends to each stream: nothing after a deferred
                // append to its streams joins this group.
                blocked.extend(request.parts.iter().map(|p| p.stream.clone()));
                later.push_back(request);
            }
        }
        pending = later;
        let requests: Arc<Vec<Vec<Part>>> = Arc::new(group.iter_mut().map(|r| std::mem::take(&mut r.parts)).collect());
        let condition = group.first().and_then(|r| r.condition.clone());
        let timeout = shared.options.operation_timeout;
        let outcome = bounded(
            timeout,
            crate::error::retry(|| commit_group(Arc::clone(&shared), Arc::clone(&requests), condition.clone())),
        )
        .await;
        match outcome {
            Ok(answers) => {
                for (request, answer) in group.into_iter().zip(answers) {
                    let _ = request.reply.send(answer);
                }
            }
            Err(error) => {
                for request in group {
                    let _ = request.reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// One group in one transaction; a connection lost before COMMIT (nothing written) is
/// retried by the caller on another connection.
async fn commit_group(
    shared: Arc<Shared>,
    requests: Arc<Vec<Vec<Part>>>,
    condition: Option<Arc<AppendCondition>>,
) -> Result<Vec<Result<Vec<AppendResult>>>> {
    in_transaction(&shared, async |client: &Object| group_in(&shared, client, &requests, condition.as_deref()).await)
        .await
}

/// Takes the counter row's lock, then looks for the first event matching `condition`
/// after its position, in a statement whose snapshot starts after the lock was granted.
/// Every append and deletion holds that lock through its COMMIT (and a committing
/// transaction is visible before its locks are released), so the snapshot sees every
/// event that committed before this append and no event can commit before it later:
/// the check cannot race another writer of any process (docs/postgres.md).
async fn condition_holds(client: &Object, shared: &Shared, condition: &AppendCondition) -> Result<Option<Error>> {
    let from = condition.after_position.map_or(0, |p| p.saturating_add(1));
    let from = i64::try_from(from).unwrap_or(i64::MAX);
    let (clause, params) = crate::filter::sql(&condition.filter, &shared.sql.schema, 2);
    let find = format!(
        "SELECT position, stream_id, event_type FROM \"{}\".events WHERE position >= $1{clause} ORDER BY position LIMIT 1",
        shared.sql.schema
    );
    let lock = client.prepare_cached(&shared.sql.lock_head).await.map_err(db("prepare"))?;
    let find = client.prepare_cached(&find).await.map_err(db("prepare append condition"))?;
    let mut all: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&from];
    all.extend(crate::filter::borrow(&params));
    let (_, found) = futures_util::future::try_join(client.query_one(&lock, &[]), client.query_opt(&find, &all))
        .await
        .map_err(db("check the append condition"))?;
    let Some(row) = found else { return Ok(None) };
    let position: i64 = row.try_get(0).map_err(db("append condition"))?;
    let stream: Vec<u8> = row.try_get(1).map_err(db("append condition"))?;
    let event_type: Vec<u8> = row.try_get(2).map_err(db("append condition"))?;
    Ok(Some(Error::ConditionFailed {
        position: to_u64(position, "position")?,
        stream: String::from_utf8_lossy(&stream).into_owned(),
        event_type: String::from_utf8_lossy(&event_type).into_owned(),
        after: condition.after_position,
    }))
}

/// What one append of a group comes to before the insert.
enum Verdict {
    Answered(Result<Vec<AppendResult>>),
    /// To write: each part's last version before it.
    Write(Vec<Option<u64>>),
}

async fn verdict(
    client: &Object,
    shared: &Shared,
    parts: &[Part],
    states: &HashMap<Vec<u8>, (Option<u64>, bool)>,
) -> Result<Verdict> {
    let mut checks = Vec::with_capacity(parts.len());
    for part in parts {
        let state = states.get(part.stream.as_bytes()).copied().unwrap_or((None, false));
        checks.push(check_part(client, shared, part, state).await?);
    }
    if let Some(index) = checks.iter().position(|c| matches!(c, Check::Fail(_))) {
        return Ok(match checks.into_iter().nth(index) {
            Some(Check::Fail(error)) => Verdict::Answered(Err(error)),
            _ => Verdict::Answered(Err(Error::backend("lost a failed check", None))),
        });
    }
    if checks.iter().all(|c| matches!(c, Check::Idempotent(_))) {
        let results = checks.into_iter().filter_map(|c| if let Check::Idempotent(r) = c { Some(r) } else { None });
        return Ok(Verdict::Answered(Ok(results.collect())));
    }
    if let Some((part, _)) = parts.iter().zip(&checks).find(|(_, c)| matches!(c, Check::Idempotent(_))) {
        let actual = states.get(part.stream.as_bytes()).and_then(|s| s.0);
        let error = Error::WrongExpectedVersion { stream: part.stream.clone(), expected: part.expected, actual };
        return Ok(Verdict::Answered(Err(error)));
    }
    Ok(Verdict::Write(checks.into_iter().map(|c| if let Check::Proceed(last) = c { last } else { None }).collect()))
}

async fn group_in(
    shared: &Shared,
    client: &Object,
    requests: &[Vec<Part>],
    condition: Option<&AppendCondition>,
) -> Result<Vec<Result<Vec<AppendResult>>>, Failure> {
    let not_written = |context: &'static str| {
        move |error: tokio_postgres::Error| from_db(&format!("append not written: {context}"), error)
    };
    let update = client.prepare_cached(&shared.sql.update_streams).await.map_err(not_written("prepare"))?;
    let insert = client.prepare_cached(&shared.sql.insert_events).await.map_err(not_written("prepare"))?;
    let ids: Vec<&[u8]> = requests.iter().flatten().map(|p| p.stream.as_bytes()).collect();
    let states = begin_and_lock_streams(client, shared, &ids).await?;
    let mut verdicts = Vec::with_capacity(requests.len());
    for parts in requests {
        verdicts.push(verdict(client, shared, parts, &states).await?);
    }
    if let Some(condition) = condition
        && verdicts.iter().any(|v| matches!(v, Verdict::Write(_)))
        && let Some(failed) = condition_holds(client, shared, condition).await?
    {
        // A conditional append is a group of its own: its one verdict becomes the failure.
        verdicts = vec![Verdict::Answered(Err(failed))];
    }
    if verdicts.iter().all(|v| matches!(v, Verdict::Answered(_))) {
        // Nothing to write; end the transaction before answering.
        client.batch_execute("ROLLBACK").await.map_err(not_written("rollback"))?;
        return Ok(verdicts
            .into_iter()
            .map(|v| if let Verdict::Answered(a) = v { a } else { Ok(Vec::new()) })
            .collect());
    }
    // Build the rows: versions from each stream's last; positions come from the counter.
    let total: usize = requests
        .iter()
        .zip(&verdicts)
        .filter(|(_, v)| matches!(v, Verdict::Write(_)))
        .map(|(parts, _)| parts.iter().map(|p| p.events.len()).sum::<usize>())
        .sum();
    let mut stream_col: Vec<&[u8]> = Vec::with_capacity(total);
    let mut version_col: Vec<i64> = Vec::with_capacity(total);
    let mut type_col: Vec<&[u8]> = Vec::with_capacity(total);
    let mut data_col: Vec<&[u8]> = Vec::with_capacity(total);
    let mut meta_col: Vec<&[u8]> = Vec::with_capacity(total);
    let mut id_col: Vec<Vec<u8>> = Vec::with_capacity(total);
    let mut corr_col: Vec<Option<Vec<u8>>> = Vec::with_capacity(total);
    let mut caus_col: Vec<Option<Vec<u8>>> = Vec::with_capacity(total);
    let mut streams_updated: Vec<&[u8]> = Vec::new();
    let mut lasts: Vec<i64> = Vec::new();
    // Per written request: each part's (first_version, last_version).
    let mut spans: Vec<Vec<(u64, u64)>> = Vec::new();
    for (parts, verdict) in requests.iter().zip(&verdicts) {
        let Verdict::Write(lasts_before) = verdict else { continue };
        let mut request_spans = Vec::with_capacity(parts.len());
        for (part, last) in parts.iter().zip(lasts_before) {
            let first_version = last.map_or(0, |v| v + 1);
            for (i, event) in part.events.iter().enumerate() {
                stream_col.push(part.stream.as_bytes());
                version_col.push(to_i64(first_version + i as u64, "version")?);
                type_col.push(event.event_type().as_bytes());
                data_col.push(event.data().as_ref());
                meta_col.push(event.metadata().as_ref());
                id_col.push(event.id().unwrap_or_default().to_be_bytes().to_vec());
                corr_col.push(event.correlation_id().map(|c| c.to_be_bytes().to_vec()));
                caus_col.push(event.causation_id().map(|c| c.to_be_bytes().to_vec()));
            }
            let last_version = first_version + part.events.len() as u64 - 1;
            streams_updated.push(part.stream.as_bytes());
            lasts.push(to_i64(last_version, "version")?);
            request_spans.push((first_version, last_version));
        }
        spans.push(request_spans);
    }
    let count = total as i64;
    let update_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&streams_updated, &lasts];
    let insert_params: [&(dyn tokio_postgres::types::ToSql + Sync); 10] = [
        &count,
        &stream_col,
        &version_col,
        &type_col,
        &data_col,
        &meta_col,
        &id_col,
        &corr_col,
        &caus_col,
        &shared.sql.channel,
    ];
    // Pipelined, in this order, one round trip: the stream rows (locked already); the
    // counter row — whose lock is the only point where appends of different committers
    // (processes) wait for each other — with the events and the notification; and COMMIT.
    // The server runs COMMIT right after the insert, so the counter's lock is held for the
    // insert and the WAL flush only, never for a client round trip.
    //
    // `try_join3` polls in order and stops at the first error, so a request that fails to
    // encode is never sent and neither is anything after it (no COMMIT). An error the
    // server reports for the update or the insert aborts the transaction, and the server
    // turns the COMMIT that follows into a ROLLBACK: not written. Any other failure once
    // COMMIT was sent (the connection broke, an answer was lost) leaves the outcome unknown.
    let before_commit = |context: &'static str| {
        move |error: tokio_postgres::Error| {
            if error.as_db_error().is_some() {
                Failure::NotWritten(from_db(&format!("append not written: {context}"), error))
            } else {
                Failure::Unknown(commit_failed("append", error))
            }
        }
    };
    let (_, row, ()) = try_join3(
        client.execute(&update, &update_params).map_err(before_commit("update streams")),
        client.query_one(&insert, &insert_params).map_err(before_commit("insert events")),
        client.batch_execute("COMMIT").map_err(|e| Failure::Unknown(commit_failed("append", e))),
    )
    .await?;
    let first_position: i64 = row.try_get(0).map_err(|e| Failure::Unknown(from_db("append committed, but", e)))?;
    let mut position = to_u64(first_position, "position").map_err(Failure::Unknown)?;
    let mut spans = spans.into_iter();
    let mut answers = Vec::with_capacity(verdicts.len());
    for verdict in verdicts {
        match verdict {
            Verdict::Answered(answer) => answers.push(answer),
            Verdict::Write(_) => {
                let mut results = Vec::new();
                for (first_version, last_version) in spans.next().unwrap_or_default() {
                    let n = last_version - first_version;
                    results.push(AppendResult {
                        first_version,
                        last_version,
                        first_position: position,
                        last_position: position + n,
                    });
                    position += n + 1;
                }
                answers.push(Ok(results));
            }
        }
    }
    Ok(answers)
}

async fn delete(shared: Arc<Shared>, stream: String, expected: ExpectedVersion) -> Result<()> {
    in_transaction(&shared, async |client: &Object| {
        let not_written = |context: &'static str| {
            move |error: tokio_postgres::Error| from_db(&format!("delete not done: {context}"), error)
        };
        let id = stream.as_bytes();
        let states = begin_and_lock_streams(client, &shared, &[id]).await?;
        let (actual, is_deleted) = states.get(id).copied().unwrap_or((None, false));
        if is_deleted {
            return Err(deleted(&stream).into());
        }
        if !expected_ok(expected, actual) {
            return Err(Error::WrongExpectedVersion { stream: stream.clone(), expected, actual }.into());
        }
        client.execute(&shared.sql.mark_deleted, &[&id]).await.map_err(not_written("mark deleted"))?;
        client.execute(&shared.sql.delete_events, &[&id]).await.map_err(not_written("remove events"))?;
        client.execute(&shared.sql.delete_snapshots, &[&id]).await.map_err(not_written("remove snapshots"))?;
        // The deletion takes one position, as the embedded store's tombstone record does
        // (no read returns it; appends, `read_all` and subscriptions move past it). Taken
        // last and pipelined with COMMIT, so the counter lock is held only for the commit.
        let take = client.prepare_cached(&shared.sql.take_position).await.map_err(not_written("prepare"))?;
        let before_commit = |error: tokio_postgres::Error| {
            if error.as_db_error().is_some() {
                Failure::NotWritten(from_db("delete not done: take its position", error))
            } else {
                Failure::Unknown(commit_failed("delete_stream", error))
            }
        };
        futures_util::future::try_join(
            client.execute(&take, &[&shared.sql.channel]).map_err(before_commit),
            client.batch_execute("COMMIT").map_err(|e| Failure::Unknown(commit_failed("delete_stream", e))),
        )
        .await
        .map(|_| ())
    })
    .await
}

impl EventStore for PostgresStore {
    type StreamEvents = PgEvents;
    type AllEvents = PgEvents;
    type FilteredEvents = PgEvents;

    fn read_all_filtered(&self, from_position: u64, filter: Filter) -> Result<PgEvents> {
        PostgresStore::read_all_filtered(self, from_position, filter)
    }

    fn append_if(&self, condition: AppendCondition, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>> {
        PostgresStore::append_if(self, condition, parts)
    }

    fn append(&self, stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> Result<AppendResult> {
        PostgresStore::append(self, stream, expected, events)
    }

    fn append_multi(&self, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>> {
        PostgresStore::append_multi(self, parts)
    }

    fn read_stream(&self, stream: &str, from_version: u64) -> Result<PgEvents> {
        PostgresStore::read_stream(self, stream, from_version)
    }

    fn read_stream_backward(&self, stream: &str, from_version: Option<u64>) -> Result<PgEvents> {
        PostgresStore::read_stream_backward(self, stream, from_version)
    }

    fn read_all(&self, from_position: u64) -> Result<PgEvents> {
        PostgresStore::read_all(self, from_position)
    }

    fn read_all_backward(&self, from_position: Option<u64>) -> Result<PgEvents> {
        PostgresStore::read_all_backward(self, from_position)
    }

    fn stream_version(&self, stream: &str) -> Result<Option<u64>> {
        PostgresStore::stream_version(self, stream)
    }

    fn save_snapshot(&self, stream: &str, version: u64, state: &[u8]) -> Result<()> {
        PostgresStore::save_snapshot(self, stream, version, state)
    }

    fn load_snapshot(&self, stream: &str) -> Result<Option<Snapshot>> {
        PostgresStore::load_snapshot(self, stream)
    }

    fn delete_stream(&self, stream: &str, expected: ExpectedVersion) -> Result<()> {
        PostgresStore::delete_stream(self, stream, expected)
    }
}

/// Event ids the store assigns, as the embedded store's: UUIDv7 layout (48-bit Unix
/// milliseconds, version 7, variant 0b10, 74 pseudo-random bits).
#[derive(Debug)]
struct IdGenerator {
    state: u64,
}

impl IdGenerator {
    fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(unix_ms());
        hasher.write_u32(std::process::id());
        IdGenerator { state: hasher.finish() }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn next_id(&mut self) -> u128 {
        let ms = u64::try_from(unix_ms()).unwrap_or(u64::MAX);
        let high = ((ms & 0xffff_ffff_ffff) << 16) | 0x7000 | (self.next_u64() & 0x0fff);
        let low = (self.next_u64() & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
        (u128::from(high) << 64) | u128::from(low)
    }
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

impl chronicle::FollowStore for PostgresStore {
    type Subscription = Subscription;

    fn subscribe(&self, from_position: u64, filter: Filter) -> Result<Subscription> {
        PostgresStore::subscribe(self, from_position, filter)
    }

    fn subscribe_durable(&self, name: &str, filter: Filter) -> Result<Subscription> {
        PostgresStore::subscribe_durable(self, name, filter)
    }

    fn consumer_position(&self, name: &str) -> Result<Option<u64>> {
        PostgresStore::consumer_position(self, name)
    }

    fn delete_consumer(&self, name: &str) -> Result<()> {
        PostgresStore::delete_consumer(self, name)
    }
}
