//! `fanout-reference`: the machine's limit for lanchat's fan-out.
//!
//! The simplest fast way to do what the benchmark asks of a chat server, so
//! that lanchat's numbers can be read as a fraction of what this machine can
//! do: **one thread, one epoll loop (mio), non-blocking sockets**, nothing
//! else in the way. It speaks just enough of lanchat's protocol for the same
//! load generator to drive it unchanged:
//!
//! - `POST /login` (form `name=...`) → `303` with the two cookies;
//! - `GET /ws` → `101`, then `welcome`, `history` (empty), `offline` (empty);
//! - a text frame in → one `{"type":"message","id","from","text","ts"}` frame
//!   encoded once and appended to every connection's output buffer; at the
//!   end of each loop turn every connection with pending output gets one
//!   `write` (so under load one syscall carries several frames, as in any
//!   event loop). Ping → pong, close → close.
//!
//! Deliberately *not* here: sessions (any cookie is accepted), history, rate
//! limits, validation, heartbeats, JSON parsing beyond finding `"text":"`.
//! A connection with more than 4 MiB of output pending is dropped.
//!
//! Usage: `fanout-reference [--host 127.0.0.1] [--port 0]`; prints
//! `listening on http://HOST:PORT` like lanchat.

use base64::Engine;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::time::{SystemTime, UNIX_EPOCH};

const LISTENER: Token = Token(usize::MAX);
const MAX_PENDING: usize = 4 * 1024 * 1024;

enum State {
    Http,
    /// Answered; close once the output is written.
    Closing,
    Ws {
        name: String,
    },
}

struct Conn {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    state: State,
    /// Registered for WRITABLE (output left after a short write).
    waiting: bool,
    /// In the dirty list this turn.
    dirty: bool,
}

struct Server {
    poll: Poll,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Upgraded connections, for the fan-out.
    members: Vec<usize>,
    dirty: Vec<usize>,
    next_id: u64,
    sessions: u64,
}

fn main() -> io::Result<()> {
    let (mut host, mut port) = ("127.0.0.1".to_string(), "0".to_string());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--host" => host = args.next().unwrap_or(host),
            "--port" => port = args.next().unwrap_or(port),
            _ => {
                eprintln!("usage: fanout-reference [--host ADDR] [--port N]");
                std::process::exit(2);
            }
        }
    }
    let addr = format!("{host}:{port}")
        .parse()
        .map_err(|e| io::Error::other(format!("bad address: {e}")))?;
    let mut listener = TcpListener::bind(addr)?;
    println!(
        "fanout-reference listening on http://{}",
        listener.local_addr()?
    );
    io::stdout().flush()?;
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut server = Server {
        poll,
        conns: Vec::new(),
        free: Vec::new(),
        members: Vec::new(),
        dirty: Vec::new(),
        next_id: 0,
        sessions: 0,
    };
    let mut events = Events::with_capacity(1024);
    loop {
        match server.poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in events.iter() {
            match event.token() {
                LISTENER => server.accept(&listener),
                Token(i) => {
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        server.readable(i);
                    }
                    if event.is_writable() {
                        server.mark_dirty(i);
                    }
                }
            }
        }
        server.flush_dirty();
    }
}

impl Server {
    fn accept(&mut self, listener: &TcpListener) {
        loop {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let i = self.free.pop().unwrap_or_else(|| {
                        self.conns.push(None);
                        self.conns.len() - 1
                    });
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, Token(i), Interest::READABLE)
                        .is_err()
                    {
                        self.free.push(i);
                        continue;
                    }
                    self.conns[i] = Some(Conn {
                        stream,
                        input: Vec::new(),
                        output: Vec::new(),
                        state: State::Http,
                        waiting: false,
                        dirty: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return, // e.g. out of fds: try again on the next event
            }
        }
    }

    fn close(&mut self, i: usize) {
        if let Some(mut conn) = self.conns[i].take() {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            if matches!(conn.state, State::Ws { .. })
                && let Some(at) = self.members.iter().position(|&m| m == i)
            {
                self.members.swap_remove(at);
            }
            self.free.push(i);
        }
    }

    fn readable(&mut self, i: usize) {
        let mut chunk = [0u8; 64 * 1024];
        let Some(conn) = self.conns[i].as_mut() else {
            return;
        };
        loop {
            match conn.stream.read(&mut chunk) {
                Ok(0) => return self.close(i),
                Ok(n) => conn.input.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.close(i),
            }
        }
        match conn.state {
            State::Http => self.http(i),
            State::Ws { .. } => self.frames(i),
            State::Closing => conn.input.clear(),
        }
    }

    fn mark_dirty(&mut self, i: usize) {
        if let Some(conn) = self.conns[i].as_mut()
            && !conn.dirty
        {
            conn.dirty = true;
            self.dirty.push(i);
        }
    }

    fn send(&mut self, i: usize, bytes: &[u8]) {
        if let Some(conn) = self.conns[i].as_mut() {
            conn.output.extend_from_slice(bytes);
            self.mark_dirty(i);
        }
    }

    /// One `write` per connection with pending output.
    fn flush_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for &i in &dirty {
            let Some(conn) = self.conns[i].as_mut() else {
                continue;
            };
            conn.dirty = false;
            let mut failed = false;
            while !conn.output.is_empty() {
                match conn.stream.write(&conn.output) {
                    Ok(n) => {
                        conn.output.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            let pending = !conn.output.is_empty();
            if failed || conn.output.len() > MAX_PENDING {
                self.close(i);
                continue;
            }
            if !pending && matches!(conn.state, State::Closing) {
                let _ = conn.stream.shutdown(std::net::Shutdown::Write);
                // The peer closes after reading the response; its EOF closes us.
            }
            if pending != conn.waiting {
                conn.waiting = pending;
                let interest = if pending {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                let _ = self
                    .poll
                    .registry()
                    .reregister(&mut conn.stream, Token(i), interest);
            }
        }
        let mut dirty = dirty;
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty; // keep the allocation
        }
    }

    fn http(&mut self, i: usize) {
        let conn = self.conns[i].as_mut().expect("open");
        let Some(end) = find(&conn.input, b"\r\n\r\n") else {
            if conn.input.len() > 64 * 1024 {
                self.close(i);
            }
            return;
        };
        let head = String::from_utf8_lossy(&conn.input[..end]).into_owned();
        let header = |name: &str| {
            head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let request_line = head.lines().next().unwrap_or("");
        if request_line.starts_with("POST /login ") {
            let length: usize = header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if conn.input.len() < end + 4 + length {
                return; // the body is still coming
            }
            let body = String::from_utf8_lossy(&conn.input[end + 4..end + 4 + length]).into_owned();
            let name = body
                .split('&')
                .find_map(|kv| kv.strip_prefix("name="))
                .unwrap_or("anonymous")
                .to_string();
            self.sessions += 1;
            let user = base64::engine::general_purpose::STANDARD.encode(name.as_bytes());
            let response = format!(
                "HTTP/1.1 303 See Other\r\nLocation: /\r\nSet-Cookie: lanchat_user={user}; Path=/\r\nSet-Cookie: lanchat_session=s{}; Path=/; HttpOnly\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.sessions
            );
            conn.input.clear();
            conn.state = State::Closing;
            self.send(i, response.as_bytes());
        } else if request_line.starts_with("GET /ws ") {
            let Some(key) = header("sec-websocket-key") else {
                return self.close(i);
            };
            let name = header("cookie")
                .and_then(|c| {
                    c.split(';').find_map(|kv| {
                        let v = kv.trim().strip_prefix("lanchat_user=")?;
                        let bytes = base64::engine::general_purpose::STANDARD.decode(v).ok()?;
                        String::from_utf8(bytes).ok()
                    })
                })
                .unwrap_or_else(|| "anonymous".to_string());
            let mut sha = sha1_smol::Sha1::new();
            sha.update(key.as_bytes());
            sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
            let accept = base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes());
            let rest = conn.input.split_off(end + 4);
            conn.input = rest;
            let mut out = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .into_bytes();
            let welcome = format!(
                r#"{{"type":"welcome","name":{},"users":[]}}"#,
                serde_json::to_string(&name).unwrap_or_default()
            );
            for text in [
                welcome.as_str(),
                r#"{"type":"history","messages":[]}"#,
                r#"{"type":"offline","messages":[]}"#,
            ] {
                out.extend_from_slice(&server_frame(0x1, text.as_bytes()));
            }
            conn.state = State::Ws { name };
            self.members.push(i);
            self.send(i, &out);
            self.frames(i);
        } else {
            conn.input.clear();
            conn.state = State::Closing;
            self.send(
                i,
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    }

    /// Handles every whole client frame in the input.
    fn frames(&mut self, i: usize) {
        loop {
            let Some(conn) = self.conns[i].as_mut() else {
                return;
            };
            let State::Ws { name } = &conn.state else {
                return;
            };
            let name = name.clone();
            let Some((opcode, payload, used)) = parse_client_frame(&conn.input) else {
                if conn.input.len() > 1 << 20 {
                    self.close(i);
                }
                return;
            };
            conn.input.drain(..used);
            match opcode {
                0x1 => {
                    let frame = self.message(name, &payload);
                    for k in 0..self.members.len() {
                        let m = self.members[k];
                        self.send(m, &frame);
                    }
                }
                0x8 => {
                    let close = server_frame(0x8, &payload[..payload.len().min(2)]);
                    conn.state = State::Closing;
                    self.send(i, &close);
                    if let Some(at) = self.members.iter().position(|&m| m == i) {
                        self.members.swap_remove(at);
                    }
                    return;
                }
                0x9 => self.send(i, &server_frame(0xA, &payload)),
                _ => {}
            }
        }
    }

    /// The one encoded frame every member gets for a text frame `payload`.
    fn message(&mut self, from: String, payload: &[u8]) -> Vec<u8> {
        self.next_id += 1;
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        // The text as the client wrote it (already a JSON string body) when
        // it sent a frame object; else the whole frame, escaped.
        let text = match find(payload, b"\"text\":\"") {
            Some(at) => {
                let body = &payload[at + 8..];
                let mut end = 0;
                while end < body.len()
                    && !(body[end] == b'"' && (end == 0 || body[end - 1] != b'\\'))
                {
                    end += 1;
                }
                format!("\"{}\"", String::from_utf8_lossy(&body[..end]))
            }
            None => serde_json::to_string(&String::from_utf8_lossy(payload)).unwrap_or_default(),
        };
        let json = format!(
            r#"{{"type":"message","id":"r{}","from":{},"text":{text},"ts":{ts}}}"#,
            self.next_id,
            serde_json::to_string(&from).unwrap_or_default()
        );
        server_frame(0x1, json.as_bytes())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

/// An unmasked server frame.
fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// One whole masked client frame: opcode, unmasked payload, bytes used.
fn parse_client_frame(b: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if b.len() < 2 {
        return None;
    }
    let opcode = b[0] & 0x0f;
    let masked = b[1] & 0x80 != 0;
    let (len, mut at) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
        127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().ok()?) as usize, 10),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    let mask = if masked {
        let m: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        m
    } else {
        [0; 4]
    };
    let payload = b.get(at..at + len)?;
    let payload = payload
        .iter()
        .enumerate()
        .map(|(i, x)| x ^ mask[i % 4])
        .collect();
    Some((opcode, payload, at + len))
}
