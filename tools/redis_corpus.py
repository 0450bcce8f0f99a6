#!/usr/bin/env python3
"""Captures real RESP replies from a local redis-server into the seed corpus of
test/fuzz/fuzz_redis_reply.c:

    tools/redis_corpus.py test/fuzz/corpus/fuzz_redis_reply

Starts redis-server on a free loopback port (requirepass off, an ACL user without channel
rights, keyspace events on), sends each scenario's commands on a raw socket, and writes
<header byte><step byte><exact bytes the server sent>. The header byte tells the fuzzer the
connection mode (bit 0: subscriber) and how many requests to put in flight (bits 1-5)."""
import os, socket, subprocess, sys, tempfile, time

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out

def exchange(port, cmds, settle=0.3, during=None):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"".join(resp(*c) for c in cmds))
    if during:
        time.sleep(0.1); during()
    time.sleep(settle)
    s.setblocking(False)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk: break
            data += chunk
    except BlockingIOError:
        pass
    s.close()
    return data

def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    port = free_port()
    d = tempfile.mkdtemp()
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", d], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try: socket.create_connection(("127.0.0.1", port)).close(); break
            except OSError: time.sleep(0.05)
        def cli(*c): exchange(port, [c], settle=0.1)
        cli("ACL", "SETUSER", "nochan", "on", ">pw", "~*", "+@all", "resetchannels")
        cli("CONFIG", "SET", "notify-keyspace-events", "KEA")
        cli("RPUSH", "l", "a", "b", "c"); cli("ZADD", "z", "1", "a"); cli("SADD", "s", "x")
        cli("HSET", "h", "f", "v")
        cmd = [
            ("types", 0, [("LLEN", "l"), ("ZCARD", "z"), ("SCARD", "s"), ("HLEN", "h"),
                          ("TYPE", "l"), ("TYPE", "nokey"), ("LLEN", "nokey")]),
            ("wrongtype", 0, [("LLEN", "z"), ("GET", "nokey"), ("LRANGE", "l", "0", "-1")]),
            ("config_get", 0, [("CONFIG", "GET", "notify-keyspace-events")]),
            ("auth_wrongpass", 0, [("AUTH", "nochan", "bad"), ("AUTH", "nopass"), ("PING",)]),
            ("select", 0, [("SELECT", "3"), ("SELECT", "99"), ("PING",)]),
        ]
        for name, mode, cmds in cmd:
            data = exchange(port, cmds)
            hdr = bytes([mode | (len(cmds) << 1)])
            for step in (0, 1, 7):
                with open(os.path.join(out, "%s_%d" % (name, step)), "wb") as f:
                    f.write(hdr + bytes([step]) + data)
        # Subscriber: confirmations, pushes from another client's writes, PING, UNSUBSCRIBE.
        def pushes():
            cli("LPUSH", "l", "x"); cli("ZADD", "z", "2", "b"); cli("DEL", "s")
        subs = [("SUBSCRIBE", "a"), ("SUBSCRIBE", "__keyspace@0__:l"),
                ("SUBSCRIBE", "__keyspace@0__:z"), ("SUBSCRIBE", "__keyspace@0__:s")]
        data = exchange(port, subs, during=pushes)
        extra = exchange(port, subs[:1] + [("PING",), ("UNSUBSCRIBE", "a")])
        for step in (0, 1, 5):
            with open(os.path.join(out, "subscribe_%d" % step), "wb") as f:
                f.write(bytes([1 | (4 << 1), step]) + data)
            with open(os.path.join(out, "ping_unsub_%d" % step), "wb") as f:
                f.write(bytes([1 | (1 << 1), step]) + extra)
        # NOPERM: SUBSCRIBE by a user without channel rights.
        data = exchange(port, [("AUTH", "nochan", "pw"), ("SUBSCRIBE", "__keyspace@0__:l")])
        with open(os.path.join(out, "noperm"), "wb") as f:
            f.write(bytes([1 | (1 << 1), 0]) + data.split(b"\r\n", 1)[1])
    finally:
        p.kill(); p.wait()
        subprocess.run(["rm", "-rf", d])

main()
