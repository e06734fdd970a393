//! Outbound HTTP: requests to the hosts an operator granted, and nowhere
//! else.
//!
//! A grant is a host name (`api.example.com`), a wildcard over subdomains
//! (`*.example.com`) or an IP address, each with an optional port
//! (`127.0.0.1:8025`). A name is resolved by the host and only its public
//! addresses are used: a name that resolves to a private, loopback,
//! link-local (cloud metadata) or otherwise internal address is refused,
//! so DNS cannot turn a grant into a way in. Reaching such an address
//! needs it granted explicitly, as an IP address or `localhost`.
//! Redirects are not followed and no proxy is used; every request has a
//! connect and a total timeout, and a response is read up to a size limit.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

/// Longest provider response body kept (longer ones are cut).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Why a grant or a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// A grant is malformed.
    #[error(
        "host grant `{0}` is not a host name, `*.domain` or an IP address (with an optional :port)"
    )]
    BadGrant(String),
    /// The URL does not parse or is not http(s).
    #[error("`{0}` is not an http or https URL")]
    BadUrl(String),
    /// The URL's host is not granted.
    #[error("host `{0}` is not granted")]
    NotGranted(String),
    /// The request could not be built (a bad method or header).
    #[error("the request is malformed: {0}")]
    BadRequest(String),
    /// No answer in time.
    #[error("no answer from {host} within {timeout_ms} ms")]
    Timeout {
        /// The host.
        host: String,
        /// The timeout.
        timeout_ms: u64,
    },
    /// The connection failed or was dropped before an answer.
    #[error("{host}: {reason}")]
    Transport {
        /// The host.
        host: String,
        /// What happened.
        reason: String,
    },
}

/// A host that may be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Grant {
    host: GrantedHost,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum GrantedHost {
    Name(String),
    Subdomains(String),
    Ip(IpAddr),
}

/// The hosts one integration (or plugin) may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants(Vec<Grant>);

impl Grants {
    /// Parse grants as operators write them.
    pub fn parse(grants: &[String]) -> Result<Self, OutboundError> {
        grants
            .iter()
            .map(|grant| parse_grant(grant))
            .collect::<Result<_, _>>()
            .map(Grants)
    }

    /// Whether `url` may be requested: an http(s) URL on a granted host.
    pub fn check(&self, url: &str) -> Result<Url, OutboundError> {
        let bad = || OutboundError::BadUrl(redact_userinfo(url));
        let parsed = Url::parse(url).map_err(|_| bad())?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad());
        }
        let host = parsed.host_str().ok_or_else(bad)?.to_ascii_lowercase();
        let port = parsed.port_or_known_default();
        let ip = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok();
        let granted = self.0.iter().any(|grant| {
            let host_matches = match (&grant.host, ip) {
                (GrantedHost::Ip(granted), Some(ip)) => *granted == ip,
                (GrantedHost::Name(name), None) => *name == host,
                (GrantedHost::Subdomains(domain), None) => host
                    .strip_suffix(domain.as_str())
                    .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
                _ => false,
            };
            host_matches && grant.port.is_none_or(|granted| Some(granted) == port)
        });
        if granted {
            Ok(parsed)
        } else {
            Err(OutboundError::NotGranted(match parsed.port() {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }))
        }
    }
}

fn parse_grant(grant: &str) -> Result<Grant, OutboundError> {
    let bad = || OutboundError::BadGrant(grant.chars().take(200).collect());
    let text = grant.trim().to_ascii_lowercase();
    // `[v6]:port`, `v6`, `host:port`, `host`.
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port.parse().map_err(|_| bad())?),
            None if after.is_empty() => None,
            None => return Err(bad()),
        };
        (host.to_owned(), port)
    } else if text.matches(':').count() == 1 {
        let (host, port) = text.split_once(':').ok_or_else(bad)?;
        (host.to_owned(), Some(port.parse().map_err(|_| bad())?))
    } else {
        (text.clone(), None)
    };
    let host = if let Ok(ip) = host.parse::<IpAddr>() {
        GrantedHost::Ip(ip)
    } else if let Some(domain) = host.strip_prefix("*.") {
        check_name(domain).ok_or_else(bad)?;
        GrantedHost::Subdomains(domain.to_owned())
    } else {
        check_name(&host).ok_or_else(bad)?;
        GrantedHost::Name(host)
    };
    Ok(Grant { host, port })
}

fn check_name(name: &str) -> Option<()> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    valid.then_some(())
}

/// Whether `ip` is an address on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// Resolves names to their public addresses only (`localhost` to its own).
#[derive(Debug)]
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let local = host == "localhost";
            let usable: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|address| {
                    if local {
                        address.ip().is_loopback()
                    } else {
                        is_public(address.ip())
                    }
                })
                .collect();
            if usable.is_empty() {
                let refused: Box<dyn std::error::Error + Send + Sync> = format!(
                    "{host} resolves only to private, loopback or link-local addresses ({}), which need granting by address",
                    found.iter().map(|address| address.ip().to_string()).collect::<Vec<_>>().join(", ")
                )
                .into();
                return Err(refused);
            }
            Ok(Box::new(usable.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A request to send.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The URL, already checked against the grants.
    pub url: Url,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// What came back.
#[derive(Debug, Clone)]
pub struct OutboundResponse {
    /// The status code.
    pub status: u16,
    /// The headers (values that are not text are left out).
    pub headers: Vec<(String, String)>,
    /// The body, cut to the limit the request was sent with.
    pub body: Vec<u8>,
    /// Whether the body was longer than the limit (and cut).
    pub truncated: bool,
}

impl OutboundResponse {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// The HTTP client of outbound requests.
#[derive(Debug, Clone)]
pub struct Outbound {
    client: reqwest::Client,
}

impl Outbound {
    /// A client with the given connect timeout.
    pub fn new(connect_timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(PublicOnly))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("journeyd/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a client with no TLS roots or proxies to load builds");
        Outbound { client }
    }

    /// Send `request`, giving up after `timeout`; the body is read up to
    /// `max_body` bytes.
    pub async fn send(
        &self,
        request: OutboundRequest,
        timeout: Duration,
        max_body: usize,
    ) -> Result<OutboundResponse, OutboundError> {
        let host = request.url.host_str().unwrap_or_default().to_owned();
        let method = reqwest::Method::from_bytes(request.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| OutboundError::BadRequest(format!("method `{}`", request.method)))?;
        let mut builder = self
            .client
            .request(method, request.url)
            .timeout(timeout)
            .body(request.body);
        for (name, value) in &request.headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| OutboundError::BadRequest(format!("header name `{name}`")))?;
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| OutboundError::BadRequest(format!("the value of header `{name}`")))?;
            builder = builder.header(name, value);
        }
        let failed = |error: reqwest::Error| {
            if error.is_timeout() {
                OutboundError::Timeout {
                    host: host.clone(),
                    timeout_ms: timeout.as_millis() as u64,
                }
            } else {
                OutboundError::Transport {
                    host: host.clone(),
                    reason: describe(&error),
                }
            }
        };
        let mut response = builder.send().await.map_err(failed)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
            .collect();
        let mut body = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            let room = max_body - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Ok(OutboundResponse {
            status,
            headers,
            body,
            truncated,
        })
    }
}

/// A transport error in words, without the URL (it may carry secrets).
fn describe(error: &reqwest::Error) -> String {
    let what = if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "the answer broke off"
    } else {
        "the connection failed before an answer"
    };
    let mut source = std::error::Error::source(error);
    let mut cause = None;
    while let Some(inner) = source {
        cause = Some(inner.to_string());
        source = inner.source();
    }
    match cause {
        Some(cause) => format!("{what}: {cause}"),
        None => what.to_owned(),
    }
}

/// `url` without user and password, for errors.
fn redact_userinfo(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => url.chars().take(200).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(list: &[&str]) -> Grants {
        Grants::parse(
            &list
                .iter()
                .map(|grant| (*grant).to_owned())
                .collect::<Vec<_>>(),
        )
        .expect("valid grants")
    }

    #[test]
    fn only_granted_hosts_and_ports_pass() {
        let granted = grants(&[
            "api.sendgrid.com",
            "*.example.com",
            "127.0.0.1:8025",
            "[::1]",
        ]);
        assert!(
            granted
                .check("https://api.sendgrid.com/v3/mail/send")
                .is_ok()
        );
        assert!(granted.check("https://API.SendGrid.com/v3").is_ok());
        assert!(granted.check("https://hooks.example.com/x").is_ok());
        assert!(granted.check("https://a.b.example.com/x").is_ok());
        assert!(granted.check("http://127.0.0.1:8025/x").is_ok());
        assert!(granted.check("http://[::1]:9/x").is_ok());
        for (url, refused) in [
            ("https://example.com/x", "example.com"),
            ("https://evilexample.com/x", "evilexample.com"),
            (
                "https://api.sendgrid.com.evil.io/",
                "api.sendgrid.com.evil.io",
            ),
            ("http://127.0.0.1:8026/x", "127.0.0.1:8026"),
            ("http://169.254.169.254/latest/meta-data", "169.254.169.254"),
            ("http://localhost:8025/", "localhost:8025"),
        ] {
            assert_eq!(
                granted.check(url),
                Err(OutboundError::NotGranted(refused.into())),
                "{url}"
            );
        }
        assert!(matches!(
            granted.check("ftp://api.sendgrid.com/"),
            Err(OutboundError::BadUrl(_))
        ));
        assert!(matches!(
            granted.check("https://user:pass@nope.io/"),
            Err(OutboundError::NotGranted(_))
        ));
        assert_eq!(
            Grants::parse(&["bad host!".into()]),
            Err(OutboundError::BadGrant("bad host!".into()))
        );
        assert!(Grants::parse(&["host:port".into()]).is_err());
    }

    #[test]
    fn internal_addresses_are_not_public() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(
                !is_public(internal.parse().expect("an address")),
                "{internal}"
            );
        }
        for public in ["93.184.216.34", "2606:2800:220:1::1"] {
            assert!(is_public(public.parse().expect("an address")), "{public}");
        }
    }
}
