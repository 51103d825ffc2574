//! Several servers on one Redis act as one chat: room, private messages,
//! presence and the `409` rule across servers; a SIGKILLed server's users
//! leave elsewhere within the stated bound; no duplicate deliveries.

mod common;

use common::*;
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Servers on one Redis, started one after the other.
fn servers(redis: &RedisServer, n: usize) -> Vec<Server> {
    (0..n)
        .map(|_| Server::start(&["--redis", &redis.url()]))
        .collect()
}

/// Logs in on `server` and connects; returns after the opening frames.
fn join(server: &Server, name: &str) -> (Client, String, serde_json::Value) {
    let cookie = login(server, name);
    let mut client = Client::connect(server, &cookie);
    let welcome = client.recv();
    client.recv_type("offline");
    (client, cookie, welcome)
}

/// Users on different servers see one room, one online list, and private
/// messages reach only their two people, wherever they are connected.
#[test]
fn two_servers_are_one_chat() {
    let redis = RedisServer::start();
    let [a, b]: [Server; 2] = servers(&redis, 2).try_into().ok().unwrap();
    let (mut bob, _, _) = join(&b, "bob");
    let (mut alice, _, _) = join(&a, "alice");
    assert_eq!(
        bob.recv_type("join")["name"],
        "alice",
        "a join on A is seen on B"
    );
    let (mut carol, _, welcome) = join(&b, "carol");
    assert_eq!(
        welcome["users"],
        json!(["alice", "bob", "carol"]),
        "welcome lists every server's users"
    );
    alice.recv_type("join");

    alice.say("hello from A");
    assert_eq!(bob.recv_type("message")["text"], "hello from A");
    assert_eq!(carol.recv_type("message")["text"], "hello from A");
    bob.say("hello from B");
    assert_eq!(alice.recv_type("message")["text"], "hello from A");
    assert_eq!(alice.recv_type("message")["text"], "hello from B");

    alice.send(json!({"type": "private", "to": "bob", "text": "psst"}));
    assert_eq!(bob.recv_type("private")["text"], "psst");
    assert_eq!(alice.recv_type("private")["text"], "psst");
    // Carol gets bob's hello, then the room message said after the private
    // one: the private one never reached her.
    alice.say("after");
    assert_eq!(carol.recv_skipping_presence()["text"], "hello from B");
    assert_eq!(carol.recv_skipping_presence()["text"], "after");

    // Online on B only: not an inbox message for A's sake, a live one.
    drop(carol);
    bob.recv_type("leave");
    alice.send(json!({"type": "private", "to": "carol", "text": "for later"}));
    alice.recv_type("private");
    wait_for("the inbox in Redis", || {
        redis.texts("lanchat:inbox:carol") == ["for later"]
    });
}

/// A name online on one server cannot be taken on another (`409`).
#[test]
fn a_name_is_unique_across_servers() {
    let redis = RedisServer::start();
    let [a, b]: [Server; 2] = servers(&redis, 2).try_into().ok().unwrap();
    let (mut watcher, _, _) = join(&b, "watcher");
    let (_alice, alice_cookie, _) = join(&a, "alice");
    assert_eq!(
        watcher.recv_type("join")["name"],
        "alice",
        "B knows alice is online on A"
    );
    assert_eq!(post_form(&b, "/login", "name=alice", None).status, 409);
    // Her own session may log in again anywhere.
    assert_eq!(
        post_form(&b, "/login", "name=alice", Some(&alice_cookie)).status,
        303
    );
}

/// A server killed with SIGKILL leaves no ghosts: its users leave the
/// others' online lists within PRESENCE_TTL + PRESENCE_REFRESH (8 s), and
/// their sessions work on the other server.
#[test]
fn a_killed_servers_users_leave_everywhere() {
    let redis = RedisServer::start();
    let [mut a, b]: [Server; 2] = servers(&redis, 2).try_into().ok().unwrap();
    let (mut bob, _, _) = join(&b, "bob");
    let (_alice, alice_cookie, _) = join(&a, "alice");
    assert_eq!(bob.recv_type("join")["name"], "alice");

    a.signal("KILL");
    let killed = Instant::now();
    assert_eq!(bob.recv_type("leave")["name"], "alice");
    let took = killed.elapsed();
    assert!(
        took <= Duration::from_secs(10),
        "took {took:?} (bound: 8 s)"
    );
    a.wait_exit();

    let mut alice = Client::connect(&b, &alice_cookie);
    let welcome = alice.recv();
    assert_eq!(welcome["users"], json!(["alice", "bob"]));
}

/// Three servers, two senders on each, all at once: every connection gets
/// every message exactly once, and the history holds each once.
#[test]
fn no_duplicates_under_concurrent_senders() {
    let redis = RedisServer::start();
    let all = servers(&redis, 3);
    let mut clients: Vec<(Client, usize)> = Vec::new();
    for (s, server) in all.iter().enumerate() {
        for c in 0..2 {
            let (client, _, welcome) = join(server, &format!("u{s}{c}"));
            clients.push((client, welcome["users"].as_array().unwrap().len()));
        }
    }
    // Everyone knows everyone is online before the messages start.
    let mut clients: Vec<Client> = clients
        .into_iter()
        .map(|(mut client, mut online)| {
            while online < 6 {
                if client.recv()["type"] == "join" {
                    online += 1;
                }
            }
            client
        })
        .collect();
    let per_client = 15;
    let threads: Vec<_> = clients
        .drain(..)
        .enumerate()
        .map(|(n, mut client)| {
            std::thread::spawn(move || {
                for m in 0..per_client {
                    client.say(&format!("{n}/{m}"));
                }
                let mut counts: HashMap<String, usize> = HashMap::new();
                while counts.len() < 6 * per_client {
                    let frame = client.recv_type("message");
                    *counts
                        .entry(frame["id"].as_str().unwrap().to_string())
                        .or_default() += 1;
                    assert!(counts.values().all(|&c| c == 1), "a message arrived twice");
                }
                counts
            })
        })
        .collect();
    let seen: Vec<HashMap<String, usize>> =
        threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        seen.windows(2).all(
            |w| w[0].keys().collect::<std::collections::BTreeSet<_>>() == w[1].keys().collect()
        )
    );

    let ids = || -> Vec<String> {
        let items: Vec<String> = redis.query(&["LRANGE", "lanchat:history", "0", "-1"]);
        items
            .iter()
            .map(|j| {
                serde_json::from_str::<serde_json::Value>(j).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    wait_for("the history to fill", || ids().len() == 90);
    let mut unique = ids();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 90, "each message stored once");
}

/// Seqs strictly increase across servers, in the order messages were
/// accepted, whichever server accepted them.
#[test]
fn seqs_increase_across_servers() {
    let redis = RedisServer::start();
    let [a, b]: [Server; 2] = servers(&redis, 2).try_into().ok().unwrap();
    let (mut alice, _, _) = join(&a, "alice");
    let (mut bob, _, _) = join(&b, "bob");
    let mut seqs = Vec::new();
    for n in 0..10 {
        let (speaker, listener) = if n % 2 == 0 {
            (&mut alice, &mut bob)
        } else {
            (&mut bob, &mut alice)
        };
        let text = format!("m{n}");
        speaker.say(&text);
        // Heard on the other server before the next one is said.
        let heard = loop {
            let frame = listener.recv_type("message");
            if frame["text"] == text.as_str() {
                break frame;
            }
        };
        seqs.push(heard["seq"].as_u64().unwrap());
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let stored: u64 = redis.query(&["GET", "lanchat:seq"]);
    assert_eq!(stored, *seqs.last().unwrap());
}

/// A logout on one server is refused by the other at once, even though
/// that server saw the session before (and cached it).
#[test]
fn a_logout_is_refused_everywhere_at_once() {
    let redis = RedisServer::start();
    let [a, b]: [Server; 2] = servers(&redis, 2).try_into().ok().unwrap();
    let cookie = login(&a, "alice");
    assert_eq!(
        get(&b, "/", Some(&cookie)).status,
        200,
        "b knows the session"
    );
    assert_eq!(post_form(&a, "/logout", "", Some(&cookie)).status, 303);
    assert_eq!(
        get(&b, "/", Some(&cookie)).status,
        303,
        "b sends her to login"
    );
    assert_eq!(
        Client::connect_with(&b, Some(&cookie), &[]).err(),
        Some(401)
    );
}

/// Names and the host across two servers on one Redis: a claim made on A
/// holds on B; the host on A mutes, sets the mode and kicks bob on B; the
/// host key is shared; and a restart keeps the moderation.
#[test]
fn names_and_host_powers_cross_servers() {
    const KEY: &str = "cluster-host-key-0123456789";
    let redis = RedisServer::start();
    let a = Server::start(&["--redis", &redis.url(), "--host-key", KEY]);
    let b = Server::start(&["--redis", &redis.url()]);
    assert_eq!(
        get(&b, &format!("/host?key={KEY}"), None).status,
        303,
        "B keeps A's key"
    );

    let teacher_cookie = format!("{}; lanchat_host={KEY}", login(&a, "teacher"));
    let mut teacher = Client::connect(&a, &teacher_cookie);
    teacher.opening();
    let bob_cookie = login(&b, "bob");
    assert_eq!(
        post_form(&a, "/login", "name=BOB", None).status,
        409,
        "claimed on B"
    );
    wait_for("B to know A's host", || {
        let (welcome, _, _) = Client::connect(&b, &bob_cookie).opening();
        welcome["hosts"] == json!(["teacher"])
    });
    let mut bob = Client::connect(&b, &bob_cookie);
    bob.opening();

    teacher.send(json!({"type": "mute", "name": "bob", "minutes": 5}));
    bob.recv_type("muted");
    bob.say("hi");
    assert_eq!(bob.recv_type("error")["code"], "muted");
    teacher.send(json!({"type": "mode", "private": false}));
    assert_eq!(bob.recv_type("mode")["private"], false);

    teacher.send(json!({"type": "kick", "name": "bob"}));
    assert_eq!(
        bob.expect_close(),
        tungstenite::protocol::frame::coding::CloseCode::from(4001)
    );
    assert_eq!(
        get(&b, "/", Some(&bob_cookie)).status,
        303,
        "bob's session ended"
    );
    drop((a, b));

    // A restart keeps the mode and the mute.
    let c = Server::start(&["--redis", &redis.url()]);
    let (welcome, _, _) = Client::connect(&c, &login(&c, "late")).opening();
    assert_eq!(welcome["mode"]["private"], false);
    let host = format!("{}; lanchat_host={KEY}", login(&c, "aide"));
    let (welcome, _, _) = Client::connect(&c, &host).opening();
    assert_eq!(welcome["muted"][0]["name"], "bob");
}
