//! The hub: who is online, the recent room history, and fan-out.
//!
//! One `Mutex<Room>` guards the registry (connections by uuid, open
//! connections per name), what other servers report online (with several
//! servers on one Redis, see `cluster.rs`) and the last [`HISTORY_LEN`] room
//! messages. Every change to who is online and every delivery happens under
//! it, which gives everyone the same order: the `welcome` a newcomer gets,
//! the history it replays, and the live frames after it fit together with no
//! gap and no repeat, and every recipient sees room messages in one order.
//!
//! What happens under the lock is kept small: pushing `Arc`s into outboxes
//! and events into the cluster's queue (never a socket write, never a Redis
//! round trip). A message is encoded once, before taking the lock. A client
//! whose outbox is full is removed right there and kicked after the lock is
//! released: it never slows anyone.

use crate::cluster::{Event, Publisher};
use crate::connection::{OUTBOX_LEN, Outbox};
use crate::now_ms;
use crate::protocol::{
    ClientError, Encoded, ErrorCode, PrivateMessage, RoomMessage, ServerFrame, encode, encode_close,
};
use crate::session::Session;
use crate::store::{HISTORY_LEN, Store};
use log::{info, warn};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tungstenite::protocol::frame::coding::CloseCode;
use uuid::Uuid;

pub struct Hub {
    room: Mutex<Room>,
    store: Arc<dyn Store>,
    /// Where events for the other servers go (with `--redis` only).
    cluster: Option<Publisher>,
}

/// One open WebSocket connection, as the hub sees it.
struct Client {
    name: String,
    session_id: String,
    outbox: Outbox,
}

/// Names online on another server: name -> its session ids there, and
/// when we last heard about each.
pub type RemotePresence = HashMap<String, (Vec<String>, Instant)>;

#[derive(Default)]
struct Room {
    clients: HashMap<Uuid, Client>,
    /// Open connections per name on this server.
    local: BTreeMap<String, usize>,
    /// Other servers (by id) and who is online there.
    remote: HashMap<String, RemotePresence>,
    /// The last [`HISTORY_LEN`] room messages, oldest first, replayed on join.
    history: VecDeque<RoomMessage>,
}

/// Who is online, before and after a change: the difference is what gets
/// announced as `join` and `leave`.
type Presence = BTreeSet<String>;

impl Hub {
    /// A hub whose history starts from what the store kept.
    pub fn new(store: Arc<dyn Store>, cluster: Option<Publisher>) -> Hub {
        let mut history: VecDeque<RoomMessage> = store.load_history().into();
        while history.len() > HISTORY_LEN {
            history.pop_front();
        }
        let room = Mutex::new(Room {
            history,
            ..Room::default()
        });
        Hub {
            room,
            store,
            cluster,
        }
    }

    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    fn lock(&self) -> MutexGuard<'_, Room> {
        crate::lock(&self.room)
    }

    fn publish(&self, event: Event) {
        if let Some(cluster) = &self.cluster {
            cluster.publish(event);
        }
    }

    /// Runs `change` on the room under the lock; then, with the lock
    /// released, kicks the clients it found too slow. Every change to the
    /// room goes through here.
    fn update<R>(&self, change: impl FnOnce(&mut Room, &mut Vec<Outbox>) -> R) -> R {
        let mut dropped = Vec::new();
        let result = change(&mut self.lock(), &mut dropped);
        for outbox in dropped {
            outbox.kick();
        }
        result
    }

    /// Registers a new connection and queues its first frames: `welcome`,
    /// `history`, `offline`. Tells everyone else when the name comes online.
    pub fn join(&self, session: &Session, outbox: Outbox) -> Uuid {
        let id = Uuid::new_v4();
        let name = session.name.as_str();
        // Read the inbox before taking the lock (the store may do I/O) ...
        let offline = self.store.take_inbox(name);
        self.update(|room, dropped| {
            let before = room.everyone();
            *room.local.entry(name.to_string()).or_default() += 1;
            let everyone = room.everyone();
            let users = everyone.iter().map(String::as_str).collect();
            let welcome = encode(&ServerFrame::Welcome { name, users });
            let history = encode(&ServerFrame::History {
                messages: room.history.iter().collect(),
            });
            let offline = encode(&ServerFrame::Offline { messages: &offline });
            for frame in [welcome, history, offline] {
                let _ = outbox.push(frame); // an empty queue has room for three
            }
            let client = Client {
                name: name.to_string(),
                session_id: session.id.clone(),
                outbox,
            };
            room.clients.insert(id, client);
            room.announce(&before, dropped);
            self.publish(room.presence_event(name));
        });
        // ... and again after registering: a private message that found the
        // name offline just before we registered is in the inbox now.
        let late = self.store.take_inbox(name);
        if !late.is_empty() {
            self.update(|room, dropped| {
                for message in &late {
                    room.deliver(
                        &encode(&ServerFrame::Private(message)),
                        |cid, _| *cid == id,
                        dropped,
                    );
                }
            });
        }
        id
    }

    /// Unregisters a connection; tells everyone when its name goes offline.
    /// Safe to call for a connection the hub already dropped.
    pub fn leave(&self, id: Uuid) {
        self.update(|room, dropped| {
            if let Some(client) = room.remove(id, dropped) {
                self.publish(room.presence_event(&client.name));
            }
        });
    }

    /// A room message from `from`: kept in the history, sent to everyone.
    pub fn say(&self, from: &str, text: String) {
        let message = RoomMessage {
            id: Uuid::new_v4().to_string(),
            from: from.to_string(),
            text,
            ts: now_ms(),
        };
        let frame = encode(&ServerFrame::Message(&message));
        self.update(|room, dropped| {
            room.deliver(&frame, |_, _| true, dropped);
            self.store.append_history(&message);
            self.publish(Event::Room {
                message: message.clone(),
            });
            room.remember(message);
        });
    }

    /// A private message: to every connection of `to` and of `from`, or into
    /// `to`'s inbox when it is offline. `unknown_user` if `to` never logged in.
    pub fn whisper(&self, from: &str, to: &str, text: String) -> Result<(), ClientError> {
        // Ask the store before taking the lock: it may do I/O.
        let known = self.store.is_known_user(to);
        let message = PrivateMessage {
            id: Uuid::new_v4().to_string(),
            from: from.to_string(),
            to: to.to_string(),
            text,
            ts: now_ms(),
        };
        let frame = encode(&ServerFrame::Private(&message));
        self.update(|room, dropped| {
            let online = room.is_online(to);
            if !online && !known {
                let reason = format!("Nobody called {to:?} has ever logged in.");
                return Err(ClientError::new(ErrorCode::UnknownUser, reason));
            }
            if !online {
                // Under the lock, so that a connection of `to` registering
                // right now either sees it in the inbox or gets it live.
                self.store.push_inbox(&message);
            }
            room.deliver(
                &frame,
                |_, client| client.name == from || client.name == to,
                dropped,
            );
            self.publish(Event::Private { message });
            Ok(())
        })
    }

    /// A room message said on another server: shown here, kept in the
    /// replayed history (the other server stored it).
    pub fn relay_room(&self, message: RoomMessage) {
        let frame = encode(&ServerFrame::Message(&message));
        self.update(|room, dropped| {
            room.deliver(&frame, |_, _| true, dropped);
            room.remember(message);
        });
    }

    /// A private message sent on another server: to the connections here of
    /// its sender and its recipient.
    pub fn relay_private(&self, message: &PrivateMessage) {
        let frame = encode(&ServerFrame::Private(message));
        let to =
            |_: &Uuid, client: &Client| client.name == message.from || client.name == message.to;
        self.update(|room, dropped| room.deliver(&frame, to, dropped));
    }

    /// Another server says which sessions of `name` are connected there
    /// (none: it left there). Announces `join` or `leave` if that changes
    /// who is online.
    pub fn relay_presence(&self, server: &str, name: &str, sessions: Vec<String>) {
        self.update(|room, dropped| {
            let before = room.everyone();
            let names = room.remote.entry(server.to_string()).or_default();
            if sessions.is_empty() {
                names.remove(name);
            } else {
                names.insert(name.to_string(), (sessions, Instant::now()));
            }
            room.announce(&before, dropped);
        });
    }

    /// What Redis says is online on every other server, read at `read_at`:
    /// replaces our view, except for what we heard of after `read_at` (a
    /// newer event wins over an older snapshot). A server missing from the
    /// snapshot has stopped (its presence key expired): its users leave.
    pub fn sync_presence(&self, snapshot: HashMap<String, RemotePresence>, read_at: Instant) {
        self.update(|room, dropped| {
            let before = room.everyone();
            let mut remote = snapshot;
            for (server, names) in &room.remote {
                for (name, entry) in names.iter().filter(|(_, entry)| entry.1 > read_at) {
                    remote
                        .entry(server.clone())
                        .or_default()
                        .insert(name.clone(), entry.clone());
                }
            }
            for server in room.remote.keys().filter(|s| !remote.contains_key(*s)) {
                info!("server {server} is gone: its users leave");
            }
            room.remote = remote;
            room.announce(&before, dropped);
        });
    }

    /// This server's connections: name -> session ids (for `cluster.rs`).
    pub fn local_presence(&self) -> BTreeMap<String, Vec<String>> {
        let room = self.lock();
        room.local
            .keys()
            .map(|name| (name.clone(), room.sessions_here(name)))
            .collect()
    }

    /// Whether `name` has an open connection, here or on another server,
    /// that belongs to a session other than `session_id` (the login `409`).
    pub fn taken_by_other_session(&self, name: &str, session_id: Option<&str>) -> bool {
        let room = self.lock();
        let other = |id: &String| Some(id.as_str()) != session_id;
        room.clients
            .values()
            .any(|c| c.name == name && other(&c.session_id))
            || room
                .remote
                .values()
                .filter_map(|names| names.get(name))
                .any(|(ids, _)| ids.iter().any(other))
    }

    /// At shutdown: queues a `1001 going away` close frame for every
    /// connection, then hangs them up (each write pump still sends its queue).
    pub fn close_all(&self) {
        let bye = encode_close(CloseCode::Away, "server shutting down");
        let outboxes: Vec<Outbox> = self
            .lock()
            .clients
            .values()
            .map(|c| c.outbox.clone())
            .collect();
        for outbox in outboxes {
            let _ = outbox.push(bye.clone());
            outbox.hang_up();
        }
    }

    /// Open WebSocket connections on this server, and distinct names with one.
    pub fn counts(&self) -> (usize, usize) {
        let room = self.lock();
        (room.clients.len(), room.local.len())
    }
}

impl Room {
    fn is_online(&self, name: &str) -> bool {
        self.local.contains_key(name) || self.remote.values().any(|names| names.contains_key(name))
    }

    /// Everyone online, here or elsewhere, sorted by code point.
    fn everyone(&self) -> Presence {
        let remote = self.remote.values().flat_map(|names| names.keys());
        self.local.keys().chain(remote).cloned().collect()
    }

    /// The session ids of `name`'s connections on this server.
    fn sessions_here(&self, name: &str) -> Vec<String> {
        let ids: BTreeSet<&String> = self
            .clients
            .values()
            .filter(|c| c.name == name)
            .map(|c| &c.session_id)
            .collect();
        ids.into_iter().cloned().collect()
    }

    fn presence_event(&self, name: &str) -> Event {
        Event::Presence {
            name: name.to_string(),
            sessions: self.sessions_here(name),
        }
    }

    /// Keeps a room message for replay.
    fn remember(&mut self, message: RoomMessage) {
        if self.history.len() == HISTORY_LEN {
            self.history.pop_front();
        }
        self.history.push_back(message);
    }

    /// Sends `join` for every name online now and not `before`, `leave` for
    /// the reverse, each to every connection but the name's own.
    fn announce(&mut self, before: &Presence, dropped: &mut Vec<Outbox>) {
        let now = self.everyone();
        let ts = now_ms();
        for name in now.difference(before) {
            info!("{name:?} is online");
            let frame = encode(&ServerFrame::Join { name, ts });
            self.deliver(&frame, |_, client| &client.name != name, dropped);
        }
        for name in before.difference(&now) {
            info!("{name:?} is offline");
            let frame = encode(&ServerFrame::Leave { name, ts });
            self.deliver(&frame, |_, _| true, dropped);
        }
    }

    /// Queues `frame` for every client `to` selects. Clients whose outbox is
    /// full are removed (with the `leave` that may follow, which can drop
    /// more) and collected in `dropped`, to be kicked once the lock is free.
    fn deliver(
        &mut self,
        frame: &Encoded,
        to: impl Fn(&Uuid, &Client) -> bool,
        dropped: &mut Vec<Outbox>,
    ) {
        let full: Vec<Uuid> = self
            .clients
            .iter()
            .filter(|(id, client)| to(id, client))
            .filter(|(_, client)| client.outbox.push(frame.clone()).is_err())
            .map(|(id, _)| *id)
            .collect();
        for id in full {
            if let Some(client) = self.clients.get(&id) {
                warn!(
                    "{:?} stopped reading ({OUTBOX_LEN} frames waiting): dropping it",
                    client.name
                );
            }
            if let Some(client) = self.remove(id, dropped) {
                dropped.push(client.outbox);
            }
        }
    }

    /// Removes a connection; announces `leave` when its name is online
    /// nowhere any more.
    fn remove(&mut self, id: Uuid, dropped: &mut Vec<Outbox>) -> Option<Client> {
        let client = self.clients.remove(&id)?;
        let before = self.everyone();
        let count = self
            .local
            .get_mut(&client.name)
            .expect("every client's name is counted");
        *count -= 1;
        if *count == 0 {
            self.local.remove(&client.name);
        }
        self.announce(&before, dropped);
        Some(client)
    }
}
