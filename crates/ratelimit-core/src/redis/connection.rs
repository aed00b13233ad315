//! Connections to the three deployments, behind one `invoke`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::io::tcp::TcpSettings;
use ::redis::io::tcp::socket2::TcpKeepalive;
use ::redis::{Cmd, ConnectionInfo, ErrorKind, FromRedisValue, IntoConnectionInfo, RedisError, ScriptInvocation};

use super::STORE;
use super::settings::RedisSettings;
use crate::StoreError;

pub(super) enum Backend {
    Standalone(Pool),
    #[cfg(feature = "redis-cluster")]
    Cluster(::redis::cluster_async::ClusterConnection),
    #[cfg(feature = "redis-sentinel")]
    Sentinel(std::sync::Arc<sentinel::Primary>),
}

/// A few multiplexed connections, used in turn.
pub(super) struct Pool {
    connections: Vec<ConnectionManager>,
    next: AtomicUsize,
}

impl Pool {
    fn pick(&self) -> ConnectionManager {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        self.connections[i].clone()
    }
}

pub(super) fn manager_config(settings: &RedisSettings) -> ConnectionManagerConfig {
    // One attempt per connection: the manager would retry every failure,
    // a refused password included, after a backoff of 100 ms or more, so
    // with a short connect timeout the caller's bound fired first and the
    // refusal was reported as a timeout. A connection that breaks is made
    // again on its next use, and the first connection is retried by the
    // background connector (`ConnectingStore`).
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(settings.socket_connect_timeout))
        .set_response_timeout(Some(settings.socket_timeout))
        .set_number_of_retries(0)
}

/// Idle time before the first keepalive probe. The kernel's default (two
/// hours on Linux) is longer than the idle timeout of most NAT gateways,
/// firewalls and load balancers, which then drop a quiet connection
/// without a word; the next decision would wait out `socket_timeout` on it.
pub(crate) const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// Time between unanswered probes, where the platform lets it be set.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// The TCP options of every connection to a server or a sentinel.
pub(super) fn tcp_settings(settings: &RedisSettings) -> TcpSettings {
    let tcp = TcpSettings::default();
    if !settings.socket_keepalive {
        return tcp;
    }
    let keepalive = TcpKeepalive::new().with_time(KEEPALIVE_IDLE);
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "macos", target_os = "windows"))]
    let keepalive = keepalive.with_interval(KEEPALIVE_INTERVAL);
    tcp.set_keepalive(keepalive)
}

/// Connection details for `url` with the settings' TCP options.
fn connection_info(url: &str, settings: &RedisSettings) -> Result<ConnectionInfo, StoreError> {
    Ok(url.into_connection_info().map_err(backend_error)?.set_tcp_settings(tcp_settings(settings)))
}

fn backend_error(error: RedisError) -> StoreError {
    StoreError::backend(STORE, error)
}

/// The server refused the credentials: a wrong password, an unknown or
/// disabled ACL user, a password sent to a server that has none, or none
/// sent to one that requires it. Says which settings to look at and
/// nothing of their values.
#[derive(Debug, thiserror::Error)]
#[error("the Redis server refused the credentials: check {settings} ({reason})")]
pub struct CredentialsRefused {
    settings: &'static str,
    reason: &'static str,
}

/// The settings holding the credentials of the Redis servers.
const SERVER_CREDENTIALS: &str = "redis.username and redis.password, or the user-info of redis.url";

fn credentials_refused(error: &RedisError, settings: &'static str) -> Option<CredentialsRefused> {
    let reason = match (error.kind(), error.code()) {
        (ErrorKind::AuthenticationFailed, _) => "authentication failed",
        (_, Some("WRONGPASS")) => "wrong password, or unknown or disabled user",
        (_, Some("NOAUTH")) => "the server requires a password and none was sent",
        _ => return None,
    };
    Some(CredentialsRefused { settings, reason })
}

/// Runs `work` within `limit`; the client's own response timeout, which
/// may fire first, is reported as the same timeout.
async fn within<T>(limit: Duration, work: impl Future<Output = Result<T, RedisError>>) -> Result<T, StoreError> {
    within_as(limit, SERVER_CREDENTIALS, work).await
}

/// [`within`], naming `credentials` when the server refuses them.
async fn within_as<T>(
    limit: Duration,
    credentials: &'static str,
    work: impl Future<Output = Result<T, RedisError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, work).await {
        Ok(Err(error)) if error.is_timeout() => Err(StoreError::Timeout { store: STORE, after: limit }),
        Ok(Err(error)) => Err(match credentials_refused(&error, credentials) {
            Some(refused) => StoreError::backend(STORE, refused),
            None => backend_error(error),
        }),
        Ok(result) => result.map_err(backend_error),
        Err(_) => Err(StoreError::Timeout { store: STORE, after: limit }),
    }
}

/// A client for one server, over TLS for a `rediss://` url.
fn standalone_client(settings: &RedisSettings) -> Result<::redis::Client, StoreError> {
    let url = settings.standalone_url();
    let info = connection_info(&url, settings)?;
    #[cfg(feature = "redis-tls")]
    if url.starts_with("rediss://") {
        let root_cert = match &settings.tls_ca_cert {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                StoreError::Config(crate::FieldError::new(
                    "redis",
                    "tls_ca_cert",
                    format!("cannot read {}: {e}", path.display()),
                ))
            })?),
            None => None,
        };
        let certificates = ::redis::TlsCertificates { client_tls: None, root_cert };
        return ::redis::Client::build_with_tls(info, certificates).map_err(backend_error);
    }
    ::redis::Client::open(info).map_err(backend_error)
}

impl Backend {
    pub(super) async fn connect(settings: &RedisSettings) -> Result<Self, StoreError> {
        match settings.deployment() {
            super::Deployment::Standalone => {
                let client = standalone_client(settings)?;
                let mut connections = Vec::with_capacity(settings.max_connections);
                for _ in 0..settings.max_connections {
                    let manager = within(
                        settings.socket_connect_timeout,
                        client.get_connection_manager_with_config(manager_config(settings)),
                    )
                    .await?;
                    connections.push(manager);
                }
                Ok(Backend::Standalone(Pool { connections, next: AtomicUsize::new(0) }))
            }
            #[cfg(feature = "redis-cluster")]
            super::Deployment::Cluster => {
                let nodes: Vec<String> = settings
                    .startup_nodes
                    .iter()
                    .map(|n| {
                        super::settings::node_url(
                            &n.host,
                            n.port,
                            settings.username.as_deref(),
                            settings.password.as_ref(),
                            0,
                        )
                    })
                    .collect();
                let client = ::redis::cluster::ClusterClient::builder(nodes)
                    .connection_timeout(settings.socket_connect_timeout)
                    .response_timeout(settings.socket_timeout)
                    // No retry by the client: it would send a decision
                    // again after a late reply, charging it twice. The
                    // store follows redirections itself (`never_ran`).
                    .retries(0)
                    .tcp_settings(tcp_settings(settings))
                    .build()
                    .map_err(backend_error)?;
                let connection = within(settings.socket_connect_timeout * 4, client.get_async_connection()).await?;
                Ok(Backend::Cluster(connection))
            }
            #[cfg(not(feature = "redis-cluster"))]
            super::Deployment::Cluster => {
                Err(crate::FieldError::new("redis", "startup_nodes", "Redis Cluster needs the `redis-cluster` feature")
                    .into())
            }
            #[cfg(feature = "redis-sentinel")]
            super::Deployment::Sentinel => Ok(Backend::Sentinel(sentinel::Primary::connect(settings).await?)),
            #[cfg(not(feature = "redis-sentinel"))]
            super::Deployment::Sentinel => {
                Err(crate::FieldError::new("redis", "sentinels", "Redis Sentinel needs the `redis-sentinel` feature")
                    .into())
            }
        }
    }

    pub(super) async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
        limit: Duration,
    ) -> Result<T, StoreError> {
        match self {
            Backend::Standalone(pool) => within(limit, invocation.invoke_async(&mut pool.pick())).await,
            #[cfg(feature = "redis-cluster")]
            Backend::Cluster(connection) => within(limit, invocation.invoke_async(&mut connection.clone())).await,
            #[cfg(feature = "redis-sentinel")]
            Backend::Sentinel(primary) => {
                let result = within(limit, invocation.invoke_async(&mut primary.connection())).await;
                primary.observe(&result);
                result
            }
        }
    }

    pub(super) async fn query<T: FromRedisValue>(&self, cmd: &Cmd, limit: Duration) -> Result<T, StoreError> {
        match self {
            Backend::Standalone(pool) => within(limit, cmd.query_async(&mut pool.pick())).await,
            #[cfg(feature = "redis-cluster")]
            Backend::Cluster(connection) => within(limit, cmd.query_async(&mut connection.clone())).await,
            #[cfg(feature = "redis-sentinel")]
            Backend::Sentinel(primary) => {
                let result = within(limit, cmd.query_async(&mut primary.connection())).await;
                primary.observe(&result);
                result
            }
        }
    }

    /// Sends a `PING` over every connection of a standalone pool. A
    /// connection that broke while the server was away is made again only
    /// when it is next used, and a pool hands its connections out in turn:
    /// after a failure, this replaces them all at once, so a check made
    /// right after sees the server as it is.
    pub(super) async fn revive(&self, limit: Duration) {
        // Without the Cluster and Sentinel features a backend is always standalone.
        #[allow(irrefutable_let_patterns)]
        if let Backend::Standalone(pool) = self {
            let ping = ::redis::cmd("PING");
            for connection in &pool.connections {
                let _ = within(limit, ping.query_async::<::redis::Value>(&mut connection.clone())).await;
            }
        }
    }

    /// Deployment facts for the health report.
    pub(super) async fn details(&self, limit: Duration) -> Vec<(String, String)> {
        let _ = limit;
        match self {
            Backend::Standalone(pool) => vec![("connections".to_owned(), pool.connections.len().to_string())],
            #[cfg(feature = "redis-cluster")]
            Backend::Cluster(_) => {
                let nodes: Result<String, _> = self.query(&::redis::cmd("CLUSTER").arg("NODES").clone(), limit).await;
                match nodes {
                    Ok(text) => {
                        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
                        let primaries = lines.iter().filter(|l| l.contains("master")).count();
                        vec![
                            ("nodes".to_owned(), lines.len().to_string()),
                            ("primaries".to_owned(), primaries.to_string()),
                        ]
                    }
                    Err(e) => vec![("nodes".to_owned(), format!("unknown: {e}"))],
                }
            }
            #[cfg(feature = "redis-sentinel")]
            Backend::Sentinel(primary) => vec![("primary".to_owned(), primary.address())],
        }
    }
}

#[cfg(feature = "redis-sentinel")]
mod sentinel {
    //! The primary behind Sentinels, re-resolved off the request path.

    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, RwLock};

    use ::redis::aio::ConnectionManager;
    use ::redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};

    use super::{backend_error, connection_info, manager_config, tcp_settings, within, within_as};
    use crate::StoreError;
    use crate::redis::settings::{RedisSettings, node_url};

    pub(crate) struct Primary {
        sentinels: tokio::sync::Mutex<SentinelClient>,
        current: RwLock<(ConnectionManager, String)>,
        resolving: AtomicBool,
        settings: RedisSettings,
    }

    impl Primary {
        pub(crate) async fn connect(settings: &RedisSettings) -> Result<Arc<Self>, StoreError> {
            let sentinels = settings
                .sentinels
                .iter()
                .map(|(host, port)| {
                    connection_info(&node_url(host, *port, None, settings.sentinel_password.as_ref(), 0), settings)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut info = ::redis::RedisConnectionInfo::default().set_db(settings.db);
            if let Some(password) = &settings.password {
                info = info.set_password(password.expose());
            }
            if let Some(username) = &settings.username {
                info = info.set_username(username);
            }
            let node_info = SentinelNodeConnectionInfo::default()
                .set_redis_connection_info(info)
                .set_tcp_settings(tcp_settings(settings));
            let service = settings.service_name.clone().unwrap_or_default();
            let mut client = SentinelClient::build(sentinels, service, Some(node_info), SentinelServerType::Master)
                .map_err(backend_error)?;
            let current = resolve(&mut client, settings).await?;
            Ok(Arc::new(Self {
                sentinels: tokio::sync::Mutex::new(client),
                current: RwLock::new(current),
                resolving: AtomicBool::new(false),
                settings: settings.clone(),
            }))
        }

        pub(crate) fn connection(&self) -> ConnectionManager {
            self.current.read().unwrap_or_else(|e| e.into_inner()).0.clone()
        }

        pub(crate) fn address(&self) -> String {
            self.current.read().unwrap_or_else(|e| e.into_inner()).1.clone()
        }

        /// After a failed call, asks the sentinels for the primary again in
        /// a background task; requests keep using the current connection
        /// (and fail fast) until the new one is swapped in.
        pub(crate) fn observe<T>(self: &Arc<Self>, result: &Result<T, StoreError>) {
            if result.is_ok() || self.resolving.swap(true, Ordering::AcqRel) {
                return;
            }
            let this = Arc::clone(self);
            tokio::spawn(async move {
                let resolved = {
                    let mut sentinels = this.sentinels.lock().await;
                    resolve(&mut sentinels, &this.settings).await
                };
                match resolved {
                    Ok(next) => {
                        let changed = next.1 != this.address();
                        if changed {
                            tracing::warn!(primary = %next.1, "redis sentinel reports a new primary");
                        }
                        *this.current.write().unwrap_or_else(|e| e.into_inner()) = next;
                    }
                    Err(error) => tracing::warn!(%error, "redis sentinel could not resolve the primary"),
                }
                this.resolving.store(false, Ordering::Release);
            });
        }
    }

    async fn resolve(
        client: &mut SentinelClient,
        settings: &RedisSettings,
    ) -> Result<(ConnectionManager, String), StoreError> {
        let limit = settings.socket_connect_timeout * 4;
        let primary = within_as(limit, "redis.sentinel_password", client.async_get_client()).await?;
        let address = primary.get_connection_info().addr().to_string();
        let manager = within(limit, primary.get_connection_manager_with_config(manager_config(settings))).await?;
        Ok((manager, address))
    }
}
