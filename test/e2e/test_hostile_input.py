#!/usr/bin/env python3
"""End to end (issue 9): the real process against an impatient operator and odd files.

- A second SIGTERM, or a SIGHUP, during the shutdown grace (held open by a client that pipelines
  /metrics and never reads) must end in exit 0 and "evscale stopped", not death by signal.
- A FIFO, a directory, /dev/zero, an unreadable or a missing file given to `run` or
  `check-config` is refused at once with a message naming the file.
- A FIFO swapped in through the ConfigMap's `..data` link during `run`: the reload fails with a
  clear error, the configuration in force stays, later reloads still work, SIGTERM exits promptly.
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evstest  # noqa: E402
from evstest import BIN, assert_clean, get, run, wait_until  # noqa: E402


class Daemon(evstest.ConfigMapDaemon):
    """`evscale run` on a ConfigMap-style mount (config.yaml -> ..data/config.yaml)."""

    def slow_client(self):
        """A client that pipelines /metrics and never reads: its responses cannot all be
        written, so the shutdown grace is in force until it ends."""
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", self.port))
        s.setblocking(False)
        req = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        sent = 0
        try:
            for _ in range(3000):
                sent += s.send(req)
        except BlockingIOError:
            pass
        self.assertGreater(sent, 0)
        time.sleep(1.0)  # let the server render and fill the socket buffers
        return s

    def stop_with_grace_in_force(self):
        s = self.slow_client()
        self.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "shutting down" in self.logs(), what="shutdown start")
        time.sleep(0.5)
        # Without a held connection this test would prove nothing: the process must still be
        # waiting for the slow client.
        self.assertIsNone(self.proc.poll(), "the grace should still be running:\n" + self.logs())
        return s


class SecondSignal(Daemon):
    grace = "60s"

    def test_second_sigterm_ends_the_grace_cleanly(self):
        s = self.stop_with_grace_in_force()
        t0 = time.time()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self.assertEqual(code, 0, self.logs())
        self.assertLess(time.time() - t0, 20, "a second SIGTERM should end the 60 s grace")
        self.assertIn('"msg":"evscale stopped"', self.logs())
        self.assertIn("second stop signal", self.logs())
        s.close()

    def test_sigint_after_sigterm_ends_the_grace_cleanly(self):
        s = self.stop_with_grace_in_force()
        self.proc.send_signal(signal.SIGINT)
        self.assertEqual(self.proc.wait(timeout=30), 0, self.logs())
        self.assertIn('"msg":"evscale stopped"', self.logs())
        s.close()


class HupWhileStopping(Daemon):
    grace = "3s"

    def test_sighup_during_grace_is_ignored(self):
        s = self.stop_with_grace_in_force()
        self.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "SIGHUP ignored" in self.logs(), what="SIGHUP logged")
        # The grace (3 s) runs out and the process exits the clean way.
        self.assertEqual(self.proc.wait(timeout=30), 0, self.logs())
        self.assertIn('"msg":"evscale stopped"', self.logs())
        self.assertNotIn("configuration reloaded", self.logs())
        s.close()


class FifoSwappedIn(Daemon):
    def test_fifo_through_data_link(self):
        before_fail = self.reloads("failure")
        before_ok = self.reloads("success")
        ts = self.new_generation()
        fifo = os.path.join(ts, "config.yaml")
        os.mkfifo(fifo)
        self.swap(ts)
        self.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: self.reloads("failure") >= before_fail + 1, what="failed reload")
        errors = [r.get("error", "") for r in self.log_lines()
                  if r.get("msg") == "configuration rejected; keeping the one in force"]
        self.assertTrue(any("not a regular file" in e and "config.yaml" in e for e in errors),
                        self.logs())
        self.assertEqual(get(self.base + "/healthz")[0], 200)
        # The configuration in force stays (still info: a debug line would say otherwise).
        self.assertEqual(self.reloads("success"), before_ok)
        # A later ConfigMap update reloads as usual (the thread pool is not stuck on the FIFO).
        self.publish(self.config("debug"))
        wait_until(lambda: self.reloads("success") >= before_ok + 1, what="reload after FIFO")
        # SIGTERM exits promptly.
        t0 = time.time()
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(timeout=30), 0, self.logs())
        self.assertLess(time.time() - t0, 10)
        self.assertIn('"msg":"evscale stopped"', self.logs())


class OddFiles(unittest.TestCase):
    """`run` and `check-config` on files that are not configuration files."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        os.chmod(self.dir.name, 0o755)
        self.fifo = os.path.join(self.dir.name, "fifo.yaml")
        os.mkfifo(self.fifo)

    def tearDown(self):
        self.dir.cleanup()

    def check(self, command, path, why, **kw):
        t0 = time.time()
        r = run(command, "--config", path, timeout=30, **kw)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(f"{path}: cannot read: {why}", r.stderr)
        self.assertLess(time.time() - t0, 20)

    def test_odd_files_refused_by_every_command(self):
        cases = [
            (self.fifo, "not a regular file (a FIFO, socket or device)"),
            (self.dir.name, "is a directory, not a file"),
            ("/dev/zero", "not a regular file (a FIFO, socket or device)"),
            (os.path.join(self.dir.name, "missing.yaml"), "no such file or directory"),
        ]
        for command in ("check-config", "run"):
            for path, why in cases:
                with self.subTest(command=command, path=path):
                    self.check(command, path, why)

    def test_simulate_refuses_odd_files(self):
        so = os.path.join(self.dir.name, "so.yaml")
        with open(so, "w") as f:
            f.write("apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: s}\n"
                    "spec:\n  scaleTargetRef: {name: d}\n  triggers:\n"
                    "  - type: redis\n    metadata: {listName: q, listLength: '5'}\n")
        csv = os.path.join(self.dir.name, "r.csv")
        with open(csv, "w") as f:
            f.write("time,trigger,value\n0,0,1\n")
        for path, why in [(self.fifo, "not a regular file (a FIFO, socket or device)"),
                          (self.dir.name, "is a directory, not a file"),
                          ("/dev/zero", "not a regular file (a FIFO, socket or device)")]:
            # the odd file as the ScaledObject, then as the readings
            for argv in ([path, csv], [so, path]):
                with self.subTest(argv=argv):
                    t0 = time.time()
                    r = subprocess.run([BIN, "simulate"] + argv, capture_output=True, text=True,
                                       timeout=30)
                    self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                    self.assertIn(f"{path}: cannot read: {why}", r.stderr)
                    self.assertLess(time.time() - t0, 20)

    def test_unreadable_file(self):
        path = os.path.join(self.dir.name, "secret.yaml")
        with open(path, "w") as f:
            f.write("log:\n  level: info\n")
        os.chmod(path, 0)
        kw = {}
        if os.geteuid() == 0:
            # root reads anything: run the binary as nobody (it and its path are world-readable)
            try:
                subprocess.run([BIN, "version"], user=65534, group=65534, capture_output=True,
                               check=True)
            except (OSError, subprocess.CalledProcessError) as e:
                self.skipTest(f"running as root and cannot run the binary as nobody: {e}")
            kw = {"user": 65534, "group": 65534}
        for command in ("check-config", "run"):
            r = subprocess.run([BIN, command, "--config", path], capture_output=True, text=True,
                               timeout=30, **kw)
            assert_clean(r.stdout + r.stderr)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn(f"{path}: cannot read: permission denied", r.stderr)


class CheckConfigOutput(unittest.TestCase):
    """What check-config prints: no secret in clear, no raw control byte."""

    def write(self, text):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        path = os.path.join(self.dir.name, "c.yaml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_redis_address_userinfo_masked(self):
        path = self.write("scaled_objects:\n"
                          "  - apiVersion: keda.sh/v1alpha1\n"
                          "    kind: ScaledObject\n"
                          "    metadata: {name: w}\n"
                          "    spec:\n"
                          "      scaleTargetRef: {name: w}\n"
                          "      triggers:\n"
                          "        - type: redis\n"
                          "          metadata:\n"
                          "            address: \"default:S3CRET@host:6379\"\n"
                          "            listName: q\n"
                          "            listLength: \"5\"\n")
        r = run("check-config", "--config", path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertNotIn("S3CRET", r.stdout + r.stderr)
        self.assertIn('address: "default:<redacted>@host:6379"', r.stdout)

    def test_control_bytes_escaped(self):
        # An unknown key with ESC [2J (clear screen) and a value with a CR: the error lines and
        # the dump show them escaped.
        path = self.write('log:\n  "lev\\e[2Jel": info\n')
        r = run("check-config", "--config", path)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertNotIn("\x1b", r.stdout + r.stderr)
        self.assertIn("lev\\x1b[2Jel", r.stderr)
        path = self.write("scaled_objects:\n"
                          "  - apiVersion: keda.sh/v1alpha1\n"
                          "    kind: ScaledObject\n"
                          "    metadata: {name: w}\n"
                          "    spec:\n"
                          "      scaleTargetRef: {name: w}\n"
                          "      triggers:\n"
                          "        - type: redis\n"
                          "          metadata:\n"
                          "            listName: \"q\\rX\\e[31m\"\n")
        r = run("check-config", "--config", path)
        out = r.stdout + r.stderr
        self.assertNotIn("\x1b", out)
        self.assertNotIn("\r", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
