"""Classifies new recordings with a finished run.

  python -m mcl.predict --workdir=RUN AUDIO... [--checkpoint=I] [--task=J]

Each file is decoded and featurised with the run's own settings (its
`config.json`: sample rate, log-mel, chunk length, chunks per clip) and
scored at clip level exactly as the run's evaluation scores a test clip:
evenly spaced chunks, chunk probabilities averaged (`mcl.trainer.evaluation`).

- A continual run is read at the checkpoint after task I (default: its
  last finished task). Each task head j <= I gives the clip's
  probabilities over that task's classes (task-incremental, task id
  given; `--task=J` keeps one head), and "all" over every class seen up
  to task I, the heads' chunk logits concatenated before the softmax
  (class-incremental, `mcl.continual.scoring`).
- A tagging run uses its best variables (`best/`) and gives every tag's
  probability; the table shows the top-k.

Folders are searched for files with an audio extension; anything else in
them, and every file that fails `mcl.features.audio`'s checks (undecodable,
shorter than `features.min_seconds`, silent, a NaN, infinite or absurdly
loud sample, non-finite features), is listed as skipped with the reason,
and the batch goes on. A clip shorter than one chunk or patch is scored
zero-padded to one and marked "(padded)" (`padded` in the files).
The table is printed, and written with every probability as
`<output>.json` and `<output>.csv` (default `<workdir>/predictions`).
From Python, `mcl.experiments.prediction.predict(workdir, paths)` returns
the same `PredictionSet`.

  python -m mcl.predict --pretrained=MTT_musicnn AUDIO... [--top_k=5]

tags with one of the musicnn package's four shipped checkpoints instead
of a run (`mcl.models.musicnn_checkpoint`): the file's musicnn log-mel
cut into consecutive 3 s (187-frame) patches, as the package's extractor
does, and each of the model's 50 tags averaged over the patches; the
output defaults to `./predictions`. From Python:
`mcl.experiments.prediction.predict_pretrained(name, paths)`.
"""

import csv
import os

from absl import app, flags

from mcl.experiments import prediction
from mcl.models import musicnn_checkpoint
from mcl.runtime import atomic_files, errors, logs


def table(result: prediction.PredictionSet, top_k: int = 3) -> str:
  """The printed table: a row per file, a column per scope with the most
  probable class (or the `top_k` tags) and its probability."""
  if not result.predictions:
    return "no file scored"
  scopes = list(result.predictions[0].scores)
  rows = [["file", *scopes]]
  for item in result.predictions:
    cells = [item.path + (" (padded)" if item.padded else "")]
    for scope in scopes:
      best = item.scores[scope].top(top_k if scope == prediction.TAGS else 1)
      cells.append(", ".join(f"{name} {p:.3f}" for name, p in best))
    rows.append(cells)
  widths = [max(len(row[i]) for row in rows) for i in range(len(scopes) + 1)]
  return "\n".join(
    "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
    for row in rows
  )


def write(result: prediction.PredictionSet, output: str) -> None:
  """`<output>.json` (everything) and `<output>.csv` (a row per file,
  scope and class: path, scope, name, probability, rank, padded)."""
  content = {
    "workdir": result.workdir,
    "checkpoint": result.checkpoint,
    "predictions": [
      {
        "path": p.path,
        "padded": p.padded,
        "scores": {
          scope: dict(zip(s.names, s.probabilities.tolist(), strict=True))
          for scope, s in p.scores.items()
        },
        "predicted": {scope: s.top(1)[0][0] for scope, s in p.scores.items()},
      }
      for p in result.predictions
    ],
    "skipped": result.skipped,
  }
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  atomic_files.write_json(output + ".json", content)
  with atomic_files.replace(output + ".csv", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["path", "scope", "name", "probability", "rank", "padded"])
    for p in result.predictions:
      for scope, s in p.scores.items():
        for rank, (name, probability) in enumerate(s.top(len(s.names))):
          row = [p.path, scope, name, f"{probability:.6f}", rank, p.padded]
          writer.writerow(row)


@errors.usage_errors
def main(argv):
  logs.configure()
  if (_WORKDIR.value is None) == (_PRETRAINED.value is None):
    raise errors.UserError("give one of --workdir and --pretrained")
  if _PRETRAINED.value is not None:
    if _CHECKPOINT.value is not None or _TASK.value is not None:
      raise errors.UserError("--checkpoint and --task are for continual runs")
    result = prediction.predict_pretrained(_PRETRAINED.value, argv[1:])
    output = _OUTPUT.value or "predictions"
  else:
    result = prediction.predict(
      _WORKDIR.value, argv[1:], _CHECKPOINT.value, _TASK.value
    )
    output = _OUTPUT.value or os.path.join(_WORKDIR.value, "predictions")
  if result.checkpoint is not None:
    print(f"checkpoint after task {result.checkpoint}")
  print(table(result, _TOP_K.value))
  for item in result.skipped:
    print(f"skipped {item['path']}: {item['problem']}")
  write(result, output)
  print(f"wrote {output}.json and {output}.csv")


def cli() -> None:
  """Console script `mcl-predict`: defines the flags, runs `main`."""
  global _WORKDIR, _PRETRAINED, _CHECKPOINT, _TASK, _TOP_K, _OUTPUT
  _WORKDIR = flags.DEFINE_string("workdir", None, "Run folder.")
  _PRETRAINED = flags.DEFINE_enum(
    "pretrained",
    None,
    musicnn_checkpoint.CHECKPOINTS,
    "A musicnn package checkpoint to tag with, instead of a run.",
  )
  _CHECKPOINT = flags.DEFINE_integer(
    "checkpoint",
    None,
    "Continual runs: checkpoint after this task; default the last finished.",
  )
  _TASK = flags.DEFINE_integer(
    "task", None, "Continual runs: report only this task's head."
  )
  _TOP_K = flags.DEFINE_integer("top_k", 3, "Tags shown per file.")
  _OUTPUT = flags.DEFINE_string(
    "output",
    None,
    "Path prefix of the .json and .csv; default <workdir>/predictions "
    "(./predictions with --pretrained).",
  )
  app.run(main)


if __name__ == "__main__":
  cli()
