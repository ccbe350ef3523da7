//! One shared connection to RabbitMQ, opened on demand and reopened after loss.

use std::sync::Arc;
use std::time::Duration;

use lapin::{Connection, ConnectionProperties};
use tokio::sync::Mutex;

use crate::error::{redact_url, Error};

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// One or more AMQP URLs, tried in order (several for a cluster).
    pub urls: Vec<String>,
    /// The client name shown in the management UI.
    pub connection_name: String,
    /// Timeout for one connection attempt.
    pub connect_timeout: Duration,
}

impl ConnectionConfig {
    /// A config for one URL.
    pub fn new(url: impl Into<String>) -> Self {
        ConnectionConfig {
            urls: vec![url.into()],
            connection_name: default_connection_name(),
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// The URL from `AMQP_URL`, or the local default.
    pub fn from_env() -> Self {
        ConnectionConfig::new(default_url())
    }
}

/// `AMQP_URL`, or `amqp://guest:guest@127.0.0.1:5672/%2f`.
pub fn default_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn default_connection_name() -> String {
    format!("rabbit-worker@{}", crate::host::hostname())
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
        *current = Some(conn.clone());
        Ok(conn)
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

    async fn open(&self) -> Result<Connection, Error> {
        let config = &self.inner.config;
        let mut last = None;
        for url in &config.urls {
            let props = ConnectionProperties::default()
                .with_connection_name(config.connection_name.as_str().into());
            match tokio::time::timeout(config.connect_timeout, Connection::connect(url, props))
                .await
            {
                Ok(Ok(conn)) => {
                    tracing::info!(url = %redact_url(url), "connected to RabbitMQ");
                    return Ok(conn);
                }
                Ok(Err(e)) => {
                    last = Some(Error::Connect {
                        url: redact_url(url),
                        message: e.to_string(),
                    });
                }
                Err(_) => {
                    last = Some(Error::Connect {
                        url: redact_url(url),
                        message: format!("timed out after {:?}", config.connect_timeout),
                    });
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::Config("no AMQP URL configured".into())))
    }

    /// Closes the connection politely, if one is open.
    pub async fn close(&self) {
        if let Some(conn) = self.inner.current.lock().await.take() {
            if conn.status().connected() {
                let _ = conn.close(200, "worker stopping".into()).await;
            }
        }
    }
}
