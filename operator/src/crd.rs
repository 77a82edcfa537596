//! The `FeedCluster` custom resource (`fanout.dev/v1alpha1`, short name
//! `fc`): what a platform engineer asks for, and what the operator reports.
//!
//! The doc comments become the CRD's descriptions (`kubectl explain
//! fc.spec.autoscaling`); defaults and CEL rules are in the schema, so the
//! API server rejects a bad FeedCluster before the operator sees it.

use feed_core::autoscale::{self, Settings};
use feed_core::runtime;
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The longest FeedCluster name. The longest name derived from it is a label
/// value (at most 63 characters): the managed PostgreSQL's
/// `controller-revision-hash`, `<name>-postgres-<hash>` with a hash of up to
/// 10 characters, which allows 43; 40 keeps a margin for a longer suffix.
pub const MAX_NAME_LEN: usize = 40;
/// FeedCluster names become Service names, which must be DNS-1035 labels.
fn name_pattern_rule() -> kube::core::Rule {
    kube::core::Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message(
        "metadata.name must start with a lowercase letter and hold only lowercase letters, \
         digits and '-', not ending in '-': it names the FeedCluster's Services",
    )
}

fn name_length_rule() -> kube::core::Rule {
    let message = format!(
        "metadata.name must be at most {MAX_NAME_LEN} characters: the FeedCluster's objects \
         carry it in names and labels with suffixes of their own, and labels allow 63"
    );
    kube::core::Rule::new(format!("size(self.metadata.name) <= {MAX_NAME_LEN}"))
        .message(message.as_str())
}

/// A Fanout deployment: the feed API, its workers (autoscaled by stream
/// backlog), and where PostgreSQL and Redis are.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "fanout.dev",
    version = "v1alpha1",
    kind = "FeedCluster",
    doc = "A Fanout deployment: the feed API, its workers autoscaled by stream backlog, PostgreSQL and Redis.",
    namespaced,
    shortname = "fc",
    status = "FeedClusterStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"API","type":"string","jsonPath":".status.api.summary"}"#,
    printcolumn = r#"{"name":"Workers","type":"string","jsonPath":".status.workers.summary"}"#,
    printcolumn = r#"{"name":"Backlog","type":"integer","jsonPath":".status.backlog"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Paused","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Paused\")].status"}"#,
    validation = name_pattern_rule(),
    validation = name_length_rule()
)]
#[serde(rename_all = "camelCase")]
pub struct FeedClusterSpec {
    /// Container image holding feed-api and feed-worker. Defaults to the
    /// operator's own image, so API, workers and operator share a version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The REST API.
    #[serde(default)]
    pub api: ApiSpec,
    /// The feed workers; their replica count belongs to the autoscaler.
    #[serde(default)]
    pub workers: WorkersSpec,
    /// How workers are scaled by the Redis Stream backlog.
    #[serde(default)]
    pub autoscaling: AutoscalingSpec,
    /// Where PostgreSQL is: an external instance, or one the operator runs.
    pub postgres: DatastoreSpec,
    /// Where Redis is: an external instance, or one the operator runs.
    pub redis: DatastoreSpec,
    /// A Redis of their own for the home feeds and cached posts
    /// (FANOUT_FEED_REDIS_URL), run elsewhere and reached with a URL kept in
    /// a Secret. Feeds are rebuilt from PostgreSQL, so it needs no
    /// persistence, and fan-out then stays out of the streams' append-only
    /// file. Unset, the feeds share `redis`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed_redis: Option<ExternalDatastore>,
    /// How home feeds are kept.
    #[serde(default)]
    pub feed: FeedSpec,
    /// Token signing.
    #[serde(default)]
    pub auth: AuthSpec,
    /// Restrict incoming traffic to this FeedCluster's pods with
    /// NetworkPolicies. The managed PostgreSQL admits only its API, workers
    /// and migration Job; the managed Redis only its API, workers and the
    /// operator (which reads the stream backlog); each on its own port. The
    /// API admits anyone on its port, the workers anyone on their probe and
    /// metrics port. Outgoing traffic is not restricted. Harmless where the
    /// network plugin does not enforce NetworkPolicies. Set false to manage
    /// policies yourself: the operator deletes the ones it made.
    #[serde(default = "yes")]
    pub network_policies: bool,
}

/// The REST API Deployment and Service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiSpec {
    /// API pods.
    #[serde(default = "default_api_replicas")]
    #[schemars(range(min = 1, max = 100))]
    pub replicas: i32,
    /// CPU and memory for each API pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// How the API is exposed.
    #[serde(default)]
    pub service: ServiceSpec,
}

fn default_api_replicas() -> i32 {
    2
}

impl Default for ApiSpec {
    fn default() -> Self {
        ApiSpec {
            replicas: default_api_replicas(),
            resources: None,
            service: ServiceSpec::default(),
        }
    }
}

/// The Service in front of the API.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!has(self.nodePort) || self.type == 'NodePort'").message("nodePort needs type NodePort"))]
pub struct ServiceSpec {
    /// `ClusterIP`, `NodePort` or `LoadBalancer`.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Port the Service listens on.
    #[serde(default = "default_service_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Node port, with type `NodePort` (30000-32767).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 30000, max = 32767))]
    pub node_port: Option<i32>,
}

fn default_service_port() -> i32 {
    80
}

impl Default for ServiceSpec {
    fn default() -> Self {
        ServiceSpec {
            type_: ServiceType::default(),
            port: default_service_port(),
            node_port: None,
        }
    }
}

/// Kubernetes Service types the API may use.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

/// The worker Deployment.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas"))]
pub struct WorkersSpec {
    /// Fewest workers while there is work (0 only with scale-to-zero).
    #[serde(default = "default_min_workers")]
    #[schemars(range(min = 0, max = 1000))]
    pub min_replicas: i32,
    /// Most workers.
    #[serde(default = "default_max_workers")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// CPU and memory for each worker pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

// Defaults are the policy's own (`autoscale::Settings::DEFAULT`) and the
// feed settings' (`feed_core::runtime`), written once there; serde and the
// schema's `default`s both read them through these functions.

fn default_min_workers() -> i32 {
    Settings::DEFAULT.min_replicas as i32
}

fn default_max_workers() -> i32 {
    Settings::DEFAULT.max_replicas as i32
}

impl Default for WorkersSpec {
    fn default() -> Self {
        WorkersSpec {
            min_replicas: default_min_workers(),
            max_replicas: default_max_workers(),
            resources: None,
        }
    }
}

/// Backlog-driven scaling of the workers. Every `pollIntervalSeconds` the
/// operator reads each stream's lag and pending entries, estimates arrival
/// and service rates, and runs the fewest workers that serve every entry
/// within `drainSeconds`, going down only with the margin
/// `targetUtilizationPercent` sets.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// Scale workers by backlog. When false the workers run at minReplicas.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `Scale` acts on decisions; `RecommendOnly` decides and reports in
    /// `.status` and Events without touching the Deployment.
    #[serde(default)]
    pub mode: AutoscalingMode,
    /// Seconds between two looks at the streams.
    #[serde(default = "default_poll")]
    #[schemars(range(min = 1, max = 3600))]
    pub poll_interval_seconds: i32,
    /// Drain any backlog within this many seconds.
    #[serde(default = "default_drain")]
    #[schemars(range(min = 1, max = 86400))]
    pub drain_seconds: i32,
    /// Margin before scaling down, in percent: fewer workers only if they
    /// would serve every entry within this share of the drain time and
    /// their capacity is at least this share of the arrivals. Hysteresis
    /// against noise.
    #[serde(default = "default_utilization")]
    #[schemars(range(min = 1, max = 100))]
    pub target_utilization_percent: i32,
    /// Events per second one worker is assumed to handle until measured.
    #[serde(default = "default_assumed_rate")]
    #[schemars(range(min = 1))]
    pub assumed_events_per_second: i32,
    /// How fast to add workers.
    #[serde(default = "ScalingRules::up")]
    pub scale_up: ScalingRules,
    /// How fast to remove workers.
    #[serde(default = "ScalingRules::down")]
    pub scale_down: ScalingRules,
    /// Run no workers while there is nothing to do.
    #[serde(default)]
    pub scale_to_zero: ScaleToZero,
}

fn yes() -> bool {
    true
}
/// Seconds between two polls by default: the one autoscaling default that
/// is the operator's own (the policy is told the time, not the pace), half
/// the default drain time so a backlog is seen before it is late.
fn default_poll() -> i32 {
    15
}
fn default_drain() -> i32 {
    Settings::DEFAULT.drain_seconds as i32
}
fn default_utilization() -> i32 {
    (Settings::DEFAULT.target_utilization * 100.0).round() as i32
}
fn default_assumed_rate() -> i32 {
    Settings::DEFAULT.assumed_rate_per_replica as i32
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        AutoscalingSpec {
            enabled: true,
            mode: AutoscalingMode::default(),
            poll_interval_seconds: default_poll(),
            drain_seconds: default_drain(),
            target_utilization_percent: default_utilization(),
            assumed_events_per_second: default_assumed_rate(),
            scale_up: ScalingRules::up(),
            scale_down: ScalingRules::down(),
            scale_to_zero: ScaleToZero::default(),
        }
    }
}

/// Whether decisions are acted on.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AutoscalingMode {
    #[default]
    Scale,
    RecommendOnly,
}

/// Pace of scaling in one direction.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScalingRules {
    /// Act on the most conservative recommendation of this many seconds:
    /// the lowest when scaling up, the highest when scaling down.
    #[schemars(range(min = 0, max = 3600))]
    pub stabilization_window_seconds: i32,
    /// Most workers added or removed by one decision.
    #[schemars(range(min = 1, max = 1000))]
    pub max_step: i32,
}

impl ScalingRules {
    /// Scale up at once, four workers at a time.
    pub fn up() -> Self {
        ScalingRules {
            stabilization_window_seconds: Settings::DEFAULT.scale_up_window_secs as i32,
            max_step: Settings::DEFAULT.max_scale_up_step as i32,
        }
    }

    /// Scale down after five minutes of lower recommendations, two at a time.
    pub fn down() -> Self {
        ScalingRules {
            stabilization_window_seconds: Settings::DEFAULT.scale_down_window_secs as i32,
            max_step: Settings::DEFAULT.max_scale_down_step as i32,
        }
    }
}

/// Scale-to-zero.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScaleToZero {
    /// Allow zero workers when idle (needs workers.minReplicas 0 or 1).
    #[serde(default)]
    pub enabled: bool,
    /// Seconds without backlog or arrivals before going to zero.
    #[serde(default = "default_idle")]
    #[schemars(range(min = 0, max = 86400))]
    pub idle_seconds: i32,
    /// Wake when the backlog exceeds this many entries; 0 wakes on the first.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub activation_backlog: i64,
}

fn default_idle() -> i32 {
    Settings::DEFAULT.idle_seconds as i32
}

impl Default for ScaleToZero {
    fn default() -> Self {
        ScaleToZero {
            enabled: Settings::DEFAULT.scale_to_zero,
            idle_seconds: default_idle(),
            activation_backlog: Settings::DEFAULT.activation_backlog as i64,
        }
    }
}

/// A datastore: exactly one of `external` or `managed`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.external) != has(self.managed)").message("set exactly one of external or managed"))]
pub struct DatastoreSpec {
    /// An instance run elsewhere, reached with a URL kept in a Secret
    /// (`postgres://…?sslmode=require`, `rediss://…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalDatastore>,
    /// A single-instance server the operator runs in the namespace, for
    /// development and trials (no replication, no backups). Switching to
    /// `external` deletes it, its volume and (for PostgreSQL) its generated
    /// Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedDatastore>,
}

/// The Secret key holding a datastore's URL.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalDatastore {
    /// Secret in the FeedCluster's namespace.
    pub secret_name: String,
    /// Key of the URL in that Secret.
    #[serde(default = "default_url_key")]
    pub key: String,
}

fn default_url_key() -> String {
    "url".into()
}

/// A datastore the operator runs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedDatastore {
    /// Size of its persistent volume, a Kubernetes quantity such as `1Gi`;
    /// fixed once created (resize the PersistentVolumeClaim itself), though
    /// a value that was never a valid quantity may be corrected.
    #[serde(default = "default_storage")]
    #[x_kube(
        validation = kube::core::Rule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))").message("storage must be a positive Kubernetes quantity such as 1Gi or 500Mi (not 1GB)"),
        validation = kube::core::Rule::new("self == oldSelf || !isQuantity(oldSelf)").message("storage cannot change once created; resize the PersistentVolumeClaim instead")
    )]
    pub storage: String,
    /// Image to run instead of the default (postgres:15-alpine,
    /// redis:7-alpine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

fn default_storage() -> String {
    "1Gi".into()
}

/// How home feeds are kept.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FeedSpec {
    /// Most posts kept per home feed in Redis.
    #[serde(default = "default_max_length")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_length: i32,
    /// Authors with this many followers are merged into feeds at read time
    /// instead of being fanned out.
    #[serde(default = "default_celebrity")]
    #[schemars(range(min = 1))]
    pub celebrity_threshold: i64,
}

fn default_max_length() -> i32 {
    runtime::DEFAULT_FEED_MAX_LEN as i32
}
fn default_celebrity() -> i64 {
    runtime::DEFAULT_CELEBRITY_THRESHOLD
}

impl Default for FeedSpec {
    fn default() -> Self {
        FeedSpec {
            max_length: default_max_length(),
            celebrity_threshold: default_celebrity(),
        }
    }
}

/// Token signing.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Secret holding the JWT signing key under `jwt-secret`; the operator
    /// generates one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_secret_name: Option<String>,
}

/// What the operator observed and did.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FeedClusterStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing`, `Degraded` and `Paused` (the annotation
    /// `fanout.dev/paused: "true"` stops reconciling and autoscaling), with
    /// reasons.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// API pods.
    #[serde(default)]
    pub api: ReplicaStatus,
    /// Worker pods.
    #[serde(default)]
    pub workers: ReplicaStatus,
    /// Lag plus pending entries over all streams; absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<i64>,
    /// Per-stream lag and pending entries.
    #[serde(default)]
    pub streams: Vec<StreamStatus>,
    /// The autoscaler's latest decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale: Option<ScaleDecision>,
    /// The image whose migrations have been applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrated_image: Option<String>,
}

/// Desired and ready pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    pub desired: i32,
    pub ready: i32,
    /// `ready/desired`, for `kubectl get`.
    #[serde(default)]
    pub summary: String,
}

/// One stream's backlog.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StreamStatus {
    pub name: String,
    /// Undelivered entries; absent when Redis cannot tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
    /// Delivered, unacknowledged entries.
    pub pending: i64,
}

/// An autoscaler decision, explained.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScaleDecision {
    pub time: Time,
    /// `Up`, `Down` or `None`.
    pub direction: String,
    pub from: i32,
    pub to: i32,
    /// Inputs, what the load asked for, and the rule that settled it.
    pub reason: String,
    /// Whether the Deployment was scaled (false in RecommendOnly mode).
    pub applied: bool,
}

impl FeedClusterSpec {
    /// The autoscaling policy's settings for this spec.
    pub fn policy(&self) -> autoscale::Settings {
        policy(&self.workers, &self.autoscaling)
    }
}

/// The autoscaling policy's settings for a workers and an autoscaling spec
/// (the operator's, and the simulator's from a YAML block).
pub fn policy(w: &WorkersSpec, a: &AutoscalingSpec) -> autoscale::Settings {
    autoscale::Settings {
        min_replicas: w.min_replicas.max(0) as u32,
        max_replicas: w.max_replicas.max(1) as u32,
        drain_seconds: f64::from(a.drain_seconds),
        target_utilization: f64::from(a.target_utilization_percent) / 100.0,
        assumed_rate_per_replica: f64::from(a.assumed_events_per_second),
        scale_up_window_secs: f64::from(a.scale_up.stabilization_window_seconds),
        scale_down_window_secs: f64::from(a.scale_down.stabilization_window_seconds),
        max_scale_up_step: a.scale_up.max_step.max(1) as u32,
        max_scale_down_step: a.scale_down.max_step.max(1) as u32,
        scale_to_zero: a.scale_to_zero.enabled,
        idle_seconds: f64::from(a.scale_to_zero.idle_seconds),
        activation_backlog: a.scale_to_zero.activation_backlog.max(0) as u64,
    }
}

/// The CRD as YAML, for `kubectl apply -f crds/feedcluster.yaml`.
pub fn manifest() -> String {
    use kube::CustomResourceExt;
    serde_saphyr::to_string(&FeedCluster::crd()).expect("the CRD serializes to YAML")
}

/// The CRD as the Helm chart's template: installed behind `crds.install`,
/// and kept when the release is uninstalled (deleting a CRD deletes every
/// FeedCluster).
pub fn helm_template() -> String {
    use kube::CustomResourceExt;
    let mut crd = FeedCluster::crd();
    crd.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert("helm.sh/resource-policy".into(), "keep".into());
    let yaml = serde_saphyr::to_string(&crd).expect("the CRD serializes to YAML");
    format!(
        "{{{{- if .Values.crds.install }}}}\n# Generated from the FeedCluster types by `make generate`; do not edit.\n{yaml}{{{{- end }}}}\n"
    )
}
