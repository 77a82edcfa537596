//! Prints the FeedCluster CustomResourceDefinition as YAML:
//! `cargo run -p fanout-operator --bin crdgen > crds/feedcluster.yaml`;
//! with `--helm`, the Helm chart's template of it.
#![forbid(unsafe_code)]

fn main() {
    if std::env::args().any(|a| a == "--helm") {
        print!("{}", operator::crd::helm_template());
    } else {
        print!("{}", operator::crd::manifest());
    }
}
