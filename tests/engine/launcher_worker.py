"""One rank of the launcher-loss test (run by tests/train/test_distributed.py under torchrun).

    python launcher_worker.py FOLDER

Joins the gloo group, writes ``FOLDER/rank<N>.pid``, then waits as ranks do while rank 0 works
alone: rank 0 sleeps (an evaluation), rank 1 waits for it in a barrier. Rank 0 gives up after
two minutes, so even a rank that never notices its launcher is gone does not linger for long.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

from viclab.core.runtime import barrier, get_rank, init_distributed


def main() -> None:
    folder = Path(sys.argv[1])
    init_distributed(torch.device("cpu"))
    (folder / f"rank{get_rank()}.pid").write_text(str(os.getpid()))
    if get_rank() == 0:
        time.sleep(120)
    else:
        barrier()


if __name__ == "__main__":
    main()
