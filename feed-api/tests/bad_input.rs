//! Bad input gets a clear 4xx problem naming what is wrong, and changes
//! nothing.

mod common;

use common::{Stack, User};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

/// Row counts of every table a request could write.
async fn snapshot(db: &PgPool) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in ["users", "follows", "posts", "likes", "outbox"] {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(db)
                .await
                .unwrap();
        counts.push(n);
    }
    counts
}

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    token: Option<String>,
    body: Option<(&'static str, String)>,
    status: StatusCode,
    /// Words the problem's detail must contain.
    says: &'static str,
}

fn case(
    name: &'static str,
    method: Method,
    path: impl Into<String>,
    status: u16,
    says: &'static str,
) -> Case {
    Case {
        name,
        method,
        path: path.into(),
        token: None,
        body: None,
        status: StatusCode::from_u16(status).unwrap(),
        says,
    }
}

impl Case {
    fn by(mut self, user: &User) -> Case {
        self.token = Some(user.token.clone());
        self
    }
    fn token(mut self, token: &str) -> Case {
        self.token = Some(token.to_owned());
        self
    }
    fn json(mut self, body: impl Into<String>) -> Case {
        self.body = Some(("application/json", body.into()));
        self
    }
    fn body(mut self, content_type: &'static str, body: impl Into<String>) -> Case {
        self.body = Some((content_type, body.into()));
        self
    }
}

fn forged_token(user: &User) -> String {
    use jsonwebtoken::{EncodingKey, Header, encode};
    let now = chrono::Utc::now().timestamp();
    let claims =
        json!({"sub": user.id, "iss": "fanout", "aud": "fanout-api", "iat": now, "exp": now + 600});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(b"someone-elses-secret-of-32-bytes!!"),
    )
    .unwrap()
}

fn expired_token(user: &User) -> String {
    use jsonwebtoken::{EncodingKey, Header, encode};
    let then = chrono::Utc::now().timestamp() - 3600;
    let claims = json!({"sub": user.id, "iss": "fanout", "aud": "fanout-api", "iat": then, "exp": then + 60});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(common::JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn bad_requests_get_the_right_4xx_and_change_nothing(db: PgPool) {
    let stack = Stack::api_only(db.clone()).await;
    let alice = stack.signup("alice").await;
    let bob = stack.signup("bob").await;
    let post = stack.post(&alice, "alice's").await;
    let unknown = uuid::Uuid::now_v7();
    let long = "x".repeat(501);
    let huge = "y".repeat(20_000);
    let ancient = {
        use base64::Engine;
        let raw = format!("-1000000000000000000.{}", uuid::Uuid::nil().simple());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    };
    let nested = format!("{}{}", "[".repeat(200), "]".repeat(200));

    let cases = vec![
        case("malformed JSON", Method::POST, "/users", 400, "parse").json("{\"handle\": "),
        case("wrong type", Method::POST, "/users", 422, "invalid type")
            .json(r#"{"handle": 5, "password": "x"}"#),
        case(
            "missing field",
            Method::POST,
            "/users",
            422,
            "missing field",
        )
        .json(r#"{"handle": "carol"}"#),
        case(
            "unknown field",
            Method::POST,
            "/users",
            422,
            "unknown field",
        )
        .json(r#"{"handle": "carol", "password": "long enough", "admin": true}"#),
        case(
            "bad handle",
            Method::POST,
            "/users",
            422,
            "may contain only",
        )
        .json(r#"{"handle": "car ol", "password": "long enough"}"#),
        case("short password", Method::POST, "/users", 422, "at least 8")
            .json(r#"{"handle": "carol", "password": "short"}"#),
        case(
            "taken handle, other case",
            Method::POST,
            "/users",
            409,
            "taken",
        )
        .json(r#"{"handle": "ALICE", "password": "long enough"}"#),
        case("not JSON", Method::POST, "/users", 415, "Content-Type")
            .body("text/plain", "handle=carol"),
        case(
            "deep nesting",
            Method::POST,
            "/posts",
            400,
            "nested deeper than 32",
        )
        .by(&alice)
        .json(nested),
        case(
            "deep nesting in a field",
            Method::POST,
            "/users",
            400,
            "nested deeper",
        )
        .json(format!(
            r#"{{"handle": "carol", "password": "long enough", "x": {}{}}}"#,
            "{\"a\":".repeat(40),
            "1}".repeat(40)
        )),
        case(
            "oversize content",
            Method::POST,
            "/posts",
            422,
            "at most 500",
        )
        .by(&alice)
        .json(json!({"content": long}).to_string()),
        case("oversize body", Method::POST, "/posts", 413, "")
            .by(&alice)
            .json(json!({"content": huge}).to_string()),
        case("blank content", Method::POST, "/posts", 422, "blank")
            .by(&alice)
            .json(r#"{"content": "  "}"#),
        case("NUL in content", Method::POST, "/posts", 422, "control")
            .by(&alice)
            .json(r#"{"content": "a\u0000b"}"#),
        case("no token", Method::POST, "/posts", 401, "Authorization").json(r#"{"content": "hi"}"#),
        case("not a bearer token", Method::POST, "/posts", 401, "Bearer")
            .token("")
            .json(r#"{"content": "hi"}"#),
        case("garbage token", Method::POST, "/posts", 401, "not valid")
            .token("abc.def.ghi")
            .json(r#"{"content": "hi"}"#),
        case("forged token", Method::POST, "/posts", 401, "not valid")
            .token(&forged_token(&alice))
            .json(r#"{"content": "hi"}"#),
        case("expired token", Method::POST, "/posts", 401, "expired")
            .token(&expired_token(&alice))
            .json(r#"{"content": "hi"}"#),
        case(
            "someone else's post",
            Method::DELETE,
            format!("/posts/{post}"),
            403,
            "author",
        )
        .by(&bob),
        case(
            "unknown post",
            Method::DELETE,
            format!("/posts/{unknown}"),
            404,
            "no post",
        )
        .by(&bob),
        case(
            "junk post id",
            Method::GET,
            "/posts/not-a-uuid",
            400,
            "not a valid post id",
        ),
        case(
            "unknown user",
            Method::GET,
            format!("/users/{unknown}"),
            404,
            "no user",
        ),
        case(
            "follow unknown",
            Method::POST,
            format!("/users/{unknown}/follow"),
            404,
            "no user",
        )
        .by(&bob),
        case(
            "follow yourself",
            Method::POST,
            format!("/users/{}/follow", bob.id),
            422,
            "yourself",
        )
        .by(&bob),
        case(
            "like unknown",
            Method::POST,
            format!("/posts/{unknown}/like"),
            404,
            "no post",
        )
        .by(&bob),
        case(
            "page too big",
            Method::GET,
            "/feed?limit=1000",
            422,
            "between 1 and 100",
        )
        .by(&bob),
        case(
            "page not a number",
            Method::GET,
            "/feed?limit=lots",
            400,
            "limit",
        )
        .by(&bob),
        case(
            "forged cursor",
            Method::GET,
            "/feed?cursor=AAAA",
            400,
            "cursor",
        )
        .by(&bob),
        case("unknown route", Method::GET, "/nowhere", 404, "no route"),
        case("wrong method", Method::PUT, "/feed", 405, "not allowed"),
        case(
            "wrong password",
            Method::POST,
            "/auth/login",
            401,
            "invalid handle or password",
        )
        .json(r#"{"handle": "alice", "password": "not the password"}"#),
        case(
            "unknown handle",
            Method::POST,
            "/auth/login",
            401,
            "invalid handle or password",
        )
        .json(r#"{"handle": "nobody", "password": "not the password"}"#),
        case(
            "unknown refresh token",
            Method::POST,
            "/auth/refresh",
            401,
            "unknown",
        )
        .json(r#"{"refresh_token": "made-up"}"#),
        case(
            "NUL in a login handle",
            Method::POST,
            "/auth/login",
            401,
            "invalid handle or password",
        )
        .json(r#"{"handle": "a\u0000b", "password": "not the password"}"#),
        case(
            "cursor before the epoch",
            Method::GET,
            format!("/users/{}/followers?cursor={ancient}", alice.id),
            400,
            "cursor",
        ),
    ];

    let before = snapshot(&db).await;
    for c in cases {
        let mut request = stack.http.request(c.method.clone(), stack.url(&c.path));
        if let Some(token) = &c.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some((content_type, body)) = c.body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = response.text().await.unwrap();
        assert_eq!(status, c.status, "{}: {text}", c.name);
        assert_eq!(
            content_type.as_deref(),
            Some("application/problem+json"),
            "{}",
            c.name
        );
        let problem: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(problem["status"], c.status.as_u16(), "{}", c.name);
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains(c.says),
            "{}: {detail:?} should mention {:?}",
            c.name,
            c.says
        );
    }
    assert_eq!(snapshot(&db).await, before, "no bad request wrote anything");

    // The field at fault is named.
    let response = stack
        .http
        .post(stack.url("/posts"))
        .bearer_auth(&alice.token)
        .json(&json!({"content": 42}))
        .send()
        .await
        .unwrap();
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["field"], "content");
    stack.stop().await;
}
