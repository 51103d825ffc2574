//! The Redis store: the key layout of `docs/PROTOCOL.md`, and a chat that keeps
//! going when Redis does not.
//!
//! | key                      | type   | holds |
//! |--------------------------|--------|-------|
//! | `lanchat:history`        | list   | room messages as JSON, oldest first, at most 100 |
//! | `lanchat:inbox:<name>`   | list   | undelivered private messages, at most 100 |
//! | `lanchat:session:<uuid>` | string | the session's name, 30-day TTL |
//! | `lanchat:users`          | set    | every name that ever logged in |
//!
//! **Writes never wait for Redis.** The hub appends under its lock, so
//! [`Store::append_history`] and [`Store::push_inbox`] (and the session and
//! user writes, for uniformity) only put the write in [`Pending`], in
//! memory, and wake the writer thread (`redis-writer`), which sends
//! everything pending in one pipeline. If Redis is down, the writes stay
//! pending and the writer retries with backoff; they land when it is back.
//! Each write is idempotent (appends skip a message id already in the list,
//! `SET`, `DEL`, `SADD`), so retrying a batch that may have half-landed is safe.
//!
//! Pending writes are bounded without losing what Redis would have kept:
//! only the last 100 history appends and the last 100 per inbox can matter
//! (the lists are trimmed to 100), so older ones are dropped from the
//! buffer; session and user writes are capped at [`MAX_PENDING_RECORDS`]
//! (past that the oldest are dropped, with an error in the log: those
//! sessions still work on this server, but would not survive a restart).
//!
//! **Reads go to Redis, with a short timeout**, and fall back on what this
//! process knows (its own sessions and users, in [`Cache`]) while Redis is
//! unreachable: people already logged in can still reconnect during an outage.
//!
//! An appended message and the trim to 100 are one Lua script: Redis runs
//! it atomically, so the list never holds 101, and concurrent appends lose
//! nothing. Taking an inbox is `LRANGE` + `DEL` in one `MULTI`: each message
//! is taken by exactly one connection.

use super::{HISTORY_LEN, INBOX_LEN, Store};
use super::{SESSION_TTL, Session};
use crate::lock;
use crate::protocol::{PrivateMessage, RoomMessage};
use log::{error, info, warn};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const HISTORY_KEY: &str = "lanchat:history";
pub const USERS_KEY: &str = "lanchat:users";

pub fn inbox_key(name: &str) -> String {
    format!("lanchat:inbox:{name}")
}

pub fn session_key(id: &str) -> String {
    format!("lanchat:session:{id}")
}

/// Longest we wait for Redis on one connect or command. A Redis that does
/// not answer in this time counts as down.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// Retry delays while Redis is down: doubling from the first to the last.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Session and user writes kept while Redis is down (see the module doc).
pub const MAX_PENDING_RECORDS: usize = 10_000;

/// `RPUSH` unless a message with this id is already in the list, then
/// `LTRIM` to the last `ARGV[3]`: atomic (Redis runs a script alone), and
/// idempotent (a retried append is not doubled).
const APPEND_SCRIPT: &str = r#"
local items = redis.call('LRANGE', KEYS[1], 0, -1)
for _, item in ipairs(items) do
  if string.find(item, ARGV[2], 1, true) then return 0 end
end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[3]), -1)
return 1
"#;

pub struct RedisStore {
    url: String,
    client: redis::Client,
    shared: Arc<Shared>,
    /// Idle connections for reads (a connection serves one thread at a time).
    readers: Mutex<Vec<redis::Connection>>,
}

/// What the writer thread and the store share.
struct Shared {
    pending: Mutex<Pending>,
    /// Signalled when a write is added (and when the writer has drained).
    changed: Condvar,
    /// Held by the writer while it sends a batch, and by `take_inbox`, so
    /// that an inbox message is either still pending or already in Redis.
    in_flight: Mutex<()>,
    /// Since when Redis has been unreachable, if it is.
    outage: Mutex<Option<Instant>>,
    cache: Mutex<Cache>,
}

/// Writes accepted but not yet in Redis. Each has a sequence number, so
/// the writer can remove exactly what it wrote while new writes arrive.
#[derive(Default)]
struct Pending {
    next_seq: u64,
    history: VecDeque<(u64, Append)>,
    inboxes: BTreeMap<String, VecDeque<(u64, Append)>>,
    records: VecDeque<(u64, Record)>,
}

/// A JSON message and its id (for the idempotence check).
#[derive(Clone)]
struct Append {
    id: String,
    json: String,
}

#[derive(Clone)]
enum Record {
    SessionCreated { id: String, name: String },
    SessionEnded { id: String },
    UserAdded { name: String },
}

/// What this process knows without asking Redis.
#[derive(Default)]
struct Cache {
    sessions: HashMap<String, (String, Instant)>,
    ended: HashSet<String>,
    users: HashSet<String>,
}

type Result<T> = redis::RedisResult<T>;

impl RedisStore {
    /// Connects and checks that Redis answers; the error names the URL.
    pub fn connect(url: &str) -> std::result::Result<RedisStore, String> {
        let unreachable = |e: redis::RedisError| format!("cannot reach Redis at {url}: {e}");
        let client = redis::Client::open(url).map_err(unreachable)?;
        let mut connection = open_redis(&client).map_err(unreachable)?;
        redis::cmd("PING")
            .query::<String>(&mut connection)
            .map_err(unreachable)?;
        let store = RedisStore {
            url: url.to_string(),
            client: client.clone(),
            shared: Arc::new(Shared {
                pending: Mutex::new(Pending::default()),
                changed: Condvar::new(),
                in_flight: Mutex::new(()),
                outage: Mutex::new(None),
                cache: Mutex::new(Cache::default()),
            }),
            readers: Mutex::new(vec![connection]),
        };
        let shared = store.shared.clone();
        let url = url.to_string();
        std::thread::Builder::new()
            .name("redis-writer".into())
            .spawn(move || writer(client, url, shared))
            .map_err(|e| e.to_string())?;
        Ok(store)
    }

    /// Runs `query` on a pooled connection; `None` (and the outage noted)
    /// when Redis does not answer. While an outage is known, does not even
    /// try: the writer thread finds out when Redis is back.
    fn read<T>(&self, query: impl FnOnce(&mut redis::Connection) -> Result<T>) -> Option<T> {
        if self.shared.in_outage() {
            return None;
        }
        let pooled = lock(&self.readers).pop();
        let mut connection = match pooled.map(Ok).unwrap_or_else(|| open_redis(&self.client)) {
            Ok(connection) => connection,
            Err(e) => return self.shared.failed(&self.url, &e),
        };
        match query(&mut connection) {
            Ok(value) => {
                lock(&self.readers).push(connection);
                Some(value)
            }
            Err(e) => self.shared.failed(&self.url, &e),
        }
    }

    fn queue(&self, add: impl FnOnce(&mut Pending, u64)) {
        let mut pending = lock(&self.shared.pending);
        let seq = pending.next_seq;
        pending.next_seq += 1;
        add(&mut pending, seq);
        self.shared.changed.notify_all();
    }

    fn queue_record(&self, record: Record) {
        self.queue(|pending, seq| {
            if pending.records.len() == MAX_PENDING_RECORDS {
                pending.records.pop_front();
                error!("Redis has been down too long: a session or user write was dropped");
            }
            pending.records.push_back((seq, record));
        });
    }

    /// Waits until every pending write is in Redis, or `timeout` passes.
    /// Returns how many are still pending.
    pub fn flush(&self, timeout: Duration) -> usize {
        let pending = lock(&self.shared.pending);
        let deadline = Instant::now() + timeout;
        crate::wait_until(&self.shared.changed, pending, deadline, |p| p.len() == 0).len()
    }
}

impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn healthy(&self) -> bool {
        !self.shared.in_outage()
    }

    fn load_history(&self) -> Vec<RoomMessage> {
        let raw: Vec<String> = self
            .read(|c| {
                redis::cmd("LRANGE")
                    .arg(HISTORY_KEY)
                    .arg(0)
                    .arg(-1)
                    .query(c)
            })
            .unwrap_or_default();
        raw.iter().filter_map(|json| parse(json)).collect()
    }

    fn append_history(&self, message: &RoomMessage) {
        let append = Append {
            id: message.id.clone(),
            json: to_json(message),
        };
        self.queue(|pending, seq| {
            if pending.history.len() == HISTORY_LEN {
                pending.history.pop_front(); // would be trimmed away anyway
            }
            pending.history.push_back((seq, append));
        });
    }

    fn push_inbox(&self, message: &PrivateMessage) {
        let append = Append {
            id: message.id.clone(),
            json: to_json(message),
        };
        self.queue(|pending, seq| {
            let inbox = pending.inboxes.entry(message.to.clone()).or_default();
            if inbox.len() == INBOX_LEN {
                inbox.pop_front(); // would be trimmed away anyway
            }
            inbox.push_back((seq, append));
        });
    }

    fn take_inbox(&self, name: &str) -> Vec<PrivateMessage> {
        let _no_write_in_flight = lock(&self.shared.in_flight);
        let key = inbox_key(name);
        let stored: Vec<String> = self
            .read(|c| {
                let (items, ()): (Vec<String>, ()) = redis::pipe()
                    .atomic()
                    .cmd("LRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .cmd("DEL")
                    .arg(&key)
                    .ignore()
                    .query(c)
                    .map(|(items,): (Vec<String>,)| (items, ()))?;
                Ok(items)
            })
            .unwrap_or_default();
        // Messages not yet written are newer than the stored ones.
        let waiting = lock(&self.shared.pending)
            .inboxes
            .remove(name)
            .unwrap_or_default();
        let mut messages: Vec<PrivateMessage> =
            stored.iter().filter_map(|json| parse(json)).collect();
        messages.extend(waiting.iter().filter_map(|(_, append)| parse(&append.json)));
        let skip = messages.len().saturating_sub(INBOX_LEN);
        messages.drain(..skip);
        messages
    }

    fn create_session(&self, session: &Session) {
        let mut cache = lock(&self.shared.cache);
        cache.sessions.insert(
            session.id.clone(),
            (session.name.clone(), Instant::now() + SESSION_TTL),
        );
        cache.ended.remove(&session.id);
        drop(cache);
        self.queue_record(Record::SessionCreated {
            id: session.id.clone(),
            name: session.name.clone(),
        });
    }

    fn session_name(&self, id: &str) -> Option<String> {
        if lock(&self.shared.cache).ended.contains(id) {
            return None;
        }
        match self.read(|c| {
            redis::cmd("GET")
                .arg(session_key(id))
                .query::<Option<String>>(c)
        }) {
            Some(Some(name)) => {
                let expires = Instant::now() + SESSION_TTL;
                lock(&self.shared.cache)
                    .sessions
                    .insert(id.to_string(), (name.clone(), expires));
                Some(name)
            }
            // Not in Redis: maybe its write is still pending.
            Some(None) | None => {
                let cache = lock(&self.shared.cache);
                let (name, expires) = cache.sessions.get(id)?;
                (*expires > Instant::now()).then(|| name.clone())
            }
        }
    }

    fn end_session(&self, id: &str) {
        let mut cache = lock(&self.shared.cache);
        cache.sessions.remove(id);
        cache.ended.insert(id.to_string());
        drop(cache);
        self.queue_record(Record::SessionEnded { id: id.to_string() });
    }

    fn add_user(&self, name: &str) {
        lock(&self.shared.cache).users.insert(name.to_string());
        self.queue_record(Record::UserAdded {
            name: name.to_string(),
        });
    }

    fn is_known_user(&self, name: &str) -> bool {
        if lock(&self.shared.cache).users.contains(name) {
            return true;
        }
        let known = self.read(|c| {
            redis::cmd("SISMEMBER")
                .arg(USERS_KEY)
                .arg(name)
                .query::<bool>(c)
        });
        if known == Some(true) {
            lock(&self.shared.cache).users.insert(name.to_string());
        }
        known.unwrap_or(false)
    }

    fn flush(&self, timeout: Duration) -> usize {
        RedisStore::flush(self, timeout)
    }
}

impl Pending {
    fn len(&self) -> usize {
        self.history.len()
            + self.records.len()
            + self.inboxes.values().map(VecDeque::len).sum::<usize>()
    }

    /// Every pending write as one pipeline, and the last sequence number in it.
    fn batch(&self) -> Option<(redis::Pipeline, u64)> {
        let last = self.next_seq.checked_sub(1)?;
        if self.len() == 0 {
            return None;
        }
        let mut pipe = redis::pipe();
        for (_, append) in &self.history {
            append_command(&mut pipe, HISTORY_KEY, append, HISTORY_LEN);
        }
        for (name, inbox) in &self.inboxes {
            for (_, append) in inbox {
                append_command(&mut pipe, &inbox_key(name), append, INBOX_LEN);
            }
        }
        for (_, record) in &self.records {
            match record {
                Record::SessionCreated { id, name } => {
                    pipe.cmd("SET")
                        .arg(session_key(id))
                        .arg(name)
                        .arg("EX")
                        .arg(SESSION_TTL.as_secs())
                        .ignore();
                }
                Record::SessionEnded { id } => {
                    pipe.cmd("DEL").arg(session_key(id)).ignore();
                }
                Record::UserAdded { name } => {
                    pipe.cmd("SADD").arg(USERS_KEY).arg(name).ignore();
                }
            }
        }
        Some((pipe, last))
    }

    /// Forgets every write up to `last`, now that Redis has it.
    fn written(&mut self, last: u64) {
        self.history.retain(|(seq, _)| *seq > last);
        self.records.retain(|(seq, _)| *seq > last);
        for inbox in self.inboxes.values_mut() {
            inbox.retain(|(seq, _)| *seq > last);
        }
        self.inboxes.retain(|_, inbox| !inbox.is_empty());
    }
}

fn append_command(pipe: &mut redis::Pipeline, key: &str, append: &Append, keep: usize) {
    // The id is searched as `"id":"<uuid>"` inside the stored JSON.
    let needle = format!("\"id\":\"{}\"", append.id);
    pipe.cmd("EVAL")
        .arg(APPEND_SCRIPT)
        .arg(1)
        .arg(key)
        .arg(&append.json)
        .arg(needle)
        .arg(keep)
        .ignore();
}

impl Shared {
    fn in_outage(&self) -> bool {
        lock(&self.outage).is_some()
    }

    /// Notes a failure; the first of an outage is logged as a warning.
    fn failed<T>(&self, url: &str, error: &redis::RedisError) -> Option<T> {
        let mut outage = lock(&self.outage);
        if outage.is_none() {
            warn!("Redis at {url} is unreachable ({error}): chat goes on, writes wait in memory");
            *outage = Some(Instant::now());
        }
        None
    }

    fn recovered(&self, url: &str, written: usize) {
        if let Some(since) = lock(&self.outage).take() {
            info!(
                "Redis at {url} is back after {:.1?}; {written} pending writes sent",
                since.elapsed()
            );
        }
    }
}

/// The writer thread: sends whatever is pending, one pipeline at a time;
/// while Redis is down, retries (and probes) with backoff.
fn writer(client: redis::Client, url: String, shared: Arc<Shared>) {
    let mut connection: Option<redis::Connection> = None;
    let mut retry = RETRY_FIRST;
    loop {
        let (batch, count) = {
            let mut pending = lock(&shared.pending);
            while pending.len() == 0 && !shared.in_outage() {
                pending = shared
                    .changed
                    .wait(pending)
                    .unwrap_or_else(|p| p.into_inner());
            }
            (pending.batch(), pending.len())
        };
        let in_flight = lock(&shared.in_flight);
        let result = connection
            .take()
            .map(Ok)
            .unwrap_or_else(|| open_redis(&client))
            .and_then(|mut c| {
                match &batch {
                    Some((pipe, _)) => pipe.exec(&mut c)?,
                    None => redis::cmd("PING").exec(&mut c)?, // probing during an outage
                }
                Ok(c)
            });
        match result {
            Ok(c) => {
                connection = Some(c);
                retry = RETRY_FIRST;
                let mut pending = lock(&shared.pending);
                if let Some((_, last)) = batch {
                    pending.written(last);
                }
                drop(in_flight);
                shared.recovered(&url, count);
                shared.changed.notify_all(); // for flush()
            }
            Err(e) => {
                drop(in_flight);
                shared.failed::<()>(&url, &e);
                std::thread::sleep(retry);
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}

/// A connection with [`REDIS_TIMEOUT`] on connecting, reading and writing.
pub fn open_redis(client: &redis::Client) -> Result<redis::Connection> {
    let connection = client.get_connection_with_timeout(REDIS_TIMEOUT)?;
    connection.set_read_timeout(Some(REDIS_TIMEOUT))?;
    connection.set_write_timeout(Some(REDIS_TIMEOUT))?;
    Ok(connection)
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("messages are plain data and always serialize")
}

/// A stored message; one that does not parse (edited by hand?) is skipped.
fn parse<T: serde::de::DeserializeOwned>(json: &str) -> Option<T> {
    serde_json::from_str(json)
        .map_err(|e| warn!("skipping a stored message that does not parse: {e}"))
        .ok()
}
