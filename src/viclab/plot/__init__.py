"""Every figure: one module of PNG/HTML plots (scatter, grids, ROC/PR, curves, monitor)."""
