"""automixer: find the pretraining data mixture that maximises what a model will be good at."""

__version__ = "0.1.0"
