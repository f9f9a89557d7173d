# Sourced by the other scripts: create or reuse .venv at the repository root.
# torch comes first, pinned, so that nothing later pulls a multi-GB CUDA build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
PY="$VENV/bin/python"
ensure() {  # ensure EXTRA: install the project with that extra unless already done
  local stamp="$VENV/.edgeseq-$1"
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    if [ "$1" != core ]; then "$PY" -m pip install -q "torch==2.13.0"; fi
    local spec="$ROOT"
    [ "$1" != core ] && spec="$ROOT[$1]"
    # setuptools warns on every editable install that the source folders share the
    # package's name (by design here); a newcomer's first run should not open with that
    PYTHONWARNINGS="ignore::UserWarning" "$PY" -m pip install -q -e "$spec"
    touch "$stamp"
  fi
}
