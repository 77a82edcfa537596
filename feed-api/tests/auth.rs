//! Tokens: login, rotation of refresh tokens, and what reuse does.

mod common;

use common::Stack;
use serde_json::{Value, json};
use sqlx::PgPool;

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn refresh_tokens_rotate_and_reuse_revokes_the_session(db: PgPool) {
    let stack = Stack::api_only(db).await;
    stack.signup("alice").await;
    let login = |handle: &'static str| {
        let stack = &stack;
        async move {
            let r = stack
                .http
                .post(stack.url("/auth/login"))
                .json(&json!({"handle": handle, "password": "correct horse battery"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let refresh = |token: Value| {
        let stack = &stack;
        async move {
            stack
                .http
                .post(stack.url("/auth/refresh"))
                .json(&json!({ "refresh_token": token }))
                .send()
                .await
                .unwrap()
        }
    };
    // Handles are case-insensitive at login too.
    let first = login("ALICE").await;
    assert_eq!(first["token_type"], "Bearer");
    assert_eq!(first["expires_in"], 900);

    let second = refresh(first["refresh_token"].clone()).await;
    assert_eq!(second.status(), 200);
    let second: Value = second.json().await.unwrap();
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    let me = stack
        .http
        .post(stack.url("/posts"))
        .bearer_auth(second["access_token"].as_str().unwrap())
        .json(&json!({"content": "with a refreshed token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 201);

    // The first token again: someone copied it. Both it and its successor die.
    let reused = refresh(first["refresh_token"].clone()).await;
    assert_eq!(reused.status(), 401);
    assert!(reused.text().await.unwrap().contains("already used"));
    let successor = refresh(second["refresh_token"].clone()).await;
    assert_eq!(successor.status(), 401);
    assert!(successor.text().await.unwrap().contains("revoked"));
    // A fresh login still works.
    login("alice").await;
    stack.stop().await;
}
