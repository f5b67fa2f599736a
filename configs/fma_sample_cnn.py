"""The zoo's sample-level CNN (Lee et al. 2017) on FMA medium genres, at
its own input of 59,049 samples (3.69 s). Published (Kim & Nam's MIREX
2019 comparison): 0.6314.
"""

import ml_collections

from mcl.configs import fma_genres


def get_config() -> ml_collections.ConfigDict:
  return fma_genres.make("sample_cnn", 59_049)
