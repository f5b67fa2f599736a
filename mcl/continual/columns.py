"""Methods that add a network column per task: STL and progressive nets.

`STL` trains an independent backbone per task (the per-task upper bound and
DEN's capacity reference); `Progressive` adds lateral connections from the
frozen earlier columns (Rusu et al. 2016). Both leave old tasks' outputs
bit-identical: task j reads only columns <= j, which never train again.
Task j's network is column j alone for STL, columns 0..j for progressive.
"""

import jax
import jax.numpy as jnp
import numpy as np

from mcl.continual import method
from mcl.datasets import task_data as data
from mcl.models import ProgressiveNet, head_name
from mcl.models.progressive_net import column_of, encoder_column


class Columns(method.Method):
  """A column per task; `lateral` selects progressive nets over STL."""

  model_name = "progressive_net"
  lateral = True

  def _model(self, head_sizes):
    return ProgressiveNet(
      **self.widths.module_fields(),
      head_sizes=head_sizes,
      lateral=self.lateral,
    )

  def init(self, key, task):
    model = self._model((task.num_classes,))
    params = jax.device_get(
      model.init(key, jnp.zeros(self.input_shape))["params"]
    )
    params.update(self.widths.pretrained(lambda n: encoder_column(n, 0)))
    return params, {"columns": np.asarray(1, np.int32)}

  def begin_task(self, params, state, task, rng):
    sizes = ProgressiveNet.from_params(params).head_sizes
    model = self._model((*sizes, task.num_classes))
    key = jax.random.key(int(rng.integers(2**31)))
    fresh = jax.device_get(
      model.init(key, jnp.zeros(self.input_shape))["params"]
    )
    fresh.update(
      self.widths.pretrained(lambda n: encoder_column(n, task.index))
    )
    # Old columns keep their values; only column `task` is new.
    params = {**fresh, **params}
    return params, {"columns": np.asarray(task.index + 1, np.int32)}

  def learn_task(self, context, params, state, task, rng):
    del rng
    own = [n for n in params if column_of(n) == task.index]
    result = context.phase(params, method.only(params, own), "train")
    return result.params, state, method.phase_record(train=result)

  def network(self, params, state, task):
    del state
    sub = {n: g for n, g in params.items() if column_of(n) <= task}
    return method.Network(ProgressiveNet.from_params(sub), sub, task)


class Progressive(Columns):
  """Progressive networks."""


class STL(Columns):
  """Independent single-task networks."""

  lateral = False

  def learn_task(self, context, params, state, task, rng):
    """Trains column `task` alone, as column 0 of a one-column network:
    the loss reads no other column, so this is the same fit, in shapes
    that are the same at every task (one compilation of the step)."""
    del rng
    j = task.index
    result = context.phase(
      _column(params, j),
      method.ones(_column(params, j)),
      "train",
      batches=data.with_task(context.batches(j), 0),
      heads=(0,),
      validation={0: context.validation(j)},
    )
    trained = {
      n.replace("_col0", f"_col{j}"): g
      for n, g in result.params.items()
      if n != head_name(0)
    }
    trained[head_name(j)] = result.params[head_name(0)]
    record = method.phase_record(train=result)
    return {**params, **trained}, state, record

  def network(self, params, state, task):
    del state
    sub = _column(params, task)
    return method.Network(ProgressiveNet.from_params(sub), sub, 0)


def _column(params: dict, task: int) -> dict:
  """Column `task` and its head alone, renamed to column 0 and head 0."""
  sub = {
    n.replace(f"_col{task}", "_col0"): g
    for n, g in params.items()
    if column_of(n) == task and n != head_name(task)
  }
  sub[head_name(0)] = params[head_name(task)]
  return sub
