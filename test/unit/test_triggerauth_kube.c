/* Trigger authentication and target environment resolution (evscale/triggerauth.h) against the
 * real local API server: Secrets, ConfigMaps and a Deployment created in namespaces of this
 * test's own; every Secret/ConfigMap fetched once (counted in the audit log); missing objects
 * and keys named in the error; a ClusterTriggerAuthentication reading the cluster-object
 * namespace; the target's env (envFrom, valueFrom, $(VAR), optional); cancellation before
 * completion (no callback; ASan finds no leak). Expected values follow KEDA v2.20.2
 * pkg/scaling/resolver/scale_resolvers.go (kedacore/keda commit
 * 68a5b5028f35b22d50597c69819ab32c4e92f21a). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <unistd.h>

#include "evscale/error.h"
#include "evscale/informer.h"
#include "evscale/triggerauth.h"
#include "kube_writes_helpers.h"

static struct {
  int skip;
  char ns[64], cns[64];
} T;

static uv_loop_t loop;
static evs_kube_t *conn; /* for the fixtures' POSTs */

static void create(const char *path, const char *body) {
  char *out = NULL;
  int st = kw_req(&loop, conn, "POST", path, EVS_KUBE_JSON, body, &out);
  if (st != 201)
    fail_msg("POST %s: %d %s", path, st, out ? out : "");
  free(out);
}

static void create_in(const char *ns, const char *resource, const char *fmt, ...) {
  char body[4096], path[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(body, sizeof body, fmt, ap);
  va_end(ap);
  if (strcmp(resource, "deployments") == 0)
    snprintf(path, sizeof path, "/apis/apps/v1/namespaces/%s/deployments", ns);
  else
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/%s", ns, resource);
  create(path, body);
}

#define DEPLOYMENT(name, containers)                                                               \
  "{\"metadata\":{\"name\":\"" name "\"},\"spec\":{\"selector\":{\"matchLabels\":{\"a\":\"" name   \
  "\"}},\"template\":{\"metadata\":{\"labels\":{\"a\":\"" name                                     \
  "\"}},\"spec\":{\"containers\":" containers "}}}}"

static int setup(void **state) {
  (void)state;
  if (kw_find_controlplane() != 0) {
    T.skip = 1;
    fprintf(stderr, "no control plane: Kubernetes tests skipped\n");
    return 0;
  }
  snprintf(T.ns, sizeof T.ns, "evs-tauth-%d", (int)getpid());
  snprintf(T.cns, sizeof T.cns, "evs-tauthc-%d", (int)getpid());
  assert_int_equal(kw_namespace(T.ns, 1), 201);
  assert_int_equal(kw_namespace(T.cns, 1), 201);
  uv_loop_init(&loop);
  conn = kw_kube(&loop);
  assert_non_null(conn);
  create_in(T.ns, "secrets",
            "{\"metadata\":{\"name\":\"redis-secret\"},\"stringData\":{\"password\":\"s3cr3t\","
            "\"user\":\"bob\"}}");
  create_in(T.ns, "configmaps",
            "{\"metadata\":{\"name\":\"redis-cm\"},\"data\":{\"host\":\"redis.example\","
            "\"user\":\"cm-user\"}}");
  /* The same Secret name in the cluster-object namespace, with another value. */
  create_in(
      T.cns, "secrets",
      "{\"metadata\":{\"name\":\"redis-secret\"},\"stringData\":{\"password\":\"cluster-pw\"}}");
  create_in(T.ns, "deployments",
            DEPLOYMENT(
                "web",
                "[{\"name\":\"sidecar\",\"image\":\"x\",\"env\":[{\"name\":\"A\",\"value\":"
                "\"sidecar\"}]},"
                "{\"name\":\"app\",\"image\":\"x\","
                "\"envFrom\":[{\"prefix\":\"CM_\",\"configMapRef\":{\"name\":\"redis-cm\"}},"
                "{\"secretRef\":{\"name\":\"redis-secret\"}},"
                "{\"secretRef\":{\"name\":\"absent\",\"optional\":true}}],"
                "\"env\":[{\"name\":\"HOST\",\"value\":\"$(CM_host):6379\"},"
                "{\"name\":\"PW\",\"valueFrom\":{\"secretKeyRef\":{\"name\":\"redis-secret\","
                "\"key\":\"password\"}}},"
                "{\"name\":\"NOKEY\",\"valueFrom\":{\"secretKeyRef\":{\"name\":\"redis-secret\","
                "\"key\":\"nope\"}}},"
                "{\"name\":\"OPT\",\"valueFrom\":{\"configMapKeyRef\":{\"name\":\"absent\","
                "\"key\":\"x\",\"optional\":true}}},"
                "{\"name\":\"POD\",\"valueFrom\":{\"fieldRef\":{\"fieldPath\":\"metadata.name\"}}},"
                "{\"name\":\"EMPTY\"},"
                "{\"name\":\"user\",\"value\":\"env-wins-over-envFrom\"}]}]"));
  create_in(T.ns, "deployments",
            DEPLOYMENT("broken",
                       "[{\"name\":\"c\",\"image\":\"x\",\"env\":[{\"name\":\"X\",\"valueFrom\":{"
                       "\"secretKeyRef\":{\"name\":\"absent\",\"key\":\"k\"}}}]}]"));
  return 0;
}

static void set_flag(void *arg) { *(int *)arg = 1; }

static char *kw_kubectl_fmt(const char *fmt, const char *a) {
  char args[512];
  snprintf(args, sizeof args, fmt, a);
  return kw_kubectl(args);
}

static int teardown(void **state) {
  (void)state;
  if (T.skip)
    return 0;
  assert_int_equal(kw_kube_close(&loop, conn), 0);
  assert_int_equal(evs_test_loop_close(&loop), 0);
  kw_namespace(T.ns, 0);
  kw_namespace(T.cns, 0);
  char *out = kw_kubectl_fmt("delete clustertriggerauthentication %s --ignore-not-found", T.ns);
  free(out);
  return 0;
}

#define SKIP_IF_NO_CONTROLPLANE()                                                                  \
  do {                                                                                             \
    if (T.skip)                                                                                    \
      skip();                                                                                      \
  } while (0)

/* --- a client on a loop of the test's own --- */

typedef struct {
  uv_loop_t loop;
  evs_kube_t *k;
  int opened, rc;
  char *envp[2];
} kenv_t;

static void on_open(evs_kube_t *k, int status, const char *msg, void *arg) {
  (void)k, (void)msg;
  kenv_t *e = arg;
  e->opened = 1;
  e->rc = status;
}

static void kopen_with(kenv_t *e, const char *kubeconfig) {
  memset(e, 0, sizeof *e);
  uv_loop_init(&e->loop);
  e->envp[0] = "HOME=/nonexistent";
  evs_kube_options_t o = {.kubeconfig = kubeconfig, .envp = e->envp, .request_timeout_ms = 30000};
  assert_int_equal(evs_kube_new(&e->loop, &o, &e->k), 0);
  assert_int_equal(evs_kube_open(e->k, on_open, e), 0);
  assert_true(evs_test_run_until(&e->loop, &e->opened, 60000));
  assert_int_equal(e->rc, 0);
}

static void kopen(kenv_t *e) { kopen_with(e, KW.kubeconfig); }

static void kclose(kenv_t *e) {
  int closed = 0;
  evs_kube_close(e->k, set_flag, &closed);
  assert_true(evs_test_run_until(&e->loop, &closed, 20000));
  assert_int_equal(evs_test_loop_close(&e->loop), 0);
}

/* What a callback saw (copied: the map is borrowed for the call). */
typedef struct {
  int calls, err;
  char msg[1100];
  evs_kv_t kv[32];
  size_t n;
} res_t;

static void on_res(evs_triggerauth_req_t *req, int err, const char *msg, const evs_kvs_t *params,
                   void *arg) {
  (void)req;
  res_t *r = arg;
  r->calls++;
  r->err = err;
  snprintf(r->msg, sizeof r->msg, "%s", msg ? msg : "");
  assert_true((err == 0) == (params != NULL));
  assert_true((err == 0) == (msg == NULL));
  for (size_t i = 0; params != NULL && i < params->n && i < 32; i++)
    r->kv[r->n++] = (evs_kv_t){strdup(params->items[i].key), strdup(params->items[i].value)};
}

static void res_free(res_t *r) {
  for (size_t i = 0; i < r->n; i++)
    free((char *)r->kv[i].key), free((char *)r->kv[i].value);
}

static const char *res_get(const res_t *r, const char *key) {
  evs_kvs_t kvs = {r->kv, r->n};
  return evs_kvs_get(&kvs, key);
}

static evs_triggerauth_t *spec(const char *text) {
  char buf[2048];
  snprintf(buf, sizeof buf, "{\"spec\":%s}", text);
  json_t *j = json_loads(buf, 0, NULL);
  assert_non_null(j);
  void *out = NULL;
  assert_int_equal(evs_triggerauth_decode(j, &out, NULL), 0);
  json_decref(j);
  return out;
}

static res_t resolve(kenv_t *e, evs_triggerauth_opts_t o) {
  res_t r = {0};
  o.cb = on_res, o.arg = &r;
  assert_int_equal(evs_triggerauth_resolve(&e->loop, e->k, &o, NULL), 0);
  assert_int_equal(r.calls, 0); /* never from inside the call */
  int done = 0;
  while (r.calls == 0 && !done)
    done = !evs_test_run_until(&e->loop, &r.calls, 30000);
  assert_int_equal(r.calls, 1);
  return r;
}

static res_t env_resolve(kenv_t *e, const char *deployment, const char *container) {
  char path[256], target[128];
  snprintf(path, sizeof path, "/apis/apps/v1/namespaces/%s/deployments/%s", T.ns, deployment);
  snprintf(target, sizeof target, "Deployment %s/%s", T.ns, deployment);
  res_t r = {0};
  evs_triggerauth_env_opts_t o = {.target_path = path,
                                  .target = target,
                                  .ns = T.ns,
                                  .container = container,
                                  .cb = on_res,
                                  .arg = &r};
  assert_int_equal(evs_triggerauth_env_resolve(&e->loop, e->k, &o, NULL), 0);
  assert_true(evs_test_run_until(&e->loop, &r.calls, 30000));
  assert_int_equal(r.calls, 1);
  return r;
}

/* --- tests --- */

static void test_secret_and_configmap(void **state) {
  (void)state;
  SKIP_IF_NO_CONTROLPLANE();
  kenv_t e;
  kopen(&e);
  /* Two references to one Secret, and one parameter from both kinds: secretTargetRef comes
   * after configMapTargetRef in resolveAuthRef, so the Secret's value wins. */
  evs_triggerauth_t *ta = spec(
      "{\"secretTargetRef\":[{\"parameter\":\"password\",\"name\":\"redis-secret\",\"key\":"
      "\"password\"},{\"parameter\":\"user\",\"name\":\"redis-secret\",\"key\":\"user\"}],"
      "\"configMapTargetRef\":[{\"parameter\":\"host\",\"name\":\"redis-cm\",\"key\":\"host\"},"
      "{\"parameter\":\"user\",\"name\":\"redis-cm\",\"key\":\"user\"}],"
      "\"podIdentity\":{\"provider\":\"none\"}}");
  long mark = kw_audit_mark();
  res_t r = resolve(&e, (evs_triggerauth_opts_t){.auth = ta, .name = "redis-auth", .ns = T.ns});
  if (r.err != 0)
    fail_msg("%s", r.msg);
  assert_int_equal(r.n, 3);
  assert_string_equal(res_get(&r, "password"), "s3cr3t");
  assert_string_equal(res_get(&r, "user"), "bob");
  assert_string_equal(res_get(&r, "host"), "redis.example");
  if (KW.audit[0]) {
    kw_audit_settle();
    char uri[256];
    snprintf(uri, sizeof uri, "/api/v1/namespaces/%s/secrets/redis-secret", T.ns);
    assert_int_equal(kw_audit_count(mark, "get", uri), 1);
    snprintf(uri, sizeof uri, "/api/v1/namespaces/%s/configmaps/redis-cm", T.ns);
    assert_int_equal(kw_audit_count(mark, "get", uri), 1);
  }
  res_free(&r);
  evs_triggerauth_free(ta, NULL);
  kclose(&e);
}

static void test_missing(void **state) {
  (void)state;
  SKIP_IF_NO_CONTROLPLANE();
  kenv_t e;
  kopen(&e);
  static const struct {
    const char *spec, *fmt;
    int err;
  } t[] = {
      {"{\"secretTargetRef\":[{\"parameter\":\"password\",\"name\":\"redis-secret\",\"key\":"
       "\"password2\"}]}",
       "TriggerAuthentication %s/redis-auth: spec.secretTargetRef[0]: secret %s/redis-secret has "
       "no key \"password2\"",
       EVS_ENOTFOUND},
      {"{\"secretTargetRef\":[{\"parameter\":\"p\",\"name\":\"redis-secret\",\"key\":\"user\"},"
       "{\"parameter\":\"password\",\"name\":\"nope\",\"key\":\"password\"}]}",
       "TriggerAuthentication %s/redis-auth: spec.secretTargetRef[1]: secret %s/nope not found",
       EVS_ENOTFOUND},
      {"{\"configMapTargetRef\":[{\"parameter\":\"h\",\"name\":\"redis-cm\",\"key\":\"port\"}]}",
       "TriggerAuthentication %s/redis-auth: spec.configMapTargetRef[0]: configmap %s/redis-cm "
       "has no key \"port\"",
       EVS_ENOTFOUND},
      {"{\"configMapTargetRef\":[{\"parameter\":\"h\",\"name\":\"gone\",\"key\":\"port\"}]}",
       "TriggerAuthentication %s/redis-auth: spec.configMapTargetRef[0]: configmap %s/gone not "
       "found",
       EVS_ENOTFOUND},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    evs_triggerauth_t *ta = spec(t[i].spec);
    res_t r = resolve(&e, (evs_triggerauth_opts_t){.auth = ta, .name = "redis-auth", .ns = T.ns});
    char want[600];
    snprintf(want, sizeof want, t[i].fmt, T.ns, T.ns);
    assert_int_equal(r.err, t[i].err);
    assert_string_equal(r.msg, want);
    assert_null(strstr(r.msg, "s3cr3t"));
    evs_triggerauth_free(ta, NULL);
  }
  /* A refused source never starts. */
  evs_triggerauth_t *ta = spec("{\"hashiCorpVault\":{\"address\":\"x\"}}");
  res_t r = {0};
  evs_triggerauth_opts_t o = {.auth = ta, .name = "v", .ns = T.ns, .cb = on_res, .arg = &r};
  assert_int_equal(evs_triggerauth_resolve(&e.loop, e.k, &o, NULL), EVS_EUNSUPPORTED);
  evs_triggerauth_free(ta, NULL);
  kclose(&e);
  assert_int_equal(r.calls, 0);
}

static void test_cluster_namespace(void **state) {
  (void)state;
  SKIP_IF_NO_CONTROLPLANE();
  kenv_t e;
  kopen(&e);
  evs_triggerauth_t *ta = spec("{\"secretTargetRef\":[{\"parameter\":\"password\",\"name\":"
                               "\"redis-secret\",\"key\":\"password\"}]}");
  res_t r = resolve(&e, (evs_triggerauth_opts_t){.auth = ta,
                                                 .kind = EVS_TRIGGERAUTH_CLUSTER,
                                                 .name = "cluster-auth",
                                                 .ns = T.ns,
                                                 .cluster_namespace = T.cns});
  if (r.err != 0)
    fail_msg("%s", r.msg);
  assert_string_equal(res_get(&r, "password"), "cluster-pw");
  res_free(&r);
  /* The same kind in the ScaledObject's namespace reads that namespace's Secret. */
  r = resolve(&e, (evs_triggerauth_opts_t){.auth = ta, .name = "auth", .ns = T.ns});
  assert_int_equal(r.err, 0);
  assert_string_equal(res_get(&r, "password"), "s3cr3t");
  res_free(&r);
  evs_triggerauth_free(ta, NULL);

  ta = spec("{\"secretTargetRef\":[{\"parameter\":\"p\",\"name\":\"only-here\",\"key\":\"k\"}]}");
  r = resolve(&e, (evs_triggerauth_opts_t){.auth = ta,
                                           .kind = EVS_TRIGGERAUTH_CLUSTER,
                                           .name = "cluster-auth",
                                           .ns = T.ns,
                                           .cluster_namespace = T.cns});
  char want[300];
  snprintf(want, sizeof want,
           "ClusterTriggerAuthentication cluster-auth: spec.secretTargetRef[0]: secret "
           "%s/only-here not found",
           T.cns);
  assert_int_equal(r.err, EVS_ENOTFOUND);
  assert_string_equal(r.msg, want);
  evs_triggerauth_free(ta, NULL);
  kclose(&e);
}

/* No cluster_namespace: the client's namespace (the kubeconfig context's here; in a cluster the
 * service account's, as KEDA's GetClusterObjectNamespace falls back to its own namespace). */
static void test_cluster_namespace_default(void **state) {
  (void)state;
  SKIP_IF_NO_CONTROLPLANE();
  char kc[128], cmd[1200];
  snprintf(kc, sizeof kc, "/tmp/evs-tauth-kc-%d", (int)getpid());
  snprintf(cmd, sizeof cmd,
           "cp %s %s && KUBECONFIG=%s kubectl config set-context --current --namespace=%s "
           ">/dev/null",
           KW.kubeconfig, kc, kc, T.cns);
  assert_int_equal(system(cmd), 0);
  kenv_t e;
  kopen_with(&e, kc);
  assert_string_equal(evs_kube_namespace(e.k), T.cns);
  evs_triggerauth_t *ta = spec("{\"secretTargetRef\":[{\"parameter\":\"password\",\"name\":"
                               "\"redis-secret\",\"key\":\"password\"}]}");
  res_t r = resolve(&e, (evs_triggerauth_opts_t){
                            .auth = ta, .kind = EVS_TRIGGERAUTH_CLUSTER, .name = "c", .ns = T.ns});
  if (r.err != 0)
    fail_msg("%s", r.msg);
  assert_string_equal(res_get(&r, "password"), "cluster-pw");
  res_free(&r);
  evs_triggerauth_free(ta, NULL);
  kclose(&e);
  unlink(kc);
}

static void test_env(void **state) {
  (void)state;
  SKIP_IF_NO_CONTROLPLANE();
  kenv_t e;
  kopen(&e);
  res_t r = env_resolve(&e, "web", "app");
  if (r.err != 0)
    fail_msg("%s", r.msg);
  assert_string_equal(res_get(&r, "CM_host"), "redis.example");
  assert_string_equal(res_get(&r, "CM_user"), "cm-user");
  assert_string_equal(res_get(&r, "password"), "s3cr3t"); /* envFrom secretRef, no prefix */
  assert_string_equal(res_get(&r, "user"), "env-wins-over-envFrom");
  assert_string_equal(res_get(&r, "HOST"), "redis.example:6379");
  assert_string_equal(res_get(&r, "PW"), "s3cr3t");
  assert_string_equal(res_get(&r, "NOKEY"), ""); /* string(secret.Data["nope"]) */
  assert_string_equal(res_get(&r, "EMPTY"), "");
  assert_null(res_get(&r, "OPT")); /* optional and absent: skipped */
  assert_null(res_get(&r, "POD")); /* fieldRef: skipped */
  assert_int_equal(r.n, 8);
  res_free(&r);

  r = env_resolve(&e, "web", NULL); /* the first container */
  assert_int_equal(r.err, 0);
  assert_int_equal(r.n, 1);
  assert_string_equal(res_get(&r, "A"), "sidecar");
  res_free(&r);

  char want[300];
  r = env_resolve(&e, "web", "nope");
  snprintf(want, sizeof want,
           "Deployment %s/web: spec.template.spec.containers has no container named \"nope\"",
           T.ns);
  assert_int_equal(r.err, EVS_ENOTFOUND);
  assert_string_equal(r.msg, want);

  r = env_resolve(&e, "broken", NULL);
  snprintf(want, sizeof want,
           "Deployment %s/broken: spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef: "
           "secret %s/absent not found",
           T.ns, T.ns);
  assert_int_equal(r.err, EVS_ENOTFOUND);
  assert_string_equal(r.msg, want);

  r = env_resolve(&e, "absent", NULL);
  snprintf(want, sizeof want, "Deployment %s/absent: not found", T.ns);
  assert_int_equal(r.err, EVS_ENOTFOUND);
  assert_string_equal(r.msg, want);
  kclose(&e);
}

/* spec.env reads the named container's environment (ResolveContainerEnv with containerName),
 * from the map given for the same container or by resolving the target. */
static void test_auth_env(void **state) {
  (void)state;
  SKIP_IF_NO_CONTROLPLANE();
  kenv_t e;
  kopen(&e);
  char path[256];
  snprintf(path, sizeof path, "/apis/apps/v1/namespaces/%s/deployments/web", T.ns);
  evs_triggerauth_t *ta =
      spec("{\"env\":[{\"parameter\":\"host\",\"name\":\"HOST\",\"containerName\":\"app\"},"
           "{\"parameter\":\"a\",\"name\":\"A\"},{\"parameter\":\"z\",\"name\":\"ZZZ\"}],"
           "\"secretTargetRef\":[{\"parameter\":\"a\",\"name\":\"redis-secret\",\"key\":\"user\"},"
           "{\"parameter\":\"pw\",\"name\":\"redis-secret\",\"key\":\"password\"}]}");
  res_t r = resolve(
      &e, (evs_triggerauth_opts_t){.auth = ta, .name = "t", .ns = T.ns, .target_path = path});
  if (r.err != 0)
    fail_msg("%s", r.msg);
  assert_string_equal(res_get(&r, "host"), "redis.example:6379");
  assert_string_equal(res_get(&r, "a"), "bob"); /* secretTargetRef after env */
  assert_string_equal(res_get(&r, "z"), "");
  assert_string_equal(res_get(&r, "pw"), "s3cr3t");
  res_free(&r);

  /* The given map serves its container: the value comes from it, not from the target. */
  evs_kv_t given[] = {{"HOST", "given-host"}};
  evs_kvs_t env = {given, 1};
  r = resolve(&e, (evs_triggerauth_opts_t){.auth = ta,
                                           .name = "t",
                                           .ns = T.ns,
                                           .target_path = path,
                                           .env = &env,
                                           .env_container = "app"});
  assert_int_equal(r.err, 0);
  assert_string_equal(res_get(&r, "host"), "given-host");
  res_free(&r);

  /* No target: env parameters are "" (resolveAuthRef with a nil pod spec). */
  r = resolve(&e, (evs_triggerauth_opts_t){.auth = ta, .name = "t", .ns = T.ns});
  assert_int_equal(r.err, 0);
  assert_string_equal(res_get(&r, "host"), "");
  res_free(&r);
  evs_triggerauth_free(ta, NULL);
  kclose(&e);
}

/* --- the informer's decode callback on what the API server serves --- */

static void on_synced(evs_informer_t *inf, void *arg) {
  (void)inf;
  *(int *)arg = 1;
}

static void inf_closed(void *arg) { *(int *)arg = 1; }

/* Lists `path` through an informer decoding with evs_triggerauth_decode and returns a new
 * reference to the decoded object `name` (ns "" for the cluster kind). */
static evs_triggerauth_t *informed(kenv_t *e, const char *path, const char *selector,
                                   const char *ns, const char *name) {
  int synced = 0, closed = 0;
  evs_informer_options_t o = {.kube = e->k,
                              .path = path,
                              .label_selector = selector,
                              .decode = evs_triggerauth_decode,
                              .free_data = evs_triggerauth_free,
                              .on_synced = on_synced,
                              .arg = &synced};
  evs_informer_t *inf = NULL;
  assert_int_equal(evs_informer_start(&e->loop, &o, &inf), 0);
  assert_true(evs_test_run_until(&e->loop, &synced, 30000));
  const evs_informer_obj_t *obj = evs_informer_get(inf, ns, name);
  assert_non_null(obj);
  assert_non_null(obj->data);
  evs_triggerauth_t *ta = (evs_triggerauth_t *)evs_triggerauth_ref(obj->data);
  evs_informer_close(inf, inf_closed, &closed);
  assert_true(evs_test_run_until(&e->loop, &closed, 10000));
  return ta;
}

/* KEDA's "triggerauth exists secret + config map" (scale_resolvers_test.go TestResolveAuthRef),
 * with this test's objects: created on the API server (CRDs of KEDA v2.20.2), listed by an
 * informer, decoded, resolved. The cluster kind the same way, reading the cluster-object
 * namespace. */
static void test_informer_decode(void **state) {
  (void)state;
  SKIP_IF_NO_CONTROLPLANE();
  kenv_t e;
  kopen(&e);
  char path[256], body[1024];
  snprintf(path, sizeof path, "/apis/keda.sh/v1alpha1/namespaces/%s/triggerauthentications", T.ns);
  const char *spec_json =
      "\"spec\":{\"podIdentity\":{\"provider\":\"none\"},\"secretTargetRef\":[{\"parameter\":"
      "\"host-secret\",\"name\":\"redis-secret\",\"key\":\"password\"}],\"configMapTargetRef\":"
      "[{\"parameter\":\"host-configmap\",\"name\":\"redis-cm\",\"key\":\"host\"}]}";
  snprintf(body, sizeof body,
           "{\"apiVersion\":\"keda.sh/v1alpha1\",\"kind\":\"TriggerAuthentication\","
           "\"metadata\":{\"name\":\"triggerauth\"},%s}",
           spec_json);
  create(path, body);
  evs_triggerauth_t *ta = informed(&e, path, NULL, T.ns, "triggerauth");
  assert_int_equal(ta->n_secrets, 1);
  assert_int_equal(ta->n_configmaps, 1);
  assert_string_equal(ta->pod_identity, "none");
  res_t r = resolve(&e, (evs_triggerauth_opts_t){.auth = ta, .name = "triggerauth", .ns = T.ns});
  if (r.err != 0)
    fail_msg("%s", r.msg);
  assert_string_equal(res_get(&r, "host-secret"), "s3cr3t");
  assert_string_equal(res_get(&r, "host-configmap"), "redis.example");
  res_free(&r);
  evs_triggerauth_free(ta, NULL);

  snprintf(body, sizeof body,
           "{\"apiVersion\":\"keda.sh/v1alpha1\",\"kind\":\"ClusterTriggerAuthentication\","
           "\"metadata\":{\"name\":\"%s\",\"labels\":{\"evs-test\":\"%s\"}},%s}",
           T.ns, T.ns, spec_json);
  create("/apis/keda.sh/v1alpha1/clustertriggerauthentications", body);
  char sel[128];
  snprintf(sel, sizeof sel, "evs-test=%s", T.ns);
  ta = informed(&e, "/apis/keda.sh/v1alpha1/clustertriggerauthentications", sel, "", T.ns);
  r = resolve(&e, (evs_triggerauth_opts_t){.auth = ta,
                                           .kind = EVS_TRIGGERAUTH_CLUSTER,
                                           .name = T.ns,
                                           .ns = T.ns,
                                           .cluster_namespace = T.cns});
  /* The cluster-object namespace has the Secret but no ConfigMap: the error names both. */
  char want[400];
  snprintf(want, sizeof want,
           "ClusterTriggerAuthentication %s: spec.configMapTargetRef[0]: configmap %s/redis-cm "
           "not found",
           T.ns, T.cns);
  assert_int_equal(r.err, EVS_ENOTFOUND);
  assert_string_equal(r.msg, want);
  evs_triggerauth_free(ta, NULL);
  kclose(&e);
}

static void on_fire(uv_timer_t *h) { *(int *)h->data = 1; }
static void on_timer_closed(uv_handle_t *h) { *(int *)h->data = 1; }

/* Cancelled before any answer: no callback, everything freed (ASan), the client closes. */
static void test_cancel(void **state) {
  (void)state;
  SKIP_IF_NO_CONTROLPLANE();
  kenv_t e;
  kopen(&e);
  char path[256];
  snprintf(path, sizeof path, "/apis/apps/v1/namespaces/%s/deployments/web", T.ns);
  evs_triggerauth_t *ta =
      spec("{\"env\":[{\"parameter\":\"host\",\"name\":\"HOST\",\"containerName\":\"app\"}],"
           "\"secretTargetRef\":[{\"parameter\":\"pw\",\"name\":\"redis-secret\",\"key\":"
           "\"password\"}],\"configMapTargetRef\":[{\"parameter\":\"h\",\"name\":\"redis-cm\","
           "\"key\":\"host\"}]}");
  res_t r = {0};
  evs_triggerauth_req_t *a = NULL, *b = NULL, *c = NULL;
  evs_triggerauth_opts_t o = {
      .auth = ta, .name = "t", .ns = T.ns, .target_path = path, .cb = on_res, .arg = &r};
  assert_int_equal(evs_triggerauth_resolve(&e.loop, e.k, &o, &a), 0);
  evs_triggerauth_env_opts_t eo = {.target_path = path, .ns = T.ns, .cb = on_res, .arg = &r};
  assert_int_equal(evs_triggerauth_env_resolve(&e.loop, e.k, &eo, &b), 0);
  /* One that needs no request at all (a deferred result) is cancellable too. */
  evs_triggerauth_t *empty = spec("{}");
  o.auth = empty, o.target_path = NULL;
  assert_int_equal(evs_triggerauth_resolve(&e.loop, e.k, &o, &c), 0);
  evs_triggerauth_free(empty, NULL); /* the request holds its own reference */
  evs_triggerauth_cancel(a);
  evs_triggerauth_cancel(b);
  evs_triggerauth_cancel(c);
  evs_triggerauth_free(ta, NULL);
  /* Let anything that would have come come. */
  uv_timer_t t;
  int fired = 0, closed = 0;
  uv_timer_init(&e.loop, &t);
  t.data = &fired;
  uv_timer_start(&t, on_fire, 1500, 0);
  assert_true(evs_test_run_until(&e.loop, &fired, 10000));
  t.data = &closed;
  uv_close((uv_handle_t *)&t, on_timer_closed);
  assert_true(evs_test_run_until(&e.loop, &closed, 10000));
  kclose(&e);
  assert_int_equal(r.calls, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_secret_and_configmap),
      cmocka_unit_test(test_missing),
      cmocka_unit_test(test_cluster_namespace),
      cmocka_unit_test(test_cluster_namespace_default),
      cmocka_unit_test(test_env),
      cmocka_unit_test(test_auth_env),
      cmocka_unit_test(test_cancel),
      cmocka_unit_test(test_informer_decode),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
