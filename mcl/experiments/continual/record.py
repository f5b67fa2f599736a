"""What one task of a continual run produced: its `TaskRecord`.

A record is built when a task is done (`mcl.experiments.continual.runner`),
saved as the JSON metadata of the task's checkpoint (`to_json`), read back
on resume, by `mcl.inspect` and `mcl.predict` (`from_json`), and
`mcl.experiments.continual.results.assemble` builds results.json from the
records of the finished tasks. Row i of a score matrix is the record of
task i: the scores of tasks 0..i after training task i.
"""

import dataclasses
import json


@dataclasses.dataclass(frozen=True)
class TaskRecord:
  """One finished task; every score is a float in [0, 1] or None.

  Attributes:
    task: its index in the sequence.
    model: registry name of the network's module (`mcl.models`).
    input_shape: shape of one input batch, e.g. [1, frames, mels].
    records: the TFDS records the run read ("name/config/version"), or
      None for in-memory data.
    architecture: the module's constructor arguments (widths).
    accuracy_row: test accuracy of tasks 0..task after it.
    auroc_row: their test ROC-AUC (macro over classes).
    pr_auc_row: their test PR-AUC.
    validation_accuracy_row: their validation accuracy.
    class_incremental_row: test accuracy of each task 0..task's clips
      among all classes seen so far, the task id not given.
    class_incremental_accuracy: accuracy over the union of those clips.
    confusion_matrix: [true class][predicted class] test clip counts over
      the seen classes, in task order.
    zero_shot_accuracy: the untrained network's test accuracy on the task
      (forward transfer), None for task 0 and joint runs.
    random_init_accuracy: the method's random-init reference on the task
      (b_j of forward transfer), None where FWT does not read it.
    validation_loss: the task's validation loss after training (nats).
    zero_shot_validation_loss: the untrained network's.
    learnt: `validation_loss` is below the untrained one (None: joint).
    global_step: optimizer steps of the run so far.
    record: the method's record of the task (phases, units, splits).
    network: the method's `architecture_record` (e.g. "timestamps",
      "units_per_layer", "slots_per_layer").
    seconds: wall time of the task.
  """

  task: int
  model: str
  input_shape: list
  records: str | None
  architecture: dict
  accuracy_row: list
  auroc_row: list
  pr_auc_row: list
  validation_accuracy_row: list
  class_incremental_row: list | None
  class_incremental_accuracy: float | None
  confusion_matrix: list | None
  zero_shot_accuracy: float | None
  random_init_accuracy: float | None
  validation_loss: float | None
  zero_shot_validation_loss: float | None
  learnt: bool | None
  global_step: int
  record: dict
  network: dict
  seconds: float

  def to_json(self) -> dict:
    """The checkpoint metadata: the fields, `network`'s keys at the top.

    JSON values only (lists, not tuples), as a resumed run reads them.
    """
    fields = dataclasses.asdict(self)
    network = fields.pop("network")
    return json.loads(json.dumps({**fields, **network}))

  @classmethod
  def from_json(cls, metadata: dict) -> "TaskRecord":
    """The record of `to_json`'s metadata (keys not fields: `network`)."""
    names = {f.name for f in dataclasses.fields(cls)} - {"network"}
    fields = {k: metadata.get(k) for k in names}
    network = {k: v for k, v in metadata.items() if k not in names}
    return cls(**fields, network=network)
