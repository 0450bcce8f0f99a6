#!/usr/bin/env python3
"""evscale's HTTP server under hostile clients: /healthz latency while each attack runs.

Each attack gets a fresh `evscale run` (loopback only, log level warn). While it runs, a prober
opens a new connection every --probe-interval seconds and asks GET /healthz (as the kubelet
does) with a --probe-timeout (30 s, so a stalled loop shows as a long wait, not a failure);
p50/p99/max of the answered probes, how many took over 1 s (the kubelet's default
timeoutSeconds), the failures, RSS before and after, and whether the process is still alive
are printed. Every loop is bounded by a count and
a time limit.

  reset:   --resets times (at most --seconds): connect, pipeline two GET /metrics, close with
           SO_LINGER 0 (a RST instead of a FIN). Once killed the storm stops.
  flood:   --clients connections pipeline GET /metrics for --seconds and never read.
  idle:    max_connections (1024) + --over idle connections held open (half sent one request
           and read its answer, half never sent a byte), then 50 probes.

  python3 perf/bench_hostile.py --binary build/rel/evscale [--only reset,flood,idle]

--ignore-sigpipe starts evscale with SIGPIPE ignored (an ignored signal stays ignored across
exec): it measures a build that predates the fix for the other attacks, which would otherwise
end in SIGPIPE as the clients go.
"""
import argparse
import os
import select
import socket
import struct
import subprocess
import tempfile
import threading
import time

CAP = 1024  # evs_http_server_options_init's max_connections
METRICS_REQ = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024
    except (OSError, StopIteration):
        return float("nan")


def probe(port, timeout=30.0):
    """One /healthz on a fresh connection: latency in ms, or None on any failure."""
    t = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(max(0.1, timeout - (time.perf_counter() - t)))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while len(data) < 4096:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        if not data.startswith(b"HTTP/1.1 200"):
            return None
        return (time.perf_counter() - t) * 1000
    except OSError:
        return None


class Prober(threading.Thread):
    def __init__(self, port, interval, timeout):
        super().__init__(daemon=True)
        self.port, self.interval, self.timeout = port, interval, timeout
        self.lat, self.fails = [], 0
        self.stop = threading.Event()

    def run(self):
        deadline = time.monotonic() + 600
        while not self.stop.is_set() and time.monotonic() < deadline:
            ms = probe(self.port, self.timeout)
            if ms is None:
                self.fails += 1
            else:
                self.lat.append(ms)
            self.stop.wait(self.interval)

    def summary(self):
        lat = sorted(self.lat)
        if not lat:
            return f"probes 0 ok / {self.fails} failed"

        def pct(p):
            return lat[min(len(lat) - 1, int(p / 100 * len(lat)))]

        over = sum(1 for ms in lat if ms > 1000)
        return (f"/healthz probes {len(lat)} ok ({over} over 1 s) / {self.fails} failed: "
                f"p50 {pct(50):.1f} ms, p99 {pct(99):.1f} ms, max {lat[-1]:.1f} ms")


class Server:
    def __init__(self, binary, ignore_sigpipe=False):
        self.port = free_port()
        self.cfg = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        self.cfg.write(f"server:\n  address: 127.0.0.1:{self.port}\n  shutdown_grace: 1s\n"
                       "log:\n  level: warn\n")
        self.cfg.close()
        self.proc = subprocess.Popen([binary, "run", "--config", self.cfg.name],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     restore_signals=not ignore_sigpipe)
        deadline = time.monotonic() + 20
        while probe(self.port, 1) is None:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("evscale did not start")
            time.sleep(0.05)
        time.sleep(0.5)

    def alive(self):
        return self.proc.poll() is None

    def fate(self):
        rc = self.proc.poll()
        if rc is None:
            return "alive"
        return f"DEAD (signal {-rc})" if rc < 0 else f"DEAD (exit {rc})"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        os.unlink(self.cfg.name)


def attack_reset(srv, args):
    linger = struct.pack("ii", 1, 0)
    end = time.monotonic() + args.seconds
    done = 0
    for i in range(args.resets):
        if time.monotonic() > end or not srv.alive():
            break
        try:
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=2)
            s.sendall(METRICS_REQ * 2)
            if i % 2:
                time.sleep(0.001)  # sometimes after the first answer was written
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            s.close()
            done += 1
        except OSError:
            time.sleep(0.01)
    return f"{done} pipelined resets"


def attack_flood(srv, args):
    socks = []
    for _ in range(args.clients):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        s.setblocking(False)
        socks.append(s)
    blob = METRICS_REQ * 2000
    sent = 0
    end = time.monotonic() + args.seconds
    while time.monotonic() < end and srv.alive():
        _, writable, _ = select.select([], socks, [], 0.2)
        for s in writable:
            try:
                sent += s.send(blob)
            except (BlockingIOError, OSError):
                pass
        time.sleep(0.01)
    for s in socks:
        s.close()
    return f"{args.clients} clients pipelined {sent / len(METRICS_REQ):.0f} GET /metrics"


def attack_idle(srv, args, prober):
    socks = []
    n = CAP + args.over
    for i in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            if i % 2 == 0:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                s.recv(4096)
            socks.append(s)
        except OSError:
            pass
    time.sleep(1)
    prober.stop.set()  # the background prober, then 50 probes in a row
    prober.join()
    for _ in range(50):
        ms = probe(srv.port, prober.timeout)
        if ms is None:
            prober.fails += 1
        else:
            prober.lat.append(ms)
    for s in socks:
        s.close()
    return f"{len(socks)} idle connections held (cap {CAP})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="build/rel/evscale")
    ap.add_argument("--only", default="reset,flood,idle")
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--resets", type=int, default=3000)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--over", type=int, default=100)
    ap.add_argument("--probe-interval", type=float, default=0.1)
    ap.add_argument("--probe-timeout", type=float, default=30)
    ap.add_argument("--ignore-sigpipe", action="store_true")
    args = ap.parse_args()
    for name in args.only.split(","):
        srv = Server(args.binary, args.ignore_sigpipe)
        try:
            before = rss_mib(srv.proc.pid)
            prober = Prober(srv.port, args.probe_interval, args.probe_timeout)
            prober.start()
            t0 = time.monotonic()
            if name == "reset":
                what = attack_reset(srv, args)
            elif name == "flood":
                what = attack_flood(srv, args)
            else:
                what = attack_idle(srv, args, prober)
            took = time.monotonic() - t0
            peak = rss_mib(srv.proc.pid)
            prober.stop.set()
            prober.join()
            # After the attack: wait (bounded) until the process answers again, then let it
            # settle so RSS shows what it keeps.
            recover_t = time.monotonic()
            while srv.alive() and probe(srv.port) is None and time.monotonic() - recover_t < 60:
                time.sleep(0.1)
            recovered = time.monotonic() - recover_t
            time.sleep(3)
            after = rss_mib(srv.proc.pid)
            print(f"{name}: {what} in {took:.1f} s; {prober.summary()}; "
                  f"RSS before {before:.1f} MiB, at end of attack {peak:.1f} MiB, "
                  f"3 s after {after:.1f} MiB; answering again {recovered:.1f} s after; "
                  f"process {srv.fate()}", flush=True)
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
