#!/usr/bin/env python3
"""End to end: evscale scales a real Deployment on the local control plane (kube-apiserver +
kube-controller-manager 1.20, evstest.controlplane()) from a real redis-server list, through its
ScaledObject informer, the registry, the decision step and the /scale writer:

  - activation holds at 0 while the list is empty; the status says Ready=True, Active=False;
  - the queue grows -> the replicas follow (0 -> 1 -> ceil(len / listLength));
  - the queue drains -> 0 once the cooldown has passed;
  - exactly one PATCH of /scale per change of the desired count (the API server's audit log);
  - a second ScaledObject on the same target is refused (Ready=False, KEDA's webhook text) and
    the first keeps driving it;
  - a foreign HPA on the target: the ScaledObject is refused and nothing is written;
  - a broken ScaledObject gets Ready=False naming the field; the others keep scaling;
  - --dry-run decides and logs, and writes nothing;
  - a restarted evscale writes no status the API server already holds.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evstest  # noqa: E402
from evstest import SCALEDOBJECT, Redis, get  # noqa: E402


class Scaling(evstest.KubeCase):
    """evscale scaling Deployments from Redis lists (evstest.KubeCase: fixtures and helpers)."""

    # --- tests ---

    def test_queue_drives_replicas_one_write_per_change(self):
        self.deployment("worker", 0)
        lst = "jobs-" + self.ns
        self.redis.cmd("DEL", lst)
        since = evstest.audit_size(self.env)
        self.scaledobject("worker-so", "worker", lst, cooldown=3)
        proc, logf, base = self.start()
        # Activation holds at 0 while the list is empty.
        self.wait_condition("worker-so", "Ready", "True")
        self.wait_condition("worker-so", "Active", "False")
        time.sleep(3)
        self.assertEqual(self.replicas("worker"), 0)
        # The queue grows: 0 -> 1 (KEDA's activation), then the HPA's math towards
        # ceil(23 / 5) = 5. KEDA's HPA has no behavior here, so the HPA's legacy scale-up limit
        # applies (max(2 * current, 4): kubernetes/kubernetes v1.20.2
        # pkg/controller/podautoscaler/horizontal.go calculateScaleUpLimit): 1 -> 4, and 4 -> 5
        # at its next sync.
        self.redis.cmd("RPUSH", lst, *["j%d" % i for i in range(23)])
        self.wait_replicas("worker", 5, timeout=60)
        self.wait_condition("worker-so", "Active", "True")
        # KEDA's Event for the activation (pkg/eventreason/eventreason.go, scale_scaledobjects.go).
        msgs = self.wait_event("worker-so", "KEDAScaleTargetActivated")
        self.assertIn("Scaled apps/v1.Deployment %s/worker from 0 to 1" % self.ns, msgs)
        # KEDA's families carry the reading (pkg/metricscollector/prommetrics.go names).
        _, metrics = get(base + "/metrics")
        value = [ln for ln in metrics.splitlines()
                 if ln.startswith("keda_scaler_metrics_value{")
                 and 'scaledObject="worker-so"' in ln]
        self.assertEqual(len(value), 1, metrics[-2000:])
        self.assertIn('scaler="redisScaler"', value[0])
        self.assertIn('metric="s0-redis-jobs-', value[0])
        self.assertEqual(float(value[0].rsplit(" ", 1)[1]), 23.0)
        active = [ln for ln in metrics.splitlines()
                  if ln.startswith("keda_scaler_active{") and 'scaledObject="worker-so"' in ln]
        self.assertEqual(float(active[0].rsplit(" ", 1)[1]), 1.0)
        # Drain: 0 after the 3 s cooldown.
        self.redis.cmd("DEL", lst)
        self.wait_replicas("worker", 0, timeout=60)
        # One write per change of the desired count (the audit log is written as requests
        # complete; give it a moment).
        time.sleep(2)
        patches = self.scale_patches(since, "worker")
        recs = self.log_records(logf)
        scaled = [r for r in recs if r.get("msg") in ("scaled", "scale write failed")]
        self.assertEqual([(r.get("from"), r.get("to")) for r in scaled],
                         [(0, 1), (1, 4), (4, 5), (5, 0)], scaled)
        self.assertEqual(len(patches), 4, [(p.get("user", {}).get("username"),
                                            p.get("responseStatus", {}).get("code"))
                                           for p in patches])
        # Status: originalReplicaCount, the scale target's GVKR, the trigger types.
        st = self.get_scaledobject("worker-so")["status"]
        self.assertEqual(st.get("scaleTargetKind"), "apps/v1.Deployment")
        self.assertEqual(st.get("originalReplicaCount"), 0)
        self.assertEqual(st.get("triggersTypes"), "redis")

    def test_second_scaledobject_and_broken_one_refused(self):
        self.deployment("shared", 2)
        self.deployment("other", 1)
        lst = "shared-" + self.ns
        self.redis.cmd("DEL", lst)
        self.scaledobject("first", "shared", lst)
        time.sleep(1.1)  # creationTimestamp has second precision
        self.scaledobject("second", "shared", lst)
        # A broken one: listLength is not a number.
        self.apply(SCALEDOBJECT.format(name="broken", ns=self.ns, target="other", list=lst,
                                       port=self.redis.port, cooldown=3)
                   .replace('listLength: "5"', 'listLength: "five"'))
        proc, logf, base = self.start()
        c = self.wait_condition("second", "Ready", "False")
        self.assertIn("is already managed by the ScaledObject 'first'", c.get("message", ""))
        self.assertIn("of type 'apps/v1.Deployment'", c.get("message", ""))
        c = self.wait_condition("broken", "Ready", "False")
        self.assertIn("listLength", c.get("message", ""))
        self.assertTrue(any("is already managed by the ScaledObject 'first'" in m
                            for m in self.wait_event("second", "EvscaleScaleTargetRefused")))
        self.assertTrue(any("listLength" in m
                            for m in self.wait_event("broken", "ScaledObjectCheckFailed")))
        self.wait_condition("first", "Ready", "True")
        # The first drives: an empty list and minReplicaCount 0 -> 0 after the cooldown.
        self.wait_replicas("shared", 0, timeout=60)
        self.redis.cmd("RPUSH", lst, *["x%d" % i for i in range(12)])
        self.wait_replicas("shared", 3, timeout=60)
        # Deleting the first hands the target to the second.
        self.kubectl("delete", "scaledobject", "first", "-n", self.ns)
        self.wait_condition("second", "Ready", "True")
        self.redis.cmd("DEL", lst)

    def test_foreign_hpa_refused(self):
        self.deployment("hpa-target", 2)
        self.apply(f"""apiVersion: autoscaling/v1
kind: HorizontalPodAutoscaler
metadata: {{name: theirs, namespace: {self.ns}}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: hpa-target}}
  minReplicas: 2
  maxReplicas: 4
  targetCPUUtilizationPercentage: 50
""")
        lst = "hpa-" + self.ns
        self.redis.cmd("DEL", lst)
        since = evstest.audit_size(self.env)
        self.scaledobject("mine", "hpa-target", lst)
        proc, logf, base = self.start()
        c = self.wait_condition("mine", "Ready", "False")
        self.assertIn("is already managed by the hpa 'theirs'", c.get("message", ""))
        time.sleep(5)  # an empty list would scale it to 0 if evscale fought the HPA
        self.assertEqual(self.scale_patches(since, "hpa-target"), [])
        # The HPA goes: evscale takes the target.
        self.kubectl("delete", "hpa", "theirs", "-n", self.ns)
        self.wait_condition("mine", "Ready", "True")
        self.wait_replicas("hpa-target", 0, timeout=60)

    def test_other_writer_backs_off(self):
        self.deployment("fought", 0)
        lst = "fought-" + self.ns
        self.redis.cmd("DEL", lst)
        self.redis.cmd("RPUSH", lst, *["w%d" % i for i in range(12)])
        self.scaledobject("fought-so", "fought", lst)
        proc, logf, base = self.start()
        self.wait_replicas("fought", 3, timeout=60)  # ceil(12 / 5)
        # The runbook's incident move, repeated: evscale re-decides from each new count (and
        # writes 3 back) until the fourth change within a minute; then it stops fighting.
        for n in (6, 2, 7, 4):
            self.kubectl("scale", "deployment", "fought", "-n", self.ns, "--replicas=%d" % n)
            if n != 4:
                self.wait_replicas("fought", 3, timeout=30)
        msgs = self.wait_event("fought-so", "EvscaleScaleTargetConflict")
        self.assertIn("more than 3 times in a minute", msgs[0])
        c = self.wait_condition("fought-so", "Ready", "True")
        evstest.wait_until(lambda: self.condition("fought-so", "Ready").get("reason") ==
                           "ScaleTargetConflict", timeout=30, what="Ready reason")
        since = evstest.audit_size(self.env)
        time.sleep(8)
        self.assertEqual(self.replicas("fought"), 4)
        self.assertEqual([p for p in self.scale_patches(since, "fought")
                          if "evscale" in p.get("userAgent", "")], [])
        # The other writer stopped: after the back-off (30 s) evscale scales again.
        self.wait_replicas("fought", 3, timeout=60)
        recs = self.log_records(logf)
        self.assertTrue(any(r.get("msg") == "the other writer stopped: evscale scales the "
                            "target again" for r in recs))
        self.redis.cmd("DEL", lst)

    def status_patches(self, since, name):
        """The audit log's completed PATCHes of the ScaledObject's status since offset `since`."""
        events, _ = evstest.audit_events(self.env, since)
        path = "/apis/keda.sh/v1alpha1/namespaces/%s/scaledobjects/%s/status" % (self.ns, name)
        return [e for e in events
                if e.get("verb") == "patch" and e.get("requestURI", "").startswith(path)
                and e.get("stage") == "ResponseComplete"]

    def test_restart_writes_no_unchanged_status(self):
        """A restarted evscale (a new process: the Lease released and taken again) writes no
        status the API server already holds (before: every ScaledObject's, at every restart),
        not even for a moment before its triggers' first readings (a trigger whose server never
        answers: its TriggerError was rewritten to Ready, then back, when the target was read
        first); one whose state changed while it was down is written."""
        names = ("idle-a", "idle-b", "busy", "hung")
        # A Redis address that accepts connections (the kernel's backlog) and never answers:
        # each reading fails after limits.request_timeout.
        hung = socket.socket()
        self.addCleanup(hung.close)
        hung.bind(("127.0.0.1", 0))
        hung.listen(128)
        docs = []
        for n in names:
            self.redis.cmd("DEL", "%s-%s" % (n, self.ns))
            docs.append(evstest.DEPLOYMENT.format(name=n, ns=self.ns, replicas=0))
            docs.append(SCALEDOBJECT.format(
                name=n, ns=self.ns, target=n, list="%s-%s" % (n, self.ns),
                port=hung.getsockname()[1] if n == "hung" else self.redis.port, cooldown=3))
        self.apply("---\n".join(docs))
        first = evstest.audit_size(self.env)
        extra = "limits:\n  request_timeout: 1500ms\n"
        proc, logf, base = self.start(extra)
        for n in names:
            if n == "hung":
                self.wait_condition(n, "Ready", "False", timeout=60)
            else:
                self.wait_condition(n, "Ready", "True")
            self.wait_condition(n, "Active", "False")
        # The Active message's figures show the first reading at once ("-/5" stayed up to a
        # minute when a status was written before it).
        for n in ("idle-a", "idle-b"):
            evstest.wait_until(
                lambda: "%s-%s: 0/5; replicas 0, desired 0" % (n, self.ns) in
                [c.get("message", "") for c in self.get_scaledobject(n)["status"]["conditions"]
                 if c["type"] == "Active"][0], timeout=10, what="%s's figures" % n)
        time.sleep(2)  # its writes settled
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(30), 0)
        before = {n: self.get_scaledobject(n)["status"] for n in names}
        self.assertEqual([c["reason"] for c in before["hung"]["conditions"]
                          if c["type"] == "Ready"], ["TriggerError"])
        # While it is down, busy's queue grows: its status must change.
        self.redis.cmd("RPUSH", "busy-" + self.ns, *["b%d" % i for i in range(7)])
        since = evstest.audit_size(self.env)
        proc2, logf2, _ = self.start(extra)
        self.wait_condition("busy", "Active", "True")
        self.wait_replicas("busy", 2, timeout=60)
        # hung's first reading (an error) and then some: time for any status write to come.
        evstest.wait_until(lambda: any(r.get("msg") == "trigger error" and
                                       r.get("scaledobject") == "%s/hung" % self.ns
                                       for r in self.log_records(logf2)),
                           timeout=60, what="hung's first failed reading")
        time.sleep(3)
        self.assertTrue(any(r.get("msg", "").startswith("leading")
                            for r in self.log_records(logf2)), self.log(logf2)[-2000:])
        for n in ("idle-a", "idle-b", "hung"):
            self.assertEqual(self.get_scaledobject(n)["status"], before[n], n)
            self.assertEqual(self.status_patches(since, n), [], n)
        self.assertGreaterEqual(len(self.status_patches(since, "busy")), 1)
        # The first process did write them all (the check above could not pass for nothing).
        for n in names:
            self.assertGreaterEqual(len(self.status_patches(first, n)), 1, n)
        for n in names:
            self.redis.cmd("DEL", "%s-%s" % (n, self.ns))

    def test_restore_on_delete_with_evscale_stopped(self):
        self.deployment("restored", 1)
        lst = "restored-" + self.ns
        self.redis.cmd("DEL", lst)
        self.redis.cmd("RPUSH", lst, *["r%d" % i for i in range(12)])
        self.apply(SCALEDOBJECT.format(name="restore-so", ns=self.ns, target="restored", list=lst,
                                       port=self.redis.port, cooldown=3)
                   .replace("  pollingInterval: 1\n",
                            "  pollingInterval: 1\n  minReplicaCount: 1\n"
                            "  advanced: {restoreToOriginalReplicaCount: true}\n")
                   .replace("  minReplicaCount: 0\n", ""))

        def so():
            return self.get_scaledobject("restore-so", must_exist=False)
        proc, logf, base = self.start()
        evstest.wait_until(lambda: "evscale.io/restore-replicas" in
                           so()["metadata"].get("finalizers", []), timeout=30,
                           what="evscale's finalizer")
        self.wait_replicas("restored", 3, timeout=60)  # ceil(12 / 5)
        evstest.wait_until(lambda: so().get("status", {}).get("originalReplicaCount") == 1,
                           timeout=30, what="status.originalReplicaCount 1")
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(30), 0)
        # Deleted while evscale is down: the finalizer holds the object...
        self.kubectl("delete", "scaledobject", "restore-so", "-n", self.ns, "--wait=false")
        time.sleep(2)
        self.assertIsNotNone(so())
        self.assertIn("deletionTimestamp", so()["metadata"])
        self.assertEqual(self.replicas("restored"), 3)
        # ... until evscale is back: it restores the original count, then lets it go.
        self.start()
        proc2 = self.procs[-1][0]
        self.wait_replicas("restored", 1, timeout=60)
        evstest.wait_until(lambda: so() is None, timeout=30, what="the ScaledObject gone")
        # The uninstall step: with evscale stopped, tools/remove-finalizers.sh lets a delete
        # through (and leaves other finalizers alone).
        self.apply(SCALEDOBJECT.format(name="restore-so", ns=self.ns, target="restored", list=lst,
                                       port=self.redis.port, cooldown=3)
                   .replace("  pollingInterval: 1\n",
                            "  pollingInterval: 1\n  advanced: {restoreToOriginalReplicaCount: "
                            "true}\n"))
        evstest.wait_until(lambda: "evscale.io/restore-replicas" in
                           (so() or {}).get("metadata", {}).get("finalizers", []), timeout=30,
                           what="evscale's finalizer again")
        self.kubectl("patch", "scaledobject", "restore-so", "-n", self.ns, "--type", "merge", "-p",
                     '{"metadata":{"finalizers":["example.com/other","evscale.io/restore-replicas"]}}')
        proc2.send_signal(signal.SIGTERM)
        self.assertEqual(proc2.wait(30), 0)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        out = subprocess.run([os.path.join(root, "tools", "remove-finalizers.sh"), "-n", self.ns],
                             env=dict(os.environ, KUBECONFIG=self.env["KUBECONFIG"]),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             timeout=60)
        self.assertEqual(out.returncode, 0, out.stdout)
        self.assertIn("removed evscale.io/restore-replicas from %s/restore-so" % self.ns,
                      out.stdout)
        self.assertEqual(so()["metadata"]["finalizers"], ["example.com/other"])
        self.redis.cmd("DEL", lst)

    def test_changed_trigger_restarts_only_it(self):
        self.deployment("two", 0)
        a, b = "two-a-" + self.ns, "two-b-" + self.ns
        self.redis.cmd("DEL", a, b)
        self.redis.cmd("RPUSH", a, *["a%d" % i for i in range(7)])
        so = SCALEDOBJECT.format(name="two-so", ns=self.ns, target="two", list=a,
                                 port=self.redis.port, cooldown=3)
        so += ("  - type: redis\n    metadata:\n      address: 127.0.0.1:%d\n"
               "      listName: %s\n      listLength: \"5\"\n" % (self.redis.port, b))
        self.apply(so)
        proc, logf, base = self.start()

        def started(i):
            return [r for r in self.log_records(logf)
                    if r.get("msg") == "trigger started" and r.get("trigger") == i]
        evstest.wait_until(lambda: started(0) and started(1), timeout=30, what="both triggers")
        self.wait_replicas("two", 2, timeout=60)  # ceil(7 / 5)
        # What `kubectl get hpa` showed: each trigger's value against its target, and replicas.
        c = self.wait_condition("two-so", "Active", "True")
        evstest.wait_until(lambda: "replicas 2, desired 2" in
                           (self.condition("two-so", "Active") or {}).get("message", ""),
                           timeout=30, what="the Active message's figures")
        msg = self.condition("two-so", "Active")["message"]
        self.assertIn("s0-redis-%s: 7/5" % a, msg)
        self.assertIn("s1-redis-%s: 0/5" % b, msg)
        # Change the second trigger only: its scaler restarts, the first keeps running.
        self.kubectl("patch", "scaledobject", "two-so", "-n", self.ns, "--type", "json", "-p",
                     '[{"op":"replace","path":"/spec/triggers/1/metadata/listLength","value":"2"}]')
        evstest.wait_until(lambda: len(started(1)) == 2, timeout=30, what="trigger 1 restarted")
        time.sleep(2)
        self.assertEqual(len(started(0)), 1)
        self.assertEqual(len(started(1)), 2)
        # The new target is used: 5 items on b at listLength 2 -> ceil(5 / 2) = 3.
        self.redis.cmd("RPUSH", b, *["b%d" % i for i in range(5)])
        self.wait_replicas("two", 3, timeout=60)
        self.redis.cmd("DEL", a, b)

    def test_trigger_authentication_and_rotation(self):
        rdir = tempfile.mkdtemp(prefix="evs-redis-auth-")
        red = Redis(rdir, password="first-secret")
        try:
            self.deployment("authed", 0)
            red.cmd("RPUSH", "authq", *["x%d" % i for i in range(8)])
            self.kubectl("create", "secret", "generic", "redis-auth", "-n", self.ns,
                         "--from-literal=password=first-secret")
            self.apply(f"""apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata: {{name: redis-ta, namespace: {self.ns}}}
spec:
  secretTargetRef:
  - {{parameter: password, name: redis-auth, key: password}}
""")
            self.apply(SCALEDOBJECT.format(name="authed-so", ns=self.ns, target="authed",
                                           list="authq", port=red.port, cooldown=3)
                       + "    authenticationRef: {name: redis-ta}\n")
            proc, logf, base = self.start()
            self.wait_replicas("authed", 2, timeout=60)  # ceil(8 / 5): the password worked
            self.wait_condition("authed-so", "Ready", "True")
            # Rotation: the server's password and the Secret change; the failing trigger reads
            # its TriggerAuthentication again and recovers.
            red.cmd("CONFIG", "SET", "requirepass", "second-secret")
            red.password = "second-secret"
            self.kubectl("delete", "secret", "redis-auth", "-n", self.ns)
            self.kubectl("create", "secret", "generic", "redis-auth", "-n", self.ns,
                         "--from-literal=password=second-secret")
            red.cmd("CLIENT", "KILL", "TYPE", "normal")
            red.cmd("RPUSH", "authq", *["y%d" % i for i in range(8)])
            self.wait_replicas("authed", 4, timeout=90)  # ceil(16 / 5)
            recs = self.log_records(logf)
            self.assertTrue(any(r.get("msg") == "trigger failing: authentication read again"
                                for r in recs))
            self.assertNotIn("second-secret", self.log(logf))
            self.assertNotIn("first-secret", self.log(logf))
            # A missing TriggerAuthentication: the trigger fails with a message naming it.
            self.apply(SCALEDOBJECT.format(name="noauth-so", ns=self.ns, target="other-none",
                                           list="authq", port=red.port, cooldown=3)
                       + "    authenticationRef: {name: nope}\n")
            self.assertTrue(any("TriggerAuthentication" in m and "nope" in m for m in
                                self.wait_event("noauth-so", "KEDAScalerFailed")))
        finally:
            red.stop()
            shutil.rmtree(rdir, ignore_errors=True)

    def test_prometheus_trigger_scales(self):
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
        from prom_harness import Harness
        with Harness() as h:
            job = "evs-" + self.ns
            h.push(job, "evs_queue_depth", 30)
            query = 'sum(evs_queue_depth{job="%s"})' % job
            h.wait(query, "30")
            self.deployment("prom-target", 0)
            self.apply(f"""apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: prom-so, namespace: {self.ns}}}
spec:
  scaleTargetRef: {{name: prom-target}}
  minReplicaCount: 0
  maxReplicaCount: 10
  pollingInterval: 1
  cooldownPeriod: 3
  triggers:
  - type: prometheus
    metadata:
      serverAddress: {h.describe()["prometheus"]}
      query: '{query}'
      threshold: "10"
""")
            proc, logf, base = self.start()
            self.wait_replicas("prom-target", 3, timeout=90)  # 0 -> 1 -> ceil(30 / 10)
            self.wait_condition("prom-so", "Active", "True")
            h.push(job, "evs_queue_depth", 0)
            self.wait_replicas("prom-target", 0, timeout=90)  # inactive, after the cooldown
            _, metrics = get(base + "/metrics")
            self.assertTrue(any(ln.startswith("keda_scaler_metrics_value{") and
                                'scaledObject="prom-so"' in ln and 'scaler="prometheusScaler"'
                                in ln for ln in metrics.splitlines()), metrics[-1500:])

    def test_dry_run_writes_nothing(self):
        self.deployment("dry", 0)
        lst = "dry-" + self.ns
        self.redis.cmd("DEL", lst)
        self.redis.cmd("RPUSH", lst, *["d%d" % i for i in range(9)])
        since = evstest.audit_size(self.env)
        self.scaledobject("dry-so", "dry", lst)
        proc, logf, base = self.start(dry_run=True)

        def decided():
            return [r for r in self.log_records(logf) if r.get("msg") == "dry run: would scale"]
        recs = evstest.wait_until(decided, timeout=60, what="a dry-run decision in the log")
        self.assertEqual((recs[0]["from"], recs[0]["to"]), (0, 1))
        listed = [r for r in self.log_records(logf) if r.get("msg") == "dry run: ScaledObject"]
        self.assertEqual(len(listed), 1, listed)
        self.assertEqual((listed[0]["target"], listed[0]["target_name"], listed[0]["replicas"]),
                         ("apps/v1.Deployment", "dry", 0))
        time.sleep(3)
        self.assertEqual(self.replicas("dry"), 0)
        events, _ = evstest.audit_events(self.env, since)
        writes = [e for e in events
                  if e.get("verb") in ("create", "update", "patch", "delete")
                  and e.get("stage") == "ResponseComplete"
                  and e.get("objectRef", {}).get("namespace") == self.ns
                  and "evscale" in e.get("userAgent", "")]
        self.assertEqual(writes, [])
        # The filter does see evscale's requests: its reads are there.
        reads = [e for e in events
                 if e.get("verb") in ("list", "watch", "get")
                 and e.get("objectRef", {}).get("namespace") == self.ns
                 and "evscale" in e.get("userAgent", "")]
        self.assertTrue(reads)
        self.redis.cmd("DEL", lst)


if __name__ == "__main__":
    unittest.main()
