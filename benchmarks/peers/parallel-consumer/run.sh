#!/usr/bin/env bash
# Build (once, cached in target/) and run the Parallel Consumer harness.
#
#   run.sh build                       build target/pc-harness.jar if sources changed
#   run.sh run --bootstrap HOST:PORT --input-topic T --output-topic O --group G \
#              --talon-url URL --api-key K [--max-concurrency 256]
#   run.sh bodies --api-key K          requests for base64 single-object commands on stdin
#
# `run` and `bodies` exec the JVM, so the caller's child pid is the JVM's.
# JAVA_OPTS is passed to the JVM; by default only the log level is set.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
jar="$here/target/pc-harness.jar"
schema="$here/../../../schemas/avro/Command.avsc"

build() {
  if [[ -f "$jar" ]] && [[ -z "$(find "$here/pom.xml" "$here/src" -newer "$jar" -type f)" ]]; then
    return
  fi
  # Offline first, so a warm Maven cache needs no network; online if something is missing.
  mvn -q -o -f "$here/pom.xml" -DskipTests package >/dev/null 2>&1 \
    || mvn -q -f "$here/pom.xml" -DskipTests package >&2
}

mode="${1:-}"
case "$mode" in
  build) build ;;
  run | bodies)
    shift
    build
    exec java ${JAVA_OPTS:--Dorg.slf4j.simpleLogger.defaultLogLevel=warn} \
      -jar "$jar" "$mode" --schema "$schema" "$@"
    ;;
  *)
    echo "usage: $0 build | run ARGS | bodies ARGS" >&2
    exit 2
    ;;
esac
