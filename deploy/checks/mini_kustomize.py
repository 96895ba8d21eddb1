"""A small, offline stand-in for `kubectl kustomize`, used only where kubectl is missing.

    python deploy/checks/mini_kustomize.py deploy/k8s/overlays/prod > rendered.yaml

It implements exactly the kustomize features deploy/k8s uses — resources (files and
directories), components, namespace, labels (pairs, includeSelectors false,
includeTemplates), images (newName/newTag/digest), replicas, and patches (strategic
merge by file, lists of named items merged by name, `$patch: delete`; JSON 6902
add/remove/replace with a target) — and fails loudly on anything else, so a new
feature in the manifests cannot be silently mis-rendered. scripts/validate_deploy.sh
compares its output with kubectl's wherever both exist, which keeps the two honest.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import yaml

KNOWN_KEYS = {"apiVersion", "kind", "namespace", "resources", "components", "labels", "images",
              "replicas", "patches"}
# lists merged element-wise by this key in strategic merge patches (the ones we patch)
MERGE_KEYS = {"containers": "name", "initContainers": "name", "volumes": "name", "volumeMounts": "mountPath",
              "env": "name", "ports": "containerPort"}


class Unsupported(Exception):
    pass


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def render(folder: Path) -> list[dict]:
    kfile = folder / "kustomization.yaml"
    k = yaml.safe_load(kfile.read_text())
    unknown = set(k) - KNOWN_KEYS
    if unknown:
        raise Unsupported(f"{kfile}: unsupported fields {sorted(unknown)}")
    resources: list[dict] = []
    for entry in k.get("resources", []):
        target = folder / entry
        resources += render(target) if target.is_dir() else load_docs(target)
    for entry in k.get("components", []):
        resources += render(folder / entry)
    for p in k.get("patches", []):
        resources = apply_patch(resources, folder, p)
    if "namespace" in k:
        for r in resources:
            if r["kind"] == "Namespace":
                r["metadata"]["name"] = k["namespace"]
            else:
                r["metadata"]["namespace"] = k["namespace"]
    for group in k.get("labels", []):
        if group.get("includeSelectors"):
            raise Unsupported("labels.includeSelectors: true")
        for r in resources:
            r["metadata"].setdefault("labels", {}).update(group["pairs"])
            template = r.get("spec", {}).get("template") if isinstance(r.get("spec"), dict) else None
            if group.get("includeTemplates") and template is not None:
                template.setdefault("metadata", {}).setdefault("labels", {}).update(group["pairs"])
    for image in k.get("images", []):
        for r in resources:
            for c in pod_containers(r):
                set_image(c, image)
    for rep in k.get("replicas", []):
        hits = [r for r in resources if r["kind"] == "Deployment" and r["metadata"]["name"] == rep["name"]]
        if not hits:
            raise Unsupported(f"replicas: no Deployment {rep['name']}")
        for r in hits:
            r["spec"]["replicas"] = rep["count"]
    return resources


def pod_containers(r: dict) -> list[dict]:
    spec = r.get("spec") if isinstance(r.get("spec"), dict) else {}
    template = spec.get("template", {})
    pod = template.get("spec", {}) if isinstance(template, dict) else {}
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def set_image(container: dict, image: dict) -> None:
    current = container["image"]
    if "@" in current:
        name, tag = current.split("@", 1)[0], None
    elif ":" in current.rsplit("/", 1)[-1]:
        name, tag = current.rsplit(":", 1)
    else:
        name, tag = current, None
    if name != image["name"]:
        return
    new = image.get("newName", name)
    if "digest" in image:
        container["image"] = f"{new}@{image['digest']}"
    elif "newTag" in image:
        container["image"] = f"{new}:{image['newTag']}"
    else:
        container["image"] = f"{new}:{tag}" if tag else new


def apply_patch(resources: list[dict], folder: Path, p: dict) -> list[dict]:
    if set(p) - {"path", "target"}:
        raise Unsupported(f"patch fields {sorted(p)}")
    docs = load_docs(folder / p["path"])
    if "target" in p:
        t = p["target"]
        if set(t) - {"kind", "name"}:
            raise Unsupported(f"patch target fields {sorted(t)}")
        ops = docs[0] if len(docs) == 1 and isinstance(docs[0], list) else None
        if ops is None:
            raise Unsupported(f"{p['path']}: only JSON 6902 patches take a target here")
        hits = [r for r in resources if r["kind"] == t["kind"] and r["metadata"]["name"] == t["name"]]
        if not hits:
            raise Unsupported(f"{p['path']}: no {t['kind']}/{t['name']}")
        for r in hits:
            for op in ops:
                json6902(r, op)
        return resources
    for patch in docs:
        hits = [r for r in resources if r["kind"] == patch["kind"] and r["metadata"]["name"] == patch["metadata"]["name"]]
        if len(hits) != 1:
            raise Unsupported(f"{p['path']}: {patch['kind']}/{patch['metadata']['name']} matches {len(hits)}")
        if patch.get("$patch") == "delete":
            resources = [r for r in resources if r is not hits[0]]
        else:
            strategic_merge(hits[0], patch)
    return resources


def strategic_merge(target: dict, patch: dict) -> None:
    for key, value in patch.items():
        if key == "$patch":
            raise Unsupported(f"$patch: {value} inside an object")
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            strategic_merge(target[key], value)
        elif isinstance(value, list) and key in MERGE_KEYS and isinstance(target.get(key), list):
            merge_key = MERGE_KEYS[key]
            for item in value:
                match = [t for t in target[key] if t.get(merge_key) == item.get(merge_key)]
                if match:
                    strategic_merge(match[0], item)
                else:
                    target[key].append(copy.deepcopy(item))
        else:
            target[key] = copy.deepcopy(value)


def json6902(doc: dict, op: dict) -> None:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
    parent = doc
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = parts[-1]
    if op["op"] == "remove":
        del parent[int(last) if isinstance(parent, list) else last]
    elif op["op"] in ("add", "replace"):
        if isinstance(parent, list):
            if last == "-":
                parent.append(op["value"])
            elif op["op"] == "add":
                parent.insert(int(last), op["value"])
            else:
                parent[int(last)] = op["value"]
        else:
            parent[last] = op["value"]
    else:
        raise Unsupported(f"JSON 6902 op {op['op']}")


def same_objects(ours: list[dict], theirs: list[dict]) -> list[str]:
    """Differences between two renderings, compared as sets of objects (order ignored)."""
    def index(docs: list[dict]) -> dict:
        return {(d["kind"], d["metadata"]["name"]): d for d in docs}

    a, b = index(ours), index(theirs)
    diffs = [f"only in mini_kustomize: {k}" for k in a.keys() - b.keys()]
    diffs += [f"only in kubectl: {k}" for k in b.keys() - a.keys()]
    diffs += [f"differs: {k}" for k in a.keys() & b.keys() if a[k] != b[k]]
    return sorted(diffs)


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 3) or (len(argv) == 3 and argv[1] != "--compare"):
        print("usage: mini_kustomize.py KUSTOMIZATION_DIR [--compare KUBECTL_RENDERED.yaml]", file=sys.stderr)
        return 2
    try:
        docs = render(Path(argv[0]))
    except Unsupported as exc:
        print(f"mini_kustomize: unsupported: {exc}", file=sys.stderr)
        return 1
    if len(argv) == 3:
        diffs = same_objects(docs, load_docs(Path(argv[2])))
        for d in diffs:
            print(f"  mini_kustomize vs kubectl kustomize ({argv[0]}): {d}", file=sys.stderr)
        return 1 if diffs else 0
    sys.stdout.write("---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
