"""Sequential baselines on one shared `ConvClassifier` trunk.

- `FineTune`: every weight trains on each new task, nothing protects the
  old ones (the lower bound).
- `L2`: fine-tuning plus strength * ||W - W^(t-1)||^2 over every shared
  weight.
- `EWC`: fine-tuning plus Elastic Weight Consolidation (Kirkpatrick et al.,
  PNAS 2017), one diagonal-Fisher quadratic term per earlier task.
- `LwF`: Learning without Forgetting (Li & Hoiem, ECCV 2016): warm up the
  new head alone, then train everything with the distillation loss of the
  old heads on the new task's data.

Old heads receive no cross-entropy gradient (only the current task's data
is seen), so what changes their outputs is the shared trunk.
"""

import dataclasses

import numpy as np

from mcl.continual import method, regularisers
from mcl.models import ConvClassifier, head_name


@dataclasses.dataclass(frozen=True)
class L2Settings:
  """`config.l2`. Attributes: strength: the pull's coefficient."""

  strength: float


@dataclasses.dataclass(frozen=True)
class EWCSettings:
  """`config.ewc`.

  Attributes:
    strength: lambda of the EWC penalty.
    fisher_batches: training batches of the diagonal Fisher.
  """

  strength: float
  fisher_batches: int


@dataclasses.dataclass(frozen=True)
class LwFSettings:
  """`config.lwf`.

  Attributes:
    strength: lambda_o of the distillation loss.
    temperature: T of the softened softmaxes.
  """

  strength: float
  temperature: float


class FineTune(method.Sequential):
  """Train everything on each task in turn."""

  def penalty(self, params, state, task):
    """The regulariser of task `task`'s training; none for fine-tuning."""
    del params, state, task
    return None

  def learn_task(self, context, params, state, task, rng):
    del rng
    penalty = self.penalty(params, state, task) if task.index else None
    kwargs = {} if penalty is None else {"penalty": penalty}
    result = context.phase(params, method.ones(params), "train", **kwargs)
    return result.params, state, method.phase_record(train=result)


class L2(FineTune):
  """Fine-tuning with an L2 pull towards the previous task's weights."""

  section, settings_class = "l2", L2Settings

  def penalty(self, params, state, task):
    del state
    old = {n: g for n, g in params.items() if n != head_name(task.index)}
    return regularisers.l2_pull(old, self.settings.strength)


class EWC(FineTune):
  """Fine-tuning with the EWC penalty; the state keeps anchors and Fishers.

  After task t the state gains `ewc/anchor_t` (the parameters) and
  `ewc/fisher_t` (their diagonal Fisher on `ewc.fisher_batches` training
  batches of task t).
  """

  section, settings_class = "ewc", EWCSettings

  def penalty(self, params, state, task):
    del params
    ewc = state["ewc"]
    anchors = {j: ewc[f"anchor_{j}"] for j in range(task.index)}
    fishers = {j: ewc[f"fisher_{j}"] for j in range(task.index)}
    return regularisers.ewc_penalty(anchors, fishers, self.settings.strength)

  def init(self, key, task):
    params, state = super().init(key, task)
    return params, {**state, "ewc": {}}

  def learn_task(self, context, params, state, task, rng):
    params, state, record = super().learn_task(
      context, params, state, task, rng
    )
    stream = context.batches(task.index)
    fisher = regularisers.diagonal_fisher(
      ConvClassifier.from_params(params),
      params,
      task.index,
      (next(stream) for _ in range(self.settings.fisher_batches)),
    )
    leaves = [v.ravel() for g in fisher.values() for v in g.values()]
    record["fisher_mean"] = float(np.mean(np.concatenate(leaves)))
    ewc = dict(state["ewc"])
    ewc[f"anchor_{task.index}"] = params
    ewc[f"fisher_{task.index}"] = fisher
    return params, {**state, "ewc": ewc}, record


class LwF(method.Sequential):
  """Head warm-up, then joint training with knowledge distillation."""

  section, settings_class = "lwf", LwFSettings

  def learn_task(self, context, params, state, task, rng):
    del rng
    if task.index == 0:
      result = context.phase(params, method.ones(params), "train")
      return result.params, state, method.phase_record(train=result)
    old = {n: g for n, g in params.items() if n != head_name(task.index)}
    warm = context.phase(
      params, method.only(params, [head_name(task.index)]), "head"
    )
    result = context.phase(
      warm.params,
      method.ones(params),
      "distill",
      penalty=regularisers.lwf_distillation(
        ConvClassifier.from_params(old),
        old,
        task.index,
        self.settings.strength,
        self.settings.temperature,
      ),
    )
    return result.params, state, method.phase_record(head=warm, distill=result)
