"""Temporal-feedback CRNN on FMA medium (Kim & Nam, MIREX 2019): the CRNN
whose GRU state at step t-1 scales the CNN's channels at step t
(`mcl.models.feedback_crnn.TemporalFeedbackCRNN`). Published: 0.6117.
"""

import ml_collections

from mcl.configs import fma_genres
from mcl.models import feedback_crnn


def get_config() -> ml_collections.ConfigDict:
  return fma_genres.make("tf_crnn", feedback_crnn.SEGMENT)
