#!/usr/bin/env bash
# First run with embedded defaults: SQLite under var/, tasks in-process, a generated demo corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
# The local demo runs with DEBUG on (a development key, tracebacks, plain HTTP); the site's own default is off.
export DJANGO_DEBUG="${DJANGO_DEBUG:-1}"
$PY manage.py migrate --noinput
# numba's kernels compiled once into var/numba-cache, under its lock, before anything analyses.
$PY manage.py shell -c "from editing.audio import warm_up; warm_up()"
$PY manage.py make_demo_corpus --out var/demo_corpus
$PY manage.py ingest_audio var/demo_corpus
$PY manage.py seed_demo
$PY manage.py runserver "${HOST:-127.0.0.1}:${PORT:-8000}"
