//! Redis connection settings, with the names of the Django backend's
//! settings so existing configuration carries over.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Algorithm, Secret, SecretUrl};

/// A node of a Redis Cluster or a Sentinel, as `{ host, port }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeAddr {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// How to reach Redis. Exactly one deployment is chosen: Sentinel when
/// `sentinels` is set, Cluster when `startup_nodes` is set, otherwise a
/// standalone server from `url` or `host`/`port`/`db`.
///
/// Durations are seconds (fractions allowed): `socket_timeout = 0.1`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port/db`; overrides host, port, db and password.
    pub url: Option<SecretUrl>,
    /// Standalone server host (default `127.0.0.1`).
    pub host: String,
    /// Standalone server port (default 6379).
    pub port: u16,
    /// Database number (default 0; Cluster supports only 0).
    pub db: i64,
    /// ACL user name.
    pub username: Option<String>,
    /// Password of the Redis servers.
    pub password: Option<Secret>,
    /// The longest a decision may wait for Redis (default 0.1 s): a rate
    /// limiter sits on the request path.
    #[serde(with = "crate::serde_seconds")]
    pub socket_timeout: Duration,
    /// The longest a connection attempt may take (default 0.5 s).
    #[serde(with = "crate::serde_seconds")]
    pub socket_connect_timeout: Duration,
    /// TCP keepalive on every connection to the servers and sentinels
    /// (default on): the first probe after 60 s without traffic, then one
    /// every 10 s. A `redis+unix://` socket has no keepalive and ignores it.
    pub socket_keepalive: bool,
    /// How many multiplexed connections requests are spread over (default 2).
    pub max_connections: usize,
    /// Send a decision a second time when the first is known not to have
    /// reached Redis: the connection was refused (default off). The name is
    /// the Django setting's, but a decision that timed out is never sent
    /// again, since its script may have run and charged; a second run would
    /// charge twice.
    pub retry_on_timeout: bool,
    /// Prepended to every key by the store itself (default empty). From a
    /// settings file with `backend = "redis"`, it is the one prefix of the
    /// keys instead of the top-level `key_prefix`, never added to it.
    pub key_prefix: String,
    /// With `backend = "redis"`, the algorithm of limits that name none,
    /// over the top-level `algorithm`; see `Settings::default_algorithm`.
    pub algorithm: Option<Algorithm>,
    /// Redis Cluster seed nodes.
    pub startup_nodes: Vec<NodeAddr>,
    /// Sentinels as `[host, port]` pairs.
    pub sentinels: Vec<(String, u16)>,
    /// The Sentinel service (master group) name.
    pub service_name: Option<String>,
    /// Password of the sentinels themselves, when they require one.
    pub sentinel_password: Option<Secret>,
    /// With a `rediss://` url: a PEM file holding the CA that signed the
    /// server's certificate, instead of the system's trust store.
    pub tls_ca_cert: Option<std::path::PathBuf>,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: None,
            host: "127.0.0.1".to_owned(),
            port: 6379,
            db: 0,
            username: None,
            password: None,
            socket_timeout: Duration::from_millis(100),
            socket_connect_timeout: Duration::from_millis(500),
            socket_keepalive: true,
            max_connections: 2,
            retry_on_timeout: false,
            key_prefix: String::new(),
            algorithm: None,
            startup_nodes: Vec::new(),
            sentinels: Vec::new(),
            service_name: None,
            sentinel_password: None,
            tls_ca_cert: None,
        }
    }
}

/// A Redis setting that cannot work, named by its field.
pub type RedisSettingsError = crate::FieldError;

fn invalid(field: &'static str, problem: impl Into<String>) -> RedisSettingsError {
    crate::FieldError::new("redis", field, problem)
}

/// The deployment the settings describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deployment {
    /// One server.
    Standalone,
    /// A Redis Cluster.
    Cluster,
    /// A primary watched by Sentinels.
    Sentinel,
}

impl RedisSettings {
    /// Settings for one server at `url`.
    pub fn from_url(url: impl Into<String>) -> Self {
        Self { url: Some(SecretUrl::new(url)), ..Self::default() }
    }

    /// Settings for a Cluster reached through `nodes`.
    pub fn cluster(nodes: impl IntoIterator<Item = (String, u16)>) -> Self {
        let startup_nodes = nodes.into_iter().map(|(host, port)| NodeAddr { host, port }).collect();
        Self { startup_nodes, ..Self::default() }
    }

    /// Settings for the primary of `service_name`, found through `sentinels`.
    pub fn sentinel(sentinels: impl IntoIterator<Item = (String, u16)>, service_name: impl Into<String>) -> Self {
        Self { sentinels: sentinels.into_iter().collect(), service_name: Some(service_name.into()), ..Self::default() }
    }

    /// Which deployment these settings select.
    pub fn deployment(&self) -> Deployment {
        if !self.sentinels.is_empty() {
            Deployment::Sentinel
        } else if !self.startup_nodes.is_empty() {
            Deployment::Cluster
        } else {
            Deployment::Standalone
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), RedisSettingsError> {
        if let Some(url) = &self.url {
            let shown = url.redacted();
            let url = url.expose();
            if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("redis+unix://")) {
                return Err(invalid("url", format!("{shown:?} must start with redis:// or rediss://")));
            }
            if url.starts_with("rediss://") && !cfg!(feature = "redis-tls") {
                return Err(invalid("url", "TLS (rediss://) needs the crate feature `redis-tls`"));
            }
        }
        if self.tls_ca_cert.is_some() && !self.url.as_ref().is_some_and(|u| u.expose().starts_with("rediss://")) {
            return Err(invalid("tls_ca_cert", "only applies to a rediss:// url"));
        }
        if let Some(path) = &self.tls_ca_cert {
            if !path.is_file() {
                return Err(invalid("tls_ca_cert", format!("{} is not a readable file", path.display())));
            }
        }
        check_host(&self.host).map_err(|problem| invalid("host", problem))?;
        for node in &self.startup_nodes {
            check_host(&node.host).map_err(|problem| invalid("startup_nodes", problem))?;
        }
        for (host, _) in &self.sentinels {
            check_host(host).map_err(|problem| invalid("sentinels", problem))?;
        }
        if self.port == 0 {
            return Err(invalid("port", "must be between 1 and 65535"));
        }
        if !(0..=15_999).contains(&self.db) {
            return Err(invalid("db", format!("{} is not a database number", self.db)));
        }
        for (field, value) in
            [("socket_timeout", self.socket_timeout), ("socket_connect_timeout", self.socket_connect_timeout)]
        {
            crate::serde_seconds::check(value, (0.001, 60.0)).map_err(|problem| invalid(field, problem))?;
        }
        if self.max_connections == 0 || self.max_connections > 64 {
            return Err(invalid("max_connections", format!("{} must be between 1 and 64", self.max_connections)));
        }
        crate::store_key::check_prefix(&self.key_prefix).map_err(|problem| invalid("key_prefix", problem))?;
        match self.deployment() {
            Deployment::Sentinel => {
                if !cfg!(feature = "redis-sentinel") {
                    return Err(invalid("sentinels", "Redis Sentinel needs the crate feature `redis-sentinel`"));
                }
                if self.service_name.as_deref().is_none_or(|s| s.trim().is_empty()) {
                    return Err(invalid("service_name", "required with sentinels"));
                }
                if self.sentinels.iter().any(|(host, port)| host.is_empty() || *port == 0) {
                    return Err(invalid("sentinels", "every sentinel needs a host and a port"));
                }
            }
            Deployment::Cluster => {
                if !cfg!(feature = "redis-cluster") {
                    return Err(invalid("startup_nodes", "Redis Cluster needs the crate feature `redis-cluster`"));
                }
                if self.db != 0 {
                    return Err(invalid("db", "Redis Cluster has only database 0"));
                }
                if self.startup_nodes.iter().any(|n| n.host.is_empty() || n.port == 0) {
                    return Err(invalid("startup_nodes", "every node needs a host and a port"));
                }
            }
            Deployment::Standalone => {}
        }
        Ok(())
    }

    #[cfg(feature = "redis")]
    pub(crate) fn standalone_url(&self) -> String {
        match &self.url {
            Some(url) => url.expose().to_owned(),
            None => node_url(&self.host, self.port, self.username.as_deref(), self.password.as_ref(), self.db),
        }
    }
}

/// A host that cannot be: a URL or a `host:port` where a host name is
/// meant would otherwise fail every request at run time.
fn check_host(host: &str) -> Result<(), &'static str> {
    if host.trim().is_empty() {
        return Err("must not be empty");
    }
    if host.contains("://") || host.contains(['/', '@']) {
        return Err("a host name, not a URL; use redis.url for a URL");
    }
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if bare.contains(':') && bare.parse::<std::net::Ipv6Addr>().is_err() {
        return Err("a host name without a port; the port has a field of its own");
    }
    if host.contains(char::is_whitespace) {
        return Err("a host name has no spaces");
    }
    Ok(())
}

#[cfg(feature = "redis")]
pub(crate) fn node_url(host: &str, port: u16, username: Option<&str>, password: Option<&Secret>, db: i64) -> String {
    let auth = match (username, password.map(Secret::expose)) {
        (Some(user), Some(password)) => format!("{}:{}@", encode(user), encode(password)),
        (None, Some(password)) => format!(":{}@", encode(password)),
        (Some(user), None) => format!("{}@", encode(user)),
        (None, None) => String::new(),
    };
    let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() };
    format!("redis://{auth}{host}:{port}/{db}")
}

/// Percent-encodes the characters that would end the user-info part of a URL.
#[cfg(feature = "redis")]
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_name_their_field() {
        let cases: Vec<(RedisSettings, &str)> = vec![
            (RedisSettings { port: 0, ..Default::default() }, "redis.port"),
            (RedisSettings { socket_timeout: Duration::ZERO, ..Default::default() }, "redis.socket_timeout"),
            (RedisSettings::from_url("http://x"), "redis.url"),
            (RedisSettings { key_prefix: "{a}".into(), ..Default::default() }, "redis.key_prefix"),
            (RedisSettings { max_connections: 0, ..Default::default() }, "redis.max_connections"),
            (
                RedisSettings { service_name: None, ..RedisSettings::sentinel([("h".into(), 1)], "m") },
                "redis.service_name",
            ),
            (RedisSettings { db: 3, ..RedisSettings::cluster([("h".into(), 1)]) }, "redis.db"),
        ];
        for (settings, field) in cases {
            let err = settings.validate().unwrap_err().to_string();
            assert!(err.starts_with(field), "{err}");
        }
        RedisSettings::default().validate().unwrap();
    }

    #[cfg(feature = "redis")]
    #[test]
    fn passwords_are_escaped_in_urls() {
        assert_eq!(node_url("h", 1, None, Some(&Secret::from("p@ss:/")), 2), "redis://:p%40ss%3A%2F@h:1/2");
        assert_eq!(node_url("::1", 1, Some("u"), None, 0), "redis://u@[::1]:1/0");
    }
}
