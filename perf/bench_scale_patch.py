#!/usr/bin/env python3
"""The floor for evscale's write latency: N scale PATCHes (merge-patch on
deployments/NAME/scale, the request evscale makes) against the local control plane, from
Python's http.client over ONE keep-alive TLS connection.

Two figures per request:
  server  stageTimestamp - requestReceivedTimestamp of the request's ResponseComplete audit event
          (matched by the Audit-Id response header): the API server's own time, etcd write included
  client  wall time from sending the request to having read the whole response

    python3 perf/bench_scale_patch.py [-n 200] [--warmup 10] [--mode change|same]
                                      [--append-results perf/RESULTS.md]

The control plane comes from test/e2e/evstest.py (env KUBE_* if set, else the shared one under
~/.cache/evscale/cp-shared, started if needed). --mode change alternates replicas 1/2 so every
PATCH is a real write (etcd + the controller manager reacting, as in production); --mode same
writes the current value again (the API server's no-op path).
"""

import argparse
import datetime
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "test", "e2e"))
import evstest  # noqa: E402

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: %(name)s, namespace: %(ns)s}
spec:
  replicas: 1
  selector: {matchLabels: {app: %(name)s}}
  template:
    metadata: {labels: {app: %(name)s}}
    spec:
      containers: [{name: c, image: "registry.invalid/none:1"}]
"""


def percentile(sorted_values, p):
    """Nearest-rank percentile (no interpolation: every figure is an observed value)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, int(-(-p * len(sorted_values) // 100)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def parse_ts(s):
    # RFC 3339 with microseconds and a Z, e.g. 2026-11-23T07:45:38.123456Z
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ")


def summary(values_ms):
    v = sorted(values_ms)
    return {"n": len(v), "p50": percentile(v, 50), "p95": percentile(v, 95),
            "p99": percentile(v, 99), "max": v[-1] if v else float("nan"),
            "mean": sum(v) / len(v) if v else float("nan")}


def run_patches(env, ns, name, n, warmup, mode):
    conn = evstest.connect(env)
    path = "/apis/apps/v1/namespaces/%s/deployments/%s/scale" % (ns, name)
    ids, client_ms = [], []
    for i in range(warmup + n):
        replicas = 1 if mode == "same" else 1 + (i % 2)
        body = json.dumps({"spec": {"replicas": replicas}})
        t0 = time.perf_counter()
        status, headers, data = evstest.request(conn, env, "PATCH", path, body,
                                                "application/merge-patch+json")
        dt = (time.perf_counter() - t0) * 1000.0
        if status != 200:
            raise SystemExit("PATCH %s -> %d %s" % (path, status, data[:300]))
        if i >= warmup:
            ids.append(headers.get("audit-id"))
            client_ms.append(dt)
    conn.close()
    if None in ids:
        raise SystemExit("the API server sent no Audit-Id header")
    return ids, client_ms


def server_times(env, offset, ids):
    wanted = set(ids)
    found = {}

    def collect():
        events, _ = evstest.audit_events(env, offset)
        for e in events:
            if e.get("auditID") in wanted and e.get("stage") == "ResponseComplete":
                d = parse_ts(e["stageTimestamp"]) - parse_ts(e["requestReceivedTimestamp"])
                found[e["auditID"]] = d.total_seconds() * 1000.0
        return len(found) == len(wanted)
    evstest.wait_until(collect, 60, 0.2, "audit events of all PATCHes")
    return [found[i] for i in ids]


def fmt(s):
    return "p50 %.2f ms, p95 %.2f ms, p99 %.2f ms, max %.2f ms, mean %.2f ms (n=%d)" % (
        s["p50"], s["p95"], s["p99"], s["max"], s["mean"], s["n"])


def append_results(path, args, server, client, version):
    cmd = "python3 perf/bench_scale_patch.py -n %d --warmup %d --mode %s" % (
        args.n, args.warmup, args.mode)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with open(path, "a") as f:
        f.write("\n## Scale PATCH floor (%s, mode %s)\n\n" % (now, args.mode))
        f.write("Command: `%s`  \n" % cmd)
        f.write("Machine: %s, %d CPUs, load average %.2f (shared machine), Python %s; API server "
                "%s (tools/controlplane.sh, etcd with fsync)\n\n" % (
                    platform.node(), os.cpu_count(), os.getloadavg()[0],
                    platform.python_version(), version))
        f.write("| measured | p50 | p95 | p99 | max | mean | n |\n|---|---|---|---|---|---|---|\n")
        for label, s in (("server (audit stageTimestamp - requestReceivedTimestamp)", server),
                         ("client wall time (http.client, one keep-alive TLS connection)",
                          client)):
            f.write("| %s | %.2f ms | %.2f ms | %.2f ms | %.2f ms | %.2f ms | %d |\n" % (
                label, s["p50"], s["p95"], s["p99"], s["max"], s["mean"], s["n"]))


def main():
    ap = argparse.ArgumentParser(description="scale PATCH latency floor")
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--mode", choices=("change", "same"), default="change")
    ap.add_argument("--append-results", metavar="FILE")
    args = ap.parse_args()

    env = evstest.controlplane()
    _, version = evstest.api(env, "GET", "/version")
    ns = "evs-bench-%d" % os.getpid()
    evstest.kubectl(env, "create", "namespace", ns)
    try:
        evstest.kubectl(env, "apply", "-f", "-", input=DEPLOYMENT % {"name": "bench", "ns": ns})
        offset = evstest.audit_size(env)
        ids, client_ms = run_patches(env, ns, "bench", args.n, args.warmup, args.mode)
        server = summary(server_times(env, offset, ids))
        client = summary(client_ms)
    finally:
        evstest.kubectl(env, "delete", "namespace", ns, "--wait=false", check=False)
    print("scale PATCH x%d (mode %s) against %s (%s)" % (
        args.n, args.mode, env["KUBE_API_URL"], version.get("gitVersion")))
    print("server (audit): " + fmt(server))
    print("client (wall):  " + fmt(client))
    if args.append_results:
        append_results(args.append_results, args, server, client, version.get("gitVersion"))


if __name__ == "__main__":
    main()
