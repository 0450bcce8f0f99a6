#!/usr/bin/env python3
"""deploy/: every kustomize overlay renders (kubectl kustomize) and is accepted by the local
control plane (--dry-run=server); the configuration files are config/'s; deploy/crds is the CRD
the tests install, with KEDA's printer columns and pruning; the Dockerfile's runtime packages
cover every library evscale links; the RBAC, applied for real, grants the ServiceAccount exactly
the ClusterRole's and Role's rules, each with its comment.

Run: python3 test/e2e/test_deploy.py   (ctest: e2e_test_deploy; EVS_BINARY = the evscale to
check with ldd and check-config, default build/rel/evscale).
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evstest  # noqa: E402
from evstest import by_kind, expand, parse_yaml, render, rules_of, wrapper  # noqa: E402

SRC = evstest.SOURCE_DIR
DEPLOY = evstest.DEPLOY_DIR
OVERLAYS = ("dev", "staging", "prod")
NS = "evs-deploy-%d" % os.getpid()


def binary():
    return os.environ.get("EVS_BINARY") or os.path.join(SRC, "build", "rel", "evscale")


def run(*args, input=None, env=None, check=True):
    proc = subprocess.run(list(args), input=input, text=True, capture_output=True, env=env,
                          timeout=300)
    if check and proc.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(args), proc.returncode,
                                                   proc.stderr.strip()))
    return proc.stdout


ENV, setUpModule, tearDownModule = evstest.module_namespace(NS)


class Render(unittest.TestCase):
    def test_every_overlay(self):
        for overlay in OVERLAYS:
            with self.subTest(overlay=overlay):
                objs = parse_yaml(render(os.path.join(DEPLOY, "overlays", overlay)))
                kinds = sorted(o["kind"] for o in objs)
                self.assertEqual(kinds, sorted([
                    "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                    "RoleBinding", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget",
                    "NetworkPolicy"]))
                self.assertFalse([o for o in objs if o["kind"] == "CustomResourceDefinition"])
                dep = by_kind(objs, "Deployment")
                self.assertEqual(dep["spec"]["replicas"], 1 if overlay == "dev" else 2)
                pod = dep["spec"]["template"]["spec"]
                self.assertEqual(pod["serviceAccountName"], "evscale")
                self.assertTrue(pod["securityContext"]["runAsNonRoot"])
                (c,) = pod["containers"]
                self.assertEqual(c["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "http"})
                self.assertEqual(c["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "http"})
                self.assertEqual(c["ports"], [{"name": "http", "containerPort": 8080,
                                               "protocol": "TCP"}])
                for k in ("cpu", "memory"):
                    self.assertIn(k, c["resources"]["requests"])
                    self.assertIn(k, c["resources"]["limits"])
                sc = c["securityContext"]
                self.assertIs(sc["allowPrivilegeEscalation"], False)
                self.assertIs(sc["readOnlyRootFilesystem"], True)
                # The configuration: a directory mount (no subPath, so ConfigMap updates arrive)
                # of the generated ConfigMap, and EVSCALE_CONFIG naming the file in it.
                (mount,) = c["volumeMounts"]
                self.assertNotIn("subPath", mount)
                envs = {e["name"]: e["value"] for e in c["env"]}
                self.assertEqual(envs["EVSCALE_CONFIG"], mount["mountPath"] + "/config.yaml")
                (vol,) = pod["volumes"]
                cm = by_kind(objs, "ConfigMap")
                self.assertEqual(vol["configMap"]["name"], cm["metadata"]["name"])
                self.assertRegex(cm["metadata"]["name"], r"^evscale-config-[a-z0-9]{10}$")
                with open(os.path.join(SRC, "config", overlay + ".yaml")) as f:
                    self.assertEqual(cm["data"], {"config.yaml": f.read()})
                self.assertEqual(c["image"], "registry.example.com/evscale:0.1.0")
                pdb = by_kind(objs, "PodDisruptionBudget")
                self.assertEqual(pdb["apiVersion"], "policy/v1")
                self.assertEqual(pdb["spec"]["selector"], dep["spec"]["selector"])
                np = by_kind(objs, "NetworkPolicy")
                self.assertEqual(np["spec"]["policyTypes"], ["Ingress"])
                self.assertEqual(np["spec"]["ingress"], [{"ports": [{"port": 8080,
                                                                     "protocol": "TCP"}]}])

    def test_base_config_is_example(self):
        objs = parse_yaml(render(os.path.join(DEPLOY, "base")))
        with open(os.path.join(SRC, "config", "example.yaml")) as f:
            self.assertEqual(by_kind(objs, "ConfigMap")["data"], {"config.yaml": f.read()})

    def test_config_copies_equal_config_dir(self):
        pairs = [("base/config.yaml", "example.yaml")] + [
            ("overlays/%s/config.yaml" % o, o + ".yaml") for o in OVERLAYS]
        for mine, theirs in pairs:
            with open(os.path.join(DEPLOY, mine), "rb") as a, \
                    open(os.path.join(SRC, "config", theirs), "rb") as b:
                self.assertEqual(a.read(), b.read(), "deploy/%s != config/%s" % (mine, theirs))

    def test_configs_are_valid(self):
        if not os.path.exists(binary()):
            self.skipTest("no evscale binary at %s" % binary())
        for path in [os.path.join(DEPLOY, "base", "config.yaml")] + [
                os.path.join(DEPLOY, "overlays", o, "config.yaml") for o in OVERLAYS]:
            proc = subprocess.run([binary(), "check-config", "--config", path], text=True,
                                  capture_output=True, timeout=60)
            self.assertEqual(proc.returncode, 0, "%s: %s" % (path, proc.stderr))


class DryRunServer(unittest.TestCase):
    def test_every_overlay_accepted(self):
        served = run("kubectl", "api-versions",
                     env=dict(os.environ, KUBECONFIG=ENV["KUBECONFIG"])).split()
        for overlay in OVERLAYS:
            with self.subTest(overlay=overlay):
                ns = "%s-%s" % (NS, overlay)
                d = wrapper(overlay, ns, "-%d" % os.getpid())
                try:
                    objs = parse_yaml(render(d))
                finally:
                    shutil.rmtree(d)
                by_kind(objs, "Namespace")["metadata"]["name"] = ns
                # The one patch: a 1.20 API server serves PodDisruptionBudget only as
                # policy/v1beta1 (policy/v1 arrived in 1.21). The spec used here (maxUnavailable,
                # selector) means the same in both.
                if "policy/v1" not in served:
                    self.assertIn("policy/v1beta1", served)
                    by_kind(objs, "PodDisruptionBudget")["apiVersion"] = "policy/v1beta1"
                # A server dry run needs the namespace to exist: created for real, then the
                # whole rendering (including that Namespace) is validated by the server.
                evstest.kubectl(ENV, "create", "namespace", ns)
                try:
                    out = evstest.kubectl(ENV, "apply", "--dry-run=server", "-f", "-",
                                          input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                            "items": objs}))
                finally:
                    evstest.kubectl(ENV, "delete", "namespace", ns, "--wait=false", check=False)
                self.assertEqual(out.count("(server dry run)"), len(objs), out)


class Crds(unittest.TestCase):
    def test_deploy_crds_are_the_tested_ones(self):
        mine = sorted(os.path.basename(p) for p in glob.glob(os.path.join(DEPLOY, "crds", "*.yaml")))
        theirs = sorted(os.path.basename(p) for p in
                        glob.glob(os.path.join(SRC, "test", "data", "crds", "*.yaml")))
        self.assertEqual(mine, theirs)
        self.assertEqual(len(mine), 3)
        for name in mine:
            with open(os.path.join(DEPLOY, "crds", name), "rb") as a, \
                    open(os.path.join(SRC, "test", "data", "crds", name), "rb") as b:
                self.assertEqual(a.read(), b.read(), name)

    def test_printer_columns_and_status(self):
        with open(os.path.join(DEPLOY, "crds", "keda.sh_scaledobjects.yaml")) as f:
            (crd,) = parse_yaml(f.read())
        (v,) = crd["spec"]["versions"]
        self.assertEqual((v["name"], v["served"], v["storage"]), ("v1alpha1", True, True))
        self.assertEqual(v["subresources"], {"status": {}})
        cols = {c["name"]: c["jsonPath"] for c in v["additionalPrinterColumns"]}
        # KEDA v2.20.2's columns (config/crd/bases/keda.sh_scaledobjects.yaml).
        self.assertEqual(cols, {
            "ScaleTargetKind": ".status.scaleTargetKind",
            "ScaleTargetName": ".spec.scaleTargetRef.name",
            "Min": ".spec.minReplicaCount", "Max": ".spec.maxReplicaCount",
            "Ready": ".status.conditions[?(@.type==\"Ready\")].status",
            "Active": ".status.conditions[?(@.type==\"Active\")].status",
            "Fallback": ".status.conditions[?(@.type==\"Fallback\")].status",
            "Paused": ".status.conditions[?(@.type==\"Paused\")].status",
            "Triggers": ".status.triggersTypes",
            "Authentications": ".status.authenticationsTypes",
            "Age": ".metadata.creationTimestamp"})
        # ...and the server prints them (the control plane runs these very files).
        evstest.kubectl(ENV, "apply", "-f", "-", input=SO % {"ns": NS, "name": "cols",
                                                               "extra": ""})
        header = evstest.kubectl(ENV, "get", "scaledobjects", "-n", NS).splitlines()[0].split()
        self.assertEqual(header, ["NAME"] + [c.upper() for c in cols])

    def test_misspelt_field_pruned(self):
        evstest.kubectl(ENV, "apply", "--validate=false", "-f", "-", input=SO % {
            "ns": NS, "name": "typo", "extra": "pollingIntervall: 5"})
        so = json.loads(evstest.kubectl(ENV, "get", "scaledobject", "typo", "-n", NS,
                                        "-o", "json"))
        self.assertNotIn("pollingIntervall", so["spec"])
        self.assertEqual(so["spec"]["maxReplicaCount"], 7)


SO = """
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: %(name)s, namespace: %(ns)s}
spec:
  scaleTargetRef: {name: worker}
  maxReplicaCount: 7
  %(extra)s
  triggers:
  - type: redis
    metadata: {address: "redis:6379", listName: jobs, listLength: "10"}
"""


class Dockerfile(unittest.TestCase):
    def setUp(self):
        with open(os.path.join(DEPLOY, "Dockerfile")) as f:
            self.text = f.read()

    def runtime_packages(self):
        block = re.search(r"# runtime-packages-begin\n(.*?)# runtime-packages-end", self.text,
                          re.S).group(1)
        words = block.replace("\\\n", " ").split()
        i = words.index("--no-install-recommends")
        pkgs = []
        for w in words[i + 1:]:
            if w in ("&&",):
                break
            pkgs.append(w)
        return set(pkgs)

    def test_debian_release_and_user(self):
        codename = None
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("VERSION_CODENAME="):
                    codename = line.strip().split("=", 1)[1]
        froms = re.findall(r"^FROM (\S+)", self.text, re.M)
        self.assertEqual(froms, ["debian:%s" % codename, "debian:%s-slim" % codename])
        self.assertRegex(self.text, r"\nUSER 65532:65532\n")
        self.assertNotIn("SANITIZE", self.text)
        dep = by_kind(parse_yaml(render(os.path.join(DEPLOY, "base"))), "Deployment")
        self.assertEqual(dep["spec"]["template"]["spec"]["securityContext"]["runAsUser"], 65532)

    def test_packages_cover_ldd(self):
        if not os.path.exists(binary()):
            self.skipTest("no evscale binary at %s" % binary())
        pkgs = self.runtime_packages()
        self.assertIn("libuv1", pkgs)
        libs = {}
        for line in run("ldd", binary()).splitlines():
            m = re.match(r"\s*(\S+) => (\S+) \(", line) or re.match(r"\s*(/\S+) \(", line)
            if m:
                libs[m.group(1)] = m.group(m.lastindex)
        self.assertTrue(libs)
        uncovered = {}
        owners = packages_of(libs.values())
        base = base_image_packages()
        for soname, path in libs.items():
            # Sanitizer runtimes appear in a -DEVSCALE_SANITIZE=ON build only; the image builds
            # without (checked above).
            if re.match(r"lib(asan|ubsan|lsan|tsan)\.so", os.path.basename(soname)):
                continue
            pkg = owners.get(path)
            self.assertTrue(pkg, "no Debian package ships %s" % path)
            if pkg not in pkgs and pkg not in base:
                uncovered[soname] = pkg
        self.assertEqual(uncovered, {}, "libraries whose package the Dockerfile does not install")

    def test_check_fails_for_a_missing_package(self):
        """The coverage check is not vacuous: without libjansson4 it finds libjansson.so.4."""
        if not os.path.exists(binary()):
            self.skipTest("no evscale binary at %s" % binary())
        self.text = self.text.replace(" libjansson4 ", " ")
        with self.assertRaisesRegex(AssertionError, r"libjansson\.so\.4"):
            self.test_packages_cover_ldd()


def candidates(path):
    # ldd may name /lib/... where the package ships /usr/lib/... (merged /usr), or a symlink.
    real = os.path.realpath(path)
    out = [path, real]
    for p in (path, real):
        out.append(p[4:] if p.startswith("/usr/") else "/usr" + p)
    return out


def packages_of(paths):
    """{path: Debian package shipping it}, with one `dpkg -S` for all (it reads every file list)."""
    paths = list(paths)
    proc = subprocess.run(["dpkg", "-S"] + [c for p in paths for c in candidates(p)], text=True,
                          capture_output=True, timeout=300)
    owner = {}
    for line in proc.stdout.splitlines():
        pkgs, _, file = line.partition(": ")
        owner.setdefault(file.strip(), pkgs.split(",")[0].split(":")[0].strip())
    return {p: next((owner[c] for c in candidates(p) if c in owner), None) for p in paths}


def base_image_packages():
    """What debian:<release>-slim holds (debuerreotype's minbase): the Essential and
    Priority: required packages and, recursively, what they depend on, as this machine's dpkg
    database describes them (the same release: checked by test_debian_release_and_user)."""
    fields = run("dpkg-query", "-W",
                 "-f=${Package}\t${Essential}\t${Priority}\t${Pre-Depends}, ${Depends}\n")
    deps, todo = {}, []
    for line in fields.splitlines():
        name, essential, prio, rels = line.split("\t")
        deps[name] = [re.split(r"[\s(:]", alt.strip())[0]
                      for rel in rels.split(",") for alt in rel.split("|") if alt.strip()]
        if essential == "yes" or prio == "required":
            todo.append(name)
    seen = set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(deps.get(name, []))
    return seen


# What evscale's code asks of the API server, as (group, resource, verb), with the module that
# asks. Keep this in step with the code: grep src/kube for .verb = and the paths it builds.
# Discovery (/api, /apis, /version) is not here: every authenticated user may read it.
NEEDED_CLUSTER = {
    # src/app/control.c + src/kube/informer.c: informers list, then watch.
    ("keda.sh", "scaledobjects", "list"), ("keda.sh", "scaledobjects", "watch"),
    ("keda.sh", "triggerauthentications", "list"), ("keda.sh", "triggerauthentications", "watch"),
    ("keda.sh", "clustertriggerauthentications", "list"),
    ("keda.sh", "clustertriggerauthentications", "watch"),
    ("apps", "deployments", "list"), ("apps", "deployments", "watch"),
    ("apps", "statefulsets", "list"), ("apps", "statefulsets", "watch"),
    ("autoscaling", "horizontalpodautoscalers", "list"),
    ("autoscaling", "horizontalpodautoscalers", "watch"),
    # src/kube/status.c: PATCH .../scaledobjects/NAME/status.
    ("keda.sh", "scaledobjects/status", "patch"),
    # src/kube/fallbackhpa.c evs_fallbackhpa_annotate: PATCH the breaker's annotations.
    ("keda.sh", "scaledobjects", "patch"),
    # src/kube/triggerauth.c: GET the scale target (its pod template's environment), and the
    # Secrets and ConfigMaps a TriggerAuthentication or the environment names.
    ("apps", "deployments", "get"), ("apps", "statefulsets", "get"),
    ("", "secrets", "get"), ("", "configmaps", "get"),
    # src/kube/scalewriter.c: PATCH .../scale of any kind (discovery), GET it under --dry-run.
    ("*", "*/scale", "patch"), ("*", "*/scale", "get"),
    # src/kube/fallbackhpa.c: the fallback HPA: POST, GET, PUT, DELETE.
    ("autoscaling", "horizontalpodautoscalers", "create"),
    ("autoscaling", "horizontalpodautoscalers", "get"),
    ("autoscaling", "horizontalpodautoscalers", "update"),
    ("autoscaling", "horizontalpodautoscalers", "delete"),
    # src/kube/events.c: POST, then PATCH a series; events.k8s.io/v1 or core v1 (discovery).
    ("events.k8s.io", "events", "create"), ("events.k8s.io", "events", "patch"),
    ("", "events", "create"), ("", "events", "patch"),
}
# src/kube/lease.c: the Lease in evscale's own namespace: GET, POST the first time, PUT to renew,
# take over and release.
NEEDED_NAMESPACE = {
    ("coordination.k8s.io", "leases", "get"), ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "update"),
}


def triples(rules):
    """(group, resource, verb) of every combination these rules grant."""
    return {(g, res, verb) for r in rules for g in r["apiGroups"] for res in r["resources"]
            for verb in r["verbs"]}


class Rbac(unittest.TestCase):
    def test_rules_are_exactly_what_the_code_uses(self):
        objs = parse_yaml(render(os.path.join(DEPLOY, "base")))
        cluster = triples(rules_of(objs, "ClusterRole"))
        ns = triples(rules_of(objs, "Role"))
        self.assertEqual(sorted(NEEDED_CLUSTER - cluster), [], "needed, not granted")
        self.assertEqual(sorted(cluster - NEEDED_CLUSTER), [], "granted, not needed")
        self.assertEqual(ns, NEEDED_NAMESPACE)
        for r in rules_of(objs, "ClusterRole") + rules_of(objs, "Role"):
            self.assertNotIn("resourceNames", r)
            self.assertNotIn("*", r["verbs"])
        # Every overlay keeps the base's rules.
        for overlay in OVERLAYS:
            objs = parse_yaml(render(os.path.join(DEPLOY, "overlays", overlay)))
            self.assertEqual(triples(rules_of(objs, "ClusterRole")), NEEDED_CLUSTER, overlay)
            self.assertEqual(triples(rules_of(objs, "Role")), NEEDED_NAMESPACE, overlay)

    def test_every_rule_has_its_comment(self):
        with open(os.path.join(DEPLOY, "base", "rbac.yaml")) as f:
            lines = f.read().splitlines()
        for i, line in enumerate(lines):
            if line.strip().startswith("- apiGroups:"):
                self.assertTrue(lines[i - 1].strip().startswith("#"),
                                "rule at rbac.yaml:%d has no comment" % (i + 1))

    def test_can_i_list_shows_only_the_grants(self):
        suffix = "-%d" % os.getpid()
        ns = NS + "-rbac"
        d = wrapper("prod", ns, suffix)
        try:
            objs = parse_yaml(render(d))
        finally:
            shutil.rmtree(d)
        rbac = [o for o in objs if o["kind"] in ("Namespace", "ServiceAccount", "ClusterRole",
                                                  "ClusterRoleBinding", "Role", "RoleBinding")]
        by_kind(rbac, "Namespace")["metadata"]["name"] = ns
        sa = by_kind(rbac, "ServiceAccount")["metadata"]["name"]
        self.assertEqual(sa, "evscale" + suffix)
        # kustomize renames roleRef but neither the subjects' ServiceAccount name (nameSuffix)
        # nor their namespace (a namespace it did not set itself): the wrapper's move is
        # completed here. The subject itself is the base's, checked first.
        for kind in ("ClusterRoleBinding", "RoleBinding"):
            binding = by_kind(rbac, kind)
            self.assertEqual(binding["subjects"], [{"kind": "ServiceAccount", "name": "evscale",
                                                    "namespace": "evscale"}])
            binding["subjects"] = [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]
        evstest.kubectl(ENV, "apply", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": rbac}))
        try:
            user = "system:serviceaccount:%s:%s" % (ns, sa)
            # The API server's own grants to every authenticated user (system:basic-user,
            # system:discovery, system:public-info-viewer): not evscale's.
            baseline = can_i_list(ENV, "system:serviceaccount:%s:nobody" % ns, ns)
            want_cluster = expand(rules_of(rbac, "ClusterRole"))
            want_ns = expand(rules_of(rbac, "Role"))
            # The authorizer's RBAC caches see new bindings a moment after they are written.
            evstest.wait_until(lambda: can_i_list(ENV, user, ns) - baseline
                               == want_cluster | want_ns, timeout=60, what="the RBAC in force")
            mine = can_i_list(ENV, user, ns) - baseline
            elsewhere = can_i_list(ENV, user, "default") - baseline
            self.assertEqual(elsewhere, want_cluster)
            self.assertEqual(mine, want_cluster | want_ns)
            # What the comments promise, spelt out.
            self.assertIn(("leases.coordination.k8s.io", "update"), mine)
            self.assertNotIn(("leases.coordination.k8s.io", "update"), elsewhere)
            self.assertIn(("secrets", "get"), mine)
            for absent in [("secrets", "list"), ("secrets", "watch"), ("configmaps", "list"),
                           ("pods", "get"), ("pods", "list"), ("deployments.apps", "patch"),
                           ("scaledobjects.keda.sh", "update"), ("*.*", "get"), ("*.*/scale", "update")]:
                self.assertNotIn(absent, mine)
            # And the API server agrees on single checks.
            for verb, res, ok in [("patch", "deployments.apps/scale", True),
                                  ("patch", "deployments.apps", False),
                                  ("list", "secrets", False),
                                  ("patch", "scaledobjects.keda.sh/status", True),
                                  ("create", "events.events.k8s.io", True),
                                  ("delete", "horizontalpodautoscalers.autoscaling", True),
                                  ("update", "horizontalpodautoscalers.autoscaling", True),
                                  ("patch", "horizontalpodautoscalers.autoscaling", False),
                                  ("get", "scaledobjects.keda.sh", False)]:
                res, _, sub = res.partition("/")
                proc = subprocess.run(
                    ["kubectl", "auth", "can-i", verb, res, "--as", user, "-n", ns] +
                    (["--subresource", sub] if sub else []),
                    text=True, capture_output=True, env=dict(os.environ,
                                                             KUBECONFIG=ENV["KUBECONFIG"]))
                self.assertEqual(proc.stdout.strip(), "yes" if ok else "no", (verb, res))
        finally:
            for o in rbac:
                if o["kind"] in ("ClusterRole", "ClusterRoleBinding", "Namespace"):
                    evstest.kubectl(ENV, "delete", o["kind"].lower(), o["metadata"]["name"],
                                    "--wait=false", check=False)


class RunsUnderItsClusterRole(evstest.KubeCase):
    """evscale, with a ServiceAccount token bound only to deploy/base's ClusterRole and Role,
    scales a Deployment from a Redis list on the local control plane: activation, status,
    Events, the scale-out and the drain to 0. A verb missing from the rules fails it (the
    status patch, the /scale patch, the Lease or an Event is refused, and the log says so).
    (evstest.KubeCase sets the ServiceAccount up: evstest.service_account_kubeconfig.)"""

    evscale_binary = binary()
    always_service_account = True

    def test_scales_under_the_service_account(self):
        self.deployment("worker", 0)
        lst = "jobs-" + self.ns
        self.redis.cmd("DEL", lst)
        self.scaledobject("worker-so", "worker", lst, cooldown=3)
        proc, logf, base = self.start()
        self.wait_condition("worker-so", "Ready", "True", timeout=60)
        self.wait_condition("worker-so", "Active", "False")
        # 12 items, listLength 5: 0 -> 1 (activation), then ceil(12 / 5) = 3.
        self.redis.cmd("RPUSH", lst, *["j%d" % i for i in range(12)])
        self.wait_replicas("worker", 3, timeout=90)
        self.wait_condition("worker-so", "Active", "True")
        self.wait_event("worker-so", "KEDAScaleTargetActivated", timeout=60)
        self.redis.cmd("DEL", lst)
        self.wait_replicas("worker", 0, timeout=90)
        self.wait_event("worker-so", "KEDAScaleTargetDeactivated", timeout=60)
        # The Lease was taken under the Role (leader election on by default), in the
        # ServiceAccount's namespace.
        holder = self.kubectl("get", "lease", self.lease_name, "-n", self.home, "-o",
                              "jsonpath={.spec.holderIdentity}")
        self.assertTrue(holder)
        # Nothing evscale asked was refused.
        refused = [r for r in self.log_records(logf)
                   if any(r.get(k) == 403 for k in ("status", "code", "http_status"))
                   or "forbidden" in json.dumps(r).lower()]
        # (An HTTP status field of 403 or the server's "forbidden": not "403" anywhere, which a
        # timestamp's milliseconds or a back-off's retry_in_ms may hold.)
        self.assertEqual(refused, [])


def can_i_list(env, user, ns):
    """(resource, verb) pairs of `kubectl auth can-i --list` (resource rules only)."""
    return evstest.can_i_pairs(evstest.kubectl(env, "auth", "can-i", "--list", "--as", user,
                                                "-n", ns))


if __name__ == "__main__":
    unittest.main(verbosity=2)
