//! The in-memory store: plain collections behind one mutex.
//!
//! The room history needs no copy here: the hub already keeps the last 100
//! room messages in memory for replay, and a memory store has nothing to
//! survive a restart with. So `append_history` does nothing and
//! `load_history` starts the hub empty.

use super::{INBOX_LEN, Store};
use super::{SESSION_TTL, Session};
use crate::protocol::{PrivateMessage, RoomMessage};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
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
    inboxes: HashMap<String, VecDeque<PrivateMessage>>,
    /// session id -> (name, when it expires)
    sessions: HashMap<String, (String, Instant)>,
    users: HashSet<String>,
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

    fn load_history(&self) -> Vec<RoomMessage> {
        Vec::new()
    }

    fn append_history(&self, _message: &RoomMessage) {}

    fn push_inbox(&self, message: &PrivateMessage) {
        let mut inner = self.lock();
        let inbox = inner.inboxes.entry(message.to.clone()).or_default();
        if inbox.len() == INBOX_LEN {
            inbox.pop_front();
        }
        inbox.push_back(message.clone());
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
        self.lock().sessions.remove(id);
    }

    fn add_user(&self, name: &str) {
        self.lock().users.insert(name.to_string());
    }

    fn is_known_user(&self, name: &str) -> bool {
        self.lock().users.contains(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private(n: usize) -> PrivateMessage {
        PrivateMessage {
            id: n.to_string(),
            from: "a".into(),
            to: "b".into(),
            text: n.to_string(),
            ts: 0,
        }
    }

    #[test]
    fn inbox_keeps_the_last_100_once() {
        let store = MemoryStore::new();
        for n in 0..150 {
            store.push_inbox(&private(n));
        }
        let taken = store.take_inbox("b");
        assert_eq!(taken.len(), INBOX_LEN);
        assert_eq!((taken[0].id.as_str(), taken[99].id.as_str()), ("50", "149"));
        assert!(store.take_inbox("b").is_empty());
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
