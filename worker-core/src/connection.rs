//! One shared connection to RabbitMQ, opened on demand and reopened after loss.
//!
//! [`ConnectionConfig`] says where and how to connect: one or more URLs
//! (tried in order, for a cluster), optional credential and vhost overrides
//! that are applied to every URL without splicing secrets into strings, and
//! optional TLS settings. [`ConnectionSettings`] is the raw form read from
//! the environment or from command-line flags; [`ConnectionSettings::resolve`]
//! validates it into a config.
//!
//! Every URL that is logged or shown goes through [`redact_url`], and the
//! `Debug` output of these types never contains a password.
//!
//! # TLS
//!
//! `amqps://` URLs use TLS (rustls, through lapin) with hostname
//! verification always on. The server's certificate is checked against the
//! platform's trust store plus, when given, the CA certificates of
//! [`TlsConfig::ca_pem`]. A client certificate and key (PEM) can be given
//! for mutual TLS (with `?auth_mechanism=external` in the URL, the broker
//! takes the user name from the certificate).
//!
//! # Flow control
//!
//! When RabbitMQ raises a resource alarm it sends `connection.blocked` and
//! stops reading from publishing connections. lapin then stops writing to
//! the socket until `connection.unblocked`, so publishes (and every other
//! frame) simply wait. The [`Connector`] follows those notices:
//! [`Connector::is_blocked`] and [`Connector::wait_until_unblocked`] let a
//! publisher pause instead of running into its confirm timeout, a warning
//! is logged, and the `rabbit_worker_connection_blocked` gauge is 1 while
//! blocked.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Connection, ConnectionProperties, Event};
use tokio::sync::{watch, Mutex};

use crate::broker::{probe_version, Capabilities};
use crate::error::{redact_url, Error};

/// How long [`Connector::close`] waits for the broker to confirm the close.
pub const CLOSE_WAIT: Duration = Duration::from_secs(5);

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
    /// Only `AMQP_URL` is read; [`ConnectionSettings::from_env`] reads the
    /// other variables too (vhost, user, password, TLS files).
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
fn split_urls(list: &str) -> Vec<String> {
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

/// A password that never shows in `Debug` or `Display` output.
///
/// ```
/// let secret = worker_core::connection::Secret::new("hunter2");
/// assert_eq!(format!("{secret:?}"), "***");
/// assert_eq!(secret.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// TLS settings for `amqps://` connections (hostname verification is always on).
///
/// ```no_run
/// use worker_core::connection::TlsConfig;
///
/// let tls = TlsConfig::from_files(
///     Some("/etc/rabbitmq/ca.pem".as_ref()),
///     Some("/etc/worker/client.pem".as_ref()),
///     Some("/etc/worker/client.key".as_ref()),
/// )?;
/// # Ok::<(), worker_core::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct TlsConfig {
    /// Extra CA certificates (PEM) trusted for the server's certificate, on
    /// top of the platform's trust store.
    pub ca_pem: Option<String>,
    /// A client certificate chain (PEM) and its private key (PEM: PKCS#8,
    /// PKCS#1 or SEC1), for mutual TLS.
    pub client_cert: Option<(Vec<u8>, Secret)>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("ca_pem", &self.ca_pem.as_ref().map(|p| p.len()))
            .field("client_cert", &self.client_cert.is_some())
            .finish()
    }
}

impl TlsConfig {
    /// Reads a CA file and an optional client certificate and key (all PEM).
    ///
    /// The certificate and key must be given together. Errors say which
    /// file could not be read.
    pub fn from_files(
        ca_file: Option<&Path>,
        cert_file: Option<&Path>,
        key_file: Option<&Path>,
    ) -> Result<TlsConfig, Error> {
        let read = |what: &str, path: &Path| {
            std::fs::read(path).map_err(|e| {
                Error::Config(format!(
                    "cannot read the TLS {what} file {}: {e}",
                    path.display()
                ))
            })
        };
        let ca_pem = match ca_file {
            Some(path) => {
                let pem = String::from_utf8(read("CA", path)?).map_err(|_| {
                    Error::Config(format!(
                        "the TLS CA file {} is not PEM text",
                        path.display()
                    ))
                })?;
                if !pem.contains("-----BEGIN CERTIFICATE-----") {
                    return Err(Error::Config(format!(
                        "the TLS CA file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                        path.display()
                    )));
                }
                Some(pem)
            }
            None => None,
        };
        let client_cert = match (cert_file, key_file) {
            (Some(cert), Some(key)) => {
                let key = String::from_utf8(read("key", key)?).map_err(|_| {
                    Error::Config(format!("the TLS key file {} is not PEM text", key.display()))
                })?;
                Some((read("certificate", cert)?, Secret::new(key)))
            }
            (None, None) => None,
            _ => {
                return Err(Error::Config(
                    "a TLS client certificate needs both --tls-cert-file and --tls-key-file (AMQP_TLS_CERT_FILE and AMQP_TLS_KEY_FILE)".into(),
                ))
            }
        };
        Ok(TlsConfig {
            ca_pem,
            client_cert,
        })
    }

    fn to_lapin(&self) -> OwnedTLSConfig {
        OwnedTLSConfig {
            identity: self
                .client_cert
                .as_ref()
                .map(|(pem, key)| OwnedIdentity::PKCS8 {
                    pem: pem.clone(),
                    key: key.expose().as_bytes().to_vec(),
                }),
            cert_chain: self.ca_pem.clone(),
        }
    }
}

/// Connection settings as given by flags or environment variables, before
/// they are checked.
///
/// | field | environment variable |
/// | --- | --- |
/// | `urls` | `AMQP_URL` (comma-separated) |
/// | `vhost` | `AMQP_VHOST` |
/// | `user` | `AMQP_USER` |
/// | `password` | `AMQP_PASSWORD` |
/// | `password_file` | `AMQP_PASSWORD_FILE` |
/// | `tls_ca_file` | `AMQP_TLS_CA_FILE` |
/// | `tls_cert_file` | `AMQP_TLS_CERT_FILE` |
/// | `tls_key_file` | `AMQP_TLS_KEY_FILE` |
/// | `require_tls` | `AMQP_REQUIRE_TLS` (`true` or `1`) |
#[derive(Clone, Default)]
pub struct ConnectionSettings {
    /// URLs to try in order; empty means [`DEFAULT_URL`].
    pub urls: Vec<String>,
    /// A virtual host replacing the URLs' own.
    pub vhost: Option<String>,
    /// A user name replacing the URLs' own.
    pub user: Option<String>,
    /// A password replacing the URLs' own.
    pub password: Option<Secret>,
    /// A file holding the password (trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// Extra CA certificates (PEM) for `amqps://`.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    pub tls_cert_file: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    pub tls_key_file: Option<PathBuf>,
    /// The client name shown in the management UI.
    pub connection_name: Option<String>,
    /// Refuse URLs that would send credentials in clear text
    /// ([`ConnectionConfig::require_tls`]).
    pub require_tls: bool,
}

impl std::fmt::Debug for ConnectionSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|u| redact_url(u)).collect();
        f.debug_struct("ConnectionSettings")
            .field("urls", &urls)
            .field("vhost", &self.vhost)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("password_file", &self.password_file)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("require_tls", &self.require_tls)
            .finish()
    }
}

impl ConnectionSettings {
    /// Reads the `AMQP_*` variables listed on this type.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        ConnectionSettings {
            urls: var("AMQP_URL").map(|u| split_urls(&u)).unwrap_or_default(),
            vhost: var("AMQP_VHOST"),
            user: var("AMQP_USER"),
            password: var("AMQP_PASSWORD").map(Secret::new),
            password_file: var("AMQP_PASSWORD_FILE").map(PathBuf::from),
            tls_ca_file: var("AMQP_TLS_CA_FILE").map(PathBuf::from),
            tls_cert_file: var("AMQP_TLS_CERT_FILE").map(PathBuf::from),
            tls_key_file: var("AMQP_TLS_KEY_FILE").map(PathBuf::from),
            connection_name: None,
            require_tls: var("AMQP_REQUIRE_TLS").is_some_and(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "1" | "true" | "yes" | "on"
                )
            }),
        }
    }

    /// Checks the settings and builds a config: reads the password and TLS
    /// files, parses every URL, and refuses TLS files for `amqp://` URLs.
    pub fn resolve(self) -> Result<ConnectionConfig, Error> {
        let urls: Vec<String> = self
            .urls
            .iter()
            .flat_map(|u| split_urls(u))
            .collect::<Vec<_>>();
        let urls = if urls.is_empty() {
            vec![DEFAULT_URL.to_owned()]
        } else {
            urls
        };
        let password = match (self.password, &self.password_file) {
            (Some(_), Some(_)) => {
                return Err(Error::Config(
                    "both AMQP_PASSWORD and AMQP_PASSWORD_FILE are set; keep one".into(),
                ))
            }
            (Some(p), None) => Some(p),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::Config(format!(
                        "cannot read the password file {} (AMQP_PASSWORD_FILE): {e}",
                        path.display()
                    ))
                })?;
                Some(Secret::new(text.trim_end_matches(['\r', '\n'])))
            }
            (None, None) => None,
        };
        let tls_given = self.tls_ca_file.is_some()
            || self.tls_cert_file.is_some()
            || self.tls_key_file.is_some();
        let tls = if tls_given {
            Some(TlsConfig::from_files(
                self.tls_ca_file.as_deref(),
                self.tls_cert_file.as_deref(),
                self.tls_key_file.as_deref(),
            )?)
        } else {
            None
        };
        let mut config = ConnectionConfig::new(String::new());
        config.urls = urls;
        config.username = self.user;
        config.password = password;
        config.vhost = self.vhost;
        config.tls = tls;
        config.require_tls = self.require_tls;
        if let Some(name) = self.connection_name {
            config.connection_name = name;
        }
        for url in &config.urls {
            let uri = config.effective_uri(url)?;
            if tls_given && uri.scheme != AMQPScheme::AMQPS {
                return Err(Error::Config(format!(
                    "TLS files are set but {} is not an amqps:// URL; use amqps:// (port 5671) or drop the TLS settings",
                    redact_url(url)
                )));
            }
        }
        Ok(config)
    }
}

/// A connection shared by a worker's consumers and its publisher.
///
/// Cheap to clone. [`connection`](Connector::connection) returns the current
/// connection or opens a new one when there is none or it was lost.
#[derive(Clone)]
pub struct Connector {
    inner: Arc<ConnectorInner>,
}

struct ConnectorInner {
    config: ConnectionConfig,
    current: Mutex<Option<Arc<Connection>>>,
    blocked: watch::Sender<Option<String>>,
    /// Which connection's notices count: bumped for every new connection,
    /// so that a late notice from an old one cannot change the state.
    generation: Arc<AtomicU64>,
    /// What the broker of the current connection does, by its version.
    capabilities: watch::Sender<Capabilities>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self
            .inner
            .config
            .urls
            .iter()
            .map(|u| redact_url(u))
            .collect();
        f.debug_struct("Connector").field("urls", &urls).finish()
    }
}

impl Connector {
    /// A connector; nothing is opened until first use.
    pub fn new(config: ConnectionConfig) -> Self {
        Connector {
            inner: Arc::new(ConnectorInner {
                config,
                current: Mutex::new(None),
                blocked: watch::Sender::new(None),
                generation: Arc::new(AtomicU64::new(0)),
                capabilities: watch::Sender::new(Capabilities::unknown()),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ConnectionConfig {
        &self.inner.config
    }

    /// The live connection, opening one (trying each URL once) if needed.
    pub async fn connection(&self) -> Result<Arc<Connection>, Error> {
        let mut current = self.inner.current.lock().await;
        if let Some(conn) = current.as_ref() {
            if conn.status().connected() {
                return Ok(conn.clone());
            }
        }
        let conn = Arc::new(self.open().await?);
        self.watch_events(&conn);
        *current = Some(conn.clone());
        Ok(conn)
    }

    /// What the broker of the latest connection does (by the version it
    /// announced); the newest known rules before the first connection.
    pub fn capabilities(&self) -> Capabilities {
        *self.inner.capabilities.borrow()
    }

    /// Whether a connection is open right now.
    pub async fn is_connected(&self) -> bool {
        self.inner
            .current
            .lock()
            .await
            .as_ref()
            .is_some_and(|c| c.status().connected())
    }

    /// Whether the broker has blocked the current connection
    /// (`connection.blocked`, sent on a memory or disk alarm).
    pub fn is_blocked(&self) -> bool {
        self.inner.blocked.borrow().is_some()
    }

    /// Waits while the broker blocks the current connection; returns at
    /// once when it does not. Publishers call this before sending so that a
    /// resource alarm pauses them instead of failing them.
    pub async fn wait_until_unblocked(&self) {
        let mut rx = self.inner.blocked.subscribe();
        let _ = rx.wait_for(Option::is_none).await;
    }

    /// Changes of the blocked state: `Some(reason)` while blocked.
    pub(crate) fn blocked_changes(&self) -> watch::Receiver<Option<String>> {
        self.inner.blocked.subscribe()
    }

    /// Follows `connection.blocked` / `unblocked` notices of one connection.
    fn watch_events(&self, conn: &Connection) {
        self.inner.blocked.send_replace(None);
        metrics::gauge!("rabbit_worker_connection_blocked").set(0.0);
        let mut events = conn.events_listener();
        let status = conn.status().clone();
        let blocked = self.inner.blocked.clone();
        let generation = self.inner.generation.clone();
        let mine = generation.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                if generation.load(Ordering::SeqCst) != mine {
                    break;
                }
                match event {
                    Event::ConnectionBlocked(reason) => {
                        tracing::warn!(
                            %reason,
                            "RabbitMQ blocked the connection (resource alarm); publishing pauses until it clears"
                        );
                        metrics::gauge!("rabbit_worker_connection_blocked").set(1.0);
                        blocked.send_replace(Some(reason));
                    }
                    Event::ConnectionUnblocked => {
                        tracing::info!("RabbitMQ unblocked the connection; publishing resumes");
                        metrics::gauge!("rabbit_worker_connection_blocked").set(0.0);
                        blocked.send_replace(None);
                    }
                    // Channel errors arrive here too (a 404 from a passive
                    // declare); only a dead connection ends the watch.
                    Event::Error(_) if !status.connected() => break,
                    _ => {}
                }
            }
            // The connection is gone; a new one starts unblocked.
            if generation.load(Ordering::SeqCst) == mine {
                metrics::gauge!("rabbit_worker_connection_blocked").set(0.0);
                blocked.send_replace(None);
            }
        });
    }

    async fn open(&self) -> Result<Connection, Error> {
        let config = &self.inner.config;
        let runtime = lapin::runtime::default_runtime()
            .map_err(|e| Error::Config(format!("no async runtime for lapin: {e}")))?;
        let tls = config
            .tls
            .as_ref()
            .map(TlsConfig::to_lapin)
            .unwrap_or_default();
        let mut last = None;
        for url in &config.urls {
            let uri = config.effective_uri(url)?;
            let props = ConnectionProperties::default()
                .with_connection_name(config.connection_name.as_str().into());
            let attempt = Connection::connect_uri_with_config(
                uri.clone(),
                props,
                tls.clone(),
                runtime.clone(),
            );
            match tokio::time::timeout(config.connect_timeout, attempt).await {
                Ok(Ok(conn)) => {
                    let version = probe_version(&uri, &tls, config.connect_timeout).await;
                    let capabilities = version.map_or(Capabilities::unknown(), Capabilities::of);
                    tracing::info!(url = %redact_url(url), broker = %capabilities, "connected to RabbitMQ");
                    self.inner.capabilities.send_replace(capabilities);
                    return Ok(conn);
                }
                Ok(Err(e)) => {
                    let err = Error::connect(url, e.to_string());
                    if err.is_fatal() {
                        return Err(err);
                    }
                    last = Some(err);
                }
                Err(_) => {
                    last = Some(Error::connect_timeout(url, config.connect_timeout));
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::Config("no AMQP URL configured".into())))
    }

    /// Closes the connection politely, if one is open.
    ///
    /// Waits at most [`CLOSE_WAIT`] for the broker's `close-ok`: a close
    /// that races channels still closing can leave lapin's close promise
    /// unresolved, and a stopping worker must not hang on it. The
    /// connection is dropped either way.
    pub async fn close(&self) {
        if let Some(conn) = self.inner.current.lock().await.take() {
            if conn.status().connected() {
                let closing = conn.close(200, "worker stopping".into());
                if tokio::time::timeout(CLOSE_WAIT, closing).await.is_err() {
                    tracing::debug!(
                        "no connection.close-ok within {CLOSE_WAIT:?}; dropping the connection"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn settings_split_lists_and_read_password_files() {
        let dir = std::env::temp_dir().join(format!("rw-conn-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let config = ConnectionSettings {
            urls: vec!["amqp://h1, amqp://h2".into(), "amqp://h3".into()],
            user: Some("app".into()),
            password_file: Some(file.clone()),
            ..ConnectionSettings::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(config.urls, ["amqp://h1", "amqp://h2", "amqp://h3"]);
        assert_eq!(config.password.as_ref().unwrap().expose(), "from-file");

        let both = ConnectionSettings {
            password: Some(Secret::new("x")),
            password_file: Some(file),
            ..ConnectionSettings::default()
        }
        .resolve();
        assert!(matches!(both, Err(Error::Config(_))));
        let missing = ConnectionSettings {
            password_file: Some(dir.join("nope")),
            ..ConnectionSettings::default()
        }
        .resolve()
        .unwrap_err();
        assert!(
            missing.to_string().contains("AMQP_PASSWORD_FILE"),
            "{missing}"
        );
        std::fs::remove_dir_all(dir).unwrap();
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

    #[test]
    fn tls_files_need_amqps_and_a_cert_needs_its_key() {
        let dir = std::env::temp_dir().join(format!("rw-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let plain = ConnectionSettings {
            urls: vec!["amqp://h".into()],
            tls_ca_file: Some(ca.clone()),
            ..ConnectionSettings::default()
        }
        .resolve()
        .unwrap_err();
        assert!(plain.to_string().contains("amqps://"), "{plain}");
        let half = ConnectionSettings {
            urls: vec!["amqps://h".into()],
            tls_cert_file: Some(ca.clone()),
            ..ConnectionSettings::default()
        }
        .resolve()
        .unwrap_err();
        assert!(half.to_string().contains("--tls-key-file"), "{half}");
        let ok = ConnectionSettings {
            urls: vec!["amqps://h".into()],
            tls_ca_file: Some(ca),
            ..ConnectionSettings::default()
        }
        .resolve()
        .unwrap();
        assert!(ok.tls.unwrap().ca_pem.is_some());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
