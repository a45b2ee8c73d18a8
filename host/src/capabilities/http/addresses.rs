//! Which addresses count as public, for the `http_private` rule: an address
//! is public only if IANA's special-purpose address registries
//! (<https://www.iana.org/assignments/iana-ipv4-special-registry>,
//! <https://www.iana.org/assignments/iana-ipv6-special-registry>) do not
//! list it as anything but "globally reachable", and it is not multicast.
//!
//! Addresses that carry an IPv4 address inside an IPv6 one are judged by
//! what a connection to them would reach: the NAT64 well-known prefix and
//! 6to4 by the IPv4 address they embed; IPv4-mapped, IPv4-compatible, SIIT
//! and Teredo addresses are never public, since a dual-stack socket or a
//! local translator may deliver them to a local IPv4 address.
//!
//! Where the registry says "N/A" (deprecated blocks) or an IPv6 block lies
//! outside the global unicast space `2000::/3`, the address is not public:
//! a hook that needs one of them lists it in `http_private`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is a globally reachable unicast address.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

/// `addr` is inside `network/len`.
fn in_v4(addr: Ipv4Addr, network: [u8; 4], len: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(addr) & mask == u32::from(Ipv4Addr::from(network)) & mask
}

/// `addr` is inside `network/len`.
fn in_v6(addr: Ipv6Addr, network: [u16; 8], len: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    u128::from(addr) & mask == u128::from(Ipv6Addr::from(network)) & mask
}

/// IPv4 blocks the registry marks "globally reachable: true" although a
/// larger non-public block (`192.0.0.0/24`) contains them.
const V4_GLOBAL_INSIDE_RESERVED: &[([u8; 4], u32)] = &[
    ([192, 0, 0, 9], 32),  // Port Control Protocol Anycast (RFC 7723)
    ([192, 0, 0, 10], 32), // Traversal Using Relays around NAT Anycast (RFC 8155)
];

/// IPv4 blocks that are not globally reachable: every registry entry whose
/// "globally reachable" is false or N/A, plus multicast.
const V4_NOT_PUBLIC: &[([u8; 4], u32)] = &[
    ([0, 0, 0, 0], 8),       // "This network" (RFC 791), with 0.0.0.0/32
    ([10, 0, 0, 0], 8),      // Private-Use (RFC 1918)
    ([100, 64, 0, 0], 10),   // Shared Address Space (RFC 6598)
    ([127, 0, 0, 0], 8),     // Loopback (RFC 1122)
    ([169, 254, 0, 0], 16),  // Link Local (RFC 3927)
    ([172, 16, 0, 0], 12),   // Private-Use (RFC 1918)
    ([192, 0, 0, 0], 24),    // IETF Protocol Assignments (RFC 6890), with /29, .8, .170, .171
    ([192, 0, 2, 0], 24),    // Documentation TEST-NET-1 (RFC 5737)
    ([192, 88, 99, 0], 24),  // Deprecated 6to4 Relay Anycast (RFC 7526), N/A
    ([192, 168, 0, 0], 16),  // Private-Use (RFC 1918)
    ([198, 18, 0, 0], 15),   // Benchmarking (RFC 2544)
    ([198, 51, 100, 0], 24), // Documentation TEST-NET-2 (RFC 5737)
    ([203, 0, 113, 0], 24),  // Documentation TEST-NET-3 (RFC 5737)
    ([224, 0, 0, 0], 4),     // Multicast (RFC 5771; not a unicast destination)
    ([240, 0, 0, 0], 4),     // Reserved (RFC 1112), with 255.255.255.255/32
];

fn is_public_v4(ip: Ipv4Addr) -> bool {
    if V4_GLOBAL_INSIDE_RESERVED
        .iter()
        .any(|&(net, len)| in_v4(ip, net, len))
    {
        return true;
    }
    !V4_NOT_PUBLIC.iter().any(|&(net, len)| in_v4(ip, net, len))
}

/// IPv6 blocks the registry marks "globally reachable: true" inside the
/// non-public `2001::/23`.
const V6_GLOBAL_INSIDE_RESERVED: &[([u16; 8], u32)] = &[
    ([0x2001, 0x1, 0, 0, 0, 0, 0, 0x1], 128), // Port Control Protocol Anycast (RFC 7723)
    ([0x2001, 0x1, 0, 0, 0, 0, 0, 0x2], 128), // TURN Anycast (RFC 8155)
    ([0x2001, 0x1, 0, 0, 0, 0, 0, 0x3], 128), // DNS-SD Service Registration Protocol Anycast (RFC 9665)
    ([0x2001, 0x3, 0, 0, 0, 0, 0, 0], 32),    // AMT (RFC 7450)
    ([0x2001, 0x4, 0x112, 0, 0, 0, 0, 0], 48), // AS112-v6 (RFC 7535)
];

/// IPv6 blocks inside `2000::/3` that are not globally reachable.
/// (Everything outside `2000::/3` is refused wholesale, except the NAT64
/// well-known prefix, which is judged by its IPv4 address.)
const V6_NOT_PUBLIC: &[([u16; 8], u32)] = &[
    // IETF Protocol Assignments (RFC 2928), with inside it: TEREDO
    // 2001::/32 (N/A), Benchmarking 2001:2::/48, deprecated ORCHID
    // 2001:10::/28 (N/A). ORCHIDv2 2001:20::/28 and Drone Remote ID
    // 2001:30::/28 are marked globally reachable, but they are host
    // identifiers, not routable locators (RFC 7343, RFC 9374): refused too.
    ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
    ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), // Documentation (RFC 3849)
    ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),     // Documentation (RFC 9637)
];

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    // NAT64 well-known prefix 64:ff9b::/96 (RFC 6052): globally reachable,
    // and a translator delivers it to the IPv4 address in its last 32 bits.
    // The local-use prefix 64:ff9b:1::/48 (RFC 8215) is not public: it
    // falls outside 2000::/3 below.
    if in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        return is_public_v4(embedded_v4(ip, 12));
    }
    // Outside 2000::/3, IANA allocates no global unicast space; this covers
    // ::/128, ::1/128, IPv4-compatible ::/96, IPv4-mapped ::ffff:0:0/96,
    // SIIT ::ffff:0:0:0/96, 64:ff9b:1::/48, Discard-Only 100::/64, Dummy
    // 100:0:0:1::/64, SRv6 SIDs 5f00::/16, ULA fc00::/7, link-local
    // fe80::/10, site-local fec0::/10 and multicast ff00::/8.
    if !in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3) {
        return false;
    }
    // 6to4 2002::/16 (RFC 3056): relays deliver it to the IPv4 address in
    // bits 16..48; the registry marks the block N/A.
    if segments[0] == 0x2002 {
        return is_public_v4(embedded_v4(ip, 2));
    }
    if V6_GLOBAL_INSIDE_RESERVED
        .iter()
        .any(|&(net, len)| in_v6(ip, net, len))
    {
        return true;
    }
    !V6_NOT_PUBLIC.iter().any(|&(net, len)| in_v6(ip, net, len))
}

/// The IPv4 address in bytes `at..at + 4` of `ip`.
fn embedded_v4(ip: Ipv6Addr, at: usize) -> Ipv4Addr {
    let o = ip.octets();
    Ipv4Addr::new(o[at], o[at + 1], o[at + 2], o[at + 3])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row per registry entry (and the extra blocks refused): an
    /// address inside it and whether it is public.
    #[test]
    fn ipv4_special_purpose_registry() {
        let rows: &[(&str, bool)] = &[
            ("0.1.2.3", false),         // "This network" 0.0.0.0/8
            ("0.0.0.0", false),         // "This host on this network" 0.0.0.0/32
            ("10.20.30.40", false),     // Private-Use 10.0.0.0/8
            ("100.64.0.1", false),      // Shared Address Space 100.64.0.0/10
            ("100.127.255.254", false), // Shared Address Space, last
            ("127.0.0.1", false),       // Loopback 127.0.0.0/8
            ("127.255.0.9", false),     // Loopback, elsewhere in the /8
            ("169.254.169.254", false), // Link Local 169.254.0.0/16 (cloud metadata)
            ("172.16.0.1", false),      // Private-Use 172.16.0.0/12
            ("172.31.255.255", false),  // Private-Use, last
            ("192.0.0.1", false),       // IETF Protocol Assignments 192.0.0.0/24
            ("192.0.0.5", false),       // IPv4 Service Continuity Prefix 192.0.0.0/29
            ("192.0.0.8", false),       // IPv4 dummy address 192.0.0.8/32
            ("192.0.0.9", true),        // Port Control Protocol Anycast 192.0.0.9/32
            ("192.0.0.10", true),       // TURN Anycast 192.0.0.10/32
            ("192.0.0.170", false),     // NAT64/DNS64 Discovery 192.0.0.170/32
            ("192.0.0.171", false),     // NAT64/DNS64 Discovery 192.0.0.171/32
            ("192.0.2.1", false),       // Documentation (TEST-NET-1) 192.0.2.0/24
            ("192.31.196.1", true),     // AS112-v4 192.31.196.0/24
            ("192.52.193.1", true),     // AMT 192.52.193.0/24
            ("192.88.99.1", false),     // Deprecated (6to4 Relay Anycast) 192.88.99.0/24
            ("192.88.99.2", false),     // 6a44-relay anycast address 192.88.99.2/32
            ("192.168.1.1", false),     // Private-Use 192.168.0.0/16
            ("192.175.48.1", true),     // Direct Delegation AS112 Service 192.175.48.0/24
            ("198.18.0.1", false),      // Benchmarking 198.18.0.0/15
            ("198.19.255.255", false),  // Benchmarking, last
            ("198.51.100.7", false),    // Documentation (TEST-NET-2) 198.51.100.0/24
            ("203.0.113.7", false),     // Documentation (TEST-NET-3) 203.0.113.0/24
            ("240.0.0.1", false),       // Reserved 240.0.0.0/4
            ("255.255.255.254", false), // Reserved, last
            ("255.255.255.255", false), // Limited Broadcast 255.255.255.255/32
            ("224.0.0.1", false),       // multicast 224.0.0.0/4 (multicast registry)
            ("239.255.255.250", false), // multicast, SSDP
            // Neighbours of the blocks above, and ordinary public addresses.
            ("1.1.1.1", true),
            ("8.8.8.8", true),
            ("9.255.255.255", true),
            ("11.0.0.0", true),
            ("100.63.255.255", true),
            ("100.128.0.0", true),
            ("172.15.255.255", true),
            ("172.32.0.0", true),
            ("192.0.1.0", true),
            ("192.167.255.255", true),
            ("198.17.255.255", true),
            ("198.20.0.0", true),
            ("223.255.255.255", true),
        ];
        for &(ip, public) in rows {
            assert_eq!(is_public(ip.parse().unwrap()), public, "{ip}");
        }
    }

    #[test]
    fn ipv6_special_purpose_registry() {
        let rows: &[(&str, bool)] = &[
            ("::1", false),                 // Loopback Address ::1/128
            ("::", false),                  // Unspecified Address ::/128
            ("::ffff:8.8.8.8", false),      // IPv4-mapped Address ::ffff:0:0/96
            ("::ffff:127.0.0.1", false),    // IPv4-mapped, loopback inside
            ("::8.8.8.8", false),           // IPv4-compatible ::/96 (deprecated, RFC 4291)
            ("::127.0.0.1", false),         // IPv4-compatible, loopback inside
            ("::ffff:0:8.8.8.8", false),    // SIIT IPv4-translated ::ffff:0:0:0/96 (RFC 2765)
            ("64:ff9b::808:808", true),     // IPv4-IPv6 Translat. 64:ff9b::/96, public inside
            ("64:ff9b::7f00:1", false),     // 64:ff9b::/96 with 127.0.0.1 inside
            ("64:ff9b::a00:1", false),      // 64:ff9b::/96 with 10.0.0.1 inside
            ("64:ff9b::a9fe:a9fe", false),  // 64:ff9b::/96 with 169.254.169.254 inside
            ("64:ff9b:1::808:808", false),  // IPv4-IPv6 Translat. (local use) 64:ff9b:1::/48
            ("100::1", false),              // Discard-Only Address Block 100::/64
            ("100:0:0:1::1", false),        // Dummy IPv6 Prefix 100:0:0:1::/64
            ("2001::1", false),             // IETF Protocol Assignments 2001::/23
            ("2001:0:4136:e378::1", false), // TEREDO 2001::/32
            ("2001:1::1", true),            // Port Control Protocol Anycast 2001:1::1/128
            ("2001:1::2", true),            // TURN Anycast 2001:1::2/128
            ("2001:1::3", true),            // DNS-SD SRP Anycast 2001:1::3/128
            ("2001:1::4", false),           // rest of 2001:1::/32, IETF Protocol Assignments
            ("2001:2::1", false),           // Benchmarking 2001:2::/48
            ("2001:3::1", true),            // AMT 2001:3::/32
            ("2001:4:112::1", true),        // AS112-v6 2001:4:112::/48
            ("2001:10::1", false),          // Deprecated (previously ORCHID) 2001:10::/28
            ("2001:20::1", false),          // ORCHIDv2 2001:20::/28 (identifier; refused)
            ("2001:30::1", false),          // Drone Remote ID DETs 2001:30::/28 (identifier)
            ("2001:db8::1", false),         // Documentation 2001:db8::/32
            ("2002:808:808::1", true),      // 6to4 2002::/16, public IPv4 inside
            ("2002:7f00:1::1", false),      // 6to4 with 127.0.0.1 inside
            ("2002:c0a8:101::1", false),    // 6to4 with 192.168.1.1 inside
            ("2620:4f:8000::1", true),      // Direct Delegation AS112 Service 2620:4f:8000::/48
            ("3fff::1", false),             // Documentation 3fff::/20
            ("5f00::1", false),             // Segment Routing (SRv6) SIDs 5f00::/16
            ("fc00::1", false),             // Unique-Local fc00::/7
            ("fd12:3456::1", false),        // Unique-Local, fd half
            ("fe80::1", false),             // Link-Local Unicast fe80::/10
            ("fec0::1", false),             // site-local fec0::/10 (deprecated, RFC 3879)
            ("ff02::1", false),             // multicast ff00::/8
            ("ff0e::1", false),             // multicast, global scope
            // Neighbours of the blocks above, and ordinary public addresses.
            ("2001:200::1", true),
            ("2001:db9::1", true),
            ("2606:4700::1111", true),
            ("2a00:1450::1", true),
            ("3fff:1000::1", true),
            ("1fff::1", false), // outside 2000::/3: not allocated
            ("4000::1", false), // outside 2000::/3: not allocated
        ];
        for &(ip, public) in rows {
            assert_eq!(is_public(ip.parse().unwrap()), public, "{ip}");
        }
    }
}
