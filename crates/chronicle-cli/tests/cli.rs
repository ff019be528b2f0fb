//! The `chronicle` binary, run as a user would: exit codes, output, and every command on a
//! store that a writer (this test process) holds open.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chronicle::{ExpectedVersion, NewEvent, Options, Store};
use serde_json::Value;

const WAIT_MAX: Duration = Duration::from_secs(30);

fn chronicle(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chronicle"));
    for arg in args {
        command.arg(arg);
    }
    command.stdin(Stdio::null()).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// A store with a few streams, binary, JSON and text payloads, several segments; returned
/// open (a running writer).
fn writer(dir: &Path) -> Store {
    let store = Store::open_with(dir, Options::default().segment_bytes(16 << 10)).unwrap();
    for i in 0..300u32 {
        let stream = format!("{}-{}", ["order", "account", "cart"][(i % 3) as usize], i % 7);
        let data = match i % 3 {
            0 => format!(r#"{{"n":{i}}}"#).into_bytes(),
            1 => format!("text {i}").into_bytes(),
            _ => vec![0xff, 0xfe, i as u8],
        };
        let event = NewEvent::new(if i % 2 == 0 { "Even" } else { "Odd" }, data).with_id(u128::from(i) + 1);
        store.append(&stream, ExpectedVersion::Any, [event]).unwrap();
    }
    store
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn info_and_stats_on_a_store_a_writer_holds() {
    let dir = tempfile::tempdir().unwrap();
    let _writer = writer(dir.path());
    let output = chronicle(&[&"info", &dir.path()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("events           300"), "{text}");
    let versions = format!(
        "format versions  segment {} index {}",
        chronicle::format_versions::SEGMENT,
        chronicle::format_versions::INDEX
    );
    assert!(text.contains(&versions), "{text}");
    assert!(text.contains("oldest event     0 order-0@0 Even"), "{text}");
    assert!(text.contains("active"), "{text}");
    let output = chronicle(&[&"stats", &dir.path()]);
    assert!(output.status.success());
    let text = stdout(&output);
    assert!(text.contains("events           300"));
    assert!(text.lines().any(|l| l.trim_start().starts_with("order") && l.trim_end().ends_with(" 100")), "{text}");
    assert!(text.lines().any(|l| l.trim_start().starts_with("Even") && l.trim_end().ends_with(" 150")), "{text}");
}

#[test]
fn dump_as_json_and_table_with_filters() {
    let dir = tempfile::tempdir().unwrap();
    let _writer = writer(dir.path());
    let output = chronicle(&[&"dump", &dir.path()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let events = json_lines(&stdout(&output));
    assert_eq!(events.len(), 300);
    let first = &events[0];
    assert_eq!(first["stream_id"], "order-0");
    assert_eq!(first["data"]["n"], 0);
    assert_eq!(first["data_encoding"], "json");
    assert_eq!(first["id"], format!("{:032x}", 1));
    assert!(first["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(events[1]["data"], "text 1");
    assert_eq!(events[2]["data_encoding"], "base64");
    assert_eq!(events[2]["data"], "//4C");
    for key in ["version", "position", "event_type", "correlation_id", "causation_id", "metadata"] {
        assert!(first.get(key).is_some(), "{key}");
    }
    let output = chronicle(&[&"dump", &dir.path(), &"--stream", &"cart-2", &"--event-type", &"Odd", &"--limit", &"3"]);
    let events = json_lines(&stdout(&output));
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e["stream_id"] == "cart-2" && e["event_type"] == "Odd"));
    let output = chronicle(&[&"dump", &dir.path(), &"--from-position", &"295", &"--format", &"table"]);
    let text = stdout(&output);
    assert_eq!(text.lines().count(), 6, "{text}");
    assert!(text.lines().nth(1).unwrap().trim_start().starts_with("295"));
}

#[test]
fn tail_prints_the_last_events_and_follows_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = writer(dir.path());
    let output = chronicle(&[&"tail", &dir.path(), &"--limit", &"2"]);
    let events = json_lines(&stdout(&output));
    let positions: Vec<u64> = events.iter().map(|e| e["position"].as_u64().unwrap()).collect();
    assert_eq!(positions, [298, 299]);
    let (_child, lines) =
        spawn_with_lines(&[&"tail", &"--follow", &"--limit", &"1", &"--event-type", &"Followed", &dir.path()]);
    std::thread::sleep(Duration::from_millis(200));
    for i in 0..5 {
        store.append("live-1", ExpectedVersion::Any, [NewEvent::new("Followed", format!("{i}"))]).unwrap();
        store.append("live-1", ExpectedVersion::Any, [NewEvent::new("Ignored", "x")]).unwrap();
    }
    let got: Vec<Value> = (0..5)
        .map(|_| serde_json::from_str(&lines.recv_timeout(WAIT_MAX).expect("tail --follow printed nothing")).unwrap())
        .collect();
    let data: Vec<&str> = got.iter().map(|e| e["data"].as_str().unwrap()).collect();
    assert_eq!(data, ["0", "1", "2", "3", "4"]);
}

#[test]
fn verify_exits_0_on_a_clean_store_and_1_with_the_damage_located() {
    let dir = tempfile::tempdir().unwrap();
    writer(dir.path()).close().unwrap();
    let output = chronicle(&[&"verify", &dir.path()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stderr(&output).starts_with("clean: "));
    assert_eq!(stdout(&output), "");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    let sealed = &segments[0];
    let mut bytes = std::fs::read(sealed).unwrap();
    let at = 64 + 70;
    bytes[at] ^= 0x01;
    std::fs::write(sealed, &bytes).unwrap();
    let output = chronicle(&[&"verify", &dir.path()]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    let line = text.lines().next().unwrap();
    assert!(line.starts_with(&format!("{} 64 ", sealed.display())), "{line}");
    assert!(line.contains("checksum"), "{line}");
}

#[test]
fn compact_refuses_while_a_writer_holds_the_store_and_runs_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let store = writer(dir.path());
    store.delete_stream("order-0", ExpectedVersion::Any).unwrap();
    let output = chronicle(&[&"compact", &dir.path()]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1);
    assert!(
        message.contains("refusing to compact") && message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    store.close().unwrap();
    let output = chronicle(&[&"compact", &dir.path()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("events removed"));
}

#[test]
fn backup_while_the_writer_runs_then_restore() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let store = writer(&live);
    let backup = dir.path().join("backup");
    let output = chronicle(&[&"backup", &live, &backup]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("at position 300"), "{}", stdout(&output));
    store.append("after", ExpectedVersion::Any, [NewEvent::new("T", "x")]).unwrap();
    // Restore refuses a non-empty target, and says why.
    let output = chronicle(&[&"restore", &backup, &live]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("not empty"), "{}", stderr(&output));
    let restored = dir.path().join("restored");
    let output = chronicle(&[&"restore", &backup, &restored]);
    assert!(output.status.success(), "{}", stderr(&output));
    let restored = Store::open(&restored).unwrap();
    let a: Vec<_> = restored.read_all(0).unwrap().map(|e| e.unwrap()).collect();
    let b: Vec<_> = store.read_all(0).unwrap().map(|e| e.unwrap()).take(300).collect();
    assert_eq!(a, b);
}

#[test]
fn usage_errors_exit_2_and_errors_are_one_line_with_the_path() {
    let output = chronicle(&[&"dump"]);
    assert_eq!(output.status.code(), Some(2));
    let output = chronicle(&[&"frobnicate"]);
    assert_eq!(output.status.code(), Some(2));
    let output = chronicle(&[&"dump", &"/nonexistent/store", &"--limit", &"x"]);
    assert_eq!(output.status.code(), Some(2));
    let output = chronicle(&[&"info", &"/nonexistent/store"]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.contains("/nonexistent/store"), "{message}");
}

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    receive
}

/// One HTTP/1.1 GET; returns the status and body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT_MAX)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    // Chunked bodies (axum streams JSON in one chunk): strip the chunk framing.
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            out.push_str(&tail[..size]);
            rest = &tail[size + 2..];
        }
        out
    } else {
        body.to_owned()
    };
    (status, body)
}

fn get_json(addr: &str, path: &str) -> (u16, Value) {
    let (status, body) = get(addr, path);
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")))
}

/// Starts `chronicle` with `args`; returns it and its stdout's lines as they come.
fn spawn_with_lines(args: &[&dyn AsRef<std::ffi::OsStr>]) -> (Guard, mpsc::Receiver<String>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chronicle"));
    for arg in args {
        command.arg(arg);
    }
    let mut child = Guard(command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap());
    let lines = lines_of(&mut child.0);
    (child, lines)
}

/// Starts `chronicle serve` on a free loopback port; returns it and its address.
fn serve(dir: &Path) -> (Guard, String) {
    let (server, lines) = spawn_with_lines(&[&"serve", &"--listen", &"127.0.0.1:0", &dir]);
    let first = lines.recv_timeout(WAIT_MAX).expect("the server printed no address");
    (server, first.strip_prefix("listening on http://").unwrap().to_owned())
}

#[test]
fn serve_answers_queries_and_streams_new_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = writer(dir.path());
    let (_server, addr) = serve(dir.path());

    let (status, body) = get_json(&addr, "/api/v1/events?category=order&type=Even&limit=5");
    assert_eq!(status, 200);
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 5);
    assert!(events.iter().all(|e| e["stream_id"].as_str().unwrap().starts_with("order-") && e["event_type"] == "Even"));
    assert!(body["next_position"].as_u64().unwrap() > events[4]["position"].as_u64().unwrap());
    let (_, body) = get_json(&addr, "/api/v1/events?stream_prefix=cart-2&from_position=100&limit=100000");
    assert!(body["events"].as_array().unwrap().iter().all(|e| e["position"].as_u64().unwrap() >= 100));
    let (status, body) = get_json(&addr, "/api/v1/events/7");
    assert_eq!((status, body["position"].as_u64()), (200, Some(7)));
    let (status, body) = get_json(&addr, "/api/v1/events/100000");
    assert_eq!(status, 404);
    assert!(body["error"].is_string());
    let (status, body) = get_json(&addr, "/api/v1/streams/order-0/events?from_version=1&to_version=3");
    assert_eq!(status, 200);
    let versions: Vec<u64> =
        body["events"].as_array().unwrap().iter().map(|e| e["version"].as_u64().unwrap()).collect();
    assert_eq!((body["stream_id"].as_str(), versions), (Some("order-0"), vec![1, 2, 3]));
    let (_, body) = get_json(&addr, "/api/v1/streams?prefix=cart&limit=2");
    assert_eq!(body["streams"].as_array().unwrap().len(), 2);
    let (status, body) = get_json(&addr, "/api/v1/stats");
    assert_eq!((status, body["end_position"].as_u64(), body["read_only"].as_bool()), (200, Some(300), Some(true)));
    let (status, body) = get_json(&addr, "/api/v1/health");
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    for bad in [
        "/api/v1/events?limit=abc",
        "/api/v1/events?from_position=-1",
        "/api/v1/events?limit=0",
        "/api/v1/events?bogus=1",
        "/api/v1/events/xyz",
        "/api/v1/streams/order-0/events?from_version=5&to_version=2",
    ] {
        let (status, body) = get_json(&addr, bad);
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].is_string(), "{bad}");
    }
    let long = format!("/api/v1/events?type={}", "x".repeat(5000));
    assert_eq!(get_json(&addr, &long).0, 400);

    // Server-Sent Events: events appended by this process reach the server's process.
    let mut sse = TcpStream::connect(&addr).unwrap();
    sse.set_read_timeout(Some(WAIT_MAX)).unwrap();
    write!(sse, "GET /api/v1/subscribe?category=live HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut reader = BufReader::new(sse);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    assert!(status_line.contains("200"), "{status_line}");
    std::thread::sleep(Duration::from_millis(200));
    for i in 0..3 {
        store.append("live-9", ExpectedVersion::Any, [NewEvent::new("Pushed", format!(r#"{{"i":{i}}}"#))]).unwrap();
        store.append("other-1", ExpectedVersion::Any, [NewEvent::new("Skipped", "x")]).unwrap();
    }
    let deadline = Instant::now() + WAIT_MAX;
    let mut received = Vec::new();
    while received.len() < 3 {
        assert!(Instant::now() < deadline, "SSE delivered {received:?} only");
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        // Chunked framing puts chunk sizes on their own lines; SSE data lines start "data:".
        if let Some(data) = line.trim_end().strip_prefix("data: ") {
            let event: Value = serde_json::from_str(data).unwrap();
            received.push(event["data"]["i"].as_u64().unwrap());
            assert_eq!(event["stream_id"], "live-9");
        }
    }
    assert_eq!(received, [0, 1, 2]);
}

/// Sends SIGINT (what Ctrl-C sends) to `child` and waits for it to exit, at most `WAIT_MAX`.
fn interrupt_and_wait(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success(), "kill -INT failed");
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the process did not exit after Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn tail_follow_exits_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let store = writer(dir.path());
    let (mut child, lines) = spawn_with_lines(&[&"tail", &"--follow", &"--limit", &"0", &dir.path()]);
    // An event seen means the follow loop (and its Ctrl-C handler) runs; events appended
    // before it found the end of the log are not printed (--limit 0), so append until one is.
    let deadline = Instant::now() + WAIT_MAX;
    let line = loop {
        store.append("live-2", ExpectedVersion::Any, [NewEvent::new("Seen", "1")]).unwrap();
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
            break line;
        }
        assert!(Instant::now() < deadline, "tail --follow printed nothing");
    };
    assert!(line.contains("live-2"), "{line}");
    // Quiet for a while: the poll has backed off, and Ctrl-C still ends it at once.
    std::thread::sleep(Duration::from_millis(700));
    let status = interrupt_and_wait(&mut child.0);
    assert_eq!(status.code(), Some(0), "tail --follow after Ctrl-C: {status}");
    // Every printed line is whole JSON.
    while let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) {
        serde_json::from_str::<Value>(&line).unwrap();
    }
}

#[test]
fn serve_ends_sse_streams_on_ctrl_c_and_survives_client_disconnects() {
    let dir = tempfile::tempdir().unwrap();
    let store = writer(dir.path());
    let (mut server, addr) = serve(dir.path());
    let open_sse = || {
        let mut sse = TcpStream::connect(&addr).unwrap();
        sse.set_read_timeout(Some(WAIT_MAX)).unwrap();
        write!(sse, "GET /api/v1/subscribe?from_position=0 HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut reader = BufReader::new(sse);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).unwrap();
        assert!(status_line.contains("200"), "{status_line}");
        reader
    };
    // A client that goes away mid-stream: the server keeps serving others.
    for _ in 0..3 {
        drop(open_sse());
    }
    store.append("live-3", ExpectedVersion::Any, [NewEvent::new("After", "x")]).unwrap();
    let (status, body) = get_json(&addr, "/api/v1/stats");
    assert_eq!((status, body["end_position"].as_u64()), (200, Some(301)));
    // A client still connected (and idle past the backoff) does not keep the server alive
    // after Ctrl-C: its stream ends and the server exits with 0.
    let mut connected = open_sse();
    std::thread::sleep(Duration::from_millis(700));
    let status = interrupt_and_wait(&mut server.0);
    assert_eq!(status.code(), Some(0), "serve after Ctrl-C: {status}");
    let mut rest = String::new();
    let _ = connected.read_to_string(&mut rest);
    assert!(rest.contains("live-3"), "the stream delivered {rest:?}");
}
