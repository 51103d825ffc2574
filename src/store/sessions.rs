//! A bounded table of sessions (id -> name and expiry) that a flood of
//! logins cannot empty of real people: the memory store keeps all its
//! sessions in one, the Redis store its outage cache.
//!
//! **Who is spared.** A session *came back* once its cookie was presented
//! after the login that made it ([`Sessions::get`]: the page, a WebSocket,
//! a poll); a flood of logins that throws the cookies away never does.
//! When the table is full, a new session makes room by ending:
//! 1. the oldest session that never came back;
//! 2. failing that (every one came back), the expired ones;
//! 3. failing that, the one closest to expiring.
//!
//! So anonymous logins push out each other, never a person who connected.
//! Step 1 costs O(1) (a queue in login order); steps 2 and 3 scan the table,
//! which happens only once every session in it has been used. The sessions
//! of a name are found through an index by its key (`names::key`), not by
//! a scan: a flood at the cap costs each login O(1), not O(sessions).
//!
//! Not locked on its own: each store keeps it behind its own mutex.

use crate::names;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

pub struct Sessions {
    /// Most sessions kept (at least 1).
    cap: usize,
    entries: HashMap<String, Entry>,
    /// Ids of the sessions that had not come back when added, oldest first.
    /// Some have come back or ended since (skipped when making room); it
    /// is rebuilt when it holds twice `cap`, so it stays within that.
    fresh: VecDeque<String>,
    /// Name key -> the ids of its sessions.
    by_key: HashMap<String, HashSet<String>>,
}

struct Entry {
    name: String,
    /// `names::key(name)`.
    key: String,
    expires: Instant,
    came_back: bool,
}

impl Sessions {
    pub fn new(cap: usize) -> Sessions {
        Sessions {
            cap: cap.max(1),
            entries: HashMap::new(),
            fresh: VecDeque::new(),
            by_key: HashMap::new(),
        }
    }

    /// Adds a session (or renews one already here: its expiry, and whether
    /// it came back). Returns the sessions ended to make room: (id, name).
    pub fn insert(
        &mut self,
        id: &str,
        name: &str,
        expires: Instant,
        came_back: bool,
    ) -> Vec<(String, String)> {
        if let Some(entry) = self.entries.get_mut(id)
            && entry.name == name
        {
            entry.expires = expires;
            entry.came_back |= came_back;
            return Vec::new();
        }
        let came_back = self.remove_entry(id).is_some_and(|e| e.came_back) || came_back;
        let mut ended = Vec::new();
        while self.entries.len() >= self.cap {
            ended.extend(self.make_room());
        }
        let key = names::key(name);
        let ids = self.by_key.entry(key.clone()).or_default();
        ids.insert(id.to_string());
        let entry = Entry {
            name: name.to_string(),
            key,
            expires,
            came_back,
        };
        self.entries.insert(id.to_string(), entry);
        if !came_back {
            self.fresh.push_back(id.to_string());
            if self.fresh.len() > 2 * self.cap {
                let entries = &self.entries;
                self.fresh
                    .retain(|id| entries.get(id).is_some_and(|e| !e.came_back));
            }
        }
        ended
    }

    /// Ends one session or more, by the rule of the module doc.
    fn make_room(&mut self) -> Vec<(String, String)> {
        while let Some(id) = self.fresh.pop_front() {
            if self.entries.get(&id).is_some_and(|e| !e.came_back) {
                return self
                    .remove(&id)
                    .map(|name| (id, name))
                    .into_iter()
                    .collect();
            }
        }
        let now = Instant::now();
        let expired: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.expires <= now)
            .map(|(id, _)| id.clone())
            .collect();
        let victims = if expired.is_empty() {
            let soonest = self.entries.iter().min_by_key(|(_, e)| e.expires);
            soonest.map(|(id, _)| id.clone()).into_iter().collect()
        } else {
            expired
        };
        victims
            .into_iter()
            .filter_map(|id| self.remove(&id).map(|name| (id, name)))
            .collect()
    }

    /// The name of a live session, which now counts as having come back.
    pub fn get(&mut self, id: &str) -> Option<String> {
        let entry = self.entries.get_mut(id)?;
        if entry.expires <= Instant::now() {
            return None;
        }
        entry.came_back = true;
        Some(entry.name.clone())
    }

    /// Ends a session; its name, if it was here.
    pub fn remove(&mut self, id: &str) -> Option<String> {
        self.remove_entry(id).map(|entry| entry.name)
    }

    fn remove_entry(&mut self, id: &str) -> Option<Entry> {
        let entry = self.entries.remove(id)?;
        if let Some(ids) = self.by_key.get_mut(&entry.key) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_key.remove(&entry.key);
            }
        }
        Some(entry)
    }

    /// Ends every session of the name with this key.
    pub fn remove_of(&mut self, key: &str) {
        for id in self.by_key.remove(key).unwrap_or_default() {
            self.entries.remove(&id);
        }
    }

    /// The ids of the live sessions of the name with this key.
    pub fn live_of(&self, key: &str) -> Vec<String> {
        let now = Instant::now();
        let ids = self.by_key.get(key).into_iter().flatten();
        ids.filter(|id| self.entries.get(*id).is_some_and(|e| e.expires > now))
            .cloned()
            .collect()
    }

    /// The names with a session that came back (people who connected).
    pub fn names_that_came_back(&self) -> HashSet<&str> {
        self.entries
            .values()
            .filter(|e| e.came_back)
            .map(|e| e.name.as_str())
            .collect()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn cap(&self) -> usize {
        self.cap
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn later(secs: u64) -> Instant {
        Instant::now() + Duration::from_secs(secs)
    }

    #[test]
    fn a_flood_of_fresh_sessions_spares_those_that_came_back() {
        let mut sessions = Sessions::new(3);
        sessions.insert("real", "teacher", later(10), false);
        assert_eq!(sessions.get("real").as_deref(), Some("teacher"));
        for n in 0..1_000 {
            let id = format!("flood{n}");
            let ended = sessions.insert(&id, &id, later(100), false);
            assert!(ended.iter().all(|(id, _)| id != "real"), "{ended:?}");
        }
        assert_eq!(sessions.len(), 3);
        assert_eq!(sessions.get("real").as_deref(), Some("teacher"));
        assert!(sessions.get("flood999").is_some() && sessions.get("flood998").is_some());
        assert!(sessions.fresh.len() <= 2 * 3, "the queue stays bounded");
    }

    #[test]
    fn when_all_came_back_the_expired_then_the_soonest_go() {
        let mut sessions = Sessions::new(2);
        sessions.insert("a", "a", Instant::now(), true); // already expired
        sessions.insert("b", "b", later(10), true);
        assert_eq!(
            sessions.insert("c", "c", later(20), true),
            [("a".into(), "a".into())]
        );
        assert_eq!(
            sessions.insert("d", "d", later(30), true),
            [("b".into(), "b".into())]
        );
        // Renewing one already here ends nobody.
        assert!(sessions.insert("d", "d", later(40), false).is_empty());
        assert_eq!(sessions.len(), 2);
        assert_eq!(sessions.live_of("d"), ["d"]);
    }

    #[test]
    fn ended_and_expired_sessions_are_not_live() {
        let mut sessions = Sessions::new(10);
        sessions.insert("a", "alice", later(10), false);
        sessions.insert("b", "bob", Instant::now(), false);
        assert_eq!(sessions.get("b"), None, "expired");
        assert_eq!(sessions.live_of("alice"), ["a"]);
        assert_eq!(sessions.live_of("bob"), Vec::<String>::new(), "expired");
        assert_eq!(sessions.names_that_came_back(), HashSet::new());
        sessions.get("a");
        assert_eq!(sessions.names_that_came_back(), HashSet::from(["alice"]));
        assert_eq!(sessions.remove("a").as_deref(), Some("alice"));
        sessions.remove_of("bob");
        assert_eq!(sessions.len(), 0);
        assert!(sessions.by_key.is_empty());
    }
}
