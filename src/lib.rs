//! lanchat: a LAN chat server in one small binary.
//!
//! A teacher runs `lanchat` on a laptop; everyone on the LAN opens the printed
//! URL, picks a nickname and chats. The server is deliberately *synchronous*:
//! a blocking `TcpListener`, one thread per connection, no async runtime.
//! The point is to show that this model, built with care, is simple to read
//! and holds up well. Why it is built this way: `docs/DESIGN.md`; the wire
//! contract: `docs/PROTOCOL.md`.
//!
//! This file is the map: the modules, how a message travels, and the locks.
//! Other files point here instead of repeating it.
//!
//! # Modules: one idea each
//!
//! | module         | role | its threads |
//! |----------------|------|-------------|
//! | [`config`]     | command-line flags -> [`config::Config`], or `lanchat join`'s | |
//! | [`server`]     | the listener, one thread per connection, HTTP routes (`/join` too), the start lines, shutdown | `main`, `conn-N`, `signals`, `shutdown` |
//! | [`lan`]        | the LAN address people can reach: the default route's interface | |
//! | [`qr`]         | QR codes of that address: terminal half blocks, SVG | |
//! | [`mdns`]       | `NAME.local` on the LAN by multicast DNS (announce; find, for the client) | `mDNS_daemon` (the `mdns-sd` crate's), `mdns` (logs its events) |
//! | [`guard`]      | who may come in: Host names (`421`), connections and sessions per address | |
//! | [`http`]       | reading one request head and form, writing one response | |
//! | [`session`]    | the cookies (user, session, host), who is logged in | |
//! | [`names`]      | valid names, their key (case and look-alikes), passwords | |
//! | [`page`]       | the web page in `www/` (embedded), the login form and the join page | |
//! | [`connection`] | one WebSocket: its handshake and read pump (heartbeat, rate limit) | `conn-N` after `101` |
//! | [`files`]      | uploads (`POST /files`, streamed, capped) and downloads, served safely | `conn-N` |
//! | [`poll`]       | the chat without WebSocket: `GET /poll` (short and long), `POST /say` | `conn-N` (a held poll sleeps), `pollers` |
//! | [`outbox`]     | how frames reach a socket: sent at once, or queued for a write pump | `write-pump` (only while a client is behind) |
//! | [`hub`]        | who is online, the recent history, deciding who gets what | |
//! | [`fanout`]     | the fan-out thread: sends what the hub decided, outside its lock | `fan-out` |
//! | [`rate`]       | one token bucket for every rate limit | |
//! | [`protocol`]   | the JSON frames in and out (encoded once per message), server events | |
//! | [`store`]      | what outlives the process: memory or Redis | `redis-writer` |
//! | [`cluster`]    | several servers on one Redis as one chat (pub/sub) | `cluster-pub`, `cluster-sub` |
//! | [`client`]     | `lanchat join`: the terminal client, in its own process | `main` (reads the socket), `stdin` |
//!
//! Imports point one way: `server` -> `connection` -> `hub` -> `fanout` ->
//! `outbox` -> `protocol`; `hub` and `session` -> `store` -> `protocol`;
//! `cluster` -> `hub` (it implements the hub's [`hub::EventSink`]);
//! `server` -> `lan`, `qr`, `mdns`; `client` -> `mdns`, `protocol` (and
//! `connection`'s rate constants: it paces itself to the server's limit).
//!
//! # How a room message travels
//!
//! ```text
//!  alice's socket
//!       │ {"type":"message","text":"hi"}
//!       ▼
//!  conn-7: read pump (connection.rs)     tungstenite reads the frame; rate limit; parse (protocol.rs)
//!       │ Hub::say
//!       ▼
//!  hub.rs, under the hub lock            accept: queue "store this" (Work::Store), in lock order
//!       │
//!       ▼
//!  fan-out thread (fanout.rs)            takes every work item waiting; ONE store commit for all
//!       │ store.commit (store/)          the new messages (each gets its seq; with Redis, one
//!       │                                round trip); no lock held meanwhile
//!       ▼
//!  Hub::prepare, under the hub lock      keep in the last 100; decide: this frame (encoded ONCE,
//!       │ Deliveries                     before the lock) -> these outboxes
//!       ▼
//!  fan-out thread                        each outbox gets all of its frames in one push
//!       │
//!       ▼
//!  outbox(alice), outbox(bob) (outbox.rs)  nothing queued? one non-blocking send, done.
//!       │                                  socket full? queue (up to 1,024 frames) and start a
//!       ▼                                  write pump that sends the queue, then ends.
//!  alice's and bob's sockets
//! ```
//!
//! So the sender's copy goes out only once the message is stored, and a
//! busy room costs one store round trip per batch, not per message.
//!
//! Presence takes the same road, lighter: under the hub lock a `join` or
//! `leave` is only numbered (`Work::Notice`) and a newcomer only queued for
//! its `welcome` (`Work::Welcome`); the fan-out thread decides once per
//! batch who gets which notices (coalesced, and at most a slice of them per
//! batch) and makes the batch's welcomes with who-is-online encoded once
//! (sent once the batch's deliveries are).
//! So a class arriving at once costs the hub lock little per join, each
//! connection one push per batch, and a room message sent meanwhile waits
//! for one slice of the storm's notices, not for all of them.
//!
//! A private message takes the same path, to the connections of its sender
//! and recipient (or into the recipient's inbox in the store). With several
//! servers, the hub also hands the message to its [`hub::EventSink`]; the
//! `cluster-pub` thread publishes it on Redis, and every other server's
//! `cluster-sub` thread gives it to its own hub (`Hub::relay_room`), which
//! delivers it the same way.
//!
//! # Locks
//!
//! Every mutex and condition variable, what it guards, and who takes it.
//! No lock is held across socket I/O, nor across Redis I/O except the one
//! marked (which exists to order Redis I/O and is never taken under another
//! lock). The group commit (`Store::commit`, on the fan-out thread) holds
//! no lock while Redis works, and no store is called under the hub lock.
//! A lock may be taken while holding one *above* it in this table, never
//! one below: that order is what rules out deadlocks.
//!
//! | # | lock | guards | taken by |
//! |---|------|--------|----------|
//! | 1 | `store::redis` `Shared::in_flight` (Redis I/O under it) | that a pending inbox message is either pending or already in Redis, never in between | `redis-writer` while it writes a batch (taken before it reads `pending`); `take_inbox` (a joining read pump), holding no other lock |
//! | 2 | `hub::Hub::room` (the hub lock) + condvar `stored`, and one condvar per held long poll | the registry, pollers, who is online here and elsewhere, the room history, the mode, mutes and bans, what was accepted and stored | read pumps (join, leave, say), `fan-out` (storing done, dropping slow clients), `cluster-sub`, `cluster-pub` (presence), `pollers`, the HTTP threads (polls, counts); a joining read pump waits on `stored` for a private message to it being stored; a held long poll on its own condvar, which the hub signals only when a delivery is for it |
//! | 3 | `fanout::FanOut::queue` + condvar `ready` | work accepted, not yet stored and sent | the hub (under 2) appends; `fan-out` takes the whole queue |
//! | 3 | `cluster::Outgoing::queue` + condvar `wake` | events for the other servers | the hub (under 2) appends; `cluster-pub` takes them; `shutdown` waits on it |
//! | 3 | `store::memory::MemoryStore::inner` | sessions, claims, inboxes, conversations, moderation, files | `fan-out` (the commit), read pumps and HTTP threads (reads, sessions), never under the hub lock |
//! | 3 | `store::redis` `Shared::pending` + condvar `changed` | writes accepted, not yet in Redis (an outage) | `fan-out` (a commit during an outage) and HTTP threads queue; `redis-writer` (under 1) takes and forgets; `take_inbox` (under 1); `flush` waits |
//! | 3 | `outbox::Outbox` `state` | one connection's queue; that one thread at a time writes its socket | `fan-out`, its read pump, its write pump; the hub (under 2) to queue a joiner's first frames and, on `fan-out`, to put its welcome first and to ask whether a client is behind |
//! | 4 | `store::redis` `Shared::outage`, `Shared::cache`, `RedisStore::readers`, `RedisStore::files` | outage start; sessions known here; idle connections; downloaded files' bytes | any thread using the Redis store, briefly, one at a time |
//! | 4 | each `rate::RateLimits` (`Hub::rates`, `Hub::upgrades`, `PollLimits`, `UploadCounts`, `Guard::sessions`) | token buckets: messages per name; upgrades, polls, typing and uploads per session; new sessions per address | read pumps and HTTP threads, to take a token, holding no other lock |
//! | 4 | `guard::Guard` `open`, `refused` | open connections per client address; refusals to log | the accepting thread and connection threads, for one lookup |
//! | 4 | `names::HASHING` | that one password hash runs at a time | HTTP threads (login, `/password`), holding no other lock while hashing |
//!
//! Locks on the same row level are never held together. Each module's own
//! doc says what it does under its locks. The terminal client
//! (`client.rs`) runs in a process of its own; its locks are in its module
//! doc.

pub mod client;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod fanout;
pub mod files;
pub mod guard;
pub mod http;
pub mod hub;
pub mod lan;
pub mod mdns;
pub mod names;
pub mod outbox;
pub mod page;
pub mod poll;
pub mod protocol;
pub mod qr;
pub mod rate;
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
