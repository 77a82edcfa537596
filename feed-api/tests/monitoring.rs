//! The chart's dashboards and alert rules (`charts/fanout/monitoring/`)
//! name only metrics the API and the workers export: a real stack takes a
//! post from its write to a follower's feed, and then every name they use
//! that is not the operator's (checked on the operator's lane) must be in
//! the API's or the worker's own `/metrics`. A rename in the code fails
//! here instead of blanking a panel or silencing an alert.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{DEADLINE, Stack};
use fanout_testkit::{free_port, monitoring};
use sqlx::PgPool;

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn dashboards_and_alerts_use_only_metrics_the_api_and_workers_export(db: PgPool) {
    let mut stack = Stack::api_only(db).await;
    let worker_addr = format!("127.0.0.1:{}", free_port());
    let addr = worker_addr.parse().unwrap();
    stack.start_worker_with("worker-1", |config| config.http_addr = addr);
    let alice = stack.signup("alice").await;
    let bob = stack.signup("bob").await;
    stack.follow(&bob, &alice).await;
    let post = stack.post(&alice, "seen on a dashboard").await;
    common::eventually(DEADLINE, "the post in bob's feed", || async {
        stack.feed_ids(&bob).await.contains(&post).then_some(())
    })
    .await;
    // A client error too, so the error panels' series exist.
    let missing_post = stack
        .http
        .get(stack.url("/posts/not-a-uuid"))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert!(missing_post.status().is_client_error());

    let wanted: BTreeSet<String> = monitoring::used_metric_names()
        .into_iter()
        .filter(|name| !monitoring::is_operator_metric(name))
        .collect();
    assert!(!wanted.is_empty());
    // The worker records its histograms just after the feed write the
    // test saw: poll until they are in, up to the deadline.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let api = stack.metrics().await;
        let worker = stack
            .http
            .get(format!("http://{worker_addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut exported = monitoring::exported_metric_names(&api);
        exported.extend(monitoring::exported_metric_names(&worker));
        let missing: Vec<&String> = wanted.difference(&exported).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboards or alerts use {missing:?}, which neither the API nor the worker exports:\n{api}\n{worker}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.stop().await;
}
