//! docs/openapi.json is generated from the handlers' annotations; this fails
//! when the committed copy drifts. `make generate` rewrites it.

use std::path::PathBuf;

#[test]
fn openapi_document_matches_the_committed_copy() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    let fresh = feed_api::openapi::document().to_pretty_json().unwrap() + "\n";
    if std::env::var_os("FANOUT_REGENERATE").is_some() {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "docs/openapi.json differs from the API: run `make generate` and commit"
    );
}

#[test]
fn every_route_is_documented_with_its_errors() {
    let doc = serde_json::to_value(feed_api::openapi::document()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/users",
        "/users/{id}",
        "/users/{id}/follow",
        "/users/{id}/unfollow",
        "/users/{id}/followers",
        "/users/{id}/following",
        "/users/{id}/posts",
        "/auth/login",
        "/auth/refresh",
        "/posts",
        "/posts/{id}",
        "/posts/{id}/like",
        "/feed",
        "/feed/posts/{id}",
        "/healthz",
        "/readyz",
        "/metrics",
        "/debug/health",
        "/debug/metrics-summary",
        "/debug/config",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} is missing from the OpenAPI document"
        );
    }
    let create = &doc["paths"]["/posts"]["post"];
    assert!(create["responses"]["422"].is_object());
    assert!(create["security"].is_array());
}
