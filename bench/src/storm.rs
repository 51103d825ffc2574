//! The `storm` scenario (issue 17): a school at 8:00. N different people
//! (each their own login) open the chat at once, while two people already
//! in the room keep talking.
//!
//! On a fresh server (memory store), for each N:
//!
//! 1. RSS and threads of the idle server (the baseline).
//! 2. N logins `p0` … `p{N-1}`, no password, 64 at a time (as every
//!    scenario logs in: the server's listen backlog is 128).
//!    They are done *before* the storm and are not timed as joins: the
//!    storm measures the WebSocket joins (`GET /ws`), the part that tells
//!    everyone about everyone.
//! 3. [`SPEAKERS`] speakers join and start talking, [`SPEAKER_RATE`]
//!    messages a second each, stamped as the fixed load's messages are
//!    (`B<send time in µs>`), until the storm ends.
//! 4. One second later, the storm: N connections started as fast as the
//!    generator can (each connects, writes its upgrade, reads the `101`,
//!    then reads every frame it is sent until the end). A join is timed
//!    from starting its connect to having its `welcome` frame.
//!    `--storm-in-flight K` keeps at most K joins between "connect" and
//!    "welcome" at once (default: no limit).
//! 5. The storm ends when every join is welcomed or failed, at most
//!    [`STORM_LIMIT`] after it began; the speakers stop. Then the bench waits
//!    for the server to settle: no frame and the server idle for 500 ms
//!    and every open person has every message sent after its welcome, or
//!    no frame and the server idle for 3 s, at most [`SETTLE_LIMIT`]. Then it counts who is still open and still in the
//!    room (has every message): the server should have dropped nobody. RSS,
//!    threads and file descriptors again.
//!
//! Every storm connection reads everything it is sent (joins, leaves,
//! messages) with the fixed load's cheap decoder; a `message` frame's stamp
//! gives its latency. A speaker's message counts when it was sent during the
//! storm, and each person is expected to receive every one sent after it
//! was welcomed (one sent earlier may or may not reach it live: the
//! `history` frame replays it, and is not counted). Once the server is
//! quiet, a last message (the probe, not timed) checks that everyone open
//! is still in the room. `lost` = expected deliveries missing then, among
//! people still open.

use crate::client::{self, FrameBuf};
use crate::load::{self, Clients, Stats};
use crate::procs::Server;
use serde::Serialize;
use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// People in a storm, by default (`--storm-sizes`).
pub const SIZES: [usize; 3] = [1000, 5000, 10_000];
/// Connections already in the room that talk during the storm ...
pub const SPEAKERS: usize = 2;
/// ... each this many messages a second (the server allows 20).
pub const SPEAKER_RATE: f64 = 10.0;
/// The longest a storm may last: joins not welcomed by then fail.
pub const STORM_LIMIT: Duration = Duration::from_secs(60);
/// The longest the bench waits, after the storm, for the server to go
/// quiet (the last join notices still being written).
pub const SETTLE_LIMIT: Duration = Duration::from_secs(20);
/// Longest a speaker's message may take to be written (a full socket
/// buffer: the server is not reading the speaker) before it is skipped.
const SAY_LIMIT: Duration = Duration::from_secs(1);
/// How often the bench looks whether the server has settled; it is idle
/// when it used less than a tenth of that in CPU.
const SETTLE_TICK: Duration = Duration::from_millis(250);
/// Read buffer of a storm connection; a `welcome` listing thousands of
/// names grows it for a moment (see [`FrameBuf::shrink_to`]).
const READ_BUFFER: usize = 4 * 1024;
/// Targets of issue 17.
pub const JOIN_P99_TARGET_MS: f64 = 3000.0;
pub const MESSAGE_P99_TARGET_MS: f64 = 100.0;
pub const RSS_TARGET_KIB: f64 = 16.0;

/// One storm's result.
#[derive(Debug, Clone, Serialize, Default)]
pub struct StormRun {
    pub people: usize,
    /// Connections per login (1: every connection a different person).
    pub per_login: usize,
    /// Joins allowed between connect and welcome at once (0: no limit).
    pub in_flight: usize,
    /// How long the N logins took (before the storm, not part of a join).
    pub logins_s: f64,
    /// Machine limits in the way of N connections (empty: none).
    pub limits: Vec<String>,
    /// Joins that got their `welcome`.
    pub welcomed: usize,
    /// Joins that never did (refused, reset, closed, or not within
    /// [`STORM_LIMIT`]), and the first few reasons.
    pub failed: usize,
    pub failures: Vec<String>,
    /// Welcomed, then closed by the server before the end.
    pub dropped: usize,
    /// Storm connections still open once the server is quiet ...
    pub open_after: usize,
    /// ... and of those, how many miss a message sent after their welcome:
    /// no longer in the room although their socket is open (a server that
    /// dropped them without closing yet).
    pub open_but_missing: usize,
    /// From the first connect to the last connect started (how fast the
    /// generator fired), and to the last welcome.
    pub last_connect_s: f64,
    pub all_welcomed_s: Option<f64>,
    /// Last welcome − last connect started.
    pub after_last_connect_s: Option<f64>,
    /// Join: connect started → `welcome` read (ms), of the welcomed.
    pub join_p50_ms: f64,
    pub join_p90_ms: f64,
    pub join_p99_ms: f64,
    pub join_max_ms: f64,
    /// TCP connect alone (ms): a listen queue overflowing shows here as
    /// SYN retransmits (1 s, 3 s ...).
    pub connect_p99_ms: f64,
    /// The speakers' messages sent during the storm, to everyone connected.
    pub messages_sent: u64,
    pub deliveries_expected: u64,
    pub deliveries: u64,
    pub deliveries_lost: u64,
    pub message_p50_ms: f64,
    pub message_p99_ms: f64,
    pub message_max_ms: f64,
    /// `join` and `leave` frames the storm connections read, bytes read,
    /// and `error` frames.
    pub join_frames: u64,
    pub leave_frames: u64,
    pub bytes_read: u64,
    pub error_frames: u64,
    /// From the end of the storm until no frame arrived for 500 ms.
    pub settle_s: f64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub rss_max_kib: u64,
    /// (RSS after − RSS before) / connections open after (speakers
    /// included); the logins' sessions are in it.
    pub rss_per_connection_kib: f64,
    pub threads_before: u64,
    pub threads_after: u64,
    pub threads_max: u64,
    /// File descriptors the server held after the storm.
    pub server_fds_after: u64,
    /// Share of a core the server and the load generator used during the
    /// storm (≥ 0.9 for the generator: the numbers measure it too).
    pub server_cpu: f64,
    pub generator_cpu: f64,
    /// Share of the server's core, and of the generator's, that other
    /// processes (and the hypervisor's steal) took during the storm: the
    /// machine's noise (near 0 on a quiet machine).
    pub server_core_others: f64,
    pub generator_core_others: f64,
    pub join_p99_met: bool,
    pub message_p99_met: bool,
    pub nobody_dropped: bool,
}

/// One storm connection, as its reader task sees it.
#[derive(Default)]
struct Person {
    /// µs since the epoch: connect started, connected, `welcome` read (0: not
    /// yet).
    started: Cell<u64>,
    connected: Cell<u64>,
    welcomed: Cell<u64>,
    /// Storm messages sent after `welcomed` that reached it.
    received: Cell<u64>,
    closed: Cell<bool>,
}

/// What every storm connection adds to.
struct Shared {
    epoch: Instant,
    /// Messages sent in `window_start..window_end` (µs) are the storm's:
    /// their latencies count. Later ones (the probe) are only checked for.
    window_start: Cell<u64>,
    window_end: Cell<u64>,
    latencies: RefCell<Vec<u32>>,
    welcomed: Cell<usize>,
    failed: Cell<usize>,
    failures: RefCell<Vec<String>>,
    frames: Cell<u64>,
    joins: Cell<u64>,
    leaves: Cell<u64>,
    errors: Cell<u64>,
    bytes: Cell<u64>,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn fail(&self, why: String) {
        self.failed.set(self.failed.get() + 1);
        let mut failures = self.failures.borrow_mut();
        if failures.len() < 5 && !failures.contains(&why) {
            failures.push(why);
        }
    }

    /// One text frame read by `p` at `now`.
    fn on_text(&self, p: &Person, payload: &[u8], now: u64) {
        self.frames.set(self.frames.get() + 1);
        let is = |kind: &[u8]| {
            payload.len() > 9 + kind.len()
                && payload.starts_with(b"{\"type\":\"")
                && payload[9..].starts_with(kind)
        };
        if is(b"join\"") {
            self.joins.set(self.joins.get() + 1);
        } else if is(b"leave\"") {
            self.leaves.set(self.leaves.get() + 1);
        } else if is(b"message\"") {
            if let Some(stamp) = client::stamp(payload)
                && stamp.sent_us >= self.window_start.get()
            {
                if stamp.sent_us < self.window_end.get() {
                    let latency = now.saturating_sub(stamp.sent_us).min(u32::MAX as u64);
                    self.latencies.borrow_mut().push(latency as u32);
                }
                if stamp.sent_us > p.welcomed.get() {
                    p.received.set(p.received.get() + 1);
                }
            }
        } else if is(b"error\"") {
            self.errors.set(self.errors.get() + 1);
        }
    }
}

/// One person: connect, upgrade, `welcome` (all before `deadline`), then
/// read everything until aborted or closed.
async fn person(
    addr: SocketAddr,
    cookie: Rc<String>,
    p: Rc<Person>,
    s: Rc<Shared>,
    gate: Option<Rc<Semaphore>>,
    deadline: tokio::time::Instant,
) {
    let permit = match &gate {
        Some(gate) => Some(gate.acquire().await),
        None => None,
    };
    p.started.set(s.now_us());
    let opened = tokio::time::timeout_at(deadline, async {
        let mut socket = TcpStream::connect(addr).await?;
        p.connected.set(s.now_us());
        socket.set_nodelay(true)?;
        client::send_upgrade(&mut socket, addr, "/ws", &cookie).await?;
        let rest = client::upgrade_answer(&mut socket).await?;
        io::Result::Ok((socket, rest))
    })
    .await;
    let (mut socket, rest) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(e)) => return s.fail(format!("{e}")),
        Err(_) => return s.fail("no 101 before the storm's limit".into()),
    };
    let mut frames = FrameBuf::new(rest, READ_BUFFER);
    let mut permit = permit;
    loop {
        let now = s.now_us();
        let mut pong = None;
        while let Some(frame) = frames.next() {
            match frame.opcode {
                0x1 => {
                    let payload = frames.payload(&frame);
                    if p.welcomed.get() == 0 {
                        if !payload.starts_with(b"{\"type\":\"welcome\"") {
                            let first = String::from_utf8_lossy(&payload[..payload.len().min(80)]);
                            return s.fail(format!("first frame: {first}"));
                        }
                        p.welcomed.set(now.max(1));
                        s.welcomed.set(s.welcomed.get() + 1);
                        permit.take();
                    }
                    s.on_text(&p, payload, now);
                }
                0x8 => {
                    return closed(&p, &s);
                }
                0x9 => pong = Some(client::frame(0xA, frames.payload(&frame))),
                _ => {}
            }
        }
        frames.shrink_to(READ_BUFFER);
        if let Some(pong) = pong
            && socket.write_all(&pong).await.is_err()
        {
            return closed(&p, &s);
        }
        let read = if p.welcomed.get() == 0 {
            match tokio::time::timeout_at(deadline, frames.fill(&mut socket)).await {
                Ok(read) => read,
                Err(_) => return s.fail("no welcome before the storm's limit".into()),
            }
        } else {
            frames.fill(&mut socket).await
        };
        match read {
            Ok(0) | Err(_) => return closed(&p, &s),
            Ok(n) => s.bytes.set(s.bytes.get() + n as u64),
        }
    }
}

/// The server closed `p`'s connection: a drop once welcomed, else a failure.
fn closed(p: &Person, s: &Shared) {
    if p.welcomed.get() == 0 {
        s.fail("closed before its welcome".into());
    } else {
        p.closed.set(true);
    }
}

/// Busy time of the server's core and of the generator's.
fn cores_busy() -> Option<(Duration, Duration)> {
    crate::procs::core_busy(crate::SERVER_CORE).zip(crate::procs::core_busy(crate::CLIENT_CORE))
}

/// p50, p90, p99, max of `values` (µs) in ms, NaN when empty.
fn percentiles(mut values: Vec<u32>) -> [f64; 4] {
    load::percentiles(&mut values)
}

/// One storm of `people` on `server` (fresh, memory store), `per_login`
/// connections per login; stops nothing (the caller stops the server).
pub async fn storm(
    server: &Server,
    people: usize,
    per_login: usize,
    in_flight: usize,
    epoch: Instant,
) -> StormRun {
    let addr = server.addr;
    let per_login = per_login.max(1);
    let mut run = StormRun {
        people,
        per_login,
        in_flight,
        limits: crate::procs::connection_limits(people + SPEAKERS),
        ..StormRun::default()
    };
    for limit in &run.limits {
        crate::log(&format!("storm {people}: machine limit: {limit}"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    (run.rss_before_kib, run.threads_before) = server.rss_and_threads();

    // Logins first: not part of the storm.
    let names: Vec<String> = (0..people.div_ceil(per_login))
        .map(|i| format!("p{i}"))
        .collect();
    let t = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let cookies = match load::login_all(addr, &names, deadline).await {
        Ok(cookies) => cookies.into_iter().map(Rc::new).collect::<Vec<_>>(),
        Err(e) => {
            run.failures.push(format!("logins: {e}"));
            crate::log(&format!("storm {people}: logins failed: {e}"));
            return run;
        }
    };
    run.logins_s = t.elapsed().as_secs_f64();

    let speakers = match Clients::open(
        addr,
        SPEAKERS,
        1,
        "speaker",
        Stats::new(epoch),
        Duration::from_secs(20),
    )
    .await
    {
        Ok(speakers) => speakers,
        Err(e) => {
            run.failures.push(format!("speakers: {e}"));
            crate::log(&format!("storm {people}: speakers failed: {e}"));
            return run;
        }
    };

    let shared = Rc::new(Shared {
        epoch,
        window_start: Cell::new(u64::MAX),
        window_end: Cell::new(u64::MAX),
        latencies: RefCell::new(Vec::new()),
        welcomed: Cell::new(0),
        failed: Cell::new(0),
        failures: RefCell::new(Vec::new()),
        frames: Cell::new(0),
        joins: Cell::new(0),
        leaves: Cell::new(0),
        errors: Cell::new(0),
        bytes: Cell::new(0),
    });
    let persons: Vec<Rc<Person>> = (0..people).map(|_| Rc::default()).collect();
    let storm_over = Cell::new(false);
    // Send stamps (µs) of the storm's messages, in order.
    let sent = RefCell::new(Vec::<u64>::new());
    let warmup = Duration::from_secs(1);
    let talk = async {
        load::pace(
            SPEAKER_RATE * SPEAKERS as f64,
            warmup + STORM_LIMIT + Duration::from_secs(1),
            || storm_over.get(),
            async |seq| {
                // A speaker the server stopped reading must not hold the
                // storm past its limit.
                let say = speakers.say(seq as usize % SPEAKERS, seq);
                if let Ok(Ok(at)) = tokio::time::timeout(SAY_LIMIT, say).await
                    && at >= shared.window_start.get()
                {
                    sent.borrow_mut().push(at);
                }
            },
        )
        .await;
    };
    let mut tasks = Vec::with_capacity(people);
    let gate = (in_flight > 0).then(|| Rc::new(Semaphore::new(in_flight)));
    let (mut rss_max, mut threads_max) = (0u64, 0u64);
    let mut server_cpu = Duration::ZERO;
    let mut generator_cpu = Duration::ZERO;
    let mut storm_wall = Duration::ZERO;
    let mut busy = None;
    let storm = async {
        tokio::time::sleep(warmup).await;
        let start_us = shared.now_us();
        shared.window_start.set(start_us);
        let (cpu0, server0, wall) = (
            crate::procs::own_cpu_time(),
            server.cpu_time(),
            Instant::now(),
        );
        let busy0 = cores_busy();
        let deadline = tokio::time::Instant::now() + STORM_LIMIT;
        for (i, p) in persons.iter().enumerate() {
            tasks.push(tokio::task::spawn_local(person(
                addr,
                cookies[i / per_login].clone(),
                p.clone(),
                shared.clone(),
                gate.clone(),
                deadline,
            )));
            // Let the tasks started so far connect now and then (a
            // current-thread runtime runs them only when this one yields).
            if i % 256 == 255 {
                tokio::task::yield_now().await;
            }
        }
        let mut sampled = Instant::now();
        while shared.welcomed.get() + shared.failed.get() < people
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if sampled.elapsed() >= Duration::from_millis(100) {
                let (rss, threads) = server.rss_and_threads();
                rss_max = rss_max.max(rss);
                threads_max = threads_max.max(threads);
                sampled = Instant::now();
            }
        }
        storm_over.set(true);
        shared.window_end.set(shared.now_us());
        storm_wall = wall.elapsed();
        generator_cpu = crate::procs::own_cpu_time() - cpu0;
        server_cpu = server.cpu_time().saturating_sub(server0);
        busy = cores_busy().zip(busy0).map(|(a, b)| {
            (
                a.0.saturating_sub(b.0).saturating_sub(server_cpu),
                a.1.saturating_sub(b.1).saturating_sub(generator_cpu),
            )
        });
        start_us
    };
    let ((), start_us) = tokio::join!(talk, storm);
    let wall_s = storm_wall.as_secs_f64().max(1e-3);
    run.server_cpu = server_cpu.as_secs_f64() / wall_s;
    run.generator_cpu = generator_cpu.as_secs_f64() / wall_s;
    (run.server_core_others, run.generator_core_others) = busy.map_or((f64::NAN, f64::NAN), |b| {
        (b.0.as_secs_f64() / wall_s, b.1.as_secs_f64() / wall_s)
    });

    // Let the server finish writing (join notices, the last messages):
    // quiet and nothing missing, or quiet for long.
    let missing = |p: &Person| {
        let sent = sent.borrow();
        let after = sent.len() - sent.partition_point(|&t| t <= p.welcomed.get());
        (after as u64).saturating_sub(p.received.get())
    };
    let open_persons = || {
        persons
            .iter()
            .filter(|p| p.welcomed.get() > 0 && !p.closed.get())
    };
    // Quiet = no frame read and the server (nearly) idle: a server still
    // working through its queues is not settled, even between frames.
    let settle = Instant::now();
    let (mut last, mut quiet_since) = (shared.frames.get(), Instant::now());
    let mut server_cpu_then = server.cpu_time();
    while settle.elapsed() < SETTLE_LIMIT {
        tokio::time::sleep(SETTLE_TICK).await;
        let (rss, threads) = server.rss_and_threads();
        rss_max = rss_max.max(rss);
        threads_max = threads_max.max(threads);
        let now = shared.frames.get();
        let cpu = server.cpu_time();
        let working = cpu.saturating_sub(server_cpu_then) > SETTLE_TICK / 10;
        server_cpu_then = cpu;
        if now != last || working {
            (last, quiet_since) = (now, Instant::now());
            continue;
        }
        let quiet = quiet_since.elapsed();
        if quiet >= Duration::from_secs(3)
            || (quiet >= Duration::from_millis(500) && open_persons().all(|p| missing(p) == 0))
        {
            break;
        }
    }
    // One more message, to be sure everyone open is still in the room
    // (also whoever was welcomed after the last storm message).
    let mut probed = 0;
    if let Ok(Ok(at)) = tokio::time::timeout(SAY_LIMIT, speakers.say(0, u64::MAX)).await {
        sent.borrow_mut().push(at);
        probed = 1;
        let probe = Instant::now();
        while probe.elapsed() < Duration::from_secs(5) && open_persons().any(|p| missing(p) > 0) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    run.settle_s = settle.elapsed().as_secs_f64();
    run.server_fds_after = server.fds();
    (run.rss_after_kib, run.threads_after) = server.rss_and_threads();
    run.rss_max_kib = rss_max.max(run.rss_after_kib);
    run.threads_max = threads_max.max(run.threads_after);

    // Joins.
    let welcomed: Vec<&Rc<Person>> = persons.iter().filter(|p| p.welcomed.get() > 0).collect();
    run.welcomed = welcomed.len();
    run.failed = shared.failed.get();
    run.failures = shared.failures.borrow().clone();
    run.dropped = welcomed.iter().filter(|p| p.closed.get()).count();
    run.open_after = run.welcomed - run.dropped;
    let last_start = persons.iter().map(|p| p.started.get()).max().unwrap_or(0);
    run.last_connect_s = last_start.saturating_sub(start_us) as f64 / 1e6;
    if run.welcomed > 0 {
        let last_welcome = welcomed.iter().map(|p| p.welcomed.get()).max().unwrap_or(0);
        run.all_welcomed_s = Some(last_welcome.saturating_sub(start_us) as f64 / 1e6);
        run.after_last_connect_s = Some(last_welcome.saturating_sub(last_start) as f64 / 1e6);
    }
    let us = |d: u64| d.min(u32::MAX as u64) as u32;
    [
        run.join_p50_ms,
        run.join_p90_ms,
        run.join_p99_ms,
        run.join_max_ms,
    ] = percentiles(
        welcomed
            .iter()
            .map(|p| us(p.welcomed.get() - p.started.get()))
            .collect(),
    );
    let connected: Vec<u32> = persons
        .iter()
        .filter(|p| p.connected.get() > 0)
        .map(|p| us(p.connected.get() - p.started.get()))
        .collect();
    run.connect_p99_ms = percentiles(connected)[2];

    // Messages: each open person expects every message sent after its
    // welcome (the probe included).
    run.messages_sent = sent.borrow().len() as u64 - probed;
    for p in open_persons() {
        let sent = sent.borrow();
        let after = sent.len() - sent.partition_point(|&t| t <= p.welcomed.get());
        run.deliveries_expected += after as u64;
        let lost = missing(p);
        run.deliveries_lost += lost;
        run.open_but_missing += (lost > 0) as usize;
    }
    let latencies = shared.latencies.take();
    run.deliveries = latencies.len() as u64;
    let [p50, _, p99, max] = percentiles(latencies);
    (run.message_p50_ms, run.message_p99_ms, run.message_max_ms) = (p50, p99, max);
    run.join_frames = shared.joins.get();
    run.leave_frames = shared.leaves.get();
    run.error_frames = shared.errors.get();
    run.bytes_read = shared.bytes.get();

    // Per connection only when the storm's connections are there to count
    // (with everyone dropped it would be the speakers' share of it all).
    let open = (run.open_after + speakers.len()) as f64;
    run.rss_per_connection_kib = if run.open_after > 0 {
        run.rss_after_kib.saturating_sub(run.rss_before_kib) as f64 / open
    } else {
        f64::NAN
    };
    run.join_p99_met = run.welcomed == people && run.join_p99_ms <= JOIN_P99_TARGET_MS;
    run.message_p99_met = run.message_p99_ms <= MESSAGE_P99_TARGET_MS;
    run.nobody_dropped = run.open_after == people && run.open_but_missing == 0;

    for task in &tasks {
        task.abort();
    }
    speakers.close();
    run
}
