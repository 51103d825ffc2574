//! One WebSocket connection: its handshake and its read pump, on the
//! connection's own thread (like `serveWs` and `readPump` in gorilla's
//! `client.go`).
//!
//! [`accept`] checks a `GET /ws` (Origin, session, the RFC 6455 headers)
//! and answers `101` by hand (so one HTTP parser serves every route and the
//! refusals stay plain HTTP); the thread then goes on as the read pump
//! ([`run`]).
//!
//! Concurrency rule: the read pump is the only reader of the socket; it
//! never writes it. A sync `WebSocket` cannot be read in one thread and
//! written in another (why: `docs/DESIGN.md`), so the reading `WebSocket`
//! runs over [`ReadHalf`], whose `Write` hands tungstenite's automatic
//! pongs and close replies to the connection's [`Outbox`] (`outbox.rs`),
//! through which every frame for this socket goes, one writer at a time.
//!
//! Stack: a connection thread keeps every stack page it ever touched for
//! as long as it lives, hours for a WebSocket; [`run`] tells how it stays
//! within two pages.
//!
//! Heartbeat: the read pump reads with a timeout of one heartbeat interval.
//! A connection silent for one interval is pinged; one silent for two (so
//! closed between 2 and 3 intervals after its last frame) gets a close frame
//! and is dropped. Idle connections wake up once per interval, not on a
//! polling tick.

use crate::http::{self, Request, Response};
use crate::hub::Hub;
use crate::outbox::{Full, Outbox};
use crate::protocol::{ClientError, ClientFrame, Encoded, MAX_MESSAGE_BYTES, parse_client_frame};
use crate::rate::{RateLimit, rate_limited};
use crate::session;
use crate::store::Session;
use base64::Engine;
use log::{debug, info, warn};
use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::error::{Error as WsError, ProtocolError};
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

/// A connection with no whole frame (pongs count) for this many heartbeats
/// is closed: pinged after one, so closed 2 to 3 heartbeats after its last.
const SILENT_HEARTBEATS: u32 = 2;
/// tungstenite allocates its read buffer eagerly for every connection, and
/// zeroes all of it before its first read (so it is resident at once): its
/// 128 KiB default would cost 1.25 GiB at 10,000 connections, and 4 KiB was
/// a quarter of an idle connection's memory. A chat frame is a few hundred
/// bytes; a large one just takes a few more reads.
const READ_BUFFER_BYTES: usize = 1024;

/// `GET /ws`: checks the request, answers `101` and returns the connection,
/// for the caller to [`run`] on this thread. Refusals are plain HTTP: `403`
/// for a foreign `Origin`, `426` for a request that is not a WebSocket
/// handshake, `400` for a `Sec-WebSocket-Key` that is not the base64 of 16
/// bytes, `401` without a live session. `already_read` holds the bytes
/// that arrived after the request's head.
pub fn accept<'a>(
    socket: TcpStream,
    request: Request,
    already_read: Vec<u8>,
    hub: &'a Hub,
    settings: &Settings,
) -> Option<Box<Connection<'a>>> {
    let refusal = if !same_origin(&request) {
        Some(Response::text(403, "cross-origin WebSocket refused"))
    } else if !is_websocket_handshake(&request) {
        Some(
            Response::text(426, "this is a WebSocket endpoint")
                .with_header("Sec-WebSocket-Version", "13"),
        )
    } else {
        None
    };
    let key = request.header("sec-websocket-key").map(str::trim);
    // `?after=SEQ`: the last seq the client saw; replay only what is later.
    let after = request.query_param("after").map(|seq| seq.parse::<u64>());
    let session = session::authenticate(&request, hub.store());
    let (key, session) = match (refusal, key, session) {
        (Some(response), _, _) => return refuse(&socket, response),
        (None, Some(key), _) if !is_valid_key(key) => {
            let why = "Sec-WebSocket-Key must be the base64 of 16 bytes";
            return refuse(&socket, Response::text(400, why));
        }
        (None, _, _) if matches!(after, Some(Err(_))) => {
            let why = "after must be a seq: a whole number";
            return refuse(&socket, Response::text(400, why));
        }
        (None, _, None) => return refuse(&socket, Response::text(401, "log in first")),
        (None, _, Some(session)) if !hub.allow_upgrade(&session.id) => {
            let why = "too many WebSocket connections from this session: wait a moment";
            return refuse(&socket, Response::text(429, why));
        }
        (None, Some(key), Some(session)) => (key, session),
        (None, None, _) => unreachable!("checked by is_websocket_handshake"),
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    (&socket).write_all(head.as_bytes()).ok()?;
    let joining = Joining {
        session,
        after: after.and_then(Result::ok),
        host: session::is_host(&request, &settings.host_key),
        already_read,
    };
    Connection::new(socket, joining, hub, settings.heartbeat)
        .map_err(|e| warn!("cannot start a WebSocket connection: {e}"))
        .ok()
}

/// Answers a refused handshake: no connection.
fn refuse<T>(socket: &TcpStream, response: Response) -> Option<T> {
    http::refuse(socket, &response);
    None
}

fn is_websocket_handshake(request: &Request) -> bool {
    let has_token = |header: &str, token: &str| {
        request
            .header(header)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    has_token("upgrade", "websocket")
        && has_token("connection", "upgrade")
        && request.header("sec-websocket-version").map(str::trim) == Some("13")
        && request
            .header("sec-websocket-key")
            .is_some_and(|k| !k.trim().is_empty())
}

/// RFC 6455 4.2.1: the key is a base64-encoded 16-byte nonce.
fn is_valid_key(key: &str) -> bool {
    base64::engine::general_purpose::STANDARD
        .decode(key)
        .is_ok_and(|nonce| nonce.len() == 16)
}

/// Cross-site WebSocket hijacking defence: a browser always sends `Origin`,
/// and a page from another site must not use our cookies to connect. Tools
/// that send no `Origin` (websocat, scripts) are let through.
pub fn same_origin(request: &Request) -> bool {
    let Some(origin) = request.header("origin") else {
        return true;
    };
    let Some((scheme, authority)) = origin.trim().split_once("://") else {
        return false;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    let Some(host) = request.header("host") else {
        return false;
    };
    host_port(authority, default_port)
        .is_some_and(|o| Some(o) == host_port(host.trim(), default_port))
}

/// `host[:port]` (or `[v6]:port`) lowercased, with the default port filled in.
fn host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    let authority = authority.to_ascii_lowercase();
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => {
            (&authority[..i], authority[i + 1..].parse().ok()?)
        }
        _ => (authority.as_str(), default_port),
    };
    (!host.is_empty() && !host.contains('/')).then(|| (host.to_string(), port))
}

/// The stream under the read pump's `WebSocket`: reads come from the socket,
/// writes (pongs, close replies, pings) go to the connection's outbox.
struct ReadHalf {
    socket: Arc<TcpStream>,
    outbox: Outbox,
    /// When the last whole frame arrived (the read pump sets it).
    last_frame: Rc<Cell<Instant>>,
    /// Silence allowed between whole frames: a peer trickling the bytes of
    /// a frame that never ends gets no more time than a silent one.
    silence: Duration,
}

impl Read for ReadHalf {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.last_frame.get().elapsed() >= self.silence {
                return Err(io::ErrorKind::TimedOut.into());
            }
            match (&*self.socket).read(buf) {
                // Linux ends a read that has a timeout with EINTR when the
                // process is stopped and continued (Ctrl-Z, then `fg`), or
                // a debugger attaches: no reason to hang up on anyone.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                read => return read,
            }
        }
    }
}

impl Write for ReadHalf {
    /// tungstenite hands over whole frames (its buffer), so each call is
    /// sent (or queued) as one unit.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outbox
            .push(&[Encoded::from_bytes(buf)])
            .map_err(io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Settings of a WebSocket connection, from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub heartbeat: Duration,
    /// The host link's key: a connection whose `lanchat_host` cookie holds
    /// it is a host's.
    pub host_key: Arc<str>,
}

/// How a connection ended, logged once when it does.
#[derive(Debug)]
enum Ending {
    /// The client sent a close frame.
    ClientClosed,
    /// We sent a close frame with this code and reason.
    WeClosed(CloseCode, &'static str),
    /// Silent for two heartbeats (sent a close frame, in case it still reads).
    Silent,
    /// Its outbox was full: it stopped reading.
    TooSlow,
    /// The TCP connection ended without a close frame (or was kicked).
    Vanished,
    Failed(WsError),
}

/// Who is connecting, and from where they resume.
struct Joining {
    session: Session,
    /// The last seq the client saw (`?after=`).
    after: Option<u64>,
    /// Whether this is a host's connection.
    host: bool,
    /// Bytes that arrived after the request's head: the first frames.
    already_read: Vec<u8>,
}

/// Runs an accepted connection to its end, on the calling thread (which
/// becomes the read pump).
///
/// The stack is the larger part of an idle connection's memory. A page,
/// once touched, stays resident for the thread's life, so what counts is
/// the deepest the thread ever went; and glibc keeps the top 4.3 KiB for
/// itself (the thread's descriptor and thread-locals), which leaves 3.8 KiB
/// of stack in two pages. So the frames that stay for the whole connection
/// (the thread's start, `server::handle`, this one and
/// `Connection::read_pump`) are thin, the connection's state is on the
/// heap, and each step of the pump is a call of its own (`#[inline(never)]`:
/// inlined, its locals would join the caller's frame, under every later
/// call). The deepest calls (the join, a message, a ping, a log line) then
/// end within the second page. glibc gives an ended thread's stack, pages
/// resident and all, to a later thread: so the common HTTP requests (a
/// login, the page, a poll) stay within two pages too, or the WebSocket
/// that inherits their stack would keep their depth. `make memory`
/// (`tests/memory.rs`) checks it.
pub fn run(mut connection: Box<Connection>) {
    let (hub, outbox) = (connection.hub, &connection.outbox);
    let session = &connection.session;
    hub.join(session, outbox.clone(), connection.after, connection.host);
    let registration = Registration {
        hub,
        id: outbox.id(),
    };
    info!("{} {:?} connected", connection.peer, session.name);
    let ending = connection.read_pump();
    drop(registration);
    connection.end(ending);
}

/// A connection's place in the hub, given up when dropped: at the end of
/// [`run`], or while unwinding from a panic, so that a crashed connection
/// thread never leaves a ghost in the registry or the online list.
struct Registration<'a> {
    hub: &'a Hub,
    id: uuid::Uuid,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.hub.leave(self.id);
    }
}

/// An accepted connection, as its read pump works with it.
pub struct Connection<'a> {
    ws: WebSocket<ReadHalf>,
    hub: &'a Hub,
    session: Session,
    /// The last seq the client saw (`?after=`).
    after: Option<u64>,
    /// Whether this is a host's connection.
    host: bool,
    peer: SocketAddr,
    outbox: Outbox,
    heartbeat: Duration,
    /// When the last whole frame arrived (the [`ReadHalf`] reads it too).
    last_frame: Rc<Cell<Instant>>,
    typing: RateLimit,
}

impl<'a> Connection<'a> {
    /// The connection of `joining` over `socket`, on the heap (see [`run`]).
    #[inline(never)]
    fn new(
        socket: TcpStream,
        joining: Joining,
        hub: &'a Hub,
        heartbeat: Duration,
    ) -> io::Result<Box<Connection<'a>>> {
        let peer = socket
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        socket.set_read_timeout(Some(heartbeat))?;
        // One socket (one file descriptor) shared by the read pump and the
        // outbox: reading and writing a `&TcpStream` from two threads is
        // fine, as long as only one thread writes at a time.
        let socket = Arc::new(socket);
        let outbox = Outbox::new_held(uuid::Uuid::new_v4(), socket.clone());
        let last_frame = Rc::new(Cell::new(Instant::now()));
        let half = ReadHalf {
            socket,
            outbox: outbox.clone(),
            last_frame: last_frame.clone(),
            silence: heartbeat * SILENT_HEARTBEATS,
        };
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_BYTES)
            .write_buffer_size(0)
            .max_message_size(Some(MAX_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_MESSAGE_BYTES));
        let Joining {
            session,
            after,
            host,
            already_read,
        } = joining;
        let ws = WebSocket::from_partially_read(half, already_read, Role::Server, Some(config));
        Ok(Box::new(Connection {
            ws,
            hub,
            session,
            after,
            host,
            peer,
            outbox,
            heartbeat,
            last_frame,
            typing: RateLimit::typing(),
        }))
    }

    /// Reads frames until the connection ends. Each step is a call of its
    /// own (reading, pinging, a text frame, an error), made from this thin
    /// frame (see [`run`]).
    #[inline(never)]
    fn read_pump(&mut self) -> Ending {
        loop {
            let message = match self.read() {
                Ok(message) => message,
                Err(WsError::Io(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    // A heartbeat interval passed with no whole frame read.
                    let silent = self.last_frame.get().elapsed();
                    if silent >= self.heartbeat * SILENT_HEARTBEATS {
                        self.close(CloseCode::Away, "no answer to pings");
                        return Ending::Silent;
                    }
                    if silent >= self.heartbeat && !self.ping() {
                        return Ending::TooSlow;
                    }
                    continue;
                }
                Err(error) => return self.ending_for(error),
            };
            self.last_frame.set(Instant::now());
            match message {
                Message::Text(text) => {
                    if self.text_frame(text.as_str()).is_err() {
                        return Ending::TooSlow;
                    }
                }
                Message::Binary(_) => {
                    let why = "binary messages are not supported";
                    return self.close(CloseCode::Unsupported, why);
                }
                // tungstenite has queued its reply; the next read reports the end.
                Message::Close(_) => {}
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    /// The next message (tungstenite's read: a large frame, inlined).
    #[inline(never)]
    fn read(&mut self) -> Result<Message, WsError> {
        self.ws.read()
    }

    /// Pings the peer; `false` if its outbox is full.
    #[inline(never)]
    fn ping(&mut self) -> bool {
        self.ws.send(Message::Ping(Default::default())).is_ok()
    }

    /// A text frame from the client: does what it asks, within the rate
    /// limits; an error goes back to the sender (`Full` if it cannot).
    #[inline(never)]
    fn text_frame(&mut self, raw: &str) -> Result<(), Full> {
        let name = &self.session.name;
        debug!("{name:?} sent {raw:?}");
        let reply = if self.hub.allow_message(name) {
            self.handle(raw).err()
        } else {
            Some(rate_limited())
        };
        match reply {
            Some(error) => self.outbox.push(&[error.encode()]),
            None => Ok(()),
        }
    }

    /// Does what a valid client frame asks; the error goes back to the
    /// sender. Typing notices beyond one per [`TYPING_EVERY`] are dropped
    /// silently.
    fn handle(&mut self, raw: &str) -> Result<(), ClientError> {
        match parse_client_frame(raw)? {
            ClientFrame::Typing { .. } if !self.typing.allow() => Ok(()),
            frame => self.hub.handle(&self.session, self.host, frame, None),
        }
    }

    /// Sorts a read error: ordinary disconnects, and violations answered
    /// with a close frame carrying the RFC 6455 code.
    #[inline(never)]
    fn ending_for(&mut self, error: WsError) -> Ending {
        match error {
            WsError::ConnectionClosed | WsError::AlreadyClosed => Ending::ClientClosed,
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Ending::Vanished,
            WsError::Io(e) if e.get_ref().is_some_and(|inner| inner.is::<Full>()) => {
                Ending::TooSlow
            }
            WsError::Io(_) => Ending::Vanished,
            WsError::Capacity(_) => self.close(CloseCode::Size, "message too large"),
            WsError::Utf8(_) => self.close(CloseCode::Invalid, "text frame is not valid UTF-8"),
            WsError::Protocol(_) => self.close(CloseCode::Protocol, "WebSocket protocol violation"),
            other => Ending::Failed(other),
        }
    }

    /// Sends a close frame; [`Connection::end`] then half-closes and waits
    /// for the peer.
    #[inline(never)]
    fn close(&mut self, code: CloseCode, reason: &'static str) -> Ending {
        let _ = self.ws.close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        Ending::WeClosed(code, reason)
    }

    /// Logs how the connection ended, sends what is queued (a close frame,
    /// perhaps), half-closes the socket, and lets the peer hang up first.
    #[inline(never)]
    fn end(&self, ending: Ending) {
        let (peer, name) = (self.peer, &self.session.name);
        match &ending {
            Ending::Failed(error) => warn!("{peer} {name:?} disconnected: {error}"),
            Ending::WeClosed(code, reason) => {
                info!("{peer} {name:?} closed by us ({code}): {reason}")
            }
            ending => info!("{peer} {name:?} disconnected: {ending:?}"),
        }
        self.outbox.close();
        if matches!(ending, Ending::WeClosed(..) | Ending::ClientClosed) {
            crate::http::wait_for_hang_up(&self.ws.get_ref().socket);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn request(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            path: "/ws".into(),
            query: None,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: vec![],
            peer: None,
        }
    }

    #[test]
    fn origin_must_match_host() {
        let ok =
            |origin: &str, host: &str| same_origin(&request(&[("Origin", origin), ("Host", host)]));
        assert!(ok("http://127.0.0.1:8000", "127.0.0.1:8000"));
        assert!(ok("http://LanChat.local", "lanchat.local:80"));
        assert!(ok("https://[::1]:9000", "[::1]:9000"));
        assert!(ok("https://example.org", "example.org"));
        assert!(!ok("http://evil.example:8000", "127.0.0.1:8000"));
        assert!(!ok("http://127.0.0.1:8001", "127.0.0.1:8000"));
        assert!(!ok("https://example.org", "example.org:80"));
        assert!(!ok("null", "127.0.0.1:8000"));
        assert!(same_origin(&request(&[("Host", "x")])));
    }

    #[test]
    fn keys_must_be_16_bytes_of_base64() {
        assert!(is_valid_key("dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!is_valid_key("x"));
        assert!(!is_valid_key("dGhlIHNhbXBsZQ=="));
        assert!(!is_valid_key("not base64 at all!!!!!!="));
    }

    /// A connection thread that panics after joining leaves no ghost: its
    /// registration is given up while the thread unwinds.
    #[test]
    fn a_panicking_connection_leaves_the_hub() {
        let hub = Arc::new(Hub::new(Arc::new(MemoryStore::new()), None));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (socket, _) = listener.accept().unwrap();
        let session = Session {
            id: "s".into(),
            name: "doomed".into(),
        };

        let in_thread = hub.clone();
        let crashed = std::thread::spawn(move || {
            let outbox = Outbox::new_held(uuid::Uuid::new_v4(), Arc::new(socket));
            in_thread.join(&session, outbox.clone(), None, false);
            let _registration = Registration {
                hub: &in_thread,
                id: outbox.id(),
            };
            assert_eq!(in_thread.counts(), (1, 1));
            panic!("a bug in a connection thread");
        })
        .join();
        assert!(crashed.is_err());
        assert_eq!(hub.counts(), (0, 0), "no connection, nobody online");
    }
}
