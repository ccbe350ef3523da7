//! Who may use the dashboard, and which requests may act.
//!
//! # Access
//!
//! Bound to a loopback address (`127.0.0.0/8`, `::1`) the dashboard asks
//! for no credentials: only this machine reaches it. To stop a web page
//! from reaching it anyway through a name that resolves to 127.0.0.1 (DNS
//! rebinding), such requests must name a loopback host (`localhost`,
//! `127.x.y.z`, `[::1]`) in `Host`.
//!
//! Bound anywhere else it needs a token ([`Access::Token`]); without one it
//! refuses to start ([`Access::for_address`]). The token is accepted as
//! `Authorization: Bearer TOKEN` (scripts) or as the password of HTTP
//! basic auth with any user name (browsers ask for it themselves). It is
//! compared in constant time and never logged.
//!
//! # Actions
//!
//! Replay and delete are `POST`s, and a `POST` must come from the
//! dashboard itself:
//!
//! - a browser's `Sec-Fetch-Site` must be `same-origin` (or `none`), and an
//!   `Origin` header must name the host the request was sent to;
//! - it must carry the process's CSRF token, in the `X-CSRF-Token` header
//!   (the API; `GET /api/session` tells it) or the `csrf` query parameter
//!   of the form's action (the pages embed it), unless it authenticates with the configured token as
//!   `Authorization: Bearer`, which a browser never adds by itself. On a
//!   dashboard without a token a bearer header proves nothing, so the CSRF
//!   token is required there whatever the request carries.
//!
//! All of it is read from the request's head: a request that fails any
//! check is refused before its body is read. A body is then read within a
//! size cap and a deadline (see `body`).
//!
//! In read-only mode every `POST` is refused with `403`.

use std::net::{IpAddr, SocketAddr};

use axum::http::{header, HeaderMap, Method};
use base64::Engine as _;

use worker_core::connection::Secret;
use worker_core::error::Error;

/// The shortest dashboard token accepted, in bytes.
pub const MIN_TOKEN_BYTES: usize = 16;

/// Who may use the dashboard.
#[derive(Debug, Clone)]
pub enum Access {
    /// Anyone who reaches it: only for loopback addresses.
    Loopback,
    /// Requests with this token (bearer, or basic auth's password).
    Token(Secret),
}

impl Access {
    /// The access for a dashboard bound to `addr`: the token when one is
    /// given, none on a loopback address, else a configuration error that
    /// says how to give one.
    ///
    /// ```
    /// use worker_operator::dashboard::Access;
    /// assert!(Access::for_address("127.0.0.1:9465".parse().unwrap(), None).is_ok());
    /// assert!(Access::for_address("0.0.0.0:9465".parse().unwrap(), None).is_err());
    /// ```
    pub fn for_address(addr: SocketAddr, token: Option<Secret>) -> Result<Access, Error> {
        match token {
            Some(t) if t.expose().trim().len() < MIN_TOKEN_BYTES => Err(Error::Config(format!(
                "the dashboard token is {} bytes long; it must be at least {MIN_TOKEN_BYTES} \
                 (set RABBIT_WORKER_DASHBOARD_TOKEN or --dashboard-token-file to a long random \
                 value, for example the output of `openssl rand -hex 32`)",
                t.expose().trim().len()
            ))),
            Some(t) => Ok(Access::Token(Secret::new(t.expose().trim()))),
            None if addr.ip().is_loopback() => Ok(Access::Loopback),
            None => Err(Error::Config(format!(
                "the dashboard on {addr} is reachable beyond this machine and needs a token: set RABBIT_WORKER_DASHBOARD_TOKEN or --dashboard-token-file, or bind a loopback address such as 127.0.0.1:{}",
                addr.port()
            ))),
        }
    }

    /// Whether a request with these headers may see the dashboard.
    pub(crate) fn admits(&self, headers: &HeaderMap) -> Verdict {
        match self {
            Access::Loopback => {
                if host_is_loopback(headers) {
                    Verdict::Admitted
                } else {
                    Verdict::Forbidden("a dashboard without a token answers only requests to a loopback host name (localhost, 127.0.0.1, [::1])")
                }
            }
            Access::Token(token) => match presented_token(headers) {
                Some((given, _)) if same(given.as_bytes(), token.expose().as_bytes()) => {
                    Verdict::Admitted
                }
                _ => Verdict::Unauthorized,
            },
        }
    }
}

/// What [`Access::admits`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Go on.
    Admitted,
    /// `401`: no or a wrong token.
    Unauthorized,
    /// `403`, and why.
    Forbidden(&'static str),
}

impl Access {
    /// Whether the request authenticates with this dashboard's token as
    /// `Authorization: Bearer` (never on a dashboard without a token).
    fn bearer_authenticated(&self, headers: &HeaderMap) -> bool {
        match self {
            Access::Loopback => false,
            Access::Token(token) => presented_token(headers).is_some_and(|(given, bearer)| {
                bearer && same(given.as_bytes(), token.expose().as_bytes())
            }),
        }
    }
}

/// The token a request presents, and whether as a bearer token.
fn presented_token(headers: &HeaderMap) -> Option<(String, bool)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some((rest.trim().to_owned(), true));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (_, password) = text.split_once(':')?;
        return Some((password.to_owned(), false));
    }
    None
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `Host` names this machine by a loopback name or address.
fn host_is_loopback(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        // HTTP/1.0 without Host: nothing a browser sends.
        return true;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Why a state-changing request is refused, or `None` when it may go on:
/// the same-origin checks of the [module docs](self). The CSRF token is
/// checked by [`csrf_ok`].
pub(crate) fn cross_site(method: &Method, headers: &HeaderMap) -> Option<&'static str> {
    if method == Method::GET || method == Method::HEAD {
        return None;
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site != "same-origin" && site != "none" {
            return Some("cross-site request refused (Sec-Fetch-Site)");
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        let origin_host = origin.split_once("://").map(|(_, h)| h);
        if origin_host.is_none() || origin_host != host {
            return Some("cross-origin request refused (Origin does not match Host)");
        }
    }
    None
}

/// Whether `given` is the process's CSRF token, or the request needs none
/// (it authenticated with the configured token as a bearer).
pub(crate) fn csrf_ok(
    access: &Access,
    expected: &str,
    given: Option<&str>,
    headers: &HeaderMap,
) -> bool {
    access.bearer_authenticated(headers)
        || given.is_some_and(|g| same(g.as_bytes(), expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn beyond_loopback_a_token_is_required() {
        let wide: SocketAddr = "0.0.0.0:1".parse().unwrap();
        let e = Access::for_address(wide, None).unwrap_err().to_string();
        assert!(e.contains("RABBIT_WORKER_DASHBOARD_TOKEN"), "{e}");
        assert!(Access::for_address(wide, Some(Secret::new(" "))).is_err());
        assert!(Access::for_address("[::1]:1".parse().unwrap(), None).is_ok());
        assert!(Access::for_address("127.0.0.2:1".parse().unwrap(), None).is_ok());
    }

    #[test]
    fn the_token_is_taken_as_bearer_or_basic_password() {
        let access = Access::Token(Secret::new("s3cret"));
        let basic = base64::engine::general_purpose::STANDARD.encode("anyone:s3cret");
        assert_eq!(
            access.admits(&headers(&[("authorization", "Bearer s3cret")])),
            Verdict::Admitted
        );
        assert_eq!(
            access.admits(&headers(&[("authorization", &format!("Basic {basic}"))])),
            Verdict::Admitted
        );
        for wrong in ["Bearer s3cre", "Bearer s3cret2", "Basic !!", "s3cret"] {
            assert_eq!(
                access.admits(&headers(&[("authorization", wrong)])),
                Verdict::Unauthorized,
                "{wrong}"
            );
        }
        assert_eq!(access.admits(&HeaderMap::new()), Verdict::Unauthorized);
    }

    #[test]
    fn without_a_token_only_loopback_host_names_are_served() {
        for host in ["127.0.0.1:9465", "localhost:1", "[::1]:80", "LOCALHOST"] {
            assert_eq!(
                Access::Loopback.admits(&headers(&[("host", host)])),
                Verdict::Admitted,
                "{host}"
            );
        }
        for host in ["evil.example:9465", "10.0.0.1:1"] {
            assert!(
                matches!(
                    Access::Loopback.admits(&headers(&[("host", host)])),
                    Verdict::Forbidden(_)
                ),
                "{host}"
            );
        }
    }

    #[test]
    fn cross_site_posts_are_refused() {
        let post = Method::POST;
        let ok = headers(&[
            ("host", "127.0.0.1:1"),
            ("origin", "http://127.0.0.1:1"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert_eq!(cross_site(&post, &ok), None);
        assert_eq!(
            cross_site(&post, &headers(&[("host", "127.0.0.1:1")])),
            None
        );
        assert!(cross_site(
            &post,
            &headers(&[("host", "127.0.0.1:1"), ("sec-fetch-site", "cross-site")])
        )
        .is_some());
        assert!(cross_site(
            &post,
            &headers(&[("host", "127.0.0.1:1"), ("origin", "http://evil.example")])
        )
        .is_some());
        assert!(cross_site(
            &post,
            &headers(&[("host", "127.0.0.1:1"), ("origin", "null")])
        )
        .is_some());
        assert_eq!(
            cross_site(&Method::GET, &headers(&[("origin", "http://evil.example")])),
            None
        );
    }

    const TOKEN: &str = "a-token-of-24-characters";

    #[test]
    fn csrf_token_or_the_configured_bearer_token() {
        let h = HeaderMap::new();
        let token = Access::Token(Secret::new(TOKEN));
        for access in [&Access::Loopback, &token] {
            assert!(csrf_ok(access, "abc", Some("abc"), &h));
            assert!(!csrf_ok(access, "abc", Some("abd"), &h));
            assert!(!csrf_ok(access, "abc", None, &h));
        }
        let bearer = |t: &str| headers(&[("authorization", &format!("Bearer {t}"))]);
        assert!(csrf_ok(&token, "abc", None, &bearer(TOKEN)));
        assert!(!csrf_ok(
            &token,
            "abc",
            None,
            &bearer("another-token-entirely")
        ));
    }

    /// On a dashboard without a token any bearer header used to skip the
    /// CSRF check: a local page or process could delete every parked
    /// message with `Authorization: Bearer x`.
    #[test]
    fn without_a_token_a_bearer_header_does_not_replace_the_csrf_token() {
        let any = headers(&[("authorization", "Bearer anything")]);
        assert!(!csrf_ok(&Access::Loopback, "abc", None, &any));
        assert!(!csrf_ok(&Access::Loopback, "abc", Some("wrong"), &any));
    }

    #[test]
    fn a_token_shorter_than_16_bytes_is_refused_with_how_to_make_one() {
        let wide: SocketAddr = "0.0.0.0:1".parse().unwrap();
        let e = Access::for_address(wide, Some(Secret::new("x")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("1 bytes long") && e.contains("at least 16"),
            "{e}"
        );
        assert!(e.contains("openssl rand"), "{e}");
        assert!(Access::for_address(wide, Some(Secret::new("fifteen-bytes!!"))).is_err());
        assert!(Access::for_address(wide, Some(Secret::new("sixteen-bytes!!!"))).is_ok());
    }
}
