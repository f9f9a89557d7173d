#!/usr/bin/env bash
# The test suite (what CI runs). Extra arguments go to pytest, e.g. -m slow.
source "$(dirname "$0")/venv.sh"
ensure "export,test"
# The demo's browser test drives Debian's Chromium (never a downloaded browser); without
# root or apt it is skipped with a reason.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  { apt-get update -q && apt-get install -y -q chromium; } >/dev/null 2>&1 \
    || echo "chromium not installed: the browser test will skip"
fi
cd "$ROOT"
exec "$PY" -m pytest "$@"
