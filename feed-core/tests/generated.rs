//! The event JSON Schemas in docs/events/ are generated from the Rust types;
//! this fails when the committed copies drift. `make generate` rewrites them.

use std::path::PathBuf;

#[test]
fn event_schemas_match_the_committed_copies() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/events");
    let regenerate = std::env::var_os("FANOUT_REGENERATE").is_some();
    let mut stale = Vec::new();
    for (name, schema) in feed_core::events::json_schemas() {
        let path = dir.join(name);
        let fresh = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        if regenerate {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &fresh).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(fresh.as_str()) {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "docs/events/{stale:?} differ from the event types: run `make generate` and commit"
    );
}
