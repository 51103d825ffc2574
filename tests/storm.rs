//! A whole school at once: thousands of different people joining together.
//! Presence is the hard part (each join is news to everyone else); these
//! tests check that under such a storm everyone ends up with the same view
//! of who is online as the server, and that nobody is dropped for being
//! behind on notices. Not timed: speed is `make bench`'s `storm` scenario.

mod common;

use common::{Server, TIMEOUT, login, wait_for};
use std::collections::BTreeSet;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// People in the storm test: enough that the notices of the others are far
/// more than the 1,024 frames that get a client dropped.
const PEOPLE: usize = 2000;

/// Every connection keeps reading until its view equals everyone, or this.
const STORM_DEADLINE: Duration = Duration::from_secs(120);

fn name(i: usize) -> String {
    format!("p{i:04}")
}

/// 2,000 different people connect at once. Each keeps its own view (the
/// `welcome`'s list, then every `join` and `leave`): all of them end with
/// the same 2,000 names, nobody got a `leave` (nobody was dropped) and the
/// server still counts 2,000 connections.
#[test]
fn two_thousand_people_joining_at_once_agree_on_who_is_online() {
    let server = Server::start(&["--max-connections", "4000", "--heartbeat", "300"]);
    let cookies: Vec<String> = (0..PEOPLE).map(|i| login(&server, &name(i))).collect();
    let everyone: BTreeSet<String> = (0..PEOPLE).map(name).collect();

    let start = Arc::new(Barrier::new(PEOPLE));
    let readers: Vec<_> = cookies
        .into_iter()
        .map(|cookie| {
            let (start, addr, everyone) = (start.clone(), server.addr, everyone.clone());
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    start.wait();
                    watch_presence(addr, &cookie, &everyone)
                })
                .unwrap()
        })
        .collect();
    let mut wrong = Vec::new();
    let mut open = Vec::new(); // every connection stays open to the end
    for reader in readers {
        match reader.join().unwrap() {
            Ok(connection) => open.push(connection),
            Err(why) => wrong.push(why),
        }
    }
    let kinds: BTreeSet<&str> = wrong.iter().map(|w| w.split(':').next().unwrap()).collect();
    assert!(
        wrong.is_empty(),
        "{} of {PEOPLE} views are wrong: {kinds:?}",
        wrong.len(),
    );
    wait_for("the server to count everyone", || {
        server.connections() == PEOPLE as u64
    });
}

/// Connects with `cookie` and reads the opening frames, then the presence
/// notices, until the view of who is online equals `everyone`; returns the
/// connection, still open. An error says what went wrong.
fn watch_presence(
    addr: SocketAddr,
    cookie: &str,
    everyone: &BTreeSet<String>,
) -> Result<Frames, String> {
    let mut socket = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Cookie: {cookie}\r\n\r\n"
    );
    std::io::Write::write_all(&mut socket, request.as_bytes()).map_err(|e| e.to_string())?;
    let mut reader = Frames::new(socket);
    reader.head()?;
    let welcome = reader.next_json()?;
    if welcome["type"] != "welcome" {
        return Err(format!("first frame: {welcome}"));
    }
    let mut view: BTreeSet<String> = welcome["users"]
        .as_array()
        .ok_or("welcome without users")?
        .iter()
        .filter_map(|u| u.as_str().map(String::from))
        .collect();
    let deadline = Instant::now() + STORM_DEADLINE;
    while view != *everyone {
        if Instant::now() > deadline {
            return Err(format!("{} online in its view at the deadline", view.len()));
        }
        // Read cheaply: two million notices go by in this test.
        let frame = reader.next_text()?;
        let notice = |kind: &str| {
            let start = format!(r#"{{"type":"{kind}","name":""#);
            let rest = frame.strip_prefix(start.as_str())?;
            Some(rest[..rest.find('"')?].to_string())
        };
        if let Some(who) = notice("join") {
            if !view.insert(who.clone()) {
                return Err(format!("a second join of {who}"));
            }
        } else if let Some(who) = notice("leave") {
            return Err(format!("{who} left: dropped?"));
        }
    }
    Ok(reader)
}

/// Just enough of a WebSocket client to read a storm's frames quickly
/// (server frames are unmasked; this test never sends any).
struct Frames {
    socket: TcpStream,
    buffer: Vec<u8>,
    start: usize,
}

impl Frames {
    fn new(socket: TcpStream) -> Frames {
        Frames {
            socket,
            buffer: Vec::new(),
            start: 0,
        }
    }

    /// Makes sure `n` unread bytes are buffered.
    fn fill(&mut self, n: usize) -> Result<(), String> {
        while self.buffer.len() - self.start < n {
            if self.start > 0 {
                self.buffer.drain(..self.start);
                self.start = 0;
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.socket.read(&mut chunk) {
                Ok(0) => return Err("the server closed the connection".into()),
                Ok(read) => self.buffer.extend_from_slice(&chunk[..read]),
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
        Ok(())
    }

    /// Reads the `101` response head.
    fn head(&mut self) -> Result<(), String> {
        loop {
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                if !self.buffer.starts_with(b"HTTP/1.1 101") {
                    let head = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
                    return Err(format!("upgrade refused: {head}"));
                }
                self.start = end + 4;
                return Ok(());
            }
            let have = self.buffer.len();
            self.fill(have + 1)?;
        }
    }

    /// The next text frame's JSON.
    fn next_json(&mut self) -> Result<serde_json::Value, String> {
        serde_json::from_str(&self.next_text()?).map_err(|e| e.to_string())
    }

    /// The next text frame (pings are skipped).
    fn next_text(&mut self) -> Result<String, String> {
        loop {
            self.fill(2)?;
            let (opcode, len7) = (self.buffer[self.start] & 0x0f, self.buffer[self.start + 1]);
            let (header, len) = match len7 & 0x7f {
                126 => {
                    self.fill(4)?;
                    let b = &self.buffer[self.start + 2..self.start + 4];
                    (4, u16::from_be_bytes([b[0], b[1]]) as usize)
                }
                127 => {
                    self.fill(10)?;
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&self.buffer[self.start + 2..self.start + 10]);
                    (10, u64::from_be_bytes(b) as usize)
                }
                n => (2, n as usize),
            };
            self.fill(header + len)?;
            let payload = &self.buffer[self.start + header..self.start + header + len];
            self.start += header + len;
            match opcode {
                0x1 => return String::from_utf8(payload.to_vec()).map_err(|e| e.to_string()),
                0x8 => return Err("a close frame".into()),
                _ => continue, // ping: the heartbeat is far away
            }
        }
    }
}

/// A `--max-connections` beyond what the machine allows (threads, process
/// ids, memory mappings, open files) is said at start, in one line per
/// limit, naming the knob to raise; lanchat still starts.
#[test]
fn max_connections_beyond_the_machine_is_warned_about() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lanchat"))
        .args(["--host", "127.0.0.1", "--port", "0", "--no-mdns"])
        .args(["--max-connections", "1000000000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run lanchat");
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (lines, line) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for text in stderr.lines().map_while(Result::ok) {
            let _ = lines.send(text);
        }
    });
    let mut warnings = Vec::new();
    while let Ok(text) = line.recv_timeout(TIMEOUT) {
        if text.contains("store:") {
            break; // said after the limits
        }
        if text.contains("--max-connections 1000000000 needs") {
            warnings.push(text);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let said = warnings.join("\n");
    for knob in ["kernel.pid_max", "vm.max_map_count", "open files"] {
        assert!(said.contains(knob), "{knob} not named in:\n{said}");
    }
}
