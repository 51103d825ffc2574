//! Files and photos: uploads byte for byte, served so that nothing
//! uploaded can run in the chat's origin, within their limits; attached to
//! messages; shared by servers on one Redis.

mod common;

use common::*;
use serde_json::{Value, json};
use std::io::Write;
use std::time::{Duration, Instant};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR fake but the magic is right";

fn uploaded(response: &HttpResponse) -> Value {
    assert_eq!(response.status, 201, "{}", response.body);
    serde_json::from_str(&response.body).unwrap()
}

/// Bytes in, the same bytes out; images by their bytes inline, everything
/// else as an attachment; always nosniff and a sandbox.
#[test]
fn files_are_kept_and_served_safely() {
    let server = Server::start(&[]);
    let alice = login(&server, "alice");
    let binary: Vec<u8> = (0..300_000u32).map(|n| (n * 7 % 251) as u8).collect();
    let file = uploaded(&upload(
        &server,
        "data.bin",
        "application/x-thing",
        &binary,
        Some(&alice),
    ));
    assert_eq!(
        (
            file["name"].as_str(),
            file["size"].as_u64(),
            file["type"].as_str()
        ),
        (Some("data.bin"), Some(300_000), Some("application/x-thing"))
    );
    let url = file["url"].as_str().unwrap();
    let got = get(&server, url, Some(&alice));
    assert_eq!(got.status, 200);
    assert_eq!(got.bytes, binary, "byte-identical");
    assert_eq!(got.header("Content-Type"), Some("application/octet-stream"));
    assert!(
        got.header("Content-Disposition")
            .unwrap()
            .starts_with("attachment")
    );

    for (name, kind, bytes) in [
        (
            "page.html",
            "text/html",
            &b"<html><script>alert(1)</script>"[..],
        ),
        (
            "pic.svg",
            "image/svg+xml",
            b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
        ),
        ("fake.png", "image/png", b"<html>not a png</html>"),
    ] {
        let file = uploaded(&upload(&server, name, kind, bytes, Some(&alice)));
        let got = get(&server, file["url"].as_str().unwrap(), Some(&alice));
        assert_eq!(
            got.header("Content-Type"),
            Some("application/octet-stream"),
            "{name}"
        );
        assert!(
            got.header("Content-Disposition")
                .unwrap()
                .contains("attachment"),
            "{name}"
        );
        assert_eq!(
            got.header("Content-Security-Policy"),
            Some("sandbox"),
            "{name}"
        );
        assert_eq!(
            got.header("X-Content-Type-Options"),
            Some("nosniff"),
            "{name}"
        );
    }
    let png = uploaded(&upload(
        &server,
        "real.png",
        "application/octet-stream",
        PNG,
        Some(&alice),
    ));
    let got = get(
        &server,
        &format!("/files/{}", png["id"].as_str().unwrap()),
        Some(&alice),
    );
    assert_eq!(
        got.header("Content-Type"),
        Some("image/png"),
        "inline, by its bytes"
    );
    assert!(got.header("Content-Disposition").is_none());
    assert_eq!(got.header("Content-Security-Policy"), Some("sandbox"));

    assert_eq!(get(&server, url, None).status, 401);
    assert_eq!(upload(&server, "x", "text/plain", b"x", None).status, 401);
    assert_eq!(get(&server, "/files/nope", Some(&alice)).status, 404);
}

/// The limits: `413` past --max-upload (before the body is read), `403`
/// when uploads are off, `429` past 10 a minute, and the oldest files go
/// past --files-cap.
#[test]
fn upload_limits() {
    let server = Server::start(&["--max-upload", "1", "--files-cap", "1"]);
    let alice = login(&server, "alice");
    let too_big = vec![0u8; 1024 * 1024 + 1];
    assert_eq!(
        upload(&server, "big", "x/y", &too_big, Some(&alice)).status,
        413
    );

    let third = vec![1u8; 400 * 1024];
    let first = uploaded(&upload(&server, "1", "x/y", &third, Some(&alice)));
    let second = uploaded(&upload(&server, "2", "x/y", &third, Some(&alice)));
    let last = uploaded(&upload(&server, "3", "x/y", &third, Some(&alice)));
    assert_eq!(
        get(&server, first["url"].as_str().unwrap(), Some(&alice)).status,
        404,
        "evicted"
    );
    assert_eq!(
        get(&server, second["url"].as_str().unwrap(), Some(&alice)).status,
        200
    );
    assert_eq!(
        get(&server, last["url"].as_str().unwrap(), Some(&alice)).status,
        200
    );
    let statuses: Vec<u16> = (0..10)
        .map(|_| upload(&server, "s", "x/y", b"s", Some(&alice)).status)
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");

    let off = Server::start(&["--max-upload", "0"]);
    assert_eq!(
        upload(&off, "x", "x/y", b"x", Some(&login(&off, "bob"))).status,
        403
    );
}

/// A host's `uploads` mode stops students, not hosts.
#[test]
fn the_uploads_mode() {
    let key = "files-test-host-key-0123456";
    let server = Server::start(&["--host-key", key]);
    let host = format!("{}; lanchat_host={key}", login(&server, "teacher"));
    let mut teacher = Client::connect(&server, &host);
    teacher.opening();
    teacher.send(json!({"type": "mode", "uploads": false}));
    teacher.recv_type("mode");
    let student = login(&server, "sam");
    assert_eq!(
        upload(&server, "x", "x/y", b"x", Some(&student)).status,
        403
    );
    assert_eq!(upload(&server, "x", "x/y", b"x", Some(&host)).status, 201);
}

/// A message carries its file (text may then be empty), in the room and
/// privately, live and in the history; an unknown file is `unknown_file`.
#[test]
fn messages_carry_files() {
    let server = Server::start(&[]);
    let alice_cookie = login(&server, "alice");
    let mut alice = Client::connect(&server, &alice_cookie);
    alice.opening();
    let (mut bob, _) = Client::join(&server, "bob");
    let file = uploaded(&upload(
        &server,
        "p.png",
        "image/png",
        PNG,
        Some(&alice_cookie),
    ));
    alice.send(json!({"type": "message", "text": "", "file": file["id"]}));
    let got = bob.recv_type("message");
    assert_eq!(got["file"], file);
    assert_eq!(got["text"], "");
    alice.send(json!({"type": "private", "to": "bob", "text": "yours", "file": file["id"]}));
    assert_eq!(bob.recv_type("private")["file"]["name"], "p.png");
    alice.send(json!({"type": "message", "text": "x", "file": "nope"}));
    assert_eq!(alice.recv_type("error")["code"], "unknown_file");
    let (_, history, _) = Client::connect(&server, &login(&server, "carol")).opening();
    assert_eq!(history["messages"][0]["file"], file);
}

/// With Redis: a file uploaded on one server is served by another, and a
/// message with a file keeps it across a restart.
#[test]
fn files_are_shared_through_redis() {
    let redis = RedisServer::start();
    let a = Server::start(&["--redis", &redis.url()]);
    let b = Server::start(&["--redis", &redis.url()]);
    let alice = login(&a, "alice");
    let bytes: Vec<u8> = (0..50_000u32).map(|n| n as u8).collect();
    let file = uploaded(&upload(&a, "notes.txt", "text/plain", &bytes, Some(&alice)));
    let got = get(&b, file["url"].as_str().unwrap(), Some(&alice));
    assert_eq!((got.status, got.bytes == bytes), (200, true));
    let mut ws = Client::connect(&a, &alice);
    ws.opening();
    ws.send(json!({"type": "message", "text": "see", "file": file["id"]}));
    ws.recv_type("message");
    drop((ws, a, b));
    let c = Server::start(&["--redis", &redis.url()]);
    let (_, history, _) = Client::connect(&c, &login(&c, "late")).opening();
    assert_eq!(history["messages"][0]["file"], file);
    assert_eq!(
        get(&c, file["url"].as_str().unwrap(), Some(&alice)).bytes,
        bytes
    );
}

/// An upload at one byte a second is cut off at its deadline (a few
/// seconds for a small file) while the chat goes on.
#[test]
fn a_slow_upload_is_cut_off() {
    let server = Server::start(&[]);
    let alice = login(&server, "alice");
    let (mut bob, _) = Client::join(&server, "bob");
    let mut socket = std::net::TcpStream::connect(server.addr).unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    let head = format!(
        "POST /files HTTP/1.1\r\nHost: {}\r\nCookie: {alice}\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n",
        server.addr
    );
    socket.write_all(head.as_bytes()).unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    loop {
        // One byte a second, until the server answers (or hangs up).
        if socket.write_all(b"x").is_err() {
            break;
        }
        bob.say("still chatting");
        assert_eq!(bob.recv_type("message")["text"], "still chatting");
        let mut peek = [0u8; 1];
        socket
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        if matches!(std::io::Read::read(&mut socket, &mut peek), Ok(1)) {
            answer.push(peek[0]);
            socket.set_read_timeout(Some(TIMEOUT)).unwrap();
            let _ = std::io::Read::read_to_end(&mut socket, &mut answer);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never cut off");
    }
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "after its deadline, not before"
    );
}
