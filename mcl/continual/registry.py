"""The continual-learning methods by scenario and name (`config.scenario`,
`config.method`).

`METHODS` maps each name to its task-incremental `mcl.continual.method.Method`
class: DEN (Yoon et al., ICLR 2018) and the baselines it is compared with,
each registered by `register_method` as a user's own method is.
`CLASS_INCREMENTAL` holds the class-incremental scenario's methods
(`mcl.continual.class_incremental`). The continual experiment
(`mcl.experiments.continual.runner`), the config checks and `mcl.predict`
look methods up here (`method_class`), so a registered method runs,
validates and predicts like a built-in one.
"""

from mcl.continual import baselines, columns, den, joint, method, replay
from mcl.continual.class_incremental import closed_form, rehearsal, trained
from mcl.runtime import errors

METHODS: dict[str, type[method.Method]] = {}
CLASS_INCREMENTAL: dict[str, type[method.Method]] = {}
# config.scenario -> its methods.
SCENARIOS = {
  "task_incremental": METHODS,
  "class_incremental": CLASS_INCREMENTAL,
}


def method_class(config) -> type[method.Method]:
  """The class of `config.method` in `config.scenario` (default
  "task_incremental").

  Raises:
    mcl.runtime.errors.UserError: an unknown scenario, or a method the
      scenario does not have.
  """
  scenario = config.get("scenario", "task_incremental")
  if scenario not in SCENARIOS:
    raise errors.UserError(
      f"scenario={scenario!r}: must be one of {sorted(SCENARIOS)}"
    )
  known = SCENARIOS[scenario]
  if config.method not in known:
    raise errors.UserError(
      f"method={config.method!r}: not a {scenario} method (register_method "
      f"it before running); known: {sorted(known)}"
    )
  return known[config.method]


def register_method(name: str, cls: type[method.Method]) -> None:
  """Makes `cls` the method of `config.method = name` in its scenario
  (`cls.scenario`).

  Args:
    name: the method's name in configs and on the command line.
    cls: a `mcl.continual.method.Method` subclass (usually of
      `method.Sequential`); its `section` and `settings_class` name the
      config section of its settings, if any.

  A class of the same module and name replaces an earlier one (a notebook
  cell run again defines the class anew).

  Raises:
    TypeError: `cls` is not a `Method` subclass.
    ValueError: `name` is empty or already names another class.
  """
  if not (isinstance(cls, type) and issubclass(cls, method.Method)):
    raise TypeError(f"method {name!r}: {cls!r} is not a Method subclass")
  registry = SCENARIOS.get(cls.scenario)
  if registry is None:
    raise ValueError(f"method {name!r}: unknown scenario {cls.scenario!r}")
  known = registry.get(name, cls)
  same = (known.__module__, known.__qualname__) == (
    cls.__module__,
    cls.__qualname__,
  )
  if not name or not same:
    raise ValueError(f"method name {name!r} is empty or taken by {known!r}")
  registry[name] = cls


for _name, _cls in (
  ("den", den.DEN),
  ("stl", columns.STL),
  ("progressive", columns.Progressive),
  ("joint", joint.Joint),
  ("finetune", baselines.FineTune),
  ("l2", baselines.L2),
  ("ewc", baselines.EWC),
  ("lwf", baselines.LwF),
  ("replay", replay.Replay),
):
  register_method(_name, _cls)
for _name, _cls in (
  ("finetune", trained.FineTune),
  ("joint", trained.Joint),
  ("lwf", trained.LwF),
  ("ewc", trained.EWC),
  ("replay", rehearsal.Replay),
  ("icarl", rehearsal.ICaRL),
  ("derpp", rehearsal.DERPP),
  ("ncm", closed_form.NCM),
  ("ranpac", closed_form.RanPAC),
):
  register_method(_name, _cls)
