//! Several lanchat servers on one Redis act as one chat.
//!
//! Redis is the engine; there is no cluster protocol of our own. Each server
//! has a random id and, with `--redis`, two threads:
//!
//! - `cluster-pub` publishes this server's events on the channel
//!   [`CHANNEL`]: room and private messages said here, and the presence of a
//!   name here whenever it changes. The hub only pushes events into a queue
//!   ([`Publisher`]), under its lock and without waiting; this thread does
//!   the Redis I/O. It also keeps this server's presence key
//!   (`lanchat:presence:<id>`, a hash name -> session ids) up to date, with a
//!   [`PRESENCE_TTL`] refreshed every [`PRESENCE_REFRESH`], and at each
//!   refresh reads every other server's key: that repairs anything missed
//!   (a dropped subscription, a Redis restart), and a server that died
//!   without a word (SIGKILL) is noticed when its key expires: its users
//!   leave everyone's online list within `PRESENCE_TTL + PRESENCE_REFRESH`.
//! - `cluster-sub` subscribes to [`CHANNEL`] and hands other servers' events
//!   to the hub (`Hub::relay_*`), which delivers them to the connections here.
//!
//! A message is delivered by the server it was said on to its own
//! connections, and published once; every other server delivers it to its
//! connections. A server ignores its own events, so no connection gets a
//! message twice, and only the server it was said on stores it in the history.
//!
//! While Redis is down, each server goes on as a chat of its own: events
//! wait in the queue (the last [`MAX_UNPUBLISHED`]) and go out when Redis is back.

use crate::hub::{EventSink, Hub, Remote, RemotePresence};
use crate::protocol::Event;
use crate::store::open_redis;
use log::{debug, info, warn};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The pub/sub channel every server publishes to and listens on.
pub const CHANNEL: &str = "lanchat:events";
/// A server's presence key expires this long after its last refresh ...
pub const PRESENCE_TTL: Duration = Duration::from_secs(6);
/// ... which happens this often: a live server's key never expires, a dead
/// one's is gone after at most `PRESENCE_TTL`.
pub const PRESENCE_REFRESH: Duration = Duration::from_secs(2);
/// Events kept while Redis is unreachable; beyond this the oldest are dropped
/// (presence is repaired by the next refresh; messages are in the history).
pub const MAX_UNPUBLISHED: usize = 10_000;
/// Pause before reconnecting to Redis after an error.
const RECONNECT_WAIT: Duration = Duration::from_millis(500);

/// Ends a presence value whose name has a host's connection on that server.
const HOST_MARK: &str = ";host";

pub fn presence_key(server: &str) -> String {
    format!("lanchat:presence:{server}")
}

/// An event as it travels on [`CHANNEL`]: with the id of its server.
#[derive(Serialize, Deserialize)]
struct Envelope {
    origin: String,
    #[serde(flatten)]
    event: Event,
}

/// The hub's handle on the outgoing queue. Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    shared: Arc<Outgoing>,
}

struct Outgoing {
    server: String,
    queue: Mutex<Queue>,
    wake: Condvar,
}

#[derive(Default)]
struct Queue {
    events: VecDeque<Event>,
    /// Events dropped from the front so far (when the queue overflowed).
    overflowed: usize,
    /// Set at shutdown: publish what is queued, remove our presence, stop.
    closing: bool,
    closed: bool,
}

impl Publisher {
    pub fn new() -> Publisher {
        let server = uuid::Uuid::new_v4().to_string();
        Publisher {
            shared: Arc::new(Outgoing {
                server,
                queue: Mutex::default(),
                wake: Condvar::new(),
            }),
        }
    }

    /// This server's id among the servers sharing the Redis.
    pub fn server_id(&self) -> &str {
        &self.shared.server
    }

    /// Queues an event for the other servers. Never blocks on Redis.
    pub fn publish(&self, event: Event) {
        let mut queue = crate::lock(&self.shared.queue);
        if queue.events.len() == MAX_UNPUBLISHED {
            queue.events.pop_front();
            queue.overflowed += 1;
            warn!("Redis unreachable for long: an event for the other servers was dropped");
        }
        queue.events.push_back(event);
        self.shared.wake.notify_all();
    }

    /// At shutdown: sends what is queued and removes this server's presence
    /// (so the others see its users leave at once), waiting at most `timeout`.
    pub fn close(&self, timeout: Duration) {
        let mut queue = crate::lock(&self.shared.queue);
        queue.closing = true;
        self.shared.wake.notify_all();
        let deadline = Instant::now() + timeout;
        drop(crate::wait_until(&self.shared.wake, queue, deadline, |q| {
            q.closed
        }));
    }
}

impl EventSink for Publisher {
    fn publish(&self, event: Event) {
        Publisher::publish(self, event)
    }
}

impl Default for Publisher {
    fn default() -> Self {
        Publisher::new()
    }
}

/// Starts the two cluster threads for `hub`, whose events `publisher` queues.
pub fn start(url: &str, hub: Arc<Hub>, publisher: Publisher) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| format!("cannot use Redis at {url}: {e}"))?;
    info!("cluster: this server is {}", publisher.server_id());
    let (pub_client, pub_hub) = (client.clone(), hub.clone());
    let server = publisher.server_id().to_string();
    let spawn = |name: &str, body: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(body)
            .map(drop)
            .map_err(|e| e.to_string())
    };
    spawn(
        "cluster-pub",
        Box::new(move || publish_loop(&pub_client, &pub_hub, &publisher.shared)),
    )?;
    spawn(
        "cluster-sub",
        Box::new(move || subscribe_loop(&client, &hub, &server)),
    )?;
    Ok(())
}

/// `cluster-pub`: sends queued events, refreshes presence, reads the others'.
fn publish_loop(client: &redis::Client, hub: &Hub, out: &Outgoing) {
    let mut connection = None;
    let mut next_refresh = Instant::now();
    // After an error (Redis restarted, perhaps empty), the other servers'
    // keys may not be rewritten yet: read them only from the next refresh
    // on, or their users would seem to leave and come back.
    let mut read_others = true;
    loop {
        let (events, overflowed, closing) = {
            let mut queue = crate::lock(&out.queue);
            while queue.events.is_empty() && !queue.closing && Instant::now() < next_refresh {
                let wait = next_refresh.saturating_duration_since(Instant::now());
                queue = out
                    .wake
                    .wait_timeout(queue, wait)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            (
                queue.events.iter().cloned().collect::<Vec<_>>(),
                queue.overflowed,
                queue.closing,
            )
        };
        let result = connection
            .take()
            .map(Ok)
            .unwrap_or_else(|| open_redis(client))
            .and_then(|mut c| {
                send_events(&mut c, &out.server, &events)?;
                if closing {
                    redis::cmd("DEL")
                        .arg(presence_key(&out.server))
                        .exec(&mut c)?;
                } else if Instant::now() >= next_refresh {
                    refresh_presence(&mut c, hub, &out.server, read_others)?;
                    read_others = true;
                    next_refresh = Instant::now() + PRESENCE_REFRESH;
                }
                Ok(c)
            });
        match result {
            Ok(c) => {
                connection = Some(c);
                let mut queue = crate::lock(&out.queue);
                // Forget what was published (the front of the queue, less
                // what overflow already dropped); newer events stay.
                let sent = events.len().saturating_sub(queue.overflowed - overflowed);
                queue.events.drain(..sent);
                if closing {
                    queue.closed = true;
                    out.wake.notify_all();
                    return;
                }
            }
            Err(e) => {
                debug!("cluster: Redis error ({e}); retrying");
                if closing {
                    crate::lock(&out.queue).closed = true;
                    out.wake.notify_all();
                    return;
                }
                std::thread::sleep(RECONNECT_WAIT);
                next_refresh = Instant::now();
                read_others = false;
            }
        }
    }
}

/// Publishes events in one pipeline. A presence event also updates this
/// server's presence key first, so the key is never older than what was
/// published (a server reading keys then hearing events sees no step back).
fn send_events(
    c: &mut redis::Connection,
    server: &str,
    events: &[Event],
) -> redis::RedisResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let key = presence_key(server);
    let mut pipe = redis::pipe();
    for event in events {
        if let Event::Presence {
            name,
            sessions,
            host,
        } = event
        {
            set_presence(&mut pipe, &key, name, sessions, *host);
        }
        let envelope = Envelope {
            origin: server.to_string(),
            event: event.clone(),
        };
        let json = serde_json::to_string(&envelope).expect("events are plain data");
        pipe.cmd("PUBLISH").arg(CHANNEL).arg(json).ignore();
    }
    pipe.exec(c)
}

/// Adds to `pipe` the commands that record `name`'s sessions on this server
/// in its presence key (removing the name when it has none), with a fresh TTL.
/// The value is the session ids, comma-separated, then [`HOST_MARK`] when
/// one of the connections is a host's.
fn set_presence(
    pipe: &mut redis::Pipeline,
    key: &str,
    name: &str,
    sessions: &[String],
    host: bool,
) {
    if sessions.is_empty() {
        pipe.cmd("HDEL").arg(key).arg(name).ignore();
    } else {
        let mark = if host { HOST_MARK } else { "" };
        pipe.cmd("HSET")
            .arg(key)
            .arg(name)
            .arg(format!("{}{mark}", sessions.join(",")))
            .ignore();
    }
    pipe.cmd("PEXPIRE")
        .arg(key)
        .arg(PRESENCE_TTL.as_millis() as u64)
        .ignore();
}

/// Rewrites this server's presence key (with a fresh TTL), then (with
/// `read_others`) reads every other server's and hands them to the hub.
fn refresh_presence(
    c: &mut redis::Connection,
    hub: &Hub,
    server: &str,
    read_others: bool,
) -> redis::RedisResult<()> {
    let key = presence_key(server);
    let mut pipe = redis::pipe();
    pipe.atomic().cmd("DEL").arg(&key).ignore();
    for (name, (sessions, host)) in hub.local_presence() {
        set_presence(&mut pipe, &key, &name, &sessions, host);
    }
    pipe.exec(c)?;
    if !read_others {
        return Ok(());
    }

    let read_at = Instant::now();
    let mut keys: Vec<String> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(presence_key("*"))
            .arg("COUNT")
            .arg(1000)
            .query(c)?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let mut snapshot: HashMap<String, RemotePresence> = HashMap::new();
    for other in keys.iter().filter(|k| **k != key) {
        let names: HashMap<String, String> = redis::cmd("HGETALL").arg(other).query(c)?;
        let id = other.trim_start_matches(&presence_key(""));
        let names = names
            .into_iter()
            .map(|(name, value)| {
                let (ids, host) = match value.strip_suffix(HOST_MARK) {
                    Some(ids) => (ids, true),
                    None => (value.as_str(), false),
                };
                let sessions = ids.split(',').map(str::to_string).collect();
                let heard = read_at;
                (
                    name,
                    Remote {
                        sessions,
                        host,
                        heard,
                    },
                )
            })
            .collect();
        snapshot.insert(id.to_string(), names);
    }
    hub.sync_presence(snapshot, read_at);
    Ok(())
}

/// `cluster-sub`: hands other servers' events to the hub, forever,
/// resubscribing after any error.
fn subscribe_loop(client: &redis::Client, hub: &Hub, server: &str) {
    loop {
        let result = open_redis(client).and_then(|mut connection| -> redis::RedisResult<()> {
            connection.set_read_timeout(None)?; // an idle channel is normal
            let mut pubsub = connection.as_pubsub();
            pubsub.subscribe(CHANNEL)?;
            loop {
                let payload: String = pubsub.get_message()?.get_payload()?;
                let Ok(envelope) = serde_json::from_str::<Envelope>(&payload) else {
                    warn!("cluster: ignoring an event that does not parse");
                    continue;
                };
                if envelope.origin == server {
                    continue;
                }
                match envelope.event {
                    Event::Room { message } => hub.relay_room(message),
                    Event::Private { message, inboxed } => hub.relay_private(message, inboxed),
                    Event::Deleted { id } => hub.relay_deleted(&id),
                    Event::Presence {
                        name,
                        sessions,
                        host,
                    } => hub.relay_presence(&envelope.origin, &name, sessions, host),
                    other => hub.relay_moderation(other),
                }
            }
        });
        if let Err(e) = result {
            debug!("cluster: subscription lost ({e}); resubscribing");
        }
        std::thread::sleep(RECONNECT_WAIT);
    }
}
