//! A thread-per-connection server's known failure modes, each shown handled:
//! connection churn with resets, slow HTTP clients, the connection cap, and
//! a graceful shutdown on SIGTERM.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;

/// Taken by the tests of this file that flood the machine or measure time
/// or memory, so that they run one at a time: the tests of a file run in
/// parallel, and one test's flood (12,000 logouts, 6,000 long messages)
/// would stretch another's round trips on a loaded 2-core machine.
fn alone() -> std::sync::MutexGuard<'static, ()> {
    static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ALONE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// 1,000 connect/disconnect cycles, many cut off with a TCP reset at every
/// stage, leave the registry, the online list and the thread count where
/// they started.
#[test]
fn churn_leaves_nothing_behind() {
    let _alone = alone();
    let server = Server::start(&[]);
    let (_watcher, _) = Client::join(&server, "watcher");
    let baseline = server.threads();

    let workers: Vec<_> = (0..4)
        .map(|w| {
            // A login per worker: a session's upgrades are rate-limited.
            let (addr, cookie) = (server.addr, login(&server, &format!("churner{w}")));
            std::thread::spawn(move || {
                for n in 0..250 {
                    match (w * 250 + n) % 4 {
                        // A WebSocket closed politely.
                        0 => {
                            let mut client = Client::connect_to(addr, Some(&cookie), &[]).unwrap();
                            client.recv_type("offline");
                            client.ws.close(None).unwrap();
                            client.expect_close_or_end();
                        }
                        // A WebSocket cut off with a reset.
                        1 => {
                            let client = Client::connect_to(addr, Some(&cookie), &[]).unwrap();
                            reset(client.ws.get_ref());
                        }
                        // Half a request head, then a reset.
                        2 => {
                            let mut socket = TcpStream::connect(addr).unwrap();
                            socket
                                .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nCookie: ")
                                .unwrap();
                            reset(&socket);
                        }
                        // Connect and leave without a word.
                        _ => drop(TcpStream::connect(addr).unwrap()),
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    wait_for("the churner to leave", || {
        server.health()["connections"] == 1
    });
    assert_eq!(server.health()["users"], 1, "only the watcher is online");
    wait_for("the thread count to come back", || {
        server.threads() == baseline
    });
}

/// Closes a socket with a TCP reset (SO_LINGER 0) instead of a FIN.
fn reset(socket: &TcpStream) {
    socket2::SockRef::from(socket)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    let _ = socket.shutdown(std::net::Shutdown::Both);
}

/// Beyond `--max-connections`, connections get `503` and are closed; when
/// one closes, there is room again.
#[test]
fn connection_cap_answers_503() {
    let server = Server::start(&["--max-connections", "3"]);
    let held: Vec<_> = (0..3)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    wait_for("the cap to be reached", || {
        get(&server, "/healthz", None).status == 503
    });
    drop(held);
    wait_for("room again", || {
        get(&server, "/healthz", None).status == 200
    });
}

/// A request head still incomplete after 10 seconds is closed (slowloris).
#[test]
fn slow_request_heads_are_cut_off() {
    let server = Server::start(&[]);
    let mut socket = TcpStream::connect(server.addr).unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    let started = Instant::now();
    socket.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    // Trickle a byte now and then, as slowloris does: it must not help.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(2)); // the client's pace, not synchronization
        socket.write_all(b"X").unwrap();
    }
    let mut rest = Vec::new();
    let _ = socket.read_to_end(&mut rest); // EOF (or a reset) when the server gives up
    let waited = started.elapsed();
    assert!(rest.is_empty(), "no answer to a request that never ended");
    assert!(waited >= Duration::from_secs(9), "closed after {waited:?}");
    assert!(waited < Duration::from_secs(18), "closed after {waited:?}");
}

/// SIGTERM: every client gets close code 1001 (and nothing after it), and
/// the process exits 0 within 5 seconds, after writing what the store had
/// pending.
#[test]
fn sigterm_closes_everyone_with_1001_and_exits_0() {
    let redis = RedisServer::start();
    let mut server = Server::start(&["--redis", &redis.url()]);
    let (mut alice, _) = Client::join(&server, "alice");
    let (mut bob, _) = Client::join(&server, "bob");
    alice.say("last words");
    bob.recv_type("message");

    // More people online, so that every close is followed by others
    // leaving: nothing may reach a client after its close frame.
    let mut others: Vec<Client> = (0..6)
        .map(|n| Client::join(&server, &format!("p{n}")).0)
        .collect();

    server.signal("TERM");
    for client in [&mut alice, &mut bob].into_iter().chain(others.iter_mut()) {
        assert_eq!(client.expect_close(), CloseCode::Away);
        client.expect_clean_end();
    }
    let (code, took) = server.wait_exit();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(
        redis.texts("lanchat:history"),
        ["last words"],
        "pending writes were saved"
    );
}

/// One client address cannot take every slot: idle sockets from it stop
/// at --max-per-address (503), while another address still gets in.
#[test]
fn connections_are_capped_per_address() {
    let server = Server::start(&["--max-per-address", "5"]);
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(TcpStream::connect(server.addr).unwrap());
    }
    wait_for("the five to be counted", || {
        // A sixth from the same address is refused at once.
        let mut sixth = TcpStream::connect(server.addr).unwrap();
        sixth.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut answer = String::new();
        let _ = sixth.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 503")
    });
    // 127.0.0.2 is another client address on the loopback.
    let other = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    other
        .bind(
            &"127.0.0.2:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    other.connect(&server.addr.into()).unwrap();
    let mut other: TcpStream = other.into();
    other.set_read_timeout(Some(TIMEOUT)).unwrap();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    other.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = other.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(idle);
}

/// A login flood from one address gets 429 past --max-per-address new
/// sessions a minute, and a real user's session lives on.
#[test]
fn a_login_flood_is_refused_and_spares_real_users() {
    let server = Server::start(&["--max-per-address", "20"]);
    let real = login(&server, "teacher");
    let statuses: Vec<u16> = (0..40)
        .map(|n| post_form(&server, "/login", &format!("name=flood{n}"), None).status)
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(
        get(&server, "/", Some(&real)).status,
        200,
        "the real session lives"
    );
}

/// Only this server's names are answered: a foreign Host gets 421 (DNS
/// rebinding), none gets 400, and --allow-host adds one.
#[test]
fn foreign_host_names_get_421() {
    let server = Server::start(&["--allow-host", "chat.school.example"]);
    let ask = |host: Option<&str>| {
        let host = host.map(|h| format!("Host: {h}\r\n")).unwrap_or_default();
        raw_http(
            &server,
            format!("GET /login HTTP/1.1\r\n{host}\r\n").as_bytes(),
        )
        .status
    };
    assert_eq!(ask(Some("evil.example")), 421);
    assert_eq!(
        ask(Some(&format!("evil.example:{}", server.addr.port()))),
        421
    );
    assert_eq!(ask(None), 400);
    assert_eq!(ask(Some("chat.school.example")), 200);
    assert_eq!(ask(Some(&format!("localhost:{}", server.addr.port()))), 200);
    // A WebSocket too.
    let request = "GET /ws HTTP/1.1\r\nHost: evil.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    assert_eq!(raw_http(&server, request.as_bytes()).status, 421);
}

/// Strict HTTP: one way to say a body's length (request smuggling).
#[test]
fn ambiguous_lengths_are_400() {
    let server = Server::start(&[]);
    let host = server.addr;
    for head in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: +5\r\n",
    ] {
        let request = format!("POST /login HTTP/1.1\r\nHost: {host}\r\n{head}\r\nname=a");
        assert_eq!(
            raw_http(&server, request.as_bytes()).status,
            400,
            "{head:?}"
        );
    }
}

/// The heartbeat counts whole frames: a client trickling one byte of a
/// frame that never ends is closed within 3 heartbeats, like a silent one.
#[test]
fn a_trickled_frame_does_not_dodge_the_heartbeat() {
    let _alone = alone();
    let server = Server::start(&["--heartbeat", "0.5"]);
    let cookie = login(&server, "trickle");
    let client = Client::connect(&server, &cookie);
    let mut socket = client.ws.into_inner();
    wait_for("online", || server.health()["users"] == 1);
    // A masked text frame header announcing 64 KiB, then a byte at a time.
    socket
        .write_all(&[0x81, 0xFE, 0xFF, 0xFF, 1, 2, 3, 4])
        .unwrap();
    let started = std::time::Instant::now();
    while server.health()["users"] == 1 {
        let _ = socket.write_all(b"x");
        assert!(started.elapsed() < Duration::from_secs(10), "never closed");
        std::thread::sleep(Duration::from_millis(200)); // the trickle's pace
    }
    assert!(
        started.elapsed() <= Duration::from_millis(1500 + 1000),
        "{:?}",
        started.elapsed()
    );
}

/// The message rate is per name: 30 connections of one session together
/// are held to it (a burst of 40, then 20 a second).
#[test]
fn the_rate_is_per_name_not_per_connection() {
    let _alone = alone();
    let server = Server::start(&[]);
    let cookie = login(&server, "many");
    let mut clients: Vec<Client> = (0..30).map(|_| Client::connect(&server, &cookie)).collect();
    for client in &mut clients {
        client.opening();
    }
    let started = Instant::now();
    // 3 frames each: 90 in all, at once, against a burst of 40.
    for (i, client) in clients.iter_mut().enumerate() {
        for n in 0..3 {
            client.say(&format!("{i}-{n}"));
        }
    }
    // Each client: the answer to each of its frames is its own copy or an
    // error (errors go only to the connection that caused them).
    let (mut accepted, mut limited) = (0, 0);
    for (i, client) in clients.iter_mut().enumerate() {
        let mut answered = 0;
        while answered < 3 {
            let frame = client.recv_skipping_presence();
            if frame["type"] == "error" {
                assert_eq!(frame["code"], "rate_limited");
                limited += 1;
                answered += 1;
            } else if frame["text"]
                .as_str()
                .is_some_and(|t| t.starts_with(&format!("{i}-")))
            {
                accepted += 1;
                answered += 1;
            }
        }
    }
    let refill = (started.elapsed().as_secs_f64() * 20.0).ceil() as usize;
    assert!(limited > 0, "some were rate_limited");
    assert!(
        accepted <= 40 + refill,
        "{accepted} accepted: more than the name's rate"
    );
}

/// A reconnect loop with a large history (100 messages of 4,000
/// characters) does not stall anyone: another user's round trips stay under
/// a second, and a legitimate login gets in.
#[test]
fn a_reconnect_loop_with_a_large_history_stalls_nobody() {
    let _alone = alone();
    let server = Server::start(&[]);
    let mut senders: Vec<Client> = (0..4)
        .map(|n| Client::join(&server, &format!("w{n}")).0)
        .collect();
    for n in 0..100 {
        let sender = &mut senders[n % 4];
        sender.say(&format!("{n}{}", "é".repeat(3990)));
        sender.recv_type("message");
    }
    let looper = login(&server, "looper");
    let addr = server.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let looping = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline && !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(client) = Client::connect_to(addr, Some(&looper), &[]) {
                    reset(client.ws.get_ref());
                }
            }
        })
    };
    let (mut alice, _) = Client::join(&server, "alice");
    let mut slowest = Duration::ZERO;
    for n in 0..20 {
        let sent = Instant::now();
        alice.say(&format!("ping {n}"));
        loop {
            if alice.recv_type("message")["text"] == format!("ping {n}") {
                break;
            }
        }
        slowest = slowest.max(sent.elapsed());
    }
    assert_eq!(
        post_form(&server, "/login", "name=latecomer", None).status,
        303
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    looping.join().unwrap();
    assert!(
        slowest < Duration::from_secs(1),
        "a round trip took {slowest:?}"
    );
}

/// Sends `count` requests built by `request(n)` from `workers` threads, each
/// on its own connection, and reads every answer; bounded by [`TIMEOUT`]
/// per request and by `count`. Returns how many got each status.
fn hammer(
    server: &Server,
    count: usize,
    workers: usize,
    request: impl Fn(usize) -> Vec<u8> + Sync,
) -> std::collections::BTreeMap<u16, usize> {
    let statuses = std::sync::Mutex::new(std::collections::BTreeMap::new());
    let addr = server.addr;
    std::thread::scope(|scope| {
        for w in 0..workers {
            let (statuses, request) = (&statuses, &request);
            scope.spawn(move || {
                for n in (w..count).step_by(workers) {
                    let status = raw_http_at(addr, &request(n)).status;
                    *statuses.lock().unwrap().entry(status).or_insert(0) += 1;
                }
            });
        }
    });
    statuses.into_inner().unwrap()
}

/// `POST /logout` with a made-up session id: half shaped like ours (a
/// uuid), half 4 KiB of junk.
fn bogus_logout(addr: std::net::SocketAddr, n: usize) -> Vec<u8> {
    let id = if n.is_multiple_of(2) {
        format!("{:08x}-0000-4000-8000-{:012x}", n, n * 7919)
    } else {
        format!("{n}{}", "x".repeat(4096))
    };
    format!(
        "POST /logout HTTP/1.1\r\nHost: {addr}\r\nCookie: lanchat_session={id}\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// 12,000 logouts of sessions that never were leave the server's memory
/// where it was (after a warm-up that lets the allocator and the thread
/// stack cache reach their working size): nothing keeps what a stranger
/// makes up.
fn bogus_logouts_leave_memory_flat(server: &Server, real: &str) {
    let addr = server.addr;
    let warm_up = hammer(server, 3_000, 4, |n| bogus_logout(addr, n));
    assert_eq!(warm_up.get(&303), Some(&3_000), "{warm_up:?}");
    let before = server.rss_kib();
    let started = Instant::now();
    let statuses = hammer(server, 12_000, 4, |n| bogus_logout(addr, 3_000 + n));
    let after = server.rss_kib();
    println!(
        "12,000 bogus logouts in {:.1?}: RSS {before} -> {after} KiB",
        started.elapsed()
    );
    assert_eq!(statuses.get(&303), Some(&12_000), "{statuses:?}");
    assert!(
        after <= before + 4 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
    assert_eq!(
        get(server, "/", Some(real)).status,
        200,
        "the real session lives"
    );
}

#[test]
fn bogus_logouts_leave_memory_flat_memory_store() {
    let _alone = alone();
    let server = Server::start(&[]);
    bogus_logouts_leave_memory_flat(&server, &login(&server, "teacher"));
}

#[test]
fn bogus_logouts_leave_memory_flat_redis_store() {
    let _alone = alone();
    let redis = RedisServer::start();
    let server = Server::start(&["--redis", &redis.url()]);
    bogus_logouts_leave_memory_flat(&server, &login(&server, "teacher"));
}

/// The same while Redis is down, when a logout cannot be checked and is
/// kept to be written later: what is kept is bounded, and small.
#[test]
fn bogus_logouts_during_a_redis_outage_leave_memory_flat() {
    let _alone = alone();
    let mut redis = RedisServer::start();
    let server = Server::start(&["--redis", &redis.url()]);
    let real = login(&server, "teacher");
    redis.kill();
    wait_for("the outage to be noticed", || {
        get(&server, "/", Some(&real)); // a store read finds Redis gone
        server.health()["status"] == "degraded"
    });
    bogus_logouts_leave_memory_flat(&server, &real);
}

/// Private messages of 4,000 characters to 300 throw-away names (claimed
/// by logins nobody connects with): 96 MB if all were kept, but the memory
/// store keeps at most `MAX_PRIVATE_BYTES` (16 MiB) of them (RSS may grow
/// by that, and what the allocator keeps: 32 MiB in all), and what goes
/// first is theirs: a message waiting for a real user who connected before
/// is still there.
#[test]
fn private_messages_to_throwaway_names_are_bounded() {
    let _alone = alone();
    let server = Server::start(&[]);
    // The teacher connected once, and is away when a pupil writes.
    let teacher = login(&server, "teacher");
    let mut client = Client::connect(&server, &teacher);
    client.opening();
    client.ws.close(None).unwrap();
    client.expect_close_or_end();
    let (mut pupil, _) = Client::join(&server, "pupil");
    wait_for("the teacher to be away", || server.health()["users"] == 1);
    pupil.send(serde_json::json!({"type": "private", "to": "teacher", "text": "a question"}));
    pupil.recv_type("private");
    drop(pupil);

    let throwaway = 300;
    for n in 0..throwaway {
        login(&server, &format!("throwaway{n}"));
    }
    let spammers: Vec<Client> = (0..20)
        .map(|n| Client::join(&server, &format!("spammer{n}")).0)
        .collect();
    let before = server.rss_kib();
    let started = Instant::now();
    let long = "é".repeat(4_000);
    std::thread::scope(|scope| {
        for (w, mut spammer) in spammers.into_iter().enumerate() {
            let long = &long;
            scope.spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(90);
                for n in 0..throwaway {
                    let to = format!("throwaway{}", (w * 7 + n) % throwaway);
                    let frame = serde_json::json!({"type": "private", "to": to, "text": long});
                    loop {
                        assert!(Instant::now() < deadline, "spammer {w} stuck at {n}");
                        spammer.send(frame.clone());
                        let answer = spammer.recv_skipping_presence();
                        if answer["type"] == "private" {
                            break;
                        }
                        assert_eq!(answer["code"], "rate_limited", "{answer}");
                        std::thread::sleep(Duration::from_millis(100)); // the rate's pace
                    }
                }
            });
        }
    });
    let after = server.rss_kib();
    println!(
        "{} private messages of 8 KB in {:.1?}: RSS {before} -> {after} KiB",
        20 * throwaway,
        started.elapsed()
    );
    assert!(
        after <= before + 32 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
    let mut teacher = Client::connect(&server, &teacher);
    let (_, _, offline) = teacher.opening();
    assert_eq!(offline["messages"][0]["text"], "a question");
}

/// A flood of refused connections (503 past the per-address cap) and
/// requests (421, a foreign Host) is logged as a summary, not a line each:
/// 2,000 refusals, at most one line per 10 seconds (and the first).
#[test]
fn refusals_are_logged_as_a_summary() {
    let _alone = alone();
    let server = Server::start(&["--max-per-address", "4"]);
    let started = Instant::now();
    let held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    let addr = server.addr;
    let refused = |request: &[u8]| {
        let mut socket = TcpStream::connect(addr).unwrap();
        socket.set_read_timeout(Some(TIMEOUT)).unwrap();
        let _ = socket.write_all(request);
        let mut answer = String::new();
        let _ = socket.read_to_string(&mut answer); // a reset after the 503 is fine
        answer
    };
    wait_for("the cap to be reached", || {
        refused(b"").starts_with("HTTP/1.1 503")
    });
    for _ in 0..1_000 {
        refused(b"");
    }
    drop(held);
    let foreign = b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n";
    wait_for("room again", || {
        refused(foreign).starts_with("HTTP/1.1 421")
    });
    for _ in 0..1_000 {
        refused(foreign);
    }
    let lines = server
        .log()
        .lines()
        .filter(|line| line.contains("refused"))
        .count();
    let most = 2 + started.elapsed().as_secs() as usize / 10;
    assert!(
        (1..=most).contains(&lines),
        "{lines} log lines about refusals, expected 1 to {most}"
    );
}
