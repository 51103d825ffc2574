//! Who may come in: the `Host` a request names, and how much one client
//! address may take.
//!
//! - **Host names.** Only requests naming this server are answered:
//!   `localhost`, a loopback or bound address, an address of one of the
//!   machine's interfaces, `NAME.local`, or a `--allow-host` name, with or
//!   without the port; anything else gets `421` (after DNS rebinding, a
//!   page elsewhere whose name now points here cannot use a visitor's
//!   browser against the chat); no `Host` gets `400`.
//! - **Per address** (`--max-per-address`, 0: off, behind a proxy): at most
//!   that many open connections (beyond: `503`), and that many new sessions
//!   a minute (beyond: `429`). One client cannot take every slot.
//! - **Refusals are logged as a summary**, at most one line a
//!   [`REFUSAL_LOG_EVERY`], not one per refused connection.
//!
//! Concurrency rule: each map has its own mutex, held for one lookup; the
//! accepting thread takes `open`, and never waits on anything else.

use crate::http::{Request, Response};
use crate::rate::RateLimits;
use log::warn;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Refused connections are counted, and logged at most this often.
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

pub struct Guard {
    /// Host names answered (lowercase, without brackets), any port.
    hosts: Vec<String>,
    /// `--allow-host` entries with a port: answered on that port only.
    hosts_with_port: Vec<String>,
    max_per_address: usize,
    /// Open connections per client address.
    open: Mutex<HashMap<IpAddr, usize>>,
    /// New sessions per client address.
    sessions: RateLimits<IpAddr>,
    /// Refusals not logged yet, and when the last line was (`None`: never).
    refused: Mutex<(u64, Option<Instant>)>,
}

impl Guard {
    /// A guard for a server bound to `bound`, answering `mdns` (`NAME.local`)
    /// and the `allowed` names too.
    pub fn new(bound: SocketAddr, mdns: &str, allowed: &[String], max_per_address: usize) -> Guard {
        let mut hosts = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
            bound.ip().to_string(),
            format!("{mdns}.local"),
        ];
        for interface in if_addrs::get_if_addrs().unwrap_or_default() {
            hosts.push(interface.ip().to_string());
        }
        let (with_port, names): (Vec<String>, Vec<String>) = allowed
            .iter()
            .map(|name| name.to_ascii_lowercase())
            .partition(|name| split_port(name).1.is_some());
        hosts.extend(names);
        Guard {
            hosts,
            hosts_with_port: with_port,
            max_per_address,
            open: Mutex::default(),
            sessions: RateLimits::new(max_per_address as f64 / 60.0, max_per_address as f64),
            refused: Mutex::new((0, None)),
        }
    }

    /// `Ok` when the request's `Host` names this server; else the answer.
    pub fn check_host(&self, request: &Request) -> Result<(), Response> {
        let Some(host) = request
            .header("host")
            .map(|h| h.trim().to_ascii_lowercase())
        else {
            return Err(Response::text(400, "a request needs a Host header"));
        };
        let (name, _) = split_port(&host);
        let loopback = name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if loopback || self.hosts.iter().any(|h| *h == name) || self.hosts_with_port.contains(&host)
        {
            return Ok(());
        }
        self.note_refusal();
        Err(Response::text(
            421,
            "this server does not answer to that name (start it with --allow-host NAME to add one)",
        ))
    }

    /// Counts a new connection from `ip`; false (and not counted) when that
    /// address is at its cap.
    pub fn enter(&self, ip: IpAddr) -> bool {
        if self.max_per_address == 0 {
            return true;
        }
        let mut open = crate::lock(&self.open);
        let count = open.entry(ip).or_default();
        if *count >= self.max_per_address {
            return false;
        }
        *count += 1;
        true
    }

    /// A connection from `ip` ended.
    pub fn leave(&self, ip: IpAddr) {
        if self.max_per_address == 0 {
            return;
        }
        let mut open = crate::lock(&self.open);
        if let Some(count) = open.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&ip);
            }
        }
    }

    /// Whether `ip` may start one more session now.
    pub fn new_session_allowed(&self, ip: Option<IpAddr>) -> bool {
        let (Some(ip), max) = (ip, self.max_per_address) else {
            return true;
        };
        if max == 0 {
            return true;
        }
        self.sessions.allow(&ip)
    }

    /// Counts a refused connection or request. The first is logged at
    /// once; later ones are counted, and logged as one line when the last
    /// line is [`REFUSAL_LOG_EVERY`] old (so a flood costs a line every 10
    /// seconds; what a flood's last seconds refused is told by the next).
    pub fn note_refusal(&self) {
        let mut refused = crate::lock(&self.refused);
        refused.0 += 1;
        let last = refused.1;
        if last.is_none_or(|last| last.elapsed() >= REFUSAL_LOG_EVERY) {
            let since = last
                .map(|last| format!(" in the last {:.0?}", last.elapsed()))
                .unwrap_or_default();
            warn!(
                "refused {} connections or requests{since} (full, per-address cap, or a foreign Host); \
                 more are logged as one line at most every {:?}",
                refused.0, REFUSAL_LOG_EVERY
            );
            *refused = (0, Some(Instant::now()));
        }
    }
}

/// `host:port` -> (`host`, `Some(port)`); brackets of IPv6 removed.
fn split_port(host: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((ip, tail)) => (ip, tail.strip_prefix(':')),
            None => (rest, None),
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, Some(port)),
        _ => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(host: Option<&str>) -> Request {
        Request {
            method: "GET".into(),
            path: "/".into(),
            query: None,
            headers: host
                .map(|h| ("Host".to_string(), h.to_string()))
                .into_iter()
                .collect(),
            body: vec![],
            peer: None,
        }
    }

    #[test]
    fn only_our_names_are_answered() {
        let bound: SocketAddr = "0.0.0.0:8000".parse().unwrap();
        let guard = Guard::new(
            bound,
            "lanchat",
            &["chat.school.example".into(), "proxy:8080".into()],
            64,
        );
        for ok in [
            "localhost:8000",
            "127.0.0.1:8000",
            "[::1]:8000",
            "LANCHAT.local",
            "chat.school.example",
            "proxy:8080",
            "127.0.0.5",
        ] {
            assert!(guard.check_host(&request(Some(ok))).is_ok(), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:8000",
            "proxy:9999",
            "lanchat.local.evil.example",
        ] {
            assert_eq!(
                guard
                    .check_host(&request(Some(refused)))
                    .unwrap_err()
                    .status,
                421,
                "{refused}"
            );
        }
        assert_eq!(guard.check_host(&request(None)).unwrap_err().status, 400);
    }

    #[test]
    fn addresses_are_capped() {
        let guard = Guard::new("127.0.0.1:0".parse().unwrap(), "lanchat", &[], 2);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!(guard.enter(a) && guard.enter(a));
        assert!(!guard.enter(a), "a third from the same address");
        assert!(guard.enter(b), "another address gets in");
        guard.leave(a);
        assert!(guard.enter(a));
        assert!(guard.new_session_allowed(Some(a)) && guard.new_session_allowed(Some(a)));
        assert!(!guard.new_session_allowed(Some(a)));
        assert!(guard.new_session_allowed(Some(b)));
    }
}
