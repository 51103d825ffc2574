//! Two scenarios that run the fixed load (the `fanout` scenario's clients
//! and rate) while something else holds the server (lanchat only):
//!
//! - `polls` (issue 13): [`POLLS`] long polls (`GET /poll?after=` far in
//!   the future `&wait=60`, which never answer before `wait` ends) held
//!   open on [`POLL_SESSIONS`] sessions, each one TCP connection; any that
//!   returns is re-opened (at most once a second each, so that a session
//!   stays under the server's 10 polls a second).
//! - `downloads` (issue 14): one [`FILE_BYTES`] file uploaded with
//!   `POST /files`, the fixed load once without downloads, then again
//!   while [`DOWNLOADERS`] clients download the file at once, again and
//!   again, for the measured window; server RSS sampled every 100 ms. The
//!   downloaders must not slow the generator that measures the chat: they
//!   run on a thread of their own at nice 19 (the generator's core has
//!   priority), each reading at most [`DOWNLOAD_RATE`] (a LAN laptop's
//!   rate, not loopback's); `--download-rate 0` and `--downloads-inline`
//!   give back the old way (as fast as they can, on the generator's own
//!   thread).

use crate::client;
use crate::load::{self, Clients, Step};
use crate::procs::Server;
use serde::Serialize;
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
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
    /// The fixed load on the same clients just before, without downloads.
    pub without_downloads: Step,
    /// The fixed load during the downloads.
    pub during_downloads: Step,
    pub file_bytes: usize,
    pub downloaders: usize,
    /// Each downloader's read rate in bytes/s (0: as fast as it can).
    pub rate_per_downloader: f64,
    /// Where the downloaders ran: `"own thread, nice 19"` (on the
    /// generator's core, yielding to it) or `"generator's thread"`.
    pub downloaders_on: String,
    /// Downloads read whole (exactly the file's size).
    pub complete: u64,
    /// Downloads that failed or came back short/long.
    pub failed: u64,
    /// Body bytes read during the window, per second (MiB/s).
    pub mib_per_s: f64,
    /// Share of a core the downloaders' thread used (0 when inline: their
    /// CPU is in the generator's).
    pub downloaders_cpu: f64,
    /// The server's own CPU (share of its core) without and during the
    /// downloads, and the share other processes took of that core.
    pub server_cpu_without: f64,
    pub server_cpu_during: f64,
    pub server_core_others_without: f64,
    pub server_core_others_during: f64,
    pub rss_before_kib: u64,
    pub rss_after_upload_kib: u64,
    pub rss_max_during_kib: u64,
    /// (max RSS during − RSS before) / the file's size.
    pub growth_ratio: f64,
    pub p99_met: bool,
    pub growth_met: bool,
}

/// Each downloader's read rate by default (bytes/s): more than a classroom's
/// Wi-Fi gives one laptop, so the server is still asked for more than a
/// real room would; 30 of them ask 300 MB/s.
pub const DOWNLOAD_RATE: f64 = 10e6;

/// Shared by the downloaders, which may run on a thread of their own.
#[derive(Default)]
struct DownloadState {
    stop: AtomicBool,
    complete: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
    /// CPU time (ns) of the downloaders' own thread, when it ends.
    cpu_ns: AtomicU64,
}

impl DownloadState {
    fn stopped(&self) -> bool {
        self.stop.load(Relaxed)
    }
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

/// One download, streamed, read at most at `rate` bytes/s (0: no limit):
/// the body's length, or an error.
async fn download(
    addr: SocketAddr,
    request: &[u8],
    rate: f64,
    state: &DownloadState,
) -> std::io::Result<usize> {
    let mut socket = TcpStream::connect(addr).await?;
    socket.write_all(request).await?;
    // A throttled reader asks for about 5 ms of its rate at a time.
    let chunk = if rate > 0.0 {
        ((rate / 200.0) as usize).clamp(4096, 256 * 1024)
    } else {
        256 * 1024
    };
    let mut buf = vec![0u8; chunk];
    let mut head = Vec::new();
    let mut body = 0usize;
    let mut in_body = false;
    let started = tokio::time::Instant::now();
    loop {
        if state.stopped() {
            return Err(std::io::Error::other("stopped"));
        }
        if rate > 0.0 {
            // Read no faster than `rate`: wait until the bytes read so far
            // are due.
            let due = started + Duration::from_secs_f64(body as f64 / rate);
            tokio::time::sleep_until(due).await;
        }
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        if in_body {
            body += n;
            state.bytes.fetch_add(n as u64, Relaxed);
            continue;
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = memchr::memmem::find(&head, b"\r\n\r\n") {
            if !head.starts_with(b"HTTP/1.1 200") {
                return Err(std::io::Error::other("not 200"));
            }
            in_body = true;
            body = head.len() - end - 4;
            state.bytes.fetch_add(body as u64, Relaxed);
        } else if head.len() > 64 * 1024 {
            return Err(std::io::Error::other("head too long"));
        }
    }
    Ok(body)
}

/// Downloads the file again and again until told to stop.
async fn downloader(addr: SocketAddr, request: Arc<Vec<u8>>, rate: f64, state: Arc<DownloadState>) {
    while !state.stopped() {
        match tokio::time::timeout(DOWNLOAD_TIMEOUT, download(addr, &request, rate, &state)).await {
            Ok(Ok(n)) if n == FILE_BYTES => {
                state.complete.fetch_add(1, Relaxed);
            }
            _ if state.stopped() => {}
            _ => {
                state.failed.fetch_add(1, Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The downloaders on a thread of their own at nice 19, with their own
/// runtime: on the generator's core (the machine has two), but the
/// scheduler gives the generator the core whenever it wants it. Ends when
/// `state` says stop (each download checks between reads).
fn downloaders_thread(
    addr: SocketAddr,
    request: Arc<Vec<u8>>,
    rate: f64,
    state: Arc<DownloadState>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("downloaders".into())
        .spawn(move || {
            unsafe {
                // Nice is per thread on Linux: this thread only.
                libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19);
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("downloaders' runtime");
            runtime.block_on(async {
                let mut set = tokio::task::JoinSet::new();
                for _ in 0..DOWNLOADERS {
                    set.spawn(downloader(addr, request.clone(), rate, state.clone()));
                }
                while set.join_next().await.is_some() {}
            });
            state
                .cpu_ns
                .store(crate::procs::own_cpu_time().as_nanos() as u64, Relaxed);
        })
}

/// Runs `step`; returns with it the server's share of its core meanwhile,
/// and the share everything else (other processes, the hypervisor's steal)
/// took of that core.
async fn server_cpu<T>(server: &Server, step: impl Future<Output = T>) -> (T, f64, f64) {
    let busy0 = crate::procs::core_busy(crate::SERVER_CORE);
    let (own0, wall) = (server.cpu_time(), Instant::now());
    let out = step.await;
    let wall = wall.elapsed().as_secs_f64().max(1e-3);
    let own = server.cpu_time().saturating_sub(own0).as_secs_f64();
    let others = match (busy0, crate::procs::core_busy(crate::SERVER_CORE)) {
        (Some(b), Some(a)) => (a.saturating_sub(b).as_secs_f64() - own).max(0.0) / wall,
        _ => f64::NAN,
    };
    (out, own / wall, others)
}

/// The fixed load on `clients` without, then during, [`DOWNLOADERS`]
/// clients downloading one [`FILE_BYTES`] file over and over, each read at
/// most at `rate` bytes/s (0: no limit), on their own thread at nice 19, or
/// on the generator's thread when `inline`.
pub async fn downloads(
    server: &Server,
    clients: &Clients,
    window: Duration,
    rate: f64,
    inline: bool,
) -> Option<Downloads> {
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
    let warmup = Duration::from_secs(1);
    let (without_downloads, server_cpu_without, server_core_others_without) =
        server_cpu(server, load::run_step(clients, 20.0, 10, warmup, window)).await;
    crate::log(&format!(
        "downloads: without them first: {}",
        crate::report::step_line(&without_downloads)
    ));
    clients
        .stats
        .wait_quiet(Duration::from_millis(300), Duration::from_secs(5))
        .await;

    let request = Arc::new(
        format!("GET {url} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\r\n").into_bytes(),
    );
    let state = Arc::new(DownloadState::default());
    let (complete0, failed0) = (Cell::new(0u64), Cell::new(0u64));
    let sampling = Cell::new(true);
    let mut tasks = Vec::new();
    let mut thread = None;
    let sample = async {
        // The downloads start with the measured window (after the warm-up).
        tokio::time::sleep(warmup).await;
        complete0.set(state.complete.load(Relaxed));
        failed0.set(state.failed.load(Relaxed));
        if inline {
            for _ in 0..DOWNLOADERS {
                tasks.push(tokio::task::spawn_local(downloader(
                    addr,
                    request.clone(),
                    rate,
                    state.clone(),
                )));
            }
        } else {
            match downloaders_thread(addr, request.clone(), rate, state.clone()) {
                Ok(handle) => thread = Some(handle),
                Err(e) => crate::log(&format!("downloads: no thread: {e}")),
            }
        }
        let started = Instant::now();
        let mut max = rss_after_upload_kib;
        while sampling.get() {
            max = max.max(rss());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (max, started.elapsed(), state.bytes.load(Relaxed))
    };
    let step = async {
        let step = load::run_step(clients, 20.0, 10, warmup, window).await;
        sampling.set(false);
        step
    };
    let ((during_downloads, (rss_max_during_kib, elapsed, bytes)), server_cpu_during, others) =
        server_cpu(server, async { tokio::join!(step, sample) }).await;
    state.stop.store(true, Relaxed);
    for task in &tasks {
        task.abort();
    }
    let mut downloaders_cpu = 0.0;
    if let Some(thread) = thread {
        // Each download sees `stop` at its next read: give them 5 s.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !thread.is_finished() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if thread.is_finished() {
            let _ = thread.join();
            downloaders_cpu = state.cpu_ns.load(Relaxed) as f64 / 1e9 / elapsed.as_secs_f64();
        } else {
            crate::log("downloads: the downloaders' thread did not end within 5 s (left behind)");
        }
    }
    let growth_ratio =
        rss_max_during_kib.saturating_sub(rss_before_kib) as f64 * 1024.0 / FILE_BYTES as f64;
    let p99_met = during_downloads.deliveries.p99_ms <= P99_TARGET_MS;
    Some(Downloads {
        without_downloads,
        during_downloads,
        file_bytes: FILE_BYTES,
        downloaders: DOWNLOADERS,
        rate_per_downloader: rate,
        downloaders_on: if inline {
            "generator's thread".into()
        } else {
            "own thread, nice 19".into()
        },
        complete: state.complete.load(Relaxed) - complete0.get(),
        failed: state.failed.load(Relaxed) - failed0.get(),
        mib_per_s: bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64().max(1e-3),
        downloaders_cpu,
        server_cpu_without,
        server_cpu_during,
        server_core_others_without,
        server_core_others_during: others,
        rss_before_kib,
        rss_after_upload_kib,
        rss_max_during_kib,
        growth_ratio,
        p99_met,
        growth_met: growth_ratio <= 1.0,
    })
}
