"""viclab: VICReg self-supervised learning and what people do with its representations."""

__version__ = "0.1.0"
