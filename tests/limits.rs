//! Bad input and bad peers: oversized, binary and invalid frames get their
//! RFC 6455 close codes; silent peers are reaped by the heartbeat; a client
//! that stops reading is dropped while everyone else keeps chatting.

mod common;

use common::*;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tungstenite::Message;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

/// A message over 64 KiB closes with 1009, also when it arrives in
/// fragments; 64 KiB exactly is read (and refused as too long a text).
#[test]
fn oversized_messages_close_with_1009() {
    let server = Server::start(&[]);
    let (mut alice, _) = Client::join(&server, "alice");
    alice.send_text(&"x".repeat(65_536));
    assert_eq!(alice.recv_type("error")["code"], "too_long");
    alice.send_text(&"x".repeat(65_537));
    assert_eq!(alice.expect_close(), CloseCode::Size);

    let (mut bob, _) = Client::join(&server, "bob");
    for (n, last) in [(40_000, false), (40_000, true)] {
        let opcode = if last {
            OpCode::Data(Data::Continue)
        } else {
            OpCode::Data(Data::Text)
        };
        bob.ws
            .write(Message::Frame(Frame::message(vec![b'y'; n], opcode, last)))
            .unwrap();
    }
    bob.ws.flush().unwrap();
    assert_eq!(bob.expect_close(), CloseCode::Size);
}

/// A binary message closes with 1003.
#[test]
fn binary_messages_close_with_1003() {
    let server = Server::start(&[]);
    let (mut alice, _) = Client::join(&server, "alice");
    alice.ws.send(Message::binary(vec![1, 2, 3])).unwrap();
    assert_eq!(alice.expect_close(), CloseCode::Unsupported);
}

/// A text frame that is not UTF-8 closes with 1007.
#[test]
fn invalid_utf8_closes_with_1007() {
    let server = Server::start(&[]);
    let (mut alice, _) = Client::join(&server, "alice");
    let frame = Frame::message(vec![b'h', 0xff, 0xfe], OpCode::Data(Data::Text), true);
    alice.ws.send(Message::Frame(frame)).unwrap();
    assert_eq!(alice.expect_close(), CloseCode::Invalid);
}

/// A protocol violation (a reserved opcode) closes with 1002; the others
/// in the room are not affected.
#[test]
fn protocol_violations_close_with_1002() {
    let server = Server::start(&[]);
    let (mut bystander, _) = Client::join(&server, "bystander");
    let (mut alice, _) = Client::join(&server, "alice");
    let frame = Frame::message(vec![1], OpCode::Data(Data::Reserved(3)), true);
    alice.ws.send(Message::Frame(frame)).unwrap();
    assert_eq!(alice.expect_close(), CloseCode::Protocol);
    assert_eq!(bystander.recv_type("leave")["name"], "alice");
    bystander.say("fine");
    assert_eq!(bystander.recv_type("message")["text"], "fine");
}

/// Idle but alive connections are pinged and stay; a peer that never
/// answers is closed within 2 to 3 heartbeats, with a close frame (1001)
/// before the end, for a peer that can still read it.
#[test]
fn heartbeat_pings_the_idle_and_reaps_the_silent() {
    // Not much shorter: a loaded CI machine may not run the alive client
    // for a few hundred milliseconds, and would see it reaped.
    let server = Server::start(&["--heartbeat", "0.5"]);
    let (mut alive, _) = Client::join(&server, "alive");
    let (mut silent, _) = Client::join(&server, "silent"); // never reads, so never pongs
    let joined = Instant::now();

    // The alive client answers pings by reading; it sees at least four.
    let mut pings = 0;
    while pings < 4 {
        if let Message::Ping(_) = alive.ws.read().unwrap() {
            pings += 1;
        }
    }
    wait_for("the silent peer to be reaped", || {
        server.health()["users"] == 1
    });
    assert!(
        joined.elapsed() >= Duration::from_millis(1000),
        "not before two heartbeats"
    );
    alive.say("still here");
    assert_eq!(alive.recv_type("message")["text"], "still here");
    assert_eq!(
        silent.expect_close(),
        CloseCode::Away,
        "a close, not a bare FIN"
    );
}

/// A client that stops reading while others chat: the others receive every
/// message that was accepted, and the stalled one is dropped (its outbox
/// overflowed) without anyone waiting for it.
#[test]
fn a_client_that_stops_reading_is_dropped() {
    let server = Server::start(&[]);
    let (mut observer, _) = Client::join(&server, "observer");
    let (_stalled, _) = Client::join(&server, "stalled"); // never reads again
    observer.recv_type("join");

    // Big frames fill the stalled client's socket buffers quickly; then its
    // outbox (1,024 frames) overflows.
    let senders = 12;
    let deadline = Instant::now() + Duration::from_secs(90);
    let done = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..senders)
        .map(|s| {
            let (client, _) = Client::join(&server, &format!("sender{s}"));
            let done = done.clone();
            std::thread::spawn(move || chatty_sender(client, s, deadline, &done))
        })
        .collect();

    // Read until every sender's end marker is in; note what arrived.
    let mut received: Vec<HashSet<u64>> = vec![HashSet::new(); senders];
    let mut ended = 0;
    let mut stalled_left = false;
    while ended < senders {
        let frame = observer.recv();
        match frame["type"].as_str() {
            Some("message") => {
                let (s, n) = parse_tag(frame["text"].as_str().unwrap());
                match n {
                    Some(n) => assert!(received[s].insert(n), "a message arrived twice"),
                    None => ended += 1,
                }
            }
            Some("leave") if frame["name"] == "stalled" => stalled_left = true,
            Some("leave") => panic!("{} was dropped too", frame["name"]),
            _ => {}
        }
    }
    assert!(stalled_left, "the stalled client was dropped");
    assert_eq!(
        server.health()["users"],
        senders + 1,
        "everyone else is still online"
    );
    done.store(true, Ordering::SeqCst);
    for (s, thread) in threads.into_iter().enumerate() {
        let accepted = thread.join().unwrap();
        assert!(
            accepted.len() > 100,
            "sender {s}: only {} accepted",
            accepted.len()
        );
        assert_eq!(
            received[s], accepted,
            "sender {s}: the observer got exactly what was accepted"
        );
    }
}

const MESSAGES_PER_SENDER: u64 = 160;

/// Sends [`MESSAGES_PER_SENDER`] 16 KB messages at 15 a second after a
/// burst of 30 (under the limit of 20/s, bursts of 40), reading all the
/// while so that it is never a slow client itself. A server that falls
/// behind may still see a burst and refuse some: those are not counted.
/// Once every message is answered (echoed or refused), sends an end marker.
/// Returns the numbers of its messages the server accepted.
fn chatty_sender(
    mut client: Client,
    s: usize,
    deadline: Instant,
    done: &AtomicBool,
) -> HashSet<u64> {
    let text = "😀".repeat(3990); // under 4,000 characters with its prefix
    client
        .ws
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let mut tally = Tally {
        me: format!("sender{s}"),
        deadline: Some(deadline),
        ..Tally::default()
    };
    let started = Instant::now();
    for n in 0..MESSAGES_PER_SENDER {
        let due = started + Duration::from_millis(n.saturating_sub(30) * 1000 / 15);
        tally.read_until(&mut client, due);
        client.say(&format!("{s}/{n} {text}"));
    }
    while tally.accepted.len() as u64 + tally.refused < MESSAGES_PER_SENDER {
        tally.read_until(&mut client, Instant::now());
    }
    while !tally.ended {
        let refused = tally.refused;
        client.say(&format!("{s}/end"));
        while !tally.ended && tally.refused == refused {
            tally.read_until(&mut client, Instant::now());
        }
    }
    while !done.load(Ordering::SeqCst) {
        tally.read_until(&mut client, Instant::now());
    }
    tally.accepted
}

/// What a sender has heard back about its own messages.
#[derive(Default)]
struct Tally {
    me: String,
    deadline: Option<Instant>,
    accepted: HashSet<u64>,
    refused: u64,
    ended: bool,
}

impl Tally {
    /// Reads what is waiting; returns once nothing is and `due` has passed.
    fn read_until(&mut self, client: &mut Client, due: Instant) {
        loop {
            assert!(
                Instant::now() < self.deadline.unwrap(),
                "{} timed out",
                self.me
            );
            let Ok(Message::Text(raw)) = client.ws.read() else {
                if Instant::now() >= due {
                    return;
                }
                continue;
            };
            let frame: serde_json::Value = serde_json::from_str(raw.as_str()).unwrap();
            match frame["type"].as_str() {
                Some("message") if frame["from"] == self.me.as_str() => {
                    match parse_tag(frame["text"].as_str().unwrap()).1 {
                        Some(n) => drop(self.accepted.insert(n)),
                        None => self.ended = true,
                    }
                }
                Some("error") => {
                    assert_eq!(frame["code"], "rate_limited");
                    self.refused += 1;
                }
                _ => {}
            }
        }
    }
}

/// `"3/17 ..."` is (3, Some(17)); `"3/end"` is (3, None).
fn parse_tag(text: &str) -> (usize, Option<u64>) {
    let tag = text.split(' ').next().unwrap();
    let (s, n) = tag.split_once('/').unwrap();
    (s.parse().unwrap(), n.parse().ok())
}
