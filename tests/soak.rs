//! `make soak`: churn and chat for a while (bounded: at most `SOAK_ROUNDS`
//! rounds and `SOAK_SECONDS` seconds), then check that the server's threads
//! and memory come back to where they started; then the same length of
//! abuse (floods, churn, bogus logouts, reconnect loops) next to a few real
//! users, with the memory store and with Redis, printing the real users'
//! round trips and checking that memory stays within the stores' bounds.
//! Not part of `make test`.

mod common;

use common::*;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[test]
#[ignore = "long-running: `make soak`"]
fn soak_churn_and_chat() {
    let rounds = setting("SOAK_ROUNDS", 200);
    let seconds = setting("SOAK_SECONDS", 60);
    let clients = 40;
    let server = Server::start(&["--log-level", "warn"]);
    let (mut watcher, _) = Client::join(&server, "watcher");
    let (start_threads, start_rss) = (server.threads(), server.rss_kib());
    println!("start: {start_threads} threads, {start_rss} KiB RSS");

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut done = 0;
    // Each person's cookie: kept from round to round (they come back), or
    // none after they logged out (they log in again; a name stays in use
    // while a session of it lives).
    let mut cookies: Vec<Option<String>> = vec![None; clients];
    while done < rounds && Instant::now() < deadline {
        let mut group: Vec<Client> = (0..clients)
            .map(|n| {
                let cookie = cookies[n].get_or_insert_with(|| login(&server, &format!("c{n}")));
                let mut client = Client::connect(&server, cookie);
                client.opening();
                client
            })
            .collect();
        for (n, client) in group.iter_mut().enumerate() {
            client.say(&format!("round {done} from {n}"));
        }
        // The watcher sees every message of the round before the group leaves.
        let mut seen = 0;
        while seen < clients {
            if watcher.recv()["type"] == "message" {
                seen += 1;
            }
        }
        for (n, client) in group.into_iter().enumerate() {
            if n % 2 == 0 {
                socket2::SockRef::from(client.ws.get_ref())
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
            }
            drop(client);
        }
        // Every third logs out.
        for cookie in cookies.iter_mut().step_by(3) {
            let logout = post_form(&server, "/logout", "", cookie.as_deref());
            assert_eq!(logout.status, 303);
            *cookie = None;
        }
        wait_for("the round's clients to leave", || {
            server.health()["users"] == 1
        });
        done += 1;
    }
    wait_for("threads to come back", || server.threads() == start_threads);
    let (end_threads, end_rss) = (server.threads(), server.rss_kib());
    println!(
        "end after {done} rounds of {clients} clients: {end_threads} threads, {end_rss} KiB RSS"
    );
    assert!(done > 0);
    // Expected growth: what the allocator keeps of freed memory for reuse
    // (sessions that log out are gone; the others are reused). More would
    // be a leak.
    assert!(
        end_rss <= start_rss + 16 * 1024,
        "RSS grew from {start_rss} to {end_rss} KiB"
    );
}

#[test]
#[ignore = "long-running: `make soak`"]
fn soak_abuse_next_to_real_users_memory_store() {
    // What the memory store may keep: 100,000 sessions (under 1 KiB each,
    // with their claims), 16 MiB of private messages, and what the
    // allocator keeps for reuse.
    let most_growth_mib = 100 + 16 + 32;
    let server = Server::start(&["--log-level", "warn"]);
    abuse_next_to_real_users(&server, most_growth_mib);
}

#[test]
#[ignore = "long-running: `make soak`"]
fn soak_abuse_next_to_real_users_redis_store() {
    // What the Redis store may keep here: 10,000 cached sessions, 16 idle
    // connections, and what the allocator keeps for reuse.
    let most_growth_mib = 10 + 32;
    let redis = RedisServer::start();
    let server = Server::start(&["--log-level", "warn", "--redis", &redis.url()]);
    abuse_next_to_real_users(&server, most_growth_mib);
}

/// Most requests of each abusive kind, whatever the time: every loop is
/// bounded in count as well as by `SOAK_SECONDS`. The login flood's is past
/// the memory store's 100,000 sessions, so that it has to evict.
const FLOOD_LOGINS: usize = 120_000;
const FLOODERS: usize = 4;
const MOST_OF_THE_REST: usize = 200_000;

/// Real users chat (a round trip each 200 ms) while, from the same address
/// (as behind a proxy: `--max-per-address 0`, the harness's default), others
/// flood logins, churn connections, log out sessions that never were, loop
/// on reconnecting, flood the room and write to throw-away names. The real
/// users' round trips are printed; at the end their sessions still work,
/// and the threads come back.
fn abuse_next_to_real_users(server: &Server, most_growth_mib: usize) {
    let seconds = setting("SOAK_SECONDS", 60);
    let addr = server.addr;
    let real_cookies: Vec<String> = (0..5).map(|n| login(server, &format!("real{n}"))).collect();
    let mut real: Vec<Client> = real_cookies
        .iter()
        .map(|cookie| {
            let mut client = Client::connect(server, cookie);
            client.opening();
            client
        })
        .collect();
    let throwaway: Vec<String> = (0..200).map(|n| format!("throwaway{n}")).collect();
    for name in &throwaway {
        login(server, name);
    }
    let (mut flooder, _) = Client::join(server, "flooder");
    let (mut whisperer, _) = Client::join(server, "whisperer");
    let looper = login(server, "looper");
    let (start_threads, start_rss) = (server.threads(), server.rss_kib());
    println!(
        "abuse, {}: start: {start_threads} threads, {start_rss} KiB RSS",
        server.health()["store"]
    );

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let done = |count: usize, most: usize| count >= most || Instant::now() >= deadline;
    let counts: [AtomicUsize; 6] = Default::default();
    let round_trips = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        // Anonymous logins, never used.
        for w in 0..FLOODERS {
            let count = &counts[0];
            scope.spawn(move || {
                let mut n = w;
                while !done(n, FLOOD_LOGINS) {
                    let form = format!("name=f{n}");
                    let _ = http_at(addr, "POST", "/login", &[], &form);
                    count.fetch_add(1, Ordering::Relaxed);
                    n += FLOODERS;
                }
            });
        }
        // Churn: half a request head then a reset, or a connection dropped.
        scope.spawn(|| {
            let mut n = 0;
            while !done(n, MOST_OF_THE_REST) {
                if let Ok(mut socket) = TcpStream::connect(addr)
                    && n % 2 == 0
                {
                    let _ = socket.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nCookie: ");
                    let _ = socket2::SockRef::from(&socket).set_linger(Some(Duration::ZERO));
                }
                n += 1;
                counts[1].fetch_add(1, Ordering::Relaxed);
            }
        });
        // Logouts of sessions that never were.
        scope.spawn(|| {
            let mut n = 0;
            while !done(n, MOST_OF_THE_REST) {
                let cookie = format!("lanchat_session={:08x}-0000-4000-8000-{n:012x}", n);
                let _ = http_at(addr, "POST", "/logout", &[("Cookie", &cookie)], "");
                n += 1;
                counts[2].fetch_add(1, Ordering::Relaxed);
            }
        });
        // A reconnect loop: WebSockets opened and reset (429 past its rate).
        scope.spawn(|| {
            let mut n = 0;
            while !done(n, MOST_OF_THE_REST) {
                let request = format!(
                    "GET /ws HTTP/1.1\r\nHost: {addr}\r\nCookie: {looper}\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
                );
                if let Ok(mut socket) = TcpStream::connect(addr) {
                    let _ = socket.set_read_timeout(Some(TIMEOUT));
                    let _ = socket.write_all(request.as_bytes());
                    let mut answer = [0u8; 12]; // "HTTP/1.1 101", or 429 past its rate
                    let _ = std::io::Read::read_exact(&mut socket, &mut answer);
                    let _ = socket2::SockRef::from(&socket).set_linger(Some(Duration::ZERO));
                }
                n += 1;
                counts[3].fetch_add(1, Ordering::Relaxed);
            }
        });
        // A room flood at the name's rate, and long private messages to
        // throw-away names; both read what comes back, so they stay connected.
        scope.spawn(|| {
            let mut n = 0;
            while !done(n, MOST_OF_THE_REST) {
                flooder.say(&format!("flood {n} {}", "x".repeat(400)));
                pace_on_rate_limit(&mut flooder, "message");
                n += 1;
                counts[4].fetch_add(1, Ordering::Relaxed);
            }
        });
        scope.spawn(|| {
            let long = "é".repeat(4_000);
            let mut n = 0;
            while !done(n, MOST_OF_THE_REST) {
                let to = &throwaway[n % throwaway.len()];
                whisperer.send(serde_json::json!({"type": "private", "to": to, "text": long}));
                pace_on_rate_limit(&mut whisperer, "private");
                n += 1;
                counts[5].fetch_add(1, Ordering::Relaxed);
            }
        });
        // The real users: a round trip each 200 ms.
        for (r, client) in real.iter_mut().enumerate() {
            let round_trips = &round_trips;
            scope.spawn(move || {
                let mut n = 0;
                while !done(n, MOST_OF_THE_REST) {
                    let text = format!("real{r} {n}");
                    let sent = Instant::now();
                    client.say(&text);
                    while client.recv_type("message")["text"] != text.as_str() {}
                    round_trips.lock().unwrap().push(sent.elapsed());
                    std::thread::sleep(Duration::from_millis(200)); // a person's pace
                    n += 1;
                }
            });
        }
    });
    let [logins, churn, logouts, loops, floods, whispers] = counts.map(|c| c.into_inner());
    println!(
        "abuse for {seconds} s: {logins} flood logins, {churn} churned connections, \
         {logouts} bogus logouts, {loops} reconnects, {floods} room floods, {whispers} private to throw-away names"
    );
    let mut trips = round_trips.into_inner().unwrap();
    trips.sort();
    let at = |q: f64| trips[((trips.len() - 1) as f64 * q) as usize];
    println!(
        "real users: {} round trips, p50 {:.1?}, p99 {:.1?}, max {:.1?}",
        trips.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    let evictions = server
        .log()
        .lines()
        .filter(|line| line.contains("memory store full"))
        .count();
    println!("lines saying the memory store ended sessions to make room: {evictions}");
    for cookie in &real_cookies {
        assert_eq!(
            get(server, "/", Some(cookie)).status,
            200,
            "a real session lives on"
        );
    }
    drop(real);
    drop(flooder);
    drop(whisperer);
    wait_for("threads to come back", || server.threads() <= start_threads);
    let (end_threads, end_rss) = (server.threads(), server.rss_kib());
    println!("abuse: end: {end_threads} threads, {end_rss} KiB RSS");
    assert!(
        at(0.99) < Duration::from_secs(2),
        "real users waited {:?}",
        at(0.99)
    );
    assert!(
        end_rss <= start_rss + most_growth_mib * 1024,
        "RSS grew from {start_rss} to {end_rss} KiB"
    );
}

/// Reads until the copy of what was just sent (`kind`) or an error: past
/// the rate, it waits a little, as a client held to it would; a throw-away
/// name may be gone (`unknown_user`: its session was never used, and made
/// room for the login flood's, its claim with it).
fn pace_on_rate_limit(client: &mut Client, kind: &str) {
    loop {
        let frame = client.recv_skipping_presence();
        if frame["type"] == kind
            && !frame["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("real"))
        {
            return;
        }
        if frame["type"] == "error" {
            if frame["code"] == "rate_limited" {
                std::thread::sleep(Duration::from_millis(50));
            } else {
                assert_eq!(frame["code"], "unknown_user", "{frame}");
            }
            return;
        }
    }
}

/// One HTTP request on its own connection, without a `Server` (for
/// threads): its status, or 0 when it got none (a soak goes on).
fn http_at(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> u16 {
    let headers: String = headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let Ok(mut socket) = TcpStream::connect(addr) else {
        return 0;
    };
    let _ = socket.set_read_timeout(Some(TIMEOUT));
    let _ = socket.write_all(request.as_bytes());
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut socket, &mut answer);
    let status = answer.get(9..12).and_then(|s| std::str::from_utf8(s).ok());
    status.and_then(|s| s.parse().ok()).unwrap_or(0)
}
