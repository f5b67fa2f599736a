"""Your own arrays: a continual run on `mcl.datasets.arrays.from_arrays`.

For a notebook or script that already holds features or log-mels:

  data = arrays.from_arrays(x, y, [[0, 1], [2, 3]], split)
  mcl.experiments.run(arrays_config.get_config(), workdir, data=data)

The tasks, input shape and batch sizes come from the arrays (`data=`);
this config holds the method (DEN by default; every method of
`mcl.continual.registry.METHODS` with `--config.method`), the network (a
multilayer perceptron over the flattened example) and the budget.
"""

import ml_collections

from mcl.configs import permuted_digits


def get_config() -> ml_collections.ConfigDict:
  config = permuted_digits.get_config()
  config.data = ml_collections.ConfigDict()
  config.data.source = "arrays"  # Passed as data= to mcl.experiments.run.
  config.model.widths.dense_widths = (64, 32)
  return config
