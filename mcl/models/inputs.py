"""Input of each zoo model as benchmarked by Won et al. 2020.

Won et al. 2020, "Evaluation of CNN-based automatic music tagging models"
(SMC 2020), feed every model 16 kHz audio; spectrogram models see a log-mel
(n_fft 512, hop 256, so frames = 1 + samples // 256) in dB, waveform models
the raw samples. Lengths are the paper's: FCN and CRNN 29.1 s, Musicnn 3 s,
the short-chunk and sample-level models 59,049 samples (3^10, 3.69 s), the
Harmonic CNN 5 s (80,000 samples), the self-attention CNN 15 s (938
frames). VGGish transfer, outside that paper, reads VGGish's own frames
(`mcl.features.logmel.vggish_log_mel`): 30 patches of 0.96 s.
The reference training script crops FCN and CRNN inputs to 29 s (464,000
samples, 1,813 frames) instead; both lengths pool to the same classifier
input.
"""

import dataclasses

FEATURES = ("log_mel", "waveform")


@dataclasses.dataclass(frozen=True)
class InputSpec:
  """What one model eats.

  Attributes:
    feature: "log_mel" (float32 [batch, frames, n_mels] in dB) or
      "waveform" (float32 [batch, samples] in [-1, 1] at 16 kHz).
    length: frames for "log_mel", samples for "waveform".
    n_mels: mel bands for "log_mel"; None for "waveform".
  """

  feature: str
  length: int
  n_mels: int | None

  def __post_init__(self):
    if self.feature not in FEATURES:
      raise ValueError(f"feature {self.feature!r} not in {FEATURES}")
    if (self.feature == "log_mel") != (self.n_mels is not None):
      raise ValueError("n_mels is required for log_mel and None otherwise")

  @property
  def shape(self) -> tuple[int, ...]:
    """Shape of one example (no batch axis)."""
    if self.n_mels is None:
      return (self.length,)
    return (self.length, self.n_mels)


def frames(samples: int, hop_length: int = 256) -> int:
  """Frames of a centred STFT of `samples` samples (librosa, torchaudio)."""
  return 1 + samples // hop_length


PAPER_INPUTS: dict[str, InputSpec] = {
  "fcn": InputSpec("log_mel", frames(465_600), 96),
  "musicnn": InputSpec("log_mel", frames(48_000), 96),
  "short_chunk_cnn": InputSpec("log_mel", frames(59_049), 128),
  "short_chunk_resnet": InputSpec("log_mel", frames(59_049), 128),
  "crnn": InputSpec("log_mel", frames(465_600), 96),
  "sample_cnn": InputSpec("waveform", 59_049, None),
  "sample_cnn_se": InputSpec("waveform", 59_049, None),
  "harmonic_cnn": InputSpec("waveform", 80_000, None),
  "cnnsa": InputSpec("log_mel", frames(240_000), 128),
  # VGGish frames (25 ms windows every 10 ms, 64 bands): 30 patches of 96,
  # 28.8 s of a 29.1 s clip.
  "vggish": InputSpec("log_mel", 30 * 96, 64),
}
