//! Reaching the cluster as kubectl does, finding a FeedCluster, and errors
//! that say what to do next.

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use operator::crd::FeedCluster;

/// Why a `kubectl fanout` command failed, each with the next step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no usable Kubernetes configuration ({0}); pass --kubeconfig FILE, set KUBECONFIG, or check that `kubectl get nodes` works"
    )]
    Config(String),
    #[error(
        "FeedCluster {name} not found in namespace {namespace}; list them with kubectl get feedclusters -A"
    )]
    NotFound { name: String, namespace: String },
    #[error(
        "this cluster has no FeedCluster resource type; install the operator's chart (helm install fanout charts/fanout -n fanout-system --create-namespace) or kubectl apply -f crds/feedcluster.yaml"
    )]
    NoCrd,
    #[error(
        "not allowed to {verb} FeedClusters in namespace {namespace} ({message}); use a kubeconfig whose user may, or ask for a Role that grants it"
    )]
    Forbidden {
        verb: &'static str,
        namespace: String,
        message: String,
    },
    #[error(
        "the Kubernetes API at {url} did not answer ({source}); check the cluster is up and --kubeconfig/--context point at it"
    )]
    Unreachable {
        url: String,
        #[source]
        source: kube::Error,
    },
    #[error("the Kubernetes API refused the request: {0}")]
    Kube(#[source] kube::Error),
    /// The simulation could not run (its trace, its settings).
    #[error("simulating: {0:#}")]
    Simulation(anyhow::Error),
}

/// A client and the namespace the command is about.
pub struct Target {
    pub client: Client,
    pub namespace: String,
    /// The API server, for messages.
    pub url: String,
}

/// Connects as kubectl would: `kubeconfig` or `context` if given, else
/// kube's inference ($KUBECONFIG, ~/.kube/config, in-cluster). The
/// namespace is `namespace`, else the context's.
pub async fn connect(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    namespace: Option<&str>,
) -> Result<Target, Error> {
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    let unusable = |e: &dyn std::fmt::Display| Error::Config(e.to_string());
    let config = match (kubeconfig, context) {
        (Some(path), _) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| unusable(&e))?
        }
        (None, Some(_)) => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| unusable(&e))?,
        (None, None) => Config::infer().await.map_err(|e| unusable(&e))?,
    };
    let namespace = namespace.map_or_else(|| config.default_namespace.clone(), str::to_owned);
    let url = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|e| Error::Config(e.to_string()))?;
    Ok(Target {
        client,
        namespace,
        url,
    })
}

impl Target {
    /// The FeedClusters of the target namespace.
    pub fn feed_clusters(&self) -> Api<FeedCluster> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The FeedCluster `name`, or an error that says how to find it.
    pub async fn feed_cluster(&self, name: &str) -> Result<FeedCluster, Error> {
        self.feed_clusters()
            .get(name)
            .await
            .map_err(|e| self.explain(e, name, "get"))
    }

    /// What a failed request about FeedCluster `name` means to its user.
    pub fn explain(&self, error: kube::Error, name: &str, verb: &'static str) -> Error {
        match &error {
            kube::Error::Api(status) if status.code == 404 => {
                // A missing object names itself; a missing resource type
                // does not.
                if status.details.as_ref().is_some_and(|d| !d.name.is_empty()) {
                    Error::NotFound {
                        name: name.to_owned(),
                        namespace: self.namespace.clone(),
                    }
                } else {
                    Error::NoCrd
                }
            }
            kube::Error::Api(status) if status.code == 403 => Error::Forbidden {
                verb,
                namespace: self.namespace.clone(),
                message: status.message.clone(),
            },
            kube::Error::Api(_) => Error::Kube(error),
            _ => Error::Unreachable {
                url: self.url.clone(),
                source: error,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::core::Status;
    use kube::core::response::StatusDetails;

    use super::*;

    /// A target whose API server is a closed loopback port (a client
    /// needs a runtime).
    fn nowhere() -> Target {
        let url: http::Uri = "http://127.0.0.1:1".parse().unwrap();
        Target {
            client: Client::try_from(Config::new(url.clone())).unwrap(),
            namespace: "feeds".into(),
            url: url.to_string(),
        }
    }

    fn api_error(code: u16, named: bool) -> kube::Error {
        let mut status = Status::failure("no", "NotFound").with_code(code);
        if named {
            // What the API server says about a missing object.
            let details: StatusDetails =
                serde_json::from_value(serde_json::json!({"name": "demo", "kind": "feedclusters"}))
                    .unwrap();
            status.details = Some(details);
        }
        kube::Error::Api(Box::new(status))
    }

    #[tokio::test]
    async fn each_failure_says_what_to_do() {
        let target = nowhere();
        let said = |e| target.explain(e, "demo", "get").to_string();
        assert_eq!(
            said(api_error(404, true)),
            "FeedCluster demo not found in namespace feeds; list them with kubectl get feedclusters -A"
        );
        assert!(said(api_error(404, false)).contains("helm install fanout charts/fanout"));
        assert!(
            said(api_error(403, false))
                .starts_with("not allowed to get FeedClusters in namespace feeds")
        );
    }

    #[tokio::test]
    async fn an_api_server_that_does_not_answer_is_named() {
        let said = nowhere()
            .feed_cluster("demo")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            said.starts_with("the Kubernetes API at http://127.0.0.1:1/ did not answer"),
            "{said}"
        );
        assert!(said.contains("--kubeconfig/--context"), "{said}");
    }
}
