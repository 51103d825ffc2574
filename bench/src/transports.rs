//! The same chat over three transports (`transports`): short polling, long
//! polling and WebSocket, one after another on one server.
//!
//! [`CLIENTS`] clients, logged in once (the same names and sessions for
//! every transport, so who is online never changes), follow the room; the
//! first [`SENDERS`] of them talk. Two loads: a busy room ([`SENDERS`] × 1
//! msg/s) and a quiet one (one message every 2 s in all). For each load,
//! each transport in turn:
//!
//! - **short polling**: every client asks `GET /poll?after=SEQ&wait=0`
//!   every [`SHORT_POLL_EVERY`] (the clients' phases spread over the
//!   interval); senders send with `POST /say`.
//! - **long polling**: every client asks `GET /poll?after=SEQ&wait=30`, and
//!   asks again as soon as the answer is in; senders use `POST /say`.
//! - **WebSocket**: every client holds one `GET /ws`; senders send text
//!   frames on it.
//!
//! lanchat answers every HTTP request with `Connection: close`, so each poll
//! and each `POST /say` is a TCP connection of its own, as a browser behind
//! a plain proxy would do it.
//!
//! Measured in a window after a warm-up: delivery latency (receive time −
//! the send time in the text; a poll's messages all count at the poll's
//! answer), HTTP requests per second, bytes on the wire per delivered
//! message (everything the clients wrote and read, HTTP heads and WebSocket
//! frame headers included, not TCP/IP headers), the server's CPU time per
//! delivered message (its process CPU clock, utime + stime, before and
//! after) and its threads (sampled every 100 ms).
//!
//! A server whose `/poll` answers `404` (polling not built) gets the
//! WebSocket runs only, and the reason in `polling_skipped`.

use crate::client;
use crate::load::{self, Clients, Deliveries, Stats};
use crate::procs::Server;
use serde::Serialize;
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Clients following the room, and how many of them talk.
pub const CLIENTS: usize = 100;
pub const SENDERS: usize = 10;
/// A short poller's interval.
pub const SHORT_POLL_EVERY: Duration = Duration::from_secs(1);
/// A long poll's `wait`, seconds.
pub const LONG_POLL_WAIT_S: u64 = 30;
/// Before each measured window: every poller has polled at least once.
const WARMUP: Duration = Duration::from_secs(2);
/// Most polls one poller makes in a run (a bound; a run makes ~100).
const MAX_POLLS: u32 = 10_000;
/// Longest a `POST /say` or a short poll may take.
const HTTP_LIMIT: Duration = Duration::from_secs(10);

/// A room's load: messages per second, all senders together.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub name: &'static str,
    pub messages_per_s: f64,
    pub window: Duration,
}

/// The two loads: busy (10 senders × 1 msg/s: more messages than a short
/// poller's polls) and quiet (one message every 2 s: most short polls come
/// back empty).
pub fn loads(quick: bool) -> [Load; 2] {
    [
        Load {
            name: "busy",
            messages_per_s: 10.0,
            window: Duration::from_secs(if quick { 3 } else { 5 }),
        },
        Load {
            name: "quiet",
            messages_per_s: 0.5,
            window: Duration::from_secs(if quick { 6 } else { 10 }),
        },
    ]
}

/// One transport at one load.
#[derive(Debug, Clone, Serialize)]
pub struct TransportRun {
    pub load: String,
    pub transport: String,
    pub clients: usize,
    pub senders: usize,
    pub messages_per_s: f64,
    pub window_s: f64,
    /// Deliveries of the messages sent in the window (each must reach every
    /// client, its sender included), and their latency.
    pub deliveries: Deliveries,
    /// HTTP requests started per second (polls and `POST /say`; 0 over
    /// WebSocket, whose upgrades happened before the window).
    pub http_requests_per_s: f64,
    /// Bytes the clients wrote and read in the window, per delivery.
    pub bytes_per_delivery: f64,
    /// Server CPU time in the window, per delivery (µs), and as a share of
    /// one core.
    pub server_cpu_us_per_delivery: f64,
    pub server_cpu_share: f64,
    /// Server threads, sampled every 100 ms in the window.
    pub server_threads_mean: f64,
    pub server_threads_max: u64,
    /// Share of its core the load generator used in the window (near 1:
    /// the generator, not the server, may be the limit).
    pub generator_cpu: f64,
    /// Share of the server's core taken by everything else in the window
    /// (other processes, interrupts, the hypervisor's steal): the noise.
    /// Near 0 on a quiet machine.
    pub server_core_others: f64,
    /// Polls answered `429` (more than 10 a second for one session).
    pub rate_limited: u64,
    /// Other failed requests (no answer, or not 200), and messages the
    /// server did not accept.
    pub failed_requests: u64,
    pub messages_refused: u64,
}

/// Every run of the scenario.
#[derive(Debug, Default, Serialize)]
pub struct Transports {
    pub runs: Vec<TransportRun>,
    /// Why the polling runs were skipped (e.g. `/poll` answers 404).
    pub polling_skipped: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Short,
    Long,
}

/// HTTP outcomes of the polling clients of one run.
#[derive(Default)]
struct Http {
    rate_limited: Cell<u64>,
    failed: Cell<u64>,
    refused: Cell<u64>,
}

/// The scenario, on a fresh server (stopped by the caller).
pub async fn transports(server: &Server, quick: bool, epoch: Instant) -> Transports {
    let addr = server.addr;
    let mut results = Transports::default();
    let names: Vec<String> = (0..CLIENTS).map(|i| format!("t{i}")).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let cookies = match load::login_all(addr, &names, deadline).await {
        Ok(cookies) => cookies,
        Err(e) => {
            crate::log(&format!("transports: logins failed: {e}"));
            return results;
        }
    };
    let cookies: Vec<Rc<str>> = cookies.into_iter().map(Rc::from).collect();
    let probe = format!(
        "GET /poll?wait=0 HTTP/1.1\r\nHost: {addr}\r\nCookie: {}\r\n\r\n",
        cookies[0]
    );
    let polling = match client::exchange(addr, probe.as_bytes(), HTTP_LIMIT)
        .await
        .status
    {
        200 => true,
        404 => {
            results.polling_skipped = Some(
                "GET /poll answers 404: this server has no polling yet; WebSocket only".into(),
            );
            false
        }
        status => {
            results.polling_skipped = Some(format!(
                "GET /poll answers {status}, not 200; WebSocket only"
            ));
            false
        }
    };
    if let Some(why) = &results.polling_skipped {
        crate::log(&format!("transports: {why}"));
    }
    let baseline_threads = server.threads();
    for load in loads(quick) {
        let mut runs = Vec::new();
        if polling {
            for mode in [Mode::Short, Mode::Long] {
                runs.push(polling_run(server, &cookies, mode, load, epoch).await);
                settle(server, baseline_threads).await;
            }
        }
        match websocket_run(server, &cookies, load, epoch).await {
            Ok(run) => runs.push(run),
            Err(e) => crate::log(&format!("transports: WebSocket, {} room: {e}", load.name)),
        }
        settle(server, baseline_threads).await;
        for run in runs {
            crate::log(&format!(
                "transports: {}",
                crate::report::transport_line(&run)
            ));
            results.runs.push(run);
        }
    }
    results
}

/// Waits (at most 5 s) until the server is back to `baseline` threads, or
/// its count has not moved for half a second: the previous run's
/// connections are gone.
async fn settle(server: &Server, baseline: u64) {
    let mut last = server.threads();
    let mut steady = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = server.threads();
        steady = if now == last { steady + 1 } else { 0 };
        last = now;
        if now <= baseline + 1 || steady >= 5 {
            break;
        }
    }
}

/// One polling client: polls until `stop`, short or long.
fn spawn_poller(
    addr: SocketAddr,
    cookie: Rc<str>,
    stats: Rc<Stats>,
    http: Rc<Http>,
    mode: Mode,
    phase: Duration,
    stop: Rc<Cell<bool>>,
) -> JoinHandle<()> {
    tokio::task::spawn_local(async move {
        tokio::time::sleep(phase).await;
        let mut next_at = tokio::time::Instant::now();
        let mut after: Option<u64> = None;
        for _ in 0..MAX_POLLS {
            if stop.get() {
                break;
            }
            // The first poll (no `after`) gets the latest messages and the
            // seq to go on from.
            let (path, wait) = match (after, mode) {
                (None, _) => ("/poll?wait=0".to_string(), 0),
                (Some(seq), Mode::Short) => (format!("/poll?after={seq}&wait=0"), 0),
                (Some(seq), Mode::Long) => (
                    format!("/poll?after={seq}&wait={LONG_POLL_WAIT_S}"),
                    LONG_POLL_WAIT_S,
                ),
            };
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\r\n");
            stats.add_request();
            let limit = HTTP_LIMIT + Duration::from_secs(wait);
            let answer = client::exchange(addr, request.as_bytes(), limit).await;
            stats.add_bytes(answer.written + answer.read);
            match answer.status {
                200 => {
                    stats.on_poll_body(&answer.body, stats.now_us());
                    if let Some(next) = client::poll_next(&answer.body) {
                        after = Some(next);
                    }
                }
                429 => http.rate_limited.set(http.rate_limited.get() + 1),
                _ => http.failed.set(http.failed.get() + 1),
            }
            match mode {
                Mode::Short => {
                    next_at += SHORT_POLL_EVERY;
                    let now = tokio::time::Instant::now();
                    if next_at < now {
                        next_at = now;
                    }
                    tokio::time::sleep_until(next_at).await;
                }
                Mode::Long if answer.status != 200 => {
                    // Refused or broken: do not hammer the server.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Mode::Long => {}
            }
        }
    })
}

/// `POST /say` of load message `seq`; its send stamp when the server
/// accepted it (`200`, the sender's copy).
async fn say_http(
    addr: SocketAddr,
    cookie: Rc<str>,
    stats: Rc<Stats>,
    http: Rc<Http>,
    seq: u64,
) -> Option<u64> {
    let sent = stats.now_us();
    let json = load::message_json(sent, 0, seq);
    let request = format!(
        "POST /say HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
        json.len()
    );
    stats.add_request();
    let answer = client::exchange(addr, request.as_bytes(), HTTP_LIMIT).await;
    stats.add_bytes(answer.written + answer.read);
    match answer.status {
        200 => Some(sent),
        429 => {
            http.rate_limited.set(http.rate_limited.get() + 1);
            http.refused.set(http.refused.get() + 1);
            None
        }
        _ => {
            http.refused.set(http.refused.get() + 1);
            None
        }
    }
}

/// Short or long polling at `load`.
async fn polling_run(
    server: &Server,
    cookies: &[Rc<str>],
    mode: Mode,
    load: Load,
    epoch: Instant,
) -> TransportRun {
    let addr = server.addr;
    let stats = Stats::new(epoch);
    let http = Rc::new(Http::default());
    let stop = Rc::new(Cell::new(false));
    let pollers: Vec<JoinHandle<()>> = cookies
        .iter()
        .enumerate()
        .map(|(i, cookie)| {
            // Short pollers spread over the interval, as real ones would be.
            let phase = match mode {
                Mode::Short => SHORT_POLL_EVERY.mul_f64(i as f64 / cookies.len() as f64),
                Mode::Long => Duration::ZERO,
            };
            let (stats, http, stop) = (stats.clone(), http.clone(), stop.clone());
            spawn_poller(addr, cookie.clone(), stats, http, mode, phase, stop)
        })
        .collect();
    let send = |seq: u64| {
        let cookie = cookies[seq as usize % SENDERS.min(cookies.len())].clone();
        tokio::task::spawn_local(say_http(addr, cookie, stats.clone(), http.clone(), seq))
    };
    let name = match mode {
        Mode::Short => format!("short polling ({} s)", SHORT_POLL_EVERY.as_secs_f64()),
        Mode::Long => "long polling".to_string(),
    };
    let mut run = measure(server, &stats, load, &name, send).await;
    run.rate_limited = http.rate_limited.get();
    run.failed_requests = http.failed.get();
    run.messages_refused = http.refused.get();
    // The pollers stop; a last message answers the held long polls at once.
    stop.set(true);
    if mode == Mode::Long {
        let _ = say_http(
            addr,
            cookies[0].clone(),
            stats.clone(),
            http.clone(),
            u64::MAX,
        )
        .await;
    }
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    for poller in pollers {
        let abort = poller.abort_handle();
        if tokio::time::timeout_at(until, poller).await.is_err() {
            abort.abort();
        }
    }
    run
}

/// WebSocket at `load`: the same sessions, one connection each.
async fn websocket_run(
    server: &Server,
    cookies: &[Rc<str>],
    load: Load,
    epoch: Instant,
) -> std::io::Result<TransportRun> {
    let stats = Stats::new(epoch);
    let cookies: Vec<String> = cookies.iter().map(|c| c.to_string()).collect();
    let limit = Duration::from_secs(30);
    let deadline = tokio::time::Instant::now() + limit;
    let clients = Clients::connect(
        server.addr,
        &cookies,
        cookies.len(),
        1,
        stats.clone(),
        limit,
        deadline,
    )
    .await?;
    stats
        .wait_quiet(Duration::from_millis(300), Duration::from_secs(5))
        .await;
    let clients = Rc::new(clients);
    let senders = SENDERS.min(clients.len());
    let send = |seq: u64| {
        let clients = clients.clone();
        tokio::task::spawn_local(async move { clients.say(seq as usize % senders, seq).await.ok() })
    };
    let mut run = measure(server, &stats, load, "WebSocket", send).await;
    run.failed_requests = stats.closed();
    if let Ok(clients) = Rc::try_unwrap(clients) {
        clients.close();
    }
    Ok(run)
}

/// Sends at `load` with `send` (which returns the send stamp of a message
/// the server accepted) for [`WARMUP`] then `load.window`, measures the
/// window, and waits for the deliveries (at most [`load::DRAIN`]).
async fn measure(
    server: &Server,
    stats: &Rc<Stats>,
    load: Load,
    transport: &str,
    mut send: impl FnMut(u64) -> JoinHandle<Option<u64>>,
) -> TransportRun {
    let clients = CLIENTS as u64;
    let window_start = stats.now_us() + WARMUP.as_micros() as u64;
    let window_end = window_start + load.window.as_micros() as u64;
    stats.open_window(window_start, window_end);
    let t0 = tokio::time::Instant::now();
    let mut sends = Vec::new();
    let pacer = load::pace(
        load.messages_per_s,
        WARMUP + load.window,
        || false,
        async |seq| sends.push(send(seq)),
    );
    let sampler = async {
        // What the window is measured by: read at its start and its end.
        let sample = || {
            (
                stats.bytes(),
                stats.requests(),
                server.cpu_time(),
                Instant::now(),
                crate::procs::own_cpu_time(),
                crate::procs::core_busy(crate::SERVER_CORE),
            )
        };
        tokio::time::sleep_until(t0 + WARMUP).await;
        let before = sample();
        let end = t0 + WARMUP + load.window;
        let mut threads = Vec::new();
        while tokio::time::Instant::now() < end {
            threads.push(server.threads());
            let next = (tokio::time::Instant::now() + Duration::from_millis(100)).min(end);
            tokio::time::sleep_until(next).await;
        }
        let after = sample();
        (before, after, threads)
    };
    let (_, (before, after, threads)) = tokio::join!(pacer, sampler);
    let mut in_window = 0u64;
    let until = tokio::time::Instant::now() + HTTP_LIMIT;
    for handle in sends {
        let abort = handle.abort_handle();
        match tokio::time::timeout_at(until, handle).await {
            Ok(Ok(Some(at))) if at >= window_start && at < window_end => in_window += 1,
            Ok(_) => {}
            Err(_) => abort.abort(),
        }
    }
    let expected = in_window * clients;
    load::drain(&[stats], expected).await;
    let (latencies, _) = stats.close_window();
    let deliveries = Deliveries::new(expected, latencies, load.window);
    let wall = (after.3 - before.3).as_secs_f64();
    let cpu = (after.2.saturating_sub(before.2)).as_secs_f64();
    let delivered = deliveries.delivered.max(1) as f64;
    TransportRun {
        load: load.name.to_string(),
        transport: transport.to_string(),
        clients: CLIENTS,
        senders: SENDERS,
        messages_per_s: load.messages_per_s,
        window_s: load.window.as_secs_f64(),
        http_requests_per_s: (after.1 - before.1) as f64 / wall,
        bytes_per_delivery: (after.0 - before.0) as f64 / delivered,
        server_cpu_us_per_delivery: cpu * 1e6 / delivered,
        server_cpu_share: cpu / wall,
        server_threads_mean: threads.iter().sum::<u64>() as f64 / threads.len().max(1) as f64,
        server_threads_max: threads.iter().copied().max().unwrap_or(0),
        generator_cpu: (after.4.saturating_sub(before.4)).as_secs_f64() / wall,
        server_core_others: match (before.5, after.5) {
            (Some(b), Some(a)) => ((a.saturating_sub(b)).as_secs_f64() - cpu).max(0.0) / wall,
            _ => f64::NAN,
        },
        deliveries,
        rate_limited: 0,
        failed_requests: 0,
        messages_refused: 0,
    }
}
