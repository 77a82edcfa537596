//! Probes, metrics and the debug views.

mod common;

use common::Stack;
use serde_json::Value;
use sqlx::PgPool;

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn probes_metrics_and_debug_views_answer(db: PgPool) {
    let stack = Stack::start(db).await;
    let alice = stack.signup("alice").await;
    stack.post(&alice, "counted").await;
    let get = |path: &'static str| {
        let stack = &stack;
        async move { stack.http.get(stack.url(path)).send().await.unwrap() }
    };

    assert_eq!(get("/healthz").await.text().await.unwrap(), "ok");
    let ready = get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["postgres"]["status"], "up");
    assert!(ready["redis"]["latency_ms"].as_f64().is_some());

    let metrics = get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .contains(r#"fanout_http_requests_total{method="POST",route="/posts",status="201"} 1"#),
        "{metrics}"
    );

    let config: Value = get("/debug/config").await.json().await.unwrap();
    assert_eq!(config["jwt_secret"], "***");
    assert!(!config.to_string().contains(common::JWT_SECRET));

    let summary: Value = get("/debug/metrics-summary").await.json().await.unwrap();
    let streams = summary["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 6);
    let created = streams
        .iter()
        .find(|s| s["stream"] == "{events}:post.created")
        .unwrap();
    assert!(created["entries_added"].as_u64().unwrap() >= 1);
    assert_eq!(summary["dead_letters"], 0);

    let openapi: Value = get("/openapi.json").await.json().await.unwrap();
    assert_eq!(openapi["info"]["title"], "Fanout API");

    // Every response carries a request id, and a client's own is kept.
    let response = stack
        .http
        .get(stack.url("/healthz"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    stack.stop().await;
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn the_request_id_travels_into_the_event(db: PgPool) {
    let stack = Stack::api_only(db.clone()).await;
    let alice = stack.signup("alice").await;
    let response = stack
        .http
        .post(stack.url("/posts"))
        .bearer_auth(&alice.token)
        .header("x-request-id", "req-from-client-7")
        .json(&serde_json::json!({"content": "traced"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let correlation: Option<String> = sqlx::query_scalar(
        "SELECT envelope->>'correlation_id' FROM outbox WHERE event_type = 'post.created'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(correlation.as_deref(), Some("req-from-client-7"));
    stack.stop().await;
}
