//! One WebSocket connection: a read pump, a write pump, and an outbox between.
//!
//! ```text
//!             ┌──────────── read pump (the connection's own thread) ────────────┐
//!  socket ──> │ tungstenite::WebSocket<ReadHalf>: frames in, rate limit, → Hub  │
//!             │ its automatic pong/close replies go *into the outbox*, not out  │
//!             └─────────────────────────────────────────────────────────────────┘
//!  Hub, other read pumps ──push Encoded──> Outbox (bounded, OUTBOX_LEN) ──> write pump ──> socket
//! ```
//!
//! Why two threads: a sync `WebSocket` cannot be read in one thread and
//! written in another (a blocking `read` would hold it), and a second writer
//! beside it could interleave a pong with a chat frame. So the reading
//! `WebSocket` runs over [`ReadHalf`], whose `Write` hands tungstenite's
//! replies to the outbox, and the write pump is the *only* code that writes
//! this socket: whole frames, in queue order, never interleaved. It blocks on
//! its queue (no polling), and sends whatever else is queued with it in one
//! `writev`, straight from the shared frames: under load one syscall
//! carries many frames, and nothing is copied.
//!
//! A client that stops reading fills its outbox; the next push fails and the
//! hub drops that client ([`Outbox::kick`]) instead of waiting for it.
//!
//! Heartbeat: the read pump reads with a timeout of one heartbeat interval.
//! A connection silent for one interval is pinged; one silent for two (so
//! closed between 2 and 3 intervals after its last frame) is dropped. Idle
//! connections therefore wake up once per interval, not on a polling tick.

use crate::hub::Hub;
use crate::protocol::{ClientError, ClientFrame, Encoded, ErrorCode, parse_client_frame};
use crate::session::Session;
use log::{debug, info, warn};
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};
use tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

/// Frames that may wait for one client. More than this waiting means the
/// client has stopped reading: it is dropped, and nobody waits for it.
pub const OUTBOX_LEN: usize = 1024;
/// Longest one socket write may block. A peer whose TCP window stays shut this
/// long is gone; without this a stalled peer could pin its write pump forever.
pub const WRITE_WAIT: Duration = Duration::from_secs(10);
/// Largest message a client may send (after reassembling fragments): 64 KiB.
/// Larger closes the connection with 1009.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// tungstenite allocates its read buffer eagerly for every connection; its
/// 128 KiB default would cost 1.25 GiB at 10,000 connections. Chat frames are
/// small; a large one just takes a few more reads.
const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Most frames the write pump sends in one `writev` (the system's limit on
/// slices is 1,024; more frames per call would save little).
const WRITE_BATCH_FRAMES: usize = 64;
/// Messages a client may send: 20 a second on average, bursts of up to 40.
pub const RATE_PER_SEC: f64 = 20.0;
pub const RATE_BURST: f64 = 40.0;

/// The sending side of a connection's queue: what the hub and other threads
/// hold. Cloning it is cheap (one channel handle, one `Arc`).
#[derive(Clone)]
pub struct Outbox {
    queue: SyncSender<Encoded>,
    /// Only for [`Outbox::kick`] and [`Outbox::hang_up`]: never read or
    /// written through here.
    socket: Arc<TcpStream>,
}

/// The outbox holds [`OUTBOX_LEN`] frames already: its client is not reading.
#[derive(Debug)]
pub struct Full;

impl std::fmt::Display for Full {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "outbox full ({OUTBOX_LEN} frames waiting)")
    }
}

impl std::error::Error for Full {}

impl Outbox {
    /// Queues a frame without ever blocking. A connection that is already
    /// ending (its write pump gone) silently takes nothing more.
    pub fn push(&self, frame: Encoded) -> Result<(), Full> {
        match self.queue.try_send(frame) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => Ok(()),
            Err(TrySendError::Full(_)) => Err(Full),
        }
    }

    /// Drops the connection now: both pumps wake up with an error and end.
    /// `shutdown` does not block, so this is safe to call from anywhere.
    pub fn kick(&self) {
        let _ = self.socket.shutdown(Shutdown::Both);
    }

    /// Ends the connection after what is queued: the read pump wakes up as if
    /// the client had hung up, and the write pump still sends what is in the
    /// queue (a close frame, at shutdown) before it closes the socket.
    pub fn hang_up(&self) {
        let _ = self.socket.shutdown(Shutdown::Read);
    }
}

/// The stream under the read pump's `WebSocket`: reads come from the socket,
/// writes (pongs, close replies, pings) are queued to the write pump.
struct ReadHalf {
    socket: Arc<TcpStream>,
    outbox: Outbox,
}

impl Read for ReadHalf {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.socket).read(buf)
    }
}

impl Write for ReadHalf {
    /// tungstenite hands over whole frames (its buffer), so each call is
    /// queued as one unit.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outbox
            .push(Encoded(buf.into()))
            .map_err(io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Settings of a WebSocket connection, from the command line.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub heartbeat: Duration,
}

/// How a connection ended, logged once when it does.
#[derive(Debug)]
enum Ending {
    /// The client sent a close frame.
    ClientClosed,
    /// We sent a close frame with this code and reason.
    WeClosed(CloseCode, &'static str),
    /// Silent for two heartbeats.
    Silent,
    /// Its outbox was full: it stopped reading.
    TooSlow,
    /// The TCP connection ended without a close frame (or was kicked).
    Vanished,
    Failed(WsError),
}

/// Runs one upgraded connection to its end, on the calling thread (which
/// becomes the read pump). `already_read` holds bytes that arrived after the
/// HTTP request head. Returns once both pumps have ended.
pub fn run(
    socket: TcpStream,
    already_read: Vec<u8>,
    session: Session,
    hub: &Hub,
    settings: Settings,
) -> io::Result<()> {
    let peer = socket
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    // One socket (one file descriptor) shared by the two pumps and the
    // outbox: reading and writing a `&TcpStream` from two threads is fine,
    // as long as only one thread writes.
    let socket = Arc::new(socket);
    socket.set_read_timeout(Some(settings.heartbeat))?;
    let (queue, frames) = sync_channel(OUTBOX_LEN);
    let outbox = Outbox {
        queue,
        socket: socket.clone(),
    };
    let writer_socket = socket.clone();
    let writer = std::thread::Builder::new()
        .name(format!(
            "{}-w",
            std::thread::current().name().unwrap_or("conn")
        ))
        .stack_size(crate::server::WRITER_STACK_BYTES)
        .spawn(move || write_pump(frames, &writer_socket))?;

    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let half = ReadHalf {
        socket: socket.clone(),
        outbox: outbox.clone(),
    };
    let mut ws = WebSocket::from_partially_read(half, already_read, Role::Server, Some(config));

    let registration = Registration {
        hub,
        id: hub.join(&session, outbox.clone()),
    };
    info!("{peer} {:?} connected", session.name);
    let ending = read_pump(&mut ws, hub, &session, &outbox, settings);
    drop(registration);
    match &ending {
        Ending::Failed(error) => warn!("{peer} {:?} disconnected: {error}", session.name),
        Ending::WeClosed(code, reason) => {
            info!("{peer} {:?} closed by us ({code}): {reason}", session.name)
        }
        ending => info!("{peer} {:?} disconnected: {ending:?}", session.name),
    }

    // With the last senders gone, the write pump drains the queue (the
    // close frame, if any, is in it), half-closes the socket and ends.
    drop(ws);
    drop(outbox);
    let _ = writer.join();
    if matches!(ending, Ending::WeClosed(..) | Ending::ClientClosed) {
        // Let the peer read our close frame and hang up first.
        crate::http::wait_for_hang_up(&socket);
    }
    Ok(())
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

fn read_pump(
    ws: &mut WebSocket<ReadHalf>,
    hub: &Hub,
    session: &Session,
    outbox: &Outbox,
    settings: Settings,
) -> Ending {
    let mut rate = RateLimit::new();
    let mut last_heard = Instant::now();
    loop {
        let message = match ws.read() {
            Ok(message) => message,
            Err(WsError::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                // A heartbeat interval passed with nothing read.
                let silent = last_heard.elapsed();
                if silent >= settings.heartbeat * 2 {
                    return Ending::Silent;
                }
                if silent >= settings.heartbeat
                    && ws.send(Message::Ping(Default::default())).is_err()
                {
                    return Ending::TooSlow;
                }
                continue;
            }
            Err(error) => return ending_for(ws, error),
        };
        last_heard = Instant::now();
        match message {
            Message::Text(text) => {
                debug!("{:?} sent {:?}", session.name, text.as_str());
                let reply = if rate.allow() {
                    handle(hub, session, text.as_str()).err()
                } else {
                    Some(ClientError::new(
                        ErrorCode::RateLimited,
                        "Slow down: at most 20 messages a second.",
                    ))
                };
                if let Some(error) = reply
                    && outbox.push(error.encode()).is_err()
                {
                    return Ending::TooSlow;
                }
            }
            Message::Binary(_) => {
                return close(
                    ws,
                    CloseCode::Unsupported,
                    "binary messages are not supported",
                );
            }
            // tungstenite has queued its reply; the next read reports the end.
            Message::Close(_) => {}
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}

/// Does what a valid client frame asks; the error goes back to the sender.
fn handle(hub: &Hub, session: &Session, raw: &str) -> Result<(), ClientError> {
    match parse_client_frame(raw)? {
        ClientFrame::Say { text } => {
            hub.say(&session.name, text);
            Ok(())
        }
        ClientFrame::Whisper { to, text } => hub.whisper(&session.name, &to, text),
    }
}

/// Sorts a read error: ordinary disconnects, and violations answered with a
/// close frame carrying the RFC 6455 code.
fn ending_for(ws: &mut WebSocket<ReadHalf>, error: WsError) -> Ending {
    match error {
        WsError::ConnectionClosed | WsError::AlreadyClosed => Ending::ClientClosed,
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Ending::Vanished,
        WsError::Io(e) if e.get_ref().is_some_and(|inner| inner.is::<Full>()) => Ending::TooSlow,
        WsError::Io(_) => Ending::Vanished,
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
            close(ws, CloseCode::Size, "message larger than 64 KiB")
        }
        WsError::Capacity(_) => close(ws, CloseCode::Size, "message too large"),
        WsError::Utf8(_) => close(ws, CloseCode::Invalid, "text frame is not valid UTF-8"),
        WsError::Protocol(_) => close(ws, CloseCode::Protocol, "WebSocket protocol violation"),
        other => Ending::Failed(other),
    }
}

/// Queues a close frame; the write pump sends it and then half-closes.
fn close(ws: &mut WebSocket<ReadHalf>, code: CloseCode, reason: &'static str) -> Ending {
    let _ = ws.close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }));
    Ending::WeClosed(code, reason)
}

/// The only code that writes to the socket. Ends when every [`Outbox`] is
/// gone (the connection is over: half-close after the last frame) or when a
/// write fails (the peer is gone or stalled: wake the read pump too).
fn write_pump(frames: Receiver<Encoded>, socket: &TcpStream) {
    let _wake_reader = WakeReaderOnPanic(socket);
    let _ = socket.set_write_timeout(Some(WRITE_WAIT));
    let mut batch: Vec<Encoded> = Vec::new();
    let result = (|| -> io::Result<()> {
        while let Ok(frame) = frames.recv() {
            // Whatever else is already waiting goes out with it, in one
            // `writev` straight from the shared frames: no copy, no buffer.
            batch.push(frame);
            while batch.len() < WRITE_BATCH_FRAMES {
                match frames.try_recv() {
                    Ok(frame) => batch.push(frame),
                    Err(_) => break,
                }
            }
            write_all_vectored(socket, &batch)?;
            batch.clear();
        }
        Ok(())
    })();
    match result {
        Ok(()) => {
            let _ = socket.shutdown(Shutdown::Write);
        }
        Err(error) => {
            debug!("write failed: {error}");
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

/// Writes every frame of `batch`, in order, with as few syscalls as the
/// socket allows.
fn write_all_vectored(mut socket: &TcpStream, batch: &[Encoded]) -> io::Result<()> {
    let mut slices: Vec<IoSlice> = batch
        .iter()
        .map(|frame| IoSlice::new(frame.bytes()))
        .collect();
    let mut left = &mut slices[..];
    while !left.is_empty() {
        match socket.write_vectored(left) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut left, written),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Should the write pump ever panic, its read pump must not wait forever on
/// a client nobody writes to: shutting the socket down wakes it up.
struct WakeReaderOnPanic<'a>(&'a TcpStream);

impl Drop for WakeReaderOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.0.shutdown(Shutdown::Both);
        }
    }
}

/// A token bucket: [`RATE_BURST`] tokens, refilled at [`RATE_PER_SEC`].
struct RateLimit {
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    fn new() -> RateLimit {
        RateLimit {
            tokens: RATE_BURST,
            last: Instant::now(),
        }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * RATE_PER_SEC;
        self.tokens = (self.tokens + refill).min(RATE_BURST);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

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
            let (queue, _frames) = sync_channel(OUTBOX_LEN);
            let outbox = Outbox {
                queue,
                socket: Arc::new(socket),
            };
            let _registration = Registration {
                hub: &in_thread,
                id: in_thread.join(&session, outbox),
            };
            assert_eq!(in_thread.counts(), (1, 1));
            panic!("a bug in a connection thread");
        })
        .join();
        assert!(crashed.is_err());
        assert_eq!(hub.counts(), (0, 0), "no connection, nobody online");
    }

    #[test]
    fn rate_limit_allows_bursts_then_the_rate() {
        let mut rate = RateLimit::new();
        assert_eq!(
            (0..60).filter(|_| rate.allow()).count(),
            RATE_BURST as usize
        );
        rate.last -= Duration::from_millis(500); // half a second later
        assert_eq!(
            (0..60).filter(|_| rate.allow()).count(),
            (RATE_PER_SEC / 2.0) as usize
        );
    }
}
