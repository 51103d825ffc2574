//! Just enough HTTP/1.1 for lanchat: read one request, write one response.
//!
//! Every connection starts here, on its own thread. The request head is parsed
//! with `httparse`; we never trust the peer for size or time:
//! - the head must fit in [`MAX_HEAD`] bytes, else `431`;
//! - the head and body must arrive within [`HEAD_TIMEOUT`], else the socket is closed;
//! - a body is capped at [`MAX_BODY`] (forms), or [`MAX_SAY_BODY`] for
//!   `POST /say` (one client frame), else `413`.
//!
//! One request per connection (`Connection: close`): a chat page loads a
//! handful of files, and a thread parked on an idle keep-alive socket is a
//! thread doing nothing. A `GET /ws` request keeps its socket: the bytes read
//! past the head are handed on to the WebSocket (see `server.rs`).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Largest request head we accept (request line + headers). Browsers send
/// 1-2 KiB; cookies can add 8 KiB. The contract allows at most 64 KiB.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body of a form (the login form is a few dozen bytes).
pub const MAX_BODY: usize = 8 * 1024;
/// Largest body of `POST /say`: one client frame, as large as a WebSocket
/// message may be.
pub const MAX_SAY_BODY: usize = crate::protocol::MAX_MESSAGE_BYTES;
/// A request whose head (and body) is still incomplete after this is dropped:
/// a slow or half-open client cannot pin a thread for longer.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Most headers a request may carry.
const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path without the query string, e.g. `/login`.
    pub path: String,
    /// The raw query string after `?`, if any.
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The client's address (for the limits per address).
    pub peer: Option<std::net::IpAddr>,
}

/// Why no request could be read. `Closed` and `TimedOut` get no answer.
#[derive(Debug)]
pub enum ReadError {
    Closed,
    TimedOut,
    HeadTooLarge,
    BodyTooLarge,
    Malformed(&'static str),
    Io(io::Error),
}

impl Request {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of a header, e.g. several `Cookie` lines.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// One field of the query string, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_field(self.query.as_deref()?.as_bytes(), name)
    }
}

/// Reads one request from `stream`. Returns it with the bytes that arrived
/// after it (for a WebSocket upgrade, the first frames may already be there).
pub fn read_request(stream: &mut TcpStream) -> Result<(Request, Vec<u8>), ReadError> {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    // On the heap, not the stack: this thread may live on as a read pump,
    // and every stack page touched here would stay resident meanwhile.
    let mut chunk = vec![0u8; 4096];
    let (mut request, head_len) = loop {
        let n = read_before(stream, &mut chunk, deadline)?;
        if n == 0 {
            return Err(if buf.is_empty() {
                ReadError::Closed
            } else {
                ReadError::Malformed("incomplete request")
            });
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(parsed) = parse_head(&buf)? {
            break parsed;
        }
        if buf.len() > MAX_HEAD {
            return Err(ReadError::HeadTooLarge);
        }
    };
    if head_len > MAX_HEAD {
        return Err(ReadError::HeadTooLarge);
    }
    request.peer = stream.peer_addr().ok().map(|a| a.ip());
    let mut rest = buf.split_off(head_len);
    // Request smuggling defences (RFC 9112 6.3): one way to say the length.
    if request.header("transfer-encoding").is_some() {
        return Err(ReadError::Malformed("chunked bodies are not supported"));
    }
    let lengths: Vec<&str> = request
        .headers_named("content-length")
        .map(str::trim)
        .collect();
    if lengths.windows(2).any(|pair| pair[0] != pair[1]) {
        return Err(ReadError::Malformed("conflicting Content-Length headers"));
    }
    if lengths
        .first()
        .is_some_and(|l| l.is_empty() || !l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(ReadError::Malformed("bad Content-Length"));
    }
    if request.path == "/files" {
        // An upload: `files.rs` reads the body itself, with its own cap
        // and deadline (it may be megabytes).
        return Ok((request, rest));
    }
    if let Some(length) = request.header("content-length") {
        let length: usize = length
            .trim()
            .parse()
            .map_err(|_| ReadError::Malformed("bad Content-Length"))?;
        let cap = if request.path == "/say" {
            MAX_SAY_BODY
        } else {
            MAX_BODY
        };
        if length > cap {
            return Err(ReadError::BodyTooLarge);
        }
        while rest.len() < length {
            let n = read_before(stream, &mut chunk, deadline)?;
            if n == 0 {
                return Err(ReadError::Malformed("body shorter than Content-Length"));
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        let after = rest.split_off(length);
        request.body = rest;
        rest = after;
    }
    Ok((request, rest))
}

/// One `read`, but never past `deadline`.
fn read_before(
    stream: &mut TcpStream,
    chunk: &mut [u8],
    deadline: Instant,
) -> Result<usize, ReadError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ReadError::TimedOut);
    }
    stream.set_read_timeout(Some(left)).map_err(ReadError::Io)?;
    match stream.read(chunk) {
        Ok(n) => Ok(n),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(ReadError::TimedOut)
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => read_before(stream, chunk, deadline),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
            ) =>
        {
            Err(ReadError::Closed)
        }
        Err(e) => Err(ReadError::Io(e)),
    }
}

/// Parses a request head from the bytes read so far: `Ok(None)` while it is
/// incomplete, else the request and the head's length.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Request, usize)>, ReadError> {
    let mut headers = vec![httparse::EMPTY_HEADER; MAX_HEADERS]; // heap: see read_request
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ReadError::HeadTooLarge),
        Err(_) => return Err(ReadError::Malformed("malformed request head")),
    };
    let target = parsed.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query.to_string())),
        None => (target, None),
    };
    let headers = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let request = Request {
        method: parsed.method.unwrap_or("").to_string(),
        path: path.to_string(),
        query,
        headers,
        body: Vec::new(),
        peer: None,
    };
    Ok(Some((request, head_len)))
}

/// A response, built as plain data and written in one go.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

/// A response body: its own bytes, or bytes shared with others (a file
/// served to thirty people is one copy in memory, not thirty).
#[derive(Debug, Clone)]
pub enum Body {
    Owned(Vec<u8>),
    Shared(std::sync::Arc<[u8]>),
}

impl std::ops::Deref for Body {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Body::Owned(bytes) => bytes,
            Body::Shared(bytes) => bytes,
        }
    }
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            body: Body::Owned(body.into()),
        }
    }

    pub fn text(status: u16, body: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", format!("{body}\n"))
    }

    pub fn html(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response::new(status, "text/html; charset=utf-8", body)
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response::new(status, "application/json", value.to_string())
    }

    /// `303 See Other`: after a form POST the browser follows with a GET.
    pub fn redirect(location: &str) -> Response {
        Response::text(303, &format!("see {location}")).with_header("Location", location)
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// Writes the response; `head_only` for `HEAD` requests.
    pub fn write_to(&self, out: &mut impl Write, head_only: bool) -> io::Result<()> {
        let mut bytes = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            bytes.push_str(&format!("{name}: {value}\r\n"));
        }
        bytes.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        bytes.push_str("Connection: close\r\n");
        bytes.push_str("X-Content-Type-Options: nosniff\r\n\r\n");
        let mut bytes = bytes.into_bytes();
        if head_only {
            // Nothing more.
        } else if let Body::Shared(shared) = &self.body {
            // Written from the shared bytes, never copied.
            out.write_all(&bytes)?;
            out.write_all(shared)?;
            return out.flush();
        } else {
            bytes.extend_from_slice(&self.body);
        }
        out.write_all(&bytes)?;
        out.flush()
    }
}

/// The standard reason phrase of a status code (`"Not Found"` for 404).
fn reason(status: u16) -> &'static str {
    ::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason())
        .unwrap_or("Unknown")
}

/// How long [`wait_for_hang_up`] waits for the peer to finish.
pub const LINGER: Duration = Duration::from_secs(2);

/// Answers a request refused before its route (a bad head, a foreign
/// `Host`, a refused handshake) and closes the connection gracefully.
pub fn refuse(mut socket: &TcpStream, response: &Response) {
    let _ = response.write_to(&mut socket, false);
    close_gracefully(socket);
}

/// Half-closes `socket` (our side is done) and waits for the peer to hang up.
pub fn close_gracefully(socket: &TcpStream) {
    let _ = socket.shutdown(std::net::Shutdown::Write);
    wait_for_hang_up(socket);
}

/// Reads (discarding) until the peer hangs up or [`LINGER`] passes.
/// Closing a socket that still has unread input makes TCP send a reset,
/// which can destroy the response (or close frame) still on its way.
pub fn wait_for_hang_up(socket: &TcpStream) {
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; 1024];
    let mut socket = socket;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match socket.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// One field of an `application/x-www-form-urlencoded` body or query string,
/// percent-decoded (`+` is a space). `None` when absent or not valid UTF-8.
pub fn form_field(form: &[u8], name: &str) -> Option<String> {
    form.split(|&b| b == b'&').find_map(|pair| {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        (form_decode(key)? == name)
            .then(|| form_decode(value))
            .flatten()
    })
}

/// Decodes one form component; a `%` not followed by two hex digits stays.
fn form_decode(raw: &[u8]) -> Option<String> {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_encoding::percent_decode(&spaced)
        .decode_utf8()
        .ok()
        .map(|text| text.into_owned())
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_decoded() {
        let form = b"name=J%C3%BCrgen+M&next=%2Fx%3Fy%3D1&empty=&bad=%zz%4";
        assert_eq!(form_field(form, "name").as_deref(), Some("Jürgen M"));
        assert_eq!(form_field(form, "next").as_deref(), Some("/x?y=1"));
        assert_eq!(form_field(form, "empty").as_deref(), Some(""));
        assert_eq!(form_field(form, "bad").as_deref(), Some("%zz%4"));
        assert_eq!(form_field(form, "missing"), None);
        assert_eq!(form_field(b"name=%FF", "name"), None);
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn heads_parse_with_query() {
        let raw = b"GET /login?next=%2F HTTP/1.1\r\nHost: a\r\nCookie: x=1\r\n\r\nrest";
        let (req, len) = parse_head(raw).unwrap().unwrap();
        assert_eq!(
            (req.path.as_str(), req.query.as_deref()),
            ("/login", Some("next=%2F"))
        );
        assert_eq!(req.header("COOKIE"), Some("x=1"));
        assert_eq!(req.query_param("next").as_deref(), Some("/"));
        assert_eq!(&raw[len..], b"rest");
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost").unwrap().is_none());
        assert!(parse_head(b"\x00\x01 garbage\r\n\r\n").is_err());
    }
}
