"""Self-supervised objectives built from public pure term functions."""

from viclab.losses.reconstruction import reconstruction_errors, reconstruction_loss
from viclab.losses.vicreg import VICRegLoss, VICRegTerms, covariance, invariance, variance

__all__ = ["VICRegLoss", "VICRegTerms", "covariance", "invariance", "reconstruction_errors", "reconstruction_loss",
           "variance"]
