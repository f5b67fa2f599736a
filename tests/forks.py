"""Real processes without paying the imports each time: a fork server.

Importing mcl's entry point (JAX, TensorFlow, TFDS) takes 6-9 s of a
fresh Python process, which is most of a tiny run. Tests that need many
real processes (kill -9 at random moments, several JAX processes joined by
`jax.distributed`) start one server that imports once and then forks a
child per request. Each child is a separate process with its own pid,
environment, stdout/stderr file and JAX backend: the server never touches
a device, so every child initialises JAX itself with the XLA_FLAGS and
coordinator variables it was given.

  with forks.Server(["mcl.main"]) as server:
    child = server.start("from mcl import main; main.cli()", argv, env, log)
    child.kill()  # SIGKILL
    child.wait()  # exit status, or None when killed

The server ignores SIGCHLD, so the kernel reaps its children and a dead
child's pid is gone at once; a child records its exit status in a file
just before it exits.
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SERVER = r"""
import importlib, json, os, signal, sys, traceback
for name in sys.argv[2:]:
  importlib.import_module(name)
exec(compile(sys.argv[1], "<warm-up>", "exec"), {})
# A backend started here would be shared, threads and all, by every child.
bridge = sys.modules.get("jax._src.xla_bridge")
if bridge is not None and getattr(bridge, "_backends", None):
  print("the imports initialised a JAX backend", flush=True)
  sys.exit(1)
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
print("ready", flush=True)
for line in sys.stdin:
  request = json.loads(line)
  pid = os.fork()
  if pid:
    print(pid, flush=True)
    continue
  signal.signal(signal.SIGCHLD, signal.SIG_DFL)
  code = 1
  try:
    for key, value in request["env"].items():
      if value is None:
        os.environ.pop(key, None)
      else:
        os.environ[key] = value
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
      os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND), fd)
    sys.stdin = open(os.devnull)
    sys.argv = request["argv"]
    exec(compile(request["code"], "<child>", "exec"), {"__name__": "__main__"})
    code = 0
  except SystemExit as e:  # As the interpreter ends on one.
    if e.code is None or isinstance(e.code, int):
      code = int(e.code or 0)
    else:
      print(e.code, file=sys.stderr)
      code = 1
  except BaseException:
    traceback.print_exc()
  finally:
    sys.stdout.flush()
    sys.stderr.flush()
    with open(request["status"], "w") as f:
      f.write(str(code))
    os._exit(code)
# stdin closed: the test process is done, or died. Leave at once, without
# waiting for threads the imports started.
os._exit(0)
"""


@dataclasses.dataclass(frozen=True)
class Child:
  """A forked process: its pid, exit-status file and output files."""

  pid: int
  status_path: str
  stdout_path: str
  stderr_path: str

  def running(self) -> bool:
    try:
      os.kill(self.pid, 0)
    except ProcessLookupError:
      return False
    return True

  def kill(self) -> None:
    """SIGKILL, as `kill -9`."""
    try:
      os.kill(self.pid, signal.SIGKILL)
    except ProcessLookupError:
      pass

  def wait(self, timeout: float = 900.0) -> int | None:
    """The exit status once the child is gone; None when it was killed.

    Raises:
      TimeoutError: still running after `timeout` seconds (it is killed).
    """
    deadline = time.time() + timeout
    while self.running():
      if time.time() > deadline:
        self.kill()
        raise TimeoutError(f"child {self.pid}: {self.stderr()[-3000:]}")
      time.sleep(0.01)
    try:
      with open(self.status_path) as f:
        return int(f.read())
    except FileNotFoundError:
      return None

  def stdout(self) -> str:
    with open(self.stdout_path) as f:
      return f.read()

  def stderr(self) -> str:
    with open(self.stderr_path) as f:
      return f.read()


class Server:
  """A Python process that has imported `modules` and forks on request.

  Raises:
    RuntimeError: the server did not start, e.g. importing `modules`
      initialised a JAX backend (which no child may share).
  """

  def __init__(
    self, modules, folder: str, env: dict | None = None, warm_up: str = ""
  ):
    """Starts the server: imports `modules`, then runs `warm_up` (code
    whose compiled state every child inherits)."""
    self._folder = folder
    self._count = 0
    self._process = subprocess.Popen(
      [sys.executable, "-c", _SERVER, warm_up, *modules],
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      text=True,
      cwd=ROOT,
      env=env,
    )
    line = self._process.stdout.readline().strip()
    if line != "ready":
      self.close()
      raise RuntimeError(f"fork server did not start: {line!r}")

  def start(
    self, code: str, argv=(), env: dict | None = None, name: str = "child"
  ) -> Child:
    """Forks a child that runs `code` as __main__ with `sys.argv` =
    [name, *argv], its environment updated by `env` (None values unset),
    stdout and stderr to `<folder>/<name>.<n>.stdout` and `.stderr`."""
    self._count += 1
    stem = os.path.join(self._folder, f"{name}.{self._count}")
    request = {
      "code": code,
      "argv": [name, *argv],
      "env": env or {},
      "stdout": stem + ".stdout",
      "stderr": stem + ".stderr",
      "status": stem + ".status",
    }
    self._process.stdin.write(json.dumps(request) + "\n")
    self._process.stdin.flush()
    pid = int(self._process.stdout.readline())
    return Child(pid, request["status"], request["stdout"], request["stderr"])

  def run(
    self,
    code: str,
    argv=(),
    env: dict | None = None,
    name: str = "child",
    timeout: float = 900.0,
  ) -> subprocess.CompletedProcess:
    """`start`, then wait: as `subprocess.run(..., capture_output=True,
    text=True)` of a fresh interpreter running `code`."""
    child = self.start(code, argv, env, name)
    status = child.wait(timeout)
    return subprocess.CompletedProcess(
      [name, *argv],
      -signal.SIGKILL if status is None else status,
      child.stdout(),
      child.stderr(),
    )

  def close(self) -> None:
    self._process.stdin.close()
    self._process.wait(timeout=60)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def cli(module: str) -> str:
  """Code that runs the console script of `module` (e.g. "mcl.main") as
  its entry point does: `module.cli()` with the child's `sys.argv`."""
  return f"import {module}\n{module}.cli()\n"
