//! TLS to Redis and PostgreSQL against real servers with a throwaway CA: the
//! right CA connects, the built-in roots or another CA are refused, and plain
//! text to a TLS port does not get through.
#![cfg(feature = "runtime")]

use std::path::PathBuf;
use std::time::Duration;

use fanout_testkit::{RedisServer, TestCa};
use feed_core::bus::Redis;
use feed_core::runtime::{RedisArgs, RedisConfigError};

/// Long enough for a TLS handshake on a loaded 2-core machine, short enough
/// that a refused connection fails the test quickly.
const TIMEOUT: Duration = Duration::from_secs(5);

fn args(url: String, ca: Option<PathBuf>) -> RedisArgs {
    RedisArgs {
        redis_url: url,
        redis_ca_file: ca,
        feed_redis_url: None,
    }
}

/// PING and an XADD read back, through the handle's connection.
async fn round_trip(redis: &Redis) -> redis::RedisResult<()> {
    let mut conn = redis.conn().await?;
    let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
    assert_eq!(pong, "PONG");
    let id: String = redis::cmd("XADD")
        .arg("events:tls-test")
        .arg("*")
        .arg("event")
        .arg("hello")
        .query_async(&mut conn)
        .await?;
    let len: u64 = redis::cmd("XLEN")
        .arg("events:tls-test")
        .query_async(&mut conn)
        .await?;
    assert!(!id.is_empty());
    assert!(len >= 1);
    Ok(())
}

fn is_certificate_error(err: &redis::RedisError) -> bool {
    let text = format!("{err:?} {err}").to_lowercase();
    text.contains("certificate") || text.contains("unknownissuer")
}

#[tokio::test]
async fn redis_over_tls_trusts_exactly_the_configured_ca() {
    let ca = TestCa::generate();
    let server = RedisServer::start_tls(&ca);
    assert!(server.url().starts_with("rediss://"));

    // The private CA, by IP address and by host name (both are in the
    // certificate's subjectAltName).
    for host in ["127.0.0.1", "localhost"] {
        let url = format!("rediss://{host}:{}", server.port());
        let redis = args(url.clone(), Some(ca.ca_cert()))
            .connect(TIMEOUT)
            .unwrap();
        round_trip(&redis)
            .await
            .unwrap_or_else(|e| panic!("{url} with the CA file: {e}"));
    }

    // No CA file: the built-in roots do not know the test CA.
    let redis = args(server.url(), None).connect(TIMEOUT).unwrap();
    let err = round_trip(&redis)
        .await
        .expect_err("an unknown CA must be refused");
    assert!(is_certificate_error(&err), "not a certificate error: {err}");

    // Another CA's certificate does not vouch for this server.
    let other = TestCa::generate();
    let redis = args(server.url(), Some(other.ca_cert()))
        .connect(TIMEOUT)
        .unwrap();
    let err = round_trip(&redis)
        .await
        .expect_err("a different CA must be refused");
    assert!(is_certificate_error(&err), "not a certificate error: {err}");

    // Plain text to the TLS port gets no answer a client can use.
    let plain = format!("redis://127.0.0.1:{}", server.port());
    let redis = Redis::new(&plain, TIMEOUT).unwrap();
    assert!(round_trip(&redis).await.is_err());
}

#[test]
fn a_redis_ca_file_that_cannot_work_is_rejected_at_start_up() {
    let ca = TestCa::generate();
    let tls_url = "rediss://127.0.0.1:6380".to_string();

    assert!(args(tls_url.clone(), Some(ca.ca_cert())).validate().is_ok());
    assert!(args(tls_url.clone(), None).validate().is_ok());

    let missing = ca.ca_cert().with_file_name("missing.pem");
    let err = args(tls_url.clone(), Some(missing)).client().unwrap_err();
    assert!(matches!(err, RedisConfigError::ReadCa { .. }), "{err}");
    assert!(err.to_string().contains("FANOUT_REDIS_CA_FILE"), "{err}");

    // A key is PEM but not a certificate.
    let err = args(tls_url.clone(), Some(ca.server_key()))
        .client()
        .unwrap_err();
    assert!(matches!(err, RedisConfigError::BadCa { .. }), "{err}");
    assert!(err.to_string().contains("no certificate"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = args(tls_url.clone(), Some(garbage)).client().unwrap_err();
    assert!(matches!(err, RedisConfigError::BadCa { .. }), "{err}");

    let err = args("redis://127.0.0.1:6379".into(), Some(ca.ca_cert()))
        .client()
        .unwrap_err();
    assert!(
        matches!(err, RedisConfigError::CaWithoutTls { .. }),
        "{err}"
    );

    // The feeds' Redis is checked alike, and named in the error.
    let with_feeds = |feeds: &str| RedisArgs {
        feed_redis_url: Some(feeds.into()),
        ..args(tls_url.clone(), Some(ca.ca_cert()))
    };
    assert!(with_feeds(&tls_url).validate().is_ok());
    let err = with_feeds("redis://127.0.0.1:6380").validate().unwrap_err();
    assert!(
        err.contains("FANOUT_FEED_REDIS_URL is not rediss://"),
        "{err}"
    );
    let plain = RedisArgs {
        feed_redis_url: Some("not a url".into()),
        ..args("redis://127.0.0.1:6379".into(), None)
    };
    let err = plain.validate().unwrap_err();
    assert!(
        err.contains("FANOUT_FEED_REDIS_URL is not a valid"),
        "{err}"
    );
}

#[cfg(feature = "db")]
mod postgres {
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::Duration;

    use fanout_testkit::{TestCa, free_port};

    /// A throwaway PostgreSQL cluster with `ssl=on`, serving `ca`'s server
    /// certificate on a free loopback port; stopped when dropped. As root,
    /// it runs as the `postgres` user (PostgreSQL refuses to run as root),
    /// as `scripts/services.sh` does.
    struct TlsPostgres {
        port: u16,
        data: PathBuf,
        _dir: tempfile::TempDir,
    }

    fn bin(name: &str) -> PathBuf {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL installed under /usr/lib/postgresql (make test installs it)")
            .filter_map(|e| Some(e.ok()?.path().join("bin").join(name)))
            .filter(|p| p.exists())
            .collect();
        found.sort();
        found
            .pop()
            .unwrap_or_else(|| panic!("no PostgreSQL {name}"))
    }

    fn is_root() -> bool {
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
    }

    /// Runs a PostgreSQL tool as the cluster's owner, failing loudly.
    fn as_owner(program: &Path, args: &[&str]) {
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        let out = command.args(args).output().expect("running PostgreSQL");
        assert!(
            out.status.success(),
            "{program:?} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    impl TlsPostgres {
        fn start(ca: &TestCa) -> TlsPostgres {
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path().join("data");
            let cert = dir.path().join("server.pem");
            let key = dir.path().join("server.key");
            std::fs::copy(ca.server_cert(), &cert).unwrap();
            std::fs::copy(ca.server_key(), &key).unwrap();
            // PostgreSQL refuses a key others can read.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
            if is_root() {
                // The postgres user must reach the folder and own the key.
                std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                    .unwrap();
                let status = Command::new("chown")
                    .args(["-R", "postgres:"])
                    .arg(dir.path())
                    .status()
                    .unwrap();
                assert!(status.success(), "chown to postgres failed");
            }
            let data_str = data.to_str().unwrap();
            as_owner(
                &bin("initdb"),
                &[
                    "-D",
                    data_str,
                    "-U",
                    "fanout",
                    "--auth=trust",
                    "--no-sync",
                    "--encoding=UTF8",
                ],
            );
            let port = free_port();
            let options = format!(
                "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
                 -c ssl=on -c ssl_cert_file={} -c ssl_key_file={} -c fsync=off",
                dir.path().display(),
                cert.display(),
                key.display()
            );
            let log = dir.path().join("server.log");
            // `-w` waits until the server accepts connections; the limit is
            // generous because initdb and start-up are slow on 2 cores.
            as_owner(
                &bin("pg_ctl"),
                &[
                    "-D",
                    data_str,
                    "-l",
                    log.to_str().unwrap(),
                    "-o",
                    &options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            );
            TlsPostgres {
                port,
                data,
                _dir: dir,
            }
        }
    }

    impl Drop for TlsPostgres {
        fn drop(&mut self) {
            let mut command = if is_root() {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(bin("pg_ctl"));
                c
            } else {
                Command::new(bin("pg_ctl"))
            };
            let _ = command
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
    }

    async fn select_one(url: &str) -> Result<i32, sqlx::Error> {
        let pool = feed_core::db::pool(url, 1, Duration::from_secs(10))?;
        let one: (i32,) = sqlx::query_as("SELECT 1").fetch_one(&pool).await?;
        pool.close().await;
        Ok(one.0)
    }

    #[tokio::test]
    async fn postgres_verify_full_trusts_exactly_the_configured_ca() {
        let ca = TestCa::generate();
        let server = TlsPostgres::start(&ca);
        let base = format!("postgres://fanout@127.0.0.1:{}/postgres", server.port);

        for host in ["127.0.0.1", "localhost"] {
            let url = format!(
                "postgres://fanout@{host}:{}/postgres?sslmode=verify-full&sslrootcert={}",
                server.port,
                ca.ca_cert().display()
            );
            assert_eq!(select_one(&url).await.unwrap(), 1, "{url}");
        }

        let other = TestCa::generate();
        let wrong = format!(
            "{base}?sslmode=verify-full&sslrootcert={}",
            other.ca_cert().display()
        );
        let err = select_one(&wrong)
            .await
            .expect_err("a different CA must be refused");
        let text = format!("{err:?}").to_lowercase();
        assert!(
            text.contains("certificate") || text.contains("unknownissuer"),
            "not a certificate error: {err:?}"
        );
    }
}
