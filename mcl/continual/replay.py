"""Experience replay from a bounded episodic memory of earlier tasks.

After each task, `memory_clips` clips at most are kept, shared equally
among the tasks seen so far (earlier tasks get the remainder): each task's
clips enter in a seeded random order, and when a task's quota shrinks its
memory keeps a prefix of that order. A clip is stored as
`chunks_per_clip` evenly spaced log-mel chunks. While task t trains, every
batch of its data is joined by `batch_size` chunks drawn uniformly from the
memory, each scored on its own task's head (Chaudhry et al. 2019, "On tiny
episodic memories in continual learning", with a class-balanced memory).
"""

import dataclasses
from collections.abc import Iterator

import numpy as np

from mcl.continual import method

Memory = dict  # {"inputs": [N, K, frames, mels], "label": [N], "task": [N]}


def quotas(sizes: list[int], capacity: int) -> list[int]:
  """Clips kept per task: capacity split equally, earlier tasks first.

  Args:
    sizes: clips available per task, in task order.
    capacity: memory size in clips.

  Returns:
    Clips kept per task; never more than available, sum <= capacity.
  """
  n = len(sizes)
  share = [capacity // n + (j < capacity % n) for j in range(n)]
  return [min(s, q) for s, q in zip(sizes, share, strict=True)]


def update_memory(
  memory: Memory | None,
  log_mel: np.ndarray,
  label: np.ndarray,
  task: int,
  capacity: int,
  rng: np.random.Generator,
) -> Memory:
  """The memory after task `task`, whose training clips are given.

  Args:
    memory: the memory before, or None before the first task.
    log_mel: float32 [clips, chunks, frames, mels], task `task`'s clips.
    label: int32 [clips], their labels within the task.
    task: the task just trained (later than every task in `memory`).
    capacity: memory size in clips.
    rng: orders the new clips.

  Returns:
    The new memory, grouped by task in task order.

  Raises:
    ValueError: `task` is not later than the memory's tasks.
  """
  if (
    memory is not None and memory["task"].size and memory["task"].max() >= task
  ):
    raise ValueError(f"task {task} is already in the memory")
  order = rng.permutation(label.size)
  new = {
    "inputs": log_mel[order],
    "label": label[order].astype(np.int32),
    "task": np.full(label.size, task, np.int32),
  }
  groups = []
  if memory is not None:
    for t in np.unique(memory["task"]):
      keep = memory["task"] == t
      groups.append({k: v[keep] for k, v in memory.items()})
  groups.append(new)
  kept = quotas([g["label"].size for g in groups], capacity)
  return {
    k: np.concatenate([g[k][:n] for g, n in zip(groups, kept, strict=True)])
    for k in new
  }


def with_replay(
  batches: Iterator[dict[str, np.ndarray]],
  memory: Memory,
  replay_size: int,
  task: int,
  rng: np.random.Generator,
) -> Iterator[dict[str, np.ndarray]]:
  """Each batch of task `task` joined by `replay_size` memory chunks.

  Args:
    batches: the task's stream, {"inputs": float32 [B, frames, mels],
      "label": int32 [B], ...}.
    memory: from `update_memory`.
    replay_size: memory chunks per batch, drawn uniformly with replacement.
    task: the current task id.
    rng: draws the chunks.

  Returns:
    Batches of B + replay_size chunks with "inputs", "label" and "task".
  """
  clips, chunks = memory["label"].size, memory["inputs"].shape[1]
  for batch in batches:
    pick = rng.integers(0, clips * chunks, size=replay_size)
    clip, chunk = pick // chunks, pick % chunks
    yield {
      "inputs": np.concatenate(
        [batch["inputs"], memory["inputs"][clip, chunk]]
      ),
      "label": np.concatenate([batch["label"], memory["label"][clip]]),
      "task": np.concatenate(
        [np.full(batch["label"].size, task, np.int32), memory["task"][clip]]
      ),
    }


@dataclasses.dataclass(frozen=True)
class ReplaySettings:
  """`config.replay`.

  Attributes:
    memory_clips: memory size in clips, shared by the seen tasks.
    chunks_per_clip: evenly spaced chunks stored per clip.
    batch_size: memory chunks added to every training batch.
  """

  memory_clips: int
  chunks_per_clip: int
  batch_size: int


class Replay(method.Sequential):
  """Fine-tuning on the new task's data mixed with replayed memory chunks."""

  section, settings_class = "replay", ReplaySettings

  def learn_task(self, context, params, state, task, rng):
    config = self.settings
    kwargs = {}
    if "memory" in state:
      kwargs = {
        "batches": with_replay(
          context.batches(task.index),
          state["memory"],
          config.batch_size,
          task.index,
          rng,
        ),
        "heads": tuple(range(task.index + 1)),
      }
    result = context.phase(params, method.ones(params), "train", **kwargs)
    clips = context.training_clips(task.index, config.chunks_per_clip)
    keep = np.concatenate([b["mask"] > 0 for b in clips])
    memory = update_memory(
      state.get("memory"),
      np.concatenate([b["inputs"] for b in clips])[keep],
      np.concatenate([b["label"] for b in clips])[keep],
      task.index,
      config.memory_clips,
      rng,
    )
    record = method.phase_record(train=result)
    record["memory_tasks"] = memory["task"].tolist()
    return result.params, {**state, "memory": memory}, record
