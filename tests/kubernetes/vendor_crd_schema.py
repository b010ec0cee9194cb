"""Writes the excerpt of a CustomResourceDefinition that the manifest tests
validate against: the OpenAPI v3 schema of one served version, with the
`description` texts dropped (they are most of the file and validate
nothing), and a `$comment` saying where it came from.

    python3 vendor_crd_schema.py CRD.yaml VERSION SOURCE_URL OUT.json

Run again with the CRD file of a newer prometheus-operator release to move
the tests to it.
"""

import json
import sys

import yaml

# Keys whose values are schemas; under `properties` and `patternProperties`
# the keys are field names (a field may be called "description").
SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
SCHEMA_VALUES = ("items", "additionalProperties", "not")
SCHEMA_MAPS = ("properties", "patternProperties")


def strip(schema):
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "description":
            continue
        if key in SCHEMA_MAPS:
            value = {name: strip(sub) for name, sub in value.items()}
        elif key in SCHEMA_LISTS:
            value = [strip(sub) for sub in value]
        elif key in SCHEMA_VALUES:
            value = strip(value)
        out[key] = value
    return out


def main():
    crd_path, version, source, out_path = sys.argv[1:5]
    crd = yaml.safe_load(open(crd_path))
    served = [v for v in crd["spec"]["versions"] if v.get("served")]
    if len(served) != 1:
        sys.exit(f"expected one served version, found {[v['name'] for v in served]}")
    excerpt = {
        "$comment": (
            f"Excerpt of {crd['metadata']['name']} (prometheus-operator {version}, "
            f"{source}): spec.versions[{served[0]['name']}].schema.openAPIV3Schema "
            "without descriptions. Regenerate with tests/kubernetes/vendor_crd_schema.py."
        ),
        "apiVersion": f"{crd['spec']['group']}/{served[0]['name']}",
        "kind": crd["spec"]["names"]["kind"],
        "schema": strip(served[0]["schema"]["openAPIV3Schema"]),
    }
    with open(out_path, "w") as f:
        json.dump(excerpt, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
