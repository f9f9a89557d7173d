#!/usr/bin/env bash
# The main job: correct a sentence with the embedded default model (offline, no torch).
# Usage: scripts/run-default.sh ["text to correct"]
source "$(dirname "$0")/venv.sh"
ensure core
TEXT="${1:-She go to school every days and she like it.}"
if [ -f "$ROOT/edgeseq/default_model/manifest.json" ]; then
  exec "$VENV/bin/edgeseq" generate default "$TEXT"
fi
# No trained default model in this checkout: build a small one and generate from it.
ensure export
PKG="$ROOT/.cache/fallback-default"
if [ ! -f "$PKG/manifest.json" ]; then
  "$PY" -m edgeseq.export.fallback_model "$PKG"
fi
exec "$VENV/bin/edgeseq" generate "$PKG" "$TEXT"
