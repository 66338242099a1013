#!/usr/bin/env python3
"""Benchmark of tatami's API server and datastore; prints one table.

Figures:
  1. `tatami up` to the first 200 "ok" from GET /readyz: fresh data dirs, and restarts on a data
     dir holding the pods of figure 3.
  2. Creates per second with 4 concurrent clients (ConfigMaps, then Pods), each client on its own
     persistent HTTPS connection, beside a floor: the same number of one-row transactions into a
     bare SQLite file (WAL, synchronous=FULL) from 4 threads.
  3. GET of the list of all pods: full JSON, the server-side Table, and the first page of 500.
  4. Idle RSS of `tatami up` 2 s after ready, fresh and with the pods.

Python 3 standard library only. Everything it starts is stopped and everything it writes lives in
one work directory, removed at the end unless --workdir was given (then its owner removes it).
"""

import argparse
import base64
import http.client
import json
import os
import re
import shutil
import signal
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

START_TIMEOUT_S = 60.0  # bound on one `tatami up` becoming ready
STOP_TIMEOUT_S = 15.0  # bound on one `tatami up` stopping after SIGTERM, then SIGKILL
POLL_S = 0.002  # poll period while waiting for the kubeconfig and /readyz
HTTP_TIMEOUT_S = 60.0  # bound on one HTTP request
MAX_ERRORS = 20  # a load phase gives up after this many failed requests
GENERATE_NAME_TRIES = 5  # a create with generateName is retried on a name collision

COUNT_LOCK = threading.Lock()

TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io"

# The acceptance manifest date-tail-emptydir.yaml, as JSON, with generateName.
POD_TEMPLATE = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"generateName": "date-tail-"},
    "spec": {
        # No scheduler serves this name, so the Pods stay Pending and the node runs none of them:
        # the benchmark measures the API server and the datastore, not 10,000 containers.
        "schedulerName": "bench-unscheduled",
        "containers": [
            {
                "name": "date",
                "image": "alpine",
                "command": ["sh", "-c"],
                "args": [
                    "exec >> /var/log/date-tail/output.log\n"
                    "echo -n 'Start at: '\n"
                    "while true; do\n  date\n  sleep 1\ndone\n"
                ],
                "volumeMounts": [{"name": "log-volume", "mountPath": "/var/log/date-tail"}],
            },
            {
                "name": "tail",
                "image": "alpine",
                "command": ["sh", "-c"],
                "args": ["tail -f /var/log/date-tail/output.log\n"],
                "volumeMounts": [{"name": "log-volume", "mountPath": "/var/log/date-tail"}],
            },
        ],
        "volumes": [{"name": "log-volume", "emptyDir": {}}],
        "terminationGracePeriodSeconds": 0,
    },
}


class BenchError(Exception):
    """A failure that ends the benchmark with one clear sentence."""


def configmap_body(client, i):
    name = f"bench-{client}-{i}"
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "data": {"client": str(client), "index": str(i), "greeting": "hello from the benchmark"},
    }
    return json.dumps(obj, separators=(",", ":")).encode()


POD_BODY = json.dumps(POD_TEMPLATE, separators=(",", ":")).encode()


def pod_body(_client, _i):
    return POD_BODY


# ---------------------------------------------------------------------------------------------
# One `tatami up` process.


class Tatami:
    """A `tatami up` on one data dir; start() returns the seconds from spawn to /readyz ok."""

    live = []  # every process started and not yet reaped, for the final clean-up
    started = []  # every instance started, for `tatami down` at the end

    def __init__(self, binary, data_dir):
        self.binary = binary
        self.data_dir = data_dir
        self.proc = None
        self.log_path = data_dir.rstrip("/") + ".log"
        self.host = "127.0.0.1"
        self.port = None
        self.ctx = None
        self.kubeconfig_s = None  # spawn to kubeconfig written, of the last start

    def start(self):
        Tatami.started.append(self)
        kubeconfig = os.path.join(self.data_dir, "kubeconfig")
        if os.path.exists(kubeconfig):
            os.unlink(kubeconfig)  # a stale one from the previous run would name the old port
        log = open(self.log_path, "ab")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [self.binary, "up", "--data-dir", self.data_dir, "--port", "0"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        Tatami.live.append(self.proc)
        deadline = t0 + START_TIMEOUT_S
        while not os.path.exists(kubeconfig):
            self._check_alive()
            if time.perf_counter() > deadline:
                raise BenchError(f"tatami up wrote no kubeconfig within {START_TIMEOUT_S:.0f} s; see {self.log_path}")
            time.sleep(POLL_S)
        self.kubeconfig_s = time.perf_counter() - t0
        self._load_kubeconfig(kubeconfig)
        conn = None
        while True:
            self._check_alive()
            if time.perf_counter() > deadline:
                raise BenchError(f"/readyz did not answer ok within {START_TIMEOUT_S:.0f} s; see {self.log_path}")
            try:
                if conn is None:
                    conn = self.connect(timeout=2.0)
                conn.request("GET", "/readyz")
                resp = conn.getresponse()
                body = resp.read()
                if resp.status == 200 and body.strip() == b"ok":
                    elapsed = time.perf_counter() - t0
                    conn.close()
                    return elapsed
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(POLL_S)

    def _check_alive(self):
        if self.proc.poll() is not None:
            Tatami.live.remove(self.proc)
            raise BenchError(f"tatami up exited with status {self.proc.returncode}; see {self.log_path}")

    def _load_kubeconfig(self, path):
        with open(path) as f:
            text = f.read()
        fields = dict(re.findall(r"^\s*(server|certificate-authority-data|client-certificate-data|client-key-data):\s*(\S+)\s*$", text, re.M))
        missing = {"server", "certificate-authority-data", "client-certificate-data", "client-key-data"} - fields.keys()
        if missing:
            raise BenchError(f"the kubeconfig lacks {', '.join(sorted(missing))}")
        m = re.fullmatch(r"https://127\.0\.0\.1:(\d+)", fields["server"])
        if not m:
            raise BenchError(f"the kubeconfig names server {fields['server']}, not https://127.0.0.1:PORT")
        self.port = int(m.group(1))
        pem_dir = self.data_dir.rstrip("/") + ".client"
        os.makedirs(pem_dir, mode=0o700, exist_ok=True)
        files = {}
        for key, name in (("certificate-authority-data", "ca.crt"), ("client-certificate-data", "client.crt"), ("client-key-data", "client.key")):
            files[name] = os.path.join(pem_dir, name)
            fd = os.open(files[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(base64.b64decode(fields[key]))
        ctx = ssl.create_default_context(cafile=files["ca.crt"])
        ctx.load_cert_chain(files["client.crt"], files["client.key"])
        self.ctx = ctx

    def connect(self, timeout=HTTP_TIMEOUT_S):
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)

    def rss_kib(self, field="VmRSS"):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise BenchError(f"no {field} in /proc/{self.proc.pid}/status")

    def stop(self):
        if self.proc is None:
            return
        stop_process(self.proc)
        self.proc = None

    def down(self):
        """`tatami down`: what `up` made on the node (its mounts, its Pod network) goes too."""
        self.stop()
        subprocess.run([self.binary, "down", "--data-dir", self.data_dir], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=90)


def stop_process(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
    if proc in Tatami.live:
        Tatami.live.remove(proc)


# ---------------------------------------------------------------------------------------------
# Load: N threads, each on its own connection, timing every request.


def run_clients(nclients, per_client, work):
    """Runs work(client, i) -> None per_client times in each of nclients threads, started together.

    work receives a per-thread state dict from setup (key "setup"); returns (seconds, latencies).
    """
    latencies = [[] for _ in range(nclients)]
    errors = []
    barrier = threading.Barrier(nclients + 1)
    done = [None] * nclients

    def client(c):
        state = {}
        try:
            work.setup(c, state)
        except Exception as e:  # reported after the run
            errors.append(f"client {c} setup: {e}")
            done[c] = time.perf_counter()
            barrier.abort()
            return
        try:
            barrier.wait(timeout=HTTP_TIMEOUT_S)
        except threading.BrokenBarrierError:
            done[c] = time.perf_counter()
            work.teardown(c, state)
            return
        lat = latencies[c]
        try:
            for i in range(per_client):
                if errors and len(errors) >= MAX_ERRORS:
                    return
                t = time.perf_counter()
                try:
                    work.one(c, i, state)
                except Exception as e:
                    errors.append(f"client {c} #{i}: {e}")
                    work.recover(c, state)
                    continue
                lat.append(time.perf_counter() - t)
        finally:
            done[c] = time.perf_counter()
            work.teardown(c, state)

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(nclients)]
    for t in threads:
        t.start()
    try:
        barrier.wait(timeout=HTTP_TIMEOUT_S)
    except threading.BrokenBarrierError:
        raise BenchError(f"the clients did not start: {'; '.join(errors[:3])}")
    t0 = time.perf_counter()
    for t in threads:
        t.join(timeout=HTTP_TIMEOUT_S * per_client)
        if t.is_alive():
            raise BenchError("a client thread did not finish")
    if errors:
        raise BenchError(f"{len(errors)} requests failed, e.g. {errors[0]}")
    return max(done) - t0, [x for lat in latencies for x in lat]


class HttpCreates:
    """POST of bodies made by make_body(client, i) to path; expects 201 Created."""

    def __init__(self, tatami, path, make_body):
        self.tatami = tatami
        self.path = path
        self.make_body = make_body

    def setup(self, c, state):
        state["conn"] = self.tatami.connect()
        state["conn"].connect()  # the TLS handshake belongs to setup, not to the first create

    collisions = 0  # generateName answers of 409 AlreadyExists, retried (as kube-apiserver does itself since 1.32)

    def one(self, c, i, state):
        body = self.make_body(c, i)
        conn = state["conn"]
        for _ in range(GENERATE_NAME_TRIES):
            conn.request("POST", self.path, body=body, headers={"Content-Type": "application/json", "Accept": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status == 201:
                return
            if resp.status == 409 and b'"generateName"' in body:
                with COUNT_LOCK:
                    HttpCreates.collisions += 1
                continue
            break
        raise BenchError(f"POST {self.path} answered {resp.status}: {data[:300]!r}")

    def recover(self, c, state):
        state["conn"].close()
        state["conn"] = self.tatami.connect()

    def teardown(self, c, state):
        state["conn"].close()


class SqliteInserts:
    """One row per transaction into a bare SQLite file, WAL and synchronous=FULL."""

    def __init__(self, path):
        self.path = path
        db = sqlite3.connect(path, isolation_level=None)
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise BenchError(f"SQLite refused WAL mode (got {mode})")
        db.execute("CREATE TABLE kv (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, value BLOB NOT NULL)")
        db.close()

    def setup(self, c, state):
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=HTTP_TIMEOUT_S)
        db.execute("PRAGMA synchronous=FULL")
        state["db"] = db

    def one(self, c, i, state):
        # Autocommit: each INSERT is its own transaction, committed (and fsynced) before it returns.
        state["db"].execute("INSERT INTO kv (name, value) VALUES (?, ?)", (f"bench-{c}-{i}", configmap_body(c, i)))

    def recover(self, c, state):
        pass

    def teardown(self, c, state):
        state["db"].close()


def get_timed(conn, path, accept="application/json"):
    t = time.perf_counter()
    conn.request("GET", path, headers={"Accept": accept})
    resp = conn.getresponse()
    body = resp.read()
    elapsed = time.perf_counter() - t
    if resp.status != 200:
        raise BenchError(f"GET {path} answered {resp.status}: {body[:300]!r}")
    return elapsed, body


# ---------------------------------------------------------------------------------------------
# Formatting.


def ms(s):
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def spread(samples):
    """median (min–max), in ms."""
    return f"{ms(statistics.median(samples))} ({ms(min(samples))}–{ms(max(samples))})"


def pct(samples, p):
    if len(samples) < 2:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1]


def rate(n, seconds, lat, unit):
    return f"{n / seconds:,.0f} {unit}/s (p50 {ms(pct(lat, 50))}, p99 {ms(pct(lat, 99))})"


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


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
    return f"{os.cpu_count()} CPUs ({cpu}), Linux {os.uname().release}, Python {sys.version.split()[0]}"


def filesystem(path):
    best, fstype = "", "unknown"
    try:
        real = os.path.realpath(path)
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                mnt = parts[1].replace("\\040", " ")
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, fstype = mnt, parts[2]
    except OSError:
        pass
    return f"{fstype} ({best or '?'})"


def git_commit(repo):
    try:
        out = subprocess.run(["git", "-C", repo, "describe", "--always", "--dirty", "--abbrev=12"], capture_output=True, text=True, timeout=30)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def say(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------


def bench(args, workdir):
    rows = []  # (figure, value, goal, floor)
    n = 0

    def fresh_dir(name):
        nonlocal n
        n += 1
        return os.path.join(workdir, f"{n:02d}-{name}")

    # 1a. Fresh starts.
    say(f"{args.starts} fresh starts")
    times, kc_times = [], []
    for _ in range(args.starts):
        d = fresh_dir("fresh")
        t = Tatami(args.tatami, d)
        try:
            times.append(t.start())
            kc_times.append(t.kubeconfig_s)
        finally:
            t.down()
        shutil.rmtree(d, ignore_errors=True)
    rows.append((f"`tatami up` → /readyz ok, fresh data dir ({args.starts} starts)", spread(times), "< 300 ms", ""))
    rows.append(("  of which: spawn → kubeconfig written", spread(kc_times), "", ""))

    # The cluster for everything else.
    d = fresh_dir("main")
    cluster = Tatami(args.tatami, d)
    cluster.start()
    time.sleep(2.0)
    rows.append(("idle RSS 2 s after ready, fresh data dir", mib(cluster.rss_kib()), "< 30 MiB", ""))

    # 2. Creates with 4 clients, beside the SQLite floor.
    total = args.clients * args.creates
    say(f"floor: {total} one-row transactions into bare SQLite, {args.clients} threads")
    floor_path = os.path.join(workdir, "floor.db")
    os.sync()  # dirty pages written before the run would otherwise be paid for by its first fsyncs
    secs, lat = run_clients(args.clients, args.creates, SqliteInserts(floor_path))
    floor = rate(total, secs, lat, "inserts")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(floor_path + suffix):
            os.unlink(floor_path + suffix)

    say(f"{total} ConfigMap creates, {args.clients} clients")
    os.sync()
    secs, lat = run_clients(args.clients, args.creates, HttpCreates(cluster, "/api/v1/namespaces/default/configmaps", configmap_body))
    rows.append((f"ConfigMap creates, {args.clients} clients × {args.creates:,}", rate(total, secs, lat, "creates"), "", floor))

    say(f"{total} Pod creates, {args.clients} clients")
    os.sync()
    HttpCreates.collisions = 0
    secs, lat = run_clients(args.clients, args.creates, HttpCreates(cluster, "/api/v1/namespaces/default/pods", pod_body))
    rows.append((f"Pod creates (date-tail, generateName), {args.clients} clients × {args.creates:,}", rate(total, secs, lat, "creates"), "", floor))

    # 3. The list of args.pods pods.
    notes = []
    npods = total
    missing = args.pods - total
    if missing > 0:
        fill_clients = 8
        per = -(-missing // fill_clients)
        say(f"{fill_clients * per} more Pods, {fill_clients} clients")
        run_clients(fill_clients, per, HttpCreates(cluster, "/api/v1/namespaces/default/pods", pod_body))
        npods += fill_clients * per
    if HttpCreates.collisions:
        notes.append(f"{HttpCreates.collisions} Pod creates met a generateName collision (409 AlreadyExists) and were retried by the client; kube-apiserver retries these itself.")
    conn = cluster.connect()
    say(f"listing {npods} pods, {args.lists} times each form")

    def timed_list(path, accept, check):
        samples, size = [], 0
        for _ in range(args.lists):
            t, body = get_timed(conn, path, accept)
            samples.append(t)
            size = len(body)
        check(json.loads(body))
        return samples, size

    def has_items(k):
        def check(obj):
            got = len(obj.get("items", obj.get("rows", [])))
            if got != k:
                raise BenchError(f"a list answered {got} items, expected {k}")
        return check

    samples, size = timed_list("/api/v1/namespaces/default/pods", "application/json", has_items(npods))
    rows.append((f"GET pods, {npods:,} pods, full JSON (median of {args.lists}, {size / 1e6:.1f} MB)", spread(samples), "< 100 ms", ""))
    samples, size = timed_list("/api/v1/namespaces/default/pods", TABLE_ACCEPT, has_items(npods))
    rows.append((f"GET pods as Table, {npods:,} pods ({size / 1e6:.1f} MB)", spread(samples), "", ""))
    samples, size = timed_list("/api/v1/namespaces/default/pods?limit=500", "application/json", has_items(min(500, npods)))
    rows.append((f"GET pods ?limit=500, first page ({size / 1e6:.2f} MB)", spread(samples), "", ""))
    conn.close()

    time.sleep(2.0)
    rows.append((f"idle RSS 2 s after the above, same process, {npods:,} pods", f"{mib(cluster.rss_kib())} (peak {mib(cluster.rss_kib('VmHWM'))})", "", ""))
    cluster.stop()

    # 1b. Restarts on the data dir holding the pods.
    say(f"{args.starts} restarts on the data dir holding {npods} pods")
    times = []
    for i in range(args.starts):
        times.append(cluster.start())
        if i + 1 < args.starts:
            cluster.stop()
    time.sleep(2.0)
    restart_rss = cluster.rss_kib()
    conn = cluster.connect()
    _, body = get_timed(conn, "/api/v1/namespaces/default/pods")
    conn.close()
    after = len(json.loads(body)["items"])
    if after != npods:
        raise BenchError(f"after the restarts the data dir holds {after} pods, not {npods}")
    cluster.stop()
    rows.insert(2, (f"`tatami up` → /readyz ok, restart with {npods:,} pods ({args.starts} starts)", spread(times), "", ""))
    rows.append((f"idle RSS 2 s after a restart with {npods:,} pods", mib(restart_rss), "", ""))
    return rows, notes


def print_table(rows, notes, args, workdir):
    head = ("figure", "value", "goal", "floor")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(4)]

    def line(r):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"

    print()
    print(f"tatami API benchmark{' (--quick)' if args.quick else ''}")
    built = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.stat(args.tatami).st_mtime))
    print(f"binary:  {args.tatami} (built {built})")
    print(f"commit:  {git_commit(args.repo)}")
    print(f"machine: {machine()}")
    print(f"load:    {' '.join(f'{x:.2f}' for x in args.load_before)} before, {' '.join(f'{x:.2f}' for x in os.getloadavg())} after (1, 5, 15 min averages; other work on the machine skews the figures)")
    print(f"disk:    {filesystem(workdir)}")
    print(f"floor:   Python sqlite3 (SQLite {sqlite3.sqlite_version}), WAL, synchronous=FULL, one row per transaction, same threads and count")
    print()
    print(line(head))
    print("| " + " | ".join("-" * w for w in widths) + " |")
    for r in rows:
        print(line(r))
    print()
    print("Latencies are per request as the Python client sees them (TLS, HTTP/1.1 keep-alive, full body read).")
    for note in notes:
        print(note)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tatami", required=True, help="the tatami binary")
    p.add_argument("--quick", action="store_true", help="fewer repetitions and 1,000 pods, for a fast check")
    p.add_argument("--workdir", help="where to put data dirs (kept; default: a new temp dir, removed)")
    p.add_argument("--starts", type=int, help="fresh starts and restarts to time (default 10, quick 3)")
    p.add_argument("--clients", type=int, default=4, help="concurrent clients for the create figures (default 4)")
    p.add_argument("--creates", type=int, help="creates per client (default 2000, quick 250)")
    p.add_argument("--pods", type=int, help="pods to list (default 10000, quick 1000)")
    p.add_argument("--lists", type=int, help="GETs of each list form (default 10, quick 5)")
    args = p.parse_args()
    args.starts = args.starts or (3 if args.quick else 10)
    args.creates = args.creates or (250 if args.quick else 2000)
    args.pods = args.pods or (1000 if args.quick else 10000)
    args.lists = args.lists or (5 if args.quick else 10)
    args.tatami = os.path.abspath(args.tatami)
    args.repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.access(args.tatami, os.X_OK):
        sys.exit(f"api.py: {args.tatami} is not an executable")
    if min(args.starts, args.clients, args.creates, args.pods, args.lists) < 1:
        sys.exit("api.py: counts must be at least 1")

    args.load_before = os.getloadavg()
    # SIGTERM (from bench/api.sh's trap, or anyone) unwinds like Ctrl-C, so the finally runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    own = args.workdir is None
    workdir = tempfile.mkdtemp(prefix="tatami-bench-") if own else os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    try:
        rows, notes = bench(args, workdir)
        print_table(rows, notes, args, workdir)
    except BenchError as e:
        say(f"benchmark failed: {e}")
        for name in sorted(os.listdir(workdir)):
            if name.endswith(".log"):
                with open(os.path.join(workdir, name), errors="replace") as f:
                    lines = [l for l in f.read().splitlines() if not l.startswith("tatami is up at ")]
                if lines:
                    say(f"--- {name} (tail) ---\n" + "\n".join(lines[-30:]))
        sys.exit(1)
    finally:
        for proc in list(Tatami.live):
            stop_process(proc)
        for t in Tatami.started:
            if os.path.isdir(t.data_dir):
                t.down()
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
