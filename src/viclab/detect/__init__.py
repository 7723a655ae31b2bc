"""Anomaly detection on sensor images and sounds (spec §4, §5): fit on normal data, score new data.

``fit_detector(cfg, folder)`` fits a registered detector (:data:`DETECTORS`) on normal data and saves it as a folder;
``load_detector(folder)`` brings it back; ``run_score`` and ``run_monitor`` evaluate it. ``viclab anomaly``
(:func:`viclab.detect.anomaly.run_anomaly`) is the ``knn`` detector of trained encoders.
"""

from viclab.detect.api import fit_config, fit_detector, load_detector
from viclab.detect.data import load_normal, load_test
from viclab.detect.detectors import DETECTORS, Detector
from viclab.detect.tasks import run_monitor, run_score

__all__ = ["DETECTORS", "Detector", "fit_config", "fit_detector", "load_detector", "load_normal", "load_test",
           "run_monitor", "run_score"]
