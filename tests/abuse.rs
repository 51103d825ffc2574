//! A thread-per-connection server's known failure modes, each shown handled:
//! connection churn with resets, slow HTTP clients, the connection cap, and
//! a graceful shutdown on SIGTERM.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;

/// 1,000 connect/disconnect cycles, many cut off with a TCP reset at every
/// stage, leave the registry, the online list and the thread count where
/// they started.
#[test]
fn churn_leaves_nothing_behind() {
    let server = Server::start(&[]);
    let cookie = login(&server, "churner");
    let (_watcher, _) = Client::join(&server, "watcher");
    let baseline = server.threads();

    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (addr, cookie) = (server.addr, cookie.clone());
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
        let response = raw_http(&server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        response.status == 503
    });
    drop(held);
    wait_for("room again", || {
        raw_http(&server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").status == 200
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
