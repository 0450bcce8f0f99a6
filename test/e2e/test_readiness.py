#!/usr/bin/env python3
"""End to end (issue 13): evscale's Deployment and StatefulSet caches follow status.replicas and
status.readyReplicas through the watch, on the local control plane (kube-apiserver +
kube-controller-manager 1.20, evstest.controlplane()), while test/e2e/kwok.py plays the kubelet:
it binds the controllers' pods to a fake Node and patches pods/status to make them (not) ready.

What evscale's cache holds is read from its debug record "scale target seen" (target,
spec_replicas, status_replicas, ready_replicas), written by the registry for each change a cache
delivers and nowhere else: a /scale read never writes it, so a record with a new ready count can
only have come through the watch (or the relist that replaces it).

evscale runs with --dry-run, so that the test alone sets spec.replicas; the ScaledObjects (a cron
trigger, inactive, no server to reach) only make the two workloads targets.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evstest  # noqa: E402
import kwok  # noqa: E402
from evstest import BIN, get  # noqa: E402

SEEN = "scale target seen"

WORKLOADS = """apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  replicas: 0
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: main, image: registry.invalid/web:1}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: db, namespace: {ns}}}
spec:
  replicas: 0
  serviceName: db
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec:
      containers: [{{name: main, image: registry.invalid/db:1}}]
"""

# An inactive cron window (January 1st, 00:00-01:00 UTC): the trigger needs no server.
SCALEDOBJECT = """apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: {name}, namespace: {ns}}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: {kind}, name: {target}}}
  minReplicaCount: 0
  maxReplicaCount: 10
  triggers:
  - type: cron
    metadata: {{timezone: Etc/UTC, start: 0 0 1 1 *, end: 0 1 1 1 *, desiredReplicas: "1"}}
"""


class Readiness(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = evstest.controlplane()
        cls.dir = tempfile.mkdtemp(prefix="evs-readiness-")

    @classmethod
    def tearDownClass(cls):
        if not os.environ.get("EVS_KEEP_LOGS"):
            shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self):
        tag = "%d-%d" % (os.getpid(), int(time.time() * 1000) % 100000)
        self.ns = "evs-ready-" + tag
        self.kubectl("create", "namespace", self.ns)
        self.node = kwok.create_node(self.env, "evs-kwok-" + tag)
        self.kubelets = {}
        for app in ("web", "db"):
            self.kubelets[app] = kwok.Kubelet(self.env, self.node, self.ns, "app=" + app).start()
        self.proc = self.logf = None

    def tearDown(self):
        try:
            if self.proc is not None:
                evstest.stop_evscale(self.proc, self.logf)
        finally:
            self.clean_namespace()

    def clean_namespace(self):
        # Bound pods need the fake kubelet to finish their deletion: delete the workloads while
        # it still runs, so the namespace does not stay Terminating on the shared control plane.
        self.kubectl("delete", "deployment,statefulset", "--all", "-n", self.ns, "--wait=false",
                     check=False)
        try:
            evstest.wait_until(lambda: not self.kubelets["web"].pods()
                               and not self.kubelets["db"].pods(), timeout=60,
                               what="the test's pods deleted")
        finally:
            for k in self.kubelets.values():
                k.stop()
            kwok.delete_node(self.env, self.node)
            self.kubectl("delete", "namespace", self.ns, "--wait=false", check=False)
        for app, k in self.kubelets.items():
            self.assertEqual(k.errors, [], "fake kubelet of %s" % app)

    # --- helpers ---

    def kubectl(self, *args, input=None, check=True):
        return evstest.kubectl(self.env, *args, input=input, check=check)

    def apply(self, text):
        self.kubectl("apply", "--validate=false", "-f", "-", input=text)

    def start(self):
        port = evstest.free_port()
        cfg = os.path.join(self.dir, "config-%s.yaml" % self.ns)
        with open(cfg, "w") as f:
            f.write(evstest.evscale_config(port, self.env["KUBECONFIG"], [self.ns],
                                           lease_namespace=self.ns))
        self.logf = open(cfg + ".log", "w+")
        self.proc = subprocess.Popen([BIN, "run", "--config", cfg, "--log-format", "json",
                                      "--log-level", "debug", "--dry-run"],
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     env=evstest.evscale_env(self.dir))
        base = "http://127.0.0.1:%d" % port
        evstest.wait_until(lambda: get(base + "/readyz")[0] == 200 or self.proc.poll() is not None,
                           timeout=90, what="/readyz")
        self.assertIsNone(self.proc.poll(), self.log()[-3000:])

    def log(self):
        return evstest.read_log(self.logf)

    def seen(self, kind, name):
        """The (spec, status, ready) replicas of each "scale target seen" record of the target,
        in order."""
        key = "apps/%s/%s/%s" % (kind, self.ns, name)
        return [(r["spec_replicas"], r["status_replicas"], r["ready_replicas"])
                for r in evstest.log_records(self.log())
                if r.get("msg") == SEEN and r.get("target") == key]

    def api_counts(self, resource, name):
        st = json.loads(self.kubectl("get", resource, name, "-n", self.ns, "-o", "json"))
        return (st["spec"].get("replicas", 1), st.get("status", {}).get("replicas", 0),
                st.get("status", {}).get("readyReplicas", 0))

    def wait_seen(self, kind, name, want, timeout=60):
        """Waits until evscale's last record of the target is `want` (spec, status, ready)."""
        resource = kind.lower()

        def ok():
            s = self.seen(kind, name)
            return s and s[-1] == want
        try:
            evstest.wait_until(ok, timeout=timeout, what="%s %s seen as %s" % (kind, name, want))
        except AssertionError as e:
            raise AssertionError("%s; evscale saw %s; the API server says %s; pods:\n%s" % (
                e, self.seen(kind, name), self.api_counts(resource, name),
                self.kubectl("get", "pods", "-n", self.ns, "-o", "wide"))) from None
        # What evscale holds is what the API server holds.
        self.assertEqual(self.api_counts(resource, name), want)
        return self.seen(kind, name)

    # --- tests ---

    def test_replicas_and_ready_replicas_followed_through_the_watch(self):
        web, db = self.kubelets["web"], self.kubelets["db"]
        web.ready_limit = db.ready_limit = 0
        self.apply(WORKLOADS.format(ns=self.ns))
        for so, kind, target in (("web-so", "Deployment", "web"), ("db-so", "StatefulSet", "db")):
            self.apply(SCALEDOBJECT.format(name=so, ns=self.ns, kind=kind, target=target))
        self.start()
        # The initial list.
        self.wait_seen("Deployment", "web", (0, 0, 0))
        self.wait_seen("StatefulSet", "db", (0, 0, 0))

        # Deployment: three pods, bound and Running but none ready; then two ready, all three,
        # and one again (a pod's readiness lost is followed too).
        self.kubectl("scale", "deployment", "web", "-n", self.ns, "--replicas", "3")
        self.wait_seen("Deployment", "web", (3, 3, 0))
        web.ready_limit = 2
        self.wait_seen("Deployment", "web", (3, 3, 2))
        web.ready_limit = None
        self.wait_seen("Deployment", "web", (3, 3, 3))
        web.ready_limit = 1
        self.wait_seen("Deployment", "web", (3, 3, 1))
        # Scale down: status.replicas follows as the fake kubelet finishes the deletions.
        web.ready_limit = None
        self.kubectl("scale", "deployment", "web", "-n", self.ns, "--replicas", "1")
        self.wait_seen("Deployment", "web", (1, 1, 1))

        # StatefulSet (OrderedReady): db-0 alone until it is ready.
        self.kubectl("scale", "statefulset", "db", "-n", self.ns, "--replicas", "3")
        self.wait_seen("StatefulSet", "db", (3, 1, 0))
        time.sleep(1)  # nothing more comes while db-0 is not ready
        self.assertEqual(self.seen("StatefulSet", "db")[-1], (3, 1, 0))
        db.ready_limit = None
        seen = self.wait_seen("StatefulSet", "db", (3, 3, 3))
        # Each pod is created once the one before it is ready, and the status the controller
        # writes at each step reaches evscale in order: the counts only grow, and at least one
        # step between (3, 1, 0) and (3, 3, 3) is seen (the controller writes the status at
        # least once per pod it creates).
        steps = seen[seen.index((3, 1, 0)):]
        for a, b in zip(steps, steps[1:]):
            self.assertTrue(b[1] >= a[1] and b[2] >= a[2], steps)
        self.assertGreater(len(steps), 2, steps)
        db.ready_limit = 2
        self.wait_seen("StatefulSet", "db", (3, 3, 2))

    def test_scaledobject_created_for_a_steady_workload(self):
        # Workloads listed before any ScaledObject names them, which then do not change: the
        # counts come from the cache when the ScaledObject arrives (a steady workload sends no
        # event that would deliver them later; /scale has no ready count).
        web, db = self.kubelets["web"], self.kubelets["db"]
        web.ready_limit = db.ready_limit = 2
        self.apply(WORKLOADS.format(ns=self.ns).replace("replicas: 0", "replicas: 3"))
        for kind, name in (("deployment", "web"), ("statefulset", "db")):
            evstest.wait_until(lambda: self.api_counts(kind, name) == (3, 3, 2), timeout=60,
                               what="%s %s at (3, 3, 2)" % (kind, name))
        self.start()
        time.sleep(1)  # the caches have listed (/readyz); nothing names the workloads yet
        self.assertEqual(self.seen("Deployment", "web") + self.seen("StatefulSet", "db"), [])
        for so, kind, target in (("web-so", "Deployment", "web"), ("db-so", "StatefulSet", "db")):
            self.apply(SCALEDOBJECT.format(name=so, ns=self.ns, kind=kind, target=target))
        self.assertEqual(self.wait_seen("Deployment", "web", (3, 3, 2)), [(3, 3, 2)])
        self.assertEqual(self.wait_seen("StatefulSet", "db", (3, 3, 2)), [(3, 3, 2)])
        # And the watch goes on from there.
        web.ready_limit = db.ready_limit = None
        self.wait_seen("Deployment", "web", (3, 3, 3))
        self.wait_seen("StatefulSet", "db", (3, 3, 3))


if __name__ == "__main__":
    unittest.main()
