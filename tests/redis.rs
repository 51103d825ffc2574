//! The Redis store, against a real `redis-server` started on a free port:
//! the key layout, the 100-message trim under concurrent appends, inboxes
//! taken once, session TTLs, surviving a restart, and surviving Redis
//! itself going away mid-chat.

mod common;

use common::*;
use serde_json::json;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// An unreachable Redis at start: exit 1, one line that names the URL.
#[test]
fn unreachable_redis_exits_1() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}/");
    let out = Command::new(env!("CARGO_BIN_EXE_lanchat"))
        .args(["--port", "0", "--redis", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&url), "{stderr}");
}

/// 150 messages from five connections at once: the list never holds more
/// than 100, and ends with the last 100 in the order everyone saw.
#[test]
fn history_is_trimmed_to_100_under_concurrent_appends() {
    let redis = RedisServer::start();
    let server = Server::start(&["--redis", &redis.url()]);
    assert_eq!(server.health()["store"], "redis");

    // Watch the list's length while the messages go in.
    let stop = Arc::new(AtomicBool::new(false));
    let longest = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (stop, longest, mut connection) = (stop.clone(), longest.clone(), redis.connection());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let len: usize = redis::cmd("LLEN")
                    .arg("lanchat:history")
                    .query(&mut connection)
                    .unwrap();
                longest.fetch_max(len, Ordering::SeqCst);
            }
        })
    };
    let mut senders: Vec<_> = (0..5)
        .map(|n| Client::join(&server, &format!("s{n}")).0)
        .collect();
    let threads: Vec<_> = senders
        .drain(..)
        .enumerate()
        .map(|(n, mut client)| {
            std::thread::spawn(move || {
                for m in 0..30 {
                    client.say(&format!("{n}-{m}"));
                }
                client
            })
        })
        .collect();
    let mut senders: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let seen: Vec<String> = (0..150)
        .map(|_| {
            senders[0].recv_type("message")["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();

    wait_for("the last message in Redis", || {
        redis.texts("lanchat:history").last() == seen.last()
    });
    stop.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    assert!(
        longest.load(Ordering::SeqCst) <= 100,
        "the list held {}",
        longest.load(Ordering::SeqCst)
    );
    assert_eq!(redis.texts("lanchat:history"), seen[50..]);
}

/// A private message to an offline user is in `lanchat:inbox:<name>`
/// until delivered, then gone; two connections opened at once get it
/// exactly once between them.
#[test]
fn inbox_is_taken_exactly_once() {
    let redis = RedisServer::start();
    let server = Server::start(&["--redis", &redis.url()]);
    let bob_cookie = login(&server, "bob");
    let (mut alice, _) = Client::join(&server, "alice");
    for text in ["one", "two", "three"] {
        alice.send(json!({"type": "private", "to": "bob", "text": text}));
    }
    wait_for("the inbox in Redis", || {
        redis.texts("lanchat:inbox:bob").len() == 3
    });

    let connections: Vec<_> = (0..2)
        .map(|_| {
            let (addr, cookie) = (server.addr, bob_cookie.clone());
            std::thread::spawn(move || {
                let mut bob = Client::connect_to(addr, Some(&cookie), &[]).unwrap();
                bob.recv_type("history");
                let offline = bob.recv();
                (bob, offline["messages"].as_array().unwrap().clone())
            })
        })
        .collect();
    let mut texts: Vec<String> = Vec::new();
    for thread in connections {
        let (_bob, messages) = thread.join().unwrap();
        texts.extend(
            messages
                .iter()
                .map(|m| m["text"].as_str().unwrap().to_string()),
        );
    }
    texts.sort();
    assert_eq!(texts, ["one", "three", "two"]);
    assert_eq!(redis.query::<i64>(&["EXISTS", "lanchat:inbox:bob"]), 0);
}

/// Sessions are stored with a TTL of about 30 days; users in a set.
#[test]
fn sessions_have_a_30_day_ttl() {
    let redis = RedisServer::start();
    let server = Server::start(&["--redis", &redis.url()]);
    let cookie = login(&server, "carol");
    let id = cookie.split("lanchat_session=").nth(1).unwrap();
    let key = format!("lanchat:session:{id}");
    wait_for("the session in Redis", || {
        redis.query::<Option<String>>(&["GET", &key]).is_some()
    });
    assert_eq!(redis.query::<String>(&["GET", &key]), "carol");
    let ttl: i64 = redis.query(&["TTL", &key]);
    assert!((30 * 86_400 - 60..=30 * 86_400).contains(&ttl), "ttl {ttl}");
    assert!(redis.query::<bool>(&["SISMEMBER", "lanchat:users", "carol"]));
    post_form(&server, "/logout", "", Some(&cookie));
    wait_for("the session to be deleted", || {
        redis.query::<i64>(&["EXISTS", &key]) == 0
    });
}

/// Same Redis, new process: same history, inboxes and sessions.
#[test]
fn a_restarted_server_keeps_the_chat() {
    let redis = RedisServer::start();
    let first = Server::start(&["--redis", &redis.url()]);
    let bob_cookie = login(&first, "bob");
    let alice_cookie = login(&first, "alice");
    let mut alice = Client::connect(&first, &alice_cookie);
    alice.say("before the restart");
    alice.send(json!({"type": "private", "to": "bob", "text": "while you were out"}));
    alice.recv_type("private");
    wait_for("the writes to land", || {
        redis.texts("lanchat:history").len() == 1 && redis.texts("lanchat:inbox:bob").len() == 1
    });
    drop(alice);
    drop(first);

    let second = Server::start(&["--redis", &redis.url()]);
    assert_eq!(
        get(&second, "/", Some(&alice_cookie)).status,
        200,
        "the old cookie still logs in"
    );
    let mut bob = Client::connect(&second, &bob_cookie);
    bob.recv_type("welcome");
    assert_eq!(bob.recv()["messages"][0]["text"], "before the restart");
    assert_eq!(bob.recv()["messages"][0]["text"], "while you were out");
}

/// Redis dies mid-chat: live messages keep flowing, `/healthz` says
/// degraded, and once Redis is back the messages from the outage are in
/// the history after the ones from before.
#[test]
fn chat_survives_a_redis_outage() {
    let mut redis = RedisServer::start();
    let server = Server::start(&["--redis", &redis.url()]);
    let (mut alice, _) = Client::join(&server, "alice");
    let bob_cookie = login(&server, "bob");
    let mut bob = Client::connect(&server, &bob_cookie);
    bob.recv_type("offline"); // registered: live messages reach bob from here on
    alice.say("before");
    assert_eq!(bob.recv_type("message")["text"], "before");
    wait_for("the first message in Redis", || {
        redis.texts("lanchat:history") == ["before"]
    });

    redis.kill();
    for n in 0..5 {
        alice.say(&format!("during {n}"));
        assert_eq!(
            bob.recv_type("message")["text"],
            format!("during {n}"),
            "live chat goes on"
        );
    }
    wait_for("healthz to report the outage", || {
        server.health()["status"] == "degraded"
    });
    // Someone already logged in can still reconnect during the outage.
    let mut bob_again = Client::connect(&server, &bob_cookie);
    assert_eq!(bob_again.recv()["type"], "welcome");

    redis.restart();
    wait_for("healthz to recover", || server.health()["status"] == "ok");
    let want = [
        "before", "during 0", "during 1", "during 2", "during 3", "during 4",
    ];
    wait_for("the outage's messages in Redis", || {
        redis.texts("lanchat:history") == want
    });
}

/// A sender's copy means stored: many senders say room and private
/// messages (to someone offline, so they go to the inbox) while the server
/// is SIGKILLed the moment the first copy arrives. Every message whose copy
/// any sender saw is in Redis: history, inbox and both conversations.
/// Repeated, as the moment of the kill varies.
#[test]
fn a_sender_copy_survives_sigkill() {
    let redis = RedisServer::start();
    for round in 0..8 {
        let mut server = Server::start(&["--redis", &redis.url()]);
        let zed = format!("zed{round}");
        login(&server, &zed); // claimed, never connected: private messages are inboxed
        let clients: Vec<Client> = (0..6)
            .map(|n| Client::join(&server, &format!("r{round}s{n}")).0)
            .collect();
        let (seen, seen_rx) = std::sync::mpsc::channel::<(String, String)>();
        let senders: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(n, mut client)| {
                let (seen, zed) = (seen.clone(), zed.clone());
                std::thread::spawn(move || {
                    for k in 0..20 {
                        let text = format!("r{round} s{n} #{k}");
                        let frame = if k % 2 == 0 {
                            json!({"type": "message", "text": text})
                        } else {
                            json!({"type": "private", "to": zed, "text": text})
                        };
                        if client
                            .ws
                            .send(tungstenite::Message::text(frame.to_string()))
                            .is_err()
                        {
                            return;
                        }
                        // Read until our own copy (others' messages pass by).
                        loop {
                            let Ok(tungstenite::Message::Text(raw)) = client.ws.read() else {
                                return; // the server is gone
                            };
                            let frame: serde_json::Value = serde_json::from_str(&raw).unwrap();
                            if frame["text"] == text.as_str() {
                                let kind = frame["type"].as_str().unwrap().to_string();
                                let _ = seen.send((kind, text.clone()));
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        drop(seen);
        // Kill the moment the first copies arrive (a few, after the first).
        let first = seen_rx.recv_timeout(TIMEOUT).expect("a first copy");
        let mut copies = vec![first];
        while let Ok(copy) = seen_rx.try_recv() {
            copies.push(copy);
        }
        server.child.kill().unwrap();
        for sender in senders {
            sender.join().unwrap();
        }
        copies.extend(seen_rx.try_iter());

        let history = redis.texts("lanchat:history");
        let inbox = redis.texts(&format!("lanchat:inbox:{zed}"));
        let zed = redis.texts(&format!("lanchat:conversation:{zed}"));
        for (kind, text) in &copies {
            if kind == "message" {
                assert!(
                    history.contains(text),
                    "round {round}: {text} not in the history"
                );
            } else {
                assert!(
                    inbox.contains(text),
                    "round {round}: {text} not in the inbox"
                );
                assert!(
                    zed.contains(text),
                    "round {round}: {text} not in the conversation"
                );
            }
        }
    }
}

/// With Redis, a restart keeps the order of seqs going, the private
/// conversations, and deletions.
#[test]
fn seqs_conversations_and_deletions_survive_a_restart() {
    let redis = RedisServer::start();
    let first = Server::start(&["--redis", &redis.url()]);
    let (mut alice, _) = Client::join(&first, "alice");
    let bob_cookie = login(&first, "bob");
    alice.say("keep me");
    alice.say("delete me");
    alice.recv_type("message");
    let doomed = alice.recv_type("message");
    alice.send(json!({"type": "delete", "id": doomed["id"]}));
    alice.recv_type("deleted");
    alice.send(json!({"type": "private", "to": "bob", "text": "psst"}));
    let psst = alice.recv_type("private");
    drop(alice);
    drop(first);

    let second = Server::start(&["--redis", &redis.url()]);
    let mut bob = Client::connect(&second, &bob_cookie);
    let (_, history, offline) = bob.opening();
    let texts: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["keep me"]);
    assert_eq!(offline["messages"][0]["text"], "psst");
    assert_eq!(offline["messages"][0]["seq"], psst["seq"]);
    bob.send(json!({"type": "private", "to": "alice", "text": "back"}));
    let back = bob.recv_type("private");
    assert!(back["seq"].as_u64() > psst["seq"].as_u64(), "seqs go on");
    drop(bob);
    let (_, history, _) = Client::connect(&second, &bob_cookie).opening();
    let private: Vec<&str> = history["private"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(private, ["psst", "back"]);
}

/// A private message inboxed during an outage waits in memory; when Redis
/// is back, the writer sends it while the recipient takes its inbox. With
/// the writer stopped (a store hook) between reading what is pending and
/// writing it, the message is still taken exactly once.
#[test]
fn an_inbox_flushed_while_taken_is_taken_once() {
    use lanchat::protocol::PrivateMessage;
    use lanchat::store::{RedisStore, Store, Write};
    let mut redis = RedisServer::start();
    let store = std::sync::Arc::new(RedisStore::connect(&redis.url()).unwrap());
    redis.kill();
    let message = PrivateMessage {
        id: "0b9e0d5e-4c59-4a0e-9b4e-8f7b8a1c2d3e".into(),
        seq: 0,
        from: "alice".into(),
        to: "bob".into(),
        text: "psst".into(),
        ts: 1,
        file: None,
    };
    store.commit(&mut [Write::Private {
        message,
        inboxed: true,
    }]);
    assert!(!store.healthy(), "kept pending");

    let (paused, writer_paused) = std::sync::mpsc::channel();
    let (resume, writer_resume) = std::sync::mpsc::channel();
    store.pause_writer(paused, writer_resume);
    redis.restart();
    writer_paused
        .recv_timeout(TIMEOUT)
        .expect("the writer read what is pending");
    // Bob takes his inbox while the writer holds the message.
    let taking = {
        let store = store.clone();
        std::thread::spawn(move || store.take_inbox("bob"))
    };
    // Time for a take that did not wait for the writer to finish (the bug
    // this guards against) to take the message from memory.
    let _ = taking_finished_within(&taking, std::time::Duration::from_millis(300));
    resume.send(()).unwrap();
    let mut taken = taking.join().unwrap().len();
    wait_for("the writer to finish", || store.healthy());
    taken += store.take_inbox("bob").len();
    assert_eq!(taken, 1, "psst taken exactly once");
}

/// Whether `thread` ends within `limit` (polled; it is not joined).
fn taking_finished_within<T>(
    thread: &std::thread::JoinHandle<T>,
    limit: std::time::Duration,
) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if thread.is_finished() {
            return true;
        }
        std::thread::yield_now();
    }
    false
}

/// A burst of requests that all read Redis at once opens a connection
/// each; afterwards at most 16 (`MAX_IDLE_READERS`) stay open for reuse,
/// the rest are closed. (A busy script holds Redis for 400 ms, well under
/// the 1 s that counts as an outage, so that 60 requests overlap.)
#[test]
fn a_burst_leaves_a_bounded_pool_of_connections() {
    let redis = RedisServer::start();
    let server = Server::start(&["--redis", &redis.url()]);
    let cookie = login(&server, "reader");
    let clients = || -> usize {
        let list: String = redis.query(&["CLIENT", "LIST"]);
        list.lines().count() - 1 // this query's own connection
    };
    let before = clients();
    let addr = server.addr;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let busy = "local t = redis.call('TIME') \
                        local stop = t[1] * 1000000 + t[2] + 400000 \
                        repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= stop";
            let _: () = redis.query(&["EVAL", busy, "0"]);
        });
        wait_for("the script to hold Redis", || {
            use std::io::{Read, Write};
            let mut probe = std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
            let wait = std::time::Duration::from_millis(50);
            probe.set_read_timeout(Some(wait)).unwrap();
            probe.write_all(b"PING\r\n").unwrap();
            probe.read(&mut [0; 16]).is_err() // no answer: busy
        });
        let requests: Vec<_> = (0..60)
            .map(|_| {
                let cookie = cookie.clone();
                scope.spawn(move || {
                    let request =
                        format!("GET / HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\r\n");
                    raw_http_at(addr, request.as_bytes()).status
                })
            })
            .collect();
        for request in requests {
            assert_eq!(request.join().unwrap(), 200);
        }
    });
    wait_for("the extra connections to close", || {
        clients() <= before + 16
    });
    println!(
        "Redis clients: {before} before the burst, {} after",
        clients()
    );
}
