//! The in-memory store: plain collections behind one mutex.
//!
//! The room history needs no copy here: the hub already keeps the last 100
//! room messages in memory for replay, and a memory store has nothing to
//! survive a restart with. So a room message only gets its seq here, and
//! `load_history` starts the hub empty.
//!
//! Concurrency rule: `inner` is held only for a map operation: no I/O, no
//! other lock taken inside.

use super::{CONVERSATION_LEN, INBOX_LEN, Store, Write};
use super::{Claim, Moderation, SESSION_TTL, Session};
use crate::names::{self, FAILURE_WINDOW_SECS};
use crate::protocol::{FileRef, Mode, PrivateMessage, RoomMessage};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use std::time::Instant;

/// Most sessions kept at once (about 150 bytes each): a flood of logins
/// cannot grow memory without bound. Past it, expired sessions go first,
/// then the one closest to expiring.
pub const MAX_SESSIONS: usize = 100_000;

pub struct MemoryStore {
    /// Held only for a map operation: no I/O, no other lock taken inside.
    inner: Mutex<Inner>,
    session_cap: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            inner: Mutex::default(),
            session_cap: MAX_SESSIONS,
        }
    }
}

#[derive(Default)]
struct Inner {
    /// The last seq given.
    seq: u64,
    inboxes: HashMap<String, VecDeque<PrivateMessage>>,
    /// name -> its last private messages, sent and received.
    conversations: HashMap<String, VecDeque<PrivateMessage>>,
    /// session id -> (name, when it expires)
    sessions: HashMap<String, (String, Instant)>,
    /// name key -> its claim
    claims: HashMap<String, Claim>,
    /// name key -> wrong passwords in the window that started then
    failures: HashMap<String, (u64, Instant)>,
    mode: Mode,
    /// display name -> end of its mute (ms since the epoch)
    mutes: HashMap<String, u64>,
    /// name key -> display name
    banned: HashMap<String, String>,
    /// Uploaded files, oldest first, and their bytes in all.
    files: VecDeque<(FileRef, Arc<[u8]>)>,
    file_bytes: u64,
}

impl Inner {
    fn live_sessions(&self, key: &str) -> Vec<String> {
        let now = Instant::now();
        self.sessions
            .iter()
            .filter(|(_, (name, expires))| *expires > now && names::key(name) == key)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Ends a claim: its sessions, inbox and conversation go with it.
    fn end_claim(&mut self, key: &str) -> Vec<String> {
        let Some(claim) = self.claims.remove(key) else {
            return Vec::new();
        };
        self.inboxes.remove(&claim.name);
        self.conversations.remove(&claim.name);
        let ended = self.live_sessions(key);
        self.sessions.retain(|_, (name, _)| names::key(name) != key);
        ended
    }
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
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
                    keep_last(
                        &mut inner.conversations,
                        &message.from,
                        message,
                        CONVERSATION_LEN,
                    );
                    if message.to != message.from {
                        keep_last(
                            &mut inner.conversations,
                            &message.to,
                            message,
                            CONVERSATION_LEN,
                        );
                    }
                    if *inboxed {
                        keep_last(&mut inner.inboxes, &message.to, message, INBOX_LEN);
                    }
                }
                Write::Inbox(message) => {
                    let inbox = inner.inboxes.get(&message.to);
                    if !inbox.is_some_and(|inbox| inbox.iter().any(|m| m.id == message.id)) {
                        keep_last(&mut inner.inboxes, &message.to, message, INBOX_LEN);
                    }
                }
                Write::Delete { .. } | Write::Clear => {} // the hub's history is the only copy
            }
        }
    }

    fn conversation(&self, name: &str) -> Vec<PrivateMessage> {
        self.lock()
            .conversations
            .get(name)
            .map(|messages| messages.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn take_inbox(&self, name: &str) -> Vec<PrivateMessage> {
        self.lock()
            .inboxes
            .remove(name)
            .map(Vec::from)
            .unwrap_or_default()
    }

    fn create_session(&self, session: &Session) {
        let now = Instant::now();
        let mut inner = self.lock();
        let known = inner.sessions.contains_key(&session.id);
        if !known && inner.sessions.len() >= self.session_cap {
            inner.sessions.retain(|_, (_, expires)| *expires > now);
        }
        if !known && inner.sessions.len() >= self.session_cap {
            let soonest = inner
                .sessions
                .iter()
                .min_by_key(|(_, (_, expires))| *expires);
            if let Some(id) = soonest.map(|(id, _)| id.clone()) {
                log::warn!(
                    "{} sessions: ending the oldest to make room",
                    self.session_cap
                );
                inner.sessions.remove(&id);
            }
        }
        inner.sessions.insert(
            session.id.clone(),
            (session.name.clone(), now + SESSION_TTL),
        );
    }

    fn session_name(&self, id: &str) -> Option<String> {
        let inner = self.lock();
        let (name, expires) = inner.sessions.get(id)?;
        (*expires > Instant::now()).then(|| name.clone())
    }

    fn end_session(&self, id: &str) {
        let mut inner = self.lock();
        let Some((name, _)) = inner.sessions.remove(id) else {
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
        inner.file_bytes += bytes.len() as u64;
        inner.files.push_back((file.clone(), bytes));
        while inner.file_bytes > cap {
            let Some((_, oldest)) = inner.files.pop_front() else {
                break;
            };
            inner.file_bytes -= oldest.len() as u64;
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

/// Appends to `name`'s list in `lists`, keeping its last `keep`.
fn keep_last(
    lists: &mut HashMap<String, VecDeque<PrivateMessage>>,
    name: &str,
    message: &PrivateMessage,
    keep: usize,
) {
    let list = lists.entry(name.to_string()).or_default();
    if list.len() == keep {
        list.pop_front();
    }
    list.push_back(message.clone());
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
        let store = MemoryStore {
            session_cap: 3,
            ..MemoryStore::default()
        };
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
