"""Dockerfile: pinned bases, builder -> runtime stages, no compilers at runtime, non-root."""

from __future__ import annotations

import re
from pathlib import Path

from expected import image_pinned
from report import Report


def check_dockerfile(path: Path) -> int:
    r = Report(f"dockerfile {path.name}")
    text = path.read_text()
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.M))
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M | re.I)
    for image, _stage in stages:
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)
        if resolved in {s for _, s in stages}:
            continue  # FROM an earlier stage
        r.check(image_pinned(resolved), f"base image {resolved!r} not pinned by tag/digest")
    stage_names = [s for _, s in stages]
    r.check("builder" in stage_names and stage_names[-1] == "runtime", "stages builder ... runtime (last)")
    r.check("uv sync --frozen --all-packages" in text, "builder must `uv sync --frozen --all-packages`")
    r.check(re.search(r"apt-get install[^\n]*(g\+\+|cmake)", text) is not None, "builder must install g++/cmake")
    runtime = text[text.rfind("AS runtime"):]
    r.check("g++" not in runtime and "cmake" not in runtime, "runtime stage must not carry compilers")
    r.check(re.search(r"^USER\s+(?!root|0\b)\S+", runtime, re.M) is not None, "runtime must run as a non-root USER")
    dockerignore = (path.parent / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "models"):
        r.check(entry in dockerignore, f".dockerignore should exclude {entry}")
    return r.finish()
