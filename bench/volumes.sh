#!/usr/bin/env bash
# Benchmarks of volumes: setup time per volume kind (cargo bench -p node --bench volume_setup,
# beside a bare mkdir and a bare tmpfs mount), then the time a ConfigMap change takes to reach
# a running Pod (bench/volumes.py). Prints two tables. Needs root, runc, busybox-static,
# docker-registry, skopeo and kubectl.
#
#   bash bench/volumes.sh                   # builds target/release/tatami if missing
#   bash bench/volumes.sh --tatami PATH     # uses an existing binary
#   bash bench/volumes.sh --runs N          # ConfigMap changes to time (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."

tatami=target/release/tatami
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --tatami) [ $# -ge 2 ] || { echo "volumes.sh: --tatami needs a path" >&2; exit 2; }; tatami="$2"; shift 2 ;;
    --tatami=*) tatami="${1#--tatami=}"; shift ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "volumes.sh: needs root (tmpfs mounts, containers through runc)" >&2; exit 2; }
if [ ! -e "$tatami" ] && [ "$tatami" = target/release/tatami ]; then
  cargo build --release -p tatami
fi
[ -x "$tatami" ] || { echo "volumes.sh: $tatami is not an executable" >&2; exit 2; }

cargo bench -q -p node --bench volume_setup
echo
python3 bench/volumes.py --tatami "$tatami" "${args[@]}"
