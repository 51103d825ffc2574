//! The hub: who is online, the recent room history, and fan-out.
//!
//! One `Mutex<Room>` guards the registry (connections by uuid, open
//! connections per name) and the last [`HISTORY_LEN`] room messages. Every
//! change to who is online and every delivery happens under it, which gives
//! everyone the same order: the `welcome` a newcomer gets, the history it
//! replays, and the live frames after it fit together with no gap and no
//! repeat, and every recipient sees room messages in the same order.
//!
//! What happens under the lock is kept small: pushing `Arc`s into outboxes
//! (never a socket write, never a store round trip). A message is encoded
//! once, before taking the lock. A client whose outbox is full is removed
//! right there and kicked after the lock is released: it never slows anyone.

use crate::connection::{OUTBOX_LEN, Outbox};
use crate::now_ms;
use crate::protocol::{
    ClientError, Encoded, ErrorCode, PrivateMessage, RoomMessage, ServerFrame, encode, encode_close,
};
use crate::session::Session;
use crate::store::{HISTORY_LEN, Store};
use log::{info, warn};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tungstenite::protocol::frame::coding::CloseCode;
use uuid::Uuid;

pub struct Hub {
    room: Mutex<Room>,
    store: Arc<dyn Store>,
}

/// One open WebSocket connection, as the hub sees it.
struct Client {
    name: String,
    session_id: String,
    outbox: Outbox,
}

#[derive(Default)]
struct Room {
    clients: HashMap<Uuid, Client>,
    /// Open connections per name; a name is online while it has one. A
    /// `BTreeMap` keeps names sorted by code point, as `welcome.users` wants.
    online: BTreeMap<String, usize>,
    /// The last [`HISTORY_LEN`] room messages, oldest first, replayed on join.
    history: VecDeque<RoomMessage>,
}

impl Hub {
    /// A hub whose history starts from what the store kept.
    pub fn new(store: Arc<dyn Store>) -> Hub {
        let mut history: VecDeque<RoomMessage> = store.load_history().into();
        while history.len() > HISTORY_LEN {
            history.pop_front();
        }
        Hub {
            room: Mutex::new(Room {
                history,
                ..Room::default()
            }),
            store,
        }
    }

    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    fn lock(&self) -> MutexGuard<'_, Room> {
        // A panicking connection thread must not take the chat down with it:
        // every update below leaves the room consistent before anything can
        // panic, so a poisoned lock is still safe to use.
        self.room
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a new connection and queues its first frames: `welcome`,
    /// `history`, `offline`. Tells everyone else when the name comes online.
    pub fn join(&self, session: &Session, outbox: Outbox) -> Uuid {
        let id = Uuid::new_v4();
        let name = session.name.as_str();
        // Read the inbox before taking the lock (the store may do I/O) ...
        let offline = self.store.take_inbox(name);
        let mut dropped = Vec::new();
        {
            let mut room = self.lock();
            *room.online.entry(name.to_string()).or_default() += 1;
            let first = room.online[name] == 1;
            let welcome = encode(&ServerFrame::Welcome {
                name,
                users: room.online.keys().map(String::as_str).collect(),
            });
            let history = encode(&ServerFrame::History {
                messages: room.history.iter().collect(),
            });
            let offline = encode(&ServerFrame::Offline { messages: &offline });
            for frame in [welcome, history, offline] {
                let _ = outbox.push(frame); // an empty queue has room for three
            }
            room.clients.insert(
                id,
                Client {
                    name: name.to_string(),
                    session_id: session.id.clone(),
                    outbox,
                },
            );
            if first {
                let join = encode(&ServerFrame::Join { name, ts: now_ms() });
                room.deliver(&join, |_, client| client.name != name, &mut dropped);
            }
        }
        kick(dropped);
        // ... and again after registering: a private message that found the
        // name offline just before we registered is in the inbox now.
        let mut dropped = Vec::new();
        let late = self.store.take_inbox(name);
        if !late.is_empty() {
            let mut room = self.lock();
            for message in &late {
                room.deliver(
                    &encode(&ServerFrame::Private(message)),
                    |cid, _| *cid == id,
                    &mut dropped,
                );
            }
        }
        kick(dropped);
        id
    }

    /// Unregisters a connection; tells everyone when its name goes offline.
    /// Safe to call for a connection the hub already dropped.
    pub fn leave(&self, id: Uuid) {
        let mut dropped = Vec::new();
        self.lock().remove(id, &mut dropped);
        kick(dropped); // the `leave` notice may have found full outboxes
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
        let mut dropped = Vec::new();
        {
            let mut room = self.lock();
            room.deliver(&frame, |_, _| true, &mut dropped);
            self.store.append_history(&message);
            if room.history.len() == HISTORY_LEN {
                room.history.pop_front();
            }
            room.history.push_back(message);
        }
        kick(dropped);
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
        let mut dropped = Vec::new();
        {
            let mut room = self.lock();
            let online = room.online.contains_key(to);
            if !online && !known {
                return Err(ClientError::new(
                    ErrorCode::UnknownUser,
                    format!("Nobody called {to:?} has ever logged in."),
                ));
            }
            if !online {
                // Under the lock, so that a connection of `to` registering
                // right now either sees it in the inbox or gets it live.
                self.store.push_inbox(&message);
            }
            room.deliver(
                &frame,
                |_, client| client.name == from || client.name == to,
                &mut dropped,
            );
        }
        kick(dropped);
        Ok(())
    }

    /// Whether `name` has an open connection that belongs to a session other
    /// than `session_id` (the login `409` rule).
    pub fn taken_by_other_session(&self, name: &str, session_id: Option<&str>) -> bool {
        let room = self.lock();
        room.clients
            .values()
            .any(|c| c.name == name && Some(c.session_id.as_str()) != session_id)
    }

    /// At shutdown: queues a `1001 going away` close frame for every
    /// connection, then hangs them up (each write pump still sends its queue).
    pub fn close_all(&self) {
        let bye = encode_close(CloseCode::Away, "server shutting down");
        let outboxes: Vec<Outbox> = {
            let room = self.lock();
            room.clients
                .values()
                .map(|client| client.outbox.clone())
                .collect()
        };
        for outbox in outboxes {
            let _ = outbox.push(bye.clone());
            outbox.hang_up();
        }
    }

    /// Open WebSocket connections, and distinct names with one.
    pub fn counts(&self) -> (usize, usize) {
        let room = self.lock();
        (room.clients.len(), room.online.len())
    }
}

impl Room {
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
            if let Some(client) = self.remove(id, dropped) {
                warn!(
                    "{:?} stopped reading ({OUTBOX_LEN} frames waiting): dropped",
                    client.name
                );
                dropped.push(client.outbox);
            }
        }
    }

    /// Removes a connection; announces `leave` when its name has no other.
    fn remove(&mut self, id: Uuid, dropped: &mut Vec<Outbox>) -> Option<Client> {
        let client = self.clients.remove(&id)?;
        let count = self
            .online
            .get_mut(&client.name)
            .expect("every client's name is counted");
        *count -= 1;
        if *count == 0 {
            self.online.remove(&client.name);
            info!("{:?} is offline", client.name);
            let leave = encode(&ServerFrame::Leave {
                name: &client.name,
                ts: now_ms(),
            });
            self.deliver(&leave, |_, _| true, dropped);
        }
        Some(client)
    }
}

/// Drops connections removed under the lock, now that it is released.
fn kick(dropped: Vec<Outbox>) {
    for outbox in dropped {
        outbox.kick();
    }
}
