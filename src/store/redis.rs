//! The Redis store: the key layout of `docs/PROTOCOL.md`, a message stored
//! before anyone sees it, and a chat that keeps going when Redis does not.
//!
//! | key                            | type   | holds |
//! |--------------------------------|--------|-------|
//! | `lanchat:history`              | list   | room messages as JSON, oldest first, at most 100 |
//! | `lanchat:inbox:<name>`         | list   | undelivered private messages, at most 100 |
//! | `lanchat:session:<uuid>`       | string | the session's name, 30-day TTL |
//! | `lanchat:users`                | set    | the claimed names (display forms) |
//! | `lanchat:seq`                  | string | the last seq given (`INCR`), shared by every server |
//! | `lanchat:history:trimmed`      | string | the highest seq of a room message trimmed from the history (for `gap`) |
//! | `lanchat:conversation:<name>`  | list   | the last 100 private messages `<name>` sent or received |
//! | `lanchat:claim:<key>`          | hash   | a claimed name: `name` (display form), `password` (argon2 hash, if any) |
//! | `lanchat:claim:<key>:sessions` | set    | the session ids of a claimed name |
//! | `lanchat:pwfail:<key>`         | string | wrong passwords for a name in the current minute (60 s TTL) |
//! | `lanchat:mode`                 | string | the class mode, as JSON |
//! | `lanchat:mutes`                | hash   | display name -> end of the mute (ms since the epoch) |
//! | `lanchat:bans`                 | hash   | key -> display name of the banned |
//! | `lanchat:host_key`             | string | the host link's key, shared by every server |
//! | `lanchat:file:<id>`            | string | an uploaded file's bytes |
//! | `lanchat:file:<id>:meta`       | string | its description (`FileRef` as JSON) |
//! | `lanchat:files`                | list   | the files' ids, oldest first (evicted first past `--files-cap`) |
//! | `lanchat:files:sizes`          | hash   | id -> size in bytes |
//!
//! **Messages: group commit.** The fan-out thread hands [`Store::commit`]
//! everything the hub accepted since its last batch; one Lua script (one
//! round trip, atomic in Redis) gives each message its seq (`INCR`) and
//! appends it to the history, conversations and inbox, trimmed to 100. Only
//! when Redis has answered does the fan-out thread send the messages, the
//! sender's copy included. A busy room makes bigger batches, not more round
//! trips; no lock is held meanwhile.
//!
//! **While Redis is unreachable** (a command fails or takes over
//! [`REDIS_TIMEOUT`]), commits do not wait: messages get a seq from this
//! server's counter and their writes go to [`Pending`], in memory, which the
//! writer thread (`redis-writer`) sends when Redis is back (raising
//! `lanchat:seq` past the seqs given meanwhile). The promise "stored before
//! seen" is suspended until then, and `/healthz` says `degraded`. Pending
//! writes are bounded without losing what Redis would keep: the last 100
//! per list; session and user writes are capped at [`MAX_PENDING_RECORDS`].
//! Each pending write is idempotent (appends skip an id already in the
//! list), so a batch that may have half-landed is simply sent again.
//!
//! **Sessions** are written to Redis at once (falling back on pending), and
//! read from Redis: a session that ended on another server is refused at
//! once. Only while Redis is unreachable are they read from the cache
//! (people already logged in here can reconnect during an outage); the
//! cache keeps each session's true expiry and is bounded ([`MAX_CACHED`]:
//! sessions that came back here are kept over fresh logins, see
//! `sessions.rs`).
//!
//! **What this process keeps is bounded** whatever clients do: the session
//! cache ([`MAX_CACHED`]), idle connections ([`MAX_IDLE_READERS`]; more
//! threads may read at once, and their extra connections are closed after),
//! downloaded files (the files cap, each at least
//! [`super::MIN_FILE_COST`]), and what waits for Redis during an outage
//! (the last 100 per list, [`MAX_PENDING_RECORDS`] session writes).
//!
//! Concurrency rule: `in_flight` is held while the writer sends a batch
//! and while `take_inbox` reads, so an inbox message is either pending or
//! in Redis, never in between; it is always taken *before* `pending` (the
//! lock table in `src/lib.rs`).

use super::sessions::Sessions;
use super::{CONVERSATION_LEN, HISTORY_LEN, INBOX_LEN, SESSION_TTL, Session, Store, Write};
use super::{Claim, MIN_FILE_COST, Moderation};
use crate::lock;
use crate::names::{self, FAILURE_WINDOW_SECS};
use crate::protocol::{FileRef, Mode, PrivateMessage, RoomMessage};
use log::{error, info, warn};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::time::{Duration, Instant};

pub const HISTORY_KEY: &str = "lanchat:history";
pub const USERS_KEY: &str = "lanchat:users";
pub const SEQ_KEY: &str = "lanchat:seq";
pub const TRIMMED_KEY: &str = "lanchat:history:trimmed";

pub fn inbox_key(name: &str) -> String {
    format!("lanchat:inbox:{name}")
}

pub fn conversation_key(name: &str) -> String {
    format!("lanchat:conversation:{name}")
}

pub fn session_key(id: &str) -> String {
    format!("lanchat:session:{id}")
}

pub fn claim_key(key: &str) -> String {
    format!("lanchat:claim:{key}")
}

fn claim_sessions_key(key: &str) -> String {
    format!("lanchat:claim:{key}:sessions")
}

pub const MODE_KEY: &str = "lanchat:mode";
pub const MUTES_KEY: &str = "lanchat:mutes";
pub const BANS_KEY: &str = "lanchat:bans";
pub const HOST_KEY_KEY: &str = "lanchat:host_key";

pub fn file_key(id: &str) -> String {
    format!("lanchat:file:{id}")
}

fn file_meta_key(id: &str) -> String {
    format!("lanchat:file:{id}:meta")
}

/// Keeps a file (KEYS: its bytes, its meta; ARGV: bytes, meta, id, size,
/// cap), then drops the oldest files while their sizes add up past the cap.
const PUT_FILE_SCRIPT: &str = r#"
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('RPUSH', 'lanchat:files', ARGV[3])
redis.call('HSET', 'lanchat:files:sizes', ARGV[3], ARGV[4])
local total = 0
for _, size in ipairs(redis.call('HVALS', 'lanchat:files:sizes')) do total = total + tonumber(size) end
while total > tonumber(ARGV[5]) do
  local oldest = redis.call('LPOP', 'lanchat:files')
  if not oldest then break end
  total = total - (tonumber(redis.call('HGET', 'lanchat:files:sizes', oldest)) or 0)
  redis.call('HDEL', 'lanchat:files:sizes', oldest)
  redis.call('DEL', 'lanchat:file:' .. oldest, 'lanchat:file:' .. oldest .. ':meta')
end
return 0
"#;

/// Longest we wait for Redis on one connect or command. A Redis that does
/// not answer in this time counts as unreachable (the contract's second).
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// Retry delays while Redis is down: doubling from the first to the last.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Session writes kept while Redis is down (see the module doc).
pub const MAX_PENDING_RECORDS: usize = 10_000;
/// Bytes of downloaded files kept here until a `put_file` says the cap.
const DEFAULT_FILE_CACHE_BYTES: u64 = 256 * 1024 * 1024;
/// Sessions remembered for outages (about 200 bytes each). Past it, the
/// oldest not seen here since its login goes first (see `sessions.rs`), so
/// a login flood cannot push out the people who connected here. It is only
/// a fallback: Redis has them all.
pub const MAX_CACHED: usize = 10_000;
/// Idle connections kept for reuse. Threads that read at once each take
/// one (a burst opens more); one given back past this many is closed, so
/// a burst of thousands of threads leaves a few open connections behind,
/// not thousands (and Redis serves 10,000 clients at most, for every
/// server of the chat together).
pub const MAX_IDLE_READERS: usize = 16;

/// The commit script: for each write in ARGV (a kind, then its fields),
/// gives messages their seq and appends them where they belong. Redis runs
/// a script alone, so seqs and list order agree across every server.
/// A message's JSON comes in two halves around its seq.
static COMMIT_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(&COMMIT_SOURCE));
static COMMIT_SOURCE: LazyLock<String> = LazyLock::new(|| {
    format!(
        r#"
local function append(key, json, keep)
  redis.call('RPUSH', key, json)
  redis.call('LTRIM', key, -keep, -1)
end
local seqs = {{}}
local i = 1
while i <= #ARGV do
  local kind = ARGV[i]
  if kind == 'room' then
    local seq = redis.call('INCR', '{SEQ_KEY}')
    redis.call('RPUSH', '{HISTORY_KEY}', ARGV[i+1] .. seq .. ARGV[i+2])
    while redis.call('LLEN', '{HISTORY_KEY}') > {HISTORY_LEN} do
      local old = redis.call('LPOP', '{HISTORY_KEY}')
      local trimmed = tonumber(string.match(old, '"seq":(%d+)')) or 0
      if trimmed > (tonumber(redis.call('GET', '{TRIMMED_KEY}')) or 0) then
        redis.call('SET', '{TRIMMED_KEY}', trimmed)
      end
    end
    seqs[#seqs + 1] = seq
    i = i + 3
  elseif kind == 'private' then
    -- head, tail, the sender's conversation key, the recipient's ('' when
    -- the same), the inbox key ('' when not inboxed)
    local seq = redis.call('INCR', '{SEQ_KEY}')
    local json = ARGV[i+1] .. seq .. ARGV[i+2]
    append(ARGV[i+3], json, {CONVERSATION_LEN})
    if ARGV[i+4] ~= '' then append(ARGV[i+4], json, {CONVERSATION_LEN}) end
    if ARGV[i+5] ~= '' then append(ARGV[i+5], json, {INBOX_LEN}) end
    seqs[#seqs + 1] = seq
    i = i + 6
  elseif kind == 'clear' then
    redis.call('DEL', '{HISTORY_KEY}')
    seqs[#seqs + 1] = 0
    i = i + 1
  else
    -- 'append' (key, json, id needle, keep) or 'delete' (id needle)
    local key, needle = '{HISTORY_KEY}', ARGV[i+1]
    if kind == 'append' then key, needle = ARGV[i+1], ARGV[i+3] end
    local found = nil
    for _, item in ipairs(redis.call('LRANGE', key, 0, -1)) do
      if string.find(item, needle, 1, true) then found = item break end
    end
    if kind == 'append' then
      if not found then append(key, ARGV[i+2], tonumber(ARGV[i+4])) end
      i = i + 5
    else
      if found then redis.call('LREM', key, 1, found) end
      i = i + 2
    end
    seqs[#seqs + 1] = 0
  end
end
return seqs
"#
    )
});

pub struct RedisStore {
    url: String,
    client: redis::Client,
    shared: Arc<Shared>,
    /// Idle connections for reads and commits (one thread at a time
    /// each), at most [`MAX_IDLE_READERS`].
    readers: Mutex<Vec<redis::Connection>>,
    /// The highest seq this server has given or seen given: the next one
    /// while Redis is unreachable.
    last_seq: AtomicU64,
    /// Files downloaded here, shared by every download (at most the files
    /// cap in all: see [`RedisStore::file`]).
    files: Mutex<FileCache>,
}

/// Recently served files' bytes, oldest first.
#[derive(Default)]
struct FileCache {
    files: VecDeque<(String, Arc<[u8]>)>,
    bytes: u64,
    /// The files cap last given to `put_file` (the cache's bound too).
    cap: u64,
}

/// What the writer thread and the store share.
struct Shared {
    pending: Mutex<Pending>,
    /// Signalled when a write is added (and when the writer has drained).
    changed: Condvar,
    /// See the module doc: taken before `pending`, never after.
    in_flight: Mutex<()>,
    /// Since when Redis has been unreachable, if it is.
    outage: Mutex<Option<Instant>>,
    /// Sessions known here, for outages (see the module doc).
    cache: Mutex<Sessions>,
    /// A test hook: see [`RedisStore::pause_writer`].
    pause_for_test: Mutex<Option<(Sender<()>, Receiver<()>)>>,
}

/// Writes accepted but not yet in Redis. Each has a ticket, so the writer
/// can remove exactly what it wrote while new writes arrive.
#[derive(Default)]
struct Pending {
    next_ticket: u64,
    /// Every list append (history, inboxes, conversations), per key, the
    /// last of each list only.
    appends: BTreeMap<String, VecDeque<(u64, Append)>>,
    /// Room messages to delete from the history (by id).
    deletes: VecDeque<(u64, String)>,
    records: VecDeque<(u64, Record)>,
    /// `lanchat:seq` must be raised to at least this (seqs given here
    /// while Redis was away).
    seq_floor: u64,
    /// A host cleared the history while Redis was away.
    clear_history: bool,
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
}

type Result<T> = redis::RedisResult<T>;

impl RedisStore {
    /// Connects and checks that Redis answers; the error names the URL.
    pub fn connect(url: &str) -> std::result::Result<RedisStore, String> {
        let unreachable = |e: redis::RedisError| format!("cannot reach Redis at {url}: {e}");
        let client = redis::Client::open(url).map_err(unreachable)?;
        let mut connection = open_redis(&client).map_err(unreachable)?;
        let last_seq: Option<u64> = redis::cmd("GET")
            .arg(SEQ_KEY)
            .query(&mut connection)
            .map_err(unreachable)?;
        let store = RedisStore {
            url: url.to_string(),
            client: client.clone(),
            shared: Arc::new(Shared {
                pending: Mutex::new(Pending::default()),
                changed: Condvar::new(),
                in_flight: Mutex::new(()),
                outage: Mutex::new(None),
                cache: Mutex::new(Sessions::new(MAX_CACHED)),
                pause_for_test: Mutex::new(None),
            }),
            readers: Mutex::new(vec![connection]),
            last_seq: AtomicU64::new(last_seq.unwrap_or(0)),
            files: Mutex::new(FileCache {
                cap: DEFAULT_FILE_CACHE_BYTES,
                ..FileCache::default()
            }),
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
                let mut idle = lock(&self.readers);
                if idle.len() < MAX_IDLE_READERS {
                    idle.push(connection);
                } // else dropped, which closes it
                Some(value)
            }
            Err(e) => self.shared.failed(&self.url, &e),
        }
    }

    fn queue(&self, add: impl FnOnce(&mut Pending, u64)) {
        let mut pending = lock(&self.shared.pending);
        let ticket = pending.ticket();
        add(&mut pending, ticket);
        self.shared.changed.notify_all();
    }

    fn queue_record(&self, record: Record) {
        self.queue(|pending, ticket| {
            if pending.records.len() == MAX_PENDING_RECORDS {
                pending.records.pop_front();
                error!("Redis has been down too long: a session write was dropped");
            }
            pending.records.push_back((ticket, record));
        });
    }

    /// Commits `writes` with one run of the commit script; false if Redis
    /// did not answer (nothing can be assumed of what landed then).
    fn commit_now(&self, writes: &mut [Write]) -> bool {
        let mut invocation = COMMIT_SCRIPT.prepare_invoke();
        for write in writes.iter() {
            match write {
                Write::Room(message) => {
                    let json = to_json(message);
                    let (head, tail) = split_at_seq(&json);
                    invocation.arg("room").arg(head).arg(tail);
                }
                Write::Private { message, inboxed } => {
                    let json = to_json(message);
                    let (head, tail) = split_at_seq(&json);
                    let other = if message.to != message.from {
                        conversation_key(&message.to)
                    } else {
                        String::new() // one conversation: oneself
                    };
                    let inbox = inboxed.then(|| inbox_key(&message.to)).unwrap_or_default();
                    invocation
                        .arg("private")
                        .arg(head)
                        .arg(tail)
                        .arg(conversation_key(&message.from))
                        .arg(other)
                        .arg(inbox);
                }
                Write::Inbox(message) => {
                    invocation
                        .arg("append")
                        .arg(inbox_key(&message.to))
                        .arg(to_json(message))
                        .arg(id_needle(&message.id))
                        .arg(INBOX_LEN);
                }
                Write::Delete { id } => {
                    invocation.arg("delete").arg(id_needle(id));
                }
                Write::Clear => {
                    invocation.arg("clear");
                }
            }
        }
        let Some(seqs) = self.read(|c| invocation.invoke::<Vec<u64>>(c)) else {
            return false;
        };
        for (write, seq) in writes.iter_mut().zip(seqs) {
            match write {
                Write::Room(message) => message.seq = seq,
                Write::Private { message, .. } => message.seq = seq,
                Write::Inbox(_) | Write::Delete { .. } | Write::Clear => continue,
            }
            self.last_seq.fetch_max(seq, Ordering::SeqCst);
        }
        true
    }

    /// Keeps `writes` pending (Redis is unreachable): seqs from this server's
    /// counter, and every append for the writer thread.
    fn commit_later(&self, writes: &mut [Write]) {
        for write in writes.iter_mut() {
            let append = |pending: &mut Pending, key: String, id: &str, json: String, keep| {
                let ticket = pending.ticket();
                let list = pending.appends.entry(key).or_default();
                if list.len() == keep {
                    list.pop_front(); // would be trimmed away anyway
                }
                let id = id.to_string();
                list.push_back((ticket, Append { id, json }));
            };
            let mut pending = lock(&self.shared.pending);
            match write {
                Write::Room(message) => {
                    message.seq = self.last_seq.fetch_add(1, Ordering::SeqCst) + 1;
                    pending.seq_floor = message.seq;
                    let json = to_json(message);
                    append(
                        &mut pending,
                        HISTORY_KEY.into(),
                        &message.id,
                        json,
                        HISTORY_LEN,
                    );
                }
                Write::Private { message, inboxed } => {
                    message.seq = self.last_seq.fetch_add(1, Ordering::SeqCst) + 1;
                    pending.seq_floor = message.seq;
                    let json = to_json(message);
                    let mut keys = vec![conversation_key(&message.from)];
                    if message.to != message.from {
                        keys.push(conversation_key(&message.to));
                    }
                    for key in keys {
                        append(
                            &mut pending,
                            key,
                            &message.id,
                            json.clone(),
                            CONVERSATION_LEN,
                        );
                    }
                    if *inboxed {
                        append(
                            &mut pending,
                            inbox_key(&message.to),
                            &message.id,
                            json,
                            INBOX_LEN,
                        );
                    }
                }
                Write::Inbox(message) => {
                    let json = to_json(message);
                    append(
                        &mut pending,
                        inbox_key(&message.to),
                        &message.id,
                        json,
                        INBOX_LEN,
                    );
                }
                Write::Delete { id } => {
                    if let Some(history) = pending.appends.get_mut(HISTORY_KEY) {
                        history.retain(|(_, append)| append.id != *id);
                    }
                    let ticket = pending.ticket();
                    pending.deletes.push_back((ticket, id.clone()));
                }
                Write::Clear => {
                    // Rare, and during an outage: the history is emptied
                    // when Redis is back (by deleting what it holds then).
                    pending.appends.remove(HISTORY_KEY);
                    pending.clear_history = true;
                }
            }
        }
        self.shared.changed.notify_all();
    }

    /// Whether a login's session write is still waiting for Redis.
    fn session_pending(&self, id: &str) -> Option<String> {
        lock(&self.shared.pending)
            .records
            .iter()
            .rev()
            .find_map(|(_, record)| match record {
                Record::SessionCreated { id: pending, name } if pending == id => Some(name.clone()),
                _ => None,
            })
    }

    /// For tests: the next time the writer has read what is pending, it
    /// says so on `paused` and waits for `resume` before writing it (to
    /// widen the window a race with `take_inbox` would need).
    #[doc(hidden)]
    pub fn pause_writer(&self, paused: Sender<()>, resume: Receiver<()>) {
        *lock(&self.shared.pause_for_test) = Some((paused, resume));
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

    fn load_history(&self) -> (Vec<RoomMessage>, u64) {
        let read = self.read(|c| {
            redis::pipe()
                .cmd("LRANGE")
                .arg(HISTORY_KEY)
                .arg(0)
                .arg(-1)
                .cmd("GET")
                .arg(TRIMMED_KEY)
                .query::<(Vec<String>, Option<u64>)>(c)
        });
        let (raw, trimmed) = read.unwrap_or_default();
        let messages = raw.iter().filter_map(|json| parse(json)).collect();
        (messages, trimmed.unwrap_or(0))
    }

    fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::SeqCst)
    }

    fn commit(&self, writes: &mut [Write]) {
        // Messages pending from an outage go first, to keep the lists in
        // order: until the writer has sent them, new ones wait behind them.
        let behind = lock(&self.shared.pending).has_messages();
        if behind || !self.commit_now(writes) {
            self.commit_later(writes);
        }
    }

    fn conversation(&self, name: &str) -> Vec<PrivateMessage> {
        let key = conversation_key(name);
        let stored: Vec<String> = self
            .read(|c| redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query(c))
            .unwrap_or_default();
        let pending = lock(&self.shared.pending);
        let waiting = pending.appends.get(&key).into_iter().flatten();
        let mut messages: Vec<PrivateMessage> = stored
            .iter()
            .chain(waiting.map(|(_, append)| &append.json))
            .filter_map(|json| parse(json))
            .collect();
        messages.drain(..messages.len().saturating_sub(CONVERSATION_LEN));
        messages
    }

    fn take_inbox(&self, name: &str) -> Vec<PrivateMessage> {
        let _no_write_in_flight = lock(&self.shared.in_flight);
        let key = inbox_key(name);
        let stored: Vec<String> = self
            .read(|c| {
                let (items,): (Vec<String>,) = redis::pipe()
                    .atomic()
                    .cmd("LRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .cmd("DEL")
                    .arg(&key)
                    .ignore()
                    .query(c)?;
                Ok(items)
            })
            .unwrap_or_default();
        // Messages not yet written are newer than the stored ones.
        let waiting = lock(&self.shared.pending)
            .appends
            .remove(&key)
            .unwrap_or_default();
        let mut messages: Vec<PrivateMessage> = stored
            .iter()
            .chain(waiting.iter().map(|(_, append)| &append.json))
            .filter_map(|json| parse(json))
            .collect();
        messages.drain(..messages.len().saturating_sub(INBOX_LEN));
        messages
    }

    fn create_session(&self, session: &Session) {
        let expires = Instant::now() + SESSION_TTL;
        lock(&self.shared.cache).insert(&session.id, &session.name, expires, false);
        let key = names::key(&session.name);
        let written = self.read(|c| {
            redis::pipe()
                .cmd("SET")
                .arg(session_key(&session.id))
                .arg(&session.name)
                .arg("EX")
                .arg(SESSION_TTL.as_secs())
                .cmd("SADD")
                .arg(claim_sessions_key(&key))
                .arg(&session.id)
                .exec(c)
        });
        if written.is_none() {
            self.queue_record(Record::SessionCreated {
                id: session.id.clone(),
                name: session.name.clone(),
            });
        }
    }

    fn session_name(&self, id: &str) -> Option<String> {
        let read = self.read(|c| {
            redis::pipe()
                .cmd("GET")
                .arg(session_key(id))
                .cmd("PTTL")
                .arg(session_key(id))
                .query::<(Option<String>, i64)>(c)
        });
        match read {
            // Redis is the truth: a session ended anywhere is refused here.
            Some((Some(name), ttl_ms)) => {
                let expires = Instant::now() + Duration::from_millis(ttl_ms.max(0) as u64);
                lock(&self.shared.cache).insert(id, &name, expires, true);
                Some(name)
            }
            // Logged in during an outage: its write may still be pending.
            Some((None, _)) => self.session_pending(id),
            None => lock(&self.shared.cache).get(id),
        }
    }

    fn end_session(&self, id: &str) {
        lock(&self.shared.cache).remove(id);
        let name = self.read(|c| {
            let (name,): (Option<String>,) = redis::pipe()
                .cmd("GET")
                .arg(session_key(id))
                .cmd("DEL")
                .arg(session_key(id))
                .ignore()
                .query(c)?;
            Ok(name)
        });
        let Some(name) = name else {
            return self.queue_record(Record::SessionEnded { id: id.to_string() });
        };
        let Some(name) = name else { return };
        let key = names::key(&name);
        let _ = self.read(|c| {
            redis::cmd("SREM")
                .arg(claim_sessions_key(&key))
                .arg(id)
                .exec(c)
        });
        let unprotected = self
            .claim(&key)
            .is_some_and(|claim| claim.password.is_none());
        if unprotected && self.sessions_of(&key).is_empty() {
            self.end_claim(&key);
        }
    }

    fn claim(&self, key: &str) -> Option<Claim> {
        let (name, password): (Option<String>, Option<String>) = self.read(|c| {
            redis::cmd("HMGET")
                .arg(claim_key(key))
                .arg("name")
                .arg("password")
                .query(c)
        })?;
        Some(Claim {
            name: name?,
            password,
        })
    }

    fn claim_name(&self, key: &str, claim: &Claim) -> Option<Claim> {
        let claimed = self.read(|c| {
            redis::cmd("HSETNX")
                .arg(claim_key(key))
                .arg("name")
                .arg(&claim.name)
                .query::<bool>(c)
        });
        match claimed {
            Some(true) => {
                let _ = self.read(|c| {
                    let mut pipe = redis::pipe();
                    pipe.cmd("SADD").arg(USERS_KEY).arg(&claim.name);
                    if let Some(hash) = &claim.password {
                        pipe.cmd("HSET")
                            .arg(claim_key(key))
                            .arg("password")
                            .arg(hash);
                    }
                    pipe.exec(c)
                });
                None
            }
            Some(false) => self.claim(key),
            None => None, // unreachable: claims are not checked until it is back
        }
    }

    fn set_password(&self, key: &str, hash: &str) {
        let _ = self.read(|c| {
            redis::cmd("HSET")
                .arg(claim_key(key))
                .arg("password")
                .arg(hash)
                .exec(c)
        });
    }

    fn sessions_of(&self, key: &str) -> Vec<String> {
        let sessions_key = claim_sessions_key(key);
        let ids: Vec<String> = self
            .read(|c| redis::cmd("SMEMBERS").arg(&sessions_key).query(c))
            .unwrap_or_default();
        let mut live = Vec::new();
        for id in ids {
            let exists = self.read(|c| redis::cmd("EXISTS").arg(session_key(&id)).query::<bool>(c));
            match exists {
                Some(false) => {
                    // Expired: forget it.
                    let _ = self.read(|c| redis::cmd("SREM").arg(&sessions_key).arg(&id).exec(c));
                }
                _ => live.push(id),
            }
        }
        live
    }

    fn end_claim(&self, key: &str) -> Vec<String> {
        let Some(claim) = self.claim(key) else {
            return Vec::new();
        };
        let sessions = self.sessions_of(key);
        let mut cache = lock(&self.shared.cache);
        for id in &sessions {
            cache.remove(id);
        }
        drop(cache);
        let _ = self.read(|c| {
            let mut pipe = redis::pipe();
            pipe.atomic()
                .cmd("DEL")
                .arg(claim_key(key))
                .arg(claim_sessions_key(key))
                .arg(inbox_key(&claim.name))
                .arg(conversation_key(&claim.name))
                .ignore()
                .cmd("SREM")
                .arg(USERS_KEY)
                .arg(&claim.name)
                .ignore();
            for id in &sessions {
                pipe.cmd("DEL").arg(session_key(id)).ignore();
            }
            pipe.exec(c)
        });
        sessions
    }

    fn password_failures(&self, key: &str) -> u64 {
        self.read(|c| {
            redis::cmd("GET")
                .arg(format!("lanchat:pwfail:{key}"))
                .query::<Option<u64>>(c)
        })
        .flatten()
        .unwrap_or(0)
    }

    fn note_password_failure(&self, key: &str) {
        let _ = self.read(|c| {
            let failures = format!("lanchat:pwfail:{key}");
            redis::pipe()
                .cmd("INCR")
                .arg(&failures)
                .ignore()
                .cmd("EXPIRE")
                .arg(&failures)
                .arg(FAILURE_WINDOW_SECS)
                .arg("NX")
                .ignore()
                .exec(c)
        });
    }

    fn moderation(&self) -> Moderation {
        let read = self.read(|c| {
            redis::pipe()
                .cmd("GET")
                .arg(MODE_KEY)
                .cmd("HGETALL")
                .arg(MUTES_KEY)
                .cmd("HVALS")
                .arg(BANS_KEY)
                .query::<(Option<String>, HashMap<String, u64>, Vec<String>)>(c)
        });
        let (mode, mutes, banned) = read.unwrap_or_default();
        Moderation {
            mode: mode.and_then(|json| parse(&json)).unwrap_or_default(),
            mutes: mutes.into_iter().collect(),
            banned,
        }
    }

    fn save_mode(&self, mode: &Mode) {
        let _ = self.read(|c| redis::cmd("SET").arg(MODE_KEY).arg(to_json(mode)).exec(c));
    }

    fn save_mute(&self, name: &str, until: Option<u64>) {
        let _ = self.read(|c| match until {
            Some(until) => redis::cmd("HSET")
                .arg(MUTES_KEY)
                .arg(name)
                .arg(until)
                .exec(c),
            None => redis::cmd("HDEL").arg(MUTES_KEY).arg(name).exec(c),
        });
    }

    fn set_banned(&self, key: &str, name: &str, banned: bool) {
        let _ = self.read(|c| match banned {
            true => redis::cmd("HSET").arg(BANS_KEY).arg(key).arg(name).exec(c),
            false => redis::cmd("HDEL").arg(BANS_KEY).arg(key).exec(c),
        });
    }

    fn banned(&self, key: &str) -> Option<String> {
        self.read(|c| {
            redis::cmd("HGET")
                .arg(BANS_KEY)
                .arg(key)
                .query::<Option<String>>(c)
        })
        .flatten()
    }

    fn put_file(&self, file: &FileRef, bytes: Arc<[u8]>, cap: u64) {
        let _ = self.read(|c| {
            redis::cmd("EVAL")
                .arg(PUT_FILE_SCRIPT)
                .arg(2)
                .arg(file_key(&file.id))
                .arg(file_meta_key(&file.id))
                .arg(&*bytes)
                .arg(to_json(file))
                .arg(&file.id)
                .arg(bytes.len())
                .arg(cap)
                .exec(c)
        });
        let mut cache = lock(&self.files);
        cache.cap = cap;
        cache.keep(&file.id, bytes);
    }

    fn file_meta(&self, id: &str) -> Option<FileRef> {
        let json: Option<String> = self
            .read(|c| redis::cmd("GET").arg(file_meta_key(id)).query(c))
            .flatten();
        parse(&json?)
    }

    fn file(&self, id: &str) -> Option<Arc<[u8]>> {
        if let Some((_, bytes)) = lock(&self.files).files.iter().find(|(f, _)| f == id) {
            return Some(bytes.clone());
        }
        let bytes: Vec<u8> = self
            .read(|c| redis::cmd("GET").arg(file_key(id)).query(c))
            .flatten()?;
        let bytes: Arc<[u8]> = bytes.into();
        lock(&self.files).keep(id, bytes.clone());
        Some(bytes)
    }

    fn host_key(&self, proposed: &str, given: bool) -> String {
        let kept = self.read(|c| {
            let mut set = redis::cmd("SET");
            set.arg(HOST_KEY_KEY).arg(proposed);
            if !given {
                set.arg("NX");
            }
            let (kept,): (String,) = redis::pipe()
                .add_command(set)
                .ignore()
                .cmd("GET")
                .arg(HOST_KEY_KEY)
                .query(c)?;
            Ok(kept)
        });
        kept.unwrap_or_else(|| proposed.to_string())
    }

    fn flush(&self, timeout: Duration) -> usize {
        RedisStore::flush(self, timeout)
    }
}

impl FileCache {
    /// Keeps a file's bytes, dropping the oldest past the cap.
    fn keep(&mut self, id: &str, bytes: Arc<[u8]>) {
        if self.files.iter().any(|(f, _)| f == id) {
            return;
        }
        let cost = |bytes: &[u8]| (bytes.len() as u64).max(MIN_FILE_COST);
        self.bytes += cost(&bytes);
        self.files.push_back((id.to_string(), bytes));
        while self.bytes > self.cap {
            let Some((_, oldest)) = self.files.pop_front() else {
                break;
            };
            self.bytes -= cost(&oldest);
        }
    }
}

impl Pending {
    /// The next write's ticket (tickets increase: the writer forgets up to
    /// the last one it wrote).
    fn ticket(&mut self) -> u64 {
        self.next_ticket += 1;
        self.next_ticket - 1
    }

    fn len(&self) -> usize {
        self.records.len()
            + self.deletes.len()
            + self.appends.values().map(VecDeque::len).sum::<usize>()
    }

    /// Whether messages wait (not only session records).
    fn has_messages(&self) -> bool {
        self.clear_history
            || !self.deletes.is_empty()
            || self.appends.values().any(|list| !list.is_empty())
    }

    /// Every pending write as one pipeline, and the last ticket in it.
    fn batch(&self) -> Option<(redis::Pipeline, u64)> {
        let last = self.next_ticket.checked_sub(1)?;
        if self.len() == 0 {
            return None;
        }
        let mut pipe = redis::pipe();
        if self.clear_history {
            pipe.cmd("DEL").arg(HISTORY_KEY).ignore();
        }
        if self.seq_floor > 0 {
            pipe.cmd("EVAL")
                .arg(SEQ_FLOOR_SCRIPT)
                .arg(1)
                .arg(SEQ_KEY)
                .arg(self.seq_floor)
                .ignore();
        }
        if self.has_messages() {
            append_script_call(&mut pipe, self);
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
            }
        }
        Some((pipe, last))
    }

    /// Forgets every write up to ticket `last`, now that Redis has it.
    fn written(&mut self, last: u64) {
        self.records.retain(|(ticket, _)| *ticket > last);
        self.deletes.retain(|(ticket, _)| *ticket > last);
        for list in self.appends.values_mut() {
            list.retain(|(ticket, _)| *ticket > last);
        }
        self.appends.retain(|_, list| !list.is_empty());
        if !self.has_messages() {
            self.seq_floor = 0;
            self.clear_history = false;
        }
    }
}

/// Raises `lanchat:seq` to at least ARGV[1].
const SEQ_FLOOR_SCRIPT: &str = r#"
if (tonumber(redis.call('GET', KEYS[1])) or 0) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return 0
"#;

/// Adds to `pipe` one `EVAL` of the commit script with every pending
/// append and delete (idempotent: appends skip an id already kept).
fn append_script_call(pipe: &mut redis::Pipeline, pending: &Pending) {
    let cmd = pipe.cmd("EVAL").arg(COMMIT_SOURCE.as_str()).arg(0);
    for (key, list) in &pending.appends {
        let keep = if key == HISTORY_KEY {
            HISTORY_LEN
        } else if key.starts_with("lanchat:inbox:") {
            INBOX_LEN
        } else {
            CONVERSATION_LEN
        };
        for (_, append) in list {
            cmd.arg("append")
                .arg(key)
                .arg(&append.json)
                .arg(id_needle(&append.id))
                .arg(keep);
        }
    }
    for (_, id) in &pending.deletes {
        cmd.arg("delete").arg(id_needle(id));
    }
    cmd.ignore();
}

impl Shared {
    fn in_outage(&self) -> bool {
        lock(&self.outage).is_some()
    }

    /// Notes a failure; the first of an outage is logged as a warning.
    fn failed<T>(&self, url: &str, error: &redis::RedisError) -> Option<T> {
        let mut outage = lock(&self.outage);
        if outage.is_none() {
            warn!(
                "Redis at {url} is unreachable ({error}): chat goes on, writes wait in memory, \
                 messages are not stored until it is back"
            );
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
        {
            let pending = lock(&shared.pending);
            let pending = shared
                .changed
                .wait_while(pending, |p| p.len() == 0 && !shared.in_outage())
                .unwrap_or_else(|p| p.into_inner());
            drop(pending);
        }
        // `in_flight` first, then the snapshot: a `take_inbox` cannot run
        // between the two and take a message this batch is about to write.
        let in_flight = lock(&shared.in_flight);
        let (batch, count) = {
            let pending = lock(&shared.pending);
            (pending.batch(), pending.len())
        };
        if batch.is_some()
            && let Some((paused, resume)) = lock(&shared.pause_for_test).take()
        {
            let _ = paused.send(());
            let _ = resume.recv();
        }
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
                if let Some((_, last)) = batch {
                    lock(&shared.pending).written(last);
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

/// How a message's id is found inside its stored JSON.
fn id_needle(id: &str) -> String {
    format!("\"id\":\"{id}\"")
}

/// A message's JSON (serialized with seq 0) cut around its seq, for the
/// commit script to put the real one in. The first `"seq":` is the field:
/// inside a string, quotes are escaped.
fn split_at_seq(json: &str) -> (&str, &str) {
    let at = json
        .find("\"seq\":0")
        .expect("messages serialize their seq")
        + "\"seq\":".len();
    (&json[..at], &json[at + 1..])
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seq_is_cut_out_of_the_json() {
        let message = RoomMessage {
            id: "i".into(),
            seq: 0,
            from: "a".into(),
            text: r#""seq":0 in a text"#.into(),
            ts: 1,
            file: None,
        };
        let json = to_json(&message);
        let (head, tail) = split_at_seq(&json);
        let with_seq: RoomMessage = serde_json::from_str(&format!("{head}42{tail}")).unwrap();
        assert_eq!(with_seq.seq, 42);
        assert_eq!(with_seq.text, message.text);
    }
}
