//! Who is logged in: nicknames, the two cookies, and the `next` redirect rule.
//!
//! Login is by nickname only. The server writes two cookies:
//! - `lanchat_user`: the name, base64-encoded (cookies cannot hold arbitrary
//!   UTF-8); the page reads it to greet the user and prefill the form.
//! - `lanchat_session`: a random uuid v4, `HttpOnly`. This is the credential.
//!
//! A request is logged in only when the session id is live in the store *and*
//! the user cookie decodes to that session's name: editing `lanchat_user`
//! alone logs nobody in, and neither does a stale session with another name.

use crate::http::Request;
use crate::store::{SESSION_TTL, Session, Store};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

pub const USER_COOKIE: &str = "lanchat_user";
pub const SESSION_COOKIE: &str = "lanchat_session";
/// Set by the host link (`GET /host?key=`): its value is the host key.
pub const HOST_COOKIE: &str = "lanchat_host";

/// The value of one cookie, from any `Cookie` header of the request.
pub fn cookie<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers_named("cookie")
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
}

/// The name in the `lanchat_user` cookie, if it decodes. Not a credential:
/// only good for prefilling the login form.
pub fn cookie_name(request: &Request) -> Option<String> {
    let bytes = BASE64.decode(cookie(request, USER_COOKIE)?).ok()?;
    String::from_utf8(bytes).ok()
}

/// The live session this request carries, checked against the store.
/// `None` for no cookie, an unknown or expired id, or a user cookie that
/// does not match the session's name.
pub fn authenticate(request: &Request, store: &dyn Store) -> Option<Session> {
    let id = session_id(request)?;
    let name = store.session_name(id)?;
    (cookie_name(request)? == name).then(|| Session {
        id: id.to_string(),
        name,
    })
}

/// The session id in the request's cookie, when it is shaped like ours (a
/// uuid): anything else was made up, and is neither asked of the store nor
/// kept anywhere (a logout during a Redis outage is kept to be written
/// later; 4 KiB of junk per made-up id would add up).
pub fn session_id(request: &Request) -> Option<&str> {
    let id = cookie(request, SESSION_COOKIE)?;
    uuid::Uuid::parse_str(id).ok().map(|_| id)
}

/// Whether the request carries the host cookie with the right key (with a
/// comparison whose time does not depend on where the key differs).
pub fn is_host(request: &Request, host_key: &str) -> bool {
    cookie(request, HOST_COOKIE).is_some_and(|given| {
        given.len() == host_key.len()
            && given
                .bytes()
                .zip(host_key.bytes())
                .fold(0u8, |differ, (a, b)| differ | (a ^ b))
                == 0
    })
}

/// The `Set-Cookie` value of the host cookie (see the Host section of the
/// contract): `SameSite=Strict`, so no other site can use it.
pub fn host_cookie(key: &str) -> String {
    let max_age = SESSION_TTL.as_secs();
    format!("{HOST_COOKIE}={key}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict")
}

/// A fresh session id: a uuid v4, 122 random bits.
pub fn new_session_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The two `Set-Cookie` values written at login.
pub fn login_cookies(session: &Session) -> [String; 2] {
    let max_age = SESSION_TTL.as_secs();
    [
        format!(
            "{USER_COOKIE}={}; Path=/; Max-Age={max_age}; SameSite=Lax",
            BASE64.encode(&session.name)
        ),
        format!(
            "{SESSION_COOKIE}={}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax",
            session.id
        ),
    ]
}

/// The two `Set-Cookie` values that expire both cookies at logout.
pub fn logout_cookies() -> [String; 2] {
    [
        format!("{USER_COOKIE}=; Path=/; Max-Age=0; SameSite=Lax"),
        format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"),
    ]
}

/// Where to send the browser after login: `next` when it is a local path
/// (starts with `/`, second character neither `/` nor `\`, no control
/// characters), else `/`. This is what stops `?next=//evil.example` from
/// turning the login page into an open redirect.
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(next)
            if next.starts_with('/')
                && !matches!(next.chars().nth(1), Some('/' | '\\'))
                && !next.chars().any(char::is_control) =>
        {
            next
        }
        _ => "/",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        for (next, want) in [
            (Some("/"), "/"),
            (Some("/room?x=1"), "/room?x=1"),
            (Some("//evil.example"), "/"),
            (Some("/\\evil.example"), "/"),
            (Some("https://evil.example"), "/"),
            (Some("/a\nb"), "/"),
            (Some(""), "/"),
            (None, "/"),
        ] {
            assert_eq!(safe_next(next), want, "{next:?}");
        }
    }

    #[test]
    fn cookies_carry_base64_name() {
        let session = Session {
            id: "id".into(),
            name: "Jürgen".into(),
        };
        let [user, sess] = login_cookies(&session);
        assert_eq!(
            user,
            "lanchat_user=SsO8cmdlbg==; Path=/; Max-Age=2592000; SameSite=Lax"
        );
        assert_eq!(
            sess,
            "lanchat_session=id; Path=/; Max-Age=2592000; HttpOnly; SameSite=Lax"
        );
    }
}
