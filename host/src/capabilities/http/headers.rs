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
/// - `forwarded`, `via`, `x-real-ip`, `x-forwarded` and `x-forwarded-*`
///   (below) are what proxies and load balancers trust for the client's
///   address, host and scheme, and so for routing and access decisions;
/// - `x-original-url`, `x-rewrite-url` and `x-original-host` are what some
///   front ends (IIS, Symfony, nginx set-ups) take as the path or host the
///   request was really for, so they too can route a request past a front
///   end's checks;
/// - `x-http-method-override`, `x-http-method` and `x-method-override` make
///   frameworks handle a request as another method than the one sent.
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
    "x-forwarded",
    "x-original-url",
    "x-rewrite-url",
    "x-original-host",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Prefixes of header names a plugin may not set: `proxy-*` talk to a proxy
/// (credentials, connection), `x-forwarded-*` claim what a proxy saw.
const HOST_OWNED_PREFIXES: &[&str] = &["proxy-", "x-forwarded-"];

/// Headers one request may carry. Webhook and API calls send a handful;
/// 100 is Apache's default `LimitRequestFields` (and hyper's default for
/// the headers of a response), and far under the ~24,500 entries past which
/// `HeaderMap` cannot grow.
pub const MAX_HEADERS: usize = 100;

/// Bytes of header names and values of one request, all together. 64 KiB
/// is twice the 32 KiB of request head nginx accepts by default (four 8 KiB
/// buffers), so a request a common server would take is not refused here,
/// while a plugin cannot make the host build and send megabytes of headers.
pub const MAX_HEADER_BYTES: usize = 64 << 10;

/// The plugin's headers, checked: at most [`MAX_HEADERS`] of them and
/// [`MAX_HEADER_BYTES`] in all (counted before any is looked at), valid
/// names and values (no CR, LF or other control characters), none of those
/// the host owns.
pub(super) fn plugin_headers(headers: &[(String, String)]) -> Result<HeaderMap, HttpError> {
    if headers.len() > MAX_HEADERS {
        return Err(HttpError::InvalidRequest(format!(
            "the request has {} headers, over the bound of {MAX_HEADERS} per request; send \
             fewer, for example by moving data into the body",
            headers.len()
        )));
    }
    let bytes = headers.iter().fold(0usize, |sum, (name, value)| {
        sum.saturating_add(name.len()).saturating_add(value.len())
    });
    if bytes > MAX_HEADER_BYTES {
        return Err(HttpError::InvalidRequest(format!(
            "the request's header names and values take {bytes} bytes, over the bound of \
             {MAX_HEADER_BYTES} bytes per request; send large data in the body"
        )));
    }
    // Never a panicking `HeaderMap` call on the plugin's input: no
    // `with_capacity`, and `try_append` (which cannot fail under the bound
    // above, but says so instead of panicking if it did).
    let mut map = HeaderMap::new();
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
        map.try_append(header, value).map_err(|_| {
            HttpError::InvalidRequest(format!(
                "the request has more headers than the host can hold (at most {MAX_HEADERS})"
            ))
        })?;
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
            "X-Forwarded",
            "X-Original-URL",
            "X-Rewrite-URL",
            "X-Original-Host",
            "X-HTTP-Method-Override",
            "X-HTTP-Method",
            "X-Method-Override",
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
    fn too_many_headers_or_header_bytes_are_refused_before_any_is_read() {
        let pair = |i: usize| (format!("X-H{i}"), "v".to_owned());
        let bound: Vec<_> = (0..MAX_HEADERS).map(pair).collect();
        assert_eq!(plugin_headers(&bound).unwrap().len(), MAX_HEADERS);
        // Past the bound, even headers that are themselves refused are not
        // looked at: the count is the error.
        let mut over: Vec<_> = (0..30_000).map(pair).collect();
        over[0] = ("Host".to_owned(), "internal.example".to_owned());
        let why = match plugin_headers(&over) {
            Err(HttpError::InvalidRequest(why)) => why,
            other => panic!("not refused: {other:?}"),
        };
        assert!(
            why.starts_with("the request has 30000 headers, over the bound of 100"),
            "{why}"
        );
        let big = [("X-Big".to_owned(), "v".repeat(MAX_HEADER_BYTES))];
        let why = match plugin_headers(&big) {
            Err(HttpError::InvalidRequest(why)) => why,
            other => panic!("not refused: {other:?}"),
        };
        assert!(why.contains("over the bound of 65536 bytes"), "{why}");
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
