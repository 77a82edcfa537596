//! `kubectl fanout pause` and `resume`: set or remove the operator's pause
//! annotation ([`operator::pause`]), then wait for the operator to confirm
//! it in the `Paused` condition.

use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use operator::crd::FeedCluster;
use operator::pause::{PAUSED_ANNOTATION, PAUSED_CONDITION, is_paused};
use serde_json::json;

use crate::cli::SwitchArgs;
use crate::cluster::{Error, Target};

/// How often to look for the operator's confirmation: its status write
/// follows a watch event, well under a second on a healthy cluster.
const CONFIRM_POLL: Duration = Duration::from_millis(500);

/// Pauses (`pause`) or resumes the FeedCluster; what happened, in a
/// sentence.
pub async fn set(target: &Target, args: &SwitchArgs, pause: bool) -> Result<String, Error> {
    let name = args.name.as_str();
    let fc = target.feed_cluster(name).await?;
    let key = format!("{}/{name}", target.namespace);
    let (done, next) = if pause {
        (
            "paused: the operator leaves its objects alone and does not scale its workers",
            format!(
                "resume it with kubectl fanout resume {name} -n {}",
                target.namespace
            ),
        )
    } else {
        (
            "resumed: the operator reconciles it and autoscales its workers again",
            format!(
                "pause it with kubectl fanout pause {name} -n {}",
                target.namespace
            ),
        )
    };
    if is_paused(&fc) != pause {
        let value = if pause { json!("true") } else { json!(null) };
        let patch = json!({"metadata": {"annotations": {PAUSED_ANNOTATION: value}}});
        target
            .feed_clusters()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| target.explain(e, name, "patch"))?;
    }
    let confirmed = confirmed(target, name, pause, Duration::from_secs(args.wait)).await?;
    let note = match (confirmed, args.wait) {
        (true, _) => "; the operator confirmed it".to_owned(),
        (false, 0) => String::new(),
        (false, wait) => format!(
            "; the operator has not confirmed it within {wait} s (is it running? see kubectl fanout status {name})"
        ),
    };
    Ok(format!("FeedCluster {key} {done}{note}; {next}"))
}

/// Whether the `Paused` condition shows `pause` within `limit`.
async fn confirmed(
    target: &Target,
    name: &str,
    pause: bool,
    limit: Duration,
) -> Result<bool, Error> {
    let deadline = Instant::now() + limit;
    let want = if pause { "True" } else { "False" };
    loop {
        let fc: FeedCluster = target.feed_cluster(name).await?;
        let shown = fc
            .status
            .iter()
            .flat_map(|s| &s.conditions)
            .any(|c| c.type_ == PAUSED_CONDITION && c.status == want);
        if shown {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(CONFIRM_POLL).await;
    }
}
