//! The chat without WebSocket: `GET /poll` (short and long) and `POST /say`,
//! with the same messages, errors and limits as the WebSocket; pollers
//! count as online; held polls answer at SIGTERM.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn poll(server: &Server, cookie: &str, query: &str) -> Value {
    let response = get(server, &format!("/poll{query}"), Some(cookie));
    assert_eq!(response.status, 200, "{}", response.body);
    serde_json::from_str(&response.body).unwrap()
}

fn texts(answer: &Value) -> Vec<&str> {
    answer["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect()
}

/// The answer's fields; `after` gives only later messages (room and this
/// name's private ones, in seq order), and `next` is where to go on.
#[test]
fn a_poll_answers_what_came_after() {
    let server = Server::start(&[]);
    let (mut alice, _) = Client::join(&server, "alice");
    let bob = login(&server, "bob");
    let first = poll(&server, &bob, "");
    assert_eq!(first["type"], "poll");
    assert_eq!(
        first["users"],
        json!(["alice", "bob"]),
        "the poller is online"
    );
    assert_eq!(first["hosts"], json!([]));
    assert_eq!(first["mode"]["announce"], false);
    assert_eq!(first["gap"], false);
    let next = first["next"].as_u64().unwrap();

    alice.say("one");
    alice.send(json!({"type": "private", "to": "bob", "text": "two"}));
    alice.send(json!({"type": "private", "to": "alice", "text": "not for bob"}));
    alice.say("three");
    for _ in 0..4 {
        alice.recv_skipping_presence();
    }
    let later = poll(&server, &bob, &format!("?after={next}"));
    assert_eq!(texts(&later), ["one", "two", "three"]);
    let seqs: Vec<u64> = later["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let next = later["next"].as_u64().unwrap();
    assert!(next >= *seqs.last().unwrap());
    assert_eq!(
        texts(&poll(&server, &bob, &format!("?after={next}"))),
        Vec::<&str>::new()
    );
    assert_eq!(get(&server, "/poll", None).status, 401);
    assert_eq!(get(&server, "/poll?after=x", Some(&bob)).status, 400);
    assert_eq!(get(&server, "/poll?wait=61", Some(&bob)).status, 400);
}

/// A long poll answers as soon as a message is accepted, and after `wait`
/// seconds when nothing comes.
#[test]
fn a_long_poll_answers_when_a_message_comes() {
    let server = Server::start(&[]);
    let (mut alice, _) = Client::join(&server, "alice");
    let bob = login(&server, "bob");
    let next = poll(&server, &bob, "")["next"].as_u64().unwrap();

    let addr = server.addr;
    let holding = {
        let bob = bob.clone();
        std::thread::spawn(move || {
            let request = format!(
                "GET /poll?after={next}&wait=30 HTTP/1.1\r\nHost: {addr}\r\nCookie: {bob}\r\n\r\n"
            );
            let mut socket = std::net::TcpStream::connect(addr).unwrap();
            std::io::Write::write_all(&mut socket, request.as_bytes()).unwrap();
            let mut answer = Vec::new();
            std::io::Read::read_to_end(&mut socket, &mut answer).unwrap();
            (Instant::now(), parse_response(&answer))
        })
    };
    wait_for("the poll to be held", || server.health()["users"] == 2);
    let said = Instant::now();
    alice.say("now");
    let (answered, response) = holding.join().unwrap();
    let answer: Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(texts(&answer), ["now"]);
    assert!(
        answered - said < Duration::from_secs(5),
        "answered {:?} after",
        answered - said
    );

    let next = answer["next"].as_u64().unwrap();
    let started = Instant::now();
    let empty = poll(&server, &bob, &format!("?after={next}&wait=1"));
    assert_eq!(texts(&empty), Vec::<&str>::new());
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited {:?}",
        started.elapsed()
    );
}

/// A poller is online: others see it join, and leave some heartbeats after
/// its last poll.
#[test]
fn pollers_join_and_leave() {
    let server = Server::start(&["--heartbeat", "0.5"]);
    let (mut alice, _) = Client::join(&server, "alice");
    let bob = login(&server, "bob");
    poll(&server, &bob, "");
    assert_eq!(alice.recv_type("join")["name"], "bob");
    let left = alice.recv_type("leave");
    assert_eq!(
        left["name"], "bob",
        "gone after 2 heartbeats without a poll"
    );
}

/// `POST /say`: `200` with the stored sender's copy for a message, `204`
/// for the others, and every error with its status.
#[test]
fn say_answers_like_the_websocket() {
    let server = Server::start(&[]);
    let (mut alice, _) = Client::join(&server, "alice");
    let bob = login(&server, "bob");
    let said = post_json(
        &server,
        "/say",
        r#"{"type":"message","text":" hi "}"#,
        Some(&bob),
    );
    assert_eq!(said.status, 200, "{}", said.body);
    let copy: Value = serde_json::from_str(&said.body).unwrap();
    assert_eq!(
        (
            copy["type"].as_str(),
            copy["from"].as_str(),
            copy["text"].as_str()
        ),
        (Some("message"), Some("bob"), Some("hi"))
    );
    assert!(copy["seq"].as_u64().unwrap() >= 1);
    assert_eq!(alice.recv_type("message")["id"], copy["id"]);
    let private = post_json(
        &server,
        "/say",
        r#"{"type":"private","to":"alice","text":"psst"}"#,
        Some(&bob),
    );
    assert_eq!(private.status, 200);
    assert_eq!(alice.recv_type("private")["text"], "psst");
    let deleted = post_json(
        &server,
        "/say",
        &json!({"type": "delete", "id": copy["id"]}).to_string(),
        Some(&bob),
    );
    assert_eq!(deleted.status, 204);

    let code = |response: &HttpResponse| -> String {
        serde_json::from_str::<Value>(&response.body).unwrap()["code"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for (body, status, error) in [
        ("hi", 400, "bad_request"),
        (r#"{"type":"shout"}"#, 400, "bad_request"),
        (r#"{"type":"message","text":"  "}"#, 400, "empty"),
        (
            r#"{"type":"private","to":"nobody","text":"x"}"#,
            404,
            "unknown_user",
        ),
        (r#"{"type":"delete","id":"nope"}"#, 404, "not_found"),
        (r#"{"type":"clear"}"#, 403, "forbidden"),
    ] {
        let response = post_json(&server, "/say", body, Some(&bob));
        assert_eq!(
            (response.status, code(&response)),
            (status, error.to_string()),
            "{body}"
        );
    }
    let long = json!({"type": "message", "text": "x".repeat(4001)}).to_string();
    let response = post_json(&server, "/say", &long, Some(&bob));
    assert_eq!(
        (response.status, code(&response)),
        (400, "too_long".to_string())
    );
    let huge = json!({"type": "message", "text": "x".repeat(70_000)}).to_string();
    assert_eq!(post_json(&server, "/say", &huge, Some(&bob)).status, 413);
    let response = post_json(&server, "/say", r#"{"type":"message","text":"x"}"#, None);
    assert_eq!(
        (response.status, code(&response)),
        (401, "unauthorized".to_string())
    );
}

/// The limits: more than 10 polls a second from one session, and more
/// messages than the rate allows, get `429`.
#[test]
fn polls_and_says_are_rate_limited() {
    let server = Server::start(&[]);
    let bob = login(&server, "bob");
    let statuses: Vec<u16> = (0..30)
        .map(|_| get(&server, "/poll", Some(&bob)).status)
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(statuses[0], 200);
    let said: Vec<u16> = (0..60)
        .map(|n| {
            post_json(
                &server,
                "/say",
                &json!({"type": "message", "text": n.to_string()}).to_string(),
                Some(&bob),
            )
            .status
        })
        .collect();
    assert!(said.contains(&429), "{said:?}");
}

/// SIGTERM answers every held poll at once.
#[test]
fn held_polls_answer_at_sigterm() {
    let mut server = Server::start(&[]);
    let cookies: Vec<String> = (0..5).map(|n| login(&server, &format!("p{n}"))).collect();
    let addr = server.addr;
    let held: Vec<_> = cookies
        .into_iter()
        .map(|cookie| {
            std::thread::spawn(move || {
                let request = format!("GET /poll?after=999999&wait=60 HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\r\n");
                let mut socket = std::net::TcpStream::connect(addr).unwrap();
                socket.set_read_timeout(Some(TIMEOUT)).unwrap();
                std::io::Write::write_all(&mut socket, request.as_bytes()).unwrap();
                let mut answer = Vec::new();
                let _ = std::io::Read::read_to_end(&mut socket, &mut answer);
                parse_response(&answer).status
            })
        })
        .collect();
    wait_for("the polls to be held", || server.health()["users"] == 5);
    server.signal("TERM");
    for poll in held {
        assert_eq!(poll.join().unwrap(), 200);
    }
    let (code, took) = server.wait_exit();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5), "took {took:?}");
}
