//! Connecting a test to the servers it runs against: the Redis it started,
//! and the database `#[sqlx::test]` made for it (for a process the test
//! starts, which needs a URL rather than a pool).

use sqlx::PgPool;

use crate::RedisServer;

/// A connection to a test's own Redis, as the processes connect: to one
/// server, or to a cluster (see [`RedisServer`]).
pub async fn redis(server: &RedisServer) -> feed_core::bus::Conn {
    feed_core::bus::Redis::new(&server.url(), std::time::Duration::from_secs(5))
        .expect("a valid Redis URL")
        .conn()
        .await
        .expect("the test's Redis answers")
}

/// The URL of the database behind a `#[sqlx::test]` pool: the server that
/// `DATABASE_URL` names, with the test's own database in place of its one.
pub fn database_url(db: &PgPool) -> String {
    let server = std::env::var("DATABASE_URL").expect("DATABASE_URL names the test server");
    let options = db.connect_options();
    let database = options
        .get_database()
        .expect("a #[sqlx::test] pool names its database");
    with_database(&server, database)
}

/// `url` with its database (the last path segment) replaced; the query,
/// if any, is kept.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_is_swapped_and_the_rest_kept() {
        assert_eq!(
            with_database("postgres://fanout@127.0.0.1:25633/fanout", "_sqlx_test_7"),
            "postgres://fanout@127.0.0.1:25633/_sqlx_test_7"
        );
        assert_eq!(
            with_database("postgres://u:p@db:5432/app?sslmode=disable", "t"),
            "postgres://u:p@db:5432/t?sslmode=disable"
        );
    }
}
