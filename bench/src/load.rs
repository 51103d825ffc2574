//! Many clients in one process, a pacer that makes some of them talk, and the
//! statistics of what every client receives.
//!
//! Every client is a task on one single-threaded tokio runtime (the whole
//! load generator is pinned to one core). A message's text starts with
//! `B<send time in µs>`, taken from this process's monotonic clock just
//! before the frame is written, so a delivery's latency is the time it was
//! read minus that stamp: send, server, fan-out, receive, all included, no
//! clock sync needed.
//!
//! A load step runs a warm-up, then a measured window. Only messages *sent*
//! inside the window count, and each must reach every open client: deliveries
//! of those messages, latencies of those deliveries, and `lost` = expected
//! deliveries that have not arrived after a drain period.
//!
//! With several servers (the cluster scenario), each server's clients have
//! their own [`Stats`], and a message's text also names its sender's server
//! (`B<µs>@<server>`), so every delivery is either "same server" or "across
//! servers".

use crate::client::{self, FrameBuf};
use serde::Serialize;
use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio::task::JoinHandle;

/// Longest a message sent in the window may take to arrive before the
/// delivery counts as lost.
pub const DRAIN: Duration = Duration::from_secs(3);
/// Handshakes in flight at once: the server's listen backlog is 128.
const CONNECT_CONCURRENCY: usize = 64;
/// Each sender's rate stays at or under this (the server allows 20/s).
pub const MAX_RATE_PER_SENDER: f64 = 15.0;
/// Characters of a load message's text: a short chat line.
const TEXT_LEN: usize = 64;

/// What all clients (of one server) have received, shared by their reader
/// tasks.
pub struct Stats {
    epoch: Instant,
    /// Index of the server these clients are connected to.
    server: usize,
    window: Cell<(u64, u64)>,
    /// Latencies (µs) of deliveries of messages sent in the window by a
    /// client of the same server ...
    latencies: RefCell<Vec<u32>>,
    /// ... and by a client of another server.
    across: RefCell<Vec<u32>>,
    delivered: Cell<u64>,
    /// Every frame any client received (for "is the server quiet?").
    frames: Cell<u64>,
    /// `join` frames (for "has everyone seen everyone join?").
    joins: Cell<u64>,
    /// `error` frames (e.g. `rate_limited`): should stay 0.
    errors: Cell<u64>,
    /// Client connections that ended (the server dropped or closed them).
    closed: Cell<u64>,
    /// Bytes these clients wrote and read, both directions together
    /// (WebSocket frames, or whole HTTP requests and answers).
    bytes: Cell<u64>,
    /// HTTP requests these clients made (polls, `POST /say`).
    requests: Cell<u64>,
}

impl Stats {
    pub fn new(epoch: Instant) -> Rc<Stats> {
        Stats::on_server(epoch, 0)
    }

    /// Stats of clients connected to server number `server`.
    pub fn on_server(epoch: Instant, server: usize) -> Rc<Stats> {
        Rc::new(Stats {
            epoch,
            server,
            window: Cell::new((u64::MAX, u64::MAX)),
            latencies: RefCell::new(Vec::new()),
            across: RefCell::new(Vec::new()),
            delivered: Cell::new(0),
            frames: Cell::new(0),
            joins: Cell::new(0),
            errors: Cell::new(0),
            closed: Cell::new(0),
            bytes: Cell::new(0),
            requests: Cell::new(0),
        })
    }

    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn on_text(&self, payload: &[u8], now: u64) {
        self.frames.set(self.frames.get() + 1);
        match client::stamp(payload) {
            Some(stamp) => self.on_delivery(stamp, now),
            None if payload.starts_with(b"{\"type\":\"error\"") => {
                self.errors.set(self.errors.get() + 1)
            }
            None if payload.starts_with(b"{\"type\":\"join\"") => {
                self.joins.set(self.joins.get() + 1)
            }
            None => {}
        }
    }

    /// One load message received at `now`: counted when it was sent in the
    /// window.
    fn on_delivery(&self, stamp: client::Stamp, now: u64) {
        let (start, end) = self.window.get();
        if stamp.sent_us >= start && stamp.sent_us < end {
            self.delivered.set(self.delivered.get() + 1);
            let latency = now.saturating_sub(stamp.sent_us).min(u32::MAX as u64) as u32;
            if stamp.server == self.server {
                self.latencies.borrow_mut().push(latency);
            } else {
                self.across.borrow_mut().push(latency);
            }
        }
    }

    /// A poll answer's body, read at `now`: every load message in it is a
    /// delivery.
    pub fn on_poll_body(&self, body: &[u8], now: u64) {
        self.frames.set(self.frames.get() + 1);
        for stamp in client::stamps(body) {
            self.on_delivery(stamp, now);
        }
    }

    /// Counts `n` bytes on the wire (either direction).
    pub fn add_bytes(&self, n: u64) {
        self.bytes.set(self.bytes.get() + n);
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.get()
    }

    /// Counts one HTTP request.
    pub fn add_request(&self) {
        self.requests.set(self.requests.get() + 1);
    }

    pub fn requests(&self) -> u64 {
        self.requests.get()
    }

    pub fn closed(&self) -> u64 {
        self.closed.get()
    }

    pub fn joins(&self) -> u64 {
        self.joins.get()
    }

    /// Starts counting deliveries of messages sent in `start..end` (µs).
    pub fn open_window(&self, start: u64, end: u64) {
        self.latencies.borrow_mut().clear();
        self.across.borrow_mut().clear();
        self.delivered.set(0);
        self.window.set((start, end));
    }

    /// Ends the window early, at `end` (µs): later messages do not count.
    fn end_window_at(&self, end: u64) {
        let (start, _) = self.window.get();
        self.window.set((start, end));
    }

    /// Stops counting; returns the latencies (same server, across servers).
    pub fn close_window(&self) -> (Vec<u32>, Vec<u32>) {
        self.window.set((u64::MAX, u64::MAX));
        (self.latencies.take(), self.across.take())
    }

    /// Waits until no frame has arrived for `quiet`, at most `limit`.
    pub async fn wait_quiet(&self, quiet: Duration, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut last = self.frames.get();
        while Instant::now() < deadline {
            tokio::time::sleep(quiet).await;
            let now = self.frames.get();
            if now == last {
                return;
            }
            last = now;
        }
    }
}

/// A set of open clients.
pub struct Clients {
    writers: Vec<Rc<Mutex<OwnedWriteHalf>>>,
    readers: Vec<JoinHandle<()>>,
    pub stats: Rc<Stats>,
}

impl Clients {
    /// Opens `count` WebSocket clients, `per_name` of them sharing one login
    /// (names `{prefix}{i}`), and waits until each has its first three frames
    /// (welcome, history, offline). Bounded by `limit`.
    pub async fn open(
        addr: SocketAddr,
        count: usize,
        per_name: usize,
        prefix: &str,
        stats: Rc<Stats>,
        limit: Duration,
    ) -> io::Result<Clients> {
        let deadline = tokio::time::Instant::now() + limit;
        let names: Vec<String> = (0..count.div_ceil(per_name))
            .map(|i| format!("{prefix}{i}"))
            .collect();
        // Log in every name first (one session per name: the connections
        // sharing a name share its cookie, as a browser's tabs do).
        let cookies = login_all(addr, &names, deadline).await?;
        Clients::connect(addr, &cookies, count, per_name, stats, limit, deadline).await
    }

    /// Opens `count` WebSocket clients with the sessions of `cookies`,
    /// `per_name` of them per cookie, and waits until each has its first
    /// three frames. Bounded by `deadline` (`limit` is for the message).
    pub async fn connect(
        addr: SocketAddr,
        cookies: &[String],
        count: usize,
        per_name: usize,
        stats: Rc<Stats>,
        limit: Duration,
        deadline: tokio::time::Instant,
    ) -> io::Result<Clients> {
        let gate = Rc::new(Semaphore::new(CONNECT_CONCURRENCY));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut readers = Vec::with_capacity(count);
        for i in 0..count {
            let (gate, tx, stats) = (gate.clone(), tx.clone(), stats.clone());
            let cookie = cookies[i / per_name].clone();
            readers.push(tokio::task::spawn_local(async move {
                let permit = gate.acquire().await;
                let (socket, rest) = match client::connect_ws(addr, &cookie).await {
                    Ok(opened) => opened,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let (read, write) = socket.into_split();
                let writer = Rc::new(Mutex::new(write));
                let mut ready = Some((tx, writer.clone(), permit));
                let mut frames = FrameBuf::new(rest, 16 * 1024);
                let mut read = read;
                let mut seen = 0;
                'read: loop {
                    let now = stats.now_us();
                    while let Some(frame) = frames.next() {
                        match frame.opcode {
                            0x1 => {
                                stats.on_text(frames.payload(&frame), now);
                                seen += 1;
                                if seen == 3
                                    && let Some((tx, writer, _permit)) = ready.take()
                                {
                                    let _ = tx.send(Ok(writer));
                                }
                            }
                            0x8 => break 'read,
                            0x9 => {
                                let pong = client::frame(0xA, frames.payload(&frame));
                                stats.add_bytes(pong.len() as u64);
                                let _ = writer.lock().await.write_all(&pong).await;
                            }
                            _ => {}
                        }
                    }
                    match frames.fill(&mut read).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => stats.add_bytes(n as u64),
                    }
                }
                if let Some((tx, _, _)) = ready.take() {
                    let _ = tx.send(Err(io::Error::other("closed before its first frames")));
                }
                stats.closed.set(stats.closed.get() + 1);
            }));
        }
        drop(tx);
        let mut writers = Vec::with_capacity(count);
        let mut failed = None;
        for _ in 0..count {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Ok(writer))) => writers.push(writer),
                Ok(Some(Err(e))) => failed = Some(e),
                Ok(None) => break,
                Err(_) => {
                    failed = Some(io::Error::other(format!(
                        "only {} of {count} connections ready in {limit:?}",
                        writers.len()
                    )));
                    break;
                }
            }
        }
        let clients = Clients {
            writers,
            readers,
            stats,
        };
        match failed {
            Some(e) => {
                clients.close();
                Err(e)
            }
            None => Ok(clients),
        }
    }

    pub fn len(&self) -> usize {
        self.writers.len()
    }

    /// Ends every client (their sockets close when the tasks are dropped).
    pub fn close(self) {
        for reader in &self.readers {
            reader.abort();
        }
    }

    /// Sends one load message from client `i`; returns its send stamp.
    pub async fn say(&self, i: usize, seq: u64) -> io::Result<u64> {
        let sent = self.stats.now_us();
        let json = message_json(sent, self.stats.server, seq);
        let frame = client::text_frame(&json);
        self.writers[i].lock().await.write_all(&frame).await?;
        self.stats.add_bytes(frame.len() as u64);
        Ok(sent)
    }
}

/// The client frame of load message number `seq`, sent at `sent` (µs) by a
/// client of server `server`: its text starts with `B<sent>@<server>`.
pub fn message_json(sent: u64, server: usize, seq: u64) -> String {
    let text = format!("B{sent}@{server} {seq} ");
    let pad = TEXT_LEN.saturating_sub(text.len());
    format!(
        "{{\"type\":\"message\",\"text\":\"{text}{}\"}}",
        "x".repeat(pad)
    )
}

/// Logs every name in (at most [`CONNECT_CONCURRENCY`] at a time); their
/// cookies, in order. Fails on the first refused login.
pub async fn login_all(
    addr: SocketAddr,
    names: &[String],
    deadline: tokio::time::Instant,
) -> io::Result<Vec<String>> {
    let gate = Rc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let (tx, mut rx) = mpsc::unbounded_channel();
    for (i, name) in names.iter().enumerate() {
        let (gate, tx, name) = (gate.clone(), tx.clone(), name.clone());
        tokio::task::spawn_local(async move {
            let _permit = gate.acquire().await;
            let _ = tx.send((i, client::login(addr, &name).await));
        });
    }
    let mut cookies = vec![String::new(); names.len()];
    for _ in 0..names.len() {
        let (i, cookie) = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .map_err(|_| io::Error::other("logins timed out"))?
            .expect("senders alive");
        cookies[i] = cookie?;
    }
    Ok(cookies)
}

/// One load step's result.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Room messages per second sent, and how many clients sent them.
    pub messages_per_s: f64,
    pub senders: usize,
    pub clients: usize,
    /// Deliveries per second offered (messages/s × clients).
    pub offered_per_s: f64,
    /// What was delivered of the messages sent in the window, and how fast.
    #[serde(flatten)]
    pub deliveries: Deliveries,
    /// Error frames (e.g. rate_limited) received during the step.
    pub errors: u64,
    /// Clients the server dropped during the step.
    pub dropped_clients: u64,
    /// Share of one core the load generator used during the step.
    pub generator_cpu: f64,
}

impl Step {
    /// Within the saturation criteria: p99 ≤ 100 ms, ≤ 0.1 % lost, nobody dropped.
    pub fn passes(&self) -> bool {
        let d = &self.deliveries;
        d.p99_ms <= 100.0
            && d.lost as f64 <= d.expected as f64 * 0.001
            && self.dropped_clients == 0
            && d.delivered > 0
    }
}

/// Sends `messages_per_s` room messages from the first `senders` clients
/// (round robin, so each sends at `messages_per_s / senders`), for `warmup`
/// then a measured `window`, and waits up to [`DRAIN`] for the deliveries.
pub async fn run_step(
    clients: &Clients,
    messages_per_s: f64,
    senders: usize,
    warmup: Duration,
    window: Duration,
) -> Step {
    run_step_until(clients, messages_per_s, senders, warmup, window, || false)
        .await
        .0
}

/// [`run_step`], whose measured window ends early once `done()` is true
/// (asked every millisecond after the warm-up), at the latest after
/// `window`. Also returns the window's real length.
pub async fn run_step_until(
    clients: &Clients,
    messages_per_s: f64,
    senders: usize,
    warmup: Duration,
    window: Duration,
    done: impl Fn() -> bool,
) -> (Step, Duration) {
    let stats = &clients.stats;
    let senders = senders.clamp(1, clients.len());
    let open = clients.len() as u64 - stats.closed();
    let closed_before = stats.closed();
    let errors_before = stats.errors.get();
    let window_start = stats.now_us() + warmup.as_micros() as u64;
    let window_end = window_start + window.as_micros() as u64;
    stats.open_window(window_start, window_end);
    let cpu_before = crate::procs::own_cpu_time();
    let wall = Instant::now();

    let mut in_window = 0u64;
    let mut window_end = window_end;
    let stop = || {
        let now = stats.now_us();
        if now >= window_start && now < window_end && done() {
            // The window ends now: later messages do not count.
            stats.end_window_at(now);
            return true;
        }
        false
    };
    let stopped = pace(messages_per_s, warmup + window, stop, async |seq| {
        let from = (seq % senders as u64) as usize;
        if let Ok(at) = clients.say(from, seq).await
            && at >= window_start
            && at < stats.window.get().1
        {
            in_window += 1;
        }
    })
    .await;
    if stopped {
        window_end = stats.window.get().1;
    }
    let window = Duration::from_micros(window_end.saturating_sub(window_start));
    let expected = in_window * open;
    drain(&[stats], expected).await;
    let cpu =
        (crate::procs::own_cpu_time() - cpu_before).as_secs_f64() / wall.elapsed().as_secs_f64();
    // Nothing counted after this point belongs to the step. (One server:
    // every delivery is a same-server one.)
    let (latencies, _) = stats.close_window();
    let step = Step {
        messages_per_s,
        senders,
        clients: open as usize,
        offered_per_s: messages_per_s * open as f64,
        deliveries: Deliveries::new(expected, latencies, window),
        errors: stats.errors.get() - errors_before,
        dropped_clients: stats.closed() - closed_before,
        generator_cpu: cpu,
    };
    (step, window)
}

/// Calls `say(seq)` for seq = 0, 1, 2 ... at `messages_per_s`, for `total`,
/// or until `stop()` (asked every millisecond) says so; returns whether it
/// stopped early.
pub async fn pace(
    messages_per_s: f64,
    total: Duration,
    mut stop: impl FnMut() -> bool,
    mut say: impl AsyncFnMut(u64),
) -> bool {
    let wall = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent = 0u64;
    'send: loop {
        tick.tick().await;
        let elapsed = wall.elapsed();
        if elapsed >= total {
            break;
        }
        if stop() {
            return true;
        }
        let due = (elapsed.as_secs_f64() * messages_per_s) as u64;
        while sent < due {
            if wall.elapsed() >= total {
                break 'send;
            }
            say(sent).await;
            sent += 1;
        }
    }
    false
}

/// Waits until `stats` have `expected` deliveries between them, at most
/// [`DRAIN`].
pub async fn drain(stats: &[&Stats], expected: u64) {
    let until = Instant::now() + DRAIN;
    let delivered = || stats.iter().map(|s| s.delivered.get()).sum::<u64>();
    while delivered() < expected && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// p50, p90, p99 and max of `latencies` (µs), in ms (NaN when empty).
pub fn percentiles(latencies: &mut [u32]) -> [f64; 4] {
    latencies.sort_unstable();
    [0.50, 0.90, 0.99, 1.0].map(|p| {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i] as f64 / 1000.0
    })
}

/// One kind of delivery in a cluster step: to a client of the sender's
/// server, or to a client of another server.
#[derive(Debug, Clone, Serialize)]
pub struct Deliveries {
    pub delivered_per_s: f64,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Deliveries {
    pub fn new(expected: u64, mut latencies: Vec<u32>, window: Duration) -> Deliveries {
        let delivered = latencies.len() as u64;
        let [p50_ms, p90_ms, p99_ms, max_ms] = percentiles(&mut latencies);
        Deliveries {
            delivered_per_s: delivered as f64 / window.as_secs_f64(),
            expected,
            delivered,
            lost: expected.saturating_sub(delivered),
            p50_ms,
            p90_ms,
            p99_ms,
            max_ms,
        }
    }
}

/// A load step on several servers sharing one Redis.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStep {
    pub servers: usize,
    /// Room messages per second, all servers together, sent by the first
    /// `senders_per_server` clients of each server.
    pub messages_per_s: f64,
    pub senders_per_server: usize,
    /// Open clients, all servers together.
    pub clients: usize,
    pub offered_per_s: f64,
    pub delivered_per_s: f64,
    pub lost: u64,
    /// Sender and recipient on the same server.
    pub same_server: Deliveries,
    /// Sender and recipient on different servers (one Redis pub/sub hop).
    pub across_servers: Deliveries,
    pub errors: u64,
    pub dropped_clients: u64,
    pub generator_cpu: f64,
}

/// [`run_step`] on several servers at once, one set of clients each:
/// messages go round robin over the servers, and on each over its first
/// `senders_per_server` clients; every message must reach every client of
/// every server.
pub async fn run_cluster_step(
    servers: &[Clients],
    messages_per_s: f64,
    senders_per_server: usize,
    warmup: Duration,
    window: Duration,
) -> ClusterStep {
    let n = servers.len();
    let fewest = servers.iter().map(Clients::len).min().unwrap_or(1);
    let senders = senders_per_server.clamp(1, fewest.max(1));
    let stats: Vec<&Stats> = servers.iter().map(|c| &*c.stats).collect();
    let open: Vec<u64> = stats
        .iter()
        .zip(servers)
        .map(|(s, c)| c.len() as u64 - s.closed())
        .collect();
    let closed_before: u64 = stats.iter().map(|s| s.closed()).sum();
    let errors_before: u64 = stats.iter().map(|s| s.errors.get()).sum();
    let window_start = stats[0].now_us() + warmup.as_micros() as u64;
    let window_end = window_start + window.as_micros() as u64;
    for s in &stats {
        s.open_window(window_start, window_end);
    }
    let cpu_before = crate::procs::own_cpu_time();
    let wall = Instant::now();

    // Messages sent in the window, by the sender's server.
    let mut in_window = vec![0u64; n];
    pace(
        messages_per_s,
        warmup + window,
        || false,
        async |seq| {
            let server = seq as usize % n;
            let from = (seq as usize / n) % senders;
            if let Ok(at) = servers[server].say(from, seq).await
                && at >= window_start
                && at < window_end
            {
                in_window[server] += 1;
            }
        },
    )
    .await;
    let all_open: u64 = open.iter().sum();
    let all_sent: u64 = in_window.iter().sum();
    let expected_same: u64 = in_window.iter().zip(&open).map(|(m, c)| m * c).sum();
    let expected_across = all_sent * all_open - expected_same;
    drain(&stats, expected_same + expected_across).await;
    let cpu =
        (crate::procs::own_cpu_time() - cpu_before).as_secs_f64() / wall.elapsed().as_secs_f64();
    let (mut same, mut across) = (Vec::new(), Vec::new());
    for s in &stats {
        let (a, b) = s.close_window();
        same.extend(a);
        across.extend(b);
    }
    let same_server = Deliveries::new(expected_same, same, window);
    let across_servers = Deliveries::new(expected_across, across, window);
    ClusterStep {
        servers: n,
        messages_per_s,
        senders_per_server: senders,
        clients: all_open as usize,
        offered_per_s: messages_per_s * all_open as f64,
        delivered_per_s: same_server.delivered_per_s + across_servers.delivered_per_s,
        lost: same_server.lost + across_servers.lost,
        same_server,
        across_servers,
        errors: stats.iter().map(|s| s.errors.get()).sum::<u64>() - errors_before,
        dropped_clients: stats.iter().map(|s| s.closed()).sum::<u64>() - closed_before,
        generator_cpu: cpu,
    }
}

/// Senders needed for `messages_per_s` with each under the rate limit.
pub fn senders_for(messages_per_s: f64, at_least: usize) -> usize {
    ((messages_per_s / MAX_RATE_PER_SENDER).ceil() as usize).max(at_least)
}

/// Join latency: from writing `GET /ws` (or `GET /ws?after=SEQ`) to having
/// the `history` frame.
#[derive(Debug, Clone, Serialize)]
pub struct Joins {
    pub store: String,
    pub joins: usize,
    /// `None`: plain joins (`GET /ws`). `Some(SEQ)`: joins with
    /// `?after=SEQ`, SEQ the latest seq a joining client had seen (nothing
    /// missed), or 0 when the server sent no seq.
    pub after: Option<u64>,
    /// Whether the server's `history` frames carried `"seq"` fields.
    pub server_sends_seq: bool,
    /// Room messages in the last `history` frame (with `after` = the latest
    /// seq: 0 from a server that honours `after`).
    pub history_messages: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Fills the room history with `history` messages (from a few clients, under
/// the rate limit), then measures `joins` joins one after another, each by a
/// name logged in beforehand (the login is not timed), each closed after;
/// then `joins` more by the same names, each with `?after=` the latest seq
/// seen in a `history` frame so far (0 if the server sends no seq): a client
/// reconnecting that missed nothing. Returns the plain joins, then the
/// joins with `after`.
pub async fn join_latency(
    addr: SocketAddr,
    store: &str,
    history: usize,
    joins: usize,
    epoch: Instant,
) -> io::Result<(Joins, Joins)> {
    let stats = Stats::new(epoch);
    let talkers = 5;
    let clients = Clients::open(addr, talkers, 1, "h", stats, Duration::from_secs(20)).await?;
    for seq in 0..history as u64 {
        clients.say(seq as usize % talkers, seq).await?;
        // 5 talkers × 1 message each per 10 ms = 20/s each at most.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    clients
        .stats
        .wait_quiet(Duration::from_millis(300), Duration::from_secs(5))
        .await;
    clients.close();

    let mut cookies = Vec::with_capacity(joins);
    for i in 0..joins {
        cookies.push(client::login(addr, &format!("j{i}")).await?);
    }
    let mut latest = None;
    let plain = timed_joins(addr, store, &cookies, None, &mut latest).await?;
    let after = latest.unwrap_or(0);
    let resumed = timed_joins(addr, store, &cookies, Some(after), &mut latest).await?;
    Ok((plain, resumed))
}

/// One join after another, one per cookie, each timed from writing the
/// upgrade to having the `history` frame, then closed. `latest` is raised to
/// the highest seq seen in a `history` frame.
async fn timed_joins(
    addr: SocketAddr,
    store: &str,
    cookies: &[String],
    after: Option<u64>,
    latest: &mut Option<u64>,
) -> io::Result<Joins> {
    let path = match after {
        Some(seq) => format!("/ws?after={seq}"),
        None => "/ws".to_string(),
    };
    let mut times = Vec::with_capacity(cookies.len());
    let mut history_messages = 0;
    for cookie in cookies {
        let mut socket = tokio::net::TcpStream::connect(addr).await?;
        socket.set_nodelay(true)?;
        let t0 = Instant::now();
        client::send_upgrade(&mut socket, addr, &path, cookie).await?;
        let rest = client::finish_upgrade(&mut socket).await?;
        let mut frames = FrameBuf::new(rest, 64 * 1024);
        let mut texts = 0;
        let (messages, seq) = tokio::time::timeout(client::HTTP_TIMEOUT, async {
            loop {
                while let Some(frame) = frames.next() {
                    if frame.opcode == 0x1 {
                        texts += 1;
                        if texts == 2 {
                            let payload = frames.payload(&frame);
                            let messages =
                                memchr::memmem::find_iter(payload, b"\"type\":\"message\"").count();
                            return Ok((messages, client::max_seq(payload)));
                        }
                    }
                }
                if frames.fill(&mut socket).await? == 0 {
                    return Err(io::Error::other("closed before history"));
                }
            }
        })
        .await
        .map_err(|_| io::Error::other("no history within 10 s"))??;
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
        history_messages = messages;
        if seq.is_some() {
            *latest = (*latest).max(seq);
        }
        drop(socket);
    }
    if times.is_empty() {
        return Err(io::Error::other("no joins"));
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1];
    Ok(Joins {
        store: store.to_string(),
        joins: times.len(),
        after,
        server_sends_seq: latest.is_some(),
        history_messages,
        p50_ms: pct(0.5),
        p90_ms: pct(0.9),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
    })
}
