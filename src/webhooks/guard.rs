//! Where webhooks may go: `https` to public addresses (server-side request forgery is refused).
//!
//! A URL is checked when it is registered (scheme, and every address its name resolves to) and
//! again for every request: an IP literal before sending, a name at connect time by the client's
//! resolver (`GuardedResolver`), which hands the connector only allowed addresses. So a name that
//! resolved to a public address at registration and to `10.0.0.5` later (DNS rebinding) is
//! refused when it matters. Redirects are never followed and no proxy is used.

use super::WebhookConfig;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// What the operator allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub allow_http_loopback: bool,
    pub allow_private: bool,
}

impl From<&WebhookConfig> for Policy {
    fn from(c: &WebhookConfig) -> Policy {
        Policy { allow_http_loopback: c.allow_http_loopback, allow_private: c.allow_private_addresses }
    }
}

/// Why a URL is refused (the message is the program's to read: it never says what a name
/// resolved to, so the API cannot be used to map the operator's network).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not a valid absolute URL")]
    Invalid,
    #[error("webhook URLs must use https")]
    Scheme,
    #[error("webhook URLs may not carry a user name or password")]
    Credentials,
    #[error("the URL's host is not a public internet address")]
    Address,
    #[error("the URL's host name does not resolve")]
    Unresolved,
}

/// Loopback: `127.0.0.0/8`, `::1` (and IPv4-mapped forms).
fn is_loopback(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback(),
    }
}

/// IPv4-mapped and -compatible IPv6 addresses as the IPv4 address they reach.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Never a webhook destination, whatever the operator allows: unspecified, multicast, broadcast,
/// documentation and reserved ranges.
fn is_never(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || o[0] == 0
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            v6.is_unspecified() || v6.is_multicast() || (v6.segments()[0] == 0x2001 && v6.segments()[1] == 0xdb8)
        }
    }
}

/// Private, link-local, shared (CGNAT), benchmarking, unique-local, site-local, NAT64 of those,
/// and the cloud metadata address (link-local): reachable only inside the operator's network.
fn is_private(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => private_v4(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
                // NAT64 (64:ff9b::/96) of a private IPv4 address
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] && private_v4(v4_from(s[6], s[7])))
        }
    }
}

fn v4_from(hi: u16, lo: u16) -> Ipv4Addr {
    let [a, b] = hi.to_be_bytes();
    let [c, d] = lo.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

fn private_v4(v4: Ipv4Addr) -> bool {
    let o = v4.octets();
    v4.is_private() // 10/8, 172.16/12, 192.168/16
        || v4.is_link_local() // 169.254/16, the metadata service
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64/10 shared address space
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18/15 benchmarking
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0/24 protocol assignments
        || v4.is_loopback()
}

/// Whether a request may go to `ip`.
pub fn address_allowed(ip: IpAddr, p: Policy) -> bool {
    if is_never(ip) {
        return false;
    }
    if is_loopback(ip) {
        return p.allow_http_loopback || p.allow_private;
    }
    if is_private(ip) {
        return p.allow_private;
    }
    true
}

/// Checks a URL's form: scheme, no credentials, an IP literal host allowed. Names are checked
/// when resolved (`check_resolved`, `GuardedResolver`).
pub fn check_url(text: &str, p: Policy) -> Result<reqwest::Url, Refusal> {
    let url = reqwest::Url::parse(text.trim()).map_err(|_| Refusal::Invalid)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refusal::Credentials);
    }
    let host = url.host().ok_or(Refusal::Invalid)?;
    let literal = match host {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    };
    match url.scheme() {
        "https" => {}
        // Plain http only to loopback, when the operator allows it (tests, local development).
        "http" if p.allow_http_loopback => {
            let local = match (literal, host) {
                (Some(ip), _) => is_loopback(ip),
                (None, url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                _ => false,
            };
            if !local {
                return Err(Refusal::Scheme);
            }
        }
        _ => return Err(Refusal::Scheme),
    }
    if let Some(ip) = literal {
        if !address_allowed(ip, p) {
            return Err(Refusal::Address);
        }
    }
    Ok(url)
}

/// Resolves a URL's host now and refuses it when any address is not allowed (at registration:
/// the program learns at once that the endpoint cannot be reached).
pub async fn check_resolved(url: &reqwest::Url, p: Policy) -> Result<(), Refusal> {
    let Some(url::Host::Domain(name)) = url.host() else { return Ok(()) };
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> =
        tokio::net::lookup_host((name, port)).await.map_err(|_| Refusal::Unresolved)?.collect();
    if addrs.is_empty() {
        return Err(Refusal::Unresolved);
    }
    if addrs.iter().any(|a| !address_allowed(a.ip(), p)) {
        return Err(Refusal::Address);
    }
    Ok(())
}

/// The HTTP client's resolver: the system's, keeping only allowed addresses. A name with none
/// left fails to connect ("refused address"), checked at every connection.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    pub policy: Policy,
}

/// What the resolver says when every address was refused.
#[derive(Debug, thiserror::Error)]
#[error("the host name resolves to no public internet address")]
pub struct RefusedAddress;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?
                .filter(|a| address_allowed(a.ip(), policy))
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(RefusedAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The client webhooks are sent with: guarded resolver, no redirects, no proxy, timeouts.
pub fn client(c: &WebhookConfig) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver { policy: Policy::from(c) }))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(c.connect_timeout)
        .timeout(c.request_timeout)
        .pool_max_idle_per_host(c.max_in_flight_per_endpoint as usize)
        .user_agent(concat!("Haven-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: Policy = Policy { allow_http_loopback: false, allow_private: false };

    #[test]
    fn private_link_local_and_loopback_addresses_are_refused_unless_allowed() {
        for url in [
            "https://10.1.2.3/hook",
            "https://172.16.0.1/",
            "https://192.168.1.10/",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://[64:ff9b::a00:1]/",
            "https://127.0.0.1/",
            "https://[::1]/",
        ] {
            assert_eq!(check_url(url, STRICT).err(), Some(Refusal::Address), "{url}");
        }
        let private = Policy { allow_http_loopback: false, allow_private: true };
        assert!(check_url("https://10.1.2.3/hook", private).is_ok());
        assert!(check_url("https://[fd00::1]/", private).is_ok());
        // Never, whatever is allowed.
        let all = Policy { allow_http_loopback: true, allow_private: true };
        for url in ["https://0.0.0.0/", "https://[::]/", "https://224.0.0.1/", "https://255.255.255.255/"] {
            assert_eq!(check_url(url, all).err(), Some(Refusal::Address), "{url}");
        }
        assert!(check_url("https://93.184.216.34/", STRICT).is_ok());
        assert!(check_url("https://hooks.example.org/haven", STRICT).is_ok());
    }

    #[test]
    fn http_only_to_loopback_and_only_when_allowed() {
        assert_eq!(check_url("http://hooks.example.org/", STRICT).err(), Some(Refusal::Scheme));
        assert_eq!(check_url("http://127.0.0.1:9/", STRICT).err(), Some(Refusal::Scheme));
        let test = Policy { allow_http_loopback: true, allow_private: false };
        assert!(check_url("http://127.0.0.1:9/", test).is_ok());
        assert!(check_url("http://[::1]:9/", test).is_ok());
        assert!(check_url("http://localhost:9/", test).is_ok());
        assert_eq!(check_url("http://hooks.example.org/", test).err(), Some(Refusal::Scheme));
        assert_eq!(check_url("http://10.0.0.1/", test).err(), Some(Refusal::Scheme));
        assert_eq!(check_url("ftp://127.0.0.1/", test).err(), Some(Refusal::Scheme));
        assert_eq!(check_url("https://user:pw@hooks.example.org/", STRICT).err(), Some(Refusal::Credentials));
        assert_eq!(check_url("not a url", STRICT).err(), Some(Refusal::Invalid));
    }

    #[tokio::test]
    async fn names_are_checked_by_what_they_resolve_to_at_connect_time() {
        use reqwest::dns::Resolve;
        // `localhost` resolves to loopback: the resolver hands the connector nothing.
        let strict = GuardedResolver { policy: STRICT };
        assert!(strict.resolve("localhost".parse().unwrap()).await.is_err());
        let test = GuardedResolver { policy: Policy { allow_http_loopback: true, allow_private: false } };
        let addrs: Vec<SocketAddr> = test.resolve("localhost".parse().unwrap()).await.unwrap().collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()));
        let url = reqwest::Url::parse("https://localhost/").unwrap();
        assert_eq!(check_resolved(&url, STRICT).await, Err(Refusal::Address));
    }
}
