#!/usr/bin/env bash
# The README's test commands (`make test`, `make test-slow`) end here. Installs the Debian packages the
# integration tests need (redis-server; chromium + chromium-driver for the /ui page) when they are missing and
# we may, then runs pytest with the given arguments (a marker selection).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing redis-server (Debian package) for the Redis online-store tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
      || echo "WARNING: could not install redis-server; Redis tests will fail"
  fi
fi
# The /ui page test drives a headless Chromium through its WebDriver; no browser download is possible here, so
# both come from Debian (tests/serving/test_ui.py skips only when /usr/bin/chromium is missing).
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium + chromium-driver (Debian packages) for the headless-browser test of /ui"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
      || echo "WARNING: could not install chromium/chromium-driver; the /ui browser test will skip or fail"
  fi
fi
# STYLE.md: the Airflow rules on the DAG files (AIR3: Airflow 3 removals/moves) gate CI like a failing test.
.venv/bin/ruff check dags --select AIR3
set +e
.venv/bin/pytest "$@"
rc=$?
set -e
if [ "$rc" = "5" ]; then
  echo "pytest collected no tests: treating as a failure" >&2
  exit 1
fi
exit "$rc"
