//! The pause switch: a FeedCluster annotated `fanout.dev/paused: "true"` is
//! left as it is. The reconciler puts nothing back and changes nothing (a
//! deleted child stays deleted, an edited one stays edited) and the
//! autoscaler neither reads its backlog nor scales its workers; its status
//! says so in the `Paused` condition. Removing the annotation (or setting
//! any other value) resumes both at once.
//!
//! Operators such as CloudNativePG and Strimzi offer the same switch, for
//! hands-on repairs the operator would otherwise undo, and for stopping a
//! misbehaving autoscaler without uninstalling anything.

use kube::ResourceExt;

use crate::crd::FeedCluster;

/// The annotation that pauses a FeedCluster when its value is `"true"`.
pub const PAUSED_ANNOTATION: &str = "fanout.dev/paused";

/// The status condition that reports whether the FeedCluster is paused.
pub const PAUSED_CONDITION: &str = "Paused";

/// The `Paused` condition's reason while the annotation holds.
pub const PAUSED_REASON: &str = "Annotated";

/// The `Paused` condition's reason while the operator is acting.
pub const ACTIVE_REASON: &str = "Reconciling";

/// What the `Paused` condition says while paused: what stopped, and how to
/// resume.
pub const PAUSED_MESSAGE: &str = "reconciling and autoscaling are paused by the annotation \
     fanout.dev/paused=\"true\"; remove it (kubectl fanout resume NAME) to resume";

/// What the `Paused` condition says while not paused: how to pause.
pub const ACTIVE_MESSAGE: &str = "reconciling and autoscaling; annotate \
     fanout.dev/paused=\"true\" (kubectl fanout pause NAME) to pause";

/// Whether `fc` is paused: its annotation is exactly `"true"`, as
/// Kubernetes' own boolean annotations are spelled.
pub fn is_paused(fc: &FeedCluster) -> bool {
    fc.annotations()
        .get(PAUSED_ANNOTATION)
        .is_some_and(|v| v == "true")
}

/// The controller's predicate: what must change for a FeedCluster to be
/// reconciled again. Its generation (a spec change) or its pause switch;
/// never its status (the operator's own writes) or other metadata.
pub fn generation_or_pause(fc: &FeedCluster) -> Option<u64> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let generation = fc.metadata.generation?;
    let mut hasher = DefaultHasher::new();
    (generation, is_paused(fc)).hash(&mut hasher);
    Some(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotated(value: Option<&str>) -> FeedCluster {
        let mut fc = FeedCluster::test();
        if let Some(value) = value {
            fc.annotations_mut()
                .insert(PAUSED_ANNOTATION.into(), value.into());
        }
        fc
    }

    #[test]
    fn only_the_value_true_pauses() {
        assert!(is_paused(&annotated(Some("true"))));
        for value in [None, Some("false"), Some(""), Some("yes"), Some("True ")] {
            assert!(!is_paused(&annotated(value)), "{value:?}");
        }
    }

    #[test]
    fn pausing_and_resuming_set_off_a_reconcile_but_status_writes_do_not() {
        let active = annotated(None);
        let paused = annotated(Some("true"));
        assert_ne!(generation_or_pause(&active), generation_or_pause(&paused));
        // Another annotation, or a status write: the same hash, no reconcile.
        let mut other = annotated(None);
        other
            .annotations_mut()
            .insert("example.com/note".into(), "x".into());
        other.status = Some(Default::default());
        assert_eq!(generation_or_pause(&active), generation_or_pause(&other));
        // A spec change still counts while paused.
        let mut edited = annotated(Some("true"));
        edited.metadata.generation = Some(4);
        assert_ne!(generation_or_pause(&paused), generation_or_pause(&edited));
    }
}
