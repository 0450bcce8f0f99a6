"""Shared helpers for evscale's end-to-end tests (Python 3 standard library only).

    import evstest
    env = evstest.controlplane()          # {"KUBE_API_URL": ..., "KUBE_CA": ..., ...}
    evstest.kubectl(env, "get", "pods")
    port = evstest.free_port()
    evstest.wait_until(lambda: ..., timeout=60, what="pods")
    with evstest.faultproxy(env) as px: px.fault(kind="status", status=429); px.stats()

evscale processes (one definition for every test): evscale_env() (the environment that keeps an
evscale off the shared control plane unless its config names one), get() (an HTTP GET of its
endpoints), metric() (one sample of /metrics), read_log() / log_records() (its log file, its
JSON records), assert_clean() / stop_evscale() (the teardown that fails a test on a sanitizer
report), run() (a one-shot command). ConfigMapDaemon: a TestCase base running `evscale run`
on a kubelet-style ConfigMap mount. KubeCase: a TestCase base for tests that run evscale
against the control plane and a real redis-server under deploy/'s ServiceAccount (its RBAC set
up once per class by service_account_kubeconfig()).

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


def testcerts(directory=None):
    """Runs tools/testcerts.sh (idempotent) and returns its directory."""
    directory = directory or os.path.join(CACHE, "testcerts")
    subprocess.run([TESTCERTS_SH, directory], check=True, timeout=120)
    return directory


def audit_events(env, since_offset=0):
    """Parsed audit events from KUBE_AUDIT_LOG starting at byte since_offset; returns
    (events, new offset). The log is written as requests complete, so poll with wait_until."""
    with open(env["KUBE_AUDIT_LOG"], "rb") as f:
        f.seek(since_offset)
        data = f.read()
    end = data.rfind(b"\n") + 1
    events = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
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
