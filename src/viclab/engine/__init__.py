"""Training: the one loop (:mod:`~viclab.engine.loop`), VICReg on views, run folders and checkpoints."""

from viclab.engine.loop import BatchSource, FitResult, Objective, fit
from viclab.engine.rundir import RunFolder
from viclab.engine.vicreg import TrainResult, ViewContext, ViewSource, evaluate_terms, train

__all__ = ["BatchSource", "FitResult", "Objective", "RunFolder", "TrainResult", "ViewContext", "ViewSource",
           "evaluate_terms", "fit", "train"]
