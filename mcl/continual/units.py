"""Unit primitives of the chain layout of `mcl.continual.surgery`.

A unit is an output column of a hidden layer (a dense neuron or a conv
channel: the last axis of its kernel [..., in, out] and of its bias
[out]); its consumers (the next hidden layer, or every head after the last
one) read it in their kernel rows (axis -2). These operations append or
remove units with their consumers' rows, and measure units; they take
numpy trees and return new ones, nothing mutated.
"""

from collections.abc import Mapping, Sequence

import numpy as np


def copy(params: dict) -> dict:
  """A copy of the tree, every array copied."""
  return {
    name: {k: np.array(v) for k, v in layer.items()}
    for name, layer in params.items()
  }


def consumers(
  layers: Sequence[str], heads: Sequence[str], layer: str
) -> tuple[str, ...]:
  """Layers whose kernel rows are the units of `layer`."""
  i = list(layers).index(layer)
  return (layers[i + 1],) if i + 1 < len(layers) else tuple(heads)


def add_units(
  params: dict,
  layers: Sequence[str],
  heads: Sequence[str],
  layer: str,
  incoming: np.ndarray,
  bias: np.ndarray,
  outgoing: Mapping[str, np.ndarray],
) -> dict:
  """Appends n units to `layer`.

  Args:
    params: the tree.
    layers: hidden layer names, input to output.
    heads: head names.
    layer: the layer to grow.
    incoming: [..., in, n] kernel columns of the new units.
    bias: [n] their biases.
    outgoing: {consumer: [..., n, out]} kernel rows of the new units in
      every consumer of `layer`.

  Returns:
    A new tree with the units appended as the last columns of `layer` and
    the last rows of its consumers.

  Raises:
    ValueError: a shape does not fit or a consumer is missing.
  """
  new = copy(params)
  kernel = new[layer]["kernel"]
  if incoming.shape[:-1] != kernel.shape[:-1] or bias.shape != (
    incoming.shape[-1],
  ):
    raise ValueError(
      f"{layer}: new units {incoming.shape}/{bias.shape} do not fit kernel "
      f"{kernel.shape}"
    )
  new[layer]["kernel"] = np.concatenate([kernel, incoming], axis=-1)
  new[layer]["bias"] = np.concatenate([new[layer]["bias"], bias])
  for name in consumers(layers, heads, layer):
    if name not in outgoing:
      raise ValueError(f"{layer}: no outgoing rows for consumer {name}")
    new[name]["kernel"] = np.concatenate(
      [new[name]["kernel"], outgoing[name]], axis=-2
    )
  return new


def keep_units(
  params: dict,
  layers: Sequence[str],
  heads: Sequence[str],
  layer: str,
  keep: np.ndarray,
) -> dict:
  """Removes the units of `layer` where `keep` is False.

  Args:
    params: the tree.
    layers: hidden layer names.
    heads: head names.
    layer: the layer to shrink.
    keep: bool [units].

  Returns:
    A new tree without those columns of `layer` and rows of its consumers.
  """
  new = copy(params)
  new[layer]["kernel"] = new[layer]["kernel"][..., keep]
  new[layer]["bias"] = new[layer]["bias"][keep]
  for name in consumers(layers, heads, layer):
    new[name]["kernel"] = new[name]["kernel"][..., keep, :]
  return new


def group_norms(params: dict, layer: str) -> np.ndarray:
  """L2 norm of every unit's incoming weights and bias: float [units]."""
  kernel = params[layer]["kernel"]
  squares = np.sum(
    np.square(kernel, dtype=np.float64), axis=tuple(range(kernel.ndim - 1))
  )
  return np.sqrt(squares + np.square(params[layer]["bias"], dtype=np.float64))
