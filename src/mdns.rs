//! A name on the LAN: `NAME.local` by multicast DNS (mDNS, RFC 6762).
//!
//! Laptops and iPhones resolve `.local` names by asking the whole network
//! ("who is lanchat.local?") on a multicast group; the machine with that
//! name answers. [`announce`] makes lanchat answer: an A record (the name
//! -> the LAN address) and an `_http._tcp` service (DNS-SD, RFC 6763: the
//! name and the port), so `http://lanchat.local:8000` works in a browser,
//! and `lanchat join` without a URL finds the server ([`find`]). Android
//! often resolves no `.local` name at all: the QR code carries the IP.
//!
//! The `mdns-sd` crate does the protocol. It is synchronous: it runs its
//! own thread (`mDNS_daemon`), and we talk to it through channels.
//!
//! Concurrency rule: nothing here holds a lock. The daemon thread owns its
//! sockets; the `mdns` thread only waits for the daemon's events, to log
//! them. An announcement that fails is a warning, never a reason not to
//! start: the chat works without its name.

use log::{debug, warn};
use mdns_sd::{DaemonEvent, IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// The DNS-SD service type of a web server.
pub const SERVICE_TYPE: &str = "_http._tcp.local.";
/// The name `lanchat join` looks for without a URL (the server's default).
pub const DEFAULT_NAME: &str = "lanchat";
/// How long `lanchat join` looks before giving up. An mDNS responder
/// answers within a second (RFC 6762 delays answers by at most 500 ms);
/// the rest covers a lost packet and the querier's first retry.
pub const FIND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a stopping server waits for its goodbye (a record with TTL 0,
/// so the others forget the name at once) to go out.
pub const GOODBYE_WAIT: Duration = Duration::from_millis(300);

/// A running announcement, kept by the server until it stops.
pub struct Announcement {
    daemon: ServiceDaemon,
    fullname: String,
}

/// Announces `NAME.local` -> `ip`, and an `_http._tcp` service at `port`,
/// on the interface that has `ip` only (not on `docker0` or a VPN, where
/// that address means nothing). Errors found later (a socket the system
/// refuses) are logged once as a warning by the `mdns` thread.
pub fn announce(name: &str, ip: Ipv4Addr, port: u16) -> Result<Announcement, String> {
    let daemon = ServiceDaemon::new().map_err(|e| e.to_string())?;
    // Selections apply in order: none, then the LAN interface alone.
    daemon
        .disable_interface(IfKind::All)
        .and_then(|()| daemon.enable_interface(IfKind::Addr(IpAddr::V4(ip))))
        .map_err(|e| e.to_string())?;
    let host = format!("{name}.local.");
    // `path=/`: the DNS-SD convention for where an `_http._tcp` site starts.
    let service = ServiceInfo::new(
        SERVICE_TYPE,
        name,
        &host,
        IpAddr::V4(ip),
        port,
        &[("path", "/")][..],
    )
    .map_err(|e| e.to_string())?;
    let fullname = service.get_fullname().to_string();
    let events = daemon.monitor().map_err(|e| e.to_string())?;
    daemon.register(service).map_err(|e| e.to_string())?;
    let announced = host.clone();
    let watched = std::thread::Builder::new()
        .name("mdns".into())
        .spawn(move || {
            let mut warned = false;
            // Ends when the daemon stops and drops its end of the channel.
            while let Ok(event) = events.recv() {
                match event {
                    DaemonEvent::Error(e) if !warned => {
                        warned = true;
                        warn!("mDNS: cannot announce {announced}: {e}");
                    }
                    DaemonEvent::NameChange(change) => {
                        warn!(
                            "mDNS: {} is taken on this network; announced {} instead",
                            change.original, change.new_name
                        );
                    }
                    event => debug!("mDNS: {event:?}"),
                }
            }
        });
    watched.map_err(|e| e.to_string())?;
    debug!("mDNS: announcing {host} -> {ip}, port {port}");
    Ok(Announcement { daemon, fullname })
}

impl Announcement {
    /// Says goodbye (so others forget the name now, not when its TTL runs
    /// out) and stops the daemon: at most [`GOODBYE_WAIT`].
    pub fn withdraw(&self) {
        if let Ok(done) = self.daemon.unregister(&self.fullname) {
            let _ = done.recv_timeout(GOODBYE_WAIT);
        }
        let _ = self.daemon.shutdown();
    }
}

/// Looks for the lanchat server announced as `NAME.local` on the LAN, for
/// at most [`FIND_TIMEOUT`]: browses `_http._tcp` services and takes the
/// first whose host is that name, with an IPv4 address.
pub fn find(name: &str) -> Result<SocketAddr, String> {
    let not_found = || format!("no server named {name}.local answered on this network");
    let daemon = ServiceDaemon::new().map_err(|e| format!("mDNS: {e}"))?;
    let events = daemon
        .browse(SERVICE_TYPE)
        .map_err(|e| format!("mDNS: {e}"))?;
    let host = format!("{name}.local.");
    let deadline = Instant::now() + FIND_TIMEOUT;
    let mut found = None;
    while let Ok(event) = events.recv_deadline(deadline) {
        if let ServiceEvent::ServiceResolved(service) = event
            && service.get_hostname().eq_ignore_ascii_case(&host)
            && let Some(ip) = service.get_addresses_v4().into_iter().min()
        {
            found = Some(SocketAddr::new(IpAddr::V4(ip), service.get_port()));
            break;
        }
    }
    let _ = daemon.shutdown();
    found.ok_or_else(not_found)
}
