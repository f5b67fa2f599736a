"""FCN (Choi et al. 2016): 29.1 s of 96-band log-mel.

MagnaTagATune top-50 with the recipe of Won et al. 2020
(`configs/mtat_tagging.py`).
"""

import ml_collections

from mcl.configs import mtat_tagging


def get_config() -> ml_collections.ConfigDict:
  return mtat_tagging.make("fcn")
