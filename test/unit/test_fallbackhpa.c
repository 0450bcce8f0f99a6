/* The circuit breaker's fallback HPA (evscale/fallbackhpa.h): the object it builds, against
 * fixtures written from the Kubernetes and KEDA sources (test/data/fallbackhpa/README.md), and the
 * hand-over against the real local control plane (kube-apiserver and kube-controller-manager
 * v1.20.2, tools/controlplane.sh), where the real HPA controller and garbage collector run:
 * the HPA is created with its owner reference, the HPA controller raises a Deployment below
 * minReplicas to it (kubernetes v1.20.2 pkg/controller/podautoscaler/horizontal.go
 * reconcileAutoscaler: "Current number of replicas below Spec.MinReplicas", no metrics needed),
 * ensure is idempotent, a foreign HPA of the same name is refused and never deleted, delete
 * treats 404 as done, the annotations are set and removed, deleting the ScaledObject deletes
 * the HPA, and an operation canceled at any point never calls back and leaks nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <time.h>

#include "evscale/breaker.h"
#include "evscale/fallbackhpa.h"
#include "kube_writes_helpers.h"

static char NS[64];
static char HPA_VERSION[16]; /* what the server serves: v2, else v2beta2 */

#define UID "6b1f1c9e-5a0d-4c5e-9a51-0c1d2e3f4a5b"

static evs_fallbackhpa_spec_t fixture_spec(void) {
  return (evs_fallbackhpa_spec_t){.version = "v2",
                                  .ns = "shop",
                                  .name = "keda-hpa-web",
                                  .so_name = "web",
                                  .so_uid = UID,
                                  .target_api_version = "apps/v1",
                                  .target_kind = "Deployment",
                                  .target_name = "web",
                                  .min_replicas = 2,
                                  .max_replicas = 10,
                                  .resource = "cpu",
                                  .utilization = 50};
}

static json_t *load_fixture(const char *name) {
  char path[600];
  snprintf(path, sizeof path, "%s/test/data/fallbackhpa/%s", evs_test_src(), name);
  json_error_t je;
  json_t *j = json_load_file(path, 0, &je);
  if (j == NULL)
    fail_msg("%s: %s", path, je.text);
  return j;
}

static void assert_json_equal(json_t *got, json_t *want) {
  if (!json_equal(got, want)) {
    char *g = json_dumps(got, JSON_SORT_KEYS | JSON_INDENT(1));
    char *w = json_dumps(want, JSON_SORT_KEYS | JSON_INDENT(1));
    print_error("got:\n%s\nwant:\n%s\n", g ? g : "(null)", w ? w : "(null)");
    free(g), free(w);
    fail();
  }
}

/* ---- the builder ---- */

static void test_build_v2(void **state) {
  (void)state;
  evs_fallbackhpa_spec_t s = fixture_spec();
  json_t *got = evs_fallbackhpa_build(&s), *want = load_fixture("hpa_v2.json");
  assert_json_equal(got, want);
  json_decref(got), json_decref(want);
}

static void test_build_v2beta2(void **state) {
  (void)state;
  evs_fallbackhpa_spec_t s = fixture_spec();
  s.version = "v2beta2";
  s.resource = "memory";
  s.utilization = 80;
  json_t *got = evs_fallbackhpa_build(&s), *want = load_fixture("hpa_v2beta2_memory.json");
  assert_json_equal(got, want);
  json_decref(got), json_decref(want);
}

static void test_build_refuses_invalid(void **state) {
  (void)state;
  /* A table of one-line changes, each of which must make the spec invalid. */
  for (int i = 0; i < 16; i++) {
    evs_fallbackhpa_spec_t s = fixture_spec();
    switch (i) {
    case 0:
      s.version = "v1";
      break; /* no behavior, no MetricSpec: not a hand-over */
    case 1:
      s.version = NULL;
      break;
    case 2:
      s.ns = "";
      break;
    case 3:
      s.name = "a/b";
      break;
    case 4:
      s.so_name = NULL;
      break;
    case 5:
      s.so_uid = "";
      break;
    case 6:
      s.target_kind = NULL;
      break;
    case 7:
      s.target_name = "";
      break;
    case 8:
      s.min_replicas = 0;
      break;
    case 9:
      s.max_replicas = 1;
      break; /* below min 2 */
    case 10:
      s.utilization = 0;
      break;
    case 11:
      s.resource = "gpu";
      break;
    case 12:
      s.resource = NULL;
      break;
    case 13:
      s.target_api_version = NULL;
      break;
    case 14:
      s.name = "x y";
      break;
    case 15:
      s.ns = "a?b";
      break;
    }
    json_t *j = evs_fallbackhpa_build(&s);
    if (j != NULL)
      fail_msg("case %d built an HPA", i);
    int called = 0;
    assert_int_equal(evs_fallbackhpa_ensure(NULL, &s, NULL, &called, NULL), UV_EINVAL);
  }
  /* The other operations check their arguments before anything is sent (no client needed). */
  int called = 0;
  assert_int_equal(
      evs_fallbackhpa_annotate(NULL, "shop", "web", "\xff\xfe", NULL, NULL, &called, NULL),
      UV_EINVAL); /* not UTF-8 */
  assert_int_equal(evs_fallbackhpa_annotate(NULL, "shop", "a/b", "1", NULL, NULL, &called, NULL),
                   UV_EINVAL);
  assert_int_equal(evs_fallbackhpa_annotate(NULL, "shop", "web", "1", NULL, NULL, &called, NULL),
                   UV_EINVAL); /* no client */
  assert_int_equal(evs_fallbackhpa_delete(NULL, "v2", "shop", "x?y", NULL, NULL, &called, NULL),
                   UV_EINVAL);
  assert_int_equal(evs_fallbackhpa_delete(NULL, NULL, "shop", "x", NULL, NULL, &called, NULL),
                   UV_EINVAL);
  evs_fallbackhpa_cancel(NULL);
  evs_fallbackhpa_spec_t ok = fixture_spec();
  ok.min_replicas = ok.max_replicas = 1;
  json_t *j = evs_fallbackhpa_build(&ok);
  assert_non_null(j);
  json_decref(j);
}

/* KEDA cuts the name label to 63 characters and then to its last letter or digit; a long
 * ScaledObject name gets the same treatment for part-of (a longer label value is refused). */
static void test_build_long_name_labels(void **state) {
  (void)state;
  char so[120], hpa[130];
  memset(so, 'a', sizeof so);
  so[61] = '-'; /* a cut at 63 would end in "-a"; at 62 in "-": trimmed */
  so[62] = 'b';
  so[63] = '-';
  so[100] = '\0';
  snprintf(hpa, sizeof hpa, "keda-hpa-%s", so);
  evs_fallbackhpa_spec_t s = fixture_spec();
  s.so_name = so;
  s.name = hpa;
  json_t *j = evs_fallbackhpa_build(&s);
  json_t *labels = json_object_get(json_object_get(j, "metadata"), "labels");
  const char *part_of = json_string_value(json_object_get(labels, "app.kubernetes.io/part-of"));
  const char *name = json_string_value(json_object_get(labels, "app.kubernetes.io/name"));
  assert_non_null(part_of);
  assert_non_null(name);
  assert_int_equal(strlen(part_of), 63);
  assert_memory_equal(part_of, so, 63);
  /* "keda-hpa-" + 54 'a' ... : the 63rd character is so[53] = 'a', no trim needed */
  assert_int_equal(strlen(name), 63);
  assert_string_equal(json_string_value(json_object_get(json_object_get(j, "metadata"), "name")),
                      hpa); /* the object's name itself is never cut */
  json_decref(j);
  /* The trim: a value whose 63rd character is '-' loses it. */
  so[62] = '-';
  so[61] = '-';
  j = evs_fallbackhpa_build(&s);
  labels = json_object_get(json_object_get(j, "metadata"), "labels");
  part_of = json_string_value(json_object_get(labels, "app.kubernetes.io/part-of"));
  assert_int_equal(strlen(part_of), 61);
  json_decref(j);
}

static void test_annotation_names_match_breaker(void **state) {
  (void)state;
  assert_string_equal(EVS_FALLBACKHPA_TRIGGERED_ANNOTATION, EVS_BREAKER_TRIGGERED_ANNOTATION);
  assert_string_equal(EVS_FALLBACKHPA_STATE_ANNOTATION, EVS_BREAKER_STATE_ANNOTATION);
}

/* ---- against the control plane ---- */

typedef struct {
  uv_loop_t loop;
  evs_kube_t *k;
  int opened, open_rc;
  char *envp[2];
} env_t;

static void on_open(evs_kube_t *k, int status, const char *msg, void *arg) {
  (void)k;
  env_t *e = arg;
  e->opened = 1;
  e->open_rc = status;
  if (status != 0)
    fprintf(stderr, "kube open: %s\n", msg ? msg : "");
}

static void env_open(env_t *e) {
  memset(e, 0, sizeof *e);
  uv_loop_init(&e->loop);
  e->envp[0] = "HOME=/nonexistent";
  evs_kube_options_t o = {.kubeconfig = KW.kubeconfig, .envp = e->envp, .qps = 50, .burst = 50};
  assert_int_equal(evs_kube_new(&e->loop, &o, &e->k), 0);
  assert_int_equal(evs_kube_open(e->k, on_open, e), 0);
  assert_true(evs_test_run_until(&e->loop, &e->opened, 60000));
  assert_int_equal(e->open_rc, 0);
}

static void set_flag(void *arg) { *(int *)arg = 1; }

static void env_close(env_t *e) {
  int closed = 0;
  evs_kube_close(e->k, set_flag, &closed);
  assert_true(evs_test_run_until(&e->loop, &closed, 20000));
  assert_int_equal(evs_test_loop_close(&e->loop), 0);
}

typedef struct {
  int done, status;
  char *body;
} res_t;

static void on_req(evs_kube_req_t *req, int err, const evs_http_response_t *resp, const char *msg,
                   void *arg) {
  (void)req, (void)msg;
  res_t *r = arg;
  r->done = 1;
  r->status = err != 0 ? err : resp->status;
  if (resp != NULL && resp->body != NULL)
    r->body = strndup(resp->body, resp->body_len);
}

/* A request run to its answer: the HTTP status (negative: transport error); *out the body. */
static int req(env_t *e, const char *verb, const char *path, const char *ctype, const char *body,
               json_t **out) {
  res_t r = {0};
  evs_kube_request_opts_t o = {.verb = verb,
                               .path = path,
                               .content_type = ctype,
                               .body = body,
                               .body_len = body ? strlen(body) : 0,
                               .on_done = on_req,
                               .arg = &r};
  assert_int_equal(evs_kube_request(e->k, &o, NULL), 0);
  assert_true(evs_test_run_until(&e->loop, &r.done, 60000));
  if (out != NULL)
    *out = r.body ? json_loads(r.body, 0, NULL) : NULL;
  free(r.body);
  return r.status;
}

typedef struct {
  int done, calls, err, status;
  char msg[1200];
} op_res_t;

static void on_op(int err, int status, const char *msg, void *arg) {
  op_res_t *r = arg;
  r->done = 1;
  r->calls++;
  r->err = err;
  r->status = status;
  snprintf(r->msg, sizeof r->msg, "%s", msg ? msg : "");
}

static op_res_t wait_op(env_t *e, op_res_t *r) {
  assert_true(evs_test_run_until(&e->loop, &r->done, 60000));
  assert_int_equal(r->calls, 1);
  return *r;
}

static op_res_t ensure(env_t *e, const evs_fallbackhpa_spec_t *s) {
  op_res_t r = {0};
  assert_int_equal(evs_fallbackhpa_ensure(e->k, s, on_op, &r, NULL), 0);
  return wait_op(e, &r);
}

static op_res_t delete_hpa(env_t *e, const char *name, const char *uid) {
  op_res_t r = {0};
  assert_int_equal(evs_fallbackhpa_delete(e->k, HPA_VERSION, NS, name, uid, on_op, &r, NULL), 0);
  return wait_op(e, &r);
}

static op_res_t annotate(env_t *e, const char *so, const char *trig, const char *st) {
  op_res_t r = {0};
  assert_int_equal(evs_fallbackhpa_annotate(e->k, NS, so, trig, st, on_op, &r, NULL), 0);
  return wait_op(e, &r);
}

static void expect_ok(op_res_t r, int status) {
  if (r.err != 0 || r.status != status)
    fail_msg("err %s status %d (want %d): %s", evs_err_name(r.err), r.status, status, r.msg);
}

static char *path_of(const char *fmt, const char *name) {
  static char buf[4][400];
  static int i;
  char *b = buf[i++ % 4];
  snprintf(b, sizeof buf[0], fmt, HPA_VERSION, NS, name);
  return b;
}
#define HPA_PATH(name)                                                                             \
  path_of("/apis/autoscaling/%s/namespaces/%s/horizontalpodautoscalers/%s", name)

/* A Deployment with `replicas` (no scheduler runs: its Pods stay Pending, which is all the
 * HPA controller needs to act below minReplicas). */
static void create_deployment(env_t *e, const char *name, int replicas) {
  char path[256], body[1024];
  snprintf(path, sizeof path, "/apis/apps/v1/namespaces/%s/deployments", NS);
  snprintf(body, sizeof body,
           "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":\"%s\"},"
           "\"spec\":{\"replicas\":%d,\"selector\":{\"matchLabels\":{\"app\":\"%s\"}},"
           "\"template\":{\"metadata\":{\"labels\":{\"app\":\"%s\"}},\"spec\":{\"containers\":[{"
           "\"name\":\"c\",\"image\":\"registry.invalid/none\",\"resources\":{\"requests\":{"
           "\"cpu\":\"100m\"}}}]}}}}",
           name, replicas, name, name);
  assert_int_equal(req(e, "POST", path, EVS_KUBE_JSON, body, NULL), 201);
}

/* Creates ScaledObject `name` (KEDA's CRD, test/data/crds) and copies its uid. */
static void create_scaledobject(env_t *e, const char *name, const char *target, char *uid,
                                size_t cap) {
  char path[256], body[1024];
  snprintf(path, sizeof path, "/apis/keda.sh/v1alpha1/namespaces/%s/scaledobjects", NS);
  snprintf(body, sizeof body,
           "{\"apiVersion\":\"keda.sh/v1alpha1\",\"kind\":\"ScaledObject\",\"metadata\":{"
           "\"name\":\"%s\",\"annotations\":{\"team\":\"shop\"}},\"spec\":{\"scaleTargetRef\":{"
           "\"name\":\"%s\"},\"minReplicaCount\":0,\"maxReplicaCount\":5,\"triggers\":[{\"type\":"
           "\"cpu\",\"metricType\":\"Utilization\",\"metadata\":{\"value\":\"50\"}}]}}",
           name, target);
  json_t *j = NULL;
  assert_int_equal(req(e, "POST", path, EVS_KUBE_JSON, body, &j), 201);
  const char *u = json_string_value(json_object_get(json_object_get(j, "metadata"), "uid"));
  assert_non_null(u);
  snprintf(uid, cap, "%s", u);
  json_decref(j);
}

static evs_fallbackhpa_spec_t live_spec(const char *so, const char *uid, const char *hpa,
                                        const char *target, int min) {
  evs_fallbackhpa_spec_t s = fixture_spec();
  s.version = HPA_VERSION;
  s.ns = NS;
  s.name = hpa;
  s.so_name = so;
  s.so_uid = uid;
  s.target_name = target;
  s.min_replicas = min;
  s.max_replicas = 5;
  return s;
}

static int deployment_replicas(env_t *e, const char *name) {
  char path[256];
  snprintf(path, sizeof path, "/apis/apps/v1/namespaces/%s/deployments/%s", NS, name);
  json_t *j = NULL;
  assert_int_equal(req(e, "GET", path, NULL, NULL, &j), 200);
  int n = (int)json_integer_value(json_object_get(json_object_get(j, "spec"), "replicas"));
  json_decref(j);
  return n;
}

/* Polls (every 0.5 s) until GET path answers `status`; the seconds it took, or -1 after limit. */
static double wait_status(env_t *e, const char *path, int status, int limit_s) {
  uint64_t t0 = uv_hrtime();
  while ((uv_hrtime() - t0) / 1000000000 < (uint64_t)limit_s) {
    if (req(e, "GET", path, NULL, NULL, NULL) == status)
      return (double)(uv_hrtime() - t0) / 1e9;
    usleep(500 * 1000);
  }
  return -1;
}

#define SKIP_IF_NONE()                                                                             \
  do {                                                                                             \
    if (!KW.found)                                                                                 \
      skip();                                                                                      \
  } while (0)

/* The whole hand-over as the registry will run it: the target at 0 is scaled to 1 by a /scale
 * PATCH (an HPA leaves a target at 0 alone), then the HPA with minReplicas 3 takes it to 3. */
static void test_live_handover(void **state) {
  (void)state;
  SKIP_IF_NONE();
  env_t e;
  env_open(&e);
  char uid[128], path[256];
  create_deployment(&e, "web", 0);
  create_scaledobject(&e, "web", "web", uid, sizeof uid);
  snprintf(path, sizeof path, "/apis/apps/v1/namespaces/%s/deployments/web/scale", NS);
  assert_int_equal(
      req(&e, "PATCH", path, EVS_KUBE_MERGE_PATCH, "{\"spec\":{\"replicas\":1}}", NULL), 200);

  evs_fallbackhpa_spec_t s = live_spec("web", uid, "keda-hpa-web", "web", 3);
  expect_ok(ensure(&e, &s), 201);

  json_t *hpa = NULL;
  assert_int_equal(req(&e, "GET", HPA_PATH("keda-hpa-web"), NULL, NULL, &hpa), 200);
  json_t *ref =
      json_array_get(json_object_get(json_object_get(hpa, "metadata"), "ownerReferences"), 0);
  assert_string_equal(json_string_value(json_object_get(ref, "uid")), uid);
  assert_string_equal(json_string_value(json_object_get(ref, "kind")), "ScaledObject");
  assert_true(json_is_true(json_object_get(ref, "controller")));
  assert_true(json_is_true(json_object_get(ref, "blockOwnerDeletion")));
  /* What the server stored is what was sent: nothing defaulted or dropped from the spec. */
  json_t *want = evs_fallbackhpa_build(&s);
  assert_json_equal(json_object_get(hpa, "spec"), json_object_get(want, "spec"));
  json_decref(want);
  json_decref(hpa);

  /* The real HPA controller (sync period EVS_CP_HPA_SYNC_PERIOD, 5 s; 15 s on an older control
   * plane) raises the Deployment from 1 to minReplicas without any metric. */
  uint64_t t0 = uv_hrtime();
  int n = 0;
  while ((n = deployment_replicas(&e, "web")) != 3 && (uv_hrtime() - t0) / 1000000000 < 60)
    usleep(500 * 1000);
  if (n != 3)
    fail_msg("the HPA controller left the Deployment at %d replicas for 60 s", n);
  fprintf(stderr, "HPA controller raised the target to 3 in %.1f s\n",
          (double)(uv_hrtime() - t0) / 1e9);

  /* Ensure again: the existing HPA is ours (label and owner uid), replaced by PUT with the same
   * object: still one HPA, the same spec, the target left at 3. */
  expect_ok(ensure(&e, &s), 200);
  char list[300];
  snprintf(list, sizeof list,
           "/apis/autoscaling/%s/namespaces/%s/horizontalpodautoscalers?labelSelector="
           "app.kubernetes.io%%2Fpart-of%%3Dweb",
           HPA_VERSION, NS);
  json_t *l = NULL;
  assert_int_equal(req(&e, "GET", list, NULL, NULL, &l), 200);
  assert_int_equal(json_array_size(json_object_get(l, "items")), 1);
  want = evs_fallbackhpa_build(&s);
  assert_json_equal(json_object_get(json_array_get(json_object_get(l, "items"), 0), "spec"),
                    json_object_get(want, "spec"));
  json_decref(want);
  json_decref(l);
  assert_int_equal(deployment_replicas(&e, "web"), 3);
  s.max_replicas = 4; /* and a changed spec is written */
  expect_ok(ensure(&e, &s), 200);
  assert_int_equal(req(&e, "GET", HPA_PATH("keda-hpa-web"), NULL, NULL, &hpa), 200);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(hpa, "spec"), "maxReplicas")),
                   4);
  json_decref(hpa);
  env_close(&e);
}

/* An HPA owned by ScaledObject owner/owner_uid (which must exist: the garbage collector deletes
 * a dependent whose owner it cannot find by name and uid). */
static const char *foreign_hpa(const char *name, const char *labels, const char *owner,
                               const char *owner_uid) {
  static char body[2048];
  char ref[400];
  snprintf(ref, sizeof ref,
           ",\"ownerReferences\":[{\"apiVersion\":\"keda.sh/v1alpha1\",\"kind\":\"ScaledObject\","
           "\"name\":\"%s\",\"uid\":\"%s\"}]",
           owner, owner_uid);
  snprintf(body, sizeof body,
           "{\"apiVersion\":\"autoscaling/%s\",\"kind\":\"HorizontalPodAutoscaler\",\"metadata\":{"
           "\"name\":\"%s\",\"labels\":%s%s},\"spec\":{\"scaleTargetRef\":{\"apiVersion\":"
           "\"apps/v1\",\"kind\":\"Deployment\",\"name\":\"nothing\"},\"minReplicas\":1,"
           "\"maxReplicas\":2}}",
           HPA_VERSION, name, labels, ref);
  return body;
}

/* KEDA's own HPA of the same name (owned by the same ScaledObject, managed by keda-operator) is
 * refused and left in place, and so is one labelled as evscale's but owned by another
 * ScaledObject (a recreated one of the same name has a new uid). */
static void test_live_foreign_refused(void **state) {
  (void)state;
  SKIP_IF_NONE();
  env_t e;
  env_open(&e);
  char uid[128], other[128], coll[256];
  create_scaledobject(&e, "fr", "nothing", uid, sizeof uid);
  create_scaledobject(&e, "fr-other", "nothing", other, sizeof other);
  snprintf(coll, sizeof coll, "/apis/autoscaling/%s/namespaces/%s/horizontalpodautoscalers",
           HPA_VERSION, NS);
  assert_int_equal(req(&e, "POST", coll, EVS_KUBE_JSON,
                       foreign_hpa("keda-hpa-fr",
                                   "{\"app.kubernetes.io/managed-by\":"
                                   "\"keda-operator\"}",
                                   "fr", uid),
                       NULL),
                   201);
  evs_fallbackhpa_spec_t s = live_spec("fr", uid, "keda-hpa-fr", "nothing", 1);
  op_res_t r = ensure(&e, &s);
  assert_int_equal(r.err, UV_EEXIST);
  assert_non_null(strstr(r.msg, "keda-hpa-fr"));
  assert_non_null(strstr(r.msg, "keda-operator"));
  r = delete_hpa(&e, "keda-hpa-fr", uid);
  assert_int_equal(r.err, UV_EEXIST);
  assert_int_equal(req(&e, "GET", HPA_PATH("keda-hpa-fr"), NULL, NULL, NULL), 200);

  /* evscale's label, another owner. */
  assert_int_equal(req(&e, "POST", coll, EVS_KUBE_JSON,
                       foreign_hpa("keda-hpa-fr2", "{\"app.kubernetes.io/managed-by\":\"evscale\"}",
                                   "fr-other", other),
                       NULL),
                   201);
  s.name = "keda-hpa-fr2";
  r = ensure(&e, &s);
  assert_int_equal(r.err, UV_EEXIST);
  assert_non_null(strstr(r.msg, uid));
  r = delete_hpa(&e, "keda-hpa-fr2", uid);
  assert_int_equal(r.err, UV_EEXIST);
  json_t *hpa = NULL;
  assert_int_equal(req(&e, "GET", HPA_PATH("keda-hpa-fr2"), NULL, NULL, &hpa), 200);
  /* untouched: still the foreign spec */
  assert_int_equal(json_integer_value(json_object_get(json_object_get(hpa, "spec"), "maxReplicas")),
                   2);
  json_decref(hpa);
  env_close(&e);
}

static void test_live_delete(void **state) {
  (void)state;
  SKIP_IF_NONE();
  env_t e;
  env_open(&e);
  char uid[128];
  create_scaledobject(&e, "del", "nothing", uid, sizeof uid);
  evs_fallbackhpa_spec_t s = live_spec("del", uid, "keda-hpa-del", "nothing", 1);
  expect_ok(ensure(&e, &s), 201);
  expect_ok(delete_hpa(&e, "keda-hpa-del", uid), 200);
  /* Background propagation: the HPA (it has no dependents) is gone at once. */
  assert_int_equal(req(&e, "GET", HPA_PATH("keda-hpa-del"), NULL, NULL, NULL), 404);
  expect_ok(delete_hpa(&e, "keda-hpa-del", uid), 404);
  expect_ok(delete_hpa(&e, "never-was", NULL), 404);
  env_close(&e);
}

static json_t *so_annotations(env_t *e, const char *so, json_t **owner) {
  char path[256];
  snprintf(path, sizeof path, "/apis/keda.sh/v1alpha1/namespaces/%s/scaledobjects/%s", NS, so);
  assert_int_equal(req(e, "GET", path, NULL, NULL, owner), 200);
  return json_object_get(json_object_get(*owner, "metadata"), "annotations");
}

static void test_live_annotate(void **state) {
  (void)state;
  SKIP_IF_NONE();
  env_t e;
  env_open(&e);
  char uid[128];
  create_scaledobject(&e, "ann", "nothing", uid, sizeof uid);
  expect_ok(annotate(&e, "ann", "2026-11-30T11:00:00Z", "v1;open;trips=1"), 200);
  json_t *so = NULL, *a = so_annotations(&e, "ann", &so);
  assert_string_equal(json_string_value(json_object_get(a, EVS_BREAKER_TRIGGERED_ANNOTATION)),
                      "2026-11-30T11:00:00Z");
  assert_string_equal(json_string_value(json_object_get(a, EVS_BREAKER_STATE_ANNOTATION)),
                      "v1;open;trips=1");
  assert_string_equal(json_string_value(json_object_get(a, "team")), "shop");
  json_decref(so);

  /* One removed (NULL), the other replaced; then both removed; other keys stay. */
  expect_ok(annotate(&e, "ann", NULL, "v1;closed"), 200);
  a = so_annotations(&e, "ann", &so);
  assert_null(json_object_get(a, EVS_BREAKER_TRIGGERED_ANNOTATION));
  assert_string_equal(json_string_value(json_object_get(a, EVS_BREAKER_STATE_ANNOTATION)),
                      "v1;closed");
  json_decref(so);
  expect_ok(annotate(&e, "ann", NULL, NULL), 200);
  a = so_annotations(&e, "ann", &so);
  assert_null(json_object_get(a, EVS_BREAKER_TRIGGERED_ANNOTATION));
  assert_null(json_object_get(a, EVS_BREAKER_STATE_ANNOTATION));
  assert_string_equal(json_string_value(json_object_get(a, "team")), "shop");
  json_decref(so);

  op_res_t r = annotate(&e, "no-such-so", "x", NULL);
  assert_int_equal(r.err, EVS_ESTATUS);
  assert_int_equal(r.status, 404);
  assert_non_null(strstr(r.msg, "no-such-so"));
  env_close(&e);
}

/* The owner reference at work: the garbage collector deletes the HPA with its ScaledObject. */
static void test_live_scaledobject_deletion_collects(void **state) {
  (void)state;
  SKIP_IF_NONE();
  env_t e;
  env_open(&e);
  char uid[128], path[256];
  create_scaledobject(&e, "gc", "nothing", uid, sizeof uid);
  evs_fallbackhpa_spec_t s = live_spec("gc", uid, "keda-hpa-gc", "nothing", 1);
  expect_ok(ensure(&e, &s), 201);
  assert_int_equal(req(&e, "GET", HPA_PATH("keda-hpa-gc"), NULL, NULL, NULL), 200);
  snprintf(path, sizeof path, "/apis/keda.sh/v1alpha1/namespaces/%s/scaledobjects/gc", NS);
  assert_int_equal(req(&e, "DELETE", path, NULL, NULL, NULL), 200);
  double took = wait_status(&e, HPA_PATH("keda-hpa-gc"), 404, 60);
  if (took < 0)
    fail_msg("the HPA outlived its ScaledObject by 60 s");
  fprintf(stderr, "garbage collector deleted the HPA in %.1f s\n", took);
  env_close(&e);
}

/* What the API server fills into an empty behavior (scaleUp {} and scaleDown {}) is what
 * evscale writes, but for the scale-down window, which the server leaves unset and the
 * controller reads as its --horizontal-pod-autoscaler-downscale-stabilization (300 s). */
static void test_live_behavior_is_the_servers_default(void **state) {
  (void)state;
  SKIP_IF_NONE();
  env_t e;
  env_open(&e);
  char coll[256], body[2048];
  snprintf(coll, sizeof coll, "/apis/autoscaling/%s/namespaces/%s/horizontalpodautoscalers",
           HPA_VERSION, NS);
  snprintf(body, sizeof body,
           "{\"apiVersion\":\"autoscaling/%s\",\"kind\":\"HorizontalPodAutoscaler\",\"metadata\":{"
           "\"name\":\"defaults\"},\"spec\":{\"scaleTargetRef\":{\"apiVersion\":\"apps/v1\","
           "\"kind\":\"Deployment\",\"name\":\"nothing\"},\"maxReplicas\":2,\"behavior\":{"
           "\"scaleUp\":{},\"scaleDown\":{}}}}",
           HPA_VERSION);
  json_t *got = NULL;
  assert_int_equal(req(&e, "POST", coll, EVS_KUBE_JSON, body, &got), 201);
  json_t *server = json_object_get(json_object_get(got, "spec"), "behavior");
  evs_fallbackhpa_spec_t s = fixture_spec();
  json_t *mine = evs_fallbackhpa_build(&s);
  json_t *ours = json_deep_copy(json_object_get(json_object_get(mine, "spec"), "behavior"));
  assert_null(json_object_get(json_object_get(server, "scaleDown"), "stabilizationWindowSeconds"));
  json_object_del(json_object_get(ours, "scaleDown"), "stabilizationWindowSeconds");
  assert_json_equal(server, ours);
  json_decref(ours), json_decref(mine), json_decref(got);
  env_close(&e);
}

/* Canceled at every point of its run (before the first answer, between the POST's 409 and the
 * GET, between the GET and the PUT...), an operation never calls back; ASan's leak check proves
 * it freed everything. A closed client ends one in flight with EVS_ECANCELED. */
static void test_live_cancel_anywhere(void **state) {
  (void)state;
  SKIP_IF_NONE();
  env_t e;
  env_open(&e);
  char uid[128];
  create_scaledobject(&e, "cx", "nothing", uid, sizeof uid);
  evs_fallbackhpa_spec_t s = live_spec("cx", uid, "keda-hpa-cx", "nothing", 1);
  expect_ok(ensure(&e, &s), 201); /* from now on ensure is POST 409, GET, PUT */
  /* kind 0: ensure (POST 409, GET, PUT); kind 1: annotate (one PATCH). Each is started again
   * and canceled after 0, 1, 2, ... turns of the loop, until it runs to its end first. */
  int canceled[2] = {0, 0};
  for (int kind = 0; kind < 2; kind++) {
    int finished = 0;
    for (int turns = 0; turns < 400 && !finished; turns++) {
      op_res_t r = {0};
      evs_fallbackhpa_op_t *op = NULL;
      if (kind == 0)
        assert_int_equal(evs_fallbackhpa_ensure(e.k, &s, on_op, &r, &op), 0);
      else
        assert_int_equal(evs_fallbackhpa_annotate(e.k, NS, "cx", "1", "s", on_op, &r, &op), 0);
      for (int i = 0; i < turns && !r.done; i++)
        uv_run(&e.loop, UV_RUN_ONCE);
      if (r.done) {
        expect_ok(r, 200);
        finished = 1;
        continue;
      }
      evs_fallbackhpa_cancel(op);
      canceled[kind]++;
      uv_run(&e.loop, UV_RUN_NOWAIT);
      assert_int_equal(r.calls, 0);
    }
    assert_true(finished);
  }
  fprintf(stderr, "canceled ensure at %d points, annotate at %d\n", canceled[0], canceled[1]);
  /* Each answer takes at least one turn and ensure sends its three requests one after another,
   * so it cannot end before turn 3: it was canceled at turns 0, 1 and 2 at least. */
  assert_true(canceled[0] >= 3 && canceled[1] >= 1);
  /* Canceled operations left the client usable. */
  expect_ok(ensure(&e, &s), 200);
  /* The client closed under an operation: its callback runs once, with EVS_ECANCELED. */
  op_res_t r = {0};
  assert_int_equal(evs_fallbackhpa_ensure(e.k, &s, on_op, &r, NULL), 0);
  env_close(&e);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.err, EVS_ECANCELED);
}

/* A --dry-run client refuses every write: the operations fail at once, without a callback. */
static void test_live_read_only_client(void **state) {
  (void)state;
  SKIP_IF_NONE();
  env_t e;
  memset(&e, 0, sizeof e);
  uv_loop_init(&e.loop);
  e.envp[0] = "HOME=/nonexistent";
  evs_kube_options_t o = {.kubeconfig = KW.kubeconfig, .envp = e.envp, .read_only = 1};
  assert_int_equal(evs_kube_new(&e.loop, &o, &e.k), 0);
  assert_int_equal(evs_kube_open(e.k, on_open, &e), 0);
  assert_true(evs_test_run_until(&e.loop, &e.opened, 60000));
  op_res_t r = {0};
  evs_fallbackhpa_spec_t s = live_spec("ro", UID, "keda-hpa-ro", "nothing", 1);
  assert_int_equal(evs_fallbackhpa_ensure(e.k, &s, on_op, &r, NULL), EVS_EUNSUPPORTED);
  assert_int_equal(evs_fallbackhpa_annotate(e.k, NS, "ro", "1", NULL, on_op, &r, NULL),
                   EVS_EUNSUPPORTED);
  /* delete reads first (a GET is allowed) and is refused at the DELETE: no such HPA, so 404 */
  assert_int_equal(
      evs_fallbackhpa_delete(e.k, HPA_VERSION, NS, "keda-hpa-ro", NULL, on_op, &r, NULL), 0);
  wait_op(&e, &r);
  expect_ok(r, 404);
  env_close(&e);
}

/* ---- races, through test/faultproxy.py ---- */

/* The proxy holds the GET and the write that follows it (a "delay" fault on the object's path);
 * while the write is held the test changes the object behind evscale's back, so the write meets
 * the answer a real race gives (409 Conflict) and the operation must read again and succeed. */
typedef kw_proxy_t proxy_t;

static void proxy_start(proxy_t *p) { assert_int_equal(kw_proxy_start(p), 0); }

static void proxy_fault(proxy_t *p, const char *json) {
  assert_non_null(json);
  assert_int_equal(kw_proxy_fault(p, json), 0);
}

/* Requests the proxy has received for this path (any verb, query left out). */
static int proxy_count(proxy_t *p, const char *path) {
  int n = kw_proxy_count(p, path);
  assert_true(n >= 0);
  return n;
}

/* Runs the loop until the proxy has seen `n` requests for path (the n-th is being held). */
static void run_until_count(env_t *e, proxy_t *p, const char *path, int n, const op_res_t *r) {
  uint64_t t0 = uv_hrtime();
  int never = 0;
  while (proxy_count(p, path) < n) {
    assert_false(r->done);
    assert_true((uv_hrtime() - t0) / 1000000000 < 30);
    evs_test_run_until(&e->loop, &never, 100);
  }
}

static void kubectl_ok(const char *args) {
  char *out = kw_kubectl(args);
  if (out == NULL)
    fail_msg("kubectl %s failed", args);
  free(out);
}

static proxy_t PROXY; /* global: the group teardown stops it when a test fails midway */

static void test_live_races(void **state) {
  (void)state;
  SKIP_IF_NONE();
  env_t e;
  env_open(&e);
  char uid[128], args[600];
  create_scaledobject(&e, "race", "nothing", uid, sizeof uid);
  evs_fallbackhpa_spec_t s = live_spec("race", uid, "keda-hpa-race", "nothing", 1);
  expect_ok(ensure(&e, &s), 201);
  env_close(&e);

  proxy_start(&PROXY);
  memset(&e, 0, sizeof e);
  uv_loop_init(&e.loop);
  e.envp[0] = "HOME=/nonexistent";
  evs_kube_options_t o = {.kubeconfig = PROXY.kubeconfig, .envp = e.envp};
  assert_int_equal(evs_kube_new(&e.loop, &o, &e.k), 0);
  assert_int_equal(evs_kube_open(e.k, on_open, &e), 0);
  assert_true(evs_test_run_until(&e.loop, &e.opened, 60000));
  assert_int_equal(e.open_rc, 0);
  const char *obj = HPA_PATH("keda-hpa-race");
  char coll[300], fault[600];
  snprintf(coll, sizeof coll, "/apis/autoscaling/%s/namespaces/%s/horizontalpodautoscalers",
           HPA_VERSION, NS);

  /* ensure: POST 409, GET, PUT held -> the HPA changes -> PUT 409 -> POST 409, GET, PUT 200. */
  snprintf(fault, sizeof fault,
           "{\"kind\":\"delay\",\"delay_ms\":6000,\"count\":2,\"path_prefix\":\"%s\"}", obj);
  proxy_fault(&PROXY, fault);
  op_res_t r = {0};
  assert_int_equal(evs_fallbackhpa_ensure(e.k, &s, on_op, &r, NULL), 0);
  run_until_count(&e, &PROXY, obj, 2, &r);
  snprintf(args, sizeof args, "-n %s annotate hpa keda-hpa-race changed-by=someone-else", NS);
  kubectl_ok(args);
  wait_op(&e, &r);
  expect_ok(r, 200);
  assert_int_equal(proxy_count(&PROXY, obj), 4);
  assert_int_equal(proxy_count(&PROXY, coll), 2);
  /* The second PUT landed: the annotation the other writer added is gone. */
  snprintf(args, sizeof args,
           "-n %s get hpa keda-hpa-race -o jsonpath={.metadata.annotations.changed-by}", NS);
  char *out = kw_kubectl(args);
  assert_non_null(out);
  assert_string_equal(out, "");
  free(out);

  /* delete: GET, DELETE held -> the HPA is deleted and created again (a new uid) -> the DELETE's
   * uid precondition fails (409) -> GET, DELETE of the new one. */
  snprintf(fault, sizeof fault,
           "{\"kind\":\"delay\",\"delay_ms\":6000,\"count\":2,\"path_prefix\":\"%s\"}", obj);
  proxy_fault(&PROXY, fault);
  int before = proxy_count(&PROXY, obj);
  r = (op_res_t){0};
  assert_int_equal(
      evs_fallbackhpa_delete(e.k, HPA_VERSION, NS, "keda-hpa-race", uid, on_op, &r, NULL), 0);
  run_until_count(&e, &PROXY, obj, before + 2, &r);
  char file[300];
  snprintf(file, sizeof file, "%s/hpa.json", PROXY.srv.dir);
  json_t *want = evs_fallbackhpa_build(&s);
  assert_int_equal(json_dump_file(want, file, 0), 0);
  json_decref(want);
  snprintf(args, sizeof args, "replace --force -f %s", file); /* delete, then create */
  kubectl_ok(args);
  wait_op(&e, &r);
  expect_ok(r, 200);
  assert_int_equal(proxy_count(&PROXY, obj), before + 4);
  env_close(&e);
  env_open(&e);
  assert_int_equal(req(&e, "GET", obj, NULL, NULL, NULL), 404);
  env_close(&e);
  kw_proxy_stop(&PROXY);
}

/* ---- setup ---- */

static void pick_hpa_version(void) {
  env_t e;
  env_open(&e);
  json_t *g = NULL;
  assert_int_equal(req(&e, "GET", "/apis/autoscaling", NULL, NULL, &g), 200);
  size_t i;
  json_t *v;
  snprintf(HPA_VERSION, sizeof HPA_VERSION, "v2beta2");
  json_array_foreach(json_object_get(g, "versions"), i, v) {
    const char *name = json_string_value(json_object_get(v, "version"));
    if (name != NULL && strcmp(name, "v2") == 0)
      snprintf(HPA_VERSION, sizeof HPA_VERSION, "v2");
  }
  json_decref(g);
  env_close(&e);
}

static int setup(void **state) {
  (void)state;
  if (kw_find_controlplane() != 0) {
    fprintf(stderr, "SKIP test_fallbackhpa live tests: no Kubernetes control plane\n");
    return 0;
  }
  snprintf(NS, sizeof NS, "evs-fbhpa-%d-%ld", (int)getpid(), (long)time(NULL) % 100000);
  assert_int_equal(kw_namespace(NS, 1), 201);
  pick_hpa_version();
  fprintf(stderr, "namespace %s, autoscaling/%s\n", NS, HPA_VERSION);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  kw_proxy_stop(&PROXY);
  if (KW.found)
    kw_namespace(NS, 0);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_build_v2),
      cmocka_unit_test(test_build_v2beta2),
      cmocka_unit_test(test_build_refuses_invalid),
      cmocka_unit_test(test_build_long_name_labels),
      cmocka_unit_test(test_annotation_names_match_breaker),
      cmocka_unit_test(test_live_handover),
      cmocka_unit_test(test_live_foreign_refused),
      cmocka_unit_test(test_live_delete),
      cmocka_unit_test(test_live_annotate),
      cmocka_unit_test(test_live_scaledobject_deletion_collects),
      cmocka_unit_test(test_live_behavior_is_the_servers_default),
      cmocka_unit_test(test_live_cancel_anywhere),
      cmocka_unit_test(test_live_read_only_client),
      cmocka_unit_test(test_live_races),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
