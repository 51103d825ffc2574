//! The login flood (`logins`): does a burst of password logins slow the
//! chat down?
//!
//! A login with a password makes the server hash it with argon2id, a hash
//! built to be slow (tens of ms of CPU and 19 MiB of memory each). lanchat
//! hashes on the login's own thread, one hash at a time, holding no lock of
//! the chat. This scenario checks that the room does not feel it: the fixed
//! load (the same clients and rate as the `fanout` scenario) runs once
//! without logins, then again while [`FLOOD`] logins with passwords arrive
//! at once, each a new claim (a distinct name), at most [`IN_FLIGHT`] in
//! flight. The flooded window starts with the first login and ends with the
//! last answer. Reported: both windows' latency, how long each login took,
//! and that every login got its `303`.

use crate::client;
use crate::load::{self, Clients, Step};
use crate::procs::Server;
use serde::Serialize;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Logins in the flood.
pub const FLOOD: usize = 200;
/// Logins in flight at once: the others start as each one is answered. The
/// server's listen backlog is 128; with 64 waiting, its hashing never idles.
pub const IN_FLIGHT: usize = 64;
/// Longest one login may take before it counts as failed.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest the flooded window may last (it ends with the last answer; on a
/// quiet 2-core machine 200 hashes take well under 10 s).
const MAX_FLOOD_WINDOW: Duration = Duration::from_secs(30);
/// After a window cut short, how long the logins still running get before
/// they are abandoned (and count as unanswered, status 0).
const FLOOD_GRACE: Duration = Duration::from_secs(15);
/// Target: the room's p99 during the flood.
pub const P99_TARGET_MS: f64 = 10.0;

/// The flood's results.
#[derive(Debug, Clone, Serialize)]
pub struct LoginFlood {
    /// The fixed load without logins, just before (same server, clients).
    pub without_flood: Step,
    /// The fixed load while the logins run.
    pub during_flood: Step,
    /// Length of the flooded window (first login to last answer).
    pub flood_window_s: f64,
    pub logins: usize,
    pub in_flight: usize,
    /// Logins answered `303` (a new session).
    pub ok_303: usize,
    /// Every other answer, by status (0: none, e.g. a timeout).
    pub other_statuses: BTreeMap<u16, usize>,
    /// Each login's time, from connecting to the whole answer (ms).
    pub login_p50_ms: f64,
    pub login_p99_ms: f64,
    pub login_max_ms: f64,
    /// First login sent to last answer (s).
    pub all_logins_s: f64,
    /// Whether `during_flood`'s p99 is within [`P99_TARGET_MS`].
    pub p99_met: bool,
    /// Share of the server's core taken by everything but the server
    /// (other processes, the hypervisor's steal) during each step: the
    /// machine's noise.
    pub server_core_others_without: f64,
    pub server_core_others_during: f64,
}

/// Runs `step`, and returns with it the share of the server's core that
/// everything but the server used meanwhile.
async fn with_noise<T>(server: &Server, step: impl Future<Output = T>) -> (T, f64) {
    let before = (
        crate::procs::core_busy(crate::SERVER_CORE),
        server.cpu_time(),
        Instant::now(),
    );
    let out = step.await;
    let wall = before.2.elapsed().as_secs_f64();
    let own = server.cpu_time().saturating_sub(before.1).as_secs_f64();
    let others = match (before.0, crate::procs::core_busy(crate::SERVER_CORE)) {
        (Some(b), Some(a)) => (a.saturating_sub(b).as_secs_f64() - own).max(0.0) / wall,
        _ => f64::NAN,
    };
    (out, others)
}

#[derive(Default)]
struct Flood {
    done: Cell<bool>,
    /// Every login task, to abandon the ones still running at the end.
    tasks: RefCell<Vec<tokio::task::AbortHandle>>,
    times_ms: RefCell<Vec<f64>>,
    statuses: RefCell<BTreeMap<u16, usize>>,
    all_s: Cell<f64>,
}

/// Fires [`FLOOD`] logins with passwords at `addr` after `delay`, at most
/// [`IN_FLIGHT`] at once; `flood.done` once all are answered.
async fn fire(addr: SocketAddr, delay: Duration, flood: Rc<Flood>) {
    tokio::time::sleep(delay).await;
    let started = Instant::now();
    let gate = Rc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = Vec::with_capacity(FLOOD);
    for i in 0..FLOOD {
        let (gate, mine) = (gate.clone(), flood.clone());
        let task = tokio::task::spawn_local(async move {
            let flood = mine;
            let _permit = gate.acquire().await;
            // A distinct name (a new claim each) and a 12-character password.
            let request =
                client::login_request(addr, &format!("flood{i}"), Some(&format!("pass{i:08}")));
            let t0 = Instant::now();
            let answer = client::exchange(addr, request.as_bytes(), LOGIN_TIMEOUT).await;
            flood
                .times_ms
                .borrow_mut()
                .push(t0.elapsed().as_secs_f64() * 1000.0);
            *flood
                .statuses
                .borrow_mut()
                .entry(answer.status)
                .or_default() += 1;
        });
        flood.tasks.borrow_mut().push(task.abort_handle());
        tasks.push(task);
    }
    for task in tasks {
        let _ = task.await;
    }
    flood.all_s.set(started.elapsed().as_secs_f64());
    flood.done.set(true);
}

/// On `clients` (already open on the server at `addr`): the fixed load for
/// `window`, then the fixed load during the flood.
pub async fn login_flood(server: &Server, clients: &Clients, window: Duration) -> LoginFlood {
    let addr = server.addr;
    let warmup = Duration::from_secs(1);
    let (without_flood, others_without) =
        with_noise(server, load::run_step(clients, 20.0, 10, warmup, window)).await;
    crate::log(&format!(
        "logins: fixed load without the flood: {}",
        crate::report::step_line(&without_flood)
    ));
    clients
        .stats
        .wait_quiet(Duration::from_millis(300), Duration::from_secs(5))
        .await;

    // The flood starts with the measured window (after the warm-up).
    let flood = Rc::new(Flood::default());
    let firing = tokio::task::spawn_local(fire(addr, warmup, flood.clone()));
    let ((during_flood, window), others_during) = with_noise(
        server,
        load::run_step_until(clients, 20.0, 10, warmup, MAX_FLOOD_WINDOW, || {
            flood.done.get()
        }),
    )
    .await;
    if tokio::time::timeout(FLOOD_GRACE, firing).await.is_err() {
        crate::log("logins: the flood did not end in time; the logins left are abandoned");
        for task in flood.tasks.borrow().iter() {
            task.abort();
        }
    }
    let mut times = flood.times_ms.take();
    times.sort_by(f64::total_cmp);
    let [p50, p99, max] = [0.5, 0.99, 1.0].map(|p| {
        if times.is_empty() {
            return f64::NAN;
        }
        times[((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1]
    });
    let mut other_statuses = flood.statuses.take();
    let unanswered = FLOOD.saturating_sub(times.len());
    if unanswered > 0 {
        *other_statuses.entry(0).or_default() += unanswered;
    }
    let ok_303 = other_statuses.remove(&303).unwrap_or(0);
    let p99_met = during_flood.deliveries.p99_ms <= P99_TARGET_MS;
    LoginFlood {
        without_flood,
        during_flood,
        flood_window_s: window.as_secs_f64(),
        logins: FLOOD,
        in_flight: IN_FLIGHT,
        ok_303,
        other_statuses,
        login_p50_ms: p50,
        login_p99_ms: p99,
        login_max_ms: max,
        // Unset when abandoned: then at least the time it was given.
        all_logins_s: if flood.done.get() {
            flood.all_s.get()
        } else {
            (window + FLOOD_GRACE).as_secs_f64()
        },
        p99_met,
        server_core_others_without: others_without,
        server_core_others_during: others_during,
    }
}
