#!/usr/bin/env python3
"""Benchmark of a Pod's start on tatami, beside two floors; prints one table.

The figure: from `kubectl apply -f` of the tutorial's Pod (date-tail, the hostPath variant, with its
own hostPath under the work directory) until the `date` container's first line (`Start at: <date>`
and its newline) is in the hostPath file on the host, polled every 2 ms. Beside it, in the same run
and interleaved with it:
  floor 1: a bare `runc run -d` of the same busybox container (a bundle from `runc spec`, the same
           shell script, a bind mount of a host directory) until its first line is in the file;
  floor 2: `kubectl apply -f` of a small ConfigMap until kubectl exits: the client's own cost
           (process start, kubeconfig, discovery cache, TLS, one GET and one POST).
tatami's share is the first figure less floor 2, run by run; the goals are share / floor 1 < 1.5
and the whole figure < 1/3 of `podman kube play` of the same Pod (625 ms measured on this kind of
machine).

One cluster serves every run: `tatami up` on a fresh data dir, with a local docker-registry holding
an `alpine` image made of busybox as docker.io's mirror. kubectl runs with a fresh HOME and
KUBECACHEDIR. A first round of all three, not counted, pulls the image and fills kubectl's
discovery cache. Between runs the Pod is force-deleted and waited for (gone from the API and its
containers stopped on the node) and the file is removed.

Needs root, runc, busybox (busybox-static), docker-registry, skopeo and kubectl. Python 3
standard library only. Everything it starts is stopped and everything it writes lives in one work
directory, removed at the end unless --workdir was given (then its owner removes it).
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

POLL_S = 0.002  # poll period of the output file
MANY_POLL_S = 0.05  # poll period for the 110 Pods' files (their times come from the files)
FIRST_LINE_TIMEOUT_S = 60.0  # bound on one start reaching its first line
PULL_TIMEOUT_S = 120.0  # bound on the warm-up Pod, which pulls the image
CMD_TIMEOUT_S = 60.0  # bound on one helper command (kubectl, runc, skopeo)
START_TIMEOUT_S = 60.0  # bound on `tatami up` and the registry becoming ready
SETTLE_TIMEOUT_S = 60.0  # bound on a deleted Pod being gone and its containers stopped
PODMAN_MS = 625.0  # measured median of `podman kube play` of this Pod on this kind of machine

POD_NAME = "date-tail"

# The acceptance manifest date-tail-hostpath.yaml; only the hostPath differs.
POD_YAML = """\
apiVersion: v1
kind: Pod
metadata:
  name: date-tail
spec:
  containers:
  - name: date
    image: alpine
    command: ["sh", "-c"]
    args:
    - |
      exec >> /var/log/date-tail/output.log
      echo -n 'Start at: '
      while true; do
        date
        sleep 1
      done
    volumeMounts:
    - name: log-volume
      mountPath: /var/log/date-tail
  - name: tail
    image: alpine
    command: ["sh", "-c"]
    args:
    - |
      tail -f /var/log/date-tail/output.log
    volumeMounts:
    - name: log-volume
      mountPath: /var/log/date-tail
  volumes:
  - name: log-volume
    hostPath:
      path: {host_path}
  terminationGracePeriodSeconds: 0
"""

CONFIGMAP_YAML = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
data:
  greeting: hello from the benchmark
"""

# The date container's script, for the bare runc floor, writing to its bind mount at /mnt.
FLOOR_SCRIPT = "exec >> /mnt/out.log; echo -n 'Start at: '; while true; do date; sleep 1; done"


class BenchError(Exception):
    """A failure that ends the benchmark with one clear sentence."""


def say(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd, env=None, timeout=CMD_TIMEOUT_S, check=True, input_=None):
    try:
        out = subprocess.run(cmd, env=env, input=input_, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"`{' '.join(cmd[:3])} ...` did not finish within {timeout:.0f} s")
    if check and out.returncode != 0:
        raise BenchError(f"`{' '.join(cmd)}` exited with {out.returncode}: {(out.stderr or out.stdout).strip()[:400]}")
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# The image: a busybox root filesystem, as an OCI layout pushed to a local registry.


def busybox_rootfs(root):
    bb = shutil.which("busybox")
    if not bb:
        raise BenchError("busybox is missing: apt-get install -y busybox-static")
    for d in ("bin", "sbin", "etc", "tmp", "proc", "sys", "dev", "root", "var/log", "usr/bin", "mnt"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    shutil.copy2(bb, os.path.join(root, "bin", "busybox"))
    applets = run([bb, "--list"]).stdout.split()
    for applet in applets:
        link = os.path.join(root, "bin", applet)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    with open(os.path.join(root, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    with open(os.path.join(root, "etc", "group"), "w") as f:
        f.write("root:x:0:\nnobody:x:65534:\n")
    os.chmod(os.path.join(root, "tmp"), 0o1777)


def oci_layout(rootfs, layout, tag="latest"):
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)

    def blob(data, media_type):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
            f.write(data)
        return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(os.listdir(rootfs)):
            tar.add(os.path.join(rootfs, name), arcname=name)
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    layer = blob(gzip.compress(raw.getvalue(), mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip")
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "bench/pod.py"}],
    }
    config_desc = blob(json.dumps(config, sort_keys=True).encode(), "application/vnd.oci.image.config.v1+json")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [layer],
    }
    desc = blob(json.dumps(manifest, sort_keys=True).encode(), "application/vnd.oci.image.manifest.v1+json")
    desc["annotations"] = {"org.opencontainers.image.ref.name": tag}
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [desc]}, f)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)


class Registry:
    """Debian's docker-registry on a free loopback port, holding library/alpine:latest."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.proc = None
        self.addr = None

    def start(self, layout):
        for tool in ("docker-registry", "skopeo"):
            if not shutil.which(tool):
                raise BenchError(f"{tool} is missing: apt-get install -y docker-registry skopeo")
        self.addr = f"127.0.0.1:{free_port()}"
        conf = os.path.join(self.workdir, "registry.yml")
        with open(conf, "w") as f:
            f.write(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n"
                % (os.path.join(self.workdir, "registry"), self.addr)
            )
        log = open(os.path.join(self.workdir, "registry.log"), "ab")
        self.proc = subprocess.Popen(["docker-registry", "serve", conf], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        with open(os.path.join(self.workdir, "registry.pid"), "w") as f:
            f.write(str(self.proc.pid))
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"docker-registry exited with {self.proc.returncode}; see registry.log")
            try:
                with socket.create_connection(("127.0.0.1", int(self.addr.rsplit(":", 1)[1])), timeout=1.0) as s:
                    s.sendall(b"GET /v2/ HTTP/1.0\r\nHost: %s\r\n\r\n" % self.addr.encode())
                    if s.recv(64).startswith(b"HTTP/1."):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"docker-registry did not answer within {START_TIMEOUT_S:.0f} s")
            time.sleep(0.05)
        run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:latest", f"docker://{self.addr}/library/alpine:latest"], timeout=120)

    def stop(self):
        if self.proc is not None:
            stop_proc(self.proc)
            self.proc = None


def stop_proc(proc, timeout=15.0):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


# ---------------------------------------------------------------------------------------------
# The cluster and kubectl.


class Cluster:
    """`tatami up` on a fresh data dir, with the registry as docker.io's mirror."""

    def __init__(self, binary, workdir, registry):
        self.binary = binary
        self.data = os.path.join(workdir, "data")
        self.log_path = os.path.join(workdir, "up.log")
        self.registry = registry
        self.proc = None
        home = os.path.join(workdir, "home")
        os.makedirs(home, mode=0o700, exist_ok=True)
        self.env = dict(os.environ)
        self.env.update(
            HOME=home,
            KUBECACHEDIR=os.path.join(home, ".kube", "cache"),
            KUBECONFIG=os.path.join(self.data, "kubeconfig"),
        )

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "up", "--data-dir", self.data, "--port", "0",
             "--registry-mirror", f"docker.io=http://{self.registry.addr}", "--insecure-registry", self.registry.addr],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"tatami up exited with {self.proc.returncode}; see up.log")
            if os.path.exists(self.env["KUBECONFIG"]):
                out = self.kubectl("get", "--raw", "/readyz", check=False)
                if out.returncode == 0 and out.stdout.strip() == "ok":
                    return
            if time.monotonic() > deadline:
                raise BenchError(f"tatami up was not ready within {START_TIMEOUT_S:.0f} s; see up.log")
            time.sleep(0.1)

    def kubectl(self, *args, check=True, input_=None, timeout=CMD_TIMEOUT_S):
        return run(["kubectl", *args], env=self.env, check=check, input_=input_, timeout=timeout)

    def runc_root(self):
        return os.path.join(self.data, "runtime", "runc")

    def stop(self):
        if self.proc is None:
            return
        # `up` is our child: stopped and reaped here, since `tatami down` would wait on its zombie.
        # Then `tatami down` stops every container, mount and network it made.
        stop_proc(self.proc)
        try:
            subprocess.run([self.binary, "down", "--data-dir", self.data], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=90)
        except subprocess.TimeoutExpired:
            say("tatami down did not finish within 90 s")
        self.proc = None


# ---------------------------------------------------------------------------------------------
# One timed start.


def first_line(path):
    """Whether the file at path holds a whole line."""
    try:
        if os.stat(path).st_size == 0:
            return False
        with open(path, "rb") as f:
            return b"\n" in f.read(4096)
    except FileNotFoundError:
        return False


def timed_start(cmd, env, out_file, timeout, what):
    """Spawns cmd and polls out_file every POLL_S until it holds a line.

    Returns (seconds to the first line, seconds to cmd's exit); cmd must exit 0."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    exited = None
    try:
        while True:
            if first_line(out_file):
                line = time.perf_counter() - t0
                break
            if exited is None and proc.poll() is not None:
                exited = time.perf_counter() - t0
                if proc.returncode != 0:
                    raise BenchError(f"{what} exited with {proc.returncode}: {proc.stderr.read().decode(errors='replace').strip()[:400]}")
            if time.perf_counter() - t0 > timeout:
                raise BenchError(f"{what}: no line in {out_file} within {timeout:.0f} s")
            time.sleep(POLL_S)
        if exited is None:
            proc.wait(timeout=CMD_TIMEOUT_S)
            exited = time.perf_counter() - t0
        if proc.returncode != 0:
            raise BenchError(f"{what} exited with {proc.returncode}: {proc.stderr.read().decode(errors='replace').strip()[:400]}")
        return line, exited
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def timed_command(cmd, env, what):
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=CMD_TIMEOUT_S)
    elapsed = time.perf_counter() - t0
    if out.returncode != 0:
        raise BenchError(f"{what} exited with {out.returncode}: {out.stderr.decode(errors='replace').strip()[:400]}")
    return elapsed


class RuncFloor:
    """Bare `runc run -d` of the busybox container with a bind mount, on a private runc root."""

    def __init__(self, workdir, rootfs):
        self.root = os.path.join(workdir, "runc-root")
        self.bundle = os.path.join(workdir, "bundle")
        self.host_dir = os.path.join(workdir, "host", "floor")
        self.out = os.path.join(self.host_dir, "out.log")
        self.live = []
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        os.makedirs(self.bundle, exist_ok=True)
        os.makedirs(self.host_dir, exist_ok=True)
        run(["runc", "spec", "--bundle", self.bundle])
        path = os.path.join(self.bundle, "config.json")
        with open(path) as f:
            c = json.load(f)
        c["root"]["path"] = rootfs
        c["process"]["terminal"] = False
        c["process"]["args"] = ["sh", "-c", FLOOR_SCRIPT]
        c["mounts"].append({"destination": "/mnt", "type": "bind", "source": self.host_dir, "options": ["rbind", "rw"]})
        with open(path, "w") as f:
            json.dump(c, f)

    def once(self, n):
        cid = f"tatami-bench-floor-{os.getpid()}-{n}"
        self.remove_file()
        self.live.append(cid)
        line, _ = timed_start(["runc", "--root", self.root, "run", "-d", "--bundle", self.bundle, cid], None, self.out, FIRST_LINE_TIMEOUT_S, "runc run -d")
        self.delete(cid)
        return line

    def delete(self, cid):
        run(["runc", "--root", self.root, "delete", "-f", cid], check=False)
        state = run(["runc", "--root", self.root, "state", cid], check=False)
        if state.returncode == 0:
            raise BenchError(f"runc delete -f {cid} left the container")
        self.live.remove(cid)

    def remove_file(self):
        if os.path.exists(self.out):
            os.unlink(self.out)

    def cleanup(self):
        for cid in list(self.live):
            run(["runc", "--root", self.root, "delete", "-f", cid], check=False)
            self.live.remove(cid)


class PodRuns:
    """`kubectl apply -f` of the Pod and of ConfigMaps, and the clean-up between runs."""

    def __init__(self, workdir, cluster):
        self.cluster = cluster
        self.host_dir = os.path.join(workdir, "host", "date-tail")
        self.out = os.path.join(self.host_dir, "output.log")
        self.manifest = os.path.join(workdir, "date-tail-hostpath.yaml")
        with open(self.manifest, "w") as f:
            f.write(POD_YAML.replace("{host_path}", self.host_dir))
        self.cm_dir = os.path.join(workdir, "configmaps")
        os.makedirs(self.cm_dir, exist_ok=True)

    def pod_once(self, timeout=FIRST_LINE_TIMEOUT_S):
        if os.path.exists(self.out):
            os.unlink(self.out)
        line, exited = timed_start(["kubectl", "apply", "-f", self.manifest], self.cluster.env, self.out, timeout, "kubectl apply of the Pod")
        self.delete_pod()
        return line, exited

    def configmap_once(self, n):
        name = f"bench-{n}"
        path = os.path.join(self.cm_dir, f"{name}.yaml")
        with open(path, "w") as f:
            f.write(CONFIGMAP_YAML.format(name=name))
        t = timed_command(["kubectl", "apply", "-f", path], self.cluster.env, "kubectl apply of a ConfigMap")
        self.cluster.kubectl("delete", "configmap", name, "--wait=false")
        return t

    def running_containers(self):
        """The ids of the containers runc still runs on the node."""
        out = run(["runc", "--root", self.cluster.runc_root(), "list", "-f", "json"], check=False)
        if out.returncode != 0:
            return []
        return [c["id"] for c in json.loads(out.stdout or "null") or [] if c.get("status") != "stopped"]

    def delete_pod(self):
        self.cluster.kubectl("delete", "pod", POD_NAME, "--grace-period=0", "--force", "--wait=false", "--ignore-not-found")
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        # Gone from the API...
        while self.cluster.kubectl("get", "pod", POD_NAME, "--ignore-not-found", "-o", "name").stdout.strip():
            if time.monotonic() > deadline:
                raise BenchError(f"pod {POD_NAME} was not gone {SETTLE_TIMEOUT_S:.0f} s after its delete")
            time.sleep(0.05)
        # ...and no container of it still running on the node (it would skew the next run).
        while True:
            running = self.running_containers()
            if not running:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"containers {', '.join(running)} still run {SETTLE_TIMEOUT_S:.0f} s after the Pod's delete")
            time.sleep(0.02)
        if os.path.exists(self.out):
            os.unlink(self.out)


# ---------------------------------------------------------------------------------------------
# The node's other figures: delete, memory, 110 Pods.

MAX_PODS = 110  # kubelet's default maxPods
MANY_TIMEOUT_S = 180.0  # bound on all MAX_PODS Pods starting, or going

MANY_POD_YAML = """\
apiVersion: v1
kind: Pod
metadata:
  name: many-{n}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: c
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo up > /mnt/many-{n}; exec sleep 3600"]
    volumeMounts: [{{name: h, mountPath: /mnt}}]
  volumes:
  - name: h
    hostPath: {{path: {host_path}}}
"""


def tatami_processes(workdir):
    """(pid, kind) of every process of this cluster, by their command lines: `up`, the shims, and
    the holders of each Pod's namespaces (the shim's program in its `pause` mode)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if len(argv) < 2 or workdir.encode() not in b" ".join(argv):
            continue
        if argv[1] == b"up":
            found.append((int(pid), "up"))
        elif os.path.basename(argv[0]) == b"tatami-shim":
            found.append((int(pid), "holder" if argv[1] == b"pause" else "shim"))
    return found


def memory_kib(pid):
    """(RSS, PSS) of a process in KiB: resident pages, and its share of pages it shares."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for l in f:
            key, _, value = l.partition(":")
            if value.strip().endswith(" kB"):
                fields[key] = int(value.split()[0])
    return fields["Rss"], fields["Pss"]


class NodeFigures:
    """Delete with grace 0, memory with the tutorial Pod running, and MAX_PODS Pods at once."""

    def __init__(self, workdir, cluster, pods):
        self.workdir = workdir
        self.cluster = cluster
        self.pods = pods
        self.many_dir = os.path.join(workdir, "host", "many")
        os.makedirs(self.many_dir, exist_ok=True)

    def delete_once(self):
        """Seconds from `kubectl delete -f` of the running tutorial Pod (grace 0) to kubectl's
        return, and to no container of it running on the node; and the seconds `kubectl delete`
        of a ConfigMap takes (the client's own cost)."""
        if os.path.exists(self.pods.out):
            os.unlink(self.pods.out)
        timed_start(["kubectl", "apply", "-f", self.pods.manifest], self.cluster.env, self.pods.out, FIRST_LINE_TIMEOUT_S, "kubectl apply of the Pod")
        t0 = time.perf_counter()
        timed_command(["kubectl", "delete", "-f", self.pods.manifest], self.cluster.env, "kubectl delete of the Pod")
        returned = time.perf_counter() - t0
        while self.pods.running_containers():
            if time.perf_counter() - t0 > SETTLE_TIMEOUT_S:
                raise BenchError(f"containers still run {SETTLE_TIMEOUT_S:.0f} s after the Pod's delete")
            time.sleep(POLL_S)
        stopped = time.perf_counter() - t0
        self.pods.delete_pod()
        self.cluster.kubectl("create", "configmap", "bench-delete")
        floor = timed_command(["kubectl", "delete", "configmap", "bench-delete"], self.cluster.env, "kubectl delete of a ConfigMap")
        return returned, stopped, floor

    def memory(self):
        """With the tutorial Pod running: (RSS, PSS) of each shim, the Pod's namespace holder and `up`."""
        timed_start(["kubectl", "apply", "-f", self.pods.manifest], self.cluster.env, self.pods.out, FIRST_LINE_TIMEOUT_S, "kubectl apply of the Pod")
        time.sleep(2)  # settled: both containers run, their first lines logged
        procs = tatami_processes(self.workdir)
        shims = [memory_kib(pid) for pid, kind in procs if kind == "shim"]
        holders = [memory_kib(pid) for pid, kind in procs if kind == "holder"]
        up = [memory_kib(pid) for pid, kind in procs if kind == "up"]
        self.pods.delete_pod()
        if len(shims) != 2 or len(holders) != 1 or len(up) != 1:
            raise BenchError(f"expected one up, two shims and one namespace holder, found {procs}")
        return {"shims": shims, "holder": holders[0], "up": up[0]}

    def many(self):
        """Applies MAX_PODS Pods at once; returns each one's seconds from the apply to its file,
        and the seconds `kubectl delete` of them all takes until they are gone."""
        manifest = os.path.join(self.workdir, "many.yaml")
        with open(manifest, "w") as f:
            f.write("---\n".join(MANY_POD_YAML.format(n=n, host_path=self.many_dir) for n in range(MAX_PODS)))
        for name in os.listdir(self.many_dir):
            os.unlink(os.path.join(self.many_dir, name))
        # Each Pod's start runs from when a watch first shows it (its creation, as kubelet's
        # startup latency counts) to its file's modification time (when the container wrote
        # it; the directory is only polled slowly for completion, so the benchmark takes little
        # of the CPU the Pods need): kubectl itself spends ~40 ms of CPU per object here, so
        # one `kubectl apply` of them all takes seconds before the last Pod exists.
        created = {}
        watch = subprocess.Popen(["kubectl", "get", "pods", "--watch-only", "-o", "name"], env=self.cluster.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

        def read_watch():
            for l in watch.stdout:
                created.setdefault(l.strip().removeprefix("pod/"), time.time())

        reader = threading.Thread(target=read_watch, daemon=True)
        reader.start()
        time.sleep(0.5)  # the watch is open
        t0 = time.time()
        proc = subprocess.Popen(["kubectl", "apply", "-f", manifest], env=self.cluster.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        started = {}
        try:
            while len(started) < MAX_PODS:
                for name in os.listdir(self.many_dir):
                    if name not in started:
                        started[name] = os.stat(os.path.join(self.many_dir, name)).st_mtime
                if time.time() - t0 > MANY_TIMEOUT_S:
                    raise BenchError(f"only {len(started)} of {MAX_PODS} Pods started within {MANY_TIMEOUT_S:.0f} s")
                time.sleep(MANY_POLL_S)
            proc.wait(timeout=CMD_TIMEOUT_S)
            if proc.returncode != 0:
                raise BenchError(f"kubectl apply of {MAX_PODS} Pods failed: {proc.stderr.read().decode(errors='replace')[:400]}")
        finally:
            for p in (proc, watch):
                if p.poll() is None:
                    p.kill()
                    p.wait()
            proc.stderr.close()
        missing = [n for n in started if n not in created]
        if missing:
            raise BenchError(f"the watch never showed {', '.join(missing[:5])}")
        starts = sorted(started[n] - created[n] for n in started)
        last = max(started.values()) - t0
        phases = self.cluster.kubectl("get", "pods", "-o", "jsonpath={range .items[*]}{.status.phase}{\"\\n\"}{end}").stdout.split()
        running = phases.count("Running")
        if running != MAX_PODS:
            raise BenchError(f"{running} of {MAX_PODS} Pods are Running")
        # kubectl's own wait for deleted objects GETs each one at its client-side limit (5 per
        # second), so the Pods' going is watched here instead: no Pod object, no container.
        t0 = time.perf_counter()
        timed_command(["kubectl", "delete", "-f", manifest, "--wait=false"], self.cluster.env, f"kubectl delete of {MAX_PODS} Pods")
        while self.cluster.kubectl("get", "pods", "-o", "name").stdout.strip() or self.pods.running_containers():
            if time.perf_counter() - t0 > MANY_TIMEOUT_S:
                raise BenchError(f"the {MAX_PODS} Pods were not gone {MANY_TIMEOUT_S:.0f} s after their delete")
            time.sleep(0.05)
        deleted = time.perf_counter() - t0
        return starts, last, deleted, running


def percentile(samples, p):
    """The p-th percentile of sorted samples, nearest rank."""
    return samples[min(len(samples) - 1, max(0, -(-len(samples) * p // 100) - 1))]


# ---------------------------------------------------------------------------------------------
# Formatting.


def ms(s):
    return f"{s * 1000:.1f} ms"


def spread(samples):
    return ms(statistics.median(samples)), ms(min(samples)), ms(max(samples))


def git_commit(repo):
    try:
        out = subprocess.run(["git", "-C", repo, "describe", "--always", "--dirty", "--abbrev=12"], capture_output=True, text=True, timeout=30)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"nproc {os.cpu_count()} ({cpu}), Linux {os.uname().release}"


def version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (out.stdout.strip().splitlines() or ["?"])[0]
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def kubectl_version():
    try:
        out = subprocess.run(["kubectl", "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=30)
        return json.loads(out.stdout).get("clientVersion", {}).get("gitVersion", "?")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return "?"


def load():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def print_rows(head, rows):
    """A Markdown table, each column as wide as its widest cell."""
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]

    def line(r):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"

    print(line(head))
    print("| " + " | ".join("-" * w for w in widths) + " |")
    for r in rows:
        print(line(r))


def print_table(args, res):
    whole, exited, cm, runc_floor = res["pod"], res["pod_exit"], res["cm"], res["runc"]
    share = [p - c for p, c in zip(whole, cm)]
    ratio_share = statistics.median(share) / statistics.median(runc_floor)
    ratio_podman = statistics.median(whole) * 1000 / PODMAN_MS
    n = len(whole)
    rows = [
        (f"`kubectl apply -f` Pod → first line in hostPath file (whole)", *spread(whole), f"< {PODMAN_MS / 3:.0f} ms"),
        ("  of which: `kubectl apply` exited", *spread(exited), ""),
        ("floor 2: `kubectl apply -f` ConfigMap (client's own cost)", *spread(cm), ""),
        ("tatami's share (whole − floor 2, run by run)", *spread(share), ""),
        ("floor 1: bare `runc run -d` → first line in the file", *spread(runc_floor), ""),
        ("share / runc floor (medians)", f"{ratio_share:.2f}x", "", "", "< 1.5x"),
        (f"whole / podman kube play ({PODMAN_MS:.0f} ms)", f"{ratio_podman:.2f}", "", "", "< 0.33"),
    ]
    head = ("figure", "median", "min", "max", "goal")

    built = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.stat(args.tatami).st_mtime))
    print()
    print(f"tatami Pod start benchmark, {n} runs{' (--quick)' if args.quick else ''}")
    print(f"commit:  {git_commit(args.repo)}")
    print(f"binary:  {args.tatami} (built {built})")
    print(f"machine: {machine()}")
    print(f"load:    {args.load_before} before, {load()} after (1, 5, 15 min averages; other work on the machine skews the figures)")
    print(f"tools:   {version(['runc', '--version'])}; kubectl {kubectl_version()}")
    print()
    print_rows(head, rows)
    print()
    print("Each run does floor 1, floor 2 and the Pod in turn; the file is polled every 2 ms. The first")
    print("line is the date container's `Start at: <date>` with its newline (floor 1 runs the same script).")
    print("The Pod's image is `alpine` (pull policy Always, so each start asks the local registry mirror).")

    mem = res["memory"]
    mib = lambda kib: f"{kib / 1024:.2f} MiB"
    shim_rss = max(r for r, _ in mem["shims"])
    shim_pss = max(p for _, p in mem["shims"])
    total_rss = mem["up"][0] + mem["holder"][0] + sum(r for r, _ in mem["shims"])
    total_pss = mem["up"][1] + mem["holder"][1] + sum(p for _, p in mem["shims"])
    many = res["many"]
    rows = [
        ("`kubectl delete -f` of the running Pod (grace 0) → kubectl returns", *spread(res["delete"]), "< 200 ms"),
        ("  → no container of it runs on the node", *spread(res["delete_stopped"]), ""),
        ("floor: `kubectl delete` of a ConfigMap (client's own cost)", *spread(res["delete_floor"]), ""),
        ("monitor (shim) per container: RSS / PSS, the larger of 2", f"{mib(shim_rss)} / {mib(shim_pss)}", "", "", "< 1 MiB"),
        ("the Pod's namespace holder: RSS / PSS", f"{mib(mem['holder'][0])} / {mib(mem['holder'][1])}", "", "", ""),
        ("all tatami processes, tutorial Pod running: RSS / PSS", f"{mib(total_rss)} / {mib(total_pss)}", "", "", ""),
        (f"  of which `tatami up`: RSS / PSS", f"{mib(mem['up'][0])} / {mib(mem['up'][1])}", "", "", ""),
        (f"{MAX_PODS} Pods in one apply: each one's creation → first line, p50 / p99", f"{ms(percentile(many, 50))} / {ms(percentile(many, 99))}", ms(many[0]), ms(many[-1]), "p99 < 2 s"),
        (f"  the one `kubectl apply` → the last Pod's first line", ms(res["many_last"]), "", "", ""),
        (f"{MAX_PODS} Pods Running, then `kubectl delete -f --wait=false` → none left", f"{res['many_running']} Running, {ms(res['many_delete'])}", "", "", ""),
    ]
    print()
    print_rows(head, rows)
    print()
    print("Delete: the tutorial Pod (terminationGracePeriodSeconds 0) is applied, its first line awaited,")
    print("then `kubectl delete -f` (which waits until the Pod object is gone) while runc's list is polled.")
    print(f"PSS counts a shared page 1/n to each of its n processes. The {MAX_PODS} Pods")
    print("(IfNotPresent) each write a file on a hostPath; a Pod's creation is when a watch first shows it.")


# ---------------------------------------------------------------------------------------------


def bench(args, workdir, cleanups):
    for tool in ("runc", "kubectl"):
        if not shutil.which(tool):
            raise BenchError(f"{tool} is missing from PATH")
    say("building the busybox image and starting the registry")
    rootfs = os.path.join(workdir, "rootfs")
    busybox_rootfs(rootfs)
    layout = os.path.join(workdir, "layout")
    oci_layout(rootfs, layout)
    registry = Registry(workdir)
    cleanups.append(registry.stop)
    registry.start(layout)

    say("starting tatami up")
    cluster = Cluster(args.tatami, workdir, registry)
    cleanups.append(cluster.stop)
    cluster.start()

    floor = RuncFloor(workdir, rootfs)
    cleanups.append(floor.cleanup)
    pods = PodRuns(workdir, cluster)

    say("warm-up round (pulls the image, fills kubectl's discovery cache; not counted)")
    floor.once(0)
    pods.configmap_once(0)
    pods.pod_once(timeout=PULL_TIMEOUT_S)

    res = {"pod": [], "pod_exit": [], "cm": [], "runc": []}
    for i in range(1, args.runs + 1):
        res["runc"].append(floor.once(i))
        res["cm"].append(pods.configmap_once(i))
        line, exited = pods.pod_once()
        res["pod"].append(line)
        res["pod_exit"].append(exited)
        say(f"run {i}/{args.runs}: pod {ms(line)}, configmap {ms(res['cm'][-1])}, runc {ms(res['runc'][-1])}")

    node = NodeFigures(workdir, cluster, pods)
    res["delete"], res["delete_stopped"], res["delete_floor"] = [], [], []
    for i in range(1, args.runs + 1):
        returned, stopped, floor_s = node.delete_once()
        res["delete"].append(returned)
        res["delete_stopped"].append(stopped)
        res["delete_floor"].append(floor_s)
        say(f"delete {i}/{args.runs}: kubectl {ms(returned)}, containers stopped {ms(stopped)}, configmap {ms(floor_s)}")
    say("memory with the tutorial Pod running")
    res["memory"] = node.memory()
    say(f"{MAX_PODS} Pods at once")
    res["many"], res["many_last"], res["many_delete"], res["many_running"] = node.many()
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tatami", required=True, help="the tatami binary")
    p.add_argument("--runs", type=int, help="counted runs (default 10, --quick 3)")
    p.add_argument("--quick", action="store_true", help="3 runs, for a fast check")
    p.add_argument("--workdir", help="where to put everything (kept; default: a new temp dir, removed)")
    args = p.parse_args()
    args.runs = args.runs or (3 if args.quick else 10)
    if not 1 <= args.runs <= 1000:
        sys.exit("pod.py: --runs must be between 1 and 1000")
    args.tatami = os.path.abspath(args.tatami)
    args.repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.access(args.tatami, os.X_OK):
        sys.exit(f"pod.py: {args.tatami} is not an executable")
    if os.geteuid() != 0:
        sys.exit("pod.py: needs root (containers run through runc)")

    args.load_before = load()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    own = args.workdir is None
    workdir = tempfile.mkdtemp(prefix="tatami-bench-pod-") if own else os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    cleanups = []
    try:
        res = bench(args, workdir, cleanups)
        print_table(args, res)
    except BenchError as e:
        say(f"benchmark failed: {e}")
        for name in ("up.log", "registry.log"):
            path = os.path.join(workdir, name)
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    lines = f.read().splitlines()
                if lines:
                    say(f"--- {name} (tail) ---\n" + "\n".join(lines[-20:]))
        sys.exit(1)
    finally:
        for fn in reversed(cleanups):
            try:
                fn()
            except Exception as e:  # keep cleaning up past one failure
                say(f"clean-up: {e}")
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
