"""New recordings scored with a finished run, or a shipped musicnn tagger.

`predict(workdir, paths)` decodes and featurises each file with the run's
own settings (its `config.json`: sample rate, log-mel, chunk length,
chunks per clip) and scores it at clip level exactly as the run's
evaluation scores a test clip: evenly spaced chunks, chunk probabilities
averaged (`mcl.trainer.evaluation`).

- A continual run is read at the checkpoint after task I (default: its
  last finished task). Each task head j <= I gives the clip's
  probabilities over that task's classes (task-incremental, task id
  given; `task=J` keeps one head), and "all" over every class seen up to
  task I, the heads' chunk logits concatenated before the softmax
  (class-incremental, `mcl.continual.scoring`). A run of the
  class-incremental scenario has one head: it gives "all" only, its
  method's own answer (`class_probabilities`: e.g. iCaRL's nearest mean
  of exemplars).
- A tagging run uses its best variables (`best/`) and gives every tag's
  probability.

`predict_pretrained(name, paths)` tags with one of the musicnn package's
four shipped checkpoints instead (`mcl.models.musicnn_checkpoint`): the
file's musicnn log-mel cut into consecutive 3 s (187-frame) patches, as
the package's extractor does, and each of the model's 50 tags averaged
over the patches.

Folders are searched for files with an audio extension; anything else in
them, and every file that fails `mcl.features.audio`'s checks
(undecodable, shorter than `features.min_seconds`, silent, a NaN, infinite
or absurdly loud sample, non-finite features), is listed in
`PredictionSet.skipped` with the reason, and the batch goes on. A clip
shorter than one chunk or patch is zero-padded to one
(`audio.load_clip`) and its `Prediction.padded` is True. A run on frozen
encoder records embeds the clip's patches with the run's encoder. The
command line, its table and its files are `mcl.predict`'s.
"""

import dataclasses
import json
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mcl import inspect as run_inspect
from mcl import models
from mcl.continual import registry, scoring
from mcl.datasets import from_config, input_pipeline, tasks
from mcl.features import audio, logmel, patches
from mcl.models import encoders, musicnn_checkpoint
from mcl.models import inputs as model_inputs
from mcl.runtime import errors
from mcl.trainer import checkpointing, evaluation

# Scope of the class-incremental scores (heads concatenated).
ALL = "all"
TAGS = "tags"


@dataclasses.dataclass(frozen=True)
class Scores:
  """One clip's probabilities in one scope (a task head, "all" or "tags").

  Attributes:
    names: class or tag names, in output order.
    probabilities: float64 [len(names)]; a softmax's (sums to 1) for a
      head or "all", independent sigmoids' for "tags".
  """

  names: tuple[str, ...]
  probabilities: np.ndarray

  def top(self, k: int) -> list[tuple[str, float]]:
    """The k most probable (name, probability), most probable first."""
    order = np.argsort(-self.probabilities, kind="stable")[:k]
    return [(self.names[i], float(self.probabilities[i])) for i in order]


@dataclasses.dataclass(frozen=True)
class Prediction:
  """What the run says of one file: {scope: Scores}, scopes in order
  ("task0", "task1", ..., "all"; or "tags"); `padded` when the clip was
  shorter than one chunk or patch and scored zero-padded to one."""

  path: str
  scores: dict[str, Scores]
  padded: bool = False


@dataclasses.dataclass(frozen=True)
class PredictionSet:
  """The outcome of `predict`.

  Attributes:
    workdir: the run, or "pretrained:<name>" for a shipped checkpoint.
    checkpoint: the continual checkpoint used (task index), or None for a
      tagging run.
    predictions: one per decoded file, in input order.
    skipped: [{"path", "problem"}] of files not scored.
  """

  workdir: str
  checkpoint: int | None
  predictions: list[Prediction]
  skipped: list[dict[str, str]]


def run_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run was started with (`<workdir>/config.json`; runs
  older than that file keep it in results.json).

  Raises:
    mcl.runtime.errors.UserError: `workdir` is not a run folder.
  """
  for name, key in (("config.json", None), ("results.json", "config")):
    path = os.path.join(workdir, name)
    if os.path.exists(path):
      with open(path) as f:
        content = json.load(f)
      return ml_collections.ConfigDict(content[key] if key else content)
  raise errors.UserError(f"{workdir}: not a run folder (no config.json)")


def audio_files(paths: Sequence[str]) -> tuple[list[str], list[dict]]:
  """Files to score, and the files of the folders that are not audio.

  Args:
    paths: files (taken whatever their extension) and folders (searched
      recursively for `mcl.features.audio.AUDIO_EXTENSIONS`, sorted).

  Returns:
    (files, skipped [{"path", "problem"}]).
  """
  files, skipped = [], []
  for path in paths:
    if not os.path.isdir(path):
      files.append(path)  # A missing file is reported when decoded.
      continue
    for root, dirs, names in os.walk(path):
      dirs[:] = sorted(d for d in dirs if not d.startswith("."))
      for name in sorted(names):
        full = os.path.join(root, name)
        extension = os.path.splitext(name)[1].lower()
        if name.startswith("."):
          continue
        if extension in audio.AUDIO_EXTENSIONS:
          files.append(full)
        else:
          skipped.append(
            {"path": full, "problem": f"unsupported extension {extension!r}"}
          )
  return files, skipped


class _Continual:
  """The heads of a continual run's checkpoint after task `checkpoint`."""

  def __init__(self, workdir, config, checkpoint: int | None, task: int | None):
    params, metadata = run_inspect.load(workdir, checkpoint)
    self.checkpoint = metadata["task"]
    heads = range(self.checkpoint + 1)
    if task is not None and task not in heads:
      raise errors.UserError(
        f"--task={task}: the checkpoint after task {self.checkpoint} has "
        f"heads 0..{self.checkpoint}"
      )
    self.class_names = list(tasks.task_groups(config))
    # An unregistered method is a UserError naming it.
    method = registry.method_class(config).from_config(
      config,
      tuple(metadata["input_shape"]),
      tuple(len(group) for group in self.class_names),
    )
    checkpoints = checkpointing.TaskCheckpoints(
      os.path.join(workdir, "checkpoints")
    )
    state = checkpoints.state(self.checkpoint)
    checkpoints.close()
    self.seen = scoring.class_scorer(method, params, state, self.checkpoint + 1)
    if method.scenario == scoring.CLASS_INCREMENTAL:
      if task is not None:
        raise errors.UserError(
          f"--task={task}: {workdir} is a class-incremental run, one head "
          "over every class seen; it answers among them all"
        )
      heads = ()
    self.networks = [method.network(params, state, j) for j in heads]
    self.heads = list(heads) if task is None else [task]
    self.features = audio.FeatureConfig(**config.features)
    self.chunk_length = from_config.chunk_frames(config)
    self.num_chunks = config.data.eval_chunks
    self.pad_seconds = from_config.pad_seconds(config)
    self.encoder = None
    if from_config.encoder(config) != "none":
      self.encoder = encoders.Encoder(
        config.data.encoder, (config.data.encoder_layer,)
      )
      self.hop = patches.hop_frames(
        config.data.patch_hop_seconds,
        self.features.sample_rate,
        self.features.hop_length,
      )

  def inputs(self, path: str) -> tuple[np.ndarray, bool]:
    """[K, frames, mels] evenly spaced chunks (or [K, 1, D] patch
    embeddings), and whether the clip was padded."""
    clip = audio.load_clip(path, self.features, self.pad_seconds)
    x = audio.clip_features(path, clip.waveform, self.features)
    if self.encoder is not None:
      (x,) = self.encoder.embed_clip(x, self.hop)
    chunks = input_pipeline.evenly_spaced_chunks(
      x, self.chunk_length, self.num_chunks
    )
    return chunks, clip.padded

  def score(self, inputs: np.ndarray) -> dict[str, Scores]:
    """inputs: float32 [1, K, frames, mels]."""
    out = {}
    for j in self.heads:
      network = self.networks[j]
      log_p, _ = evaluation.clip_log_probabilities(
        network.model, {"params": network.params}, inputs, network.head
      )
      out[f"task{j}"] = Scores(self.class_names[j], np.exp(log_p[0]))
    seen = tuple(
      c for group in self.class_names[: self.checkpoint + 1] for c in group
    )
    out[ALL] = Scores(seen, self.seen(inputs)[0])
    return out


class _Tagging:
  """The best variables of a tagging run, over its tags."""

  def __init__(self, workdir, config):
    results = os.path.join(workdir, "results.json")
    if not os.path.exists(results):
      raise errors.UserError(f"{workdir}: the tagging run has not finished")
    with open(results) as f:
      content = json.load(f)
    if "tags" not in content:
      raise errors.UserError(
        f"{workdir} is a genre run (FMA); predict reads tagging runs"
      )
    self.tags = tuple(content["tags"])
    self.spec = model_inputs.InputSpec(**config.input)
    # JSON turned tuples into lists; module fields must stay hashable.
    widths = {
      k: tuple(v) if isinstance(v, list) else v
      for k, v in config.model.widths.items()
    }
    self.model = models.get_model_class(config.model.name)(
      **widths, num_classes=len(self.tags)
    )
    target = jax.eval_shape(
      lambda: self.model.init(
        jax.random.key(0), jnp.zeros((1, *self.spec.shape)), train=False
      )
    )
    target = {
      "params": target["params"],
      "batch_stats": target.get("batch_stats", {}),
    }
    store = checkpointing.RunCheckpoints(workdir)
    self.variables, _ = store.restore_best(target)
    store.close()
    self.features = audio.FeatureConfig(**config.features)
    self.num_chunks = config.data.eval_chunks
    self.checkpoint = None

  def inputs(self, path: str) -> tuple[np.ndarray, bool]:
    """Evenly spaced model inputs of the clip, padded to one input."""
    rate = self.features.sample_rate
    seconds = self.spec.length / rate
    if self.spec.feature != "waveform":
      seconds *= self.features.hop_length
    clip = audio.load_clip(path, self.features, seconds)
    if self.spec.feature == "waveform":
      # As stored and read back by the records (int16 PCM).
      x = audio.to_pcm16(clip.waveform).astype(np.float32) / 32767.0
    else:
      x = audio.clip_features(path, clip.waveform, self.features)
    chunks = input_pipeline.evenly_spaced_chunks(
      x, self.spec.length, self.num_chunks
    )
    return chunks, clip.padded

  def score(self, inputs: np.ndarray) -> dict[str, Scores]:
    log_p, _ = evaluation.clip_log_probabilities(
      self.model, self.variables, inputs, multi_label=True
    )
    return {TAGS: Scores(self.tags, np.exp(log_p[0]))}


class _Pretrained:
  """A musicnn package checkpoint, over its 50 tags."""

  def __init__(self, name: str):
    self.pretrained = musicnn_checkpoint.load(name)
    self.features = audio.FeatureConfig(
      front_end="musicnn", n_mels=logmel.MUSICNN_BANDS
    )
    self.checkpoint = None
    self.apply = jax.jit(
      lambda x: jax.nn.sigmoid(
        self.pretrained.model.apply(self.pretrained.variables, x, train=False)
      )
    )

  def inputs(self, path: str) -> tuple[np.ndarray, bool]:
    """float32 [patches, 187, 96]: consecutive patches, the rest dropped
    (the package's `batch_data` without overlap); a clip shorter than a
    patch zero-padded to one."""
    clip = audio.load_clip(path, self.features, from_config.PATCH_SECONDS)
    spectrogram = audio.clip_features(path, clip.waveform, self.features)
    frames = logmel.MUSICNN_PATCH_FRAMES
    return patches.cut(spectrogram, frames, frames), clip.padded

  def score(self, inputs: np.ndarray) -> dict[str, Scores]:
    """inputs: float32 [1, patches, 187, 96]; the mean taggram."""
    taggram = np.asarray(self.apply(inputs[0]), np.float64)
    return {TAGS: Scores(self.pretrained.tags, taggram.mean(axis=0))}


def _score_files(scorer, workdir: str, paths: Sequence[str]) -> PredictionSet:
  """Every audio file of `paths` scored, or skipped with its problem."""
  if not paths:
    raise errors.UserError("give at least one audio file or folder")
  files, skipped = audio_files(paths)
  predictions = []
  for path in files:
    try:
      chunks, padded = scorer.inputs(path)
    except audio.AudioError as e:
      skipped.append({"path": e.path, "problem": e.problem})
      continue
    scores = scorer.score(np.asarray(chunks, np.float32)[None])
    predictions.append(Prediction(path, scores, padded))
  return PredictionSet(workdir, scorer.checkpoint, predictions, skipped)


def predict_pretrained(name: str, paths: Sequence[str]) -> PredictionSet:
  """Tags audio files with a shipped musicnn checkpoint (module
  docstring); scope "tags", the workdir field "pretrained:<name>".

  Raises:
    mcl.runtime.errors.UserError: unknown name, or no path.
    mcl.runtime.errors.MissingDataError: the musicnn package is not installed.
  """
  return _score_files(_Pretrained(name), f"pretrained:{name}", paths)


def predict(
  workdir: str,
  paths: Sequence[str],
  checkpoint: int | None = None,
  task: int | None = None,
) -> PredictionSet:
  """Scores audio files with a finished run (see the module docstring).

  Args:
    workdir: the run folder (`mcl.main --workdir`).
    paths: audio files and folders.
    checkpoint: continual runs: the task whose checkpoint to use (None:
      the last finished).
    task: continual runs: the one head to report (None: every head up to
      `checkpoint`); "all" is always reported.

  Returns:
    The predictions and the skipped files.

  Raises:
    mcl.runtime.errors.UserError: not a run folder, not a run on audio, no such
      checkpoint or head (or either asked of a tagging run), or no path.
  """
  if not paths:
    raise errors.UserError("give at least one audio file or folder")
  config = run_config(workdir)
  if config.experiment == "tagging":
    if checkpoint is not None or task is not None:
      raise errors.UserError(
        f"{workdir} is a tagging run: --checkpoint and --task are for "
        "continual runs"
      )
    scorer = _Tagging(workdir, config)
  elif config.data.source not in ("labelled_folders", "magnatagatune"):
    raise errors.UserError(
      f"{workdir} learnt from {config.data.source!r}, not audio; predict "
      "classifies recordings"
    )
  else:
    scorer = _Continual(workdir, config, checkpoint, task)
  return _score_files(scorer, workdir, paths)
