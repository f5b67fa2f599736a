"""Class-incremental methods that rehearse a class-balanced memory of clips.

- `Replay`: experience replay (Chaudhry et al. 2019): every batch of the
  new task is joined by `batch_size` memory chunks; the memory keeps
  `memory_clips` clips in all, a random order per class.
- `ICaRL` (Rebuffi et al., CVPR 2017): the memory's exemplars are chosen
  by herding on the L2-normalised features (Alg. 4); training rehearses
  them with the old classes' outputs distilled (softmax distillation at
  temperature T, as `LwF`'s, where the paper uses per-class sigmoids);
  a clip is classified by the nearest mean of exemplars (Alg. 1), the
  means recomputed with the current network after each task.
- `DERPP`: Dark Experience Replay++ (Buzzega et al., NeurIPS 2020): the
  memory also keeps each stored chunk's logits at insertion time, and a
  replayed chunk adds alpha * ||logits - stored logits||^2 (over the
  classes seen at insertion) to beta * its cross-entropy. Clips enter the
  memory at the end of their task, class-balanced, where the paper's
  reservoir inserts during training.

A clip enters as `chunks_per_clip` evenly spaced chunks of its training
clip, after its task is learnt (`mcl.continual.class_incremental.memory`).
"""

import dataclasses

import jax.numpy as jnp
import numpy as np

from mcl.continual import method, replay
from mcl.continual.class_incremental import head, memory
from mcl.trainer import evaluation, train


@dataclasses.dataclass(frozen=True)
class ICaRLSettings:
  """`config.icarl`.

  Attributes:
    memory_clips: exemplars (clips) in all.
    chunks_per_clip: evenly spaced chunks stored per exemplar.
    batch_size: exemplar chunks added to every training batch.
    strength: weight of the distillation loss.
    temperature: T of its softened softmaxes.
  """

  memory_clips: int
  chunks_per_clip: int
  batch_size: int
  strength: float
  temperature: float


@dataclasses.dataclass(frozen=True)
class DERPPSettings:
  """`config.derpp`.

  Attributes:
    memory_clips: memory size in clips.
    chunks_per_clip: evenly spaced chunks stored per clip.
    batch_size: memory chunks added to every training batch.
    alpha: weight of the logit matching.
    beta: cross-entropy weight of a memory chunk.
  """

  memory_clips: int
  chunks_per_clip: int
  batch_size: int
  alpha: float
  beta: float


class Replay(head.ClassIncremental):
  """The new task's batches mixed with memory chunks."""

  section, settings_class = "replay", replay.ReplaySettings

  def memory_weight(self) -> float:
    """The cross-entropy weight of a memory chunk."""
    return 1.0

  def penalty(self, params, task):
    """The penalty of task `task` (> 0), or None."""
    del params, task
    return None

  def batches(self, context, task, state, rng):
    """The task's stream, rehearsing the memory when there is one."""
    stream = self.stream(
      context.batches(task.index), self.seen_classes(task.index)
    )
    if "memory" not in state:
      return stream
    return memory.rehearsed(
      self.with_memory_keys(stream),
      state["memory"],
      self.settings.batch_size,
      self.memory_weight(),
      rng,
    )

  def with_memory_keys(self, stream):
    """The new task's batches with the per-chunk keys the memory adds."""
    return stream

  def order(self, params, inputs, labels, rng) -> np.ndarray:
    """Priority order of the task's clips (a random one)."""
    del params, inputs
    return rng.permutation(labels.size)

  def stored(self, params, inputs, seen) -> dict:
    """What the memory keeps of each clip besides inputs and label."""
    del params, inputs, seen
    return {}

  def remember(self, context, params, state, task, rng) -> dict:
    """The state with the task's clips in the memory."""
    clips = context.training_clips(task.index, self.settings.chunks_per_clip)
    keep = np.concatenate([b["mask"] > 0 for b in clips])
    inputs = np.concatenate([np.asarray(b["inputs"]) for b in clips])[keep]
    labels = np.concatenate([b["label"] for b in clips])[keep]
    labels = (labels + self.offsets[task.index]).astype(np.int32)
    order = self.order(params, inputs, labels, rng)
    new = {
      "inputs": inputs[order],
      "label": labels[order],
      **{
        k: v[order]
        for k, v in self.stored(
          params, inputs, self.seen_classes(task.index)
        ).items()
      },
    }
    kept = memory.update(state.get("memory"), new, self.settings.memory_clips)
    return {**state, "memory": kept}

  def learn_task(self, context, params, state, task, rng):
    penalty = self.penalty(params, task) if task.index else None
    kwargs = {} if penalty is None else {"penalty": penalty}
    result = self.train_phase(
      context,
      params,
      task,
      "train",
      self.batches(context, task, state, rng),
      **kwargs,
    )
    state = self.remember(context, result.params, state, task, rng)
    record = method.phase_record(train=result)
    record["memory_classes"] = state["memory"]["label"].tolist()
    return result.params, state, record


class ICaRL(Replay):
  """Herded exemplars, distillation, nearest mean of exemplars."""

  section, settings_class = "icarl", ICaRLSettings

  def penalty(self, params, task):
    return self.distillation(params, task)

  def order(self, params, inputs, labels, rng):
    """Herding within each class, classes in ascending order."""
    del rng
    features = memory.clip_features(self.model(params), params, inputs)
    order = []
    for c in np.unique(labels):
      (rows,) = np.nonzero(labels == c)
      order.extend(rows[memory.herding(features[rows])])
    return np.asarray(order, np.int64)

  def remember(self, context, params, state, task, rng):
    """The memory, then every seen class's mean of exemplars (NME)."""
    state = super().remember(context, params, state, task, rng)
    kept = state["memory"]
    features = memory.clip_features(self.model(params), params, kept["inputs"])
    means = np.zeros((self.num_classes, features.shape[1]), np.float64)
    for c in np.unique(kept["label"]):
      mean = features[kept["label"] == c].mean(axis=0)
      means[c] = mean / max(np.linalg.norm(mean), 1e-12)
    return {**state, "means": means}

  def class_probabilities(self, params, state, seen, inputs):
    """softmax(-||phi(x) - mu_y||^2) over the seen classes: its argmax is
    the nearest mean of exemplars (before a task's means exist, its
    classes' means are 0)."""
    features = memory.clip_features(self.model(params), params, inputs)
    means = state.get("means", np.zeros((self.num_classes, features.shape[1])))
    d2 = ((features[:, None, :] - means[None, :seen]) ** 2).sum(axis=-1)
    z = -d2 - (-d2).max(axis=1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


@dataclasses.dataclass(frozen=True)
class _LogitMatching:
  def __call__(self, params, batch, outputs, args):
    del params
    (logits,) = outputs
    stored = batch["stored"]
    seen = jnp.arange(logits.shape[-1]) < stored[:, None]
    error = jnp.where(seen, jnp.square(logits - batch["logits"]), 0.0)
    per_row = error.sum(axis=-1) / jnp.maximum(stored, 1)
    rows = jnp.maximum(jnp.sum(stored > 0), 1)
    return args["alpha"] * jnp.sum(per_row) / rows


class DERPP(Replay):
  """Replay with the logits of insertion time matched."""

  section, settings_class = "derpp", DERPPSettings

  def memory_weight(self):
    return self.settings.beta

  def penalty(self, params, task):
    del params, task
    return train.Term(
      _LogitMatching(), {"alpha": jnp.float32(self.settings.alpha)}
    )

  def with_memory_keys(self, stream):
    """New chunks carry zero logits and stored = 0 (not matched)."""
    for batch in stream:
      size = batch["label"].shape[0]
      yield {
        **batch,
        "logits": np.zeros((size, self.num_classes), np.float32),
        "stored": np.zeros(size, np.int32),
      }

  def stored(self, params, inputs, seen):
    logits = evaluation.chunk_logits(
      self.model(params), {"params": params}, inputs, 0
    )
    return {
      "logits": logits.astype(np.float32),
      "stored": np.full(inputs.shape[0], seen, np.int32),
    }
