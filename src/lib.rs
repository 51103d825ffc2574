//! lanchat: a LAN chat server in one small binary.
//!
//! A teacher runs `lanchat` on a laptop; everyone on the LAN opens the printed
//! URL, picks a nickname and chats. The server is deliberately *synchronous*:
//! a blocking `TcpListener` and one thread per connection (plus one writer
//! thread per WebSocket), no async runtime. The point is to show that this
//! model, built with care, is simple to read and holds up well.
//!
//! # Layout: one module per idea
//!
//! | module         | role |
//! |----------------|------|
//! | [`config`]     | command-line flags -> [`config::Config`] |
//! | [`server`]     | the listener, one thread per connection, HTTP routing |
//! | [`http`]       | reading a request head and form, writing a response |
//! | [`session`]    | nicknames, cookies, who is logged in |
//! | [`page`]       | the web page in `www/` (embedded) and the login form |
//! | [`connection`] | one WebSocket: its read pump (heartbeat, rate limit) |
//! | [`outbox`]     | how frames reach a socket: sent at once, or queued for a write pump |
//! | [`hub`]        | who is online, the recent history, deciding who gets what |
//! | [`protocol`]   | the JSON frames in and out, encoded once per message |
//! | [`store`]      | what outlives the process: memory or Redis |
//! | [`cluster`]    | several servers on one Redis as one chat (pub/sub) |
//!
//! # How a room message travels
//!
//! ```text
//!  alice's socket ──> read pump (alice) ──> Hub::say ──> [lock: history, who gets it] ──> Delivery
//!                     parse, rate-limit     encode once                                      │
//!                                                                                            ▼
//!                                 fan-out thread ──> outbox(alice), outbox(bob), outbox(carol) ──> sockets
//! ```
//!
//! One writer at a time per socket, guarded by its outbox: a frame goes out
//! at once with a non-blocking send, or waits in the outbox for a write
//! pump thread when the socket is full. Nothing touches a socket under the
//! hub's lock.

pub mod cluster;
pub mod config;
pub mod connection;
pub mod http;
pub mod hub;
pub mod outbox;
pub mod page;
pub mod protocol;
pub mod server;
pub mod session;
pub mod store;

/// Milliseconds since the Unix epoch: the `ts` of every frame.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Locks a mutex even if a thread panicked while holding it. Every critical
/// section in lanchat leaves its data consistent before anything can panic,
/// and one crashed connection thread must not take the whole chat down.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits on `condvar` (paired with `guard`'s mutex) until `done` holds or
/// `deadline` passes; returns the guard either way.
pub(crate) fn wait_until<'a, T>(
    condvar: &std::sync::Condvar,
    mut guard: std::sync::MutexGuard<'a, T>,
    deadline: std::time::Instant,
    done: impl Fn(&T) -> bool,
) -> std::sync::MutexGuard<'a, T> {
    while !done(&guard) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        guard = condvar
            .wait_timeout(guard, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    guard
}
