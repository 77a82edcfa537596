//! What the reconciler and the autoscaler share: the [`Context`] they run
//! in, the field managers they write with, the [`Error`] they fail with,
//! and how they report (status patches and Events).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::warn;

use crate::crd::FeedCluster;
use crate::metrics::Metrics;

/// The field manager of everything the reconciler applies.
pub const RECONCILER_FIELD_MANAGER: &str = "fanout-operator";
/// The field manager of the workers' replica count (and the pods'
/// deletion costs): the autoscaler's own, so neither it nor the reconciler
/// overwrites the other's fields.
pub const AUTOSCALER_FIELD_MANAGER: &str = "fanout-autoscaler";

/// The longest Event note the API server accepts (events.k8s.io/v1 refuses
/// notes over 1 kB).
const MAX_NOTE_BYTES: usize = 1024;

/// Why a reconciliation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request about one object failed.
    #[error("{action} {kind} {name}: {}", summary(.source))]
    Object {
        action: &'static str,
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("Kubernetes API: {}", summary(.0))]
    Kube(#[from] kube::Error),
    #[error("invalid FeedCluster: {0}")]
    InvalidSpec(String),
    /// The Redis URL the FeedCluster leads to (its external Secret's) is
    /// not one a client can be made for. The URL itself is not shown: it
    /// may hold a password.
    #[error("unusable Redis URL: {0}")]
    RedisUrl(#[source] redis::RedisError),
    /// A generated credential is gone while the data it protects remains.
    #[error("{0}")]
    CredentialLost(String),
}

/// What the API server said, without the client's debug dump: the code,
/// the reason and the message, which name the field at fault.
fn summary(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => {
            format!("{} {}: {}", status.code, status.reason, status.message)
        }
        other => other.to_string(),
    }
}

impl Error {
    /// Every value [`Error::label`] gives, for the metrics to start at zero.
    pub const LABELS: [&'static str; 4] = ["kube", "invalid_spec", "redis_url", "credential_lost"];

    /// The error's kind, as the `error` label of the errors metric.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Error::Object { .. } | Error::Kube(_) => "kube",
            Error::InvalidSpec(_) => "invalid_spec",
            Error::RedisUrl(_) => "redis_url",
            Error::CredentialLost(_) => "credential_lost",
        }
    }
}

/// What every reconciliation shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// The operator's own image: what FeedClusters run unless they name one.
    pub default_image: String,
    /// The namespace the operator runs in: a managed Redis admits the
    /// operator's pods from there, for the autoscaler.
    pub operator_namespace: String,
    /// Consecutive failures per FeedCluster, for the reconciler's backoff.
    pub(crate) failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        default_image: String,
        operator_namespace: String,
    ) -> Context {
        Context {
            client,
            recorder,
            metrics,
            default_image,
            operator_namespace,
            failures: Mutex::default(),
        }
    }
}

/// `namespace/name`, for logs, metrics and per-FeedCluster state.
pub fn key(fc: &FeedCluster) -> String {
    format!("{}/{}", fc.namespace().unwrap_or_default(), fc.name_any())
}

/// Merge-patches the given status fields, leaving the others alone.
pub(crate) async fn patch_status(
    ctx: &Context,
    fc: &FeedCluster,
    status: &serde_json::Value,
) -> Result<(), Error> {
    let api: Api<FeedCluster> =
        Api::namespaced(ctx.client.clone(), &fc.namespace().unwrap_or_default());
    let patch = json!({"status": status});
    api.patch_status(
        &fc.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Records an Event about the FeedCluster (best effort: a failure is
/// logged), its note cut to what the API server accepts.
pub(crate) async fn publish(
    ctx: &Context,
    fc: &FeedCluster,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(truncate(note, MAX_NOTE_BYTES).to_owned()),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &fc.object_ref(&())).await {
        warn!(error = %e, "publishing an event failed");
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_is_listed_for_the_metrics() {
        let kube = || kube::Error::Api(Box::new(kube::core::Status::failure("gone", "NotFound")));
        let errors = [
            Error::Object {
                action: "get",
                kind: "Service".into(),
                name: "x".into(),
                source: kube(),
            },
            Error::Kube(kube()),
            Error::InvalidSpec("x".into()),
            Error::RedisUrl(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "x",
            ))),
            Error::CredentialLost("x".into()),
        ];
        for error in errors {
            assert!(Error::LABELS.contains(&error.label()), "{}", error.label());
        }
        let text = feed_core::runtime::render_metrics(&Metrics::default().registry);
        for kind in Error::LABELS {
            assert!(
                text.contains(&format!(
                    "fanout_operator_reconcile_errors_total{{error=\"{kind}\"}} 0"
                )),
                "{text}"
            );
        }
    }
}
