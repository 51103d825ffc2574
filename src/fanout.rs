//! The fan-out thread: stores and sends what the hub accepted, outside the
//! hub's lock.
//!
//! The hub appends its work to the [`FanOut`] queue *while still holding
//! the hub lock*, so the queue is in the order the hub decided. One thread,
//! `fan-out`, takes the whole queue at once and hands it to the hub's
//! `prepare` (which stores the new messages in one group commit, then
//! decides who gets them: `Hub::prepare`), then sends the resulting
//! [`Delivery`]s (one encoded frame, shared, and the outboxes it goes to),
//! in that order.
//!
//! Concurrency rule: the queue's mutex is held only to append or to take
//! the queue; storing and sending happen after it is released, with no
//! lock held but each outbox's own (see `outbox.rs`).
//!
//! Under load the thread finds much work waiting: one store round trip for
//! all of it, and each connection gets all of its frames in one push (one
//! `sendmsg`). The busier the room, the bigger the batches, and there is
//! still one wake-up per batch, not one per recipient. A connection whose
//! outbox overflows is reported back to the hub (which drops it): a client
//! that stopped reading never slows anyone else.

use crate::outbox::Outbox;
use crate::protocol::Encoded;
use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// How soon the thread comes back, with no new work, for connections
/// behind on presence notices ([`Prepared::come_back`]): they are looked
/// at again this often until they have caught up.
pub const COME_BACK_AFTER: Duration = Duration::from_millis(50);

/// A batch with more work items than this is a storm (a class arriving):
/// once the thread has been idle for [`TRIM_AFTER`] since, it gives the
/// memory freed meanwhile back to the system ([`give_back_memory`]).
const STORM_BATCH: usize = 64;
const TRIM_AFTER: Duration = Duration::from_millis(250);

/// Frames (one, most often: a message) and the connections they go to.
pub struct Delivery {
    pub frames: Vec<Encoded>,
    pub to: Vec<Outbox>,
}

/// What the hub's `prepare` made of a batch.
#[derive(Default)]
pub struct Prepared {
    /// To send now, in order.
    pub deliveries: Vec<Delivery>,
    /// Call `prepare` again within this long even if no work comes: zero
    /// when it has more to send at once, [`COME_BACK_AFTER`] when it waits
    /// for slow clients to catch up.
    pub come_back: Option<Duration>,
    /// Held outboxes to release once the deliveries are sent: newcomers,
    /// whose welcomes are large; a message of the batch goes first.
    pub release: Vec<Outbox>,
}

/// The queue between the hub and the fan-out thread, of the hub's work
/// items (`hub::Work`).
pub struct FanOut<W> {
    /// Work queued under the hub lock, in its order.
    queue: Mutex<Vec<W>>,
    /// Wakes the fan-out thread when the queue stops being empty.
    ready: Condvar,
}

impl<W> Default for FanOut<W> {
    fn default() -> Self {
        FanOut {
            queue: Mutex::default(),
            ready: Condvar::new(),
        }
    }
}

impl<W: Send + 'static> FanOut<W> {
    /// Appends work; called under the hub lock, never blocks for long.
    pub fn queue(&self, work: Vec<W>) {
        if work.is_empty() {
            return;
        }
        crate::lock(&self.queue).extend(work);
        self.ready.notify_one();
    }

    /// Starts the `fan-out` thread. `prepare` turns a batch of work into
    /// deliveries (storing what must be stored first); `drop_slow` gets the
    /// outboxes that overflowed (the hub drops their connections).
    pub fn start(
        self: &std::sync::Arc<Self>,
        prepare: impl Fn(Vec<W>) -> Prepared + Send + 'static,
        drop_slow: impl Fn(Vec<Outbox>) + Send + 'static,
    ) -> std::io::Result<()> {
        let fan_out = self.clone();
        std::thread::Builder::new()
            .name("fan-out".into())
            .spawn(move || fan_out.run(prepare, drop_slow))
            .map(drop)
    }

    fn run(&self, prepare: impl Fn(Vec<W>) -> Prepared, drop_slow: impl Fn(Vec<Outbox>)) {
        let mut storm_since_trim = false;
        let mut again: Option<Duration> = None;
        loop {
            let batch = {
                let queue = crate::lock(&self.queue);
                let wait = match (again.take(), storm_since_trim) {
                    (Some(again), _) => Some(again),
                    (None, true) => Some(TRIM_AFTER),
                    (None, false) => None,
                };
                let mut queue = match wait {
                    Some(wait) => {
                        let (queue, waited) = self
                            .ready
                            .wait_timeout_while(queue, wait, |q| q.is_empty())
                            .unwrap_or_else(|p| p.into_inner());
                        if waited.timed_out() && wait == TRIM_AFTER {
                            give_back_memory();
                            storm_since_trim = false;
                        }
                        queue
                    }
                    None => self
                        .ready
                        .wait_while(queue, |q| q.is_empty())
                        .unwrap_or_else(|p| p.into_inner()),
                };
                std::mem::take(&mut *queue)
            };
            storm_since_trim |= batch.len() > STORM_BATCH;
            // One thread sends for everyone: a bug hit while sending one
            // batch must not silence the chat. (Outboxes stay consistent:
            // each push holds its own lock.)
            let sent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let prepared = prepare(batch);
                again = prepared.come_back;
                let slow = send(prepared.deliveries);
                for outbox in prepared.release {
                    outbox.release();
                }
                slow
            }));
            match sent {
                Ok(slow) if !slow.is_empty() => drop_slow(slow),
                Ok(_) => {}
                Err(_) => log::error!("fan-out: a batch of deliveries was lost to a panic"),
            }
        }
    }
}

/// Gives the memory that a storm used and freed back to the system. The C
/// allocator keeps freed memory for reuse; after a class has arrived
/// (thousands of welcomes and notices, queued while clients caught up) that
/// is hundreds of MiB the laptop never sees again. Linux with glibc only;
/// elsewhere a no-op.
fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system; it is
    // safe to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Sends a batch of deliveries: each connection gets all of its frames, in
/// order, in one push. Returns the outboxes that overflowed.
fn send(batch: Vec<Delivery>) -> Vec<Outbox> {
    let mut slow = Vec::new();
    if let [delivery] = &batch[..] {
        // The common case when the room is quiet: one frame, shared by all.
        for outbox in &delivery.to {
            if outbox.push(&delivery.frames).is_err() {
                slow.push(outbox.clone());
            }
        }
        return slow;
    }
    // Borrowed, not cloned: each frame is shared by thousands of outboxes.
    let mut frames: Vec<(&Outbox, Vec<&Encoded>)> = Vec::new();
    let mut index: HashMap<Uuid, usize> = HashMap::new();
    for delivery in &batch {
        for outbox in &delivery.to {
            let i = *index.entry(outbox.id()).or_insert_with(|| {
                frames.push((outbox, Vec::new()));
                frames.len() - 1
            });
            frames[i].1.extend(delivery.frames.iter());
        }
    }
    for (outbox, frames) in frames {
        if outbox.push(&frames).is_err() {
            slow.push(outbox.clone());
        }
    }
    slow
}
