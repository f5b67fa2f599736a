"""The continual-learning methods by name (`config.method`).

`METHODS` maps each name to its `mcl.continual.method.Method` class: DEN
(Yoon et al., ICLR 2018) and the baselines it is compared with. The
continual experiment (`mcl.experiments.continual.runner`), the config checks and
`mcl.predict` look methods up here, so none of them imports another to
find one.
"""

from mcl.continual import baselines, columns, den, joint, method, replay

METHODS: dict[str, type[method.Method]] = {
  "den": den.DEN,
  "stl": columns.STL,
  "progressive": columns.Progressive,
  "joint": joint.Joint,
  "finetune": baselines.FineTune,
  "l2": baselines.L2,
  "ewc": baselines.EWC,
  "lwf": baselines.LwF,
  "replay": replay.Replay,
}
