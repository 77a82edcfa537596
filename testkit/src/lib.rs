//! Helpers for Fanout's tests: a real `redis-server` per test (the strongest
//! isolation there is, and one a test can stop and restart), and polling
//! with a deadline instead of sleeping.
#![forbid(unsafe_code)]
pub mod process;

pub mod cluster;
pub mod connect;
pub mod monitoring;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` of this test's own, on a free loopback port, with its
/// data in a temporary folder. Stopped when dropped.
///
/// With `FANOUT_TEST_REDIS=cluster` in the environment, [`RedisServer::start`]
/// starts a Redis Cluster of [`cluster::PRIMARIES`] primaries instead, each
/// a server of its own; the URL names the first, from which clients find the
/// others, and stopping or restarting stops or restarts them all. `make
/// test` runs the feed-store and end-to-end tests both ways.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Set for a server that speaks only TLS (see [`RedisServer::start_tls`]).
    tls: Option<TlsFiles>,
    /// The cluster's other primaries, when this server is a cluster's first.
    peers: Vec<RedisServer>,
    cluster: bool,
}

/// The certificate, key and CA a TLS server is started with.
#[derive(Clone)]
struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

impl RedisServer {
    /// Starts a server with an append-only file, so a restart keeps its data
    /// as a production Redis would; a cluster when the environment asks for
    /// one (see the type's documentation).
    pub fn start() -> RedisServer {
        match std::env::var("FANOUT_TEST_REDIS").as_deref() {
            Ok("cluster") => RedisServer::start_cluster(),
            _ => RedisServer::launched(None),
        }
    }

    /// Starts a server of its own, whatever the environment asks for.
    pub fn start_single() -> RedisServer {
        RedisServer::launched(None)
    }

    /// Starts a Redis Cluster of [`cluster::PRIMARIES`] primaries on
    /// loopback, its slots spread evenly, and waits until every node serves.
    pub fn start_cluster() -> RedisServer {
        let node = || {
            let mut server = RedisServer::unlaunched(None, true);
            server.launch();
            server
        };
        let mut first = node();
        first.peers = (1..cluster::PRIMARIES).map(|_| node()).collect();
        cluster::form(&first.ports());
        first
    }

    /// Whether this is a cluster (see [`RedisServer::start`]).
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// The URL of every node: this one's, then a cluster's others.
    pub fn node_urls(&self) -> Vec<String> {
        self.nodes().map(RedisServer::url).collect()
    }

    /// The ports of every node: this one's, then its peers'.
    fn ports(&self) -> Vec<u16> {
        self.nodes().map(|node| node.port).collect()
    }

    /// Starts a server that speaks only TLS, with the server certificate
    /// `ca` signed; clients are not asked for certificates.
    pub fn start_tls(ca: &TestCa) -> RedisServer {
        RedisServer::launched(Some(TlsFiles {
            cert: ca.server_cert(),
            key: ca.server_key(),
            ca: ca.ca_cert(),
        }))
    }

    fn launched(tls: Option<TlsFiles>) -> RedisServer {
        let mut server = RedisServer::unlaunched(tls, false);
        server.launch();
        server
    }

    /// A server not started yet: one of its own, or a cluster's node.
    fn unlaunched(tls: Option<TlsFiles>, cluster: bool) -> RedisServer {
        RedisServer {
            port: if cluster {
                cluster::free_port()
            } else {
                free_port()
            },
            dir: tempfile::tempdir().expect("a temporary folder for redis"),
            child: None,
            tls,
            peers: Vec::new(),
            cluster,
        }
    }

    /// The URL to connect to: `rediss://` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The port the server listens on (TLS only, for a TLS server).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server cleanly (it writes its data out first); every node
    /// of a cluster.
    pub fn stop(&mut self) {
        for peer in &mut self.peers {
            peer.stop();
        }
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same data; a
    /// cluster's nodes find each other again from their saved
    /// configuration, and this waits until they serve.
    pub fn restart(&mut self) {
        self.stop();
        self.launch_all();
    }

    /// A copy of the server's data as it is now (its append-only file, which
    /// it writes out on every command), for [`RedisServer::restart_from`];
    /// a cluster's, node by node.
    pub fn copy_data(&self) -> tempfile::TempDir {
        let copy = tempfile::tempdir().expect("a temporary folder for a copy");
        for (i, node) in self.nodes().enumerate() {
            copy_tree(node.dir.path(), &copy.path().join(i.to_string()));
        }
        copy
    }

    /// Restarts the server (every node of a cluster) from data copied
    /// earlier: a server restored from an old snapshot, or from a file that
    /// lost its last writes.
    pub fn restart_from(&mut self, data: &tempfile::TempDir) {
        self.stop();
        for (i, node) in self.nodes().enumerate() {
            std::fs::remove_dir_all(node.dir.path()).expect("the old data removed");
            copy_tree(&data.path().join(i.to_string()), node.dir.path());
        }
        self.launch_all();
    }

    /// This server, then a cluster's other nodes.
    fn nodes(&self) -> impl Iterator<Item = &RedisServer> {
        std::iter::once(self).chain(&self.peers)
    }

    /// Launches every node and, on a cluster, waits until they serve.
    fn launch_all(&mut self) {
        self.launch();
        for peer in &mut self.peers {
            peer.launch();
        }
        if self.cluster {
            cluster::wait_until_serving(&self.ports());
        }
    }

    fn launch(&mut self) {
        let dir: PathBuf = self.dir.path().into();
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => command.args(["--port", &self.port.to_string()]),
            // Port 0 turns the plain-text listener off.
            Some(tls) => command
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(&tls.cert)
                .arg("--tls-key-file")
                .arg(&tls.key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca)
                .args(["--tls-auth-clients", "no"]),
        };
        let child = command
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args(if self.cluster {
                cluster::SERVER_ARGS
            } else {
                &[]
            })
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (make test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Copies a folder and what it holds.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("a folder to copy into");
    for entry in std::fs::read_dir(from).expect("a folder to copy") {
        let entry = entry.expect("a folder entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("a file copied");
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A throwaway certificate authority and a server certificate it signed for
/// `127.0.0.1` and `localhost`, made with the `openssl` command in a
/// temporary folder (deleted when dropped). Keys are P-256: quick to make,
/// and supported by rustls, redis-server and PostgreSQL alike.
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    /// Makes a new CA and server certificate, both valid for a day (longer
    /// than any test run).
    pub fn generate() -> TestCa {
        let dir = tempfile::tempdir().expect("a temporary folder for certificates");
        let path = |name: &str| dir.path().join(name);
        std::fs::write(
            path("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
             basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\n",
        )
        .expect("writing the certificate extensions");
        let ec_key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        openssl(
            dir.path(),
            &[
                &["req", "-x509", "-days", "1", "-subj", "/CN=Fanout test CA"][..],
                &ec_key,
                &["-keyout", "ca.key", "-out", "ca.pem"],
                &["-addext", "basicConstraints=critical,CA:TRUE"],
                &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ]
            .concat(),
        );
        openssl(
            dir.path(),
            &[
                &["req", "-subj", "/CN=localhost"][..],
                &ec_key,
                &["-keyout", "server.key", "-out", "server.csr"],
            ]
            .concat(),
        );
        openssl(
            dir.path(),
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
        );
        TestCa { dir }
    }

    /// The CA certificate (PEM), what clients trust.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server certificate (PEM).
    pub fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The server's private key (PEM).
    pub fn server_key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("the openssl command on PATH");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `check` every 10 ms until it returns `Some`, failing the test
/// with `what` after `timeout`; returns the value and how long it took.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, check: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_every(timeout, Duration::from_millis(10), what, check).await
}

/// [`eventually`], polling every `every`: for checks that cost a server
/// round trip or a process (the Kubernetes API server, `kubectl`).
pub async fn eventually_every<T, F, Fut>(
    timeout: Duration,
    every: Duration,
    what: &str,
    mut check: F,
) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return (value, started.elapsed());
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(every).await;
    }
}

/// Waits up to `within` for the readiness probe at `url` to answer with a
/// success, polling every 100 ms.
pub async fn wait_ready(url: &str, within: Duration) -> Result<(), String> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    while started.elapsed() < within {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("nothing ready at {url} within {within:?}"))
}
