#!/usr/bin/env bash
# Benchmark of a Pod's start: `kubectl apply -f` of the tutorial's Pod (hostPath variant) until the
# date container's first line is in the hostPath file, beside a bare `runc run -d` of the same
# container and `kubectl apply` of a ConfigMap, on one cluster with a local registry as docker.io's
# mirror. Prints a table of medians (min, max). See bench/pod.py for what each figure measures.
#
#   bash bench/pod.sh                   # uses target/release/tatami (built if missing), 10 runs
#   bash bench/pod.sh --tatami PATH     # uses an existing binary
#   bash bench/pod.sh --quick           # 3 runs, for a fast check
#   bash bench/pod.sh --runs N          # N counted runs
#
# Needs root, runc, busybox-static, docker-registry, skopeo and kubectl.
set -euo pipefail
cd "$(dirname "$0")/.."

tatami=target/release/tatami
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --tatami) [ $# -ge 2 ] || { echo "pod.sh: --tatami needs a path" >&2; exit 2; }; tatami="$2"; shift 2 ;;
    --tatami=*) tatami="${1#--tatami=}"; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done

if [ ! -e "$tatami" ] && [ "$tatami" = target/release/tatami ]; then
  cargo build --release -p tatami
fi
[ -x "$tatami" ] || { echo "pod.sh: $tatami is not an executable" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "pod.sh: needs root (containers run through runc)" >&2; exit 2; }

workdir="$(mktemp -d "${TMPDIR:-/tmp}/tatami-bench-pod.XXXXXX")"
py=""
# ours PID: whether PID is alive and its command line names this work directory.
ours() {
  case "$1" in ''|*[!0-9]*) return 1 ;; esac
  tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -qF -- "$workdir"
}
stop_pid() {
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
}
cleanup() {
  # pod.py stops what it started on SIGTERM; what it could not is stopped here.
  if [ -n "$py" ] && kill -0 "$py" 2>/dev/null; then
    kill -TERM "$py" 2>/dev/null || true
    for _ in $(seq 1 1200); do kill -0 "$py" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$py" 2>/dev/null || true
  fi
  if [ -d "$workdir/data" ]; then
    timeout 90 "$tatami" down --data-dir "$workdir/data" >/dev/null 2>&1 || true
  fi
  pid="$(cat "$workdir/registry.pid" 2>/dev/null || true)"
  if ours "$pid"; then stop_pid "$pid"; fi
  if [ -d "$workdir/runc-root" ]; then
    for id in $(runc --root "$workdir/runc-root" list -q 2>/dev/null); do
      runc --root "$workdir/runc-root" delete -f "$id" >/dev/null 2>&1 || true
    done
  fi
  # Never remove files through a mount left behind: unmount what lies under the work directory.
  for m in $(awk -v d="$workdir/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf -- "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

python3 bench/pod.py --tatami "$tatami" --workdir "$workdir" ${args[@]+"${args[@]}"} &
py=$!
wait "$py"
