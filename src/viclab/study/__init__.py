"""The whole study of spec §3 in one call: trainings, ablations, evaluations, a report.

:func:`run_study` runs every stage of a :class:`viclab.config.StudyConfig`, cached and resumable (:mod:`.stages`),
and writes ``results.json`` and a self-contained ``report.html`` (:mod:`viclab.report.html`).
"""

from viclab.study.pipeline import run_study

__all__ = ["run_study"]
