"""The source scan of tests/models/test_no_unpickling.py covers every module of `service/`, the new
reload path included (it loads checkpoints sent by an admin at run time)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("no_unpickling_scan", ROOT / "tests/models/test_no_unpickling.py")
assert _spec and _spec.loader
scan = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scan)


def test_every_service_module_is_scanned_and_clean() -> None:
    service = sorted((ROOT / "service").rglob("*.py"))  # every wing: http, engine, worker
    scanned = set(scan._sources())
    assert {"reload.py", "admin.py", "state.py"} <= {p.name for p in service}
    assert set(service) <= scanned
    for path in service:
        assert scan.find_unpickling(path.read_text(), str(path)) == []
