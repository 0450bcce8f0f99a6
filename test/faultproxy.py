#!/usr/bin/env python3
"""A TLS-terminating HTTP/1.1 proxy between a client and the Kubernetes API server that produces,
on demand, the faults a real server will not: dropped connections (watches included), delays,
429 with Retry-After, 500, and 410 Gone for watches.

    python3 test/faultproxy.py --listen 127.0.0.1:0 --upstream https://127.0.0.1:PORT \
        --ca CA --cert CRT --key KEY --port-file F --control-port-file G

TLS on both sides: the client sees CRT/KEY (a server cert for 127.0.0.1/localhost signed by the
test CA); the upstream is verified against CA. The client's Authorization header is forwarded
(client-certificate auth cannot pass a TLS-terminating proxy: those tests go direct).

Each client connection gets its own thread and its own upstream connection, so connection reuse
by the client (keep-alive) is visible in /stats and mirrored towards the API server.

Control API (plain HTTP on 127.0.0.1, port written to --control-port-file):
    POST /fault  {"kind": "drop_mid_body"|"delay"|"status"|"gone"|"drop_watch"|"none",
                  "count": N (requests it applies to; -1 = until reset; default 1),
                  "delay_ms": ms, "status": 429|500|503, "retry_after": "2",
                  "path_prefix": "/apis/...", "form": see below}
    GET  /stats  {"connections": n, "requests": n, "by_path": {path: n}, ...}
    POST /reset  clears the fault and the statistics

kinds:
    delay          waits delay_ms before forwarding the request.
    status         answers locally with `status` (429, 500 or 503) and a metav1.Status body
                   (form "status", default) or, for 429, the plain-text body of the API server's
                   max-in-flight / priority-and-fairness filter (form "text"); Retry-After is sent
                   when retry_after is given. The connection stays open.
    drop_mid_body  forwards, relays the response head and half of the first body bytes, then
                   closes the client connection without a TLS close_notify.
    drop_watch     applies only to watch requests: relays the stream for delay_ms (default 100),
                   then closes abruptly. Other requests pass and do not use up `count`.
    gone           answers locally with 410 Expired "too old resource version". form "status":
                   a 410 response (what a LIST with an expired resourceVersion/continue gets);
                   form "event": a 200 chunked watch stream carrying one ERROR event with that
                   Status, then the end of the stream (what a WATCH gets); form "auto" (default):
                   "event" for watch requests, "status" otherwise.

Shapes derived from Kubernetes v1.20.2 (github.com/kubernetes/kubernetes tag v1.20.2, commit
faecb196815e248d3ecfb03c680a4507229c2a56, the version tools/controlplane.sh builds from Debian's
kubernetes 1.20.5+really1.20.2 source package):
  - staging/src/k8s.io/apimachinery/pkg/api/errors/errors.go: NewResourceExpired (Code 410,
    Reason "Expired"), NewTooManyRequests (429, "TooManyRequests", details.retryAfterSeconds),
    NewInternalError (500, "InternalError", message "Internal error occurred: ...", one cause).
  - staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/types.go: Status field order/JSON names.
  - staging/src/k8s.io/apiserver/pkg/storage/cacher/watch_cache.go: message
    "too old resource version: %d (%d)"; cacher.go Watch()/newErrWatcher: once a watch has passed
    authn/authz/admission, an expired resourceVersion is reported as a watch event of type ERROR
    carrying the Status, not as an HTTP error.
  - staging/src/k8s.io/apiserver/pkg/endpoints/handlers/watch.go: 200, Transfer-Encoding chunked,
    one JSON WatchEvent {"type","object"} per frame.
  - staging/src/k8s.io/apiserver/pkg/server/filters/maxinflight.go tooManyRequests: Retry-After
    header and http.Error text "Too many requests, please try again later."
"""

import argparse
import json
import os
import select
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_HEAD = 64 * 1024
KINDS = ("drop_mid_body", "delay", "status", "gone", "drop_watch", "none")


class Closed(Exception):
    """The peer closed the connection (or it failed)."""


class Reader:
    """Buffered reads over a blocking socket (plain or TLS)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def fill(self):
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise  # a timeout is the caller's business, not a closed connection
        except (OSError, ssl.SSLError) as e:
            raise Closed(str(e)) from e
        if not data:
            raise Closed("eof")
        self.buf += data

    def has_data(self):
        pending = self.sock.pending() if isinstance(self.sock, ssl.SSLSocket) else 0
        return bool(self.buf) or pending > 0

    def read_head(self):
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self.buf[: end + 4])
                del self.buf[: end + 4]
                return head
            if len(self.buf) > MAX_HEAD:
                raise Closed("head too large")
            self.fill()

    def readline(self):
        while True:
            end = self.buf.find(b"\r\n")
            if end >= 0:
                line = bytes(self.buf[: end + 2])
                del self.buf[: end + 2]
                return line
            if len(self.buf) > MAX_HEAD:
                raise Closed("line too long")
            self.fill()

    def read_exact(self, n):
        while len(self.buf) < n:
            self.fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_some(self, limit):
        if not self.buf:
            self.fill()
        data = bytes(self.buf[:limit])
        del self.buf[:limit]
        return data


def parse_head(head):
    """Returns (start line parts, [(name, value)]) of an HTTP/1.x message head."""
    lines = head.decode("latin-1").split("\r\n")
    start = lines[0].split(" ", 2)
    if len(start) < 2:
        raise Closed("bad start line")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise Closed("bad header line")
        headers.append((name.strip(), value.strip()))
    return start, headers


def header(headers, name):
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def is_chunked(headers):
    te = header(headers, "transfer-encoding")
    return te is not None and "chunked" in te.lower()


def wants_close(version, headers):
    conn = (header(headers, "connection") or "").lower()
    if version == "HTTP/1.0":
        return "keep-alive" not in conn
    return "close" in conn


def is_watch(target):
    url = urllib.parse.urlsplit(target)
    query = urllib.parse.parse_qs(url.query)
    return query.get("watch", [""])[0] in ("true", "1") or "/watch/" in url.path


def status_body(code, reason, message, details=None):
    """A metav1.Status as the API server encodes it (TypeMeta, ListMeta, then the fields)."""
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason}
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def gone_status():
    # Numbers are arbitrary but shaped like the cacher's "too old resource version: %d (%d)".
    return status_body(410, "Expired", "too old resource version: 1 (2)")


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.connections = 0
        self.active = 0
        self.requests = 0
        self.by_path = {}
        self.upstream_connections = 0
        self.faults_applied = 0
        self.per_connection = []  # requests served on each client connection, in accept order

    def snapshot(self):
        with self.lock:
            return {"connections": self.connections, "active_connections": self.active,
                    "requests": self.requests, "by_path": dict(self.by_path),
                    "upstream_connections": self.upstream_connections,
                    "faults_applied": self.faults_applied,
                    "per_connection": list(self.per_connection)}


class Fault:
    """The one active fault; `take` decides (and counts) whether it applies to a request."""

    def __init__(self):
        self.lock = threading.Lock()
        self.spec = {"kind": "none"}

    def set(self, spec):
        kind = spec.get("kind")
        if kind not in KINDS:
            raise ValueError("kind must be one of " + ", ".join(KINDS))
        spec = dict(spec)
        spec.setdefault("count", 1)
        if not isinstance(spec["count"], int) or spec["count"] < -1:
            raise ValueError("count must be an integer >= -1")
        if kind == "status" and spec.get("status") not in (429, 500, 503):
            raise ValueError("status must be 429, 500 or 503")
        if "delay_ms" in spec and not isinstance(spec["delay_ms"], (int, float)):
            raise ValueError("delay_ms must be a number")
        if spec.get("form", "auto") not in ("auto", "status", "event", "text"):
            raise ValueError("form must be auto, status, event or text")
        with self.lock:
            self.spec = spec

    def take(self, target):
        with self.lock:
            spec = self.spec
            if spec["kind"] == "none" or spec["count"] == 0:
                return None
            path = urllib.parse.urlsplit(target).path
            if not path.startswith(spec.get("path_prefix", "")):
                return None
            if spec["kind"] == "drop_watch" and not is_watch(target):
                return None
            if spec["count"] > 0:
                spec["count"] -= 1
            return dict(spec)


class Proxy:
    def __init__(self, upstream, ca, cert, key):
        url = urllib.parse.urlsplit(upstream)
        if url.scheme != "https" or not url.hostname or not url.port:
            raise ValueError("--upstream must be https://HOST:PORT")
        self.up_host, self.up_port = url.hostname, url.port
        self.up_ctx = ssl.create_default_context(cafile=ca)
        self.srv_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.srv_ctx.load_cert_chain(cert, key)
        self.stats = Stats()
        self.fault = Fault()

    # -- per-connection loop --------------------------------------------------------------------
    def serve(self, raw):
        try:
            client = self.srv_ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        with self.stats.lock:
            self.stats.connections += 1
            self.stats.active += 1
            index = len(self.stats.per_connection)
            self.stats.per_connection.append(0)
        conn = Connection(self, client, index)
        try:
            conn.run()
        except Closed:
            pass
        except Exception as e:  # noqa: BLE001 - bad input ends the connection, not the proxy
            print("faultproxy: connection %d: %r" % (index, e), file=sys.stderr, flush=True)
        finally:
            conn.close()
            with self.stats.lock:
                self.stats.active -= 1

    def connect_upstream(self):
        raw = socket.create_connection((self.up_host, self.up_port), timeout=30)
        sock = self.up_ctx.wrap_socket(raw, server_hostname=self.up_host)
        sock.settimeout(None)
        with self.stats.lock:
            self.stats.upstream_connections += 1
        return sock


def abort(sock):
    """Closes without a TLS close_notify, so the client sees a truncated stream."""
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class Connection:
    def __init__(self, proxy, client, index):
        self.proxy = proxy
        self.client = client
        self.cin = Reader(client)
        self.index = index
        self.up = None
        self.uin = None

    def close(self):
        abort(self.client)
        self.drop_upstream()

    def drop_upstream(self):
        abort(self.up)
        self.up, self.uin = None, None

    def send(self, data):
        try:
            self.client.sendall(data)
        except (OSError, ssl.SSLError) as e:
            raise Closed(str(e)) from e

    def run(self):
        while True:
            head = self.cin.read_head()
            (method, target, version), headers = parse_head(head)
            body = self.read_request_body(headers)
            self.count(target)
            fault = self.proxy.fault.take(target)
            if fault is not None:
                with self.proxy.stats.lock:
                    self.proxy.stats.faults_applied += 1
            keep = self.handle(method, target, version, headers, body, fault)
            if not keep or wants_close(version, headers):
                return

    def count(self, target):
        path = urllib.parse.urlsplit(target).path
        st = self.proxy.stats
        with st.lock:
            st.requests += 1
            st.by_path[path] = st.by_path.get(path, 0) + 1
            if self.index < len(st.per_connection):
                st.per_connection[self.index] += 1

    def read_request_body(self, headers):
        if is_chunked(headers):
            # Re-framed with Content-Length towards the upstream (simpler, equivalent).
            parts = []
            while True:
                size = int(self.cin.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.cin.readline() != b"\r\n":
                        pass
                    return b"".join(parts)
                parts.append(self.cin.read_exact(size))
                self.cin.read_exact(2)
        length = int(header(headers, "content-length") or 0)
        return self.cin.read_exact(length) if length > 0 else b""

    # -- faults answered locally ----------------------------------------------------------------
    def respond(self, code, reason, headers, body):
        lines = ["HTTP/1.1 %d %s" % (code, reason)] + ["%s: %s" % h for h in headers]
        lines.append("Content-Length: %d" % len(body))
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def respond_status(self, fault):
        code = fault["status"]
        extra = []
        if fault.get("retry_after") is not None:
            extra.append(("Retry-After", str(fault["retry_after"])))
        if code == 429 and fault.get("form") == "text":
            body = b"Too many requests, please try again later.\n"
            self.respond(429, "Too Many Requests", extra + [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("X-Content-Type-Options", "nosniff")], body)
            return
        if code == 429:
            ra = fault.get("retry_after")
            secs = int(ra) if ra is not None and str(ra).isdigit() else 0
            st = status_body(429, "TooManyRequests", "faultproxy: too many requests",
                             {"retryAfterSeconds": secs} if secs else None)
            reason = "Too Many Requests"
        elif code == 503:
            # apimachinery errors.NewServiceUnavailable: reason ServiceUnavailable, code 503 (an
            # aggregated API server or the apiserver's own overload answer, with Retry-After).
            st = status_body(503, "ServiceUnavailable", "faultproxy: service unavailable")
            reason = "Service Unavailable"
        else:
            st = status_body(500, "InternalError", "Internal error occurred: faultproxy",
                             {"causes": [{"message": "faultproxy"}]})
            reason = "Internal Server Error"
        body = json.dumps(st, separators=(",", ":")).encode() + b"\n"
        self.respond(code, reason, extra + [("Content-Type", "application/json")], body)

    def respond_gone(self, target, fault):
        form = fault.get("form", "auto")
        if form == "auto":
            form = "event" if is_watch(target) else "status"
        st = json.dumps(gone_status(), separators=(",", ":"))
        if form == "status":
            self.respond(410, "Gone", [("Content-Type", "application/json")],
                         st.encode() + b"\n")
            return
        event = ('{"type":"ERROR","object":%s}\n' % st).encode()
        self.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n"
                  + b"%x\r\n" % len(event) + event + b"\r\n0\r\n\r\n")

    # -- forwarding -----------------------------------------------------------------------------
    def handle(self, method, target, version, headers, body, fault):
        kind = fault["kind"] if fault else "none"
        if kind == "status":
            self.respond_status(fault)
            return True
        if kind == "gone":
            self.respond_gone(target, fault)
            return True
        if kind == "delay":
            self.sleep_watching_client(fault.get("delay_ms", 1000) / 1000.0)
        self.forward_request(method, target, headers, body)
        return self.relay_response(method, kind, fault)

    def sleep_watching_client(self, secs):
        deadline = time.monotonic() + secs
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.check_client(min(left, 0.2))

    def check_client(self, timeout):
        """Waits up to timeout; raises Closed if the client has gone away meanwhile."""
        r, _, _ = select.select([self.client], [], [], timeout)
        if r:
            self.client.settimeout(0.5)
            try:
                self.cin.fill()  # pipelined bytes are kept for the next request
            except socket.timeout:
                pass
            finally:
                self.client.settimeout(None)

    def forward_request(self, method, target, headers, body):
        for attempt in (0, 1):
            if self.up is None:
                self.up = self.proxy.connect_upstream()
                self.uin = Reader(self.up)
            out = ["%s %s HTTP/1.1" % (method, target)]
            for k, v in headers:
                if k.lower() not in ("transfer-encoding", "content-length", "proxy-connection"):
                    out.append("%s: %s" % (k, v))
            if body or method in ("POST", "PUT", "PATCH"):
                out.append("Content-Length: %d" % len(body))
            try:
                self.up.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)
                return
            except (OSError, ssl.SSLError):
                # The API server may have closed an idle upstream connection: reconnect once.
                self.drop_upstream()
                if attempt:
                    raise Closed("upstream send failed")

    def relay_response(self, method, kind, fault):
        head = self.uin.read_head()
        (version, code, *_), headers = parse_head(head)
        code = int(code)
        self.send(head)
        no_body = method == "HEAD" or code in (204, 304) or 100 <= code < 200
        if no_body:
            return not wants_close(version, headers)
        if kind == "drop_mid_body":
            self.drop_mid_body(headers)
        if kind == "drop_watch":
            self.drop_after(fault.get("delay_ms", 100) / 1000.0)
        if is_chunked(headers):
            self.relay_chunked()
        elif header(headers, "content-length") is not None:
            self.relay_length(int(header(headers, "content-length")))
        else:
            self.relay_until_eof()
            return False
        return not wants_close(version, headers)

    def drop_mid_body(self, headers):
        """Relays half of the first body bytes that arrive, then closes abruptly."""
        length = header(headers, "content-length")
        if length is not None and int(length) == 0:
            raise Closed("drop_mid_body")
        self.wait_upstream()
        data = self.uin.read_some(int(length) if length else 65536)
        self.send(data[: len(data) // 2])
        raise Closed("drop_mid_body")

    def drop_after(self, secs):
        deadline = time.monotonic() + secs
        while time.monotonic() < deadline:
            if self.wait_upstream(deadline - time.monotonic()):
                self.send(self.uin.read_some(65536))
        raise Closed("drop_watch")

    def wait_upstream(self, timeout=None):
        """Waits for upstream bytes while noticing a client that has gone (a watch can be idle
        for minutes; without this its thread would outlive the client). Returns False on
        timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.uin.has_data():
            step = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            r, _, _ = select.select([self.up, self.client], [], [], step)
            if self.client in r:
                self.check_client(0)
            if self.up in r:
                self.uin.fill()
            elif deadline is not None and time.monotonic() >= deadline:
                return False
        return True

    def relay_chunked(self):
        # Each chunk is passed on as soon as it is complete: watch events must not be held back.
        while True:
            self.wait_upstream()
            line = self.uin.readline()
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                trailer = line
                while True:
                    t = self.uin.readline()
                    trailer += t
                    if t == b"\r\n":
                        break
                self.send(trailer)
                return
            self.send(line + self.uin.read_exact(size + 2))

    def relay_length(self, n):
        while n > 0:
            self.wait_upstream()
            data = self.uin.read_some(min(n, 65536))
            n -= len(data)
            self.send(data)

    def relay_until_eof(self):
        try:
            while True:
                self.wait_upstream()
                self.send(self.uin.read_some(65536))
        except Closed:
            return


# -- control API ---------------------------------------------------------------------------------
def control_handler(proxy):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet: tests read stats, not logs
            pass

        def reply(self, code, obj):
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/stats":
                self.reply(200, proxy.stats.snapshot())
            elif self.path == "/fault":
                with proxy.fault.lock:
                    self.reply(200, dict(proxy.fault.spec))
            else:
                self.reply(404, {"error": "not found"})

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.path == "/reset":
                proxy.fault.set({"kind": "none"})
                with proxy.stats.lock:
                    proxy.stats.reset()
                self.reply(200, {"ok": True})
            elif self.path == "/fault":
                try:
                    spec = json.loads(raw or b"{}")
                    if not isinstance(spec, dict):
                        raise ValueError("body must be a JSON object")
                    proxy.fault.set(spec)
                except ValueError as e:
                    self.reply(400, {"error": str(e)})
                    return
                self.reply(200, {"ok": True})
            else:
                self.reply(404, {"error": "not found"})

    return Handler


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def parse_hostport(s):
    host, _, port = s.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--port-file")
    ap.add_argument("--control-port-file")
    ap.add_argument("--control-listen", default="127.0.0.1:0")
    args = ap.parse_args()

    proxy = Proxy(args.upstream, args.ca, args.cert, args.key)
    host, port = parse_hostport(args.listen)
    lsock = socket.create_server((host, port), backlog=128)
    chost, cport = parse_hostport(args.control_listen)
    control = ThreadingHTTPServer((chost, cport), control_handler(proxy))
    control.daemon_threads = True
    threading.Thread(target=control.serve_forever, daemon=True).start()

    port = lsock.getsockname()[1]
    if args.port_file:
        write_atomic(args.port_file, "%d\n" % port)
    if args.control_port_file:
        write_atomic(args.control_port_file, "%d\n" % control.server_address[1])
    print("faultproxy: listening on %s:%d, control on %s:%d" % (
        host, port, chost, control.server_address[1]), file=sys.stderr, flush=True)

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        raw, _ = lsock.accept()
        threading.Thread(target=proxy.serve, args=(raw,), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
