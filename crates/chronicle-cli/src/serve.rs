//! `chronicle serve`: a read-only HTTP query API (JSON, and Server-Sent Events for new
//! events) over a store opened read-only, so it runs beside the writer.
//!
//! Every limit is capped (`LIMIT_MAX` events per response, `SCAN_MAX` records looked at per
//! request, `STREAM_ID_BYTES_MAX` per id); a request can make the server hold at most one
//! response's events. Store calls run on tokio's blocking pool.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;

use axum::Json;
use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chronicle::{Error, Store};
use serde_json::{Value, json};

use crate::Failure;
use crate::event_json;
use crate::filter::{Filter, Source, read_matching, stopping};

/// Events per response when the request names no limit.
const LIMIT_DEFAULT: usize = 100;
/// Most events per response (and per SSE poll).
const LIMIT_MAX: usize = 1000;
/// Most records one request reads while filtering.
const SCAN_MAX: usize = 100_000;

pub(crate) fn run(dir: &Path, listen: SocketAddr) -> Result<u8, Failure> {
    let store = crate::commands::open(dir)?;
    if !listen.ip().is_loopback() {
        eprintln!("chronicle: warning: serving {} on non-loopback address {listen}", dir.display());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::new(format!("cannot start the HTTP server: {e}")))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| Failure::new(format!("cannot listen on {listen}: {e}")))?;
        let local = listener.local_addr()?;
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "listening on http://{local}")?;
            out.flush()?;
        }
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
            // Graceful shutdown waits for every open response: SSE streams end at their
            // next poll once this is set.
            crate::filter::STOPPING.store(true, std::sync::atomic::Ordering::SeqCst);
        };
        axum::serve(listener, router(store))
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| Failure::new(format!("HTTP server on {local} failed: {e}")))?;
        Ok(0)
    })
}

fn router(store: Store) -> Router {
    Router::new()
        .route("/api/v1/events", get(events))
        .route("/api/v1/events/{position}", get(event_at))
        .route("/api/v1/streams", get(streams))
        .route("/api/v1/streams/{stream_id}/events", get(stream_events))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/health", get(health))
        .route("/api/v1/subscribe", get(subscribe))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".to_owned()) })
        .with_state(store)
}

/// An error answer: `{"error": "..."}` with its status.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let status = match &error {
            Error::InvalidInput { .. } => StatusCode::BAD_REQUEST,
            Error::StreamDeleted { .. } => StatusCode::GONE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, error.to_string())
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

type Params = HashMap<String, String>;

/// Refuses parameters other than `allowed`.
fn only(params: &Params, allowed: &[&str]) -> Result<(), ApiError> {
    match params.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(bad(format!("unknown parameter {key:?} (allowed: {})", allowed.join(", ")))),
        None => Ok(()),
    }
}

fn number(params: &Params, name: &str) -> Result<Option<u64>, ApiError> {
    params
        .get(name)
        .map(|v| {
            v.parse::<u64>().map_err(|_| bad(format!("parameter {name} must be a non-negative integer, got {v:?}")))
        })
        .transpose()
}

fn text(params: &Params, name: &str) -> Result<Option<String>, ApiError> {
    match params.get(name) {
        Some(v) if v.len() > chronicle::STREAM_ID_BYTES_MAX => {
            Err(bad(format!("parameter {name} is longer than {} bytes", chronicle::STREAM_ID_BYTES_MAX)))
        }
        Some(v) if v.is_empty() => Err(bad(format!("parameter {name} is empty"))),
        v => Ok(v.cloned()),
    }
}

fn limit(params: &Params) -> Result<usize, ApiError> {
    match number(params, "limit")? {
        None => Ok(LIMIT_DEFAULT),
        Some(0) => Err(bad("parameter limit must be at least 1")),
        Some(n) => Ok((n as usize).min(LIMIT_MAX)),
    }
}

fn filter(params: &Params) -> Result<Filter, ApiError> {
    Ok(Filter {
        stream: None,
        event_type: text(params, "type")?,
        category: text(params, "category")?,
        stream_prefix: text(params, "stream_prefix")?,
    })
}

/// Runs a store call on the blocking pool.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or_else(|e| Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("request failed: {e}"))))
}

const EVENT_FILTERS: &[&str] = &["type", "category", "stream_prefix", "from_position", "limit"];

async fn events(State(store): State<Store>, Query(params): Query<Params>) -> Result<Json<Value>, ApiError> {
    only(&params, EVENT_FILTERS)?;
    let filter = filter(&params)?;
    let from = number(&params, "from_position")?.unwrap_or(0);
    let limit = limit(&params)?;
    blocking(move || {
        let (events, next) = read_matching(&store, &filter, from, limit, SCAN_MAX)?;
        let events: Vec<Value> = events.iter().map(event_json::event).collect();
        Ok(Json(json!({ "events": events, "next_position": next })))
    })
    .await
}

async fn event_at(
    State(store): State<Store>,
    UrlPath(position): UrlPath<String>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    only(&params, &[])?;
    let position: u64 =
        position.parse().map_err(|_| bad(format!("position must be a non-negative integer, got {position:?}")))?;
    blocking(move || match store.read_all(position)?.next().transpose()? {
        Some(event) if event.position == position => Ok(Json(event_json::event(&event))),
        _ => Err(ApiError(StatusCode::NOT_FOUND, format!("no event at position {position}"))),
    })
    .await
}

async fn stream_events(
    State(store): State<Store>,
    UrlPath(stream): UrlPath<String>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    only(&params, &["from_version", "to_version"])?;
    let from = number(&params, "from_version")?.unwrap_or(0);
    let to = number(&params, "to_version")?.unwrap_or(u64::MAX);
    if from > to {
        return Err(bad(format!("from_version {from} is above to_version {to}")));
    }
    blocking(move || {
        let mut events = Vec::new();
        let mut next_version = None;
        for event in store.read_stream(&stream, from)? {
            let event = event?;
            if event.version > to {
                break;
            }
            if events.len() >= LIMIT_MAX {
                next_version = Some(event.version);
                break;
            }
            events.push(event_json::event(&event));
        }
        Ok(Json(json!({ "stream_id": stream, "events": events, "next_version": next_version })))
    })
    .await
}

async fn streams(State(store): State<Store>, Query(params): Query<Params>) -> Result<Json<Value>, ApiError> {
    only(&params, &["prefix", "limit"])?;
    let prefix = text(&params, "prefix")?.unwrap_or_default();
    let limit = limit(&params)?;
    blocking(move || {
        let names: Vec<String> =
            store.streams()?.into_iter().filter(|s| s.starts_with(prefix.as_str())).take(limit).collect();
        Ok(Json(json!({ "streams": names })))
    })
    .await
}

async fn stats(State(store): State<Store>, Query(params): Query<Params>) -> Result<Json<Value>, ApiError> {
    only(&params, &[])?;
    blocking(move || {
        store.refresh()?;
        let s = store.stats();
        Ok(Json(json!({
            "read_only": s.read_only,
            "end_position": s.end_position,
            "streams": s.streams,
            "segments": s.segments,
            "bytes": s.bytes,
            "fsyncs": s.fsyncs,
            "fsync_p50_micros": s.fsync_p50_micros,
            "fsync_p99_micros": s.fsync_p99_micros,
            "commit_groups": s.commit_groups,
            "writer_queue_depth": s.writer_queue_depth,
            "compactions": s.compactions,
            "compaction_running": s.compaction_running,
            "subscribers": s.subscribers,
            "refreshes": s.refreshes,
        })))
    })
    .await
}

async fn health(State(store): State<Store>) -> Response {
    let health = store.health();
    let body = match &health {
        chronicle::Health::Poisoned { cause } => json!({ "status": health.status(), "cause": cause }),
        _ => json!({ "status": health.status() }),
    };
    let status = if matches!(health, chronicle::Health::Ok) { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

async fn subscribe(
    State(store): State<Store>,
    Query(params): Query<Params>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    only(&params, &["type", "category", "stream_prefix", "from_position"])?;
    let filter = filter(&params)?;
    let from = match number(&params, "from_position")? {
        Some(from) => from,
        None => store.stats().end_position,
    };
    let source = Source::new(store, filter, from);
    let stream = futures_util::stream::unfold((Some(source), VecDeque::new()), |(mut source, mut queue)| async move {
        loop {
            if let Some(event) = queue.pop_front() {
                return Some((Ok(event), (source, queue)));
            }
            if stopping() {
                return None;
            }
            let mut polling = source.take()?;
            let (polling, polled) = tokio::task::spawn_blocking(move || {
                let polled = polling.poll(LIMIT_MAX);
                (polling, polled)
            })
            .await
            .ok()?;
            let interval = polling.interval;
            source = Some(polling);
            match polled {
                Ok(events) if events.is_empty() => tokio::time::sleep(interval).await,
                Ok(events) => {
                    for e in &events {
                        queue.push_back(
                            SseEvent::default().id(e.position.to_string()).data(event_json::event(e).to_string()),
                        );
                    }
                }
                Err(error) => {
                    // Tell the client, then end the stream.
                    let event =
                        SseEvent::default().event("error").data(json!({ "error": error.to_string() }).to_string());
                    return Some((Ok(event), (None, queue)));
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
