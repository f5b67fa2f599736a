"""Musicnn: Pons & Serra 2019, "musicnn: pre-trained convolutional neural
networks for music audio tagging" (ISMIR LBD 2019; the architecture of
Pons et al. 2018, "End-to-end learning for music audio tagging at scale"),
as benchmarked by Won et al. 2020 (reference `training/model.py`,
`Musicnn`, with the MTAT widths).

Front end: musically motivated filters on a 96-band log-mel, each followed
by BatchNorm and ReLU. Timbral filters span many mel bands and a few
frames, and are max-pooled over frequency; temporal filters are 1D convs
over the frequency-averaged spectrogram. Back end: three 1D conv blocks
with residual connections, every stage concatenated, max- and mean-pooled
over time, then a dense head.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from mcl.models import layers


class Musicnn(nn.Module):
  """Pons et al. 2018 / Pons & Serra 2019 musicnn.

  Needs at least max(timbral_heights) mel bands (paper: 96); any number of
  frames (paper: 188, 3 s).

  Attributes:
    timbral_width: filters of each timbral conv `timbral_<i>`.
    timbral_heights: mel bands spanned by each timbral conv; the reference
      hard-codes int(0.7 * 96) and int(0.4 * 96).
    timbral_length: frames spanned by the timbral convs.
    temporal_width: filters of each temporal conv `temporal_<i>`.
    temporal_lengths: frames spanned by each temporal conv.
    backend_width: channels of the back-end blocks `backend_<i>` (reference:
      64 for MTAT and Jamendo, 512 for the MSD).
    dense_width: hidden units of the head (reference: 200, 500 for MSD).
    num_classes: number of tags.
    dropout_rate: dropout before the output layer.
  """

  timbral_width: int = 204
  timbral_heights: Sequence[int] = (67, 38)
  timbral_length: int = 7
  temporal_width: int = 51
  temporal_lengths: Sequence[int] = (129, 65, 33)
  backend_width: int = 64
  dense_width: int = 200
  num_classes: int = 50
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """Tag logits.

    Args:
      x: float32 [batch, frames, mels] log-mel in dB.
      train: batch statistics and dropout on.

    Returns:
      float32 [batch, num_classes] logits (no sigmoid).
    """
    spec_BxTxFx1 = layers.input_batch_norm(x, train=train)
    pad = self.timbral_length // 2
    front = []
    for i, height in enumerate(self.timbral_heights):
      # Valid in frequency, same-length in time; max over the bands left.
      h = nn.Conv(
        self.timbral_width,
        (self.timbral_length, height),
        padding=((pad, pad), (0, 0)),
        name=f"timbral_{i}",
      )(spec_BxTxFx1)
      h = nn.relu(layers.batch_norm(train=train, name=f"timbral_bn_{i}")(h))
      front.append(h.max(axis=2))
    mean_BxTx1 = spec_BxTxFx1.mean(axis=2)
    for i, length in enumerate(self.temporal_lengths):
      h = nn.Conv(
        self.temporal_width,
        (length,),
        padding=((length // 2, length // 2),),
        name=f"temporal_{i}",
      )(mean_BxTx1)
      front.append(
        nn.relu(layers.batch_norm(train=train, name=f"temporal_bn_{i}")(h))
      )
    front_BxTxC = jnp.concatenate(front, axis=-1)

    stages = [front_BxTxC]
    h = front_BxTxC
    for i in range(3):
      block = layers.ConvBlock1d(self.backend_width, 7, name=f"backend_{i}")
      # The first block changes the width, so only later ones are residual.
      h = block(h, train=train) if i == 0 else block(h, train=train) + h
      stages.append(h)
    h = jnp.concatenate(stages, axis=-1)
    pooled = jnp.concatenate([h.max(axis=1), h.mean(axis=1)], axis=-1)
    return layers.DenseHead(
      self.dense_width, self.num_classes, self.dropout_rate, name="head"
    )(pooled, train=train)
