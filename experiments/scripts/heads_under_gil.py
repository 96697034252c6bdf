"""How much a GIL-hungry thread slows the exit heads down: the five heads of the shipped checkpoint read
one after the other (nine torch calls each), quiet and with a thread that keeps the GIL busy, at a
given switch interval. docs/performance.md quotes its output ("GIL hand-offs, counted").

    for s in 0.0001 0.00005 0.00002 0.00001; do python experiments/scripts/heads_under_gil.py --switch-interval $s; done
"""

from __future__ import annotations

import torch
from gil_contention import quiet_and_busy, setup  # this folder is on sys.path when run as a script


def main() -> None:
    args, runner = setup(400)
    with torch.inference_mode():
        features = [runner.batch([torch.randn(*runner.input_size)])]
        for k in range(runner.num_exits):
            features.append(runner.stage(k, features[-1]))

    def heads() -> None:
        with torch.inference_mode():
            for k in range(runner.num_exits):
                runner.read_exit(k, features[k + 1])

    print(f"switch interval {args.switch_interval * 1e3:g} ms")
    quiet_and_busy({"heads": heads}, args.runs)


if __name__ == "__main__":
    main()
