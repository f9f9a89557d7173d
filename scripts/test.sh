#!/usr/bin/env bash
# The test suite (what CI runs). Extra arguments go to pytest, e.g. -m slow.
source "$(dirname "$0")/venv.sh"
ensure "export,test"
cd "$ROOT"
exec "$PY" -m pytest "$@"
