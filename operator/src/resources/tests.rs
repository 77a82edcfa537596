use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::ResourceExt;

use super::*;
use crate::crd::{AutoscalingMode, ExternalDatastore, FeedCluster};

const IMAGE: &str = "ghcr.io/fanout/fanout:0.1.0";

fn sample() -> FeedCluster {
    let text = include_str!("../../../crds/samples/feedcluster.yaml");
    let mut fc: FeedCluster = serde_saphyr::from_str(text).unwrap();
    fc.metadata.namespace = Some("feeds".into());
    fc.metadata.uid = Some("0b5c1e2a-0000-4000-8000-000000000001".into());
    fc
}

fn pod_templates(fc: &FeedCluster) -> Vec<(String, PodTemplateSpec)> {
    let mut all = vec![
        (
            "api".into(),
            api_deployment(fc, IMAGE).spec.unwrap().template,
        ),
        (
            "workers".into(),
            worker_deployment(fc, IMAGE).spec.unwrap().template,
        ),
        (
            "migrate".into(),
            migration_job(fc, IMAGE).spec.unwrap().template,
        ),
    ];
    for set in [postgres_statefulset(fc), redis_statefulset(fc)]
        .into_iter()
        .flatten()
    {
        all.push((set.name_any(), set.spec.unwrap().template));
    }
    all
}

#[test]
fn every_object_is_owned_labelled_and_namespaced() {
    let fc = sample();
    let metas = vec![
        config_map(&fc).metadata,
        api_deployment(&fc, IMAGE).metadata,
        api_service(&fc).metadata,
        api_pdb(&fc).metadata,
        worker_deployment(&fc, IMAGE).metadata,
        worker_pdb(&fc).metadata,
        migration_job(&fc, IMAGE).metadata,
        postgres_secret(&fc, "pw").metadata,
        postgres_service(&fc).metadata,
        postgres_statefulset(&fc).unwrap().metadata,
        redis_service(&fc).metadata,
        redis_statefulset(&fc).unwrap().metadata,
    ];
    for meta in metas {
        let name = meta.name.clone().unwrap();
        assert!(name.starts_with("demo-"), "{name}");
        assert_eq!(meta.namespace.as_deref(), Some("feeds"), "{name}");
        let owners = meta.owner_references.unwrap();
        assert_eq!(owners.len(), 1, "{name}");
        assert_eq!(owners[0].kind, "FeedCluster");
        assert_eq!(
            owners[0].controller,
            Some(true),
            "{name}: garbage-collected with its FeedCluster"
        );
        let labels = meta.labels.unwrap();
        assert_eq!(labels["app.kubernetes.io/instance"], "demo");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "fanout-operator");
    }
}

#[test]
fn every_pod_meets_the_restricted_pod_security_standard() {
    for (name, template) in pod_templates(&sample()) {
        let spec = template.spec.unwrap();
        let pod = spec.security_context.unwrap();
        assert_eq!(pod.run_as_non_root, Some(true), "{name}");
        assert_eq!(
            pod.seccomp_profile.unwrap().type_,
            "RuntimeDefault",
            "{name}"
        );
        for c in spec.containers {
            let sc = c.security_context.unwrap();
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{name}");
            assert_eq!(sc.read_only_root_filesystem, Some(true), "{name}");
            assert_eq!(
                sc.capabilities.unwrap().drop,
                Some(vec!["ALL".into()]),
                "{name}"
            );
            assert!(
                c.resources.unwrap().requests.is_some(),
                "{name}: requests set"
            );
        }
    }
}

#[test]
fn the_worker_count_belongs_to_the_autoscaler() {
    let mut fc = sample();
    assert_eq!(worker_deployment(&fc, IMAGE).spec.unwrap().replicas, None);
    fc.spec.autoscaling.mode = AutoscalingMode::RecommendOnly;
    assert_eq!(
        worker_deployment(&fc, IMAGE).spec.unwrap().replicas,
        Some(1)
    );
    fc.spec.autoscaling.enabled = false;
    fc.spec.workers.min_replicas = 3;
    assert_eq!(
        worker_deployment(&fc, IMAGE).spec.unwrap().replicas,
        Some(3)
    );
    assert_eq!(api_deployment(&fc, IMAGE).spec.unwrap().replicas, Some(1));
}

fn env_of(fc: &FeedCluster) -> std::collections::BTreeMap<String, serde_json::Value> {
    let template = worker_deployment(fc, IMAGE).spec.unwrap().template;
    let container = &template.spec.unwrap().containers[0];
    container
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| (e.name.clone(), serde_json::to_value(e).unwrap()))
        .collect()
}

#[test]
fn connection_settings_come_from_secrets() {
    let mut fc = sample();
    let env = env_of(&fc);
    assert_eq!(
        env["FANOUT_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"],
        "demo-postgres"
    );
    assert_eq!(env["FANOUT_REDIS_URL"]["value"], "redis://demo-redis:6379");
    assert_eq!(
        env["FANOUT_JWT_SECRET"]["valueFrom"]["secretKeyRef"]["name"],
        "demo-jwt"
    );
    assert_eq!(
        env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );

    fc.spec.postgres.managed = None;
    fc.spec.postgres.external = Some(ExternalDatastore {
        secret_name: "prod-db".into(),
        key: "dsn".into(),
    });
    fc.spec.redis.managed = None;
    fc.spec.redis.external = Some(ExternalDatastore {
        secret_name: "prod-redis".into(),
        key: "url".into(),
    });
    fc.spec.auth.jwt_secret_name = Some("my-jwt".into());
    let env = env_of(&fc);
    assert_eq!(
        env["FANOUT_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"],
        "dsn"
    );
    assert_eq!(
        env["FANOUT_REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"],
        "prod-redis"
    );
    assert_eq!(
        env["FANOUT_JWT_SECRET"]["valueFrom"]["secretKeyRef"]["name"],
        "my-jwt"
    );
    assert!(postgres_statefulset(&fc).is_none() && redis_statefulset(&fc).is_none());
}

#[test]
fn the_api_service_exposes_the_node_port() {
    let svc = api_service(&sample()).spec.unwrap();
    assert_eq!(svc.type_.as_deref(), Some("NodePort"));
    let port = &svc.ports.unwrap()[0];
    assert_eq!((port.port, port.node_port), (80, Some(30080)));
}

#[test]
fn a_config_change_rolls_the_pods_and_a_new_image_migrates_again() {
    let mut fc = sample();
    let hash = |fc: &FeedCluster| {
        api_deployment(fc, IMAGE)
            .spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap()["fanout.dev/config-hash"]
            .clone()
    };
    let before = hash(&fc);
    assert_eq!(hash(&fc), before, "stable");
    fc.spec.feed.max_length = 500;
    assert_ne!(hash(&fc), before);
    assert_eq!(config_map(&fc).data.unwrap()["FANOUT_FEED_MAX_LEN"], "500");

    let job = migration_job(&fc, IMAGE);
    assert_eq!(job.name_any(), migration_job(&fc, IMAGE).name_any());
    assert_ne!(
        job.name_any(),
        migration_job(&fc, "ghcr.io/fanout/fanout:0.2.0").name_any()
    );
    let container = &job.spec.unwrap().template.spec.unwrap().containers[0];
    assert_eq!(container.command.as_ref().unwrap()[1], "--migrate-only");
}

#[test]
fn the_managed_postgres_secret_holds_a_working_url() {
    let secret = postgres_secret(&sample(), "s3cret");
    let data = secret.string_data.unwrap();
    assert_eq!(
        data["url"],
        "postgres://fanout:s3cret@demo-postgres:5432/fanout"
    );
    assert_eq!(data["password"], "s3cret");
}
