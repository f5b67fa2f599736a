"""Self-attention CNN (Won et al. 2019): 15 s of 128-band log-mel, a
residual CNN and a 2-layer transformer encoder.

MagnaTagATune top-50 with the recipe of Won et al. 2020
(`configs/mtat_tagging.py`).
"""

import ml_collections

from mcl.configs import mtat_tagging


def get_config() -> ml_collections.ConfigDict:
  return mtat_tagging.make("cnnsa")
