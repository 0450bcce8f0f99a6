#!/usr/bin/env python3
"""A real Prometheus scraping a real Pushgateway on loopback, for the prometheus trigger's tests.

Debian's `prometheus` and `prometheus-pushgateway` are started on free 127.0.0.1 ports in a
temporary directory; Prometheus scrapes the Pushgateway every second (honor_labels, so pushed
job/instance labels are kept). Options:

  --tls                  Prometheus serves HTTPS with tools/testcerts.sh's ip-only certificate
                         (--web.config.file); clients trust DIR/ca.crt
  --basic-auth USER:PASS Prometheus requires basic auth (same web config; the password is stored
                         as a bcrypt hash made with Python's crypt module, METHOD_BLOWFISH, which
                         Debian's libcrypt provides: no extra package)
  --proxy                a header-checking HTTP proxy in front of Prometheus (Prometheus has no
                         bearer or custom-header auth, and ignores `namespace`): it answers 401
                         unless every --require-header NAME:VALUE is present and 400 unless every
                         --require-param NAME=VALUE is in the query string, forwards the rest,
                         and counts what it forwarded
  --client-cert          with --tls: Prometheus requires a client certificate signed by the test
                         CA (client_auth_type RequireAndVerifyClientCert); the harness's own
                         requests present DIR/client.crt
  --certs DIR            where tools/testcerts.sh writes (default /tmp/evscale-testcerts-UID)

Protocol: one JSON object per line on stdout. The first line describes the servers:

  {"prometheus": "http://127.0.0.1:P", "pushgateway": "http://127.0.0.1:G",
   "proxy": "http://127.0.0.1:X" | null, "ca": "DIR/ca.crt" | null, "pid": N}

then the harness reads one command per line on stdin and answers each with one JSON line
({"ok": true, ...} or {"ok": false, "error": "..."}). Commands (space separated words):

  push JOB METRIC VALUE [LABEL=VALUE...]   POST one sample into group job=JOB (labels add to the
                                           grouping key, so two pushes with different labels
                                           are two series)
  delete JOB [LABEL=VALUE...]              DELETE that group
  wait QUERY EXPECT                        until Prometheus answers QUERY (URL-escaped by the
                                           caller when it has spaces: %20) with one sample whose
                                           value string is EXPECT, or "empty" for no series,
                                           or "N" series (e.g. "2series"); 60 s at most
  raw QUERY                                {"ok": true, "status": S, "body": "..."}: one
                                           /api/v1/query answer as Prometheus sent it
  stop_prometheus / start_prometheus       kill (SIGKILL) / restart Prometheus on the same port
  proxy_down / proxy_up                    the proxy closes its listening socket / listens again
  count                                    {"ok": true, "requests": N, "by_query": {Q: n},
                                           "rejected": R, "last_headers": {...},
                                           "last_params": {...}}: requests seen by the proxy
  reset                                    zeroes the proxy's counters
  prom_requests                            {"ok": true, "requests": N}: Prometheus's own
                                           prometheus_http_requests_total for /api/v1/query
  require_header NAME:VALUE                the proxy requires one more header (401 without)
  require_param NAME=VALUE                 ... one more query parameter (400 without)
  require_none                             ... nothing any more
  delay QUERY SECONDS                      the proxy answers QUERY (URL-escaped) that much later
  quit                                     stops everything and exits (EOF on stdin too)

Python e2e tests import it instead: `with Harness(tls=True) as h: h.push(...)`.
"""

import argparse
import base64
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import warnings

SOURCE_DIR = os.environ.get("EVS_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bcrypt_hash(password):
    """A bcrypt hash Prometheus's exporter-toolkit accepts ($2b$), from glibc/libxcrypt's crypt."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # noqa: PLC0415 - deprecated in 3.11, present in Debian bookworm's 3.11
    if crypt.METHOD_BLOWFISH not in crypt.methods:
        raise RuntimeError("libcrypt without bcrypt: basic auth for Prometheus unavailable")
    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 4))


def certs_dir(directory=None):
    directory = directory or "/tmp/evscale-testcerts-%d" % os.getuid()
    subprocess.run([os.path.join(SOURCE_DIR, "tools", "testcerts.sh"), directory], check=True,
                   timeout=120)
    return directory


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client under test pools connections

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 - http.server's naming
        p = self.server.owner
        parsed = urllib.parse.urlsplit(self.path)
        params = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        headers = {k: v for k, v in self.headers.items()}
        with p.lock:
            p.last_headers, p.last_params = headers, params
        for name, value in p.require_headers:
            if self.headers.get(name) != value:
                return self._answer(p, 401, b'{"status":"error","error":"unauthorized"}')
        for name, value in p.require_params:
            if params.get(name) != value:
                return self._answer(p, 400, b'{"status":"error","error":"bad namespace"}')
        with p.lock:
            p.requests += 1
            key = params.get("query", "")
            p.by_query[key] = p.by_query.get(key, 0) + 1
            delay = p.delays.get(key, 0)
        if delay:
            time.sleep(delay)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", p.upstream_port, timeout=30)
            conn.request("GET", self.path)
            r = conn.getresponse()
            body = r.read()
            conn.close()
            status = r.status
        except OSError as e:
            status, body = 502, json.dumps({"status": "error", "error": str(e)}).encode()
        self._answer(p, status, body, counted=True)

    def _answer(self, p, status, body, counted=False):
        if not counted:
            with p.lock:
                p.rejected += 1
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A client that hung up before its answer (a test's hub closing, or a timeout under test)
        # is expected here; anything else is still printed.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class _Proxy:
    def __init__(self, upstream_port, require_headers, require_params):
        self.upstream_port = upstream_port
        self.require_headers = require_headers
        self.require_params = require_params
        self.lock = threading.Lock()
        self.delays = {}
        self.port = free_port()
        self.server = None
        self.reset()
        self.up()

    def reset(self):
        with self.lock:
            self.requests, self.rejected, self.by_query = 0, 0, {}
            self.last_headers, self.last_params = {}, {}

    def up(self):
        if self.server is not None:
            return
        _QuietServer.allow_reuse_address = True
        self.server = _QuietServer(("127.0.0.1", self.port), _ProxyHandler)
        self.server.daemon_threads = True
        self.server.owner = self
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self):
        if self.server is None:
            return
        self.server.shutdown()
        self.server.server_close()
        self.server = None

    def stats(self):
        with self.lock:
            return {"requests": self.requests, "rejected": self.rejected,
                    "by_query": dict(self.by_query), "last_headers": dict(self.last_headers),
                    "last_params": dict(self.last_params)}


class Harness:
    def __init__(self, tls=False, basic_auth=None, proxy=False, require_headers=(),
                 require_params=(), certs=None, client_cert=False):
        self.tmp = tempfile.mkdtemp(prefix="evs-prom-")
        self.tls, self.basic_auth, self.client_cert = tls, basic_auth, client_cert
        self.ca = None
        self.prom_proc = self.pgw_proc = None
        self.proxy = None
        try:
            self._start(proxy, require_headers, require_params, certs)
        except BaseException:
            self.close()
            raise

    # --- servers -------------------------------------------------------------------------
    def _start(self, proxy, require_headers, require_params, certs):
        self.pgw_port = free_port()
        self.pgw_proc = subprocess.Popen(
            ["prometheus-pushgateway", "--web.listen-address=127.0.0.1:%d" % self.pgw_port],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.tmp, "pgw.log"), "wb"))
        self.prom_port = free_port()
        with open(os.path.join(self.tmp, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: pushgateway\n    honor_labels: true\n"
                    "    static_configs:\n      - targets: ['127.0.0.1:%d']\n" % self.pgw_port)
        self.web_config = None
        if self.tls or self.basic_auth:
            lines = []
            if self.tls:
                d = certs_dir(certs)
                self.ca = os.path.join(d, "ca.crt")
                self.certs = d
                lines += ["tls_server_config:", "  cert_file: %s/ip-only.crt" % d,
                          "  key_file: %s/ip-only.key" % d]
                if self.client_cert:
                    lines += ["  client_auth_type: RequireAndVerifyClientCert",
                              "  client_ca_file: %s/ca.crt" % d]
            if self.basic_auth:
                user, pw = self.basic_auth.split(":", 1)
                lines += ["basic_auth_users:", "  %s: '%s'" % (user, bcrypt_hash(pw))]
            self.web_config = os.path.join(self.tmp, "web.yml")
            with open(self.web_config, "w") as f:
                f.write("\n".join(lines) + "\n")
        self.start_prometheus()
        self._wait_http(self.pgw_port, "/-/ready", tls=False, auth=False)
        if proxy:
            self.proxy = _Proxy(self.prom_port, list(require_headers), list(require_params))

    def start_prometheus(self):
        if self.prom_proc is not None:
            return
        args = ["prometheus", "--config.file=" + os.path.join(self.tmp, "prometheus.yml"),
                "--storage.tsdb.path=" + os.path.join(self.tmp, "data"),
                "--web.listen-address=127.0.0.1:%d" % self.prom_port]
        if self.web_config:
            args.append("--web.config.file=" + self.web_config)
        self.prom_proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.tmp, "prometheus.log"), "ab"))
        self._wait_http(self.prom_port, "/-/ready", tls=self.tls, auth=True)

    def stop_prometheus(self):
        if self.prom_proc is None:
            return
        self.prom_proc.kill()
        self.prom_proc.wait()
        self.prom_proc = None

    def _conn(self, port, tls):
        if tls:
            ctx = ssl.create_default_context(cafile=self.ca)
            if self.client_cert:
                ctx.load_cert_chain(os.path.join(self.certs, "client.crt"),
                                    os.path.join(self.certs, "client.key"))
            return http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx)
        return http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def _get(self, port, path, tls, auth):
        headers = {}
        if auth and self.basic_auth:
            headers["Authorization"] = "Basic " + base64.b64encode(
                self.basic_auth.encode()).decode()
        c = self._conn(port, tls)
        try:
            c.request("GET", path, headers=headers)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def _wait_http(self, port, path, tls, auth, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, _ = self._get(port, path, tls, auth)
                if status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server on port %d not ready after %ds" % (port, timeout))
            time.sleep(0.1)

    # --- data ----------------------------------------------------------------------------
    def _group_path(self, job, labels):
        path = "/metrics/job/" + urllib.parse.quote(job, safe="")
        for k, v in labels:
            path += "/%s/%s" % (urllib.parse.quote(k, safe=""), urllib.parse.quote(v, safe=""))
        return path

    def push(self, job, metric, value, labels=()):
        c = self._conn(self.pgw_port, False)
        try:
            c.request("POST", self._group_path(job, labels), body="%s %s\n" % (metric, value),
                      headers={"Content-Type": "text/plain; version=0.0.4"})
            r = c.getresponse()
            r.read()
            if r.status not in (200, 202):
                raise RuntimeError("pushgateway answered %d" % r.status)
        finally:
            c.close()

    def delete(self, job, labels=()):
        c = self._conn(self.pgw_port, False)
        try:
            c.request("DELETE", self._group_path(job, labels))
            r = c.getresponse()
            r.read()
        finally:
            c.close()

    def raw(self, query):
        return self._get(self.prom_port, "/api/v1/query?query=" + urllib.parse.quote(
            urllib.parse.unquote(query), safe=""), self.tls, True)

    def wait(self, query, expect, timeout=60):
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                status, body = self.raw(query)
                result = json.loads(body)["data"]["result"]
                last = result
                if expect == "empty" and result == []:
                    return result
                if expect.endswith("series") and len(result) == int(expect[:-6]):
                    return result
                if len(result) == 1 and result[0].get("value", [None, None])[1] == expect:
                    return result
            except (OSError, ValueError, KeyError) as e:
                last = e
            if time.monotonic() > deadline:
                raise RuntimeError("timed out waiting for %s == %s (last %r)" % (
                    query, expect, last))
            time.sleep(0.2)

    def prom_requests(self):
        """Prometheus's own count of /api/v1/query requests (prometheus_http_requests_total)."""
        status, body = self._get(self.prom_port, "/metrics", self.tls, True)
        n = 0
        for line in body.decode().splitlines():
            if line.startswith("prometheus_http_requests_total{") and \
                    'handler="/api/v1/query"' in line:
                n += int(float(line.rsplit(" ", 1)[1]))
        return n

    def describe(self):
        scheme = "https" if self.tls else "http"
        return {"prometheus": "%s://127.0.0.1:%d" % (scheme, self.prom_port),
                "pushgateway": "http://127.0.0.1:%d" % self.pgw_port,
                "proxy": "http://127.0.0.1:%d" % self.proxy.port if self.proxy else None,
                "ca": self.ca, "pid": os.getpid()}

    def close(self):
        if self.proxy:
            self.proxy.down()
        for p in (self.prom_proc, self.pgw_proc):
            if p is not None:
                p.kill()
                p.wait()
        self.prom_proc = self.pgw_proc = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _labels(words):
    return [tuple(w.split("=", 1)) for w in words]


def _command(h, words):
    cmd = words[0]
    if cmd == "push":
        h.push(words[1], words[2], words[3], _labels(words[4:]))
    elif cmd == "delete":
        h.delete(words[1], _labels(words[2:]))
    elif cmd == "wait":
        return {"result": h.wait(words[1], words[2])}
    elif cmd == "raw":
        status, body = h.raw(words[1])
        return {"status": status, "body": body.decode("utf-8", "replace")}
    elif cmd == "stop_prometheus":
        h.stop_prometheus()
    elif cmd == "start_prometheus":
        h.start_prometheus()
    elif cmd == "proxy_down":
        h.proxy.down()
    elif cmd == "proxy_up":
        h.proxy.up()
    elif cmd == "count":
        return h.proxy.stats()
    elif cmd == "reset":
        h.proxy.reset()
    elif cmd == "prom_requests":
        return {"requests": h.prom_requests()}
    elif cmd == "require_header":
        h.proxy.require_headers.append(tuple(" ".join(words[1:]).split(":", 1)))
    elif cmd == "require_param":
        h.proxy.require_params.append(tuple(words[1].split("=", 1)))
    elif cmd == "delay":
        h.proxy.delays[urllib.parse.unquote(words[1])] = float(words[2])
    elif cmd == "require_none":
        h.proxy.require_headers, h.proxy.require_params = [], []
    else:
        raise ValueError("unknown command %r" % cmd)
    return {}


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--basic-auth")
    ap.add_argument("--proxy", action="store_true")
    ap.add_argument("--require-header", action="append", default=[])
    ap.add_argument("--require-param", action="append", default=[])
    ap.add_argument("--certs")
    ap.add_argument("--client-cert", action="store_true")
    a = ap.parse_args(argv)
    headers = [tuple(x.split(":", 1)) for x in a.require_header]
    params = [tuple(x.split("=", 1)) for x in a.require_param]
    # A parent that dies (a crashed test) closes our stdin: EOF stops everything. SIGTERM too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    h = Harness(tls=a.tls, basic_auth=a.basic_auth, proxy=a.proxy or bool(headers or params),
                require_headers=headers, require_params=params, certs=a.certs,
                client_cert=a.client_cert)
    try:
        print(json.dumps(h.describe()), flush=True)
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            if words[0] == "quit":
                print(json.dumps({"ok": True}), flush=True)
                break
            try:
                out = _command(h, words)
                out["ok"] = True
            except Exception as e:  # noqa: BLE001 - reported to the caller, who fails the test
                out = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
            print(json.dumps(out), flush=True)
    finally:
        h.close()


if __name__ == "__main__":
    main(sys.argv[1:])
