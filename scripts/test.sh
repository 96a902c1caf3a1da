#!/usr/bin/env bash
# Install everything (Python packages and Debian's Chromium for the browser tests) and run the whole suite.
# The whole suite runs on SQLite, then again on PostgreSQL, where the real-worker tests run too.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements-dev.txt
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi
bash scripts/services.sh
PY=.venv/bin/python
echo "== tests on SQLite =="
env -u DATABASE_URL $PY -m pytest "$@"
echo "== tests on PostgreSQL, with a real Celery worker over Redis =="
# Every fast test again, and the slow ones that are about the database or the worker. The other slow
# tests (model training, browsers, schemathesis) ran above; they do not depend on the engine and
# would double the suite's time.
DATABASE_URL="${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/studio}" \
TEST_REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/0}" \
  $PY -m pytest -m "${TEST_POSTGRES_MARKERS:-not browser and (not slow or postgres or celery)}" "$@"
