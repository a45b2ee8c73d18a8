//! The headers of a plugin's request: checked before anything is sent, so
//! that a plugin says what a request carries but not where or how it
//! travels.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

use crate::bindings::hookhost::hooks::http::HttpError;

/// Headers a plugin may not set, because they decide where or how the
/// request travels rather than what it says:
/// - `host` picks the virtual host at the destination, which must be the
///   one the URL names (the one `http_allow` was checked against);
/// - `connection`, `keep-alive`, `upgrade`, `te`, `trailer`,
///   `transfer-encoding`, `content-length` and `expect` are hop-by-hop or
///   framing headers that the client sets from the body; a second, different
///   value is how requests are smuggled past a front end;
/// - `forwarded`, `via`, `x-real-ip` and `x-forwarded-*` (below) are what
///   proxies and load balancers trust for the client's address, host and
///   scheme, and so for routing and access decisions.
const HOST_OWNED_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "transfer-encoding",
    "content-length",
    "expect",
    "forwarded",
    "via",
    "x-real-ip",
];

/// Prefixes of header names a plugin may not set: `proxy-*` talk to a proxy
/// (credentials, connection), `x-forwarded-*` claim what a proxy saw.
const HOST_OWNED_PREFIXES: &[&str] = &["proxy-", "x-forwarded-"];

/// The plugin's headers, checked: valid names and values (no CR, LF or
/// other control characters), none of those the host owns.
pub(super) fn plugin_headers(headers: &[(String, String)]) -> Result<HeaderMap, HttpError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            HttpError::InvalidRequest(format!(
                "header name {name:?} is not a valid HTTP header name (letters, digits and \
                 !#$%&'*+-.^_`|~ only)"
            ))
        })?;
        let lower = header.as_str();
        if HOST_OWNED_HEADERS.contains(&lower)
            || HOST_OWNED_PREFIXES.iter().any(|p| lower.starts_with(p))
        {
            return Err(HttpError::InvalidRequest(format!(
                "header {name:?} is set by the host, not by plugins (it decides where or how \
                 the request travels); remove it from the request"
            )));
        }
        // The value is not echoed: it may be a credential.
        let value = HeaderValue::from_str(value).map_err(|_| {
            HttpError::InvalidRequest(format!(
                "the value of header {name:?} holds a control character (CR, LF, NUL, ...) or \
                 a non-ASCII one; send printable ASCII only"
            ))
        })?;
        map.append(header, value);
    }
    Ok(map)
}

/// Headers that carry credentials for one origin.
const CREDENTIALS: &[&str] = &["authorization", "cookie", "cookie2"];

/// Drops the credential headers when a redirect leaves the origin (scheme,
/// host and port) they were sent to, as browsers and curl do: a token for
/// one allowed destination is not handed to another, nor sent in clear
/// text after a redirect from `https` to `http`.
pub(super) fn drop_credentials_across_origins(headers: &mut HeaderMap, from: &Url, to: &Url) {
    let same_origin = from.scheme() == to.scheme()
        && from.host_str() == to.host_str()
        && from.port_or_known_default() == to.port_or_known_default();
    if !same_origin {
        for name in CREDENTIALS {
            headers.remove(*name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(name: &str, value: &str) -> String {
        match plugin_headers(&[(name.to_owned(), value.to_owned())]) {
            Err(HttpError::InvalidRequest(why)) => why,
            other => panic!("{name}: {value:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn routing_and_framing_headers_are_refused_by_name() {
        for name in [
            "Host",
            "connection",
            "Keep-Alive",
            "Upgrade",
            "TE",
            "Trailer",
            "Transfer-Encoding",
            "Content-Length",
            "Expect",
            "Forwarded",
            "Via",
            "X-Real-IP",
            "X-Forwarded-For",
            "X-Forwarded-Host",
            "X-Forwarded-Proto",
            "Proxy-Authorization",
            "Proxy-Connection",
        ] {
            let why = refused(name, "x");
            assert!(
                why.contains(&format!("header \"{name}\" is set by the host")),
                "{why}"
            );
        }
    }

    #[test]
    fn control_characters_are_refused_and_the_value_is_not_echoed() {
        let why = refused("X-Token", "s3cr3t\r\nHost: internal.example");
        assert!(why.contains("the value of header \"X-Token\""), "{why}");
        assert!(!why.contains("s3cr3t"), "{why}");
        let why = refused("X-A\r\nHost", "x");
        assert!(why.contains("is not a valid HTTP header name"), "{why}");
        refused("X-A", "a\nb");
        refused("X-A", "a\0b");
    }

    #[test]
    fn ordinary_headers_pass_in_order_with_repeats() {
        let map = plugin_headers(&[
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("Authorization".to_owned(), "Bearer x".to_owned()),
            ("Accept".to_owned(), "a".to_owned()),
            ("Accept".to_owned(), "b".to_owned()),
        ])
        .unwrap();
        assert_eq!(map.get_all("accept").iter().count(), 2);
        assert_eq!(map["content-type"], "application/json");
    }

    #[test]
    fn credentials_stay_with_their_origin() {
        let headers = plugin_headers(&[
            ("Authorization".to_owned(), "Bearer t".to_owned()),
            ("Cookie".to_owned(), "s=1".to_owned()),
            ("X-Custom".to_owned(), "1".to_owned()),
        ])
        .unwrap();
        let url = |u: &str| Url::parse(u).unwrap();
        let from = url("https://a.example/x");
        let mut same = headers.clone();
        drop_credentials_across_origins(&mut same, &from, &url("https://a.example:443/y"));
        assert_eq!(same.len(), 3);
        for to in [
            "https://b.example/x",
            "http://a.example/x",
            "https://a.example:8443/x",
        ] {
            let mut moved = headers.clone();
            drop_credentials_across_origins(&mut moved, &from, &url(to));
            assert_eq!(moved.len(), 1, "{to}");
            assert!(moved.contains_key("x-custom"), "{to}");
        }
    }
}
