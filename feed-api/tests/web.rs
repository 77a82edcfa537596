//! The web client at `/`: served from the binary, under a strict
//! Content-Security-Policy that still lets the page run (its browser test
//! is e2e/browser/).

mod common;

use common::Stack;
use sqlx::PgPool;

#[sqlx::test(migrations = "../feed-core/migrations")]
async fn the_web_client_is_served_under_a_strict_policy(db: PgPool) {
    let stack = Stack::api_only(db).await;
    for (path, content_type, contains) in [
        ("/", "text/html; charset=utf-8", "<script src=\"/app.js\""),
        ("/app.js", "text/javascript; charset=utf-8", "EventSource"),
        (
            "/style.css",
            "text/css; charset=utf-8",
            "prefers-reduced-motion",
        ),
        ("/favicon.svg", "image/svg+xml", "<svg"),
    ] {
        let response = stack.http.get(stack.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], content_type, "{path}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        for rule in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(rule), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert!(response.text().await.unwrap().contains(contains), "{path}");
    }
    // The page has no inline script or style for the policy to block.
    let page = stack.http.get(stack.url("/")).send().await.unwrap();
    let html = page.text().await.unwrap();
    assert!(!html.contains("<script>") && !html.contains("<style") && !html.contains("style="));
    stack.stop().await;
}
