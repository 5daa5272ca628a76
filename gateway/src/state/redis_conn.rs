//! The one connection type behind [`super::redis::RedisStore`], whatever the deployment of
//! Redis: a single server, a master watched by Sentinel, or a Cluster.
//!
//! Why one type: every command and every `redis::Script` the store runs takes a
//! [`RedisConn`], which implements the crate's `aio::ConnectionLike`, so a command written
//! once works unchanged on the three deployments (`cmd.query_async(&mut conn)`,
//! `script.key(k).arg(a).invoke_async(&mut conn)`). On a Cluster the crate routes each
//! command by its first key and loads a script (`SCRIPT LOAD`) on every master, so the only
//! rule left to the caller is Redis's own: all the keys of one command or script call must hash
//! to one slot; give keys that travel together one `{hash tag}` (see `docs/state.md`).
//!
//! The URL forms are read by [`Target::parse`] (`config::state::redis_url`). One server goes
//! through the crate's `ConnectionManager` (reconnects by itself). Under Sentinel the master is
//! asked of the sentinels on first use and again after a connection failure, a timeout or a
//! `READONLY` reply, which is how a failover is followed. On a Cluster the crate learns the
//! slot map from the seed nodes and follows `MOVED`; the connection is rebuilt after a
//! connection failure.

use std::sync::Mutex;
use std::time::Duration;

pub use crate::config::state::redis_url::{redact, Target};
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ErrorKind, RedisError, RedisFuture,
    ServerErrorKind, TlsMode, Value,
};

fn addr(host: &str, port: u16, tls: bool) -> ConnectionAddr {
    if tls {
        ConnectionAddr::TcpTls {
            host: host.to_owned(),
            port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(host.to_owned(), port)
    }
}

/// The connection the store holds: built once, cheap to share.
pub enum Connector {
    Single(ConnectionManager),
    Sentinel(SentinelConnector),
    Cluster(ClusterConnector),
}

/// Asks the sentinels for the master when there is no live connection to it.
pub struct SentinelConnector {
    /// Serialises the look-ups: one at a time, the others wait for its result.
    client: tokio::sync::Mutex<SentinelClient>,
    current: Mutex<Option<MultiplexedConnection>>,
    config: AsyncConnectionConfig,
}

/// Connects to the Cluster on first use; the connection then follows the slot map itself.
pub struct ClusterConnector {
    client: ClusterClient,
    current: tokio::sync::Mutex<Option<ClusterConnection>>,
}

impl Connector {
    /// The connector for `target`; nothing is contacted yet (lazy, as a Redis down at start must
    /// not stop the gateway).
    pub fn new(target: &Target, timeout: Duration) -> Result<Connector, RedisError> {
        match target {
            Target::Single(url) => {
                let client = Client::open(url.as_str())?;
                // Connection attempts and replies bounded by the same timeout as a command; a
                // few quick retries per reconnection, then the next command tries again.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(2)
                    .set_min_delay(Duration::from_millis(20))
                    .set_max_delay(Duration::from_millis(200));
                Ok(Connector::Single(ConnectionManager::new_lazy_with_config(
                    client, config,
                )?))
            }
            Target::Sentinel {
                sentinels,
                master,
                db,
                auth,
                sentinel_auth,
                tls,
            } => {
                let addrs = sentinels.iter().map(|(h, p)| addr(h, *p, *tls));
                let mut builder =
                    SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)?
                        .set_client_to_redis_db(*db);
                if *tls {
                    builder = builder
                        .set_client_to_redis_tls_mode(TlsMode::Secure)
                        .set_client_to_sentinel_tls_mode(TlsMode::Secure);
                }
                if let Some(u) = &auth.username {
                    builder = builder.set_client_to_redis_username(u);
                }
                if let Some(p) = &auth.password {
                    builder = builder.set_client_to_redis_password(p);
                }
                if let Some(u) = &sentinel_auth.username {
                    builder = builder.set_client_to_sentinel_username(u);
                }
                if let Some(p) = &sentinel_auth.password {
                    builder = builder.set_client_to_sentinel_password(p);
                }
                Ok(Connector::Sentinel(SentinelConnector {
                    client: tokio::sync::Mutex::new(builder.build()?),
                    current: Mutex::new(None),
                    config: AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(timeout))
                        .set_response_timeout(Some(timeout)),
                }))
            }
            Target::Cluster { nodes, auth, tls } => {
                let scheme = if *tls { "rediss" } else { "redis" };
                let urls: Vec<String> = nodes
                    .iter()
                    .map(|(h, p)| format!("{scheme}://{h}:{p}"))
                    .collect();
                let mut builder = ClusterClient::builder(urls)
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .retries(2)
                    .min_retry_wait(20)
                    .max_retry_wait(200);
                if let Some(u) = &auth.username {
                    builder = builder.username(u);
                }
                if let Some(p) = &auth.password {
                    builder = builder.password(p);
                }
                Ok(Connector::Cluster(ClusterConnector {
                    client: builder.build()?,
                    current: tokio::sync::Mutex::new(None),
                }))
            }
        }
    }

    /// A connection to run one command or script on.
    pub async fn conn(&self) -> Result<RedisConn, RedisError> {
        match self {
            Connector::Single(manager) => Ok(RedisConn::Single(manager.clone())),
            Connector::Sentinel(s) => {
                if let Some(conn) = s.cached() {
                    return Ok(RedisConn::Sentinel(conn));
                }
                let mut client = s.client.lock().await;
                // Another caller may have found the master while this one waited.
                if let Some(conn) = s.cached() {
                    return Ok(RedisConn::Sentinel(conn));
                }
                let conn = client.get_async_connection_with_config(&s.config).await?;
                if let Ok(mut current) = s.current.lock() {
                    *current = Some(conn.clone());
                }
                Ok(RedisConn::Sentinel(conn))
            }
            Connector::Cluster(c) => {
                let mut current = c.current.lock().await;
                if let Some(conn) = current.as_ref() {
                    return Ok(RedisConn::Cluster(conn.clone()));
                }
                let conn = c.client.get_async_connection().await?;
                *current = Some(conn.clone());
                Ok(RedisConn::Cluster(conn))
            }
        }
    }

    /// A command failed (or timed out, `None`): drop the connection when the failure may come
    /// from where it points (the master moved, the node is gone), so that the next command asks
    /// the sentinels again or rebuilds the cluster view. A single server's manager reconnects
    /// by itself.
    pub async fn failed(&self, error: Option<&RedisError>) {
        if error.is_some_and(|e| !worth_reconnecting(e)) {
            return;
        }
        match self {
            Connector::Single(_) => {}
            Connector::Sentinel(s) => {
                if let Ok(mut current) = s.current.lock() {
                    *current = None;
                }
            }
            Connector::Cluster(c) => {
                *c.current.lock().await = None;
            }
        }
    }
}

impl SentinelConnector {
    fn cached(&self) -> Option<MultiplexedConnection> {
        self.current.lock().ok().and_then(|c| c.clone())
    }
}

/// Errors about the command itself (a wrong argument, a script error, keys in two slots) leave
/// the connection alone; every other failure may mean the server behind it changed.
fn worth_reconnecting(error: &RedisError) -> bool {
    !matches!(
        error.kind(),
        ErrorKind::Server(
            ServerErrorKind::ResponseError
                | ServerErrorKind::CrossSlot
                | ServerErrorKind::NoScript
                | ServerErrorKind::NoPerm
                | ServerErrorKind::ExecAbort
        ) | ErrorKind::UnexpectedReturnType
            | ErrorKind::Parse
    )
}

/// One connection of any of the three kinds; commands and scripts run on it unchanged.
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Sentinel(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Sentinel(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(cmd, offset, count),
            RedisConn::Sentinel(c) => c.req_packed_commands(cmd, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Sentinel(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}
