//! The chat without WebSocket: `GET /poll` and `POST /say`.
//!
//! For networks whose proxies break WebSocket upgrades, and to compare the
//! three ways a browser can follow a chat (`docs/TRANSPORTS.md`):
//! - short polling: `GET /poll?after=SEQ` answers at once;
//! - long polling: `GET /poll?after=SEQ&wait=S` answers as soon as a
//!   message is delivered, or after `S` seconds with nothing;
//! - `POST /say` sends one client frame, and answers with the sender's copy
//!   once the message is stored (as the WebSocket does).
//!
//! Concurrency rule: a held long poll is its connection's thread, asleep on
//! the hub's `stored` condvar (`Hub::poll`), holding no lock. That is the
//! thread-per-connection model again: a held poll costs what an idle
//! WebSocket costs (one thread, a small stack, one socket), and nothing
//! while it sleeps; a delivery wakes every held poll, and each checks under
//! the hub lock whether something is for it. The rate limits here are maps
//! behind their own mutex, held only to take a token. Messages said here
//! count toward the name's one message rate (`Hub::allow_message`).
//!
//! A session that polls counts as one open connection of its name (join,
//! leave, `users`, the inbox) while a poll is held and for
//! [`POLLER_IDLE_HEARTBEATS`] heartbeats after its last poll; the `pollers`
//! thread forgets the others (`Hub::reap_pollers`).

use crate::http::{Request, Response};
use crate::hub::{Hub, Reply};
use crate::protocol::{ClientError, ClientFrame, ErrorCode, parse_client_frame};
use crate::rate::{RateLimits, TYPING_EVERY, rate_limited};
use crate::session;
use crate::store::Session;
use std::sync::Arc;
use std::time::Duration;

/// Longest long poll a client may ask for (`wait`), in seconds.
pub const MAX_WAIT_SECS: u64 = 60;
/// Polls a session may make: 10 a second (a short poller asks every
/// second or so; more is a loop gone wrong).
pub const POLLS_PER_SEC: f64 = 10.0;
/// A poller stays online this many heartbeats after its last poll.
pub const POLLER_IDLE_HEARTBEATS: u32 = 2;
/// Longest a `POST /say` waits for its message to be stored: more than the
/// store's timeout, so a slow store answers instead of timing out here.
const SAY_WAIT: Duration = Duration::from_secs(5);

/// The per-session rate limits of polling (polls, and typing notices).
pub struct PollLimits {
    polls: RateLimits<String>,
    typing: RateLimits<String>,
}

impl Default for PollLimits {
    fn default() -> Self {
        PollLimits {
            polls: RateLimits::new(POLLS_PER_SEC, POLLS_PER_SEC),
            typing: RateLimits::new(1.0 / TYPING_EVERY.as_secs_f64(), 1.0),
        }
    }
}

/// Starts the `pollers` thread, which forgets pollers idle for
/// [`POLLER_IDLE_HEARTBEATS`] heartbeats.
pub fn start_reaper(hub: Arc<Hub>, heartbeat: Duration) -> std::io::Result<()> {
    let idle = heartbeat * POLLER_IDLE_HEARTBEATS;
    let every = (heartbeat / 2).max(Duration::from_millis(50));
    std::thread::Builder::new()
        .name("pollers".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                hub.reap_pollers(idle);
            }
        })
        .map(drop)
}

/// `GET /poll?after=SEQ&wait=S`.
pub fn poll(request: &Request, hub: &Hub, limits: &PollLimits, host_key: &str) -> Response {
    let Some(session) = session::authenticate(request, hub.store()) else {
        return unauthorized();
    };
    let number = |name| request.query_param(name).map(|v| v.parse::<u64>());
    let after = match number("after") {
        None => None,
        Some(Ok(after)) => Some(after),
        Some(Err(_)) => return error(400, bad("after must be a seq: a whole number")),
    };
    let wait = match number("wait") {
        None => 0,
        Some(Ok(wait)) if wait <= MAX_WAIT_SECS => wait,
        Some(_) => {
            return error(400, bad(&format!("wait is 0 to {MAX_WAIT_SECS} seconds")));
        }
    };
    if !limits.polls.allow(&session.id) {
        let why = format!("At most {POLLS_PER_SEC} polls a second.");
        return error(429, ClientError::new(ErrorCode::RateLimited, why));
    }
    let host = session::is_host(request, host_key);
    let answer = hub.poll(&session, host, after, Duration::from_secs(wait));
    Response::new(200, "application/json", answer).with_header("Cache-Control", "no-store")
}

/// `POST /say`: one client frame; `200` with the sender's copy for a
/// message (once stored), `204` for the others, or the error object.
pub fn say(request: &Request, hub: &Hub, limits: &PollLimits, host_key: &str) -> Response {
    let Some(session) = session::authenticate(request, hub.store()) else {
        return unauthorized();
    };
    let Ok(body) = std::str::from_utf8(&request.body) else {
        return error(400, bad("the body must be a JSON object, in UTF-8"));
    };
    // Here a body that is not a JSON object is an error (the WebSocket
    // takes it as the text of a room message).
    if !body.trim_start().starts_with('{') {
        return error(400, bad("the body must be a JSON object (a client frame)"));
    }
    if !hub.allow_message(&session.name) {
        return error(429, rate_limited());
    }
    let frame = match parse_client_frame(body) {
        Ok(frame) => frame,
        Err(refused) => return refusal(refused),
    };
    let host = session::is_host(request, host_key);
    match frame {
        ClientFrame::Say { .. } | ClientFrame::Whisper { .. } => {
            say_message(hub, &session, host, frame)
        }
        ClientFrame::Typing { .. } if !limits.typing.allow(&session.id) => {
            Response::new(204, "text/plain; charset=utf-8", Vec::new()) // dropped
        }
        other => match hub.handle(&session, host, other, None) {
            Ok(()) => Response::new(204, "text/plain; charset=utf-8", Vec::new()),
            Err(refused) => refusal(refused),
        },
    }
}

/// A message from `POST /say`: the answer waits for its sender's copy.
fn say_message(hub: &Hub, session: &Session, host: bool, frame: ClientFrame) -> Response {
    let (reply, copy) = reply_channel();
    if let Err(refused) = hub.handle(session, host, frame, Some(reply)) {
        return refusal(refused);
    }
    match copy.recv_timeout(SAY_WAIT) {
        Ok(json) => Response::new(200, "application/json", json),
        Err(_) => Response::text(503, "the message was accepted but not stored in time"),
    }
}

/// Where the sender's copy of a message comes back. A call of its own:
/// std builds a channel on the stack before moving it to the heap (some
/// 600 bytes), which would push this request into a third stack page, and
/// a later WebSocket given this thread's stack would keep it (see
/// `connection::run`).
#[inline(never)]
fn reply_channel() -> (Reply, std::sync::mpsc::Receiver<String>) {
    std::sync::mpsc::channel()
}

/// The error object with the status the contract gives its code.
fn refusal(refused: ClientError) -> Response {
    let status = match refused.code {
        ErrorCode::BadRequest | ErrorCode::Empty | ErrorCode::TooLong => 400,
        ErrorCode::Forbidden
        | ErrorCode::Muted
        | ErrorCode::AnnounceOnly
        | ErrorCode::SlowMode
        | ErrorCode::PrivateOff => 403,
        ErrorCode::UnknownUser | ErrorCode::UnknownFile | ErrorCode::NotFound => 404,
        ErrorCode::RateLimited => 429,
        ErrorCode::Unauthorized => 401,
    };
    error(status, refused)
}

fn bad(why: &str) -> ClientError {
    ClientError::new(ErrorCode::BadRequest, why)
}

fn unauthorized() -> Response {
    let why = "Log in first (POST /login).";
    error(401, ClientError::new(ErrorCode::Unauthorized, why))
}

fn error(status: u16, refused: ClientError) -> Response {
    Response::new(status, "application/json", refused.to_json())
        .with_header("Cache-Control", "no-store")
}
