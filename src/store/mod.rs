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
mod sessions;

pub use memory::{MAX_PRIVATE_BYTES, MAX_SESSIONS, MemoryStore};
pub use redis::{RedisStore, open_redis};

use crate::protocol::{FileRef, Mode, PrivateMessage, RoomMessage};
use std::sync::Arc;
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

/// What a file costs against `--files-cap` at the least (and against a
/// server's cache of downloaded files): its description and its place in
/// the list, so that empty uploads cannot pile up without bound.
pub const MIN_FILE_COST: u64 = 4096;

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
    /// The room history is emptied (a host's `clear`).
    Clear,
}

/// A claimed name (see the contract's Claims): its display form, and its
/// password's hash if it has one. Keyed in the store by its key
/// (`names::key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub name: String,
    pub password: Option<String>,
}

/// What hosts decided, read once at start (with Redis, shared by every
/// server and kept across restarts).
#[derive(Debug, Clone, Default)]
pub struct Moderation {
    pub mode: Mode,
    /// Display name -> when the mute ends (ms since the epoch).
    pub mutes: Vec<(String, u64)>,
    /// Display names of the banned.
    pub banned: Vec<String>,
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
    /// Starts a session of a claimed name (`session.name` is its display form).
    fn create_session(&self, session: &Session);
    /// The name of a live session. A session that ended on any server of
    /// the chat is refused at once (while the backend is reachable). The
    /// session now counts as used: when a store is full, sessions never
    /// used after their login go first (`sessions.rs`).
    fn session_name(&self, id: &str) -> Option<String>;
    /// Ends a session. When it was the last of a name without a password,
    /// the claim ends too (see [`Store::end_claim`]).
    fn end_session(&self, id: &str);

    /// The claim on the name with this key.
    fn claim(&self, key: &str) -> Option<Claim>;
    /// Claims the name `key` for `claim` if nobody holds it: `None` when
    /// claimed now, else the claim already there (atomic: of two logins
    /// at once, one wins).
    fn claim_name(&self, key: &str, claim: &Claim) -> Option<Claim>;
    /// Sets the password hash of a claimed name.
    fn set_password(&self, key: &str, hash: &str);
    /// The live sessions of a claimed name.
    fn sessions_of(&self, key: &str) -> Vec<String>;
    /// Ends a claim: its sessions end, and its password, inbox and private
    /// conversation are gone. Returns the sessions that ended.
    fn end_claim(&self, key: &str) -> Vec<String>;
    /// Wrong passwords for `key` in the current window (`names`), and one more.
    fn password_failures(&self, key: &str) -> u64;
    fn note_password_failure(&self, key: &str);

    /// What hosts decided (read once at start).
    fn moderation(&self) -> Moderation;
    fn save_mode(&self, mode: &Mode);
    /// Mutes `name` until then; `None` unmutes.
    fn save_mute(&self, name: &str, until: Option<u64>);
    /// Bans (or unbans) the name with this key.
    fn set_banned(&self, key: &str, name: &str, banned: bool);
    /// The display form of a banned name with this key.
    fn banned(&self, key: &str) -> Option<String>;
    /// Keeps an uploaded file; past `cap` bytes of files in all, the
    /// oldest go.
    fn put_file(&self, file: &FileRef, bytes: Arc<[u8]>, cap: u64);
    /// A file's description, while it is kept.
    fn file_meta(&self, id: &str) -> Option<FileRef>;
    /// A file's bytes, shared: a download never copies them.
    fn file(&self, id: &str) -> Option<Arc<[u8]>>;

    /// The host link's key (with Redis, every server of the chat shares
    /// it): `proposed` when `given` (by flag or environment: it replaces the
    /// kept one), else the kept one, else `proposed` (kept from now on).
    fn host_key(&self, proposed: &str, given: bool) -> String;
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
