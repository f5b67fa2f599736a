"""Joint (multi-task) training: every task's data at once, a head per task.

The upper bound of the task-incremental comparison: one `ConvClassifier`
trunk and T heads trained together on batches drawn uniformly from the
union of all tasks' training clips, each chunk scored on its own task's
head; early stopping on the mean validation loss over tasks. Its budget is
T times one task's `max_steps`, the sequential methods' total.
"""

import dataclasses

from mcl.continual import method


class Joint(method.Sequential):
  """All tasks' heads and data in one phase (called once, at the end)."""

  joint = True

  def learn_task(self, context, params, state, task, rng):
    del rng
    heads = tuple(range(task.index + 1))
    result = context.phase(
      params,
      method.ones(params),
      "joint",
      batches=context.joint_batches(),
      heads=heads,
      validation={t: context.validation(t) for t in heads},
      fit_config=dataclasses.replace(
        context.fit_config,
        max_steps=context.fit_config.max_steps * len(heads),
      ),
    )
    return result.params, state, method.phase_record(joint=result)
