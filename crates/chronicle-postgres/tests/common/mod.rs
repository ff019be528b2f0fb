//! Shared by the PostgreSQL tests: the server URL, fresh stores (one schema each), and a
//! raw SQL client for fault injection.
//!
//! Every test here is `#[cfg_attr(not(pg_tests), ignore = ...)]`: the build script sets
//! `pg_tests` when `CHRONICLE_TEST_PG_URL` is set at build time, so without a server the
//! tests are reported as ignored, never as passed. Run them with
//! `scripts/with-postgres.sh cargo test -p chronicle-postgres`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chronicle_postgres::{PostgresOptions, PostgresStore};

pub fn url() -> String {
    match std::env::var("CHRONICLE_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!("not run: CHRONICLE_TEST_PG_URL is not set (run through scripts/with-postgres.sh)"),
    }
}

/// A schema name no other test (or earlier run) uses.
pub fn fresh_schema(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("t_{tag}_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

pub fn options(schema: &str) -> PostgresOptions {
    PostgresOptions::default()
        .schema(schema)
        .pool_size(4)
        .runtime_threads(1)
        .operation_timeout(Duration::from_secs(60))
        .poll_interval(Duration::from_millis(200))
}

pub fn fresh_store(tag: &str) -> PostgresStore {
    fresh_store_in(&fresh_schema(tag))
}

/// A store (a handle of its own) on `schema`.
pub fn fresh_store_in(schema: &str) -> PostgresStore {
    PostgresStore::connect_with(&url(), options(schema)).expect("connect")
}

/// Runs `sql` (no parameters) on a connection of its own; returns the first column of
/// each row as text.
pub fn sql(sql: &str) -> Vec<Option<String>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&url(), tokio_postgres::NoTls).await.expect("connect");
        let driver = tokio::spawn(connection);
        let messages = client.simple_query(sql).await.expect("query");
        let mut values = Vec::new();
        for message in messages {
            if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
                values.push(row.get(0).map(str::to_owned));
            }
        }
        drop(client);
        let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;
        values
    })
}

/// What [`CutProxy`] does to the next `COMMIT` a client sends through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Forward everything.
    Nothing,
    /// Forward the COMMIT to the server, then cut the client's connection before the
    /// answer comes back: the transaction commits, the client never learns it.
    AfterCommit,
    /// Cut both connections just before the COMMIT: the server rolls back, the client
    /// has sent COMMIT and cannot know it was not executed.
    BeforeCommit,
}

/// A simple-query `COMMIT` (client to server): 'Q', length 4 + 7, "COMMIT\0".
const COMMIT_QUERY: &[u8] = b"Q\0\0\0\x0bCOMMIT\0";
/// Its CommandComplete (server to client): 'C', length 4 + 7, "COMMIT\0".
const COMMIT_DONE: &[u8] = b"C\0\0\0\x0bCOMMIT\0";

/// A TCP proxy in front of the test server that cuts a connection at its next simple-query
/// `COMMIT` (armed with [`CutProxy::arm`], once): the network failing at the worst moment,
/// with a real server on both sides. [`CutProxy::cuts`] counts finished cuts; an
/// `AfterCommit` cut counts once the server has answered the COMMIT (it committed).
pub struct CutProxy {
    pub port: u16,
    armed: Arc<Mutex<Cut>>,
    cuts: Arc<AtomicU32>,
}

/// Finds `pattern` in `chunk`, also across the boundary with the previous chunk (whose
/// last bytes `tail` keeps); returns where it ends in `chunk`.
fn find_end(tail: &mut Vec<u8>, chunk: &[u8], pattern: &[u8]) -> Option<usize> {
    let carried = tail.len();
    let mut window = std::mem::take(tail);
    window.extend_from_slice(chunk);
    let found = window.windows(pattern.len()).position(|w| w == pattern);
    *tail = window[window.len().saturating_sub(pattern.len() - 1)..].to_vec();
    found.map(|at| (at + pattern.len()).saturating_sub(carried))
}

impl CutProxy {
    pub fn start() -> CutProxy {
        let server_port = server_port();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let armed = Arc::new(Mutex::new(Cut::Nothing));
        let cuts = Arc::new(AtomicU32::new(0));
        let (armed_in, cuts_in) = (Arc::clone(&armed), Arc::clone(&cuts));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", server_port)) else { continue };
                let dropping = Arc::new(AtomicBool::new(false));
                let (Ok(client_out), Ok(server_in)) = (client.try_clone(), server.try_clone()) else { continue };
                let (armed, cuts, drop_in) = (Arc::clone(&armed_in), Arc::clone(&cuts_in), Arc::clone(&dropping));
                std::thread::spawn(move || to_server(client, server, &armed, &cuts, &drop_in));
                let cuts = Arc::clone(&cuts_in);
                std::thread::spawn(move || to_client(server_in, client_out, &cuts, &dropping));
            }
        });
        CutProxy { port, armed, cuts }
    }

    /// The test server's URL, through the proxy.
    pub fn url(&self) -> String {
        url().replace(&format!(":{}/", server_port()), &format!(":{}/", self.port))
    }

    pub fn arm(&self, cut: Cut) {
        *self.armed.lock().expect("armed") = cut;
    }

    /// Waits until `count` cuts have finished (at most 30 s); returns the number.
    pub fn wait_cuts(&self, count: u32) -> u32 {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.cuts.load(Ordering::SeqCst) < count && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.cuts.load(Ordering::SeqCst)
    }
}

fn server_port() -> u16 {
    let config: tokio_postgres::Config = url().parse().expect("url");
    config.get_ports().first().copied().unwrap_or(5432)
}

/// Client to server, cutting at a `COMMIT` when armed.
fn to_server(
    mut client: TcpStream,
    mut server: TcpStream,
    armed: &Mutex<Cut>,
    cuts: &AtomicU32,
    dropping: &AtomicBool,
) {
    let mut tail = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        let found = find_end(&mut tail, chunk, COMMIT_QUERY);
        let cut = match found {
            Some(_) => std::mem::replace(&mut *armed.lock().expect("armed"), Cut::Nothing),
            None => Cut::Nothing,
        };
        match (found, cut) {
            (Some(end), Cut::AfterCommit) => {
                // No answer may reach the client: it goes first. The server gets the COMMIT;
                // the other direction cuts the server off once it has answered.
                dropping.store(true, Ordering::SeqCst);
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.write_all(&chunk[..end.min(n)]);
                return;
            }
            (Some(end), Cut::BeforeCommit) => {
                let before = end.saturating_sub(COMMIT_QUERY.len());
                let _ = server.write_all(&chunk[..before]);
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
                cuts.fetch_add(1, Ordering::SeqCst);
                return;
            }
            _ => {
                if server.write_all(chunk).is_err() {
                    break;
                }
            }
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
}

/// Server to client; once the client was cut after its COMMIT, reads on (forwarding
/// nothing) until the server answered that COMMIT, then cuts the server off.
fn to_client(mut server: TcpStream, mut client: TcpStream, cuts: &AtomicU32, dropping: &AtomicBool) {
    let mut tail = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        let done = find_end(&mut tail, chunk, COMMIT_DONE).is_some();
        if dropping.load(Ordering::SeqCst) {
            if done {
                cuts.fetch_add(1, Ordering::SeqCst);
                break;
            }
            continue;
        }
        if client.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
}
