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
//! Redis. A new message is *accepted* under it (checked, queued as
//! [`Work::Store`]); the fan-out thread (`fanout.rs`) takes everything
//! queued, stores the new messages in one group commit (which gives each
//! its `seq`), and only then comes back to the hub ([`Hub::prepare`]) to
//! keep them in the history and decide who gets them. So nobody, the sender
//! included, sees a message that is not stored, and the hub lock is never
//! held while the store works. Each message is encoded once, outside the
//! lock. The path of a message and the order in which locks may be taken
//! are drawn once, in `src/lib.rs`.
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
use crate::store::{HISTORY_LEN, Session, Store, Write};
use log::{info, warn};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use uuid::Uuid;

/// Where the hub sends what other servers must hear. Called under the hub
/// lock (so events leave in the order they were decided): must not block.
pub trait EventSink: Send + Sync {
    fn publish(&self, event: Event);
}

/// Longest a joining connection waits for a private message to it that was
/// accepted (while it was offline) but not yet stored: a commit takes at
/// most about the store's timeout.
const INBOX_COMMIT_WAIT: Duration = Duration::from_secs(3);

pub struct Hub {
    /// The hub lock (see the module doc).
    room: Mutex<Room>,
    /// Signalled (with the hub lock) when a batch of work has been stored.
    stored: Condvar,
    store: Arc<dyn Store>,
    /// Where events for the other servers go (with `--redis` only).
    events: Option<Arc<dyn EventSink>>,
    /// Work queued under the hub lock, waiting for the fan-out thread.
    fan_out: Arc<FanOut<Work>>,
}

/// What the hub hands the fan-out thread, in the order it decided.
pub enum Work {
    /// Decided already (presence, errors): send as it is.
    Deliver(Delivery),
    /// Accepted: store it first (messages get their seq), then
    /// [`Hub::prepare`] decides who gets it.
    Store(Write),
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
    /// The highest seq of a room message no longer in `history` (for `gap`).
    trimmed: u64,
    /// The highest seq delivered by this hub: a joiner's stored private
    /// history stops there, later ones reach it live.
    delivered: u64,
    /// Work items accepted (queued to be stored), and stored, so far.
    accepted: u64,
    stored: u64,
    /// Names offline at accept time with a private message not yet stored
    /// for their inbox: name -> the `accepted` count of the last one.
    inbox_waits: HashMap<String, u64>,
}

impl Hub {
    /// A hub whose history starts from what the store kept.
    pub fn new(store: Arc<dyn Store>, events: Option<Arc<dyn EventSink>>) -> Hub {
        let (kept, trimmed) = store.load_history();
        let mut room = Room {
            trimmed,
            delivered: store.last_seq(),
            ..Room::default()
        };
        for message in kept {
            room.remember(message);
        }
        Hub {
            room: Mutex::new(room),
            stored: Condvar::new(),
            store,
            events,
            fan_out: Arc::new(FanOut::default()),
        }
    }

    /// Starts the fan-out thread (`fanout.rs`), which sends what the hub
    /// decides and reports back the connections too slow to keep up.
    pub fn start_fan_out(self: &Arc<Hub>) -> std::io::Result<()> {
        let (for_prepare, for_slow) = (Arc::downgrade(self), Arc::downgrade(self));
        self.fan_out.start(
            move |work| match for_prepare.upgrade() {
                Some(hub) => hub.prepare(work),
                None => Vec::new(),
            },
            move |slow| {
                if let Some(hub) = for_slow.upgrade() {
                    hub.drop_slow(slow)
                }
            },
        )
    }

    /// On the fan-out thread: stores the messages of a batch of work in one
    /// commit (no lock held), then, under the hub lock, keeps them and
    /// decides who gets them, in the order they were accepted.
    fn prepare(&self, batch: Vec<Work>) -> Vec<Delivery> {
        let mut writes: Vec<Write> = Vec::new();
        let mut order: Vec<Option<Delivery>> = Vec::with_capacity(batch.len());
        for work in batch {
            match work {
                Work::Deliver(delivery) => order.push(Some(delivery)),
                Work::Store(write) => {
                    writes.push(write);
                    order.push(None);
                }
            }
        }
        if !writes.is_empty() {
            self.store.commit(&mut writes);
        }
        // Encoded once each, outside the lock.
        let frames: Vec<Option<Encoded>> = writes.iter().map(message_frame).collect();
        let mut room = self.lock();
        let mut deliveries = Vec::with_capacity(order.len());
        let mut stored = writes.into_iter().zip(frames);
        for slot in order {
            if let Some(delivery) = slot {
                deliveries.push(delivery);
                continue;
            }
            let Some((write, frame)) = stored.next() else {
                break;
            };
            room.stored += 1;
            let to_all = |_: &Uuid, _: &Client| true;
            match (write, frame) {
                (Write::Room(message), Some(frame)) => {
                    deliveries.extend(room.delivery(&frame, to_all));
                    room.delivered = room.delivered.max(message.seq);
                    self.publish(Event::Room {
                        message: message.clone(),
                    });
                    room.remember(message);
                }
                (Write::Private { message, inboxed }, Some(frame)) => {
                    // Inboxed: `to` was offline when it was accepted; a
                    // connection of `to` that came since reads its inbox.
                    let to = |_: &Uuid, c: &Client| {
                        c.name == message.from || (!inboxed && c.name == message.to)
                    };
                    deliveries.extend(room.delivery(&frame, to));
                    room.delivered = room.delivered.max(message.seq);
                    self.publish(Event::Private { message, inboxed });
                }
                (Write::Delete { id }, _) => {
                    if room.forget(&id) {
                        let frame = encode(&ServerFrame::Deleted { id: &id });
                        deliveries.extend(room.delivery(&frame, to_all));
                        self.publish(Event::Deleted { id });
                    }
                }
                (Write::Inbox(_), _) | (Write::Room(_) | Write::Private { .. }, None) => {}
            }
        }
        let stored = room.stored;
        room.inbox_waits.retain(|_, accepted| *accepted > stored);
        drop(room);
        self.stored.notify_all();
        deliveries
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
    fn update<R>(&self, change: impl FnOnce(&mut Room, &mut Vec<Work>) -> R) -> R {
        let mut room = self.lock();
        let mut work = Vec::new();
        let result = change(&mut room, &mut work);
        room.accepted += work.iter().filter(|w| matches!(w, Work::Store(_))).count() as u64;
        self.fan_out.queue(work);
        result
    }

    /// Registers a new connection (by its outbox's id) and queues its first
    /// frames: `welcome`, `history`, `offline`, in its outbox, which must be
    /// held (the caller releases it). With `after` (the last seq the client
    /// saw), the history holds only what came later. Tells everyone else
    /// when the name comes online.
    pub fn join(&self, session: &Session, outbox: Outbox, after: Option<u64>) {
        let id = outbox.id();
        let name = session.name.as_str();
        let since = after.unwrap_or(0);
        // Read the store before taking the lock (it may do I/O): the
        // conversation first, so that an inboxed message in it is in
        // `offline` too, and left out of `private`.
        let conversation = self.store.conversation(name);
        let offline = self.store.take_inbox(name);
        let wait_for = self.update(|room, out| {
            let was_online = room.is_online(name);
            *room.local.entry(name.to_string()).or_default() += 1;
            let welcome = encode(&ServerFrame::Welcome {
                name,
                users: room.everyone(),
            });
            // Private messages not delivered yet reach this connection live.
            let private = conversation.iter().filter(|p| {
                p.seq > since && p.seq <= room.delivered && !offline.iter().any(|o| o.id == p.id)
            });
            let history = encode(&ServerFrame::History {
                messages: room.history.iter().filter(|m| m.seq > since).collect(),
                private: private.collect(),
                gap: after.is_some_and(|after| room.trimmed > after),
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
            room.inbox_waits.get(name).copied()
        });
        // Again after registering: a private message that found the name
        // offline just before is in the inbox now, or will be once stored.
        if let Some(accepted) = wait_for {
            let room = self.lock();
            let deadline = Instant::now() + INBOX_COMMIT_WAIT;
            drop(crate::wait_until(&self.stored, room, deadline, |room| {
                room.stored >= accepted
            }));
        }
        let late = self.store.take_inbox(name);
        if !late.is_empty() {
            self.update(|room, out| {
                for message in &late {
                    let frame = encode(&ServerFrame::Private(message));
                    out.extend(
                        room.delivery(&frame, |cid, _| *cid == id)
                            .map(Work::Deliver),
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

    /// A room message from `from`: accepted now; stored, kept in the
    /// history and sent to everyone by [`Hub::prepare`].
    pub fn say(&self, from: &str, text: String) {
        let message = RoomMessage {
            id: Uuid::new_v4().to_string(),
            seq: 0, // given by the store
            from: from.to_string(),
            text,
            ts: now_ms(),
        };
        self.update(|_, out| out.push(Work::Store(Write::Room(message))));
    }

    /// A private message: to every connection of `to` and of `from`, or into
    /// `to`'s inbox when it is offline. `unknown_user` if `to` never logged in.
    pub fn whisper(&self, from: &str, to: &str, text: String) -> Result<(), ClientError> {
        // Ask the store before taking the lock: it may do I/O.
        let known = self.store.is_known_user(to);
        let message = PrivateMessage {
            id: Uuid::new_v4().to_string(),
            seq: 0, // given by the store
            from: from.to_string(),
            to: to.to_string(),
            text,
            ts: now_ms(),
        };
        self.update(|room, out| {
            let online = room.is_online(to);
            if !online && !known {
                let reason = format!("Nobody called {to:?} has ever logged in.");
                return Err(ClientError::new(ErrorCode::UnknownUser, reason));
            }
            if !online {
                // Decided under the lock: a connection of `to` registering
                // from now on waits for this to be stored, then reads it
                // from the inbox (see `join`).
                let number = room.accepted + out.len() as u64 + 1;
                room.inbox_waits.insert(to.to_string(), number);
            }
            let inboxed = !online;
            out.push(Work::Store(Write::Private { message, inboxed }));
            Ok(())
        })
    }

    /// `from` deletes room message `id`: its author may; `not_found` when
    /// it is not in the history.
    pub fn delete(&self, from: &str, id: &str) -> Result<(), ClientError> {
        self.update(|room, out| {
            let Some(message) = room.history.iter().find(|m| m.id == id) else {
                let reason = "That message is not in the history (any more).";
                return Err(ClientError::new(ErrorCode::NotFound, reason));
            };
            if message.from != from {
                let reason = "You can only delete your own messages.";
                return Err(ClientError::new(ErrorCode::Forbidden, reason));
            }
            out.push(Work::Store(Write::Delete { id: id.to_string() }));
            Ok(())
        })
    }

    /// A room message said on another server: shown here, kept in the
    /// replayed history (the other server stored it).
    pub fn relay_room(&self, message: RoomMessage) {
        let frame = encode(&ServerFrame::Message(&message));
        self.update(|room, out| {
            out.extend(room.delivery(&frame, |_, _| true).map(Work::Deliver));
            room.delivered = room.delivered.max(message.seq);
            room.remember(message);
        });
    }

    /// A private message sent on another server (and stored there): to the
    /// connections here of its sender and its recipient.
    ///
    /// If the sending server thought the recipient online (so it did not
    /// keep the message in the inbox) but we know it has just left, we keep
    /// it: the news of the leave may not have reached the sender yet. (Every
    /// server that knows may do so; the store skips an id it already holds.)
    pub fn relay_private(&self, message: PrivateMessage, inboxed: bool) {
        let frame = encode(&ServerFrame::Private(&message));
        let to =
            |_: &Uuid, client: &Client| client.name == message.from || client.name == message.to;
        self.update(|room, out| {
            out.extend(room.delivery(&frame, to).map(Work::Deliver));
            room.delivered = room.delivered.max(message.seq);
            if !inboxed && !room.is_online(&message.to) {
                out.push(Work::Store(Write::Inbox(message.clone())));
            }
        });
    }

    /// A room message deleted on another server (which changed the store).
    pub fn relay_deleted(&self, id: &str) {
        self.update(|room, out| {
            if room.forget(id) {
                let frame = encode(&ServerFrame::Deleted { id });
                out.extend(room.delivery(&frame, |_, _| true).map(Work::Deliver));
            }
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

    /// Keeps a room message for replay (and notes the seq of one that
    /// falls out, for `gap`).
    fn remember(&mut self, message: RoomMessage) {
        if self.history.len() == HISTORY_LEN
            && let Some(old) = self.history.pop_front()
        {
            self.trimmed = self.trimmed.max(old.seq);
        }
        self.history.push_back(message);
    }

    /// After a change concerning `name`: sends `join` if it has just come
    /// online (anywhere), to every connection but its own; `leave` if it has
    /// just gone offline everywhere.
    fn announce(&self, name: &str, was_online: bool, out: &mut Vec<Work>) {
        let ts = now_ms();
        match (was_online, self.is_online(name)) {
            (false, true) => {
                info!("{name:?} is online");
                let frame = encode(&ServerFrame::Join { name, ts });
                let others = |_: &Uuid, client: &Client| client.name != name;
                out.extend(self.delivery(&frame, others).map(Work::Deliver));
            }
            (true, false) => {
                info!("{name:?} is offline");
                let frame = encode(&ServerFrame::Leave { name, ts });
                out.extend(self.delivery(&frame, |_, _| true).map(Work::Deliver));
            }
            _ => {}
        }
    }

    /// Decides that `frame` goes to every client `to` selects (none: no
    /// delivery).
    fn delivery(&self, frame: &Encoded, to: impl Fn(&Uuid, &Client) -> bool) -> Option<Delivery> {
        let to: Vec<Outbox> = self
            .clients
            .iter()
            .filter(|(id, client)| to(id, client))
            .map(|(_, c)| c.outbox.clone())
            .collect();
        (!to.is_empty()).then(|| Delivery {
            frame: frame.clone(),
            to,
        })
    }

    /// Removes room message `id` from the history; false if it is not there.
    fn forget(&mut self, id: &str) -> bool {
        let before = self.history.len();
        self.history.retain(|m| m.id != id);
        self.history.len() < before
    }

    /// Removes a connection; announces `leave` when its name is online
    /// nowhere any more.
    fn remove(&mut self, id: Uuid, out: &mut Vec<Work>) -> Option<Client> {
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

/// The frame of a stored room or private message (others have none).
fn message_frame(write: &Write) -> Option<Encoded> {
    match write {
        Write::Room(message) => Some(encode(&ServerFrame::Message(message))),
        Write::Private { message, .. } => Some(encode(&ServerFrame::Private(message))),
        Write::Inbox(_) | Write::Delete { .. } => None,
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
        fn load_history(&self) -> (Vec<RoomMessage>, u64) {
            (Vec::new(), 0)
        }
        fn last_seq(&self) -> u64 {
            self.inner.last_seq()
        }
        fn commit(&self, writes: &mut [Write]) {
            self.inner.commit(writes)
        }
        fn conversation(&self, name: &str) -> Vec<PrivateMessage> {
            self.inner.conversation(name)
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
        hub.join(&session("alice"), alice_outbox.clone(), None);
        alice_outbox.release();
        for kind in ["welcome", "history", "offline"] {
            assert_eq!(next_frame(&mut alice)["type"], kind);
        }

        *crate::lock(&store.pause) = Some((took, go)); // pause bob's first inbox read
        let (bob_outbox, mut bob) = connection();
        let joining = {
            let (hub, outbox) = (hub.clone(), bob_outbox.clone());
            std::thread::spawn(move || hub.join(&session("bob"), outbox, None))
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
        hub.join(&session("alice"), outbox.clone(), None);
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
