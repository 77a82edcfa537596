//! The lane's harness: the control plane `scripts/control-plane.sh up`
//! started (`FANOUT_TEST_KUBECONFIG` names its admin kubeconfig), the Helm
//! chart installed once into `fanout-system`, and per test a namespace, a
//! Redis of its own, external datastore Secrets pointing at loopback, and
//! operator processes running with a token of the chart's ServiceAccount,
//! so they have exactly the chart's permissions.
//!
//! Without `FANOUT_TEST_KUBECONFIG` each test says SKIPPED and passes,
//! unless `FANOUT_REQUIRE_CONTROL_PLANE=1` (CI) makes that a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use fanout_testkit::RedisServer;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, Resource, ResourceExt};
use operator::crd::FeedCluster;

use crate::process::Operator;
use serde_json::Value;

/// Where the chart is installed, as users are told to.
pub const RELEASE_NAMESPACE: &str = "fanout-system";
/// The chart's ServiceAccount (`fanout.serviceAccount`).
const SERVICE_ACCOUNT: &str = "fanout-operator";

pub fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// What every test shares: made once per test binary.
pub struct Shared {
    pub admin_kubeconfig: PathBuf,
    /// The kubeconfig of the chart's ServiceAccount.
    pub operator_kubeconfig: PathBuf,
    /// The API server's audit log (requests made with ServiceAccount tokens).
    pub audit_log: PathBuf,
    _dir: tempfile::TempDir,
}

static SHARED: OnceLock<Option<Shared>> = OnceLock::new();
static KUBECTL_CACHE: OnceLock<PathBuf> = OnceLock::new();

/// The control plane, or `None` (after saying SKIPPED) when there is none.
pub fn shared() -> Option<&'static Shared> {
    SHARED.get_or_init(setup).as_ref()
}

fn setup() -> Option<Shared> {
    let Some(kubeconfig) = std::env::var_os("FANOUT_TEST_KUBECONFIG").map(PathBuf::from) else {
        let why = "FANOUT_TEST_KUBECONFIG is not set (`make test` starts a control plane \
                   with scripts/control-plane.sh and sets it)";
        assert!(
            std::env::var("FANOUT_REQUIRE_CONTROL_PLANE").as_deref() != Ok("1"),
            "the control plane lane must run here (FANOUT_REQUIRE_CONTROL_PLANE=1), but {why}"
        );
        eprintln!("SKIPPED: the control plane lane: {why}");
        return None;
    };
    let audit_log = kubeconfig.with_file_name("audit.log");
    let admin = kubeconfig.to_str().expect("a UTF-8 path").to_owned();
    let dir = tempfile::tempdir().expect("a temporary folder");
    // kubectl's discovery cache of its own: one kept in ~/.kube from an
    // earlier control plane on the same address would not know the CRD.
    KUBECTL_CACHE
        .set(dir.path().join("kubectl-cache"))
        .expect("set once");

    // 2. The real Helm installs the chart, CRD included.
    run(Command::new(helm())
        .args(["upgrade", "--install", "fanout"])
        .arg(repo("charts/fanout"))
        .args(["--namespace", RELEASE_NAMESPACE, "--create-namespace"])
        .args([
            "--set",
            "image.repository=fanout",
            "--set",
            "image.tag=test",
        ])
        .args(["--kubeconfig", &admin]));
    run(kubectl(&admin).args([
        "wait",
        "crd/feedclusters.fanout.dev",
        "--for=condition=Established",
        "--timeout=60s",
    ]));
    // The API server publishes a new CRD's OpenAPI schema (which `kubectl
    // explain` reads) a few seconds after it is Established.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !kubectl(&admin)
        .args(["explain", "fc"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the FeedCluster schema never reached the API server's OpenAPI document"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // The operator runs as the chart's ServiceAccount, with a token for it.
    let token = run(kubectl(&admin).args([
        "create",
        "token",
        SERVICE_ACCOUNT,
        "-n",
        RELEASE_NAMESPACE,
        "--duration=24h",
    ]));
    let operator_kubeconfig = dir.path().join("operator.kubeconfig");
    let admin_config: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&kubeconfig).expect("the kubeconfig"))
            .expect("a kubeconfig");
    let cluster = &admin_config["clusters"][0]["cluster"];
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": cluster}],
        "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token.trim()}}],
        "contexts": [{"name": "operator", "context": {"cluster": "test", "user": SERVICE_ACCOUNT}}],
        "current-context": "operator",
    });
    std::fs::write(&operator_kubeconfig, config.to_string()).expect("writing a kubeconfig");
    Some(Shared {
        admin_kubeconfig: kubeconfig,
        operator_kubeconfig,
        audit_log,
        _dir: dir,
    })
}

/// `helm` from PATH, else the one `make deps` installs.
fn helm() -> PathBuf {
    let local = repo(".tools/bin/helm");
    if local.is_file() {
        local
    } else {
        PathBuf::from("helm")
    }
}

/// The kubectl built with the control plane (same version), else PATH's.
pub fn kubectl(kubeconfig: &str) -> Command {
    let cache = KUBECTL_CACHE.get().expect("the harness set up first");
    let local = repo(".tools/bin/kubectl");
    let mut command = Command::new(if local.is_file() {
        local
    } else {
        PathBuf::from("kubectl")
    });
    command
        .args(["--kubeconfig", kubeconfig, "--cache-dir"])
        .arg(cache);
    command
}

/// Runs a command that must succeed; its standard output.
pub fn run(command: &mut Command) -> String {
    let output = command.output().expect("running a command");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Polls `check` every 250 ms until it returns `Some`, or fails naming
/// `what` after `limit`.
pub async fn until<T, F, Fut>(what: &str, limit: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    fanout_testkit::eventually_every(limit, Duration::from_millis(250), what, check)
        .await
        .0
}

/// One test's world: its namespace (named after the test), a Redis, the
/// Secrets of an external PostgreSQL and Redis, and an admin client.
pub struct Scenario {
    pub shared: &'static Shared,
    pub namespace: String,
    pub client: Client,
    pub redis: RedisServer,
    operators: Vec<Operator>,
    /// Where the audit log ended when the test began: earlier runs' records
    /// are not this test's.
    audit_from: usize,
}

impl Scenario {
    /// A fresh namespace `name` (emptied first if an earlier run left it).
    pub async fn new(name: &str) -> Option<Scenario> {
        let shared = shared()?;
        let client = client(&shared.admin_kubeconfig).await;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        if namespaces.get_opt(name).await.unwrap().is_some() {
            let _ = namespaces.delete(name, &DeleteParams::default()).await;
            until("the old namespace to go", Duration::from_secs(120), || {
                let namespaces = namespaces.clone();
                async move {
                    namespaces
                        .get_opt(name)
                        .await
                        .unwrap()
                        .is_none()
                        .then_some(())
                }
            })
            .await;
        }
        // An earlier run's Lease (it lives in the release namespace).
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(client.clone(), RELEASE_NAMESPACE);
        let _ = leases
            .delete(&format!("fanout-operator-{name}"), &DeleteParams::default())
            .await;
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
        let redis = RedisServer::start();
        let audit_from = std::fs::metadata(&shared.audit_log).map_or(0, |m| m.len() as usize);
        let scenario = Scenario {
            shared,
            namespace: name.to_owned(),
            client,
            redis,
            operators: Vec::new(),
            audit_from,
        };
        let database = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://fanout@127.0.0.1:25433/fanout".into());
        scenario.secret("postgres", &database).await;
        scenario.secret("redis", &scenario.redis.url()).await;
        // The pods' default ServiceAccount, made by the controller-manager.
        let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(scenario.client.clone(), name);
        until(
            "the default ServiceAccount",
            Duration::from_secs(60),
            || {
                let accounts = accounts.clone();
                async move { accounts.get_opt("default").await.unwrap().map(|_| ()) }
            },
        )
        .await;
        Some(scenario)
    }

    /// A fresh scenario with one operator, `operator-a`, running.
    pub async fn with_operator(name: &str) -> Option<Scenario> {
        let mut scenario = Scenario::new(name).await?;
        scenario.start_operator("operator-a");
        Some(scenario)
    }

    /// A connection to the test's Redis, its streams' consumer group made
    /// as the workers would.
    pub async fn streams(&self) -> redis::aio::MultiplexedConnection {
        let mut redis = redis::Client::open(self.redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        feed_core::bus::ensure_groups(&mut redis).await.unwrap();
        redis
    }

    /// Whether an Event with `reason` about `regarding` was recorded.
    pub async fn has_event(&self, reason: &str, regarding: &str) -> bool {
        let events = self
            .api::<k8s_openapi::api::events::v1::Event>()
            .list(&ListParams::default())
            .await
            .unwrap();
        events.iter().any(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(regarding)
        })
    }

    /// A Secret holding a datastore URL under `url`.
    pub async fn secret(&self, name: &str, url: &str) {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            string_data: Some([("url".to_owned(), url.to_owned())].into()),
            ..Secret::default()
        };
        self.api::<Secret>()
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn admin(&self) -> &str {
        self.shared.admin_kubeconfig.to_str().expect("UTF-8 path")
    }

    /// A FeedCluster from YAML, its datastores the external Secrets.
    pub fn feed_cluster(&self, name: &str, spec: &str) -> FeedCluster {
        let yaml = format!(
            "apiVersion: fanout.dev/v1alpha1\nkind: FeedCluster\nmetadata:\n  name: {name}\nspec:\n{spec}"
        );
        serde_saphyr::from_str(&yaml).expect("a FeedCluster")
    }

    /// Starts an operator process watching this namespace, as `identity`.
    pub fn start_operator(&mut self, identity: &str) -> usize {
        let operator = Operator::start(self, identity);
        self.operators.push(operator);
        self.operators.len() - 1
    }

    pub fn operator(&self, index: usize) -> &Operator {
        &self.operators[index]
    }

    pub fn operator_mut(&mut self, index: usize) -> &mut Operator {
        &mut self.operators[index]
    }

    /// The audit records of requests the operators made about this
    /// namespace (its objects, and its Lease in the release namespace).
    pub fn audit(&self) -> Vec<Value> {
        let text = std::fs::read(&self.shared.audit_log).unwrap_or_default();
        let text = String::from_utf8_lossy(text.get(self.audit_from..).unwrap_or_default());
        let lease = format!("fanout-operator-{}", self.namespace);
        text.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|record| {
                let user = record["user"]["username"].as_str().unwrap_or_default();
                let object = &record["objectRef"];
                user == format!("system:serviceaccount:{RELEASE_NAMESPACE}:{SERVICE_ACCOUNT}")
                    && (object["namespace"] == self.namespace.as_str()
                        || object["name"] == lease.as_str())
            })
            .collect()
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        // Any request the chart's RBAC refused fails the test.
        let refused: Vec<String> = self
            .audit()
            .iter()
            .filter(|r| r["responseStatus"]["code"] == 403)
            .map(|r| format!("{} {}", r["verb"], r["requestURI"]))
            .collect();
        for operator in &mut self.operators {
            operator.stop();
        }
        if std::thread::panicking() {
            for operator in &self.operators {
                eprintln!(
                    "--- the end of operator {}'s log:\n{}",
                    operator.identity,
                    operator.log_tail(60)
                );
            }
        } else {
            assert!(
                refused.is_empty(),
                "the chart's RBAC refused the operator: {refused:#?}"
            );
        }
        // Leave nothing behind; do not wait for it.
        let _ = kubectl(self.admin())
            .args(["delete", "namespace", &self.namespace, "--wait=false"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

pub async fn client(kubeconfig: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("a kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a client configuration");
    Client::try_from(config).expect("a client")
}

/// Server-side applies a FeedCluster as its user would.
pub async fn apply(scenario: &Scenario, fc: &FeedCluster) -> FeedCluster {
    let name = fc.metadata.name.clone().expect("a name");
    scenario
        .api::<FeedCluster>()
        .patch(
            &name,
            &kube::api::PatchParams::apply("fanout-test").force(),
            &kube::api::Patch::Apply(fc),
        )
        .await
        .unwrap()
}

/// The status of condition `kind`, with its reason.
pub fn condition(fc: &FeedCluster, kind: &str) -> Option<(String, String)> {
    fc.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// Waits until `name` is Ready for its current generation.
pub async fn wait_ready(scenario: &Scenario, name: &str, limit: Duration) -> FeedCluster {
    let api = scenario.api::<FeedCluster>();
    until(&format!("FeedCluster {name} to be Ready"), limit, || {
        let api = api.clone();
        async move {
            let fc = api.get(name).await.ok()?;
            let current = fc.status.as_ref()?.observed_generation == fc.metadata.generation;
            let ready = condition(&fc, "Ready").is_some_and(|(status, _)| status == "True");
            (current && ready).then_some(fc)
        }
    })
    .await
}

/// Waits until the reconciler has seen `fc`'s generation.
pub async fn wait_observed(scenario: &Scenario, fc: &FeedCluster) {
    let name = fc.metadata.name.as_deref().expect("a name");
    let generation = fc.metadata.generation;
    until(
        "the reconciler to see the change",
        Duration::from_secs(90),
        || {
            let api = scenario.api::<FeedCluster>();
            async move {
                let fc = api.get(name).await.ok()?;
                (fc.status?.observed_generation >= generation).then_some(())
            }
        },
    )
    .await;
}

/// An object of one of the kinds a FeedCluster makes, as listed.
pub struct Listed {
    /// `Kind/name`.
    pub key: String,
    pub resource_version: String,
    /// The UID of its controller owner, if any.
    pub controller: Option<String>,
}

/// The objects of every kind a FeedCluster makes (volume claims included)
/// in the scenario's namespace that `params` select.
pub async fn listed(scenario: &Scenario, params: &ListParams) -> Vec<Listed> {
    let mut found = Vec::new();
    macro_rules! collect {
        ($($kind:ty),*) => {$(
            for object in scenario.api::<$kind>().list(params).await.unwrap() {
                found.push(Listed {
                    key: format!("{}/{}", <$kind>::kind(&()), object.name_any()),
                    resource_version: object.resource_version().unwrap_or_default(),
                    controller: object
                        .owner_references()
                        .iter()
                        .find(|o| o.controller == Some(true))
                        .map(|o| o.uid.clone()),
                });
            }
        )*};
    }
    collect!(
        Deployment,
        StatefulSet,
        Service,
        ConfigMap,
        Secret,
        Job,
        PodDisruptionBudget,
        NetworkPolicy,
        PersistentVolumeClaim
    );
    found
}
