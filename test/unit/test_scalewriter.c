/* The scale writer against the real API server (kube-apiserver 1.20, tools/controlplane.sh):
 * PATCH /scale of a Deployment, a StatefulSet (apps/v1) and a custom resource with a scale
 * subresource; coalescing (50 requests -> at most 2 writes in the audit log, the last count
 * wins); dry run (no PATCH in the audit log); scale writes ahead of low-priority requests in
 * the rate limiter; errors and teardown.
 *
 * Shapes from kubernetes/kubernetes v1.20.2 (faecb196815e248d3ecfb03c680a4507229c2a56):
 * staging/src/k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1/types.go
 * (CustomResourceSubresourceScale: specReplicasPath, statusReplicasPath, labelSelectorPath),
 * staging/src/k8s.io/api/autoscaling/v1/types.go (Scale: spec.replicas, status.replicas). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "evscale/scalewriter.h"
#include "kube_writes_helpers.h"

static char NS[64];

typedef struct {
  uv_loop_t loop;
  evs_kube_t *kube;
} env_t;

/* A client of the control plane with kubernetes.qps/burst (qps 0: unlimited). */
static void env_init(env_t *e, double qps, unsigned burst) {
  uv_loop_init(&e->loop);
  e->kube = kw_kube_opts(&e->loop, qps, burst, 0);
  assert_non_null(e->kube);
}

static void env_close(env_t *e) {
  assert_int_equal(kw_kube_close(&e->loop, e->kube), 0);
  assert_int_equal(evs_test_loop_close(&e->loop), 0);
}

#define SKIP_IF_NONE()                                                                             \
  do {                                                                                             \
    if (!KW.found)                                                                                 \
      skip();                                                                                      \
  } while (0)

static void create(env_t *e, const char *path, const char *body) {
  int st = kw_req(&e->loop, e->kube, "POST", path, EVS_KUBE_JSON, body, NULL);
  if (st != 201 && st != 409)
    fail_msg("POST %s: %d", path, st);
}

static const char CRD[] =
    "{\"apiVersion\":\"apiextensions.k8s.io/v1\",\"kind\":\"CustomResourceDefinition\","
    "\"metadata\":{\"name\":\"scalables.evstest.example.com\"},\"spec\":{\"group\":"
    "\"evstest.example.com\",\"scope\":\"Namespaced\",\"names\":{\"plural\":\"scalables\","
    "\"singular\":\"scalable\",\"kind\":\"Scalable\"},\"versions\":[{\"name\":\"v1\",\"served\":"
    "true,\"storage\":true,\"schema\":{\"openAPIV3Schema\":{\"type\":\"object\",\"properties\":{"
    "\"spec\":{\"type\":\"object\",\"properties\":{\"replicas\":{\"type\":\"integer\"}}},"
    "\"status\":{\"type\":\"object\",\"properties\":{\"replicas\":{\"type\":\"integer\"},"
    "\"selector\":{\"type\":\"string\"}}}}}},\"subresources\":{\"status\":{},\"scale\":{"
    "\"specReplicasPath\":\".spec.replicas\",\"statusReplicasPath\":\".status.replicas\","
    "\"labelSelectorPath\":\".status.selector\"}}}]}}";

static int setup(void **state) {
  (void)state;
  if (kw_find_controlplane() != 0) {
    fprintf(stderr, "SKIP test_scalewriter: no Kubernetes control plane\n");
    return 0;
  }
  snprintf(NS, sizeof NS, "evs-sw-%d-%ld", (int)getpid(), (long)time(NULL) % 100000);
  env_t e;
  env_init(&e, 0, 1);
  char body[4096], path[256];
  snprintf(body, sizeof body, "{\"metadata\":{\"name\":\"%s\"}}", NS);
  create(&e, "/api/v1/namespaces", body);
  const char *tmpl = "{\"metadata\":{\"name\":\"%s\"},\"spec\":{\"replicas\":1,%s\"selector\":{"
                     "\"matchLabels\":{\"app\":\"%s\"}},\"template\":{\"metadata\":{\"labels\":{"
                     "\"app\":\"%s\"}},\"spec\":{\"containers\":[{\"name\":\"c\",\"image\":"
                     "\"busybox\"}]}}}}";
  const char *names[] = {"web", "web2", "web3", "db"};
  for (size_t i = 0; i < 4; i++) {
    int sts = i == 3;
    snprintf(body, sizeof body, tmpl, names[i], sts ? "\"serviceName\":\"db\"," : "", names[i],
             names[i]);
    snprintf(path, sizeof path, "/apis/apps/v1/namespaces/%s/%s", NS,
             sts ? "statefulsets" : "deployments");
    create(&e, path, body);
  }
  create(&e, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", CRD);
  /* The CRD serves once Established: retry the create of the instance until it is. */
  snprintf(path, sizeof path, "/apis/evstest.example.com/v1/namespaces/%s/scalables", NS);
  int st = 0;
  for (int i = 0; i < 100 && st != 201 && st != 409; i++) {
    st = kw_req(&e.loop, e.kube, "POST", path, EVS_KUBE_JSON,
                "{\"apiVersion\":\"evstest.example.com/v1\",\"kind\":\"Scalable\",\"metadata\":{"
                "\"name\":\"sc\"},\"spec\":{\"replicas\":1}}",
                NULL);
    if (st != 201 && st != 409)
      usleep(100000);
  }
  assert_true(st == 201 || st == 409);
  env_close(&e);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  if (!KW.found)
    return 0;
  env_t e;
  env_init(&e, 0, 1);
  char path[128];
  snprintf(path, sizeof path, "/api/v1/namespaces/%s", NS);
  kw_req(&e.loop, e.kube, "DELETE", path, NULL, NULL, NULL);
  env_close(&e);
  return 0;
}

typedef struct {
  int n;
  evs_scale_result_t last;
  int32_t written[64];
  int order; /* completion order stamp */
} rec_t;

static int ORDER;

static void on_scale(evs_scalewriter_t *w, const evs_scale_result_t *r, void *arg) {
  (void)w;
  rec_t *rec = arg;
  if (rec->n < 64)
    rec->written[rec->n] = r->written;
  rec->n++;
  rec->last = *r;
  rec->last.path = rec->last.message = NULL;
  rec->order = ++ORDER;
}

static int32_t get_replicas(env_t *e, const char *path) {
  char *body = NULL;
  int st = kw_req(&e->loop, e->kube, "GET", path, NULL, NULL, &body);
  assert_int_equal(st, 200);
  json_t *j = json_loads(body, 0, NULL);
  free(body);
  json_t *v = json_object_get(json_object_get(j, "spec"), "replicas");
  int32_t n = (int32_t)json_integer_value(v);
  json_decref(j);
  return n;
}

/* One PATCH on each kind's /scale: 200, the answer's spec.replicas is ours, the object says so. */
static void test_patch_kinds(void **state) {
  (void)state;
  SKIP_IF_NONE();
  env_t e;
  env_init(&e, 0, 1);
  evs_scalewriter_t *w;
  assert_int_equal(evs_scalewriter_new(e.kube, NULL, &w), 0);
  struct {
    evs_scale_target_t t;
    int32_t n;
  } cases[] = {
      {{"apps", "v1", "deployments", NS, "web"}, 3},
      {{"apps", "v1", "statefulsets", NS, "db"}, 4},
      {{"evstest.example.com", "v1", "scalables", NS, "sc"}, 5},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char path[512];
    assert_int_equal(evs_scalewriter_path(&cases[i].t, path, sizeof path), 0);
    long mark = kw_audit_mark();
    rec_t rec = {0};
    assert_int_equal(evs_scalewriter_write(w, &cases[i].t, cases[i].n, on_scale, &rec), 0);
    assert_int_equal(rec.n, 0); /* never from inside write */
    assert_true(evs_test_run_until(&e.loop, &rec.n, 30000));
    assert_int_equal(rec.last.err, 0);
    assert_int_equal(rec.last.status, 200);
    assert_int_equal(rec.last.replicas, cases[i].n);
    assert_int_equal(rec.last.written, cases[i].n);
    assert_int_equal(rec.last.dry_run, 0);
    path[strlen(path) - strlen("/scale")] = '\0';
    assert_int_equal(get_replicas(&e, path), cases[i].n);
    kw_audit_settle();
    strcat(path, "/scale");
    assert_int_equal(kw_audit_count(mark, "patch", path), 1);
  }
  assert_int_equal(evs_scalewriter_sent(w), 3);
  evs_scalewriter_close(w);
  env_close(&e);
}

/* 50 requests at once: the first is written at once, the 49 others ride on one more write with
 * the newest count. */
static void test_coalesce(void **state) {
  (void)state;
  SKIP_IF_NONE();
  env_t e;
  env_init(&e, 0, 1);
  evs_scalewriter_t *w;
  assert_int_equal(evs_scalewriter_new(e.kube, NULL, &w), 0);
  evs_scale_target_t t = {"apps", "v1", "deployments", NS, "web2"};
  char path[512];
  assert_int_equal(evs_scalewriter_path(&t, path, sizeof path), 0);
  long mark = kw_audit_mark();
  rec_t recs[50];
  memset(recs, 0, sizeof recs);
  for (int i = 0; i < 50; i++)
    assert_int_equal(evs_scalewriter_write(w, &t, 10 + i, on_scale, &recs[i]), 0);
  assert_int_equal(evs_scalewriter_busy(w), 1);
  assert_true(evs_test_run_until(&e.loop, &recs[49].n, 30000));
  for (int i = 0; i < 50; i++) {
    assert_int_equal(recs[i].n, 1);
    assert_int_equal(recs[i].last.status, 200);
    assert_int_equal(recs[i].last.replicas_requested, 10 + i);
  }
  assert_int_equal(recs[0].last.written, 10);
  assert_int_equal(recs[49].last.written, 59);
  assert_int_equal(recs[49].last.replicas, 59);
  assert_int_equal(recs[49].last.coalesced, 0);
  assert_int_equal(recs[20].last.coalesced, 1);
  assert_int_equal(evs_scalewriter_sent(w), 2);
  path[strlen(path) - strlen("/scale")] = '\0';
  assert_int_equal(get_replicas(&e, path), 59);
  kw_audit_settle();
  strcat(path, "/scale");
  int patches = kw_audit_count(mark, "patch", path);
  assert_true(patches >= 1 && patches <= 2);
  assert_int_equal(patches, 2);
  evs_scalewriter_close(w);
  env_close(&e);
}

/* Dry run: a GET of /scale reports the current count; no PATCH reaches the server. */
static void test_dry_run(void **state) {
  (void)state;
  SKIP_IF_NONE();
  env_t e;
  env_init(&e, 0, 1);
  evs_scalewriter_t *w;
  evs_scalewriter_options_t o = {.dry_run = 1};
  assert_int_equal(evs_scalewriter_new(e.kube, &o, &w), 0);
  evs_scale_target_t t = {"apps", "v1", "deployments", NS, "web3"};
  char path[512];
  assert_int_equal(evs_scalewriter_path(&t, path, sizeof path), 0);
  long mark = kw_audit_mark();
  rec_t rec = {0};
  assert_int_equal(evs_scalewriter_write(w, &t, 7, on_scale, &rec), 0);
  assert_true(evs_test_run_until(&e.loop, &rec.n, 30000));
  assert_int_equal(rec.last.dry_run, 1);
  assert_int_equal(rec.last.status, 200);
  assert_int_equal(rec.last.replicas, 1); /* unchanged: what the target has */
  kw_audit_settle();
  assert_int_equal(kw_audit_count(mark, "patch", path), 0);
  assert_int_equal(kw_audit_count(mark, "get", path), 1);
  path[strlen(path) - strlen("/scale")] = '\0';
  assert_int_equal(get_replicas(&e, path), 1);
  evs_scalewriter_close(w);
  env_close(&e);
}

static void on_low(evs_kube_req_t *req, int err, const evs_http_response_t *resp, const char *msg,
                   void *arg) {
  (void)req;
  (void)err;
  (void)resp;
  (void)msg;
  *(int *)arg = ++ORDER;
}

/* With the limiter empty, a scale write queued after low-priority requests goes first. */
static void test_priority(void **state) {
  (void)state;
  SKIP_IF_NONE();
  env_t e;
  env_init(&e, 1, 1); /* a token a second: completion order is dispatch order */
  evs_scalewriter_t *w;
  assert_int_equal(evs_scalewriter_new(e.kube, NULL, &w), 0);
  int low[3] = {0};
  char lpath[128];
  snprintf(lpath, sizeof lpath, "/api/v1/namespaces/%s", NS);
  for (int i = 0; i < 3; i++) {
    evs_kube_request_opts_t lo = {
        .verb = "GET", .path = lpath, .priority = EVS_PRIO_LOW, .on_done = on_low, .arg = &low[i]};
    assert_int_equal(evs_kube_request(e.kube, &lo, NULL), 0);
  }
  evs_scale_target_t t = {"apps", "v1", "deployments", NS, "web3"};
  rec_t rec = {0};
  assert_int_equal(evs_scalewriter_write(w, &t, 2, on_scale, &rec), 0);
  assert_true(evs_test_run_until(&e.loop, &low[2], 30000));
  assert_int_equal(rec.n, 1);
  assert_int_equal(rec.last.status, 200);
  /* The first LOW took the full bucket; the write then beat the two others waiting. */
  assert_true(rec.order < low[1]);
  assert_true(rec.order < low[2]);
  evs_scalewriter_close(w);
  env_close(&e);
}

/* A missing target: the server's 404 and its message; bad arguments fail synchronously; close
 * completes waiting requests with ECANCELED. */
static void test_errors_and_close(void **state) {
  (void)state;
  SKIP_IF_NONE();
  env_t e;
  env_init(&e, 0, 1);
  evs_scalewriter_t *w;
  assert_int_equal(evs_scalewriter_new(e.kube, NULL, &w), 0);
  evs_scale_target_t miss = {"apps", "v1", "deployments", NS, "nope"};
  rec_t rec = {0};
  assert_int_equal(evs_scalewriter_write(w, &miss, 2, on_scale, &rec), 0);
  assert_true(evs_test_run_until(&e.loop, &rec.n, 30000));
  assert_int_equal(rec.last.err, 0);
  assert_int_equal(rec.last.status, 404);
  assert_int_equal(rec.last.replicas, -1);
  evs_scale_target_t bad = {"apps", "v1", "deployments", NS, "a/b"};
  assert_int_equal(evs_scalewriter_write(w, &bad, 2, on_scale, &rec), UV_EINVAL);
  assert_int_equal(evs_scalewriter_write(w, &miss, -1, on_scale, &rec), UV_EINVAL);
  evs_scale_target_t core = {NULL, "v1", "replicationcontrollers", "ns", "rc"};
  char path[512];
  assert_int_equal(evs_scalewriter_path(&core, path, sizeof path), 0);
  assert_string_equal(path, "/api/v1/namespaces/ns/replicationcontrollers/rc/scale");
  rec_t a = {0}, b = {0};
  evs_scale_target_t t = {"apps", "v1", "deployments", NS, "web"};
  assert_int_equal(evs_scalewriter_write(w, &t, 2, on_scale, &a), 0);
  assert_int_equal(evs_scalewriter_write(w, &t, 3, on_scale, &b), 0);
  evs_scalewriter_close(w);
  assert_int_equal(a.n, 1);
  assert_int_equal(a.last.err, EVS_ECANCELED);
  assert_int_equal(b.n, 1);
  assert_int_equal(b.last.err, EVS_ECANCELED);
  env_close(&e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_patch_kinds),      cmocka_unit_test(test_coalesce),
      cmocka_unit_test(test_dry_run),          cmocka_unit_test(test_priority),
      cmocka_unit_test(test_errors_and_close),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
