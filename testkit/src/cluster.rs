//! Forming a Redis Cluster out of servers started on loopback, as
//! `redis-cli --cluster create` would, without a replica per primary: the
//! tests exercise slots and routing, not failover.

use std::time::{Duration, Instant};

/// Primaries of a test cluster: the fewest Redis Cluster's own tooling
/// accepts, and enough that keys of one request land on different nodes.
pub const PRIMARIES: usize = 3;

/// Slots of a Redis Cluster.
const SLOTS: u16 = 16384;

/// What each node is started with. The node timeout only matters when a
/// node is down; a short one lets a restarted cluster serve again sooner.
pub const SERVER_ARGS: &[&str] = &[
    "--cluster-enabled",
    "yes",
    "--cluster-config-file",
    "nodes.conf",
    "--cluster-node-timeout",
    "2000",
];

/// A free port for a cluster node whose bus port, 10000 above it (Redis
/// Cluster's rule), is free too: ephemeral ports run up to 60999, whose
/// bus port would not exist.
pub fn free_port() -> u16 {
    loop {
        let port = crate::free_port();
        if port <= u16::MAX - BUS_PORT_OFFSET
            && std::net::TcpListener::bind(("127.0.0.1", port + BUS_PORT_OFFSET)).is_ok()
        {
            return port;
        }
    }
}

/// How far above its port a node listens to the other nodes.
const BUS_PORT_OFFSET: u16 = 10_000;

fn connect(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .expect("a valid Redis URL")
        .get_connection()
        .expect("the cluster node answers")
}

/// Gives each node an even share of the slots, introduces them to each
/// other and waits until every node serves.
pub fn form(ports: &[u16]) {
    let share = SLOTS / ports.len() as u16;
    for (i, port) in ports.iter().enumerate() {
        let first = share * i as u16;
        let last = if i + 1 == ports.len() {
            SLOTS - 1
        } else {
            first + share - 1
        };
        redis::cmd("CLUSTER")
            .arg("ADDSLOTSRANGE")
            .arg(first)
            .arg(last)
            .query::<()>(&mut connect(*port))
            .expect("slots assigned");
    }
    let mut first = connect(ports[0]);
    for port in &ports[1..] {
        redis::cmd("CLUSTER")
            .arg("MEET")
            .arg("127.0.0.1")
            .arg(*port)
            .query::<()>(&mut first)
            .expect("nodes introduced");
    }
    wait_until_serving(ports);
}

/// Waits until every node knows every other and that all slots are served.
pub fn wait_until_serving(ports: &[u16]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let known = format!("cluster_known_nodes:{}", ports.len());
    for port in ports {
        loop {
            let info: Option<String> = redis::Client::open(format!("redis://127.0.0.1:{port}"))
                .ok()
                .and_then(|client| client.get_connection().ok())
                .and_then(|mut conn| redis::cmd("CLUSTER").arg("INFO").query(&mut conn).ok());
            let serving = info.is_some_and(|info| {
                info.lines().any(|l| l.trim() == "cluster_state:ok")
                    && info.lines().any(|l| l.trim() == known)
            });
            if serving {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the test cluster's node on port {port} did not serve within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
