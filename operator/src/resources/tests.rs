use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
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
    let mut metas = vec![
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
    let policies = network_policies(&fc, OPERATOR_NS);
    assert_eq!(policies.len(), 4);
    metas.extend(policies.into_iter().map(|p| p.metadata));
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
    // Recommending only leaves the count as it is, as documented.
    fc.spec.autoscaling.mode = AutoscalingMode::RecommendOnly;
    assert_eq!(worker_deployment(&fc, IMAGE).spec.unwrap().replicas, None);
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
    assert!(!env_of(&fc).contains_key("FANOUT_FEED_REDIS_URL"));
    fc.spec.feed_redis = Some(ExternalDatastore {
        secret_name: "feed-cache".into(),
        key: "url".into(),
    });
    let env = env_of(&fc);
    assert_eq!(
        env["FANOUT_FEED_REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"],
        "feed-cache"
    );
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

/// The operator's namespace in these tests.
const OPERATOR_NS: &str = "fanout-system";

/// A pod as a NetworkPolicy sees it: its namespace, the namespace's labels,
/// its own labels.
struct Pod {
    namespace: String,
    labels: std::collections::BTreeMap<String, String>,
}

impl Pod {
    /// A pod of `template`, in `namespace`.
    fn of(namespace: &str, template: &PodTemplateSpec) -> Pod {
        Pod {
            namespace: namespace.into(),
            labels: template.metadata.clone().unwrap().labels.unwrap(),
        }
    }

    fn namespace_labels(&self) -> std::collections::BTreeMap<String, String> {
        [(
            "kubernetes.io/metadata.name".to_owned(),
            self.namespace.clone(),
        )]
        .into()
    }
}

/// Label selector semantics, for the `matchLabels` the builders use.
fn selects(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    assert!(selector.match_expressions.is_none(), "only matchLabels");
    selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether `policy` applies to `pod`.
fn fences(policy: &NetworkPolicy, pod: &Pod) -> bool {
    policy.metadata.namespace.as_deref() == Some(pod.namespace.as_str())
        && selects(
            policy.spec.as_ref().unwrap().pod_selector.as_ref().unwrap(),
            &pod.labels,
        )
}

/// Whether `policy` lets `from` open a TCP connection to `port` of the pods
/// it fences (NetworkPolicy semantics: any rule whose peers and ports both
/// match; absent or empty peers or ports match all).
fn admits(policy: &NetworkPolicy, from: &Pod, port: i32) -> bool {
    let spec = policy.spec.as_ref().unwrap();
    assert_eq!(
        spec.policy_types.as_deref(),
        Some(&["Ingress".to_owned()][..])
    );
    spec.ingress.iter().flatten().any(|rule| {
        let peer_ok = rule.from.as_ref().is_none_or(|peers| {
            peers.is_empty()
                || peers.iter().any(|peer| {
                    assert!(peer.ip_block.is_none());
                    let namespace_ok = match &peer.namespace_selector {
                        None => {
                            policy.metadata.namespace.as_deref() == Some(from.namespace.as_str())
                        }
                        Some(ns) => selects(ns, &from.namespace_labels()),
                    };
                    namespace_ok
                        && peer
                            .pod_selector
                            .as_ref()
                            .is_none_or(|s| selects(s, &from.labels))
                })
        });
        let port_ok = rule.ports.as_ref().is_none_or(|ports| {
            ports.is_empty()
                || ports.iter().any(|p| {
                    // Protocol defaults to TCP; no port means every port.
                    let tcp = p.protocol.as_deref().is_none_or(|p| p == "TCP");
                    let ported = match (&p.port, p.end_port) {
                        (None, _) => true,
                        (Some(IntOrString::Int(first)), end) => {
                            (*first..=end.unwrap_or(*first)).contains(&port)
                        }
                        (Some(IntOrString::String(named)), _) => {
                            panic!("named port {named}: numbers only, to be checked here")
                        }
                    };
                    tcp && ported
                })
        });
        peer_ok && port_ok
    })
}

fn policy_named<'a>(policies: &'a [NetworkPolicy], name: &str) -> &'a NetworkPolicy {
    policies
        .iter()
        .find(|p| p.name_any() == name)
        .unwrap_or_else(|| panic!("no NetworkPolicy {name}"))
}

/// The pods of `fc` (api, workers, migrate, and each managed datastore's
/// StatefulSet by name), in its namespace.
fn pods_of(fc: &FeedCluster) -> std::collections::BTreeMap<String, Pod> {
    pod_templates(fc)
        .into_iter()
        .map(|(name, template)| (name, Pod::of("feeds", &template)))
        .collect()
}

fn container_port(set: Option<k8s_openapi::api::apps::v1::StatefulSet>) -> i32 {
    set.unwrap().spec.unwrap().template.spec.unwrap().containers[0]
        .ports
        .as_ref()
        .unwrap()[0]
        .container_port
}

#[test]
fn the_managed_datastores_admit_only_their_own_clusters_clients_on_their_port() {
    let fc = sample();
    let policies = network_policies(&fc, OPERATOR_NS);
    let pods = pods_of(&fc);
    let mut other = sample();
    other.metadata.name = Some("other".into());
    let others = pods_of(&other);
    let operator = Pod {
        namespace: OPERATOR_NS.into(),
        labels: [
            (
                "app.kubernetes.io/name".to_owned(),
                "fanout-operator".to_owned(),
            ),
            ("app.kubernetes.io/instance".to_owned(), "fanout".to_owned()),
        ]
        .into(),
    };
    // The operator's labels on a pod in any other namespace.
    let impostor = Pod {
        namespace: "elsewhere".into(),
        labels: operator.labels.clone(),
    };

    for (datastore, port, admitted) in [
        (
            "demo-postgres",
            container_port(postgres_statefulset(&fc)),
            &["api", "workers", "migrate"][..],
        ),
        (
            "demo-redis",
            container_port(redis_statefulset(&fc)),
            &["api", "workers"][..],
        ),
    ] {
        let policy = policy_named(&policies, datastore);
        // It fences the datastore's pods, and only them.
        for (name, pod) in &pods {
            assert_eq!(
                fences(policy, pod),
                name == datastore,
                "{datastore} over {name}"
            );
        }
        for (name, pod) in &others {
            assert!(!fences(policy, pod), "{datastore} over other's {name}");
        }
        // Exactly the clients that use it, of this FeedCluster, on its port.
        for (name, pod) in &pods {
            let expected = admitted.contains(&name.as_str());
            assert_eq!(
                admits(policy, pod, port),
                expected,
                "{datastore} from {name}"
            );
            assert!(
                !admits(policy, pod, port + 1),
                "{datastore} from {name} on another port"
            );
        }
        for (name, pod) in &others {
            assert!(
                !admits(policy, pod, port),
                "{datastore} from other's {name}"
            );
        }
        // The operator reads Redis's backlog, from its own namespace only.
        assert_eq!(
            admits(policy, &operator, port),
            datastore == "demo-redis",
            "{datastore} from the operator"
        );
        assert!(
            !admits(policy, &impostor, port),
            "{datastore} from an impostor"
        );
    }
    assert_eq!(container_port(postgres_statefulset(&fc)), POSTGRES_PORT);
    assert_eq!(container_port(redis_statefulset(&fc)), REDIS_PORT);
}

#[test]
fn the_api_admits_anyone_on_its_port_and_the_workers_only_on_their_probe_port() {
    let fc = sample();
    let policies = network_policies(&fc, OPERATOR_NS);
    let pods = pods_of(&fc);
    let mut other = sample();
    other.metadata.name = Some("other".into());
    let outsider = Pod {
        namespace: "somewhere-else".into(),
        labels: Default::default(),
    };
    let outsider_in_ns = pods_of(&other).remove("api").unwrap();

    for (name, port) in [("demo-api", API_PORT), ("demo-workers", WORKER_PORT)] {
        let policy = policy_named(&policies, name);
        let component = name.trim_start_matches("demo-");
        for (pod_name, pod) in &pods {
            assert_eq!(
                fences(policy, pod),
                pod_name == component,
                "{name} over {pod_name}"
            );
        }
        for from in [&outsider, &outsider_in_ns, &pods["api"]] {
            assert!(admits(policy, from, port), "{name} on {port}");
            assert!(!admits(policy, from, port + 1), "{name} on another port");
        }
    }
    // The ports the pods really listen on.
    for (deployment, port) in [
        (api_deployment(&fc, IMAGE), API_PORT),
        (worker_deployment(&fc, IMAGE), WORKER_PORT),
    ] {
        let pod = deployment.spec.unwrap().template.spec.unwrap();
        assert_eq!(
            pod.containers[0].ports.as_ref().unwrap()[0].container_port,
            port
        );
    }
}

#[test]
fn external_datastores_get_no_policy_and_the_switch_turns_all_off() {
    let mut fc = sample();
    let names = |fc: &FeedCluster| -> Vec<String> {
        network_policies(fc, OPERATOR_NS)
            .iter()
            .map(|p| p.name_any())
            .collect()
    };
    assert_eq!(
        names(&fc),
        ["demo-api", "demo-workers", "demo-postgres", "demo-redis"]
    );

    fc.spec.postgres.managed = None;
    fc.spec.postgres.external = Some(ExternalDatastore {
        secret_name: "prod-db".into(),
        key: "url".into(),
    });
    assert_eq!(names(&fc), ["demo-api", "demo-workers", "demo-redis"]);
    fc.spec.redis.managed = None;
    fc.spec.redis.external = Some(ExternalDatastore {
        secret_name: "prod-redis".into(),
        key: "url".into(),
    });
    assert_eq!(names(&fc), ["demo-api", "demo-workers"]);

    let mut fc = sample();
    assert!(fc.spec.network_policies, "on by default");
    fc.spec.network_policies = false;
    assert!(network_policies(&fc, OPERATOR_NS).is_empty());
}

#[test]
fn the_operator_peer_matches_the_charts_operator_pods() {
    // The chart's pod labels are `fanout.selector`; the managed Redis admits
    // the operator by one of them.
    let helpers = include_str!("../../../charts/fanout/templates/_helpers.tpl");
    let selector = helpers
        .split(r#"{{- define "fanout.selector" -}}"#)
        .nth(1)
        .and_then(|rest| rest.split("{{- end -}}").next())
        .expect("the chart defines fanout.selector");
    let (key, value) = OPERATOR_POD_LABEL;
    assert!(
        selector
            .lines()
            .any(|l| l.trim() == format!("{key}: {value}")),
        "fanout.selector lacks {key}: {value}:\n{selector}"
    );
}

#[test]
fn labels_are_the_selector_and_managed_labels_and_list_as_selectors() {
    let fc = sample();
    let name = fc.name_any();
    let all = labels(&fc, "worker");
    for (k, v) in selector(&fc, "worker").iter().chain(managed(&fc).iter()) {
        assert_eq!(all.get(k), Some(v), "{k}");
    }
    assert_eq!(all["app.kubernetes.io/name"], "fanout");
    assert_eq!(all.len(), 4);
    assert_eq!(
        label_selector(&selector(&fc, "worker")),
        format!("app.kubernetes.io/component=worker,app.kubernetes.io/instance={name}")
    );
    assert_eq!(
        label_selector(&managed(&fc)),
        format!("app.kubernetes.io/instance={name},app.kubernetes.io/managed-by=fanout-operator")
    );
}

#[test]
fn the_managed_redis_url_names_the_service_as_each_reader_reaches_it() {
    let names = Names::of(&sample());
    let redis = names.redis();
    assert_eq!(
        names.redis_url(Reach::Namespace),
        format!("redis://{redis}:{REDIS_PORT}")
    );
    assert_eq!(
        names.redis_url(Reach::Cluster),
        format!("redis://{redis}.feeds.svc:{REDIS_PORT}")
    );
}
