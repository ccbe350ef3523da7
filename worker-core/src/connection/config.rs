//! [`ConnectionConfig`]: where and how to connect, URL parsing with the
//! credential and vhost overrides, and warnings about unsafe settings.

use std::time::Duration;

use lapin::uri::{AMQPScheme, AMQPUri};

use super::{Secret, TlsConfig};
use crate::error::{redact_url, Error};

/// The URL used when none is configured: the local broker's default account.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Where and how to connect.
///
/// ```
/// use worker_core::ConnectionConfig;
///
/// let config = ConnectionConfig::new("amqp://app:s3cret@mq-1:5672/%2f")
///     .with_fallback_url("amqp://app:s3cret@mq-2:5672/%2f")
///     .with_vhost("billing");
/// assert_eq!(config.urls.len(), 2);
/// // Debug output never shows the password.
/// assert!(!format!("{config:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
pub struct ConnectionConfig {
    /// One or more AMQP URLs, tried in order (several for a cluster).
    pub urls: Vec<String>,
    /// The client name shown in the management UI.
    pub connection_name: String,
    /// Timeout for one connection attempt.
    pub connect_timeout: Duration,
    /// Replaces the user name of every URL.
    pub username: Option<String>,
    /// Replaces the password of every URL.
    pub password: Option<Secret>,
    /// Replaces the virtual host of every URL (`/` is the default vhost).
    pub vhost: Option<String>,
    /// TLS settings for `amqps://` URLs; `None` uses the platform's trust store.
    pub tls: Option<TlsConfig>,
    /// Refuse (with [`Error::Config`]) a URL whose credentials would travel
    /// in clear text: `amqp://` to a host that is not this machine.
    pub require_tls: bool,
}

impl std::fmt::Debug for ConnectionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|u| redact_url(u)).collect();
        f.debug_struct("ConnectionConfig")
            .field("urls", &urls)
            .field("connection_name", &self.connection_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("vhost", &self.vhost)
            .field("tls", &self.tls)
            .field("require_tls", &self.require_tls)
            .finish()
    }
}

impl ConnectionConfig {
    /// A config for one URL.
    pub fn new(url: impl Into<String>) -> Self {
        ConnectionConfig {
            urls: vec![url.into()],
            connection_name: default_connection_name(),
            connect_timeout: Duration::from_secs(10),
            username: None,
            password: None,
            vhost: None,
            tls: None,
            require_tls: false,
        }
    }

    /// The URLs from `AMQP_URL` (comma-separated), or the local default.
    ///
    /// Only `AMQP_URL` is read;
    /// [`ConnectionSettings::from_env`](super::ConnectionSettings::from_env)
    /// reads the other variables too (vhost, user, password, TLS files).
    pub fn from_env() -> Self {
        let mut config = ConnectionConfig::new(String::new());
        config.urls = split_urls(&default_url());
        config
    }

    /// Adds a URL to try when the earlier ones cannot be reached.
    pub fn with_fallback_url(mut self, url: impl Into<String>) -> Self {
        self.urls.push(url.into());
        self
    }

    /// Uses this virtual host instead of the URLs' own.
    pub fn with_vhost(mut self, vhost: impl Into<String>) -> Self {
        self.vhost = Some(vhost.into());
        self
    }

    /// Uses these credentials instead of the URLs' own.
    pub fn with_credentials(mut self, username: impl Into<String>, password: Secret) -> Self {
        self.username = Some(username.into());
        self.password = Some(password);
        self
    }

    /// Refuses URLs whose credentials would travel in clear text (see
    /// [`require_tls`](Self::require_tls)).
    ///
    /// ```
    /// use worker_core::ConnectionConfig;
    ///
    /// let config = ConnectionConfig::new("amqp://app:pw@mq.example.com").requiring_tls();
    /// assert!(config.effective_uri(&config.urls[0]).is_err());
    /// let local = ConnectionConfig::new("amqp://app:pw@127.0.0.1").requiring_tls();
    /// assert!(local.effective_uri(&local.urls[0]).is_ok());
    /// ```
    pub fn requiring_tls(mut self) -> Self {
        self.require_tls = true;
        self
    }

    /// Uses these TLS settings for `amqps://` URLs.
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Parses one configured URL and applies the overrides; with
    /// [`require_tls`](Self::require_tls), refuses one that would send its
    /// credentials in clear text.
    ///
    /// Errors name the URL with its password redacted.
    pub fn effective_uri(&self, url: &str) -> Result<AMQPUri, Error> {
        let mut uri: AMQPUri = url.parse().map_err(|e: String| invalid_url(url, &e))?;
        if let Some(user) = &self.username {
            uri.authority.userinfo.username.clone_from(user);
        }
        if let Some(password) = &self.password {
            uri.authority.userinfo.password = password.expose().to_owned();
        }
        if let Some(vhost) = &self.vhost {
            uri.vhost.clone_from(vhost);
        }
        if self.require_tls && in_clear_text(&uri) {
            return Err(Error::Config(format!(
                "{} would send its user name and password in clear text and TLS is required (--require-tls or AMQP_REQUIRE_TLS); use amqps:// (port 5671)",
                redact_url(url)
            )));
        }
        Ok(uri)
    }

    /// Warnings about settings that will probably not work or are unsafe:
    /// the default `guest` account against a host that is not this machine
    /// (RabbitMQ only lets `guest` in over loopback), and credentials sent in
    /// clear text (`amqp://` to a host that is not this machine).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for url in &self.urls {
            let Ok(uri) = self.effective_uri(url) else {
                continue;
            };
            if uri.authority.userinfo.username == "guest" && !is_loopback(&uri.authority.host) {
                out.push(format!(
                    "connecting to {} as the default guest account: RabbitMQ refuses guest except from localhost; create a user and set AMQP_USER/AMQP_PASSWORD",
                    redact_url(url)
                ));
            }
            if in_clear_text(&uri) {
                out.push(format!(
                    "{} sends the user name and password in clear text (amqp:// to a host that is not this machine); use amqps://, or refuse such URLs with --require-tls or AMQP_REQUIRE_TLS=true",
                    redact_url(url)
                ));
            }
        }
        out
    }
}

/// Whether connecting to `uri` sends the credentials (AMQP's PLAIN login)
/// unencrypted over a network: `amqp://` to a host that is not loopback.
fn in_clear_text(uri: &AMQPUri) -> bool {
    uri.scheme == AMQPScheme::AMQP && !is_loopback(&uri.authority.host)
}

/// `AMQP_URL`, or [`DEFAULT_URL`].
pub fn default_url() -> String {
    std::env::var("AMQP_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_URL.into())
}

/// The error for a URL that does not parse, without its password (the
/// parser may quote the whole URL), saying how to encode a password that
/// holds reserved characters.
fn invalid_url(url: &str, parser_error: &str) -> Error {
    let shown = redact_url(url);
    let mut message = format!(
        "invalid AMQP URL {shown}: {}; expected amqp://user:password@host:5672/vhost (or amqps://)",
        parser_error.replace(url, &shown)
    );
    let password = crate::error::userinfo_span(url)
        .and_then(|(start, end)| url[start..end].split_once(':'))
        .map(|(_, password)| password);
    if password.is_some_and(|p| p.contains(['/', '?', '#', '@', ':', ',', '[', ']', '%'])) {
        message.push_str(
            ". The password holds characters URLs reserve: percent-encode them \
             (/ as %2F, ? as %3F, # as %23, @ as %40, : as %3A, , as %2C, % as %25), \
             or give the password by AMQP_PASSWORD or AMQP_PASSWORD_FILE",
        );
    }
    Error::Config(message)
}

/// Splits a comma-separated list of URLs. A comma only starts a new URL
/// when `amqp://` or `amqps://` follows it, so a comma in a password does
/// not cut a URL in two.
pub(super) fn split_urls(list: &str) -> Vec<String> {
    let mut urls: Vec<String> = Vec::new();
    for piece in list.split(',') {
        let starts_url = ["amqp://", "amqps://"]
            .iter()
            .any(|scheme| piece.trim_start().to_ascii_lowercase().starts_with(scheme));
        match urls.last_mut() {
            Some(last) if !starts_url => {
                last.push(',');
                last.push_str(piece);
            }
            _ => urls.push(piece.to_owned()),
        }
    }
    // A URL never ends in a comma (a host follows any password): trailing
    // commas are empty list items.
    urls.iter()
        .map(|u| u.trim().trim_end_matches(',').trim_end())
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect()
}

fn default_connection_name() -> String {
    format!("rabbit-worker@{}", crate::host::hostname())
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::ConnectionSettings;

    #[test]
    fn overrides_apply_to_every_url() {
        let config = ConnectionConfig::new("amqp://a:b@h1:5672/%2f")
            .with_fallback_url("amqps://h2")
            .with_credentials("app", Secret::new("p@ss/word"))
            .with_vhost("orders");
        for url in &config.urls {
            let uri = config.effective_uri(url).unwrap();
            assert_eq!(uri.authority.userinfo.username, "app");
            assert_eq!(uri.authority.userinfo.password, "p@ss/word");
            assert_eq!(uri.vhost, "orders");
        }
        assert_eq!(
            config.effective_uri("amqps://h2").unwrap().authority.port,
            5671
        );
    }

    #[test]
    fn bad_urls_are_config_errors_without_the_password() {
        let config = ConnectionConfig::new("http://u:topsecret@h/");
        let err = config.effective_uri(&config.urls[0]).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
        assert!(!err.to_string().contains("topsecret"), "{err}");
    }

    #[test]
    fn guest_is_warned_about_only_off_loopback() {
        assert!(ConnectionConfig::new("amqp://127.0.0.1")
            .warnings()
            .is_empty());
        assert!(ConnectionConfig::new("amqp://localhost")
            .warnings()
            .is_empty());
        assert!(ConnectionConfig::new("amqp://[::1]:5672")
            .warnings()
            .is_empty());
        let w = ConnectionConfig::new("amqps://guest:guest@mq.example.com").warnings();
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("guest"), "{w:?}");
        let named = ConnectionConfig::new("amqps://guest:guest@mq.example.com")
            .with_credentials("app", Secret::new("x"));
        assert!(named.warnings().is_empty());
    }

    #[test]
    fn passwords_with_reserved_characters_work_encoded_and_never_show() {
        // A comma in a password does not split the list.
        assert_eq!(
            split_urls(",amqp://app:a,b@h1/%2f,amqps://app:c,,d@h2,, amqp://h3,"),
            ["amqp://app:a,b@h1/%2f", "amqps://app:c,,d@h2", "amqp://h3"]
        );
        // Percent-encoded, `/` and `,` reach the broker decoded.
        let config = ConnectionConfig::new("amqp://app:Ab3%2FxY%2Czq9@127.0.0.1:1/%2f");
        let uri = config.effective_uri(&config.urls[0]).unwrap();
        assert_eq!(uri.authority.userinfo.password, "Ab3/xY,zq9");
        assert_eq!(uri.authority.host, "127.0.0.1");
        // Unencoded: a configuration error that hides the password and says how to encode it.
        for url in [
            "amqp://app:Ab3/xY+zq9@127.0.0.1:1/%2f",
            "amqp://app:Ab3#xYzq9@mq:5672/%2f",
            "amqp:app:Ab3xYzq9@mq",
        ] {
            let config = ConnectionConfig::new(url);
            let Err(err) = config.effective_uri(url) else {
                panic!("{url} parsed")
            };
            let text = err.to_string();
            assert!(matches!(err, Error::Config(_)), "{text}");
            assert!(!text.contains("Ab3"), "{text}");
            if url.contains("://") {
                assert!(text.contains("%2F"), "{text}");
            }
        }
    }

    #[test]
    fn credentials_in_clear_text_warn_or_are_refused() {
        let remote = ConnectionConfig::new("amqp://app:pw@mq.example.com/%2f")
            .with_fallback_url("amqps://app:pw@mq.example.com/%2f")
            .with_fallback_url("amqp://app:pw@localhost")
            .with_fallback_url("amqp://app:pw@127.0.0.1:5672");
        let warnings = remote.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("clear text"), "{warnings:?}");
        assert!(
            warnings[0].contains("app:***@mq.example.com"),
            "{warnings:?}"
        );

        let strict = remote.requiring_tls();
        let err = strict.effective_uri(&strict.urls[0]).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
        assert!(err.to_string().contains("amqps://"), "{err}");
        assert!(!err.to_string().contains("pw@"), "{err}");
        for url in &strict.urls[1..] {
            assert!(strict.effective_uri(url).is_ok(), "{url}");
        }
        let refused = ConnectionSettings {
            urls: vec!["amqp://app:pw@mq.example.com".into()],
            require_tls: true,
            ..ConnectionSettings::default()
        }
        .resolve();
        assert!(matches!(refused, Err(Error::Config(_))), "{refused:?}");
    }
}
