#!/usr/bin/env python3
"""End to end: the seeds' daily procedures (../shared/seeds/keda-runbook.md and
keda-operations-guide.md), each `kubectl` command that concerns ScaledObjects, run against
evscale running under its own ClusterRole (deploy/base/rbac.yaml, a ServiceAccount token, as
test_deploy.RunsUnderItsClusterRole) on the local control plane with a real redis-server:

  - status.conditions read as the runbook and guide read them (jsonpath, -o yaml, the jq filter);
  - the runbook's and guide's patches of pollingInterval, minReplicaCount, maxReplicaCount and a
    trigger's listLength take effect at once;
  - the runbook's breaker reset (remove keda.sh/circuit-breaker-triggered) after a trip;
  - `kubectl get hpa,scaledobjects -A` shows KEDA's printer columns filled;
  - back up, delete and restore ScaledObjects and TriggerAuthentications;
  - `kubectl auth can-i --list --as=system:serviceaccount:NS:SA` shows only the ClusterRole's
    (and the leader-election Role's) grants.

The commands are the seeds' own, adapted only in names and namespaces; each test cites the file
and section. -A is kept where the seeds use it for reading; for a backup that is applied again it
is narrowed to the test's namespace (the control plane is shared: applying everyone's objects
back would touch other tests' objects).

Run: EVS_BINARY=build/dbg/evscale python3 test/e2e/test_procedures.py -v
"""
import calendar
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evstest  # noqa: E402

# Fast both ways (as evstest.FLAPPY): KEDA's HPA would wait its default 300 s
# scale-down stabilization, which is the HPA's behaviour, not the procedure under test.
SO = """apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: {name}, namespace: {ns}}}
spec:
  scaleTargetRef: {{name: {target}}}
  minReplicaCount: {min}
  maxReplicaCount: {max}
  pollingInterval: {poll}
  cooldownPeriod: 3
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleUp:
          stabilizationWindowSeconds: 0
          policies: [{{type: Pods, value: 50, periodSeconds: 1}}]
        scaleDown:
          stabilizationWindowSeconds: 0
          policies: [{{type: Percent, value: 100, periodSeconds: 1}}]
  triggers:
  - type: redis
    metadata:
      address: 127.0.0.1:{port}
      listName: {list}
      listLength: "5"
"""


# The shared evscale's settings (one process for the tests that do not need settings of their own;
# see Procedures.shared). keyspace_events off: the Redis trigger reads at pollingInterval only,
# which test_patch_polling_interval measures (the others poll every second anyway). The breaker
# limit: the procedures compress an operator's day into seconds (test_patches_take_effect_at_once
# moves its target six times in half a minute, test_backup_and_restore as often), which the
# default breaker (3 scale events a minute) would take for flapping and hand to the fallback HPA;
# the breaker's own procedure has its own process (test_breaker_reset_by_the_runbook).
SHARED_CFG = ("redis:\n  keyspace_events: \"off\"\n"
              "circuit_breaker:\n  max_scale_events_per_minute: 1000\n")
SHARED_TESTS = ("test_read_status_conditions", "test_patches_take_effect_at_once",
                "test_patch_polling_interval", "test_get_scaledobjects_all_namespaces",
                "test_backup_and_restore")


# The backup of ScaledObjects and TriggerAuthentications that `kubectl apply -f` restores over
# live objects as well as after a loss (the README's; -A there, the test's namespace here): the
# runbook's `kubectl get ... -o yaml` keeps resourceVersion, which evscale's (as KEDA's) status
# writes make stale, and kubectl apply sends it as a precondition: 409 Conflict.
BACKUP_CMD = ("kubectl get scaledobjects,triggerauthentications -n %s -o json | \\\n"
              "  jq '.items |= map(del(.status, .metadata.resourceVersion, .metadata.uid,\n"
              "      .metadata.creationTimestamp, .metadata.generation, .metadata.managedFields))'"
              " \\\n  > keda-$(date +%%Y%%m%%d).json")


class Monitor:
    """redis-cli MONITOR of one Redis server: the server's times of the trigger's readings (its
    script: EVAL / EVALSHA; commands within 0.5 s of each other are one reading), so cadences
    are measured between readings, not over fixed windows."""

    def __init__(self, red, path):
        self.path = path
        self.f = open(path, "w")
        self.proc = subprocess.Popen(["redis-cli", "-p", str(red.port), "monitor"],
                                     stdout=self.f, stderr=subprocess.STDOUT)
        evstest.wait_until(lambda: "OK" in open(path).read(), timeout=20, what="MONITOR")

    def reads(self, after=0.0):
        out = []
        with open(self.path) as f:
            for ln in f:
                m = re.match(r'(\d+\.\d+) \[\d+ [^\]]*\] "(eval|evalsha)"', ln, re.I)
                if m and float(m.group(1)) > after:
                    # One reading may be two commands (EVALSHA, then EVAL on NOSCRIPT).
                    if not out or float(m.group(1)) - out[-1] > 0.5:
                        out.append(float(m.group(1)))
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.f.close()


class Procedures(evstest.KubeCase):
    """evstest.KubeCase's fixtures and helpers: evscale's ServiceAccount (deploy/base's RBAC,
    its token's kubeconfig) is set up once for the class in a namespace of its own (self.home,
    the Leases'), and one evscale process under it serves the tests of SHARED_TESTS, each in its
    own namespace (named before the process starts, created by the test): they use different
    namespaces, objects and Redis keys, so they do not interfere, and the class saves a start
    and a stop per test. The breaker's procedure needs the default breaker: a process of its
    own (the same ServiceAccount, a Lease of its own)."""

    evscale_binary = (os.environ.get("EVS_BINARY")
                      or os.path.join(evstest.SOURCE_DIR, "build", "rel", "evscale"))
    always_service_account = True

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        stamp = "%d-%d" % (os.getpid(), int(time.time() * 1000) % 100000)
        cls.test_ns = {t: "evs-proc-%s-%d" % (stamp, i) for i, t in enumerate(SHARED_TESTS)}
        cls.shared_proc = None
        cls.shared_procs = []  # every shared process started: (proc, logf)

    @classmethod
    def tearDownClass(cls):
        # Before KubeCase's class cleanups (which remove the directory of the log).
        try:
            for proc, logf in cls.shared_procs:
                evstest.stop_evscale(proc, logf, what="the shared evscale")
        finally:
            super().tearDownClass()

    def setUp(self):
        ns = type(self).test_ns.get(self._testMethodName)
        if ns is None:
            super().setUp()
        else:
            self.ns = ns
            self.lease_name = None  # the shared process's Lease: "evscale"
            self.kubectl("create", "namespace", self.ns)
            self.procs = []

    # --- helpers ---

    def shared(self):
        """The class's evscale (started by the first test that asks): (proc, logf, base)."""
        cls = type(self)
        if cls.shared_proc is None:
            cls.shared_proc = self.spawn(list(cls.test_ns.values()), "evscale", SHARED_CFG,
                                         into=cls.shared_procs)
        self.assertIsNone(cls.shared_proc[0].poll(), self.log(cls.shared_proc[1])[-3000:])
        return cls.shared_proc

    def so(self, name, target, lst, min=0, max=10, poll=1, port=None):
        self.apply(SO.format(name=name, ns=self.ns, target=target, list=lst, min=min, max=max,
                             poll=poll, port=port or self.redis.port))

    def sh(self, cmd, check=True):
        """A seed's command line, run by the shell as an operator types it (KUBECONFIG: the
        control plane's admin, as the runbook's "cluster admin access")."""
        p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], text=True, capture_output=True,
                           env=dict(os.environ, KUBECONFIG=type(self).env["KUBECONFIG"]),
                           timeout=120, cwd=self.dir)
        if check:
            self.assertEqual(p.returncode, 0, "%s\n%s%s" % (cmd, p.stdout, p.stderr))
        return p.stdout

    def no_refusals(self, logf):
        # (Not the API server's refusals in a namespace being deleted: the shared process may
        # still write there an Event about a finished test's object.)
        # An HTTP status field, not any 403 (CI saw a back-off's "retry_in_ms": 403).
        refused = [r for r in self.log_records(logf)
                   if (any(r.get(k) == 403 for k in ("status", "code", "http_status"))
                       or "forbidden" in json.dumps(r).lower())
                   and "because it is being terminated" not in json.dumps(r)]
        self.assertEqual(refused, [])

    # --- tests ---

    def test_read_status_conditions(self):
        ns = self.ns
        self.deployment("worker", 0)
        lst = "cond-" + ns
        self.redis.cmd("DEL", lst)
        self.so("worker-so", "worker", lst)
        # A broken one: its trigger's listLength is not a number.
        self.apply(SO.format(name="broken-so", ns=ns, target="other", list=lst, min=0, max=10,
                             poll=1, port=self.redis.port).replace('"5"', '"five"'))
        proc, logf, base = self.shared()
        self.wait_condition("worker-so", "Ready", "True", timeout=60)

        # keda-runbook.md, Incident Response / Circuit Breaker Triggered, step 5 (without watch):
        #   kubectl get scaledobject artemis-scaler -n artemis-system -o jsonpath="{.status.conditions}"
        def conds():
            out = self.sh('kubectl get scaledobject worker-so -n %s '
                          '-o jsonpath="{.status.conditions}"' % ns)
            return {c["type"]: c for c in json.loads(out)}
        c = evstest.wait_until(lambda: (lambda c: c if c.get("Active", {}).get("status") == "False"
                                        else None)(conds()), timeout=30, what="Active False")
        # KEDA's three conditions and their reasons (kedacore/keda apis/keda/v1alpha1
        # condition_types.go; src/scale/engine.c cites them): an empty list is not active.
        self.assertEqual((c["Ready"]["status"], c["Ready"]["reason"]),
                         ("True", "ScaledObjectReady"))
        self.assertEqual((c["Active"]["status"], c["Active"]["reason"]),
                         ("False", "ScalerNotActive"))
        self.assertEqual((c["Fallback"]["status"], c["Fallback"]["reason"]),
                         ("False", "NoFallbackFound"))
        self.redis.cmd("RPUSH", lst, *["j%d" % i for i in range(7)])
        self.wait_replicas("worker", 2, timeout=60)
        c = evstest.wait_until(lambda: (lambda c: c if c["Active"]["status"] == "True" else None)(
            conds()), timeout=30, what="Active True")
        self.assertEqual(c["Active"]["reason"], "ScalerActive")

        # keda-operations-guide.md, Troubleshooting / Verify ScaledObject Status:
        #   kubectl get scaledobject benthos-ml-worker-scaler -n ml-inference -o yaml
        # "Look for: status.conditions, status.scaleTargetGVKR, status.lastActiveTime".
        out = self.sh("kubectl get scaledobject worker-so -n %s -o yaml" % ns)
        (obj,) = evstest.parse_yaml(out)
        st = obj["status"]
        # KEDA's Paused condition (its printer column) too, False when not paused.
        self.assertEqual({c["type"]: c["status"] for c in st["conditions"]},
                         {"Ready": "True", "Active": "True", "Fallback": "False",
                          "Paused": "False"})
        # Never paused: KEDA's Paused is its GetInitializedConditions' own, False with no reason
        # and no message (kedacore/keda v2.20.2, 68a5b5028f35b22d50597c69819ab32c4e92f21a,
        # apis/keda/v1alpha1/condition_types.go; ScaledObjectUnpaused comes only after a pause,
        # controllers/keda/scaledobject_controller.go reconcileScaledObject).
        self.assertEqual({c["type"]: c for c in st["conditions"]}["Paused"],
                         {"type": "Paused", "status": "False"})
        self.assertEqual(st["scaleTargetGVKR"], {"group": "apps", "kind": "Deployment",
                                                 "resource": "deployments", "version": "v1"})
        self.assertRegex(st["lastActiveTime"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

        # keda-runbook.md, Incident Response / Scaler Errors, step 1:
        #   kubectl get scaledobjects -A -o json | \
        #     jq '.items[] | select(.status.conditions[].status=="False") | .metadata'
        # As with KEDA, any condition False selects (an idle one's Active, Fallback False too):
        # the broken one is there; the filter is the runbook's, not a health check.
        self.wait_condition("broken-so", "Ready", "False", timeout=30)
        # -A narrowed to the test's namespace: on the shared control plane other tests' objects
        # may have no status yet (nothing runs for them), and `.status.conditions[]` of a null
        # stops jq ("Cannot iterate over null"), as it would on a cluster with such an object.
        out = self.sh("kubectl get scaledobjects -n %s -o json | \\\n"
                      "  jq '.items[] | select(.status.conditions[].status==\"False\") | "
                      ".metadata'" % ns)
        names = re.findall(r'"name": "([^"]+)",\s*"namespace": "%s"' % re.escape(ns), out)
        self.assertIn("broken-so", names)

        # Paused and unpaused with KEDA's annotation (autoscaling.keda.sh/paused, its
        # NeedToBePausedByAnnotation): the same file's conditions, True ScaledObjectPaused,
        # then False ScaledObjectUnpaused with the unpause message, which stays.
        self.sh("kubectl annotate scaledobject worker-so -n %s autoscaling.keda.sh/paused=true"
                % ns)
        c = self.wait_condition("worker-so", "Paused", "True", timeout=30)
        self.assertEqual((c.get("reason"), c.get("message")),
                         ("ScaledObjectPaused", "ScaledObject is paused"))
        self.sh("kubectl annotate scaledobject worker-so -n %s autoscaling.keda.sh/paused-" % ns)
        c = self.wait_condition("worker-so", "Paused", "False", timeout=30)
        self.assertEqual((c.get("reason"), c.get("message")),
                         ("ScaledObjectUnpaused", "pause annotation removed for ScaledObject"))
        self.redis.cmd("DEL", lst)
        self.wait_condition("worker-so", "Active", "False", timeout=30)  # decided again since
        self.assertEqual(self.condition("worker-so", "Paused").get("reason"),
                         "ScaledObjectUnpaused")
        self.no_refusals(logf)

    def test_patches_take_effect_at_once(self):
        ns = self.ns
        self.deployment("worker", 0)
        lst = "patch-" + ns
        self.redis.cmd("DEL", lst)
        self.so("worker-so", "worker", lst, min=0, max=10, poll=1)
        proc, logf, base = self.shared()
        self.wait_condition("worker-so", "Ready", "True", timeout=60)
        # 60 items at listLength 5: 12, capped at maxReplicaCount 10.
        self.redis.cmd("RPUSH", lst, *["j%d" % i for i in range(60)])
        self.wait_replicas("worker", 10, timeout=60)

        # keda-runbook.md, Incident Response / Over-Scaling, step 4:
        #   kubectl patch scaledobject artemis-scaler -n artemis-system \
        #     --type merge -p '{"spec":{"maxReplicaCount":30}}'
        self.sh("kubectl patch scaledobject worker-so -n %s \\\n"
                "  --type merge -p '{\"spec\":{\"maxReplicaCount\":30}}'" % ns)
        self.wait_replicas("worker", 12, timeout=60)  # ceil(60 / 5), now under the max

        # keda-runbook.md, Incident Response / Over-Scaling, step 3:
        #   kubectl patch scaledobject artemis-scaler -n artemis-system --type='json' \
        #     -p='[{"op": "replace", "path": "/spec/triggers/0/metadata/listLength", "value": "20"}]'
        self.sh("kubectl patch scaledobject worker-so -n %s --type='json' \\\n"
                "  -p='[{\"op\": \"replace\", \"path\": \"/spec/triggers/0/metadata/listLength\", "
                "\"value\": \"20\"}]'" % ns)
        self.wait_replicas("worker", 3, timeout=60)  # ceil(60 / 20)

        # keda-operations-guide.md, ML-Specific Operational Patterns / Handling Model Reloading:
        #   kubectl patch scaledobject ml-service-scaler -n ml-inference --type=merge -p '{"spec":{"minReplicaCount": 5}}'
        #   ...
        #   kubectl patch scaledobject ml-service-scaler -n ml-inference --type=merge -p '{"spec":{"minReplicaCount": 1}}'
        self.sh("kubectl patch scaledobject worker-so -n %s --type=merge -p "
                "'{\"spec\":{\"minReplicaCount\": 5}}'" % ns)
        self.wait_replicas("worker", 5, timeout=60)  # the floor, above the queue's 3
        self.redis.cmd("DEL", lst)
        # The floor holds with an empty queue past the 3 s cooldown, counted from the object's
        # own lastActiveTime once a read has seen the queue empty (Active False), plus 2 reads.
        self.wait_condition("worker-so", "Active", "False", timeout=30)
        so = self.get_scaledobject("worker-so")
        last = calendar.timegm(time.strptime(so["status"]["lastActiveTime"], "%Y-%m-%dT%H:%M:%SZ"))
        while time.time() < last + 1 + 3 + 2:  # lastActiveTime is truncated to the second
            self.assertEqual(self.replicas("worker"), 5)
            time.sleep(0.2)
        self.assertEqual(self.replicas("worker"), 5)
        self.sh("kubectl patch scaledobject worker-so -n %s --type=merge -p "
                "'{\"spec\":{\"minReplicaCount\": 1}}'" % ns)
        self.wait_replicas("worker", 1, timeout=60)
        so = self.get_scaledobject("worker-so")
        self.assertEqual((so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"],
                          so["spec"]["triggers"][0]["metadata"]["listLength"]), (1, 30, "20"))
        self.no_refusals(logf)

    def test_patch_polling_interval(self):
        ns = self.ns
        # Its own Redis, its reads timed by MONITOR; the shared evscale has keyspace events off:
        # the trigger reads at pollingInterval only (with them on, a push makes a read at once).
        rdir = tempfile.mkdtemp(prefix="evs-redis-poll-")
        red = evstest.Redis(rdir)
        self.addCleanup(shutil.rmtree, rdir, ignore_errors=True)
        self.addCleanup(red.stop)
        mon = Monitor(red, os.path.join(rdir, "monitor.txt"))
        self.addCleanup(mon.stop)
        self.deployment("worker", 0)
        # At 0 replicas the cadence is pollingInterval alone (defaults.active_read_interval
        # applies only while the target has replicas): 300 s, nothing until the patch.
        self.so("worker-so", "worker", "pollq", poll=300, port=red.port)
        proc, logf, base = self.shared()
        self.wait_condition("worker-so", "Ready", "True", timeout=60)
        self.wait_condition("worker-so", "Active", "False", timeout=30)
        evstest.wait_until(mon.reads, timeout=30, what="the trigger's first read")

        def gaps(ts):
            return [round(b - a, 2) for a, b in zip(ts, ts[1:])]

        # keda-runbook.md, Incident Response / Scaling Too Slow, step 2:
        #   kubectl patch scaledobject artemis-scaler -n artemis-system \
        #     --type merge -p '{"spec":{"pollingInterval":5}}'
        t = time.time()
        self.sh("kubectl patch scaledobject worker-so -n %s \\\n"
                "  --type merge -p '{\"spec\":{\"pollingInterval\":5}}'" % ns)
        # At once: two reads (at 300 s there would be none for 5 minutes), 5 s apart (not 20 s,
        # nor the 1 s of a trigger that ignores the interval; 4 to 12 s: a timer's slack and a
        # loaded machine's).
        fast = evstest.wait_until(lambda: mon.reads(t)[:2] if len(mon.reads(t)) >= 2 else None,
                                  timeout=30, what="two reads after the patch to 5 s")
        self.assertTrue(4 <= fast[1] - fast[0] <= 12, gaps(fast))

        # keda-runbook.md, Incident Response / Circuit Breaker Triggered, step 3:
        #   kubectl patch scaledobject artemis-scaler -n artemis-system --type='json' \
        #     -p='[{"op": "replace", "path": "/spec/pollingInterval", "value": 20}]'
        t = time.time()
        self.sh("kubectl patch scaledobject worker-so -n %s --type='json' \\\n"
                "  -p='[{\"op\": \"replace\", \"path\": \"/spec/pollingInterval\", \"value\": 20}]'"
                % ns)
        (first,) = evstest.wait_until(lambda: mon.reads(t)[:1], timeout=30,
                                      what="a read after the patch to 20 s")
        # A queue pushed now shows at the next read, 20 s later (not 5: the patch took effect).
        red.cmd("RPUSH", "pollq", *["p%d" % i for i in range(6)])
        self.wait_replicas("worker", 2, timeout=60)
        slow = mon.reads(t)
        self.assertGreaterEqual(len(slow), 2, slow)
        self.assertGreaterEqual(slow[1] - first, 15, gaps(slow))
        self.no_refusals(logf)

    def test_breaker_reset_by_the_runbook(self):
        ns = self.ns
        self.deployment("flappy-target", 10)
        lst = "flap-" + ns
        self.redis.cmd("DEL", lst)
        self.redis.cmd("RPUSH", lst, *["f%d" % k for k in range(50)])
        self.apply(evstest.FLAPPY.format(name="flappy", ns=ns, target="flappy-target",
                                         list=lst, port=self.redis.port))
        # evscale of its own for this test's namespace (the default breaker).
        proc, logf, base = self.start(evstest.BREAKER_CFG.format(cooldown="10m"))
        self.wait_condition("flappy", "Ready", "True", timeout=60)
        self.flap(lst, "flappy-target")
        evstest.wait_until(lambda: self.hpa("keda-hpa-flappy"), timeout=30, what="the fallback HPA")
        evstest.wait_until(lambda: "keda.sh/circuit-breaker-triggered" in
                           self.annotations("flappy"), timeout=30, what="the triggered annotation")

        # keda-runbook.md, Incident Response / Circuit Breaker Triggered, step 1:
        #   kubectl get events -n artemis-system | grep -i scale | tail -20
        out = self.sh("kubectl get events -n %s | grep -i scale | tail -20" % ns)
        self.assertIn("flappy", out)
        # Step 3 (stabilize workload) and step 4 (reset), as written:
        #   kubectl patch scaledobject artemis-scaler -n artemis-system --type='json' \
        #     -p='[{"op": "replace", "path": "/spec/pollingInterval", "value": 20}]'
        #   kubectl annotate scaledobject artemis-scaler -n artemis-system \
        #     keda.sh/circuit-breaker-triggered- --overwrite
        self.redis.cmd("DEL", lst)
        self.redis.cmd("RPUSH", lst, *["o%d" % k for k in range(8)])
        self.sh("kubectl patch scaledobject flappy -n %s --type='json' \\\n"
                "  -p='[{\"op\": \"replace\", \"path\": \"/spec/pollingInterval\", \"value\": 20}]'"
                % ns)
        self.assertIsNotNone(self.hpa("keda-hpa-flappy"))
        self.sh("kubectl annotate scaledobject flappy -n %s \\\n"
                "  keda.sh/circuit-breaker-triggered- --overwrite" % ns)
        evstest.wait_until(lambda: self.hpa("keda-hpa-flappy") is None, timeout=30,
                           what="the fallback HPA deleted")
        # evscale scales again: 8 items at listLength 5 -> 2 (read at least every 15 s while
        # the target has replicas, whatever the 20 s interval).
        self.wait_replicas("flappy-target", 2, timeout=90)
        # Step 5 (without watch): the conditions say it is closed.
        out = self.sh('kubectl get scaledobject flappy -n %s -o jsonpath="{.status.conditions}"'
                      % ns)
        ready = {c["type"]: c for c in json.loads(out)}["Ready"]
        self.assertEqual(ready["status"], "True")
        self.assertNotEqual(ready.get("reason"), "CircuitBreakerOpen")
        self.assertNotIn("keda.sh/circuit-breaker-triggered", self.annotations("flappy"))
        # The patch alone did not close it (evscale saw it before the annotation: one watch,
        # in order): the breaker closed once, on the operator's reset.
        msgs = [r.get("msg") for r in self.log_records(logf)
                if r.get("scaledobject", "").endswith("/flappy")]
        closed = [i for i, m in enumerate(msgs) if m and m.startswith("circuit breaker closed")]
        self.assertEqual(len(closed), 1, msgs)
        self.assertEqual(msgs[closed[0] - 1], "circuit breaker reset by the operator", msgs)
        self.no_refusals(logf)

    def test_get_scaledobjects_all_namespaces(self):
        ns = self.ns
        self.deployment("worker", 0)
        lst = "cols-" + ns
        self.redis.cmd("DEL", lst)
        self.redis.cmd("RPUSH", lst, "one")
        self.so("worker-so", "worker", lst)
        proc, logf, base = self.shared()
        self.wait_replicas("worker", 1, timeout=60)
        self.wait_condition("worker-so", "Active", "True", timeout=30)
        # keda-runbook.md, Deployment Procedures / Deployment Steps, 5 (without watch; grep for
        # this namespace instead of "artemis|sophia"):
        #   kubectl get hpa,scaledobjects -A | grep -E "artemis|sophia"
        out = self.sh("kubectl get hpa,scaledobjects -A")
        lines = out.splitlines()
        heads = [i for i, ln in enumerate(lines) if ln.startswith("NAMESPACE") and
                 "SCALETARGETKIND" in ln]
        self.assertEqual(len(heads), 1, out[-3000:])
        header = lines[heads[0]]
        cols = re.findall(r"\S+\s*", header)
        starts, pos = [], 0
        for c in cols:
            starts.append((c.strip(), pos))
            pos += len(c)
        row = [ln for ln in lines[heads[0] + 1:] if ln.startswith(ns + " ")
               and ln.split()[1] in ("worker-so", "scaledobject.keda.sh/worker-so")]
        self.assertEqual(len(row), 1, out[-3000:])
        row = row[0]
        fields = {}
        for i, (name, at) in enumerate(starts):
            end = starts[i + 1][1] if i + 1 < len(starts) else len(row)
            fields[name] = row[at:end].strip()
        self.assertEqual(fields["SCALETARGETKIND"], "apps/v1.Deployment")
        self.assertEqual(fields["SCALETARGETNAME"], "worker")
        self.assertEqual((fields["MIN"], fields["MAX"]), ("0", "10"))
        self.assertEqual(fields["READY"], "True")
        self.assertEqual(fields["ACTIVE"], "True")
        self.assertEqual(fields["FALLBACK"], "False")
        self.assertEqual(fields["PAUSED"], "False")
        self.assertEqual(fields["TRIGGERS"], "redis")
        # No HPA in this namespace: evscale scales without one (KEDA's keda-hpa-worker-so would
        # show here; the breaker's fallback HPA is the only one evscale creates).
        self.assertFalse([ln for ln in lines[:heads[0]] if ln.startswith(ns + " ")])
        self.redis.cmd("DEL", lst)
        self.no_refusals(logf)

    def test_backup_and_restore(self):
        ns = self.ns
        rdir = tempfile.mkdtemp(prefix="evs-redis-bak-")
        red = evstest.Redis(rdir, password="backup-secret")
        self.addCleanup(shutil.rmtree, rdir, ignore_errors=True)
        self.addCleanup(red.stop)
        self.deployment("worker", 0)
        self.kubectl("create", "secret", "generic", "redis-auth", "-n", ns,
                     "--from-literal=password=backup-secret")
        self.apply(f"""apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata: {{name: redis-ta, namespace: {ns}}}
spec:
  secretTargetRef:
  - {{parameter: password, name: redis-auth, key: password}}
""")
        self.apply(SO.format(name="worker-so", ns=ns, target="worker", list="bakq", min=0, max=10,
                             poll=1, port=red.port) + "    authenticationRef: {name: redis-ta}\n")
        proc, logf, base = self.shared()
        red.cmd("RPUSH", "bakq", *["b%d" % i for i in range(8)])
        self.wait_replicas("worker", 2, timeout=60)  # the password worked
        self.wait_condition("worker-so", "Ready", "True")

        # keda-runbook.md, Disaster Recovery / Backup Procedures, 1 (-A narrowed to the test's
        # namespace, see the module's docstring; the file in the test's directory):
        #   kubectl get scaledobjects,triggerauthentications -A -o yaml > \
        #     /backup/keda/daily-$(date +%Y%m%d).yaml
        # keda-operations-guide.md, Maintenance Procedures / Migrating KEDA Between Clusters:
        #   kubectl get scaledobjects -n ml-inference -o yaml > scaledobjects-export.yaml
        #   kubectl get triggerauthentications -n ml-inference -o yaml > triggerauths-export.yaml
        self.sh("kubectl get scaledobjects,triggerauthentications -n %s -o yaml > \\\n"
                "  daily-$(date +%%Y%%m%%d).yaml" % ns)
        # The backup an operator should take instead (the README's): the same objects without
        # the server's fields (status, resourceVersion, uid, creationTimestamp, generation,
        # managedFields), so that `kubectl apply -f` restores it over live objects as well as
        # after a loss. JSON, which kubectl apply reads as it reads YAML.
        self.sh(BACKUP_CMD % ns)
        self.sh("kubectl get scaledobjects -n %s -o yaml > scaledobjects-export.yaml" % ns)
        self.sh("kubectl get triggerauthentications -n %s -o yaml > triggerauths-export.yaml" % ns)
        (daily,) = [f for f in os.listdir(self.dir) if re.match(r"daily-\d{8}\.yaml$", f)]
        (backup,) = [f for f in os.listdir(self.dir) if re.match(r"keda-\d{8}\.json$", f)]
        with open(os.path.join(self.dir, backup)) as f:
            kept = json.load(f)["items"]
        self.assertEqual(sorted((o["kind"], o["metadata"]["name"], o["metadata"]["namespace"])
                                for o in kept),
                         [("ScaledObject", "worker-so", ns),
                          ("TriggerAuthentication", "redis-ta", ns)])
        for o in kept:
            self.assertNotIn("status", o)
            self.assertFalse({"resourceVersion", "uid", "creationTimestamp", "generation",
                              "managedFields"} & set(o["metadata"]), o["metadata"])
            self.assertIn("spec", o)
        with open(os.path.join(self.dir, "scaledobjects-export.yaml")) as f:
            items = evstest.parse_yaml(f.read())  # the List's items
        self.assertEqual([o["metadata"]["name"] for o in items], ["worker-so"])
        self.assertIn("status", items[0])  # evscale's status is in the backup, as KEDA's is

        with open(os.path.join(self.dir, daily)) as f:
            rv = {o["kind"]: o["metadata"]["resourceVersion"] for o in
                  evstest.parse_yaml(f.read())}
        # evscale writes status after the backup (the queue grows: 2 -> 4 replicas), so the
        # backup's resourceVersion is stale by the time it is applied again.
        red.cmd("RPUSH", "bakq", *["c%d" % i for i in range(10)])
        self.wait_replicas("worker", 4, timeout=60)  # ceil(18 / 5)
        evstest.wait_until(lambda: self.get_scaledobject("worker-so")["metadata"]
                           ["resourceVersion"] != rv["ScaledObject"], timeout=30,
                           what="a status write")

        # keda-runbook.md, Disaster Recovery / Backup Procedures, 2. Test restore procedures
        # quarterly, over the live objects:
        #   kubectl apply -f /backup/keda/daily-20250106.yaml
        # with the backup taken by BACKUP_CMD (the file as taken: see below). evscale's status
        # does not get in the way: status is a subresource, and evscale keeps scaling.
        out = self.sh("kubectl apply -f %s" % backup)
        self.assertIn("scaledobject.keda.sh/worker-so", out)
        self.assertIn("triggerauthentication.keda.sh/redis-ta", out)
        self.wait_replicas("worker", 4, timeout=30)  # unchanged: evscale keeps scaling

        # The same with the file as taken: it names the ScaledObject's resourceVersion, and
        # evscale has written status since: kubectl apply sends the file's resourceVersion as a
        # precondition and the API server refuses the patch (Conflict), as with any controller
        # that writes status (KEDA's operator does too). The TriggerAuthentication (no status,
        # same resourceVersion) goes through.
        p = subprocess.run(["bash", "-c", "kubectl apply -f %s" % daily], text=True,
                           capture_output=True, cwd=self.dir,
                           env=dict(os.environ, KUBECONFIG=type(self).env["KUBECONFIG"]))
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertIn("the object has been modified", p.stderr)
        self.assertIn("triggerauthentication.keda.sh/redis-ta configured", p.stdout)
        # (kubectl trap: that apply stored the TriggerAuthentication's resourceVersion in its
        # last-applied-configuration; a later apply of a stripped copy then patches
        # resourceVersion away and is refused "must be specified for an update". Stripped first,
        # as here, or a delete and create, as below, avoids it.)

        # Then after a loss. keda-runbook.md, Incident Response / Scaler Errors, step 4:
        #   kubectl delete scaledobject artemis-scaler -n artemis-system
        #   kubectl apply -f scalers/artemis-scaledobject.yaml
        # (the file: BACKUP_CMD's; the backup as taken creates them too, as the guide's export
        # below shows: a create ignores resourceVersion, uid and status).
        self.sh("kubectl delete scaledobject worker-so -n %s" % ns)
        self.kubectl("delete", "triggerauthentication", "redis-ta", "-n", ns)
        self.assertEqual(self.kubectl("get", "scaledobjects,triggerauthentications", "-n", ns,
                                      "-o", "name"), "")
        # Left where it was (no restoreToOriginalReplicaCount): what follows is the restored
        # object's doing.
        self.assertEqual(self.replicas("worker"), 4)
        red.cmd("DEL", "bakq")
        out = self.sh("kubectl apply -f %s" % backup)
        self.assertIn("scaledobject.keda.sh/worker-so created", out)
        self.assertIn("triggerauthentication.keda.sh/redis-ta created", out)
        so = self.get_scaledobject("worker-so")
        self.assertEqual(so["spec"]["triggers"][0]["authenticationRef"], {"name": "redis-ta"})
        # The restored ones scale again (through the restored TriggerAuthentication's password):
        # an empty queue -> 0 after the 3 s cooldown; 7 items -> 2.
        self.wait_replicas("worker", 0, timeout=60)
        red.cmd("RPUSH", "bakq", *["r%d" % i for i in range(7)])
        self.wait_replicas("worker", 2, timeout=60)
        self.wait_condition("worker-so", "Ready", "True")

        # keda-operations-guide.md, Maintenance Procedures / Migrating KEDA Between Clusters,
        # import (after a delete here, the "target cluster" being the same one):
        #   kubectl apply -f scaledobjects-export.yaml
        #   kubectl apply -f triggerauths-export.yaml
        self.kubectl("delete", "scaledobject", "worker-so", "-n", ns)
        self.kubectl("delete", "triggerauthentication", "redis-ta", "-n", ns)
        red.cmd("DEL", "bakq")
        self.assertIn("created", self.sh("kubectl apply -f scaledobjects-export.yaml"))
        self.assertIn("created", self.sh("kubectl apply -f triggerauths-export.yaml"))
        # 2 replicas and an empty queue: the imported one drives the target again -> 0, then
        # 12 items -> 3.
        self.wait_replicas("worker", 0, timeout=60)
        red.cmd("RPUSH", "bakq", *["m%d" % i for i in range(12)])
        self.wait_replicas("worker", 3, timeout=60)
        self.no_refusals(logf)

    def test_can_i_list_for_the_service_account(self):
        # The class's ServiceAccount, in its namespace (evstest.service_account_kubeconfig).
        ns = self.home
        sas = self.kubectl("get", "serviceaccounts", "-n", ns, "-o",
                           "jsonpath={.items[*].metadata.name}").split()
        (sa,) = [s for s in sas if s.startswith("evscale")]
        self.assertEqual(sa, self.service_account)
        objs = evstest.parse_yaml(evstest.render(os.path.join(evstest.DEPLOY_DIR, "base")))
        want_cluster = evstest.expand(evstest.rules_of(objs, "ClusterRole"))
        want_ns = evstest.expand(evstest.rules_of(objs, "Role"))
        pairs = evstest.can_i_pairs
        # The API server's grants to every authenticated user (system:basic-user, ...).
        baseline = pairs(self.sh("kubectl auth can-i --list --as=system:serviceaccount:%s:nobody"
                                 % ns))
        # keda-runbook.md, Maintenance Procedures / Monthly Tasks, 3. Security audit:
        #   kubectl auth can-i --list --as=system:serviceaccount:keda-system:keda-operator
        # As written (no -n: the default namespace): the ClusterRole's rules, nothing more.
        cmd = "kubectl auth can-i --list --as=system:serviceaccount:%s:%s" % (ns, sa)
        evstest.wait_until(lambda: pairs(self.sh(cmd)) - baseline == want_cluster, timeout=60,
                           what="the ClusterRole's rules in force")
        # In evscale's own namespace: the leader-election Role's too.
        self.assertEqual(pairs(self.sh(cmd + " -n " + ns)) - baseline, want_cluster | want_ns)
        # Spelt out: what the ClusterRole's comments say is not granted.
        got = pairs(self.sh(cmd + " -n " + ns))
        for absent in [("secrets", "list"), ("secrets", "watch"), ("pods", "get"),
                       ("deployments.apps", "patch"), ("deployments.apps", "update"),
                       ("scaledobjects.keda.sh", "get"), ("scaledobjects.keda.sh", "update"),
                       ("triggerauthentications.keda.sh", "get"),
                       ("horizontalpodautoscalers.autoscaling", "patch")]:
            self.assertNotIn(absent, got)


if __name__ == "__main__":
    unittest.main(verbosity=2)
