"""What the distribution installs: every package folder of the repository under the one name
`elastic_anytime` (pyproject.toml), so that nothing it installs can collide with another project's
top-level `service` or `models` in site-packages."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_package_folder_is_installed_under_elastic_anytime() -> None:
    setuptools = PYPROJECT["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    expected = set()
    for name, folder in setuptools["package-dir"].items():
        root = REPO / folder
        for init in root.rglob("__init__.py"):
            parts = init.parent.relative_to(root).parts
            expected.add(".".join((name, *parts)))
    assert listed == expected
    assert all(name == "elastic_anytime" or name.startswith("elastic_anytime.") for name in listed)


def test_the_entry_point_and_its_module_exist() -> None:
    entry = PYPROJECT["project"]["scripts"]["elastic"]
    module, function = entry.split(":")
    assert module.startswith("elastic_anytime.")
    folder = PYPROJECT["tool"]["setuptools"]["package-dir"]["elastic_anytime.elastic_cli"]
    source = (REPO / folder / "main.py").read_text()
    assert module == "elastic_anytime.elastic_cli.main" and f"def {function}(" in source
