//! What outlives a connection: sessions, known users, offline inboxes and the
//! room history, behind one small [`Store`] trait with two implementations:
//! [`MemoryStore`] (the default; gone when the process exits) and, with
//! `--redis URL`, a Redis store with the key layout of `docs/PROTOCOL.md`.
//!
//! Concurrency rule: the hub calls [`Store::append_history`] and
//! [`Store::push_inbox`] while holding its lock (so history order is the
//! order everyone saw), so those two must never block on I/O. Everything
//! else may do I/O and is only called with no lock held. (The locks of each
//! store are in the lock table of `src/lib.rs`.)

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

pub trait Store: Send + Sync {
    /// `"memory"` or `"redis"`, as `/healthz` reports it.
    fn kind(&self) -> &'static str;
    /// The last [`HISTORY_LEN`] room messages, oldest first; read once at start.
    fn load_history(&self) -> Vec<RoomMessage>;
    /// Keeps a room message. Called under the hub lock: must not block.
    fn append_history(&self, message: &RoomMessage);
    /// Keeps a private message for `message.to`, who is offline. Called under
    /// the hub lock: must not block.
    fn push_inbox(&self, message: &PrivateMessage);
    /// Takes every message waiting for `name`, oldest first. Each message is
    /// returned by exactly one call, however many connections ask at once.
    fn take_inbox(&self, name: &str) -> Vec<PrivateMessage>;
    fn create_session(&self, session: &Session);
    /// The name of a live session.
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
