//! Security rules over HTTP: logout, account deletion and the tokens it
//! leaves behind, rate limits (429 with Retry-After), login throttling, the
//! audit log, and `/debug` behind a token.

mod common;

use common::{DEADLINE, Stack, User, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

const PASSWORD: &str = "correct horse battery";

async fn login(stack: &Stack, handle: &str, password: &str) -> reqwest::Response {
    stack
        .http
        .post(stack.url("/auth/login"))
        .json(&json!({"handle": handle, "password": password}))
        .send()
        .await
        .unwrap()
}

/// An audit log entry as (action, actor, subject, client_ip).
type Audited = (String, Option<uuid::Uuid>, Option<String>, Option<String>);

/// The audit log, oldest first.
async fn audit(db: &PgPool) -> Vec<Audited> {
    let mut entries: Vec<_> = feed_core::db::audit::recent(db, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.entry.action,
                r.entry.actor_id,
                r.entry.subject,
                r.entry.client_ip,
            )
        })
        .collect();
    entries.reverse();
    entries
}

fn actions(entries: &[Audited]) -> Vec<&str> {
    entries.iter().map(|e| e.0.as_str()).collect()
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn logout_ends_the_session_and_is_audited(db: PgPool) {
    let stack = Stack::api_only(db.clone()).await;
    let alice = stack.signup("alice").await;
    let tokens: Value = login(&stack, "alice", PASSWORD).await.json().await.unwrap();
    let refresh = tokens["refresh_token"].clone();
    let rotated: Value = stack
        .http
        .post(stack.url("/auth/refresh"))
        .json(&json!({ "refresh_token": refresh }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // Logging out with the newest token of the session ends all of it.
    let out = stack
        .http
        .post(stack.url("/auth/logout"))
        .json(&json!({"refresh_token": rotated["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let after = stack
        .http
        .post(stack.url("/auth/refresh"))
        .json(&json!({"refresh_token": rotated["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    assert!(after.text().await.unwrap().contains("revoked"));
    // An unknown token: nothing to end, and nothing revealed.
    let unknown = stack
        .http
        .post(stack.url("/auth/logout"))
        .json(&json!({"refresh_token": "not-a-token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NO_CONTENT);

    let log = audit(&db).await;
    let logout = log
        .iter()
        .find(|e| e.0 == "logout")
        .expect("logout audited");
    assert_eq!(logout.1, Some(alice.id));
    assert_eq!(logout.3.as_deref(), Some("127.0.0.1"));
    assert_eq!(log.iter().filter(|e| e.0 == "logout").count(), 1);
    stack.stop().await;
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn a_deleted_account_leaves_no_trace_and_its_tokens_stop_working(db: PgPool) {
    let stack = Stack::start(db.clone()).await;
    let alice = stack.signup("alice").await;
    let bob = stack.signup("bob").await;
    let carol = stack.signup("carol").await;
    stack.follow(&bob, &alice).await;
    stack.follow(&alice, &carol).await;
    assert!(stack.feed_ids(&bob).await.is_empty());
    let post = stack.post(&alice, "soon gone").await;
    let carols = stack.post(&carol, "carol's").await;
    stack
        .call(&alice, Method::POST, &format!("/posts/{carols}/like"))
        .await;
    eventually(DEADLINE, "alice's post in bob's feed", || async {
        stack.cached_feed(&bob).await.contains(&post).then_some(())
    })
    .await;

    let delete = |password: &'static str| {
        let stack = &stack;
        let token = alice.token.clone();
        async move {
            stack
                .http
                .delete(stack.url("/users/me"))
                .bearer_auth(token)
                .json(&json!({ "password": password }))
                .send()
                .await
                .unwrap()
        }
    };
    // A stolen access token alone cannot delete an account.
    assert_eq!(
        delete("wrong password!").await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(delete(PASSWORD).await.status(), StatusCode::NO_CONTENT);

    // Her token outlives her: every use is refused.
    for (method, path, body) in [
        (Method::GET, "/feed", json!({})),
        (Method::GET, "/users/me", json!({})),
        (Method::POST, "/posts", json!({"content": "ghost"})),
        (Method::DELETE, "/users/me", json!({"password": PASSWORD})),
    ] {
        let response = stack
            .http
            .request(method.clone(), stack.url(path))
            .bearer_auth(&alice.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
        assert!(
            response.text().await.unwrap().contains("no longer exists"),
            "{method} {path}"
        );
    }
    // Her post leaves bob's feed and the post cache; counters add up.
    assert!(!stack.feed_ids(&bob).await.contains(&post));
    let gone = stack
        .http
        .get(stack.url(&format!("/posts/{post}")))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let carol_now = stack
        .call(&bob, Method::GET, &format!("/users/{}", carol.id))
        .await;
    assert_eq!(carol_now["follower_count"], 0);
    let carols_post = stack
        .call(&bob, Method::GET, &format!("/posts/{carols}"))
        .await;
    assert_eq!(carols_post["like_count"], 0);
    // She can sign up again, from nothing.
    let again = stack.signup("alice").await;
    assert_ne!(again.id, alice.id);

    let log = audit(&db).await;
    let deleted = log
        .iter()
        .find(|e| e.0 == "user.deleted")
        .expect("deletion audited");
    assert_eq!(deleted.1, Some(alice.id));
    stack.stop().await;
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn writes_over_the_user_limit_get_429_with_retry_after(db: PgPool) {
    let stack = Stack::api_only_with(db, |c| c.rate_limit_user_per_min = 3).await;
    let alice = stack.signup("alice").await;
    let bob = stack.signup("bob").await;
    for i in 0..3 {
        stack.post(&alice, &format!("post {i}")).await;
    }
    let limited = stack
        .http
        .post(stack.url("/posts"))
        .bearer_auth(&alice.token)
        .json(&json!({"content": "one too many"}))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let problem: Value = limited.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("writes by this user")
    );
    // Reads are not limited, and the limit is alice's, not bob's.
    stack.feed(&alice, "").await;
    stack.post(&bob, "bob is fine").await;

    let metrics = stack.metrics().await;
    assert!(
        metrics.contains(r#"fanout_rate_limited_total{scope="user"} 1"#),
        "{metrics}"
    );
    stack.stop().await;
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn an_address_over_its_limit_gets_429_whoever_it_claims_to_be(db: PgPool) {
    let stack = Stack::api_only_with(db, |c| c.rate_limit_address_per_min = 4).await;
    stack.signup("alice").await; // sign-up and login: two writes
    stack.signup("bob").await; // two more
    let response = stack
        .http
        .post(stack.url("/users"))
        .header("x-forwarded-for", "198.51.100.1")
        .json(&json!({"handle": "carol", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    // No proxy is trusted: the forged header changes nothing.
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    stack.stop().await;
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn password_guessing_is_throttled_per_handle_and_audited(db: PgPool) {
    let stack = Stack::api_only_with(db.clone(), |c| {
        c.login_attempts_per_handle = 3;
        c.trusted_proxy_hops = 1;
    })
    .await;
    stack.signup("alice").await; // one attempt (it succeeds)
    for _ in 0..2 {
        let wrong = stack
            .http
            .post(stack.url("/auth/login"))
            .header("x-forwarded-for", "203.0.113.9")
            .json(&json!({"handle": "Alice", "password": "guess guess"}))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    // Out of attempts: even the right password waits, unchecked.
    let throttled = login(&stack, "alice", PASSWORD).await;
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(throttled.headers().contains_key("retry-after"));
    // Other handles are unaffected.
    stack.signup("bob").await;

    let log = audit(&db).await;
    assert_eq!(
        actions(&log),
        [
            "login.succeeded",
            "login.failed",
            "login.failed",
            "login.throttled",
            "login.succeeded"
        ]
    );
    // The failed attempts name the handle tried and, behind the one trusted
    // proxy, the address it saw.
    assert_eq!(log[1].2.as_deref(), Some("alice"));
    assert_eq!(log[1].3.as_deref(), Some("203.0.113.9"));
    let metrics = stack.metrics().await;
    assert!(
        metrics.contains("fanout_login_failures_total 2"),
        "{metrics}"
    );
    stack.stop().await;
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn deletes_and_refresh_token_reuse_are_audited(db: PgPool) {
    let stack = Stack::api_only(db.clone()).await;
    let alice: User = stack.signup("alice").await;
    let post = stack.post(&alice, "to delete").await;
    stack
        .call(&alice, Method::DELETE, &format!("/posts/{post}"))
        .await;
    let tokens: Value = login(&stack, "alice", PASSWORD).await.json().await.unwrap();
    for _ in 0..2 {
        stack
            .http
            .post(stack.url("/auth/refresh"))
            .header("x-request-id", "reuse-check")
            .json(&json!({"refresh_token": tokens["refresh_token"]}))
            .send()
            .await
            .unwrap();
    }
    let log = audit(&db).await;
    let deleted = log.iter().find(|e| e.0 == "post.deleted").unwrap();
    assert_eq!(deleted.1, Some(alice.id));
    assert_eq!(deleted.2, Some(post.to_string()));
    assert!(
        log.iter()
            .any(|e| e.0 == "refresh.reused" && e.1 == Some(alice.id))
    );
    let request_ids: Vec<Option<String>> = feed_core::db::audit::recent(&db, 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.entry.action == "refresh.reused")
        .map(|r| r.entry.request_id)
        .collect();
    assert_eq!(request_ids, [Some("reuse-check".to_owned())]);
    stack.stop().await;
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn debug_views_can_require_a_token_and_never_show_secrets(db: PgPool) {
    let stack = Stack::api_only_with(db, |c| {
        c.debug_token = "debug-token-for-operators".into();
        c.postgres.database_url = "postgres://fanout:db-password@127.0.0.1:1/fanout".into();
    })
    .await;
    for path in ["/debug/config", "/debug/health", "/debug/metrics-summary"] {
        let denied = stack.http.get(stack.url(path)).send().await.unwrap();
        assert_eq!(denied.status(), StatusCode::UNAUTHORIZED, "{path}");
        let wrong = stack
            .http
            .get(stack.url(path))
            .bearer_auth("debug-token-for-operator")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let config = stack
        .http
        .get(stack.url("/debug/config"))
        .bearer_auth("debug-token-for-operators")
        .send()
        .await
        .unwrap();
    assert_eq!(config.status(), StatusCode::OK);
    let text = config.text().await.unwrap();
    for secret in [
        common::JWT_SECRET,
        "db-password",
        "debug-token-for-operators",
    ] {
        assert!(!text.contains(secret), "{secret} shown: {text}");
    }
    let config: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(config["jwt_secret"], "***");
    assert_eq!(config["debug_token"], "***");
    // Nor does the settings' Debug form, should it ever be logged.
    let mut settings = common::api_config("redis://127.0.0.1:1");
    settings.postgres.database_url = "postgres://fanout:db-password@127.0.0.1:1/fanout".into();
    let shown = format!("{settings:?}");
    assert!(
        !shown.contains("db-password") && !shown.contains(common::JWT_SECRET),
        "{shown}"
    );
    stack.stop().await;
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn nothing_private_appears_in_another_users_responses(db: PgPool) {
    let stack = Stack::api_only(db).await;
    let alice = stack.signup("alice").await;
    let bob = stack.signup("bob").await;
    stack.follow(&bob, &alice).await;
    let post = stack.post(&alice, "public words").await;
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let public_user = [
        "created_at",
        "display_name",
        "follower_count",
        "handle",
        "id",
    ];
    let profile = stack
        .call(&bob, Method::GET, &format!("/users/{}", alice.id))
        .await;
    assert_eq!(keys(&profile), public_user);
    let followers = stack
        .call(
            &alice,
            Method::GET,
            &format!("/users/{}/followers", alice.id),
        )
        .await;
    assert_eq!(
        keys(&followers["items"][0]),
        ["created_at", "display_name", "followed_at", "handle", "id"]
    );
    let seen = stack
        .call(&bob, Method::GET, &format!("/posts/{post}"))
        .await;
    let text = seen.to_string() + &profile.to_string() + &followers.to_string();
    for private in ["password", "hash", "token", "argon2", PASSWORD] {
        assert!(!text.contains(private), "{private} in {text}");
    }
    stack.stop().await;
}
