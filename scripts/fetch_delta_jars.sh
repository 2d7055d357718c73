#!/usr/bin/env bash
# Fetch the Delta Lake Spark connector JARs named by scripts/delta-connector/pom.xml into
# $GENREC_DELTA_JARS (default ./.jars) with Maven, once. Idempotent: a folder that already holds the
# pom's delta-spark JAR (stamped with the pom's checksum) is left alone, so later runs are offline.
set -euo pipefail
cd "$(dirname "$0")/.."
POM=scripts/delta-connector/pom.xml
DEST=${GENREC_DELTA_JARS:-$PWD/.jars}
case "$DEST" in none|off|0|"") echo "GENREC_DELTA_JARS=$DEST: not fetching the Delta connector"; exit 0;; esac
STAMP="$DEST/.pom.sha256"
WANT=$(sha256sum "$POM" | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && ls "$DEST"/delta-spark_*.jar >/dev/null 2>&1; then
  exit 0
fi
if ! command -v mvn >/dev/null 2>&1; then
  echo "setup: mvn not found; cannot fetch the Delta connector into $DEST (install Maven, or set" \
       "GENREC_SKIP_DELTA_JARS=1 to use the delta-rs commit path only)" >&2
  exit 1
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
start=$(date +%s)
mvn -q -B -f "$POM" dependency:copy-dependencies -DoutputDirectory="$TMP/jars"
mkdir -p "$DEST"
rm -f "$DEST"/*.jar
mv "$TMP"/jars/*.jar "$DEST"/
echo "$WANT" > "$STAMP"
echo "setup: Delta connector fetched into $DEST in $(( $(date +%s) - start ))s:" \
     "$(ls "$DEST" | grep -c '\.jar$') jars, $(du -sh "$DEST" | cut -f1)"
