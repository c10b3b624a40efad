#!/usr/bin/env bash
# Fuzz one target for SECONDS: fuzz/run.sh {certificate|tls_server} SECONDS [libFuzzer args...]
#
# Seeds are generated at run time into $FUZZ_WORK/TARGET/seeds (default
# FUZZ_WORK=/tmp/commssl-fuzz); the growing corpus is $FUZZ_WORK/TARGET/corpus,
# kept between runs; crash inputs land in $FUZZ_WORK/TARGET/. Uses atheris
# (libFuzzer) when importable, else (or with PLAIN=1) the labelled plain
# random-mutation harness in targets.py. Prints executions, corpus size and
# crashes at the end; exits non-zero on a crash.
#   PYTHON   interpreter with commssl and cryptography (default: .venv/bin/python, else python3)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ $# -ge 2 ] || { echo "usage: fuzz/run.sh {certificate|tls_server} SECONDS [libFuzzer args...]" >&2; exit 2; }
target="$1" seconds="$2"; shift 2
case "$target" in certificate|tls_server) ;; *) echo "fuzz/run.sh: unknown target $target" >&2; exit 2 ;; esac
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$here/../.venv/bin/python" ]; then PYTHON="$here/../.venv/bin/python"; else PYTHON="$(command -v python3)"; fi
fi
work="${FUZZ_WORK:-/tmp/commssl-fuzz}"
dir="$work/$target"
mkdir -p "$dir/corpus"
export COMMSSL_FUZZ_PKI="$work/pki"
[ -d "$dir/seeds" ] || "$PYTHON" "$here/seeds.py" "$target" "$dir/seeds" >/dev/null
log="$dir/last-run.log"
cd "$dir"
set +e
if [ "${PLAIN:-0}" = 1 ] || ! "$PYTHON" -c 'import atheris' 2>/dev/null; then
    "$PYTHON" "$here/targets.py" "$target" --plain "$seconds" corpus seeds >"$log" 2>&1
    rc=$?
    tail -n 20 "$log"
    exit $rc
fi
"$PYTHON" "$here/targets.py" "$target" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$dir/" "$@" corpus seeds >"$log" 2>&1
rc=$?
set -e
runs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')"
crashes="$(ls "$dir" | grep -cE '^(crash|leak|timeout|oom)-' || true)"
tail -n 25 "$log" | grep -vE '^INFO: Instrumenting'
echo "fuzz/run.sh: $target: ${seconds} s, $runs executions, corpus $(ls corpus | wc -l) files" \
     "($(du -sk corpus | cut -f1) KiB) + $(ls seeds | wc -l) seeds, $crashes crash files, exit $rc"
exit $rc
