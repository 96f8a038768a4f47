"""attnlab: Hydra-driven sweeps that measure when softmax attention finds the feature that
carries the label, over many seeds trained together."""

__version__ = "0.1.0"
