//! What the lab's table tests share: a path in the repository, the shipped
//! settings, and the check that a generated section of docs/autoscaling.md
//! is what the code produces now.

use std::path::PathBuf;

use autoscale_lab::simulate::command::read_settings;
use feed_core::autoscale::Settings;

/// A path relative to the repository's root.
pub fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// The policy's settings the lab ships (`autoscale-lab/traces/autoscaling.yaml`,
/// read as the operator reads a FeedCluster), and its poll interval in
/// seconds.
pub fn shipped_settings() -> (Settings, u64) {
    let (workers, autoscaling) =
        read_settings(&repo("autoscale-lab/traces/autoscaling.yaml")).unwrap();
    let settings = operator::crd::policy(&workers, &autoscaling);
    (settings, autoscaling.poll_interval_seconds as u64)
}

/// Fails unless the section of docs/autoscaling.md between the markers
/// `<!-- {name}:start -->` and `<!-- {name}:end -->` is `now`; with
/// `FANOUT_REGENERATE` set, writes `now` there instead.
pub fn section_matches(name: &str, now: &str) {
    let (start_marker, end_marker) = (
        format!("<!-- {name}:start -->\n"),
        format!("<!-- {name}:end -->"),
    );
    let path = repo("docs/autoscaling.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (Some(start), Some(end)) = (doc.find(&start_marker), doc.find(&end_marker)) else {
        panic!("docs/autoscaling.md lost its {name} markers");
    };
    let committed = &doc[start + start_marker.len()..end];
    if std::env::var_os("FANOUT_REGENERATE").is_some() {
        let updated = format!("{}{now}{}", &doc[..start + start_marker.len()], &doc[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert!(
        committed == now,
        "the {name} in docs/autoscaling.md are stale: run `make autoscale-lab`\n{now}"
    );
}
