"""Gradient Projection Memory: updates orthogonal to old tasks' inputs.

Saha, Garg & Roy, "Gradient Projection Memory for Continual Learning"
(ICLR 2021). A layer computes W^T x on its input x (here x carries a
constant 1 last, so the bias is one more row of W); a change dW leaves the
output on an old input unchanged when dW^T x = 0. GPM keeps, per layer, an
orthonormal basis M of the span of the inputs seen on old tasks (the
representation matrix R = [x_1 ... x_n], rows x samples, Sec. 4) and keeps
every later change in the orthogonal complement of M, so old tasks' outputs
move only through the part of their inputs M does not capture.

Rows of a layer's weight matrix, the space its basis lives in:

- conv [kh, kw, in, out]: `kernel.reshape(-1, out)`, i.e. the 3x3 SAME
  patch of the layer's input flattened as [kh, kw, in] (one sample per
  example and output position), then the bias;
- dense [in, out]: the input vector, then the bias.

Three pieces, pure and jit-free except the last:

- `layer_inputs`: R of every hidden layer of a `ConvClassifier` on a batch;
- `update_bases`: the memory update of Eq. 5-9 / Algorithm 1, with
  `pad_bases` for layers whose input grew since (DEN adds units);
- `projection`: a proximal `mcl.trainer.train.Term` that keeps the accumulated
  change W - W_ref of each layer orthogonal to M.
"""

import dataclasses
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mcl.models import ConvClassifier
from mcl.trainer import train

Params = dict
Bases = dict  # layer name -> float32 [rows, k], orthonormal columns

# Singular directions below this fraction of ||R||_F are float32 round-off
# of the representation and never enter the memory: with a threshold of 1.0
# the basis is the numerical range of R. (Also the rank cut of D M in
# `_restricted_bases`, whose singular values are at most 1.)
RANK_RTOL = 1e-6
_HIGHEST = jax.lax.Precision.HIGHEST


def layer_rows(kernel_shape: Sequence[int]) -> int:
  """Rows of a layer's [kernel.reshape(-1, out); bias] matrix."""
  return int(np.prod(kernel_shape[:-1])) + 1


def _sample(n: int, max_samples: int | None, rng: np.random.Generator):
  if max_samples is None or n <= max_samples:
    return np.arange(n)
  return np.sort(rng.choice(n, size=max_samples, replace=False))


def _patches(x_BxTxFxC: np.ndarray, window: Sequence[int], index: np.ndarray):
  """SAME-padded, stride-1 patches at flat positions `index` of [B, T, F].

  Returns float32 [len(index), kh * kw * C], each patch flattened as
  [kh, kw, C] (the order of a [kh, kw, C, out] kernel's rows); the padding
  is lax's "SAME" (the extra pad of an even window goes after).
  """
  batch, frames, bins, _ = x_BxTxFxC.shape
  (kh, kw), pads = window, [(0, 0)]
  pads += [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in window] + [(0, 0)]
  padded = np.pad(x_BxTxFxC, pads)
  b, t, f = np.unravel_index(index, (batch, frames, bins))
  taps = padded[
    b[:, None, None],
    t[:, None, None] + np.arange(kh)[None, :, None],
    f[:, None, None] + np.arange(kw)[None, None, :],
  ]
  return taps.reshape(len(index), -1)


def layer_inputs(
  params: Params,
  inputs: np.ndarray,
  layers: Sequence[str],
  rng: np.random.Generator,
  max_samples: int | None = 2048,
) -> dict[str, np.ndarray]:
  """Input representations of hidden layers (Saha et al. 2021, Sec. 4).

  The network is `ConvClassifier.from_params(params)`; each layer's input
  is read from what the model sows into "intermediates", so this is the
  model's own forward pass.

  Args:
    params: the "params" tree of a `ConvClassifier`.
    inputs: float32 [batch, frames, bins], e.g. a batch of an old task.
    layers: hidden layers to read (`conv_<i>`, `dense_<i>`).
    rng: chooses the samples kept when a layer has more than `max_samples`.
    max_samples: samples kept per layer (uniform without replacement, in
      their original order), or None for all.

  Returns:
    {layer: float32 [samples, rows]}: a conv layer has one sample per
    example and position of its input (ordered by example, frame, bin),
    rows kh * kw * in + 1, the SAME patch flattened as [kh, kw, in]; a
    dense layer one sample per example, rows in + 1. The last row is the
    constant 1 that multiplies the bias.

  Raises:
    ValueError: a name is not a hidden layer of the network.
  """
  model = ConvClassifier.from_params(params)
  unknown = set(layers) - set(model.hidden_layers)
  if unknown:
    raise ValueError(
      f"layer_inputs: {sorted(unknown)} not in {model.hidden_layers}"
    )
  _, state = model.apply(
    {"params": params},
    jnp.asarray(inputs, jnp.float32),
    mutable=["intermediates"],
  )
  out = {}
  for name in layers:
    x = np.asarray(state["intermediates"][f"{name}_input"][0], np.float32)
    kernel_shape = np.shape(params[name]["kernel"])
    if len(kernel_shape) == 4:
      index = _sample(int(np.prod(x.shape[:3])), max_samples, rng)
      rows = _patches(x, kernel_shape[:2], index)
    else:
      rows = x[_sample(x.shape[0], max_samples, rng)]
    ones = np.ones((rows.shape[0], 1), np.float32)
    out[name] = np.concatenate([rows, ones], axis=1)
  return out


def _orthonormal(basis: np.ndarray) -> np.ndarray:
  """float64 QR of a near-orthonormal basis (same span, signs kept), so
  that projecting with it leaves no float32 residue along it."""
  q, r = np.linalg.qr(np.asarray(basis, np.float64))
  return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def _new_directions(basis, representation, threshold):
  """Algorithm 1's new basis vectors for one layer: float64 [rows, k_new]."""
  r = np.asarray(representation, np.float64).T  # rows x samples
  total = np.sum(r**2)
  if total == 0:
    return np.zeros((r.shape[0], 0))
  if basis.shape[1]:
    captured = np.sum((basis.T @ r) ** 2)
    r = r - basis @ (basis.T @ r)  # R_hat = R - M M^T R
  else:
    captured = 0.0
  u, s, _ = np.linalg.svd(r, full_matrices=False)
  rank = int(np.sum(s > RANK_RTOL * np.sqrt(total)))
  # The fewest k with ||M M^T R||^2 + sum_{i<k} s_i^2 reaching
  # threshold * ||R||^2 (M empty: the first task's criterion).
  needed = threshold * total - captured
  reached = np.flatnonzero(np.cumsum(s[:rank] ** 2) >= needed * (1 - 1e-12))
  if needed <= 0:
    k = 0
  else:
    k = int(reached[0]) + 1 if reached.size else rank
  new = u[:, :k]
  if basis.shape[1]:
    new = new - basis @ (basis.T @ new)
  return _orthonormal(new) if k else new


def update_bases(
  bases: Bases,
  representations: Mapping[str, np.ndarray],
  threshold: float | Mapping[str, float],
) -> Bases:
  """GPM's memory update (Saha et al. 2021, Sec. 4, Eq. 5-9, Algorithm 1).

  For a layer without a basis: SVD R = U S V^T and M = U[:, :k], k the
  smallest with ||R_k||_F^2 >= threshold ||R||_F^2. With a basis M:
  R_hat = R - M M^T R, SVD of R_hat, and the fewest of its
  left singular vectors appended so that ||M M^T R||_F^2 + ||R_hat_k||_F^2
  >= threshold ||R||_F^2; none when M already captures that
  much. Singular directions below `RANK_RTOL` of ||R||_F are never added,
  so threshold 1.0 stores the numerical range of R. Computed in float64;
  the result is re-orthonormalised.

  Args:
    bases: {layer: float32 [rows, k]}; layers absent have no basis yet.
      Pass a grown network's bases through `pad_bases` first.
    representations: {layer: float32 [samples, rows]} from `layer_inputs`
      on the task just learnt.
    threshold: epsilon_th in (0, 1], one for all layers or per layer.

  Returns:
    {layer: float32 [rows, k']} with k' >= k orthonormal columns, the old
    ones first (same span); layers of `bases` not in `representations`
    are kept.

  Raises:
    ValueError: a basis has other rows than its representation, or a
      threshold is outside (0, 1].
  """
  new = dict(bases)
  for name, representation in representations.items():
    eps = threshold[name] if isinstance(threshold, Mapping) else threshold
    if not 0 < eps <= 1:
      raise ValueError(f"update_bases: {name} threshold {eps} not in (0, 1]")
    rows = representation.shape[1]
    basis = np.zeros((rows, 0))
    if name in bases:
      if bases[name].shape[0] != rows:
        raise ValueError(
          f"update_bases: {name} basis has {bases[name].shape[0]} rows, its "
          f"inputs {rows} (a grown layer needs pad_bases)"
        )
      basis = _orthonormal(bases[name])
    added = _new_directions(basis, representation, eps)
    new[name] = np.concatenate([basis, added], axis=1).astype(np.float32)
  return new


def pad_bases(bases: Bases, params: Params, layers: Sequence[str]) -> Bases:
  """Zero rows for the inputs a layer gained since its basis was stored.

  A new input unit (a channel of the previous conv layer, a dense unit)
  takes no part in old tasks' inputs: its rows of M are zero. In a conv
  layer's [kh, kw, in] row order the new channels are interleaved (the
  last of every tap), so the kernel rows are padded as [kh, kw, in_old, k]
  -> [kh, kw, in, k]; the bias row stays last.

  Args:
    bases: {layer: float32 [rows_old, k]}.
    params: the grown tree (kernels [..., in, out]).
    layers: hidden layers to pad; other bases are kept as they are.

  Returns:
    {layer: float32 [rows, k]} with rows those of the layer in `params`.

  Raises:
    ValueError: a layer has fewer inputs than its basis, or the basis rows
      do not fit the kernel's taps.
  """
  new = dict(bases)
  for name in layers:
    if name not in bases:
      continue
    basis = np.asarray(bases[name], np.float32)
    shape = np.shape(params[name]["kernel"])
    taps, n_in = int(np.prod(shape[:-2])), shape[-2]
    old_in, misfit = divmod(basis.shape[0] - 1, taps)
    if misfit or old_in > n_in:
      raise ValueError(
        f"pad_bases: {name} basis of {basis.shape[0]} rows does not fit "
        f"kernel {shape}"
      )
    kernel_rows = basis[:-1].reshape(*shape[:-2], old_in, -1)
    pad = [(0, 0)] * (len(shape) - 2) + [(0, n_in - old_in), (0, 0)]
    kernel_rows = np.pad(kernel_rows, pad).reshape(taps * n_in, -1)
    new[name] = np.concatenate([kernel_rows, basis[-1:]], axis=0)
  return new


def _stack(kernel, bias):
  """[kernel.reshape(-1, out); bias]: the layer as a [rows, out] matrix."""
  return jnp.concatenate([kernel.reshape(-1, kernel.shape[-1]), bias[None]])


def _restricted_bases(basis, trainable_rows):
  """Bases of the layer's change, one per output column.

  A column whose trainable rows are D may change only within {x = D x},
  so its change is projected onto {x = D x, M^T x = 0}: x = d - Q Q^T d
  with Q an orthonormal basis of range(D M) (exact, since d = D d), not
  onto M's complement followed by a mask, which would undo part of the
  projection. One SVD per distinct pattern of trainable rows; returns
  float32 [out, rows, k], column o's Q (zero columns where D M loses
  rank; all zero for a column with nothing trainable, whose change is
  then left alone). Per column rather than per pattern: with selective
  retraining nearly every column of an MLP layer has its own pattern,
  and a [patterns, rows, k] contraction with every column cost patterns
  times more each step.
  """
  rows, out = trainable_rows.shape
  active = trainable_rows.any(axis=0)
  patterns, which = np.unique(
    trainable_rows[:, active].T, axis=0, return_inverse=True
  )
  k = basis.shape[1]
  qs = np.zeros((out, rows, k), np.float32)
  for p, rows_p in enumerate(patterns):
    u, s, _ = np.linalg.svd(rows_p[:, None] * basis, full_matrices=False)
    keep = s > RANK_RTOL
    q = np.zeros((rows, k), np.float32)
    q[:, : keep.sum()] = rows_p[:, None] * u[:, keep]
    qs[np.flatnonzero(active)[which.reshape(-1) == p]] = q
  return qs


@dataclasses.dataclass(frozen=True)
class _Projection:
  layers: tuple[str, ...]

  def __call__(self, params, trainable, metric, args):
    del metric
    out = dict(params)
    for name in self.layers:
      kernel, bias = params[name]["kernel"], params[name]["bias"]
      ref = args["reference"][name]
      delta = _stack(kernel - ref["kernel"], bias - ref["bias"])
      q = args["bases"][name]
      coefficients = jnp.einsum("ork,ro->ok", q, delta, precision=_HIGHEST)
      delta = delta - jnp.einsum(
        "ork,ok->ro", q, coefficients, precision=_HIGHEST
      )
      new_kernel = ref["kernel"] + delta[:-1].reshape(kernel.shape)
      new_bias = ref["bias"] + delta[-1]
      mask = trainable[name]
      out[name] = {
        "kernel": jnp.where(mask["kernel"] > 0, new_kernel, kernel),
        "bias": jnp.where(mask["bias"] > 0, new_bias, bias),
      }
    return out


def projection(
  bases: Bases,
  reference: Params,
  layers: Sequence[str],
  trainable: Params | None = None,
) -> train.Term:
  """Proximal map W <- W_ref + P (W - W_ref), P = I - M M^T (GPM, Sec. 4).

  P acts on the rows of each layer's [kernel.reshape(-1, out); bias], so
  the change since `reference` stays orthogonal to the stored inputs of
  old tasks. Applied after every update it equals projecting each update
  (P is linear and idempotent): the projection of Adam's step, not of the
  gradient fed to Adam, whose per-coordinate scaling would leave M's
  complement. Saha et al. project SGD's gradient, where the two agree.

  Args:
    bases: {layer: float32 [rows, k]} orthonormal (`update_bases`, padded
      with `pad_bases` to the current rows).
    reference: the tree at the start of the phase (W_ref); copied.
    layers: layers to project; those without a basis, and every other
      parameter group (heads), are left as the optimizer made them.
    trainable: the phase's 0./1. mask, when it freezes part of a layer's
      rows (selective retraining): each column's change is then projected
      within its trainable rows, exactly orthogonal to M. Without it the
      map assumes whole columns are trainable; entries the phase's mask
      freezes are kept either way, at the cost of exactness.

  Returns:
    proximal(params, trainable, metric) for `mcl.trainer.train.Phase`; its
    arrays (bases per column, W_ref) are arguments, so phases with new
    bases of the same shapes reuse the compiled step.

  Raises:
    ValueError: a basis does not have the layer's rows.
  """
  names, qs, anchors = [], {}, {}
  for name in layers:
    if name not in bases or bases[name].shape[1] == 0:
      continue
    kernel = np.asarray(reference[name]["kernel"])
    if bases[name].shape[0] != layer_rows(kernel.shape):
      raise ValueError(
        f"projection: {name} basis has {bases[name].shape[0]} rows, the "
        f"layer {layer_rows(kernel.shape)} (see pad_bases)"
      )
    out = kernel.shape[-1]
    if trainable is None:
      rows = np.ones((layer_rows(kernel.shape), out), bool)
    else:
      mask = trainable[name]
      rows = np.concatenate(
        [
          np.reshape(mask["kernel"], (-1, out)),
          np.reshape(mask["bias"], (1, -1)),
        ]
      )
      rows = rows > 0
    names.append(name)
    qs[name] = jnp.asarray(_restricted_bases(_orthonormal(bases[name]), rows))
    anchors[name] = {
      k: jnp.array(reference[name][k]) for k in ("kernel", "bias")
    }
  return train.Term(
    _Projection(tuple(names)),
    {"bases": qs, "reference": anchors},
  )
