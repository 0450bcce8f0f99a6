#!/usr/bin/env python3
"""Scripted TCP/TLS test server for evscale's network unit tests (stream, TLS, HTTP client).

Standard library only. Writes its port to --port-file once listening, serves until killed.

  net_server.py --mode echo|http [--tls-cert C --tls-key K] [--client-ca CA] --port-file F

Mode echo: echoes every byte back (stream tests).
Mode http: HTTP/1.1 with keep-alive; it counts connections and requests (GET /stats) so reuse is
observable server-side, and each path scripts one behaviour (see `route`). Responses are written
byte-exactly, which is why this is not http.server.
"""
import argparse
import json
import os
import socket
import socketserver
import ssl
import sys
import threading
import time

STATS = {"connections": 0, "requests": 0}
LOCK = threading.Lock()


def bump(key):
    with LOCK:
        STATS[key] += 1


def read_request(f):
    """Returns (method, path, headers, body) or None at EOF."""
    line = f.readline(65536)
    if not line:
        return None
    while line in (b"\r\n", b"\n"):
        line = f.readline(65536)
        if not line:
            return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    headers = {}
    while True:
        h = f.readline(65536)
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    body = f.read(n) if n else b""
    return method, path, headers, body


def resp(status, body=b"", extra=None, reason="X"):
    hs = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}"]
    hs += extra or []
    return ("\r\n".join(hs) + "\r\n\r\n").encode() + body


def chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


def route(sock, method, path, headers, body):
    """Writes the response; returns False to close the connection afterwards."""
    parts = path.split("?")[0].strip("/").split("/")
    name = parts[0]
    if name == "stats":
        with LOCK:
            data = json.dumps(STATS).encode()
        sock.sendall(resp(200, data, ["Content-Type: application/json"]))
    elif name == "hello":
        sock.sendall(resp(200, b"hello"))
    elif name == "cl":
        sock.sendall(resp(200, b"a" * int(parts[1])))
    elif name == "chunked":
        n, k = int(parts[1]), int(parts[2])
        out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        data = b"".join(bytes([97 + i % 26]) for i in range(n))
        step = max(1, n // k)
        for i in range(0, n, step):
            out += chunk(data[i:i + step])
        sock.sendall(out + b"0\r\nX-Trailer: t\r\n\r\n")
    elif name == "stream":
        k, ms = int(parts[1]), int(parts[2])
        sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(k):
            time.sleep(ms / 1000.0)
            sock.sendall(chunk(b"event-%d\n" % i))
        sock.sendall(b"0\r\n\r\n")
    elif name == "forever":
        sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        i = 0
        while True:
            sock.sendall(chunk(b"tick-%d\n" % i))
            i += 1
            time.sleep(0.1)
    elif name == "hang":
        time.sleep(3600)
    elif name == "slow":
        time.sleep(int(parts[1]) / 1000.0)
        sock.sendall(resp(200, b"slow"))
    elif name == "close":
        stage = parts[1]
        prefix = {
            "before_status": b"",
            "mid_status": b"HTTP/1.1 2",
            "mid_headers": b"HTTP/1.1 200 OK\r\nContent-Le",
            "after_headers": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
            "mid_body": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
            "mid_chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n012",
            "mid_chunk_size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n",
        }[stage]
        sock.sendall(prefix)
        return False
    elif name == "connclose":
        sock.sendall(resp(200, b"bye", ["Connection: close"]))
        return False
    elif name == "http10":
        sock.sendall(b"HTTP/1.0 200 OK\r\n\r\nuntil-close body")
        return False
    elif name == "redirect":
        sock.sendall(resp(302, b"", ["Location: /hello"]))
    elif name == "head":
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    elif name == "echo":
        sock.sendall(resp(200, body, ["X-Method: " + method,
                                      "X-Host: " + headers.get("host", "")]))
    elif name == "status":
        code = int(parts[1])
        extra = ["Retry-After: 3"] if code in (429, 503) else []
        sock.sendall(resp(code, b"status", extra))
    elif name == "continue":
        sock.sendall(b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n"
                     b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + resp(200, b"final"))
    elif name == "garbage":
        sock.sendall(b"HTTP/1.1 abc nonsense\r\n\r\n")
        return False
    elif name == "extra":
        sock.sendall(resp(200, b"ok") + b"HTTP/1.1 200 OK\r\n")
    elif name == "arm_drop":
        # Answers normally, then closes this connection on its next request without a byte:
        # what a server's idle-close racing the client's reuse looks like.
        sock.sendall(resp(200, b"armed"))
        return "drop_next"
    elif name == "bigheaders":
        sock.sendall(resp(200, b"x", ["X-Big: " + "h" * int(parts[1])]))
    else:
        sock.sendall(resp(404, b"not found"))
    return True


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        bump("connections")
        sock = self.request
        if CTX is not None:
            try:
                sock = CTX.wrap_socket(sock, server_side=True)
            except (ssl.SSLError, OSError):
                return
        try:
            if MODE == "echo":
                while True:
                    data = sock.recv(65536)
                    if not data:
                        break
                    sock.sendall(data)
                return
            f = sock.makefile("rb")
            drop_next = False
            while True:
                req = read_request(f)
                if req is None:
                    break
                bump("requests")
                if drop_next:
                    break
                ret = route(sock, *req)
                if not ret:
                    break
                drop_next = ret == "drop_next"
        except (OSError, ValueError, ssl.SSLError):
            pass
        finally:
            try:
                sock.close()
            except OSError:
                pass


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    global CTX, MODE
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="http", choices=["http", "echo"])
    ap.add_argument("--listen", default="127.0.0.1")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--client-ca")
    ap.add_argument("--port-file", required=True)
    a = ap.parse_args()
    MODE = a.mode
    CTX = None
    if a.tls_cert:
        CTX = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        CTX.load_cert_chain(a.tls_cert, a.tls_key)
        if a.client_ca:
            CTX.load_verify_locations(a.client_ca)
            CTX.verify_mode = ssl.CERT_REQUIRED
    fam = socket.AF_INET6 if ":" in a.listen else socket.AF_INET
    Server.address_family = fam
    srv = Server((a.listen, 0), Handler)
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(str(srv.server_address[1]))
    os.rename(tmp, a.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
