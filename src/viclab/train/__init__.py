"""VICReg training loop, run folders and checkpoints."""

from viclab.train.loop import TrainResult, evaluate_terms, train

__all__ = ["TrainResult", "evaluate_terms", "train"]
