//! [`TlsConfig`]: CA and client certificates for `amqps://` connections.

use std::path::Path;

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};

use super::Secret;
use crate::error::Error;

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

    /// The settings in lapin's form.
    pub(super) fn to_lapin(&self) -> OwnedTLSConfig {
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
