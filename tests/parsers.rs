//! Property tests over every parser of untrusted input: the HTTP request
//! head and form, cookies, names, the `next` path, page paths and client
//! frames. Whatever the bytes, no parser panics, and what they accept keeps
//! the contract's rules. `make fuzz` runs these with many more cases.

use lanchat::http::{Request, form_field, parse_head};
use lanchat::names::{MAX_NAME_CHARS, validate as validate_name};
use lanchat::page::Page;
use lanchat::protocol::{ClientFrame, MAX_TEXT_CHARS, parse_client_frame};
use lanchat::session::{cookie, cookie_name, safe_next};
use proptest::prelude::*;

/// Bytes that look like HTTP often enough to reach deep into the parser.
fn http_ish() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::sample::select(vec![
        &b"GET "[..],
        b"POST ",
        b"/ws",
        b"/login?next=",
        b" HTTP/1.1",
        b"\r\n",
        b": ",
        b"Cookie",
        b"Content-Length",
        b"=",
        b";",
        b"%",
        b"%2F",
        b"\xff",
        b"\x00",
        b" ",
        b"\r\n\r\n",
    ]);
    prop::collection::vec(
        prop_oneof![pieces.prop_map(<[u8]>::to_vec), any::<Vec<u8>>()],
        0..24,
    )
    .prop_map(|parts| parts.concat())
}

fn request_with(headers: Vec<(String, String)>) -> Request {
    Request {
        method: "GET".into(),
        path: "/".into(),
        query: None,
        headers,
        body: vec![],
        peer: None,
    }
}

proptest! {
    #[test]
    fn request_heads(bytes in http_ish()) {
        if let Ok(Some((request, len))) = parse_head(&bytes) {
            prop_assert!(len <= bytes.len());
            let _ = request.query_param("next");
        }
    }

    #[test]
    fn form_fields(form in http_ish(), name in ".{0,8}") {
        let _ = form_field(&form, &name);
        let _ = form_field(&form, "name");
    }

    #[test]
    fn cookies(header in ".{0,200}", other in "[ -~]{0,80}") {
        let request = request_with(vec![("Cookie".into(), header), ("cookie".into(), other)]);
        let _ = cookie(&request, "lanchat_session");
        let _ = cookie_name(&request);
    }

    #[test]
    fn names(raw in "\\PC{0,40}|.{0,40}") {
        if let Ok(name) = validate_name(&raw) {
            prop_assert_eq!(name.trim(), name.as_str());
            let chars = name.chars().count();
            prop_assert!((1..=MAX_NAME_CHARS).contains(&chars));
            prop_assert!(!name.chars().any(char::is_control));
        }
    }

    #[test]
    fn next_paths(next in ".{0,40}") {
        let target = safe_next(Some(&next));
        prop_assert!(target.starts_with('/'));
        prop_assert!(!matches!(target.chars().nth(1), Some('/' | '\\')));
        prop_assert!(!target.chars().any(char::is_control));
    }

    #[test]
    fn page_paths(path in "/?[a-z./\\\\%]{0,30}") {
        if Page::Embedded.file(&path).is_some() {
            prop_assert!(!path.contains(".."));
        }
    }

    #[test]
    fn client_frames(raw in "\\PC{0,60}|\\{\"type\":\"(message|private|delete|mute|kick|mode|clear|typing)\",(\"to\":\".{0,5}\",)?(\"id\":.{0,8},)?\"text\":.{0,20}\\}") {
        match parse_client_frame(&raw) {
            Ok(ClientFrame::Say { text, file }) | Ok(ClientFrame::Whisper { text, file, .. }) => {
                prop_assert_eq!(text.trim(), text.as_str());
                let least = if file.is_some() { 0 } else { 1 };
                prop_assert!((least..=MAX_TEXT_CHARS).contains(&text.chars().count()));
                prop_assert!(!text.chars().any(|c| c.is_control() && c != '\n' && c != '\t'));
            }
            Ok(ClientFrame::Delete { .. }) => prop_assert!(raw.contains("delete")),
            Ok(ClientFrame::Typing { .. }) => prop_assert!(raw.contains("typing")),
            Ok(ClientFrame::Host(_)) => prop_assert!(raw.contains("type")),
            Err(error) => prop_assert!(!error.message.is_empty()),
        }
    }
}
