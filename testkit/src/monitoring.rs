//! The metric names the chart's dashboards and alert rules use
//! (`charts/fanout/monitoring/`), and the names a process's `/metrics`
//! exports: tests compare the two, so renaming a metric in the code without
//! the dashboards and alerts fails a test instead of blanking a panel.

use std::collections::BTreeSet;
use std::path::PathBuf;

/// The chart's monitoring folder.
pub fn folder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/fanout/monitoring")
}

/// Every PromQL expression of the dashboards, with its dashboard's file
/// name and panel title.
pub fn dashboard_queries() -> Vec<(String, String)> {
    let mut found = Vec::new();
    let dir = folder().join("dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a folder entry").path())
        .filter(|path| path.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("a dashboard");
        let dashboard: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for panel in dashboard["panels"].as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    let title = panel["title"].as_str().unwrap_or_default();
                    found.push((format!("{name}: {title}"), expr.to_owned()));
                }
            }
        }
    }
    found
}

/// The Fanout metric names (`fanout_…`) the dashboards' queries and the
/// alert rules name.
pub fn used_metric_names() -> BTreeSet<String> {
    let rules = std::fs::read_to_string(folder().join("alerts.yaml")).expect("alerts.yaml");
    let mut names = metric_tokens(&rules);
    for (_, expr) in dashboard_queries() {
        names.extend(metric_tokens(&expr));
    }
    names
}

/// `fanout_…` tokens in `text` (lowercase, digits and `_`), as PromQL spells
/// metric names.
pub fn metric_tokens(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("fanout_") {
        let boundary = rest[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        if boundary {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// The sample names in a Prometheus text exposition (histograms' `_bucket`,
/// `_sum` and `_count` included).
pub fn exported_metric_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Names the operator exports (`fanout_operator_…`, `fanout_autoscaler_…`):
/// checked against the operator's `/metrics`; every other name against the
/// API's and the workers'.
pub fn is_operator_metric(name: &str) -> bool {
    name.starts_with("fanout_operator_") || name.starts_with("fanout_autoscaler_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_whole_metric_names() {
        let expr = r#"histogram_quantile(0.99, sum by (le) (rate(fanout_worker_propagation_seconds_bucket{feedcluster=~"$x"}[5m]))) / my_fanout_thing"#;
        assert_eq!(
            metric_tokens(expr).into_iter().collect::<Vec<_>>(),
            ["fanout_worker_propagation_seconds_bucket"]
        );
    }

    #[test]
    fn the_dashboards_and_rules_name_metrics() {
        let used = used_metric_names();
        assert!(used.contains("fanout_http_requests_total"), "{used:?}");
        assert!(used.contains("fanout_autoscaler_observed"), "{used:?}");
        assert!(dashboard_queries().len() >= 20);
    }

    #[test]
    fn an_exposition_lists_its_samples() {
        let text = "# HELP a_total x\n# TYPE a_total counter\na_total{x=\"1\"} 2\nb_bucket{le=\"+Inf\"} 1\nc 3\n";
        assert_eq!(
            exported_metric_names(text).into_iter().collect::<Vec<_>>(),
            ["a_total", "b_bucket", "c"]
        );
    }
}
