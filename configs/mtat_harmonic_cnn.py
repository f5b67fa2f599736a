"""Harmonic CNN (Won et al., ICASSP 2020): 5 s of 16 kHz waveform through a
learnable harmonic filter bank.

MagnaTagATune top-50 with the recipe of Won et al. 2020
(`configs/mtat_tagging.py`); the records store the waveform.
"""

import ml_collections

from mcl.configs import mtat_tagging


def get_config() -> ml_collections.ConfigDict:
  return mtat_tagging.make("harmonic_cnn")
