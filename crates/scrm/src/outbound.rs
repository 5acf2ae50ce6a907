//! Requests scrm makes to URLs tenants give it (content sources, workflow webhook steps), guarded
//! against server-side request forgery: such a URL may not reach loopback, private, link-local
//! (cloud metadata at 169.254.169.254 included), shared (100.64/10), multicast, broadcast,
//! unspecified or reserved addresses, in IPv4 or IPv6 (unique-local fc00::/7, link-local
//! fe80::/10, and IPv4 embedded as ::ffff:a.b.c.d, ::a.b.c.d or 64:ff9b::a.b.c.d checked as
//! that IPv4 address).
//!
//! The check runs twice: when the URL is stored (a literal IP or `localhost` host is refused
//! with `422 URL_NOT_ALLOWED`), and when it is fetched, in the client's DNS resolver, over every
//! address the name resolves to, the very addresses the connection then uses (so a name that
//! resolves to a public address when stored and to a private one later — DNS rebinding — is
//! refused too). Redirects are checked the same way (a literal IP target by the redirect
//! policy, a name by the resolver) and proxies from the environment are not used.
//!
//! `SCRM_ALLOW_PRIVATE_URLS=true` turns the guard off (an on-premises install whose feeds are
//! on the intranet; the tests' local servers on 127.0.0.1).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::http::StatusCode;

use crate::http::ApiError;
use crate::http::error::FieldError;

/// The stable error name of a refused URL.
pub const URL_NOT_ALLOWED: &str = "URL_NOT_ALLOWED";

/// Whether an address is one a tenant's URL may not reach.
pub fn blocked(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => blocked_v6(v6),
    }
}

fn blocked_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_unspecified()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

fn blocked_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return blocked_v4(v4);
    }
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local (fd00:ec2::254 metadata included)
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
}

/// The IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d) or
/// NAT64 (64:ff9b::a.b.c.d) IPv6 address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        return Some(tail);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(tail);
    }
    None
}

/// Why a URL's host may not be reached without resolving it: a literal blocked IP, or
/// `localhost`. `None` when the host is a name (checked when it is resolved) or a public IP.
pub fn literal_refusal(url: &url::Url) -> Option<String> {
    match url.host()? {
        url::Host::Ipv4(ip) if blocked_v4(ip) => Some(format!("{ip} is not a public address")),
        url::Host::Ipv6(ip) if blocked_v6(ip) => Some(format!("{ip} is not a public address")),
        url::Host::Domain(d) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            (d == "localhost" || d.ends_with(".localhost"))
                .then(|| format!("{d} is not a public host"))
        }
        _ => None,
    }
}

/// Refuse a URL about to be stored when its host is a literal private address (unless the
/// guard is off): `422 URL_NOT_ALLOWED` on `field`.
pub fn check_stored(allow_private: bool, field: &str, raw: &str) -> Result<(), ApiError> {
    if allow_private {
        return Ok(());
    }
    let Ok(url) = url::Url::parse(raw) else {
        return Ok(()); // the caller's own check says what is wrong with it
    };
    match literal_refusal(&url) {
        None => Ok(()),
        Some(why) => Err(ApiError::Refused {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            name: URL_NOT_ALLOWED,
            message: format!(
                "{field}: {why}; scrm does not fetch private, loopback, link-local or metadata addresses"
            ),
            fields: vec![FieldError {
                field: field.into(),
                message: why,
            }],
        }),
    }
}

/// A fetch refused by the guard (the resolver's error; found again by [`refusal`]).
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{URL_NOT_ALLOWED}: {}", self.0)
    }
}

impl std::error::Error for Refused {}

/// The guard's reason when `e` (a reqwest error) was a refused address.
pub fn refusal(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r.to_string());
        }
        cur = err.source();
    }
    None
}

/// A resolver that refuses a name when any address it resolves to is blocked.
struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| blocked(a.ip())) {
                return Err(Box::new(Refused(format!(
                    "{host} resolves to {}, not a public address",
                    bad.ip()
                )))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            if addrs.is_empty() {
                return Err(format!("{host} resolves to no address").into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A client for tenants' URLs from `builder`: guarded unless `allow_private`.
pub fn client(builder: reqwest::ClientBuilder, allow_private: bool) -> reqwest::Client {
    let builder = if allow_private {
        builder
    } else {
        builder
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver))
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                if attempt.previous().len() >= 10 {
                    return attempt.error("too many redirects");
                }
                match literal_refusal(attempt.url()) {
                    Some(why) => attempt.error(Refused(format!("redirected to {why}"))),
                    None => attempt.follow(),
                }
            }))
    };
    builder.build().unwrap_or_default()
}

/// Before a guarded fetch of `url`: its literal host (a name is checked when resolved).
pub fn check_fetch(allow_private: bool, url: &str) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let parsed = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    match literal_refusal(&parsed) {
        Some(why) => Err(Refused(why).to_string()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_blocked() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::10.0.0.1",
            "64:ff9b::a00:1",
            "ff02::1",
        ] {
            assert!(blocked(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!blocked(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn literal_hosts_are_refused_before_resolving() {
        for u in [
            "http://127.0.0.1/feed",
            "http://[::1]:8080/",
            "http://169.254.169.254/latest/meta-data/",
            "http://LOCALHOST./x",
            "http://[::ffff:10.0.0.1]/",
            "http://0x7f000001/",
        ] {
            assert!(
                literal_refusal(&url::Url::parse(u).unwrap()).is_some(),
                "{u}"
            );
        }
        assert!(literal_refusal(&url::Url::parse("https://example.com/rss").unwrap()).is_none());
    }
}
