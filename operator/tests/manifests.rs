//! Everything the operator creates for the sample FeedCluster, validated
//! offline against Kubernetes' published schemas, and the sample against the
//! CRD's own schema (scripts/validate-manifests.py; `make deps` installs its
//! Python packages).

use std::path::PathBuf;
use std::process::Command;

use operator::crd::FeedCluster;
use operator::resources;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

#[test]
fn generated_objects_and_the_sample_pass_schema_validation() {
    let sample = repo("crds/samples/feedcluster.yaml");
    let mut fc: FeedCluster =
        serde_saphyr::from_str(&std::fs::read_to_string(&sample).unwrap()).unwrap();
    fc.metadata.namespace = Some("feeds".into());
    fc.metadata.uid = Some("0b5c1e2a-0000-4000-8000-000000000001".into());
    let image = "ghcr.io/fanout-dev/fanout:0.1.0";
    let mut docs = vec![
        serde_saphyr::to_string(&resources::config_map(&fc)).unwrap(),
        serde_saphyr::to_string(&resources::api_deployment(&fc, image)).unwrap(),
        serde_saphyr::to_string(&resources::api_service(&fc)).unwrap(),
        serde_saphyr::to_string(&resources::api_pdb(&fc)).unwrap(),
        serde_saphyr::to_string(&resources::worker_deployment(&fc, image)).unwrap(),
        serde_saphyr::to_string(&resources::worker_pdb(&fc)).unwrap(),
        serde_saphyr::to_string(&resources::migration_job(&fc, image)).unwrap(),
        serde_saphyr::to_string(&resources::postgres_secret(&fc, "password")).unwrap(),
        serde_saphyr::to_string(&resources::postgres_service(&fc)).unwrap(),
        serde_saphyr::to_string(&resources::redis_service(&fc)).unwrap(),
    ];
    let policies = resources::network_policies(&fc, "fanout-system");
    assert_eq!(policies.len(), 4, "API, workers, PostgreSQL, Redis");
    for policy in policies {
        docs.push(serde_saphyr::to_string(&policy).unwrap());
    }
    for set in [
        resources::postgres_statefulset(&fc),
        resources::redis_statefulset(&fc),
    ]
    .into_iter()
    .flatten()
    {
        docs.push(serde_saphyr::to_string(&set).unwrap());
    }
    let dir = tempfile::tempdir().unwrap();
    let objects = dir.path().join("objects.yaml");
    std::fs::write(&objects, docs.join("---\n")).unwrap();

    let run = Command::new("python3")
        .arg(repo("scripts/validate-manifests.py"))
        .arg(&objects)
        .arg(repo("crds/feedcluster.yaml"))
        .arg(&sample)
        .output();
    let output = match run {
        Ok(output) => output,
        Err(e) => panic!("python3 is needed to validate manifests: {e}"),
    };
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    if text.contains("ModuleNotFoundError") {
        panic!(
            "install the validators first (make deps does): pip install kubernetes-validate\n{text}"
        );
    }
    assert!(output.status.success(), "{text}");
    assert!(text.contains("0 failure(s)"), "{text}");
}
