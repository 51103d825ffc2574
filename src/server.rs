//! The listener and the routes: one thread per connection.
//!
//! [`run`] binds the address, prints `listening on http://HOST:PORT`, then
//! accepts forever. Each accepted socket gets its own thread (named
//! `conn-N`, with a small stack), which reads one HTTP request and answers
//! it; a `GET /ws` that passes the checks becomes a WebSocket and the thread
//! goes on as that connection's read pump (see `connection.rs`).
//!
//! Routes (the contract, `PROTOCOL.md`, is the reference):
//!
//! | request          | handler |
//! |------------------|---------|
//! | `GET /`          | the chat page, or `303 /login?next=/` |
//! | `GET /login`     | the login form |
//! | `POST /login`    | [`login`]: `303` + cookies, `400` bad name, `409` name in use |
//! | `POST /logout`   | end the session, expire the cookies |
//! | `GET /ws`        | [`upgrade`]: `403` foreign Origin, `401` no session, else `101` |
//! | `GET /healthz`   | JSON counts |
//! | `GET /<file>`    | a file of the page |

use crate::cluster::{self, Publisher};
use crate::config::Config;
use crate::connection::{self, Settings};
use crate::http::{self, ReadError, Request, Response};
use crate::hub::Hub;
use crate::page::Page;
use crate::session::{self, SESSION_COOKIE, Session};
use crate::store::{MemoryStore, RedisStore, Store};
use log::{debug, error, info, warn};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Stack of a connection thread (HTTP, then the read pump). Only touched
/// pages cost memory; this is a ceiling, far above what a request needs.
pub const CONNECTION_STACK_BYTES: usize = 256 * 1024;
/// Pause after a failed `accept` (e.g. out of file descriptors), so the
/// loop does not spin while connections close and free some.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At shutdown, how long connections get to receive their close frame and
/// end, then how long the store gets to write what is pending. Together
/// under the contract's 5 seconds.
const SHUTDOWN_DRAIN: Duration = Duration::from_millis(2500);
const SHUTDOWN_STORE_FLUSH: Duration = Duration::from_millis(1500);

/// Everything the connection threads share, read-only but for the hub.
pub struct Shared {
    pub hub: Arc<Hub>,
    /// The queue to the other servers, with `--redis`.
    pub cluster: Option<Publisher>,
    pub page: Page,
    pub settings: Settings,
    pub max_connections: usize,
    /// Open connections, HTTP and WebSocket (for `--max-connections`).
    pub open: AtomicUsize,
    /// Set on SIGINT/SIGTERM: accept nothing more.
    pub stopping: AtomicBool,
}

/// Starts lanchat with `config` and serves until the process is stopped.
pub fn run(config: Config) -> Result<(), String> {
    raise_open_files_limit();
    let store: Arc<dyn Store> = match &config.redis {
        None => Arc::new(MemoryStore::new()),
        Some(url) => Arc::new(RedisStore::connect(url)?),
    };
    // With Redis, other servers may share it: this one joins them.
    let cluster = config.redis.as_ref().map(|_| Publisher::new());
    let page = Page::new(config.www.clone()).map_err(|e| format!("--www: {e}"))?;
    let listener = TcpListener::bind((config.host.as_str(), config.port))
        .map_err(|e| format!("cannot listen on {}:{}: {e}", config.host, config.port))?;
    info!("store: {}", store.kind());
    let hub = Arc::new(Hub::new(store, cluster.clone()));
    hub.start_fan_out().map_err(|e| e.to_string())?;
    if let (Some(url), Some(publisher)) = (&config.redis, &cluster) {
        cluster::start(url, hub.clone(), publisher.clone())?;
    }
    let shared = Arc::new(Shared {
        hub,
        cluster,
        page,
        settings: Settings {
            heartbeat: config.heartbeat,
        },
        max_connections: config.max_connections,
        open: AtomicUsize::new(0),
        stopping: AtomicBool::new(false),
    });
    watch_signals(shared.clone())?;
    // Ready: only now tell the world (tests and tools wait for this line).
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    println!("lanchat listening on http://{address}");
    let _ = std::io::stdout().flush();
    if address.ip().is_unspecified() {
        for interface in if_addrs::get_if_addrs().unwrap_or_default() {
            if !interface.is_loopback() && interface.ip().is_ipv4() {
                info!(
                    "on the LAN, open http://{}:{}",
                    interface.ip(),
                    address.port()
                );
            }
        }
    }
    accept_loop(listener, shared);
    Ok(())
}

/// On SIGINT or SIGTERM, shut down gracefully (see [`shut_down`]); on a
/// second one, stop at once.
fn watch_signals(shared: Arc<Shared>) -> Result<(), String> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(|e| e.to_string())?;
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut received = signals.forever();
            if received.next().is_some() {
                let _ = std::thread::Builder::new()
                    .name("shutdown".into())
                    .spawn(move || shut_down(&shared));
            }
            if received.next().is_some() {
                warn!("second signal: exiting now");
                std::process::exit(1);
            }
        });
    spawned.map(drop).map_err(|e| e.to_string())
}

/// Stops accepting, closes every WebSocket with `1001`, lets the store
/// finish its pending writes, and exits 0: all within 5 seconds.
fn shut_down(shared: &Shared) {
    shared.stopping.store(true, Ordering::SeqCst);
    let (connections, _) = shared.hub.counts();
    info!("shutting down: closing {connections} connections");
    shared.hub.close_all();
    let deadline = std::time::Instant::now() + SHUTDOWN_DRAIN;
    while shared.open.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if let Some(cluster) = &shared.cluster {
        cluster.close(SHUTDOWN_STORE_FLUSH / 2);
    }
    let unsaved = shared.hub.store().flush(SHUTDOWN_STORE_FLUSH / 2);
    if unsaved > 0 {
        error!("{unsaved} store writes could not be saved");
    }
    info!("bye");
    std::process::exit(0);
}

/// Every connection is a file descriptor, and a common default soft limit
/// (1,024) would cap lanchat far below `--max-connections`: raise it to the
/// hard limit, which needs no privilege.
fn raise_open_files_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: plain system calls with a valid pointer to a local struct.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
                && limit.rlim_cur < limit.rlim_max
            {
                let wanted = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                    limit = wanted;
                }
            }
        }
        debug!("open files limit: {}", limit.rlim_cur);
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for n in 1.. {
        let socket = match listener.accept() {
            Ok(_) if shared.stopping.load(Ordering::SeqCst) => continue, // dropped: closed
            Ok((socket, _)) => socket,
            Err(e) => {
                error!("accept failed: {e}");
                std::thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        if shared.open.fetch_add(1, Ordering::SeqCst) >= shared.max_connections {
            shared.open.fetch_sub(1, Ordering::SeqCst);
            refuse_busy(socket);
            continue;
        }
        let for_thread = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("conn-{n}"))
            .stack_size(CONNECTION_STACK_BYTES)
            .spawn(move || {
                let _open = OpenConnection(&for_thread.open);
                handle(socket, &for_thread);
            });
        if let Err(e) = spawned {
            // The closure (and the socket in it) is dropped: the client sees a close.
            error!("cannot start a connection thread: {e}");
            shared.open.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Counts a connection as open until its thread ends, even by a panic.
struct OpenConnection<'a>(&'a AtomicUsize);

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `503` from the accepting thread, which must never wait on a client:
/// the socket is non-blocking, and a short response fits its empty buffer.
fn refuse_busy(mut socket: TcpStream) {
    warn!("connection limit reached: refusing a connection");
    let _ = socket.set_nonblocking(true);
    let _ = Response::text(503, "lanchat is full, try again later").write_to(&mut socket, false);
}

/// One connection's thread: read a request, answer it.
fn handle(mut socket: TcpStream, shared: &Shared) {
    let _ = socket.set_nodelay(true); // we batch writes ourselves
    let peer = socket
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let (request, rest) = match http::read_request(&mut socket) {
        Ok(read) => read,
        Err(ReadError::Closed) => return,
        Err(ReadError::TimedOut) => return debug!("{peer}: request head timed out"),
        Err(ReadError::Io(e)) => return debug!("{peer}: {e}"),
        Err(error) => {
            let response = match error {
                ReadError::HeadTooLarge => Response::text(431, "request head too large"),
                ReadError::BodyTooLarge => Response::text(413, "request body too large"),
                ReadError::Malformed(why) => Response::text(400, why),
                _ => unreachable!("handled above"),
            };
            let _ = response.write_to(&mut socket, false);
            http::close_gracefully(&socket);
            return;
        }
    };
    debug!("{peer} {} {}", request.method, request.path);
    if request.path == "/ws" && request.method == "GET" {
        return upgrade(socket, request, rest, shared);
    }
    let response = route(&request, shared);
    let _ = response.write_to(&mut socket, request.method == "HEAD");
    http::close_gracefully(&socket);
}

fn route(request: &Request, shared: &Shared) -> Response {
    let store = shared.hub.store();
    let get = matches!(request.method.as_str(), "GET" | "HEAD");
    match (request.path.as_str(), get) {
        ("/", true) => match session::authenticate(request, store) {
            Some(_) => serve_file(shared, "/index.html").with_header("Cache-Control", "no-store"),
            None => Response::redirect("/login?next=/"),
        },
        // The raw template would show its placeholders: send people to the form.
        ("/login.html", true) => Response::redirect("/login"),
        ("/login", true) => {
            let name = session::cookie_name(request).unwrap_or_default();
            let next = request.query_param("next");
            login_form(shared, 200, &name, session::safe_next(next.as_deref()), "")
        }
        ("/login", false) if request.method == "POST" => login(request, shared),
        ("/logout", false) if request.method == "POST" => logout(request, shared),
        ("/healthz", true) => {
            let (connections, users) = shared.hub.counts();
            let body = serde_json::json!({
                "status": if store.healthy() { "ok" } else { "degraded" },
                "connections": connections, "users": users, "store": store.kind(),
            });
            Response::json(200, &body).with_header("Cache-Control", "no-store")
        }
        ("/" | "/login" | "/healthz" | "/ws", false) => {
            Response::text(405, "method not allowed").with_header("Allow", "GET, HEAD")
        }
        ("/logout", _) => Response::text(405, "method not allowed").with_header("Allow", "POST"),
        (path, true) => serve_file(shared, path),
        _ => Response::text(404, "not found"),
    }
}

fn serve_file(shared: &Shared, path: &str) -> Response {
    match shared.page.file(path) {
        Some((bytes, content_type)) => Response::new(200, content_type, bytes.into_owned())
            .with_header("Cache-Control", "no-cache"),
        None => Response::text(404, "not found"),
    }
}

fn login_form(shared: &Shared, status: u16, name: &str, next: &str, error: &str) -> Response {
    Response::html(status, shared.page.login_form(name, next, error))
        .with_header("Cache-Control", "no-store")
}

/// `POST /login`: check the name, refuse it while another session has it
/// open, else start (or refresh) a session and set both cookies.
fn login(request: &Request, shared: &Shared) -> Response {
    let store = shared.hub.store();
    let raw_name = http::form_field(&request.body, "name").unwrap_or_default();
    let next = http::form_field(&request.body, "next");
    let next = session::safe_next(next.as_deref());
    let name = match session::validate_name(&raw_name) {
        Ok(name) => name,
        Err(reason) => return login_form(shared, 400, raw_name.trim(), next, reason),
    };
    // The browser's current session keeps its id if it already holds this name.
    let current = session::cookie(request, SESSION_COOKIE)
        .filter(|id| store.session_name(id).as_deref() == Some(name.as_str()))
        .map(str::to_string);
    if shared.hub.taken_by_other_session(&name, current.as_deref()) {
        let reason = "That name is in use right now. Please choose another.";
        return login_form(shared, 409, &name, next, reason);
    }
    let session = Session {
        id: current.unwrap_or_else(session::new_session_id),
        name,
    };
    store.create_session(&session);
    store.add_user(&session.name);
    info!("{:?} logged in", session.name);
    let [user_cookie, session_cookie] = session::login_cookies(&session);
    Response::redirect(next)
        .with_header("Set-Cookie", user_cookie)
        .with_header("Set-Cookie", session_cookie)
}

fn logout(request: &Request, shared: &Shared) -> Response {
    if let Some(id) = session::cookie(request, SESSION_COOKIE) {
        shared.hub.store().end_session(id);
        shared.hub.close_session(id);
    }
    let [user_cookie, session_cookie] = session::logout_cookies();
    Response::redirect("/login")
        .with_header("Set-Cookie", user_cookie)
        .with_header("Set-Cookie", session_cookie)
}

/// `GET /ws`: check, answer `101`, and run the connection on this thread.
/// The handshake is done here rather than by `tungstenite::accept` so that
/// one HTTP parser serves every route and the checks answer in plain HTTP.
fn upgrade(mut socket: TcpStream, request: Request, rest: Vec<u8>, shared: &Shared) {
    let refusal = if !same_origin(&request) {
        Some(Response::text(403, "cross-origin WebSocket refused"))
    } else if !is_websocket_handshake(&request) {
        Some(
            Response::text(426, "this is a WebSocket endpoint")
                .with_header("Sec-WebSocket-Version", "13"),
        )
    } else {
        None
    };
    let session = session::authenticate(&request, shared.hub.store());
    let (key, session) = match (refusal, session, request.header("sec-websocket-key")) {
        (Some(response), _, _) => return refuse(socket, response),
        (None, None, _) => return refuse(socket, Response::text(401, "log in first")),
        (None, Some(session), Some(key)) => (key, session),
        (None, Some(_), None) => unreachable!("checked by is_websocket_handshake"),
    };
    let accept = tungstenite::handshake::derive_accept_key(key.trim().as_bytes());
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if socket.write_all(head.as_bytes()).is_err() {
        return;
    }
    if let Err(e) = connection::run(socket, rest, session, &shared.hub, shared.settings) {
        warn!("cannot start a WebSocket connection: {e}");
    }
}

fn refuse(mut socket: TcpStream, response: Response) {
    let _ = response.write_to(&mut socket, false);
    http::close_gracefully(&socket);
}

fn is_websocket_handshake(request: &Request) -> bool {
    let has_token = |header: &str, token: &str| {
        request
            .header(header)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    has_token("upgrade", "websocket")
        && has_token("connection", "upgrade")
        && request.header("sec-websocket-version").map(str::trim) == Some("13")
        && request
            .header("sec-websocket-key")
            .is_some_and(|k| !k.trim().is_empty())
}

/// Cross-site WebSocket hijacking defence: a browser always sends `Origin`,
/// and a page from another site must not use our cookies to connect. Tools
/// that send no `Origin` (websocat, scripts) are let through.
pub fn same_origin(request: &Request) -> bool {
    let Some(origin) = request.header("origin") else {
        return true;
    };
    let Some((scheme, authority)) = origin.trim().split_once("://") else {
        return false;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    let Some(host) = request.header("host") else {
        return false;
    };
    host_port(authority, default_port)
        .is_some_and(|o| Some(o) == host_port(host.trim(), default_port))
}

/// `host[:port]` (or `[v6]:port`) lowercased, with the default port filled in.
fn host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    let authority = authority.to_ascii_lowercase();
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => {
            (&authority[..i], authority[i + 1..].parse().ok()?)
        }
        _ => (authority.as_str(), default_port),
    };
    (!host.is_empty() && !host.contains('/')).then(|| (host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            path: "/ws".into(),
            query: None,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: vec![],
        }
    }

    #[test]
    fn origin_must_match_host() {
        let ok =
            |origin: &str, host: &str| same_origin(&request(&[("Origin", origin), ("Host", host)]));
        assert!(ok("http://127.0.0.1:8000", "127.0.0.1:8000"));
        assert!(ok("http://LanChat.local", "lanchat.local:80"));
        assert!(ok("https://[::1]:9000", "[::1]:9000"));
        assert!(ok("https://example.org", "example.org"));
        assert!(!ok("http://evil.example:8000", "127.0.0.1:8000"));
        assert!(!ok("http://127.0.0.1:8001", "127.0.0.1:8000"));
        assert!(!ok("https://example.org", "example.org:80"));
        assert!(!ok("null", "127.0.0.1:8000"));
        assert!(same_origin(&request(&[("Host", "x")])));
    }
}
