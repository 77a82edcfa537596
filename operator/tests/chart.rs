//! The Helm chart, rendered by the real `helm` (`make deps` puts one in
//! `.tools/bin`): it lints clean, every combination of values users are
//! offered renders objects Kubernetes' schemas accept, the values schema
//! turns bad values away by name, and the operator runs as the `restricted`
//! Pod Security Standard asks.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// `helm` from PATH, else the one `make deps` installs.
fn helm() -> Command {
    let local = repo(".tools/bin/helm");
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("helm").is_file()));
    if found {
        Command::new("helm")
    } else if local.is_file() {
        Command::new(local)
    } else {
        panic!("helm is needed to test the chart: run `make deps` (it installs one in .tools/bin)")
    }
}

fn run(command: &mut Command) -> (Output, String) {
    let output = command.output().expect("running helm");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output, text)
}

/// Renders the chart with `sets` (`key=value`), failing the test on error.
fn template(sets: &[&str]) -> String {
    let mut command = helm();
    command
        .args(["template", "fanout"])
        .arg(repo("charts/fanout"))
        .args(["--namespace", "fanout-system"]);
    for set in sets {
        command.args(["--set", set]);
    }
    let (output, text) = run(&mut command);
    assert!(output.status.success(), "helm template {sets:?}: {text}");
    String::from_utf8(output.stdout).unwrap()
}

fn objects(rendered: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(rendered)
        .unwrap()
        .into_iter()
        .filter(|o| !o.is_null())
        .collect()
}

fn kinds(objects: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap().to_owned())
        .collect();
    kinds.sort();
    kinds
}

fn find<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

fn validate(rendered: &str, dir: &Path, name: &str) {
    let file = dir.join(name);
    std::fs::write(&file, rendered).unwrap();
    let output = Command::new("python3")
        .arg(repo("scripts/validate-manifests.py"))
        .arg(&file)
        .arg(repo("crds/feedcluster.yaml"))
        .output()
        .expect("python3 is needed to validate manifests");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        !text.contains("ModuleNotFoundError"),
        "install the validators first (make deps does): {text}"
    );
    assert!(
        output.status.success() && text.contains("0 failure(s)"),
        "{name}: {text}"
    );
}

#[test]
fn the_chart_lints_clean() {
    let (output, text) = run(helm().args(["lint", "--strict"]).arg(repo("charts/fanout")));
    assert!(output.status.success(), "{text}");
    assert!(text.contains("0 chart(s) failed"), "{text}");
}

#[test]
fn every_values_combination_renders_valid_objects() {
    let dir = tempfile::tempdir().unwrap();

    let defaults = template(&[]);
    validate(&defaults, dir.path(), "defaults.yaml");
    let all = objects(&defaults);
    assert_eq!(
        kinds(&all),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    // Upgrades update the CRD; uninstalling keeps it (and the FeedClusters).
    let crd = find(&all, "CustomResourceDefinition");
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    // Never `latest`: kind would pull a loaded `:latest` image.
    let operator = &find(&all, "Deployment")["spec"]["template"]["spec"];
    let image = operator["containers"][0]["image"].as_str().unwrap();
    assert_eq!(image, "ghcr.io/fanout-dev/fanout:0.1.0");

    let bare = template(&[
        "crds.install=false",
        "serviceAccount.create=false",
        "serviceAccount.name=preexisting",
        "metrics.service=false",
        "leaderElection=false",
        "replicaCount=1",
    ]);
    validate(&bare, dir.path(), "bare.yaml");
    let all = objects(&bare);
    assert_eq!(
        kinds(&all),
        ["ClusterRole", "ClusterRoleBinding", "Deployment"]
    );
    let operator = &find(&all, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(operator["serviceAccountName"], "preexisting");
    assert_eq!(
        find(&all, "ClusterRoleBinding")["subjects"][0]["name"],
        "preexisting"
    );

    let tuned = template(&[
        "replicaCount=2",
        "image.repository=registry.example/fanout",
        "image.tag=1.2.3",
        "metrics.port=9000",
        "nodeSelector.disktype=ssd",
        "tolerations[0].key=dedicated",
        "tolerations[0].operator=Exists",
        "logFormat=pretty",
    ]);
    validate(&tuned, dir.path(), "tuned.yaml");
    let all = objects(&tuned);
    let deployment = find(&all, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(
        pod["containers"][0]["image"],
        "registry.example/fanout:1.2.3"
    );
    assert_eq!(pod["containers"][0]["ports"][0]["containerPort"], 9000);
    assert_eq!(pod["nodeSelector"]["disktype"], "ssd");
    assert_eq!(find(&all, "Service")["spec"]["ports"][0]["port"], 9000);
}

#[test]
fn the_values_schema_names_what_is_wrong() {
    for (set, named) in [
        ("replicaCount=0", "/replicaCount"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("logFormat=xml", "/logFormat"),
        ("metrics.port=70000", "/metrics/port"),
        ("monitoring.interval=often", "/monitoring/interval"),
        (
            "monitoring.dashboards.enable=true",
            "/monitoring/dashboards",
        ),
    ] {
        let (output, text) = run(helm()
            .args(["template", "fanout"])
            .arg(repo("charts/fanout"))
            .args(["--set", set]));
        assert!(!output.status.success(), "{set} was accepted");
        assert!(text.contains(named), "{set}: {text}");
    }
}

#[test]
fn the_operator_pod_meets_the_restricted_pod_security_standard() {
    let all = objects(&template(&[]));
    let pod = &find(&all, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    for container in pod["containers"].as_array().unwrap() {
        let security = &container["securityContext"];
        assert_eq!(security["allowPrivilegeEscalation"], false, "{container}");
        assert_eq!(security["readOnlyRootFilesystem"], true, "{container}");
        assert_eq!(security["capabilities"]["drop"][0], "ALL", "{container}");
        assert!(security["capabilities"]["add"].is_null(), "{container}");
        assert!(
            container["resources"]["requests"].is_object(),
            "{container}"
        );
        assert!(container["livenessProbe"].is_object(), "{container}");
        assert!(container["readinessProbe"].is_object(), "{container}");
    }
    assert!(pod["hostNetwork"].is_null() && pod["hostPID"].is_null());
}

/// Every monitoring object, with labels for a Prometheus that selects by
/// `release`.
const ALL_MONITORING: [&str; 5] = [
    "monitoring.serviceMonitor.enabled=true",
    "monitoring.podMonitors.enabled=true",
    "monitoring.prometheusRule.enabled=true",
    "monitoring.dashboards.enabled=true",
    "monitoring.labels.release=kube-prometheus-stack",
];

fn contains(outer: &Value, inner: &Value) -> bool {
    inner
        .as_object()
        .unwrap()
        .iter()
        .all(|(k, v)| outer.get(k) == Some(v))
}

#[test]
fn monitoring_is_opt_in_and_selects_what_the_operator_labels() {
    // Off by default: the defaults render none of it (the kinds are
    // checked in every_values_combination_renders_valid_objects).
    let defaults = objects(&template(&[]));
    assert!(defaults.iter().all(
        |o| !o["apiVersion"].as_str().unwrap().starts_with("monitoring.")
            && o["kind"] != "ConfigMap"
    ));

    let rendered = template(&ALL_MONITORING);
    let all = objects(&rendered);
    let of = |kind: &str| -> Vec<&Value> { all.iter().filter(|o| o["kind"] == kind).collect() };
    for kind in [
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
        "ConfigMap",
    ] {
        for object in of(kind) {
            assert_eq!(
                object["metadata"]["labels"]["release"], "kube-prometheus-stack",
                "{kind} {}",
                object["metadata"]["name"]
            );
        }
    }
    // The core objects (dashboards' ConfigMaps included) still validate.
    let dir = tempfile::tempdir().unwrap();
    let core: Vec<&Value> = all
        .iter()
        .filter(|o| o["apiVersion"] != "monitoring.coreos.com/v1")
        .collect();
    let core_yaml: String = core
        .iter()
        .map(|o| format!("---\n{}\n", serde_json::to_string(o).unwrap()))
        .collect();
    validate(&core_yaml, dir.path(), "monitoring.yaml");

    // The operator: the ServiceMonitor selects the chart's metrics Service
    // by its labels, on its `http` port.
    let monitor = of("ServiceMonitor")[0];
    let service = find(&all, "Service");
    assert!(contains(
        &service["metadata"]["labels"],
        &monitor["spec"]["selector"]["matchLabels"]
    ));
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(service["spec"]["ports"][0]["name"], "http");

    // The API and the workers: each PodMonitor selects the pods the operator
    // makes for every FeedCluster, by the labels it puts on them, and
    // scrapes their `http` port.
    let mut fc: operator::crd::FeedCluster = serde_saphyr::from_str(
        &std::fs::read_to_string(repo("crds/samples/feedcluster.yaml")).unwrap(),
    )
    .unwrap();
    fc.metadata.namespace = Some("feeds".into());
    let api = serde_json::to_value(operator::resources::api_deployment(&fc, "fanout:1")).unwrap();
    let workers =
        serde_json::to_value(operator::resources::worker_deployment(&fc, "fanout:1")).unwrap();
    let monitors = of("PodMonitor");
    assert_eq!(monitors.len(), 2);
    for (component, deployment) in [("api", &api), ("worker", &workers)] {
        let monitor = monitors
            .iter()
            .find(|m| m["metadata"]["name"] == format!("fanout-{component}"))
            .unwrap();
        let pod = &deployment["spec"]["template"];
        assert!(
            contains(
                &pod["metadata"]["labels"],
                &monitor["spec"]["selector"]["matchLabels"]
            ),
            "{component}: {} does not select {}",
            monitor["spec"]["selector"],
            pod["metadata"]["labels"]
        );
        // And not the other component's pods.
        let other = if component == "api" { &workers } else { &api };
        assert!(!contains(
            &other["spec"]["template"]["metadata"]["labels"],
            &monitor["spec"]["selector"]["matchLabels"]
        ));
        let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
        assert_eq!(endpoint["port"], "http");
        assert_eq!(pod["spec"]["containers"][0]["ports"][0]["name"], "http");
        assert_eq!(endpoint["relabelings"][0]["targetLabel"], "feedcluster");
        assert_eq!(monitor["spec"]["namespaceSelector"]["any"], true);
    }
    // Watching one namespace, the PodMonitors look only there.
    let narrowed = objects(&template(&[
        "monitoring.podMonitors.enabled=true",
        "watchNamespace=feeds",
    ]));
    let monitor = narrowed.iter().find(|o| o["kind"] == "PodMonitor").unwrap();
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"][0],
        "feeds"
    );

    // The rules are alerts.yaml as promtool checks it, byte for byte in
    // meaning.
    let rules: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo("charts/fanout/monitoring/alerts.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(of("PrometheusRule")[0]["spec"], rules);

    // One ConfigMap per dashboard, for Grafana's sidecar, holding the file.
    let dashboards = of("ConfigMap");
    assert_eq!(dashboards.len(), 3);
    for name in ["feed", "workers", "operator"] {
        let map = dashboards
            .iter()
            .find(|m| m["metadata"]["name"] == format!("fanout-dashboard-{name}"))
            .unwrap_or_else(|| panic!("no dashboard {name}"));
        assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
        let file = repo(&format!("charts/fanout/monitoring/dashboards/{name}.json"));
        let shipped: Value =
            serde_json::from_str(map["data"][format!("fanout-{name}.json")].as_str().unwrap())
                .unwrap();
        let source: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        assert_eq!(shipped, source);
    }
}

#[test]
fn a_service_monitor_without_the_metrics_service_is_refused_with_the_fix() {
    let (output, text) = run(helm()
        .args(["template", "fanout"])
        .arg(repo("charts/fanout"))
        .args(["--set", "monitoring.serviceMonitor.enabled=true"])
        .args(["--set", "metrics.service=false"]));
    assert!(!output.status.success());
    assert!(text.contains("set metrics.service=true"), "{text}");
}

#[test]
fn every_dashboard_query_is_valid_promql() {
    // promtool parses each query as a recording rule's expression: a typo
    // in a panel fails here, not in front of someone on call.
    let queries = fanout_testkit::monitoring::dashboard_queries();
    let rules: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| serde_json::json!({"record": format!("dashboard:query_{i}"), "expr": expr}))
        .collect();
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    let doc = serde_json::json!({"groups": [{"name": "dashboards", "rules": rules}]});
    std::fs::write(file.path(), doc.to_string()).unwrap();
    let output = Command::new("promtool")
        .args(["check", "rules"])
        .arg(file.path())
        .output()
        .expect("promtool is needed to check the dashboards: run `make deps`");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}\n{queries:#?}");
    assert!(
        text.contains(&format!("SUCCESS: {} rules found", queries.len())),
        "{text}"
    );
}
