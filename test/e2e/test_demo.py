#!/usr/bin/env python3
"""End to end: the README's first command, `tools/demo.sh --quick`, with the already built
binary (--binary, no install, no build) against the shared local control plane (passed through
KUBE_* in the environment, so the demo neither starts nor stops it) and its own redis-server:
it runs unattended to the end and exits 0, the Deployment followed the queue up (activation,
then the HPA's count) and came back to zero, each of those scale writes is in the API server's
audit log as evscale's PATCH of the Deployment's /scale; then the breaker act: the output shows
the trip (the HPA keda-hpa-flappy listed, the breaker open, the Ready reason CircuitBreakerOpen)
and the recovery by the runbook's annotate (the HPA gone, evscale writing again), and the audit
log has evscale's create of keda-hpa-flappy followed by its delete (and no HPA for the first
act's ScaledObject, which must not trip); the demo stopped what it started (its evscale and
redis-server are gone; its namespace is being deleted).
"""
import os
import re
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evstest  # noqa: E402

BIN = os.path.abspath(os.environ.get("EVS_BINARY", "build/evscale"))
DEMO = os.path.join(evstest.SOURCE_DIR, "tools", "demo.sh")


class Demo(unittest.TestCase):
    def test_quick_demo_scales_up_and_to_zero(self):
        env = evstest.controlplane()
        ns = "evs-demo-%d-%d" % (os.getpid(), int(time.time() * 1000) % 100000)
        run_env = dict(os.environ, DEMO_NAMESPACE=ns, EVS_SKIP_APT="1")
        for k in evstest.ENV_NAMES:
            if env.get(k):
                run_env[k] = env[k]
        since = evstest.audit_size(env)
        proc = subprocess.run(["bash", DEMO, "--quick", "--binary", BIN], env=run_env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=600)
        out = proc.stdout
        if os.environ.get("EVS_DEMO_OUTPUT"):
            with open(os.environ["EVS_DEMO_OUTPUT"], "w") as f:
                f.write(out)
        self.assertEqual(proc.returncode, 0, out[-4000:])
        lines = [l for l in out.splitlines() if l.strip()]
        self.assertEqual(lines[-1], "demo: done: everything it started is stopped", out[-2000:])
        self.assertIn("demo: worker scaled to zero", out)
        # The writes it printed: up from 0 (activation first), and the last one back to 0.
        writes = re.findall(r"scale write \d+: (\d+) -> (\d+) \((\w+)\)", out)
        self.assertGreaterEqual(len(writes), 3, out[-3000:])
        self.assertEqual(writes[0], ("0", "1", "Activate"))
        self.assertEqual(writes[-1][1:], ("0", "Deactivate"))
        self.assertGreaterEqual(max(int(w[1]) for w in writes), 3)
        # The same writes in the audit log, made by evscale.
        path = "/apis/apps/v1/namespaces/%s/deployments/worker/scale" % ns
        events, _ = evstest.audit_events(env, since)
        patches = [e for e in events if e.get("verb") == "patch"
                   and e.get("stage") == "ResponseComplete"
                   and e.get("requestURI", "").startswith(path)
                   and "evscale" in e.get("userAgent", "")]
        self.assertEqual(len(patches), len(writes), out[-3000:])
        # The breaker act, on screen: the trip, then the recovery by the runbook's reset.
        self.assertIn("demo: the circuit breaker", out, out[-3000:])
        act = out[out.index("demo: the circuit breaker"):]
        self.assertIn("demo: the breaker tripped", act, act[-3000:])
        tripped = act.index("demo: the breaker tripped")
        self.assertRegex(act[tripped:], r"\|\s+keda-hpa-flappy\s+Deployment/flappy")
        self.assertRegex(act, r"hpa keda-hpa-flappy \(min 2\)\s+breaker open\s+"
                              r"Ready reason CircuitBreakerOpen")
        reset = act.index("kubectl annotate scaledobject flappy "
                          "keda.sh/circuit-breaker-triggered- -n " + ns)
        self.assertGreater(reset, tripped)
        gone = act.index("demo: keda-hpa-flappy deleted")
        self.assertGreater(gone, reset)
        self.assertIn("No resources found", act[gone:])
        self.assertRegex(act[reset:], r"\*\* evscale wrote flappy \d+ -> 10 ")
        self.assertIn("demo: breaker closed, flappy back with evscale", act)
        # The flap before the trip: evscale's writes down, up, down (the fourth was refused).
        flaps = re.findall(r"evscale wrote flappy (\d+) -> (\d+)", act[:tripped])
        self.assertEqual(flaps, [("10", "1"), ("1", "10"), ("10", "1")], act[:3000])
        # In the audit log: evscale created the fallback HPA, then deleted it; nothing else did.
        hpas = [e for e in events if e.get("stage") == "ResponseComplete"
                and (e.get("objectRef") or {}).get("resource") == "horizontalpodautoscalers"
                and (e.get("objectRef") or {}).get("namespace") == ns
                and e.get("verb") in ("create", "delete", "update", "patch")]
        summary = [(e["verb"], e["objectRef"].get("name"), e.get("userAgent", "")[:40],
                    (e.get("responseStatus") or {}).get("code")) for e in hpas]
        creates = [e for e in hpas if e["verb"] == "create"]
        deletes = [e for e in hpas if e["verb"] == "delete"]
        self.assertEqual(len(creates), 1, summary)
        self.assertEqual(len(deletes), 1, summary)
        for e, code in ((creates[0], 201), (deletes[0], 200)):
            self.assertEqual(e["objectRef"].get("name"), "keda-hpa-flappy", summary)
            self.assertIn("evscale", e.get("userAgent", ""), summary)
            self.assertEqual(e["responseStatus"]["code"], code, summary)
        self.assertLess(creates[0]["stageTimestamp"], deletes[0]["stageTimestamp"])
        # Its evscale (pid printed) is gone.
        pid = int(re.search(r"evscale is running \(pid (\d+)", out).group(1))
        self.assertFalse(os.path.exists("/proc/%d" % pid) and
                         open("/proc/%d/cmdline" % pid).read().startswith(BIN))
        # Its namespace is gone or terminating.
        phase = evstest.kubectl(env, "get", "namespace", ns, "-o", "jsonpath={.status.phase}",
                                check=False)
        self.assertIn(phase.strip(), ("", "Terminating"))


if __name__ == "__main__":
    unittest.main()
