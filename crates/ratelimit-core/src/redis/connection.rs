//! Connections to the three deployments, behind one `invoke`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Cmd, FromRedisValue, RedisError, ScriptInvocation};

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
    // Reconnection happens in the background; a request never waits longer
    // than the socket timeout, so the manager itself does not retry.
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(settings.socket_connect_timeout))
        .set_response_timeout(Some(settings.socket_timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500))
}

fn backend_error(error: RedisError) -> StoreError {
    StoreError::backend(STORE, error)
}

/// Runs `work` within `limit`; the client's own response timeout, which
/// may fire first, is reported as the same timeout.
async fn within<T>(limit: Duration, work: impl Future<Output = Result<T, RedisError>>) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, work).await {
        Ok(Err(error)) if error.is_timeout() => Err(StoreError::Timeout { store: STORE, after: limit }),
        Ok(result) => result.map_err(backend_error),
        Err(_) => Err(StoreError::Timeout { store: STORE, after: limit }),
    }
}

/// A client for one server, over TLS for a `rediss://` url.
fn standalone_client(settings: &RedisSettings) -> Result<::redis::Client, StoreError> {
    let url = settings.standalone_url();
    #[cfg(feature = "redis-tls")]
    if url.starts_with("rediss://") {
        let root_cert =
            match &settings.tls_ca_cert {
                Some(path) => Some(std::fs::read(path).map_err(|e| {
                    StoreError::Config(format!("redis.tls_ca_cert: cannot read {}: {e}", path.display()))
                })?),
                None => None,
            };
        let certificates = ::redis::TlsCertificates { client_tls: None, root_cert };
        return ::redis::Client::build_with_tls(url, certificates).map_err(backend_error);
    }
    ::redis::Client::open(url).map_err(backend_error)
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
                    .build()
                    .map_err(backend_error)?;
                let connection = within(settings.socket_connect_timeout * 4, client.get_async_connection()).await?;
                Ok(Backend::Cluster(connection))
            }
            #[cfg(not(feature = "redis-cluster"))]
            super::Deployment::Cluster => {
                Err(StoreError::Config("redis.startup_nodes: Redis Cluster needs the `redis-cluster` feature".into()))
            }
            #[cfg(feature = "redis-sentinel")]
            super::Deployment::Sentinel => Ok(Backend::Sentinel(sentinel::Primary::connect(settings).await?)),
            #[cfg(not(feature = "redis-sentinel"))]
            super::Deployment::Sentinel => {
                Err(StoreError::Config("redis.sentinels: Redis Sentinel needs the `redis-sentinel` feature".into()))
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

    use super::{backend_error, manager_config, within};
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
            let urls: Vec<String> = settings
                .sentinels
                .iter()
                .map(|(host, port)| node_url(host, *port, None, settings.sentinel_password.as_ref(), 0))
                .collect();
            let mut info = ::redis::RedisConnectionInfo::default().set_db(settings.db);
            if let Some(password) = &settings.password {
                info = info.set_password(password.expose());
            }
            if let Some(username) = &settings.username {
                info = info.set_username(username);
            }
            let node_info = SentinelNodeConnectionInfo::default().set_redis_connection_info(info);
            let service = settings.service_name.clone().unwrap_or_default();
            let mut client = SentinelClient::build(urls, service, Some(node_info), SentinelServerType::Master)
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
        let primary = within(limit, client.async_get_client()).await?;
        let address = primary.get_connection_info().addr().to_string();
        let manager = within(limit, primary.get_connection_manager_with_config(manager_config(settings))).await?;
        Ok((manager, address))
    }
}
