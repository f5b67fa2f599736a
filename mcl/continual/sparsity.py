"""DEN's sparsity: L1 and group-lasso proximal steps in Adam's metric.

Yoon et al. (ICLR 2018) make the network sparse with an L1 term (Eq. 2,
task 1; Eq. 3, the new head) and group sparsity (l2,1, dynamic expansion),
applied as proximal steps after each optimizer step so that weights become
exact zeros. A proximal step soft-thresholds by step size x lambda. With
Adam the step size is per coordinate, lr / (sqrt(v_i) + eps) (v the
bias-corrected second moment, `mcl.trainer.optimizer.AdamMetric`), so the
thresholds here are lambda times that step size, lambda in gradient units (the
proximal map under Adam's diagonal metric; Yun et al., NeurIPS 2021). What
follows:

- a weight whose gradient's running mean |m_i| exceeds lambda moves away
  from zero, one whose gradient is smaller is pulled to zero, and one with
  no gradient at all (v_i = 0) is zeroed at once;
- the threshold never cancels the optimizer's step wholesale, as a plain
  lr * lambda does when lambda is near 1 (every coordinate then shrinks by
  about Adam's whole step, and a zero weight stays zero).

A group g of n_g weights is shrunk as a whole, by
max(0, 1 - thr_g / ||w_g||_2) with thr_g = lambda_g sqrt(n_g) lr /
(sqrt(mean_g v) + eps): the usual sqrt(group size) weighting (Yuan & Lin
2006) and the group's mean second moment as its scalar metric (the
diagonal metric has no closed-form group prox; this is its isotropic
approximation). Two kinds of group:

- connections: each (input channel, output channel) kernel slice of a conv
  layer ([kh, kw] taps), so that the breadth-first search of selective
  retraining, which reads a channel pair as connected when any tap is
  nonzero, finds a genuinely sparse sub-network;
- units: one unit's incoming kernel column and bias (dynamic expansion:
  a unit whose group reaches zero is dead and is pruned).

Only kernels are penalised by L1; biases only as members of unit groups.
Every map leaves entries whose trainable mask is 0 untouched. Each is a
`mcl.trainer.train.Term` whose strengths (and unit masks) are array arguments,
so phases with other strengths reuse the compiled step.
"""

import dataclasses
import math
from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from mcl.trainer import train

Params = dict


def _soft_threshold(w, threshold):
  return jnp.sign(w) * jnp.maximum(jnp.abs(w) - threshold, 0.0)


def _group_scale(norm, threshold):
  """max(0, 1 - threshold / norm), 0 where norm is 0."""
  return jnp.maximum(0.0, 1.0 - threshold / jnp.maximum(norm, 1e-30))


@dataclasses.dataclass(frozen=True)
class _L1:
  names: tuple[str, ...] | None

  def __call__(self, params, trainable, metric, args):
    out = dict(params)
    chosen = (
      self.names
      if self.names is not None
      else [n for n, group in params.items() if "kernel" in group]
    )
    for name in chosen:
      kernel = params[name]["kernel"]
      threshold = args["strength"] * metric.step_size(
        metric.second_moment[name]["kernel"]
      )
      shrunk = _soft_threshold(kernel, threshold)
      out[name] = {
        **params[name],
        "kernel": jnp.where(trainable[name]["kernel"] > 0, shrunk, kernel),
      }
    return out


def l1(strength: float, names: Sequence[str] | None = None) -> train.Term:
  """Proximal step of strength * ||W||_1 over kernels (Eq. 2 and 3).

  Args:
    strength: lambda, in gradient units (see the module docstring).
    names: parameter groups whose kernels are penalised; None for every
      group that has a kernel.

  Returns:
    proximal(params, trainable, metric): kernel entry i becomes
    sign(w_i) max(|w_i| - lambda * metric.step_size(v_i), 0) where trainable.
  """
  names = None if names is None else tuple(names)
  return train.Term(_L1(names), {"strength": jnp.float32(strength)})


@dataclasses.dataclass(frozen=True)
class _ConnectionGroups:
  names: tuple[str, ...]

  def __call__(self, params, trainable, metric, args):
    out = dict(params)
    for name in self.names:
      kernel = params[name]["kernel"]
      if kernel.ndim != 4:
        continue
      v = metric.second_moment[name]["kernel"]
      taps = kernel.shape[0] * kernel.shape[1]
      norm = jnp.sqrt(jnp.sum(jnp.square(kernel), axis=(0, 1)))
      threshold = (
        args["strength"]
        * math.sqrt(taps)
        * metric.step_size(jnp.mean(v, axis=(0, 1)))
      )
      scale = _group_scale(norm, threshold)
      scale = jnp.where(
        trainable[name]["kernel"].min(axis=(0, 1)) > 0, scale, 1.0
      )
      out[name] = {**params[name], "kernel": kernel * scale}
    return out


def connection_groups(strength: float, names: Sequence[str]) -> train.Term:
  """Group lasso over the (input, output) channel slices of conv kernels.

  Args:
    strength: lambda_g, in gradient units.
    names: conv layers (kernels [kh, kw, in, out]); other layers are
      skipped (a dense connection is one weight: L1 covers it).

  Returns:
    proximal(params, trainable, metric) that scales every trainable slice
    kernel[:, :, a, b] by max(0, 1 - thr / ||slice||_2), thr as in the
    module docstring with n_g = kh * kw.
  """
  return train.Term(
    _ConnectionGroups(tuple(names)), {"strength": jnp.float32(strength)}
  )


@dataclasses.dataclass(frozen=True)
class _UnitGroups:
  def __call__(self, params, trainable, metric, args):
    out = dict(params)
    for name, is_group in args["units"].items():
      is_group = is_group & (trainable[name]["bias"] > 0)
      kernel, bias = params[name]["kernel"], params[name]["bias"]
      axes = tuple(range(kernel.ndim - 1))
      size = int(np.prod(kernel.shape[:-1])) + 1
      norm = jnp.sqrt(jnp.sum(jnp.square(kernel), axis=axes) + bias**2)
      v = metric.second_moment[name]
      mean_v = (jnp.sum(v["kernel"], axis=axes) + v["bias"]) / size
      threshold = args["strength"] * math.sqrt(size) * metric.step_size(mean_v)
      scale = jnp.where(is_group, _group_scale(norm, threshold), 1.0)
      out[name] = {"kernel": kernel * scale, "bias": bias * scale}
    return out


def unit_groups(strength: float, units: Mapping[str, np.ndarray]) -> train.Term:
  """Group lasso over units' incoming weights and biases (expansion).

  Args:
    strength: lambda_g, in gradient units.
    units: {layer: bool [units]}, the units that form groups (the new ones).

  Returns:
    proximal(params, trainable, metric) that scales unit b's kernel column
    [..., b] and bias [b] by max(0, 1 - thr / ||(column, bias)||_2), thr
    as in the module docstring with n_g = fan-in + 1.
  """
  return train.Term(
    _UnitGroups(),
    {
      "strength": jnp.float32(strength),
      "units": {name: jnp.asarray(u, bool) for name, u in units.items()},
    },
  )


def connection_sparsity(params: Params, layers: Sequence[str]) -> dict:
  """Share of exact-zero kernel entries and of all-zero channel pairs.

  Returns:
    {layer: {"zero_weights": float, "zero_connections": float}}; a
    connection is one (input, output) kernel slice (one weight for dense).
  """
  out = {}
  for name in layers:
    kernel = np.asarray(params[name]["kernel"])
    pairs = np.any(kernel != 0, axis=tuple(range(kernel.ndim - 2)))
    out[name] = {
      "zero_weights": float(np.mean(kernel == 0)),
      "zero_connections": float(np.mean(~pairs)),
    }
  return out
