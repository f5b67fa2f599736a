"""Timestamped inference: the network each task uses, and its size.

Units are only appended and only the current task's new units are ever
removed (`mcl.continual.surgery`), so the units of timestamp <= j are a
prefix of every layer. Task j runs on that prefix, which has exactly the
shapes and values the network had after task j unless the method retrained
them (DEN, Yoon et al. 2018, Sec. 3, timestamped inference).
"""

from collections.abc import Sequence

from mcl.continual.surgery import Params, Timestamps


def timestamped_params(
  params: Params,
  timestamps: Timestamps,
  layers: Sequence[str],
  heads: Sequence[str],
  task: int,
) -> Params:
  """The network task `task` uses: units with timestamp <= task, heads <= task.

  Args:
    params: the full tree.
    timestamps: units' timestamps per layer.
    layers: hidden layer names.
    heads: head names in task order.
    task: the task whose network is wanted.

  Returns:
    A tree with the prefix of every layer and heads 0..task.

  Raises:
    ValueError: the units of timestamp <= task are not a prefix (the tree
      was built by something other than these functions).
  """
  keep = {}
  for name in layers:
    visible = timestamps[name] <= task
    n = int(visible.sum())
    if not visible[:n].all():
      raise ValueError(f"{name}: units of timestamp <= {task} not a prefix")
    keep[name] = n
  sub = {}
  previous = None
  for name in layers:
    kernel = params[name]["kernel"]
    if previous is not None:
      kernel = kernel[..., :previous, :]
    sub[name] = {
      "kernel": kernel[..., : keep[name]],
      "bias": params[name]["bias"][: keep[name]],
    }
    previous = keep[name]
  for name in heads[: task + 1]:
    sub[name] = {
      "kernel": params[name]["kernel"][:previous],
      "bias": params[name]["bias"],
    }
  # A pretrained trunk before the layers (`ConvClassifier.encoder`) is
  # every task's.
  for name, group in params.items():
    if name not in layers and not name.startswith("head_"):
      sub[name] = group
  return sub


def parameters_per_task(
  params: Params, timestamps: Timestamps, heads: Sequence[str]
) -> list[int]:
  """Scalars in every task's timestamped network, its own head included.

  Args:
    params: the full tree.
    timestamps: units' timestamps per layer (its keys are the hidden
      layers, input to output).
    heads: head names in task order; one count per head.
  """
  layers = tuple(timestamps)
  counts = []
  for task, head in enumerate(heads):
    sub = timestamped_params(params, timestamps, layers, heads, task)
    own = [n for n in sub if not n.startswith("head_") or n == head]
    counts.append(int(sum(v.size for n in own for v in sub[n].values())))
  return counts
