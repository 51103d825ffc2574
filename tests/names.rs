//! Names are yours: compared by a key that folds case and look-alikes,
//! claimed while a session lives (or for good, with a password), and what
//! a claim held (inbox, conversations) goes with it.

mod common;

use common::*;
use serde_json::json;

/// The status of `POST /login` with this form (no cookie: a new browser).
fn login_status(server: &Server, form: &str) -> u16 {
    post_form(server, "/login", form, None).status
}

/// Case, full-width and Cyrillic look-alikes are the same name as `alice`
/// while alice is logged in; invisible characters are refused outright.
#[test]
fn look_alikes_are_the_same_name() {
    let server = Server::start(&[]);
    let _alice = login(&server, "alice");
    for same in ["Alice", "ALICE", "ＡＬＩＣＥ", "\u{430}lice", " alice "] {
        let form = format!("name={}", form_value(same));
        assert_eq!(login_status(&server, &form), 409, "{same:?}");
    }
    let refused = post_form(
        &server,
        "/login",
        &format!("name={}", form_value("ali\u{200b}ce")),
        None,
    );
    assert_eq!(refused.status, 400);
    assert!(
        refused.body.contains("invisible"),
        "the reason is shown: {}",
        refused.body
    );
    let rtl = format!("name={}", form_value("\u{202e}ecila"));
    assert_eq!(login_status(&server, &rtl), 400);
    // The 409 says why, and what to do.
    let taken = post_form(&server, "/login", "name=ALICE", None);
    assert!(taken.body.contains("in use"), "{}", taken.body);
}

/// A private message to a look-alike reaches the name as its owner wrote
/// it; a name nobody claimed is `unknown_user`.
#[test]
fn private_to_is_compared_by_key() {
    let server = Server::start(&[]);
    let (mut alice, _) = Client::join(&server, "Alice");
    let (mut bob, _) = Client::join(&server, "bob");
    bob.send(json!({"type": "private", "to": "ALICE", "text": "hi"}));
    let got = alice.recv_type("private");
    assert_eq!(
        (got["to"].as_str(), got["text"].as_str()),
        (Some("Alice"), Some("hi"))
    );
    bob.send(json!({"type": "private", "to": "nobody", "text": "hi"}));
    assert_eq!(bob.recv_type("error")["code"], "unknown_user");
}

/// A name without a password is free again once its last session ends;
/// the old owner's inbox and conversation are gone with the claim.
#[test]
fn a_claim_ends_with_its_last_session_and_takes_the_inbox() {
    let server = Server::start(&[]);
    let (mut carol, _) = Client::join(&server, "carol");
    let alice = login(&server, "alice");
    carol.send(json!({"type": "private", "to": "alice", "text": "secret"}));
    carol.recv_type("private");
    assert_eq!(
        login_status(&server, "name=alice"),
        409,
        "claimed while its session lives"
    );

    assert_eq!(post_form(&server, "/logout", "", Some(&alice)).status, 303);
    let (_, history, offline) = Client::connect(&server, &login(&server, "alice")).opening();
    assert_eq!(offline["messages"], json!([]), "nobody inherits the inbox");
    assert_eq!(history["private"], json!([]), "nor the conversation");
}

/// With a password, a name stays yours: a second device needs it, a wrong
/// one is `403`, five wrong ones a minute make it `429`, and logging out
/// does not free it.
#[test]
fn a_password_protects_a_name() {
    let server = Server::start(&[]);
    let first = post_form(&server, "/login", "name=teacher&password=sesame", None);
    assert_eq!(first.status, 303);
    let first = first.cookie_header();
    assert_eq!(login_status(&server, "name=Teacher"), 409);
    let asked = post_form(&server, "/login", "name=Teacher", None);
    assert!(asked.body.contains("password"), "{}", asked.body);
    assert_eq!(login_status(&server, "name=teacher&password=wrong"), 403);
    let second = post_form(&server, "/login", "name=TEACHER&password=sesame", None);
    assert_eq!(second.status, 303, "a second device with the password");
    assert_ne!(second.cookie_header(), first, "a new session");
    assert!(
        second.cookie_header().contains("lanchat_user=dGVhY2hlcg=="),
        "the display form is the one first typed"
    );
    assert_eq!(
        login_status(&server, "name=teacher&password=abc"),
        400,
        "too short"
    );

    // Logging out everywhere does not free a protected name.
    post_form(&server, "/logout", "", Some(&first));
    post_form(&server, "/logout", "", Some(&second.cookie_header()));
    assert_eq!(login_status(&server, "name=teacher"), 409);

    // Wrong guesses are throttled, the right password too, then.
    for _ in 0..4 {
        assert_eq!(login_status(&server, "name=teacher&password=guess"), 403);
    }
    assert_eq!(login_status(&server, "name=teacher&password=sesame"), 429);
}

/// `POST /password`: `401` without a session, `400` for a bad length,
/// `204` when set; changing it needs the current one (`403` if wrong).
#[test]
fn passwords_are_set_and_changed() {
    let server = Server::start(&[]);
    assert_eq!(
        post_form(&server, "/password", "password=sesame", None).status,
        401
    );
    let bob = login(&server, "bob");
    assert_eq!(
        post_form(&server, "/password", "password=abc", Some(&bob)).status,
        400
    );
    assert_eq!(
        post_form(&server, "/password", "password=sesame", Some(&bob)).status,
        204
    );
    assert_eq!(login_status(&server, "name=bob"), 409);
    assert_eq!(login_status(&server, "name=bob&password=sesame"), 303);
    let wrong = "password=open+up&current=nope";
    assert_eq!(
        post_form(&server, "/password", wrong, Some(&bob)).status,
        403
    );
    let right = "password=open+up&current=sesame";
    assert_eq!(
        post_form(&server, "/password", right, Some(&bob)).status,
        204
    );
    assert_eq!(login_status(&server, "name=bob&password=open+up"), 303);
}
