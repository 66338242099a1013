#!/usr/bin/env bash
# Benchmark of the API server and datastore: builds a release binary, then prints a table of
# `tatami up` to /readyz, creates per second (beside a bare-SQLite floor), the list of 10,000
# pods, and idle RSS. See bench/api.py for what each figure measures.
#
#   bash bench/api.sh                   # cargo build --release -p tatami, then the full run
#   bash bench/api.sh --tatami PATH     # reuse an existing binary, no build
#   bash bench/api.sh --quick           # fewer repetitions and 1,000 pods, for a fast check
#
# Other options go to bench/api.py (--starts, --creates, --pods, --lists, --clients).
set -euo pipefail
cd "$(dirname "$0")/.."

tatami=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --tatami) [ $# -ge 2 ] || { echo "api.sh: --tatami needs a path" >&2; exit 2; }; tatami="$2"; shift 2 ;;
    --tatami=*) tatami="${1#--tatami=}"; shift ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done

if [ -z "$tatami" ]; then
  cargo build --release -p tatami
  tatami=target/release/tatami
fi
[ -x "$tatami" ] || { echo "api.sh: $tatami is not an executable" >&2; exit 2; }

workdir="$(mktemp -d "${TMPDIR:-/tmp}/tatami-bench.XXXXXX")"
py=""
cleanup() {
  # api.py stops its own `tatami up`s on SIGTERM; any it could not are found by their pid files.
  if [ -n "$py" ] && kill -0 "$py" 2>/dev/null; then
    kill -TERM "$py" 2>/dev/null || true
    for _ in $(seq 1 200); do kill -0 "$py" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$py" 2>/dev/null || true
  fi
  for pidfile in "$workdir"/*/tatami.pid; do
    [ -f "$pidfile" ] || continue
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    case "$pid" in ''|*[!0-9]*) continue ;; esac
    # Only a tatami process of ours: its command line names this work directory.
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$workdir"; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -rf -- "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

python3 bench/api.py --tatami "$tatami" --workdir "$workdir" ${args[@]+"${args[@]}"} &
py=$!
wait "$py"
