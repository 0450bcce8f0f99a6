#!/usr/bin/env python3
"""bench_reload_stall: how long /healthz waits while evscale reloads a large configuration.

    python3 perf/bench_reload_stall.py BINARY [CASES]

CASES is a comma-separated list of shape:MiB (default scaledobjects:1,scaledobjects:4,keys:1,
keys:4). For each case the script starts probing /healthz on one keep-alive connection, swaps a
generated file of that size in (rename over the config path, then SIGHUP; the file watch may
fire first, the reload is done once), keeps probing for 3 s and prints the probes' p50, p99 and
max. A reload parses on the loop thread (src/core/reload.c evs__deliver), so the max is the
reload's stall. Shapes: `scaledobjects` realistic redis ScaledObjects under scaled_objects (a
valid file); `keys` one mapping of ~75k keys per MiB (refused as unknown keys, after parsing).
The process runs with --dry-run and no Kubernetes: nothing but the configuration is loaded.
"""
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def generate(kind, port, target):
    head = f"server:\n  address: 127.0.0.1:{port}\n"
    out, n, i = [head], len(head), 0
    out.append("junk:\n" if kind == "keys" else "scaled_objects:\n")
    while n < target:
        if kind == "keys":
            text = f"  key{i:07d}: v\n"
        else:
            text = (f"- apiVersion: keda.sh/v1alpha1\n  kind: ScaledObject\n  metadata:\n"
                    f"    name: worker-{i}\n    namespace: ns-{i % 50}\n  spec:\n"
                    f"    scaleTargetRef:\n      name: worker-{i}\n    triggers:\n"
                    f"    - type: redis\n      metadata:\n        address: redis.redis.svc:6379\n"
                    f"        listName: jobs-{i}\n        listLength: \"20\"\n")
        out.append(text)
        n += len(text)
        i += 1
    return "".join(out)


def healthz(conn):
    conn.request("GET", "/healthz")
    conn.getresponse().read()


def main():
    binary = sys.argv[1]
    cases = (sys.argv[2] if len(sys.argv) > 2 else
             "scaledobjects:1,scaledobjects:4,keys:1,keys:4").split(",")
    port = free_port()
    tmpdir = tempfile.TemporaryDirectory()
    path = os.path.join(tmpdir.name, "config.yaml")
    with open(path, "w") as f:
        f.write(f"server:\n  address: 127.0.0.1:{port}\n")
    log = open(os.path.join(tmpdir.name, "stderr.log"), "w+")
    proc = subprocess.Popen([binary, "run", "--config", path, "--dry-run"],
                            stdout=subprocess.DEVNULL, stderr=log)
    for _ in range(100):
        try:
            healthz(http.client.HTTPConnection("127.0.0.1", port, timeout=5))
            break
        except OSError:
            time.sleep(0.1)
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {binary}, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs")
    for case in cases:
        kind, mib = case.split(":")
        # Just under the size: the reader refuses files over 4 MiB.
        text = generate(kind, port, (int(mib) << 20) - 8192)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        lat, start, swapped = [], time.time(), False
        while time.time() < start + 3.0:
            if not swapped and time.time() > start + 0.5:
                os.rename(tmp, path)
                proc.send_signal(signal.SIGHUP)
                swapped = True
            t0 = time.perf_counter()
            healthz(conn)
            lat.append(time.perf_counter() - t0)
        conn.close()
        lat.sort()
        print(f"{kind:13s} {len(text) / 1048576:.2f} MiB: {len(lat)} probes, "
              f"p50 {lat[len(lat) // 2] * 1e3:.2f} ms, p99 {lat[int(len(lat) * 0.99)] * 1e3:.2f} ms, "
              f"max {lat[-1] * 1e3:.1f} ms")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    log.close()


if __name__ == "__main__":
    main()
