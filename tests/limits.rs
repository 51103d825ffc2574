//! Bad input and bad peers: oversized, binary and invalid frames get their
//! RFC 6455 close codes; silent peers are reaped by the heartbeat; a client
//! that stops reading is dropped while everyone else keeps chatting.

mod common;

use common::*;
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
/// answers is closed within 2 to 3 heartbeats.
#[test]
fn heartbeat_pings_the_idle_and_reaps_the_silent() {
    let server = Server::start(&["--heartbeat", "0.2"]);
    let (mut alive, _) = Client::join(&server, "alive");
    let (_silent, _) = Client::join(&server, "silent"); // never reads, so never pongs
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
        joined.elapsed() >= Duration::from_millis(400),
        "not before two heartbeats"
    );
    alive.say("still here");
    assert_eq!(alive.recv_type("message")["text"], "still here");
}

/// A client that stops reading while others chat: the others receive every
/// message, and the stalled one is dropped (its outbox overflowed).
#[test]
fn a_client_that_stops_reading_is_dropped() {
    let server = Server::start(&[]);
    let (mut observer, _) = Client::join(&server, "observer");
    let (_stalled, _) = Client::join(&server, "stalled"); // never reads again
    observer.recv_type("join");

    // Big frames fill the stalled client's socket buffers quickly; then its
    // outbox (1,024 frames) overflows. Senders stay under the rate limit.
    let text = "😀".repeat(3990); // 16 KB a frame, under 4,000 characters with its prefix
    let senders: u64 = 12;
    let per_sender: u64 = 160;
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let threads: Vec<_> = (0..senders)
        .map(|s| {
            let (mut client, _) = Client::join(&server, &format!("sender{s}"));
            let text = text.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                client
                    .ws
                    .get_mut()
                    .set_read_timeout(Some(Duration::from_millis(5)))
                    .unwrap();
                // Senders read all the time, so that none of them is slow.
                let read_until = |client: &mut Client, due: Instant| loop {
                    let got_frame = client.ws.read().is_ok();
                    if !got_frame && Instant::now() >= due {
                        return;
                    }
                    assert!(Instant::now() < deadline, "sender {s} timed out");
                };
                let started = Instant::now();
                for n in 0..per_sender {
                    // 15 a second after a burst of 30: under 20/s, bursts of 40.
                    let due = started + Duration::from_millis((n.max(30) - 30) * 1000 / 15);
                    read_until(&mut client, due);
                    client.say(&format!("{s}/{n} {text}"));
                }
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    read_until(&mut client, Instant::now());
                }
            })
        })
        .collect();

    let mut received = 0;
    let mut stalled_left = false;
    while received < senders * per_sender {
        let frame = observer.recv();
        match frame["type"].as_str() {
            Some("message") => received += 1,
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
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    for thread in threads {
        thread.join().unwrap();
    }
}
