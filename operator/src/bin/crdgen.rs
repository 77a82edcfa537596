//! Prints the FeedCluster CustomResourceDefinition as YAML:
//! `cargo run -p fanout-operator --bin crdgen > crds/feedcluster.yaml`.
#![forbid(unsafe_code)]

use kube::CustomResourceExt;

fn main() {
    let crd = operator::crd::FeedCluster::crd();
    print!(
        "{}",
        serde_saphyr::to_string(&crd).expect("the CRD serializes to YAML")
    );
}
