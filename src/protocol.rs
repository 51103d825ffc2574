//! The JSON frames of the wire contract (`docs/PROTOCOL.md`), in and out,
//! and the events servers sharing one Redis tell each other.
//!
//! Plain data and pure functions: no locks, no I/O. Every other module may
//! use these types; this one uses none of them.
//!
//! Incoming: [`parse_client_frame`] turns a client's text frame into a
//! [`ClientFrame`] or a [`ClientError`]; it never panics, whatever the bytes.
//!
//! Outgoing: [`ServerFrame`] is every frame the server sends. [`encode`]
//! serializes it to JSON *and* wraps it in a WebSocket frame once, giving an
//! [`Encoded`] (an `Arc<[u8]>`) that every recipient's outbox shares. Server
//! frames are unmasked, so the bytes are the same for everybody: a room
//! message to 1,000 people costs one serialization and 1,000 pointer copies.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame, FrameHeader};

/// Largest message a client may send (after reassembling fragments, or as
/// a `POST /say` body): 64 KiB. Larger closes a WebSocket with 1009.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Longest message text, in Unicode code points after trimming.
pub const MAX_TEXT_CHARS: usize = 4000;

/// A room message (`M` in the contract). It carries its own `"type"`, as it
/// is sent, replayed in `history` and stored in Redis in the same shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "message")]
pub struct RoomMessage {
    pub id: String,
    /// Its place in the chat's one order (0 until the store gives it one:
    /// see `Store::commit`). Stored messages of v1 have none: 0.
    #[serde(default)]
    pub seq: u64,
    pub from: String,
    pub text: String,
    pub ts: u64,
    /// An uploaded file attached to it (see `files.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileRef>,
}

/// A file as messages carry it: what the page needs to show and fetch it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    pub id: String,
    pub name: String,
    pub size: u64,
    /// The `Content-Type` its uploader gave (how it is served depends on
    /// its bytes: `files.rs`).
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
}

/// A private message (`P` in the contract), with its own `"type"` too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "private")]
pub struct PrivateMessage {
    pub id: String,
    /// As [`RoomMessage::seq`].
    #[serde(default)]
    pub seq: u64,
    pub from: String,
    pub to: String,
    pub text: String,
    pub ts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileRef>,
}

/// Every frame the server sends; `type` is the variant's name in lowercase.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame<'a> {
    Welcome {
        name: &'a str,
        /// Who is online: sent apart, shared by a batch of newcomers
        /// (see [`encode_welcome`]); always empty here.
        users: [&'a str; 0],
        /// Those of `users` connected as a host.
        hosts: Vec<&'a str>,
        /// Whether this connection is a host's.
        host: bool,
        mode: Mode,
        /// Only in a host's welcome.
        #[serde(skip_serializing_if = "Option::is_none")]
        banned: Option<Vec<&'a str>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        muted: Option<Vec<Muted<'a>>>,
    },
    History {
        messages: Vec<&'a RoomMessage>,
        private: Vec<&'a PrivateMessage>,
        gap: bool,
    },
    Offline {
        messages: &'a [PrivateMessage],
    },
    Join {
        name: &'a str,
        ts: u64,
        host: bool,
    },
    Leave {
        name: &'a str,
        ts: u64,
    },
    Deleted {
        id: &'a str,
    },
    /// The class mode changed (sent to everyone).
    Mode(Mode),
    Muted(Muted<'a>),
    Unmuted {
        name: &'a str,
    },
    Banned {
        name: &'a str,
    },
    Unbanned {
        name: &'a str,
    },
    Cleared,
    Typing {
        name: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<&'a str>,
    },
    Error {
        code: ErrorCode,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        until: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// Messages carry their own `"type"`: no second tag here.
    #[serde(untagged)]
    Message(&'a RoomMessage),
    #[serde(untagged)]
    Private(&'a PrivateMessage),
}

/// The class mode a host sets (the contract's `MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mode {
    /// Only hosts may post to the room.
    pub announce: bool,
    /// Seconds a non-host waits between two room messages (0: no wait).
    pub slow: u64,
    /// Private messages between two non-hosts are allowed.
    pub private: bool,
    /// Non-hosts may upload files.
    pub uploads: bool,
}

impl Default for Mode {
    fn default() -> Self {
        Mode {
            announce: false,
            slow: 0,
            private: true,
            uploads: true,
        }
    }
}

/// Longest slow-mode wait a host may set, in seconds.
pub const MAX_SLOW_SECS: u64 = 3600;
/// Longest mute, in minutes (a day).
pub const MAX_MUTE_MINUTES: u64 = 1440;

/// A muted name and when its mute ends (ms since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Muted<'a> {
    pub name: &'a str,
    pub until: u64,
}

/// What one server tells the others (on the Redis channel `lanchat:events`,
/// see `cluster.rs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    Room {
        message: RoomMessage,
    },
    /// `inboxed`: the sending server kept it in the recipient's inbox
    /// (the recipient was offline everywhere, as far as it knew).
    Private {
        message: PrivateMessage,
        inboxed: bool,
    },
    /// The sessions `name` has connections of on the sending server (none:
    /// it has left that server).
    Presence {
        name: String,
        sessions: Vec<String>,
        /// One of them is a host's connection.
        #[serde(default)]
        host: bool,
    },
    /// A room message was deleted (the sending server changed the store).
    Deleted {
        id: String,
    },
    /// A host changed the mode, muted or unmuted (`until: None`), banned or
    /// unbanned someone, or cleared the history: the sending server changed
    /// the store; the others update what they know and tell their clients.
    Mode {
        mode: Mode,
    },
    Mute {
        name: String,
        until: Option<u64>,
    },
    Ban {
        name: String,
        banned: bool,
    },
    Cleared,
    /// Someone is typing (never stored): to the room, or to `to`.
    Typing {
        name: String,
        to: Option<String>,
    },
    /// Close these connections (a logout, kick or release on another
    /// server): every connection of `session`, or of `name` when `session`
    /// is none.
    Close {
        name: String,
        session: Option<String>,
        code: u16,
        reason: String,
    },
}

/// The answer of `GET /poll` (see `poll.rs`): an HTTP body, not a frame.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename = "poll")]
pub struct PollAnswer<'a> {
    /// Room and private messages, in seq order.
    pub messages: Vec<AnyMessage<'a>>,
    pub users: Vec<&'a str>,
    pub hosts: Vec<&'a str>,
    pub mode: Mode,
    /// The `after` of the next poll.
    pub next: u64,
    pub gap: bool,
}

/// A room or a private message, as it is sent.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(untagged)]
pub enum AnyMessage<'a> {
    Room(&'a RoomMessage),
    Private(&'a PrivateMessage),
}

impl AnyMessage<'_> {
    pub fn seq(&self) -> u64 {
        match self {
            AnyMessage::Room(message) => message.seq,
            AnyMessage::Private(message) => message.seq,
        }
    }
}

/// A complete WebSocket frame, ready to write, shared by all its recipients.
#[derive(Debug, Clone)]
pub struct Encoded {
    bytes: Arc<[u8]>,
    /// The rest of the frame before it, not a frame of its own: a long
    /// frame may be sent in pieces, one of them shared (see [`encode_welcome`]).
    piece: bool,
    /// Set on `join` and `leave` notices only: the hub coalesces them, and
    /// they do not count toward an outbox's limit (`outbox.rs`).
    notice: Option<Arc<Notice>>,
}

/// Whose presence a `join` or `leave` frame tells.
#[derive(Debug)]
pub struct Notice {
    pub name: String,
    pub join: bool,
}

impl Encoded {
    /// A frame of these bytes (already a whole WebSocket frame).
    pub fn from_bytes(bytes: impl Into<Arc<[u8]>>) -> Encoded {
        Encoded {
            bytes: bytes.into(),
            piece: false,
            notice: None,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether this is a close frame (opcode 8): nothing may follow it.
    pub fn is_close(&self) -> bool {
        !self.piece && self.bytes.first().is_some_and(|b| b & 0x0f == 0x8)
    }

    /// The presence it tells, for a `join` or `leave` notice.
    pub fn notice(&self) -> Option<&Notice> {
        self.notice.as_deref()
    }
}

/// Serializes `frame` and wraps it in one final, unmasked text frame.
pub fn encode(frame: &ServerFrame) -> Encoded {
    let json =
        serde_json::to_vec(frame).expect("server frames are plain data and always serialize");
    let frame = Frame::message(json, OpCode::Data(Data::Text), true);
    let mut out = Vec::with_capacity(frame.len());
    frame
        .format(&mut out)
        .expect("writing to a Vec cannot fail");
    Encoded::from_bytes(out)
}

/// The `welcome` of one newcomer, as the frames to send: its own bytes
/// around `users` (who is online, a JSON list), which is shared by every
/// newcomer of a batch, not copied: with 10,000 people online it is about
/// 100 KiB, and a class arriving at once would otherwise hold one copy per
/// newcomer until each was sent.
pub fn encode_welcome(welcome: &ServerFrame, users: &Arc<[u8]>) -> Vec<Encoded> {
    const FIELD: &str = r#""users":"#;
    let json = serde_json::to_string(welcome).expect("welcomes serialize");
    // `users` is serialized as the empty list: cut it out. (The first
    // `"users":` is the field: in a string its quotes would be escaped.)
    let at = json.find(FIELD).expect("a welcome has users") + FIELD.len();
    let (head, tail) = (&json[..at], &json[at + "[]".len()..]);
    let len = head.len() + users.len() + tail.len();
    // The frame's header for the whole payload (final, text, unmasked),
    // written by tungstenite as `encode` has it write a whole frame.
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Text),
        ..FrameHeader::default()
    };
    let mut first = Vec::with_capacity(14 + head.len());
    header
        .format(len as u64, &mut first)
        .expect("writing to a Vec cannot fail");
    first.extend(head.as_bytes());
    let piece = |bytes: Arc<[u8]>| Encoded {
        bytes,
        piece: true,
        notice: None,
    };
    vec![
        Encoded::from_bytes(first),
        piece(users.clone()),
        piece(tail.as_bytes().into()),
    ]
}

/// The `join` (or `leave`) notice of `name`, marked as one.
pub fn encode_notice(name: &str, join: bool, host: bool, ts: u64) -> Encoded {
    let frame = match join {
        true => ServerFrame::Join { name, ts, host },
        false => ServerFrame::Leave { name, ts },
    };
    Encoded {
        piece: false,
        notice: Some(Arc::new(Notice {
            name: name.to_string(),
            join,
        })),
        ..encode(&frame)
    }
}

/// A close frame with this code and reason, ready to write.
pub fn encode_close(code: CloseCode, reason: &str) -> Encoded {
    let frame = Frame::close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }));
    let mut out = Vec::with_capacity(frame.len());
    frame
        .format(&mut out)
        .expect("writing to a Vec cannot fail");
    Encoded::from_bytes(out)
}

/// The error codes of the contract's `error` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Empty,
    TooLong,
    UnknownUser,
    UnknownFile,
    NotFound,
    Forbidden,
    Muted,
    AnnounceOnly,
    SlowMode,
    PrivateOff,
    RateLimited,
    /// Polling without a session (`401`).
    Unauthorized,
}

/// Why a client frame was refused: a code and a human-readable message.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientError {
    pub code: ErrorCode,
    pub message: String,
    /// `muted`: when the mute ends (ms since the epoch).
    pub until: Option<u64>,
    /// `slow_mode`: how long to wait before the next room message.
    pub retry_after_ms: Option<u64>,
}

impl ClientError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ClientError {
        ClientError {
            code,
            message: message.into(),
            until: None,
            retry_after_ms: None,
        }
    }

    /// As a WebSocket frame.
    pub fn encode(&self) -> Encoded {
        encode(&self.frame())
    }

    /// As JSON (the body of an HTTP error of `poll.rs`).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.frame()).expect("errors serialize")
    }

    fn frame(&self) -> ServerFrame<'_> {
        ServerFrame::Error {
            code: self.code,
            message: &self.message,
            until: self.until,
            retry_after_ms: self.retry_after_ms,
        }
    }
}

/// What a client asked for, validated: texts and names are trimmed.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    /// `{"type":"message","text":...}`, or any text frame that is not a JSON object.
    Say { text: String, file: Option<String> },
    /// `{"type":"private","to":...,"text":...}`
    Whisper {
        to: String,
        text: String,
        file: Option<String>,
    },
    /// `{"type":"delete","id":...}`
    Delete { id: String },
    /// `{"type":"typing"}`, or `{"type":"typing","to":...}` in private.
    Typing { to: Option<String> },
    /// A host's frame (checked by the hub: `forbidden` for others).
    Host(HostAction),
}

/// What a host may do (the contract's host frames).
#[derive(Debug, Clone, PartialEq)]
pub enum HostAction {
    /// Only the fields given change.
    Mode {
        announce: Option<bool>,
        slow: Option<u64>,
        private: Option<bool>,
        uploads: Option<bool>,
    },
    Mute {
        name: String,
        minutes: u64,
    },
    Unmute {
        name: String,
    },
    Kick {
        name: String,
    },
    Ban {
        name: String,
    },
    Unban {
        name: String,
    },
    Release {
        name: String,
    },
    Clear,
}

/// Parses and validates one text frame from a client.
pub fn parse_client_frame(raw: &str) -> Result<ClientFrame, ClientError> {
    let object = match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(serde_json::Value::Object(object)) => object,
        // Not a JSON object: the whole frame is the text (so that
        // `ws.send("hi")` from a browser console just works).
        _ => {
            return Ok(ClientFrame::Say {
                text: valid_text(raw, false)?,
                file: None,
            });
        }
    };
    let field = |name: &str| object.get(name).and_then(|v| v.as_str());
    let bad = |what: &str| ClientError::new(ErrorCode::BadRequest, what);
    match object.get("type").and_then(|t| t.as_str()) {
        Some("message") => {
            let text = field("text").ok_or_else(|| bad("a message needs a string \"text\""))?;
            let file = field("file").map(str::to_string);
            Ok(ClientFrame::Say {
                text: valid_text(text, file.is_some())?,
                file,
            })
        }
        Some("private") => {
            let to = field("to").ok_or_else(|| bad("a private message needs a string \"to\""))?;
            let text =
                field("text").ok_or_else(|| bad("a private message needs a string \"text\""))?;
            let file = field("file").map(str::to_string);
            Ok(ClientFrame::Whisper {
                to: to.trim().to_string(),
                text: valid_text(text, file.is_some())?,
                file,
            })
        }
        Some("delete") => {
            let id = field("id").ok_or_else(|| bad("a delete needs a string \"id\""))?;
            Ok(ClientFrame::Delete { id: id.to_string() })
        }
        Some(kind @ ("mute" | "unmute" | "kick" | "ban" | "unban" | "release")) => {
            let name = field("name")
                .ok_or_else(|| bad(&format!("a {kind} needs a string \"name\"")))?
                .trim()
                .to_string();
            let action = match kind {
                "mute" => {
                    let minutes = object
                        .get("minutes")
                        .and_then(|m| m.as_u64())
                        .filter(|m| (1..=MAX_MUTE_MINUTES).contains(m))
                        .ok_or_else(|| {
                            bad(&format!(
                                "a mute needs \"minutes\" from 1 to {MAX_MUTE_MINUTES}"
                            ))
                        })?;
                    HostAction::Mute { name, minutes }
                }
                "unmute" => HostAction::Unmute { name },
                "kick" => HostAction::Kick { name },
                "ban" => HostAction::Ban { name },
                "unban" => HostAction::Unban { name },
                _ => HostAction::Release { name },
            };
            Ok(ClientFrame::Host(action))
        }
        Some("mode") => {
            let flag = |name: &str| match object.get(name) {
                None => Ok(None),
                Some(value) => value
                    .as_bool()
                    .map(Some)
                    .ok_or_else(|| bad(&format!("\"{name}\" must be true or false"))),
            };
            let slow = match object.get("slow") {
                None => None,
                Some(value) => Some(
                    value
                        .as_u64()
                        .filter(|s| *s <= MAX_SLOW_SECS)
                        .ok_or_else(|| bad(&format!("\"slow\" is 0 to {MAX_SLOW_SECS} seconds")))?,
                ),
            };
            Ok(ClientFrame::Host(HostAction::Mode {
                announce: flag("announce")?,
                slow,
                private: flag("private")?,
                uploads: flag("uploads")?,
            }))
        }
        Some("clear") => Ok(ClientFrame::Host(HostAction::Clear)),
        Some("typing") => Ok(ClientFrame::Typing {
            to: field("to").map(|to| to.trim().to_string()),
        }),
        Some(other) => Err(bad(&format!(
            "unknown frame type {other:?}: expected \"message\", \"private\", \"delete\" or a host frame"
        ))),
        None => Err(bad("a frame needs a string \"type\"")),
    }
}

/// A message text trimmed, with 1 to [`MAX_TEXT_CHARS`] code points.
/// Line breaks become `\n`; every other control character but tab goes
/// (a `\r` could overwrite a terminal line, an escape sequence recolor it),
/// then the text is trimmed and its length checked (it may be empty with a
/// file).
fn valid_text(raw: &str, with_file: bool) -> Result<String, ClientError> {
    let cleaned: String = raw
        .replace("\r\n", "\n")
        .replace('\r', "\n")
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect();
    let text = cleaned.trim();
    if text.is_empty() && !with_file {
        return Err(ClientError::new(ErrorCode::Empty, "The message is empty."));
    }
    let chars = text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(ClientError::new(
            ErrorCode::TooLong,
            format!("The message is too long: {chars} characters, at most {MAX_TEXT_CHARS}."),
        ));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A welcome sent in pieces (its `users` shared) is one valid text
    /// frame, whatever its length needs in the header.
    #[test]
    fn a_welcome_in_pieces_is_one_frame() {
        for people in [0, 3, 20, 10_000] {
            let names: Vec<String> = (0..people).map(|i| format!("p{i}")).collect();
            let users: Arc<[u8]> = serde_json::to_vec(&names).unwrap().into();
            let welcome = ServerFrame::Welcome {
                name: "ann \"users\":[]",
                users: [],
                hosts: vec!["ann"],
                host: false,
                mode: Mode::default(),
                banned: None,
                muted: None,
            };
            let bytes: Vec<u8> = encode_welcome(&welcome, &users)
                .iter()
                .flat_map(|piece| piece.bytes().to_vec())
                .collect();
            let mut input = std::io::Cursor::new(bytes);
            let frame = tungstenite::protocol::frame::FrameSocket::new(&mut input)
                .read(None)
                .unwrap()
                .unwrap();
            let json: serde_json::Value = serde_json::from_slice(frame.payload()).unwrap();
            assert_eq!(json["users"], serde_json::json!(names));
            assert_eq!(json["name"], "ann \"users\":[]");
            assert_eq!(json["hosts"], serde_json::json!(["ann"]));
        }
    }

    fn code(raw: &str) -> ErrorCode {
        parse_client_frame(raw).unwrap_err().code
    }

    #[test]
    fn frames_parse_and_trim() {
        assert_eq!(
            parse_client_frame(r#"{"type":"message","text":"  hi "}"#),
            Ok(ClientFrame::Say {
                text: "hi".into(),
                file: None
            })
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"private","to":" bob ","text":"yo","extra":1}"#),
            Ok(ClientFrame::Whisper {
                to: "bob".into(),
                text: "yo".into(),
                file: None
            })
        );
        // Control characters go, line breaks stay (as \n); then the trim.
        assert_eq!(
            parse_client_frame(
                "{\"type\":\"message\",\"text\":\"\\u0007a\\r\\nb\\rc\\u001b[31m\\t \"}"
            ),
            Ok(ClientFrame::Say {
                text: "a\nb\nc[31m".into(),
                file: None
            })
        );
        // With a file, the text may be empty.
        assert_eq!(
            parse_client_frame(r#"{"type":"message","text":"","file":"f1"}"#),
            Ok(ClientFrame::Say {
                text: "".into(),
                file: Some("f1".into())
            })
        );
        // Not an object: the frame itself is the text.
        for raw in ["hi", "42", "[1,2]", "\"quoted\"", "{not json"] {
            assert_eq!(
                parse_client_frame(raw),
                Ok(ClientFrame::Say {
                    text: raw.into(),
                    file: None
                })
            );
        }
    }

    #[test]
    fn bad_frames_get_their_code() {
        assert_eq!(code(r#"{"type":"message"}"#), ErrorCode::BadRequest);
        assert_eq!(
            code(r#"{"type":"message","text":5}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(r#"{"type":"shout","text":"x"}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(code(r#"{"text":"x"}"#), ErrorCode::BadRequest);
        assert_eq!(
            code(r#"{"type":"private","text":"x"}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(r#"{"type":"message","text":" \n "}"#),
            ErrorCode::Empty
        );
        assert_eq!(code("   "), ErrorCode::Empty);
        assert_eq!(code(&"é".repeat(4001)), ErrorCode::TooLong);
        assert!(parse_client_frame(&"é".repeat(4000)).is_ok());
    }

    #[test]
    fn encoded_frames_are_one_text_frame() {
        let m = RoomMessage {
            id: "i".into(),
            seq: 3,
            from: "a".into(),
            text: "<b>".into(),
            ts: 7,
            file: None,
        };
        let bytes = encode(&ServerFrame::Message(&m));
        let json = r#"{"type":"message","id":"i","seq":3,"from":"a","text":"<b>","ts":7}"#;
        assert_eq!(bytes.bytes()[0], 0x81); // FIN + text
        assert_eq!(bytes.bytes()[1] as usize, json.len()); // unmasked, short length
        assert_eq!(&bytes.bytes()[2..], json.as_bytes());
        let p = PrivateMessage {
            id: "i".into(),
            seq: 4,
            from: "a".into(),
            to: "b".into(),
            text: "t".into(),
            ts: 1,
            file: None,
        };
        let offline = encode(&ServerFrame::Offline { messages: &[p] });
        let want = r#"{"type":"offline","messages":[{"type":"private","id":"i","seq":4,"from":"a","to":"b","text":"t","ts":1}]}"#;
        assert_eq!(&offline.bytes()[2..], want.as_bytes());
        let err = ClientError::new(ErrorCode::RateLimited, "slow down").encode();
        assert!(
            String::from_utf8_lossy(err.bytes())
                .contains(r#"{"type":"error","code":"rate_limited","message":"slow down"}"#)
        );
    }
}
