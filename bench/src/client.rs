//! The load generator's WebSocket client: just enough of HTTP and RFC 6455.
//!
//! `POST /login` gets the two cookies, `GET /ws` upgrades with them, and from
//! then on the client reads the server's frames itself. It is hand-rolled on
//! purpose (tokio for the sockets, no WebSocket library): the load generator
//! runs on one core and must decode frames much faster than the server under
//! test writes them, or it would measure itself. Server frames are unmasked,
//! so decoding one is a header parse and a slice; the only work per delivered
//! frame is finding the send time in its text (see [`stamp`]).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest an HTTP exchange (login or upgrade) may take before it fails.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Logs `name` in and returns the `Cookie:` header value to send on upgrade.
pub async fn login(addr: SocketAddr, name: &str) -> io::Result<String> {
    tokio::time::timeout(HTTP_TIMEOUT, async {
        let mut socket = TcpStream::connect(addr).await?;
        let request = login_request(addr, name, None);
        socket.write_all(request.as_bytes()).await?;
        let (head, _) = read_head(&mut socket).await?;
        if !head.starts_with("HTTP/1.1 303") {
            return Err(io::Error::other(format!(
                "login {name}: {}",
                head.lines().next().unwrap_or("")
            )));
        }
        let cookies: Vec<&str> = head
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("set-cookie")
                    .then(|| v.trim().split(';').next().unwrap_or(""))
            })
            .collect();
        if cookies.len() != 2 {
            return Err(io::Error::other(format!(
                "login {name}: {} cookies",
                cookies.len()
            )));
        }
        Ok(cookies.join("; "))
    })
    .await
    .map_err(|_| io::Error::other("login timed out"))?
}

/// One HTTP exchange on a connection of its own, as lanchat answers every
/// request (`Connection: close`): what came back, and what it cost on the
/// wire.
#[derive(Debug, Default)]
pub struct Exchange {
    /// The answer's status, 0 when none came (connection refused, reset,
    /// timed out).
    pub status: u16,
    pub body: Vec<u8>,
    /// Bytes this client wrote and read (request and answer, HTTP heads
    /// included; TCP/IP headers and handshakes not).
    pub written: u64,
    pub read: u64,
}

/// Connects to `addr`, writes `request`, and reads the answer to its end
/// (`Content-Length`, or the server closing), within `limit`. Never fails:
/// a broken exchange has status 0, and counts the bytes that did move.
pub async fn exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> Exchange {
    let mut out = Exchange::default();
    let _ = tokio::time::timeout(limit, exchange_into(addr, request, &mut out)).await;
    out
}

async fn exchange_into(addr: SocketAddr, request: &[u8], out: &mut Exchange) -> io::Result<()> {
    let mut socket = TcpStream::connect(addr).await?;
    socket.set_nodelay(true)?;
    socket.write_all(request).await?;
    out.written = request.len() as u64;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 16 * 1024];
    let mut head_end = None;
    let mut wanted = None;
    loop {
        let n = socket.read(&mut chunk).await?;
        out.read += n as u64;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if head_end.is_none()
            && let Some(end) = memchr::memmem::find(&buf, b"\r\n\r\n")
        {
            head_end = Some(end + 4);
            let head = String::from_utf8_lossy(&buf[..end]);
            out.status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            wanted = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            });
        }
        if let (Some(start), Some(len)) = (head_end, wanted)
            && buf.len() >= start + len
        {
            break;
        }
        if buf.len() > 16 * 1024 * 1024 {
            return Err(io::Error::other("answer too large"));
        }
    }
    if let Some(start) = head_end {
        out.body = buf.split_off(start);
    }
    Ok(())
}

/// A `POST /login` request for `name`, with `password` if given
/// (form-encoded: both must be made of characters that need no escaping).
pub fn login_request(addr: SocketAddr, name: &str, password: Option<&str>) -> String {
    let body = match password {
        Some(password) => format!("name={name}&password={password}"),
        None => format!("name={name}"),
    };
    format!(
        "POST /login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Sends the upgrade request for `path` (`/ws`, or `/ws?after=SEQ`) on
/// `socket` (already connected).
pub async fn send_upgrade(
    socket: &mut TcpStream,
    addr: SocketAddr,
    path: &str,
    cookie: &str,
) -> io::Result<()> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nCookie: {cookie}\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await
}

/// Reads the `101` answer; returns the frame bytes that came with it.
pub async fn finish_upgrade(socket: &mut TcpStream) -> io::Result<Vec<u8>> {
    tokio::time::timeout(HTTP_TIMEOUT, upgrade_answer(socket))
        .await
        .map_err(|_| io::Error::other("upgrade timed out"))?
}

/// [`finish_upgrade`] with no time limit of its own (the caller bounds it):
/// a join storm may keep the answer longer than [`HTTP_TIMEOUT`].
pub async fn upgrade_answer(socket: &mut TcpStream) -> io::Result<Vec<u8>> {
    let (head, rest) = read_head(socket).await?;
    if !head.starts_with("HTTP/1.1 101") {
        return Err(io::Error::other(format!(
            "upgrade: {}",
            head.lines().next().unwrap_or("")
        )));
    }
    Ok(rest)
}

/// Reads an HTTP response head; returns it and whatever followed it.
async fn read_head(socket: &mut TcpStream) -> io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before the head",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = memchr::memmem::find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            return Ok((head, buf[end + 4..].to_vec()));
        }
        if buf.len() > 64 * 1024 {
            return Err(io::Error::other("response head too large"));
        }
    }
}

/// A client text frame (masked, as RFC 6455 requires of clients).
pub fn text_frame(text: &str) -> Vec<u8> {
    frame(0x1, text.as_bytes())
}

/// A masked client frame of `opcode` with `payload`.
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x5a, 0x1c, 0x93, 0x07];
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// One server frame found in a [`FrameBuf`]: its opcode and payload range.
pub struct Frame {
    pub opcode: u8,
    pub start: usize,
    pub end: usize,
}

/// Bytes read from a socket, split into whole frames as they complete.
pub struct FrameBuf {
    pub buf: Vec<u8>,
    /// Start of the first byte not yet consumed.
    pos: usize,
    /// End of the bytes read so far.
    len: usize,
}

impl FrameBuf {
    pub fn new(initial: Vec<u8>, capacity: usize) -> FrameBuf {
        let len = initial.len();
        let mut buf = initial;
        buf.resize(capacity.max(len), 0);
        FrameBuf { buf, pos: 0, len }
    }

    /// Reads once more from `socket`; `Ok(0)` is the end of the stream.
    pub async fn fill(&mut self, socket: &mut (impl AsyncReadExt + Unpin)) -> io::Result<usize> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.len, 0);
            self.len -= self.pos;
            self.pos = 0;
        }
        if self.len == self.buf.len() {
            // A frame larger than the buffer: grow (the history frame can be).
            let grown = self.buf.len() * 2;
            self.buf.resize(grown, 0);
        }
        let n = socket.read(&mut self.buf[self.len..]).await?;
        self.len += n;
        Ok(n)
    }

    /// The next whole frame, if one is buffered. Fragmented messages are
    /// not reassembled (neither server sends them).
    pub fn next(&mut self) -> Option<Frame> {
        let b = &self.buf[self.pos..self.len];
        if b.len() < 2 {
            return None;
        }
        let opcode = b[0] & 0x0f;
        let (len, header) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => (
                u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => return None,
            n => (n as usize, 2),
        };
        if b.len() < header + len {
            return None;
        }
        let start = self.pos + header;
        self.pos = start + len;
        Some(Frame {
            opcode,
            start,
            end: start + len,
        })
    }

    /// Gives back memory a large frame (a `welcome` listing thousands of
    /// names) made the buffer grow to: keeps the unread bytes, and at most
    /// `capacity` bytes or what they need. Call it between frames, not while
    /// holding a [`Frame`] of this buffer.
    pub fn shrink_to(&mut self, capacity: usize) {
        if self.buf.len() <= capacity {
            return;
        }
        self.buf.copy_within(self.pos..self.len, 0);
        self.len -= self.pos;
        self.pos = 0;
        self.buf.truncate(capacity.max(self.len));
        self.buf.shrink_to_fit();
    }

    pub fn payload(&self, frame: &Frame) -> &[u8] {
        &self.buf[frame.start..frame.end]
    }
}

/// The text every load message starts with: `B<send time in µs>@<server> `.
pub const MARK: &[u8] = b"\"text\":\"B";

/// What a load message's text says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Send time, µs since the bench's epoch.
    pub sent_us: u64,
    /// Index of the server its sender is connected to (0 without `@`).
    pub server: usize,
}

/// The stamp embedded in a room message, or `None` for any other frame
/// (welcome, join, a foreign message ...).
pub fn stamp(payload: &[u8]) -> Option<Stamp> {
    let at = memchr::memmem::find(payload, MARK)? + MARK.len();
    let (sent_us, digits) = number(&payload[at..]);
    if digits == 0 {
        return None;
    }
    let rest = &payload[at + digits..];
    let server = match rest.first() {
        Some(b'@') => number(&rest[1..]).0 as usize,
        _ => 0,
    };
    Some(Stamp { sent_us, server })
}

/// The stamp of every load message in a poll answer (it holds a list of
/// messages, each with its own text).
pub fn stamps(body: &[u8]) -> impl Iterator<Item = Stamp> + '_ {
    memchr::memmem::find_iter(body, MARK).filter_map(move |at| stamp(&body[at..]))
}

/// The `"next":N` of a poll answer: the seq to pass as `after` next time.
/// (A `"` inside a message's text is escaped, so only the field matches.)
pub fn poll_next(body: &[u8]) -> Option<u64> {
    const NEXT: &[u8] = b"\"next\":";
    let at = memchr::memmem::rfind(body, NEXT)? + NEXT.len();
    let (next, digits) = number(&body[at..]);
    (digits > 0).then_some(next)
}

/// The highest `"seq":N` in a server frame (a `history` frame holds one per
/// message), or `None` when the frame has none (a server that does not send
/// seqs yet). A `"` inside a message's text is escaped, so every match is a
/// real field.
pub fn max_seq(payload: &[u8]) -> Option<u64> {
    const SEQ: &[u8] = b"\"seq\":";
    memchr::memmem::find_iter(payload, SEQ)
        .filter_map(|at| {
            let (seq, digits) = number(&payload[at + SEQ.len()..]);
            (digits > 0).then_some(seq)
        })
        .max()
}

/// The decimal number `bytes` start with, and how many digits it has.
fn number(bytes: &[u8]) -> (u64, usize) {
    let mut value = 0u64;
    let mut digits = 0;
    for &c in bytes {
        if !c.is_ascii_digit() {
            break;
        }
        value = value * 10 + (c - b'0') as u64;
        digits += 1;
    }
    (value, digits)
}

/// Connects, upgrades, and returns the socket with the bytes read past the
/// `101` head.
pub async fn connect_ws(addr: SocketAddr, cookie: &str) -> io::Result<(TcpStream, Vec<u8>)> {
    let mut socket = TcpStream::connect(addr).await?;
    socket.set_nodelay(true)?;
    send_upgrade(&mut socket, addr, "/ws", cookie).await?;
    let rest = finish_upgrade(&mut socket).await?;
    Ok((socket, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_seq_of_a_history_frame() {
        let history = br#"{"type":"history","messages":[{"type":"message","id":"a","seq":7,"from":"x","text":"\"seq\":99","ts":1},{"type":"message","id":"b","seq":12,"from":"x","text":"hi","ts":2}],"private":[],"gap":false}"#;
        assert_eq!(max_seq(history), Some(12));
        let old = br#"{"type":"history","messages":[{"type":"message","id":"a","from":"x","text":"hi","ts":1}]}"#;
        assert_eq!(max_seq(old), None);
    }

    #[test]
    fn stamps_and_next_of_a_poll_answer() {
        let answer = br#"{"type":"poll","messages":[{"type":"message","id":"a","seq":3,"from":"t1","text":"B100@0 0 \"next\":7","ts":1},{"type":"message","id":"b","seq":4,"from":"t2","text":"B200@0 1 xx","ts":2}],"users":["t1","t2"],"hosts":[],"mode":{},"next":4,"gap":false}"#;
        let sent: Vec<u64> = stamps(answer).map(|s| s.sent_us).collect();
        assert_eq!(sent, [100, 200]);
        assert_eq!(poll_next(answer), Some(4));
        assert_eq!(poll_next(b"{}"), None);
    }

    #[test]
    fn stamp_with_and_without_seq() {
        let with =
            br#"{"type":"message","id":"a","seq":3,"from":"c1","text":"B12345@1 0 xx","ts":1}"#;
        assert_eq!(
            stamp(with),
            Some(Stamp {
                sent_us: 12345,
                server: 1
            })
        );
        let without = br#"{"type":"message","id":"a","from":"c1","text":"B42 0 xx","ts":1}"#;
        assert_eq!(
            stamp(without),
            Some(Stamp {
                sent_us: 42,
                server: 0
            })
        );
    }
}
