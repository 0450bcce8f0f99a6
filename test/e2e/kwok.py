"""A fake kubelet for the local control plane, as kwok does it (Python 3 standard library only).

The control plane of evstest.controlplane() has no scheduler and no kubelet, so the pods that the
ReplicaSet and StatefulSet controllers create stay Pending forever and no workload ever has a
ready replica. This module plays the missing parts over the API, the way kwok does:

    import evstest, kwok
    node = kwok.create_node(env, "evs-kwok-123")        # a Node with Ready=True and capacity
    k = kwok.Kubelet(env, node, ns, "app=web")          # pods of ns matching the selector
    k.start()                                           # background thread, polls every 0.2 s
    k.ready_limit = 2                                   # at most 2 pods ready (None = all)
    ...
    k.stop(); kwok.delete_node(env, node)

Each pass (Kubelet.sync) lists the pods matching the selector in the namespace and
  - binds the unbound ones to the node (POST pods/<name>/binding, what kube-scheduler does);
  - turns the first `ready_limit` of the node's pods (oldest first, then by name) Running and
    Ready, and the others Running and not Ready, as with a failing readiness probe (PATCH
    pods/<name>/status);
  - finishes the deletion of the node's pods being deleted (DELETE with gracePeriodSeconds 0:
    the kubelet's part of a graceful deletion; without it a bound pod stays Terminating forever
    and a StatefulSet never scales down).

Where the fields come from:
  - kwok's node and pod stages, kubernetes-sigs/kwok
    kustomize/stage/node/fast/testdata/node-pending.output.yaml
    @35bdf70f89e28b89ace34e4921e590c1169f5cc5
    (node conditions, allocatable and capacity 1k CPU / 1Ti / 1M pods, nodeInfo) and
    kustomize/stage/pod/fast/pod-ready.yaml @ce628690a83e1f583dc006693cb1b7a0518020aa
    (a merge-patch of pods/status: conditions Initialized, Ready, ContainersReady True; one
    containerStatus per container, ready, running; hostIP, podIP, phase Running, startTime).
  - What the controllers count, kubernetes/kubernetes v1.20.2 (the control plane's version):
    pkg/api/v1/pod/util.go IsPodReady (the Ready condition is True: ReplicaSet and Deployment
    status.readyReplicas) and pkg/controller/statefulset/stateful_set_utils.go
    isRunningAndReady (phase Running and Ready: a StatefulSet with the default OrderedReady
    policy creates pod N+1 only then, so the harness must keep polling while it scales).
  - The node needs no heartbeat here: tools/controlplane.sh runs no nodelifecycle controller
    (nothing marks the node NotReady after 40 s, nothing evicts its pods) and no podgc.
"""

import http.client
import json
import threading
import time
import urllib.parse

import evstest

# kwok's default capacity (node-pending.output.yaml above).
CAPACITY = {"cpu": "1k", "memory": "1Ti", "pods": "1M"}
NODE_IP = "10.255.0.1"


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Api:
    """One kept-alive connection to the API server (reconnected after an error), so a poll every
    0.2 s does not cost a TLS handshake per request on a loaded machine."""

    def __init__(self, env):
        self.env = env
        self.conn = None

    def __call__(self, method, path, body=None, content_type="application/json"):
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = evstest.connect(self.env)
            try:
                status, _, data = evstest.request(self.conn, self.env, method, path, body,
                                                  content_type)
                break
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
        try:
            return status, json.loads(data)
        except ValueError:
            return status, data

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def create_node(env, name):
    """Creates a Node named `name` that looks like a healthy kubelet's (Ready=True, kwok's
    capacity); a node of that name left by an earlier run is replaced. Returns the name."""
    now = _now()

    def cond(ctype, status, reason, message):
        return {"type": ctype, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": now, "lastTransitionTime": now}
    node = {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                              "kubernetes.io/os": "linux", "type": "kwok"}},
        # kwok's own taint, so that a real scheduler, if there ever is one, leaves it alone
        # (binding ignores taints).
        "spec": {"taints": [{"key": "kwok.x-k8s.io/node", "value": "fake",
                             "effect": "NoSchedule"}]},
        # The API server keeps the status given at creation (kubernetes v1.20.2
        # pkg/registry/core/node/strategy.go PrepareForCreate drops only disabled fields).
        "status": {
            "conditions": [
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory",
                     "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure",
                     "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID",
                     "kubelet has sufficient PID available"),
                cond("NetworkUnavailable", "False", "RouteCreated",
                     "RouteController created a route"),
            ],
            "addresses": [{"type": "InternalIP", "address": NODE_IP},
                          {"type": "Hostname", "address": name}],
            "allocatable": dict(CAPACITY), "capacity": dict(CAPACITY),
            "nodeInfo": {"architecture": "amd64", "bootID": "", "containerRuntimeVersion": "kwok",
                         "kernelVersion": "kwok", "kubeProxyVersion": "kwok",
                         "kubeletVersion": "kwok", "machineID": "", "operatingSystem": "linux",
                         "osImage": "", "systemUUID": ""},
            "phase": "Running",
        },
    }
    api = Api(env)
    try:
        status, body = api("POST", "/api/v1/nodes", node)
        if status == 409:
            api("DELETE", "/api/v1/nodes/" + name)
            status, body = api("POST", "/api/v1/nodes", node)
        if status != 201:
            raise RuntimeError("creating node %s: %d %s" % (name, status, body))
    finally:
        api.close()
    return name


def delete_node(env, name):
    status, body = evstest.api(env, "DELETE", "/api/v1/nodes/" + name)
    if status not in (200, 404):
        raise RuntimeError("deleting node %s: %d %s" % (name, status, body))


def is_ready(pod):
    """kubernetes v1.20.2 isRunningAndReady (see the module docstring)."""
    st = pod.get("status", {})
    return st.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions", []))


class Kubelet:
    """Binds and readies the pods of `ns` that match `selector` (a label selector, "" = all) on
    `node`. ready_limit: how many of them may be ready (None = all); change it any time."""

    def __init__(self, env, node, ns, selector="", interval=0.2):
        self.env, self.node, self.ns, self.selector = env, node, ns, selector
        self.interval = interval
        self.ready_limit = None
        self.errors = []  # unexpected API answers, for the test to assert on
        self._api = Api(env)
        self._ips = {}  # pod uid -> its podIP
        self._stop = threading.Event()
        self._thread = None

    # --- one pass ---

    def pods(self, api=None):
        """The pods this kubelet looks after, as the API server has them now. Without `api`, on
        a connection of its own (the background thread owns the kept-alive one)."""
        q = "?labelSelector=" + urllib.parse.quote(self.selector) if self.selector else ""
        path = "/api/v1/namespaces/%s/pods%s" % (self.ns, q)
        status, body = api(path) if api else evstest.api(self.env, "GET", path)
        if status != 200:
            raise RuntimeError("listing pods: %d %s" % (status, body))
        return body.get("items", [])

    def sync(self):
        """One pass over the pods (see the module docstring). Returns the pods as listed. Not
        to be called while the background thread runs (they would share a connection)."""
        pods = self.pods(lambda path: self._api("GET", path))
        mine = []
        for p in pods:
            meta, spec = p["metadata"], p.get("spec", {})
            if meta.get("deletionTimestamp"):
                if spec.get("nodeName") == self.node:
                    self._delete(meta["name"])
            elif not spec.get("nodeName"):
                self._bind(meta["name"])
            elif spec["nodeName"] == self.node:
                mine.append(p)
        mine.sort(key=lambda p: (p["metadata"].get("creationTimestamp", ""),
                                 p["metadata"]["name"]))
        limit = self.ready_limit
        for i, p in enumerate(mine):
            want = limit is None or i < limit
            if is_ready(p) != want or p.get("status", {}).get("phase") != "Running":
                self._set_status(p, want)
        return pods

    def _check(self, what, status, body, ok):
        # 404/409: the pod went away or changed under us; the next pass sees the new state.
        if status not in ok and status not in (404, 409):
            self.errors.append("%s: %d %s" % (what, status, body))

    def _bind(self, name):
        binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": self.node}}
        status, body = self._api("POST", "/api/v1/namespaces/%s/pods/%s/binding" % (self.ns, name),
                                 binding)
        self._check("binding " + name, status, body, (200, 201))

    def _delete(self, name):
        status, body = self._api("DELETE", "/api/v1/namespaces/%s/pods/%s" % (self.ns, name),
                                 {"apiVersion": "v1", "kind": "DeleteOptions",
                                  "gracePeriodSeconds": 0})
        self._check("deleting " + name, status, body, (200, 202))

    def _pod_ip(self, uid):
        if uid not in self._ips:
            n = len(self._ips) + 2
            self._ips[uid] = "10.254.%d.%d" % (n // 250, n % 250 + 1)
        return self._ips[uid]

    def _set_status(self, pod, ready):
        """kwok's pod-ready stage (module docstring); not ready = the same with Ready and
        ContainersReady False and the containers not ready, as a kubelet reports a failing
        readiness probe. A merge-patch replaces the lists, so PodScheduled (set by the binding)
        is carried over."""
        now = _now()
        flag = "True" if ready else "False"
        st = pod.get("status", {})
        conds = [c for c in st.get("conditions", []) if c.get("type") == "PodScheduled"]
        conds += [{"type": "Initialized", "status": "True", "lastTransitionTime": now},
                  {"type": "Ready", "status": flag, "lastTransitionTime": now},
                  {"type": "ContainersReady", "status": flag, "lastTransitionTime": now}]
        spec = pod.get("spec", {})
        patch = {"status": {
            "conditions": conds,
            "containerStatuses": [
                {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": ready,
                 "restartCount": 0, "started": True,
                 "state": {"running": {"startedAt": st.get("startTime") or now}}}
                for c in spec.get("containers", [])],
            "hostIP": NODE_IP,
            "podIP": self._pod_ip(pod["metadata"]["uid"]),
            "phase": "Running",
            "startTime": st.get("startTime") or now,
        }}
        name = pod["metadata"]["name"]
        status, body = self._api("PATCH", "/api/v1/namespaces/%s/pods/%s/status" % (self.ns, name),
                                 patch, "application/merge-patch+json")
        self._check("status of " + name, status, body, (200,))

    # --- background thread ---

    def start(self):
        self._thread = threading.Thread(target=self._run, name="kwok-" + self.ns, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception as e:  # noqa: BLE001 - keep polling; the test sees self.errors
                self.errors.append("sync: %r" % e)
                self._api.close()
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self._api.close()
