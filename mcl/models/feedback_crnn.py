"""Raw-waveform CRNN and temporal-feedback CRNN (TF-CRNN) of Kim & Nam.

Taejun Kim and Juhan Nam, "Temporal feedback convolutional recurrent neural
networks for speech command recognition" (arXiv:1911.01803, 2019; APSIPA
ASC 2022), submitted to MIREX 2019 on FMA medium (16 genres, 2.5 s
segments at 16 kHz, track prediction by averaging segment predictions).
The architecture follows the authors' PyTorch code
(github.com/tae-jun/temporal-feedback-crnn, `tfcrnn/models/skeletons/
crnn.py`, `tf_crnn.py`, `blocks/plain_blocks.py`, `blocks/tf_blocks.py`):

  * the segment is cut into overlapping windows (hop = window / 2), one per
    GRU step;
  * each window goes through a sample-level CNN of its own: a stride-3
    conv (kernel 3, padding 1) -> BatchNorm -> ReLU, then blocks of conv 3
    (padding 1) -> BatchNorm -> ReLU -> max pool 3, then a max over the
    remaining steps and dropout (0.5);
  * a GRU cell reads one CNN vector per window; a dense layer on its last
    hidden state gives the logits;
  * TF-CRNN only: after every block, the window's channels are multiplied
    by sigmoid(dense(h_{t-1})), h_{t-1} being the GRU state before this
    window (zero before the first), i.e. squeeze-and-excitation whose
    excitation comes from the recurrent state instead of the block itself.
    This is the code's commented "old implementation" (one dense layer);
    its current default puts a ReLU bottleneck of 1/8 the width first.

Taken from the issue's summary of the MIREX 2019 abstract (which could not
be retrieved): the GRU's weights start at zero. With every GRU parameter
zero the hidden state stays zero, so the initial logits are the output
layer's bias for every input; the gradient reaches the GRU's input kernel
of the candidate state ("in") at once and the rest after one update.

Chosen here, from the authors' speech-command defaults (1 s inputs): a
3,200-sample window (200 ms, hop 100 ms), stem width 128 doubled at the
third and last of the log_3(3200) - 1 = 6 blocks, and a 256-unit GRU. A
2.5 s segment (40,000 samples) then gives 24 GRU steps (the authors'
`2 * (samples // window) - 1` would drop the last window, giving 23), and
each window pools 3,200 -> 1,067 -> 355 -> 118 -> 39 -> 13 -> 4 -> 1.

Layouts are channels-last like the rest of the zoo; BatchNorm uses torch's
defaults (`layers.batch_norm`). The CNN runs inside the recurrence (a
`flax.linen.scan`), once per window, so its BatchNorm sees one window per
example at a time and updates its running statistics once per GRU step,
as the reference's per-step module calls do.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from mcl.models import layers

# Stem (strided conv) width, then the six pooling blocks.
WIDTHS = (128, 128, 128, 256, 256, 256, 512)
WINDOW = 3_200  # samples at 16 kHz: 200 ms
HOP = 1_600  # samples: 100 ms
SEGMENT = 40_000  # samples: the paper's 2.5 s at 16 kHz


def num_steps(samples: int, window: int = WINDOW, hop: int = HOP) -> int:
  """GRU steps (whole windows) in `samples`; a trailing remainder is unused.

  Raises:
    ValueError: `samples` is shorter than one window.
  """
  if samples < window:
    raise ValueError(f"{samples} samples are shorter than a {window} window")
  return (samples - window) // hop + 1


def pooled_length(window: int, num_blocks: int) -> int:
  """Steps left of a `window`-sample window after the stem and blocks."""
  length = (window - 1) // 3 + 1  # kernel 3, stride 3, padding 1
  for _ in range(num_blocks):
    length //= 3
  return length


class _WindowStep(nn.Module):
  """One GRU step: the CNN on one window (scaled by the previous hidden
  state when `feedback`), then the GRU cell.

  Attributes:
    widths: output channels of `stem`, `block_0`, ...
    gru_width: GRU hidden units.
    feedback: scale each block's channels by sigmoid(`feedback_<i>`(h)).
    dropout_rate: dropout on the CNN vector before the GRU.
    train: batch statistics and dropout on.
  """

  widths: Sequence[int]
  gru_width: int
  feedback: bool
  dropout_rate: float
  train: bool

  @nn.compact
  def __call__(self, hidden_BxH, window_BxW):
    """(h_{t-1} [batch, gru], window [batch, samples]) -> (h_t, None)."""
    h = layers.ConvBlock1d(self.widths[0], 3, 3, 1, name="stem")(
      window_BxW[..., None], train=self.train
    )
    for i, width in enumerate(self.widths[1:]):
      block = layers.ConvBlock1d(width, 3, 1, 3, name=f"block_{i}")
      h = block(h, train=self.train)
      if self.feedback:
        scale = nn.sigmoid(nn.Dense(width, name=f"feedback_{i}")(hidden_BxH))
        h = h * scale[:, None, :]
    h_BxC = h.max(axis=1)
    h_BxC = nn.Dropout(self.dropout_rate, deterministic=not self.train)(h_BxC)
    cell = nn.GRUCell(
      self.gru_width,
      kernel_init=nn.initializers.zeros,
      recurrent_kernel_init=nn.initializers.zeros,
      bias_init=nn.initializers.zeros,
      name="gru",
    )
    hidden_BxH, _ = cell(hidden_BxH, h_BxC)
    return hidden_BxH, None


def _recurrence(carry_stats: bool):
  """`_WindowStep` scanned over windows (axis 1 of the windows input).

  Parameters are shared by all steps and each step draws its own dropout
  mask. With `carry_stats` the BatchNorm statistics are carried from step
  to step (a training apply with "batch_stats" mutable); otherwise they
  are broadcast like the parameters: a carried collection must exist
  before the loop and be mutable, whereas `init` creates the statistics
  inside the body (without updating them) and evaluation only reads them.
  """
  stats = {"variable_broadcast": ["params", "batch_stats"]}
  if carry_stats:
    stats = {"variable_broadcast": "params", "variable_carry": "batch_stats"}
  return nn.scan(
    _WindowStep,
    split_rngs={"params": False, "dropout": True},
    in_axes=1,
    **stats,
  )


class WaveformCRNN(nn.Module):
  """Kim & Nam's raw-waveform CRNN (TF-CRNN without the feedback).

  Attributes:
    widths: output channels of the stem and of each pooling block; the
      window must leave at least one step after them (`pooled_length`).
    gru_width: GRU hidden units.
    window: samples per GRU step.
    hop: samples between window starts.
    num_classes: number of genres (FMA medium: 16).
    dropout_rate: dropout on each window's CNN vector.
    feedback: temporal feedback from the GRU state to every block.
  """

  widths: Sequence[int] = WIDTHS
  gru_width: int = 256
  window: int = WINDOW
  hop: int = HOP
  num_classes: int = 16
  dropout_rate: float = 0.5
  feedback: bool = False

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """Class logits of a segment.

    Args:
      x: float32 [batch, samples] waveform in [-1, 1] at 16 kHz (paper:
        40,000 samples); samples after the last whole window are unused.
      train: batch statistics and dropout on.

    Returns:
      float32 [batch, num_classes] logits (no softmax), from the GRU's
      hidden state after the last window.

    Raises:
      ValueError: `x` is shorter than one window, or the window pools to
        nothing before the last block.
    """
    if pooled_length(self.window, len(self.widths) - 1) < 1:
      raise ValueError(
        f"a {self.window}-sample window pools to nothing in "
        f"{len(self.widths) - 1} blocks; use a longer window or fewer blocks"
      )
    steps = num_steps(x.shape[1], self.window, self.hop)
    starts = np.arange(steps) * self.hop
    windows_BxTxW = x[:, starts[:, None] + np.arange(self.window)]
    hidden_BxH = jnp.zeros((x.shape[0], self.gru_width), x.dtype)
    carry_stats = self.is_mutable_collection("batch_stats") and not (
      self.is_initializing()
    )
    hidden_BxH, _ = _recurrence(carry_stats)(
      widths=tuple(self.widths),
      gru_width=self.gru_width,
      feedback=self.feedback,
      dropout_rate=self.dropout_rate,
      train=train,
      name="recurrence",
    )(hidden_BxH, windows_BxTxW)
    return nn.Dense(self.num_classes, name="dense")(hidden_BxH)


class TemporalFeedbackCRNN(WaveformCRNN):
  """Kim & Nam's TF-CRNN: `WaveformCRNN` with `feedback` on by default.

  Parameters are those of `WaveformCRNN` plus `recurrence/feedback_<i>`
  (gru_width x width kernel and width bias) for each block.
  """

  feedback: bool = True
