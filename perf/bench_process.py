#!/usr/bin/env python3
"""bench_process: the whole evscale process at N ScaledObjects: memory (VmRSS, VmHWM, the heap
in use against the heap held) and the time to list and sync, against issue 13's goal (50,000
ScaledObjects within 100 MB, about 2 KB each), on the local control plane.

    python3 perf/bench_process.py [--objects 10000] [--ns NAME] [--keep] [--steady 30]
        [--binary build/rel/evscale] [--wrap "valgrind --tool=massif --time-unit=ms
        --massif-out-file=/tmp/massif.out"] [--no-arena] [--restart]
        [--append-results perf/RESULTS.md]

The objects: N ScaledObjects in one namespace, each on its own BenchTarget
(perf/benchtarget-crd.yaml: a scale subresource and nothing else, so the control plane is not
busy with ReplicaSets) at 0 replicas, each with one redis trigger on 127.0.0.1:1, where nothing
listens (the goal's "not connected"; connection refused at once, so the scalers retry with
their backoff). The bodies are perf/bench_scaling.py's target_body and so_body without the
"advanced" behaviour (the shape perf/bench_registry.c decodes, the shape of most KEDA
objects), pollingInterval 30. They are created with 6 threads; --keep leaves the namespace
for the next run, --ns NAME reuses (or creates) a namespace and adds only what is missing.

Each run starts evscale as perf/bench_scaling.py does (`run`, leading with its Lease in the
namespace, watching only that namespace, kubernetes.qps 500, breaker off) and records, from the
start of the process:
  ready       /readyz answers 200 (configuration loaded, connected, every cache listed)
  statuses    every ScaledObject has had its status written by evscale (the audit log's
              ResponseComplete PATCH of scaledobjects/<name>/status with evscale's user agent)
  steady      --steady seconds (default 30) after the last status write
and at each: VmRSS, VmHWM (/proc/PID/status) and the CPU time (utime + stime) so far. Then:
  registered  /metrics keda_resource_registered_total{type="scaled_object"} (records present)
  trim        what evscale itself offers to give memory back: only the HTTP server's trimmer
              (malloc_trim(0) a second after a crowd of >= 64 connections falls to a quarter),
              so the bench opens 64 connections to /healthz and closes them, then reads VmRSS;
  heap        glibc's own account (malloc_stats(), called in the process by gdb): the bytes
              the arenas hold from the system against the bytes in use, before and after a
              malloc_trim(0) called the same way: the gap is the allocator's, not evscale's.
The runs: a baseline (an empty namespace: the process's fixed cost), the N objects, and the N
objects again with MALLOC_ARENA_MAX=2 (unless --no-arena); with --restart, one more process on
the same objects after those (a restart or fail-over): the status PATCHes it sends in --steady
seconds after ready (the audit log), where a status already on the server is not written again. The projection to 50,000 is the
baseline plus 50,000 times the per-object increase; PASS/MISS compares it with 100 MB
(100,000,000 B), and the per-object figures with 2,000 B.

--wrap "CMD ..." runs evscale under a tool (one run, no baseline, no gdb, no RSS goals): with
valgrind's massif (--massif-out-file=F, --time-unit=ms; --detailed-freq=1 --threshold=0.2 for
finer sites) the bench prints, per ScaledObject, the allocation sites of massif's peak snapshot
and of the last detailed snapshot before the stop (steady): the first frame that is not a
generic allocator (malloc, jansson, evs_buf), with its callers. (A forking wrapper such as
heaptrack is followed to the evscale child; not tried: analyse its file with heaptrack_print.)

At 10,000 objects on a loaded machine the leader steps down during the sync with evscale's
lease (15 s, renew 10 s; see perf/RESULTS.md): --lease-duration 600 keeps it leading so that
memory at steady is measurable; each run first deletes the namespace's Lease "evscale" (a
previous run's release may not have got through). The objects stay when --ns is given or with
--keep; delete the namespace afterwards (other tests list every namespace's ScaledObjects).
"""

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_scaling as bs  # noqa: E402
from bench_scaling import evstest  # noqa: E402

GOAL_OBJECTS = 50000
GOAL_BYTES = 100 * 1000 * 1000
GOAL_PER_OBJECT = GOAL_BYTES / GOAL_OBJECTS  # 2,000 B
REDIS_PORT = 1  # 127.0.0.1:1: nothing listens
CREATE_THREADS = 6


def log(msg):
    print("bench_process: " + msg, file=sys.stderr, flush=True)


def so_body(ns, i):
    body = bs.so_body(ns, "so-%d" % i, "t-%d" % i, "jobs-%d" % i, REDIS_PORT, 30, 300)
    del body["spec"]["advanced"]
    return body


def list_names(env, path):
    """The names of the objects at path (a collection), paginated."""
    conn = evstest.connect(env, timeout=300)
    names, cont = set(), ""
    while True:
        q = "?limit=2000" + ("&continue=" + cont if cont else "")
        status, _, data = evstest.request(conn, env, "GET", path + q)
        if status != 200:
            raise RuntimeError("GET %s -> %d %s" % (path, status, data[:300]))
        doc = json.loads(data)
        names.update(o["metadata"]["name"] for o in doc.get("items", []))
        cont = doc.get("metadata", {}).get("continue", "")
        if not cont:
            break
    conn.close()
    return names


def ensure_objects(env, ns, n):
    """Creates namespace ns (if absent) and whatever of the n targets and ScaledObjects is
    missing; returns the seconds spent creating and the number created."""
    evstest.kubectl(env, "apply", "-f", bs.CRD_FILE)
    evstest.kubectl(env, "wait", "--for=condition=Established", "--timeout=60s",
                    "crd/%s.%s" % (bs.PLURAL, bs.GROUP))
    evstest.kubectl(env, "create", "namespace", ns, check=False)
    tbase = "/apis/%s/%s/namespaces/%s/%s" % (bs.GROUP, bs.VERSION, ns, bs.PLURAL)
    sbase = "/apis/keda.sh/v1alpha1/namespaces/%s/scaledobjects" % ns
    have_t, have_s = list_names(env, tbase), list_names(env, sbase)
    extra = {x for x in have_s if not re.fullmatch(r"so-\d+", x) or int(x[3:]) >= n}
    if extra:
        raise SystemExit("namespace %s holds %d ScaledObjects beyond so-0..so-%d (%s, ...): "
                         "use another --ns" % (ns, len(extra), n - 1, sorted(extra)[0]))
    t0 = time.monotonic()
    items = [(tbase, bs.target_body(ns, "t-%d" % i)) for i in range(n)
             if "t-%d" % i not in have_t]
    created = len(items)
    if items:
        log("creating %d BenchTargets in %s" % (len(items), ns))
        bs.create_many(env, items, threads=CREATE_THREADS)
    items = [(sbase, so_body(ns, i)) for i in range(n) if "so-%d" % i not in have_s]
    created += len(items)
    if items:
        log("creating %d ScaledObjects in %s" % (len(items), ns))
        bs.create_many(env, items, threads=CREATE_THREADS)
    dt = time.monotonic() - t0
    if created:
        log("created %d objects in %.1f s (%.0f/s)" % (created, dt, created / dt))
    return dt, created


class Run:
    """One evscale process on namespace ns with n ScaledObjects."""

    def __init__(self, args, env, ns, n, label, extra_env=None, wrap=None):
        self.a, self.env, self.ns, self.n, self.label = args, env, ns, n, label
        self.extra_env = extra_env or {}
        self.wrap = wrap
        self.dir = tempfile.mkdtemp(prefix="evs-bench-process-")
        self.marks = {}      # name -> {t, rss, hwm, cpu}
        self.notes = {}
        self.proc = None

    # --- the process ---

    def start(self):
        self.port = evstest.free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        lease = ""
        if self.a.lease_duration:
            # Long enough that the leader keeps its Lease through the sync (see --help).
            d = self.a.lease_duration
            lease = ("  lease_duration: %ds\n  renew_deadline: %ds\n  retry_period: 2s\n" % (
                d, d * 2 // 3))
        cfg = bs.write_config(self.dir, self.env, self.ns, self.port, lease, self.a.qps,
                              self.a.burst)
        self.logf = open(os.path.join(self.dir, "evscale.log"), "w+")
        env = bs.evscale_environ(self.dir)
        env.update(self.extra_env)
        argv = [self.a.binary, "run", "--config", cfg]
        if self.wrap:
            argv = shlex.split(self.wrap) + argv
        # The previous run's evscale is gone, but its Lease stays held for lease_duration if
        # its release did not get through (a 10,000-object run's did not: the release waits
        # behind the target reads); this run must lead at once.
        evstest.kubectl(self.env, "-n", self.ns, "delete", "lease", "evscale",
                        "--ignore-not-found", check=False)
        self.audit0 = evstest.audit_size(self.env)
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=self.logf, stderr=subprocess.STDOUT, env=env)
        self.pid = self.proc.pid
        if self.wrap:
            # A wrapper that forks (heaptrack) runs evscale as a child: measure and signal
            # that; valgrind runs it in its own process (the pid stays the wrapper's).
            real = os.path.realpath(self.a.binary)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                kid = self._find_child(self.proc.pid, real)
                if kid:
                    self.pid = kid
                    break
                time.sleep(0.2)
        self.stats = bs.ProcStats(self.pid)

    @staticmethod
    def _find_child(pid, exe):
        todo = [pid]
        while todo:
            p = todo.pop()
            try:
                if os.path.realpath("/proc/%d/exe" % p) == exe:
                    return p
                with open("/proc/%d/task/%d/children" % (p, p)) as f:
                    todo += [int(x) for x in f.read().split()]
            except OSError:
                continue
        return None

    def alive(self):
        if self.proc.poll() is not None:
            raise SystemExit("evscale exited (%d): %s" % (self.proc.returncode,
                                                          self.log_text()[-2000:]))

    def log_text(self):
        self.logf.flush()
        with open(self.logf.name) as f:
            return f.read()

    def mark(self, name):
        m = self.stats.mem_kib()
        self.marks[name] = {"t": time.monotonic() - self.t0, "rss": m.get("VmRSS", 0) * 1024,
                            "hwm": m.get("VmHWM", 0) * 1024, "cpu": self.stats.cpu_s()}
        log("%s %s: %.1f s, RSS %.1f MiB, HWM %.1f MiB, CPU %.1f s" % (
            self.label, name, self.marks[name]["t"], self.marks[name]["rss"] / 1048576,
            self.marks[name]["hwm"] / 1048576, self.marks[name]["cpu"]))

    def get(self, path, timeout=10):
        with urllib.request.urlopen(self.base + path, timeout=timeout) as r:
            return r.status, r.read().decode()

    # --- the phases ---

    def wait_ready(self):
        def ready():
            self.alive()
            try:
                return self.get("/readyz", timeout=5)[0] == 200
            except OSError:
                return False
        evstest.wait_until(ready, timeout=self.a.timeout, interval=0.2, what="evscale /readyz")
        self.mark("ready")

    def wait_statuses(self):
        """Until every ScaledObject has had a status write by evscale (the audit log)."""
        prefix = "/apis/keda.sh/v1alpha1/namespaces/%s/scaledobjects/" % self.ns
        seen, off = set(), self.audit0
        deadline = time.monotonic() + self.a.status_timeout
        while len(seen) < self.n:
            self.alive()
            if time.monotonic() > deadline:
                log("%s: %d of %d statuses written after %d s; going on" % (
                    self.label, len(seen), self.n, self.a.status_timeout))
                self.notes["statuses_missing"] = self.n - len(seen)
                return
            events, off = evstest.audit_events(self.env, off)
            for e in events:
                uri = e.get("requestURI", "").split("?")[0]
                if (e.get("stage") == "ResponseComplete" and e.get("verb") == "patch" and
                        uri.startswith(prefix) and uri.endswith("/status") and
                        "evscale" in e.get("userAgent", "") and
                        200 <= e.get("responseStatus", {}).get("code", 0) < 300):
                    seen.add(uri[len(prefix):].split("/")[0])
            time.sleep(0.5)
        self.mark("statuses")

    def steady(self):
        t_end = time.monotonic() + self.a.steady
        while time.monotonic() < t_end:
            self.alive()
            time.sleep(min(1.0, max(0.0, t_end - time.monotonic())))
        self.mark("steady")

    def smaps(self):
        """VmRSS by kind of mapping (/proc/PID/smaps): the main heap, other anonymous memory
        (glibc's other arenas, mmap'd blocks, thread stacks), and files (the binary and its
        libraries); and the process's threads (each may get a glibc arena)."""
        kinds = {"heap": 0, "anon": 0, "file": 0, "stack": 0}
        kind = None
        with open("/proc/%d/smaps" % self.pid) as f:
            for line in f:
                first = line.split(None, 1)[0]
                if "-" in first and not first.endswith(":"):
                    parts = line.split()
                    name = parts[5] if len(parts) > 5 else ""
                    kind = ("heap" if name == "[heap]" else "stack" if name == "[stack]" else
                            "file" if name.startswith("/") else "anon")
                elif first == "Rss:":
                    kinds[kind] += int(line.split()[1]) * 1024
        with open("/proc/%d/status" % self.pid) as f:
            threads = [l for l in f if l.startswith("Threads:")]
        kinds["threads"] = int(threads[0].split()[1]) if threads else 0
        self.notes["smaps"] = kinds

    def registered(self):
        try:
            _, text = self.get("/metrics", timeout=60)
        except OSError as e:
            self.notes["registered"] = "(no /metrics: %s)" % e
            return
        total = 0
        for line in text.splitlines():
            if (line.startswith("keda_resource_registered_total{") and
                    'namespace="%s"' % self.ns in line and 'type="scaled_object"' in line):
                total += int(float(line.rsplit(" ", 1)[1]))
        self.notes["registered"] = total
        self.notes["metrics_bytes"] = len(text)

    def crowd_trim(self):
        """evscale's only way to give memory back: its HTTP server's trimmer after a crowd."""
        socks = []
        for _ in range(64):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(s)
        for s in socks:
            s.recv(4096)
        for s in socks:
            s.close()
        time.sleep(2.5)  # the trimmer runs a second after the crowd has gone
        self.mark("after crowd trim")

    def gdb_heap(self):
        """glibc's malloc_stats() before and after malloc_trim(0), called in evscale by gdb;
        malloc_stats writes to evscale's stderr, our log file."""
        size0 = len(self.log_text())
        # Called where the loop thread holds no malloc lock: at its next poll (a gdb attach
        # stops it anywhere, and at 50,000 objects it is often inside malloc: malloc_stats then
        # waited on the arena lock its own thread held, and the process hung for good).
        cmd = ["gdb", "-p", str(self.pid), "-batch", "-nx",
               "-ex", "break epoll_wait", "-ex", "break epoll_pwait",
               "-ex", "continue", "-ex", "delete",
               "-ex", "call (void)malloc_stats()",
               "-ex", "call (int)malloc_trim(0)",
               "-ex", "call (void)malloc_stats()"]
        try:
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=120)
        except subprocess.TimeoutExpired:
            self.notes["heap"] = "(gdb: no answer in 120 s; the heap account is missing)"
            return
        time.sleep(0.5)
        out = self.log_text()[size0:]
        totals = re.findall(r"Total \(incl\. mmap\):\s*\nsystem bytes\s*=\s*(\d+)\s*\n"
                            r"in use bytes\s*=\s*(\d+)", out)
        arenas = len(re.findall(r"^Arena \d+:", out, re.M)) // 2
        if len(totals) != 2:
            self.notes["heap"] = "(gdb: no malloc_stats output; rc %d: %s)" % (
                r.returncode, r.stdout.strip().splitlines()[-1:] if r.stdout else "")
            return
        self.notes["heap"] = {"system": int(totals[0][0]), "in_use": int(totals[0][1]),
                              "system_trimmed": int(totals[1][0]), "arenas": arenas}
        self.mark("after gdb malloc_trim")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.t_stop = time.monotonic() - self.t0
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(self.a.timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.a.keep_dirs:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_counts(self):
        """From evscale's log: when it led first, how often it stepped down (a renewal that did
        not get through within renew_deadline), and the failed reads of scale targets."""
        text = self.log_text()
        self.notes["leads"] = text.count('"msg":"leading: running scalers')
        self.notes["step_downs"] = text.count('"msg":"not leading: scalers stopped"')
        self.notes["scale_read_failures"] = text.count('"msg":"cannot read the scale target"')
        ts = re.findall(r'"ts":"([^"]+)","level":"info","msg":"(evscale started|leading: running '
                        r'scalers and writing|ScaledObjects listed; following changes)"', text)
        first = {}
        for t, msg in ts:
            first.setdefault(msg, bs.parse_ts(t.replace("Z", "000Z")))
        if "evscale started" in first:
            for msg, key in (("leading: running scalers and writing", "t_lead"),
                             ("ScaledObjects listed; following changes", "t_listed")):
                if msg in first:
                    self.notes[key] = first[msg] - first["evscale started"]

    def status_writes(self):
        """evscale's status PATCHes since this run's start (the audit log): (count, objects)."""
        prefix = "/apis/keda.sh/v1alpha1/namespaces/%s/scaledobjects/" % self.ns
        events, _ = evstest.audit_events(self.env, self.audit0)
        uris = [e.get("requestURI", "").split("?")[0] for e in events
                if e.get("stage") == "ResponseComplete" and e.get("verb") == "patch" and
                "evscale" in e.get("userAgent", "")]
        uris = [u for u in uris if u.startswith(prefix) and u.endswith("/status")]
        return len(uris), len({u[len(prefix):].split("/")[0] for u in uris})

    def restart(self):
        """A second process on objects whose statuses an earlier run wrote: ready, then
        --steady seconds; counts the status writes it sends (it writes only what differs)."""
        self.start()
        try:
            self.wait_ready()
            self.steady()
            self.notes["status_writes"] = self.status_writes()
            self.log_counts()
        finally:
            self.stop()
        return self

    def full(self, trim=True):
        self.start()
        try:
            self.wait_ready()
            if self.n:
                self.wait_statuses()
            self.steady()
            self.smaps()
            self.registered()
            if trim:
                self.crowd_trim()
                self.gdb_heap()
            self.log_counts()
        finally:
            self.stop()
        return self


# --- massif ---

def massif_tree(path, until_ms):
    """(peak snapshot, last detailed snapshot with time <= until_ms) from a massif.out file,
    each as (time, heap bytes, tree); a tree is (bytes, label, [children])."""
    snaps, cur = [], None
    with open(path) as f:
        lines = f.read().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("snapshot="):
            cur = {"time": 0, "heap": 0, "extra": 0, "tree": None, "kind": None}
            snaps.append(cur)
        elif cur is not None and line.startswith("time="):
            cur["time"] = int(line[5:])
        elif cur is not None and line.startswith("mem_heap_B="):
            cur["heap"] = int(line[11:])
        elif cur is not None and line.startswith("mem_heap_extra_B="):
            cur["extra"] = int(line[17:])
        elif cur is not None and line.startswith("heap_tree="):
            cur["kind"] = line[10:]
            if cur["kind"] in ("detailed", "peak"):
                cur["tree"], i = _massif_node(lines, i + 1)
                continue
        i += 1
    peak = [s for s in snaps if s["kind"] == "peak"]
    steady = [s for s in snaps if s["kind"] in ("detailed", "peak") and s["time"] <= until_ms]
    return (peak[0] if peak else None), (steady[-1] if steady else None)


_NODE = re.compile(r"^(\s*)n(\d+): (\d+) (.*)$")


def _massif_node(lines, i):
    m = _NODE.match(lines[i])
    nkids, nbytes, label = int(m.group(2)), int(m.group(3)), m.group(4)
    i += 1
    kids = []
    for _ in range(nkids):
        kid, i = _massif_node(lines, i)
        kids.append(kid)
    return (nbytes, label, kids), i


def _short(label):
    # "0x4A1B2C: evs_so__strdup (scaledobject.c:123)" -> "evs_so__strdup (scaledobject.c:123)"
    label = re.sub(r"^0x[0-9A-F]+: ", "", label)
    return re.sub(r" \(in /[^)]*\)$", "", label)[:110]


# Allocation helpers whose callers name the cost, not they themselves ("???": a frame in a
# library without symbols, jansson's allocator on Debian).
_GENERIC = re.compile(r"^(0x[0-9A-F]+: )?(\?\?\?|malloc|calloc|realloc|strdup|strndup|"
                      r"jsonp_\w+|json_\w+|evs_buf_\w+|evs_strdup\w*|evs_\w*alloc\w*|"
                      r"mbedtls_calloc|hashtable_\w+|evs_intern\w*|uv__\w*alloc\w*|"
                      r"\w*_malloc|\w*_calloc|\w*_realloc)(?!\w)")


def massif_report(snap, n, min_frac=0.005, callers=3):
    """One line per allocation site at >= min_frac of the heap: the first frame that is not a
    generic allocator (malloc, jansson, evs_buf, ...), with its callers along the biggest
    branch; bytes in all and per ScaledObject."""
    sites = {}  # text -> bytes: one site's several allocations (or IPs) merged
    total = snap["heap"]

    def chain(node, k):
        names = []
        while k > 0 and node[2]:
            node = max(node[2], key=lambda c: c[0])
            if node[1].startswith("in ") and "places" in node[1]:
                break
            names.append(_short(node[1]).split(" (")[0])
            k -= 1
        return names

    def add(nbytes, text):
        sites[text] = sites.get(text, 0) + nbytes

    def walk(node, via):
        nbytes, label, kids = node
        if nbytes < min_frac * total:
            return
        if label.startswith("in ") and "places" in label:
            add(nbytes, "(%s; via %s)" % (re.sub(r", all below.*", "", label),
                                          " <- ".join(via) or "-"))
            return
        if _GENERIC.match(label) and kids:
            for k in sorted(kids, key=lambda k: -k[0]):
                walk(k, via + [_short(label).split(" (")[0]])
            return
        text = " <- ".join([_short(label).split(" (")[0]] + chain(node, callers))
        add(nbytes, text + ("   [via %s]" % " <- ".join(via) if via else ""))
    for k in sorted(snap["tree"][2], key=lambda k: -k[0]):
        walk(k, [])
    return ["%8.2f MiB %8.1f B/object %5.1f %%  %s" % (
        mib(b), b / n, 100.0 * b / total if total else 0, t)
        for t, b in sorted(sites.items(), key=lambda x: -x[1])]


# --- report ---

def mib(b):
    return b / 1048576.0


def verdict(ok):
    return "**PASS**" if ok else "**MISS**"


def report(args, base, runs, create):
    lines = []
    n = args.objects
    lines.append("%d ScaledObjects (one redis trigger each, on 127.0.0.1:1: not connected), "
                 "each on its own BenchTarget, namespace %s; creating them took %.0f s "
                 "(%d created)." % (n, args.ns, create[0], create[1]))
    lines.append("")
    lines.append("| run | ready | all statuses | RSS at ready | HWM at ready | RSS after "
                 "statuses | RSS steady (+%d s) | HWM steady | CPU to ready | CPU to statuses "
                 "| CPU in steady |" % args.steady)
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in ([base] if base else []) + runs:
        m = r.marks
        st = m.get("statuses", m["ready"])
        steady_cpu = m["steady"]["cpu"] - st["cpu"]
        steady_t = m["steady"]["t"] - st["t"]
        lines.append("| %s | %.1f s | %s | %.1f MiB | %.1f MiB | %.1f MiB | %.1f MiB | %.1f MiB "
                     "| %.1f s | %.1f s | %.2f s (%.1f %% of a core) |" % (
                         r.label, m["ready"]["t"],
                         "%.1f s" % st["t"] if "statuses" in m else "-",
                         mib(m["ready"]["rss"]), mib(m["ready"]["hwm"]), mib(st["rss"]),
                         mib(m["steady"]["rss"]), mib(m["steady"]["hwm"]), m["ready"]["cpu"],
                         st["cpu"], steady_cpu, 100.0 * steady_cpu / steady_t if steady_t else 0))
    lines.append("")
    for r in runs:
        notes = []
        reg = r.notes.get("registered")
        notes.append("/metrics keda_resource_registered_total = %s (%s B of /metrics)" % (
            reg, r.notes.get("metrics_bytes", "?")))
        if "t_listed" in r.notes:
            notes.append("log: listed %.1f s after start, %s" % (
                r.notes["t_listed"], "first led at %.1f s" % r.notes["t_lead"]
                if "t_lead" in r.notes else "never led"))
        notes.append("led %d times, stepped down %d times; %d failed reads of a scale target" % (
            r.notes.get("leads", 0), r.notes.get("step_downs", 0),
            r.notes.get("scale_read_failures", 0)))
        if r.notes.get("statuses_missing"):
            notes.append("%d statuses still unwritten after %d s" % (
                r.notes["statuses_missing"], args.status_timeout))
        sm = r.notes.get("smaps")
        if sm:
            notes.append("RSS at steady by mapping: main heap %.1f MiB, other anonymous "
                         "(arenas, mmap'd blocks, thread stacks) %.1f MiB, files (binary and "
                         "libraries) %.1f MiB, stack %.1f MiB; %d threads" % (
                             mib(sm["heap"]), mib(sm["anon"]), mib(sm["file"]),
                             mib(sm["stack"]), sm["threads"]))
        if "after crowd trim" in r.marks:
            notes.append("RSS after evscale's own trim (64 connections opened and closed: "
                         "the HTTP server's trimmer) %.1f MiB" % mib(
                             r.marks["after crowd trim"]["rss"]))
        h = r.notes.get("heap")
        if isinstance(h, dict):
            notes.append("glibc (malloc_stats): %d arenas hold %.1f MiB, %.1f MiB in use "
                         "(%.0f B per object; %.1f MiB held but free); after malloc_trim(0) by "
                         "gdb: RSS %.1f MiB" % (
                             h["arenas"], mib(h["system"]), mib(h["in_use"]),
                             h["in_use"] / n, mib(h["system"] - h["in_use"]),
                             mib(r.marks["after gdb malloc_trim"]["rss"])))
        elif h:
            notes.append(str(h))
        lines.append("- %s: %s" % (r.label, "; ".join(notes)))
    lines.append("")
    goals = []
    for r in runs:
        if r.wrap:
            continue  # RSS under valgrind or heaptrack is the tool's
        rss = r.marks["steady"]["rss"]
        goals.append(("%s: whole process %.0f B per ScaledObject at steady (RSS / N; goal "
                      "%.0f B)" % (r.label, rss / n, GOAL_PER_OBJECT), rss / n <= GOAL_PER_OBJECT))
        if base:
            fixed = base.marks["steady"]["rss"]
            per = (rss - fixed) / n
            proj = fixed + per * GOAL_OBJECTS
            goals.append(("%s: projected to %d: %.1f MiB = fixed %.1f MiB + %.0f B per object "
                          "(goal 100 MB = %.1f MiB)" % (
                              r.label, GOAL_OBJECTS, mib(proj), mib(fixed), per,
                              mib(GOAL_BYTES)), proj <= GOAL_BYTES))
        hwm = r.marks["steady"]["hwm"]
        goals.append(("%s: peak (VmHWM) %.0f B per ScaledObject (goal %.0f B)" % (
            r.label, hwm / n, GOAL_PER_OBJECT), hwm / n <= GOAL_PER_OBJECT))
    for r in runs:
        goals.append(("%s: the leader kept its Lease through list and sync (stepped down %d "
                      "times)" % (r.label, r.notes.get("step_downs", 0)),
                      r.notes.get("step_downs", 0) == 0))
        goals.append(("%s: every ScaledObject's status written (%d missing)" % (
            r.label, r.notes.get("statuses_missing", 0)), not r.notes.get("statuses_missing")))
    for text, ok in goals:
        lines.append("- %s %s" % (verdict(ok), text))
    lines.append("- (no goal stated) time to list and sync: ready %s; all statuses %s" % (
        ", ".join("%.1f s" % r.marks["ready"]["t"] for r in runs),
        ", ".join("%.1f s" % r.marks["statuses"]["t"] if "statuses" in r.marks else
                  "not reached" for r in runs)))
    return "\n".join(lines), all(ok for _, ok in goals)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", type=int, default=10000)
    ap.add_argument("--ns", help="namespace to use (created if absent; kept at the end)")
    ap.add_argument("--keep", action="store_true", help="keep the namespace at the end")
    ap.add_argument("--steady", type=float, default=30.0)
    ap.add_argument("--timeout", type=float, default=1800.0, help="for ready and the stop")
    ap.add_argument("--status-timeout", type=float, default=900.0,
                    help="how long to wait for every status (then the run goes on)")
    ap.add_argument("--binary", default=os.path.join(bs.ROOT, "build", "rel", "evscale"))
    ap.add_argument("--controlplane", choices=("shared", "private"), default="shared")
    ap.add_argument("--wrap", help="a command evscale runs under (massif, heaptrack)")
    ap.add_argument("--lease-duration", type=int, default=0, metavar="S",
                    help="leader_election.lease_duration S s, renew_deadline 2/3 of it (default: "
                    "evscale's 15 s/10 s; at 10,000 objects the leader steps down during the "
                    "sync, so memory at steady needs a longer one)")
    ap.add_argument("--qps", type=float, default=500.0,
                    help="kubernetes.qps (bench_scaling's 500; evscale's default is 50)")
    ap.add_argument("--burst", type=int, default=1000,
                    help="kubernetes.burst (bench_scaling's 1000; evscale's default is 100)")
    ap.add_argument("--no-arena", action="store_true", help="skip the MALLOC_ARENA_MAX=2 run")
    ap.add_argument("--no-baseline", action="store_true", help="skip the empty namespace run")
    ap.add_argument("--create-only", action="store_true", help="create the objects and stop")
    ap.add_argument("--restart", action="store_true",
                    help="then one more process on the same objects: its status writes")
    ap.add_argument("--keep-dirs", action="store_true", help="keep evscale's directories")
    ap.add_argument("--massif-min", type=float, default=0.005,
                    help="the smallest share of the heap a massif site is listed at")
    ap.add_argument("--append-results", metavar="FILE")
    args = ap.parse_args()
    if not os.access(args.binary, os.X_OK):
        ap.error("%s is not an executable (build: cmake -S . -B build/rel "
                 "-DCMAKE_BUILD_TYPE=Release && cmake --build build/rel)" % args.binary)
    env = evstest.controlplane(private=args.controlplane == "private")
    owned = args.ns is None
    args.ns = args.ns or "evs-proc-%d-%d" % (os.getpid(), int(time.time()) % 100000)
    empty_ns = None
    runs, base, restart = [], None, None
    load0 = os.getloadavg()
    try:
        create = ensure_objects(env, args.ns, args.objects)
        if args.create_only:
            return 0
        if args.wrap:
            runs.append(Run(args, env, args.ns, args.objects, "wrapped",
                            wrap=args.wrap).full(trim=False))
        else:
            if not args.no_baseline:
                empty_ns = "evs-proc-empty-%d" % os.getpid()
                evstest.kubectl(env, "create", "namespace", empty_ns)
                base = Run(args, env, empty_ns, 0, "baseline (0 objects)").full(trim=False)
            runs.append(Run(args, env, args.ns, args.objects, "default malloc").full())
            if not args.no_arena:
                runs.append(Run(args, env, args.ns, args.objects, "MALLOC_ARENA_MAX=2",
                                extra_env={"MALLOC_ARENA_MAX": "2"}).full())
            if args.restart:
                restart = Run(args, env, args.ns, args.objects, "restart").restart()
    finally:
        if empty_ns:
            evstest.kubectl(env, "delete", "namespace", empty_ns, "--wait=false", check=False)
        if owned and not args.keep:
            evstest.kubectl(env, "delete", "namespace", args.ns, "--wait=false", check=False)
        elif owned:
            log("kept namespace %s (reuse: --ns %s)" % (args.ns, args.ns))
        if args.controlplane == "private":
            evstest.stop(env)
    text, ok = report(args, base, runs, create)
    if restart is not None:
        w, objs = restart.notes["status_writes"]
        text += ("\n- restart (one more process on the same %d objects, their statuses as the "
                 "runs above left them): ready after %.1f s, %s; in the %.0f s after ready it "
                 "sent %d status PATCHes (%d objects)%s" % (
                     args.objects, restart.marks["ready"]["t"],
                     "led at %.1f s" % restart.notes["t_lead"] if "t_lead" in restart.notes
                     else "never led", args.steady, w, objs,
                     "; CPU to ready %.1f s, in steady %.2f s" % (
                         restart.marks["ready"]["cpu"],
                         restart.marks["steady"]["cpu"] - restart.marks["ready"]["cpu"])))
    m = re.search(r"--massif-out-file=(\S+)", args.wrap or "")
    if m and os.path.exists(m.group(1)):
        r = runs[0]
        peak, steady = massif_tree(m.group(1), (r.t_stop - 0.5) * 1000.0)
        parts = []
        for what, s in (("peak", peak), ("steady (last detailed snapshot before the "
                                                     "stop)", steady)):
            if s is None:
                continue
            parts.append("massif, %s at %.1f s: heap %.1f MiB = %.0f B per ScaledObject "
                         "(+ %.0f B of malloc headers)" % (what, s["time"] / 1000.0,
                                                          mib(s["heap"]), s["heap"] / args.objects,
                                                          s["extra"] / args.objects))
            parts += massif_report(s, args.objects, args.massif_min)
        text += "\n\n```\n" + "\n".join(parts) + "\n```"
    cmd = "python3 perf/bench_process.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    # The revision the measured binary was built from (--binary may be another tree's build).
    ver = subprocess.run([args.binary, "--version"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True).stdout
    m = re.search(r"\(revision ([^,]+),", ver)
    commit = m.group(1) if m else "unknown (%s --version said %r)" % (args.binary, ver.strip())
    machine = ("%s, %d CPUs, load average %.2f at the start and %.2f at the end (shared "
               "machine); control plane %s; commit %s" % (
                   platform.node(), os.cpu_count(), load0[0], os.getloadavg()[0],
                   args.controlplane, commit))
    print("Command: " + cmd)
    print("Machine: " + machine)
    print(text)
    if args.append_results:
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        with open(args.append_results, "a") as f:
            f.write("\n### Whole process at %d ScaledObjects%s (%s)\n\n" % (
                args.objects, ", under " + args.wrap.split()[0] if args.wrap else "", now))
            f.write("Command: `%s`  \n" % cmd)
            f.write("Machine: %s\n\n" % machine)
            f.write(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
