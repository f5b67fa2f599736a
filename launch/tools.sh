# Sourced by launch/setup.sh and launch/lock.sh: sets $uv to the uv of
# .venv-tools, created from launch/requirements-tools.lock (by hash) when
# missing. uv installs the locks in seconds where pip takes minutes; it
# reads the default index (PyPI), or UV_DEFAULT_INDEX / UV_INDEX_URL.
tools="$root/.venv-tools"
uv="$tools/bin/uv"
if [ ! -x "$uv" ]; then
  "${PYTHON:-python3}" -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-deps --require-hashes -r "$root/launch/requirements-tools.lock" \
    2>&1 | { grep -v "is ignored: it is neither a file" || true; }
fi
