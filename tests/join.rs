//! Joining in five seconds: the start lines (host link, QR code), the
//! projector page `/join` and its code `/join.svg`. Against the real
//! binary on loopback; the QR codes are decoded as a phone would.

mod common;

use common::*;

/// The lines after `listening on`, up to the end of the QR block.
fn start_lines(server: &Server) -> (String, Vec<String>) {
    let host_link = server.next_line();
    let mut qr = Vec::new();
    assert_eq!(server.next_line(), "", "a blank line before the code");
    loop {
        let line = server.next_line();
        if line.starts_with("scan to join") {
            return (host_link, qr);
        }
        qr.push(line);
    }
}

/// `--qr always`: the host link, then a QR code that decodes to the
/// address of the host link (here the bound one: loopback has no LAN).
#[test]
fn start_lines_with_a_qr_code() {
    let server = Server::start(&["--qr", "always", "--host-key", "s3cretS3cretS3cret"]);
    let (host_link, qr) = start_lines(&server);
    let url = format!("http://{}/", server.addr);
    assert_eq!(
        host_link,
        format!("host link: {url}host?key=s3cretS3cretS3cret")
    );
    assert!(qr.len() >= 12, "a code of at least 21 modules: {qr:?}");
    assert!(qr.iter().any(|line| line.contains('█')));
    assert_eq!(decode_qr(&half_block_modules(&qr)), url);
}

/// `--qr never`, and `auto` when stdout is not a terminal (a pipe, here):
/// the host link with a random key of at least 128 bits, and no code.
#[test]
fn start_lines_without_a_qr_code() {
    for qr in ["never", "auto"] {
        let mut server = Server::start(&["--qr", qr]);
        let output = server.stop_and_read_output();
        let host_link = output
            .first()
            .unwrap_or_else(|| panic!("a host link line: {output:?}"));
        let key = host_link
            .strip_prefix(&format!("host link: http://{}/host?key=", server.addr))
            .unwrap_or_else(|| panic!("{host_link:?}"));
        assert!(
            key.len() >= 32 && key.chars().all(|c| c.is_ascii_hexdigit()),
            "{key:?}"
        );
        assert!(
            output.iter().all(|line| !line.contains(['█', '▀', '▄'])),
            "--qr {qr}: {output:?}"
        );
    }
}

/// Two servers draw two different keys.
#[test]
fn each_start_draws_a_new_host_key() {
    let a = Server::start(&["--qr", "never"]).next_line();
    let b = Server::start(&["--qr", "never"]).next_line();
    assert!(a.starts_with("host link: ") && b.starts_with("host link: "));
    assert_ne!(
        a.rsplit('=').next(),
        b.rsplit('=').next(),
        "two random keys"
    );
}

/// A GET with this `Host` header, without a session.
fn get_with_host(server: &Server, path: &str, host: &str) -> HttpResponse {
    raw_http(
        server,
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
    )
}

/// `/join.svg` encodes the address the browser used when it is one a
/// phone can use too.
#[test]
fn the_code_carries_the_lan_host_the_browser_used() {
    // A LAN address this test machine does not have: allowed by name.
    let server = Server::start(&["--qr", "never", "--allow-host", "192.168.1.23:8000"]);
    let response = get_with_host(&server, "/join.svg", "192.168.1.23:8000");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("image/svg+xml"));
    assert_eq!(
        decode_qr(&svg_modules(&response.body)),
        "http://192.168.1.23:8000/"
    );
    let response = get_with_host(&server, "/join.svg", "lanchat.local:8000");
    assert_eq!(
        decode_qr(&svg_modules(&response.body)),
        "http://lanchat.local:8000/"
    );
}

/// Opened as `localhost` (or 127.0.0.1, or with a `Host` not fit for a
/// code), the code carries the address of the host link line instead.
#[test]
fn the_code_of_a_loopback_host_is_the_lan_address() {
    let server = Server::start(&["--qr", "never"]);
    let host_link = server.next_line();
    let lan_url = host_link
        .strip_prefix("host link: ")
        .and_then(|link| link.split("host?key=").next())
        .unwrap()
        .to_string();
    let port = server.addr.port();
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let response = get_with_host(&server, "/join.svg", &host);
        assert_eq!(response.status, 200, "{host}");
        assert_eq!(decode_qr(&svg_modules(&response.body)), lan_url, "{host}");
    }
    // A Host that is no name of this server is not answered at all.
    assert_eq!(get_with_host(&server, "/join.svg", "<script>").status, 421);
}

/// `/join` is a page for a projector: no session needed, the code inline,
/// the address in words, and a script that keeps the count of people
/// current from `/healthz`. Nothing is loaded from elsewhere.
#[test]
fn the_projector_page() {
    let server = Server::start(&["--qr", "never", "--allow-host", "192.168.1.23:8000"]);
    let response = get_with_host(&server, "/join", "192.168.1.23:8000");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = &response.body;
    let svg_start = html.find("<svg").expect("an inline SVG");
    let svg_end = html[svg_start..].find("</svg>").unwrap() + svg_start + "</svg>".len();
    assert_eq!(
        decode_qr(&svg_modules(&html[svg_start..svg_end])),
        "http://192.168.1.23:8000/"
    );
    assert!(html.contains(">http://192.168.1.23:8000<"), "the address");
    assert!(html.contains("/healthz"), "the live count");
    assert!(!html.contains("{{"), "every placeholder filled");
    for outside in ["https://", "src=\"http", "href=\"http"] {
        assert!(!html.contains(outside), "nothing from elsewhere: {outside}");
    }
    // The raw template is not served as a page of its own.
    let template = get(&server, "/join.html", None);
    assert_eq!(
        (template.status, template.header("location")),
        (303, Some("/join"))
    );
    // Only GET and HEAD.
    let post = post_form(&server, "/join", "", None);
    assert_eq!(post.status, 405);
}

/// The chat page links to the projector page, in a new tab.
#[test]
fn the_chat_page_links_to_the_join_code() {
    let server = Server::start(&["--qr", "never"]);
    let cookie = login(&server, "teacher");
    let page = get(&server, "/", Some(&cookie));
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("href=\"/join\" target=\"_blank\""),
        "a link to /join"
    );
}
