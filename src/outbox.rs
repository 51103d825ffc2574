//! How bytes reach a client's socket: its outbox.
//!
//! Every frame for a connection goes through its [`Outbox`], whoever sends
//! it: the fan-out thread (room messages, notices), the connection's own
//! read pump (errors, pongs, close replies). Concurrency rule: the outbox's
//! mutex makes exactly one thread at a time write the socket, so frames
//! never interleave; it is never held while waiting for anything else.
//!
//! While nothing is queued, [`Outbox::push`] writes the frames right away with
//! a non-blocking vectored send, straight from the shared encoded bytes: no
//! copy, no thread to wake, no context switch. Only what the socket cannot
//! take now (the client is slow, or its TCP window is full) is queued, and a
//! *write pump* thread is started to send the queue with blocking writes; it
//! ends as soon as it has caught up. So an idle or keeping-up connection
//! costs one thread (its read pump), and a slow one two. (Why not a writer
//! thread per connection: `docs/DESIGN.md`.)
//!
//! A client with more than [`OUTBOX_LEN`] frames waiting has stopped reading:
//! `push` says [`Full`] and the hub drops it. Presence notices (`join`,
//! `leave`) do not count: under a storm of people joining, a client still
//! reading its `welcome` may be thousands of notices behind without being
//! at fault. They cannot pile up either: the hub gives no more notices to
//! an outbox that is behind ([`Outbox::is_behind`]) until it has caught up. A pump whose write blocks for
//! [`WRITE_WAIT`] gives up on a stalled peer and shuts the socket. Once a
//! close frame has gone in, the outbox takes nothing more (RFC 6455: nothing
//! may follow the close frame).

use crate::protocol::Encoded;
use log::debug;
use std::borrow::Borrow;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// Frames that may wait for one client. More than this waiting means the
/// client has stopped reading: it is dropped, and nobody waits for it.
pub const OUTBOX_LEN: usize = 1024;
/// Longest one socket write of the write pump may block. A peer whose TCP
/// window stays shut this long is gone.
pub const WRITE_WAIT: Duration = Duration::from_secs(10);
/// Stack of a write pump, which only moves bytes from a queue to a socket.
pub const PUMP_STACK_BYTES: usize = 64 * 1024;
/// Most frames sent in one vectored send (the system allows 1,024 slices).
const BATCH_FRAMES: usize = 256;

/// A connection's outbox. Cloning it is cheap (one `Arc`).
#[derive(Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
}

struct Shared {
    /// The connection's identity, the same everywhere (the hub's registry,
    /// the fan-out's batches, the logs).
    id: Uuid,
    socket: Arc<TcpStream>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Frames the socket could not take yet, oldest first.
    queue: VecDeque<Encoded>,
    /// How many of `queue` are presence notices: the rest count toward
    /// [`OUTBOX_LEN`].
    notices: usize,
    /// The first queued frame may have been partly sent: skip this many bytes.
    sent_of_first: usize,
    /// A write pump is sending the queue: nobody else writes.
    pumping: bool,
    /// Joining: frames are queued but not sent until [`Outbox::release`].
    held: bool,
    /// The connection is over: take nothing more; half-close once drained.
    closed: bool,
    /// A close frame went in: take nothing more (but send what is queued).
    sealed: bool,
}

impl State {
    fn enqueue(&mut self, frame: &Encoded) {
        if frame.notice().is_some() {
            self.notices += 1;
        }
        self.queue.push_back(frame.clone());
    }

    /// Takes up to `n` frames off the front of the queue.
    fn take(&mut self, n: usize) -> Vec<Encoded> {
        let n = n.min(self.queue.len());
        let taken: Vec<Encoded> = self.queue.drain(..n).collect();
        self.notices -= taken.iter().filter(|f| f.notice().is_some()).count();
        if self.queue.is_empty() {
            // Its room too (256 bytes after the opening frames, a storm's
            // worth after a storm): most outboxes never queue again.
            self.queue = VecDeque::new();
        }
        taken
    }
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
    /// An outbox for `socket`, held: nothing is sent before [`Outbox::release`]
    /// (the hub queues the first frames of a joining connection under its
    /// lock, where no socket I/O may happen).
    pub fn new_held(id: Uuid, socket: Arc<TcpStream>) -> Outbox {
        let state = Mutex::new(State {
            held: true,
            ..State::default()
        });
        Outbox {
            shared: Arc::new(Shared { id, socket, state }),
        }
    }

    /// Sends `frames` now if the socket takes them, else queues the rest.
    /// Never blocks on the socket. A closed or sealed outbox silently takes
    /// nothing; frames after a close frame are dropped.
    ///
    /// Frames or references to them: the fan-out thread lends a batch's
    /// frames to thousands of outboxes, and only those that must wait in a
    /// queue are cloned.
    pub fn push<F: Borrow<Encoded>>(&self, frames: &[F]) -> Result<(), Full> {
        let mut state = crate::lock(&self.shared.state);
        self.send_or_queue(&mut state, frames)
    }

    fn send_or_queue<F: Borrow<Encoded>>(
        &self,
        state: &mut State,
        frames: &[F],
    ) -> Result<(), Full> {
        if state.closed || state.sealed {
            return Ok(());
        }
        let frames = match frames.iter().position(|frame| frame.borrow().is_close()) {
            Some(close) => {
                state.sealed = true;
                &frames[..=close]
            }
            None => frames,
        };
        let mut rest = frames;
        if state.queue.is_empty() && !state.pumping && !state.held {
            match send_now(&self.shared.socket, frames) {
                Ok(sent) => {
                    let (whole, part) = skip_sent(frames, sent);
                    rest = &frames[whole..];
                    state.sent_of_first = part;
                }
                // The connection is failing: its read pump will see it end.
                Err(_) => return Ok(()),
            }
        }
        if rest.is_empty() {
            return Ok(());
        }
        let messages = rest
            .iter()
            .filter(|f| (*f).borrow().notice().is_none())
            .count();
        if state.queue.len() - state.notices + messages > OUTBOX_LEN {
            return Err(Full);
        }
        for frame in rest {
            state.enqueue(frame.borrow());
        }
        if !state.held {
            self.start_pump(state);
        }
        Ok(())
    }

    /// Queues frames without sending: for the hub, under its lock, while
    /// the outbox is held.
    pub fn queue_held(&self, frames: &[Encoded]) {
        let mut state = crate::lock(&self.shared.state);
        if !state.sealed {
            for frame in frames {
                state.enqueue(frame);
            }
        }
    }

    /// Queues frames ahead of everything else, without sending: for the
    /// fan-out thread, to put a newcomer's `welcome` before the frames its
    /// join queued (the outbox is still held; [`Outbox::release`] follows).
    pub fn queue_first_held(&self, frames: &[Encoded]) {
        let mut state = crate::lock(&self.shared.state);
        if !state.sealed {
            for frame in frames.iter().rev() {
                state.queue.push_front(frame.clone());
            }
        }
    }

    /// Ends the hold: sends what was queued meanwhile, at once if the socket
    /// takes it (the usual case: no write pump needed), in order.
    pub fn release(&self) {
        let mut state = crate::lock(&self.shared.state);
        state.held = false;
        let waiting: Vec<Encoded> = state.take(usize::MAX);
        if self.send_or_queue(&mut state, &waiting).is_err() {
            // More than OUTBOX_LEN frames before the client read a byte.
            drop(state);
            self.kick();
        }
    }

    /// Makes sure a write pump is sending the queue. (A running pump goes
    /// on until the queue is empty, so it will see what was just added.)
    fn start_pump(&self, state: &mut State) {
        if state.pumping {
            return;
        }
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name("write-pump".into())
            .stack_size(PUMP_STACK_BYTES)
            .spawn(move || write_pump(&shared));
        match spawned {
            Ok(_) => state.pumping = true,
            Err(e) => {
                debug!("cannot start a write pump ({e}): dropping the connection");
                state.closed = true;
                self.kick();
            }
        }
    }

    /// The connection is over: once what is queued is sent, half-close.
    pub fn close(&self) {
        let mut state = crate::lock(&self.shared.state);
        state.closed = true;
        state.held = false;
        if state.pumping {
            // The pump half-closes when it is done.
        } else if state.queue.is_empty() {
            let _ = self.shared.socket.shutdown(Shutdown::Write);
        } else {
            self.start_pump(&mut state);
        }
    }

    /// Drops the connection now: its read pump (and write pump) wake up with
    /// an error and end. `shutdown` does not block: safe to call anywhere.
    pub fn kick(&self) {
        let _ = self.shared.socket.shutdown(Shutdown::Both);
    }

    /// Ends the connection after what is queued: the read pump wakes up as if
    /// the client had hung up, and queued frames (a close frame, at
    /// shutdown) still go out.
    pub fn hang_up(&self) {
        let _ = self.shared.socket.shutdown(Shutdown::Read);
    }

    /// Whether frames are waiting (the client reads slower than it is
    /// sent to), or the outbox is still held: the hub then holds back
    /// presence notices.
    pub fn is_behind(&self) -> bool {
        let state = crate::lock(&self.shared.state);
        !state.queue.is_empty() || state.pumping || state.held
    }

    /// The connection's identity (its uuid).
    pub fn id(&self) -> Uuid {
        self.shared.id
    }
}

/// One non-blocking vectored send of as many frames as fit; returns the
/// bytes sent (0 if the socket is full).
///
/// `MSG_DONTWAIT` makes this one call non-blocking while the socket stays
/// blocking for the read pump that reads it on another thread (a socket-wide
/// `set_nonblocking` would wake that reader with `WouldBlock`). No
/// `MSG_NOSIGNAL` (it is Linux-only): Rust programs ignore SIGPIPE, so a
/// closed peer is just `EPIPE`.
fn send_now<F: Borrow<Encoded>>(socket: &TcpStream, frames: &[F]) -> io::Result<usize> {
    let mut sent = 0;
    // A slice of [`BATCH_FRAMES`] at a time, as long as the socket takes
    // each whole: a storm's notices to one client are thousands.
    for chunk in frames.chunks(BATCH_FRAMES) {
        let slices: Vec<IoSlice> = chunk
            .iter()
            .map(|frame| IoSlice::new(frame.borrow().bytes()))
            .collect();
        let offered: usize = slices.iter().map(|slice| slice.len()).sum();
        let took = send_some(socket, &slices)?;
        sent += took;
        if took < offered {
            break;
        }
    }
    Ok(sent)
}

/// One non-blocking vectored send; 0 if the socket is full.
fn send_some(socket: &TcpStream, slices: &[IoSlice]) -> io::Result<usize> {
    match socket2::SockRef::from(socket).send_vectored_with_flags(slices, libc::MSG_DONTWAIT) {
        Ok(sent) => Ok(sent),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(0)
        }
        Err(e) => Err(e),
    }
}

/// How many whole frames `sent` bytes cover, and how far into the next.
fn skip_sent<F: Borrow<Encoded>>(frames: &[F], mut sent: usize) -> (usize, usize) {
    for (i, frame) in frames.iter().enumerate() {
        let len = frame.borrow().bytes().len();
        if sent < len {
            return (i, sent);
        }
        sent -= len;
    }
    (frames.len(), 0)
}

/// Sends the queue with blocking writes until it is empty, then ends (or,
/// if the connection is over, half-closes). On a failed or stalled write,
/// shuts the socket so the read pump ends too.
fn write_pump(shared: &Shared) {
    let socket = &*shared.socket;
    let _ = socket.set_write_timeout(Some(WRITE_WAIT));
    let mut state = crate::lock(&shared.state);
    loop {
        if state.queue.is_empty() {
            state.pumping = false;
            if state.closed {
                let _ = socket.shutdown(Shutdown::Write);
            }
            return;
        }
        let batch: Vec<Encoded> = state.take(BATCH_FRAMES);
        let skip = std::mem::take(&mut state.sent_of_first);
        drop(state);
        if let Err(error) = write_all(socket, &batch, skip) {
            debug!("write failed: {error}");
            let _ = socket.shutdown(Shutdown::Both);
            let mut state = crate::lock(&shared.state);
            state.closed = true;
            state.pumping = false;
            state.take(usize::MAX);
            return;
        }
        state = crate::lock(&shared.state);
    }
}

/// Writes every frame of `batch` (the first from byte `skip` on), blocking.
fn write_all(mut socket: &TcpStream, batch: &[Encoded], skip: usize) -> io::Result<()> {
    let mut slices: Vec<IoSlice> = batch
        .iter()
        .map(|frame| IoSlice::new(frame.bytes()))
        .collect();
    let mut left = &mut slices[..];
    IoSlice::advance_slices(&mut left, skip);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(bytes: &[u8]) -> Encoded {
        Encoded::from_bytes(bytes)
    }

    #[test]
    fn partly_sent_batches_resume_at_the_right_byte() {
        let frames = [frame(b"abc"), frame(b"de"), frame(b"fghi")];
        assert_eq!(skip_sent(&frames, 0), (0, 0));
        assert_eq!(skip_sent(&frames, 4), (1, 1));
        assert_eq!(skip_sent(&frames, 5), (2, 0));
        assert_eq!(skip_sent(&frames, 9), (3, 0));
    }

    /// Frames arrive whole and in order, whether sent at once or queued
    /// behind a hold, and a full queue says so.
    #[test]
    fn frames_arrive_in_order_and_a_stalled_reader_fills_the_queue() {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (socket, _) = listener.accept().unwrap();
        let outbox = Outbox::new_held(Uuid::new_v4(), Arc::new(socket));
        outbox.queue_held(&[frame(b"1")]);
        outbox.push(&[frame(b"2")]).unwrap();
        outbox.release();
        outbox.push(&[frame(b"3"), frame(b"4")]).unwrap();
        let mut got = [0u8; 4];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"1234");

        // Nobody reads now: the socket fills, then the queue.
        // (Not a real frame: its first byte only must not read as a close.)
        let big = frame(&vec![b'y'; 64 * 1024]);
        let full = (0..10 * OUTBOX_LEN).any(|_| outbox.push(std::slice::from_ref(&big)).is_err());
        assert!(full, "the outbox filled up");
        outbox.kick();
    }

    /// Presence notices do not fill an outbox: a storm of joins must not
    /// drop a client still reading its welcome.
    #[test]
    fn notices_do_not_count() {
        use crate::protocol::encode_notice;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (socket, _) = listener.accept().unwrap();
        let outbox = Outbox::new_held(Uuid::new_v4(), Arc::new(socket));
        assert!(outbox.is_behind(), "held");
        for i in 0..3 * OUTBOX_LEN {
            let join = encode_notice(&format!("user{i}"), true, false, 1);
            outbox.push(&[join]).expect("notices never make it full");
        }
        let message = frame(b"m");
        for _ in 0..OUTBOX_LEN {
            outbox.push(std::slice::from_ref(&message)).unwrap();
        }
        assert!(
            outbox.push(std::slice::from_ref(&message)).is_err(),
            "messages do"
        );
        outbox.kick();
    }

    /// Nothing follows a close frame: not later pushes, not the frames
    /// after it in the same push.
    #[test]
    fn a_close_frame_seals_the_outbox() {
        use crate::protocol::{ServerFrame, encode, encode_close};
        use std::io::Read;
        use tungstenite::protocol::frame::coding::CloseCode;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (socket, _) = listener.accept().unwrap();
        let outbox = Outbox::new_held(Uuid::new_v4(), Arc::new(socket));
        outbox.release();
        let leave = encode(&ServerFrame::Leave { name: "a", ts: 1 });
        let bye = encode_close(CloseCode::Away, "bye");
        outbox
            .push(&[leave.clone(), bye.clone(), leave.clone()])
            .unwrap();
        outbox.push(std::slice::from_ref(&leave)).unwrap();
        outbox.close();
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, [leave.bytes(), bye.bytes()].concat());
    }
}
