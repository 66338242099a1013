#!/usr/bin/env python3
"""Benchmark of a ConfigMap change reaching a running Pod; prints one table.

One cluster (`tatami up` on a fresh data dir, a local docker-registry as docker.io's mirror,
as bench/pod.py sets up) runs a Pod that mounts a ConfigMap. Each run waits a random 0-10 s, then patches the ConfigMap with
a new value (`kubectl patch`, timed from its start) and polls, every 5 ms, the file the container
sees (the volume's key on the node, which is bind-mounted into the container) until it holds the
new value. The node re-syncs a running Pod every 10 s, as kubelet does every 60 to 90 s; the
figure is bounded by that period. Needs root, runc, busybox-static, docker-registry, skopeo and
kubectl. With --workdir the work directory is kept.
"""

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pod  # noqa: E402  (the registry, cluster and image helpers)

POLL_S = 0.005
TIMEOUT_S = 120.0
KUBELET_BOUND = "60-90 s (kubelet's sync period with jitter)"

MANIFEST = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: bench
data:
  value: "0"
---
apiVersion: v1
kind: Pod
metadata:
  name: reader
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: alpine
    command: ["sleep", "3600"]
    volumeMounts: [{name: cfg, mountPath: /etc/cfg}]
  volumes:
  - name: cfg
    configMap: {name: bench}
"""


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tatami", required=True)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--workdir")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("volumes.py: needs root (containers run through runc)")
    own = args.workdir is None
    work = tempfile.mkdtemp(prefix="tatami-bench-volumes-") if own else os.path.abspath(args.workdir)
    os.makedirs(work, exist_ok=True)
    cleanups = []
    try:
        rootfs = os.path.join(work, "rootfs")
        pod.busybox_rootfs(rootfs)
        layout = os.path.join(work, "layout")
        pod.oci_layout(rootfs, layout)
        registry = pod.Registry(work)
        cleanups.append(registry.stop)
        registry.start(layout)
        cluster = pod.Cluster(os.path.abspath(args.tatami), work, registry)
        cleanups.append(cluster.stop)
        cluster.start()
        manifest = os.path.join(work, "reader.yaml")
        with open(manifest, "w") as f:
            f.write(MANIFEST)
        cluster.kubectl("apply", "-f", manifest)
        deadline = time.monotonic() + TIMEOUT_S
        while cluster.kubectl("get", "pod", "reader", "-o", "jsonpath={.status.phase}", check=False).stdout != "Running":
            if time.monotonic() > deadline:
                raise pod.BenchError("the reader Pod did not run")
            time.sleep(0.1)
        uid = cluster.kubectl("get", "pod", "reader", "-o", "jsonpath={.metadata.uid}").stdout
        key = os.path.join(cluster.data, "node", "pods", uid, "volumes", "kubernetes.io~configmap", "cfg", "value")
        samples = []
        for i in range(1, args.runs + 1):
            value = str(i)
            # A random moment within the re-sync period, so runs are not in step with it.
            time.sleep(random.uniform(0, 10))
            patch = json.dumps({"data": {"value": value}})
            t0 = time.perf_counter()
            cluster.kubectl("patch", "configmap", "bench", "-p", patch)
            while True:
                try:
                    with open(key) as f:
                        if f.read() == value:
                            break
                except FileNotFoundError:
                    pass
                if time.perf_counter() - t0 > TIMEOUT_S:
                    raise pod.BenchError(f"run {i}: the change did not reach the Pod in {TIMEOUT_S:.0f} s")
                time.sleep(POLL_S)
            samples.append(time.perf_counter() - t0)
            pod.say(f"run {i}/{args.runs}: {samples[-1]:.2f} s")
        print()
        print(f"machine: {pod.machine()}")
        print()
        print("| figure | median | min | max | Kubernetes |")
        print("| --- | --- | --- | --- | --- |")
        print(f"| `kubectl patch` of a mounted ConfigMap → new value in the Pod's file ({args.runs} runs) | "
              f"{statistics.median(samples):.2f} s | {min(samples):.2f} s | {max(samples):.2f} s | {KUBELET_BOUND} |")
    except pod.BenchError as e:
        pod.say(f"benchmark failed: {e}")
        sys.exit(1)
    finally:
        for fn in reversed(cleanups):
            try:
                fn()
            except Exception as e:  # keep cleaning up past one failure
                pod.say(f"clean-up: {e}")
        if own:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
