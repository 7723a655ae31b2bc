"""Anomaly detection on sensor images (spec §4): fit on normal data, score new data.

``fit_detector(cfg, folder)`` fits a registered detector (:data:`DETECTORS`: ``knn``,
``mahalanobis``, ``vicreg_terms``, ``autoencoder``) on normal images and saves it as a folder;
``load_detector(folder)`` brings it back; ``run_score`` and ``run_monitor`` evaluate it.
``viclab anomaly`` (:func:`viclab.detect.anomaly.run_anomaly`) is the ``knn`` detector of trained encoders.
"""

from viclab.detect.api import fit_config, fit_detector, load_detector
from viclab.detect.data import TestSet, load_normal, load_test
from viclab.detect.detectors import DETECTORS, Detector
from viclab.detect.tasks import batch_terms, run_monitor, run_score

__all__ = ["DETECTORS", "Detector", "TestSet", "batch_terms", "fit_config", "fit_detector", "load_detector",
           "load_normal", "load_test", "run_monitor", "run_score"]
