"""Dockerfile: pinned bases, builder -> runtime stages, one target per image (IMAGES) with only
its own package's locked dependencies (no TensorFlow where it is not needed), no compilers at
runtime, non-root, a HEALTHCHECK asking the image's own server."""

from __future__ import annotations

import re
from pathlib import Path

from expected import (
    GATEWAY_PORT,
    HEALTH_NAMES,
    IMAGES,
    NO_TENSORFLOW,
    ONE_OFF_IMAGES,
    PORTS,
    image_pinned,
    locked_closure,
    makefile_image_targets,
)
from report import Report

COMPILERS = ("g++", "gcc", "cmake", "build-essential", "clang")


def parse_stages(text: str) -> dict[str, dict]:
    """name -> {base, body (instructions, continuation lines joined)} in file order."""
    joined = re.sub(r"\\\n", " ", text)
    stages: dict[str, dict] = {}
    current = None
    for line in joined.splitlines():
        m = re.match(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if m:
            current = {"base": m.group(1), "body": []}
            stages[m.group(2) or f"#{len(stages)}"] = current
        elif current is not None and line.strip() and not line.lstrip().startswith("#"):
            current["body"].append(line.strip())
    return stages


def chain(stages: dict[str, dict], name: str) -> list[dict]:
    """The stage and the stages it is built FROM, nearest first."""
    out = []
    while name in stages and len(out) <= len(stages):
        out.append(stages[name])
        name = stages[name]["base"]
    return out


def last_instruction(stages: dict[str, dict], name: str, keyword: str) -> str | None:
    """The instruction in effect for a target (USER, HEALTHCHECK, CMD are inherited)."""
    for stage in chain(stages, name):
        found = [i for i in stage["body"] if i.split(None, 1)[0].upper() == keyword]
        if found:
            return found[-1]
    return None


def check_dockerfile(path: Path) -> int:
    r = Report(f"dockerfile {path.name}")
    text = path.read_text()
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.M))
    stages = parse_stages(text)
    for name, stage in stages.items():
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), stage["base"])
        if resolved in stages:
            continue  # FROM an earlier stage
        r.check(image_pinned(resolved), f"stage {name}: base image {resolved!r} not pinned by tag/digest")
    r.check("builder" in stages and "runtime" in stages, "stages builder and runtime are required")
    builder = " ".join(stages.get("builder", {}).get("body", []))
    r.check("g++" in builder and "cmake" in builder, "builder must install g++ and cmake (hemovision-pixels' _core)")
    r.check(sorted(makefile_image_targets()) == sorted(IMAGES),
            f"Makefile IMAGE_TARGETS {makefile_image_targets()} must be the images {sorted(IMAGES)}")

    for target, packages in IMAGES.items():
        if not r.check(target in stages, f"no Dockerfile target {target!r}"):
            continue
        lineage = [s["base"] for s in chain(stages, target)]
        r.check("runtime" in lineage, f"{target}: must be built FROM runtime")
        # no compilers in what the image is made of (the builder stages are left behind)
        for stage in chain(stages, target):
            body = " ".join(stage["body"])
            for tool in COMPILERS:
                r.check(not re.search(rf"apt-get install[^&;]*{re.escape(tool)}", body),
                        f"{target}: installs {tool} (runtime images carry no compilers)")
        # its virtual environment: a venv stage syncing exactly its packages, copied in
        copies = [i for i in stages[target]["body"] if i.startswith("COPY") and "/opt/venv" in i]
        source = re.search(r"--from=(\S+)", copies[0]).group(1) if copies else None
        if not r.check(source in stages, f"{target}: must COPY --from=<venv stage> /opt/venv"):
            continue
        syncs = [i for i in stages[source]["body"] if "uv sync" in i]
        r.check(bool(syncs), f"{target}: stage {source} runs no `uv sync`")
        for sync in syncs:
            r.check("--frozen" in sync and "--no-dev" in sync, f"{target}: `uv sync --frozen --no-dev` ({sync})")
            r.check("--all-packages" not in sync, f"{target}: installs every workspace member (--all-packages)")
            r.check(sorted(re.findall(r"--package\s+(\S+)", sync)) == sorted(packages),
                    f"{target}: uv sync must install exactly --package {packages}: {sync}")
            r.check(not re.search(r"\b(pip|uv pip) install\b", sync), f"{target}: pip installs beside the lock")
        r.check(any("--no-editable" in s for s in syncs), f"{target}: workspace members installed --no-editable")
        if target in NO_TENSORFLOW:
            r.check(all("tensorflow" not in " ".join(s["body"]) for s in [*chain(stages, source), *chain(stages, target)]),
                    f"{target}: a stage it is made of mentions tensorflow")
            tf = sorted(p for p in locked_closure(packages) if p.startswith("tensorflow"))
            r.check(not tf, f"{target}: its locked dependencies include {tf} (uv.lock); the image must not")

        # non-root, health-checked, the right command
        user = last_instruction(stages, target, "USER")
        r.check(user is not None and re.match(r"USER\s+(?!root\b|0\b|0:)\S+", user) is not None,
                f"{target}: must run as a non-root USER (got {user})")
        health = last_instruction(stages, target, "HEALTHCHECK") or ""
        cmd = last_instruction(stages, target, "CMD") or ""
        if target in ONE_OFF_IMAGES:
            r.check(health.startswith("HEALTHCHECK"), f"{target}: HEALTHCHECK (NONE for a one-off) must be stated")
        elif target == "gateway":
            r.check(f"127.0.0.1:{GATEWAY_PORT}/readyz" in health, f"gateway: HEALTHCHECK must GET /readyz: {health!r}")
            r.check("hemovision_gateway" in cmd and "serve" in cmd, "gateway: CMD serves the gateway")
        else:
            r.check(target in PORTS, f"{target}: not a gRPC service of the topology")
            if target in PORTS:
                want = f'"hv-grpc-health", "127.0.0.1:{PORTS[target]}", "{HEALTH_NAMES[target]}"'
                r.check(want in health, f"{target}: HEALTHCHECK must run {want}: {health!r}")
                r.check(f'"hemovision_{target}", "serve"' in cmd, f"{target}: CMD must serve hemovision_{target}")

    r.check(re.search(r"COPY[^\n]*grpc-health\.py\s+/usr/local/bin/hv-grpc-health", text) is not None,
            "runtime must install deploy/docker/grpc-health.py as hv-grpc-health")
    dockerignore = (path.parent / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "models"):
        r.check(entry in dockerignore, f".dockerignore should exclude {entry}")
    return r.finish()
