"""Class-incremental heads solved in closed form on a frozen input.

Nothing is trained by gradient: each task adds its training chunks'
statistics, and the head is solved from them. Both run on frozen-encoder
records (`data.encoder`), whose chunk is one patch embedding x (D), read
through the `ConvClassifier` as every method reads it (standardised per
example); a clip's score is the mean of its patches' linear scores, i.e.
the score of its mean feature.

- `NCM`, nearest class mean (the ISMIR 2024 study's L2Center and
  CosineCenter; SimpleCIL): the centre c_y is the mean x over every
  training patch of class y (the data's `eval_chunks` evenly spaced
  patches per clip), and the head is linear: kernel c_y, bias
  -||c_y||^2 / 2 ("euclidean": the argmax of x.c_y - ||c_y||^2 / 2 is the
  nearest centre) or kernel c_y / ||c_y||, bias 0 ("cosine").
- `RanPAC` (McDonnell et al., NeurIPS 2023, Sec. 3-4): a fixed random
  projection W ~ N(0, 1) of size D x M with ReLU, h = ReLU(x W) (the
  trunk's `dense_0`, never trained), G += H^T H and Q += H^T Y over
  every task's training patches, head W_out = (G + lambda I)^-1 Q.
  lambda is chosen after each task among `RIDGES` by accuracy on the
  validation clips of every class seen so far (a two-class task alone
  cannot choose it).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from mcl.continual.class_incremental import head, memory
from mcl.models import conv_classifier
from mcl.trainer import evaluation

DISTANCES = ("euclidean", "cosine")
# RanPAC's ridge values, lambda = 10^-2 .. 10^8.
RIDGES = 10.0 ** np.arange(-2, 9)


@dataclasses.dataclass(frozen=True)
class NCMSettings:
  """`config.ncm`. Attributes: distance: one of `DISTANCES`."""

  distance: str

  def __post_init__(self):
    if self.distance not in DISTANCES:
      raise ValueError(f"ncm.distance={self.distance!r}: one of {DISTANCES}")


@dataclasses.dataclass(frozen=True)
class RanPACSettings:
  """`config.ranpac`. Attributes: projection_dim: M, the random features."""

  projection_dim: int


class ClosedForm(head.ClassIncremental):
  """A head solved from the training patches over a fixed trunk
  (`hidden_widths`), whatever `model.widths` says."""

  def __init__(self, widths, input_shape, settings=None, head_sizes=()):
    widths = dataclasses.replace(
      widths, conv_widths=(), dense_widths=self.hidden_widths(settings)
    )
    super().__init__(widths, input_shape, settings, head_sizes)

  @staticmethod
  def hidden_widths(settings) -> tuple[int, ...]:
    """The trunk's dense widths."""
    del settings
    return ()

  def begin_task(self, params, state, task, rng):
    """The new classes' rows stay zero until solved (their score is 0
    before `learn_task`, the bar the solved head must get under)."""
    del rng
    seen = np.asarray(self.seen_classes(task.index), np.int32)
    return params, {**state, "seen_classes": seen}

  def training_patches(self, context, task) -> tuple[np.ndarray, np.ndarray]:
    """Every training clip's evaluation patches [n, ...] and their global
    labels [n]."""
    xs, ys = [], []
    for batch in context.training_clips(task.index, None):
      keep = batch["mask"] > 0
      x = np.asarray(batch["inputs"])[keep]
      xs.append(x.reshape((-1,) + x.shape[2:]))
      ys.append(np.repeat(batch["label"][keep], x.shape[1]))
    labels = np.concatenate(ys) + self.offsets[task.index]
    return np.concatenate(xs), labels.astype(np.int64)

  def with_head(self, params, kernel, bias) -> dict:
    """`params` with the head's seen columns replaced (the others 0)."""
    seen = kernel.shape[1]
    full_kernel = np.zeros(params[head.HEAD]["kernel"].shape, np.float32)
    full_bias = np.zeros(self.num_classes, np.float32)
    full_kernel[:, :seen] = kernel
    full_bias[:seen] = bias
    return {**params, head.HEAD: {"kernel": full_kernel, "bias": full_bias}}

  def class_probabilities(self, params, state, seen, inputs):
    """softmax over the seen classes of the clip's mean patch score."""
    del state
    logits = evaluation.chunk_logits(
      self.model(params), {"params": params}, inputs, 0
    ).mean(axis=1)[:, :seen]
    z = logits - logits.max(axis=1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


class NCM(ClosedForm):
  """Nearest class mean on the standardised patch embeddings."""

  section, settings_class = "ncm", NCMSettings

  def init(self, key, task):
    params, state = super().init(key, task)
    dim = params[head.HEAD]["kernel"].shape[0]
    state["sums"] = np.zeros((self.num_classes, dim), np.float64)
    state["counts"] = np.zeros(self.num_classes, np.float64)
    return self.with_head(params, np.zeros((dim, 0)), np.zeros(0)), state

  def learn_task(self, context, params, state, task, rng):
    del rng
    x, labels = self.training_patches(context, task)
    z = np.asarray(conv_classifier.standardise(jnp.asarray(x)), np.float64)
    z = z.reshape(len(z), -1)
    sums, counts = state["sums"].copy(), state["counts"].copy()
    np.add.at(sums, labels, z)
    np.add.at(counts, labels, 1.0)
    seen = self.seen_classes(task.index)
    centres = sums[:seen] / counts[:seen, None]
    if self.settings.distance == "euclidean":
      kernel, bias = centres.T, -0.5 * (centres**2).sum(axis=1)
    else:
      kernel = (centres / np.linalg.norm(centres, axis=1, keepdims=True)).T
      bias = np.zeros(seen)
    params = self.with_head(params, kernel, bias)
    record = {"patches_per_class": counts[:seen].tolist()}
    return params, {**state, "sums": sums, "counts": counts}, record


class RanPAC(ClosedForm):
  """Random projection, ReLU, ridge head from accumulated G and Q."""

  section, settings_class = "ranpac", RanPACSettings

  @staticmethod
  def hidden_widths(settings):
    return (settings.projection_dim,)

  def init(self, key, task):
    params, state = super().init(key, task)
    dim, m = params["dense_0"]["kernel"].shape
    params["dense_0"] = jax.device_get(
      {"kernel": jax.random.normal(key, (dim, m)), "bias": jnp.zeros(m)}
    )
    state["gram"] = np.zeros((m, m), np.float64)
    state["targets"] = np.zeros((m, self.num_classes), np.float64)
    return self.with_head(params, np.zeros((m, 0)), np.zeros(0)), state

  def learn_task(self, context, params, state, task, rng):
    del rng
    model = self.model(params)
    x, labels = self.training_patches(context, task)
    h = memory.chunk_features(model, params, x[:, None])
    gram = state["gram"] + h.T @ h
    targets = state["targets"] + h.T @ np.eye(self.num_classes)[labels]
    seen = self.seen_classes(task.index)
    lam, accuracy, w_out = self.ridge(
      context, model, params, gram, targets, task
    )
    params = self.with_head(params, w_out, np.zeros(seen))
    record = {"ridge": lam, "ridge_validation_accuracy": accuracy}
    return params, {**state, "gram": gram, "targets": targets}, record

  def ridge(self, context, model, params, gram, targets, task):
    """(lambda, its validation accuracy, W_out [M, seen]): the best of
    `RIDGES` on the validation clips of tasks 0..task (ties: the larger)."""
    seen = self.seen_classes(task.index)
    h, labels = [], []
    for t in range(task.index + 1):
      for batch in self.labelled(context.validation(t), t):
        keep = batch["mask"] > 0
        x = np.asarray(batch["inputs"])[keep]
        f = memory.chunk_features(model, params, x)
        h.append(f.reshape(x.shape[0], x.shape[1], -1).mean(axis=1))
        labels.append(batch["label"][keep])
    h, labels = np.concatenate(h), np.concatenate(labels)
    eigenvalues, vectors = np.linalg.eigh(gram)
    projected = vectors.T @ targets[:, :seen]
    best = None
    for lam in sorted(RIDGES, reverse=True):
      w_out = vectors @ (projected / (eigenvalues + lam)[:, None])
      accuracy = float(np.mean(np.argmax(h @ w_out, axis=1) == labels))
      if best is None or accuracy > best[1]:
        best = (float(lam), accuracy, w_out)
    return best
