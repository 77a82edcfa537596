use http::Method;
use std::collections::HashMap;

use serde_json::{Value, json};

use super::*;
use crate::crd::AutoscalingMode;
use crate::fixtures::{Expect, Reply, test_context, within_a_second};
use crate::scale_target::replicas_of;
use feed_core::autoscale::{self, step::observe};
use k8s_openapi::api::apps::v1::Deployment;

const SCALE: &str = "/apis/apps/v1/namespaces/feeds/deployments/demo-workers/scale";
const STATUS: &str = "/apis/fanout.dev/v1alpha1/namespaces/feeds/feedclusters/demo/status";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/feeds/events";

fn backlog(lag: u64) -> Backlog {
    Backlog {
        lag: Some(lag),
        entries_added: lag,
        entries_read: Some(0),
        ..Backlog::default()
    }
}

fn workers(replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "demo-workers"},
        "spec": {"replicas": replicas, "selector": {}, "template": {}},
        "status": {"readyReplicas": replicas}
    }))
    .unwrap()
}

fn status_reply(fc: &FeedCluster) -> Reply {
    let object = serde_json::to_value(fc).unwrap();
    Reply::EchoWith(Box::new(move |patch: &mut Value| {
        let mut full = object;
        full["status"] = patch["status"].take();
        *patch = full;
    }))
}

#[tokio::test]
async fn a_backlog_scales_the_workers_through_the_scale_subresource() {
    let (ctx, server) = test_context();
    let fc = FeedCluster::test();
    let b = backlog(30_000);
    let observation = observe(Some(&b), replicas_of(&workers(1)), 0.0);
    let decision = autoscale::decide(&fc.spec.policy(), &mut Memory::default(), observation);
    assert_eq!(decision.direction, Direction::Up);
    let scenario = server.run(vec![
        Expect::new(Method::PATCH, SCALE, Reply::Echo).check(|scale| {
            // 30,000 waiting at an assumed 200/s per worker within 30 s is
            // 5 workers, capped by the scale-up step of 4 to 1 + 4 = 5.
            assert_eq!(scale["spec"]["replicas"], 5);
            assert_eq!(scale["kind"], "Scale");
        }),
        Expect::new(Method::POST, EVENTS, Reply::Echo).check(|e| assert_eq!(e["reason"], "Scaled")),
        Expect::new(Method::PATCH, STATUS, status_reply(&fc)).check(|body| {
            let status = &body["status"];
            assert_eq!(status["backlog"], 30_000);
            assert_eq!(status["lastScale"]["from"], 1);
            assert_eq!(status["lastScale"]["to"], 5);
            assert_eq!(status["lastScale"]["direction"], "Up");
            assert_eq!(status["lastScale"]["applied"], true);
            assert!(
                status["lastScale"]["reason"]
                    .as_str()
                    .unwrap()
                    .contains("backlog 30000")
            );
        }),
    ]);
    act(&ctx, &fc, Some(&b), &decision, 1).await.unwrap();
    within_a_second(scenario).await;
    let metrics = feed_core::runtime::render_metrics(&ctx.metrics.registry);
    assert!(
        metrics.contains(r#"fanout_autoscaler_decisions_total{applied="true",direction="Up",feedcluster="feeds/demo"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"fanout_autoscaler_observed{feedcluster="feeds/demo",measure="lag"} 30000"#
        )
    );
    assert!(
        metrics.contains(
            r#"fanout_autoscaler_observed{feedcluster="feeds/demo",measure="desired"} 5"#
        )
    );
}

#[tokio::test]
async fn recommend_only_reports_without_scaling() {
    let (ctx, server) = test_context();
    let mut fc = FeedCluster::test();
    fc.spec.autoscaling.mode = AutoscalingMode::RecommendOnly;
    let b = backlog(30_000);
    let decision = autoscale::decide(
        &fc.spec.policy(),
        &mut Memory::default(),
        observe(Some(&b), replicas_of(&workers(1)), 0.0),
    );
    let scenario = server.run(vec![
        Expect::new(Method::POST, EVENTS, Reply::Echo)
            .check(|e| assert_eq!(e["reason"], "Recommended")),
        Expect::new(Method::PATCH, STATUS, status_reply(&fc))
            .check(|body| assert_eq!(body["status"]["lastScale"]["applied"], false)),
    ]);
    act(&ctx, &fc, Some(&b), &decision, 1).await.unwrap();
    within_a_second(scenario).await;
}

#[tokio::test]
async fn an_unreadable_backlog_holds_the_workers() {
    let (ctx, server) = test_context();
    let fc = FeedCluster::test();
    let decision = autoscale::decide(
        &fc.spec.policy(),
        &mut Memory::default(),
        observe(None, replicas_of(&workers(3)), 0.0),
    );
    assert_eq!(decision.desired, 3, "unknown is never read as zero");
    let scenario = server.run(vec![
        Expect::new(Method::PATCH, STATUS, status_reply(&fc)).check(|body| {
            assert!(body["status"]["backlog"].is_null());
            assert!(body["status"].get("lastScale").is_none());
        }),
    ]);
    act(&ctx, &fc, None, &decision, 3).await.unwrap();
    within_a_second(scenario).await;
    let metrics = feed_core::runtime::render_metrics(&ctx.metrics.registry);
    assert!(
        !metrics.contains(r#"measure="lag""#),
        "unknown lag is no series, not 0: {metrics}"
    );
}

#[tokio::test]
async fn before_a_scale_down_idle_workers_are_marked_cheapest_to_delete() {
    let (ctx, server) = test_context();
    let fc = FeedCluster::test();
    let pod = |name: &str, cost: Option<&str>| {
        let mut p = json!({"metadata": {"name": name, "namespace": "feeds"}});
        if let Some(cost) = cost {
            p["metadata"]["annotations"] = json!({DELETION_COST: cost});
        }
        p
    };
    let pods = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {},
        "items": [pod("demo-workers-a", None), pod("demo-workers-b", None), pod("demo-workers-c", Some("0"))]});
    let consumers = HashMap::from([
        (
            "demo-workers-a".to_owned(),
            bus::Consumer {
                pending: 0,
                idle_ms: 10,
            },
        ),
        (
            "demo-workers-b".to_owned(),
            bus::Consumer {
                pending: 7,
                idle_ms: 10,
            },
        ),
    ]);
    let scenario = server.run(vec![
        Expect::new(
            Method::GET,
            "/api/v1/namespaces/feeds/pods",
            Reply::Json(pods),
        ),
        // Gone since the list: a merge patch (never a create) finds nothing,
        // and the others are still marked.
        Expect::new(
            Method::PATCH,
            "/api/v1/namespaces/feeds/pods/demo-workers-a",
            Reply::NotFound,
        )
        .check(|p| {
            assert_eq!(p["metadata"]["annotations"][DELETION_COST], "0");
            assert!(p.get("kind").is_none(), "a merge patch, not an apply: {p}");
        }),
        Expect::new(
            Method::PATCH,
            "/api/v1/namespaces/feeds/pods/demo-workers-b",
            Reply::Echo,
        )
        .check(|p| assert_eq!(p["metadata"]["annotations"][DELETION_COST], "7")),
        // demo-workers-c already carries the right cost: left alone.
    ]);
    set_deletion_costs(&ctx, &fc, &consumers).await.unwrap();
    within_a_second(scenario).await;
}

#[tokio::test(start_paused = true)]
async fn a_paused_feedcluster_is_neither_read_nor_scaled() {
    let (ctx, server) = test_context();
    // Several ticks of the loop (2 s each) on the paused clock.
    let quiet = server.silent_for(Duration::from_secs(10));
    let mut fc = FeedCluster::test();
    fc.annotations_mut()
        .insert(pause::PAUSED_ANNOTATION.into(), "true".into());
    let (store, mut writer) = kube::runtime::reflector::store();
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(fc));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let autoscaler = tokio::spawn(run(ctx.clone(), store, shutdown.clone()));
    quiet.await.expect("no request while paused");
    shutdown.cancel();
    autoscaler.await.unwrap();
    let text = feed_core::runtime::render_metrics(&ctx.metrics.registry);
    assert!(
        text.contains(r#"fanout_autoscaler_paused_polls_total{feedcluster="feeds/demo"}"#),
        "{text}"
    );
    assert!(text.contains(r#"fanout_operator_paused{feedcluster="feeds/demo"} 1"#));
    assert!(
        !text.contains("fanout_autoscaler_decisions_total{"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_deleted_feedcluster_leaves_no_gauge_behind() {
    let (ctx, server) = test_context();
    // Autoscaling off: the loop keeps its gauges but polls nothing.
    let quiet = server.silent_for(Duration::from_secs(10));
    let mut fc = FeedCluster::test();
    fc.spec.autoscaling.enabled = false;
    // What an earlier poll, with autoscaling on, left behind.
    ctx.metrics
        .observed
        .with_label_values(&["feeds/demo", "desired"])
        .set(5);
    ctx.metrics
        .stream_lag
        .with_label_values(&["feeds/demo", "{events}:post.created"])
        .set(9);
    let (store, mut writer) = kube::runtime::reflector::store();
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(fc.clone()));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let autoscaler = tokio::spawn(run(ctx.clone(), store, shutdown.clone()));
    let render = || feed_core::runtime::render_metrics(&ctx.metrics.registry);
    let paused = r#"fanout_operator_paused{feedcluster="feeds/demo"} 0"#;
    for _ in 0..10 {
        if render().contains(paused) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let text = render();
    assert!(text.contains(paused), "{text}");
    // Not observed any more: no stale count for dashboards and alerts.
    assert!(!text.contains("fanout_autoscaler_observed{"), "{text}");
    assert!(!text.contains("fanout_autoscaler_stream_lag{"), "{text}");

    writer.apply_watcher_event(&kube::runtime::watcher::Event::Delete(fc));
    for _ in 0..10 {
        if !render().contains("fanout_operator_paused{") {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        !render().contains("fanout_operator_paused{"),
        "{}",
        render()
    );
    quiet.await.expect("no request");
    shutdown.cancel();
    autoscaler.await.unwrap();
}

#[test]
fn each_stream_is_recorded_and_an_unknown_lag_is_no_series() {
    let metrics = crate::metrics::Metrics::default();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let stream = |name: &str, lag: Option<u64>, waited_ms: Option<i64>| bus::StreamStats {
        stream: name.into(),
        lag,
        pending: 7,
        oldest_unfinished_ms: waited_ms.map(|ms| now_ms - ms),
        ..bus::StreamStats::default()
    };
    let b = Backlog {
        streams: vec![
            stream("{events}:post.created", Some(40), Some(90_000)),
            stream("{events}:post.liked", None, None),
        ],
        ..Backlog::default()
    };
    record_streams(&metrics, "feeds/demo", &b);
    let text = feed_core::runtime::render_metrics(&metrics.registry);
    let created = r#"{feedcluster="feeds/demo",stream="{events}:post.created"}"#;
    let liked = r#"{feedcluster="feeds/demo",stream="{events}:post.liked"}"#;
    assert!(
        text.contains(&format!("fanout_autoscaler_stream_lag{created} 40")),
        "{text}"
    );
    assert!(
        !text.contains(&format!("fanout_autoscaler_stream_lag{liked}")),
        "{text}"
    );
    assert!(text.contains(&format!("fanout_autoscaler_stream_pending{liked} 7")));
    assert!(text.contains(&format!(
        "fanout_autoscaler_stream_oldest_unfinished_seconds{liked} 0"
    )));
    let age: f64 = text
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "fanout_autoscaler_stream_oldest_unfinished_seconds{created}"
            ))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap();
    assert!((90.0..100.0).contains(&age), "{age}");
}
