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

use crate::fanout::{COME_BACK_AFTER, Delivery, FanOut, Prepared};
use crate::names;
use crate::now_ms;
use crate::outbox::{OUTBOX_LEN, Outbox};
use crate::protocol::{
    AnyMessage, ClientError, ClientFrame, Encoded, ErrorCode, Event, FileRef, HostAction, Mode,
    Muted, PollAnswer, PrivateMessage, RoomMessage, ServerFrame, encode, encode_close,
    encode_notice, encode_welcome,
};
use crate::rate::{RATE_BURST, RATE_PER_SEC, RateLimits};
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

/// WebSockets a session may open: bursts of 150, then 10 a second. A page
/// reconnecting needs far fewer; a reconnect loop is held to ten joins a
/// second (an unbounded one made 10,000 threads in 10 s), while a
/// benchmark sharing one login among 100 connections, or 30 tabs, still
/// gets in at once.
const UPGRADE_BURST: f64 = 150.0;
const UPGRADES_PER_SEC: f64 = 10.0;

/// Close codes of the contract: a host kicked (or banned) the name, or
/// released it.
pub const CLOSE_KICKED: u16 = 4001;
pub const CLOSE_RELEASED: u16 = 4002;

/// Longest a joining connection waits for a private message to it that was
/// accepted (while it was offline) but not yet stored: a commit takes at
/// most about the store's timeout.
const INBOX_COMMIT_WAIT: Duration = Duration::from_secs(3);

/// Presence notices one batch of the fan-out sends at most, counted once
/// per recipient. A class arriving at once makes N²/2 of them (12 million
/// for 5,000 people); a room message sent meanwhile waits for one slice,
/// not for the storm. 32,768 notices are about 2 MiB of sends: a few
/// milliseconds of the fan-out thread.
const PRESENCE_SLICE: usize = 32 * 1024;

/// Why [`Room::tell_presence`] left some connection for later (ordered:
/// the last one says how soon the fan-out must come back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Unfinished {
    No,
    /// Some outbox is behind: look again in a while ([`COME_BACK_AFTER`]).
    Behind,
    /// The batch's [`PRESENCE_SLICE`] is spent: go on right away.
    SliceSpent,
}

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
    /// Each name's message rate, all its connections and polls together
    /// (its own lock: taken for every text frame, never with another).
    rates: RateLimits<String>,
    /// Each session's WebSocket upgrades (its own lock too).
    upgrades: RateLimits<String>,
}

/// What the hub hands the fan-out thread, in the order it decided.
pub enum Work {
    /// Decided already (presence, errors): send as it is.
    Deliver(Delivery),
    /// Accepted: store it first (messages get their seq), then
    /// [`Hub::prepare`] decides who gets it, and sends the sender's copy
    /// (as JSON) to `Reply` when there is one (`POST /say` waits for it).
    Store(Write, Option<Reply>),
    /// A `join` or `leave` notice, numbered in the order decided (see
    /// `Room::notices`). Who gets it is decided by the fan-out thread, once
    /// per batch ([`Room::tell_presence`]).
    Notice(u64, Encoded),
    /// A newcomer (by id) waiting for its `welcome`. The fan-out thread
    /// makes the welcomes of a whole batch of newcomers at once: who is
    /// online is encoded once for all of them, not once per join.
    Welcome(Uuid),
}

/// Where a `POST /say` waits for its sender's copy.
pub type Reply = std::sync::mpsc::Sender<String>;

/// One session that reads the chat by polling (see `poll.rs`): it counts
/// as an open connection of its name while a poll is held, and for a
/// while after each poll.
struct Poller {
    name: String,
    host: bool,
    /// Polls held now.
    held: usize,
    /// When the last poll ended.
    last: Instant,
}

/// One open WebSocket connection, as the hub sees it (its key in
/// `Room::clients` is its uuid, the same as its outbox's id).
struct Client {
    name: String,
    session_id: String,
    /// Opened with the host cookie (see the Host section of the contract).
    host: bool,
    outbox: Outbox,
    /// The number of the last presence notice it was given (or that its
    /// `welcome` includes): it gets those numbered above. `None` until the
    /// fan-out thread has made its welcome: no notice before that.
    since: Option<u64>,
}

/// A name online on another server.
#[derive(Debug, Clone)]
pub struct Remote {
    /// Its session ids there.
    pub sessions: Vec<String>,
    /// Whether one of its connections there is a host's.
    pub host: bool,
    /// When we heard this (a newer event wins over an older snapshot).
    pub heard: Instant,
}

/// Names online on another server: name -> what we know of it there.
pub type RemotePresence = HashMap<String, Remote>;

#[derive(Default)]
struct Room {
    clients: HashMap<Uuid, Client>,
    /// Open connections per name on this server.
    local: BTreeMap<String, usize>,
    /// Host connections (WebSocket or poll) per name on this server: asked
    /// on every join (a `join` says whether it is a host's), so a lookup,
    /// not a scan of everyone.
    hosts_here: BTreeMap<String, usize>,
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
    /// The `history` frame of a newcomer without `after` nor private
    /// messages (most of a join storm), encoded once per change of the
    /// history and shared by them all; `None` after a change.
    history_frame: Option<Encoded>,
    /// Names offline at accept time with a private message not yet stored
    /// for their inbox: name -> the `accepted` count of the last one.
    inbox_waits: HashMap<String, u64>,
    /// What hosts decided (kept in the store too).
    mode: Mode,
    /// Display name -> end of its mute (ms since the epoch).
    mutes: HashMap<String, u64>,
    /// Display names of the banned (for hosts' `welcome`).
    banned: BTreeSet<String>,
    /// Slow mode: when each non-host online last said something to the room.
    last_said: HashMap<String, Instant>,
    /// Sessions reading by polling, by session id (see [`Poller`]).
    pollers: HashMap<String, Poller>,
    /// The seq of the last private message delivered to or from each name
    /// (so a held poll knows, without reading the store, that one is for it).
    last_private: HashMap<String, u64>,
    /// Shutting down: held polls answer at once.
    stopping: bool,
    /// Presence notices decided so far: the number of the last one.
    notices: u64,
    /// The notices some welcomed connection has not been given yet, oldest
    /// first: one copy for everyone (see [`Room::tell_presence`]).
    presence: VecDeque<(u64, Encoded)>,
    /// Held long polls asleep, by ticket: each has its own condvar, woken
    /// only when a delivery is for it ([`Room::wake_polls`]).
    sleeping: HashMap<u64, SleepingPoll>,
    /// The ticket of the last poll that went to sleep.
    tickets: u64,
}

/// A held long poll asleep (see [`Hub::poll`]): what it waits for, and how
/// to wake it. Its own condvar (with the hub lock), not one shared by all:
/// with 500 polls held, a shared one woke 500 threads on every delivery,
/// each to take the hub lock and go back to sleep.
struct SleepingPoll {
    name: String,
    /// It wants a message with a higher seq than this.
    since: u64,
    wake: Arc<Condvar>,
}

impl Hub {
    /// A hub whose history starts from what the store kept.
    pub fn new(store: Arc<dyn Store>, events: Option<Arc<dyn EventSink>>) -> Hub {
        let (kept, trimmed) = store.load_history();
        let moderation = store.moderation();
        let mut room = Room {
            trimmed,
            delivered: store.last_seq(),
            mode: moderation.mode,
            mutes: moderation.mutes.into_iter().collect(),
            banned: moderation.banned.into_iter().collect(),
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
            rates: RateLimits::new(RATE_PER_SEC, RATE_BURST),
            upgrades: RateLimits::new(UPGRADES_PER_SEC, UPGRADE_BURST),
        }
    }

    /// Starts the fan-out thread (`fanout.rs`), which sends what the hub
    /// decides and reports back the connections too slow to keep up.
    pub fn start_fan_out(self: &Arc<Hub>) -> std::io::Result<()> {
        let (for_prepare, for_slow) = (Arc::downgrade(self), Arc::downgrade(self));
        self.fan_out.start(
            move |work| match for_prepare.upgrade() {
                Some(hub) => hub.prepare(work),
                None => Prepared::default(),
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
    fn prepare(&self, batch: Vec<Work>) -> Prepared {
        /// A work item's place in the batch; the writes go to the store
        /// together, so a stored one's place is just that.
        enum Slot {
            Deliver(Delivery),
            Stored,
            Notice(u64, Encoded),
            Welcome(Uuid),
        }
        let mut writes: Vec<Write> = Vec::new();
        let mut replies: Vec<Option<Reply>> = Vec::new();
        let mut order: Vec<Slot> = Vec::with_capacity(batch.len());
        for work in batch {
            order.push(match work {
                Work::Store(write, reply) => {
                    writes.push(write);
                    replies.push(reply);
                    Slot::Stored
                }
                Work::Deliver(delivery) => Slot::Deliver(delivery),
                Work::Notice(number, frame) => Slot::Notice(number, frame),
                Work::Welcome(id) => Slot::Welcome(id),
            });
        }
        if !writes.is_empty() {
            self.store.commit(&mut writes);
        }
        // Encoded once each, outside the lock.
        let frames: Vec<Option<Encoded>> = writes.iter().map(message_frame).collect();
        let mut room = self.lock();
        let mut deliveries = Vec::with_capacity(order.len());
        let mut stored = writes.into_iter().zip(frames).zip(replies);
        // Consecutive presence notices, sent together (in their place in
        // the batch's order), and the newcomers to welcome.
        let mut notices: Vec<(u64, Encoded)> = Vec::new();
        let mut slice = PRESENCE_SLICE;
        let mut newcomers: Vec<Uuid> = Vec::new();
        for slot in order {
            match slot {
                Slot::Notice(number, frame) => {
                    notices.push((number, frame));
                    continue;
                }
                Slot::Welcome(id) => {
                    newcomers.push(id);
                    continue;
                }
                // Anything else: the notices before it go first.
                Slot::Deliver(delivery) => {
                    room.tell_presence(&mut notices, &mut slice, &mut deliveries);
                    deliveries.push(delivery);
                    continue;
                }
                Slot::Stored => {
                    room.tell_presence(&mut notices, &mut slice, &mut deliveries);
                }
            }
            let Some(((write, frame), reply)) = stored.next() else {
                break;
            };
            if let Some(reply) = reply {
                let _ = reply.send(
                    match &write {
                        Write::Room(message) => serde_json::to_string(message),
                        Write::Private { message, .. } => serde_json::to_string(message),
                        _ => Ok(String::new()),
                    }
                    .expect("messages always serialize"),
                );
            }
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
                    room.note_private(&message);
                    self.publish(Event::Private { message, inboxed });
                }
                (Write::Delete { id }, _) => {
                    if room.forget(&id) {
                        let frame = encode(&ServerFrame::Deleted { id: &id });
                        deliveries.extend(room.delivery(&frame, to_all));
                        self.publish(Event::Deleted { id });
                    }
                }
                (Write::Clear, _) => {
                    room.history.clear();
                    room.history_frame = None;
                    let frame = encode(&ServerFrame::Cleared);
                    deliveries.extend(room.delivery(&frame, to_all));
                    self.publish(Event::Cleared);
                }
                (Write::Inbox(_), _) | (Write::Room(_) | Write::Private { .. }, None) => {}
            }
        }
        // Always, even with no new notice: connections that were behind
        // may have caught up (the fan-out thread comes back for them).
        let come_back = match room.tell_presence(&mut notices, &mut slice, &mut deliveries) {
            Unfinished::No => None,
            Unfinished::Behind => Some(COME_BACK_AFTER),
            Unfinished::SliceSpent => Some(Duration::ZERO),
        };
        let welcomed = room.welcome(&newcomers);
        room.wake_polls();
        let stored = room.stored;
        room.inbox_waits.retain(|_, accepted| *accepted > stored);
        drop(room);
        self.stored.notify_all();
        // Their welcome is first in their queues now: the fan-out thread
        // sends it, and what their join queued behind it, once it has sent
        // this batch's deliveries (outside the lock: this is I/O).
        Prepared {
            deliveries,
            come_back,
            release: welcomed,
        }
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
                    self.publish_presence(room, &client.name);
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

    /// Tells the other servers who of `name` is connected here. Only with
    /// several servers: making the event looks through every connection.
    fn publish_presence(&self, room: &Room, name: &str) {
        if self.events.is_some() {
            self.publish(room.presence_event(name));
        }
    }

    /// Runs `change` on the room under the lock, and queues the deliveries
    /// it decided for the fan-out thread, still under the lock, so that they
    /// go out in the order they were decided. Every change goes through here.
    fn update<R>(&self, change: impl FnOnce(&mut Room, &mut Vec<Work>) -> R) -> R {
        let mut room = self.lock();
        let mut work = Vec::new();
        let result = change(&mut room, &mut work);
        room.accepted += work.iter().filter(|w| matches!(w, Work::Store(..))).count() as u64;
        self.fan_out.queue(work);
        result
    }

    /// Registers a new connection (by its outbox's id) and queues its first
    /// frames in its outbox, which must be held: `history` and `offline`
    /// now, and the fan-out thread puts the `welcome` before them and
    /// releases the outbox (see [`Work::Welcome`]). With `after` (the last
    /// seq the client saw), the history holds only what came later. Tells
    /// everyone else when the name comes online.
    pub fn join(&self, session: &Session, outbox: Outbox, after: Option<u64>, host: bool) {
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
            let client = Client {
                name: name.to_string(),
                session_id: session.id.clone(),
                host,
                outbox: outbox.clone(),
                since: None,
            };
            room.clients.insert(id, client);
            if host {
                *room.hosts_here.entry(name.to_string()).or_default() += 1;
            }
            // Private messages not delivered yet reach this connection live.
            let private: Vec<&PrivateMessage> = conversation
                .iter()
                .filter(|p| {
                    p.seq > since
                        && p.seq <= room.delivered
                        && !offline.iter().any(|o| o.id == p.id)
                })
                .collect();
            let history = if after.is_none() && private.is_empty() {
                room.plain_history_frame()
            } else {
                encode(&ServerFrame::History {
                    messages: room.history.iter().filter(|m| m.seq > since).collect(),
                    private,
                    gap: after.is_some_and(|after| room.trimmed > after),
                })
            };
            let offline = encode(&ServerFrame::Offline { messages: &offline });
            outbox.queue_held(&[history, offline]); // the welcome goes first
            out.push(Work::Welcome(id));
            room.announce(name, was_online, out);
            self.publish_presence(room, name);
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
                self.publish_presence(room, &client.name);
            }
        });
    }

    /// Whether `session` may open one more WebSocket now: a reconnect loop
    /// costs one upgrade at a time, not thousands of threads.
    pub fn allow_upgrade(&self, session: &str) -> bool {
        self.upgrades.allow(&session.to_string())
    }

    /// Whether `name` may send one more frame now (the message rate, per
    /// name: opening more connections does not raise it).
    pub fn allow_message(&self, name: &str) -> bool {
        self.rates.allow(&name.to_string())
    }

    /// Does what a client frame asks, for a connection (or a `POST /say`)
    /// of `session`, a host's when `host`. A message's sender's copy goes
    /// to `reply` once stored, when given.
    pub fn handle(
        &self,
        session: &Session,
        host: bool,
        frame: ClientFrame,
        reply: Option<Reply>,
    ) -> Result<(), ClientError> {
        let from = session.name.as_str();
        match frame {
            ClientFrame::Say { text, file } => self.say(from, text, file, reply),
            ClientFrame::Whisper { to, text, file } => self.whisper(from, &to, text, file, reply),
            ClientFrame::Delete { id } => self.delete(from, &id),
            ClientFrame::Host(action) => self.host_action(from, host, action),
            ClientFrame::Typing { to } => {
                self.typing(from, to.as_deref());
                Ok(())
            }
        }
    }

    /// The file a message attaches (by its id), while it is kept.
    fn attachment(&self, id: Option<String>) -> Result<Option<FileRef>, ClientError> {
        let Some(id) = id else { return Ok(None) };
        match self.store.file_meta(&id) {
            Some(file) => Ok(Some(file)),
            None => {
                let why = "That file is not here (any more): upload it again.";
                Err(ClientError::new(ErrorCode::UnknownFile, why))
            }
        }
    }

    /// `from` is typing, to the room or to `to`: told to them (never
    /// stored), unless `from` could not send that message now (muted,
    /// announce-only, private messages off). The caller throttles.
    pub fn typing(&self, from: &str, to: Option<&str>) {
        let to = match to {
            Some(to) => match self.known_name(to) {
                Some(to) => Some(to),
                None => return,
            },
            None => None,
        };
        self.update(|room, out| {
            if !room.typing_allowed(from, to.as_deref()) {
                return;
            }
            room.tell_typing(from, to.as_deref(), out);
            self.publish(Event::Typing {
                name: from.to_string(),
                to: to.clone(),
            });
        });
    }

    /// A room message from `from`: accepted now (unless the mode or a mute
    /// says no); stored, kept in the history and sent to everyone by
    /// [`Hub::prepare`].
    pub fn say(
        &self,
        from: &str,
        text: String,
        file: Option<String>,
        reply: Option<Reply>,
    ) -> Result<(), ClientError> {
        let file = self.attachment(file)?;
        let message = RoomMessage {
            id: Uuid::new_v4().to_string(),
            seq: 0, // given by the store
            from: from.to_string(),
            text,
            ts: now_ms(),
            file,
        };
        self.update(|room, out| {
            if !room.is_host(from) {
                room.check_muted(from)?;
                if room.mode.announce {
                    let why = "Only the host may write to the room right now.";
                    return Err(ClientError::new(ErrorCode::AnnounceOnly, why));
                }
                room.check_slow(from)?;
            }
            out.push(Work::Store(Write::Room(message), reply));
            Ok(())
        })
    }

    /// A private message: to every connection of `to` and of `from`, or into
    /// `to`'s inbox when it is offline. `unknown_user` if `to` never logged in.
    pub fn whisper(
        &self,
        from: &str,
        to: &str,
        text: String,
        file: Option<String>,
        reply: Option<Reply>,
    ) -> Result<(), ClientError> {
        // Ask the store before taking the lock: it may do I/O. `to` is
        // compared by its key: the message goes to the name's display form.
        let file = self.attachment(file)?;
        let Some(to) = self.known_name(to) else {
            let reason = format!("Nobody called {to:?} is here or has claimed that name.");
            return Err(ClientError::new(ErrorCode::UnknownUser, reason));
        };
        self.send_private(from, &to, text, file, reply)
    }

    /// [`Hub::whisper`] to a known name. A call of its own, whose large
    /// frame is not under the store's lookups (a connection thread keeps
    /// the deepest stack page it touched: see `connection::run`).
    #[inline(never)]
    fn send_private(
        &self,
        from: &str,
        to: &str,
        text: String,
        file: Option<FileRef>,
        reply: Option<Reply>,
    ) -> Result<(), ClientError> {
        let message = PrivateMessage {
            id: Uuid::new_v4().to_string(),
            seq: 0, // given by the store
            from: from.to_string(),
            to: to.to_string(),
            text,
            ts: now_ms(),
            file,
        };
        self.update(|room, out| {
            if !room.is_host(from) && !room.is_host(to) {
                room.check_muted(from)?;
                if !room.mode.private {
                    let why = "Private messages are off right now (except to the host).";
                    return Err(ClientError::new(ErrorCode::PrivateOff, why));
                }
            }
            let online = room.is_online(to);
            if !online {
                // Decided under the lock: a connection of `to` registering
                // from now on waits for this to be stored, then reads it
                // from the inbox (see `join`).
                let number = room.accepted + out.len() as u64 + 1;
                room.inbox_waits.insert(to.to_string(), number);
            }
            let inboxed = !online;
            out.push(Work::Store(Write::Private { message, inboxed }, reply));
            Ok(())
        })
    }

    /// The display form of a claimed (or banned) name, by its key.
    fn known_name(&self, name: &str) -> Option<String> {
        let key = names::key(name);
        let known = self.store.claim(&key).map(|claim| claim.name);
        known
            .or_else(|| self.store.banned(&key))
            // While the store cannot say (a Redis outage), take the name as
            // written: the chat goes on, and the message waits for it.
            .or_else(|| (!self.store.healthy()).then(|| name.to_string()))
    }

    /// `from` deletes room message `id`: its author may, and a host may
    /// delete any; `not_found` when it is not in the history.
    pub fn delete(&self, from: &str, id: &str) -> Result<(), ClientError> {
        self.update(|room, out| {
            let Some(message) = room.history.iter().find(|m| m.id == id) else {
                let reason = "That message is not in the history (any more).";
                return Err(ClientError::new(ErrorCode::NotFound, reason));
            };
            if message.from != from && !room.is_host(from) {
                let reason = "You can only delete your own messages.";
                return Err(ClientError::new(ErrorCode::Forbidden, reason));
            }
            out.push(Work::Store(Write::Delete { id: id.to_string() }, None));
            Ok(())
        })
    }

    /// A poll (`GET /poll`, see `poll.rs`): the messages after `after`
    /// (without it, the latest), at once when there are any, else as soon
    /// as one is delivered or `wait` passes. The session counts as online
    /// meanwhile (and for a while after: [`Hub::reap_pollers`]). The wait
    /// holds no lock: the thread sleeps on the `stored` condvar.
    pub fn poll(
        &self,
        session: &Session,
        host: bool,
        after: Option<u64>,
        wait: Duration,
    ) -> String {
        let name = session.name.as_str();
        let since = after.unwrap_or(0);
        let deadline = Instant::now() + wait;
        self.update(|room, out| {
            let was_online = room.is_online(name);
            let new = !room.pollers.contains_key(&session.id);
            let poller = room
                .pollers
                .entry(session.id.clone())
                .or_insert_with(|| Poller {
                    name: name.to_string(),
                    host,
                    held: 0,
                    last: Instant::now(),
                });
            poller.held += 1;
            if new {
                // One more open "connection" of its name.
                *room.local.entry(name.to_string()).or_default() += 1;
                if host {
                    *room.hosts_here.entry(name.to_string()).or_default() += 1;
                }
                room.announce(name, was_online, out);
                self.publish_presence(room, name);
            }
        });
        let answer = loop {
            // The store first (it may do I/O), then the lock.
            let conversation = self.store.conversation(name);
            let room = self.lock();
            let mut messages: Vec<AnyMessage> = room
                .history
                .iter()
                .filter(|m| m.seq > since)
                .map(AnyMessage::Room)
                .collect();
            messages.extend(
                conversation
                    .iter()
                    .filter(|p| p.seq > since && p.seq <= room.delivered)
                    .map(AnyMessage::Private),
            );
            let give_up = room.stopping || Instant::now() >= deadline;
            if !messages.is_empty() || after.is_none() || give_up {
                messages.sort_by_key(AnyMessage::seq);
                let answer = PollAnswer {
                    messages,
                    users: room.everyone(),
                    hosts: room.hosts(),
                    mode: room.mode,
                    next: room.delivered,
                    gap: after.is_some_and(|after| room.trimmed > after),
                };
                break serde_json::to_string(&answer).expect("poll answers serialize");
            }
            // Nothing yet: sleep until something for this name is delivered
            // (or the end). The hub wakes this poll only (`wake_polls`).
            let mut room = room;
            room.tickets += 1;
            let ticket = room.tickets;
            let wake = Arc::new(Condvar::new());
            let sleeping = SleepingPoll {
                name: name.to_string(),
                since,
                wake: wake.clone(),
            };
            room.sleeping.insert(ticket, sleeping);
            let mut room = crate::wait_until(&wake, room, deadline, |room| {
                room.stopping || room.news_for(name, since)
            });
            room.sleeping.remove(&ticket);
        };
        // What waited in the inbox has been returned now.
        self.store.take_inbox(name);
        self.update(|room, _| {
            if let Some(poller) = room.pollers.get_mut(&session.id) {
                poller.held -= 1;
                poller.last = Instant::now();
            }
        });
        answer
    }

    /// Forgets pollers whose last poll ended more than `idle` ago (none
    /// held): their names leave when that was their last connection.
    pub fn reap_pollers(&self, idle: Duration) {
        self.update(|room, out| {
            let gone: Vec<String> = room
                .pollers
                .iter()
                .filter(|(_, p)| p.held == 0 && p.last.elapsed() > idle)
                .map(|(id, _)| id.clone())
                .collect();
            for id in gone {
                if let Some(poller) = room.pollers.remove(&id) {
                    if !room.pollers.values().any(|p| p.name == poller.name) {
                        room.last_private.remove(&poller.name);
                    }
                    if poller.host {
                        room.host_gone(&poller.name);
                    }
                    room.count_down(&poller.name, out);
                    self.publish_presence(room, &poller.name);
                }
            }
        });
    }

    /// Whether non-hosts may upload files now (the mode's `uploads`).
    pub fn uploads_allowed(&self) -> bool {
        self.lock().mode.uploads
    }

    /// At shutdown: every held poll answers now.
    pub fn stop_polls(&self) {
        let mut room = self.lock();
        room.stopping = true;
        room.wake_polls();
    }

    /// A room message said on another server: shown here, kept in the
    /// replayed history (the other server stored it).
    pub fn relay_room(&self, message: RoomMessage) {
        let frame = encode(&ServerFrame::Message(&message));
        self.update(|room, out| {
            out.extend(room.delivery(&frame, |_, _| true).map(Work::Deliver));
            room.delivered = room.delivered.max(message.seq);
            room.remember(message);
            room.wake_polls();
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
            room.note_private(&message);
            if !inboxed && !room.is_online(&message.to) {
                out.push(Work::Store(Write::Inbox(message.clone()), None));
            }
            room.wake_polls();
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
    pub fn relay_presence(&self, server: &str, name: &str, sessions: Vec<String>, host: bool) {
        self.update(|room, out| {
            let was_online = room.is_online(name);
            let names = room.remote.entry(server.to_string()).or_default();
            if sessions.is_empty() {
                names.remove(name);
            } else {
                let heard = Instant::now();
                names.insert(
                    name.to_string(),
                    Remote {
                        sessions,
                        host,
                        heard,
                    },
                );
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
                for (name, entry) in names.iter().filter(|(_, entry)| entry.heard > read_at) {
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
    pub fn local_presence(&self) -> BTreeMap<String, (Vec<String>, bool)> {
        let room = self.lock();
        room.local
            .keys()
            .map(|name| {
                (
                    name.clone(),
                    (room.sessions_here(name), room.is_host_here(name)),
                )
            })
            .collect()
    }

    /// At shutdown: closes every connection with `1001 going away`.
    pub fn close_all(&self) {
        self.close_where(CloseCode::Away, "server shutting down", |_| true);
    }

    /// At logout: closes the session's connections (its other tabs), here
    /// and on every other server, so that they return to the login form.
    pub fn close_session(&self, session_id: &str) {
        let reason = "logged out";
        self.close_where(CloseCode::Normal, reason, |c| c.session_id == session_id);
        self.publish(Event::Close {
            name: String::new(),
            session: Some(session_id.to_string()),
            code: CloseCode::Normal.into(),
            reason: reason.into(),
        });
    }

    /// A host's frame, from a connection of `from` (a host's when `host`).
    /// Names are found by their key; the store is changed outside the lock.
    pub fn host_action(
        &self,
        from: &str,
        host: bool,
        action: HostAction,
    ) -> Result<(), ClientError> {
        if !host {
            let why = "Only the host may do that.";
            return Err(ClientError::new(ErrorCode::Forbidden, why));
        }
        let name = match &action {
            HostAction::Mode {
                announce,
                slow,
                private,
                uploads,
            } => {
                let mode = self.update(|room, out| {
                    let mode = &mut room.mode;
                    mode.announce = announce.unwrap_or(mode.announce);
                    mode.slow = slow.unwrap_or(mode.slow);
                    mode.private = private.unwrap_or(mode.private);
                    mode.uploads = uploads.unwrap_or(mode.uploads);
                    room.tell_mode(out);
                    room.mode
                });
                info!("{from:?} set the mode: {mode:?}");
                self.store.save_mode(&mode);
                self.publish(Event::Mode { mode });
                return Ok(());
            }
            HostAction::Clear => {
                info!("{from:?} cleared the history");
                self.update(|_, out| out.push(Work::Store(Write::Clear, None)));
                return Ok(());
            }
            HostAction::Mute { name, .. }
            | HostAction::Unmute { name }
            | HostAction::Kick { name }
            | HostAction::Ban { name }
            | HostAction::Unban { name }
            | HostAction::Release { name } => name,
        };
        let key = names::key(name);
        let Some(name) = self.known_name(name) else {
            let why = format!("Nobody has claimed the name {name:?}.");
            return Err(ClientError::new(ErrorCode::UnknownUser, why));
        };
        info!("{from:?}: {action:?}");
        match action {
            HostAction::Mute { minutes, .. } => {
                let until = now_ms() + minutes * 60_000;
                self.store.save_mute(&name, Some(until));
                self.update(|room, out| room.set_mute(&name, Some(until), out));
                self.publish(Event::Mute {
                    name,
                    until: Some(until),
                });
            }
            HostAction::Unmute { .. } => {
                self.store.save_mute(&name, None);
                self.update(|room, out| room.set_mute(&name, None, out));
                self.publish(Event::Mute { name, until: None });
            }
            HostAction::Kick { .. } => self.kick(&key, &name),
            HostAction::Ban { .. } => {
                self.store.set_banned(&key, &name, true);
                self.update(|room, out| room.set_banned(&name, true, out));
                self.publish(Event::Ban {
                    name: name.clone(),
                    banned: true,
                });
                self.kick(&key, &name);
            }
            HostAction::Unban { .. } => {
                self.store.set_banned(&key, &name, false);
                self.update(|room, out| room.set_banned(&name, false, out));
                self.publish(Event::Ban {
                    name,
                    banned: false,
                });
            }
            HostAction::Release { .. } => {
                self.store.end_claim(&key);
                self.close_name(&name, CLOSE_RELEASED, "released");
            }
            HostAction::Mode { .. } | HostAction::Clear => unreachable!("handled above"),
        }
        Ok(())
    }

    /// Ends every session of a name and closes its connections (4001).
    fn kick(&self, key: &str, name: &str) {
        for session in self.store.sessions_of(key) {
            self.store.end_session(&session);
        }
        self.close_name(name, CLOSE_KICKED, "kicked");
    }

    /// Closes every connection of `name`, here and on the other servers.
    fn close_name(&self, name: &str, code: u16, reason: &str) {
        self.close_where(CloseCode::from(code), reason, |c| c.name == name);
        self.publish(Event::Close {
            name: name.to_string(),
            session: None,
            code,
            reason: reason.to_string(),
        });
    }

    /// What a host did on another server (which changed the store): told
    /// to the connections here.
    pub fn relay_moderation(&self, event: Event) {
        match event {
            Event::Mode { mode } => self.update(|room, out| {
                room.mode = mode;
                room.tell_mode(out);
            }),
            Event::Mute { name, until } => {
                self.update(|room, out| room.set_mute(&name, until, out))
            }
            Event::Ban { name, banned } => {
                self.update(|room, out| room.set_banned(&name, banned, out))
            }
            Event::Typing { name, to } => self.update(|room, out| {
                room.tell_typing(&name, to.as_deref(), out);
            }),
            Event::Cleared => self.update(|room, out| {
                room.history.clear();
                room.history_frame = None;
                let frame = encode(&ServerFrame::Cleared);
                out.extend(room.delivery(&frame, |_, _| true).map(Work::Deliver));
            }),
            Event::Close {
                name,
                session,
                code,
                reason,
            } => self.close_where(CloseCode::from(code), &reason, |c| match &session {
                Some(session) => c.session_id == *session,
                None => c.name == name,
            }),
            Event::Room { .. }
            | Event::Private { .. }
            | Event::Presence { .. }
            | Event::Deleted { .. } => {}
        }
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
        for (id, _) in self.pollers.iter().filter(|(_, p)| p.name == name) {
            ids.insert(id);
        }
        ids.into_iter().cloned().collect()
    }

    fn presence_event(&self, name: &str) -> Event {
        Event::Presence {
            name: name.to_string(),
            sessions: self.sessions_here(name),
            host: self.is_host_here(name),
        }
    }

    /// Whether `name` has a host's connection on this server.
    fn is_host_here(&self, name: &str) -> bool {
        self.hosts_here.contains_key(name)
    }

    /// Whether `name` is a host: a host's connection of it is online,
    /// here or on another server.
    fn is_host(&self, name: &str) -> bool {
        self.is_host_here(name)
            || self
                .remote
                .values()
                .any(|names| names.get(name).is_some_and(|r| r.host))
    }

    /// The hosts online, sorted (for `welcome`).
    fn hosts(&self) -> Vec<&str> {
        let mut hosts: BTreeSet<&str> = self.hosts_here.keys().map(String::as_str).collect();
        for names in self.remote.values() {
            for (name, _) in names.iter().filter(|(_, r)| r.host) {
                hosts.insert(name.as_str());
            }
        }
        hosts.into_iter().collect()
    }

    /// Whether a typing notice of `from` (to `to`, or the room) may go:
    /// only when `from` could send that message now.
    fn typing_allowed(&self, from: &str, to: Option<&str>) -> bool {
        if self.is_host(from) {
            return true;
        }
        let to_host = to.is_some_and(|to| self.is_host(to));
        let muted = self.check_muted(from).is_err() && !to_host;
        let closed = match to {
            None => self.mode.announce,
            Some(_) => !self.mode.private && !to_host,
        };
        !muted && !closed
    }

    /// Sends `from`'s typing notice to the room (but `from`), or to `to`.
    fn tell_typing(&self, from: &str, to: Option<&str>, out: &mut Vec<Work>) {
        let frame = encode(&ServerFrame::Typing { name: from, to });
        let recipients = |_: &Uuid, c: &Client| match to {
            Some(to) => c.name == to && c.name != from,
            None => c.name != from,
        };
        out.extend(self.delivery(&frame, recipients).map(Work::Deliver));
    }

    /// Whether a message for `name` with a seq above `since` was delivered
    /// (a room message, or a private one to or from it): asked under the
    /// lock, with no store read, by held polls.
    fn news_for(&self, name: &str, since: u64) -> bool {
        self.history.back().is_some_and(|m| m.seq > since)
            || self.last_private.get(name).is_some_and(|seq| *seq > since)
    }

    /// Wakes the held polls that have something now (all, when stopping).
    fn wake_polls(&self) {
        for poll in self.sleeping.values() {
            if self.stopping || self.news_for(&poll.name, poll.since) {
                poll.wake.notify_one();
            }
        }
    }

    /// Notes a private message delivered, for held polls of its two names
    /// (only names being polled: the map stays as small as the pollers).
    fn note_private(&mut self, message: &PrivateMessage) {
        for name in [&message.from, &message.to] {
            if self.pollers.values().any(|p| p.name == *name) {
                self.last_private.insert(name.clone(), message.seq);
            }
        }
    }

    /// Tells everyone the mode.
    fn tell_mode(&self, out: &mut Vec<Work>) {
        let frame = encode(&ServerFrame::Mode(self.mode));
        out.extend(self.delivery(&frame, |_, _| true).map(Work::Deliver));
    }

    /// Mutes `name` until then (`None`: unmutes) and tells its connections
    /// and the hosts'.
    fn set_mute(&mut self, name: &str, until: Option<u64>, out: &mut Vec<Work>) {
        let frame = match until {
            Some(until) => {
                self.mutes.insert(name.to_string(), until);
                encode(&ServerFrame::Muted(Muted { name, until }))
            }
            None => {
                self.mutes.remove(name);
                encode(&ServerFrame::Unmuted { name })
            }
        };
        let to = |_: &Uuid, c: &Client| c.host || c.name == name;
        out.extend(self.delivery(&frame, to).map(Work::Deliver));
    }

    /// Bans or unbans `name`, and tells the hosts.
    fn set_banned(&mut self, name: &str, banned: bool, out: &mut Vec<Work>) {
        let frame = if banned {
            self.banned.insert(name.to_string());
            encode(&ServerFrame::Banned { name })
        } else {
            self.banned.remove(name);
            encode(&ServerFrame::Unbanned { name })
        };
        out.extend(self.delivery(&frame, |_, c| c.host).map(Work::Deliver));
    }

    /// `muted` (with its end) while `name` is muted.
    fn check_muted(&self, name: &str) -> Result<(), ClientError> {
        match self.mutes.get(name) {
            Some(&until) if until > now_ms() => {
                let why = "The host has muted you for now.";
                let mut error = ClientError::new(ErrorCode::Muted, why);
                error.until = Some(until);
                Err(error)
            }
            _ => Ok(()),
        }
    }

    /// Slow mode: `slow_mode` (with the wait left) when `name` spoke to the
    /// room less than `mode.slow` seconds ago; else notes that it speaks now.
    fn check_slow(&mut self, name: &str) -> Result<(), ClientError> {
        let wait = std::time::Duration::from_secs(self.mode.slow);
        let now = Instant::now();
        if let Some(last) = self.last_said.get(name)
            && now.duration_since(*last) < wait
        {
            let left = wait - now.duration_since(*last);
            let why = format!("Slow mode: one message every {} seconds.", self.mode.slow);
            let mut error = ClientError::new(ErrorCode::SlowMode, why);
            error.retry_after_ms = Some(left.as_millis() as u64 + 1);
            return Err(error);
        }
        self.last_said.insert(name.to_string(), now);
        Ok(())
    }

    /// Keeps a room message for replay (and notes the seq of one that
    /// falls out, for `gap`).
    fn remember(&mut self, message: RoomMessage) {
        self.history_frame = None;
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
    ///
    /// Only numbered here (no recipients are listed under the lock: that
    /// cost grew with everyone online, for every join of a storm); the
    /// fan-out thread decides who gets it, once per batch. A name's own
    /// connections never get its `join`: they are welcomed after it.
    fn announce(&mut self, name: &str, was_online: bool, out: &mut Vec<Work>) {
        let ts = now_ms();
        let frame = match (was_online, self.is_online(name)) {
            (false, true) => {
                info!("{name:?} is online");
                encode_notice(name, true, self.is_host(name), ts)
            }
            (true, false) => {
                info!("{name:?} is offline");
                encode_notice(name, false, false, ts)
            }
            _ => return,
        };
        self.notices += 1;
        out.push(Work::Notice(self.notices, frame));
    }

    /// Adds `run` (new notices, taken) to the presence log and decides who
    /// gets what: each welcomed connection the notices after its `since`,
    /// coalesced ([`coalesce`]), in one delivery per distinct `since`.
    /// Returns whether some connection was left for later, and why.
    ///
    /// A connection with frames still queued (its client reads slower than
    /// a storm of joins comes) gets no more notices until it has caught up:
    /// it keeps only its `since`, the log keeps one copy of the notices for
    /// everyone, and once it is ready it gets them all at once, coalesced.
    /// So a client behind costs a number, not a queue of notices growing
    /// with the room, and its messages do not wait behind them.
    ///
    /// A batch sends at most [`PRESENCE_SLICE`] notices in all (`slice` is
    /// what is left of it), to the connections furthest behind first; the
    /// others keep their `since` for the next batch. So a room message
    /// waits for one slice of a storm's notices, not for all of them.
    fn tell_presence(
        &mut self,
        run: &mut Vec<(u64, Encoded)>,
        slice: &mut usize,
        deliveries: &mut Vec<Delivery>,
    ) -> Unfinished {
        self.presence.extend(run.drain(..));
        let Some(&(last, _)) = self.presence.back() else {
            return Unfinished::No;
        };
        // Who is ready for notices, by `since`: the furthest behind first.
        let mut ready: BTreeMap<u64, Vec<Uuid>> = BTreeMap::new();
        let mut unfinished = Unfinished::No;
        let mut oldest = last; // the lowest `since` left: the log keeps what is after it
        for (id, client) in &self.clients {
            let Some(since) = client.since.filter(|since| *since < last) else {
                continue;
            };
            if client.outbox.is_behind() {
                unfinished = unfinished.max(Unfinished::Behind);
                oldest = oldest.min(since);
                continue;
            }
            ready.entry(since).or_default().push(*id);
        }
        for (since, ids) in ready {
            if *slice == 0 {
                // The slice is spent: the rest keep their `since`, and the
                // fan-out comes back for them right after this batch.
                unfinished = Unfinished::SliceSpent;
                oldest = oldest.min(since);
                continue;
            }
            let first = self
                .presence
                .partition_point(|(number, _)| *number <= since);
            let frames = coalesce(self.presence.range(first..));
            // As many of this `since` as the slice allows (at least one).
            let take = match frames.len() {
                0 => ids.len(), // all coalesced away: nothing to send
                n => ids.len().min(slice.div_ceil(n)),
            };
            *slice = slice.saturating_sub(take * frames.len());
            if take < ids.len() {
                unfinished = Unfinished::SliceSpent;
                oldest = oldest.min(since);
            }
            let mut to = Vec::with_capacity(take);
            for id in &ids[..take] {
                let client = self.clients.get_mut(id).expect("listed just now");
                client.since = Some(last);
                to.push(client.outbox.clone());
            }
            if !frames.is_empty() {
                deliveries.push(Delivery { frames, to });
            }
        }
        while self
            .presence
            .front()
            .is_some_and(|(number, _)| *number <= oldest)
        {
            self.presence.pop_front();
        }
        unfinished
    }

    /// Makes the `welcome` of each newcomer of a batch and queues it first
    /// in its (held) outbox; returns those outboxes, to be released. Who is
    /// online is encoded once for the whole batch.
    fn welcome(&mut self, newcomers: &[Uuid]) -> Vec<Outbox> {
        if newcomers.is_empty() {
            return Vec::new();
        }
        let users: Arc<[u8]> = serde_json::to_vec(&self.everyone())
            .expect("names serialize")
            .into();
        let hosts = self.hosts();
        let now = now_ms();
        let muted: Vec<Muted> = self
            .mutes
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(name, until)| Muted {
                name,
                until: *until,
            })
            .collect();
        let banned: Vec<&str> = self.banned.iter().map(String::as_str).collect();
        let mut welcomed = Vec::with_capacity(newcomers.len());
        for id in newcomers {
            let Some(client) = self.clients.get(id) else {
                continue; // gone already
            };
            let welcome = ServerFrame::Welcome {
                name: &client.name,
                users: [],
                hosts: hosts.clone(),
                host: client.host,
                mode: self.mode,
                banned: client.host.then(|| banned.clone()),
                muted: client.host.then(|| muted.clone()),
            };
            client
                .outbox
                .queue_first_held(&encode_welcome(&welcome, &users));
            welcomed.push(client.outbox.clone());
        }
        let since = self.notices;
        for id in newcomers {
            if let Some(client) = self.clients.get_mut(id) {
                client.since = Some(since);
            }
        }
        welcomed
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
            frames: vec![frame.clone()],
            to,
        })
    }

    /// The shared `history` frame of a plain join (see `history_frame`).
    fn plain_history_frame(&mut self) -> Encoded {
        if self.history_frame.is_none() {
            self.history_frame = Some(encode(&ServerFrame::History {
                messages: self.history.iter().collect(),
                private: Vec::new(),
                gap: false,
            }));
        }
        self.history_frame.clone().expect("just made")
    }

    /// Removes room message `id` from the history; false if it is not there.
    fn forget(&mut self, id: &str) -> bool {
        self.history_frame = None;
        let before = self.history.len();
        self.history.retain(|m| m.id != id);
        self.history.len() < before
    }

    /// Removes a connection; announces `leave` when its name is online
    /// nowhere any more.
    fn remove(&mut self, id: Uuid, out: &mut Vec<Work>) -> Option<Client> {
        let client = self.clients.remove(&id)?;
        if client.host {
            self.host_gone(&client.name);
        }
        self.count_down(&client.name, out);
        Some(client)
    }

    /// One host connection (or poller) of `name` fewer.
    fn host_gone(&mut self, name: &str) {
        if let Some(count) = self.hosts_here.get_mut(name) {
            *count -= 1;
            if *count == 0 {
                self.hosts_here.remove(name);
            }
        }
    }

    /// One connection (or poller) of `name` fewer; announces `leave` when
    /// its name is online nowhere any more.
    fn count_down(&mut self, name: &str, out: &mut Vec<Work>) {
        let count = self
            .local
            .get_mut(name)
            .expect("every connection's name is counted");
        *count -= 1;
        if *count == 0 {
            self.local.remove(name);
            self.last_said.remove(name);
        }
        self.announce(name, true, out);
    }
}

/// The notices of `run` that a connection must get, in their order: a name
/// that joined and left again within the run gets neither (the contract
/// allows it), so churn costs nothing; a name that left and came back gets
/// both; otherwise its last notice says where it ends.
fn coalesce<'a>(run: impl Iterator<Item = &'a (u64, Encoded)> + Clone) -> Vec<Encoded> {
    let run: Vec<&Encoded> = run.map(|(_, frame)| frame).collect();
    let is_join = |i: usize| run[i].notice().is_some_and(|n| n.join);
    // Each name's first and last notice in the run (by index).
    let mut by_name: HashMap<&str, (usize, usize)> = HashMap::new();
    for (i, frame) in run.iter().enumerate() {
        let name = frame.notice().map_or("", |n| n.name.as_str());
        by_name
            .entry(name)
            .and_modify(|(_, last)| *last = i)
            .or_insert((i, i));
    }
    let mut keep: Vec<usize> = Vec::with_capacity(by_name.len());
    for (first, last) in by_name.into_values() {
        let (online_before, online_after) = (!is_join(first), is_join(last));
        match (online_before, online_after) {
            (false, false) => {}
            (true, true) => keep.extend([first, last]),
            _ => keep.push(last),
        }
    }
    keep.sort_unstable();
    keep.into_iter().map(|i| run[i].clone()).collect()
}

/// The frame of a stored room or private message (others have none).
fn message_frame(write: &Write) -> Option<Encoded> {
    match write {
        Write::Room(message) => Some(encode(&ServerFrame::Message(message))),
        Write::Private { message, .. } => Some(encode(&ServerFrame::Private(message))),
        Write::Inbox(_) | Write::Delete { .. } | Write::Clear => None,
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
        fn claim(&self, key: &str) -> Option<crate::store::Claim> {
            self.inner.claim(key)
        }
        fn claim_name(
            &self,
            key: &str,
            claim: &crate::store::Claim,
        ) -> Option<crate::store::Claim> {
            self.inner.claim_name(key, claim)
        }
        fn set_password(&self, key: &str, hash: &str) {
            self.inner.set_password(key, hash)
        }
        fn sessions_of(&self, key: &str) -> Vec<String> {
            self.inner.sessions_of(key)
        }
        fn end_claim(&self, key: &str) -> Vec<String> {
            self.inner.end_claim(key)
        }
        fn password_failures(&self, key: &str) -> u64 {
            self.inner.password_failures(key)
        }
        fn note_password_failure(&self, key: &str) {
            self.inner.note_password_failure(key)
        }
        fn moderation(&self) -> crate::store::Moderation {
            self.inner.moderation()
        }
        fn save_mode(&self, mode: &Mode) {
            self.inner.save_mode(mode)
        }
        fn save_mute(&self, name: &str, until: Option<u64>) {
            self.inner.save_mute(name, until)
        }
        fn set_banned(&self, key: &str, name: &str, banned: bool) {
            self.inner.set_banned(key, name, banned)
        }
        fn banned(&self, key: &str) -> Option<String> {
            self.inner.banned(key)
        }
        fn host_key(&self, proposed: &str, given: bool) -> String {
            self.inner.host_key(proposed, given)
        }
        fn put_file(&self, file: &crate::protocol::FileRef, bytes: Arc<[u8]>, cap: u64) {
            self.inner.put_file(file, bytes, cap)
        }
        fn file_meta(&self, id: &str) -> Option<crate::protocol::FileRef> {
            self.inner.file_meta(id)
        }
        fn file(&self, id: &str) -> Option<Arc<[u8]>> {
            self.inner.file(id)
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

    /// `name` connected to `hub`, past its opening frames.
    fn joined(hub: &Hub, name: &str) -> (Outbox, TcpStream) {
        let (outbox, mut client) = connection();
        hub.join(&session(name), outbox.clone(), None, false);
        for kind in ["welcome", "history", "offline"] {
            assert_eq!(next_frame(&mut client)["type"], kind);
        }
        (outbox, client)
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
        let bob = crate::store::Claim {
            name: "bob".into(),
            password: None,
        };
        store.claim_name("bob", &bob);
        let hub = Arc::new(Hub::new(store.clone(), None));
        hub.start_fan_out().unwrap();
        let _alice = joined(&hub, "alice"); // someone to send from, online

        *crate::lock(&store.pause) = Some((took, go)); // pause bob's first inbox read
        let (bob_outbox, mut bob) = connection();
        let joining = {
            let (hub, outbox) = (hub.clone(), bob_outbox.clone());
            std::thread::spawn(move || hub.join(&session("bob"), outbox, None, false))
        };
        took_rx.recv().unwrap(); // bob's join has read his (empty) inbox ...
        hub.whisper("alice", "bob", "psst".into(), None, None)
            .unwrap(); // ... bob is offline: inboxed
        go_tx.send(()).unwrap();
        joining.join().unwrap();

        assert_eq!(next_frame(&mut bob)["type"], "welcome");
        assert_eq!(next_frame(&mut bob)["type"], "history");
        assert_eq!(next_frame(&mut bob)["messages"], serde_json::json!([]));
        assert_eq!(
            next_frame(&mut bob)["text"],
            "psst",
            "read again after registering"
        );
        hub.whisper("alice", "bob", "second".into(), None, None)
            .unwrap();
        assert_eq!(next_frame(&mut bob)["text"], "second", "and psst only once");
        assert!(hub.store().take_inbox("bob").is_empty());
    }

    /// A burst of presence: joined-and-left-again gives nothing, left and
    /// came back gives both, otherwise the last word; always in order.
    #[test]
    fn presence_notices_coalesce() {
        use crate::protocol::encode_notice;
        let notice = |name: &str, join: bool| encode_notice(name, join, false, 1);
        let run: Vec<(u64, Encoded)> = [
            ("ann", true),
            ("bob", false),
            ("ann", false),
            ("cid", true),
            ("bob", true),
            ("dan", false),
            ("ann", true),
            ("eve", true),
            ("eve", false),
        ]
        .iter()
        .enumerate()
        .map(|(i, (name, join))| (i as u64 + 1, notice(name, *join)))
        .collect();
        let told: Vec<(String, bool)> = coalesce(run.iter())
            .iter()
            .map(|f| f.notice().map(|n| (n.name.clone(), n.join)).unwrap())
            .collect();
        let expected = [
            ("bob", false),
            ("cid", true),
            ("bob", true),
            ("dan", false),
            ("ann", true),
        ];
        let expected: Vec<(String, bool)> =
            expected.iter().map(|(n, j)| (n.to_string(), *j)).collect();
        assert_eq!(told, expected);
    }

    /// A connection whose client reads slower than presence changes gets
    /// no notices while it is behind, then all of them at once, coalesced:
    /// the 25 people who came and went meanwhile cost it nothing.
    #[test]
    fn a_connection_behind_gets_presence_when_it_catches_up() {
        let hub = Arc::new(Hub::new(Arc::new(MemoryStore::new()), None));
        hub.start_fan_out().unwrap();
        let (outbox, mut alice) = joined(&hub, "alice");
        // alice stops reading; big frames fill her socket, then her queue.
        let text = "x".repeat(60_000);
        let big = ClientError::new(ErrorCode::BadRequest, text.as_str()).encode();
        let mut filled = 0;
        while !outbox.is_behind() {
            outbox.push(std::slice::from_ref(&big)).unwrap();
            filled += 1;
            assert!(filled < 1000, "a loopback socket holds less than 60 MB");
        }
        // And 18 MB more: the kernel grows a socket's send buffer (to 4 MB
        // by default), and the write pump must not catch up meanwhile.
        for _ in 0..300 {
            outbox.push(std::slice::from_ref(&big)).unwrap();
        }
        for i in 0..50 {
            hub.relay_presence("server-2", &format!("r{i:02}"), vec!["s".into()], false);
            if i % 2 == 0 {
                hub.relay_presence("server-2", &format!("r{i:02}"), vec![], false);
            }
        }
        hub.relay_presence("server-2", "zz", vec!["s".into()], false);

        let (mut joined, mut left) = (Vec::new(), Vec::new());
        loop {
            let frame = next_frame(&mut alice);
            let name = frame["name"].as_str().unwrap_or_default().to_string();
            match frame["type"].as_str() {
                Some("join") if name == "zz" => break,
                Some("join") => joined.push(name),
                Some("leave") => left.push(name),
                _ => {}
            }
        }
        let odd: Vec<String> = (0..50)
            .filter(|i| i % 2 == 1)
            .map(|i| format!("r{i:02}"))
            .collect();
        assert_eq!(joined, odd, "only those still online, in order");
        assert!(left.is_empty(), "nobody she saw left: {left:?}");
    }

    /// A batch sends at most its slice of notices, furthest behind first;
    /// the rest keep their place in the log and get theirs in the next
    /// batch, which the fan-out is asked to make at once.
    #[test]
    fn presence_goes_out_in_slices_furthest_behind_first() {
        use crate::protocol::encode_notice;
        let mut room = Room::default();
        let mut client = |name: &str, since: u64| {
            let (outbox, socket) = connection();
            outbox.release(); // welcomed: no longer held
            let id = outbox.id();
            let client = Client {
                name: name.into(),
                session_id: format!("{name}-session"),
                host: false,
                outbox,
                since: Some(since),
            };
            room.clients.insert(id, client);
            (id, socket)
        };
        let (ann, _a) = client("ann", 0);
        let (bob, _b) = client("bob", 5);
        let (cid, _c) = client("cid", 5);
        let mut run: Vec<(u64, Encoded)> = (1..=10)
            .map(|n| (n, encode_notice(&format!("n{n}"), true, false, 1)))
            .collect();
        // Who was given how many notices.
        let told = |deliveries: &[Delivery]| -> Vec<(Uuid, usize)> {
            let each = deliveries
                .iter()
                .flat_map(|d| d.to.iter().map(|o| (o.id(), d.frames.len())));
            each.collect()
        };

        let (mut slice, mut deliveries) = (12, Vec::new());
        let left = room.tell_presence(&mut run, &mut slice, &mut deliveries);
        assert_eq!(left, Unfinished::SliceSpent);
        let first = told(&deliveries);
        assert_eq!(first[0], (ann, 10), "the furthest behind first, all 10");
        assert_eq!(first.len(), 2, "then one of the two at 5: {first:?}");
        assert_eq!(first[1].1, 5);
        assert_eq!(room.presence.len(), 5, "the log keeps what is still owed");

        let (mut slice, mut deliveries) = (12, Vec::new());
        let left = room.tell_presence(&mut run, &mut slice, &mut deliveries);
        assert_eq!(left, Unfinished::No);
        let second = told(&deliveries);
        let other = if first[1].0 == bob { cid } else { bob };
        assert_eq!(second, vec![(other, 5)], "the other one, next batch");
        assert!(room.presence.is_empty(), "everyone has everything");
        assert!(room.clients.values().all(|c| c.since == Some(10)));
    }

    /// Another server's presence: a snapshot read *before* an event does
    /// not undo it (the newer event wins); a server missing from a later
    /// snapshot has stopped, and its users leave.
    #[test]
    fn presence_snapshots_merge_with_newer_events() {
        let hub = Arc::new(Hub::new(Arc::new(MemoryStore::new()), None));
        hub.start_fan_out().unwrap();
        let (_outbox, mut alice) = joined(&hub, "alice");

        let before_event = Instant::now();
        hub.relay_presence("server-2", "carol", vec!["c1".into()], false);
        assert_eq!(next_frame(&mut alice)["type"], "join");
        hub.sync_presence(HashMap::new(), before_event); // older than the event
        assert!(hub.lock().is_online("carol"), "carol stays");

        hub.sync_presence(HashMap::new(), Instant::now()); // server-2 is gone
        let leave = next_frame(&mut alice);
        assert_eq!(
            (leave["type"].as_str(), leave["name"].as_str()),
            (Some("leave"), Some("carol"))
        );
        assert!(!hub.lock().is_online("carol"));
    }
}
