//! `NAME.local` by multicast DNS, resolved by an in-process resolver
//! (`mdns-sd`), and `lanchat join` finding the server without a URL.
//!
//! Multicast goes to every machine on a network, and tests must not talk
//! to anything but this machine. So the test runs itself again inside a
//! network namespace of its own (`unshare --net`, as root), with a made-up
//! LAN: a veth pair `lan0`/`lan1` with 10.254.0.1/24 and the default route
//! on `lan0`, and a `docker0` bridge (172.17.0.1) as a decoy. Multicast
//! there loops back to the namespace's own sockets and reaches nobody
//! else. Where the machine does not allow that (no root, no `unshare`, no
//! veth), the test is skipped and says why.

mod common;

use common::*;
use mdns_sd::{HostnameResolutionEvent, ServiceDaemon, ServiceEvent};
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Set inside the namespace, so the test knows it is there.
const INSIDE: &str = "LANCHAT_TEST_NETNS";
/// The made-up LAN address of this machine inside the namespace.
const LAN: Ipv4Addr = Ipv4Addr::new(10, 254, 0, 1);

/// The namespace's network, then the command given as arguments.
const SETUP: &str = r#"
set -e
ip link set lo up
ip link add lan0 type veth peer name lan1
ip addr add 10.254.0.1/24 dev lan0
ip link set lan0 up
ip link set lan1 up
ip route add default via 10.254.0.254 dev lan0
ip link add docker0 type bridge
ip addr add 172.17.0.1/16 dev docker0
ip link set docker0 up
exec "$@"
"#;

/// Says that a test was skipped, and why, where it is seen: straight to
/// stderr (the test harness captures `println!` of a passing test).
fn skipped(test: &str, reason: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
}

/// Runs the test named `name` of this binary again inside a fresh network
/// namespace; `Err` says why that is not possible here.
fn run_inside_a_namespace(name: &str) -> Result<(), String> {
    let probe = Command::new("unshare")
        .args(["--net", "--", "sh", "-c", SETUP, "sh", "true"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    if !probe.status.success() {
        return Err(format!(
            "cannot make a network namespace with a veth pair here: {}",
            String::from_utf8_lossy(&probe.stderr).trim()
        ));
    }
    let me = std::env::current_exe().unwrap();
    let output = Command::new("unshare")
        .args(["--net", "--", "sh", "-c", SETUP, "sh"])
        .arg(me)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "inside the namespace:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// A server bound to every interface announces `lanchat.local` with the
/// address of the interface that has the default route (not `docker0`),
/// and an `_http._tcp` service with its port. `lanchat join` without a
/// URL finds it.
#[test]
fn the_name_is_announced_and_found() {
    if std::env::var_os(INSIDE).is_none() {
        if let Err(reason) = run_inside_a_namespace("the_name_is_announced_and_found") {
            skipped("the_name_is_announced_and_found", &reason);
        }
        return;
    }
    let server = Server::start(&["--host", "0.0.0.0", "--qr", "never"]);
    let port = server.addr.port();

    // The LAN address, in the host link and in the code for `localhost`.
    let host_link = server.next_line();
    assert!(
        host_link.starts_with(&format!("host link: http://{LAN}:{port}/host?key=")),
        "{host_link}"
    );
    let svg = raw_http(
        &server,
        format!("GET /join.svg HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n").as_bytes(),
    );
    assert_eq!(
        decode_qr(&svg_modules(&svg.body)),
        format!("http://{LAN}:{port}/")
    );

    // The name, resolved as a laptop would.
    let resolver = ServiceDaemon::new().unwrap();
    let timeout_ms = TIMEOUT.as_millis() as u64;
    let events = resolver
        .resolve_hostname("lanchat.local.", Some(timeout_ms))
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let addresses = loop {
        match events.recv_deadline(deadline) {
            Ok(HostnameResolutionEvent::AddressesFound(_, found)) => break found,
            Ok(HostnameResolutionEvent::SearchTimeout(_)) | Err(_) => {
                panic!("lanchat.local was not resolved")
            }
            Ok(_) => {}
        }
    };
    let addresses: Vec<IpAddr> = addresses.iter().map(|a| a.to_ip_addr()).collect();
    assert_eq!(addresses, [IpAddr::V4(LAN)]);

    // The service: the port.
    let events = resolver.browse("_http._tcp.local.").unwrap();
    let service = loop {
        match events.recv_deadline(deadline) {
            Ok(ServiceEvent::ServiceResolved(service)) => break service,
            Ok(_) => {}
            Err(_) => panic!("no _http._tcp service"),
        }
    };
    assert_eq!(service.get_hostname(), "lanchat.local.");
    assert_eq!(service.get_port(), port);
    let _ = resolver.shutdown();

    // `lanchat join` without a URL looks for lanchat.local.
    let (mut alice, _) = Client::join(&server, "alice");
    let mut bot = JoinProcess::start(&["--name", "bot"]);
    bot.type_line("found you");
    bot.end_input();
    assert_eq!(alice.recv_type("message")["text"], "found you");
    assert_eq!(bot.wait_exit(), Some(0), "stderr: {}", bot.stderr());
    assert!(bot.stderr().contains("found lanchat.local"));
}

/// Bound to loopback, or with `--no-mdns`, nothing is announced.
#[test]
fn nothing_is_announced_on_loopback_or_with_no_mdns() {
    if std::env::var_os(INSIDE).is_none() {
        if let Err(reason) =
            run_inside_a_namespace("nothing_is_announced_on_loopback_or_with_no_mdns")
        {
            skipped("nothing_is_announced_on_loopback_or_with_no_mdns", &reason);
        }
        return;
    }
    let _loopback = Server::start(&["--mdns", "on-loopback", "--qr", "never"]);
    let _off = Server::start(&["--host", "0.0.0.0", "--no-mdns", "--qr", "never"]);
    // A server that does announce, as a witness that the resolver works:
    // once it has answered, the other two had as long to answer, and did not.
    let _witness = Server::start(&["--host", "0.0.0.0", "--mdns", "witness", "--qr", "never"]);
    let resolver = ServiceDaemon::new().unwrap();
    let events = resolver.browse("_http._tcp.local.").unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let mut hosts = Vec::new();
    while !hosts.iter().any(|h| h == "witness.local.") {
        match events.recv_deadline(deadline) {
            Ok(ServiceEvent::ServiceResolved(service)) => {
                hosts.push(service.get_hostname().to_string())
            }
            Ok(_) => {}
            Err(_) => panic!("the witness was not found: {hosts:?}"),
        }
    }
    assert_eq!(hosts, ["witness.local."], "only the witness announces");
    let _ = resolver.shutdown();
}
