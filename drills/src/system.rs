//! The system under drill, as processes this program controls: the
//! streams' Redis (with its append-only file) and the feeds' Redis
//! (without), `feed-api` and two `feed-worker`s. PostgreSQL is the one
//! `scripts/services.sh` runs, stopped and started through it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::bail;
use fanout_testkit::process::{Output, Process};
use tokio::process::Command;

/// Where everything is.
#[derive(Debug, Clone)]
pub struct Setup {
    pub bin_dir: PathBuf,
    /// The drills' data folder (`scripts/services.sh`'s, PostgreSQL's too).
    pub data: PathBuf,
    pub pg_port: u16,
    pub redis_port: u16,
    pub feed_redis_port: u16,
    pub api_port: u16,
    pub worker_port: u16,
}

impl Setup {
    pub fn database_url(&self) -> String {
        format!("postgres://fanout@127.0.0.1:{}/fanout", self.pg_port)
    }
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.redis_port)
    }
    pub fn feed_redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.feed_redis_port)
    }
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }
}

/// One of the drill's processes: its output appended to `<name>.log` in the
/// data folder, which every restart keeps adding to.
fn process(name: &str, command: Vec<String>, env: Vec<(String, String)>, data: &Path) -> Process {
    let mut command = command.into_iter();
    let program = command.next().expect("a command names its program");
    Process::new(name, program)
        .args(command)
        .envs(env)
        .output(Output::AppendTo(data.join(format!("{name}.log"))))
}

/// Everything running.
pub struct System {
    pub setup: Setup,
    pub redis: Process,
    redis_dir: PathBuf,
    pub feed_redis: Process,
    pub api: Process,
    pub workers: Vec<Process>,
}

impl System {
    pub async fn start(setup: Setup, jwt_secret: &str) -> anyhow::Result<System> {
        for bin in ["feed-api", "feed-worker"] {
            if !setup.bin_dir.join(bin).is_file() {
                bail!(
                    "{bin} is missing in {}: build it first",
                    setup.bin_dir.display()
                );
            }
        }
        let redis_dir = setup.data.join("streams-redis");
        std::fs::create_dir_all(&redis_dir)?;
        let redis = process(
            "streams-redis",
            redis_args(setup.redis_port, &redis_dir, true),
            Vec::new(),
            &setup.data,
        );
        let feed_redis = process(
            "feeds-redis",
            redis_args(setup.feed_redis_port, &setup.data, false),
            Vec::new(),
            &setup.data,
        );
        let common = vec![
            ("FANOUT_DATABASE_URL".to_owned(), setup.database_url()),
            ("FANOUT_REDIS_URL".to_owned(), setup.redis_url()),
            ("FANOUT_FEED_REDIS_URL".to_owned(), setup.feed_redis_url()),
            ("FANOUT_LOG_FORMAT".to_owned(), "json".to_owned()),
            ("RUST_LOG".to_owned(), "warn".to_owned()),
        ];
        let mut api_env = common.clone();
        api_env.extend(
            [
                ("FANOUT_HTTP_ADDR", format!("127.0.0.1:{}", setup.api_port)),
                ("FANOUT_JWT_SECRET", jwt_secret.to_owned()),
                ("FANOUT_MIGRATE", "true".to_owned()),
                ("FANOUT_RATE_LIMIT_USER_PER_MIN", "0".to_owned()),
                ("FANOUT_RATE_LIMIT_ADDRESS_PER_MIN", "0".to_owned()),
                ("FANOUT_LOGIN_ATTEMPTS_PER_ADDRESS_PER_MIN", "0".to_owned()),
                ("FANOUT_LOGIN_ATTEMPTS_PER_HANDLE", "0".to_owned()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        let api = process(
            "api",
            vec![setup.bin_dir.join("feed-api").display().to_string()],
            api_env,
            &setup.data,
        );
        let workers = (0..2)
            .map(|n| {
                let mut env = common.clone();
                env.push(("FANOUT_CONSUMER_NAME".into(), format!("drill-worker-{n}")));
                env.push((
                    "FANOUT_WORKER_HTTP_ADDR".into(),
                    format!("127.0.0.1:{}", setup.worker_port + n),
                ));
                // Quick reclaiming of a killed worker's entries.
                env.push(("FANOUT_CLAIM_IDLE_MS".into(), "2000".into()));
                env.push(("FANOUT_CLAIM_INTERVAL_MS".into(), "500".into()));
                process(
                    &format!("worker-{n}"),
                    vec![setup.bin_dir.join("feed-worker").display().to_string()],
                    env,
                    &setup.data,
                )
            })
            .collect();
        let mut system = System {
            setup,
            redis,
            redis_dir,
            feed_redis,
            api,
            workers,
        };
        system.redis.start()?;
        system.feed_redis.start()?;
        wait_for_redis(system.setup.redis_port).await?;
        wait_for_redis(system.setup.feed_redis_port).await?;
        system.api.start()?;
        system.wait_api().await?;
        for worker in &mut system.workers {
            worker.start()?;
        }
        Ok(system)
    }

    pub async fn wait_api(&self) -> anyhow::Result<()> {
        wait_for(&format!("{}/readyz", self.setup.api_url()), "the API").await
    }

    /// Starts the streams' Redis again, from its append-only file, or empty.
    pub async fn restart_redis(&mut self, empty: bool) -> anyhow::Result<()> {
        if empty {
            std::fs::remove_dir_all(&self.redis_dir)?;
            std::fs::create_dir_all(&self.redis_dir)?;
        }
        self.redis.start()?;
        wait_for_redis(self.setup.redis_port).await
    }

    pub async fn restart_feed_redis(&mut self) -> anyhow::Result<()> {
        self.feed_redis.start()?;
        wait_for_redis(self.setup.feed_redis_port).await
    }

    /// Stops PostgreSQL (fast shutdown: connections are cut).
    pub async fn stop_postgres(&self) -> anyhow::Result<()> {
        services(&self.setup, "down").await
    }

    pub async fn start_postgres(&self) -> anyhow::Result<()> {
        services(&self.setup, "up").await
    }

    pub async fn stop(&mut self) {
        for worker in &mut self.workers {
            let _ = worker.terminate().await;
        }
        let _ = self.api.terminate().await;
        self.redis.kill().await;
        self.feed_redis.kill().await;
    }
}

fn redis_args(port: u16, dir: &Path, append_only: bool) -> Vec<String> {
    let mut args = vec![
        "redis-server".to_owned(),
        "--port".into(),
        port.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--dir".into(),
        dir.display().to_string(),
        "--save".into(),
        String::new(),
    ];
    if append_only {
        // As `make run` keeps the streams: fsync every second.
        args.extend(["--appendonly", "yes", "--appendfsync", "everysec"].map(String::from));
    } else {
        args.extend(["--appendonly", "no"].map(String::from));
    }
    args
}

async fn services(setup: &Setup, verb: &str) -> anyhow::Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services.sh");
    let mut command = Command::new(script);
    command.arg(verb).arg(&setup.data);
    if verb == "up" {
        command.arg(setup.pg_port.to_string());
    }
    let status = command.stdout(Stdio::null()).status().await?;
    if !status.success() {
        bail!("scripts/services.sh {verb} failed");
    }
    Ok(())
}

async fn wait_for_redis(port: u16) -> anyhow::Result<()> {
    for _ in 0..100 {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
        if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
            let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut conn).await;
            if pong.is_ok() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("Redis on port {port} did not come up")
}

async fn wait_for(url: &str, what: &str) -> anyhow::Result<()> {
    fanout_testkit::wait_ready(url, Duration::from_secs(30))
        .await
        .map_err(|e| anyhow::anyhow!("{what}: {e}"))
}
