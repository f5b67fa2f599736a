"""A class-balanced episodic memory of clips, and what it is filled with.

The memory keeps `capacity` clips in all, split equally among the classes
seen so far (earlier classes get the remainder, `replay.quotas`). Each
class's clips are kept in a priority order: when its quota shrinks it
keeps a prefix. Replay and DER++ order a class's clips at random, iCaRL
by herding (Rebuffi et al. 2017, Alg. 4), so a prefix is the best m
exemplars. A clip is stored as K evenly spaced chunks (the evaluation
layout); rehearsal draws single chunks uniformly.
"""

import functools
from collections.abc import Iterator

import flax.linen as nn
import jax
import numpy as np

from mcl.continual import replay

Memory = dict  # {"inputs": [N, K, ...], "label": int32 [N] (global), ...}


def update(memory: Memory | None, new: Memory, capacity: int) -> Memory:
  """The memory with `new`'s clips added and every class cut to its quota.

  Args:
    memory: the memory before, or None.
    new: clips of classes not in `memory`, the same keys; within a class,
      in priority order.
    capacity: clips in all.

  Returns:
    The clips kept, grouped by class in ascending class order.

  Raises:
    ValueError: a class of `new` is already in the memory.
  """
  groups = []
  for part in (memory, new):
    if part is None:
      continue
    for c in np.unique(part["label"]):
      if memory is not None and part is new and np.any(memory["label"] == c):
        raise ValueError(f"class {c} is already in the memory")
      keep = part["label"] == c
      groups.append((int(c), {k: v[keep] for k, v in part.items()}))
  groups.sort(key=lambda g: g[0])
  kept = replay.quotas([g["label"].size for _, g in groups], capacity)
  return {
    k: np.concatenate(
      [g[k][:n] for (_, g), n in zip(groups, kept, strict=True)]
    )
    for k in new
  }


def herding(features: np.ndarray) -> np.ndarray:
  """iCaRL's exemplar order of one class (Rebuffi et al. 2017, Alg. 4).

  Args:
    features: float [n, F], the class's L2-normalised feature vectors.

  Returns:
    int [n], a permutation: exemplar k is the clip that brings the mean of
    exemplars 1..k closest to the class mean mu.
  """
  mu = features.mean(axis=0)
  chosen, total = [], np.zeros_like(mu)
  left = list(range(len(features)))
  for k in range(1, len(features) + 1):
    candidates = (total + features[left]) / k
    best = left[int(np.argmin(np.linalg.norm(mu - candidates, axis=1)))]
    chosen.append(best)
    total = total + features[best]
    left.remove(best)
  return np.asarray(chosen, np.int64)


@functools.partial(jax.jit, static_argnums=0)
def _chunk_features(model, params, x):
  _, state = model.apply({"params": params}, x, mutable=["intermediates"])
  return state["intermediates"]["features"][0]


def clip_features(model: nn.Module, params: dict, inputs) -> np.ndarray:
  """L2-normalised clip features: the heads' input averaged over chunks.

  Args:
    model: a `ConvClassifier` (it sows "features").
    params: its parameters.
    inputs: float32 [clips, K, ...].

  Returns:
    float64 [clips, F].
  """
  clips, chunks = inputs.shape[:2]
  f = chunk_features(model, params, inputs)
  f = f.reshape(clips, chunks, -1).mean(axis=1)
  return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def chunk_features(model: nn.Module, params: dict, inputs) -> np.ndarray:
  """The heads' input of every chunk: float64 [clips * K, F]."""
  x = np.asarray(inputs, np.float32)
  flat = x.reshape((-1,) + x.shape[2:])
  return np.asarray(_chunk_features(model, params, flat), np.float64)


def rehearsed(
  batches: Iterator[dict[str, np.ndarray]],
  memory: Memory,
  size: int,
  weight: float,
  rng: np.random.Generator,
) -> Iterator[dict[str, np.ndarray]]:
  """Each batch joined by `size` memory chunks drawn uniformly (with
  replacement) over the memory's clips and chunks.

  Args:
    batches: the scenario's batches ("inputs", "label", "classes",
      "weight", and any per-chunk keys the memory has, e.g. DER++'s).
    memory: {"inputs": [N, K, ...], "label": [N], optional "logits":
      [N, K, C] and "stored": [N]}.
    size: memory chunks per batch.
    weight: the cross-entropy weight of a memory chunk.
    rng: draws the chunks.
  """
  clips, chunks = memory["label"].size, memory["inputs"].shape[1]
  for batch in batches:
    pick = rng.integers(0, clips * chunks, size=size)
    clip, chunk = pick // chunks, pick % chunks
    rows = {
      "inputs": memory["inputs"][clip, chunk],
      "label": memory["label"][clip],
      "classes": np.full(size, batch["classes"][0], np.int32),
      "weight": np.full(size, weight, np.float32),
    }
    if "logits" in memory:
      rows["logits"] = memory["logits"][clip, chunk]
      rows["stored"] = memory["stored"][clip]
    yield {k: np.concatenate([batch[k], rows[k]]) for k in batch}
