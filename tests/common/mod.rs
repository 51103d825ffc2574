//! Test harness: the real `lanchat` binary on loopback, a raw HTTP client,
//! and a real WebSocket client (tungstenite's). Every wait has a deadline
//! ([`TIMEOUT`]), so a hang fails the test instead of stalling CI.
#![allow(dead_code)] // each test file uses a different part of this

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

/// Longest any single wait may take. Generous: CI machines are loaded.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// A running `lanchat` process, killed when dropped.
pub struct Server {
    pub addr: SocketAddr,
    pub child: Child,
    /// The lines it printed on stdout after the `listening on` line.
    pub output: mpsc::Receiver<String>,
    /// Where its stderr (the log) goes.
    pub log_path: std::path::PathBuf,
}

impl Server {
    /// Starts the binary on 127.0.0.1 with a free port and waits for its
    /// `listening on` line.
    pub fn start(extra: &[&str]) -> Server {
        Self::try_start(extra).unwrap_or_else(|output| panic!("server did not start: {output}"))
    }

    /// Like [`Server::start`], but returns the process's output on failure.
    pub fn try_start(extra: &[&str]) -> Result<Server, String> {
        let log_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("server-logs");
        std::fs::create_dir_all(&log_dir).unwrap();
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log_path = log_dir.join(format!("{}-{n}.log", std::process::id()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_lanchat"))
            .args(["--host", "127.0.0.1", "--port", "0", "--log-level", "debug"])
            // Every test client comes from 127.0.0.1: no cap per address,
            // unless a test sets one (its flag comes later and wins).
            .args(["--max-per-address", "0"])
            .args(extra)
            .env_remove("REDIS_URL")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("run lanchat");
        let stdout = child.stdout.take().unwrap();
        let (lines, line) = mpsc::channel();
        std::thread::spawn(move || {
            for text in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(text);
            }
        });
        let listening = line
            .recv_timeout(TIMEOUT)
            .ok()
            .filter(|l| l.contains("listening on http://"));
        let Some(listening) = listening else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::fs::read_to_string(&log_path).unwrap_or_default());
        };
        let addr = listening
            .rsplit("http://")
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        Ok(Server {
            addr,
            child,
            output: line,
            log_path,
        })
    }

    /// The next line on stdout after those already read.
    pub fn next_line(&self) -> String {
        self.output
            .recv_timeout(TIMEOUT)
            .expect("a line on the server's stdout")
    }

    /// Stops the server (SIGTERM) and returns what it printed on stdout
    /// that was not read yet, to the end.
    pub fn stop_and_read_output(&mut self) -> Vec<String> {
        self.signal("TERM");
        let (code, _) = self.wait_exit();
        assert_eq!(code, Some(0), "the server's exit code");
        let mut lines = Vec::new();
        while let Ok(line) = self.output.recv_timeout(TIMEOUT) {
            lines.push(line); // ends when the reading thread hangs up
        }
        lines
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `/healthz` as JSON.
    pub fn health(&self) -> Value {
        let response = get(self, "/healthz", None);
        assert_eq!(response.status, 200);
        serde_json::from_str(&response.body).unwrap()
    }

    /// Open WebSocket connections as the server counts them.
    pub fn connections(&self) -> u64 {
        self.health()["connections"].as_u64().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A number from the environment (a long test's size), else `default`.
pub fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Polls `condition` until it holds; panics with `what` after [`TIMEOUT`].
pub fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------- HTTP

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The body's bytes, as sent (files).
    pub bytes: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The `Cookie` header a browser would send back after this response.
    pub fn cookie_header(&self) -> String {
        self.set_cookies()
            .iter()
            .map(|c| c.split(';').next().unwrap())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Sends raw bytes as a request and reads the response until the server closes.
pub fn raw_http(server: &Server, request: &[u8]) -> HttpResponse {
    raw_http_at(server.addr, request)
}

/// [`raw_http`] by address (for threads that hold no `Server`).
pub fn raw_http_at(addr: SocketAddr, request: &[u8]) -> HttpResponse {
    let mut socket = TcpStream::connect(addr).unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    socket.write_all(request).unwrap();
    let mut bytes = Vec::new();
    let _ = socket.read_to_end(&mut bytes); // a reset after the response is fine
    parse_response(&bytes)
}

pub fn parse_response(bytes: &[u8]) -> HttpResponse {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        other => panic!(
            "bad response {other:?}: {:?}",
            String::from_utf8_lossy(bytes)
        ),
    };
    HttpResponse {
        status: response.code.unwrap(),
        headers: response
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&bytes[head_len..]).into_owned(),
        bytes: bytes[head_len..].to_vec(),
    }
}

pub fn get(server: &Server, path: &str, cookie: Option<&str>) -> HttpResponse {
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    raw_http(
        server,
        format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\n{cookie}\r\n",
            server.addr
        )
        .as_bytes(),
    )
}

/// `POST /files`: uploads `bytes` as `name` with this content type.
pub fn upload(
    server: &Server,
    name: &str,
    kind: &str,
    bytes: &[u8],
    cookie: Option<&str>,
) -> HttpResponse {
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    let mut request = format!(
        "POST /files HTTP/1.1\r\nHost: {}\r\n{cookie}Content-Type: {kind}\r\nX-Filename: {}\r\nContent-Length: {}\r\n\r\n",
        server.addr,
        form_value(name),
        bytes.len()
    )
    .into_bytes();
    request.extend_from_slice(bytes);
    raw_http(server, &request)
}

/// `POST /say` with a JSON body.
pub fn post_json(server: &Server, path: &str, body: &str, cookie: Option<&str>) -> HttpResponse {
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\n{cookie}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        server.addr,
        body.len()
    );
    raw_http(server, request.as_bytes())
}

pub fn post_form(server: &Server, path: &str, form: &str, cookie: Option<&str>) -> HttpResponse {
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\n{cookie}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        server.addr,
        form.len()
    );
    raw_http(server, request.as_bytes())
}

/// Percent-encodes a form value.
pub fn form_value(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Logs in as `name` and returns the `Cookie` header for later requests.
pub fn login(server: &Server, name: &str) -> String {
    let response = post_form(
        server,
        "/login",
        &format!("name={}", form_value(name)),
        None,
    );
    assert_eq!(response.status, 303, "login as {name:?}: {}", response.body);
    response.cookie_header()
}

// ---------------------------------------------------------------- WebSocket

/// A WebSocket client. Reads time out after [`TIMEOUT`].
pub struct Client {
    pub ws: WebSocket<TcpStream>,
}

impl Client {
    /// Opens `/ws` with these cookies (and extra headers); on refusal,
    /// returns the HTTP status.
    pub fn connect_with(
        server: &Server,
        cookie: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<Client, u16> {
        Self::connect_to(server.addr, cookie, headers)
    }

    /// [`Client::connect_with`] by address (for threads that hold no `Server`).
    pub fn connect_to(
        addr: SocketAddr,
        cookie: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<Client, u16> {
        Self::connect_path(addr, "/ws", cookie, headers)
    }

    /// Opens `/ws` resuming after `seq` (`/ws?after=SEQ`).
    pub fn connect_after(server: &Server, cookie: &str, seq: u64) -> Client {
        Self::connect_path(server.addr, &format!("/ws?after={seq}"), Some(cookie), &[])
            .expect("upgrade refused")
    }

    /// [`Client::connect_to`] with any path (and query) on the server.
    pub fn connect_path(
        addr: SocketAddr,
        path: &str,
        cookie: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<Client, u16> {
        let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
        if let Some(cookie) = cookie {
            request
                .headers_mut()
                .insert("Cookie", cookie.parse().unwrap());
        }
        for (name, value) in headers {
            let name = tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap();
            request.headers_mut().insert(name, value.parse().unwrap());
        }
        let socket = TcpStream::connect(addr).unwrap();
        socket.set_read_timeout(Some(TIMEOUT)).unwrap();
        match tungstenite::client::client(request, socket) {
            Ok((ws, _)) => Ok(Client { ws }),
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
                Err(response.status().as_u16())
            }
            Err(e) => panic!("handshake failed: {e}"),
        }
    }

    pub fn connect(server: &Server, cookie: &str) -> Client {
        Self::connect_with(server, Some(cookie), &[]).expect("upgrade refused")
    }

    /// Logs in as `name`, connects, and reads the three opening frames.
    /// Returns the client and the `welcome` frame.
    pub fn join(server: &Server, name: &str) -> (Client, Value) {
        let cookie = login(server, name);
        let mut client = Client::connect(server, &cookie);
        let welcome = client.recv();
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        assert_eq!(client.recv()["type"], "history");
        assert_eq!(client.recv()["type"], "offline");
        (client, welcome)
    }

    /// Reads the three opening frames: (welcome, history, offline).
    pub fn opening(&mut self) -> (Value, Value, Value) {
        let welcome = self.recv();
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        let history = self.recv();
        assert_eq!(history["type"], "history", "{history}");
        let offline = self.recv();
        assert_eq!(offline["type"], "offline", "{offline}");
        (welcome, history, offline)
    }

    pub fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).unwrap();
    }

    pub fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string());
    }

    pub fn say(&mut self, text: &str) {
        self.send(serde_json::json!({"type": "message", "text": text}));
    }

    /// The next text frame, as JSON.
    pub fn recv(&mut self) -> Value {
        loop {
            match self.ws.read() {
                Ok(Message::Text(text)) => {
                    return serde_json::from_str(text.as_str()).expect("server frames are JSON");
                }
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Ok(other) => panic!("expected a text frame, got {other:?}"),
                Err(e) => panic!("read failed (or timed out): {e}"),
            }
        }
    }

    /// The next frame of type `kind`, skipping others (join/leave, ...).
    pub fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.recv();
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// The next frame that is not a `join` or `leave` notice: to check what a
    /// client received next (and so what it did *not* receive before it).
    pub fn recv_skipping_presence(&mut self) -> Value {
        loop {
            let frame = self.recv();
            if frame["type"] != "join" && frame["type"] != "leave" {
                return frame;
            }
        }
    }

    /// After our own close: reads until the server answers or hangs up.
    pub fn expect_close_or_end(&mut self) {
        while self.ws.read().is_ok() {}
    }

    /// After the server's close frame: the connection ends with nothing
    /// more (a frame after the close is `ReceivedAfterClosing`).
    pub fn expect_clean_end(&mut self) {
        loop {
            match self.ws.read() {
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Ok(frame) => panic!("received {frame:?} after the close frame"),
                Err(tungstenite::Error::Protocol(e)) => panic!("after the close frame: {e}"),
                Err(_) => return, // closed, or reset: the end
            }
        }
    }

    /// Reads until the server closes; returns the close code it sent.
    pub fn expect_close(&mut self) -> CloseCode {
        loop {
            match self.ws.read() {
                Ok(Message::Close(Some(frame))) => return frame.code,
                Ok(Message::Close(None)) => panic!("close frame without a code"),
                Ok(_) => continue,
                Err(e) => panic!("connection ended without a close frame: {e}"),
            }
        }
    }
}

// ---------------------------------------------------------------- QR codes

/// Decodes a QR code given as rows of modules (`true`: dark), quiet zone
/// included, the way a phone would: drawn at 6 pixels a module, then found
/// and read by `rqrr`.
pub fn decode_qr(modules: &[Vec<bool>]) -> String {
    const SCALE: usize = 6;
    let side = modules.iter().map(Vec::len).max().unwrap_or(0);
    let (width, height) = (side * SCALE, modules.len() * SCALE);
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| {
        let dark = modules[y / SCALE].get(x / SCALE).copied().unwrap_or(false);
        if dark { 0 } else { 255 }
    });
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    grids[0].decode().expect("the QR code decodes").1
}

/// The modules of an SVG made by lanchat (`qr.rs`): a `viewBox` of the
/// side, and a path of runs `M{x} {y}h{n}v1h-{n}z`.
pub fn svg_modules(svg: &str) -> Vec<Vec<bool>> {
    let side: usize = svg
        .split("viewBox=\"0 0 ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("an SVG with a viewBox");
    let mut modules = vec![vec![false; side]; side];
    let path = svg
        .split(" d=\"")
        .nth(1)
        .expect("a path")
        .split('"')
        .next()
        .unwrap();
    for run in path.split('M').skip(1) {
        let (x, rest) = run.split_once(' ').unwrap();
        let (y, rest) = rest.split_once('h').unwrap();
        let n = rest.split('v').next().unwrap();
        let (x, y, n): (usize, usize, usize) =
            (x.parse().unwrap(), y.parse().unwrap(), n.parse().unwrap());
        for module in &mut modules[y][x..x + n] {
            *module = true;
        }
    }
    modules
}

/// The modules of a QR code printed in half blocks: each character is two
/// modules, one above the other.
pub fn half_block_modules(lines: &[String]) -> Vec<Vec<bool>> {
    let mut modules = Vec::new();
    for line in lines {
        let (top, bottom): (Vec<bool>, Vec<bool>) = line
            .chars()
            .map(|c| match c {
                '█' => (true, true),
                '▀' => (true, false),
                '▄' => (false, true),
                ' ' => (false, false),
                other => panic!("{other:?} in a QR code line"),
            })
            .unzip();
        modules.push(top);
        modules.push(bottom);
    }
    modules
}

// ---------------------------------------------------------------- lanchat join

/// `lanchat join` as a subprocess, its stdin a pipe, its stdout and
/// stderr read line by line. Killed when dropped.
pub struct JoinProcess {
    pub child: Child,
    pub stdin: Option<std::process::ChildStdin>,
    stdout: mpsc::Receiver<String>,
    /// Every stdout line read so far.
    pub printed: Vec<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl JoinProcess {
    /// Runs `lanchat join ARGS...`.
    pub fn start(args: &[&str]) -> JoinProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lanchat"))
            .arg("join")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run lanchat join");
        let stdin = child.stdin.take();
        let (lines, stdout) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for text in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = lines.send(text);
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let collected = stderr.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            let mut chunk = [0u8; 1024];
            while let Ok(n) = err.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                text.push_str(&String::from_utf8_lossy(&chunk[..n]));
                *collected.lock().unwrap() = text.clone();
            }
        });
        JoinProcess {
            child,
            stdin,
            stdout,
            printed: Vec::new(),
            stderr,
        }
    }

    /// Writes a line to its stdin.
    pub fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Closes its stdin: the end of its input.
    pub fn end_input(&mut self) {
        self.stdin = None;
    }

    /// Reads stdout until a line contains `text`; returns that line.
    pub fn wait_for_line(&mut self, text: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    self.printed.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line containing {text:?}; printed {:?}; stderr {:?}",
                    self.printed,
                    self.stderr()
                ),
            }
        }
    }

    /// What it wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for it to exit; returns its exit code, with the rest of its
    /// stdout read into `printed`.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let mut code = None;
        wait_for("lanchat join to exit", || {
            code = self.child.try_wait().unwrap().map(|status| status.code());
            code.is_some()
        });
        while let Ok(line) = self.stdout.recv_timeout(TIMEOUT) {
            self.printed.push(line); // ends when the reading thread hangs up
        }
        // Its stderr reader ends too, at the end of the pipe.
        wait_for("its stderr to be read", || {
            Arc::strong_count(&self.stderr) == 1
        });
        code.unwrap()
    }
}

impl Drop for JoinProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- Redis

/// A real `redis-server` on a free loopback port, killed when dropped. Its
/// data lives in a temporary folder with an append-only file, so it can be
/// killed and started again with its data (see [`RedisServer::restart`]).
/// Fails (never skips) when `redis-server` cannot be started.
pub struct RedisServer {
    pub port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("redis-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = RedisServer {
            port,
            dir,
            child: None,
        };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server at once (SIGKILL: no goodbye to its clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again) on the same port with the same data.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--dir", self.dir.to_str().unwrap()])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (Debian package redis-server; `make test` installs it)");
        self.child = Some(child);
        wait_for("redis-server to answer", || {
            redis::Client::open(self.url())
                .and_then(|c| c.get_connection())
                .is_ok_and(|mut c| redis::cmd("PING").query::<String>(&mut c).is_ok())
        });
    }

    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// A command's answer, e.g. `redis.query(&["LLEN", "lanchat:history"])`.
    pub fn query<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command.query(&mut self.connection()).unwrap()
    }

    /// The texts of a stored list of messages, oldest first.
    pub fn texts(&self, key: &str) -> Vec<String> {
        let items: Vec<String> = self.query(&["LRANGE", key, "0", "-1"]);
        items
            .iter()
            .map(|json| {
                serde_json::from_str::<Value>(json).unwrap()["text"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------- process

impl Server {
    /// Threads of the server process, from `/proc`.
    pub fn threads(&self) -> usize {
        self.status_field("Threads:")
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> usize {
        self.status_field("VmRSS:")
    }

    /// Its state, as `ps` shows it: `R` running, `S` asleep, `T` stopped.
    pub fn state(&self) -> String {
        self.status_value("State:")
    }

    fn status_field(&self, field: &str) -> usize {
        self.status_value(field).parse().unwrap()
    }

    /// The first word after `field` in `/proc/PID/status`.
    fn status_value(&self, field: &str) -> String {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        line.split_whitespace().nth(1).unwrap().to_string()
    }

    /// Sends a signal (e.g. "TERM") to the server process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; returns its exit code and how long it took.
    pub fn wait_exit(&mut self) -> (Option<i32>, Duration) {
        let started = Instant::now();
        let mut code = None;
        wait_for("the server to exit", || {
            code = self.child.try_wait().unwrap().map(|status| status.code());
            code.is_some()
        });
        (code.unwrap(), started.elapsed())
    }
}
