#!/usr/bin/env python3
"""End to end: the evscale binary as an operator runs it.

Starts `evscale run` with a config file, scrapes /metrics, /healthz and /readyz, reloads with
SIGHUP (a good file, then a bad one that must be rejected while the old configuration stays),
reloads through the file watch (a ConfigMap-style `..data` symlink swap), and checks that
SIGTERM exits 0. Also the one-shot commands: check-config, version, help, usage errors.
"""
import os
import signal
import socket
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evstest  # noqa: E402
from evstest import get, metric, run, wait_until  # noqa: E402

SRC = evstest.SOURCE_DIR


class OneShotCommands(unittest.TestCase):
    def test_version_and_help(self):
        for args in (["version"], ["--version"]):
            r = run(*args)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertRegex(r.stdout, r"^evscale \d+\.\d+\.\d+")
        r = run("help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("check-config", r.stdout)
        r = run("help", "simulate")
        self.assertEqual(r.returncode, 0)
        self.assertIn("READINGS.csv", r.stdout)

    def test_version_names_the_commit_built(self):
        # The revision is written at build time (tools/revision.cmake), not when the build
        # directory was configured: a rebuild after a commit reports that commit. Checked only
        # for a binary built from this source tree (EVS_BINARY may name another tree's build).
        import re
        import subprocess
        binary = os.path.realpath(evstest.BIN)
        if not binary.startswith(os.path.realpath(SRC) + os.sep):
            self.skipTest("binary from another tree: " + binary)
        head = subprocess.run(["git", "-C", SRC, "rev-parse", "--short=12", "HEAD"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if head.returncode != 0:
            self.skipTest("source tree without git")
        r = run("--version")
        m = re.search(r"\(revision ([0-9a-f]+)(-dirty)?,", r.stdout)
        self.assertIsNotNone(m, r.stdout)
        self.assertEqual(m.group(1), head.stdout.strip(), r.stdout)

    def test_usage_errors_exit_2(self):
        for args in (["frobnicate"], ["run", "--bogus"], ["run", "--config"]):
            r = run(*args)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn("evscale", r.stderr)

    def test_check_config_shipped_files(self):
        for name in ("example.yaml", "dev.yaml", "staging.yaml", "prod.yaml"):
            path = os.path.join(SRC, "config", name)
            r = run("check-config", "--config", path)
            self.assertEqual(r.returncode, 0, f"{name}: {r.stdout}{r.stderr}")
            self.assertIn("circuit_breaker", r.stdout)

    def test_check_config_reports_every_error(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "bad.yaml")
            with open(path, "w") as f:
                f.write("server:\n  address: ':8080'\ncircuit_breakr:\n  enabled: true\n"
                        "engine:\n  tolerance: lots\n")
            r = run("check-config", "--config", path)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            out = r.stdout + r.stderr
            self.assertIn(f"{path}:3:1:", out)
            self.assertIn("circuit_breaker", out)  # the did-you-mean
            self.assertIn(f"{path}:6:14:", out)

    def test_check_config_validates_scaled_objects(self):
        # The file's ScaledObjects go through the same model as API objects: KEDA's webhook
        # checks and per-trigger parameters, each error at its position.
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "so.yaml")
            with open(path, "w") as f:
                f.write("scaled_objects:\n"
                        "  - apiVersion: keda.sh/v1alpha1\n"
                        "    kind: ScaledObject\n"
                        "    metadata: {name: a}\n"
                        "    spec:\n"
                        "      scaleTargetRef: {name: w}\n"
                        "      minReplicaCount: 5\n"
                        "      maxReplicaCount: 2\n"
                        "      triggers:\n"
                        "        - type: redis\n"
                        "          metadata: {listName: q, listLength: \"abc\"}\n")
            r = run("check-config", "--config", path)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn(f"{path}:7:24: spec.minReplicaCount:", r.stderr)
            self.assertIn(f"{path}:11:47: spec.triggers[0].metadata.listLength:", r.stderr)

    def test_check_config_refuses_unknown_time_zone(self):
        # evscale lists the system's tz database at start-up, so an unknown zone is refused like
        # a malformed expression, with its position.
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "cron.yaml")
            with open(path, "w") as f:
                f.write("scaled_objects:\n"
                        "  - apiVersion: keda.sh/v1alpha1\n"
                        "    kind: ScaledObject\n"
                        "    metadata: {name: office-hours}\n"
                        "    spec:\n"
                        "      scaleTargetRef: {name: w}\n"
                        "      triggers:\n"
                        "        - type: cron\n"
                        "          metadata:\n"
                        "            timezone: Europe/Atlantis\n"
                        "            start: 0 8 * * 1-5\n"
                        "            end: 0 18 * * 1-5\n"
                        "            desiredReplicas: \"4\"\n")
            r = run("check-config", "--config", path)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn(f"{path}:10:23: spec.triggers[0].metadata.timezone: unknown time zone "
                          "'Europe/Atlantis'", r.stderr)
            with open(path) as f:
                text = f.read().replace("Europe/Atlantis", "Europe/Berlin")
            with open(path, "w") as f:
                f.write(text)
            r = run("check-config", "--config", path)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_env_override_error_names_variable(self):
        env = dict(os.environ, EVSCALE_CIRCUIT_BREAKER_MAX_SCALE_EVENTS_PER_MINUTE="many")
        r = run("check-config", env=env)
        self.assertEqual(r.returncode, 1)
        self.assertIn("EVSCALE_CIRCUIT_BREAKER_MAX_SCALE_EVENTS_PER_MINUTE", r.stdout + r.stderr)

    def test_address_in_use_exits_3(self):
        with socket.socket() as s, tempfile.TemporaryDirectory() as d:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            # Without Kubernetes (evstest.evscale_env), should it get past the bind.
            r = run("run", env=evstest.evscale_env(d, EVSCALE_SERVER_ADDRESS=f"127.0.0.1:{port}"))
            self.assertEqual(r.returncode, 3, r.stderr)
            self.assertIn("address already in use", r.stderr)

    def test_run_with_broken_config_exits_1_with_position(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "bad.yaml")
            with open(path, "w") as f:
                f.write("log:\n  level: loud\n")
            r = run("run", "--config", path, env=evstest.evscale_env(d))
            self.assertEqual(r.returncode, 1)
            self.assertIn(f"{path}:2:10:", r.stdout + r.stderr)


class Daemon(evstest.ConfigMapDaemon):
    def test_endpoints_reload_and_shutdown(self):
        body = self.scrape()
        self.assertEqual(metric(body, "evscale_build_info"), 1)
        self.assertGreater(metric(body, "process_resident_memory_bytes"), 0)
        self.assertGreater(metric(body, "process_start_time_seconds"), 1.7e9)
        self.assertIsNotNone(metric(body, "process_open_fds"))
        self.assertEqual(get(self.base + "/readyz")[0], 200)
        self.assertEqual(get(self.base + "/nope")[0], 404)

        # SIGHUP with a good new file: applied.
        before_ok = self.reloads("success")
        self.publish(self.config("debug"))
        self.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: self.reloads("success") >= before_ok + 1, what="successful reload")

        # SIGHUP with a bad file: rejected with its position, old configuration kept, counted.
        before_fail = self.reloads("failure")
        self.publish(self.config("debug", "engine:\n  tolerance: -1\n"))
        self.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: self.reloads("failure") >= before_fail + 1, what="failed reload")
        self.assertIn("config.yaml:7:14", self.logs())
        self.assertEqual(metric(self.scrape(), "evscale_config_last_reload_successful"), 0)
        self.assertEqual(get(self.base + "/healthz")[0], 200)

        # The file watch alone (no signal): a ConfigMap update is picked up.
        before_ok = self.reloads("success")
        self.publish(self.config("info"))
        wait_until(lambda: self.reloads("success") >= before_ok + 1, timeout=30,
                   what="reload from the directory watch")
        self.assertEqual(metric(self.scrape(), "evscale_config_last_reload_successful"), 1)

        # SIGTERM: stop and exit 0 well within the grace period.
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(timeout=30), 0, self.logs())
        self.assertIn('"msg":"evscale stopped"', self.logs())

    def test_sigint_with_open_keepalive_connection(self):
        # An idle keep-alive client must not hold the process past its grace period.
        s = socket.create_connection(("127.0.0.1", self.port))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"200", s.recv(4096))
        t0 = time.time()
        self.proc.send_signal(signal.SIGINT)
        self.assertEqual(self.proc.wait(timeout=30), 0, self.logs())
        self.assertLess(time.time() - t0, 10)
        s.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
