#!/usr/bin/env python3
"""Validates Fanout's Kubernetes manifests offline.

  validate-manifests.py OBJECTS.yaml CRD.yaml FEEDCLUSTER.yaml...

OBJECTS.yaml (what the operator creates) is checked against Kubernetes'
published schemas (kubernetes-validate, strict: unknown fields fail); each
FEEDCLUSTER.yaml against the CRD's own openAPIV3Schema (jsonschema).
"""
import sys

import jsonschema
import kubernetes_validate
import yaml

KUBERNETES = "1.33.0"


def main(objects_file, crd_file, *feedclusters):
    failures = 0
    with open(objects_file) as f:
        objects = [o for o in yaml.safe_load_all(f) if o]
    for obj in objects:
        what = f"{obj['kind']} {obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as e:
            failures += 1
            print(f"FAIL {what}: {e.message} at {'.'.join(map(str, e.path))}")
    with open(crd_file) as f:
        crd = yaml.safe_load(f)
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path in feedclusters:
        with open(path) as f:
            fc = yaml.safe_load(f)
        errors = list(jsonschema.Draft7Validator(schema).iter_errors(fc))
        for e in errors:
            failures += 1
            print(f"FAIL {path}: {e.message} at {'.'.join(map(str, e.path))}")
    print(f"validated {len(objects)} objects and {len(feedclusters)} FeedCluster(s): {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
