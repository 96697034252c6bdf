"""The objects a process keeps for its whole life, taken out of the garbage collector's reach once it is set up.

CPython's collector walks every container object of a generation it collects. After start-up a server
holds hundreds of thousands of them that never die (modules, the app and its schemas, torch's and the
model's objects), and a full (generation 2) collection walks them all: measured on the 2-core VM while
serving, 41–56 ms in the front end and 182–236 ms in the inference process. One of those stalls every request
in flight past its deadline. `gc.freeze()` moves what is alive into a permanent generation that no
collection visits, so a later full collection walks only what was allocated since (docs/performance.md,
"Pauses of the garbage collector"). Called by each process once it is ready, and by the inference process
again after a reload (the new model; the front end's own reload swaps only a small model card).
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)


def freeze_long_lived(where: str, collect_first: bool = True) -> int:
    """Freeze every object alive now (after a full collection, unless `collect_first` is False: a process
    that is serving must not stall for one). Returns how many objects are frozen in all."""
    started = time.perf_counter()
    if collect_first:
        gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("%s: %d long-lived objects frozen out of the collector's reach (%.0f ms)", where, frozen,
             1e3 * (time.perf_counter() - started))  # fmt: skip
    return frozen
