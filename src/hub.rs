//! The hub: who is online, the recent room history, and deciding who gets what.
//!
//! Concurrency rule: one `Mutex<Room>` (the *hub lock*) guards the registry
//! (connections by uuid, open connections per name), what other servers
//! report online (with several servers on one Redis, see `cluster.rs`) and
//! the last [`HISTORY_LEN`] room messages. Every change to who is online and
//! every delivery is decided under it, which gives everyone the same order:
//! the `welcome` a newcomer gets, the history it replays, and the live
//! frames after it fit together with no gap and no repeat, and every
//! recipient sees room messages in one order.
//!
//! What happens under the lock is kept small and never touches a socket or
//! Redis: deciding who gets what. Each decision is a [`Delivery`], queued
//! (still under the lock, so in its order) for the fan-out thread
//! (`fanout.rs`), which sends it outside the lock. Messages are encoded once,
//! before the lock is taken. The path of a message and the order in which
//! locks may be taken are drawn once, in `src/lib.rs`.
//!
//! The hub needs two things from outside, and defines them here so that the
//! imports point one way: a [`Store`] (`store/`) and, with several servers,
//! an [`EventSink`] for what the other servers must hear (`cluster.rs`
//! implements it).

use crate::fanout::{Delivery, FanOut};
use crate::now_ms;
use crate::outbox::{OUTBOX_LEN, Outbox};
use crate::protocol::{
    ClientError, Encoded, ErrorCode, Event, PrivateMessage, RoomMessage, ServerFrame, encode,
    encode_close,
};
use crate::store::{HISTORY_LEN, Session, Store};
use log::{info, warn};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tungstenite::protocol::frame::coding::CloseCode;
use uuid::Uuid;

/// Where the hub sends what other servers must hear. Called under the hub
/// lock (so events leave in the order they were decided): must not block.
pub trait EventSink: Send + Sync {
    fn publish(&self, event: Event);
}

pub struct Hub {
    /// The hub lock (see the module doc).
    room: Mutex<Room>,
    store: Arc<dyn Store>,
    /// Where events for the other servers go (with `--redis` only).
    events: Option<Arc<dyn EventSink>>,
    /// Deliveries decided under the hub lock, waiting for the fan-out thread.
    fan_out: Arc<FanOut>,
}

/// One open WebSocket connection, as the hub sees it (its key in
/// `Room::clients` is its uuid, the same as its outbox's id).
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

impl Hub {
    /// A hub whose history starts from what the store kept.
    pub fn new(store: Arc<dyn Store>, events: Option<Arc<dyn EventSink>>) -> Hub {
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
            events,
            fan_out: Arc::default(),
        }
    }

    /// Starts the fan-out thread (`fanout.rs`), which sends what the hub
    /// decides and reports back the connections too slow to keep up.
    pub fn start_fan_out(self: &Arc<Hub>) -> std::io::Result<()> {
        let hub = Arc::downgrade(self);
        self.fan_out.start(move |slow| {
            if let Some(hub) = hub.upgrade() {
                hub.drop_slow(slow)
            }
        })
    }

    /// Drops connections whose outbox overflowed, then kicks them.
    fn drop_slow(&self, slow: Vec<Outbox>) {
        self.update(|room, out| {
            for outbox in &slow {
                if let Some(client) = room.remove(outbox.id(), out) {
                    warn!(
                        "{:?} stopped reading ({OUTBOX_LEN} frames waiting): dropped",
                        client.name
                    );
                    self.publish(room.presence_event(&client.name));
                }
            }
        });
        for outbox in slow {
            outbox.kick();
        }
    }

    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    fn lock(&self) -> MutexGuard<'_, Room> {
        crate::lock(&self.room)
    }

    fn publish(&self, event: Event) {
        if let Some(events) = &self.events {
            events.publish(event);
        }
    }

    /// Runs `change` on the room under the lock, and queues the deliveries
    /// it decided for the fan-out thread, still under the lock, so that they
    /// go out in the order they were decided. Every change goes through here.
    fn update<R>(&self, change: impl FnOnce(&mut Room, &mut Vec<Delivery>) -> R) -> R {
        let mut room = self.lock();
        let mut deliveries = Vec::new();
        let result = change(&mut room, &mut deliveries);
        self.fan_out.queue(deliveries);
        result
    }

    /// Registers a new connection (by its outbox's id) and queues its first
    /// frames: `welcome`, `history`, `offline`, in its outbox, which must be
    /// held (the caller releases it). Tells everyone else when the name
    /// comes online.
    pub fn join(&self, session: &Session, outbox: Outbox) {
        let id = outbox.id();
        let name = session.name.as_str();
        // Read the inbox before taking the lock (the store may do I/O) ...
        let offline = self.store.take_inbox(name);
        self.update(|room, out| {
            let was_online = room.is_online(name);
            *room.local.entry(name.to_string()).or_default() += 1;
            let welcome = encode(&ServerFrame::Welcome {
                name,
                users: room.everyone(),
            });
            let history = encode(&ServerFrame::History {
                messages: room.history.iter().collect(),
            });
            let offline = encode(&ServerFrame::Offline { messages: &offline });
            outbox.queue_held(&[welcome, history, offline]); // sent on release
            let client = Client {
                name: name.to_string(),
                session_id: session.id.clone(),
                outbox,
            };
            room.clients.insert(id, client);
            room.announce(name, was_online, out);
            self.publish(room.presence_event(name));
        });
        // ... and again after registering: a private message that found the
        // name offline just before we registered is in the inbox now.
        let late = self.store.take_inbox(name);
        if !late.is_empty() {
            self.update(|room, out| {
                for message in &late {
                    room.deliver(
                        &encode(&ServerFrame::Private(message)),
                        |cid, _| *cid == id,
                        out,
                    );
                }
            });
        }
    }

    /// Unregisters a connection; tells everyone when its name goes offline.
    /// Safe to call for a connection the hub already dropped.
    pub fn leave(&self, id: Uuid) {
        self.update(|room, out| {
            if let Some(client) = room.remove(id, out) {
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
        self.update(|room, out| {
            room.deliver(&frame, |_, _| true, out);
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
        self.update(|room, out| {
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
                out,
            );
            self.publish(Event::Private {
                message,
                inboxed: !online,
            });
            Ok(())
        })
    }

    /// A room message said on another server: shown here, kept in the
    /// replayed history (the other server stored it).
    pub fn relay_room(&self, message: RoomMessage) {
        let frame = encode(&ServerFrame::Message(&message));
        self.update(|room, out| {
            room.deliver(&frame, |_, _| true, out);
            room.remember(message);
        });
    }

    /// A private message sent on another server: to the connections here of
    /// its sender and its recipient.
    ///
    /// If the sending server thought the recipient online (so it did not
    /// keep the message in the inbox) but we know it has just left, we keep
    /// it: the news of the leave may not have reached the sender yet. (Every
    /// server that knows may do so; the store skips an id it already holds.)
    pub fn relay_private(&self, message: &PrivateMessage, inboxed: bool) {
        let frame = encode(&ServerFrame::Private(message));
        let to =
            |_: &Uuid, client: &Client| client.name == message.from || client.name == message.to;
        self.update(|room, out| {
            if !inboxed && !room.is_online(&message.to) {
                self.store.push_inbox(message);
            }
            room.deliver(&frame, to, out)
        });
    }

    /// Another server says which sessions of `name` are connected there
    /// (none: it left there). Announces `join` or `leave` if that changes
    /// who is online.
    pub fn relay_presence(&self, server: &str, name: &str, sessions: Vec<String>) {
        self.update(|room, out| {
            let was_online = room.is_online(name);
            let names = room.remote.entry(server.to_string()).or_default();
            if sessions.is_empty() {
                names.remove(name);
            } else {
                names.insert(name.to_string(), (sessions, Instant::now()));
            }
            room.announce(name, was_online, out);
        });
    }

    /// What Redis says is online on every other server, read at `read_at`:
    /// replaces our view, except for what we heard of after `read_at` (a
    /// newer event wins over an older snapshot). A server missing from the
    /// snapshot has stopped (its presence key expired): its users leave.
    pub fn sync_presence(&self, snapshot: HashMap<String, RemotePresence>, read_at: Instant) {
        self.update(|room, out| {
            // The names that may change: everyone remote, before and after.
            let mut names: BTreeSet<String> = BTreeSet::new();
            for server in room.remote.values().chain(snapshot.values()) {
                names.extend(server.keys().cloned());
            }
            let was_online: Vec<bool> = names.iter().map(|name| room.is_online(name)).collect();
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
            for (name, was_online) in names.iter().zip(was_online) {
                room.announce(name, was_online, out);
            }
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

    /// At shutdown: closes every connection with `1001 going away`.
    pub fn close_all(&self) {
        self.close_where(CloseCode::Away, "server shutting down", |_| true);
    }

    /// At logout: closes the session's connections on this server (its other
    /// tabs), so that they return to the login form.
    pub fn close_session(&self, session_id: &str) {
        self.close_where(CloseCode::Normal, "logged out", |c| {
            c.session_id == session_id
        });
    }

    /// Sends a close frame to the connections `which` selects, then hangs
    /// them up: what is queued still goes out, and their read pumps end.
    fn close_where(&self, code: CloseCode, reason: &str, which: impl Fn(&Client) -> bool) {
        let bye = encode_close(code, reason);
        let outboxes: Vec<Outbox> = self
            .lock()
            .clients
            .values()
            .filter(|c| which(c))
            .map(|c| c.outbox.clone())
            .collect();
        for outbox in outboxes {
            let _ = outbox.push(std::slice::from_ref(&bye));
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

    /// Everyone online, here or elsewhere, sorted by code point (for
    /// `welcome`). Borrowed, not copied: this runs on every join.
    fn everyone(&self) -> Vec<&str> {
        if self.remote.values().all(HashMap::is_empty) {
            return self.local.keys().map(String::as_str).collect(); // already sorted
        }
        // Inserted one by one: `collect()` into a set would sort first, and
        // the sort's scratch buffer (4 KiB on the stack) would stay resident
        // on every connection thread that ever joined.
        let mut everyone = BTreeSet::new();
        for name in self
            .local
            .keys()
            .chain(self.remote.values().flat_map(|names| names.keys()))
        {
            everyone.insert(name.as_str());
        }
        everyone.into_iter().collect()
    }

    /// The session ids of `name`'s connections on this server.
    fn sessions_here(&self, name: &str) -> Vec<String> {
        let mut ids = BTreeSet::new(); // not `collect()`: see `everyone`
        for client in self.clients.values().filter(|c| c.name == name) {
            ids.insert(&client.session_id);
        }
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

    /// After a change concerning `name`: sends `join` if it has just come
    /// online (anywhere), to every connection but its own; `leave` if it has
    /// just gone offline everywhere.
    fn announce(&self, name: &str, was_online: bool, out: &mut Vec<Delivery>) {
        let ts = now_ms();
        match (was_online, self.is_online(name)) {
            (false, true) => {
                info!("{name:?} is online");
                let frame = encode(&ServerFrame::Join { name, ts });
                self.deliver(&frame, |_, client| client.name != name, out);
            }
            (true, false) => {
                info!("{name:?} is offline");
                let frame = encode(&ServerFrame::Leave { name, ts });
                self.deliver(&frame, |_, _| true, out);
            }
            _ => {}
        }
    }

    /// Decides that `frame` goes to every client `to` selects.
    fn deliver(
        &self,
        frame: &Encoded,
        to: impl Fn(&Uuid, &Client) -> bool,
        out: &mut Vec<Delivery>,
    ) {
        let to: Vec<Outbox> = self
            .clients
            .iter()
            .filter(|(id, client)| to(id, client))
            .map(|(_, c)| c.outbox.clone())
            .collect();
        if !to.is_empty() {
            out.push(Delivery {
                frame: frame.clone(),
                to,
            });
        }
    }

    /// Removes a connection; announces `leave` when its name is online
    /// nowhere any more.
    fn remove(&mut self, id: Uuid, out: &mut Vec<Delivery>) -> Option<Client> {
        let client = self.clients.remove(&id)?;
        let count = self
            .local
            .get_mut(&client.name)
            .expect("every client's name is counted");
        *count -= 1;
        if *count == 0 {
            self.local.remove(&client.name);
        }
        self.announce(&client.name, true, out);
        Some(client)
    }
}

#[cfg(test)]
mod tests {
    //! The hub's tricky rules, in process: a store double that can stop a
    //! thread inside the store makes each race happen on purpose.
    use super::*;
    use crate::store::MemoryStore;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::sync::mpsc::{Receiver, Sender, channel};
    use std::time::Duration;

    /// A memory store whose `take_inbox` can be paused: after taking, it
    /// says so on `took` and waits for `go`.
    struct PausingStore {
        inner: MemoryStore,
        pause: Mutex<Option<(Sender<()>, Receiver<()>)>>,
    }

    impl Store for PausingStore {
        fn kind(&self) -> &'static str {
            "memory"
        }
        fn load_history(&self) -> Vec<RoomMessage> {
            Vec::new()
        }
        fn append_history(&self, message: &RoomMessage) {
            self.inner.append_history(message)
        }
        fn push_inbox(&self, message: &PrivateMessage) {
            self.inner.push_inbox(message)
        }
        fn take_inbox(&self, name: &str) -> Vec<PrivateMessage> {
            let taken = self.inner.take_inbox(name);
            if let Some((took, go)) = crate::lock(&self.pause).take() {
                took.send(()).unwrap();
                go.recv().unwrap();
            }
            taken
        }
        fn create_session(&self, session: &Session) {
            self.inner.create_session(session)
        }
        fn session_name(&self, id: &str) -> Option<String> {
            self.inner.session_name(id)
        }
        fn end_session(&self, id: &str) {
            self.inner.end_session(id)
        }
        fn add_user(&self, name: &str) {
            self.inner.add_user(name)
        }
        fn is_known_user(&self, name: &str) -> bool {
            self.inner.is_known_user(name)
        }
    }

    /// A connection as the hub sees it (an outbox on a real loopback
    /// socket) and the client's end, to read what it was sent.
    fn connection() -> (Outbox, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let (socket, _) = listener.accept().unwrap();
        (Outbox::new_held(Uuid::new_v4(), Arc::new(socket)), client)
    }

    /// The next frame's JSON (server frames are unmasked text frames).
    fn next_frame(client: &mut TcpStream) -> serde_json::Value {
        let mut head = [0u8; 2];
        client.read_exact(&mut head).unwrap();
        let len = match head[1] & 0x7f {
            126 => {
                let mut ext = [0u8; 2];
                client.read_exact(&mut ext).unwrap();
                u16::from_be_bytes(ext) as usize
            }
            127 => {
                let mut ext = [0u8; 8];
                client.read_exact(&mut ext).unwrap();
                u64::from_be_bytes(ext) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        client.read_exact(&mut payload).unwrap();
        serde_json::from_slice(&payload).unwrap()
    }

    fn session(name: &str) -> Session {
        Session {
            id: format!("{name}-session"),
            name: name.into(),
        }
    }

    /// A private message that finds bob offline while his first connection
    /// is between its inbox read and its registration is not lost: the
    /// join reads the inbox again after registering, and bob gets it once.
    #[test]
    fn a_private_message_during_a_join_is_delivered_once() {
        let (took, took_rx) = channel();
        let (go_tx, go) = channel();
        let store = Arc::new(PausingStore {
            inner: MemoryStore::new(),
            pause: Mutex::new(None),
        });
        store.add_user("bob");
        let hub = Arc::new(Hub::new(store.clone(), None));
        hub.start_fan_out().unwrap();
        let (alice_outbox, mut alice) = connection();
        hub.join(&session("alice"), alice_outbox.clone());
        alice_outbox.release();
        for kind in ["welcome", "history", "offline"] {
            assert_eq!(next_frame(&mut alice)["type"], kind);
        }

        *crate::lock(&store.pause) = Some((took, go)); // pause bob's first inbox read
        let (bob_outbox, mut bob) = connection();
        let joining = {
            let (hub, outbox) = (hub.clone(), bob_outbox.clone());
            std::thread::spawn(move || hub.join(&session("bob"), outbox))
        };
        took_rx.recv().unwrap(); // bob's join has read his (empty) inbox ...
        hub.whisper("alice", "bob", "psst".into()).unwrap(); // ... bob is offline: inboxed
        go_tx.send(()).unwrap();
        joining.join().unwrap();
        bob_outbox.release();

        assert_eq!(next_frame(&mut bob)["type"], "welcome");
        assert_eq!(next_frame(&mut bob)["type"], "history");
        assert_eq!(next_frame(&mut bob)["messages"], serde_json::json!([]));
        assert_eq!(
            next_frame(&mut bob)["text"],
            "psst",
            "read again after registering"
        );
        hub.whisper("alice", "bob", "second".into()).unwrap();
        assert_eq!(next_frame(&mut bob)["text"], "second", "and psst only once");
        assert!(hub.store().take_inbox("bob").is_empty());
    }

    /// Another server's presence: a snapshot read *before* an event does
    /// not undo it (the newer event wins); a server missing from a later
    /// snapshot has stopped, and its users leave.
    #[test]
    fn presence_snapshots_merge_with_newer_events() {
        let hub = Arc::new(Hub::new(Arc::new(MemoryStore::new()), None));
        hub.start_fan_out().unwrap();
        let (outbox, mut alice) = connection();
        hub.join(&session("alice"), outbox.clone());
        outbox.release();
        for kind in ["welcome", "history", "offline"] {
            assert_eq!(next_frame(&mut alice)["type"], kind);
        }

        let before_event = Instant::now();
        hub.relay_presence("server-2", "carol", vec!["c1".into()]);
        assert_eq!(next_frame(&mut alice)["type"], "join");
        hub.sync_presence(HashMap::new(), before_event); // older than the event
        assert!(hub.taken_by_other_session("carol", None), "carol stays");

        hub.sync_presence(HashMap::new(), Instant::now()); // server-2 is gone
        let leave = next_frame(&mut alice);
        assert_eq!(
            (leave["type"].as_str(), leave["name"].as_str()),
            (Some("leave"), Some("carol"))
        );
        assert!(!hub.taken_by_other_session("carol", None));
    }
}
