"""The layout the docs describe is the tree; modules and functions stay small.

BUILD_NOTES.md's `## Layout` block names every module of the package; the
README's names every package folder. No module over `MAX_FILE_LINES`, no
function over `MAX_FUNCTION_LINES` besides its docstring (a model's
`__call__` aside: a network reads best as one forward pass), and the top
level of the package holds only its public face and the command-line
tools.
"""

import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "mcl")
TOP_LEVEL = {"__init__.py", "main.py", "predict.py", "inspect.py", "sweep.py"}
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80


def _modules(folder):
  for parent, _, files in os.walk(folder):
    for name in sorted(files):
      if name.endswith(".py"):
        yield os.path.relpath(os.path.join(parent, name), ROOT)


def _layout_block(doc):
  with open(os.path.join(ROOT, doc)) as f:
    text = f.read()
  section = re.search(r"^## Layout\n(.*?)(?=^## |\Z)", text, re.M | re.S)
  assert section, f"{doc} has no '## Layout' section"
  blocks = re.findall(r"^```[^\n]*\n(.*?)^```", section.group(1), re.M | re.S)
  assert blocks, f"{doc}'s layout section has no fenced block"
  return "\n".join(blocks)


def test_build_notes_layout_names_every_module():
  block = _layout_block("BUILD_NOTES.md")
  named = set(re.findall(r"\bmcl/[\w/]+\.py\b", block))
  modules = set(_modules(PACKAGE))
  assert not modules - named, f"not in BUILD_NOTES' layout: {modules - named}"
  stale = named - modules
  assert not stale, f"in the layout but not the tree: {stale}"


def test_readme_layout_names_every_package():
  block = _layout_block("README.md")
  packages = {
    os.path.relpath(parent, ROOT) + "/"
    for parent, _, files in os.walk(PACKAGE)
    if "__init__.py" in files and parent != PACKAGE
  }
  missing = {p for p in packages if p not in block}
  assert not missing, f"packages not in the README's layout: {missing}"


def test_top_level_holds_only_the_public_face_and_the_tools():
  files = {n for n in os.listdir(PACKAGE) if n.endswith(".py")}
  assert files <= TOP_LEVEL, f"modules at the top level: {files - TOP_LEVEL}"


@pytest.mark.parametrize("folder", ["mcl", "launch"])
def test_no_file_over_the_limit(folder):
  long = {
    path: n
    for path in _modules(os.path.join(ROOT, folder))
    if (n := sum(1 for _ in open(os.path.join(ROOT, path)))) > MAX_FILE_LINES
  }
  assert not long, f"files over {MAX_FILE_LINES} lines: {long}"


def _long_functions(path):
  with open(os.path.join(ROOT, path)) as f:
    tree = ast.parse(f.read(), path)
  for node in ast.walk(tree):
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
      continue
    if path.startswith("mcl/models/") and node.name == "__call__":
      continue
    start = min([d.lineno for d in node.decorator_list] + [node.lineno])
    length = node.end_lineno - start + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
      length -= first.end_lineno - first.lineno + 1  # The docstring.
    if length > MAX_FUNCTION_LINES:
      yield f"{path}:{node.lineno} {node.name} ({length} lines)"


@pytest.mark.parametrize("folder", ["mcl", "launch"])
def test_no_function_over_the_limit(folder):
  long = [
    hit
    for path in _modules(os.path.join(ROOT, folder))
    for hit in _long_functions(path)
  ]
  assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
