//! One shared connection to RabbitMQ, opened on demand and reopened after loss.
//!
//! [`ConnectionConfig`] says where and how to connect: one or more URLs
//! (tried in order, for a cluster), optional credential and vhost overrides
//! that are applied to every URL without splicing secrets into strings, and
//! optional TLS settings. [`ConnectionSettings`] is the raw form read from
//! the environment or from command-line flags; [`ConnectionSettings::resolve`]
//! validates it into a config.
//!
//! Every URL that is logged or shown goes through
//! [`redact_url`](crate::redact_url), and the `Debug` output of these types
//! never contains a password.
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
//!
//! The module is split by concern: [`ConnectionConfig`] with URL handling
//! and warnings (`config`), [`Secret`] (`secret`), [`TlsConfig`] (`tls`),
//! [`ConnectionSettings`] from flags and the environment (`settings`) and
//! the [`Connector`] (`connector`). Everything is re-exported here but
//! the header-depth [`guard`] under every connection the worker opens.

mod config;
mod connector;
pub mod guard;
mod secret;
mod settings;
mod tls;

pub use config::{default_url, ConnectionConfig, DEFAULT_URL};
pub use connector::{Connector, CLOSE_WAIT};
pub use secret::Secret;
pub use settings::ConnectionSettings;
pub use tls::TlsConfig;
