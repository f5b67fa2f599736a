"""VGGish transfer with AutoPool: the seed system of music tagging from a
pretrained audio embedding.

- `VGGish`: the AudioSet embedding network of Hershey et al., "CNN
  architectures for large-scale audio classification" (ICASSP 2017), as
  the release's `vggish_slim.py` defines it: six 3x3 convs (64, 128, 256,
  256, 512, 512) with four 2x2 max pools over a 96 x 64 log-mel patch
  (0.96 s, `mcl.features.logmel.vggish_log_mel`), fc 4096-4096 with ReLU, and a
  linear 128-d embedding; then, as the release's postprocessor does,
  PCA (`pca` parameters) and clipping to [-2, 2], without the 8-bit
  quantisation. Its weights come from the published checkpoint
  (`mcl.models.vggish_checkpoint`).
- `AutoPool` (McFee, Salamon & Bello, "Adaptive pooling operators for
  weakly labeled sound event detection", TASLP 2018, Eq. 8-9): per class
  c, the clip probability is sum_i p_ic softmax_i(alpha_c p_ic), mean
  pooling at alpha = 0 and max pooling as alpha -> infinity, alpha learnt.
- `VGGishAutoPool`: per patch, the embedding -> BatchNorm -> dense + ReLU
  -> dropout -> dense to tag logits; AutoPool over the clip's patches.
  With `fine_tune` False the VGGish part is frozen (no gradient flows into
  it, and `frozen_groups` tells the trainer to mask it) and needs the
  published weights (`needs_pretrained`).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from mcl.features import logmel
from mcl.models import layers

# Parameter names of the convs and dense layers, in order.
CONV_NAMES = ("conv1", "conv2", "conv3_1", "conv3_2", "conv4_1", "conv4_2")
FC_NAMES = ("fc1_1", "fc1_2")
# The convs after which a 2x2 pool follows (pool1 .. pool4).
_POOL_AFTER = ("conv1", "conv2", "conv3_2", "conv4_2")


class VGGish(nn.Module):
  """The VGGish embedding network (see the module docstring).

  Attributes:
    conv_widths: channels of conv1, conv2, conv3_1, conv3_2, conv4_1,
      conv4_2 (release: 64, 128, 256, 256, 512, 512).
    fc_widths: units of fc1_1 and fc1_2 (release: 4096, 4096).
    embedding_size: units of fc2 (release: 128).
    postprocess: apply the PCA and the [-2, 2] clipping.
  """

  conv_widths: tuple[int, ...] = (64, 128, 256, 256, 512, 512)
  fc_widths: tuple[int, ...] = (4096, 4096)
  embedding_size: int = 128
  postprocess: bool = True

  @nn.compact
  def __call__(self, patches_NxTxF: jnp.ndarray) -> jnp.ndarray:
    """Embeddings of log-mel patches.

    Args:
      patches_NxTxF: float32 [patches, 96, 64], `vggish_log_mel` frames.

    Returns:
      float32 [patches, embedding_size].
    """
    h = patches_NxTxF[..., None]
    for name, width in zip(CONV_NAMES, self.conv_widths, strict=True):
      h = nn.relu(nn.Conv(width, (3, 3), padding="SAME", name=name)(h))
      if name in _POOL_AFTER:  # 96 x 64 halves evenly: SAME = floor.
        h = layers.disjoint_max_pool(h, (2, 2))
    h = h.reshape(h.shape[0], -1)  # Row-major (time, mel, channel), as TF.
    for name, width in zip(FC_NAMES, self.fc_widths, strict=True):
      h = nn.relu(nn.Dense(width, name=name)(h))
    h = nn.Dense(self.embedding_size, name="fc2")(h)
    if not self.postprocess:
      return h
    pca = self.param(
      "pca_eigen_vectors",
      nn.initializers.constant(jnp.eye(self.embedding_size)),
      (self.embedding_size, self.embedding_size),
    )
    means = self.param(
      "pca_means", nn.initializers.zeros, (self.embedding_size,)
    )
    return jnp.clip((h - means) @ pca.T, -2.0, 2.0)


class AutoPool(nn.Module):
  """AutoPool over instances, in logit space (see the module docstring).

  Attributes:
    num_classes: classes, each with its own alpha (initialised to 0:
      mean pooling).
  """

  num_classes: int

  @nn.compact
  def __call__(self, logits_BxNxC: jnp.ndarray) -> jnp.ndarray:
    """Clip logits from instance logits.

    The clip probability P = sum_i w_i p_i, w = softmax_i(alpha p_i), is
    returned as log P - log(1 - P), both from log-sum-exps of
    log w_i + log sigmoid(+-z_i), so a saturated instance never gives an
    infinite logit.

    Args:
      logits_BxNxC: float32 [batch, instances, classes].

    Returns:
      float32 [batch, classes].
    """
    alpha = self.param("alpha", nn.initializers.zeros, (self.num_classes,))
    log_w = jax.nn.log_softmax(alpha * jax.nn.sigmoid(logits_BxNxC), axis=1)
    log_p = jax.nn.logsumexp(log_w + jax.nn.log_sigmoid(logits_BxNxC), axis=1)
    log_q = jax.nn.logsumexp(log_w + jax.nn.log_sigmoid(-logits_BxNxC), axis=1)
    return log_p - log_q


class VGGishAutoPool(nn.Module):
  """Tagging from VGGish embeddings of a clip's patches, AutoPooled.

  Input: a clip's `vggish_log_mel` frames, a whole number of 96-frame
  patches (paper config: 30 patches, 28.8 s).

  Attributes:
    num_classes: number of tags.
    hidden: units of the dense layer on each embedding.
    dropout_rate: dropout before the output layer.
    fine_tune: train VGGish too; otherwise it is frozen.
    conv_widths: `VGGish.conv_widths`.
    fc_widths: `VGGish.fc_widths`.
    embedding_size: `VGGish.embedding_size`.
  """

  num_classes: int = 50
  hidden: int = 512
  dropout_rate: float = 0.5
  fine_tune: bool = False
  conv_widths: tuple[int, ...] = VGGish.conv_widths
  fc_widths: tuple[int, ...] = VGGish.fc_widths
  embedding_size: int = 128

  @property
  def needs_pretrained(self) -> bool:
    """A frozen VGGish is only worth its published weights."""
    return not self.fine_tune

  @property
  def frozen_groups(self) -> tuple[tuple[str, ...], ...]:
    """Parameter paths the trainer must not update: VGGish unless
    fine-tuned, and its PCA always (a fixed projection)."""
    if self.fine_tune:
      return (
        ("vggish", "pca_eigen_vectors"),
        ("vggish", "pca_means"),
      )
    return (("vggish",),)

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """Tag logits.

    Args:
      x: float32 [batch, patches * 96, 64] VGGish log-mel frames.
      train: batch statistics and dropout on.

    Returns:
      float32 [batch, num_classes] logits (no sigmoid).

    Raises:
      ValueError: the frames are not a whole number of patches of 64 bands.
    """
    batch, frames, bands = x.shape
    patch = logmel.VGGISH_PATCH_FRAMES
    if frames % patch or bands != logmel.VGGISH_BANDS:
      raise ValueError(
        f"vggish: input {x.shape} is not [batch, k * {patch}, "
        f"{logmel.VGGISH_BANDS}] VGGish frames"
      )
    patches = x.reshape(batch * (frames // patch), patch, bands)
    h = VGGish(
      self.conv_widths, self.fc_widths, self.embedding_size, name="vggish"
    )(patches)
    if not self.fine_tune:
      h = jax.lax.stop_gradient(h)
    h = layers.batch_norm(train=train, name="bn")(h)
    h = nn.relu(nn.Dense(self.hidden, name="dense_0")(h))
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    h = nn.Dense(self.num_classes, name="dense_1")(h)
    return AutoPool(self.num_classes, name="autopool")(
      h.reshape(batch, frames // patch, self.num_classes)
    )
