//! The LAN address: the one address people on the network should open.
//!
//! A laptop has several IPv4 addresses: the Wi-Fi or Ethernet one, and often
//! `docker0` (172.17.0.1), a VPN's, a link-local one (169.254.x.x). Only the
//! first is reachable by the phones in the room, and it is the one the
//! machine itself uses to reach the rest of the world: the address of the
//! interface that carries the *default route*. On Linux that is read from
//! `/proc/net/route`; elsewhere (or with no default route) a guess by name
//! and range stands in. The other addresses are listed as text at start, in
//! case the guess is wrong.
//!
//! Concurrency rule: none; [`find`] is called once, at start, by `run`.
//! The choice itself ([`choose`]) is a pure function, tested below.

use std::net::{IpAddr, Ipv4Addr};

/// An IPv4 address of one of this machine's interfaces.
#[derive(Debug, Clone, PartialEq)]
pub struct Interface {
    pub name: String,
    pub ip: Ipv4Addr,
}

/// The result of looking: the address to show people, and the others.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Addresses {
    /// The address of the interface with the default route, if any.
    pub lan: Option<Ipv4Addr>,
    /// Every other usable IPv4 address (not loopback, not link-local).
    pub others: Vec<Interface>,
}

/// Looks at this machine's interfaces and routing table.
pub fn find() -> Addresses {
    let interfaces: Vec<Interface> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|interface| match interface.ip() {
            IpAddr::V4(ip) => Some(Interface {
                name: interface.name,
                ip,
            }),
            IpAddr::V6(_) => None,
        })
        .collect();
    let routes = std::fs::read_to_string("/proc/net/route").ok();
    choose(routes.as_deref(), &interfaces)
}

/// The address that a server bound to `bound` should show people: the
/// bound address itself when it is a specific address (not loopback),
/// the LAN address when bound to every interface, none on loopback.
pub fn reachable(bound: IpAddr) -> Addresses {
    if bound.is_loopback() {
        return Addresses::default(); // only this machine can connect
    }
    if bound.is_unspecified() {
        return find();
    }
    match bound {
        IpAddr::V4(ip) => Addresses {
            lan: Some(ip),
            others: Vec::new(),
        },
        // An IPv6-only bind: no IPv4 to show, the bound address is used.
        IpAddr::V6(_) => Addresses::default(),
    }
}

/// Picks the LAN address among `interfaces`, given the text of
/// `/proc/net/route` when there is one.
pub fn choose(routes: Option<&str>, interfaces: &[Interface]) -> Addresses {
    let usable: Vec<&Interface> = interfaces
        .iter()
        .filter(|i| !i.ip.is_loopback() && !i.ip.is_link_local() && !i.ip.is_unspecified())
        .collect();
    let by_route = routes.and_then(default_route_interface).and_then(|name| {
        usable
            .iter()
            .find(|interface| interface.name == name)
            .map(|interface| interface.ip)
    });
    // No routing table to read (macOS, Windows) or no default route: the
    // first private address of an interface that does not look virtual.
    let lan = by_route.or_else(|| {
        usable
            .iter()
            .filter(|interface| !looks_virtual(&interface.name))
            .min_by_key(|interface| !interface.ip.is_private())
            .map(|interface| interface.ip)
    });
    let others = usable
        .into_iter()
        .filter(|interface| Some(interface.ip) != lan)
        .cloned()
        .collect();
    Addresses { lan, others }
}

/// The interface of the default route with the lowest metric, from the
/// text of `/proc/net/route`: one line per route, fields separated by
/// white space, `Destination` and `Mask` in hexadecimal, `Flags` with
/// bit 0x1 for "up".
fn default_route_interface(table: &str) -> Option<String> {
    const RTF_UP: u32 = 0x1;
    table
        .lines()
        .skip(1) // the header line
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (name, destination, flags, metric, mask) = (
                *fields.first()?,
                *fields.get(1)?,
                u32::from_str_radix(fields.get(3)?, 16).ok()?,
                fields.get(6)?.parse::<u32>().ok()?,
                *fields.get(7)?,
            );
            let default = destination == "00000000" && mask == "00000000";
            (default && flags & RTF_UP != 0).then(|| (metric, name.to_string()))
        })
        .min()
        .map(|(_, name)| name)
}

/// Interfaces that containers, virtual machines and VPNs add: never the
/// one the people in the room can reach.
fn looks_virtual(name: &str) -> bool {
    const PREFIXES: [&str; 12] = [
        "docker",
        "br-",
        "veth",
        "virbr",
        "vmnet",
        "vboxnet",
        "tun",
        "tap",
        "wg",
        "utun",
        "tailscale",
        "zt",
    ];
    PREFIXES.iter().any(|prefix| name.starts_with(prefix))
}

/// Whether the host part of a `Host` header (`name`, `name:port`,
/// `[v6]:port`) names this machine from itself only: `localhost`, a
/// loopback address, or the unspecified address. A QR code of such a host
/// would be useless on a phone.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(name, _port)| name)
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interface(name: &str, ip: [u8; 4]) -> Interface {
        Interface {
            name: name.into(),
            ip: Ipv4Addr::from(ip),
        }
    }

    const ROUTES: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0
wlan0\t0001A8C0\t00000000\t0001\t0\t0\t600\t00FFFFFF\t0\t0\t0
";

    #[test]
    fn the_default_route_with_the_lowest_metric_wins() {
        let interfaces = [
            interface("lo", [127, 0, 0, 1]),
            interface("docker0", [172, 17, 0, 1]),
            interface("wlan0", [192, 168, 1, 23]),
            interface("eth0", [10, 0, 0, 5]),
            interface("eth0", [169, 254, 3, 4]),
        ];
        let found = choose(Some(ROUTES), &interfaces);
        assert_eq!(found.lan, Some(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(
            found.others,
            [
                interface("docker0", [172, 17, 0, 1]),
                interface("wlan0", [192, 168, 1, 23])
            ]
        );
    }

    #[test]
    fn without_a_routing_table_a_real_looking_private_address_is_guessed() {
        let interfaces = [
            interface("utun3", [10, 8, 0, 2]),
            interface("en0", [203, 0, 113, 9]),
            interface("en1", [192, 168, 1, 23]),
            interface("docker0", [172, 17, 0, 1]),
        ];
        assert_eq!(
            choose(None, &interfaces).lan,
            Some(Ipv4Addr::new(192, 168, 1, 23))
        );
        // A default route through an interface without an address: guess.
        let routes = "Iface Destination Gateway Flags RefCnt Use Metric Mask\n\
                      ppp0 00000000 00000000 0001 0 0 0 00000000\n";
        assert_eq!(
            choose(Some(routes), &interfaces).lan,
            Some(Ipv4Addr::new(192, 168, 1, 23))
        );
        assert_eq!(choose(None, &[interface("lo", [127, 0, 0, 1])]).lan, None);
    }

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "LOCALHOST:8000",
            "127.0.0.1:80",
            "127.1.2.3",
            "[::1]:8000",
            "0.0.0.0:8000",
            "app.localhost",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "192.168.1.23:8000",
            "lanchat.local",
            "[fe80::1]:80",
            "10.0.0.1",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
