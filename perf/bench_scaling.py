#!/usr/bin/env python3
"""bench_scaling: evscale's scaling time, from the push into Redis to the API server's
completion of the /scale write, against the 9 s target and against the API server's own floor.

    python3 perf/bench_scaling.py [--mode push|poll] [--profiles burst,gradual,...]
        [--iterations 20] [--target-time 9] [--others 0] [--binary build/rel/evscale]
        [--controlplane shared|private] [--tick 0.4] [--append-results perf/RESULTS.md]

What runs: the local control plane (test/e2e/evstest.py: the shared one, or a private one with
--controlplane private, the default when --others >= 1000), a redis-server on a free port (push
mode: `notify-keyspace-events Klg`, so evscale reads the list when it changes; poll mode: no
keyspace events, evscale reads every pollingInterval = 1 s) and evscale (`run`, leader election
on, circuit breaker off, kubernetes.qps 500) with a config in a temporary directory, watching one
fresh namespace.

Targets: BenchTarget custom resources (perf/benchtarget-crd.yaml, a scale subresource and
nothing else); evscale reaches them through discovery. Each (profile, iteration) gets its own
target at 0 replicas and its own list, driven by a ScaledObject (redis trigger, listLength 10,
min 0, max 100, pollingInterval 1, cooldownPeriod 2, and a behavior without the HPA's legacy
scale-up cap or its 5 min scale-down window, so every step's count is expected at once). --others N adds N ScaledObjects on N
other BenchTargets, each with its own empty list (pollingInterval 30): live scalers, no writes.

Load profiles: the queue length (items in the list) after each tick; one tick = --tick seconds
(default 0.4 s in push mode, pollingInterval + 0.5 s in poll mode, so that each reading is
attributable to one step). Items are pushed with one pipelined RPUSH; a shrinking queue (the
workers consuming) is an LTRIM. After the last step the list is deleted (drain).
  burst      [50, 50, 50, 50]                     0 -> 50 at once, held
  gradual    [10, 20, 30, 40, 50, 60, 70, 80]     +10 per tick
  sustained  [30] * 10                            30 at once, then per tick +10 produced and
                                                  10 consumed (RPUSH 10 + LTRIM to 30): readings
                                                  that change nothing, so no write is expected
  wave       [10, 30, 50, 30, 10, 30, 50, 30, 10] two periods of a triangle wave
  realistic  12 ticks of a seeded random walk (seed = iteration): Poisson(12) arrivals per
             tick, a 10 % chance of a +60 burst, and 2 items consumed per replica per tick

What is measured (one clock: the API server and the driver share the machine):
  scaling time  for each step that pushes items and must change the desired count (the target's
                replicas, read just before the push, are 0 and the queue becomes non-empty; or
                ceil(len / 10) > replicas beyond the 10 % tolerance): the driver's time.time()
                just before the RPUSH to the audit log's stageTimestamp of the first
                ResponseComplete PATCH/PUT by evscale on that target's /scale after it.
  floor         in the middle of every tick, the driver itself PATCHes the /scale of another
                BenchTarget (replicas alternating 1/2) on one keep-alive TLS connection:
                time.time() just before sending to the same audit stageTimestamp.
  writes        PATCHes by evscale on the measured targets (audit log) against the changes of
                the desired count it logged ("scaled" records with from != to).
  RSS, CPU      /proc/PID/status VmRSS and VmHWM, /proc/PID/stat utime+stime over the run.

Goals (issue 20): p50 <= 1.25 x floor p50 and p99 <= 2 x floor p99 (stated for 10,000 others;
printed for every run); poll mode p99 <= pollingInterval + 50 ms; exactly one write per change;
and every scaling time under --target-time.
"""

import argparse
import concurrent.futures
import datetime
import json
import math
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "test", "e2e"))
import evstest  # noqa: E402

CRD_FILE = os.path.join(HERE, "benchtarget-crd.yaml")
GROUP, VERSION, PLURAL, KIND = "perf.evscale.io", "v1", "benchtargets", "BenchTarget"
LIST_LENGTH = 10
POLLING_INTERVAL = 1
PROFILES = ("burst", "gradual", "sustained", "wave", "realistic")


def profile_steps(name, iteration):
    """The queue length after each tick (see the module docstring)."""
    if name == "burst":
        return [50, 50, 50, 50]
    if name == "gradual":
        return [10 * i for i in range(1, 9)]
    if name == "sustained":
        return [30] * 10
    if name == "wave":
        return [10, 30, 50, 30, 10, 30, 50, 30, 10]
    if name == "realistic":
        rnd = random.Random(iteration)
        out, length, replicas = [], 0, 0
        for _ in range(12):
            # Poisson(12) by inversion (stdlib only).
            lam, k, p, u = 12.0, 0, math.exp(-12.0), rnd.random()
            s = p
            while u > s:
                k += 1
                p *= lam / k
                s += p
            arrivals = k + (60 if rnd.random() < 0.10 else 0)
            length = max(0, length + arrivals - 2 * replicas)
            replicas = math.ceil(length / LIST_LENGTH) if length else 0
            out.append(length)
        return out
    raise ValueError(name)


def percentile(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    rank = max(1, int(-(-p * len(v) // 100)))
    return v[min(rank, len(v)) - 1]


def parse_ts(s):
    # 2026-11-23T07:45:38.123456Z (UTC) -> seconds since the epoch
    d = datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ")
    return d.replace(tzinfo=datetime.timezone.utc).timestamp()


class Redis:
    def __init__(self, workdir, keyspace):
        self.port = evstest.free_port()
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", workdir]
        if keyspace:
            # K (keyspace channel), l (list commands), g (DEL), x and e (expired, evicted):
            # evscale asks for all of them for a key it has not seen yet (no type known).
            args += ["--notify-keyspace-events", "Klgxe"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        evstest.wait_until(self._connect, timeout=20, what="redis-server")

    def _connect(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rf = self.sock.makefile("rb")
        return self.cmd("PING") == "PONG"

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def reply(self):
        line = self.rf.readline()
        t, rest = line[:1], line[1:-2]
        if t in (b"+", b"-"):
            return rest.decode()
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.rf.read(n + 2)
            return data[:-2].decode()
        if t == b"*":
            return [self.reply() for _ in range(int(rest))]
        raise RuntimeError("redis: unexpected reply %r" % line)

    def pipeline(self, *cmds):
        """Sends the commands in one write and returns their replies."""
        self.sock.sendall(b"".join(self.encode(*c) for c in cmds))
        return [self.reply() for _ in cmds]

    def cmd(self, *args):
        return self.pipeline(args)[0]

    def stop(self):
        self.sock.close()
        self.proc.terminate()
        self.proc.wait(10)


def target_body(ns, name, replicas=0):
    return {"apiVersion": "%s/%s" % (GROUP, VERSION), "kind": KIND,
            "metadata": {"name": name, "namespace": ns}, "spec": {"replicas": replicas}}


def so_body(ns, name, target, lst, port, polling, cooldown):
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"scaleTargetRef": {"apiVersion": "%s/%s" % (GROUP, VERSION), "kind": KIND,
                                        "name": target},
                     "minReplicaCount": 0, "maxReplicaCount": 100,
                     "pollingInterval": polling, "cooldownPeriod": cooldown,
                     # A behavior that lets the count follow every step at once: without one,
                     # KEDA's HPA applies its legacy scale-up cap (max(2x the count 15 s ago, 4))
                     # and its 5 min scale-down window, and "the expected change" of a 0.4 s
                     # step would be the HPA's rule, not evscale's speed, under test.
                     "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
                         "scaleUp": {"stabilizationWindowSeconds": 0,
                                     "policies": [{"type": "Pods", "value": 100,
                                                   "periodSeconds": 1}]},
                         "scaleDown": {"stabilizationWindowSeconds": 0,
                                       "policies": [{"type": "Percent", "value": 100,
                                                     "periodSeconds": 1}]}}}},
                     "triggers": [{"type": "redis", "metadata": {
                         "address": "127.0.0.1:%d" % port, "listName": lst,
                         "listLength": str(LIST_LENGTH)}}]}}


def create_many(env, items, threads=8):
    """POSTs (path, body) items on `threads` keep-alive connections; 409 counts as done."""
    chunks = [items[i::threads] for i in range(threads)]

    def work(chunk):
        conn = evstest.connect(env)
        for path, body in chunk:
            for attempt in range(20):
                try:
                    status, _, data = evstest.request(conn, env, "POST", path, body)
                except (OSError, evstest.http.client.HTTPException):
                    conn.close()
                    conn = evstest.connect(env)
                    continue
                if status in (200, 201, 409):
                    break
                if status in (429, 500, 503, 504):
                    time.sleep(0.2 * (attempt + 1))
                    continue
                raise RuntimeError("POST %s -> %d %s" % (path, status, data[:300]))
        conn.close()
    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        list(ex.map(work, chunks))


class StatusMirror(threading.Thread):
    """The BenchTargets' controller: sets status.replicas to spec.replicas when spec changes
    (what the Deployment and ReplicaSet controllers do for a Deployment), so that the decision
    step, like the HPA, sees the new count as the current one. One watch, one writer
    connection."""

    def __init__(self, env, apibase):
        super().__init__(daemon=True)
        self.env, self.apibase = env, apibase
        self.stopping = False
        self.writes = 0

    def run(self):
        while not self.stopping:
            try:
                self.watch()
            except Exception as e:  # noqa: BLE001 - the watch ends; start another
                if not self.stopping:
                    log("status mirror: %r; watching again" % e)
                    time.sleep(0.5)

    def watch(self):
        conn = evstest.connect(self.env, timeout=3600)
        wconn = evstest.connect(self.env)
        conn.request("GET", self.apibase + "?watch=1&allowWatchBookmarks=false",
                     headers={"Authorization": "Bearer " + self.env["KUBE_TOKEN"],
                              "Accept": "application/json"})
        resp = conn.getresponse()
        while not self.stopping:
            line = resp.readline()
            if not line:
                break
            ev = json.loads(line)
            obj = ev.get("object", {})
            if ev.get("type") not in ("ADDED", "MODIFIED"):
                continue
            spec = obj.get("spec", {}).get("replicas", 0)
            status = obj.get("status", {}).get("replicas")
            if status == spec or (status is None and spec == 0):
                continue
            name = obj["metadata"]["name"]
            code, _, data = evstest.request(wconn, self.env, "PATCH",
                                            "%s/%s/status" % (self.apibase, name),
                                            json.dumps({"status": {"replicas": spec}}),
                                            "application/merge-patch+json")
            if code == 200:
                self.writes += 1
        conn.close()
        wconn.close()


class ProcStats:
    def __init__(self, pid):
        self.pid = pid
        self.tick = os.sysconf("SC_CLK_TCK")

    def cpu_s(self):
        with open("/proc/%d/stat" % self.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self.tick  # utime, stime

    def mem_kib(self):
        out = {}
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    out[k] = int(v.split()[0])
        return out


def write_config(directory, env, ns, port, lease_lines="", qps=500, burst=1000):
    """evscale's configuration for a bench (leading, watching only ns, kubernetes.qps 500,
    breaker off) in directory/evscale.yaml; returns its path (perf/bench_process.py too, which
    may add lines under leader_election)."""
    cfg = os.path.join(directory, "evscale.yaml")
    with open(cfg, "w") as f:
        f.write(f"server:\n  address: 127.0.0.1:{port}\n  shutdown_grace: 2s\n"
                f"log:\n  level: info\n  format: json\n"
                f"kubernetes:\n  kubeconfig: {env['KUBECONFIG']}\n"
                f"  namespaces: [{ns}]\n  qps: {qps:g}\n  burst: {burst}\n"
                f"leader_election:\n  lease_namespace: {ns}\n{lease_lines}"
                f"circuit_breaker:\n  enabled: false\n")
    return cfg


def evscale_environ(home):
    """The driver's environment without the in-cluster and KUBECONFIG variables (the config
    file names the kubeconfig), HOME in the bench's directory."""
    env = {k: v for k, v in os.environ.items()
           if k != "KUBECONFIG" and not k.startswith("KUBERNETES_")}
    env["HOME"] = home
    return env


class Bench:
    def __init__(self, args):
        self.a = args
        self.dir = tempfile.mkdtemp(prefix="evs-bench-scaling-")
        self.proc = None
        self.logf = None
        self.redis = None
        private = args.controlplane == "private" or (
            args.controlplane == "auto" and args.others >= 1000)
        self.private = private
        log("control plane: %s" % ("private (started now)" if private else "shared"))
        self.env = evstest.controlplane(private=private)
        self.ns = "evs-bench-%d-%d" % (os.getpid(), int(time.time()) % 100000)
        self.apibase = "/apis/%s/%s/namespaces/%s/%s" % (GROUP, VERSION, self.ns, PLURAL)
        self.sobase = "/apis/keda.sh/v1alpha1/namespaces/%s/scaledobjects" % self.ns

    def kubectl(self, *args, **kw):
        return evstest.kubectl(self.env, *args, **kw)

    # --- setup ---

    def setup(self):
        self.kubectl("apply", "-f", CRD_FILE)
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                     "crd/%s.%s" % (PLURAL, GROUP))
        self.kubectl("create", "namespace", self.ns)
        self.redis = Redis(self.dir, keyspace=self.a.mode == "push")
        self.mirror = StatusMirror(self.env, self.apibase)
        self.mirror.start()
        if self.a.others:
            t0 = time.monotonic()
            items = []
            for i in range(self.a.others):
                items.append((self.apibase, target_body(self.ns, "other-%d" % i)))
            create_many(self.env, items)
            items = [(self.sobase, so_body(self.ns, "other-%d" % i, "other-%d" % i,
                                           "other-%d" % i, self.redis.port, 30, 300))
                     for i in range(self.a.others)]
            create_many(self.env, items)
            log("created %d other targets and ScaledObjects in %.1f s" % (
                self.a.others, time.monotonic() - t0))
        # The floor's target and the measured ones (one per profile and iteration).
        self.runs = [(p, i) for p in self.a.profiles for i in range(self.a.iterations)]
        items = [(self.apibase, target_body(self.ns, "floor", 1))]
        for p, i in self.runs:
            items.append((self.apibase, target_body(self.ns, "%s-%d" % (p, i))))
        create_many(self.env, items, threads=4)
        items = [(self.sobase, so_body(self.ns, "%s-%d" % (p, i), "%s-%d" % (p, i),
                                       "list-%s-%d" % (p, i), self.redis.port,
                                       POLLING_INTERVAL, 2)) for p, i in self.runs]
        create_many(self.env, items, threads=4)

    def start_evscale(self):
        port = evstest.free_port()
        cfg = write_config(self.dir, self.env, self.ns, port)
        self.logf = open(os.path.join(self.dir, "evscale.log"), "w+")
        self.proc = subprocess.Popen([self.a.binary, "run", "--config", cfg], stdout=self.logf,
                                     stderr=subprocess.STDOUT, env=evscale_environ(self.dir))
        self.base = "http://127.0.0.1:%d" % port
        self.stats = ProcStats(self.proc.pid)

        def ready():
            if self.proc.poll() is not None:
                raise SystemExit("evscale exited (%d): %s" % (self.proc.returncode,
                                                              self.log_text()[-2000:]))
            try:
                import urllib.request
                with urllib.request.urlopen(self.base + "/readyz", timeout=5) as r:
                    return r.status == 200
            except OSError:
                return False
        evstest.wait_until(ready, timeout=180, interval=0.3, what="evscale /readyz")
        # Settle: every ScaledObject gets its status written once at start; wait until evscale
        # has gone 3 s without writing in the namespace (or 10 min).
        t0 = time.monotonic()
        off = self.audit_start
        last_write = time.monotonic()
        while time.monotonic() - t0 < 600:
            events, off = evstest.audit_events(self.env, off)
            if any(e.get("verb") in ("patch", "update", "create") and
                   "evscale" in e.get("userAgent", "") and
                   e.get("objectRef", {}).get("namespace") == self.ns and
                   e.get("objectRef", {}).get("resource") != "leases" for e in events):
                last_write = time.monotonic()
            if time.monotonic() - last_write > 3:
                break
            time.sleep(0.5)
        log("evscale ready; settled after %.1f s" % (time.monotonic() - t0))

    def log_text(self):
        self.logf.flush()
        with open(self.logf.name) as f:
            return f.read()

    # --- the run ---

    def replicas(self, conn, name):
        status, _, data = evstest.request(conn, self.env, "GET",
                                          "%s/%s/scale" % (self.apibase, name))
        if status != 200:
            raise RuntimeError("GET scale %s -> %d" % (name, status))
        return json.loads(data)["spec"].get("replicas", 0)

    def floor_patch(self, conn, n):
        body = json.dumps({"spec": {"replicas": 1 + n % 2}})
        t0 = time.time()
        status, headers, data = evstest.request(conn, self.env, "PATCH",
                                                "%s/floor/scale" % self.apibase, body,
                                                "application/merge-patch+json")
        if status != 200:
            raise RuntimeError("floor PATCH -> %d %s" % (status, data[:200]))
        return headers.get("audit-id"), t0

    def metrics(self):
        """evscale's own /metrics lines about latency (kept for the profile of a miss)."""
        import urllib.request
        try:
            with urllib.request.urlopen(self.base + "/metrics", timeout=10) as r:
                text = r.read().decode()
        except OSError as e:
            return "(no /metrics: %s)" % e
        keep = ("evscale_scaling_latency_seconds", "evscale_kube_ratelimiter_wait_seconds",
                "evscale_event_loop_lag", "evscale_writes_coalesced_total")
        return "\n".join(l for l in text.splitlines()
                         if l.startswith(keep) and "_bucket" not in l)

    def run(self):
        perf = None
        if self.a.perf:
            perf = subprocess.Popen(["perf", "record", "-g", "-F", "999", "-p",
                                     str(self.proc.pid), "-o",
                                     os.path.join(self.dir, "perf.data")],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self._run()
        finally:
            if perf:
                perf.send_signal(2)
                perf.wait(60)
        self.evs_metrics = self.metrics()
        if perf:
            rep = subprocess.run(["perf", "report", "--stdio", "--no-children", "-i",
                                  os.path.join(self.dir, "perf.data"), "--percent-limit", "2",
                                  "-g", "none"], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True)
            self.perf_report = "\n".join(l for l in rep.stdout.splitlines()
                                         if l.strip() and not l.startswith("#"))[:4000]

    def _run(self):
        tick = self.a.tick or (0.4 if self.a.mode == "push" else POLLING_INTERVAL + 0.5)
        conn = evstest.connect(self.env)
        self.pushes = []   # (target, t_push, t_next, expect_change)
        self.floor = []    # (audit id, t0)
        nfloor = 0
        self.cpu0, self.wall0 = self.stats.cpu_s(), time.monotonic()
        for p, i in self.runs:
            name, lst = "%s-%d" % (p, i), "list-%s-%d" % (p, i)
            steps = profile_steps(p, i)
            length = 0
            mine = []
            for want in steps:
                t_step = time.monotonic()
                cur = self.replicas(conn, name)
                cmds = []
                if p == "sustained" and want == length and length:
                    cmds = [("RPUSH", lst, *range(10)), ("LTRIM", lst, -want, -1)]
                elif want > length:
                    cmds = [("RPUSH", lst, *range(want - length))]
                elif want < length:
                    cmds = [("LTRIM", lst, -want, -1)] if want else [("DEL", lst)]
                grows = want > length or (p == "sustained" and cmds)
                expect = want > length and (
                    (cur == 0 and want > 0) or
                    (cur > 0 and math.ceil(want / LIST_LENGTH) > cur and
                     want / (LIST_LENGTH * cur) > 1.1))
                t_push = time.time()
                if cmds:
                    self.redis.pipeline(*cmds)
                if grows:
                    mine.append([name, t_push, None, expect])
                length = want
                # The floor, mid-tick, away from evscale's write.
                time.sleep(max(0.0, tick / 2 - (time.monotonic() - t_step)))
                self.floor.append(self.floor_patch(conn, nfloor))
                nfloor += 1
                time.sleep(max(0.0, tick - (time.monotonic() - t_step)))
            self.redis.cmd("DEL", lst)
            for k in range(len(mine)):
                mine[k][2] = mine[k + 1][1] if k + 1 < len(mine) else mine[k][1] + tick
            self.pushes += mine
            log("%s: %d steps, %d changes expected" % (name, len(steps),
                                                       sum(1 for m in mine if m[3])))
        self.cpu1, self.wall1 = self.stats.cpu_s(), time.monotonic()
        self.mem = self.stats.mem_kib()
        conn.close()
        time.sleep(3)  # the audit log is written as requests complete

    # --- results ---

    def collect(self):
        events, _ = evstest.audit_events(self.env, self.audit_start)
        prefix = self.apibase + "/"
        by_target = {}
        ids = {}
        for e in events:
            if e.get("stage") != "ResponseComplete":
                continue
            ids[e.get("auditID")] = e
            uri = e.get("requestURI", "")
            if (e.get("verb") in ("patch", "update") and uri.startswith(prefix)
                    and uri.split("?")[0].endswith("/scale")
                    and "evscale" in e.get("userAgent", "")):
                name = uri[len(prefix):].split("/")[0]
                by_target.setdefault(name, []).append(
                    (parse_ts(e["stageTimestamp"]), e.get("responseStatus", {}).get("code")))
        lat, missing, unexpected = [], 0, 0
        for name, t_push, t_next, expect in self.pushes:
            ws = sorted(t for t, _ in by_target.get(name, []) if t_push < t <= t_next)
            if expect and ws:
                lat.append((ws[0] - t_push) * 1000.0)
            elif expect:
                missing += 1  # no write before the next push
        floor = []
        for aid, t0 in self.floor:
            e = ids.get(aid)
            if e:
                floor.append((parse_ts(e["stageTimestamp"]) - t0) * 1000.0)
        measured = {"%s-%d" % (p, i) for p, i in self.runs}
        writes = sum(len(v) for k, v in by_target.items() if k in measured)
        bad_status = sum(1 for k, v in by_target.items() if k in measured
                         for _, c in v if not (200 <= (c or 0) < 300))
        changes, nochange = 0, 0
        for line in self.log_text().splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get("msg") == "scaled" and r.get("target", "").split("/")[-1] in measured:
                if r.get("from") != r.get("to"):
                    changes += 1
                else:
                    nochange += 1
        other_writes = sum(len(v) for k, v in by_target.items() if k.startswith("other-"))
        return {"lat": lat, "floor": floor, "missing": missing, "writes": writes,
                "changes": changes, "nochange": nochange, "bad_status": bad_status,
                "other_writes": other_writes}

    def stop(self):
        if getattr(self, "mirror", None):
            self.mirror.stopping = True
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.redis:
            self.redis.stop()
        try:
            self.kubectl("delete", "namespace", self.ns, "--wait=false", check=False)
        except Exception:  # noqa: BLE001 - best effort
            pass
        if self.private:
            evstest.stop(self.env)


def log(msg):
    print("bench_scaling: " + msg, file=sys.stderr, flush=True)


def stats(v):
    return {"n": len(v), "p50": percentile(v, 50), "p95": percentile(v, 95),
            "p99": percentile(v, 99), "max": max(v) if v else float("nan")}


def report(args, b, r):
    lat, floor = stats(r["lat"]), stats(r["floor"])
    cpu = b.cpu1 - b.cpu0
    wall = b.wall1 - b.wall0
    lines = []
    lines.append("| measured | n | p50 | p95 | p99 | max |")
    lines.append("|---|---|---|---|---|---|")
    for label, s in (("evscale: push into Redis -> /scale write complete", lat),
                     ("floor: bare /scale PATCH by the driver", floor)):
        lines.append("| %s | %d | %.2f ms | %.2f ms | %.2f ms | %.2f ms |" % (
            label, s["n"], s["p50"], s["p95"], s["p99"], s["max"]))
    ratio = {k: lat[k] / floor[k] if floor[k] else float("nan") for k in ("p50", "p95", "p99",
                                                                         "max")}
    tgt = args.target_time * 1000.0
    lines.append("| evscale / floor | | %.2fx | %.2fx | %.2fx | %.2fx |" % (
        ratio["p50"], ratio["p95"], ratio["p99"], ratio["max"]))
    lines.append("| evscale / target (%g s) | | %.4f | %.4f | %.4f | %.4f |" % (
        args.target_time, lat["p50"] / tgt, lat["p95"] / tgt, lat["p99"] / tgt, lat["max"] / tgt))
    lines.append("")
    lines.append("evscale: RSS %.1f MiB (peak %.1f MiB), CPU %.2f s over %.1f s (%.1f %% of one "
                 "core); API writes on measured targets %d for %d changes of the desired count "
                 "(%d 'scaled' records without a change, %d non-2xx); writes on the %d others: "
                 "%d; expected changes with no write before the next step: %d; status.replicas "
                 "mirror writes: %d" % (
                     b.mem.get("VmRSS", 0) / 1024.0, b.mem.get("VmHWM", 0) / 1024.0, cpu, wall,
                     100.0 * cpu / wall if wall else 0, r["writes"], r["changes"], r["nochange"],
                     r["bad_status"], args.others, r["other_writes"], r["missing"], b.mirror.writes))
    lines.append("")

    def verdict(ok):
        return "**pass**" if ok else "**MISS**"
    goals = [
        ("every scaling time under the %g s target (max %.0f ms)" % (args.target_time,
                                                                      lat["max"]),
         lat["max"] <= tgt),
        ("every expected change written before the next step (%d were not)" % r["missing"],
         r["missing"] == 0),
        ("exactly one write per change (%d writes, %d changes, %d without a change)" % (
            r["writes"], r["changes"], r["nochange"]),
         r["writes"] == r["changes"] and r["nochange"] == 0 and r["bad_status"] == 0),
    ]
    if args.mode == "push":
        goals.append(("p50 within 1.25x the floor (%.2fx)%s" % (
            ratio["p50"], "" if args.others >= 10000 else
            " [the goal is stated for 10,000 others; this run has %d]" % args.others),
            ratio["p50"] <= 1.25))
        goals.append(("p99 within 2x the floor (%.2fx)%s" % (
            ratio["p99"], "" if args.others >= 10000 else
            " [stated for 10,000 others; this run has %d]" % args.others), ratio["p99"] <= 2.0))
    else:
        goals.append(("poll mode p99 within pollingInterval + 50 ms = %d ms (%.0f ms)" % (
            POLLING_INTERVAL * 1000 + 50, lat["p99"]), lat["p99"] <= POLLING_INTERVAL * 1000 + 50))
    for text, ok in goals:
        lines.append("- %s %s" % (verdict(ok), text))
    return "\n".join(lines), all(ok for _, ok in goals)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("push", "poll"), default="push")
    ap.add_argument("--profiles", default=",".join(PROFILES))
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--target-time", type=float, default=9.0)
    ap.add_argument("--others", type=int, default=0)
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "rel", "evscale"))
    ap.add_argument("--controlplane", choices=("auto", "shared", "private"), default="auto")
    ap.add_argument("--tick", type=float, default=0.0, help="seconds per profile step")
    ap.add_argument("--perf", action="store_true",
                    help="perf record -g on evscale during the run; print the top of the report")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--append-results", metavar="FILE")
    args = ap.parse_args()
    args.profiles = [p for p in args.profiles.split(",") if p]
    for p in args.profiles:
        if p not in PROFILES:
            ap.error("unknown profile %s (one of %s)" % (p, ", ".join(PROFILES)))
    if not os.access(args.binary, os.X_OK):
        ap.error("%s is not an executable (build: cmake -S . -B build/rel "
                 "-DCMAKE_BUILD_TYPE=Release && cmake --build build/rel)" % args.binary)
    b = Bench(args)
    try:
        b.audit_start = evstest.audit_size(b.env)
        b.setup()
        b.start_evscale()
        b.audit_start = evstest.audit_size(b.env)
        b.run()
        r = b.collect()
    finally:
        b.stop()
        if not args.keep:
            shutil.rmtree(b.dir, ignore_errors=True)
        else:
            log("kept " + b.dir)
    text, ok = report(args, b, r)
    cmd = "python3 perf/bench_scaling.py " + " ".join(sys.argv[1:])
    head = "mode %s, profiles %s, %d iterations, %d others" % (
        args.mode, ",".join(args.profiles), args.iterations, args.others)
    print(head)
    print(text)
    print("evscale /metrics at the end:\n" + getattr(b, "evs_metrics", ""))
    if getattr(b, "perf_report", None):
        print("perf report (evscale, self time >= 2 %):\n" + b.perf_report)
    if args.append_results:
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        with open(args.append_results, "a") as f:
            f.write("\n### Scaling time, %s (%s)\n\n" % (head, now))
            f.write("Command: `%s`  \n" % cmd)
            f.write("Machine: %s, %d CPUs, load average %.2f at the end (shared machine); "
                    "control plane %s\n\n" % (platform.node(), os.cpu_count(),
                                              os.getloadavg()[0],
                                              "private" if b.private else "shared"))
            f.write(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
