"""Training: the one loop (:mod:`~viclab.train.engine`), VICReg on views, run folders and checkpoints."""

from viclab.train.engine import BatchSource, FitResult, Objective, fit
from viclab.train.rundir import RunFolder
from viclab.train.vicreg import TrainResult, ViewContext, ViewSource, evaluate_terms, train

__all__ = ["BatchSource", "FitResult", "Objective", "RunFolder", "TrainResult", "ViewContext", "ViewSource",
           "evaluate_terms", "fit", "train"]
