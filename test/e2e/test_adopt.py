#!/usr/bin/env python3
"""End to end: kubernetes.adopt_keda_hpas on the local control plane (evstest.controlplane()).

A team moving from KEDA stops KEDA's operator; the HPA it created for each ScaledObject stays.

  (a) adopt off (the default): the ScaledObject is refused, KEDA's HPA stays, nothing is written;
  (b) adopt turned on by a reload (SIGHUP): evscale deletes KEDA's HPA, the ScaledObject becomes
      Ready and evscale writes its target's replicas; one EvscaleKEDAHPAAdopted Event;
  (c) the HPA re-created as KEDA's operator would (same shape, a new object) right after: evscale
      leaves it, the ScaledObject is refused saying KEDA's operator still runs (Warning Event);
      turned off again by a reload: refused as any foreign HPA, nothing deleted or re-created;
  (d) an HPA whose controller is a ScaledObject evscale does not hold (a broken one), a
      Deployment, or a ScaledObject of the right name with another uid: refused, never deleted;
  --dry-run with adopt on: logs the delete it would send, sends none;
  KEDA's operator stopped after re-creating its HPA once: the new HPA is left alone for
  kubernetes.adopt_window, then deleted, and evscale drives the target;
  a follower with adopt on that becomes the leader says the adoption's Event, not a refusal.

The API server's audit log is the witness: every DELETE of an HPA evscale sent (user agent
evscale/...).

KEDA's HPA fixture (keda_hpa below) follows KEDA's operator (kedacore/keda v2.20.2, commit
68a5b5028f35b22d50597c69819ab32c4e92f21a, controllers/keda/hpa.go newHPAForScaledObject):
the name getHPAName ("keda-hpa-<so>"), labels app.kubernetes.io/name (the HPA's name),
app.kubernetes.io/version, app.kubernetes.io/part-of (the ScaledObject's name) and
app.kubernetes.io/managed-by: keda-operator, the ScaledObject's annotations, scaleTargetRef from
the ScaledObject's target (apps/v1 Deployment), an External metric per trigger (metric name
"s0-redis-<list>" with the selector scaledobject.keda.sh/name, getScaledObjectMetricSpecs), and
controller-runtime's SetControllerReference (apiVersion keda.sh/v1alpha1, kind ScaledObject, the
ScaledObject's name and uid, controller: true, blockOwnerDeletion: true). KEDA writes
autoscaling/v2; this control plane (1.20) serves the same fields as autoscaling/v2beta2.
"""
import calendar
import json
import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evstest  # noqa: E402
from evstest import DEPLOYMENT, SCALEDOBJECT  # noqa: E402


def keda_hpa(ns, so, so_uid, target, lst, owners=None):
    """KEDA's HPA for ScaledObject `so` (see the module's docstring); `owners` replaces its
    ownerReferences (for the HPAs evscale must not adopt)."""
    name = "keda-hpa-" + so
    refs = owners if owners is not None else [
        {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": so, "uid": so_uid,
         "controller": True, "blockOwnerDeletion": True}]
    return json.dumps({
        "apiVersion": "autoscaling/v2beta2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": name, "namespace": ns,
            "labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/version": "2.20.2",
                       "app.kubernetes.io/part-of": so,
                       "app.kubernetes.io/managed-by": "keda-operator"},
            "ownerReferences": refs},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": 1, "maxReplicas": 10,
            "metrics": [{"type": "External", "external": {
                "metric": {"name": "s0-redis-" + lst,
                           "selector": {"matchLabels": {"scaledobject.keda.sh/name": so}}},
                "target": {"type": "AverageValue", "averageValue": "5"}}}]}})


class Adopt(evstest.KubeCase):

    def uid(self, kind, name):
        return evstest.kubectl_json(self.env, "get", kind, name, "-n", self.ns)["metadata"]["uid"]

    def create(self, text):
        self.kubectl("create", "-f", "-", input=text)

    def hpa_deletes(self, since, with_time=False):
        """The HPA DELETEs evscale sent since the audit offset: [(name, code)], with the time
        the API server received each (epoch s) when with_time."""
        events, _ = evstest.audit_events(self.env, since)
        return [(e["objectRef"].get("name"), e.get("responseStatus", {}).get("code"))
                + ((calendar.timegm(time.strptime(e["requestReceivedTimestamp"][:19],
                                                  "%Y-%m-%dT%H:%M:%S"))
                    + float("0" + e["requestReceivedTimestamp"][19:-1]),) if with_time else ())
                for e in events
                if e.get("verb") == "delete" and e.get("stage") == "ResponseComplete"
                and e.get("objectRef", {}).get("resource") == "horizontalpodautoscalers"
                and e.get("objectRef", {}).get("namespace") == self.ns
                and e.get("userAgent", "").startswith("evscale/")]

    def hpa_delete_versions(self, since):
        """The group/versions the HPA DELETEs evscale sent since the audit offset were sent to."""
        events, _ = evstest.audit_events(self.env, since)
        return {"%s/%s" % (e["objectRef"].get("apiGroup"), e["objectRef"].get("apiVersion"))
                for e in events
                if e.get("verb") == "delete" and e.get("stage") == "ResponseComplete"
                and e.get("objectRef", {}).get("resource") == "horizontalpodautoscalers"
                and e.get("objectRef", {}).get("namespace") == self.ns
                and e.get("userAgent", "").startswith("evscale/")}

    def message(self, so):
        c = self.condition(so, "Ready")
        return (c or {}).get("message", "")

    def wait_message(self, so, text, timeout=30):
        evstest.wait_until(lambda: text in self.message(so), timeout=timeout,
                           what="%s Ready message with %r (now %r)" % (so, text, self.message(so)))

    def adopt_on(self, proc, on=True, window=None):
        """kubernetes.adopt_keda_hpas (on or off) and kubernetes.adopt_window (when given) in
        proc's configuration file, then SIGHUP."""
        cfg = proc.args[proc.args.index("--config") + 1]
        with open(cfg) as f:
            text = f.read()
        text = "".join(line for line in text.splitlines(True)
                       if not line.startswith(("  adopt_keda_hpas:", "  adopt_window:")))
        self.assertIn("kubernetes:\n", text)
        if window:
            text = text.replace("kubernetes:\n", "kubernetes:\n  adopt_window: %s\n" % window, 1)
        if on:
            text = text.replace("kubernetes:\n", "kubernetes:\n  adopt_keda_hpas: true\n", 1)
        with open(cfg, "w") as f:
            f.write(text)
        proc.send_signal(signal.SIGHUP)

    def web_under_keda_hpa(self, prefix):
        """Deployment web (2 replicas), its ScaledObject on a new list (prefix + namespace) and
        the HPA KEDA's operator made for it. Returns (the list, the ScaledObject's uid)."""
        lst = prefix + self.ns
        self.redis.cmd("DEL", lst)
        self.apply("---\n".join([DEPLOYMENT.format(name="web", ns=self.ns, replicas=2),
                                 SCALEDOBJECT.format(name="web", ns=self.ns, target="web",
                                                     list=lst, port=self.redis.port,
                                                     cooldown=3)]))
        uid = self.uid("scaledobject", "web")
        self.create(keda_hpa(self.ns, "web", uid, "web", lst))
        return lst, uid

    def test_dry_run_never_deletes(self):
        self.web_under_keda_hpa("adopt-dry-")
        since = evstest.audit_size(self.env)
        proc, logf, base = self.start(dry_run=True)
        evstest.wait_until(lambda: any(r.get("msg") == "ScaledObject refused"
                                       for r in self.log_records(logf)),
                           timeout=30, what="web refused")
        self.adopt_on(proc)
        evstest.wait_until(
            lambda: [r for r in self.log_records(logf)
                     if r.get("msg") == "dry run: would delete KEDA's HPA to adopt its target"
                     and r.get("hpa") == "keda-hpa-web"],
            timeout=30, what="the dry run's log of the delete")
        time.sleep(2)
        self.assertIsNotNone(self.hpa("keda-hpa-web"))
        self.assertEqual(self.hpa_deletes(since), [])
        self.assertEqual(self.scale_patches(since, "web"), [])

    def test_deleted_again_after_the_window(self):
        """KEDA's operator re-created its HPA once, then was stopped: evscale leaves the new HPA
        alone for kubernetes.adopt_window (4 s here), then deletes it and drives the target."""
        lst, web_uid = self.web_under_keda_hpa("adopt-win-")
        since = evstest.audit_size(self.env)
        proc, logf, base = self.start()
        self.wait_message("web", "is already managed by the hpa 'keda-hpa-web'")
        self.adopt_on(proc, window="4s")
        evstest.wait_until(lambda: self.hpa("keda-hpa-web") is None, timeout=30,
                           what="KEDA's HPA deleted")
        self.create(keda_hpa(self.ns, "web", web_uid, "web", lst))
        self.wait_message("web", "KEDA's operator re-created HPA 'keda-hpa-web'")
        # After the window: deleted again, and evscale drives the target.
        evstest.wait_until(lambda: self.hpa("keda-hpa-web") is None, timeout=30,
                           what="KEDA's re-created HPA deleted after the window")
        self.wait_condition("web", "Ready", "True")
        self.wait_replicas("web", 0, timeout=60)
        deletes = self.hpa_deletes(since, with_time=True)
        self.assertEqual([d[0] for d in deletes], ["keda-hpa-web", "keda-hpa-web"])
        # Not before the window had passed since the first (the server's clock for both).
        self.assertGreaterEqual(deletes[1][2] - deletes[0][2], 3.99)
        # Sent to the autoscaling version discovery chose (the one evscale logs on connecting:
        # autoscaling/v2 where served, v2beta2 on 1.20), never a fixed one.
        hpa = [r.get("hpa") for r in self.log_records(logf)
               if r.get("msg") == "connected to Kubernetes"]
        self.assertEqual(len(hpa), 1, hpa)
        self.assertIn(hpa[0], ("autoscaling/v2", "autoscaling/v2beta2"))
        self.assertEqual(self.hpa_delete_versions(since), {hpa[0]})

    def test_new_leader_says_adoption(self):
        """A follower sees KEDA's HPA and waits (it writes nothing); once it leads it deletes the
        HPA and says EvscaleKEDAHPAAdopted, never EvscaleScaleTargetRefused (a new leader says
        what a follower could not, as the kind of refusal it is)."""
        self.web_under_keda_hpa("adopt-lead-")
        # Another process holds the Lease (renewed now, for an hour): evscale follows.
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        self.kubectl("create", "-n", self.home, "-f", "-", input=json.dumps({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": self.lease_name, "namespace": self.home},
            "spec": {"holderIdentity": "someone-else", "leaseDurationSeconds": 3600,
                     "acquireTime": now, "renewTime": now, "leaseTransitions": 0}}))
        proc, logf, base = self.start()
        self.adopt_on(proc)
        evstest.wait_until(lambda: any(r.get("msg") == "ScaledObject waits for KEDA's HPA to go"
                                       for r in self.log_records(logf)),
                           timeout=30, what="the follower waiting for KEDA's HPA to go")
        self.assertIsNotNone(self.hpa("keda-hpa-web"))  # a follower deletes nothing
        # The other holder goes away: evscale takes the Lease, adopts, drives.
        self.kubectl("delete", "lease", self.lease_name, "-n", self.home)
        evstest.wait_until(lambda: self.hpa("keda-hpa-web") is None, timeout=30,
                           what="KEDA's HPA deleted by the new leader")
        self.wait_condition("web", "Ready", "True")
        self.wait_replicas("web", 0, timeout=60)
        msgs = self.wait_event("web", "EvscaleKEDAHPAAdopted")
        self.assertTrue(any("adopting KEDA's HPA 'keda-hpa-web'" in m for m in msgs), msgs)
        reasons = [r for r, _ in self.events("web")]
        self.assertNotIn("EvscaleScaleTargetRefused", reasons, self.events("web"))

    def test_adopt_keda_hpa(self):
        lst = "adopt-" + self.ns
        self.redis.cmd("DEL", lst)
        # One apply (each kubectl run costs a few hundred ms): the Deployments, their
        # ScaledObjects, and a broken ScaledObject (evscale holds no model of it) to own d1's HPA.
        docs = []
        for d in ("web", "d1", "d2", "d3"):
            docs.append(DEPLOYMENT.format(name=d, ns=self.ns, replicas=2))
            docs.append(SCALEDOBJECT.format(name=d, ns=self.ns, target=d, list=lst,
                                            port=self.redis.port, cooldown=3))
        docs.append(SCALEDOBJECT.format(name="ghost", ns=self.ns, target="nowhere", list=lst,
                                        port=self.redis.port, cooldown=3)
                    .replace('listLength: "5"', 'listLength: "five"'))
        self.apply("---\n".join(docs))
        web_uid = self.uid("scaledobject", "web")
        self.create(keda_hpa(self.ns, "web", web_uid, "web", lst))
        # (d) KEDA-shaped, but: owned by a ScaledObject evscale does not hold (broken) ...
        self.create(keda_hpa(self.ns, "d1", None, "d1", lst, owners=[
            {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": "ghost",
             "uid": self.uid("scaledobject", "ghost"), "controller": True,
             "blockOwnerDeletion": True}]))
        # ... by another kind (its Deployment) ...
        self.create(keda_hpa(self.ns, "d2", None, "d2", lst, owners=[
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d2",
             "uid": self.uid("deployment", "d2"), "controller": True,
             "blockOwnerDeletion": True}]))
        # ... by the right ScaledObject's name with another uid (web's). The garbage collector
        # finds that reference dangling and removes it (the Deployment, a second owner, keeps
        # the HPA alive): either way evscale must refuse it and never delete it.
        self.create(keda_hpa(self.ns, "d3", None, "d3", lst, owners=[
            {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": "d3",
             "uid": web_uid, "controller": True, "blockOwnerDeletion": True},
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d3",
             "uid": self.uid("deployment", "d3")}]))
        since = evstest.audit_size(self.env)

        # (a) adopt off: refused as any foreign HPA; nothing deleted, nothing written.
        proc, logf, base = self.start()
        for d in ("web", "d1", "d2", "d3"):
            self.wait_message(d, "is already managed by the hpa 'keda-hpa-%s'" % d)
        time.sleep(3)  # an empty list and a 3 s cooldown would take them to 0 if evscale drove
        self.assertIsNotNone(self.hpa("keda-hpa-web"))
        self.assertEqual(self.hpa_deletes(since), [])
        for d in ("web", "d1", "d2", "d3"):
            self.assertEqual(self.scale_patches(since, d), [])

        # (b) adopt on, by a reload.
        self.adopt_on(proc)
        evstest.wait_until(lambda: self.hpa("keda-hpa-web") is None, timeout=30,
                           what="KEDA's HPA deleted")
        self.wait_condition("web", "Ready", "True")
        self.wait_replicas("web", 0, timeout=60)
        msgs = self.wait_event("web", "EvscaleKEDAHPAAdopted")
        self.assertTrue(any("adopting KEDA's HPA 'keda-hpa-web'" in m for m in msgs), msgs)
        self.assertEqual([n for n, _ in self.hpa_deletes(since)], ["keda-hpa-web"])

        # (c) KEDA's operator still runs: it re-creates its HPA at once (a new object).
        self.create(keda_hpa(self.ns, "web", web_uid, "web", lst))
        self.wait_message("web", "KEDA's operator re-created HPA 'keda-hpa-web' after evscale "
                                 "deleted it: stop KEDA's operator")
        self.assertEqual(self.condition("web", "Ready").get("status"), "False")
        msgs = self.wait_event("web", "EvscaleKEDAOperatorRunning")
        self.assertTrue(any("scale the keda-operator Deployment to 0" in m for m in msgs), msgs)
        time.sleep(2)
        self.assertIsNotNone(self.hpa("keda-hpa-web"))

        # (d) still refused, their HPAs still there; evscale deleted exactly one HPA, once.
        for d in ("d1", "d2", "d3"):
            self.assertIn("is already managed by the hpa 'keda-hpa-%s'" % d, self.message(d))
            self.assertIsNotNone(self.hpa("keda-hpa-" + d))
            self.assertEqual(self.scale_patches(since, d), [])
        self.assertEqual([n for n, _ in self.hpa_deletes(since)], ["keda-hpa-web"])
        recs = self.log_records(logf)
        self.assertTrue(any(r.get("msg") == "adopting KEDA's HPA: deleting it" for r in recs))

        # Turned off by a reload: KEDA's HPA is refused as any other again, and stays.
        self.adopt_on(proc, on=False)
        self.wait_message("web", "is already managed by the hpa 'keda-hpa-web'")
        self.assertIsNotNone(self.hpa("keda-hpa-web"))
        self.assertEqual([n for n, _ in self.hpa_deletes(since)], ["keda-hpa-web"])


if __name__ == "__main__":
    unittest.main()
