#!/usr/bin/env python3
"""evscale at rest and under scrape: RSS, CPU, and /healthz + /metrics latency.

Starts `evscale run` on defaults (no Kubernetes yet), waits, reads RSS and CPU from /proc, then
sends N requests over one keep-alive connection to each endpoint and prints p50/p95/p99, and
the CPU time the process spent serving them.

  python3 perf/bench_rest.py [--binary build/release/evscale] [--requests 2000]
"""
import argparse
import http.client
import os
import socket
import subprocess
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_stat(pid):
    with open(f"/proc/{pid}/status") as f:
        rss_kb = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return rss_kb, cpu


def pct(sorted_ms, p):
    return sorted_ms[min(len(sorted_ms) - 1, int(p / 100 * len(sorted_ms)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="build/release/evscale")
    ap.add_argument("--requests", type=int, default=2000)
    args = ap.parse_args()
    port = free_port()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(f"server:\n  address: 127.0.0.1:{port}\nlog:\n  level: warn\n")
        cfg = f.name
    proc = subprocess.Popen([args.binary, "run", "--config", cfg])
    try:
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        time.sleep(2)
        rss_kb, cpu0 = proc_stat(proc.pid)
        print(f"at rest: RSS {rss_kb / 1024:.1f} MiB, CPU {cpu0:.3f} s since start")
        for path in ("/healthz", "/metrics"):
            conn = http.client.HTTPConnection("127.0.0.1", port)
            lat = []
            _, c0 = proc_stat(proc.pid)
            for _ in range(args.requests):
                t = time.perf_counter()
                conn.request("GET", path)
                r = conn.getresponse()
                r.read()
                lat.append((time.perf_counter() - t) * 1000)
            _, c1 = proc_stat(proc.pid)
            conn.close()
            lat.sort()
            print(f"{path}: {args.requests} requests on one keep-alive connection: "
                  f"p50 {pct(lat, 50):.3f} ms, p95 {pct(lat, 95):.3f} ms, "
                  f"p99 {pct(lat, 99):.3f} ms; server CPU {(c1 - c0) * 1e6 / args.requests:.1f} "
                  f"us/request")
        rss_kb, _ = proc_stat(proc.pid)
        print(f"after: RSS {rss_kb / 1024:.1f} MiB")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        os.unlink(cfg)


if __name__ == "__main__":
    main()
