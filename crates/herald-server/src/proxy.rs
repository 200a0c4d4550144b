//! The client behind a proxy: which peers are trusted proxies (`trusted_proxies`), the client
//! address a trusted proxy names in `X-Forwarded-For`, and the HAProxy PROXY protocol (v1
//! text, v2 binary) a trusted proxy opens its connections with (`proxy_protocol = true`).
//!
//! Guarantees: only a peer whose address is in `trusted_proxies` may name another client;
//! from any other peer `X-Forwarded-For` is ignored and a PROXY header is not honoured (its
//! bytes are read as HTTP, and refused). With the list empty nothing is read at all.
//! `X-Forwarded-For` is read from the right: each proxy appends the address it was reached
//! from, so the right-most address that is not a trusted proxy is the client (a client's own
//! entries, to the left, are never believed).

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use axum::http::HeaderName;
use bytes::BytesMut;
use herald_http1::{Head, Refusal};
use ipnet::IpNet;
use tokio::{io::AsyncReadExt as _, net::TcpStream};

/// The header proxies name the client in.
pub const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// The first bytes of a PROXY protocol v2 header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The first bytes of a PROXY protocol v1 header.
const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// The longest PROXY v1 header, its CRLF included.
const V1_MAX: usize = 107;
/// The longest PROXY v2 header read (with its TLVs, what proxies send is well under this).
const MAX_PROXY_HEADER: usize = 4096;

/// The trusted proxies of `trusted_proxies`, and whether they open connections with a PROXY
/// header.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    proxy_protocol: bool,
}

/// Why a setting of `trusted_proxies` cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("trusted_proxies: {0:?} is not an IP address or CIDR (10.0.0.0/8, ::1)")]
pub struct BadProxy(String);

// === impl TrustedProxies ===

impl TrustedProxies {
    /// Reads `entries` (addresses or CIDRs); `proxy_protocol`: trusted peers open every
    /// connection with a PROXY header.
    pub fn new(entries: &[String], proxy_protocol: bool) -> Result<Self, BadProxy> {
        let nets = entries
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry.parse::<IpNet>().or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
            })
            .zip(entries)
            .map(|(net, entry)| net.map_err(|_| BadProxy(entry.clone())))
            .collect::<Result<_, _>>()?;
        Ok(Self { nets, proxy_protocol })
    }

    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// Whether a connection from `peer` must open with a PROXY header.
    pub fn expects_proxy_header(&self, peer: IpAddr) -> bool {
        self.proxy_protocol && self.trusts(peer)
    }

    /// The client of the request `head` that came from `peer`: from a trusted proxy, the
    /// right-most address of `X-Forwarded-For` that is not a trusted proxy itself (its port is
    /// unknown: 0); else `peer`.
    pub fn client(&self, head: &Head, peer: SocketAddr) -> SocketAddr {
        if self.nets.is_empty() || !self.trusts(peer.ip()) {
            return peer;
        }
        // Every line, in order: a proxy may add its own line rather than extend the last.
        let lines: Vec<&[u8]> = head.all(&FORWARDED_FOR).collect();
        let mut client = peer;
        for line in lines.iter().rev() {
            let Ok(line) = std::str::from_utf8(line) else { return client };
            for hop in line.rsplit(',') {
                let Some(ip) = hop_address(hop.trim()) else { return client };
                client = SocketAddr::new(ip, 0);
                if !self.trusts(ip) {
                    return client;
                }
            }
        }
        client
    }
}

/// An `X-Forwarded-For` entry's address: `1.2.3.4`, `1.2.3.4:5678`, `::1` or `[::1]:80`.
fn hop_address(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>().ok().or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip())).map(canonical)
}

/// `ip`, with an IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, as dual-stack sockets report
/// IPv4 peers) read as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Reads the PROXY header a trusted proxy opens its connection with (bytes after it stay in
/// `buf`), within `deadline`: the client it names, or `peer` where it names none (a `LOCAL`
/// or `UNKNOWN` header: the proxy's own health check).
pub async fn read_proxy_header(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    peer: SocketAddr,
    deadline: Duration,
) -> Result<Option<SocketAddr>, Refusal> {
    let read = async {
        loop {
            if let Some(client) = parse_proxy_header(buf, peer)? {
                return Ok(Some(client));
            }
            buf.reserve(512);
            match stream.read_buf(buf).await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(deadline, read).await.unwrap_or(Ok(None))
}

/// The client the PROXY header at the start of `buf` names (the header then leaves `buf`);
/// `None` while it is not all in.
pub fn parse_proxy_header(buf: &mut BytesMut, peer: SocketAddr) -> Result<Option<SocketAddr>, Refusal> {
    let refused = Refusal::bad("this listener expects a PROXY protocol header from trusted proxies");
    if buf.is_empty() {
        return Ok(None);
    }
    // What has arrived must begin one of the two headers.
    let begins = |prefix: &[u8]| {
        let n = buf.len().min(prefix.len());
        buf[..n] == prefix[..n]
    };
    if !begins(V1_PREFIX) && !begins(V2_SIGNATURE) {
        return Err(refused);
    }
    let v1 = begins(V1_PREFIX);
    let limit = if v1 { V1_MAX } else { MAX_PROXY_HEADER };
    let v1_whole = v1 && buf[..buf.len().min(V1_MAX)].contains(&b'\n');
    let (len, client) = match ppp::HeaderResult::parse(buf) {
        ppp::HeaderResult::V1(Ok(header)) => {
            let client = match header.addresses {
                ppp::v1::Addresses::Tcp4(a) => SocketAddr::new(IpAddr::V4(a.source_address), a.source_port),
                ppp::v1::Addresses::Tcp6(a) => SocketAddr::new(IpAddr::V6(a.source_address), a.source_port),
                ppp::v1::Addresses::Unknown => peer,
            };
            (header.header.len(), client)
        }
        ppp::HeaderResult::V2(Ok(header)) => {
            let client = match (header.command, header.addresses) {
                (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv4(a)) => {
                    SocketAddr::new(IpAddr::V4(a.source_address), a.source_port)
                }
                (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv6(a)) => {
                    SocketAddr::new(IpAddr::V6(a.source_address), a.source_port)
                }
                _ => peer,
            };
            (header.len(), client)
        }
        // A v1 header is one line of at most 107 bytes: once its line end is in (or it is
        // longer), it is whole, and ppp's "incomplete" means malformed.
        partial if ppp::PartialResult::is_incomplete(&partial) && !v1_whole && buf.len() < limit => return Ok(None),
        _ => return Err(refused),
    };
    let _ = buf.split_to(len);
    Ok(Some(SocketAddr::new(canonical(client.ip()), client.port())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::new(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>(), false).expect("valid")
    }

    fn head(forwarded: &[&str]) -> Head {
        let lines: String = forwarded.iter().map(|f| format!("X-Forwarded-For: {f}\r\n")).collect();
        let text = format!("GET /poll HTTP/1.1\r\nHost: h\r\n{lines}\r\n");
        Head::parse(&mut BytesMut::from(text.as_str())).expect("good").expect("whole")
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn reads_addresses_and_cidrs() {
        let trusted = proxies(&["10.0.0.0/8", "127.0.0.1", "::1", "fd00::/8"]);
        for ip in ["10.1.2.3", "127.0.0.1", "::1", "fd12::1", "::ffff:10.0.0.1"] {
            assert!(trusted.trusts(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["11.0.0.1", "127.0.0.2", "::2"] {
            assert!(!trusted.trusts(ip.parse().expect("ip")), "{ip}");
        }
        assert!(TrustedProxies::new(&["10.0.0.0/33".to_string()], false).is_err());
        assert!(TrustedProxies::new(&["proxy.local".to_string()], false).is_err());
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let proxy = addr("10.0.0.5:4000");
        assert_eq!(trusted.client(&head(&["203.0.113.7"]), proxy), addr("203.0.113.7:0"));
        // A client's own entry, on the left, is not believed.
        assert_eq!(trusted.client(&head(&["6.6.6.6, 203.0.113.7"]), proxy), addr("203.0.113.7:0"));
        // Proxies in a chain are skipped, over one line or several.
        assert_eq!(trusted.client(&head(&["6.6.6.6, 203.0.113.7, 10.0.0.9"]), proxy), addr("203.0.113.7:0"));
        assert_eq!(trusted.client(&head(&["6.6.6.6", "203.0.113.7", "10.0.0.9"]), proxy), addr("203.0.113.7:0"));
        assert_eq!(trusted.client(&head(&["[2001:db8::1]:443"]), proxy), addr("[2001:db8::1]:0"));
        assert_eq!(trusted.client(&head(&["203.0.113.7:51000"]), proxy), addr("203.0.113.7:0"));
        // Nothing believable: the last address known.
        assert_eq!(trusted.client(&head(&[]), proxy), proxy);
        assert_eq!(trusted.client(&head(&["garbage"]), proxy), proxy);
        assert_eq!(trusted.client(&head(&["203.0.113.7, unknown, 10.0.0.9"]), proxy), addr("10.0.0.9:0"));
        // From a peer that is no trusted proxy, the header is ignored.
        let direct = addr("198.51.100.1:5000");
        assert_eq!(trusted.client(&head(&["203.0.113.7"]), direct), direct);
        assert_eq!(proxies(&[]).client(&head(&["203.0.113.7"]), proxy), proxy);
    }

    #[test]
    fn proxy_protocol_headers_name_the_client() {
        let peer = addr("10.0.0.5:4000");
        let mut v1 = BytesMut::from("PROXY TCP4 203.0.113.7 10.0.0.1 51000 8080\r\nGET / HTTP/1.1\r\n\r\n");
        assert_eq!(parse_proxy_header(&mut v1, peer), Ok(Some(addr("203.0.113.7:51000"))));
        assert_eq!(&v1[..], b"GET / HTTP/1.1\r\n\r\n", "the request stays");
        let mut v1_6 = BytesMut::from("PROXY TCP6 2001:db8::1 2001:db8::2 51000 8080\r\n");
        assert_eq!(parse_proxy_header(&mut v1_6, peer), Ok(Some(addr("[2001:db8::1]:51000"))));
        let mut unknown = BytesMut::from("PROXY UNKNOWN\r\n");
        assert_eq!(parse_proxy_header(&mut unknown, peer), Ok(Some(peer)));

        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[0x21, 0x11, 0, 12, 203, 0, 113, 7, 10, 0, 0, 1, 0xc7, 0x38, 0x1f, 0x90]);
        v2.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        for split in [1, 12, 20, v2.len()] {
            let mut buf = BytesMut::from(&v2[..split]);
            let mut parsed = parse_proxy_header(&mut buf, peer);
            if split < 28 {
                assert_eq!(parsed, Ok(None), "a partial header waits ({split} bytes)");
                buf.extend_from_slice(&v2[split..]);
                parsed = parse_proxy_header(&mut buf, peer);
            }
            assert_eq!(parsed, Ok(Some(addr("203.0.113.7:51000"))));
            assert_eq!(&buf[..], b"GET / HTTP/1.1\r\n\r\n");
        }
        // LOCAL (a health check): the proxy itself.
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(parse_proxy_header(&mut BytesMut::from(&local[..]), peer), Ok(Some(peer)));
    }

    #[test]
    fn anything_else_is_refused() {
        let peer = addr("10.0.0.5:4000");
        for bad in [&b"GET / HTTP/1.1\r\n\r\n"[..], b"PROXY TCP4 nonsense\r\n", b"PROXY TCP9 1.2.3.4 1.2.3.4 1 2\r\n"] {
            assert!(parse_proxy_header(&mut BytesMut::from(bad), peer).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let endless = [V1_PREFIX.as_slice(), &[b'1'; V1_MAX]].concat();
        assert!(parse_proxy_header(&mut BytesMut::from(&endless[..]), peer).is_err());
        let endless = [V2_SIGNATURE.as_slice(), &[0x21, 0x11, 0xff, 0xff], &[0; MAX_PROXY_HEADER]].concat();
        assert!(parse_proxy_header(&mut BytesMut::from(&endless[..]), peer).is_err());
    }
}
