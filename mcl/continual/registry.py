"""The continual-learning methods by name (`config.method`).

`METHODS` maps each name to its `mcl.continual.method.Method` class: DEN
(Yoon et al., ICLR 2018) and the baselines it is compared with, each
registered by `register_method` as a user's own method is. The continual
experiment (`mcl.experiments.continual.runner`), the config checks and
`mcl.predict` look methods up here, so a registered method runs,
validates and predicts like a built-in one.
"""

from mcl.continual import baselines, columns, den, joint, method, replay

METHODS: dict[str, type[method.Method]] = {}


def register_method(name: str, cls: type[method.Method]) -> None:
  """Makes `cls` the method of `config.method = name`.

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
  known = METHODS.get(name, cls)
  same = (known.__module__, known.__qualname__) == (
    cls.__module__,
    cls.__qualname__,
  )
  if not name or not same:
    raise ValueError(f"method name {name!r} is empty or taken by {known!r}")
  METHODS[name] = cls


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
