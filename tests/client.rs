//! The terminal client, `lanchat join`, as a subprocess against the real
//! server on loopback: what it sends reaches WebSocket users, what they
//! say is printed as `NAME: TEXT`, errors are one line and exit code 1,
//! and a restarted server is resumed without a line printed twice.

mod common;

use common::*;
use std::process::{Command, Stdio};

fn url(server: &Server) -> String {
    format!("http://{}/", server.addr)
}

/// The number of printed lines containing `text`.
fn count(printed: &[String], text: &str) -> usize {
    printed.iter().filter(|line| line.contains(text)).count()
}

/// `echo hi | lanchat join URL --name bot`: says hi to the room, and
/// exits 0 once its copy came back (the message is stored).
#[test]
fn a_piped_line_reaches_a_websocket_user() {
    let server = Server::start(&[]);
    let (mut alice, _) = Client::join(&server, "alice");
    let mut bot = JoinProcess::start(&[&url(&server), "--name", "bot"]);
    bot.type_line("hi");
    bot.end_input();
    let message = alice.recv_type("message");
    assert_eq!(
        (message["from"].as_str(), message["text"].as_str()),
        (Some("bot"), Some("hi"))
    );
    assert_eq!(bot.wait_exit(), Some(0), "stderr: {}", bot.stderr());
    assert_eq!(count(&bot.printed, "bot: hi"), 1, "{:?}", bot.printed);
}

/// The same through a shell pipe, exactly as a user would type it.
#[test]
fn echo_into_lanchat_join_exits_zero() {
    let server = Server::start(&[]);
    let (mut alice, _) = Client::join(&server, "alice");
    let shell = format!(
        "echo hi | '{}' join {} --name bot",
        env!("CARGO_BIN_EXE_lanchat"),
        url(&server)
    );
    let mut child = Command::new("sh")
        .args(["-c", &shell])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert_eq!(alice.recv_type("message")["text"], "hi");
    let mut status = None;
    wait_for("the pipe to end", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.unwrap().code(), Some(0));
}

/// `/msg NAME TEXT` reaches its recipient, and nobody else.
#[test]
fn a_private_line_reaches_only_its_recipient() {
    let server = Server::start(&[]);
    let (mut alice, _) = Client::join(&server, "alice");
    let (mut bob, _) = Client::join(&server, "bob");
    let (mut carol, _) = Client::join(&server, "carol");
    let mut dave = JoinProcess::start(&[&url(&server), "--name", "dave"]);
    dave.type_line("/msg bob the answer is 42");
    dave.end_input();
    let private = bob.recv_type("private");
    assert_eq!(private["from"], "dave");
    assert_eq!(private["to"], "bob");
    assert_eq!(private["text"], "the answer is 42");
    assert_eq!(dave.wait_exit(), Some(0), "stderr: {}", dave.stderr());
    assert_eq!(count(&dave.printed, "dave → bob: the answer is 42"), 1);
    // A room message after it: alice and carol see that, not the private.
    bob.say("marker");
    for other in [&mut alice, &mut carol] {
        let next = other.recv_skipping_presence();
        assert_eq!(
            (next["type"].as_str(), next["text"].as_str()),
            (Some("message"), Some("marker"))
        );
    }
}

/// Room messages are printed as `NAME: TEXT`: the history first, then each
/// message as it comes; `/who` lists who is online.
#[test]
fn room_messages_are_printed_as_name_and_text() {
    let server = Server::start(&[]);
    let (mut alice, _) = Client::join(&server, "alice");
    alice.say("said before");
    alice.recv_type("message");
    let mut bot = JoinProcess::start(&[&url(&server), "--name", "bot"]);
    bot.wait_for_line("alice: said before");
    assert_eq!(alice.recv_type("join")["name"], "bot");
    alice.say("hello there");
    let line = bot.wait_for_line("alice: hello there");
    assert!(
        line.len() > "alice: hello there".len(),
        "with its time: {line:?}"
    );
    bot.type_line("/who");
    bot.wait_for_line("alice, bot");
    bot.end_input();
    assert_eq!(bot.wait_exit(), Some(0), "stderr: {}", bot.stderr());
}

/// A refused login (the name is in use, or not a name): one line on
/// stderr with the server's reason, exit code 1.
#[test]
fn a_refused_login_is_one_line_and_exit_1() {
    let server = Server::start(&[]);
    let (_alice, _) = Client::join(&server, "alice");
    let too_long = "x".repeat(33);
    for (name, reason) in [("alice", "in use"), (too_long.as_str(), "32")] {
        let mut refused = JoinProcess::start(&[&url(&server), "--name", name]);
        refused.end_input();
        assert_eq!(refused.wait_exit(), Some(1));
        let stderr = refused.stderr();
        assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
        assert!(
            stderr.contains("login refused") && stderr.contains(reason),
            "{stderr:?}"
        );
    }
}

/// Nobody listening: one line on stderr, exit code 1.
#[test]
fn an_unreachable_server_is_one_line_and_exit_1() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // free once the listener is dropped
    let mut client = JoinProcess::start(&[&format!("http://127.0.0.1:{port}/"), "--name", "bot"]);
    client.end_input();
    assert_eq!(client.wait_exit(), Some(1));
    let stderr = client.stderr();
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.contains("cannot reach"), "{stderr:?}");
}

/// Bad flags: exit code 2 and the usage.
#[test]
fn bad_join_flags_exit_2() {
    let output = Command::new(env!("CARGO_BIN_EXE_lanchat"))
        .args(["join", "--nope"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("lanchat join [URL]"));
}

/// With Redis, the server is killed and started again on the same port:
/// the client connects again with `after=`, prints what is new, and prints
/// nothing twice.
#[test]
fn a_restarted_server_is_resumed_without_duplicates() {
    let redis = RedisServer::start();
    let server = Server::start(&["--redis", &redis.url()]);
    let port = server.addr.port().to_string();
    let alice_cookie = login(&server, "alice");
    let mut alice = Client::connect(&server, &alice_cookie);
    alice.opening();
    let mut bot = JoinProcess::start(&[&url(&server), "--name", "bot"]);
    assert_eq!(alice.recv_type("join")["name"], "bot");
    alice.say("before the restart");
    bot.wait_for_line("alice: before the restart");
    bot.type_line("mine, before");
    bot.wait_for_line("bot: mine, before");

    drop(alice);
    drop(server); // SIGKILL
    let server = Server::start(&["--redis", &redis.url(), "--port", &port]);
    wait_for("the client to connect again", || {
        server.health()["users"] == 1
    });
    let mut alice = Client::connect(&server, &alice_cookie);
    alice.opening();
    alice.say("after the restart");
    bot.wait_for_line("alice: after the restart");
    bot.type_line("mine, after");
    bot.wait_for_line("bot: mine, after");
    bot.end_input();
    assert_eq!(bot.wait_exit(), Some(0), "stderr: {}", bot.stderr());
    for line in [
        "alice: before the restart",
        "bot: mine, before",
        "alice: after the restart",
        "bot: mine, after",
    ] {
        assert_eq!(
            count(&bot.printed, line),
            1,
            "{line:?} in {:?}",
            bot.printed
        );
    }
    assert!(bot.stderr().contains("connected again"), "{}", bot.stderr());
}
