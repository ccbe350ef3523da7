//! The [`Connector`]: one shared connection, opened on demand (probing the
//! broker's version) and reopened after loss, following the broker's
//! blocked notices.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::{Connection, ConnectionProperties, Event};
use tokio::sync::{watch, Mutex};

use super::{ConnectionConfig, TlsConfig};
use crate::broker::{probe_version, Capabilities};
use crate::error::{redact_url, Error};

/// How long [`Connector::close`] waits for the broker to confirm the close.
pub const CLOSE_WAIT: Duration = Duration::from_secs(5);

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
        metrics::gauge!(crate::metric_names::CONNECTION_BLOCKED).set(0.0);
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
                        metrics::gauge!(crate::metric_names::CONNECTION_BLOCKED).set(1.0);
                        blocked.send_replace(Some(reason));
                    }
                    Event::ConnectionUnblocked => {
                        tracing::info!("RabbitMQ unblocked the connection; publishing resumes");
                        metrics::gauge!(crate::metric_names::CONNECTION_BLOCKED).set(0.0);
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
                metrics::gauge!(crate::metric_names::CONNECTION_BLOCKED).set(0.0);
                blocked.send_replace(None);
            }
        });
    }

    async fn open(&self) -> Result<Connection, Error> {
        let config = &self.inner.config;
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
            let attempt = super::guard::connect(uri.clone(), props, tls.clone());
            match tokio::time::timeout(config.connect_timeout, attempt).await {
                Ok(Ok(conn)) => {
                    let version = probe_version(&uri, &tls, config.connect_timeout).await;
                    let capabilities = version.map_or(Capabilities::unknown(), Capabilities::of);
                    tracing::info!(url = %redact_url(url), broker = %capabilities, "connected to RabbitMQ");
                    self.inner.capabilities.send_replace(capabilities);
                    return Ok(conn);
                }
                Ok(Err(e)) => {
                    let err = Error::connect(url, &e);
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
