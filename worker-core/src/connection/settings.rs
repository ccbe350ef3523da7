//! [`ConnectionSettings`]: connection settings from flags or `AMQP_*`
//! environment variables, checked into a [`ConnectionConfig`].

use std::path::PathBuf;

use lapin::uri::AMQPScheme;

use super::config::split_urls;
use super::{ConnectionConfig, Secret, TlsConfig, DEFAULT_URL};
use crate::error::{redact_url, Error};

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

#[cfg(test)]
mod tests {
    use super::*;

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
