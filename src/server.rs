//! The listener and the routes: one thread per connection.
//!
//! [`run`] binds the address, announces `NAME.local` (`mdns.rs`), prints
//! `listening on http://HOST:PORT`, the host link and (when `--qr` says so)
//! a QR code of the LAN address (`lan.rs`, `qr.rs`), then accepts forever.
//! Each accepted socket gets its own thread (named `conn-N`, with a small
//! stack), which reads one HTTP request and answers it; a `GET /ws` goes
//! to `connection.rs`, where the thread becomes that WebSocket's read pump.
//!
//! Concurrency rule: the accepting thread never waits on a client (a refusal
//! is one non-blocking write); everything a connection thread shares is in
//! [`Shared`], read-only but for atomics and the hub.
//!
//! Routes (the reference is `docs/PROTOCOL.md`):
//!
//! | request          | handler |
//! |------------------|---------|
//! | `GET /`          | the chat page, or `303 /login?next=/` |
//! | `GET /login`     | the login form (`/login.html`: `303 /login`) |
//! | `POST /login`    | [`login`]: `303` + cookies; `400` bad name or password length, `409` claimed, `403` wrong password or banned, `429` too many wrong passwords or new sessions |
//! | `POST /logout`   | end the session, close its WebSockets, expire the cookies, `303 /login` |
//! | `GET /ws`        | `connection::accept`: `403` foreign Origin, `426` not a handshake, `400` bad key, `401` no session, else `101` |
//! | `GET /healthz`   | JSON counts, `"ok"` or `"degraded"` |
//! | `GET /join`      | [`join_page`]: the projector page, a QR code of [`join_url`] (no session) |
//! | `GET /join.svg`  | that QR code alone (no session) |
//! | `POST /password` | [`set_password`]: `204`, `400`, `401`, `403` |
//! | `GET /host`      | the host link: `303` + host cookie, or `403` |
//! | `GET /poll`, `POST /say` | the chat without WebSocket (`poll.rs`) |
//! | `POST /files`, `GET /files/ID[/NAME]` | files (`files.rs`): `201`, `401`, `403`, `411`, `413`, `429`; the bytes or `404` |
//! | `GET /<file>`    | a file of the page, else `404` |
//! | other methods    | `405` on a known path, else `404` |
//!
//! Before any route: a head over `http::MAX_HEAD` gets `431`, a body over
//! `http::MAX_BODY` `413`, a malformed request `400`, and beyond
//! `--max-connections` the accepting thread answers `503`.

use crate::cluster::{self, Publisher};
use crate::config::{Config, QrMode};
use crate::connection::{self, Connection, Settings};
use crate::files::{self, FileLimits, UploadCounts};
use crate::guard::Guard;
use crate::http::{self, ReadError, Request, Response};
use crate::hub::{EventSink, Hub};
use crate::names;
use crate::page::Page;
use crate::poll::{self, PollLimits};
use crate::session;
use crate::store::{Claim, Session};
use crate::store::{MemoryStore, RedisStore, Store};
use crate::{lan, mdns, qr};
use log::{debug, error, info, warn};
use std::io::{IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
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
/// The name announced on the LAN (`NAME.local`), answered in `Host`.
const DEFAULT_MDNS_NAME: &str = "lanchat";
/// Bytes in a MiB, the unit of `--max-upload` and `--files-cap`.
const MIB: u64 = 1024 * 1024;

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
    /// The secret of the host link (`--host-key`, else drawn at start).
    pub host_key: String,
    /// The chat's address for people on the LAN, `http://ADDR:PORT/`: the
    /// host link's, without its path. What `/join` shows to a teacher who
    /// opened it as `localhost`.
    pub lan_url: String,
    /// `NAME.local`, announced until shutdown (`--mdns`).
    pub mdns: Option<mdns::Announcement>,
    /// Per-session rate limits of `/poll` and `/say`.
    pub poll_limits: PollLimits,
    /// `--max-upload` and `--files-cap`, in bytes.
    pub file_limits: FileLimits,
    /// Uploads per session (`429` past the limit).
    pub upload_counts: UploadCounts,
    /// Host names and the limits per client address.
    pub guard: Guard,
}

/// Starts lanchat with `config` and serves until the process is stopped.
pub fn run(config: Config) -> Result<(), String> {
    raise_open_files_limit();
    for warning in machine_limits(config.max_connections) {
        warn!("{warning}");
    }
    let store: Arc<dyn Store> = match &config.redis {
        None => Arc::new(MemoryStore::new()),
        Some(url) => Arc::new(RedisStore::connect(url)?),
    };
    // With Redis, other servers may share it: this one joins them.
    let cluster = config.redis.as_ref().map(|_| Publisher::new());
    let page = Page::new(config.www.clone()).map_err(|e| format!("--www: {e}"))?;
    let listener = listen(&config.host, config.port)
        .map_err(|e| format!("cannot listen on {}:{}: {e}", config.host, config.port))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let reachable = lan::reachable(address.ip());
    // The address to show people: the LAN's, else the bound one; bound to
    // every interface of a machine with no network, this machine's own
    // (`0.0.0.0` is no address to open).
    let shown = match (reachable.lan, address.ip()) {
        (Some(lan), _) => IpAddr::V4(lan),
        (None, ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        (None, ip) => ip,
    };
    let shown = SocketAddr::new(shown, address.port());
    info!("store: {}", store.kind());
    if store.kind() == "memory" {
        info!(
            "memory store: claimed names, passwords and moderation are forgotten when lanchat stops (--redis keeps them)"
        );
    }
    // The host link's key: given, or kept in Redis (shared by every server
    // of the chat), or new (128 random bits).
    let host_key = match &config.host_key {
        Some(given) => store.host_key(given, true),
        None => store.host_key(&new_host_key()?, false),
    };
    let events = cluster
        .clone()
        .map(|publisher| Arc::new(publisher) as Arc<dyn EventSink>);
    let hub = Arc::new(Hub::new(store, events));
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
            host_key: host_key.as_str().into(),
        },
        max_connections: config.max_connections,
        open: AtomicUsize::new(0),
        stopping: AtomicBool::new(false),
        host_key: host_key.clone(),
        lan_url: format!("http://{shown}/"),
        mdns: announce(&config, reachable.lan, address.port()),
        poll_limits: PollLimits::default(),
        file_limits: FileLimits {
            max_upload: config.max_upload_mib * MIB,
            cap: config.files_cap_mib * MIB,
        },
        upload_counts: UploadCounts::default(),
        guard: Guard::new(
            listener.local_addr().map_err(|e| e.to_string())?,
            config.mdns.as_deref().unwrap_or(DEFAULT_MDNS_NAME),
            &config.allow_hosts,
            config.max_per_address,
        ),
    });
    poll::start_reaper(shared.hub.clone(), config.heartbeat).map_err(|e| e.to_string())?;
    watch_signals(shared.clone())?;
    // Ready: only now tell the world (tests and tools wait for this line).
    print_start_lines(&shared, address, config.qr);
    if let (Some(name), Some(_)) = (&config.mdns, &shared.mdns) {
        info!("also at http://{name}.local:{}/ (mDNS)", address.port());
    }
    for other in &reachable.others {
        let also = SocketAddr::new(IpAddr::V4(other.ip), address.port());
        info!("also reachable at http://{also}/ ({})", other.name);
    }
    accept_loop(listener, shared);
    Ok(())
}

/// A new secret for the host link: 128 bits from the system's random
/// source, in hex (32 characters: the host link fits an 80-column line).
fn new_host_key() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| format!("no random host key: {e}"))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// The lines on stdout at start: where the server listens, the host link,
/// and the QR code of the LAN address with that address under it. All in
/// one write, so that whoever has read the first line can read the rest
/// (a process stopped right after it has printed them all).
fn print_start_lines(shared: &Shared, address: SocketAddr, qr: QrMode) {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let terminal = std::io::stdout().is_terminal();
    let key = utf8_percent_encode(&shared.host_key, NON_ALPHANUMERIC);
    let mut text = format!(
        "lanchat listening on http://{address}\nhost link: {}host?key={key}\n",
        shared.lan_url
    );
    let show = qr == QrMode::Always || (qr == QrMode::Auto && terminal);
    if show && let Some(code) = qr::Code::new(&shared.lan_url) {
        text.push('\n');
        text.push_str(&code.to_terminal(terminal));
        text.push_str(&format!("scan to join, or open {}\n\n", shared.lan_url));
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Announces `NAME.local` when `--mdns` asks for it and there is a LAN
/// address to give (none when bound to loopback). A failure is a warning.
fn announce(config: &Config, lan: Option<Ipv4Addr>, port: u16) -> Option<mdns::Announcement> {
    let (Some(name), Some(ip)) = (&config.mdns, lan) else {
        if config.mdns.is_some() {
            debug!("mDNS: no LAN address, nothing announced");
        }
        return None;
    };
    mdns::announce(name, ip, port)
        .map_err(|e| warn!("mDNS: cannot announce {name}.local: {e}"))
        .ok()
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
    shared.hub.stop_polls();
    shared.hub.close_all();
    let deadline = std::time::Instant::now() + SHUTDOWN_DRAIN;
    while shared.open.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if let Some(cluster) = &shared.cluster {
        cluster.close(SHUTDOWN_STORE_FLUSH / 2);
    }
    if let Some(announcement) = &shared.mdns {
        announcement.withdraw();
    }
    let unsaved = shared.hub.store().flush(SHUTDOWN_STORE_FLUSH / 2);
    if unsaved > 0 {
        error!("{unsaved} store writes could not be saved");
    }
    info!("bye");
    std::process::exit(0);
}

/// Every connection is a file descriptor, and a common default soft limit
/// (1,024 on Linux, 256 on macOS) would cap lanchat far below
/// `--max-connections`: raise it as far as allowed without privilege.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => debug!("open files limit: {limit}"),
        Err(e) => warn!("cannot raise the open files limit: {e}"),
    }
}

/// Connections the kernel may hold for us before we accept them. The
/// standard library's 128 is too few for a class arriving at once: beyond
/// it, a client's connect is retried only after a second. (The kernel caps
/// it at `net.core.somaxconn`, 4,096 by default.)
const LISTEN_BACKLOG: i32 = 4096;

/// A listening socket on `host:port` (with [`LISTEN_BACKLOG`]). Like
/// `TcpListener::bind`: the first address `host` resolves to that works.
fn listen(host: &str, port: u16) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let mut last = std::io::Error::other("no address to listen on");
    for address in std::net::ToSocketAddrs::to_socket_addrs(&(host, port))? {
        let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
        socket.set_reuse_address(true)?; // as std does: restart at once
        match socket
            .bind(&address.into())
            .and_then(|()| socket.listen(LISTEN_BACKLOG))
        {
            Ok(()) => return Ok(socket.into()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// What one connection takes from the machine, beyond its memory: a file
/// descriptor, a thread (two while a write pump runs), each with a process
/// id, and four memory mappings per thread: its stack and the guard page
/// below it, and the small stack Rust gives each thread for the signal
/// that reports a stack overflow, with its own guard page. Mappings are
/// counted for the one thread that lasts: a write pump runs only while its
/// client is behind (none at all in a storm of 10,000, measured).
const THREADS_PER_CONNECTION: u64 = 2;
const MAPS_PER_CONNECTION: u64 = 4;
/// What lanchat uses besides its connections (files, threads, mappings of
/// the program and its libraries), with room to spare.
const BASELINE: u64 = 1000;

/// The machine's limits that `--max-connections` would run into, one line
/// each with the knob to raise. Thread per connection has a cost at ten
/// thousand connections; better to say so at start than to fail at 8:00.
fn machine_limits(max_connections: usize) -> Vec<String> {
    let wanted = max_connections as u64;
    let threads = wanted * THREADS_PER_CONNECTION + BASELINE;
    let mut warnings = Vec::new();
    let mut check = |have: Option<u64>, need: u64, what: &str, knob: &str| {
        if let Some(have) = have.filter(|have| *have < need) {
            warnings.push(format!(
                "--max-connections {max_connections} needs about {need} {what}, this machine allows {have}: raise {knob}"
            ));
        }
    };
    let soft = |resource| rlimit::getrlimit(resource).ok().map(|(soft, _)| soft);
    check(
        soft(rlimit::Resource::NOFILE),
        wanted + BASELINE,
        "open files",
        "the hard limit (`ulimit -Hn`, or LimitNOFILE= in a systemd unit)",
    );
    check(
        soft(rlimit::Resource::NPROC),
        threads,
        "threads for this user",
        "`ulimit -u`",
    );
    let sysctl = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
    };
    check(
        sysctl("/proc/sys/kernel/threads-max"),
        threads,
        "threads",
        "kernel.threads-max (sysctl)",
    );
    check(
        sysctl("/proc/sys/kernel/pid_max"),
        threads,
        "process ids",
        "kernel.pid_max (sysctl)",
    );
    check(
        sysctl("/proc/sys/vm/max_map_count"),
        wanted * MAPS_PER_CONNECTION + BASELINE,
        "memory mappings",
        "vm.max_map_count (sysctl)",
    );
    warnings
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for n in 1.. {
        let (socket, peer) = match listener.accept() {
            Ok(_) if shared.stopping.load(Ordering::SeqCst) => continue, // dropped: closed
            Ok((socket, peer)) => (socket, peer.ip()),
            Err(e) => {
                error!("accept failed: {e}");
                std::thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        if shared.open.fetch_add(1, Ordering::SeqCst) >= shared.max_connections {
            shared.open.fetch_sub(1, Ordering::SeqCst);
            refuse_busy(socket, &shared.guard);
            continue;
        }
        if !shared.guard.enter(peer) {
            shared.open.fetch_sub(1, Ordering::SeqCst);
            refuse_busy(socket, &shared.guard);
            continue;
        }
        let for_thread = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("conn-{n}"))
            .stack_size(CONNECTION_STACK_BYTES)
            .spawn(move || {
                let _open = OpenConnection {
                    shared: &for_thread,
                    peer,
                };
                handle(socket, &for_thread);
            });
        if let Err(e) = spawned {
            // The closure (and the socket in it) is dropped: the client sees a close.
            error!("cannot start a connection thread: {e}");
            shared.open.fetch_sub(1, Ordering::SeqCst);
            shared.guard.leave(peer);
        }
    }
}

/// Counts a connection as open (in all, and for its address) until its
/// thread ends, even by a panic.
struct OpenConnection<'a> {
    shared: &'a Shared,
    peer: std::net::IpAddr,
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.shared.open.fetch_sub(1, Ordering::SeqCst);
        self.shared.guard.leave(self.peer);
    }
}

/// `503` from the accepting thread, which must never wait on a client:
/// the socket is non-blocking, and a short response fits its empty buffer.
fn refuse_busy(mut socket: TcpStream, guard: &Guard) {
    guard.note_refusal();
    let _ = socket.set_nonblocking(true);
    let _ = Response::text(503, "lanchat is full, try again later").write_to(&mut socket, false);
}

/// One connection's thread: read a request and answer it; an accepted
/// `GET /ws` then goes on as that WebSocket's read pump, on this thread,
/// once the frames that answered the request are gone (why:
/// `connection::run`).
fn handle(socket: TcpStream, shared: &Shared) {
    if let Some(connection) = answer(socket, shared) {
        connection::run(connection);
    }
}

/// Reads a request and answers it. An accepted `GET /ws` is answered
/// `101`, and its connection returned, to run.
#[inline(never)]
fn answer(mut socket: TcpStream, shared: &Shared) -> Option<Box<Connection<'_>>> {
    let _ = socket.set_nodelay(true); // we batch writes ourselves
    let (request, rest) = read(&mut socket, shared)?;
    if request.path == "/ws" && request.method == "GET" {
        return connection::accept(socket, request, rest, &shared.hub, &shared.settings);
    }
    respond(&mut socket, request, rest, shared);
    None
}

/// Reads a request (and the bytes after its head), or answers why not.
#[inline(never)]
fn read(socket: &mut TcpStream, shared: &Shared) -> Option<(Request, Vec<u8>)> {
    let peer = socket
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let (request, rest) = match http::read_request(socket) {
        Ok(read) => read,
        Err(ReadError::Closed) => return None,
        Err(ReadError::TimedOut) => {
            debug!("{peer}: request head timed out");
            return None;
        }
        Err(ReadError::Io(e)) => {
            debug!("{peer}: {e}");
            return None;
        }
        Err(error) => {
            let response = match error {
                ReadError::HeadTooLarge => Response::text(431, "request head too large"),
                ReadError::BodyTooLarge => Response::text(413, "request body too large"),
                ReadError::Malformed(why) => Response::text(400, why),
                _ => unreachable!("handled above"),
            };
            http::refuse(socket, &response);
            return None;
        }
    };
    debug!("{peer} {} {}", request.method, request.path);
    if let Err(refusal) = shared.guard.check_host(&request) {
        http::refuse(socket, &refusal);
        return None;
    }
    Some((request, rest))
}

/// Answers a request to any route but `/ws`.
#[inline(never)]
fn respond(socket: &mut TcpStream, request: Request, rest: Vec<u8>, shared: &Shared) {
    let key = &shared.settings.host_key;
    let body_read = rest.len() as u64; // of an upload's body, with the head
    let response = match (request.method.as_str(), request.path.as_str()) {
        ("POST", "/files") => {
            let (limits, counts) = (shared.file_limits, &shared.upload_counts);
            files::upload(&request, rest, socket, &shared.hub, limits, counts, key)
        }
        ("GET" | "HEAD", path) if path.starts_with("/files/") => {
            files::download(&request, &shared.hub, socket)
        }
        _ => route(&request, shared),
    };
    let _ = response.write_to(socket, request.method == "HEAD");
    // A refused upload whose body was not read (not a 408: that one was).
    if request.path == "/files" && response.status >= 400 && response.status != 408 {
        files::drain_refused(&request, body_read, socket);
    }
    http::close_gracefully(socket);
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
        ("/join", true) => join_page(request, shared),
        ("/join.svg", true) => match qr::Code::new(&join_url(request, shared)) {
            Some(code) => Response::new(200, "image/svg+xml", code.to_svg())
                .with_header("Cache-Control", "no-cache"),
            None => Response::text(500, "the address is too long for a QR code"),
        },
        // The raw template, like login.html's.
        ("/join.html", true) => Response::redirect("/join"),
        ("/logout", false) if request.method == "POST" => logout(request, shared),
        ("/password", false) if request.method == "POST" => set_password(request, shared),
        ("/poll", true) => poll::poll(
            request,
            &shared.hub,
            &shared.poll_limits,
            &shared.settings.host_key,
        ),
        ("/say", false) if request.method == "POST" => poll::say(
            request,
            &shared.hub,
            &shared.poll_limits,
            &shared.settings.host_key,
        ),
        ("/host", true) => match request.query_param("key") {
            Some(key) if key == *shared.settings.host_key => Response::redirect("/")
                .with_header("Set-Cookie", session::host_cookie(&key))
                .with_header("Cache-Control", "no-store"),
            _ => Response::text(403, "wrong or missing host key"),
        },
        ("/healthz", true) => {
            let (connections, users) = shared.hub.counts();
            let body = serde_json::json!({
                "status": if store.healthy() { "ok" } else { "degraded" },
                "connections": connections, "users": users, "store": store.kind(),
            });
            Response::json(200, &body).with_header("Cache-Control", "no-store")
        }
        ("/" | "/login" | "/healthz" | "/ws" | "/poll" | "/join" | "/join.svg", false) => {
            Response::text(405, "method not allowed").with_header("Allow", "GET, HEAD")
        }
        ("/logout" | "/password" | "/say", _) => {
            Response::text(405, "method not allowed").with_header("Allow", "POST")
        }
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

/// The address a QR code shows for this request: the one the browser used
/// (its `Host`), so that a phone reaches the server the same way; but when
/// that only works on this machine (`localhost`, `127.0.0.1`), the LAN
/// address of the host link line.
pub fn join_url(request: &Request, shared: &Shared) -> String {
    match request.header("host").map(str::trim) {
        Some(host) if is_plain_host(host) && !lan::is_loopback_host(host) => {
            format!("http://{host}/")
        }
        _ => shared.lan_url.clone(),
    }
}

/// A `Host` worth putting in a QR code: a name or address and a port, no
/// more (the header comes from the client, and ends up in a page).
fn is_plain_host(host: &str) -> bool {
    const LONGEST: usize = 255; // a DNS name, and a port
    (1..=LONGEST).contains(&host.len())
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

/// `GET /join`: the projector page, its QR code inline.
fn join_page(request: &Request, shared: &Shared) -> Response {
    let url = join_url(request, shared);
    let svg = qr::Code::new(&url)
        .map(|code| code.to_svg())
        .unwrap_or_default();
    Response::html(200, shared.page.join_page(&svg, url.trim_end_matches('/')))
        .with_header("Cache-Control", "no-store")
}

fn login_form(shared: &Shared, status: u16, name: &str, next: &str, error: &str) -> Response {
    Response::html(status, shared.page.login_form(name, next, error))
        .with_header("Cache-Control", "no-store")
}

/// `POST /login`: check the name and the request's right to it (the
/// contract's Claims), then start (or keep) a session and set both cookies.
fn login(request: &Request, shared: &Shared) -> Response {
    let store = shared.hub.store();
    let field = |name| http::form_field(&request.body, name);
    let raw_name = field("name").unwrap_or_default();
    let password = field("password").filter(|p| !p.is_empty());
    let next = field("next");
    let next = session::safe_next(next.as_deref());
    let refuse = |status, name: &str, reason: &str| login_form(shared, status, name, next, reason);
    let name = match names::validate(&raw_name) {
        Ok(name) => name,
        Err(reason) => return refuse(400, raw_name.trim(), &reason),
    };
    if let Some(Err(reason)) = password.as_deref().map(names::validate_password) {
        return refuse(400, &name, &reason);
    }
    let key = names::key(&name);
    if store.banned(&key).is_some() {
        return refuse(403, &name, "This name is banned from the chat.");
    }
    if store.password_failures(&key) >= names::MAX_PASSWORD_FAILURES {
        let why = "Too many wrong passwords for this name. Try again in a minute.";
        return refuse(429, &name, why);
    }
    // The browser's own live session of this name: logging in again keeps it.
    let session = match session::authenticate(request, store) {
        Some(current) if names::key(&current.name) == key => current,
        _ if !shared.guard.new_session_allowed(request.peer) => {
            let why = "Too many new sessions from your device. Try again in a minute.";
            return refuse(429, &name, why);
        }
        _ => match claim(store, &key, &name, password.as_deref()) {
            Ok(name) => Session {
                id: session::new_session_id(),
                name,
            },
            Err((status, reason)) => return refuse(status, &name, reason),
        },
    };
    store.create_session(&session);
    info!("{:?} logged in", session.name);
    let [user_cookie, session_cookie] = session::login_cookies(&session);
    Response::redirect(next)
        .with_header("Set-Cookie", user_cookie)
        .with_header("Set-Cookie", session_cookie)
}

/// May a new session have the name with this key? Yes (with its display
/// form) when it is free (it is claimed now, with `password` if given), or
/// when the password is right; else the status and the reason.
fn claim(
    store: &dyn Store,
    key: &str,
    name: &str,
    password: Option<&str>,
) -> Result<String, (u16, &'static str)> {
    let in_use = "That name (or one that looks the same, like Alice and alice) is in use right now. \
                  Choose another name, or log out there first.";
    let claimed = match store.claim(key) {
        Some(claimed) => claimed,
        None => {
            let claim = Claim {
                name: name.to_string(),
                password: password.map(names::hash_password),
            };
            return match store.claim_name(key, &claim) {
                None => Ok(claim.name),
                Some(_) => Err((409, in_use)), // someone was faster
            };
        }
    };
    match (&claimed.password, password) {
        (Some(hash), Some(given)) if names::password_matches(given, hash) => Ok(claimed.name),
        (Some(_), Some(_)) => {
            store.note_password_failure(key);
            Err((403, "Wrong password for this name."))
        }
        (Some(_), None) => Err((
            409,
            "This name is protected by a password. Enter it to log in here too, or choose another name.",
        )),
        (None, _) if !store.sessions_of(key).is_empty() => Err((409, in_use)),
        (None, _) => {
            // Its last session ended without the claim noticing (it
            // expired): the claim ends now, and the name is free.
            store.end_claim(key);
            claim(store, key, name, password)
        }
    }
}

/// `POST /password`: sets the name's password (`current` must match the
/// one it has, if any).
fn set_password(request: &Request, shared: &Shared) -> Response {
    let store = shared.hub.store();
    let Some(session) = session::authenticate(request, store) else {
        return Response::text(401, "log in first");
    };
    let password = http::form_field(&request.body, "password").unwrap_or_default();
    if let Err(reason) = names::validate_password(&password) {
        return Response::text(400, &reason);
    }
    let key = names::key(&session.name);
    let Some(claimed) = store.claim(&key) else {
        return Response::text(401, "log in first");
    };
    if store.password_failures(&key) >= names::MAX_PASSWORD_FAILURES {
        return Response::text(429, "too many wrong passwords: try again in a minute");
    }
    if let Some(hash) = &claimed.password {
        let current = http::form_field(&request.body, "current").unwrap_or_default();
        if !names::password_matches(&current, hash) {
            store.note_password_failure(&key);
            return Response::text(403, "the current password is wrong");
        }
    }
    store.set_password(&key, &names::hash_password(&password));
    info!("{:?} set a password", session.name);
    Response::new(204, "text/plain; charset=utf-8", Vec::new())
}

fn logout(request: &Request, shared: &Shared) -> Response {
    // Only a live session is ended: a made-up one costs a lookup, and
    // nothing is kept for it (nor queued for Redis or the other servers).
    let store = shared.hub.store();
    if let Some(id) = session::session_id(request).filter(|id| store.session_name(id).is_some()) {
        store.end_session(id);
        shared.hub.close_session(id);
    }
    let [user_cookie, session_cookie] = session::logout_cookies();
    Response::redirect("/login")
        .with_header("Set-Cookie", user_cookie)
        .with_header("Set-Cookie", session_cookie)
}
