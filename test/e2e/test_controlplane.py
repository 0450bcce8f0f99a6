#!/usr/bin/env python3
"""End-to-end test of the test infrastructure itself: tools/controlplane.sh (a real
kube-apiserver 1.20 + controller manager + etcd), tools/testcerts.sh and test/faultproxy.py.

Run: python3 test/e2e/test_controlplane.py   (ctest: e2e_controlplane). The first run on a
machine builds Kubernetes (minutes); later runs reuse the shared control plane (see evstest).
"""

import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evstest  # noqa: E402

NS = "evs-cp-test-%d" % os.getpid()
ENV, setUpModule, tearDownModule = evstest.module_namespace(NS)


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: %(name)s, namespace: %(ns)s}
spec:
  replicas: 1
  selector: {matchLabels: {app: %(name)s}}
  template:
    metadata: {labels: {app: %(name)s}}
    spec:
      containers: [{name: c, image: "registry.invalid/none:1"}]
"""


def deployment(name):
    evstest.kubectl(ENV, "apply", "-f", "-", input=DEPLOYMENT % {"name": name, "ns": NS})


def replicaset_replicas(name):
    """spec.replicas of the ReplicaSet the controller manager made for deployment `name`."""
    out = json.loads(evstest.kubectl(ENV, "get", "replicasets", "-n", NS, "-l", "app=" + name,
                                     "-o", "json"))
    return [rs["spec"]["replicas"] for rs in out["items"]]


class ControlPlane(unittest.TestCase):
    def test_env_file_names(self):
        for name in evstest.ENV_NAMES:
            self.assertTrue(ENV.get(name), name)
        self.assertRegex(ENV["KUBE_API_URL"], r"^https://127\.0\.0\.1:\d+$")
        for name in ("KUBE_CA", "KUBE_CLIENT_CERT", "KUBE_CLIENT_KEY", "KUBECONFIG"):
            self.assertTrue(os.path.isfile(ENV[name]), ENV[name])

    def test_version_is_1_20(self):
        status, body = evstest.api(ENV, "GET", "/version")
        self.assertEqual(status, 200)
        self.assertEqual(body["major"], "1")
        self.assertEqual(body["minor"], "20")
        self.assertTrue(body["gitVersion"].startswith("v1.20."), body["gitVersion"])

    def test_default_service_account(self):
        status, body = evstest.api(ENV, "GET", "/api/v1/namespaces/default/serviceaccounts/default")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["metadata"]["name"], "default")

    def test_auth_token_client_cert_and_anonymous(self):
        # Client-certificate auth (O=system:masters) without a token.
        conn = evstest.connect(ENV, client_cert=True)
        status, _, data = evstest.request(conn, ENV, "GET", "/api/v1/namespaces", token=False)
        conn.close()
        self.assertEqual(status, 200, data)
        # Neither: anonymous is not allowed to list namespaces under RBAC.
        conn = evstest.connect(ENV)
        status, _, _ = evstest.request(conn, ENV, "GET", "/api/v1/namespaces", token=False)
        conn.close()
        self.assertIn(status, (401, 403))

    def test_wrong_ca_refused(self):
        certs = evstest.testcerts()
        conn = evstest.connect(ENV, ca=os.path.join(certs, "wrong-ca.crt"))
        with self.assertRaises(ssl.SSLCertVerificationError):
            conn.request("GET", "/version")
        conn.close()

    def test_deployment_scale_and_replicaset(self):
        deployment("web")
        evstest.wait_until(lambda: replicaset_replicas("web") == [1], 60, what="ReplicaSet of 1")
        # kubectl scale goes through the /scale subresource.
        evstest.kubectl(ENV, "scale", "-n", NS, "deployment/web", "--replicas=3")
        evstest.wait_until(lambda: replicaset_replicas("web") == [3], 60, what="ReplicaSet of 3")
        # A merge-patch on /scale, the way evscale writes.
        path = "/apis/apps/v1/namespaces/%s/deployments/web/scale" % NS
        status, body = evstest.api(ENV, "PATCH", path, {"spec": {"replicas": 2}},
                                   "application/merge-patch+json")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["kind"], "Scale")
        self.assertEqual(body["spec"]["replicas"], 2)
        evstest.wait_until(lambda: replicaset_replicas("web") == [2], 60, what="ReplicaSet of 2")
        # The controller manager created the Pods (they stay Pending: no scheduler, no kubelet).
        evstest.wait_until(lambda: len(json.loads(evstest.kubectl(
            ENV, "get", "pods", "-n", NS, "-l", "app=web", "-o", "json"))["items"]) == 2,
            60, what="2 pods")

    def test_hpa_v2beta2(self):
        deployment("hpa-target")
        hpa = {
            "apiVersion": "autoscaling/v2beta2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "h", "namespace": NS},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": "hpa-target"},
                     "minReplicas": 1, "maxReplicas": 5,
                     "metrics": [{"type": "External", "external": {
                         "metric": {"name": "s0-redis-jobs"},
                         "target": {"type": "AverageValue", "averageValue": "5"}}}]}}
        status, body = evstest.api(ENV, "POST", "/apis/autoscaling/v2beta2/namespaces/%s/"
                                   "horizontalpodautoscalers" % NS, hpa)
        self.assertEqual(status, 201, body)
        self.assertEqual(body["spec"]["maxReplicas"], 5)

    def test_scaledobject_crd(self):
        so = {
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": "so", "namespace": NS},
            "spec": {"scaleTargetRef": {"name": "web"}, "minReplicaCount": 0,
                     "maxReplicaCount": 10, "pollingInterval": 5,
                     "triggers": [{"type": "redis", "metadata": {
                         "address": "127.0.0.1:6379", "listName": "jobs", "listLength": "5"}}]}}
        base = "/apis/keda.sh/v1alpha1/namespaces/%s/scaledobjects" % NS
        status, body = evstest.api(ENV, "POST", base, so)
        self.assertEqual(status, 201, body)
        self.assertEqual(body["spec"]["triggers"][0]["metadata"]["listName"], "jobs")
        # The status subresource exists: a status write goes to /status, spec is untouched.
        status, body = evstest.api(ENV, "PATCH", base + "/so/status",
                                   {"status": {"conditions": [{"type": "Ready", "status": "True",
                                                               "reason": "Test"}]}},
                                   "application/merge-patch+json")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["status"]["conditions"][0]["type"], "Ready")
        ta = {"apiVersion": "keda.sh/v1alpha1", "kind": "TriggerAuthentication",
              "metadata": {"name": "ta", "namespace": NS},
              "spec": {"secretTargetRef": [{"parameter": "password", "name": "redis",
                                            "key": "password"}]}}
        status, body = evstest.api(ENV, "POST", "/apis/keda.sh/v1alpha1/namespaces/%s/"
                                   "triggerauthentications" % NS, ta)
        self.assertEqual(status, 201, body)

    def test_audit_log_records_requests(self):
        offset = evstest.audit_size(ENV)
        status, _ = evstest.api(ENV, "GET", "/api/v1/namespaces/%s" % NS)
        self.assertEqual(status, 200)

        def ours():
            events, _ = evstest.audit_events(ENV, offset)
            return [e for e in events if e.get("requestURI") == "/api/v1/namespaces/%s" % NS
                    and e.get("stage") == "ResponseComplete"]
        event = evstest.wait_until(ours, 30, what="audit event")[0]
        self.assertEqual(event["level"], "Metadata")
        self.assertEqual(event["user"]["username"], "evscale-admin")
        self.assertIn("stageTimestamp", event)
        self.assertIn("requestReceivedTimestamp", event)


class TestCerts(unittest.TestCase):
    """tools/testcerts.sh: each certificate does what its name says (checked with Python's
    own verifier, independent of the code under test)."""

    @classmethod
    def setUpClass(cls):
        cls.dir = evstest.testcerts(os.path.join(evstest.CACHE, "testcerts-selftest"))

    def handshake(self, name, ca, host):
        """TLS server with certificate `name` on loopback; a client trusting `ca` connects
        with server_hostname `host`. Returns None on success or the client's exception."""
        d = self.dir
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(os.path.join(d, name + ".crt"), os.path.join(d, name + ".key"))
        lsock = socket.create_server(("127.0.0.1", 0))
        port = lsock.getsockname()[1]

        def serve():
            s, _ = lsock.accept()
            try:
                sctx.wrap_socket(s, server_side=True).close()
            except (OSError, ssl.SSLError):
                s.close()
        t = threading.Thread(target=serve)
        t.start()
        cctx = ssl.create_default_context(cafile=os.path.join(d, ca + ".crt"))
        err = None
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                cctx.wrap_socket(raw, server_hostname=host).close()
        except ssl.SSLError as e:
            err = e
        t.join(10)
        lsock.close()
        return err

    def test_idempotent(self):
        def ca():
            with open(os.path.join(self.dir, "ca.crt")) as f:
                return f.read()
        before = ca()
        evstest.testcerts(self.dir)
        self.assertEqual(before, ca())

    def test_ip_only(self):
        self.assertIsNone(self.handshake("ip-only", "ca", "127.0.0.1"))
        self.assertIsNotNone(self.handshake("ip-only", "ca", "localhost"))

    def test_dns_only(self):
        self.assertIsNone(self.handshake("dns-only", "ca", "localhost"))
        self.assertIsNotNone(self.handshake("dns-only", "ca", "127.0.0.1"))

    def test_mismatch(self):
        self.assertIsNotNone(self.handshake("mismatch", "ca", "127.0.0.1"))
        self.assertIsNotNone(self.handshake("mismatch", "ca", "localhost"))

    def test_wrong_ca(self):
        self.assertIsNotNone(self.handshake("ip-only", "wrong-ca", "127.0.0.1"))
        self.assertIsNone(self.handshake("wrong-ca-server", "wrong-ca", "127.0.0.1"))

    def test_client_cert_signed_by_ca(self):
        out = subprocess.run(["openssl", "verify", "-purpose", "sslclient", "-CAfile",
                              os.path.join(self.dir, "ca.crt"),
                              os.path.join(self.dir, "client.crt")],
                             capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)


class FaultProxyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.px = evstest.start_faultproxy(ENV)
        cls.penv = cls.px.env(ENV)

    @classmethod
    def tearDownClass(cls):
        cls.px.stop()

    def setUp(self):
        self.px.reset()

    def get(self, conn, path):
        return evstest.request(conn, self.penv, "GET", path)

    def test_passthrough_and_keepalive(self):
        conn = evstest.connect(self.penv)
        for _ in range(5):
            status, _, body = self.get(conn, "/version")
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(body)["minor"], "20")
        conn.close()
        st = self.px.stats()
        self.assertEqual(st["connections"], 1)
        self.assertEqual(st["requests"], 5)
        self.assertEqual(st["per_connection"], [5])
        self.assertEqual(st["by_path"], {"/version": 5})
        self.assertEqual(st["upstream_connections"], 1)

    def test_status_429_retry_after(self):
        self.px.fault(kind="status", status=429, retry_after="2", count=1)
        conn = evstest.connect(self.penv)
        status, headers, body = self.get(conn, "/version")
        self.assertEqual(status, 429)
        self.assertEqual(headers["retry-after"], "2")
        st = json.loads(body)
        self.assertEqual((st["kind"], st["reason"], st["code"]), ("Status", "TooManyRequests", 429))
        # count=1: the next request on the same connection passes.
        status, _, _ = self.get(conn, "/version")
        self.assertEqual(status, 200)
        conn.close()
        self.assertEqual(self.px.stats()["connections"], 1)

    def test_status_429_text_form(self):
        self.px.fault(kind="status", status=429, retry_after="1", form="text")
        conn = evstest.connect(self.penv)
        status, headers, body = self.get(conn, "/version")
        conn.close()
        self.assertEqual(status, 429)
        self.assertEqual(headers["retry-after"], "1")
        self.assertTrue(headers["content-type"].startswith("text/plain"))
        self.assertIn(b"Too many requests", body)

    def test_status_500_path_prefix_and_count(self):
        self.px.fault(kind="status", status=500, count=2, path_prefix="/apis")
        conn = evstest.connect(self.penv)
        self.assertEqual(self.get(conn, "/version")[0], 200)  # prefix does not match
        self.assertEqual(self.get(conn, "/apis")[0], 500)
        status, _, body = self.get(conn, "/apis/apps/v1")
        self.assertEqual(status, 500)
        self.assertEqual(json.loads(body)["reason"], "InternalError")
        self.assertEqual(self.get(conn, "/apis")[0], 200)  # count used up
        conn.close()

    def test_delay(self):
        self.px.fault(kind="delay", delay_ms=1500)
        conn = evstest.connect(self.penv)
        t0 = time.monotonic()
        status, _, _ = self.get(conn, "/version")
        self.assertGreaterEqual(time.monotonic() - t0, 1.4)
        self.assertEqual(status, 200)
        conn.close()

    def test_delay_client_timeout(self):
        self.px.fault(kind="delay", delay_ms=30000)
        conn = evstest.connect(self.penv, timeout=1)
        with self.assertRaises(socket.timeout):
            self.get(conn, "/version")
        conn.close()

    def test_drop_mid_body(self):
        self.px.fault(kind="drop_mid_body")
        conn = evstest.connect(self.penv)
        conn.request("GET", "/api/v1/namespaces",
                     headers={"Authorization": "Bearer " + ENV["KUBE_TOKEN"]})
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)  # the head arrived ...
        with self.assertRaises((http.client.IncompleteRead, ssl.SSLError, ConnectionError)):
            resp.read()  # ... the body did not
        conn.close()
        # The next connection works again.
        conn = evstest.connect(self.penv)
        self.assertEqual(self.get(conn, "/version")[0], 200)
        conn.close()

    def watch(self, path, timeout=30):
        conn = evstest.connect(self.penv, timeout=timeout)
        conn.request("GET", path, headers={"Authorization": "Bearer " + ENV["KUBE_TOKEN"]})
        return conn, conn.getresponse()

    def test_gone_forms(self):
        self.px.fault(kind="gone", count=2)
        # A list: 410 with a Status.
        conn = evstest.connect(self.penv)
        status, _, body = self.get(conn, "/api/v1/namespaces?limit=1&continue=x")
        conn.close()
        self.assertEqual(status, 410)
        st = json.loads(body)
        self.assertEqual((st["reason"], st["code"]), ("Expired", 410))
        self.assertIn("too old resource version", st["message"])
        # A watch: 200 with one ERROR event carrying the Status, then the end of the stream.
        conn, resp = self.watch("/api/v1/namespaces?watch=1&resourceVersion=1")
        self.assertEqual(resp.status, 200)
        lines = resp.read().splitlines()
        conn.close()
        self.assertEqual(len(lines), 1)
        ev = json.loads(lines[0])
        self.assertEqual(ev["type"], "ERROR")
        self.assertEqual((ev["object"]["kind"], ev["object"]["code"]), ("Status", 410))

    def test_gone_status_shaped_like_the_real_one(self):
        """A real 410 (a continue token made stale by etcd compaction) and the proxy's synthetic
        one carry the same Status fields, reason and code."""
        if "ETCD_URL" not in ENV:
            self.skipTest("no ETCD_URL for this control plane")
        status, page = evstest.api(ENV, "GET", "/api/v1/namespaces?limit=1")
        self.assertEqual(status, 200)
        token = page["metadata"]["continue"]
        self.assertTrue(token)
        evstest.kubectl(ENV, "label", "namespace", NS, "bump=%d" % time.time_ns(), "--overwrite")
        evstest.etcd_compact(ENV)
        status, real = evstest.api(ENV, "GET", "/api/v1/namespaces?limit=1&continue=" + token)
        self.assertEqual(status, 410, real)
        self.px.fault(kind="gone")
        conn = evstest.connect(self.penv)
        status, _, body = self.get(conn, "/api/v1/namespaces?limit=1&continue=" + token)
        conn.close()
        self.assertEqual(status, 410)
        fake = json.loads(body)
        self.assertEqual(set(fake) - {"metadata"}, set(real) - {"metadata"})
        for key in ("kind", "apiVersion", "status", "reason", "code"):
            self.assertEqual(fake[key], real[key], key)

    def test_watch_passthrough_and_drop_watch(self):
        # Unfaulted: the real server's watch stream of namespaces yields ADDED events.
        conn, resp = self.watch("/api/v1/namespaces?watch=1&resourceVersion=0", timeout=30)
        self.assertEqual(resp.status, 200)
        ev = json.loads(resp.readline())
        self.assertEqual(ev["type"], "ADDED")
        conn.close()
        # drop_watch: the stream is cut after ~200 ms, after the first events got through.
        self.px.fault(kind="drop_watch", delay_ms=200, count=1)
        conn = evstest.connect(self.penv)
        self.assertEqual(self.get(conn, "/version")[0], 200)  # non-watch: unaffected
        conn.close()
        conn, resp = self.watch("/api/v1/namespaces?watch=1&resourceVersion=0", timeout=30)
        self.assertEqual(resp.status, 200)
        t0 = time.monotonic()
        events = 0
        with self.assertRaises((http.client.IncompleteRead, ssl.SSLError, ConnectionError)):
            while True:
                line = resp.readline()
                if not line:
                    raise ConnectionError("stream ended")
                events += json.loads(line)["type"] == "ADDED"
        self.assertGreaterEqual(events, 1)
        self.assertLess(time.monotonic() - t0, 20)  # the real server would stream for minutes
        conn.close()
        self.assertEqual(self.px.stats()["faults_applied"], 1)

    def test_control_api_rejects_bad_fault(self):
        with self.assertRaises(RuntimeError):
            self.px.fault(kind="explode")
        with self.assertRaises(RuntimeError):
            self.px.fault(kind="status", status=404)


class PrivateStartStop(unittest.TestCase):
    """start/stop of a second, private control plane beside the shared one: distinct ports,
    and stop leaves no process behind."""

    def test_start_stop(self):
        if ENV.get("KUBE_CP_EXTERNAL"):
            self.skipTest("control plane given by the environment")
        env = evstest.controlplane(private=True)
        try:
            self.assertNotEqual(env["KUBE_API_URL"], ENV["KUBE_API_URL"])
            self.assertTrue(evstest.ready(env))
            pids = [int(line.split()[1]) for line in open(os.path.join(env["KUBE_CP_DIR"], "pids"))]
            self.assertEqual(len(pids), 3)
        finally:
            evstest.stop(env)
        for pid in pids:
            self.assertFalse(os.path.exists("/proc/%d" % pid) and
                             open("/proc/%d/stat" % pid).read().split(") ")[1][0] != "Z",
                             "pid %d still running" % pid)


if __name__ == "__main__":
    unittest.main(verbosity=2)
