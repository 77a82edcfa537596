//! The CRD in crds/ is generated from the Rust types (`make generate`); this
//! fails when the committed copy drifts. The sample must be a valid
//! FeedCluster.

use std::path::PathBuf;

use feed_core::autoscale::Settings;
use feed_core::runtime;
use kube::CustomResourceExt;
use operator::crd::{
    AutoscalingMode, AutoscalingSpec, FeedCluster, FeedSpec, ServiceType, WorkersSpec, policy,
};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

#[test]
fn the_committed_crds_match_the_types() {
    for (file, fresh) in [
        ("crds/feedcluster.yaml", operator::crd::manifest()),
        (
            "charts/fanout/templates/crd.yaml",
            operator::crd::helm_template(),
        ),
    ] {
        let path = repo(file);
        if std::env::var_os("FANOUT_REGENERATE").is_some() {
            std::fs::write(&path, &fresh).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == fresh,
            "{file} differs from the FeedCluster types: run `make generate` and commit"
        );
    }
}

#[test]
fn the_crd_validates_what_the_operator_relies_on() {
    let crd = serde_json::to_string(&FeedCluster::crd()).unwrap();
    for rule in [
        "self.minReplicas <= self.maxReplicas",
        "has(self.external) != has(self.managed)",
        "!has(self.nodePort) || self.type == 'NodePort'",
    ] {
        assert!(
            crd.contains(&serde_json::to_string(rule).unwrap()),
            "missing CEL rule {rule}"
        );
    }
    let crd = FeedCluster::crd();
    assert_eq!(crd.spec.names.short_names, Some(vec!["fc".to_owned()]));
    let columns: Vec<String> = crd.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(
        columns,
        ["Ready", "API", "Workers", "Backlog", "Age", "Paused"]
    );
    assert!(
        crd.spec.versions[0]
            .subresources
            .as_ref()
            .unwrap()
            .status
            .is_some()
    );
}

#[test]
fn the_sample_is_a_valid_feedcluster_with_defaults_filled_in() {
    let text = std::fs::read_to_string(repo("crds/samples/feedcluster.yaml")).unwrap();
    let fc: FeedCluster = serde_saphyr::from_str(&text).unwrap();
    let spec = &fc.spec;
    assert_eq!(spec.api.service.type_, ServiceType::NodePort);
    assert_eq!(spec.api.service.node_port, Some(30080));
    assert!(spec.postgres.managed.is_some() && spec.postgres.external.is_none());
    assert!(spec.autoscaling.enabled, "defaults to enabled");
    assert_eq!(spec.autoscaling.mode, AutoscalingMode::Scale);
    assert_eq!(spec.feed.max_length, 800);
    let policy = spec.policy();
    policy.validate().unwrap();
    assert_eq!((policy.min_replicas, policy.max_replicas), (1, 5));
    assert_eq!(policy.scale_down_window_secs, 60.0);
}

#[test]
fn an_empty_spec_defaults_to_the_policys_and_the_binaries_defaults() {
    let empty = || serde_json::json!({});
    let workers: WorkersSpec = serde_json::from_value(empty()).unwrap();
    let autoscaling: AutoscalingSpec = serde_json::from_value(empty()).unwrap();
    assert_eq!(policy(&workers, &autoscaling), Settings::DEFAULT);
    let feed: FeedSpec = serde_json::from_value(empty()).unwrap();
    assert_eq!(feed.max_length as usize, runtime::DEFAULT_FEED_MAX_LEN);
    assert_eq!(
        feed.celebrity_threshold,
        runtime::DEFAULT_CELEBRITY_THRESHOLD
    );

    // The schema's defaults, which the API server fills in, say the same.
    let schema = serde_json::to_value(FeedCluster::crd()).unwrap();
    let spec = &schema["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let default_of = |block: &str, field: &str| {
        spec[block]["properties"][field]["default"]
            .as_f64()
            .unwrap_or_else(|| panic!("{block}.{field} has no default in the schema"))
    };
    assert_eq!(
        default_of("workers", "maxReplicas"),
        f64::from(Settings::DEFAULT.max_replicas)
    );
    assert_eq!(
        default_of("autoscaling", "drainSeconds"),
        Settings::DEFAULT.drain_seconds
    );
    assert_eq!(
        default_of("feed", "maxLength"),
        runtime::DEFAULT_FEED_MAX_LEN as f64
    );
}
