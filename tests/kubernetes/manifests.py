"""Renders a kustomization without kubectl and validates what it renders.

    python3 manifests.py render   DIR
    python3 manifests.py validate DIR KUBERNETES_VERSION...

`render` prints the documents as a JSON list. `validate` checks every
document, for each Kubernetes version given, against that version's schemas
(kubernetes-validate, strict: a field the API does not have is an error, as
`kubectl apply` makes it by default), and the prometheus-operator kinds
against the CRD schemas vendored in schemas/ (made strict the same way),
then prints the documents as `render` does. Any problem: the reasons on
stderr and exit code 1.

Only the kustomize features the shipped kustomizations use are rendered:
`resources` (files and directories with a kustomization of their own) and
`namespace`. Any other key is refused rather than ignored, so a manifest
change that needs more of kustomize fails here until it is rendered
faithfully.
"""

import copy
import json
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml
from referencing import Registry, Resource

HERE = pathlib.Path(__file__).resolve().parent
KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
RENDERED_KEYS = {"apiVersion", "kind", "resources", "namespace"}
# Kinds kustomize's namespace transformer leaves alone.
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PriorityClass",
    "StorageClass",
    "PersistentVolume",
    "APIService",
}


class Problem(Exception):
    pass


def render(directory):
    directory = pathlib.Path(directory)
    found = [directory / n for n in KUSTOMIZATION_NAMES if (directory / n).is_file()]
    if len(found) != 1:
        raise Problem(f"{directory}: expected one kustomization file, found {len(found)}")
    kustomization = yaml.safe_load(found[0].read_text()) or {}
    unknown = set(kustomization) - RENDERED_KEYS
    if unknown:
        raise Problem(
            f"{found[0]}: {sorted(unknown)} not rendered by tests/kubernetes/manifests.py; "
            "render it there faithfully or leave it out"
        )
    if kustomization.get("kind", "Kustomization") != "Kustomization":
        raise Problem(f"{found[0]}: kind is {kustomization['kind']}")
    documents = []
    for entry in kustomization.get("resources", []):
        if "://" in entry or entry.startswith("github.com/"):
            raise Problem(f"{found[0]}: remote resource {entry} is not rendered")
        path = directory / entry
        if path.is_dir():
            documents.extend(render(path))
        elif path.is_file():
            documents.extend(d for d in yaml.safe_load_all(path.read_text()) if d is not None)
        else:
            raise Problem(f"{found[0]}: resource {entry} does not exist")
    namespace = kustomization.get("namespace")
    if namespace:
        for doc in documents:
            if doc.get("kind") not in CLUSTER_SCOPED:
                doc.setdefault("metadata", {})["namespace"] = namespace
    seen = set()
    for doc in documents:
        key = (doc.get("kind"), doc.get("metadata", {}).get("namespace"), doc.get("metadata", {}).get("name"))
        if key in seen:
            raise Problem(f"{directory}: {key} is defined twice (kustomize refuses that)")
        seen.add(key)
    return documents


def strict(schema):
    """Closes every object schema that lists its properties and does not
    keep unknown fields, as the API server's strict field validation does
    for custom resources."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties"):
            out[key] = {name: strict(sub) for name, sub in value.items()}
        else:
            out[key] = strict(value)
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_schemas():
    schemas = {}
    for path in sorted((HERE / "schemas").glob("*.json")):
        excerpt = json.loads(path.read_text())
        schemas[(excerpt["apiVersion"], excerpt["kind"])] = (path.name, strict(excerpt["schema"]))
    return schemas


def object_meta_validator(version):
    """ObjectMeta of the given Kubernetes version (a CRD's schema says only
    `metadata: object`; the API server checks the rest)."""
    base = pathlib.Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    candidates = sorted(
        (p for p in base.glob("v*-local-strict")),
        key=lambda p: tuple(int(x) for x in p.name[1:].split("-")[0].split(".")),
    )
    wanted = tuple(int(x) for x in version.split(".")[:2])
    usable = [p for p in candidates if tuple(int(x) for x in p.name[1:].split(".")[:2]) <= wanted]
    if not usable:
        raise Problem(f"no Kubernetes schemas for version {version}")
    definitions = json.loads((usable[-1] / "_definitions.json").read_text())
    registry = Resource.from_contents(definitions) @ Registry()
    ref = {"$ref": definitions["$id"] + "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    return jsonschema.Draft202012Validator(ref, registry=registry)


def name_of(doc):
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def where(error):
    return ".".join(str(p) for p in error.absolute_path) or "(document)"


def validate(documents, versions):
    problems = []
    crds = crd_schemas()
    for version in versions:
        meta = object_meta_validator(version)
        for doc in documents:
            key = (doc.get("apiVersion"), doc.get("kind"))
            if key in crds:
                file, schema = crds[key]
                validator = jsonschema.Draft202012Validator(schema)
                for error in sorted(validator.iter_errors(doc), key=str):
                    problems.append(f"{name_of(doc)} ({file}): {where(error)}: {error.message}")
                for error in meta.iter_errors(doc.get("metadata", {})):
                    problems.append(f"{name_of(doc)} metadata (Kubernetes {version}): {where(error)}: {error.message}")
                continue
            try:
                kubernetes_validate.validate(copy.deepcopy(doc), version, strict=True)
            except kubernetes_validate.ValidationError as error:
                problems.append(f"{name_of(doc)} (Kubernetes {error.version}): {where(error)}: {error.message}")
            except kubernetes_validate.SchemaNotFoundError as error:
                problems.append(f"{name_of(doc)}: {error.message}")
    return problems


def main(argv):
    if len(argv) < 2 or argv[0] not in ("render", "validate"):
        sys.exit(__doc__)
    try:
        documents = render(argv[1])
        if argv[0] == "validate":
            versions = argv[2:]
            if not versions:
                raise Problem("validate: give at least one Kubernetes version")
            problems = validate(documents, versions)
            if problems:
                raise Problem("\n".join(problems))
    except (Problem, yaml.YAMLError) as error:
        print(error, file=sys.stderr)
        return 1
    json.dump(documents, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
