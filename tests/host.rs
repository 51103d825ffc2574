//! The host is in charge: the host link, host connections, every host
//! frame (and `forbidden` for everyone else), the class modes with their
//! host exemptions, and the close codes 4001/4002.

mod common;

use common::*;
use serde_json::{Value, json};
use tungstenite::protocol::frame::coding::CloseCode;

const KEY: &str = "a-host-key-for-the-tests-0123456789";

fn start() -> Server {
    Server::start(&["--host-key", KEY])
}

/// Logs in as `name` and connects with the host cookie.
fn join_host(server: &Server, name: &str) -> Client {
    let cookie = format!("{}; lanchat_host={KEY}", login(server, name));
    let mut client = Client::connect(server, &cookie);
    client.opening();
    client
}

/// The next frame of `kind`, skipping presence and others.
fn next(client: &mut Client, kind: &str) -> Value {
    client.recv_type(kind)
}

/// The host link sets the host cookie for the right key only; a host's
/// welcome says so, lists the hosts, and carries the banned and muted.
#[test]
fn the_host_link_makes_a_host() {
    let server = start();
    assert_eq!(get(&server, "/host?key=wrong", None).status, 403);
    assert_eq!(get(&server, "/host", None).status, 403);
    let link = get(&server, &format!("/host?key={KEY}"), None);
    assert_eq!(link.status, 303);
    let cookie = link.header("Set-Cookie").unwrap();
    assert!(
        cookie.starts_with(&format!("lanchat_host={KEY};")),
        "{cookie}"
    );
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );

    let host_cookie = format!("{}; lanchat_host={KEY}", login(&server, "teacher"));
    let mut teacher = Client::connect(&server, &host_cookie);
    let (welcome, _, _) = teacher.opening();
    assert_eq!(welcome["host"], true);
    assert_eq!(welcome["hosts"], json!(["teacher"]));
    assert_eq!(
        (welcome["banned"].clone(), welcome["muted"].clone()),
        (json!([]), json!([]))
    );

    let forged = format!("{}; lanchat_host=not-the-key", login(&server, "sam"));
    let (welcome, _, _) = Client::connect(&server, &forged).opening();
    assert_eq!(welcome["host"], false);
    assert_eq!(welcome["hosts"], json!(["teacher"]));
    assert!(welcome.get("banned").is_none() && welcome.get("muted").is_none());
    drop(teacher);
}

/// Every host frame from someone else is `forbidden`, and changes nothing.
#[test]
fn host_frames_are_forbidden_to_others() {
    let server = start();
    let (mut sam, _) = Client::join(&server, "sam");
    login(&server, "bob");
    for frame in [
        json!({"type": "mode", "announce": true}),
        json!({"type": "mute", "name": "bob", "minutes": 5}),
        json!({"type": "unmute", "name": "bob"}),
        json!({"type": "kick", "name": "bob"}),
        json!({"type": "ban", "name": "bob"}),
        json!({"type": "unban", "name": "bob"}),
        json!({"type": "release", "name": "bob"}),
        json!({"type": "clear"}),
    ] {
        sam.send(frame.clone());
        assert_eq!(next(&mut sam, "error")["code"], "forbidden", "{frame}");
    }
    sam.say("still normal");
    assert_eq!(next(&mut sam, "message")["text"], "still normal");
}

/// Announce-only, slow mode and private-off hold students back, never a
/// host; everyone is told the mode.
#[test]
fn modes_apply_to_students_only() {
    let server = start();
    let mut teacher = join_host(&server, "teacher");
    let (mut sam, _) = Client::join(&server, "sam");
    let (mut ria, _) = Client::join(&server, "ria");

    teacher.send(json!({"type": "mode", "announce": true}));
    let mode = next(&mut sam, "mode");
    assert_eq!(
        mode,
        json!({"type": "mode", "announce": true, "slow": 0, "private": true, "uploads": true})
    );
    sam.say("may I?");
    assert_eq!(next(&mut sam, "error")["code"], "announce_only");
    teacher.say("only me");
    assert_eq!(next(&mut sam, "message")["text"], "only me");

    teacher.send(json!({"type": "mode", "announce": false, "slow": 30, "private": false}));
    next(&mut sam, "mode");
    sam.say("one");
    assert_eq!(next(&mut sam, "message")["text"], "one");
    sam.say("two");
    let slow = next(&mut sam, "error");
    assert_eq!(slow["code"], "slow_mode");
    assert!(slow["retry_after_ms"].as_u64().unwrap() > 25_000, "{slow}");
    teacher.say("hosts are not slowed");
    teacher.say("at all");
    assert_eq!(next(&mut sam, "message")["text"], "hosts are not slowed");
    assert_eq!(next(&mut sam, "message")["text"], "at all");

    sam.send(json!({"type": "private", "to": "ria", "text": "psst"}));
    assert_eq!(next(&mut sam, "error")["code"], "private_off");
    sam.send(json!({"type": "private", "to": "teacher", "text": "a question"}));
    assert_eq!(next(&mut teacher, "private")["text"], "a question");
    teacher.send(json!({"type": "private", "to": "ria", "text": "an answer"}));
    assert_eq!(next(&mut ria, "private")["text"], "an answer");
}

/// A mute refuses the student's messages (saying until when), except
/// private ones to a host; the student and the hosts are told; unmute.
#[test]
fn mute_and_unmute() {
    let server = start();
    let mut teacher = join_host(&server, "teacher");
    let (mut bob, _) = Client::join(&server, "bob");
    teacher.send(json!({"type": "mute", "name": "BOB", "minutes": 10}));
    let muted = next(&mut bob, "muted");
    assert_eq!(muted["name"], "bob");
    let until = muted["until"].as_u64().unwrap();
    assert_eq!(next(&mut teacher, "muted")["until"], until);
    bob.say("hey");
    let refused = next(&mut bob, "error");
    assert_eq!(
        (refused["code"].clone(), refused["until"].clone()),
        (json!("muted"), json!(until))
    );
    bob.send(json!({"type": "private", "to": "teacher", "text": "sorry"}));
    assert_eq!(next(&mut teacher, "private")["text"], "sorry");

    // A host's welcome lists the mute.
    let (welcome, _, _) = Client::connect(
        &server,
        &format!("{}; lanchat_host={KEY}", login(&server, "aide")),
    )
    .opening();
    assert_eq!(welcome["muted"], json!([{"name": "bob", "until": until}]));

    teacher.send(json!({"type": "unmute", "name": "bob"}));
    assert_eq!(
        next(&mut bob, "unmuted"),
        json!({"type": "unmuted", "name": "bob"})
    );
    bob.say("thanks");
    assert_eq!(next(&mut bob, "message")["text"], "thanks");
    teacher.send(json!({"type": "mute", "name": "nobody", "minutes": 1}));
    assert_eq!(next(&mut teacher, "error")["code"], "unknown_user");
    teacher.send(json!({"type": "mute", "name": "bob", "minutes": 0}));
    assert_eq!(next(&mut teacher, "error")["code"], "bad_request");
}

/// Kick closes with 4001 and ends the sessions; ban does too, and refuses
/// logins until unbanned; release closes with 4002 and frees the name,
/// password, inbox and all.
#[test]
fn kick_ban_and_release() {
    let server = start();
    let mut teacher = join_host(&server, "teacher");

    let bob_cookie = login(&server, "bob");
    let mut bob = Client::connect(&server, &bob_cookie);
    bob.opening();
    teacher.send(json!({"type": "kick", "name": "bob"}));
    assert_eq!(bob.expect_close(), CloseCode::from(4001));
    assert_eq!(
        get(&server, "/", Some(&bob_cookie)).status,
        303,
        "the session ended"
    );

    let (mut eve, _) = Client::join(&server, "eve");
    teacher.send(json!({"type": "ban", "name": "eve"}));
    assert_eq!(eve.expect_close(), CloseCode::from(4001));
    assert_eq!(
        next(&mut teacher, "banned"),
        json!({"type": "banned", "name": "eve"})
    );
    assert_eq!(post_form(&server, "/login", "name=Eve", None).status, 403);
    teacher.send(json!({"type": "unban", "name": "eve"}));
    assert_eq!(
        next(&mut teacher, "unbanned"),
        json!({"type": "unbanned", "name": "eve"})
    );
    assert_eq!(post_form(&server, "/login", "name=eve", None).status, 303);

    let zoe = post_form(&server, "/login", "name=zoe&password=sesame", None).cookie_header();
    let mut zoe_ws = Client::connect(&server, &zoe);
    zoe_ws.opening();
    teacher.send(json!({"type": "private", "to": "zoe", "text": "for zoe"}));
    next(&mut zoe_ws, "private");
    teacher.send(json!({"type": "release", "name": "zoe"}));
    assert_eq!(zoe_ws.expect_close(), CloseCode::from(4002));
    let (_, history, _) = Client::connect(&server, &login(&server, "zoe")).opening();
    assert_eq!(
        history["private"],
        json!([]),
        "a new zoe reads nothing of the old"
    );
}

/// A host deletes anyone's message and clears the history; everyone sees it.
#[test]
fn a_host_deletes_and_clears() {
    let server = start();
    let mut teacher = join_host(&server, "teacher");
    let (mut sam, _) = Client::join(&server, "sam");
    sam.say("rude");
    let rude = next(&mut teacher, "message");
    teacher.send(json!({"type": "delete", "id": rude["id"]}));
    assert_eq!(next(&mut sam, "deleted")["id"], rude["id"]);
    sam.say("fine");
    next(&mut teacher, "message");
    teacher.send(json!({"type": "clear"}));
    assert_eq!(next(&mut sam, "cleared"), json!({"type": "cleared"}));
    let (_, history, _) = Client::connect(&server, &login(&server, "late")).opening();
    assert_eq!(history["messages"], json!([]));
}
