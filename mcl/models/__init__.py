"""Flax linen models, chosen by name from an explicit registry."""

from mcl.models.cnnsa import CNNSA
from mcl.models.conv_classifier import ConvClassifier, head_name
from mcl.models.crnn import CRNN
from mcl.models.fcn import FCN
from mcl.models.feedback_crnn import TemporalFeedbackCRNN, WaveformCRNN
from mcl.models.harmonic_cnn import HarmonicCNN
from mcl.models.musicnn import Musicnn
from mcl.models.progressive_net import ProgressiveNet
from mcl.models.sample_cnn import SampleCNN, SampleCNNSE
from mcl.models.short_chunk import ShortChunkCNN, ShortChunkResNet
from mcl.models.vggish import VGGishAutoPool
from mcl.runtime import errors

MODELS = {
  "conv_classifier": ConvClassifier,
  "progressive_net": ProgressiveNet,
  # The music-tagging zoo of Won et al. 2020; inputs in models.inputs.
  "fcn": FCN,
  "musicnn": Musicnn,
  "short_chunk_cnn": ShortChunkCNN,
  "short_chunk_resnet": ShortChunkResNet,
  "crnn": CRNN,
  "sample_cnn": SampleCNN,
  "sample_cnn_se": SampleCNNSE,
  "harmonic_cnn": HarmonicCNN,
  "cnnsa": CNNSA,
  # Transfer from the AudioSet VGGish embedding (not in Won et al. 2020).
  "vggish": VGGishAutoPool,
  # Kim & Nam's raw-waveform genre models (FMA; 2.5 s segments).
  "waveform_crnn": WaveformCRNN,
  "tf_crnn": TemporalFeedbackCRNN,
}


def get_model_class(name: str):
  """The model class registered as `name`.

  Raises:
    mcl.runtime.errors.UserError: unknown name; the message lists the known
      ones.
  """
  if name not in MODELS:
    raise errors.UserError(f"unknown model {name!r}; known: {sorted(MODELS)}")
  return MODELS[name]


__all__ = [
  "CRNN",
  "FCN",
  "MODELS",
  "ConvClassifier",
  "Musicnn",
  "ProgressiveNet",
  "SampleCNN",
  "SampleCNNSE",
  "ShortChunkCNN",
  "ShortChunkResNet",
  "get_model_class",
  "head_name",
]
