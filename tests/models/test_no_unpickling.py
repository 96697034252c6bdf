"""Nothing in the project's packages may unpickle: no pickle-family imports, every torch.load and
hub download with weights_only=True, no numpy loads with allow_pickle=True."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("models", "training", "service", "elastic_cli", "benchmarks")
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve"}
# Loaders that unpickle unless told weights_only=True; `load` only counts as torch.load.
HUB_LOADERS = {"load_state_dict_from_url", "load_url"}


def _call_name(node: ast.Call) -> tuple[str | None, str | None]:
    """(`owner`, `name`) of a call like owner.name(...) or name(...)."""
    func = node.func
    if isinstance(func, ast.Attribute):
        owner = func.value
        owner_name = (
            owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else None
        )
        return owner_name, func.attr
    if isinstance(func, ast.Name):
        return None, func.id
    return None, None


def _keyword(node: ast.Call, name: str) -> object:
    for kw in node.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else "<not a constant>"
    return "<absent>"


def _unsafe_call(node: ast.Call) -> str | None:
    owner, name = _call_name(node)
    if owner in ("np", "numpy") and name == "load" and _keyword(node, "allow_pickle") is True:
        return f"{owner}.load(allow_pickle=True)"
    unpickles_by_default = (owner == "torch" and name == "load") or name in HUB_LOADERS
    if unpickles_by_default and _keyword(node, "weights_only") is not True:
        return f"{name}(…) without weights_only=True"
    return None


def find_unpickling(source: str, filename: str = "<source>") -> list[str]:
    """Every pickle import or unsafe load in `source`, as 'file:line: what'."""
    problems = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            bad = [a.name for a in node.names if a.name.split(".")[0] in PICKLE_MODULES]
            problems += [f"{filename}:{node.lineno}: imports {name}" for name in bad]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLE_MODULES:
            problems.append(f"{filename}:{node.lineno}: imports from {node.module}")
        elif isinstance(node, ast.Call) and (what := _unsafe_call(node)):
            problems.append(f"{filename}:{node.lineno}: {what}")
    return problems


def _sources() -> list[Path]:
    files = [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]
    assert any(p.parts[-2:] == ("models", "checkpoint.py") for p in files), "the scan must see the project"
    return files


def test_project_never_unpickles() -> None:
    problems = [p for path in _sources() for p in find_unpickling(path.read_text(), str(path.relative_to(ROOT)))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "bad",
    [
        "import pickle",
        "import cloudpickle as cp",
        "from pickle import loads",
        "import torch\nstate = torch.load(path)",
        "import torch\nstate = torch.load(path, weights_only=False)",
        "import torch\nstate = torch.load(path, map_location='cpu', weights_only=flag)",
        "import torch\nstate = torch.hub.load_state_dict_from_url(url)",
        "from torch.hub import load_state_dict_from_url\nstate = load_state_dict_from_url(url, weights_only=False)",
        "import numpy as np\na = np.load(f, allow_pickle=True)",
    ],
)
def test_the_scan_catches_unpickling(bad: str) -> None:
    assert find_unpickling(bad)


@pytest.mark.parametrize(
    "good",
    [
        "import torch\nstate = torch.load(path, weights_only=True)",
        "import torch\nstate = torch.hub.load_state_dict_from_url(url, check_hash=True, weights_only=True)",
        "import json\nmeta = json.load(f)",
        "import numpy as np\na = np.load(f, allow_pickle=False)",
        "from safetensors.torch import load_file\nstate = load_file(path)",
    ],
)
def test_the_scan_accepts_safe_loading(good: str) -> None:
    assert find_unpickling(good) == []
