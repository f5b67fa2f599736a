"""VGGish transfer with AutoPool on MagnaTagATune top-50.

The AudioSet VGGish network (published weights, frozen by default) embeds
each 0.96 s patch of VGGish's own log-mel front end (16 kHz, 25 ms windows
every 10 ms, 64 mel bands 125-7500 Hz, log(mel + 0.01); records built with
`features.front_end = "vggish"`); a BatchNorm-dense-dropout-dense head
gives tag logits per patch and AutoPool pools the clip's 30 patches
(`mcl.models.vggish`). Download `vggish_model.ckpt` and
`vggish_pca_params.npz` into `model.pretrained` (README).
`--config.model.widths.fine_tune=True` trains VGGish too. Same recipe,
data and evaluation as the rest of the zoo (`configs/mtat_tagging.py`),
but one chunk per clip: the input is the whole clip.
"""

import ml_collections

from mcl.configs import mtat_tagging
from mcl.features import logmel


def get_config() -> ml_collections.ConfigDict:
  config = mtat_tagging.make("vggish")
  config.features.front_end = "vggish"
  config.features.sample_rate = logmel.VGGISH_SAMPLE_RATE
  config.features.n_mels = logmel.VGGISH_BANDS
  config.model.pretrained = "data/vggish"
  config.model.widths.fine_tune = False
  config.data.eval_chunks = 1  # One chunk is the whole clip.
  return config
