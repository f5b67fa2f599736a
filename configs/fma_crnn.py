"""CRNN on FMA medium (Kim & Nam's baseline to TF-CRNN): a sample-level CNN
on each window of a 2.5 s waveform segment, read by a GRU
(`mcl.models.feedback_crnn.WaveformCRNN`). Published: 0.6078 accuracy.
"""

import ml_collections

from mcl.configs import fma_genres
from mcl.models import feedback_crnn


def get_config() -> ml_collections.ConfigDict:
  return fma_genres.make("waveform_crnn", feedback_crnn.SEGMENT)
