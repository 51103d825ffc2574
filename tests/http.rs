//! The process and the HTTP routes of the contract: flags and exit codes,
//! login and its cookies, logout, redirects, files, health, limits.

mod common;

use common::*;
use std::process::Command;

/// Bad flags exit 2 with the usage; `--help` and `--version` exit 0.
#[test]
fn bad_flags_exit_2_with_usage() {
    for args in [
        &["--port", "nope"][..],
        &["--frobnicate"],
        &["--heartbeat", "-1"],
        &["--log-level"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_lanchat"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("usage: lanchat"),
            "{args:?}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_lanchat"))
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--max-connections"));
    let out = Command::new(env!("CARGO_BIN_EXE_lanchat"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let version = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        version.trim(),
        concat!("lanchat ", env!("CARGO_PKG_VERSION"))
    );
}

/// `--port 0` prints the real port, and the server answers on it.
#[test]
fn prints_the_real_port() {
    let server = Server::start(&[]);
    assert_ne!(server.addr.port(), 0);
    assert_eq!(get(&server, "/healthz", None).status, 200);
}

/// `GET /` without a session redirects to the login form, which is a form.
#[test]
fn anonymous_visitors_go_to_login() {
    let server = Server::start(&[]);
    let root = get(&server, "/", None);
    assert_eq!(root.status, 303);
    assert_eq!(root.header("Location"), Some("/login?next=/"));

    let form = get(&server, "/login?next=/", None);
    assert_eq!(form.status, 200);
    assert!(
        form.header("Content-Type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        form.body.contains("<form") && form.body.contains("name=\"name\""),
        "{}",
        form.body
    );
}

/// Login sets exactly the two cookies of the contract, base64 for the name
/// (non-ASCII included), and the session then opens the chat page.
#[test]
fn login_sets_both_cookies() {
    let server = Server::start(&[]);
    let response = post_form(
        &server,
        "/login",
        "name=+J%C3%BCrgen+%F0%9F%98%80+&next=%2F",
        None,
    );
    assert_eq!(response.status, 303);
    assert_eq!(response.header("Location"), Some("/"));
    let cookies = response.set_cookies();
    assert_eq!(cookies.len(), 2);
    // "Jürgen 😀" (trimmed) in standard base64.
    assert_eq!(
        cookies[0],
        "lanchat_user=SsO8cmdlbiDwn5iA; Path=/; Max-Age=2592000; SameSite=Lax"
    );
    let session = cookies[1].strip_prefix("lanchat_session=").unwrap();
    let (id, attributes) = session.split_once(';').unwrap();
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "4", "a uuid v4: {id}");
    assert_eq!(
        attributes,
        " Path=/; Max-Age=2592000; HttpOnly; SameSite=Lax"
    );

    let page = get(&server, "/", Some(&response.cookie_header()));
    assert_eq!(page.status, 200);
    assert!(
        page.header("Content-Type")
            .unwrap()
            .starts_with("text/html")
    );
}

/// Invalid names get 400 with the form and the reason; nothing is set.
#[test]
fn invalid_names_are_refused_with_a_reason() {
    let server = Server::start(&[]);
    let long = "x".repeat(33);
    for (form, reason) in [
        ("name=+++", "choose a name"),
        (&*format!("name={long}"), "too long"),
        ("name=a%07b", "control"),
        ("", "choose a name"),
    ] {
        let response = post_form(&server, "/login", form, None);
        assert_eq!(response.status, 400, "{form}");
        assert!(response.body.contains(reason), "{form}: {}", response.body);
        assert!(response.body.contains("<form"));
        assert!(response.set_cookies().is_empty());
    }
    // 32 characters (not bytes) is fine.
    let response = post_form(
        &server,
        "/login",
        &format!("name={}", form_value(&"é".repeat(32))),
        None,
    );
    assert_eq!(response.status, 303);
}

/// `next` is followed only when it is a local path.
#[test]
fn next_is_never_an_open_redirect() {
    let server = Server::start(&[]);
    for (n, (next, location)) in [
        ("/room", "/room"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/a\nb", "/"),
        ("", "/"),
    ]
    .into_iter()
    .enumerate()
    {
        // A new name each time: "ann" is claimed by the first login.
        let response = post_form(
            &server,
            "/login",
            &format!("name=ann{n}&next={}", form_value(next)),
            None,
        );
        assert_eq!(response.header("Location"), Some(location), "next={next:?}");
    }
}

/// A name with an open connection in another session is `409`; the same
/// session logging in again is fine and keeps its id.
#[test]
fn a_name_in_use_elsewhere_is_409() {
    let server = Server::start(&[]);
    let cookie = login(&server, "alice");
    let mut alice = Client::connect(&server, &cookie);
    assert_eq!(alice.recv()["type"], "welcome"); // registered by now

    let other = post_form(&server, "/login", "name=alice", None);
    assert_eq!(other.status, 409);
    assert!(other.body.contains("in use"), "{}", other.body);
    assert!(other.set_cookies().is_empty());

    let again = post_form(&server, "/login", "name=alice", Some(&cookie));
    assert_eq!(again.status, 303);
    assert_eq!(again.cookie_header(), cookie, "same session id");
}

/// Logout ends the session, expires both cookies, and closes the
/// session's open WebSockets (its other tabs) with 1000.
#[test]
fn logout_ends_the_session() {
    let server = Server::start(&[]);
    let cookie = login(&server, "bob");
    let mut tab = Client::connect(&server, &cookie);
    tab.recv_type("offline");
    let (mut other_user, _) = Client::join(&server, "carl");
    let response = post_form(&server, "/logout", "", Some(&cookie));
    assert_eq!(response.status, 303);
    assert_eq!(response.header("Location"), Some("/login"));
    let expired = response.set_cookies();
    assert_eq!(expired.len(), 2);
    assert!(
        expired.iter().all(|c| c.contains("Max-Age=0")),
        "{expired:?}"
    );
    assert_eq!(
        get(&server, "/", Some(&cookie)).status,
        303,
        "the old session no longer works"
    );
    assert_eq!(
        tab.expect_close(),
        tungstenite::protocol::frame::coding::CloseCode::Normal
    );
    assert_eq!(
        other_user.recv_type("leave")["name"],
        "bob",
        "only bob's tab was closed"
    );
}

/// A forged user cookie, or an unknown session, logs nobody in.
#[test]
fn forged_cookies_log_nobody_in() {
    let server = Server::start(&[]);
    let cookie = login(&server, "carol");
    let session = cookie
        .split("; ")
        .find(|c| c.starts_with("lanchat_session="))
        .unwrap();
    // "mallory" in base64, with carol's real session.
    let forged = format!("lanchat_user=bWFsbG9yeQ==; {session}");
    assert_eq!(get(&server, "/", Some(&forged)).status, 303);
    let unknown = "lanchat_user=Y2Fyb2w=; lanchat_session=5f0c3b0e-8c2a-4b51-9a3e-2f4f3c1d2e10";
    assert_eq!(get(&server, "/", Some(unknown)).status, 303);
    assert_eq!(get(&server, "/", Some("lanchat_user=Y2Fyb2w=")).status, 303);
    assert_eq!(get(&server, "/", Some(&cookie)).status, 200);
}

/// Page files are served with their type and no session; nothing outside.
#[test]
fn page_files_and_nothing_else() {
    let server = Server::start(&[]);
    let css = get(&server, "/style.css", None);
    assert_eq!(css.status, 200);
    assert!(css.header("Content-Type").unwrap().starts_with("text/css"));
    let js = get(&server, "/app.js", None);
    assert!(
        js.header("Content-Type")
            .unwrap()
            .starts_with("text/javascript")
    );
    // The login template is only ever served filled in.
    assert_eq!(
        get(&server, "/login.html", None).header("Location"),
        Some("/login")
    );
    for path in [
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/..%2fCargo.toml",
        "//etc/passwd",
        "/nope",
        "/.gitignore",
    ] {
        assert_eq!(get(&server, path, None).status, 404, "{path}");
    }
    assert_eq!(post_form(&server, "/healthz", "", None).status, 405);
}

/// `--www DIR` serves the page from disk, never a file outside it.
#[test]
fn www_folder_is_served_from_disk() {
    let dir = std::env::temp_dir().join(format!("lanchat-www-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "<p>from disk</p>").unwrap();
    std::fs::write(dir.join("app.js"), "console.log(1)").unwrap();
    let server = Server::start(&["--www", dir.to_str().unwrap()]);
    let js = get(&server, "/app.js", None);
    assert_eq!((js.status, js.body.as_str()), (200, "console.log(1)"));
    assert!(
        js.header("Content-Type")
            .unwrap()
            .starts_with("text/javascript")
    );
    let cookie = login(&server, "dora");
    assert_eq!(get(&server, "/", Some(&cookie)).body, "<p>from disk</p>");
    assert_eq!(get(&server, "/../http.rs", None).status, 404);
    std::fs::remove_dir_all(dir).unwrap();
}

/// `/healthz` counts connections and distinct names.
#[test]
fn health_counts_connections_and_users() {
    let server = Server::start(&[]);
    let health = server.health();
    assert_eq!(
        health,
        serde_json::json!({"status": "ok", "connections": 0, "users": 0, "store": "memory"})
    );
    let cookie = login(&server, "erin");
    let _a = Client::connect(&server, &cookie);
    let _b = Client::connect(&server, &cookie);
    let (_c, _) = Client::join(&server, "frank");
    let health = server.health();
    assert_eq!(
        (health["connections"].as_u64(), health["users"].as_u64()),
        (Some(3), Some(2))
    );
}

/// A request head over the cap is 431; a malformed one is 400.
#[test]
fn oversized_and_malformed_heads() {
    let server = Server::start(&[]);
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    assert_eq!(raw_http(&server, huge.as_bytes()).status, 431);
    assert_eq!(
        raw_http(&server, b"\x16\x03\x01garbage\r\n\r\n").status,
        400
    );
    let body = format!(
        "POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        1 << 20
    );
    assert_eq!(raw_http(&server, body.as_bytes()).status, 413);
}
