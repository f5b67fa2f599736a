"""Runs sweep runs one after another in one process (`mcl.sweep`).

  python -m mcl.analysis.sweep_worker < runs.jsonl

Reads one JSON object per line from stdin, {"config": file, "overrides":
{dotted key: value}, "workdir": dir}, runs it (`mcl.experiments.run`,
logging to `<workdir>/log.txt`) and answers one JSON line on stdout,
{"workdir": dir, "ok": bool}. Imports, the records' metadata, the
evaluation sets' compiled functions and every compiled step stay in the
process for the next run: a GTZAN run started in a fresh process spends
about 9 s importing and 6 s on its evaluation sets before its first step.
A run that raises is logged with its traceback (a
`mcl.runtime.errors.UserError`, e.g. a setting out of range, as its one line)
and answered ok=false; the worker goes on with the next.
"""

import json
import logging as pylogging
import os
import sys
import traceback

from absl import logging

from mcl import experiments
from mcl.runtime import errors


def main():
  """Answers every run request of stdin (see the module docstring)."""
  answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
  sys.stdout = sys.stderr  # Only answers go to the protocol stream.
  logging.use_absl_handler()
  logging.set_verbosity(logging.INFO)
  experiments.start_process()
  for line in sys.stdin:
    request = json.loads(line)
    workdir = request["workdir"]
    os.makedirs(workdir, exist_ok=True)
    handler = pylogging.FileHandler(os.path.join(workdir, "log.txt"))
    handler.setFormatter(logging.PythonFormatter())
    logging.get_absl_logger().addHandler(handler)
    try:
      config = experiments.load_config(request["config"], request["overrides"])
      experiments.run(config, workdir)
      ok = True
    except errors.UserError as error:  # A setting to change: no traceback.
      logging.error("run %s failed: error: %s", workdir, error)
      ok = False
    except Exception:  # A failed run must not end the sweep.
      logging.error("run %s failed:\n%s", workdir, traceback.format_exc())
      ok = False
    finally:
      logging.get_absl_logger().removeHandler(handler)
      handler.close()
    answers.write(json.dumps({"workdir": workdir, "ok": ok}) + "\n")


if __name__ == "__main__":
  main()
