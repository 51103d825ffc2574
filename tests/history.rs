//! History you can trust (memory store): every message has a `seq`;
//! `?after=SEQ` replays exactly what came later, and says `gap` when more
//! was missed than is kept; private conversations come back on connect,
//! never also in `offline`; authors delete their own room messages.

mod common;

use common::*;
use serde_json::{Value, json};

/// The texts of a list of messages.
fn texts(messages: &Value) -> Vec<&str> {
    messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect()
}

fn seq(message: &Value) -> u64 {
    message["seq"].as_u64().expect("every message has a seq")
}

/// Says `text` and returns its seq, from the sender's own copy.
fn say(client: &mut Client, text: &str) -> u64 {
    client.say(text);
    loop {
        let message = client.recv_type("message");
        if message["text"] == text {
            return seq(&message);
        }
    }
}

/// Alice says five things: their seqs strictly increase; bob, resuming
/// after the second, gets exactly the last three; without `after`, all.
#[test]
fn after_replays_exactly_what_came_later() {
    let server = Server::start(&[]);
    let (mut alice, _) = Client::join(&server, "alice");
    let mut seqs = Vec::new();
    for n in 1..=5 {
        seqs.push(say(&mut alice, &format!("m{n}")));
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    let bob = login(&server, "bob");
    let (_, history, _) = Client::connect_after(&server, &bob, seqs[1]).opening();
    assert_eq!(texts(&history["messages"]), ["m3", "m4", "m5"]);
    assert_eq!(history["gap"], false);
    let (_, history, _) = Client::connect(&server, &bob).opening();
    assert_eq!(texts(&history["messages"]), ["m1", "m2", "m3", "m4", "m5"]);
    assert_eq!(history["gap"], false);
    let (_, history, _) = Client::connect_after(&server, &bob, seqs[4]).opening();
    assert_eq!(
        texts(&history["messages"]),
        Vec::<&str>::new(),
        "nothing missed"
    );

    // A seq that is not a number is refused.
    let refused = Client::connect_path(server.addr, "/ws?after=x", Some(&bob), &[]);
    assert_eq!(refused.err(), Some(400));
}

/// 150 messages while bob was away: resuming from before the 50 that are
/// no longer kept says `gap`; resuming from the last one dropped does not.
#[test]
fn missing_more_than_is_kept_is_a_gap() {
    let server = Server::start(&[]);
    // Five senders, 30 messages each: within the rate limit's burst.
    let mut senders: Vec<Client> = (0..5)
        .map(|n| Client::join(&server, &format!("s{n}")).0)
        .collect();
    let mut seqs = Vec::new();
    for n in 1..=150 {
        seqs.push(say(&mut senders[n % 5], &format!("m{n}")));
    }
    let bob = login(&server, "bob");
    let (_, history, _) = Client::connect_after(&server, &bob, seqs[0]).opening();
    assert_eq!(history["gap"], true, "m2..m50 are gone");
    assert_eq!(history["messages"].as_array().unwrap().len(), 100);
    assert_eq!(history["messages"][0]["text"], "m51");
    let (_, history, _) = Client::connect_after(&server, &bob, seqs[49]).opening();
    assert_eq!(history["gap"], false, "everything after m50 is kept");
    assert_eq!(history["messages"].as_array().unwrap().len(), 100);
}

/// Private conversations come back on connect (`history.private`, sent and
/// received); what waited in the inbox is in `offline` only, then in the
/// conversation from the next connect on.
#[test]
fn private_conversations_are_kept() {
    let server = Server::start(&[]);
    let (mut alice, _) = Client::join(&server, "alice");
    let bob_cookie = login(&server, "bob");
    let mut bob = Client::connect(&server, &bob_cookie);
    bob.opening();
    alice.send(json!({"type": "private", "to": "bob", "text": "hi"}));
    let hi = bob.recv_type("private");
    bob.send(json!({"type": "private", "to": "alice", "text": "yo"}));
    bob.recv_type("private");
    alice.recv_type("private");
    alice.recv_type("private");

    // A reload: both messages, in order.
    drop(bob);
    let mut bob = Client::connect(&server, &bob_cookie);
    let (_, history, offline) = bob.opening();
    assert_eq!(texts(&history["private"]), ["hi", "yo"]);
    assert_eq!(texts(&offline["messages"]), Vec::<&str>::new());

    // Resuming after "hi": only "yo".
    let mut resumed = Client::connect_after(&server, &bob_cookie, seq(&hi));
    let (_, history, _) = resumed.opening();
    assert_eq!(texts(&history["private"]), ["yo"]);

    // Bob goes offline; "later" waits in his inbox.
    drop((bob, resumed));
    wait_for("bob to be offline", || server.health()["users"] == 1);
    alice.send(json!({"type": "private", "to": "bob", "text": "later"}));
    alice.recv_type("private");
    let mut bob = Client::connect(&server, &bob_cookie);
    let (_, history, offline) = bob.opening();
    assert_eq!(texts(&offline["messages"]), ["later"]);
    assert_eq!(
        texts(&history["private"]),
        ["hi", "yo"],
        "not also in private"
    );
    drop(bob);
    let (_, history, offline) = Client::connect(&server, &bob_cookie).opening();
    assert_eq!(
        texts(&offline["messages"]),
        Vec::<&str>::new(),
        "delivered once"
    );
    assert_eq!(texts(&history["private"]), ["hi", "yo", "later"]);

    // Nobody else's conversations.
    let (_, history, _) = Client::connect(&server, &login(&server, "carol")).opening();
    assert_eq!(texts(&history["private"]), Vec::<&str>::new());
}

/// Only its author may delete a room message; everyone is told, and it
/// leaves the history. Deleting it again, or an unknown id: `not_found`.
#[test]
fn authors_delete_their_own_messages() {
    let server = Server::start(&[]);
    let (mut alice, _) = Client::join(&server, "alice");
    let (mut bob, _) = Client::join(&server, "bob");
    alice.say("oops");
    let oops = alice.recv_type("message");
    bob.recv_type("message");
    let id = oops["id"].as_str().unwrap();

    bob.send(json!({"type": "delete", "id": id}));
    assert_eq!(bob.recv_type("error")["code"], "forbidden");
    alice.send(json!({"type": "delete", "id": id}));
    assert_eq!(
        alice.recv_skipping_presence(),
        json!({"type": "deleted", "id": id})
    );
    assert_eq!(
        bob.recv_skipping_presence(),
        json!({"type": "deleted", "id": id})
    );
    alice.send(json!({"type": "delete", "id": id}));
    assert_eq!(alice.recv_type("error")["code"], "not_found");
    alice.send(json!({"type": "delete"}));
    assert_eq!(alice.recv_type("error")["code"], "bad_request");

    let (_, history, _) = Client::connect(&server, &login(&server, "carol")).opening();
    assert_eq!(texts(&history["messages"]), Vec::<&str>::new());
}
