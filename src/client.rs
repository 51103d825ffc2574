//! `lanchat join`: a terminal client, in the same binary as the server.
//!
//! Read it next to `connection.rs`: the same WebSocket, seen from the other
//! end. Two threads:
//!
//! - `main`, the *reader*: logs in (`POST /login`, by hand: one request,
//!   one answer, `Connection: close`), connects to `/ws` with both cookies,
//!   and reads: it prints the history, then each message as it comes. When
//!   the connection drops, it connects again with `?after=` the last seq it
//!   saw, so nothing is missed, and no line is printed twice.
//! - `stdin`: reads lines, and sends each (a room message, `/msg NAME
//!   TEXT`) or answers it (`/who`, `/quit`). At the end of its input it
//!   waits until the server has sent back its own copy of every message it
//!   sent (a copy means "stored": `docs/PROTOCOL.md`), then ends the chat.
//!
//! Concurrency rule: a sync tungstenite `WebSocket` cannot be read in one
//! thread and written in another: its `read` writes pongs and close
//! replies (`docs/DESIGN.md`). The server gives its read pump a
//! [`ReadHalf`] whose writes go to the connection's outbox; a client has
//! one connection and may simply wait for it, so it needs no queue. Here
//! two `WebSocket`s share one socket: the reader's, over [`ReadHalf`],
//! only reads (and answers pings), and the stdin thread's, over
//! [`WriteHalf`], only sends. Both write through [`Link::write_frame`],
//! which holds the link's lock for one whole frame (tungstenite hands over
//! one frame per `write`: `write_buffer_size(0)`), so frames never mix.
//! Only the reader closes: to stop, the stdin thread shuts the socket's
//! reading side, which wakes the reader from its `read`.
//!
//! Locks: `Shared::writer` (the right to send; held while a line is sent,
//! or while the reader installs or takes a connection's writer) may be
//! held while `Link::frame` is taken (one frame written); never the
//! reverse. `Shared::state` is taken alone, and never across I/O.

use crate::config::JoinArgs;
use crate::protocol::MAX_TEXT_CHARS;
use crate::rate::{RATE_BURST, RATE_PER_SEC};
use crate::{lock, mdns, wait_until};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use time::{OffsetDateTime, UtcOffset};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{HandshakeError, Message, WebSocket};

/// How long to wait for the server to accept a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a login, or a WebSocket handshake, may take in all.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// A write that cannot go out for this long means the connection is dead
/// (the send fails, and the line waits for the next connection).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The reader wakes after this long without a frame and pings the server;
/// silent for twice this long, the connection counts as lost (a laptop
/// that left the Wi-Fi sends no FIN). Half the server's default heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// Waits between two attempts to connect again: doubling from the first
/// to the last, so a restarting server is found quickly and a gone one is
/// not hammered.
const RECONNECT_FIRST: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// At the end of stdin, how long to wait for the server's copies of what
/// was sent before giving up on them.
const ACK_WAIT: Duration = Duration::from_secs(15);
/// Largest login answer read (the form is about 3 KiB).
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;
/// Ids of the last messages printed, to print none twice. More than a
/// reconnection can replay: 100 room and 100 private messages, 100 offline.
const SEEN_IDS: usize = 1000;

/// Runs `lanchat join` until the end of stdin, `/quit`, or an error.
pub fn run(args: JoinArgs) -> Result<(), String> {
    // The local time zone, read while this is the only thread: the `time`
    // crate refuses to read it later on Linux (the environment may change
    // under a multi-threaded process). UTC if it cannot be read.
    let clock = UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC);
    let server = match &args.url {
        Some(url) => Server::from_url(url)?,
        None => Server::discover()?,
    };
    let name = match args.name.clone() {
        Some(name) => name,
        None => ask_name()?,
    };
    let login = Login {
        name,
        password: args.password.clone(),
    };
    let mut cookie = login.send(&server)?;
    let shared = Arc::new(Shared {
        writer: Mutex::new(None),
        connected: Condvar::new(),
        state: Mutex::new(State::default()),
        changed: Condvar::new(),
        clock,
    });
    let mut wait = RECONNECT_FIRST;
    let mut connections = 0;
    let mut refused_login_retries = 0;
    loop {
        let after = lock(&shared.state).after;
        let after = (connections > 0).then_some(after);
        match connect(&server, &cookie, after) {
            Ok(connection) => {
                connections += 1;
                wait = RECONNECT_FIRST;
                refused_login_retries = 0;
                if connections > 1 {
                    eprintln!("lanchat: connected again");
                }
                let ending = read_connection(connection, &shared);
                if let Ending::Fatal(reason) = ending {
                    return Err(reason);
                }
            }
            // The session is gone (a server restarted without Redis, or a
            // logout): log in again, once, and connect at once.
            Err(Refused::LoggedOut) if refused_login_retries == 0 => {
                refused_login_retries += 1;
                cookie = login.send(&server)?;
                continue;
            }
            Err(Refused::LoggedOut) => return Err("the server refuses the session".into()),
            Err(Refused::Failed(reason)) if connections == 0 => return Err(reason),
            Err(Refused::Failed(_)) => {}
        }
        // Lost (or not back yet): wait, unless the input has ended.
        let state = lock(&shared.state);
        if state.quitting {
            break;
        }
        let deadline = Instant::now() + wait;
        let state = wait_until(&shared.changed, state, deadline, |s| s.quitting);
        if state.quitting {
            break;
        }
        drop(state);
        wait = (wait * 2).min(RECONNECT_MAX);
    }
    let state = lock(&shared.state);
    if !state.pending.is_empty() {
        return Err(format!(
            "{} of the lines sent were not confirmed by the server",
            state.pending.len()
        ));
    }
    if state.refused > 0 {
        return Err(format!("{} of the lines sent were refused", state.refused));
    }
    Ok(())
}

/// Where the server is.
struct Server {
    /// `host:port`, as given: the `Host` of every request.
    authority: String,
    address: SocketAddr,
}

impl Server {
    /// `http://HOST[:PORT][/...]`, or `HOST[:PORT]` alone.
    fn from_url(url: &str) -> Result<Server, String> {
        let rest = match url.split_once("://") {
            None => url,
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => {
                return Err(format!(
                    "{url}: lanchat speaks plain http://, not {scheme}://"
                ));
            }
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if authority.is_empty() {
            return Err(format!("{url}: no host in this URL"));
        }
        // A port after the host (and after an IPv6 address's brackets)?
        let has_port = authority.rsplit_once(':').is_some_and(|(host, _)| {
            !host.is_empty() && (!host.contains(':') || host.ends_with(']'))
        });
        let authority = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let address = match authority.to_socket_addrs() {
            Ok(mut addresses) => addresses.next(),
            Err(_) => None,
        };
        let address = match address {
            Some(address) => address,
            // The system cannot resolve `.local` names (Linux without
            // nss-mdns, Android): ask the LAN ourselves, keep the port.
            None => match authority.rsplit_once(':') {
                Some((host, port)) if host.to_ascii_lowercase().ends_with(".local") => {
                    let label = &host[..host.len() - ".local".len()];
                    let found = mdns::find(label)?;
                    let port = port.parse().map_err(|_| format!("{url}: bad port"))?;
                    SocketAddr::new(found.ip(), port)
                }
                _ => return Err(format!("cannot find {authority}: no such host")),
            },
        };
        Ok(Server { authority, address })
    }

    /// No URL given: ask the LAN for `lanchat.local` (`mdns.rs`).
    fn discover() -> Result<Server, String> {
        let address = mdns::find(mdns::DEFAULT_NAME)?;
        eprintln!(
            "lanchat: found {}.local at http://{address}/",
            mdns::DEFAULT_NAME
        );
        Ok(Server {
            authority: address.to_string(),
            address,
        })
    }

    fn url(&self) -> String {
        format!("http://{}/", self.authority)
    }

    fn connect(&self) -> Result<TcpStream, String> {
        let socket = TcpStream::connect_timeout(&self.address, CONNECT_TIMEOUT)
            .map_err(|e| format!("cannot reach {}: {e}", self.url()))?;
        let _ = socket.set_nodelay(true); // a chat line is one small frame
        let _ = socket.set_write_timeout(Some(WRITE_TIMEOUT));
        Ok(socket)
    }
}

/// No `--name`: ask for one, when there is a person at a terminal to ask.
fn ask_name() -> Result<String, String> {
    if !io::stdin().is_terminal() {
        return Err("no --name given, and no terminal to ask for one".into());
    }
    eprint!("Your name: ");
    let mut name = String::new();
    io::stdin()
        .read_line(&mut name)
        .map_err(|e| format!("cannot read the name: {e}"))?;
    Ok(name.trim().to_string())
}

/// What a login sends; kept to log in again if the session is lost.
struct Login {
    name: String,
    password: Option<String>,
}

impl Login {
    /// `POST /login`: on `303`, the `Cookie` header for the WebSocket; a
    /// refusal (`400`, `403`, `409`, `429`) comes back as the form, with the
    /// reason in it.
    fn send(&self, server: &Server) -> Result<String, String> {
        let encode = |value: &str| utf8_percent_encode(value, NON_ALPHANUMERIC).to_string();
        let mut form = format!("name={}", encode(&self.name));
        if let Some(password) = &self.password {
            form.push_str(&format!("&password={}", encode(password)));
        }
        let request = format!(
            "POST /login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            server.authority,
            form.len()
        );
        let mut socket = server.connect()?;
        let no_answer = |e: io::Error| format!("no answer from {}: {e}", server.url());
        socket
            .set_read_timeout(Some(HTTP_TIMEOUT))
            .map_err(no_answer)?;
        socket.write_all(request.as_bytes()).map_err(no_answer)?;
        let mut bytes = Vec::new();
        let read = (&mut socket)
            .take(MAX_RESPONSE_BYTES)
            .read_to_end(&mut bytes);
        if bytes.is_empty() {
            return Err(no_answer(
                read.err().unwrap_or(io::ErrorKind::UnexpectedEof.into()),
            ));
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let head = match response.parse(&bytes) {
            Ok(httparse::Status::Complete(length)) => length,
            _ => return Err(format!("{} does not answer like lanchat", server.url())),
        };
        let status = response.code.unwrap_or(0);
        if status != 303 {
            let body = String::from_utf8_lossy(&bytes[head..]);
            return Err(match reason_in_form(&body) {
                Some(reason) => format!("login refused: {reason}"),
                None => format!("login refused: the server answered {status}"),
            });
        }
        let cookies: Vec<&str> = response
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("set-cookie"))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
            .filter_map(|cookie| cookie.split(';').next())
            .collect();
        Ok(cookies.join("; "))
    }
}

/// The reason in a refused login's form: the text of its error paragraph
/// (`id="login-error"` in `www/login.html`).
fn reason_in_form(html: &str) -> Option<String> {
    let start = html.find("id=\"login-error\"")?;
    let text = html[start..].split_once('>')?.1.split('<').next()?;
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// One TCP connection, shared by the two `WebSocket`s over it.
struct Link {
    socket: TcpStream,
    /// Held while one frame is written: frames never interleave.
    frame: Mutex<()>,
}

impl Link {
    fn write_frame(&self, bytes: &[u8]) -> io::Result<()> {
        let _writing = lock(&self.frame);
        (&self.socket).write_all(bytes)
    }
}

/// The stream under the reader's `WebSocket`: reads from the socket;
/// writes (the handshake, pongs, pings, close replies) go through the link.
struct ReadHalf(Arc<Link>);

impl Read for ReadHalf {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.0.socket).read(buf)
    }
}

impl Write for ReadHalf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_frame(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The stream under the stdin thread's `WebSocket`: it only writes.
struct WriteHalf(Arc<Link>);

impl Read for WriteHalf {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the writing half does not read",
        ))
    }
}

impl Write for WriteHalf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_frame(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One open WebSocket: the reader's half, the writer's half, their link.
struct Connection {
    reader: WebSocket<ReadHalf>,
    writer: WebSocket<WriteHalf>,
    link: Arc<Link>,
}

/// Why no connection was made.
enum Refused {
    /// `401`: the session is not (or no longer) valid.
    LoggedOut,
    Failed(String),
}

/// Opens `/ws` (with `?after=SEQ` when resuming) with the login's cookies.
fn connect(server: &Server, cookie: &str, after: Option<u64>) -> Result<Connection, Refused> {
    let socket = server.connect().map_err(Refused::Failed)?;
    let _ = socket.set_read_timeout(Some(HTTP_TIMEOUT)); // for the handshake
    let link = Arc::new(Link {
        socket,
        frame: Mutex::new(()),
    });
    let path = match after {
        Some(seq) => format!("/ws?after={seq}"),
        None => "/ws".to_string(),
    };
    let failed = |e: &dyn std::fmt::Display| Refused::Failed(format!("{}: {e}", server.url()));
    let mut request = format!("ws://{}{path}", server.authority)
        .into_client_request()
        .map_err(|e| failed(&e))?;
    let cookie = cookie.parse().map_err(|e| failed(&e))?;
    request.headers_mut().insert("Cookie", cookie);
    // tungstenite writes each frame as soon as it is made, in one `write`.
    let config = WebSocketConfig::default().write_buffer_size(0);
    let reader = match tungstenite::client::client_with_config(
        request,
        ReadHalf(link.clone()),
        Some(config),
    ) {
        Ok((reader, _response)) => reader,
        Err(HandshakeError::Failure(tungstenite::Error::Http(response)))
            if response.status() == 401 =>
        {
            return Err(Refused::LoggedOut);
        }
        Err(HandshakeError::Failure(e)) => return Err(failed(&e)),
        Err(HandshakeError::Interrupted(_)) => return Err(failed(&"no answer to the handshake")),
    };
    let _ = link.socket.set_read_timeout(Some(HEARTBEAT));
    let writer = WebSocket::from_raw_socket(WriteHalf(link.clone()), Role::Client, Some(config));
    Ok(Connection {
        reader,
        writer,
        link,
    })
}

/// What both threads share.
struct Shared {
    /// The writing `WebSocket` of the open connection; `None` between
    /// connections. Holding it is the right to send.
    writer: Mutex<Option<WebSocket<WriteHalf>>>,
    /// Signalled when a connection's writer is installed.
    connected: Condvar,
    state: Mutex<State>,
    /// Signalled when `pending` shrinks or `quitting` is set.
    changed: Condvar,
    /// The local time zone, for the times printed.
    clock: UtcOffset,
}

#[derive(Default)]
struct State {
    /// Our name as the server spells it (from `welcome`).
    me: String,
    /// Who is online (for `/who`), from `welcome`, `join` and `leave`.
    online: BTreeSet<String>,
    /// The highest seq seen: where to resume.
    after: u64,
    /// Ids of the messages printed last (oldest first), and the same as a set.
    seen: VecDeque<String>,
    seen_set: HashSet<String>,
    /// Lines sent whose copy has not come back yet, oldest first.
    pending: VecDeque<Outgoing>,
    /// Lines the server refused (an `error` frame).
    refused: usize,
    /// The open connection's socket, to wake the reader when quitting.
    link: Option<Arc<Link>>,
    /// The input has ended: close, and connect no more.
    quitting: bool,
    /// The stdin thread has been started (after the first opening frames).
    typing: bool,
}

/// A line to send: to the room (`to: None`) or privately.
#[derive(Debug, Clone, PartialEq)]
struct Outgoing {
    to: Option<String>,
    text: String,
}

impl Outgoing {
    fn frame(&self) -> String {
        match &self.to {
            None => json!({"type": "message", "text": self.text}),
            Some(to) => json!({"type": "private", "to": to, "text": self.text}),
        }
        .to_string()
    }
}

/// A message to print: a room message (`to: None`) or a private one.
#[derive(Debug, Clone, PartialEq)]
struct Received {
    id: String,
    seq: u64,
    from: String,
    to: Option<String>,
    text: String,
    ts: u64,
}

impl Received {
    /// A `message` or `private` frame (`M` or `P`); `None` for anything else.
    fn from_json(frame: &Value) -> Option<Received> {
        let to = match frame["type"].as_str()? {
            "message" => None,
            "private" => Some(frame["to"].as_str()?.to_string()),
            _ => return None,
        };
        Some(Received {
            id: frame["id"].as_str()?.to_string(),
            seq: frame["seq"].as_u64().unwrap_or(0),
            from: frame["from"].as_str()?.to_string(),
            to,
            text: frame["text"].as_str()?.to_string(),
            ts: frame["ts"].as_u64().unwrap_or(0),
        })
    }

    /// `12:04 alice: hi`, or `12:04 alice → bob: hi` for a private one.
    fn line(&self, clock: UtcOffset) -> String {
        let time = OffsetDateTime::from_unix_timestamp((self.ts / 1000) as i64)
            .map(|t| t.to_offset(clock))
            .map(|t| format!("{:02}:{:02}", t.hour(), t.minute()))
            .unwrap_or_default();
        // Later lines of a text line up under its first.
        let text = printable(&self.text).replace('\n', "\n      ");
        let from = printable(&self.from);
        match &self.to {
            None => format!("{time} {from}: {text}"),
            Some(to) => format!("{time} {from} → {}: {text}", printable(to)),
        }
    }

    /// Whether this is the server's copy of `sent`.
    fn is_copy_of(&self, sent: &Outgoing) -> bool {
        self.text == sent.text && self.to.is_some() == sent.to.is_some()
    }
}

/// Text from others, safe to print: no control character but line breaks
/// and tabs, so nobody can move the cursor or recolour the terminal.
fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect()
}

/// Prints a line on stdout. A closed stdout (`| head`) is not an error.
fn print_line(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// How a connection ended.
enum Ending {
    /// It dropped, or the input ended: the caller decides.
    Closed,
    /// The server ended the chat for us (kicked, banned...): stop.
    Fatal(String),
}

/// The reader's work on one connection: installs its writer, reads and
/// prints until it ends, then takes the writer back (and closes it, when
/// quitting).
fn read_connection(connection: Connection, shared: &Arc<Shared>) -> Ending {
    let Connection {
        mut reader,
        writer,
        link,
    } = connection;
    *lock(&shared.writer) = Some(writer);
    shared.connected.notify_all();
    // Registered before reading, and quitting checked in the same critical
    // section: the stdin thread either sees this link, and wakes it, or
    // has already quit, and we do not read at all.
    let quitting = {
        let mut state = lock(&shared.state);
        state.link = Some(link.clone());
        state.quitting
    };
    let ending = if quitting {
        Ending::Closed
    } else {
        read_frames(&mut reader, shared)
    };
    lock(&shared.state).link = None;
    let writer = lock(&shared.writer).take();
    if lock(&shared.state).quitting {
        // Our close frame, from the writing half: the reader has stopped,
        // so nothing of ours can follow it.
        if let Some(mut writer) = writer {
            let _ = writer.close(None);
        }
        let _ = link.socket.shutdown(Shutdown::Both);
    } else if matches!(ending, Ending::Closed) {
        eprintln!("lanchat: connection lost; connecting again…");
    }
    ending
}

/// Reads frames until the connection ends.
fn read_frames(reader: &mut WebSocket<ReadHalf>, shared: &Arc<Shared>) -> Ending {
    let mut last_heard = Instant::now();
    loop {
        let message = match reader.read() {
            Ok(message) => message,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if last_heard.elapsed() >= HEARTBEAT * 2 {
                    return Ending::Closed; // no answer to our ping
                }
                if reader.send(Message::Ping(Default::default())).is_err() {
                    return Ending::Closed;
                }
                continue;
            }
            Err(_) => return Ending::Closed,
        };
        last_heard = Instant::now();
        match message {
            Message::Text(text) => {
                if let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) {
                    handle_frame(&frame, shared);
                }
            }
            // Codes from 4000 are the server's own: kicked, released. The
            // others (restart, logout) are worth connecting again.
            Message::Close(Some(close)) if u16::from(close.code) >= 4000 => {
                return Ending::Fatal(format!("the server closed the chat: {}", close.reason));
            }
            _ => {}
        }
    }
}

/// One frame from the server: update what we know, print what is new.
fn handle_frame(frame: &Value, shared: &Arc<Shared>) {
    let mut lines = Vec::new(); // printed after the state's lock is released
    let mut state = lock(&shared.state);
    match frame["type"].as_str().unwrap_or("") {
        "welcome" => {
            state.me = frame["name"].as_str().unwrap_or("").to_string();
            state.online = strings(&frame["users"]).collect();
            if !state.typing && io::stdin().is_terminal() {
                eprintln!(
                    "lanchat: you are {}; {} online. Type a line to send it; /help for more.",
                    state.me,
                    state.online.len()
                );
            }
        }
        "history" => {
            let mut messages: Vec<Received> = ["messages", "private"]
                .iter()
                .flat_map(|key| frame[*key].as_array().into_iter().flatten())
                .filter_map(Received::from_json)
                .collect();
            messages.sort_by_key(|m| m.seq);
            if frame["gap"] == true {
                eprintln!("lanchat: some messages were missed (the server keeps the last 100)");
            }
            for message in &messages {
                lines.extend(state.receive(message, shared));
            }
        }
        "offline" => {
            for message in frame["messages"].as_array().into_iter().flatten() {
                if let Some(message) = Received::from_json(message) {
                    lines.extend(state.receive(&message, shared));
                }
            }
            // The opening is done (welcome, history, offline): only now
            // start reading stdin, so that an old copy of a line in the
            // history is never taken for the copy of a new one.
            if !state.typing {
                state.typing = true;
                let for_stdin = shared.clone();
                let started = std::thread::Builder::new()
                    .name("stdin".into())
                    .spawn(move || read_stdin(&for_stdin));
                if let Err(e) = started {
                    eprintln!("lanchat: cannot read stdin: {e}");
                }
            }
        }
        "message" | "private" => {
            if let Some(message) = Received::from_json(frame) {
                lines.extend(state.receive(&message, shared));
            }
        }
        "join" => {
            let name = frame["name"].as_str().unwrap_or("").to_string();
            lines.push(format!("* {} joined", printable(&name)));
            state.online.insert(name);
        }
        "leave" => {
            let name = frame["name"].as_str().unwrap_or("");
            lines.push(format!("* {} left", printable(name)));
            state.online.remove(name);
        }
        "error" => {
            // The answer to a line we sent: it will not come back.
            let private = matches!(frame["code"].as_str(), Some("unknown_user" | "private_off"));
            let position = state
                .pending
                .iter()
                .position(|sent| !private || sent.to.is_some());
            if let Some(i) = position {
                state.pending.remove(i);
                state.refused += 1;
                shared.changed.notify_all();
            }
            let reason = frame["message"].as_str().unwrap_or("refused");
            eprintln!("lanchat: not sent: {}", printable(reason));
        }
        // `deleted` cannot unprint a line; other types are from later
        // versions of the contract: ignored, as it asks.
        _ => {}
    }
    drop(state);
    for line in lines {
        print_line(&line);
    }
}

impl State {
    /// A message arrived (live, in the history or offline): the line to
    /// print, unless it was printed already. Our own copy confirms a line
    /// sent.
    fn receive(&mut self, message: &Received, shared: &Shared) -> Option<String> {
        if self.seen_set.contains(&message.id) {
            return None;
        }
        self.after = self.after.max(message.seq);
        self.seen.push_back(message.id.clone());
        self.seen_set.insert(message.id.clone());
        if self.seen.len() > SEEN_IDS
            && let Some(oldest) = self.seen.pop_front()
        {
            self.seen_set.remove(&oldest);
        }
        if message.from == self.me
            && let Some(i) = self.pending.iter().position(|s| message.is_copy_of(s))
        {
            self.pending.remove(i);
            shared.changed.notify_all();
        }
        Some(message.line(shared.clock))
    }
}

/// The names in a JSON array of strings.
fn strings(value: &Value) -> impl Iterator<Item = String> + '_ {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|name| name.as_str().map(str::to_string))
}

/// What one line of input asks for.
#[derive(Debug, PartialEq)]
enum Input {
    Send(Outgoing),
    Who,
    Quit,
    Help,
    /// Nothing to do (an empty line).
    Nothing,
    /// Not sent, and why.
    Bad(String),
}

const HELP: &str = "a line is sent to everyone; /msg NAME TEXT sends it to NAME only; /who lists who is online; /quit ends";

/// Reads one line of input. The text is cleaned as the server would (no
/// control characters, trimmed), so that its copy can be recognized.
fn parse_input(line: &str) -> Input {
    let line: String = line
        .chars()
        .filter(|c| !c.is_control() || *c == '\t')
        .collect();
    let line = line.trim();
    let (to, text) = match line.split_once(char::is_whitespace) {
        _ if line.is_empty() => return Input::Nothing,
        _ if line == "/who" => return Input::Who,
        _ if line == "/quit" => return Input::Quit,
        _ if line == "/help" => return Input::Help,
        Some(("/msg", rest)) => match rest.trim_start().split_once(char::is_whitespace) {
            Some((to, text)) if !text.trim().is_empty() => (Some(to.to_string()), text.trim()),
            _ => return Input::Bad("usage: /msg NAME TEXT".into()),
        },
        _ if line == "/msg" => return Input::Bad("usage: /msg NAME TEXT".into()),
        _ if line.starts_with('/') && !line.starts_with("//") => {
            return Input::Bad(format!("unknown command; {HELP}"));
        }
        // `//text` sends `/text`.
        _ => (
            None,
            line.strip_prefix('/')
                .filter(|t| t.starts_with('/'))
                .unwrap_or(line),
        ),
    };
    if text.chars().count() > MAX_TEXT_CHARS {
        return Input::Bad(format!("longer than {MAX_TEXT_CHARS} characters"));
    }
    Input::Send(Outgoing {
        to,
        text: text.to_string(),
    })
}

/// The stdin thread: each line is sent or answered; at the end (or
/// `/quit`), wait for the copies of what was sent, then stop the reader.
fn read_stdin(shared: &Shared) {
    let mut input = io::stdin().lock();
    let mut pace = Pace::new();
    let mut bytes = Vec::new();
    loop {
        bytes.clear();
        match input.read_until(b'\n', &mut bytes) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        match parse_input(&String::from_utf8_lossy(&bytes)) {
            Input::Send(outgoing) => {
                pace.wait();
                send(shared, outgoing);
            }
            Input::Who => {
                let state = lock(&shared.state);
                let names: Vec<String> = state.online.iter().map(|n| printable(n)).collect();
                drop(state);
                print_line(&format!("* online ({}): {}", names.len(), names.join(", ")));
            }
            Input::Help => eprintln!("lanchat: {HELP}"),
            Input::Bad(reason) => eprintln!("lanchat: not sent: {reason}"),
            Input::Quit => break,
            Input::Nothing => {}
        }
    }
    let deadline = Instant::now() + ACK_WAIT;
    let mut state = wait_until(&shared.changed, lock(&shared.state), deadline, |s| {
        s.pending.is_empty()
    });
    state.quitting = true;
    let link = state.link.clone();
    drop(state);
    shared.changed.notify_all(); // a reader waiting to connect again
    if let Some(link) = link {
        // A reader blocked in `read` gets the end of the stream at once.
        let _ = link.socket.shutdown(Shutdown::Read);
    }
}

/// Sends one line, waiting for a connection if there is none now. It is
/// pending from before it is written, so that its copy, however quick,
/// finds it.
fn send(shared: &Shared, outgoing: Outgoing) {
    lock(&shared.state).pending.push_back(outgoing.clone());
    let frame = outgoing.frame();
    let mut writer = lock(&shared.writer);
    loop {
        if let Some(ws) = writer.as_mut() {
            if ws.send(Message::text(frame.clone())).is_ok() {
                return;
            }
            // A failed write most likely sent nothing: the line goes on
            // the next connection. The reader sees the drop by itself.
            *writer = None;
        }
        writer = shared
            .connected
            .wait(writer)
            .unwrap_or_else(|p| p.into_inner());
    }
}

/// Keeps the stdin thread under the server's rate limit (the same token
/// bucket as `connection.rs`), so a piped file is sent whole instead of
/// getting `rate_limited` for its lines beyond the burst.
struct Pace {
    tokens: f64,
    last: Instant,
}

impl Pace {
    fn new() -> Pace {
        Pace {
            tokens: RATE_BURST,
            last: Instant::now(),
        }
    }

    /// Takes a token, first waiting for one if the bucket is empty.
    fn wait(&mut self) {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * RATE_PER_SEC;
        self.tokens = (self.tokens + refill).min(RATE_BURST);
        self.last = now;
        if self.tokens < 1.0 {
            // Slightly more than needed, so the server's bucket (which
            // started later) has its token too.
            let short = (1.0 - self.tokens) / RATE_PER_SEC * 1.1;
            std::thread::sleep(Duration::from_secs_f64(short));
            self.tokens = 1.0;
            self.last = Instant::now();
        }
        self.tokens -= 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(text: &str) -> Input {
        Input::Send(Outgoing {
            to: None,
            text: text.into(),
        })
    }

    #[test]
    fn input_lines() {
        assert_eq!(parse_input("  hi there \r\n"), room("hi there"));
        assert_eq!(
            parse_input("/msg bob  see you\n"),
            Input::Send(Outgoing {
                to: Some("bob".into()),
                text: "see you".into()
            })
        );
        assert_eq!(parse_input("/who\n"), Input::Who);
        assert_eq!(parse_input("/quit"), Input::Quit);
        assert_eq!(parse_input("   \n"), Input::Nothing);
        assert_eq!(parse_input("//etc"), room("/etc"));
        assert_eq!(parse_input("a\u{1b}[31mb"), room("a[31mb"));
        assert!(matches!(parse_input("/msg bob"), Input::Bad(_)));
        assert!(matches!(parse_input("/nope"), Input::Bad(_)));
        assert!(matches!(parse_input(&"x".repeat(4001)), Input::Bad(_)));
    }

    #[test]
    fn urls() {
        let server = Server::from_url("http://127.0.0.1:8000/join").unwrap();
        assert_eq!(server.authority, "127.0.0.1:8000");
        assert_eq!(
            Server::from_url("127.0.0.1").unwrap().authority,
            "127.0.0.1:80"
        );
        assert_eq!(
            Server::from_url("[::1]:9000").unwrap().authority,
            "[::1]:9000"
        );
        assert_eq!(
            Server::from_url("http://[::1]/").unwrap().authority,
            "[::1]:80"
        );
        assert!(Server::from_url("https://127.0.0.1/").is_err());
        assert!(Server::from_url("http:///").is_err());
    }

    #[test]
    fn lines_printed() {
        let message = Received {
            id: "1".into(),
            seq: 1,
            from: "alice".into(),
            to: None,
            text: "hi\nthere\u{1b}[2J".into(),
            ts: 0,
        };
        assert_eq!(
            message.line(UtcOffset::UTC),
            "00:00 alice: hi\n      there[2J"
        );
        let private = Received {
            to: Some("bob".into()),
            text: "psst".into(),
            ..message
        };
        assert_eq!(private.line(UtcOffset::UTC), "00:00 alice → bob: psst");
    }

    #[test]
    fn the_reason_of_a_refused_login() {
        let html = r#"<p id="login-error" class="error" role="alert">That name is in use &amp; taken.</p>"#;
        assert_eq!(
            reason_in_form(html).unwrap(),
            "That name is in use & taken."
        );
        let empty = r#"<p id="login-error" class="error" role="alert"></p>"#;
        assert_eq!(reason_in_form(empty), None);
    }
}
