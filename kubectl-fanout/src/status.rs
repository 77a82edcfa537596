//! `kubectl fanout status`: a FeedCluster's conditions, replicas, backlog
//! per stream and the autoscaler's latest decisions, in one screen.
//!
//! The backlog is read live, as the autoscaler reads it
//! ([`feed_core::bus::backlog`]), from the FeedCluster's Redis (its
//! external Secret's URL, the managed Service's in-cluster name, or
//! `--redis-url`); when that Redis cannot be reached from here, the status
//! shows what the autoscaler last recorded, and says why.

use std::fmt::Write as _;
use std::time::Duration;

use feed_core::bus::{self, Backlog};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use operator::crd::FeedCluster;
use operator::pause::is_paused;
use operator::resources::{Names, Reach};

use crate::cli::StatusArgs;
use crate::cluster::{Error, Target};

/// The longest a live backlog read may take before the status falls back
/// to what was recorded: a reachable Redis answers in milliseconds, and
/// `kubectl fanout status` must not hang on an unreachable one.
const LIVE_READ_LIMIT: Duration = Duration::from_secs(5);
/// Each Redis command's own limit within that.
const REDIS_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// The Event reasons the autoscaler records its decisions under.
const DECISION_REASONS: [&str; 2] = ["Scaled", "Recommended"];

/// Everything `status` shows.
pub struct Report {
    pub fc: FeedCluster,
    pub backlog: BacklogView,
    /// The autoscaler's latest decisions, newest first; `Err` says why
    /// its Events could not be read (the rest of the report stands).
    pub decisions: Result<Vec<Decision>, String>,
}

/// Where the backlog shown comes from.
pub enum BacklogView {
    /// Read just now from the Redis at `from` (its password left out).
    Live { from: String, backlog: Backlog },
    /// What the autoscaler last wrote to the status; `why` the live read
    /// did not happen.
    Recorded { why: String },
}

/// One autoscaler decision, from its Event.
pub struct Decision {
    pub time: Option<Timestamp>,
    /// `Scaled` or `Recommended`.
    pub reason: String,
    /// The autoscaler's explanation: inputs, what the load asked for, and
    /// the rule that settled it.
    pub note: String,
    /// How many times the same decision was recorded (Event series).
    pub count: i32,
}

/// Reads the FeedCluster, its backlog and its decisions.
pub async fn gather(target: &Target, args: &StatusArgs) -> Result<Report, Error> {
    let fc = target.feed_cluster(&args.name).await?;
    let backlog = match redis_url(target, &fc, args.redis_url.as_deref()).await {
        Ok(url) => match read_backlog(&url).await {
            Ok(backlog) => BacklogView::Live {
                from: redact(&url),
                backlog,
            },
            Err(why) => BacklogView::Recorded {
                why: format!("{} did not answer: {why}", redact(&url)),
            },
        },
        Err(why) => BacklogView::Recorded { why },
    };
    let decisions = decisions(target, &args.name, args.decisions).await;
    Ok(Report {
        fc,
        backlog,
        decisions,
    })
}

/// The URL of the Redis to read: `--redis-url`, the external Secret's, or
/// the managed Service's; `Err` says why there is none.
async fn redis_url(
    target: &Target,
    fc: &FeedCluster,
    given: Option<&str>,
) -> Result<String, String> {
    if let Some(url) = given {
        return Ok(url.to_owned());
    }
    let Some(external) = &fc.spec.redis.external else {
        return Ok(Names::of(fc).redis_url(Reach::Cluster));
    };
    let secrets: Api<Secret> = Api::namespaced(target.client.clone(), &target.namespace);
    let secret = secrets.get(&external.secret_name).await.map_err(|e| {
        format!(
            "reading Secret {} failed ({e}); pass --redis-url",
            external.secret_name
        )
    })?;
    secret
        .data
        .and_then(|d| d.get(&external.key).cloned())
        .and_then(|b| String::from_utf8(b.0).ok())
        .ok_or_else(|| {
            format!(
                "Secret {} has no key {}",
                external.secret_name, external.key
            )
        })
}

async fn read_backlog(url: &str) -> Result<Backlog, String> {
    let read = async {
        let redis = bus::Redis::new(url, REDIS_RESPONSE_TIMEOUT)?;
        let mut conn = redis.conn().await?;
        bus::backlog(&mut conn, bus::DEFAULT_MAX_DELIVERIES).await
    };
    match tokio::time::timeout(LIVE_READ_LIMIT, read).await {
        Ok(Ok(backlog)) => Ok(backlog),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", LIVE_READ_LIMIT.as_secs())),
    }
}

/// A Redis URL without its user and password.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// The latest `limit` decision Events about FeedCluster `name`, newest
/// first, or why they could not be listed.
async fn decisions(target: &Target, name: &str, limit: usize) -> Result<Vec<Decision>, String> {
    let events: Api<Event> = Api::namespaced(target.client.clone(), &target.namespace);
    let list = events.list(&ListParams::default()).await.map_err(|e| {
        format!(
            "listing Events in namespace {} failed: {e}",
            target.namespace
        )
    })?;
    let mut found: Vec<Decision> = list
        .items
        .into_iter()
        .filter(|e| {
            let about = e.regarding.as_ref();
            about.and_then(|r| r.kind.as_deref()) == Some("FeedCluster")
                && about.and_then(|r| r.name.as_deref()) == Some(name)
                && e.reason
                    .as_deref()
                    .is_some_and(|r| DECISION_REASONS.contains(&r))
        })
        .map(|e| Decision {
            time: e
                .series
                .as_ref()
                .map(|s| s.last_observed_time.0)
                .or(e.event_time.as_ref().map(|t| t.0))
                .or(e.deprecated_last_timestamp.as_ref().map(|t| t.0))
                .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0)),
            reason: e.reason.unwrap_or_default(),
            note: e.note.unwrap_or_default(),
            count: e.series.map_or(1, |s| s.count.max(1)),
        })
        .collect();
    found.sort_by_key(|d| std::cmp::Reverse(d.time));
    found.truncate(limit);
    Ok(found)
}

fn when(time: Option<Timestamp>) -> String {
    time.map_or_else(
        || "-".to_owned(),
        |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

/// The report as text.
pub fn render(report: &Report) -> String {
    let fc = &report.fc;
    let status = fc.status.clone().unwrap_or_default();
    let mut out = String::new();
    let name = fc.metadata.name.as_deref().unwrap_or_default();
    let namespace = fc.metadata.namespace.as_deref().unwrap_or_default();
    let _ = writeln!(out, "FeedCluster {namespace}/{name}");
    let _ = writeln!(
        out,
        "  Paused:      {}",
        if is_paused(fc) {
            "yes (fanout.dev/paused=\"true\": not reconciled, not autoscaled)"
        } else {
            "no"
        }
    );
    let _ = writeln!(
        out,
        "  Generation:  {} (observed {})",
        fc.metadata.generation.unwrap_or(0),
        status
            .observed_generation
            .map_or_else(|| "never".to_owned(), |g| g.to_string())
    );
    if let Some(image) = &status.migrated_image {
        let _ = writeln!(out, "  Migrated:    {image}");
    }

    let _ = writeln!(
        out,
        "\nCONDITION    STATUS  REASON          SINCE                 MESSAGE"
    );
    for c in &status.conditions {
        let _ = writeln!(
            out,
            "{:<12} {:<7} {:<15} {:<21} {}",
            c.type_,
            c.status,
            c.reason,
            when(Some(c.last_transition_time.0)),
            c.message
        );
    }

    let spec = &fc.spec;
    let _ = writeln!(out, "\nPODS         READY/DESIRED");
    let _ = writeln!(out, "api          {}", summary(&status.api));
    let _ = writeln!(
        out,
        "workers      {:<14} autoscaled {}..{} ({})",
        summary(&status.workers),
        spec.workers.min_replicas,
        spec.workers.max_replicas,
        if spec.autoscaling.enabled {
            format!("{:?}", spec.autoscaling.mode)
        } else {
            "autoscaling off".to_owned()
        }
    );

    match &report.backlog {
        BacklogView::Live { from, backlog } => {
            let _ = writeln!(out, "\nBACKLOG (live from {from})");
            let _ = writeln!(
                out,
                "STREAM                   LAG       PENDING   CONSUMERS"
            );
            for s in &backlog.streams {
                let _ = writeln!(
                    out,
                    "{:<24} {:<9} {:<9} {}",
                    s.stream,
                    s.lag
                        .map_or_else(|| "unknown".to_owned(), |l| l.to_string()),
                    s.pending,
                    s.consumers
                );
            }
            let _ = writeln!(
                out,
                "total: lag {}, pending {}, poison {} (delivered over {} times)",
                backlog
                    .lag
                    .map_or_else(|| "unknown".to_owned(), |l| l.to_string()),
                backlog.pending,
                backlog.poison,
                bus::DEFAULT_MAX_DELIVERIES
            );
        }
        BacklogView::Recorded { why } => {
            let _ = writeln!(
                out,
                "\nBACKLOG (as the autoscaler last recorded it; live read not possible: {why})"
            );
            let _ = writeln!(out, "STREAM                   LAG       PENDING");
            for s in &status.streams {
                let _ = writeln!(
                    out,
                    "{:<24} {:<9} {}",
                    s.name,
                    s.lag
                        .map_or_else(|| "unknown".to_owned(), |l| l.to_string()),
                    s.pending
                );
            }
            let _ = writeln!(
                out,
                "total (lag + pending): {}",
                status
                    .backlog
                    .map_or_else(|| "unknown".to_owned(), |b| b.to_string())
            );
        }
    }

    let _ = writeln!(out, "\nLAST SCALE DECISION");
    match &status.last_scale {
        Some(d) => {
            let _ = writeln!(
                out,
                "{}  {} {} -> {} ({}): {}",
                when(Some(d.time.0)),
                d.direction,
                d.from,
                d.to,
                if d.applied {
                    "applied"
                } else {
                    "recommended only"
                },
                d.reason
            );
        }
        None => {
            let _ = writeln!(out, "none yet");
        }
    }
    match &report.decisions {
        Err(why) => {
            let _ = writeln!(out, "\nRECENT DECISIONS: not shown ({why})");
        }
        Ok(decisions) if !decisions.is_empty() => {
            let _ = writeln!(out, "\nRECENT DECISIONS (Events, newest first)");
            render_decisions(&mut out, decisions);
        }
        Ok(_) => {}
    }
    out
}

/// One line per decision: when, `Scaled` or `Recommended` (and how often
/// in a row), and the autoscaler's reason.
fn render_decisions(out: &mut String, decisions: &[Decision]) {
    for d in decisions {
        let repeated = if d.count > 1 {
            format!(" (x{})", d.count)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{}  {:<11}{repeated} {}",
            when(d.time),
            d.reason,
            d.note
        );
    }
}

fn summary(r: &operator::crd::ReplicaStatus) -> String {
    format!("{}/{}", r.ready, r.desired)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fc(yaml: &str) -> FeedCluster {
        serde_json::from_value(
            serde_json::to_value(serde_json::from_str::<serde_json::Value>(yaml).unwrap()).unwrap(),
        )
        .unwrap()
    }

    fn sample() -> FeedCluster {
        fc(
            r#"{"apiVersion": "fanout.dev/v1alpha1", "kind": "FeedCluster",
            "metadata": {"name": "demo", "namespace": "feeds", "generation": 2,
                "annotations": {"fanout.dev/paused": "true"}},
            "spec": {"workers": {"minReplicas": 1, "maxReplicas": 5},
                "postgres": {"external": {"secretName": "pg"}},
                "redis": {"external": {"secretName": "redis"}}},
            "status": {"observedGeneration": 2, "backlog": 120,
                "conditions": [{"type": "Paused", "status": "True", "reason": "Annotated",
                    "message": "paused", "lastTransitionTime": "2026-11-29T20:00:00Z"}],
                "api": {"desired": 1, "ready": 1, "summary": "1/1"},
                "workers": {"desired": 5, "ready": 4, "summary": "4/5"},
                "streams": [{"name": "{events}:post.created", "lag": 100, "pending": 20}],
                "lastScale": {"time": "2026-11-29T19:59:00Z", "direction": "Up", "from": 1,
                    "to": 5, "reason": "backlog 120 asks for 5", "applied": true}}}"#,
        )
    }

    #[test]
    fn without_redis_the_status_shows_the_recorded_backlog_and_says_why() {
        let report = Report {
            fc: sample(),
            backlog: BacklogView::Recorded {
                why: "redis://x:6379 did not answer".into(),
            },
            decisions: Ok(vec![Decision {
                time: Some("2026-11-29T19:59:00Z".parse().unwrap()),
                reason: "Scaled".into(),
                note: "backlog 120 asks for 5".into(),
                count: 2,
            }]),
        };
        let text = render(&report);
        for expected in [
            "FeedCluster feeds/demo",
            "Paused:      yes",
            "Paused       True    Annotated       2026-11-29T20:00:00Z  paused",
            "workers      4/5            autoscaled 1..5 (Scale)",
            "live read not possible: redis://x:6379 did not answer",
            "{events}:post.created    100       20",
            "total (lag + pending): 120",
            "2026-11-29T19:59:00Z  Up 1 -> 5 (applied): backlog 120 asks for 5",
            "2026-11-29T19:59:00Z  Scaled      (x2) backlog 120 asks for 5",
        ] {
            assert!(
                text.contains(expected),
                "{expected:?} missing from:\n{text}"
            );
        }
    }

    #[test]
    fn a_redis_password_is_never_shown() {
        assert_eq!(
            redact("rediss://user:s3cret@redis.example:6380/0"),
            "rediss://redis.example:6380/0"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
