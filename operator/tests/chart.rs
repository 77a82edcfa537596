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
