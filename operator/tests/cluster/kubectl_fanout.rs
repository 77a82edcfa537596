//! `kubectl fanout` (issue 16), the built binary run as a process against a
//! live FeedCluster and its operator: `status` shows conditions, replicas,
//! the live backlog per stream and the autoscaler's decisions; `pause` and
//! `resume` flip the switch and wait for the operator to confirm;
//! `simulate` runs the lab on the FeedCluster's own settings; a missing
//! FeedCluster is an error that says how to find one.
//!
//! The binary is another package's (`kubectl-fanout`, which links the
//! autoscale lab the operator must not), so it is found beside this test's
//! own executable: `make test` (`cargo test --workspace --all-targets`)
//! builds it first; alone, run `cargo build -p kubectl-fanout` before.

use std::path::PathBuf;
use std::process::{Command, Output};

use operator::crd::FeedCluster;
use operator::pause::is_paused;

use crate::autoscaling::{SPEC, push_backlog, scaled_to};
use crate::harness::{Scenario, apply, condition, repo, wait_ready};

fn binary() -> PathBuf {
    let test = std::env::current_exe().expect("the test's own path");
    // target/debug/deps/cluster-HASH -> target/debug/kubectl-fanout
    let path = test
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary sits in target/<profile>/deps")
        .join("kubectl-fanout");
    assert!(
        path.is_file(),
        "{} is missing: build it with cargo build --workspace --all-targets (make test does)",
        path.display()
    );
    path
}

/// Runs `kubectl-fanout ARGS` as the admin, in the scenario's namespace.
fn fanout(scenario: &Scenario, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .args(["-n", &scenario.namespace, "--kubeconfig", scenario.admin()])
        .env_remove("KUBECONFIG")
        .output()
        .expect("running kubectl-fanout")
}

fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "kubectl-fanout failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

#[tokio::test]
async fn kubectl_fanout_reports_pauses_resumes_and_simulates_a_live_feedcluster() {
    let Some(scenario) = Scenario::with_operator("t-kubectl").await else {
        return;
    };
    let ns = scenario.namespace.clone();
    let mut redis = scenario.streams().await;
    apply(&scenario, &scenario.feed_cluster("demo", SPEC)).await;
    wait_ready(&scenario, "demo", std::time::Duration::from_secs(90)).await;
    push_backlog(&mut redis).await;
    scaled_to(&scenario, 5, "the workers to scale up").await;

    let status = stdout_of(&fanout(&scenario, &["status", "demo"]));
    println!("$ kubectl fanout status demo -n {ns}\n{status}");
    for expected in [
        format!("FeedCluster {ns}/demo"),
        "Paused:      no".to_owned(),
        "Ready        True".to_owned(),
        // Live from the external Secret's Redis: the test's own.
        format!("BACKLOG (live from {})", scenario.redis.url()),
        "{events}:post.liked      20000".to_owned(),
        "Up 1 -> 5 (applied)".to_owned(),
        "RECENT DECISIONS".to_owned(),
        "Scaled".to_owned(),
    ] {
        assert!(status.contains(&expected), "{expected:?} not in:\n{status}");
    }

    let paused = stdout_of(&fanout(&scenario, &["pause", "demo", "--wait", "60"]));
    assert!(
        paused.contains("paused") && paused.contains("the operator confirmed it"),
        "{paused}"
    );
    let fc = scenario.api::<FeedCluster>().get("demo").await.unwrap();
    assert!(is_paused(&fc));
    assert_eq!(condition(&fc, "Paused").unwrap().0, "True");
    let status = stdout_of(&fanout(&scenario, &["status", "demo"]));
    assert!(status.contains("Paused:      yes"), "{status}");
    assert!(
        status.contains("Paused       True    Annotated"),
        "{status}"
    );

    let resumed = stdout_of(&fanout(&scenario, &["resume", "demo", "--wait", "60"]));
    assert!(resumed.contains("the operator confirmed it"), "{resumed}");
    let fc = scenario.api::<FeedCluster>().get("demo").await.unwrap();
    assert!(!is_paused(&fc));
    assert_eq!(condition(&fc, "Paused").unwrap().0, "False");

    // The lab on the FeedCluster's own settings (workers 1..5).
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("burst.json");
    let trace = repo("autoscale-lab/traces/burst.csv");
    let simulated = fanout(
        &scenario,
        &[
            "simulate",
            "demo",
            "--trace",
            trace.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    stdout_of(&simulated);
    let said = String::from_utf8_lossy(&simulated.stderr);
    assert!(
        said.contains(&format!("FeedCluster {ns}/demo: workers 1..5")),
        "{said}"
    );
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let run = &result["runs"][0];
    assert!(
        run["summary"]["replica_seconds"].as_u64().unwrap() > 0,
        "{run}"
    );
    let most = run["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["desired"].as_u64())
        .max()
        .unwrap();
    assert!(
        most <= 5,
        "the simulation exceeded the FeedCluster's maxReplicas: {most}"
    );

    let missing = fanout(&scenario, &["status", "nope"]);
    assert!(!missing.status.success());
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(
        said.contains(&format!(
            "FeedCluster nope not found in namespace {ns}; list them with kubectl get feedclusters -A"
        )),
        "{said}"
    );
}
