//! Connections to Redis, one server or a Redis Cluster, behind one type.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use tokio::sync::OnceCell;

use crate::keys::Layout;

/// How long to wait for a server to accept a connection before trying
/// again (or failing the command): a server on the same network answers
/// within milliseconds, and a caller waiting longer than a second is better
/// told Redis is down.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);

/// Retries of a command whose connection broke, before it fails: enough to
/// ride over a restart's reconnect, few enough that a caller hears of an
/// outage within seconds.
const RETRIES: u32 = 2;

/// A Redis connection opened on first use, so a process starts (and serves
/// what it can) while Redis is down. The server tells on first use whether
/// it is one server or a node of a Redis Cluster, and the connection and
/// the keys' [`Layout`] follow; the same URL works for both. Once open, the
/// connection reconnects by itself after Redis restarts (or, on a cluster,
/// follows the slots as they move). Cloning shares it: one reference
/// count, as requests clone their state several times each (a profile of
/// feed reads found cloning the client's settings, strings and all,
/// costing more than the feed read's own work).
#[derive(Clone)]
pub struct Redis(Arc<Shared>);

struct Shared {
    client: redis::Client,
    root_ca_pem: Option<Vec<u8>>,
    response_timeout: Duration,
    conn: OnceCell<Conn>,
}

/// The one place a Redis client is made, so every process trusts the same
/// certificates. With `root_ca_pem` (PEM, one or more certificates) a
/// `rediss://` server must present a chain to one of those CAs, and only
/// those; without it, `rediss://` trusts the compiled-in Mozilla roots and
/// `redis://` is plain TCP. A CA with a `redis://` URL is an error rather
/// than silently unencrypted.
pub fn client(url: &str, root_ca_pem: Option<&[u8]>) -> RedisResult<redis::Client> {
    match root_ca_pem {
        None => redis::Client::open(url),
        Some(pem) => redis::Client::build_with_tls(url, certificates(pem)),
    }
}

fn certificates(pem: &[u8]) -> redis::TlsCertificates {
    redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem.to_vec()),
    }
}

impl Redis {
    /// A handle on `url` trusting the built-in roots for `rediss://` (see
    /// [`client`]); `response_timeout` bounds every command, so it must
    /// exceed the longest `BLOCK` issued on this handle.
    pub fn new(url: &str, response_timeout: Duration) -> RedisResult<Redis> {
        Ok(Redis::with_client(
            client(url, None)?,
            None,
            response_timeout,
        ))
    }

    /// A handle on a client made by [`client`] with the same `root_ca_pem`
    /// (to trust a private CA; a cluster's other nodes are trusted alike);
    /// the timeout is as for [`Redis::new`].
    pub fn with_client(
        client: redis::Client,
        root_ca_pem: Option<Vec<u8>>,
        response_timeout: Duration,
    ) -> Redis {
        Redis(Arc::new(Shared {
            client,
            root_ca_pem,
            response_timeout,
            conn: OnceCell::new(),
        }))
    }

    /// The client of the server named by the URL, for connections of their
    /// own: a Pub/Sub subscriber cannot share the multiplexed connection.
    /// On a cluster this is one node, which hears every node's `PUBLISH`.
    pub fn client(&self) -> &redis::Client {
        &self.0.client
    }

    /// The shared connection, opening it if this is the first use.
    pub async fn conn(&self) -> RedisResult<Conn> {
        self.0.conn.get_or_try_init(|| self.open()).await.cloned()
    }

    /// How keys are laid out behind this handle, connecting if this is the
    /// first use.
    pub async fn layout(&self) -> RedisResult<Layout> {
        Ok(self.conn().await?.layout())
    }

    async fn open(&self) -> RedisResult<Conn> {
        let shared = &self.0;
        if is_cluster(&mut self.probe().await?).await? {
            let mut builder =
                ClusterClientBuilder::new([shared.client.get_connection_info().clone()])
                    .connection_timeout(CONNECTION_TIMEOUT)
                    .response_timeout(shared.response_timeout)
                    .retries(RETRIES);
            if let Some(pem) = &shared.root_ca_pem {
                builder = builder.certs(certificates(pem));
            }
            let conn = builder.build()?.get_async_connection().await?;
            return Ok(Conn::Cluster(conn));
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_response_timeout(Some(shared.response_timeout))
            .set_number_of_retries(RETRIES as usize)
            .set_max_delay(Duration::from_secs(1));
        Ok(Conn::Single(
            shared
                .client
                .get_connection_manager_with_config(config)
                .await?,
        ))
    }

    async fn probe(&self) -> RedisResult<MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_response_timeout(Some(self.0.response_timeout));
        self.0
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }
}

/// Whether the server is a node of a Redis Cluster.
async fn is_cluster(conn: &mut impl ConnectionLike) -> RedisResult<bool> {
    let info: String = redis::cmd("INFO").arg("cluster").query_async(conn).await?;
    Ok(info.lines().any(|line| line.trim() == "cluster_enabled:1"))
}

/// A connection to one server or to a cluster (which routes each command,
/// and each single-slot pipeline, to the node serving its keys).
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// A connection that knows how keys are laid out behind it (see
/// [`crate::keys`]): what every function that names feed keys needs.
pub trait Keyspace {
    fn layout(&self) -> Layout;
}

impl Keyspace for Conn {
    fn layout(&self) -> Layout {
        match self {
            Conn::Single(_) => Layout::Single,
            Conn::Cluster(_) => Layout::Cluster,
        }
    }
}

/// Connections opened directly (tools, tests) are to one server.
impl Keyspace for MultiplexedConnection {
    fn layout(&self) -> Layout {
        Layout::Single
    }
}

impl Keyspace for ConnectionManager {
    fn layout(&self) -> Layout {
        Layout::Single
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}
