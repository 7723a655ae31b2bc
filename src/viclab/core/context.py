"""What a command's work runs under, passed as one value instead of a parameter per fact."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from viclab.core.runtime import Runtime


@dataclass(frozen=True)
class Context:
    """How a piece of work reports and where it runs, chosen by its caller (the CLI, the study, a test).

    Attributes:
        progress: show progress bars.
        echo: where one-line status messages go (e.g. the per-epoch summaries).
        runtime: the device and precision, or ``None``: chosen from the config (``train.device``, ``train.precision``).
        data_dir: the data root, or ``None``: the config's.
    """

    progress: bool = True
    echo: Callable[[str], None] = print
    runtime: Runtime | None = None
    data_dir: str | Path | None = None

    def main_only(self, main: bool) -> Context:
        """This context, silenced on a process other than rank 0 (``main`` false): only rank 0 speaks."""
        return self if main else replace(self, progress=False, echo=_silent)

    def reading(self, data_dir: str | Path | None) -> Context:
        """This context with ``data_dir`` as its data root when one is given (a library caller's keyword)."""
        return replace(self, data_dir=data_dir) if data_dir else self


def _silent(_line: str) -> None:
    """An ``echo`` that drops the line."""


DEFAULT_CONTEXT = Context()  # bars shown, lines printed: what a caller that passes no context gets
QUIET = Context(progress=False, echo=_silent)  # no bars, no lines: tests, benchmarks, nested work
