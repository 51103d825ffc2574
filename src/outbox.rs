//! How bytes reach a client's socket: its outbox.
//!
//! Every frame for a connection goes through its [`Outbox`], whoever sends
//! it: the hub's fan-out thread (room messages, notices), the connection's
//! own read pump (errors, pongs, close replies). The outbox's mutex makes
//! exactly one thread at a time write the socket, so frames never interleave.
//!
//! While nothing is queued, [`Outbox::push`] writes the frames right away with
//! a non-blocking `sendmsg`, straight from the shared encoded bytes: no copy,
//! no thread to wake, no context switch. Only what the socket cannot take
//! now (the client is slow, or its TCP window is full) is queued, and a
//! *write pump* thread is started to send the queue with blocking writes; it
//! ends as soon as it has caught up. So an idle or keeping-up connection
//! costs one thread (its read pump), and a slow one two.
//!
//! Why not a writer thread per connection, always there? Measured with
//! `make bench`: waking a writer per recipient per message (futex, context
//! switch) was most of the cost of a broadcast, and two threads per
//! connection hit the kernel's limit on memory mappings near 8,000
//! connections (`vm.max_map_count`, 4 mappings per thread).
//!
//! A client with more than [`OUTBOX_LEN`] frames waiting has stopped reading:
//! `push` says [`Full`] and the hub drops it. A pump whose write blocks for
//! [`WRITE_WAIT`] gives up on a stalled peer and shuts the socket.

use crate::protocol::Encoded;
use log::debug;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Frames that may wait for one client. More than this waiting means the
/// client has stopped reading: it is dropped, and nobody waits for it.
pub const OUTBOX_LEN: usize = 1024;
/// Longest one socket write of the write pump may block. A peer whose TCP
/// window stays shut this long is gone.
pub const WRITE_WAIT: Duration = Duration::from_secs(10);
/// Stack of a write pump, which only moves bytes from a queue to a socket.
pub const PUMP_STACK_BYTES: usize = 64 * 1024;
/// Most frames sent in one `sendmsg`/`writev` (the system allows 1,024 slices).
const BATCH_FRAMES: usize = 256;

/// A connection's outbox. Cloning it is cheap (one `Arc`).
#[derive(Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
}

struct Shared {
    socket: Arc<TcpStream>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Frames the socket could not take yet, oldest first.
    queue: VecDeque<Encoded>,
    /// The first queued frame may have been partly sent: skip this many bytes.
    sent_of_first: usize,
    /// A write pump is sending the queue: nobody else writes.
    pumping: bool,
    /// Joining: frames are queued but not sent until [`Outbox::release`].
    held: bool,
    /// The connection is over: take nothing more; half-close once drained.
    closed: bool,
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
    pub fn new_held(socket: Arc<TcpStream>) -> Outbox {
        let state = Mutex::new(State {
            held: true,
            ..State::default()
        });
        Outbox {
            shared: Arc::new(Shared { socket, state }),
        }
    }

    /// Sends `frames` now if the socket takes them, else queues the rest.
    /// Never blocks on the socket. A closed outbox silently takes nothing.
    pub fn push(&self, frames: &[Encoded]) -> Result<(), Full> {
        let mut state = crate::lock(&self.shared.state);
        self.send_or_queue(&mut state, frames)
    }

    fn send_or_queue(&self, state: &mut State, frames: &[Encoded]) -> Result<(), Full> {
        if state.closed {
            return Ok(());
        }
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
        if state.queue.len() + rest.len() > OUTBOX_LEN {
            return Err(Full);
        }
        state.queue.extend(rest.iter().cloned());
        if !state.held {
            self.start_pump(state);
        }
        Ok(())
    }

    /// Queues frames without sending: for the hub, under its lock, while
    /// the outbox is held.
    pub fn queue_held(&self, frames: &[Encoded]) {
        crate::lock(&self.shared.state)
            .queue
            .extend(frames.iter().cloned());
    }

    /// Ends the hold: sends what was queued meanwhile, at once if the socket
    /// takes it (the usual case: no write pump needed), in order.
    pub fn release(&self) {
        let mut state = crate::lock(&self.shared.state);
        state.held = false;
        let waiting: Vec<Encoded> = state.queue.drain(..).collect();
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

    /// Tells connections apart: equal for handles of one outbox.
    pub fn id(&self) -> usize {
        Arc::as_ptr(&self.shared) as usize
    }
}

/// One non-blocking `sendmsg` of as many frames as fit; returns the bytes
/// sent (0 if the socket is full).
fn send_now(socket: &TcpStream, frames: &[Encoded]) -> io::Result<usize> {
    let slices: Vec<libc::iovec> = frames
        .iter()
        .take(BATCH_FRAMES)
        .map(|f| libc::iovec {
            iov_base: f.bytes().as_ptr() as *mut libc::c_void,
            iov_len: f.bytes().len(),
        })
        .collect();
    // SAFETY: the iovecs point into `frames`, alive for the call; a zeroed
    // msghdr is valid (no address, no control data). No MSG_NOSIGNAL (it is
    // Linux-only): Rust programs ignore SIGPIPE, so a closed peer is EPIPE.
    let sent = unsafe {
        let mut message: libc::msghdr = std::mem::zeroed();
        message.msg_iov = slices.as_ptr() as *mut libc::iovec;
        message.msg_iovlen = slices.len() as _;
        libc::sendmsg(socket.as_raw_fd(), &message, libc::MSG_DONTWAIT)
    };
    if sent >= 0 {
        return Ok(sent as usize);
    }
    match io::Error::last_os_error() {
        e if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
        ) =>
        {
            Ok(0)
        }
        e => Err(e),
    }
}

/// How many whole frames `sent` bytes cover, and how far into the next.
fn skip_sent(frames: &[Encoded], mut sent: usize) -> (usize, usize) {
    for (i, frame) in frames.iter().enumerate() {
        if sent < frame.bytes().len() {
            return (i, sent);
        }
        sent -= frame.bytes().len();
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
        let take = state.queue.len().min(BATCH_FRAMES);
        let batch: Vec<Encoded> = state.queue.drain(..take).collect();
        let skip = std::mem::take(&mut state.sent_of_first);
        drop(state);
        if let Err(error) = write_all(socket, &batch, skip) {
            debug!("write failed: {error}");
            let _ = socket.shutdown(Shutdown::Both);
            let mut state = crate::lock(&shared.state);
            state.closed = true;
            state.pumping = false;
            state.queue.clear();
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
        Encoded(bytes.into())
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
        let outbox = Outbox::new_held(Arc::new(socket));
        outbox.queue_held(&[frame(b"1")]);
        outbox.push(&[frame(b"2")]).unwrap();
        outbox.release();
        outbox.push(&[frame(b"3"), frame(b"4")]).unwrap();
        let mut got = [0u8; 4];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"1234");

        // Nobody reads now: the socket fills, then the queue.
        let big = frame(&vec![b'x'; 64 * 1024]);
        let full = (0..10 * OUTBOX_LEN).any(|_| outbox.push(std::slice::from_ref(&big)).is_err());
        assert!(full, "the outbox filled up");
        outbox.kick();
    }
}
