//! What outlives a connection: sessions, known users, offline inboxes and the
//! room history, behind one small [`Store`] trait with two implementations:
//! [`MemoryStore`] (the default; gone when the process exits) and, with
//! `--redis URL`, a Redis store with the key layout of `docs/PROTOCOL.md`.
//!
//! Concurrency rule: no method is called under the hub lock; any may do
//! I/O. Messages are kept by [`Store::commit`], which only the fan-out
//! thread calls, so the store sees them in the hub's order. (The locks of
//! each store are in the lock table of `src/lib.rs`.)

mod memory;
mod redis;

pub use memory::MemoryStore;
pub use redis::{RedisStore, open_redis};

use crate::protocol::{PrivateMessage, RoomMessage};
use std::time::Duration;

/// How long a session (and both cookies) last: 30 days.
pub const SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// A logged-in user: the session id (the credential) and the name it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub name: String,
}

/// Room messages kept and replayed on join.
pub const HISTORY_LEN: usize = 100;
/// Undelivered private messages kept per name (the oldest go first).
pub const INBOX_LEN: usize = 100;
/// Private messages kept per name, sent and received (its conversations).
pub const CONVERSATION_LEN: usize = 100;

/// A change the hub accepted, which the store keeps *before* anyone is
/// sent it (the contract: a sender's copy means the message is stored).
#[derive(Debug, Clone)]
pub enum Write {
    /// A room message: it gets its seq, and goes into the history.
    Room(RoomMessage),
    /// A private message: it gets its seq, and goes into the conversations
    /// of both names, and into `to`'s inbox when `inboxed` (`to` was offline).
    Private {
        message: PrivateMessage,
        inboxed: bool,
    },
    /// A private message another server sent (it has its seq) for a
    /// recipient we know has just left: into the inbox, unless it is there.
    Inbox(PrivateMessage),
    /// A room message leaves the history.
    Delete { id: String },
}

pub trait Store: Send + Sync {
    /// `"memory"` or `"redis"`, as `/healthz` reports it.
    fn kind(&self) -> &'static str;
    /// The last [`HISTORY_LEN`] room messages, oldest first, and the highest
    /// seq of a room message no longer kept (0: none); read once at start.
    fn load_history(&self) -> (Vec<RoomMessage>, u64);
    /// The highest seq given so far; read once at start.
    fn last_seq(&self) -> u64;
    /// Keeps `writes`, in order, giving each new message its seq (strictly
    /// increasing across every server of the chat); returns once they are
    /// stored: with Redis, once Redis acknowledged them, in one round trip
    /// for the whole batch (group commit). While the backend is unreachable
    /// it keeps them pending instead and returns at once (degraded).
    ///
    /// Called only by the fan-out thread, with no lock held: may do I/O.
    fn commit(&self, writes: &mut [Write]);
    /// The last [`CONVERSATION_LEN`] private messages `name` sent or
    /// received, oldest first.
    fn conversation(&self, name: &str) -> Vec<PrivateMessage>;
    /// Takes every message waiting for `name`, oldest first. Each message is
    /// returned by exactly one call, however many connections ask at once.
    fn take_inbox(&self, name: &str) -> Vec<PrivateMessage>;
    fn create_session(&self, session: &Session);
    /// The name of a live session. A session that ended on any server of
    /// the chat is refused at once (while the backend is reachable).
    fn session_name(&self, id: &str) -> Option<String>;
    fn end_session(&self, id: &str);
    /// Remembers that `name` has logged in (private messages to it are then
    /// kept while it is offline, instead of `unknown_user`).
    fn add_user(&self, name: &str);
    fn is_known_user(&self, name: &str) -> bool;
    /// False while the store cannot reach its backend (`/healthz` says
    /// `degraded`); the chat goes on meanwhile.
    fn healthy(&self) -> bool {
        true
    }
    /// Waits until accepted writes are stored, at most `timeout` (at
    /// shutdown). Returns how many are still waiting.
    fn flush(&self, _timeout: std::time::Duration) -> usize {
        0
    }
}
