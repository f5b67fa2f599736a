"""Harmonic CNN of Won et al., "Data-driven harmonic filters for audio
representation learning" (ICASSP 2020; reference `training/model.py`,
`HarmonicCNN`, and `training/modules.py`, `HarmonicSTFT`).

The front end is learnt: a power STFT of the raw waveform (n_fft 512, hop
256, centred, periodic Hann) goes through triangular band-pass filters
centred on every semitone-half from C1 up to sample_rate / (2 * 6) and on
their 2nd to 6th harmonics, with bandwidth (0.1079 f + 24.7) / Q and one
learnable Q (Eq. 2-3 of the paper; Q starts at 1). The result, in dB, is a
[time, pitch, harmonic] map whose harmonics are the channels of a 2D CNN:
a conv block, three residual max-pool blocks, a conv block, two more
residual blocks pooling (time 3, frequency 2), global max over time, and
the dense head. The paper's input is 5 s of 16 kHz audio (80,000 samples,
313 frames).
"""

import flax.linen as nn
import jax.numpy as jnp
import librosa
import numpy as np

from mcl.models import layers

# Bandwidth of a filter centred on f Hz: (ALPHA * f + BETA) / Q (Eq. 3,
# the equivalent rectangular bandwidth of Glasberg & Moore).
_BW_ALPHA = 0.1079
_BW_BETA = 24.7


def harmonic_centres(
  sample_rate: int, n_harmonic: int, semitone_scale: int
) -> tuple[np.ndarray, int]:
  """Centre frequencies of the harmonic filters.

  Args:
    sample_rate: in Hz.
    n_harmonic: harmonics per pitch (the fundamental included).
    semitone_scale: filters per semitone.

  Returns:
    (float32 [n_harmonic * level] in Hz, harmonic-major: all pitches of
    harmonic 1, then of harmonic 2, ...; level, the pitches per harmonic),
    the pitches equally spaced in MIDI from C1 to the note nearest
    sample_rate / (2 * n_harmonic), that note excluded.
  """
  low = librosa.note_to_midi("C1")
  high = librosa.note_to_midi(
    librosa.hz_to_note(sample_rate / (2 * n_harmonic))
  )
  level = int((high - low) * semitone_scale)
  pitches = librosa.midi_to_hz(np.linspace(low, high, level + 1)[:-1])
  centres = np.concatenate([pitches * (h + 1) for h in range(n_harmonic)])
  return centres.astype(np.float32), level


def power_stft(waveform_BxS: jnp.ndarray, n_fft: int) -> jnp.ndarray:
  """|STFT|^2 as torchaudio's `Spectrogram(n_fft)` computes it.

  Centred frames (reflect padding of n_fft // 2), hop n_fft // 2, periodic
  Hann window, no normalisation.

  Args:
    waveform_BxS: float32 [batch, samples].
    n_fft: FFT and window length in samples.

  Returns:
    float32 [batch, 1 + samples // hop, n_fft // 2 + 1].
  """
  hop = n_fft // 2
  padded = jnp.pad(waveform_BxS, ((0, 0), (n_fft // 2, n_fft // 2)), "reflect")
  frames = 1 + waveform_BxS.shape[1] // hop
  index = np.arange(frames)[:, None] * hop + np.arange(n_fft)[None, :]
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
  spectrum = jnp.fft.rfft(padded[:, index] * window.astype(np.float32))
  return jnp.square(jnp.abs(spectrum))


class HarmonicSTFT(nn.Module):
  """The learnable harmonic filter bank over a power STFT, in dB.

  Attributes:
    sample_rate: in Hz.
    n_fft: STFT size in samples (hop n_fft // 2).
    n_harmonic: harmonics (output channels).
    semitone_scale: filters per semitone.
    learn_bandwidth: Q is a parameter ("bw_q"); otherwise fixed at 1.
  """

  sample_rate: int = 16_000
  n_fft: int = 512
  n_harmonic: int = 6
  semitone_scale: int = 2
  learn_bandwidth: bool = True

  @nn.compact
  def __call__(self, waveform_BxS: jnp.ndarray) -> jnp.ndarray:
    """float32 [batch, samples] -> float32 [batch, frames, level,
    n_harmonic] in dB (10 log10 of the filtered power, floored at 1e-10)."""
    centres, level = harmonic_centres(
      self.sample_rate, self.n_harmonic, self.semitone_scale
    )
    q = (
      self.param("bw_q", nn.initializers.ones, (1,))
      if self.learn_bandwidth
      else jnp.ones((1,))
    )
    spectrum = power_stft(waveform_BxS, self.n_fft)
    bins = np.linspace(0, self.sample_rate // 2, spectrum.shape[-1])
    bandwidth = (_BW_ALPHA * centres + _BW_BETA) / q  # [filters]
    up = 2 * (bins[:, None] - centres) / bandwidth + 1
    down = -2 * (bins[:, None] - centres) / bandwidth + 1
    bank = jnp.maximum(0.0, jnp.minimum(up, down))  # [bins, filters]
    filtered = spectrum @ bank  # [batch, frames, filters]
    shape = filtered.shape[:2] + (self.n_harmonic, level)
    db = 10.0 * jnp.log10(jnp.maximum(filtered.reshape(shape), 1e-10))
    return jnp.swapaxes(db, 2, 3)


class ResMaxPoolBlock2d(nn.Module):
  """The reference's `Res_2d_mp`: conv 3x3 -> BN -> ReLU -> conv 3x3 ->
  BN, plus the input (same width), ReLU, then a disjoint max pool.

  Attributes:
    pool: max-pool window (time, frequency).
  """

  pool: tuple[int, int]

  @nn.compact
  def __call__(self, x_BxTxFxC: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """[batch, frames, bins, C] -> [batch, frames // pt, bins // pf, C]."""
    pad = ((1, 1), (1, 1))
    width = x_BxTxFxC.shape[-1]
    h = nn.Conv(width, (3, 3), padding=pad, name="conv_0")(x_BxTxFxC)
    h = nn.relu(layers.batch_norm(train=train, name="bn_0")(h))
    h = nn.Conv(width, (3, 3), padding=pad, name="conv_1")(h)
    h = layers.batch_norm(train=train, name="bn_1")(h)
    return layers.disjoint_max_pool(nn.relu(h + x_BxTxFxC), self.pool)


class HarmonicCNN(nn.Module):
  """Won et al. 2020 Harmonic CNN (reference defaults).

  Needs 80,000 samples at 16 kHz (paper) or any length whose STFT frames
  pool to one frequency bin (the pitch axis always does: 128 -> 1).

  Attributes:
    n_channels: width of the first five blocks (twice it after).
    num_classes: number of tags.
    dropout_rate: dropout before the output layer.
    n_harmonic: harmonics of the front end.
    semitone_scale: filters per semitone.
  """

  n_channels: int = 128
  num_classes: int = 50
  dropout_rate: float = 0.5
  n_harmonic: int = 6
  semitone_scale: int = 2

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """Tag logits.

    Args:
      x: float32 [batch, samples] waveform in [-1, 1] at 16 kHz.
      train: batch statistics and dropout on.

    Returns:
      float32 [batch, num_classes] logits (no sigmoid).

    Raises:
      ValueError: the pooled map has more than one frequency bin.
    """
    h = HarmonicSTFT(
      n_harmonic=self.n_harmonic,
      semitone_scale=self.semitone_scale,
      name="hstft",
    )(x)
    h = layers.batch_norm(train=train, name="hstft_bn")(h)
    c = self.n_channels
    h = layers.ConvBlock2d(c, (2, 2), name="block_0")(h, train=train)
    for i in (1, 2, 3):
      h = ResMaxPoolBlock2d((2, 2), name=f"block_{i}")(h, train=train)
    h = layers.ConvBlock2d(2 * c, (2, 2), name="block_4")(h, train=train)
    for i in (5, 6):
      h = ResMaxPoolBlock2d((3, 2), name=f"block_{i}")(h, train=train)
    h = layers.squeeze_pooled_axis(h, 2, "harmonic_cnn").max(axis=1)
    return layers.DenseHead(
      2 * c, self.num_classes, self.dropout_rate, name="head"
    )(h, train=train)
