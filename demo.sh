#!/usr/bin/env bash
# Brings up a tatami cluster on a fresh data dir and runs the tutorial's Pod (two containers
# sharing an emptyDir). Needs root (containers run through runc). The `alpine` image is made
# from Debian's busybox-static and imported, so no registry is needed.
set -euo pipefail
cd "$(dirname "$0")"
DATA=${DATA:-/tmp/tatami-demo}

need=()
command -v runc >/dev/null || need+=(runc)
command -v busybox >/dev/null || need+=(busybox-static)
command -v kubectl >/dev/null || need+=(kubectl)
if [ ${#need[@]} -gt 0 ]; then apt-get update && apt-get install -y "${need[@]}"; fi

# TATAMI=path/to/tatami uses a binary already built.
if [ -z "${TATAMI:-}" ]; then
  cargo build --release -p tatami
  TATAMI=$PWD/target/release/tatami
fi
T=$TATAMI
"$T" down --data-dir "$DATA" 2>/dev/null || true
rm -rf "$DATA"

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs"/{bin,etc,tmp,proc,sys,dev,root,var/log}
cp "$(command -v busybox)" "$rootfs/bin/busybox"
for applet in $("$rootfs/bin/busybox" --list); do [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\n' > "$rootfs/etc/group"
"$T" image --data-dir "$DATA" import-rootfs "$rootfs" --name alpine

"$T" up --data-dir "$DATA" --port 0 > "$DATA.log" 2>&1 &
for _ in $(seq 1 100); do [ -s "$DATA/kubeconfig" ] && break; sleep 0.1; done
export KUBECONFIG=$DATA/kubeconfig
until [ "$(kubectl get --raw /readyz 2>/dev/null)" = ok ]; do sleep 0.2; done

# The tutorial's Pod, using the imported image instead of pulling it.
sed 's/^    image: alpine$/    image: alpine\n    imagePullPolicy: IfNotPresent/' \
  crates/tatami/tests/manifests/date-tail-emptydir.yaml | kubectl apply -f -
kubectl wait --for=condition=Ready pod/date-tail --timeout=60s
sleep 3
kubectl get pods
kubectl logs date-tail -c tail --tail=3
echo
echo "The cluster runs: export KUBECONFIG=$KUBECONFIG"
echo "Stop it with: $T down --data-dir $DATA"
