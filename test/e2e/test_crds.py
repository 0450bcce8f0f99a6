#!/usr/bin/env python3
"""KEDA's CRDs on the local control plane: test/data/crds is KEDA v2.20's config/crd/bases,
unmodified; a 1.20 API server stores it with only the CEL rule dropped; fields newer than KEDA
v2.13 (fallback.behavior, initialCooldownPeriod) are kept, a misspelt one is pruned; a running
control plane started from older CRD files gets the current ones when a test reuses it.

Run: python3 test/e2e/test_crds.py   (ctest: e2e_test_crds).
"""

import glob
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evstest  # noqa: E402

CRD_DIR = os.path.join(evstest.SOURCE_DIR, "test", "data", "crds")
CRD_FILES = sorted(glob.glob(os.path.join(CRD_DIR, "*.yaml")))
NS = "evs-crds-%d" % os.getpid()

SCALEDOBJECT = """
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: %(name)s, namespace: %(ns)s}
spec:
  scaleTargetRef: {name: worker}
  initialCooldownPeriod: 120
  fallback: {failureThreshold: 3, replicas: 6, behavior: currentReplicasIfHigher}
  %(extra)s
  triggers:
  - type: redis
    metadata: {address: "redis:6379", listName: jobs, listLength: "10"}
"""


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def body_and_header(path):
    """(KEDA's file: from the first '---' line on, the header comment above it)."""
    with open(path, "rb") as f:
        data = f.read()
    m = re.search(rb"^---$", data, re.M)
    return data[m.start():], data[:m.start()].decode()


def file_json(path):
    # kubectl parses the YAML (the tests use only the standard library).
    return json.loads(evstest.kubectl(ENV, "create", "--dry-run=client", "--validate=false",
                                      "-o", "json", "-f", path))


def lost_paths(want, have, path=""):
    """Paths present in want that have is missing or holds with another value."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return [path]
        out = []
        for k, v in want.items():
            out += [path + "." + k] if k not in have else lost_paths(v, have[k], path + "." + k)
        return out
    if isinstance(want, list):
        if not isinstance(have, list) or len(want) != len(have):
            return [path]
        return [p for i, (a, b) in enumerate(zip(want, have))
                for p in lost_paths(a, b, "%s[%d]" % (path, i))]
    return [] if want == have else [path]


ENV, setUpModule, tearDownModule = evstest.module_namespace(NS)


class Fixtures(unittest.TestCase):
    def test_bodies_are_keda_v2_20_unmodified(self):
        names = [os.path.basename(p) for p in CRD_FILES]
        self.assertEqual(names, ["keda.sh_clustertriggerauthentications.yaml",
                                 "keda.sh_scaledobjects.yaml",
                                 "keda.sh_triggerauthentications.yaml"])
        for path in CRD_FILES:
            body, header = body_and_header(path)
            self.assertRegex(header, r"tag v2\.20\.\d+, commit [0-9a-f]{40}", path)
            self.assertIn("path config/crd/bases/" + os.path.basename(path), header)
            blob = re.search(r"git blob ([0-9a-f]{40})", header).group(1)
            self.assertEqual(git_blob_sha1(body), blob, "%s differs from KEDA's file" % path)


class OnTheServer(unittest.TestCase):
    def test_stored_as_written_but_the_cel_rule(self):
        """What 1.20 drops from KEDA's CRDs: exactly the ScaledObject's one CEL rule."""
        lost = {}
        for path in CRD_FILES:
            want = file_json(path)
            have = json.loads(evstest.kubectl(ENV, "get", "crd", want["metadata"]["name"],
                                              "-o", "json"))
            lost[want["metadata"]["name"]] = lost_paths(want["spec"], have["spec"])
        self.assertEqual(lost, {
            "clustertriggerauthentications.keda.sh": [],
            "triggerauthentications.keda.sh": [],
            "scaledobjects.keda.sh": [
                ".versions[0].schema.openAPIV3Schema.properties.spec.x-kubernetes-validations"],
        })

    def test_new_fields_kept_misspelt_pruned(self):
        # KEDA v2.13.1's schema (the previous fixture) has neither initialCooldownPeriod nor
        # fallback.behavior: it pruned both, and this test failed with it.
        doc = SCALEDOBJECT % {"name": "so-new", "ns": NS, "extra": "initialCoolDownPeriod: 60"}
        # kubectl refuses the misspelt field (it validates against the served OpenAPI, from
        # the CRD's schema); told not to, it sends it and the server prunes it.
        with self.assertRaisesRegex(RuntimeError, 'unknown field "initialCoolDownPeriod"'):
            evstest.kubectl(ENV, "apply", "-f", "-", input=doc)
        evstest.kubectl(ENV, "apply", "--validate=false", "-f", "-", input=doc)
        so = json.loads(evstest.kubectl(ENV, "get", "scaledobject", "so-new", "-n", NS,
                                        "-o", "json"))
        self.assertEqual(so["spec"]["initialCooldownPeriod"], 120)
        self.assertEqual(so["spec"]["fallback"],
                         {"failureThreshold": 3, "replicas": 6,
                          "behavior": "currentReplicasIfHigher"})
        self.assertNotIn("initialCoolDownPeriod", so["spec"])

    def test_fallback_behavior_defaulted_and_enum_enforced(self):
        evstest.kubectl(ENV, "apply", "-f", "-", input=(SCALEDOBJECT % {
            "name": "so-default", "ns": NS, "extra": ""}).replace(
                ", behavior: currentReplicasIfHigher", ""))
        so = json.loads(evstest.kubectl(ENV, "get", "scaledobject", "so-default", "-n", NS,
                                        "-o", "json"))
        self.assertEqual(so["spec"]["fallback"]["behavior"], "static")  # KEDA's default
        proc = subprocess.run(
            ["kubectl", "apply", "-f", "-"], text=True, capture_output=True,
            input=(SCALEDOBJECT % {"name": "so-bad", "ns": NS, "extra": ""}).replace(
                "currentReplicasIfHigher", "sometimes"),
            env=dict(os.environ, KUBECONFIG=ENV["KUBECONFIG"]))
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("spec.fallback.behavior", proc.stderr)

    def test_printer_columns(self):
        crd = json.loads(evstest.kubectl(ENV, "get", "crd", "scaledobjects.keda.sh", "-o", "json"))
        cols = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
        for name in ("ScaleTargetKind", "ScaleTargetName", "Min", "Max", "Ready", "Active",
                     "Fallback", "Paused", "Triggers", "Authentications", "Age"):
            self.assertIn(name, cols)


@unittest.skipIf(os.environ.get("KUBE_API_URL"), "an external control plane is never modified")
class ReappliedOnReuse(unittest.TestCase):
    """A control plane started from older CRD files (emulated: initialCooldownPeriod removed from
    the stored schema, a stale digest) gets the current CRDs back when evstest reuses it."""

    def test_reuse_reapplies(self):
        cache = tempfile.mkdtemp(prefix="evs-crds-cache-")
        directory = os.path.join(cache, "cp-shared")
        subprocess.run([evstest.CONTROLPLANE_SH, "start", directory], check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=600)
        try:
            env = evstest._read_dir(directory)
            path = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/" \
                   "initialCooldownPeriod"
            evstest.kubectl(env, "patch", "crd", "scaledobjects.keda.sh", "--type=json", "-p",
                            json.dumps([{"op": "remove", "path": path}]))
            evstest.kubectl(env, "annotate", "--overwrite", "crd", "scaledobjects.keda.sh",
                            "evscale.test/crd-files-sha256=stale")

            def schema_has_field():
                crd = json.loads(evstest.kubectl(env, "get", "crd", "scaledobjects.keda.sh",
                                                 "-o", "json"))
                props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
                return "initialCooldownPeriod" in props["spec"]["properties"]

            self.assertFalse(schema_has_field())
            # The reuse path of controlplane(), in a process whose cache is this directory.
            child_env = {k: v for k, v in os.environ.items()
                         if k not in ("KUBE_API_URL", "KUBE_CA", "KUBE_TOKEN")}
            child_env["EVS_CACHE"] = cache
            subprocess.run([sys.executable, "-c", "import evstest; evstest.controlplane()"],
                           cwd=os.path.dirname(os.path.abspath(__file__)), env=child_env,
                           check=True, timeout=300)
            self.assertTrue(schema_has_field())
        finally:
            subprocess.run([evstest.CONTROLPLANE_SH, "stop", directory], timeout=120,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            subprocess.run(["rm", "-rf", cache])


if __name__ == "__main__":
    unittest.main(verbosity=2)
