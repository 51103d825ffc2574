//! The in-memory store: plain collections behind one mutex.
//!
//! The room history needs no copy here: the hub already keeps the last 100
//! room messages in memory for replay, and a memory store has nothing to
//! survive a restart with. So a room message only gets its seq here, and
//! `load_history` starts the hub empty.
//!
//! **Bounds.** Everything a client can make grows within a bound, and what
//! goes first is what strangers made: sessions ([`MAX_SESSIONS`], those
//! never used first: `sessions.rs`), claims (a claim without a password
//! ends with its last session, evicted or not), private messages
//! ([`MAX_PRIVATE_BYTES`], the lists of names nobody connected with
//! first), files (`--files-cap`, each counted as at least
//! [`MIN_FILE_COST`]).
//!
//! Concurrency rule: `inner` is held only for a map operation: no I/O, no
//! other lock taken inside.

use super::sessions::Sessions;
use super::{CONVERSATION_LEN, INBOX_LEN, MIN_FILE_COST, Store, Write};
use super::{Claim, Moderation, SESSION_TTL, Session};
use crate::names::{self, FAILURE_WINDOW_SECS};
use crate::protocol::{FileRef, Mode, PrivateMessage, RoomMessage};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use std::time::Instant;

/// Most sessions kept at once: a flood of logins cannot grow memory
/// without bound. Each costs under 1 KiB with the claim of its name and
/// its place in the indexes (`make soak`: 115,000 flood logins left about
/// 80 MiB). Past it, the oldest session never used after its login goes
/// first (see `sessions.rs`): a flood only pushes out itself.
pub const MAX_SESSIONS: usize = 100_000;

/// Bytes of private messages kept in all, inboxes and conversations
/// together. A class's real ones take a few MiB (300 people, 100 messages
/// of 100 characters each, in two lists: 6 MiB); messages of 4,000
/// characters to throw-away names took 16.6 KB each, without end. Past it,
/// whole lists go until a quarter is free: first those of names nobody
/// connected with (claimed by a login whose cookie never came back), the
/// largest first; then the largest.
pub const MAX_PRIVATE_BYTES: usize = 16 * 1024 * 1024;

/// Evictions are logged as one summary line at most this often.
const EVICTION_LOG_EVERY: Duration = Duration::from_secs(10);

pub struct MemoryStore {
    /// Held only for a map operation: no I/O, no other lock taken inside.
    inner: Mutex<Inner>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::with_limits(MAX_SESSIONS, MAX_PRIVATE_BYTES)
    }
}

struct Inner {
    /// The last seq given.
    seq: u64,
    inboxes: HashMap<String, VecDeque<PrivateMessage>>,
    /// name -> its last private messages, sent and received.
    conversations: HashMap<String, VecDeque<PrivateMessage>>,
    /// What `inboxes` and `conversations` hold, by [`message_bytes`].
    private_bytes: usize,
    private_cap: usize,
    sessions: Sessions,
    /// Sessions ended to make room, and private lists dropped, since the
    /// last log line, and when it was.
    evicted: (u64, u64, Option<Instant>),
    /// name key -> its claim
    claims: HashMap<String, Claim>,
    /// name key -> wrong passwords in the window that started then
    failures: HashMap<String, (u64, Instant)>,
    mode: Mode,
    /// display name -> end of its mute (ms since the epoch)
    mutes: HashMap<String, u64>,
    /// name key -> display name
    banned: HashMap<String, String>,
    /// Uploaded files, oldest first, and their cost in all (bytes, at
    /// least [`MIN_FILE_COST`] each).
    files: VecDeque<(FileRef, Arc<[u8]>)>,
    file_bytes: u64,
}

impl Inner {
    fn live_sessions(&self, key: &str) -> Vec<String> {
        self.sessions.live_of(key)
    }

    /// Ends a claim: its sessions, inbox and conversation go with it.
    fn end_claim(&mut self, key: &str) -> Vec<String> {
        let Some(claim) = self.claims.remove(key) else {
            return Vec::new();
        };
        self.drop_private(&claim.name);
        let ended = self.live_sessions(key);
        self.sessions.remove_of(key);
        ended
    }

    /// Drops `name`'s inbox and conversation.
    fn drop_private(&mut self, name: &str) {
        let lists = [self.inboxes.remove(name), self.conversations.remove(name)];
        let freed: usize = lists.iter().flatten().flatten().map(message_bytes).sum();
        self.private_bytes -= freed;
    }

    /// Appends to `name`'s inbox or conversation, keeping its last `keep`.
    fn keep_last(&mut self, inbox: bool, name: &str, message: &PrivateMessage, keep: usize) {
        let lists = match inbox {
            true => &mut self.inboxes,
            false => &mut self.conversations,
        };
        let list = lists.entry(name.to_string()).or_default();
        if list.len() == keep
            && let Some(oldest) = list.pop_front()
        {
            self.private_bytes -= message_bytes(&oldest);
        }
        list.push_back(message.clone());
        self.private_bytes += message_bytes(message);
    }

    /// Past [`MAX_PRIVATE_BYTES`]: drops whole lists, by the rule there,
    /// until a quarter of it is free.
    fn shed_private(&mut self) {
        if self.private_bytes <= self.private_cap {
            return;
        }
        let came_back = self.sessions.names_that_came_back();
        let mut sizes: HashMap<&str, usize> = HashMap::new();
        for (name, list) in self.inboxes.iter().chain(&self.conversations) {
            *sizes.entry(name).or_default() += list.iter().map(message_bytes).sum::<usize>();
        }
        let mut order: Vec<(bool, usize, String)> = sizes
            .into_iter()
            .map(|(name, bytes)| (came_back.contains(name), bytes, name.to_string()))
            .collect();
        order.sort_by_key(|(back, bytes, _)| (*back, std::cmp::Reverse(*bytes)));
        for (_, _, name) in order {
            if self.private_bytes <= self.private_cap / 4 * 3 {
                break;
            }
            self.drop_private(&name);
            self.evicted.1 += 1;
        }
        self.log_evictions();
    }

    /// Sessions that ended to make room: their claims end with the last of
    /// them, unless protected by a password.
    fn ended_to_make_room(&mut self, ended: Vec<(String, String)>) {
        for (_, name) in ended {
            self.evicted.0 += 1;
            let key = names::key(&name);
            let unprotected = self.claims.get(&key).is_some_and(|c| c.password.is_none());
            if unprotected && self.live_sessions(&key).is_empty() {
                self.end_claim(&key);
            }
        }
        self.log_evictions();
    }

    fn log_evictions(&mut self) {
        let (sessions, lists, last) = self.evicted;
        if (sessions, lists) == (0, 0) || last.is_some_and(|t| t.elapsed() < EVICTION_LOG_EVERY) {
            return;
        }
        log::warn!(
            "memory store full: {sessions} sessions ended ({} kept at most; those never used first), \
             private messages of {lists} names dropped ({} MiB kept at most)",
            self.sessions.cap(),
            self.private_cap / (1024 * 1024)
        );
        self.evicted = (0, 0, Some(Instant::now()));
    }
}

/// About what a kept private message costs: its strings and its fields.
fn message_bytes(message: &PrivateMessage) -> usize {
    let file = message.file.as_ref().map_or(0, |f| {
        std::mem::size_of::<FileRef>() + f.id.len() + f.name.len() + f.kind.len() + f.url.len()
    });
    std::mem::size_of::<PrivateMessage>()
        + message.id.len()
        + message.from.len()
        + message.to.len()
        + message.text.len()
        + file
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// A store with other bounds than [`MAX_SESSIONS`] and
    /// [`MAX_PRIVATE_BYTES`] (for tests).
    pub fn with_limits(sessions: usize, private_bytes: usize) -> MemoryStore {
        MemoryStore {
            inner: Mutex::new(Inner {
                seq: 0,
                inboxes: HashMap::new(),
                conversations: HashMap::new(),
                private_bytes: 0,
                private_cap: private_bytes,
                sessions: Sessions::new(sessions),
                evicted: (0, 0, None),
                claims: HashMap::new(),
                failures: HashMap::new(),
                mode: Mode::default(),
                mutes: HashMap::new(),
                banned: HashMap::new(),
                files: VecDeque::new(),
                file_bytes: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        crate::lock(&self.inner)
    }
}

impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn load_history(&self) -> (Vec<RoomMessage>, u64) {
        (Vec::new(), 0)
    }

    fn last_seq(&self) -> u64 {
        self.lock().seq
    }

    fn commit(&self, writes: &mut [Write]) {
        let mut inner = self.lock();
        for write in writes {
            match write {
                Write::Room(message) => {
                    inner.seq += 1;
                    message.seq = inner.seq;
                }
                Write::Private { message, inboxed } => {
                    inner.seq += 1;
                    message.seq = inner.seq;
                    inner.keep_last(false, &message.from, message, CONVERSATION_LEN);
                    if message.to != message.from {
                        inner.keep_last(false, &message.to, message, CONVERSATION_LEN);
                    }
                    if *inboxed {
                        inner.keep_last(true, &message.to, message, INBOX_LEN);
                    }
                }
                Write::Inbox(message) => {
                    let inbox = inner.inboxes.get(&message.to);
                    if !inbox.is_some_and(|inbox| inbox.iter().any(|m| m.id == message.id)) {
                        inner.keep_last(true, &message.to, message, INBOX_LEN);
                    }
                }
                Write::Delete { .. } | Write::Clear => {} // the hub's history is the only copy
            }
        }
        inner.shed_private();
    }

    fn conversation(&self, name: &str) -> Vec<PrivateMessage> {
        self.lock()
            .conversations
            .get(name)
            .map(|messages| messages.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn take_inbox(&self, name: &str) -> Vec<PrivateMessage> {
        let mut inner = self.lock();
        let taken = inner
            .inboxes
            .remove(name)
            .map(Vec::from)
            .unwrap_or_default();
        inner.private_bytes -= taken.iter().map(message_bytes).sum::<usize>();
        taken
    }

    fn create_session(&self, session: &Session) {
        let expires = Instant::now() + SESSION_TTL;
        let mut inner = self.lock();
        let ended = inner
            .sessions
            .insert(&session.id, &session.name, expires, false);
        inner.ended_to_make_room(ended);
    }

    /// Also marks the session as used (see `sessions.rs`: used ones are
    /// the last to go when the store is full).
    fn session_name(&self, id: &str) -> Option<String> {
        self.lock().sessions.get(id)
    }

    fn end_session(&self, id: &str) {
        let mut inner = self.lock();
        let Some(name) = inner.sessions.remove(id) else {
            return;
        };
        let key = names::key(&name);
        let unprotected = inner.claims.get(&key).is_some_and(|c| c.password.is_none());
        if unprotected && inner.live_sessions(&key).is_empty() {
            inner.end_claim(&key);
        }
    }

    fn claim(&self, key: &str) -> Option<Claim> {
        self.lock().claims.get(key).cloned()
    }

    fn claim_name(&self, key: &str, claim: &Claim) -> Option<Claim> {
        let mut inner = self.lock();
        if let Some(existing) = inner.claims.get(key) {
            return Some(existing.clone());
        }
        inner.claims.insert(key.to_string(), claim.clone());
        None
    }

    fn set_password(&self, key: &str, hash: &str) {
        if let Some(claim) = self.lock().claims.get_mut(key) {
            claim.password = Some(hash.to_string());
        }
    }

    fn sessions_of(&self, key: &str) -> Vec<String> {
        self.lock().live_sessions(key)
    }

    fn end_claim(&self, key: &str) -> Vec<String> {
        self.lock().end_claim(key)
    }

    fn password_failures(&self, key: &str) -> u64 {
        let window = Duration::from_secs(FAILURE_WINDOW_SECS);
        match self.lock().failures.get(key) {
            Some((count, since)) if since.elapsed() < window => *count,
            _ => 0,
        }
    }

    fn note_password_failure(&self, key: &str) {
        let window = Duration::from_secs(FAILURE_WINDOW_SECS);
        let mut inner = self.lock();
        inner
            .failures
            .retain(|_, (_, since)| since.elapsed() < window);
        let entry = inner
            .failures
            .entry(key.to_string())
            .or_insert((0, Instant::now()));
        entry.0 += 1;
    }

    fn moderation(&self) -> Moderation {
        let inner = self.lock();
        Moderation {
            mode: inner.mode,
            mutes: inner.mutes.iter().map(|(n, u)| (n.clone(), *u)).collect(),
            banned: inner.banned.values().cloned().collect(),
        }
    }

    fn save_mode(&self, mode: &Mode) {
        self.lock().mode = *mode;
    }

    fn save_mute(&self, name: &str, until: Option<u64>) {
        let mut inner = self.lock();
        match until {
            Some(until) => inner.mutes.insert(name.to_string(), until),
            None => inner.mutes.remove(name),
        };
    }

    fn set_banned(&self, key: &str, name: &str, banned: bool) {
        let mut inner = self.lock();
        if banned {
            inner.banned.insert(key.to_string(), name.to_string());
        } else {
            inner.banned.remove(key);
        }
    }

    fn banned(&self, key: &str) -> Option<String> {
        self.lock().banned.get(key).cloned()
    }

    fn put_file(&self, file: &FileRef, bytes: Arc<[u8]>, cap: u64) {
        let mut inner = self.lock();
        inner.file_bytes += file_cost(&bytes);
        inner.files.push_back((file.clone(), bytes));
        while inner.file_bytes > cap {
            let Some((_, oldest)) = inner.files.pop_front() else {
                break;
            };
            inner.file_bytes -= file_cost(&oldest);
        }
    }

    fn file_meta(&self, id: &str) -> Option<FileRef> {
        let inner = self.lock();
        inner
            .files
            .iter()
            .find(|(f, _)| f.id == id)
            .map(|(f, _)| f.clone())
    }

    fn file(&self, id: &str) -> Option<Arc<[u8]>> {
        let inner = self.lock();
        inner
            .files
            .iter()
            .find(|(f, _)| f.id == id)
            .map(|(_, b)| b.clone())
    }

    fn host_key(&self, proposed: &str, _given: bool) -> String {
        proposed.to_string()
    }
}

/// What a file counts against the files cap.
fn file_cost(bytes: &[u8]) -> u64 {
    (bytes.len() as u64).max(MIN_FILE_COST)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private(n: usize) -> PrivateMessage {
        PrivateMessage {
            id: n.to_string(),
            seq: 0,
            from: "a".into(),
            to: "b".into(),
            text: n.to_string(),
            ts: 0,
            file: None,
        }
    }

    #[test]
    fn inbox_keeps_the_last_100_once() {
        let store = MemoryStore::new();
        let mut writes: Vec<Write> = (0..150)
            .map(|n| Write::Private {
                message: private(n),
                inboxed: true,
            })
            .collect();
        store.commit(&mut writes);
        let taken = store.take_inbox("b");
        assert_eq!(taken.len(), INBOX_LEN);
        assert_eq!((taken[0].id.as_str(), taken[99].id.as_str()), ("50", "149"));
        assert_eq!((taken[0].seq, taken[99].seq), (51, 150));
        assert!(store.take_inbox("b").is_empty());
        assert_eq!(store.conversation("a").len(), CONVERSATION_LEN);
        assert_eq!(
            store.conversation("b"),
            taken,
            "received, kept in b's conversation"
        );
    }

    #[test]
    fn sessions_are_capped_oldest_first() {
        let store = MemoryStore::with_limits(3, MAX_PRIVATE_BYTES);
        for n in 0..5 {
            store.create_session(&Session {
                id: n.to_string(),
                name: "n".into(),
            });
        }
        let live: Vec<bool> = (0..5)
            .map(|n| store.session_name(&n.to_string()).is_some())
            .collect();
        assert_eq!(live, [false, false, true, true, true]);
        // Logging in again with a live session does not evict anyone.
        store.create_session(&Session {
            id: "2".into(),
            name: "n".into(),
        });
        assert!(store.session_name("3").is_some());
    }

    fn login(store: &MemoryStore, id: &str, name: &str) {
        let claim = Claim {
            name: name.into(),
            password: None,
        };
        assert_eq!(store.claim_name(&names::key(name), &claim), None);
        store.create_session(&Session {
            id: id.into(),
            name: name.into(),
        });
    }

    #[test]
    fn a_login_flood_spares_those_who_connected_and_their_claims() {
        let store = MemoryStore::with_limits(10, MAX_PRIVATE_BYTES);
        login(&store, "real", "teacher");
        assert!(store.session_name("real").is_some(), "connected");
        for n in 0..1_000 {
            login(&store, &format!("s{n}"), &format!("flood{n}"));
        }
        assert_eq!(store.session_name("real").as_deref(), Some("teacher"));
        assert!(store.claim("teacher").is_some());
        let inner = store.lock();
        assert_eq!(inner.sessions.len(), 10);
        assert_eq!(
            inner.claims.len(),
            10,
            "the claims of ended sessions end with them"
        );
    }

    fn message(from: &str, to: &str, text: &str) -> Write {
        Write::Private {
            message: PrivateMessage {
                id: uuid::Uuid::new_v4().to_string(),
                from: from.into(),
                to: to.into(),
                text: text.into(),
                ..private(0)
            },
            inboxed: true,
        }
    }

    #[test]
    fn private_messages_are_capped_sparing_those_who_connected() {
        let cap = 1_000_000;
        let store = MemoryStore::with_limits(1_000, cap);
        for name in ["teacher", "pupil", "spammer"] {
            login(&store, name, name);
            store.session_name(name); // connected
        }
        store.commit(&mut [message("pupil", "teacher", "a question")]);
        let long = "é".repeat(4_000);
        for n in 0..1_000 {
            let name = format!("throwaway{}", n % 300);
            if n < 300 {
                login(&store, &format!("t{n}"), &name);
            }
            store.commit(&mut [message("spammer", &name, &long)]);
            assert!(store.lock().private_bytes <= cap);
        }
        assert_eq!(store.take_inbox("teacher")[0].text, "a question");
        assert_eq!(store.conversation("pupil").len(), 1);
        let inner = store.lock();
        let kept: usize = inner
            .inboxes
            .values()
            .chain(inner.conversations.values())
            .flatten()
            .map(message_bytes)
            .sum();
        assert_eq!(kept, inner.private_bytes, "the count is right");
    }

    #[test]
    fn empty_files_count_toward_the_cap() {
        let store = MemoryStore::new();
        for n in 0..100 {
            let file = FileRef {
                id: n.to_string(),
                name: "empty".into(),
                size: 0,
                kind: "text/plain".into(),
                url: String::new(),
            };
            store.put_file(&file, Arc::from(Vec::new()), 10 * MIN_FILE_COST);
        }
        assert_eq!(store.lock().files.len(), 10);
    }

    #[test]
    fn sessions_live_until_ended() {
        let store = MemoryStore::new();
        let session = Session {
            id: "s".into(),
            name: "n".into(),
        };
        store.create_session(&session);
        assert_eq!(store.session_name("s").as_deref(), Some("n"));
        store.end_session("s");
        assert_eq!(store.session_name("s"), None);
    }
}
