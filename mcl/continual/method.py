"""What the continual runner and a continual-learning method share.

A method owns a parameter tree and a state (numpy arrays, saved with every
task checkpoint). Per task the runner calls `begin_task` (add the task's
head or column; the untrained result gives the zero-shot score of forward
transfer) and `learn_task` (train through a `phase.Context`); it
evaluates task j on `network(params, state, j)`. The runner knows the
data, the method knows what to train, under which mask and with which
penalty.

`Sequential` is the base of every method that grows one `ConvClassifier`
trunk with a head per task; its state holds the units' timestamps (all 0
unless DEN adds units), and task j's network is its timestamped network.
"""

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mcl import models
from mcl.continual import phase, slots, surgery, timestamped
from mcl.datasets import tasks
from mcl.models import ConvClassifier, head_name, musicnn_checkpoint
from mcl.models.conv_classifier import encoder_name
from mcl.trainer import fit

Params = dict
State = dict  # name -> numpy array or nested dict of them


@dataclasses.dataclass(frozen=True)
class Network:
  """What evaluates one task: a module, its parameters, the head to read."""

  model: nn.Module
  params: Params
  head: int


def ones(params: Params) -> Params:
  """Mask that trains everything."""
  return jax.tree.map(lambda v: np.ones(v.shape, np.float32), params)


def only(params: Params, names: Sequence[str]) -> Params:
  """Mask that trains the parameter groups `names` only."""
  return {
    n: {
      k: np.full(v.shape, float(n in names), np.float32) for k, v in g.items()
    }
    for n, g in params.items()
  }


def phase_record(**phases: fit.FitResult) -> dict:
  """JSON record of a task's phases: steps, validation loss before the
  first step and of the returned (best) parameters, their accuracy."""
  return {
    "phases": {
      name: {
        "steps": r.steps,
        "validation_loss_before": r.initial_validation_loss,
        "validation_loss": r.validation_loss,
        "validation_accuracy": r.scores["accuracy"],
      }
      for name, r in phases.items()
    }
  }


# `model.name` of a continual config: every method's trunk is a
# `ConvClassifier`; "mlp" is one without conv blocks (DEN's 312-128
# perceptron, on images or frozen-encoder embeddings).
TRUNKS = ("conv_classifier", "mlp")


@dataclasses.dataclass(frozen=True)
class Widths:
  """Layer widths of the backbone (`configs/*.py` `model.widths`).

  Attributes:
    conv_widths: channels of the 3x3 conv blocks, input to output.
    dense_widths: units of the dense layers.
    encoder: a musicnn checkpoint whose trunk comes first and is trained
      end to end (`model.fine_tune_encoder`), or "" for none.
  """

  conv_widths: tuple[int, ...]
  dense_widths: tuple[int, ...]
  encoder: str = ""

  def module_fields(self) -> dict:
    """The trunk modules' fields (`ConvClassifier`, `ProgressiveNet`)."""
    return {
      "conv_widths": self.conv_widths,
      "dense_widths": self.dense_widths,
      "encoder": bool(self.encoder),
    }

  def pretrained(self, rename) -> Params:
    """The encoder trunk's checkpoint groups, named by `rename` (see
    `musicnn_checkpoint.folded`); {} without an encoder."""
    if not self.encoder:
      return {}
    return musicnn_checkpoint.folded(
      musicnn_checkpoint.load(self.encoder), rename
    )


class Method:
  """Interface of a continual-learning method (see the module docstring).

  A method is built once, at the runner's boundary, by `from_config`: its
  widths, the input shape and its own frozen settings (`settings_class`
  from the config section `section`); it reads no config afterwards.

  Attributes:
    scenario: "task_incremental" (a head per task, the task id given at
      test) or "class_incremental" (`mcl.continual.class_incremental`).
    joint: True when the method trains all tasks at once (`learn_task` is
      then called once, for the last task, after every `begin_task`).
    model_name: registry name of the module it builds.
    section: the config section of its settings, or None.
    settings_class: the frozen dataclass of those settings.
  """

  scenario = "task_incremental"
  joint = False
  model_name = "conv_classifier"
  section: str | None = None
  settings_class: type | None = None

  def __init__(
    self,
    widths: Widths,
    input_shape: tuple[int, ...],
    settings=None,
    head_sizes: tuple[int, ...] = (),
  ):
    """Args: backbone widths; the shape of one input batch; settings;
    the classes of every task of the run, when known (() otherwise)."""
    self.widths = widths
    self.input_shape = tuple(input_shape)
    self.settings = settings
    self.head_sizes = tuple(head_sizes)

  @property
  def model_class(self) -> type[nn.Module]:
    """The module class of `model_name` (`mcl.models` registry)."""
    return models.get_model_class(self.model_name)

  def model(self, params: Params) -> nn.Module:
    """The module that applies `params`: its widths read from the tree."""
    return self.model_class.from_params(params)

  @classmethod
  def from_config(
    cls,
    config: ml_collections.ConfigDict,
    input_shape: tuple[int, ...],
    head_sizes: tuple[int, ...] = (),
  ) -> "Method":
    """The method of an experiment config (`head_sizes`: the classes of
    every task of the run, which lets a method allocate them up front).

    Raises:
      TypeError: the config section has unknown or missing settings.
    """
    fine_tune = config.model.get("fine_tune_encoder", False)
    widths = Widths(
      conv_widths=tuple(config.model.widths.conv_widths),
      dense_widths=tuple(config.model.widths.dense_widths),
      encoder=config.data.encoder if fine_tune else "",
    )
    settings = None
    if cls.section is not None:
      settings = cls.settings_class(**config[cls.section])
    return cls(widths, input_shape, settings, head_sizes)

  def random_init_network(self, task: tasks.Task, key: jax.Array) -> Network:
    """b_j of forward transfer: the backbone (`ConvClassifier` at the
    method's widths, one head for `task`) at random initialisation."""
    model = ConvClassifier(
      **self.widths.module_fields(), head_sizes=(task.num_classes,)
    )
    params = model.init(key, jnp.zeros(self.input_shape))["params"]
    params = {**params, **self.widths.pretrained(encoder_name)}
    return Network(model, params, 0)

  def architecture_record(self, params: Params, state: State) -> dict:
    """What a task's checkpoint metadata keeps about the grown network:
    "units_per_layer" (None for a method that does not count units)."""
    del params, state
    return {"units_per_layer": None}

  def init(self, key: jax.Array, task: tasks.Task) -> tuple[Params, State]:
    """Parameters and state before task 0, with head 0."""
    raise NotImplementedError

  def begin_task(
    self, params: Params, state: State, task: tasks.Task, rng
  ) -> tuple[Params, State]:
    """Adds what task `task` needs (head, column); task 0's is in `init`."""
    raise NotImplementedError

  def learn_task(
    self,
    context: phase.Context,
    params: Params,
    state: State,
    task: tasks.Task,
    rng,
  ) -> tuple[Params, State, dict]:
    """Trains task `task`; returns the tree, state and a JSON record."""
    raise NotImplementedError

  def network(self, params: Params, state: State, task: int) -> Network:
    """The network that answers for task `task`."""
    raise NotImplementedError

  def scoring_network(self, params: Params, state: State, task: int) -> Network:
    """`network`'s outputs in shapes that stay the same over the run where
    the method can keep them (one compilation of scoring per run)."""
    return self.network(params, state, task)

  def context(self, context: phase.Context) -> phase.Context:
    """The context `learn_task` trains through (the runner's by default)."""
    return context


class Sequential(Method):
  """One `ConvClassifier` trunk, a head per task, timestamped inference.

  When the run's tasks are known (`head_sizes`), phases train and scoring
  runs the tree in its capacity slots (`mcl.continual.slots`): every head
  allocated up front and, for a method that grows units, spare units per
  layer, so neither a new head nor a growth within capacity compiles the
  step or the scoring again.

  Attributes:
    capacity_factor: None for a method whose layers never grow; else the
      first allocation of a layer's slots, times its initial width
      (`slots.capacity`).
    pads: False for a method whose penalty holds a module of the compact
      widths (it trains unpadded).
  """

  capacity_factor: float | None = None
  pads = True

  def slots(self, params: Params) -> slots.Slots | None:
    """The slots of `params`, or None when the run's tasks are unknown."""
    if not self.head_sizes:
      return None
    model = ConvClassifier(**self.widths.module_fields(), head_sizes=())
    initial = dict(
      zip(
        model.hidden_layers,
        (*self.widths.conv_widths, *self.widths.dense_widths),
        strict=True,
      )
    )
    return slots.plan(
      params,
      model.hidden_layers,
      initial,
      self.head_sizes,
      self.capacity_factor,
    )

  def context(self, context):
    if not (self.pads and self.head_sizes):
      return context
    return slots.PaddedContext(context, self.slots)

  def scoring_network(self, params, state, task):
    run_slots = self.slots(params)
    if run_slots is None:
      return self.network(params, state, task)
    padded = slots.timestamped(
      slots.pad(params, run_slots),
      slots.unit_mask(state["timestamps"], run_slots, task),
    )
    return Network(ConvClassifier.from_params(padded), padded, task)

  def init(self, key, task):
    model = ConvClassifier(
      **self.widths.module_fields(), head_sizes=(task.num_classes,)
    )
    params = jax.device_get(
      model.init(key, jnp.zeros(self.input_shape))["params"]
    )
    params = {**params, **self.widths.pretrained(encoder_name)}
    timestamps = {
      name: np.zeros(params[name]["bias"].shape, np.int32)
      for name in model.hidden_layers
    }
    return params, {"timestamps": timestamps}

  def begin_task(self, params, state, task, rng):
    layers = tuple(state["timestamps"])
    params = surgery.add_head(
      params, layers[-1], head_name(task.index), task.num_classes, rng
    )
    return params, state

  def architecture_record(self, params, state):
    """Timestamps, live units and (when padded) slots of every layer."""
    timestamps = state["timestamps"]
    run_slots = self.slots(params)
    return {
      "timestamps": {k: v.tolist() for k, v in timestamps.items()},
      "units_per_layer": surgery.widths(params, tuple(timestamps)),
      "slots_per_layer": run_slots and run_slots.capacities,
    }

  def network(self, params, state, task):
    timestamps = state["timestamps"]
    heads = ConvClassifier.from_params(params).heads
    sub = timestamped.timestamped_params(
      params, timestamps, tuple(timestamps), heads, task
    )
    return Network(ConvClassifier.from_params(sub), sub, task)
