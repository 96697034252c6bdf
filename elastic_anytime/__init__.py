"""Elastic: anytime inference serving with elastic (multi-exit) networks.

One namespace for what the distribution installs, so that none of it can collide with another project's
top-level names in site-packages: `elastic_anytime.models`, `.training`, `.service`, `.benchmarks` and
`.elastic_cli` are the repository's top-level folders of the same names (pyproject.toml maps them).
"""

__version__ = "0.1.0"
