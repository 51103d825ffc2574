//! Two scenarios that run the fixed load (the `fanout` scenario's clients
//! and rate) while something else holds the server (lanchat only):
//!
//! - `polls` (issue 13): [`POLLS`] long polls (`GET /poll?after=` far in
//!   the future `&wait=60`, which never answer before `wait` ends) held
//!   open on [`POLL_SESSIONS`] sessions, each one TCP connection; any that
//!   returns is re-opened (at most once a second each, so that a session
//!   stays under the server's 10 polls a second).
//! - `downloads` (issue 14): one [`FILE_BYTES`] file uploaded with
//!   `POST /files`, then [`DOWNLOADERS`] clients downloading it at once,
//!   again and again, for the measured window; server RSS sampled every
//!   100 ms.

use crate::client;
use crate::load::{self, Clients, Step};
use crate::procs::Server;
use serde::Serialize;
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Long polls held during the window.
pub const POLLS: usize = 500;
/// Sessions the polls share (10 polls each).
pub const POLL_SESSIONS: usize = 50;
/// Target of both scenarios: the room's p99 during them.
pub const P99_TARGET_MS: f64 = 10.0;
/// The downloaded file's size.
pub const FILE_BYTES: usize = 10 * 1024 * 1024;
/// Clients downloading at once.
pub const DOWNLOADERS: usize = 30;
/// Longest one download may take before it counts as failed.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Serialize)]
pub struct Polls {
    /// The fixed load with the polls held.
    pub during_polls: Step,
    pub polls: usize,
    pub sessions: usize,
    /// Polls open (connected, not answered) at the window's start and end,
    /// and the fewest seen (sampled every 100 ms) in between.
    pub held_at_start: usize,
    pub held_at_end: usize,
    pub held_min: usize,
    /// Polls that returned an answer / failed (no answer) before the end.
    pub answered: u64,
    pub failed: u64,
    /// Server threads during the window (most seen).
    pub server_threads: u64,
    pub p99_met: bool,
}

#[derive(Default)]
struct PollState {
    stop: Cell<bool>,
    held: Cell<usize>,
    answered: Cell<u64>,
    failed: Cell<u64>,
}

/// One held poll on its own connection, re-opened whenever it returns.
async fn hold_poll(addr: SocketAddr, cookie: Rc<String>, state: Rc<PollState>) {
    let request = format!(
        "GET /poll?after=1000000000&wait=60 HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\r\n"
    );
    while !state.stop.get() {
        let opened = Instant::now();
        state.held.set(state.held.get() + 1);
        let answer = client::exchange(addr, request.as_bytes(), Duration::from_secs(70)).await;
        state.held.set(state.held.get() - 1);
        if answer.status == 0 {
            state.failed.set(state.failed.get() + 1);
        } else {
            state.answered.set(state.answered.get() + 1);
        }
        // At most one poll a second on this connection's slot.
        let next = opened + Duration::from_secs(1);
        tokio::time::sleep_until(next.into()).await;
    }
}

/// The fixed load on `clients` with [`POLLS`] long polls held.
pub async fn polls(server: &Server, clients: &Clients, window: Duration) -> Option<Polls> {
    let addr = server.addr;
    let mut cookies = Vec::new();
    for i in 0..POLL_SESSIONS {
        match client::login(addr, &format!("poll{i}")).await {
            Ok(c) => cookies.push(Rc::new(c)),
            Err(e) => {
                crate::log(&format!("polls: login poll{i} failed: {e}"));
                return None;
            }
        }
    }
    let state = Rc::new(PollState::default());
    let tasks: Vec<_> = (0..POLLS)
        .map(|i| {
            tokio::task::spawn_local(hold_poll(
                addr,
                cookies[i % cookies.len()].clone(),
                state.clone(),
            ))
        })
        .collect();
    // Let them connect and reach the server.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let warmup = Duration::from_secs(1);
    let held_at_start = state.held.get();
    let (answered0, failed0) = (state.answered.get(), state.failed.get());
    let sampling = Cell::new(true);
    let sample = async {
        let (mut threads, mut held_min) = (0u64, usize::MAX);
        while sampling.get() {
            threads = threads.max(server.threads());
            held_min = held_min.min(state.held.get());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (threads, held_min)
    };
    let step = async {
        let step = load::run_step(clients, 20.0, 10, warmup, window).await;
        sampling.set(false);
        step
    };
    let (during_polls, (server_threads, held_min)) = tokio::join!(step, sample);
    let held_at_end = state.held.get();
    state.stop.set(true);
    for task in &tasks {
        task.abort();
    }
    let p99_met = during_polls.deliveries.p99_ms <= P99_TARGET_MS;
    Some(Polls {
        during_polls,
        polls: POLLS,
        sessions: cookies.len(),
        held_at_start,
        held_at_end,
        held_min: held_min.min(held_at_end),
        answered: state.answered.get() - answered0,
        failed: state.failed.get() - failed0,
        server_threads,
        p99_met,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct Downloads {
    /// The fixed load during the downloads.
    pub during_downloads: Step,
    pub file_bytes: usize,
    pub downloaders: usize,
    /// Downloads read whole (exactly the file's size).
    pub complete: u64,
    /// Downloads that failed or came back short/long.
    pub failed: u64,
    /// Body bytes read during the window, per second (MiB/s).
    pub mib_per_s: f64,
    pub rss_before_kib: u64,
    pub rss_after_upload_kib: u64,
    pub rss_max_during_kib: u64,
    /// (max RSS during − RSS before) / the file's size.
    pub growth_ratio: f64,
    pub p99_met: bool,
    pub growth_met: bool,
}

#[derive(Default)]
struct DownloadState {
    stop: Cell<bool>,
    complete: Cell<u64>,
    failed: Cell<u64>,
    bytes: Cell<u64>,
}

/// Uploads `FILE_BYTES` bytes; returns the file's path (`url`).
async fn upload(addr: SocketAddr, cookie: &str) -> std::io::Result<String> {
    let body: Vec<u8> = (0..FILE_BYTES).map(|i| (i % 251) as u8).collect();
    let head = format!(
        "POST /files HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nContent-Type: application/octet-stream\r\nX-Filename: big.bin\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(&body);
    let answer = client::exchange(addr, &request, Duration::from_secs(30)).await;
    if answer.status != 201 {
        return Err(std::io::Error::other(format!(
            "upload: status {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        )));
    }
    let json: serde_json::Value = serde_json::from_slice(&answer.body)
        .map_err(|e| std::io::Error::other(format!("upload answer: {e}")))?;
    json.get("url")
        .and_then(|u| u.as_str())
        .map(String::from)
        .ok_or_else(|| std::io::Error::other("upload answer has no url"))
}

/// One download, streamed: the body's length, or an error.
async fn download(
    addr: SocketAddr,
    request: &[u8],
    state: &DownloadState,
) -> std::io::Result<usize> {
    let mut socket = TcpStream::connect(addr).await?;
    socket.write_all(request).await?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut head = Vec::new();
    let mut body = 0usize;
    let mut in_body = false;
    loop {
        if state.stop.get() {
            return Err(std::io::Error::other("stopped"));
        }
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        if in_body {
            body += n;
            state.bytes.set(state.bytes.get() + n as u64);
            continue;
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = memchr::memmem::find(&head, b"\r\n\r\n") {
            if !head.starts_with(b"HTTP/1.1 200") {
                return Err(std::io::Error::other("not 200"));
            }
            in_body = true;
            body = head.len() - end - 4;
            state.bytes.set(state.bytes.get() + body as u64);
        } else if head.len() > 64 * 1024 {
            return Err(std::io::Error::other("head too long"));
        }
    }
    Ok(body)
}

async fn downloader(addr: SocketAddr, request: Rc<Vec<u8>>, state: Rc<DownloadState>) {
    while !state.stop.get() {
        match tokio::time::timeout(DOWNLOAD_TIMEOUT, download(addr, &request, &state)).await {
            Ok(Ok(n)) if n == FILE_BYTES => state.complete.set(state.complete.get() + 1),
            _ if state.stop.get() => {}
            _ => {
                state.failed.set(state.failed.get() + 1);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The fixed load on `clients` while [`DOWNLOADERS`] clients download one
/// [`FILE_BYTES`] file over and over.
pub async fn downloads(server: &Server, clients: &Clients, window: Duration) -> Option<Downloads> {
    let addr = server.addr;
    let cookie = match client::login(addr, "downloader").await {
        Ok(c) => c,
        Err(e) => {
            crate::log(&format!("downloads: login failed: {e}"));
            return None;
        }
    };
    let rss = || server.rss_and_threads().0;
    let rss_before_kib = rss();
    let url = match upload(addr, &cookie).await {
        Ok(url) => url,
        Err(e) => {
            crate::log(&format!("downloads: {e}"));
            return None;
        }
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after_upload_kib = rss();
    let request = Rc::new(
        format!("GET {url} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\r\n").into_bytes(),
    );
    let warmup = Duration::from_secs(1);
    let state = Rc::new(DownloadState::default());
    let (complete0, failed0) = (Cell::new(0u64), Cell::new(0u64));
    let sampling = Cell::new(true);
    let mut tasks = Vec::new();
    let sample = async {
        // The downloads start with the measured window (after the warm-up).
        tokio::time::sleep(warmup).await;
        complete0.set(state.complete.get());
        failed0.set(state.failed.get());
        for _ in 0..DOWNLOADERS {
            tasks.push(tokio::task::spawn_local(downloader(
                addr,
                request.clone(),
                state.clone(),
            )));
        }
        let started = Instant::now();
        let mut max = rss_after_upload_kib;
        while sampling.get() {
            max = max.max(rss());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (max, started.elapsed(), state.bytes.get())
    };
    let step = async {
        let step = load::run_step(clients, 20.0, 10, warmup, window).await;
        sampling.set(false);
        step
    };
    let (during_downloads, (rss_max_during_kib, elapsed, bytes)) = tokio::join!(step, sample);
    state.stop.set(true);
    for task in &tasks {
        task.abort();
    }
    let growth_ratio =
        rss_max_during_kib.saturating_sub(rss_before_kib) as f64 * 1024.0 / FILE_BYTES as f64;
    let p99_met = during_downloads.deliveries.p99_ms <= P99_TARGET_MS;
    Some(Downloads {
        during_downloads,
        file_bytes: FILE_BYTES,
        downloaders: DOWNLOADERS,
        complete: state.complete.get() - complete0.get(),
        failed: state.failed.get() - failed0.get(),
        mib_per_s: bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64().max(1e-3),
        rss_before_kib,
        rss_after_upload_kib,
        rss_max_during_kib,
        growth_ratio,
        p99_met,
        growth_met: growth_ratio <= 1.0,
    })
}
