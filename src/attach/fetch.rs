//! Fetching an attachment's link safely. The link comes from the
//! platform's records, and customers control some of what is in them, so
//! the request is one an attacker may have written:
//! - no credentials: the client has none of the source's headers;
//! - https only (http only to a loopback host the allow-list names);
//! - no address that reaches inside: loopback, private, link-local (the
//!   cloud metadata service at 169.254.169.254), unique-local and the like
//!   are refused, both as literal hosts and after DNS resolution, on the
//!   first request and after every redirect, unless the host is in
//!   `attachment_hosts`;
//! - redirects are followed by hand, at most [`MOST_REDIRECTS`], each one
//!   checked like the first link.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

use crate::model::AttachStatus;

/// Redirects followed for one attachment.
const MOST_REDIRECTS: usize = 5;

/// Hosts reached even where their addresses are private or local: names
/// (`media.example.com`), `.example.com` for it and every name under it,
/// or literal addresses (`127.0.0.1`, `[::1]`).
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    hosts: Vec<String>,
}

impl AllowList {
    pub fn new(hosts: &[String]) -> AllowList {
        AllowList {
            hosts: hosts
                .iter()
                .map(|h| {
                    h.trim()
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_ascii_lowercase()
                })
                .filter(|h| !h.is_empty())
                .collect(),
        }
    }

    pub fn allows(&self, host: &str) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        self.hosts
            .iter()
            .any(|allowed| match allowed.strip_prefix('.') {
                Some(domain) => host == domain || host.ends_with(allowed.as_str()),
                None => host == *allowed,
            })
    }
}

/// Whether an address reaches inside: anything but a public unicast one.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return internal_v4(v4);
            }
            let segments = v6.segments();
            // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4
            // address that a gateway reaches on the link's behalf.
            if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = segments[6].to_be_bytes();
                let [c, d] = segments[7].to_be_bytes();
                return internal_v4(Ipv4Addr::new(a, b, c, d));
            }
            if segments[0] == 0x2002 {
                let [a, b] = segments[1].to_be_bytes();
                let [c, d] = segments[2].to_be_bytes();
                return internal_v4(Ipv4Addr::new(a, b, c, d));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || segments[0] & 0xfe00 == 0xfc00 // unique local fc00::/7
                || segments[0] & 0xffc0 == 0xfe80 // link-local fe80::/10
                || segments[0] & 0xffc0 == 0xfec0 // site-local fec0::/10
                || v6 == Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1)
                // IPv4-compatible ::a.b.c.d (deprecated) and the like
                || segments[..6] == [0, 0, 0, 0, 0, 0]
        }
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

/// Why a link may not be fetched, before any request.
pub fn check_link(url: &Url, allowed: &AllowList) -> Result<(), String> {
    check_link_parts(url, allowed).map_err(|why| {
        let mut shown = url.clone();
        shown.set_query(None);
        format!("{shown}: {why}")
    })
}

fn check_link_parts(url: &Url, allowed: &AllowList) -> Result<(), String> {
    let host = url.host_str().unwrap_or("");
    if host.is_empty() {
        return Err("the link has no host".into());
    }
    let listed = allowed.allows(host);
    match url.scheme() {
        "https" => {}
        "http" if listed && crate::config::is_loopback(url) => {}
        "http" => {
            return Err(
                "the link is http://: only https is fetched (http only to a loopback host in `attachment_hosts`)"
                    .into(),
            )
        }
        other => return Err(format!("{other}:// is not fetched")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the link carries credentials".into());
    }
    let literal = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    };
    if let Some(ip) = literal.filter(|ip| is_internal(*ip)) {
        if !listed {
            return Err(format!(
                "{ip} is a private or local address (add it to `attachment_hosts` to allow it)"
            ));
        }
    }
    Ok(())
}

/// A resolver that drops internal addresses of names not allowed, and
/// fails when none is left: a name that resolves to the metadata service
/// (or is rebound to it between two requests) is never connected to.
struct Guarded {
    allowed: Arc<AllowList>,
}

/// The resolver's refusal, found again in the request's error chain.
#[derive(Debug)]
struct InternalOnly(String);

impl std::fmt::Display for InternalOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} resolves only to private or local addresses (add it to `attachment_hosts` to allow it)",
            self.0
        )
    }
}

impl std::error::Error for InternalOnly {}

impl Resolve for Guarded {
    fn resolve(&self, name: Name) -> Resolving {
        let allowed = self.allowed.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = if allowed.allows(&host) {
                found
            } else {
                found.into_iter().filter(|a| !is_internal(a.ip())).collect()
            };
            if kept.is_empty() {
                return Err(
                    Box::new(InternalOnly(host)) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

/// The client attachments are fetched with: none of a source's headers,
/// redirects by hand, the guarded resolver.
pub fn client(allowed: Arc<AllowList>) -> crate::error::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // Directly, never through HTTP(S)_PROXY: a proxy would resolve
        // the names (and reach the addresses) this client refuses.
        .no_proxy()
        .dns_resolver(Arc::new(Guarded { allowed }))
        .connect_timeout(Duration::from_secs(15))
        .user_agent(concat!("chatdump/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| crate::error::Error::config(format!("cannot make the attachment client: {e}")))
}

/// What asking for a link gave.
pub enum Answer {
    /// A 2xx response, its body still to be read.
    Body(reqwest::Response),
    /// Not had: why, as a status and a reason.
    Failed(AttachStatus, String),
    /// Worth asking again (network, 5xx, 429).
    Transient(String),
}

/// Asks for `link`, following redirects that pass the same checks.
pub async fn get(client: &reqwest::Client, link: &str, allowed: &AllowList) -> Answer {
    let mut url = match Url::parse(link) {
        Ok(url) => url,
        Err(e) => return Answer::Failed(AttachStatus::Unavailable, format!("not a link: {e}")),
    };
    for _ in 0..=MOST_REDIRECTS {
        if let Err(why) = check_link(&url, allowed) {
            return Answer::Failed(AttachStatus::Refused, why);
        }
        let response = match client.get(url.clone()).send().await {
            Ok(response) => response,
            Err(e) => return judge_error(&e),
        };
        let status = response.status().as_u16();
        match status {
            200..=299 => return Answer::Body(response),
            301 | 302 | 303 | 307 | 308 => {
                let next = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| url.join(l).ok());
                match next {
                    Some(next) => url = next,
                    None => {
                        return Answer::Failed(
                            AttachStatus::Unavailable,
                            format!("HTTP {status} without a usable Location"),
                        )
                    }
                }
            }
            401 | 403 | 410 => {
                return Answer::Failed(
                    AttachStatus::Expired,
                    format!("HTTP {status}: the link no longer grants access"),
                )
            }
            408 | 425 | 429 | 500..=599 => return Answer::Transient(format!("HTTP {status}")),
            _ => return Answer::Failed(AttachStatus::Unavailable, format!("HTTP {status}")),
        }
    }
    Answer::Failed(
        AttachStatus::Unavailable,
        format!("more than {MOST_REDIRECTS} redirects"),
    )
}

/// A request that failed before an answer: refused by the resolver, or
/// the network (worth a retry).
fn judge_error(e: &reqwest::Error) -> Answer {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(refused) = c.downcast_ref::<InternalOnly>() {
            return Answer::Failed(AttachStatus::Refused, refused.to_string());
        }
        cause = c.source();
    }
    Answer::Transient(crate::log::escape_controls(&without_query(e), false).into_owned())
}

/// An error's text without the link's query (a signed URL's signature).
fn without_query(e: &reqwest::Error) -> String {
    let mut shown = e.to_string();
    if let Some(url) = e.url() {
        let mut bare = url.clone();
        bare.set_query(None);
        shown = shown.replace(url.as_str(), bare.as_str());
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn inside_addresses_are_told_from_public_ones() {
        for inside in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "::127.0.0.1",
        ] {
            assert!(is_internal(ip(inside)), "{inside}");
        }
        for public in [
            "8.8.8.8",
            "151.101.1.69",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_internal(ip(public)), "{public}");
        }
    }

    #[test]
    fn links_are_checked_before_any_request() {
        let none = AllowList::default();
        let local = AllowList::new(&["127.0.0.1".into(), ".media.example".into()]);
        let check =
            |link: &str, allowed: &AllowList| check_link(&Url::parse(link).unwrap(), allowed);
        assert!(check("https://cdn.example/a.jpg", &none).is_ok());
        assert!(check("http://cdn.example/a.jpg", &none).is_err(), "http");
        assert!(check("ftp://cdn.example/a.jpg", &none).is_err());
        assert!(check("file:///etc/passwd", &none).is_err());
        assert!(check("https://169.254.169.254/latest/meta-data", &none).is_err());
        assert!(check("https://[::ffff:a9fe:a9fe]/", &none).is_err());
        assert!(
            check("https://0x7f.1/", &none).is_err(),
            "127.0.0.1 spelled in hex"
        );
        assert!(
            check("https://2130706433/", &none).is_err(),
            "127.0.0.1 as a number"
        );
        assert!(check("https://user:pw@cdn.example/", &none).is_err());
        assert!(check("http://127.0.0.1:8080/a.png", &local).is_ok());
        assert!(check("http://127.0.0.2:8080/a.png", &local).is_err());
        assert!(check("https://10.0.0.1/a.png", &local).is_err());
        assert!(local.allows("a.media.example") && local.allows("MEDIA.example."));
        assert!(!local.allows("evilmedia.example"));
    }

    proptest! {
        #[test]
        fn any_link_is_judged_without_panic(link in any::<String>(), host in any::<String>()) {
            let allowed = AllowList::new(&[host]);
            if let Ok(url) = Url::parse(&link) {
                let _ = check_link(&url, &allowed);
            }
        }

        #[test]
        fn every_v4_mapped_address_is_judged_as_its_v4(a in any::<u32>()) {
            let v4 = Ipv4Addr::from(a);
            prop_assert_eq!(is_internal(IpAddr::V6(v4.to_ipv6_mapped())), is_internal(IpAddr::V4(v4)));
        }
    }
}
