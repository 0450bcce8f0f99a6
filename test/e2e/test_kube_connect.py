#!/usr/bin/env python3
"""End to end: `evscale run --dry-run` pointed at the local control plane (kube-apiserver 1.20,
evstest.controlplane()) through each credential form connects, runs discovery, says so in its
log, and /readyz turns 200 only then:

  - a kubeconfig with a token (kubernetes.kubeconfig),
  - a kubeconfig with a client certificate and key (through $KUBECONFIG),
  - a kubeconfig with an exec credential plugin (client.authentication.k8s.io/v1),
  - in-cluster: KUBERNETES_SERVICE_HOST/PORT and a service-account directory.

And: an unreachable server keeps /readyz at 503 with a clear, retried error (not fatal); a
kubeconfig evscale refuses (proxy-url) is logged naming the file and the field.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evstest  # noqa: E402
from evstest import BIN, get  # noqa: E402


class KubeConnect(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = evstest.controlplane()

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="evs-kconn-")
        self.proc = None
        self.logf = None

    def tearDown(self):
        if self.proc is not None:
            evstest.stop_evscale(self.proc, self.logf, exit_code=None, timeout=20)
        shutil.rmtree(self.dir, ignore_errors=True)

    def logs(self):
        return evstest.read_log(self.logf) if self.logf else ""

    def lines(self):
        return evstest.log_records(self.logs())

    def write(self, name, text, mode=0o600):
        p = os.path.join(self.dir, name)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)
        return p

    def kubeconfig(self, name, user, server=None):
        e = self.env
        return self.write(name, (
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n"
            f"    server: {server or e['KUBE_API_URL']}\n"
            f"    certificate-authority: {e['KUBE_CA']}\n"
            f"users:\n- name: u\n  user:\n{user}"
            "contexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n"))

    def start(self, extra_cfg="", env_add=None):
        self.port = evstest.free_port()
        cfg = self.write("config.yaml", evstest.evscale_config(
            self.port, backoff=("200ms", "1s"), extra=extra_cfg))
        env = evstest.evscale_env(self.dir, **(env_add or {}))  # no ~/.kube/config
        self.logf = open(os.path.join(self.dir, "log"), "w+")
        self.proc = subprocess.Popen([BIN, "run", "--dry-run", "--config", cfg,
                                      "--log-format", "json"],
                                     stdout=self.logf, stderr=subprocess.STDOUT, env=env)
        self.base = "http://127.0.0.1:%d" % self.port
        evstest.wait_until(lambda: get(self.base + "/healthz")[0] == 200, timeout=60,
                           what="/healthz")

    def connected(self, timeout=60):
        def line():
            for r in self.lines():
                if r.get("msg") == "connected to Kubernetes":
                    return r
            if self.proc.poll() is not None:
                raise AssertionError("evscale exited:\n" + self.logs()[-3000:])
            return None
        r = evstest.wait_until(line, timeout=timeout, what="'connected to Kubernetes' in the log")
        self.assertEqual(r["server"], self.env["KUBE_API_URL"])
        self.assertEqual(r["hpa"], "autoscaling/v2beta2")
        self.assertGreaterEqual(r["scalable_kinds"], 4)  # deployments, statefulsets, replicasets, rcs
        self.assertEqual(r["version"], "v1.20.2")
        self.assertTrue(r["dry_run"])
        evstest.wait_until(lambda: get(self.base + "/readyz")[0] == 200, timeout=30,
                           what="/readyz 200")
        return r

    def test_token_kubeconfig(self):
        kc = self.kubeconfig("kc.yaml", f"    token: {self.env['KUBE_TOKEN']}\n")
        self.start(f"kubernetes:\n  kubeconfig: {kc}\n")
        r = self.connected()
        self.assertIn("token", r["as"])
        self.assertIn(kc, r["as"])
        _, metrics = get(self.base + "/metrics")
        self.assertIn('evscale_kube_requests_total{verb="GET",resource="discovery",code="200"}',
                      metrics)
        self.assertIn("evscale_kube_ratelimiter_wait_seconds_bucket", metrics)
        self.assertIn("evscale_kube_connections", metrics)
        # A clean stop with the client open: every handle closes, exit 0.
        self.proc.terminate()
        self.assertEqual(self.proc.wait(30), 0)
        self.assertIn("evscale stopped", self.logs())

    def test_client_cert_kubeconfig_through_env(self):
        kc = self.kubeconfig("kc.yaml", f"    client-certificate: {self.env['KUBE_CLIENT_CERT']}\n"
                             f"    client-key: {self.env['KUBE_CLIENT_KEY']}\n")
        self.start(env_add={"KUBECONFIG": kc})
        r = self.connected()
        self.assertIn("client certificate", r["as"])

    def test_exec_plugin_kubeconfig(self):
        plugin = self.write("plugin.sh", (
            "#!/bin/sh\nprintf '{\"apiVersion\":\"client.authentication.k8s.io/v1\","
            "\"kind\":\"ExecCredential\",\"status\":{\"token\":\"%s\"}}' \"$EVS_T\"\n"), 0o755)
        kc = self.kubeconfig("kc.yaml", (
            "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n"
            f"      command: {plugin}\n      interactiveMode: Never\n"
            f"      env: [{{name: EVS_T, value: '{self.env['KUBE_TOKEN']}'}}]\n"))
        self.start(f"kubernetes:\n  kubeconfig: {kc}\n")
        r = self.connected()
        self.assertIn("exec plugin", r["as"])

    def test_in_cluster(self):
        sa = os.path.join(self.dir, "sa")
        os.makedirs(sa)
        with open(os.path.join(sa, "token"), "w") as f:
            f.write(self.env["KUBE_TOKEN"] + "\n")
        with open(os.path.join(sa, "namespace"), "w") as f:
            f.write("evs-system")
        shutil.copy(self.env["KUBE_CA"], os.path.join(sa, "ca.crt"))
        port = self.env["KUBE_API_URL"].rsplit(":", 1)[1]
        self.start(f"kubernetes:\n  service_account_dir: {sa}\n",
                   env_add={"KUBERNETES_SERVICE_HOST": "127.0.0.1",
                            "KUBERNETES_SERVICE_PORT": port})
        r = self.connected()
        self.assertIn("in-cluster", r["as"])

    def test_unreachable_then_not_ready_and_retried(self):
        closed = evstest.free_port()
        kc = self.kubeconfig("kc.yaml", f"    token: {self.env['KUBE_TOKEN']}\n",
                             server=f"https://127.0.0.1:{closed}")
        self.start(f"kubernetes:\n  kubeconfig: {kc}\n")

        def two_failures():
            errs = [r for r in self.lines() if r.get("msg") == "Kubernetes API discovery failed"]
            return len(errs) >= 2 and errs
        errs = evstest.wait_until(two_failures, timeout=60, what="two logged, retried failures")
        self.assertIn("retry_in_ms", errs[0])
        self.assertIn("refused", errs[0]["error"])
        status, body = get(self.base + "/readyz")
        self.assertEqual(status, 503)
        self.assertIn("kubernetes", body)
        self.assertIsNone(self.proc.poll())  # not fatal
        self.proc.terminate()  # a stop while retrying is clean too
        self.assertEqual(self.proc.wait(30), 0)

    def test_bad_kubeconfig_is_logged_clearly(self):
        kc = self.write("kc.yaml", (
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n"
            "    server: https://127.0.0.1:1\n    proxy-url: http://proxy:3128\n"
            "users:\n- name: u\n  user: {token: x}\ncontexts:\n- name: x\n"
            "  context: {cluster: c, user: u}\ncurrent-context: x\n"))
        self.start(f"kubernetes:\n  kubeconfig: {kc}\n")

        def failure():
            for r in self.lines():
                if r.get("msg") == "cannot connect to Kubernetes":
                    return r
            return None
        r = evstest.wait_until(failure, timeout=30, what="the connect error")
        self.assertIn("proxy-url", r["error"])
        self.assertIn("kc.yaml", r["error"])
        self.assertEqual(get(self.base + "/readyz")[0], 503)


if __name__ == "__main__":
    unittest.main(verbosity=2)
