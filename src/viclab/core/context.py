"""What a command's work runs under, passed as one value instead of a parameter per fact."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from viclab.core.runtime import Runtime


@dataclass(frozen=True)
class Context:
    """How a piece of work reports and where it runs, chosen by its caller (the CLI, the study, a test).

    Attributes:
        progress: show progress bars.
        echo: where one-line status messages go (e.g. the per-epoch summaries).
        runtime: the device and precision, or ``None``: chosen from the config (``train.device``,
            ``train.precision``).
        data_dir: the data root, or ``None``: the config's.
        cache: the cache root, or ``None``: ``$VICLAB_CACHE`` or the per-user default.
    """

    progress: bool = True
    echo: Callable[[str], None] = print
    runtime: Runtime | None = None
    data_dir: Path | None = None
    cache: Path | None = None

    def main_only(self, main: bool) -> Context:
        """This context, silenced on a process other than rank 0 (``main`` false): only rank 0 speaks."""
        if main:
            return self
        return Context(False, _silent, self.runtime, self.data_dir, self.cache)


def _silent(_line: str) -> None:
    """An ``echo`` that drops the line."""


DEFAULT_CONTEXT = Context()  # bars shown, lines printed: what a caller that passes no context gets
QUIET = Context(progress=False, echo=_silent)  # no bars, no lines: tests, benchmarks, nested work
