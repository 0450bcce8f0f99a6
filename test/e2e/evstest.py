"""Shared helpers for evscale's end-to-end tests (Python 3 standard library only).

    import evstest
    env = evstest.controlplane()          # {"KUBE_API_URL": ..., "KUBE_CA": ..., ...}
    evstest.kubectl(env, "get", "pods")
    port = evstest.free_port()
    evstest.wait_until(lambda: ..., timeout=60, what="pods")
    with evstest.faultproxy(env) as px: px.fault(kind="status", status=429); px.stats()

What the tests share is defined here once:
  - evscale processes: evscale_env() (the environment that keeps an evscale off the shared
    control plane unless its config names it), evscale_config() (its configuration file), get()
    (an HTTP GET of its endpoints), metric() (one sample of /metrics), read_log() /
    log_records() (its log, its JSON records), assert_clean() / stop_evscale() (the teardown
    that fails a test on a sanitizer report), run() (a one-shot command);
  - ConfigMapDaemon: a TestCase base running `evscale run` on a kubelet-style ConfigMap mount;
  - module_namespace(): a test module's control plane and namespace;
  - deploy/: parse_yaml(), render(), by_kind(), wrapper(), rules_of(), expand(), can_i_pairs(),
    service_account_kubeconfig() (deploy/'s RBAC for a ServiceAccount, its token's kubeconfig);
  - KubeCase: a TestCase base for tests that run evscale against the control plane and a real
    redis-server (Redis) under deploy/'s ServiceAccount, set up once per class; the templates
    DEPLOYMENT, SCALEDOBJECT, FLAPPY and BREAKER_CFG.
Base classes here have no tests of their own; a test module imports no other test module.

Which control plane controlplane() returns:
  1. KUBE_API_URL, KUBE_CA and KUBE_TOKEN set in the environment (e.g. a CI step started one, or
     `set -a; . DIR/env`): that one, untouched; stop() never stops it.
  2. Otherwise the shared one in $EVS_CACHE/cp-shared (default ~/.cache/evscale/cp-shared):
     reused when it answers /readyz, else started (under a file lock, so parallel tests start it
     once). It is left running for the next test and the next run (startup costs ~20-40 s; the
     first ever start also builds Kubernetes, ~6-15 min). Stop it with
     `tools/controlplane.sh stop ~/.cache/evscale/cp-shared`.
  3. controlplane(private=True): a fresh one in a temporary directory, stopped by stop(env) or at
     interpreter exit. Use it when a test changes cluster-wide state or needs a clean audit log.
"""

import atexit
import contextlib
import fcntl
import glob
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

SOURCE_DIR = os.environ.get("EVS_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONTROLPLANE_SH = os.path.join(SOURCE_DIR, "tools", "controlplane.sh")
TESTCERTS_SH = os.path.join(SOURCE_DIR, "tools", "testcerts.sh")
FAULTPROXY_PY = os.path.join(SOURCE_DIR, "test", "faultproxy.py")
CACHE = os.environ.get("EVS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "evscale")
ENV_NAMES = ("KUBE_API_URL", "KUBE_CA", "KUBE_TOKEN", "KUBE_CLIENT_CERT", "KUBE_CLIENT_KEY",
             "KUBECONFIG", "KUBE_AUDIT_LOG")
# How long a control plane start may take: the first one on a machine builds Kubernetes.
START_TIMEOUT = float(os.environ.get("EVS_CP_START_TIMEOUT", "3600"))
# The evscale under test (ctest sets EVS_BINARY to the build's).
BIN = os.environ.get("EVS_BINARY", "build/evscale")
# What the sanitizers print at the start of a report (ASan, LSan, UBSan).
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

_private = []  # directories of private control planes still running


def log(msg):
    print("evstest: " + msg, file=sys.stderr, flush=True)


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (bind-to-0, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(fn, timeout=60.0, interval=0.1, what="condition"):
    """Calls fn until it returns something truthy (returned) or timeout seconds pass
    (AssertionError naming `what` and the last exception fn raised, if any)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = fn()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - the condition may fail until it holds
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.0fs waiting for %s%s" % (
                timeout, what, " (last error: %r)" % last if last else ""))
        time.sleep(interval)


def read_env_file(path):
    env = {}
    with open(path) as f:
        for line in f:
            name, sep, value = line.strip().partition("=")
            if sep and name:
                env[name] = value
    return env


def ssl_context(env, client_cert=False, ca=None):
    ctx = ssl.create_default_context(cafile=ca or env["KUBE_CA"])
    if client_cert:
        ctx.load_cert_chain(env["KUBE_CLIENT_CERT"], env["KUBE_CLIENT_KEY"])
    return ctx


def connect(env, url=None, client_cert=False, ca=None, timeout=30):
    """An http.client.HTTPSConnection to the API server (or `url`), verified with the CA."""
    u = urllib.parse.urlsplit(url or env["KUBE_API_URL"])
    return http.client.HTTPSConnection(u.hostname, u.port, timeout=timeout,
                                       context=ssl_context(env, client_cert, ca))


def request(conn, env, method, path, body=None, content_type="application/json", token=True):
    """One request on conn; returns (status, headers dict (lower-case names), body bytes)."""
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + env["KUBE_TOKEN"]
    if body is not None:
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        headers["Content-Type"] = content_type
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def api(env, method, path, body=None, content_type="application/json"):
    """One request on a fresh connection; returns (status, parsed JSON or raw bytes)."""
    conn = connect(env)
    try:
        status, _, data = request(conn, env, method, path, body, content_type)
    finally:
        conn.close()
    try:
        return status, json.loads(data)
    except ValueError:
        return status, data


def ready(env, timeout=5):
    try:
        conn = connect(env, timeout=timeout)
        try:
            status, _, data = request(conn, env, "GET", "/readyz")
        finally:
            conn.close()
        return status == 200 and data.strip() == b"ok"
    except (OSError, ssl.SSLError, http.client.HTTPException):
        return False


def _run_script(*args, timeout=START_TIMEOUT):
    proc = subprocess.run([CONTROLPLANE_SH, *args], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError("tools/controlplane.sh %s failed (%d):\n%s" % (
            " ".join(args), proc.returncode, proc.stdout[-4000:]))
    return proc.stdout


def _read_dir(directory):
    env = read_env_file(os.path.join(directory, "env"))
    env["KUBE_CP_DIR"] = directory
    etcd = os.path.join(directory, "etcd.env")
    if os.path.exists(etcd):
        env.update(read_env_file(etcd))  # ETCD_URL
    return env


def _start(directory):
    out = _run_script("start", directory)
    log(out.strip().splitlines()[-1] if out.strip() else "started " + directory)
    return _read_dir(directory)


def controlplane(private=False):
    """Returns the env dict of a running control plane (see the module docstring)."""
    if not private and all(os.environ.get(n) for n in ("KUBE_API_URL", "KUBE_CA", "KUBE_TOKEN")):
        env = {n: os.environ[n] for n in ENV_NAMES if os.environ.get(n)}
        env["KUBE_CP_EXTERNAL"] = "1"
        return env
    os.makedirs(CACHE, exist_ok=True)
    if private:
        directory = tempfile.mkdtemp(prefix="evs-cp-")
        env = _start(directory)
        _private.append(directory)
        return env
    directory = os.path.join(CACHE, "cp-shared")
    with open(os.path.join(CACHE, "cp-shared.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        envfile = os.path.join(directory, "env")
        if os.path.exists(envfile):
            env = _read_dir(directory)
            if ready(env):
                # It may have been started from an older checkout: re-apply test/data/crds if
                # they changed (a no-op otherwise).
                _run_script("crds", directory, timeout=300)
                return env
            log("shared control plane in %s does not answer; restarting it" % directory)
            _run_script("stop", directory, timeout=120)
        os.makedirs(directory, exist_ok=True)
        return _start(directory)


def stop(env):
    """Stops a private control plane (and removes its directory); a no-op for the others."""
    directory = env.get("KUBE_CP_DIR")
    if directory in _private:
        _run_script("stop", directory, timeout=120)
        _private.remove(directory)
        shutil.rmtree(directory, ignore_errors=True)


@atexit.register
def _stop_private():
    for directory in list(_private):
        try:
            stop({"KUBE_CP_DIR": directory})
        except Exception as e:  # noqa: BLE001 - best effort at exit
            log("stopping %s: %s" % (directory, e))


def kubectl(env, *args, input=None, check=True, timeout=120):
    """Runs kubectl against the control plane; returns stdout (raises on failure if check)."""
    kenv = dict(os.environ, KUBECONFIG=env["KUBECONFIG"])
    proc = subprocess.run(["kubectl", *args], input=input, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=kenv, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError("kubectl %s failed: %s" % (" ".join(args), proc.stderr.strip()))
    return proc.stdout


def kubectl_json(env, *args, check=True):
    """`kubectl ARGS -o json`, parsed; None when kubectl printed nothing (--ignore-not-found,
    or a failure with check=False)."""
    out = kubectl(env, *args, "-o", "json", check=check)
    return json.loads(out) if out.strip() else None


def module_namespace(ns):
    """(env, setUpModule, tearDownModule) for a test module whose tests share the control plane
    and one namespace `ns`: `ENV, setUpModule, tearDownModule = evstest.module_namespace(NS)`.
    env is a dict, empty until setUpModule fills it with controlplane()'s and creates ns;
    tearDownModule deletes ns (without waiting)."""
    env = {}

    def set_up():
        env.update(controlplane())
        kubectl(env, "create", "namespace", ns)

    def tear_down():
        if env:
            kubectl(env, "delete", "namespace", ns, "--wait=false", check=False)
    return env, set_up, tear_down


def testcerts(directory=None):
    """Runs tools/testcerts.sh (idempotent) and returns its directory."""
    directory = directory or os.path.join(CACHE, "testcerts")
    subprocess.run([TESTCERTS_SH, directory], check=True, timeout=120)
    return directory


def audit_events(env, since_offset=0):
    """Parsed audit events from KUBE_AUDIT_LOG starting at byte since_offset; returns
    (events, new offset). The log is written as requests complete, so poll with wait_until."""
    path = env["KUBE_AUDIT_LOG"]
    events = []
    if os.path.getsize(path) < since_offset:
        # The log was rotated since since_offset (tools/controlplane.sh now asks for no rotation;
        # a control plane started before rotates at 100 MiB, lumberjack's default for
        # --audit-log-maxsize 0): the rest of the old file is the newest audit-*.log.
        rotated = glob.glob(os.path.join(os.path.dirname(path), "audit-*.log"))
        if rotated:
            with open(max(rotated, key=os.path.getmtime), "rb") as f:
                f.seek(since_offset)
                old = f.read()
            old = old[:old.rfind(b"\n") + 1]
            events = [json.loads(line) for line in old.splitlines() if line.strip()]
        since_offset = 0
    with open(path, "rb") as f:
        f.seek(since_offset)
        data = f.read()
    end = data.rfind(b"\n") + 1
    events += [json.loads(line) for line in data[:end].splitlines() if line.strip()]
    return events, since_offset + end


def etcd_compact(env):
    """Compacts etcd up to its current revision (through etcd's v3 JSON gateway), so that any
    resourceVersion or continue token from before is answered by the API server with a real
    410 Gone. Needs ENV["ETCD_URL"] (control planes started by tools/controlplane.sh)."""
    u = urllib.parse.urlsplit(env["ETCD_URL"])

    def post(path, body):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        try:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = json.loads(resp.read())
            if resp.status != 200:
                raise RuntimeError("etcd %s: %s" % (path, data))
            return data
        finally:
            conn.close()
    rev = post("/v3/kv/range", {"key": "AA=="})["header"]["revision"]
    post("/v3/kv/compaction", {"revision": rev, "physical": True})
    return int(rev)


def audit_size(env):
    """The offset just past the last complete line of the audit log: the API server may be in
    the middle of writing one, and audit_events must start at a line's beginning."""
    with open(env["KUBE_AUDIT_LOG"], "rb") as f:
        size = f.seek(0, os.SEEK_END)
        back = min(size, 1 << 20)
        f.seek(size - back)
        tail = f.read(back)
    return size - back + tail.rfind(b"\n") + 1


class FaultProxy:
    """A running test/faultproxy.py. url/ca: what a client connects to and trusts."""

    def __init__(self, proc, port, control_port, ca, workdir):
        self.proc, self.port, self.control_port = proc, port, control_port
        self.url = "https://127.0.0.1:%d" % port
        self.ca = ca
        self._workdir = workdir

    def _control(self, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.control_port, timeout=10)
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None,
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = json.loads(resp.read())
            if resp.status != 200:
                raise RuntimeError("faultproxy %s %s: %s" % (method, path, data))
            return data
        finally:
            conn.close()

    def fault(self, **spec):
        return self._control("POST", "/fault", spec)

    def reset(self):
        return self._control("POST", "/reset", {})

    def stats(self):
        return self._control("GET", "/stats")

    def env(self, env):
        """A copy of env that points clients at the proxy."""
        e = dict(env)
        e["KUBE_API_URL"], e["KUBE_CA"] = self.url, self.ca
        return e

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self._workdir, ignore_errors=True)


def start_faultproxy(env):
    """Starts the fault proxy in front of env's API server. Its serving certificate: the control
    plane's own apiserver certificate when we know its directory (so clients keep KUBE_CA), else
    tools/testcerts.sh's ip-only certificate (then trust FaultProxy.ca)."""
    workdir = tempfile.mkdtemp(prefix="evs-proxy-")
    pki = os.path.join(env.get("KUBE_CP_DIR", ""), "pki")
    if env.get("KUBE_CP_DIR") and os.path.exists(os.path.join(pki, "apiserver.key")):
        ca, cert, key = env["KUBE_CA"], os.path.join(pki, "apiserver.crt"), \
            os.path.join(pki, "apiserver.key")
    else:
        d = testcerts()
        ca, cert, key = (os.path.join(d, n) for n in ("ca.crt", "ip-only.crt", "ip-only.key"))
    pf, cf = os.path.join(workdir, "port"), os.path.join(workdir, "control-port")
    logf = open(os.path.join(workdir, "proxy.log"), "w")
    proc = subprocess.Popen([sys.executable, FAULTPROXY_PY, "--listen", "127.0.0.1:0",
                             "--upstream", env["KUBE_API_URL"], "--ca", env["KUBE_CA"],
                             "--cert", cert, "--key", key, "--port-file", pf,
                             "--control-port-file", cf],
                            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
    logf.close()

    def ports():
        if proc.poll() is not None:
            raise RuntimeError("faultproxy exited with %d" % proc.returncode)
        if os.path.exists(pf) and os.path.exists(cf):
            return int(open(pf).read()), int(open(cf).read())
        return None

    try:
        port, cport = wait_until(ports, timeout=30, what="faultproxy port files")
    except Exception:
        proc.kill()
        proc.wait()
        raise
    return FaultProxy(proc, port, cport, ca, workdir)


@contextlib.contextmanager
def faultproxy(env):
    px = start_faultproxy(env)
    try:
        yield px
    finally:
        px.stop()

# --- evscale processes ---


def evscale_env(home, **extra):
    """The environment for an `evscale run` a test starts: the test's own without KUBECONFIG and
    KUBERNETES_*, and HOME=home (no ~/.kube/config). Kubernetes is then only what the test's
    config file names. The rule (CI's duplicate PATCHes): tools/test.sh exports the control
    plane's KUBECONFIG, and an evscale that found it would watch every namespace, lead a Lease
    of its own and scale the other tests' ScaledObjects; every `evscale run` of the e2e tests
    gets this environment, and restricts its namespaces in its config or runs with --dry-run
    when it is to reach the control plane."""
    env = {k: v for k, v in os.environ.items()
           if k != "KUBECONFIG" and not k.startswith("KUBERNETES_")}
    env["HOME"] = home
    env.update(extra)
    return env


def evscale_config(port, kubeconfig=None, namespaces=None, lease_namespace=None,
                   lease_name=None, lease_timings=None, backoff=None, extra=""):
    """The text of a test's evscale configuration: its HTTP server on 127.0.0.1:port
    (shutdown_grace 2s, a test's stop is quick), then the sections given (None: left out, so
    evscale's default): backoff (initial, max), kubernetes (kubeconfig, namespaces: a list),
    leader_election (lease_namespace, lease_name, lease_timings: (lease_duration,
    renew_deadline, retry_period), one a line), and `extra` appended as it is."""
    text = f"server:\n  address: 127.0.0.1:{port}\n  shutdown_grace: 2s\n"
    if backoff:
        text += "backoff:\n  initial: %s\n  max: %s\n" % backoff
    if kubeconfig or namespaces:
        text += "kubernetes:\n"
        if kubeconfig:
            text += f"  kubeconfig: {kubeconfig}\n"
        if namespaces:
            text += f"  namespaces: [{', '.join(namespaces)}]\n"
    if lease_namespace or lease_name or lease_timings:
        text += "leader_election:\n"
        if lease_namespace:
            text += f"  lease_namespace: {lease_namespace}\n"
        if lease_name:
            text += f"  lease_name: {lease_name}\n"
        if lease_timings:
            text += ("  lease_duration: %s\n  renew_deadline: %s\n  retry_period: %s\n"
                     % tuple(lease_timings))
    return text + extra


def get(url, timeout=5):
    """GET url: (status, body text); (0, "") when nothing answers (not yet listening)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def metric(text, name, labels=None):
    """The value of one sample in the exposition text (the first whose labels include
    `labels`), or None."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)', line)
        if not m or m.group(1) != name:
            continue
        if labels:
            got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            if any(got.get(k) != v for k, v in labels.items()):
                continue
        return float(m.group(3))
    return None


def read_log(logf):
    """All an evscale wrote so far to logf (a file opened "w+" as its stdout and stderr)."""
    logf.flush()
    with open(logf.name) as f:
        return f.read()


def log_records(text):
    """The JSON records of a log (--log-format json), skipping any other line (a sanitizer's)."""
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def assert_clean(output, what="evscale"):
    """A sanitizer report fails the test whatever the exit code says."""
    for mark in SANITIZER_MARKS:
        if mark in output:
            raise AssertionError("%s in %s's output:\n%s" % (mark, what, output[-4000:]))


def stop_evscale(proc, logf, exit_code=0, timeout=30, what="evscale"):
    """The teardown of an `evscale run`: SIGTERM (SIGKILL if it has not exited within timeout
    seconds), then its log is read and closed. Fails (AssertionError) when the log holds a
    sanitizer report or, unless exit_code is None, the process did not exit with exit_code.
    Returns the log."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    out = read_log(logf)
    logf.close()
    assert_clean(out, what)
    if exit_code is not None and proc.returncode != exit_code:
        raise AssertionError("%s exited with %d, not %d:\n%s" % (what, proc.returncode, exit_code,
                                                                 out[-3000:]))
    return out


def run(*args, env=None, timeout=30):
    """A one-shot `evscale ARGS` (check-config, version, ...): its CompletedProcess, text
    captured; fails the test on a sanitizer report."""
    r = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout, env=env)
    assert_clean(r.stdout + r.stderr)
    return r


class ConfigMapDaemon(unittest.TestCase):
    """`evscale run` (no Kubernetes) on the layout kubelet gives a ConfigMap volume:
    config.yaml -> ..data/config.yaml, ..data -> ..<generation>/, swapped atomically by renaming
    a new symlink over ..data. A base class: no tests of its own. `grace` is the configuration's
    shutdown_grace; tearDown kills what is still running and fails on a sanitizer report."""

    grace = "5s"

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.port = free_port()
        self.mount = os.path.join(self.dir.name, "mount")
        os.mkdir(self.mount)
        self.generation = 0
        self.publish(self.config("info"))
        os.symlink("..data/config.yaml", os.path.join(self.mount, "config.yaml"))
        self.path = os.path.join(self.mount, "config.yaml")
        self.log = open(os.path.join(self.dir.name, "stderr.log"), "w+")
        # Without Kubernetes (evscale_env): with the control plane's KUBECONFIG this evscale
        # would lead a Lease of its own and scale the other tests' ScaledObjects, and /readyz
        # would wait for discovery (test_kube_connect.py covers that).
        self.proc = subprocess.Popen([BIN, "run", "--config", self.path, "--log-format", "json"],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     env=evscale_env(self.dir.name))
        self.base = f"http://127.0.0.1:{self.port}"
        wait_until(lambda: get(self.base + "/healthz")[0] == 200, timeout=30, what="/healthz")

    def tearDown(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        output = self.logs()
        self.log.close()
        assert_clean(output)
        self.dir.cleanup()

    def config(self, level, extra=""):
        return (f"server:\n  address: 127.0.0.1:{self.port}\n  shutdown_grace: {self.grace}\n"
                f"log:\n  level: {level}\n{extra}")

    def new_generation(self):
        """A new, empty ..<generation> directory (not yet in force: see swap)."""
        self.generation += 1
        ts = os.path.join(self.mount, f"..gen{self.generation}")
        os.mkdir(ts)
        return ts

    def swap(self, ts):
        """Puts the generation directory ts in force, as kubelet does: one rename."""
        tmp = os.path.join(self.mount, "..data_tmp")
        os.symlink(os.path.basename(ts), tmp)
        os.rename(tmp, os.path.join(self.mount, "..data"))

    def publish(self, text):
        """A ConfigMap update: text as config.yaml of a new generation, swapped in."""
        ts = self.new_generation()
        with open(os.path.join(ts, "config.yaml"), "w") as f:
            f.write(text)
        self.swap(ts)

    def logs(self):
        return read_log(self.log)

    def log_lines(self):
        return log_records(self.logs())

    def scrape(self):
        status, body = get(self.base + "/metrics")
        self.assertEqual(status, 200)
        return body

    def reloads(self, result):
        return metric(self.scrape(), "evscale_config_reloads_total", {"result": result}) or 0


# --- evscale against the control plane ---

DEPLOY_DIR = os.path.join(SOURCE_DIR, "deploy")

# A Deployment of `replicas` pods that never run (the control plane has no kubelet: only the
# counts matter).
DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: main, image: registry.invalid/worker:1}}]
"""

# A ScaledObject on a Redis list (listLength 5), polled every second, KEDA's default HPA
# behaviour. Fields: name, ns, target, port, list, cooldown.
SCALEDOBJECT = """apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: {name}, namespace: {ns}}}
spec:
  scaleTargetRef: {{name: {target}}}
  minReplicaCount: 0
  maxReplicaCount: 10
  pollingInterval: 1
  cooldownPeriod: {cooldown}
  triggers:
  - type: redis
    metadata:
      address: 127.0.0.1:{port}
      listName: {list}
      listLength: "5"
"""

# A ScaledObject whose behavior lets it follow its Redis list at once in both directions (no
# stabilization window), so that it can be made to flap (KubeCase.flap). Fields: name, ns,
# target, port, list.
FLAPPY = """apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: {name}, namespace: {ns}}}
spec:
  scaleTargetRef: {{name: {target}}}
  minReplicaCount: 1
  maxReplicaCount: 10
  pollingInterval: 1
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleUp:
          stabilizationWindowSeconds: 0
          policies: [{{type: Pods, value: 10, periodSeconds: 1}}]
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

# evscale's configuration for FLAPPY: the fourth scale event within a minute trips the breaker;
# the fallback HPA keeps 3 replicas. Field: cooldown.
BREAKER_CFG = ("circuit_breaker:\n  max_scale_events_per_minute: 3\n  cooldown_period: {cooldown}\n"
               "  max_cooldown_period: 10m\n  fallback_replicas: 3\n  fallback_metric: cpu:50\n")


class Redis:
    """A redis-server of the test's own on a free port (no persistence, keyspace events on),
    with an optional password; cmd() runs redis-cli against it."""

    def __init__(self, workdir, password=None):
        self.port = free_port()
        self.password = password
        extra = ["--requirepass", password] if password else []
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", workdir, "--notify-keyspace-events", "Klgxe",
             *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: self.cmd("PING").strip() == "PONG", timeout=20, what="redis-server")

    def cmd(self, *args):
        auth = ["--no-auth-warning", "-a", self.password] if self.password else []
        p = subprocess.run(["redis-cli", "-p", str(self.port), *auth, *args],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=20)
        return p.stdout

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def _tool(*args, input=None, env=None):
    proc = subprocess.run(list(args), input=input, text=True, capture_output=True, env=env,
                          timeout=300)
    if proc.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(args), proc.returncode,
                                                   proc.stderr.strip()))
    return proc.stdout


def parse_yaml(text):
    """Kubernetes objects of a YAML stream, as dicts, exactly as written. kubectl parses (the
    tests use only Python's standard library): `annotate --local` needs no server, so it also
    reads kinds and versions the 1.20 control plane does not serve; its marker is removed."""
    out = _tool("kubectl", "annotate", "--local", "-f", "-", "evs-parse=1", "-o", "json",
                input=text, env=dict(os.environ, KUBECONFIG=os.devnull))
    objs, dec, i = [], json.JSONDecoder(), 0
    while True:
        while i < len(out) and out[i].isspace():
            i += 1
        if i == len(out):
            return objs
        obj, i = dec.raw_decode(out, i)
        ann = obj["metadata"]["annotations"]
        del ann["evs-parse"]
        if not ann:
            del obj["metadata"]["annotations"]
        objs.append(obj)


def render(path):
    """`kubectl kustomize path`: the rendered YAML stream."""
    return _tool("kubectl", "kustomize", path)


def by_kind(objs, kind):
    """The one object of that kind (AssertionError if there is not exactly one)."""
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, (kind, len(found))
    return found[0]


def rules_of(objs, kind):
    return by_kind(objs, kind)["rules"]


def wrapper(overlay, namespace, suffix=""):
    """A temporary kustomization over deploy/overlays/<overlay> that moves it to `namespace`
    (and adds a name suffix to cluster-wide names), so the tests do not collide with a real
    installation or with each other on the shared control plane. Returns its directory (the
    caller removes it)."""
    d = tempfile.mkdtemp(prefix="evs-kust-")
    with open(os.path.join(d, "kustomization.yaml"), "w") as f:
        f.write("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                "namespace: %s\n%sresources:\n  - %s\n" % (
                    namespace, "nameSuffix: \"%s\"\n" % suffix if suffix else "",
                    # kustomize takes only a relative path to another kustomization.
                    os.path.relpath(os.path.join(DEPLOY_DIR, "overlays", overlay), d)))
    return d


def expand(rules):
    """The (resource, verb) pairs `can-i --list` prints for these rules: resource.group/sub,
    the core group without a suffix ("*.*/scale", "scaledobjects.keda.sh/status", "secrets")."""
    pairs = set()
    for r in rules:
        for g in r["apiGroups"]:
            for res in r["resources"]:
                base, slash, sub = res.partition("/")
                name = (base if g == "" else "%s.%s" % (base, g)) + slash + sub
                for verb in r["verbs"]:
                    pairs.add((name, verb))
    return pairs


def can_i_pairs(out):
    """(resource, verb) pairs of `kubectl auth can-i --list` output (resource rules only: the
    non-resource URLs are discovery, every user's)."""
    pairs = set()
    for line in out.splitlines()[1:]:
        m = re.match(r"(\S+)\s+\[(.*?)\]\s+\[(.*?)\]\s+\[(.*?)\]$", line.strip())
        if m and not m.group(2):
            pairs |= {(m.group(1), verb) for verb in m.group(4).split()}
    return pairs


def service_account_kubeconfig(env, namespace, directory, add_cleanup):
    """Applies deploy/base's RBAC (through the prod overlay, moved to `namespace`, its
    cluster-wide names suffixed) for a ServiceAccount of its own in `namespace`, and writes in
    `directory` a kubeconfig with that account's token (TokenRequest API). Returns (kubeconfig
    path, ServiceAccount name). The Role (the Lease's) is in `namespace`; the ClusterRole and
    its binding are deleted by add_cleanup(fn, *args, **kwargs) (a TestCase's addCleanup or
    addClassCleanup). Waits until the authorizer grants the account its rules (and no more)."""
    suffix = "-%d-%d" % (os.getpid(), int(time.time() * 1000) % 100000)
    d = wrapper("prod", namespace, suffix)
    try:
        objs = parse_yaml(render(d))
    finally:
        shutil.rmtree(d)
    rbac = [o for o in objs if o["kind"] in ("ServiceAccount", "ClusterRole",
                                              "ClusterRoleBinding", "Role", "RoleBinding")]
    sa = by_kind(rbac, "ServiceAccount")["metadata"]["name"]
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        by_kind(rbac, kind)["subjects"] = [{"kind": "ServiceAccount", "name": sa,
                                            "namespace": namespace}]
    kubectl(env, "apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": rbac}))
    for o in rbac:
        if o["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            add_cleanup(kubectl, env, "delete", o["kind"].lower(), o["metadata"]["name"],
                        "--wait=false", check=False)
    # 1.20 signs bound tokens (the control plane runs with --service-account-issuer and a
    # signing key): kubectl create token is a POST of a TokenRequest.
    token = kubectl(env, "create", "token", sa, "-n", namespace, "--duration", "3600s").strip()
    if not token:
        raise AssertionError("kubectl create token %s: no token" % sa)
    kc = os.path.join(directory, "kubeconfig-%s" % namespace)
    with open(kc, "w") as f:
        f.write(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "sa",
            "clusters": [{"name": "cp", "cluster": {
                "server": env["KUBE_API_URL"], "certificate-authority": env["KUBE_CA"]}}],
            "users": [{"name": "sa", "user": {"token": token}}],
            "contexts": [{"name": "sa", "context": {"cluster": "cp", "user": "sa",
                                                    "namespace": namespace}}]}))
    # The authorizer sees new bindings a moment after they are written.
    sa_env = dict(os.environ, KUBECONFIG=kc)

    def can(verb, *what):
        return subprocess.run(["kubectl", "auth", "can-i", verb, *what, "-n", namespace],
                              text=True, capture_output=True, env=sa_env).stdout.strip()
    wait_until(lambda: can("update", "leases.coordination.k8s.io") == "yes" and
               can("watch", "scaledobjects.keda.sh") == "yes",
               timeout=60, what="the ServiceAccount's RBAC in force")
    # It is that ServiceAccount and nothing more.
    for verb, what in (("patch", "deployments.apps"), ("list", "secrets")):
        if can(verb, what) != "no":
            raise AssertionError("the ServiceAccount %s may %s %s" % (sa, verb, what))
    return kc, sa


class KubeCase(unittest.TestCase):
    """A base class (no tests of its own) for tests that run `evscale run` against the control
    plane and a real redis-server (self.redis, one per class).

    Each test has a namespace of its own (self.ns, deleted after it) and its evscale watches
    only that one. evscale runs under deploy/'s ServiceAccount, ClusterRole and Role (issue 21:
    a verb missing from them fails a test), set up once per class in a namespace of the class's
    own (self.home), which also holds the Leases: one per test (self.lease_name), so the
    tests' processes never wait for each other's. EVS_E2E_ADMIN=1 runs evscale with the
    control plane's admin kubeconfig instead (to tell an RBAC failure from another), unless
    the class sets always_service_account. tearDown stops every process start() started and
    fails the test on a sanitizer report or an exit code other than 0."""

    evscale_binary = BIN
    always_service_account = False

    @classmethod
    def setUpClass(cls):
        cls.env = controlplane()
        cls.dir = tempfile.mkdtemp(prefix="evs-kube-")
        if not os.environ.get("EVS_KEEP_LOGS"):
            cls.addClassCleanup(shutil.rmtree, cls.dir, ignore_errors=True)
        cls.redis = Redis(cls.dir)
        cls.addClassCleanup(cls.redis.stop)
        cls.configs = 0
        cls.home = "evs-home-%d-%d" % (os.getpid(), int(time.time() * 1000) % 100000)
        kubectl(cls.env, "create", "namespace", cls.home)
        cls.addClassCleanup(kubectl, cls.env, "delete", "namespace", cls.home, "--wait=false",
                            check=False)
        if os.environ.get("EVS_E2E_ADMIN") and not cls.always_service_account:
            cls.kubeconfig, cls.service_account = cls.env["KUBECONFIG"], None
        else:
            cls.kubeconfig, cls.service_account = service_account_kubeconfig(
                cls.env, cls.home, cls.dir, cls.addClassCleanup)

    def setUp(self):
        self.ns = "evs-scale-%d-%d" % (os.getpid(), int(time.time() * 1000) % 100000)
        self.lease_name = "evscale-" + self.ns
        self.kubectl("create", "namespace", self.ns)
        self.procs = []

    def tearDown(self):
        failures = []
        for proc, logf in self.procs:
            try:
                stop_evscale(proc, logf)
            except AssertionError as e:
                failures.append(str(e))
        self.kubectl("delete", "namespace", self.ns, "--wait=false", check=False)
        if failures:
            raise AssertionError("\n".join(failures))

    # --- evscale ---

    def spawn(self, namespaces, lease_name, extra="", dry_run=False, into=None):
        """`evscale run` under the class's kubeconfig for `namespaces` only, its Lease
        `lease_name` in self.home, `extra` appended to its configuration; (proc, logf) is
        appended to the list `into` (stopped and checked by its owner) before the wait for
        /readyz. Returns (proc, logf, base URL)."""
        cls = type(self)
        cls.configs += 1
        port = free_port()
        cfg = os.path.join(self.dir, "config-%s-%d.yaml" % (lease_name, cls.configs))
        with open(cfg, "w") as f:
            f.write(evscale_config(port, cls.kubeconfig, namespaces, cls.home, lease_name,
                                   ("4s", "3s", "500ms"), ("200ms", "2s"), extra))
        logf = open(cfg + ".log", "w+")
        args = [self.evscale_binary, "run", "--config", cfg, "--log-format", "json",
                "--log-level", "debug"]
        if dry_run:
            args.append("--dry-run")
        proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT,
                                env=evscale_env(self.dir))
        if into is not None:
            into.append((proc, logf))
        base = "http://127.0.0.1:%d" % port
        wait_until(lambda: get(base + "/readyz")[0] == 200 or proc.poll() is not None,
                   timeout=90, what="/readyz")
        self.assertIsNone(proc.poll(), self.log(logf)[-3000:])
        return proc, logf, base

    def start(self, extra="", dry_run=False):
        """evscale for this test's namespace (its Lease: self.lease_name); stopped and checked
        by tearDown. Returns (proc, logf, base URL)."""
        return self.spawn([self.ns], self.lease_name, extra, dry_run, into=self.procs)

    def log(self, logf):
        return read_log(logf)

    def log_records(self, logf):
        return log_records(read_log(logf))

    # --- the control plane ---

    def kubectl(self, *args, input=None, check=True):
        return kubectl(self.env, *args, input=input, check=check)

    def apply(self, text):
        self.kubectl("apply", "--validate=false", "-f", "-", input=text)

    def deployment(self, name, replicas=0):
        self.apply(DEPLOYMENT.format(name=name, ns=self.ns, replicas=replicas))

    def scaledobject(self, name, target, lst, cooldown=3):
        self.apply(SCALEDOBJECT.format(name=name, ns=self.ns, target=target, list=lst,
                                       port=self.redis.port, cooldown=cooldown))

    def replicas(self, name):
        out = self.kubectl("get", "deployment", name, "-n", self.ns, "-o",
                           "jsonpath={.spec.replicas}")
        return int(out or 0)

    def wait_replicas(self, name, want, timeout=60):
        wait_until(lambda: self.replicas(name) == want, timeout=timeout,
                   what="%s at %d replicas (now %d)" % (name, want, self.replicas(name)))

    def get_scaledobject(self, name, must_exist=True):
        """The ScaledObject `name` in self.ns as the API server has it (None if it does not
        exist and not must_exist)."""
        return kubectl_json(self.env, "get", "scaledobject", name, "-n", self.ns,
                            *(() if must_exist else ("--ignore-not-found",)))

    def condition(self, so, ctype):
        for c in self.get_scaledobject(so).get("status", {}).get("conditions", []):
            if c.get("type") == ctype:
                return c
        return None

    def wait_condition(self, so, ctype, status, timeout=30):
        def ok():
            c = self.condition(so, ctype)
            return c if c and c.get("status") == status else None
        return wait_until(ok, timeout=timeout, what="%s %s=%s (now %s)" % (
            so, ctype, status, self.condition(so, ctype)))

    def events(self, so):
        out = kubectl_json(self.env, "get", "events", "-n", self.ns,
                           "--field-selector", "involvedObject.name=" + so)
        return [(e.get("reason"), e.get("message") or e.get("note")) for e in
                out.get("items", [])]

    def wait_event(self, so, reason, timeout=30):
        def found():
            return [m for r, m in self.events(so) if r == reason] or None
        try:
            return wait_until(found, timeout=timeout, what="event %s on %s" % (reason, so))
        except AssertionError:
            print(self.kubectl("get", "events", "-n", self.ns, "-o", "wide"), file=sys.stderr)
            raise

    def scale_patches(self, since, name):
        """The audit log's completed PATCHes of the Deployment's /scale since offset `since`."""
        events, _ = audit_events(self.env, since)
        path = "/apis/apps/v1/namespaces/%s/deployments/%s/scale" % (self.ns, name)
        return [e for e in events
                if e.get("verb") == "patch" and e.get("requestURI", "").startswith(path)
                and e.get("stage") == "ResponseComplete"]

    def hpa(self, name):
        """The HorizontalPodAutoscaler `name` in self.ns, or None."""
        return kubectl_json(self.env, "get", "hpa", name, "-n", self.ns, check=False)

    def annotations(self, so):
        return self.get_scaledobject(so)["metadata"].get("annotations", {})

    def flap(self, lst, target, so="flappy"):
        """Makes the FLAPPY ScaledObject `so` on `target` (at 10 replicas, 50 jobs queued in
        lst) flap until its breaker trips: up, down, up, down; each reversal is one more scale
        event; the fourth trips (BREAKER_CFG) and the fallback HPA keda-hpa-<so> appears."""
        hpa = "keda-hpa-" + so

        def reached(want):
            return self.replicas(target) == want or self.hpa(hpa) is not None
        # Down first (the target starts at 10 with 50 jobs queued), so the fourth event is an
        # up: refused at 1 replica, where the HPA controller must raise the target to its min.
        for i in range(3):
            self.redis.cmd("DEL", lst)
            self.redis.cmd("RPUSH", lst, "one")
            wait_until(lambda: reached(1), timeout=30, what="down to 1 or a trip")
            if self.hpa(hpa):
                return
            self.redis.cmd("RPUSH", lst, *["f%d" % k for k in range(50)])
            wait_until(lambda: reached(10), timeout=30, what="up to 10 or a trip")
            if self.hpa(hpa):
                return
        self.fail("the breaker did not trip after 6 scale events")



def _main(argv):
    """`python3 test/e2e/evstest.py shared`: makes sure the shared control plane runs and prints
    its env file (shell-sourceable: `eval "$(python3 test/e2e/evstest.py shared)"`), for C tests
    and scripts that want the same control plane as the Python tests."""
    if argv[1:] != ["shared"]:
        print("usage: evstest.py shared", file=sys.stderr)
        return 2
    env = controlplane()
    for name in ENV_NAMES:
        if env.get(name):
            print("export %s=%s" % (name, env[name]))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
