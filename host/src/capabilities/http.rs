//! `hookhost:hooks/http`: outbound requests on a plugin's behalf, limited
//! to the destinations its config grants.
//!
//! Checks, in order, for the request and for every redirect hop: the URL's
//! scheme, host and port match an `http_allow` entry; the host, if it is an
//! address or resolves to one that is not public (see [`addresses`]), is
//! listed in `http_private`. The plugin's client resolves names through the
//! same check, so a name cannot be re-pointed at a local address between
//! the check and the connection, and it ignores the proxy variables of the
//! environment (`HTTP_PROXY`, ...), so the address checked is the one
//! connected to.
//!
//! What the request says about its own routing and framing (`Host`,
//! hop-by-hop and forwarding headers, lengths) is the host's: a plugin that
//! sets one of those headers is refused, and its credential headers are
//! not carried across a redirect to another origin. Each event may send at most
//! [`MAX_REQUESTS_PER_EVENT`] requests; each request gets what is left of
//! the plugin's deadline; URLs, header counts and sizes, and bodies are
//! capped (checked before anything is built), and a response body is
//! counted against the plugin's memory cap while the host reads it. An
//! idle connection is kept for the next request for a few seconds at most.

mod addresses;
mod headers;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use self::addresses::is_public;
use self::headers::{drop_credentials_across_origins, plugin_headers};
use crate::bindings::hookhost::hooks::http::{HttpError, Request, Response};
use crate::log_limit::{Admit, LogLimit, PER_SECOND};
use crate::printable::{escape_controls, truncate};
use crate::state::{EventEffects, MemoryBudget, PluginState};

/// Largest request or response body.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Redirects followed per request.
const MAX_REDIRECTS: usize = 5;
/// Longest URL a plugin may ask for, and a redirect may lead to. 8 KiB is
/// the request line most servers accept (nginx's default buffer, Apache's
/// `LimitRequestLine`), so a longer URL would be refused by the server
/// anyway; the bound keeps the URL out of error messages and logs as
/// megabytes.
pub const MAX_URL_BYTES: usize = 8 << 10;
/// Most of a denial's reason written to the host log: enough for the URL
/// shown in it (cut) and the config line that would allow it, while a
/// plugin cannot fill the log with long lines.
const MAX_LOGGED_REASON_BYTES: usize = 1 << 10;
/// Idle connections the plugin's client keeps per destination host: one,
/// which a hook sending its requests one after the other reuses, instead
/// of as many as it ever had open at once.
const POOL_MAX_IDLE_PER_HOST: usize = 1;
/// How long an idle connection is kept for a next request: long enough for
/// the requests of one event, and events arriving in a burst, to share it;
/// short enough that a plugin's connections do not stay open at the
/// destination long after the events that opened them (reqwest's default
/// is 90 seconds).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests one event may make the host send, redirect hops included. The
/// built-in hooks send one per event (two or three with redirects); a hook
/// fanning an event out to a few dozen endpoints still fits. The bound is
/// what one event can make the host do to others: at most 100 requests
/// sent and 100 MiB of request bodies, instead of as many as the fuel and
/// the timeout allow. (Connections are not bounded per event: they are
/// pooled per plugin, at most [`POOL_MAX_IDLE_PER_HOST`] idle per host, for
/// at most [`POOL_IDLE_TIMEOUT`].)
pub const MAX_REQUESTS_PER_EVENT: u32 = 100;

/// One `http_allow` entry: `[scheme://]host[:port]`, where the host may
/// start with `*.` (any subdomain), the scheme defaults to `https` and the
/// port to the scheme's.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Destination {
    scheme: String,
    host: String,
    port: u16,
}

impl Destination {
    fn parse(entry: &str) -> Result<Destination, String> {
        let with_scheme = if entry.contains("://") {
            entry.to_owned()
        } else {
            format!("https://{entry}")
        };
        // `*.` is not valid in a URL host; parse with a placeholder label.
        let url = Url::parse(&with_scheme.replacen("*.", "wildcard--.", 1))
            .map_err(|err| format!("`{entry}` is not `[scheme://]host[:port]`: {err}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("`{entry}`: only http and https are supported"));
        }
        if url.path() != "/" || url.query().is_some() {
            return Err(format!("`{entry}`: give a destination, not a path"));
        }
        let host = url
            .host_str()
            .ok_or_else(|| format!("`{entry}` has no host"))?
            .replacen("wildcard--.", "*.", 1);
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("`{entry}` has no port"))?;
        Ok(Destination {
            scheme: url.scheme().to_owned(),
            host,
            port,
        })
    }

    fn allows(&self, url: &Url) -> bool {
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        let host_matches = match self.host.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => host == self.host,
        };
        host_matches && url.scheme() == self.scheme && port == self.port
    }
}

/// One `http_private` entry: an address (matched against a literal
/// address in the URL) or a host name (matched against the name resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Private {
    Address(IpAddr),
    Name(String),
}

/// What a plugin may reach, from its `http_allow` and `http_private`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpGrant {
    allow: Vec<Destination>,
    private: Vec<Private>,
}

impl HttpGrant {
    /// Parses the two config lists; an entry that is not a destination is
    /// an error naming it.
    pub fn parse(allow: &[String], private: &[String]) -> Result<HttpGrant, String> {
        Ok(HttpGrant {
            allow: allow
                .iter()
                .map(|entry| Destination::parse(entry))
                .collect::<Result<_, _>>()?,
            private: private
                .iter()
                .map(|host| {
                    let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
                    match host.parse() {
                        Ok(ip) => Private::Address(ip),
                        Err(_) => Private::Name(host),
                    }
                })
                .collect(),
        })
    }

    /// Whether the grant allows nothing (the default).
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty()
    }

    /// Whether `http_private` lists the host name `host`.
    fn private_name(&self, host: &str) -> bool {
        self.private
            .iter()
            .any(|p| matches!(p, Private::Name(name) if name == host))
    }

    /// Whether `http_private` lists the address `ip` (the same address:
    /// `127.0.0.1` does not list `::ffff:127.0.0.1`).
    fn private_address(&self, ip: IpAddr) -> bool {
        self.private.contains(&Private::Address(ip))
    }

    /// Why `url` is denied, or `None` when it is allowed (before DNS).
    fn check(&self, plugin: &str, url: &Url) -> Option<String> {
        if !self.allow.iter().any(|d| d.allows(url)) {
            let port = url.port_or_known_default().unwrap_or(0);
            let host = url.host_str().unwrap_or("");
            return Some(format!(
                "{} is not allowed for plugin {plugin}; to allow it add \
                 \"{}://{host}:{port}\" to http_allow in [plugins.{plugin}]",
                shown(url),
                url.scheme()
            ));
        }
        // The `url` crate has already read odd spellings (`2130706433`,
        // `0x7f.1`, `[::ffff:127.0.0.1]`) as the addresses they mean.
        let address = match url.host() {
            Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
            _ => return None,
        };
        if is_public(address) || self.private_address(address) {
            return None;
        }
        let host = url.host_str().unwrap_or("");
        Some(private_denial(plugin, host, address))
    }
}

/// `url` without query, fragment and credentials, which may hold tokens.
fn shown(url: &Url) -> Url {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown
}

fn private_denial(plugin: &str, host: &str, ip: IpAddr) -> String {
    format!(
        "{host} is a non-public address ({ip}) and plugin {plugin} may not reach it; to allow \
         it add \"{host}\" to http_private in [plugins.{plugin}]"
    )
}

/// A plugin's HTTP access: its grant and its own client, whose resolver
/// applies the grant's private-address rule.
#[derive(Clone)]
pub struct HttpAccess {
    grant: Arc<HttpGrant>,
    client: Option<reqwest::Client>,
    denied: Arc<AtomicU64>,
    /// Shared by all the instances of the plugin: a hook that is denied in
    /// a loop gets a few log lines a second, not one per denial.
    log_limit: Arc<LogLimit>,
}

impl HttpAccess {
    /// Access for plugin `plugin` under `grant`, counting denials in
    /// `denied`. No client is built for a plugin that may reach nothing.
    pub fn new(plugin: &str, grant: HttpGrant, denied: Arc<AtomicU64>) -> HttpAccess {
        let grant = Arc::new(grant);
        let client = if grant.is_empty() {
            None
        } else {
            let resolver = GrantResolver {
                plugin: plugin.to_owned(),
                grant: grant.clone(),
            };
            reqwest::Client::builder()
                // hookhost has no proxy setting; one taken from the
                // environment would route every plugin's requests through
                // an address no grant names.
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
                .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                .dns_resolver(Arc::new(resolver))
                .build()
                .map_err(|err| tracing::error!(plugin, "cannot build the HTTP client: {err}"))
                .ok()
        };
        HttpAccess {
            grant,
            client,
            denied,
            log_limit: Arc::new(LogLimit::new(Instant::now())),
        }
    }

    /// Counts a denial, and logs it unless this plugin's denials are
    /// already being logged more than [`PER_SECOND`] times a second. The
    /// reason (already masked by the caller) is cut to
    /// [`MAX_LOGGED_REASON_BYTES`].
    fn report_denial(&self, plugin: &str, reason: &str) {
        self.denied.fetch_add(1, Ordering::Relaxed);
        if let Admit::Log { suppressed } = self.log_limit.admit(Instant::now()) {
            // The URL and names in it come from the plugin; URLs are
            // percent-encoded already, this keeps it true for the rest.
            let escaped = escape_controls(reason);
            let kept = truncate(&escaped, MAX_LOGGED_REASON_BYTES);
            let reason = if kept.len() < escaped.len() {
                format!("{kept}... (cut: {} bytes in all)", escaped.len())
            } else {
                kept.to_owned()
            };
            if suppressed > 0 {
                tracing::warn!(
                    plugin,
                    "http request denied: {reason} ({suppressed} earlier denials were not \
                     logged: at most {PER_SECOND} a second are; http_denied counts them all)"
                );
            } else {
                tracing::warn!(plugin, "http request denied: {reason}");
            }
        }
    }
}

/// Resolves names, then refuses non-public addresses the grant does not
/// list, so the check holds for the address actually connected to.
struct GrantResolver {
    plugin: String,
    grant: Arc<HttpGrant>,
}

impl Resolve for GrantResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let plugin = self.plugin.clone();
        let grant = self.grant.clone();
        Box::pin(async move {
            let host = name.as_str().to_ascii_lowercase();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let private_ok = grant.private_name(&host);
            if let Some(addr) = addrs.iter().find(|a| !is_public(a.ip()) && !private_ok) {
                let denial = private_denial(&plugin, &host, addr.ip());
                return Err(Box::new(Denied(denial)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// A resolver denial, found again in the error chain of a failed request.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Denied(String);

impl crate::bindings::hookhost::hooks::http::Host for PluginState {
    async fn send(&mut self, request: Request) -> Result<Response, HttpError> {
        let plugin = self.plugin.clone();
        let result = send(
            &self.http,
            &plugin,
            request,
            self.deadline,
            &mut self.effects,
            &self.memory,
        )
        .await;
        if let Err(HttpError::Denied(reason)) = &result {
            self.http
                .report_denial(&plugin, &self.settings.redact(reason));
        }
        result
    }
}

async fn send(
    access: &HttpAccess,
    plugin: &str,
    request: Request,
    deadline: Instant,
    effects: &mut EventEffects,
    memory: &MemoryBudget,
) -> Result<Response, HttpError> {
    // Sizes first, before anything is parsed or built from the request.
    if request.url.len() > MAX_URL_BYTES {
        return Err(HttpError::InvalidRequest(format!(
            "the URL is {} bytes long, over the {MAX_URL_BYTES}-byte cap; send long data in \
             the body",
            request.url.len()
        )));
    }
    let mut url = Url::parse(&request.url)
        .map_err(|err| HttpError::InvalidRequest(format!("bad URL {:?}: {err}", request.url)))?;
    let mut method = reqwest::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| HttpError::InvalidRequest(format!("bad method {:?}", request.method)))?;
    if request.body.len() > MAX_BODY_BYTES {
        return Err(HttpError::TooLarge(format!(
            "request body of {} bytes is over the {MAX_BODY_BYTES}-byte cap",
            request.body.len()
        )));
    }
    let mut headers = plugin_headers(&request.headers)?;
    let mut body = request.body;
    for _ in 0..=MAX_REDIRECTS {
        if let Some(denial) = access.grant.check(plugin, &url) {
            return Err(HttpError::Denied(denial));
        }
        let client = access.client.as_ref().ok_or_else(|| {
            HttpError::Denied(format!("plugin {plugin} has no http_allow entries"))
        })?;
        if effects.http_requests >= MAX_REQUESTS_PER_EVENT {
            return Err(HttpError::Denied(format!(
                "{} would be request {} of this event, and plugin {plugin} may send at most \
                 {MAX_REQUESTS_PER_EVENT} per event (each redirect followed counts as one); \
                 send fewer requests per event, for example by batching them or by handling \
                 the rest in later events",
                shown(&url),
                effects.http_requests + 1
            )));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HttpError::Timeout);
        }
        effects.http_requests += 1;
        let response = client
            .request(method.clone(), url.clone())
            .timeout(left)
            .headers(headers.clone())
            .body(body.clone())
            .send()
            .await
            .map_err(request_error)?;
        if response.status().is_redirection() {
            if let Some(location) = response.headers().get(reqwest::header::LOCATION) {
                let location = location.to_str().unwrap_or_default();
                if location.len() > MAX_URL_BYTES {
                    return Err(HttpError::InvalidRequest(format!(
                        "the server redirected to a URL of {} bytes, over the \
                         {MAX_URL_BYTES}-byte cap",
                        location.len()
                    )));
                }
                let next = url.join(location).map_err(|err| {
                    HttpError::InvalidRequest(format!("bad redirect {location:?}: {err}"))
                })?;
                drop_credentials_across_origins(&mut headers, &url, &next);
                url = next;
                if response.status() == reqwest::StatusCode::SEE_OTHER {
                    (method, body) = (reqwest::Method::GET, Vec::new());
                }
                continue;
            }
        }
        return read_response(response, deadline, plugin, memory).await;
    }
    Err(HttpError::InvalidRequest(format!(
        "more than {MAX_REDIRECTS} redirects"
    )))
}

/// Reads the whole response, charging its body to the plugin's memory
/// budget before each allocation: a server's large answer then fails this
/// call with `too-large` instead of growing the host past what the plugin's
/// memory cap allows. (An error rather than a trap: the plugin did not
/// allocate anything, and can go on, for example by asking for less.)
async fn read_response(
    mut response: reqwest::Response,
    deadline: Instant,
    plugin: &str,
    memory: &MemoryBudget,
) -> Result<Response, HttpError> {
    const WHAT: &str = "HTTP response body";
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    let over_budget = |err: crate::state::MemoryCapExceeded| {
        HttpError::TooLarge(format!(
            "response body does not fit in plugin {plugin}'s memory: {err}; raise memory_mib \
             in [plugins.{plugin}] or ask the server for less"
        ))
    };
    let mut charge = memory.charge(0, WHAT).map_err(over_budget)?;
    let mut body: Vec<u8> = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left.max(Duration::from_millis(1)), response.chunk())
            .await
            .map_err(|_| HttpError::Timeout)?
            .map_err(request_error)?;
        let Some(chunk) = chunk else { break };
        let needed = body.len() + chunk.len();
        if needed > MAX_BODY_BYTES {
            return Err(HttpError::TooLarge(format!(
                "response body is over the {MAX_BODY_BYTES}-byte cap"
            )));
        }
        if needed > body.capacity() {
            // Grow by doubling (as `Vec` would), but charge before allocating.
            let capacity = needed.max(body.capacity() * 2).min(MAX_BODY_BYTES);
            charge
                .grow(capacity - body.capacity(), WHAT)
                .map_err(over_budget)?;
            body.reserve_exact(capacity - body.len());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn request_error(err: reqwest::Error) -> HttpError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(cause) = source {
        if let Some(denied) = cause.downcast_ref::<Denied>() {
            return HttpError::Denied(denied.0.clone());
        }
        source = cause.source();
    }
    // The URL may hold a token (Slack's webhook URLs do); the plugin knows
    // which URL it asked for.
    let err = err.without_url();
    if err.is_timeout() {
        HttpError::Timeout
    } else if err.is_builder() {
        // reqwest could not build the request from what the plugin gave.
        HttpError::InvalidRequest(err.to_string())
    } else {
        // Everything else happened on the way: a refused or reset
        // connection, one closed before the response, a broken body.
        // `request` errors are among them, and are worth retrying.
        let mut message = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            message = format!("{message}: {cause}");
            source = cause.source();
        }
        HttpError::ConnectionFailed(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(allow: &[&str], private: &[&str]) -> HttpGrant {
        let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        HttpGrant::parse(&owned(allow), &owned(private)).unwrap()
    }

    fn denied(grant: &HttpGrant, url: &str) -> bool {
        grant.check("p", &Url::parse(url).unwrap()).is_some()
    }

    #[test]
    fn destinations_match_scheme_host_and_port() {
        let g = grant(&["hooks.slack.com", "http://*.example.com:8080"], &[]);
        assert!(!denied(&g, "https://hooks.slack.com/services/x"));
        assert!(denied(&g, "http://hooks.slack.com/"), "https by default");
        assert!(denied(&g, "https://hooks.slack.com:8443/"), "default port");
        assert!(denied(&g, "https://evil.com/?hooks.slack.com"));
        assert!(!denied(&g, "http://a.b.example.com:8080/"));
        assert!(
            denied(&g, "http://example.com:8080/"),
            "a wildcard needs a subdomain"
        );
    }

    #[test]
    fn private_addresses_need_their_own_listing() {
        let g = grant(
            &["http://127.0.0.1:9000", "http://10.1.2.3"],
            &["127.0.0.1"],
        );
        assert!(!denied(&g, "http://127.0.0.1:9000/"));
        let reason = g
            .check("p", &Url::parse("http://10.1.2.3/").unwrap())
            .unwrap();
        assert!(
            reason.contains("add \"10.1.2.3\" to http_private"),
            "{reason}"
        );
    }

    #[test]
    fn denials_say_which_line_would_allow_them() {
        let reason = grant(&[], &[])
            .check("slack", &Url::parse("https://hooks.slack.com/x").unwrap())
            .unwrap();
        assert!(
            reason.contains("add \"https://hooks.slack.com:443\" to http_allow in [plugins.slack]"),
            "{reason}"
        );
    }

    #[test]
    fn odd_spellings_of_an_address_are_the_address() {
        let g = grant(
            &["http://127.0.0.1:9000", "http://[::ffff:127.0.0.1]:9000"],
            &[],
        );
        for url in [
            "http://127.0.0.1:9000/",
            "http://2130706433:9000/",
            "http://0x7f.1:9000/",
            "http://0177.0.0.1:9000/",
            "http://127.1:9000/",
            "http://[::ffff:127.0.0.1]:9000/",
            "http://[::ffff:7f00:1]:9000/",
        ] {
            let reason = g.check("p", &Url::parse(url).unwrap());
            let reason = reason.unwrap_or_else(|| panic!("{url} was allowed"));
            assert!(
                reason.contains("is a non-public address"),
                "{url}: {reason}"
            );
        }
    }

    #[test]
    fn a_listed_private_address_is_that_address_only() {
        let g = grant(
            &["http://127.0.0.1:9000", "http://[::ffff:127.0.0.1]:9000"],
            &["127.0.0.1"],
        );
        assert!(!denied(&g, "http://2130706433:9000/"), "the same address");
        assert!(denied(&g, "http://[::ffff:127.0.0.1]:9000/"), "another one");
        let g = grant(&["http://[::ffff:127.0.0.1]:9000"], &["[::ffff:7f00:1]"]);
        assert!(!denied(&g, "http://[::ffff:127.0.0.1]:9000/"));
    }
}
