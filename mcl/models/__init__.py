"""Flax linen models, chosen by name from an explicit registry."""

from mcl.models.conv_classifier import ConvClassifier, head_name
from mcl.models.progressive_net import ProgressiveNet

MODELS = {
  "conv_classifier": ConvClassifier,
  "progressive_net": ProgressiveNet,
}


def get_model_class(name: str):
  """The model class registered as `name`.

  Raises:
    ValueError: unknown name; the message lists the known ones.
  """
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
  return MODELS[name]


__all__ = [
  "MODELS",
  "ConvClassifier",
  "ProgressiveNet",
  "get_model_class",
  "head_name",
]
