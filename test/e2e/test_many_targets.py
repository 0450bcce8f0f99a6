#!/usr/bin/env python3
"""End to end (issue 13, list and sync): many ScaledObjects whose targets no watch cache reports
(a custom resource with a scale subresource, read through /scale) against a client-side rate
limit, with the short Lease of the e2e tests (4 s, renew deadline 3 s).

perf/bench_process.py found that taking the lead read every such target at once at the Lease's
own priority: the reads queued ahead of the renewal, the leader lost its Lease within seconds
and the status writes starved. Now at most a few reads are in flight, below the renewal and the
scale writes; so here the leader must keep its Lease through the whole sync, every ScaledObject
must get its status, and every target must be read.
"""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evstest  # noqa: E402

N = int(os.environ.get("EVS_MANY_TARGETS", "150"))
CRD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "perf",
                   "benchtarget-crd.yaml")

TARGET = """---
apiVersion: perf.evscale.io/v1
kind: BenchTarget
metadata: {{name: t{i}, namespace: {ns}}}
spec: {{replicas: 0}}
"""

SO = """---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: so{i}, namespace: {ns}}}
spec:
  scaleTargetRef: {{apiVersion: perf.evscale.io/v1, kind: BenchTarget, name: t{i}}}
  minReplicaCount: 0
  maxReplicaCount: 5
  pollingInterval: 30
  triggers:
  - type: redis
    metadata: {{address: "127.0.0.1:1", listName: l{i}, listLength: "5"}}
"""


class ManyTargets(evstest.KubeCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        evstest.kubectl(cls.env, "apply", "-f", CRD)
        evstest.wait_until(lambda: evstest.kubectl(
            cls.env, "get", "crd", "benchtargets.perf.evscale.io", "-o",
            "jsonpath={.status.conditions[?(@.type=='Established')].status}",
            check=False).strip() == "True", timeout=60, what="the BenchTarget CRD")

    def test_lease_kept_and_every_status_written(self):
        self.apply("".join(TARGET.format(i=i, ns=self.ns) for i in range(N)))
        self.apply("".join(SO.format(i=i, ns=self.ns) for i in range(N)))
        # 20 requests a second: the N first reads alone take N/20 s of the limiter, several
        # times the renew deadline.
        saved = {k: os.environ.get(k) for k in ("EVSCALE_KUBERNETES_QPS",
                                                "EVSCALE_KUBERNETES_BURST")}
        os.environ["EVSCALE_KUBERNETES_QPS"] = "20"
        os.environ["EVSCALE_KUBERNETES_BURST"] = "20"
        mark = evstest.audit_size(self.env)
        try:
            proc, logf, base = self.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

        def leads():
            return [r for r in self.log_records(logf)
                    if r.get("msg") == "leading: running scalers and writing"]
        evstest.wait_until(lambda: leads(), timeout=60, what="evscale to lead")

        def missing():
            sos = evstest.kubectl_json(self.env, "-n", self.ns, "get", "scaledobjects")["items"]
            return [so["metadata"]["name"] for so in sos
                    if not any(c.get("type") == "Ready"
                               for c in so.get("status", {}).get("conditions", []))]
        t0 = time.monotonic()
        evstest.wait_until(lambda: not missing(), timeout=300,
                           what="a status on every ScaledObject")
        took = time.monotonic() - t0
        records = self.log_records(logf)
        stepped = [r for r in records if r.get("msg") == "not leading: scalers stopped"]
        self.assertEqual(stepped, [], "the leader lost its Lease during the sync (%d ScaledObjects "
                         "in %.0f s):\n%s" % (N, took, self.log(logf)[-3000:]))
        self.assertEqual(len(leads()), 1)
        # Every target was read: none is still unknown (a status says so in its Ready message
        # until the first read answers) and no read failed.
        failed = [r for r in records if r.get("msg") == "cannot read the scale target"]
        self.assertEqual(failed, [], failed[:3])
        evstest.wait_until(lambda: evstest.audit_size(self.env) > mark, what="the audit log")
        time.sleep(2)  # the log is written as requests complete
        audit, _ = evstest.audit_events(self.env, mark)
        reads = {e["objectRef"]["name"] for e in audit
                 if e.get("stage") == "ResponseComplete" and e.get("verb") == "get"
                 and e.get("objectRef", {}).get("resource") == "benchtargets"
                 and e.get("objectRef", {}).get("subresource") == "scale"
                 and e.get("objectRef", {}).get("namespace") == self.ns
                 and e.get("responseStatus", {}).get("code") == 200}
        self.assertEqual(len(reads), N, "targets read through /scale")


if __name__ == "__main__":
    unittest.main()
