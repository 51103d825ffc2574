//! The WebSocket side of the contract: who may connect, the opening frames,
//! presence, room and private delivery (and who does *not* receive), the
//! inbox, and every error code.

mod common;

use common::*;
use serde_json::json;

/// No session, an unknown session or a forged name cookie: `401`. A page
/// from another origin: `403`. The same origin, or no Origin: upgraded.
#[test]
fn who_may_open_a_websocket() {
    let server = Server::start(&[]);
    assert_eq!(Client::connect_with(&server, None, &[]).err(), Some(401));
    let unknown = "lanchat_user=YQ==; lanchat_session=5f0c3b0e-8c2a-4b51-9a3e-2f4f3c1d2e10";
    assert_eq!(
        Client::connect_with(&server, Some(unknown), &[]).err(),
        Some(401)
    );

    let cookie = login(&server, "alice");
    let session = cookie
        .split("; ")
        .find(|c| c.starts_with("lanchat_session="))
        .unwrap();
    let forged = format!("lanchat_user=bWFsbG9yeQ==; {session}");
    assert_eq!(
        Client::connect_with(&server, Some(&forged), &[]).err(),
        Some(401)
    );

    let evil = [("Origin", "http://evil.example:8000")];
    assert_eq!(
        Client::connect_with(&server, Some(&cookie), &evil).err(),
        Some(403)
    );
    let own = format!("http://{}", server.addr);
    assert!(Client::connect_with(&server, Some(&cookie), &[("Origin", &own)]).is_ok());
    assert!(Client::connect_with(&server, Some(&cookie), &[]).is_ok());
}

/// RFC 6455: a `Sec-WebSocket-Key` that is not the base64 of 16 bytes gets
/// `400`, with or without a session; a good key is upgraded.
#[test]
fn a_bad_websocket_key_is_400() {
    let server = Server::start(&[]);
    let cookie = login(&server, "alice");
    let upgrade = |key: &str| {
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\nCookie: {cookie}\r\n\r\n",
            server.addr
        );
        raw_http(&server, request.as_bytes()).status
    };
    for bad in [
        "x",
        "dGhlIHNhbXBsZQ==",
        "dGhlIHNhbXBsZSBub25jZQ",
        "!!!!!!!!!!!!!!!!!!!!!!==",
    ] {
        assert_eq!(upgrade(bad), 400, "{bad}");
    }
    assert_eq!(upgrade("dGhlIHNhbXBsZSBub25jZQ=="), 101);
}

/// On connect: welcome (everyone online, sorted, newcomer included), then
/// history, then offline, in that order.
#[test]
fn opening_frames_in_order() {
    let server = Server::start(&[]);
    let (_zed, _) = Client::join(&server, "zed");
    let (_emil, _) = Client::join(&server, "Émil");
    let (mut anna, _) = Client::join(&server, "anna");
    anna.say("first");
    anna.recv_type("message");

    let cookie = login(&server, "bea");
    let mut bea = Client::connect(&server, &cookie);
    let welcome = bea.recv();
    let mode = json!({"announce": false, "slow": 0, "private": true, "uploads": true});
    assert_eq!(
        welcome,
        json!({"type": "welcome", "name": "bea", "users": ["anna", "bea", "zed", "Émil"],
               "hosts": [], "host": false, "mode": mode})
    );
    let history = bea.recv();
    assert_eq!(history["type"], "history");
    assert_eq!(history["messages"][0]["text"], "first");
    assert_eq!(bea.recv(), json!({"type": "offline", "messages": []}));
}

/// `join` only when a name gets its first connection, `leave` only when it
/// loses its last one; never to the name itself.
#[test]
fn join_and_leave_on_first_and_last_connection() {
    let server = Server::start(&[]);
    let (mut watcher, _) = Client::join(&server, "watcher");
    let cookie = login(&server, "dan");

    let mut first = Client::connect(&server, &cookie);
    let join = watcher.recv();
    assert_eq!(
        (join["type"].as_str(), join["name"].as_str()),
        (Some("join"), Some("dan"))
    );
    assert!(join["ts"].as_u64().unwrap() > 1_600_000_000_000);
    first.recv_type("offline");

    let mut second = Client::connect(&server, &cookie);
    second.recv_type("offline");
    second.ws.close(None).unwrap();
    second.expect_close_or_end();
    // No join for the second connection, no leave for its end: the next
    // frame the watcher sees is the message said after both.
    first.say("still here");
    assert_eq!(watcher.recv()["type"], "message");

    first.ws.close(None).unwrap();
    let leave = watcher.recv();
    assert_eq!(
        (leave["type"].as_str(), leave["name"].as_str()),
        (Some("leave"), Some("dan"))
    );
}

/// A room message reaches every connection, the sender's included, with
/// an id, the sender's name, the trimmed text and a timestamp.
#[test]
fn room_messages_reach_everyone() {
    let server = Server::start(&[]);
    let (mut alice, _) = Client::join(&server, "alice");
    let (mut bob, _) = Client::join(&server, "bob");
    alice.recv_type("join");
    alice.say("  hello <b>room</b>  ");
    let seen_by_alice = alice.recv_type("message");
    let seen_by_bob = bob.recv_type("message");
    assert_eq!(seen_by_alice, seen_by_bob);
    assert_eq!(seen_by_bob["from"], "alice");
    assert_eq!(seen_by_bob["text"], "hello <b>room</b>");
    assert_eq!(seen_by_bob["id"].as_str().unwrap().len(), 36);
    assert!(seen_by_bob["ts"].is_u64());
    // A frame that is not a JSON object is a message too.
    bob.send_text("plain text");
    assert_eq!(alice.recv_type("message")["text"], "plain text");
    bob.send_text("[1, 2]");
    assert_eq!(alice.recv_type("message")["text"], "[1, 2]");
}

/// A private message reaches every connection of the recipient and of the
/// sender, and nobody else.
#[test]
fn private_messages_reach_only_the_two() {
    let server = Server::start(&[]);
    let (mut alice, _) = Client::join(&server, "alice");
    let bob_cookie = login(&server, "bob");
    let mut bob1 = Client::connect(&server, &bob_cookie);
    bob1.recv_type("offline");
    let mut bob2 = Client::connect(&server, &bob_cookie);
    bob2.recv_type("offline");
    let (mut carol, _) = Client::join(&server, "carol");

    alice.send(json!({"type": "private", "to": " bob ", "text": "psst"}));
    let private = bob1.recv_type("private");
    assert_eq!(private["from"], "alice");
    assert_eq!(private["to"], "bob");
    assert_eq!(private["text"], "psst");
    assert_eq!(bob2.recv_type("private"), private);
    assert_eq!(alice.recv_type("private"), private);

    // Carol's next message-like frame is the room message said afterwards.
    alice.say("after");
    let next = carol.recv_skipping_presence();
    assert_eq!(
        (next["type"].as_str(), next["text"].as_str()),
        (Some("message"), Some("after"))
    );
}

/// A private message to someone offline waits in the inbox and is
/// delivered once, in the `offline` frame, oldest first.
#[test]
fn inbox_is_delivered_exactly_once() {
    let server = Server::start(&[]);
    let bob_cookie = login(&server, "bob"); // bob has logged in, but is offline
    let (mut alice, _) = Client::join(&server, "alice");
    alice.send(json!({"type": "private", "to": "bob", "text": "one"}));
    alice.send(json!({"type": "private", "to": "bob", "text": "two"}));
    let copy = alice.recv_type("private"); // the sender still gets its copy
    assert_eq!(copy["text"], "one");
    alice.recv_type("private");

    let mut bob = Client::connect(&server, &bob_cookie);
    bob.recv_type("history");
    let offline = bob.recv();
    assert_eq!(offline["type"], "offline");
    let texts: Vec<_> = offline["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].clone())
        .collect();
    assert_eq!(texts, [json!("one"), json!("two")]);
    assert_eq!(offline["messages"][0], copy);
    bob.ws.close(None).unwrap();
    alice.recv_type("leave");

    let mut again = Client::connect(&server, &bob_cookie);
    again.recv_type("history");
    assert_eq!(again.recv(), json!({"type": "offline", "messages": []}));
}

/// Each error code, sent only to the connection that caused it, which
/// stays open.
#[test]
fn every_error_code() {
    let server = Server::start(&[]);
    let (mut alice, _) = Client::join(&server, "alice");
    let (mut bob, _) = Client::join(&server, "bob");
    let cases = [
        (json!({"type": "shout", "text": "x"}), "bad_request"),
        (json!({"type": "message"}), "bad_request"),
        (json!({"type": "private", "text": "x"}), "bad_request"),
        (json!({"type": "message", "text": "   "}), "empty"),
        (
            json!({"type": "message", "text": "x".repeat(4001)}),
            "too_long",
        ),
        (
            json!({"type": "private", "to": "nobody", "text": "x"}),
            "unknown_user",
        ),
    ];
    for (frame, code) in cases {
        alice.send(frame.clone());
        let error = alice.recv_type("error");
        assert_eq!(error["code"], code, "{frame}");
        assert!(!error["message"].as_str().unwrap().is_empty());
    }
    // The connection still works, and bob saw none of the errors.
    alice.say("ok");
    assert_eq!(alice.recv_type("message")["text"], "ok");
    let next = bob.recv_skipping_presence();
    assert_eq!(
        (next["type"].as_str(), next["text"].as_str()),
        (Some("message"), Some("ok"))
    );
}

/// More than 40 messages at once from one connection: the rest are
/// `rate_limited` (and not delivered); the connection stays open.
#[test]
fn rate_limit_per_connection() {
    let server = Server::start(&[]);
    let (mut alice, _) = Client::join(&server, "alice");
    for n in 0..60 {
        alice.say(&format!("m{n}"));
    }
    let (mut delivered, mut limited) = (0, 0);
    while delivered + limited < 60 {
        match alice.recv()["type"].as_str() {
            Some("message") => delivered += 1,
            Some("error") => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    // A burst of 40, plus what refilled (20/s) while the 60 were read.
    assert!((40..=50).contains(&delivered), "{delivered} delivered");
    assert!(limited >= 10, "{limited} limited");
}

/// History holds the last 100 room messages, oldest first, in the order
/// everyone saw them.
#[test]
fn history_keeps_the_last_100() {
    let server = Server::start(&[]);
    let mut senders: Vec<_> = ["s1", "s2", "s3"]
        .iter()
        .map(|n| Client::join(&server, n).0)
        .collect();
    for n in 0..105 {
        senders[n % 3].say(&format!("m{n}"));
    }
    // Three connections, three threads: the room's order is the order in
    // which the hub took them, which every receiver sees.
    let mut seen = Vec::new();
    while seen.len() < 105 {
        seen.push(
            senders[0].recv_type("message")["text"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    for sender in &mut senders[1..] {
        let theirs: Vec<_> = (0..105)
            .map(|_| {
                sender.recv_type("message")["text"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(theirs, seen, "everyone sees the same order");
    }
    let cookie = login(&server, "late");
    let mut late = Client::connect(&server, &cookie);
    late.recv_type("welcome");
    let history = late.recv();
    let messages = history["messages"].as_array().unwrap();
    assert!(
        messages
            .iter()
            .all(|m| m["type"] == "message" && m["from"].is_string())
    );
    let texts: Vec<_> = messages
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, seen[5..]);
}

/// Typing: to the room (not back to the typist), or to one person; at most
/// one relayed per connection every 2 seconds; never when the typist could
/// not send (private messages off between students).
#[test]
fn typing_is_relayed_and_throttled() {
    let server = Server::start(&["--host-key", "typing-test-host-key-0123"]);
    let (mut alice, _) = Client::join(&server, "alice");
    let (mut bob, _) = Client::join(&server, "bob");
    let (mut carol, _) = Client::join(&server, "carol");
    alice.send(json!({"type": "typing"}));
    alice.send(json!({"type": "typing"})); // within 2 s: dropped
    alice.say("marker");
    assert_eq!(
        bob.recv_skipping_presence(),
        json!({"type": "typing", "name": "alice"})
    );
    assert_eq!(
        bob.recv_skipping_presence()["text"],
        "marker",
        "the second was dropped"
    );
    assert_eq!(
        alice.recv_skipping_presence()["text"],
        "marker",
        "not back to alice"
    );

    bob.send(json!({"type": "typing", "to": "CAROL"}));
    bob.say("marker 2");
    assert_eq!(
        carol.recv_type("typing")["name"],
        "alice",
        "alice's, to the room"
    );
    assert_eq!(
        carol.recv_type("typing"),
        json!({"type": "typing", "name": "bob", "to": "carol"})
    );
    assert_eq!(
        alice.recv_skipping_presence()["text"],
        "marker 2",
        "alice was not told"
    );

    // Private messages off: bob's private typing to carol is not relayed.
    let teacher = format!(
        "{}; lanchat_host=typing-test-host-key-0123",
        login(&server, "teacher")
    );
    let mut teacher = Client::connect(&server, &teacher);
    teacher.opening();
    teacher.send(json!({"type": "mode", "private": false}));
    carol.recv_type("mode");
    carol.send(json!({"type": "typing", "to": "bob"}));
    carol.say("marker 3");
    assert_eq!(bob.recv_skipping_presence()["text"], "marker 2");
    assert_eq!(bob.recv_skipping_presence()["type"], "mode");
    assert_eq!(bob.recv_skipping_presence()["text"], "marker 3");
}

/// A server stopped and continued (Ctrl-Z, then `fg`, in the teacher's
/// terminal) keeps its connections: Linux ends a blocking read that has a
/// timeout with `EINTR` when the process is continued, and that is no
/// reason to hang up on anyone.
#[test]
fn a_stopped_and_continued_server_keeps_its_connections() {
    let server = Server::start(&[]);
    let (mut alice, _) = Client::join(&server, "alice");
    let (mut bob, _) = Client::join(&server, "bob");
    alice.recv_type("join");
    server.signal("STOP");
    wait_for("the server stopped", || server.state() == "T");
    server.signal("CONT");
    wait_for("the server running again", || server.state() != "T");

    alice.say("still here");
    assert_eq!(bob.recv_type("message")["text"], "still here");
    assert_eq!(server.connections(), 2, "nobody was dropped");
}
