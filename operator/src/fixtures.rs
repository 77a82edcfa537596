//! Test helpers: a FeedCluster fixture and a mocked API server (kube's
//! tower-test pattern) that checks each request the reconciler makes, in
//! order, and answers as the API server would.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, Resource};
use serde_json::{Value, json};

use crate::context::Context;
use crate::crd::FeedCluster;
use crate::metrics::Metrics;

pub const IMAGE: &str = "ghcr.io/fanout/fanout:0.1.0";
/// The namespace the operator under test runs in (the chart's usual one).
pub const OPERATOR_NAMESPACE: &str = "fanout-system";

impl FeedCluster {
    /// The kind sample, as the API server would hand it to the reconciler.
    pub fn test() -> FeedCluster {
        let text = include_str!("../../crds/samples/feedcluster.yaml");
        let mut fc: FeedCluster = serde_saphyr::from_str(text).expect("the sample parses");
        let meta = fc.meta_mut();
        meta.namespace = Some("feeds".into());
        meta.uid = Some("0b5c1e2a-0000-4000-8000-000000000001".into());
        meta.generation = Some(3);
        fc
    }
}

type ApiServerHandle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// Plays the API server's side of one reconciliation.
pub struct ApiServerVerifier(ApiServerHandle);

/// How the mocked API server answers one request.
pub enum Reply {
    /// 404 Not Found.
    NotFound,
    /// 200 with the request's own body (what an apply or create returns).
    Echo,
    /// 200 with the request's body, changed first.
    EchoWith(Box<dyn FnOnce(&mut Value) + Send>),
    /// 200 with this body.
    Json(Value),
    /// This status code with this body.
    Status(u16, Value),
}

/// A check on a request body.
type BodyCheck = Box<dyn FnOnce(&Value) + Send>;

/// A request the reconciler must make next.
pub struct Expect {
    pub method: http::Method,
    pub path: String,
    pub reply: Reply,
    /// Checks on the request body.
    pub check: Option<BodyCheck>,
}

impl Expect {
    pub fn new(method: http::Method, path: impl Into<String>, reply: Reply) -> Expect {
        Expect {
            method,
            path: path.into(),
            reply,
            check: None,
        }
    }

    pub fn check(mut self, check: impl FnOnce(&Value) + Send + 'static) -> Expect {
        self.check = Some(Box::new(check));
        self
    }
}

impl ApiServerVerifier {
    /// Answers `script` in order, failing on any other request; await the
    /// handle (with a timeout) so a missing request fails the test too.
    pub fn run(mut self, script: Vec<Expect>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            for (i, expect) in script.into_iter().enumerate() {
                let (request, send) = self
                    .0
                    .next_request()
                    .await
                    .expect("the reconciler made a request");
                let uri = request.uri().clone();
                assert_eq!(request.method(), expect.method, "request {i}: {uri}");
                assert_eq!(uri.path(), expect.path, "request {i}");
                if request.method() == http::Method::PATCH && !uri.path().ends_with("/status") {
                    // The replica count has its own manager, so the
                    // reconciler's applies never take it back.
                    let manager = if uri.path().ends_with("/scale") || uri.path().contains("/pods/")
                    {
                        "fanout-autoscaler"
                    } else {
                        "fanout-operator"
                    };
                    let query = uri.query().unwrap_or_default();
                    assert!(
                        query.contains(&format!("fieldManager={manager}")),
                        "request {i}: {uri}"
                    );
                }
                let bytes = request.into_body().collect_bytes().await.unwrap();
                let body: Value = if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).expect("JSON request body")
                };
                if let Some(check) = expect.check {
                    check(&body);
                }
                let response = match expect.reply {
                    Reply::NotFound => {
                        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "reason": "NotFound", "code": 404, "message": "not found"});
                        Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(Body::from(serde_json::to_vec(&status).unwrap()))
                    }
                    Reply::Echo => {
                        Response::builder().body(Body::from(serde_json::to_vec(&body).unwrap()))
                    }
                    Reply::EchoWith(change) => {
                        let mut body = body;
                        change(&mut body);
                        Response::builder().body(Body::from(serde_json::to_vec(&body).unwrap()))
                    }
                    Reply::Status(code, value) => Response::builder()
                        .status(StatusCode::from_u16(code).unwrap())
                        .body(Body::from(serde_json::to_vec(&value).unwrap())),
                    Reply::Json(value) => {
                        Response::builder().body(Body::from(serde_json::to_vec(&value).unwrap()))
                    }
                };
                send.send_response(response.unwrap());
            }
        })
    }
}

impl ApiServerVerifier {
    /// Fails if any request arrives within `quiet` (virtual time, under a
    /// paused clock): for what must make no request at all.
    pub fn silent_for(mut self, quiet: std::time::Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            if let Ok(Some((request, _))) = tokio::time::timeout(quiet, self.0.next_request()).await
            {
                panic!(
                    "expected no request, got {} {}",
                    request.method(),
                    request.uri()
                );
            }
        })
    }
}

/// A context whose client talks to the returned mocked API server.
pub fn test_context() -> (Arc<Context>, ApiServerVerifier) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "fanout-operator-test".into(),
            instance: None,
        },
    );
    let ctx = Context::new(
        client,
        recorder,
        Arc::new(Metrics::default()),
        IMAGE.into(),
        OPERATOR_NAMESPACE.into(),
    );
    (Arc::new(ctx), ApiServerVerifier(handle))
}

/// Waits for the scenario to finish, so missing requests fail the test.
pub async fn within_a_second(handle: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(std::time::Duration::from_secs(1), handle)
        .await
        .expect("the reconciler made every expected request")
        .expect("the scenario's checks passed");
}
