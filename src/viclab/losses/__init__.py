"""Self-supervised objectives built from public pure term functions."""

from viclab.losses.reconstruction import reconstruction_errors, reconstruction_loss
from viclab.losses.shift import ShiftTerms, ShiftVICRegLoss, shift_prediction
from viclab.losses.vicreg import VICRegLoss, VICRegTerms, covariance, invariance, variance

__all__ = ["ShiftTerms", "ShiftVICRegLoss", "VICRegLoss", "VICRegTerms", "covariance", "invariance",
           "reconstruction_errors", "reconstruction_loss", "shift_prediction", "variance"]
