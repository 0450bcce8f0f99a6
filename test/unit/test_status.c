/* KEDA's ScaledObject status: the pure builder against test/data/keda_status/conditions.json
 * (KEDA v2.20.2's condition types, reasons and messages, cited there), then the patcher against
 * the real API server (KEDA's CRDs are installed by tools/controlplane.sh): the status reads
 * back with kubectl, a patch per change only (PATCH .../status counted in the audit log), a
 * broken ScaledObject isolated, dry run writes nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "evscale/so_status.h"
#include "evscale/status.h"
#include "kube_writes_helpers.h"
#include "test_data.h"

#define T0 1700000000000LL

static char NS[64];

/* ---- fixture ---- */

static json_t *fixture(void) {
  char path[512];
  const char *d = evs_test_data();
  snprintf(path, sizeof path, "%s/keda_status/conditions.json", d);
  json_error_t err;
  json_t *j = json_load_file(path, 0, &err);
  if (j == NULL)
    fail_msg("%s: %s", path, err.text);
  return j;
}

static int in_fixture(json_t *fx, json_t *cond) {
  size_t i;
  json_t *c;
  json_array_foreach(json_object_get(fx, "conditions"), i, c) {
    int same = 1;
    const char *keys[] = {"type", "status", "reason", "message"};
    for (size_t k = 0; k < 4 && same; k++)
      same = json_equal(json_object_get(c, keys[k]), json_object_get(cond, keys[k]));
    if (same)
      return 1;
  }
  return 0;
}

typedef struct {
  evs_so_t *so;
  evs_engine_state_t *st;
  evs_engine_config_t cfg;
  evs_decision_t d;
  evs_reading_t r[4];
  int32_t replicas;
} fx_t;

static void fx_init(fx_t *f, const char *annotations, const char *spec_tail) {
  char buf[4096];
  memset(f, 0, sizeof *f);
  snprintf(buf, sizeof buf,
           "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: w\n"
           "  namespace: n\n%sspec:\n  scaleTargetRef: {name: w}\n%s",
           annotations ? annotations : "", spec_tail);
  evs_diag_t d;
  evs_diag_init(&d);
  assert_int_equal(evs_so_parse_yaml(buf, strlen(buf), "t.yaml", &f->so, &d), 0);
  evs_diag_free(&d);
  assert_int_equal(evs_engine_state_new(f->so, T0, &f->st), 0);
  evs_engine_config_default(&f->cfg);
}

static void fx_free(fx_t *f) {
  evs_engine_state_free(f->st);
  evs_so_free(f->so);
}

static const evs_decision_t *decide(fx_t *f, int64_t now, double value, int err) {
  for (size_t i = 0; i < f->so->n_triggers; i++)
    f->r[i] = (evs_reading_t){value, 0, err ? EVS_EMETRIC : 0, now, 0, NULL, 0};
  evs_engine_input_t in = {f->r, f->so->n_triggers, f->replicas, f->replicas, -1, now};
  assert_int_equal(evs_engine_decide(f->so, &f->cfg, f->st, &in, &f->d), 0);
  if (f->d.write)
    f->replicas = f->d.desired;
  return &f->d;
}

static const char REDIS[] =
    "  minReplicaCount: 0\n  maxReplicaCount: 10\n  cooldownPeriod: 60\n"
    "  triggers:\n  - type: redis\n    metadata: {address: 'r:6379', listName: q, "
    "listLength: '5'}\n";
static const char REDIS_FALLBACK[] =
    "  minReplicaCount: 0\n  maxReplicaCount: 10\n"
    "  fallback: {failureThreshold: 1, replicas: 4}\n"
    "  triggers:\n  - type: redis\n    metadata: {address: 'r:6379', listName: q, "
    "listLength: '5'}\n";

static evs_status_trigger_t TRIG[8];

/* The input as the registry makes it: spec + decision through so_status.h, then the target. */
static evs_status_input_t mkin(const evs_so_t *so, const evs_decision_t *d, const char *check) {
  evs_status_input_t in;
  assert_int_equal(evs_so_status_input(so, d, TRIG, 8, &in), 0);
  in.check_error = check;
  in.gvkr = (evs_status_gvkr_t){"apps", "v1", "Deployment", "deployments"};
  in.original_replicas = 3;
  return in;
}

/* A broken object's input: no spec, no target, the check's message naming the field. */
static evs_status_input_t broken_in(void) {
  evs_status_input_t in = mkin(NULL, NULL,
                               "ScaledObject doesn't have correct triggers specification: "
                               "triggers[0].metadata.listLength: not a number");
  in.gvkr = (evs_status_gvkr_t){0};
  in.original_replicas = -1;
  return in;
}

static json_t *build(const evs_so_t *so, const evs_decision_t *d, const char *check_error) {
  evs_status_input_t in = mkin(so, d, check_error);
  json_t *st = evs_status_build(&in);
  assert_non_null(st);
  return st;
}

/* Every condition the builder writes for the engine's decisions is one KEDA writes. */
static void check_conditions(json_t *fx, json_t *st, int *seen) {
  json_t *conds = json_object_get(st, "conditions");
  assert_int_equal(json_array_size(conds), 4);
  const char *types[] = {"Ready", "Active", "Fallback", "Paused"};
  for (size_t i = 0; i < 4; i++) {
    json_t *c = json_array_get(conds, i);
    assert_string_equal(json_string_value(json_object_get(c, "type")), types[i]);
    if (json_object_get(c, "reason") == NULL)
      continue; /* the engine leaves a condition it does not decide as initialized */
    if (!in_fixture(fx, c)) {
      char *s = json_dumps(c, 0);
      fail_msg("not one of KEDA's conditions: %s", s);
    }
    (*seen)++;
  }
}

static void test_conditions_are_kedas(void **state) {
  (void)state;
  json_t *fx = fixture();
  int seen = 0;
  fx_t f;
  /* active from 0, then inactive with cooldown, then deactivated */
  fx_init(&f, NULL, REDIS);
  json_t *st = build(f.so, decide(&f, T0 + 1000, 50, 0), NULL);
  check_conditions(fx, st, &seen);
  assert_string_equal(json_string_value(json_object_get(
                          json_array_get(json_object_get(st, "conditions"), 1), "reason")),
                      "ScalerActive");
  json_decref(st);
  const char *reasons[] = {"ScalerCooldown", "ScalerNotActive"};
  int64_t when[] = {T0 + 5000, T0 + 120000};
  for (int i = 0; i < 2; i++) {
    st = build(f.so, decide(&f, when[i], 0, 0), NULL);
    check_conditions(fx, st, &seen);
    json_t *active = json_array_get(json_object_get(st, "conditions"), 1);
    assert_string_equal(json_string_value(json_object_get(active, "reason")), reasons[i]);
    json_decref(st);
  }
  /* errors without fallback: Ready False TriggerError */
  st = build(f.so, decide(&f, T0 + 130000, 0, 1), NULL);
  check_conditions(fx, st, &seen);
  json_t *ready = json_array_get(json_object_get(st, "conditions"), 0);
  assert_string_equal(json_string_value(json_object_get(ready, "reason")), "TriggerError");
  json_decref(st);
  fx_free(&f);
  /* fallback */
  fx_init(&f, NULL, REDIS_FALLBACK);
  f.replicas = 2;
  decide(&f, T0 + 1000, 0, 1);
  st = build(f.so, decide(&f, T0 + 2000, 0, 1), NULL);
  check_conditions(fx, st, &seen);
  json_t *fb = json_array_get(json_object_get(st, "conditions"), 2);
  assert_string_equal(json_string_value(json_object_get(fb, "reason")), "FallbackExists");
  /* health is reported with a fallback, keyed by the metric name */
  json_t *h = json_object_get(json_object_get(st, "health"), "s0-redis-q");
  assert_non_null(h);
  assert_string_equal(json_string_value(json_object_get(h, "status")), "Failing");
  assert_int_equal(json_integer_value(json_object_get(h, "numberOfFailures")), 2);
  json_decref(st);
  fx_free(&f);
  /* paused */
  fx_init(&f, "  annotations: {autoscaling.keda.sh/paused: 'true'}\n", REDIS);
  st = build(f.so, decide(&f, T0 + 1000, 5, 0), NULL);
  check_conditions(fx, st, &seen);
  json_t *paused = json_array_get(json_object_get(st, "conditions"), 3);
  assert_string_equal(json_string_value(json_object_get(paused, "status")), "True");
  json_decref(st);
  fx_free(&f);
  assert_true(seen >= 12);
  json_decref(fx);
}

static void test_initialized_and_broken(void **state) {
  (void)state;
  json_t *fx = fixture();
  json_t *st = build(NULL, NULL, NULL);
  json_t *want = json_object_get(json_object_get(fx, "initialized"), "conditions");
  assert_true(json_equal(json_object_get(st, "conditions"), want));
  json_decref(st);
  /* A broken object: Ready=False naming the field, Active Unknown; no spec fields. */
  char msg[256];
  snprintf(
      msg, sizeof msg, "%s: triggers[0].metadata.listLength: not a number",
      json_string_value(json_object_get(json_object_get(fx, "check_failed_messages"), "triggers")));
  st = build(NULL, NULL, msg);
  json_t *c = json_object_get(st, "conditions");
  json_t *ready = json_array_get(c, 0);
  assert_string_equal(json_string_value(json_object_get(ready, "status")), "False");
  assert_string_equal(json_string_value(json_object_get(ready, "reason")),
                      "ScaledObjectCheckFailed");
  assert_non_null(strstr(json_string_value(json_object_get(ready, "message")),
                         "triggers[0].metadata.listLength"));
  assert_true(in_fixture(fx, json_array_get(c, 1))); /* UnknownState */
  assert_true(in_fixture(fx, json_array_get(c, 2))); /* NoFallbackFound */
  assert_null(json_object_get(st, "triggersTypes"));
  json_decref(st);
  json_decref(fx);
}

static void test_fields(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f, "  annotations: {autoscaling.keda.sh/paused-replicas: '2'}\n",
          "  triggers:\n"
          "  - type: redis\n    metadata: {address: 'r:6379', listName: a, listLength: '5'}\n"
          "  - type: redis\n    authenticationRef: {name: creds}\n"
          "    metadata: {address: 'r:6379', listName: b, listLength: '5'}\n"
          "  - type: cron\n    authenticationRef: {name: creds}\n"
          "    metadata: {timezone: UTC, start: '0 * * * *', end: '30 * * * *', "
          "desiredReplicas: '3'}\n");
  const evs_decision_t *d = decide(&f, T0 + 1000, 1, 0);
  evs_status_input_t in = mkin(f.so, d, NULL);
  in.last_active_ms = 1764493710000LL;
  json_t *st = evs_status_build(&in);
  json_t *want = json_pack(
      "{s:s, s:{s:s, s:s, s:s, s:s}, s:i, s:s, s:[s,s,s], s:i, s:s, s:s, s:s}", "scaleTargetKind",
      "apps/v1.Deployment", "scaleTargetGVKR", "group", "apps", "version", "v1", "kind",
      "Deployment", "resource", "deployments", "originalReplicaCount", 3, "lastActiveTime",
      "2025-11-30T09:08:30Z", "externalMetricNames", "s0-redis-a", "s1-redis-b",
      f.so->triggers[2].metric_name, "pausedReplicaCount", 2, "hpaName", "keda-hpa-w",
      "triggersTypes", "redis,cron", "authenticationsTypes", "creds");
  const char *k;
  json_t *v;
  json_object_foreach(want, k, v) {
    if (!json_equal(json_object_get(st, k), v)) {
      char *a = json_dumps(json_object_get(st, k), JSON_ENCODE_ANY);
      fail_msg("%s: got %s", k, a);
    }
  }
  json_t *act = json_object_get(st, "triggersActivity");
  assert_int_equal(json_object_size(act), 3);
  assert_non_null(json_object_get(json_object_get(act, "s0-redis-a"), "isActive"));
  assert_null(json_object_get(st, "health")); /* no fallback configured */
  /* core group: "/v1.Kind" as GVKString makes it */
  in.gvkr = (evs_status_gvkr_t){"", "v1", "ReplicationController", "replicationcontrollers"};
  json_decref(st);
  st = evs_status_build(&in);
  assert_string_equal(json_string_value(json_object_get(st, "scaleTargetKind")),
                      "/v1.ReplicationController");
  json_decref(st);
  json_decref(want);
  fx_free(&f);
}

static void test_last_active_rule(void **state) {
  (void)state;
  /* first write, transitions: the decision's; steady: the written one for a minute */
  assert_int_equal(evs_status_last_active(0, 0, 1, 5000), 5000);
  assert_int_equal(evs_status_last_active(1000, 0, 1, 5000), 5000);
  assert_int_equal(evs_status_last_active(1000, 1, 0, 5000), 5000);
  assert_int_equal(evs_status_last_active(1000, 1, 1, 5000), 1000);
  assert_int_equal(evs_status_last_active(1000, 1, 1, 60999), 1000);
  assert_int_equal(evs_status_last_active(1000, 1, 1, 61000), 61000);
}

/* ---- against the API server ---- */

typedef struct {
  uv_loop_t loop;
  evs_kube_t *kube;
} env_t;

static void env_init(env_t *e) {
  uv_loop_init(&e->loop);
  e->kube = kw_kube(&e->loop);
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

static void create_so(env_t *e, const char *name) {
  char path[256], body[1024];
  snprintf(path, sizeof path, "/apis/keda.sh/v1alpha1/namespaces/%s/scaledobjects", NS);
  snprintf(body, sizeof body,
           "{\"apiVersion\":\"keda.sh/v1alpha1\",\"kind\":\"ScaledObject\",\"metadata\":{"
           "\"name\":\"%s\"},\"spec\":{\"scaleTargetRef\":{\"name\":\"w\"},\"triggers\":[{"
           "\"type\":\"redis\",\"metadata\":{\"address\":\"r:6379\",\"listName\":\"q\","
           "\"listLength\":\"5\"}}]}}",
           name);
  int st = kw_req(&e->loop, e->kube, "POST", path, EVS_KUBE_JSON, body, NULL);
  if (st != 201)
    fail_msg("create ScaledObject %s: %d", name, st);
}

static int setup(void **state) {
  (void)state;
  if (kw_find_controlplane() != 0) {
    fprintf(stderr, "test_status: no Kubernetes control plane; its tests are skipped\n");
    return 0;
  }
  snprintf(NS, sizeof NS, "evs-st-%d-%ld", (int)getpid(), (long)time(NULL) % 100000);
  assert_int_equal(kw_namespace(NS, 1), 201);
  return 0;
}

/* test_failed_patch_retried's; global: the group teardown stops it when a test fails midway. */
static kw_proxy_t RPROXY;

static int teardown(void **state) {
  (void)state;
  if (!KW.found)
    return 0;
  kw_proxy_stop(&RPROXY);
  kw_namespace(NS, 0);
  return 0;
}

typedef struct {
  int n, err, status;
} pres_t;

static void on_patched(evs_status_patcher_t *p, int err, int status, void *arg) {
  (void)p;
  pres_t *r = arg;
  r->n++;
  r->err = err;
  r->status = status;
}

static int update(env_t *e, evs_status_patcher_t *p, const char *name, evs_status_input_t *in,
                  int64_t now) {
  pres_t r = {0};
  int rc = evs_status_patcher_update(p, NS, name, in, now, on_patched, &r);
  assert_true(rc >= 0);
  if (rc == 1) {
    assert_true(evs_test_run_until(&e->loop, &r.n, 30000));
    assert_int_equal(r.err, 0);
    assert_int_equal(r.status, 200);
  }
  return rc;
}

static json_t *kubectl_status(const char *name) {
  char args[256];
  snprintf(args, sizeof args, "-n %s get scaledobject %s -o json", NS, name);
  char *out = kw_kubectl(args);
  assert_non_null(out);
  json_t *j = json_loads(out, 0, NULL);
  free(out);
  assert_non_null(j);
  json_t *st = json_incref(json_object_get(j, "status"));
  json_decref(j);
  return st;
}

static const char *cond_field(json_t *st, int i, const char *k) {
  return json_string_value(
      json_object_get(json_array_get(json_object_get(st, "conditions"), i), k));
}

static void test_patch_and_read_back(void **state) {
  (void)state;
  SKIP_IF_NONE();
  env_t e;
  env_init(&e);
  create_so(&e, "so1");
  evs_status_patcher_t *p;
  assert_int_equal(evs_status_patcher_new(e.kube, NULL, &p), 0);
  fx_t f;
  fx_init(&f, NULL, REDIS);
  int64_t now = T0 + 1000;
  evs_status_input_t in = mkin(f.so, decide(&f, now, 50, 0), NULL);
  in.original_replicas = 0;
  char path[256];
  snprintf(path, sizeof path, "/apis/keda.sh/v1alpha1/namespaces/%s/scaledobjects/so1/status", NS);
  long mark = kw_audit_mark();
  assert_int_equal(update(&e, p, "so1", &in, now), 1);
  json_t *st = kubectl_status("so1");
  assert_string_equal(cond_field(st, 0, "reason"), "ScaledObjectReady");
  assert_string_equal(cond_field(st, 1, "status"), "True");
  assert_string_equal(cond_field(st, 1, "reason"), "ScalerActive");
  assert_string_equal(json_string_value(json_object_get(st, "scaleTargetKind")),
                      "apps/v1.Deployment");
  assert_string_equal(json_string_value(json_object_get(st, "hpaName")), "keda-hpa-w");
  assert_int_equal(json_integer_value(json_object_get(st, "originalReplicaCount")), 0);
  assert_non_null(json_object_get(st, "lastActiveTime"));
  json_decref(st);
  /* the same decision again, and active polls within a minute: nothing sent */
  for (int i = 1; i <= 5; i++) {
    now += 10000;
    in = mkin(f.so, decide(&f, now, 50, 0), NULL);
    in.original_replicas = 0;
    assert_int_equal(update(&e, p, "so1", &in, now), 0);
  }
  kw_audit_settle();
  assert_int_equal(kw_audit_count(mark, "patch", path), 1);
  /* a minute after the written lastActiveTime: one patch */
  now += 15000;
  in = mkin(f.so, decide(&f, now, 50, 0), NULL);
  in.original_replicas = 0;
  assert_int_equal(update(&e, p, "so1", &in, now), 1);
  /* inactive (cooldown): a transition, one patch; then nothing again */
  now += 1000;
  in = mkin(f.so, decide(&f, now, 0, 0), NULL);
  in.original_replicas = 0;
  assert_int_equal(update(&e, p, "so1", &in, now), 1);
  assert_int_equal(update(&e, p, "so1", &in, now), 0);
  kw_audit_settle();
  assert_int_equal(kw_audit_count(mark, "patch", path), 3);
  st = kubectl_status("so1");
  assert_string_equal(cond_field(st, 1, "reason"), "ScalerCooldown");
  json_decref(st);
  /* the kubectl columns KEDA's CRD defines read our conditions */
  char args[256];
  snprintf(args, sizeof args, "-n %s get so so1 --no-headers", NS);
  char *out = kw_kubectl(args);
  assert_non_null(out);
  assert_non_null(strstr(out, "True")); /* READY */
  free(out);
  assert_int_equal(evs_status_patcher_sent(p), 3);
  evs_status_patcher_close(p);
  fx_free(&f);
  env_close(&e);
}

/* A broken object gets Ready=False naming the field; its neighbour is unaffected; a field that
 * went away (pausedReplicaCount) is removed on the server. */
static void test_broken_isolated(void **state) {
  (void)state;
  SKIP_IF_NONE();
  env_t e;
  env_init(&e);
  create_so(&e, "good");
  create_so(&e, "bad");
  evs_status_patcher_t *p;
  assert_int_equal(evs_status_patcher_new(e.kube, NULL, &p), 0);
  fx_t f;
  fx_init(&f, "  annotations: {autoscaling.keda.sh/paused-replicas: '2'}\n", REDIS);
  evs_status_input_t good = mkin(f.so, decide(&f, T0 + 1000, 50, 0), NULL);
  good.original_replicas = 1;
  evs_status_input_t bad = broken_in();
  assert_int_equal(update(&e, p, "bad", &bad, T0 + 1000), 1);
  assert_int_equal(update(&e, p, "good", &good, T0 + 1000), 1);
  json_t *b = kubectl_status("bad"), *g = kubectl_status("good");
  assert_string_equal(cond_field(b, 0, "status"), "False");
  assert_string_equal(cond_field(b, 0, "reason"), "ScaledObjectCheckFailed");
  assert_non_null(strstr(cond_field(b, 0, "message"), "triggers[0].metadata.listLength"));
  assert_string_equal(cond_field(g, 0, "status"), "True");
  assert_int_equal(json_integer_value(json_object_get(g, "pausedReplicaCount")), 2);
  json_decref(b);
  json_decref(g);
  /* the annotation goes: the same object without paused-replicas */
  fx_t f2;
  fx_init(&f2, NULL, REDIS);
  good = mkin(f2.so, decide(&f2, T0 + 2000, 50, 0), NULL);
  good.original_replicas = 1;
  assert_int_equal(update(&e, p, "good", &good, T0 + 2000), 1);
  g = kubectl_status("good");
  assert_null(json_object_get(g, "pausedReplicaCount"));
  json_decref(g);
  evs_status_patcher_close(p);
  fx_free(&f);
  fx_free(&f2);
  env_close(&e);
}

/* The patcher keeps only the keys of the status it wrote (status.c: skeleton_of), not the status
 * itself: a trigger removed from the object must still take its nested entry (triggersActivity)
 * off the server, and its sibling's must stay. */
static const char REDIS_TWO[] =
    "  minReplicaCount: 0\n  maxReplicaCount: 10\n"
    "  triggers:\n"
    "  - type: redis\n    metadata: {address: 'r:6379', listName: q, listLength: '5'}\n"
    "  - type: redis\n    metadata: {address: 'r:6379', listName: q2, listLength: '5'}\n";

static void test_nested_key_removed(void **state) {
  (void)state;
  SKIP_IF_NONE();
  env_t e;
  env_init(&e);
  create_so(&e, "nested");
  evs_status_patcher_t *p;
  assert_int_equal(evs_status_patcher_new(e.kube, NULL, &p), 0);
  fx_t f2, f1;
  fx_init(&f2, NULL, REDIS_TWO);
  fx_init(&f1, NULL, REDIS);
  evs_status_input_t in = mkin(f2.so, decide(&f2, T0 + 1000, 50, 0), NULL);
  assert_int_equal(update(&e, p, "nested", &in, T0 + 1000), 1);
  json_t *st = kubectl_status("nested");
  assert_non_null(json_object_get(json_object_get(st, "triggersActivity"), "s0-redis-q"));
  assert_non_null(json_object_get(json_object_get(st, "triggersActivity"), "s1-redis-q2"));
  json_decref(st);
  in = mkin(f1.so, decide(&f1, T0 + 2000, 50, 0), NULL);
  assert_int_equal(update(&e, p, "nested", &in, T0 + 2000), 1);
  st = kubectl_status("nested");
  json_t *act = json_object_get(st, "triggersActivity");
  assert_non_null(json_object_get(act, "s0-redis-q"));
  assert_null(json_object_get(act, "s1-redis-q2"));
  assert_int_equal(json_array_size(json_object_get(st, "externalMetricNames")), 1);
  json_decref(st);
  evs_status_patcher_close(p);
  fx_free(&f1);
  fx_free(&f2);
  env_close(&e);
}

/* Two objects with the same key shape (shared by the patcher, status.c: shape_ref), each with
 * its own metric names: one's trigger is renamed and its fallback goes, so its old
 * triggersActivity entry and its health must leave the server, while the other keeps both. */
static const char REDIS_Q3[] =
    "  minReplicaCount: 0\n  maxReplicaCount: 10\n"
    "  triggers:\n  - type: redis\n    metadata: {address: 'r:6379', listName: q3, "
    "listLength: '5'}\n";

static void test_renamed_metric_removed(void **state) {
  (void)state;
  SKIP_IF_NONE();
  env_t e;
  env_init(&e);
  create_so(&e, "ren1");
  create_so(&e, "ren2");
  evs_status_patcher_t *p;
  assert_int_equal(evs_status_patcher_new(e.kube, NULL, &p), 0);
  fx_t fa, fb;
  fx_init(&fa, NULL, REDIS_FALLBACK);
  fa.replicas = 2;
  decide(&fa, T0 + 1000, 0, 1);
  evs_status_input_t in = mkin(fa.so, decide(&fa, T0 + 2000, 0, 1), NULL);
  assert_true(in.health_reported);
  assert_int_equal(update(&e, p, "ren1", &in, T0 + 2000), 1);
  assert_int_equal(update(&e, p, "ren2", &in, T0 + 2000), 1);
  fx_init(&fb, NULL, REDIS_Q3);
  in = mkin(fb.so, decide(&fb, T0 + 3000, 50, 0), NULL);
  assert_int_equal(update(&e, p, "ren1", &in, T0 + 3000), 1);
  json_t *st = kubectl_status("ren1");
  json_t *act = json_object_get(st, "triggersActivity");
  assert_int_equal(json_object_size(act), 1);
  assert_non_null(json_object_get(act, "s0-redis-q3"));
  assert_null(json_object_get(st, "health"));
  assert_string_equal(
      json_string_value(json_array_get(json_object_get(st, "externalMetricNames"), 0)),
      "s0-redis-q3");
  json_decref(st);
  st = kubectl_status("ren2");
  assert_non_null(json_object_get(json_object_get(st, "triggersActivity"), "s0-redis-q"));
  assert_non_null(json_object_get(json_object_get(st, "health"), "s0-redis-q"));
  json_decref(st);
  /* and back: q3's entry goes in turn */
  in = mkin(fa.so, decide(&fa, T0 + 4000, 0, 1), NULL);
  assert_int_equal(update(&e, p, "ren1", &in, T0 + 4000), 1);
  st = kubectl_status("ren1");
  act = json_object_get(st, "triggersActivity");
  assert_int_equal(json_object_size(act), 1);
  assert_non_null(json_object_get(act, "s0-redis-q"));
  assert_non_null(json_object_get(json_object_get(st, "health"), "s0-redis-q"));
  json_decref(st);
  evs_status_patcher_close(p);
  fx_free(&fa);
  fx_free(&fb);
  env_close(&e);
}

/* Thousands of objects in one patcher: its table grows; entries stay reachable and forgettable
 * (dry run: nothing is sent). */
static void test_many_entries(void **state) {
  (void)state;
  SKIP_IF_NONE();
  env_t e;
  env_init(&e);
  evs_status_patcher_t *p;
  evs_status_patcher_options_t o = {.dry_run = 1};
  assert_int_equal(evs_status_patcher_new(e.kube, &o, &p), 0);
  fx_t f;
  fx_init(&f, NULL, REDIS);
  evs_status_input_t in = mkin(f.so, decide(&f, T0 + 1000, 50, 0), NULL);
  char name[32];
  for (int i = 0; i < 3000; i++) {
    snprintf(name, sizeof name, "so-%d", i);
    assert_int_equal(evs_status_patcher_update(p, NS, name, &in, T0 + 1000, NULL, NULL), 0);
  }
  for (int i = 0; i < 3000; i += 2) {
    snprintf(name, sizeof name, "so-%d", i);
    evs_status_patcher_forget(p, NS, name);
  }
  for (int i = 0; i < 3000; i++) {
    snprintf(name, sizeof name, "so-%d", i);
    assert_int_equal(evs_status_patcher_update(p, NS, name, &in, T0 + 1000, NULL, NULL), 0);
  }
  assert_int_equal(evs_status_patcher_sent(p), 0);
  evs_status_patcher_close(p);
  fx_free(&f);
  env_close(&e);
}

static void test_dry_run(void **state) {
  (void)state;
  SKIP_IF_NONE();
  env_t e;
  env_init(&e);
  create_so(&e, "dry");
  evs_status_patcher_t *p;
  evs_status_patcher_options_t o = {.dry_run = 1};
  assert_int_equal(evs_status_patcher_new(e.kube, &o, &p), 0);
  fx_t f;
  fx_init(&f, NULL, REDIS);
  evs_status_input_t in = mkin(f.so, decide(&f, T0 + 1000, 50, 0), NULL);
  long mark = kw_audit_mark();
  assert_int_equal(update(&e, p, "dry", &in, T0 + 1000), 0);
  kw_audit_settle();
  char path[256];
  snprintf(path, sizeof path, "/apis/keda.sh/v1alpha1/namespaces/%s/scaledobjects/dry", NS);
  assert_int_equal(kw_audit_count(mark, "patch", path), 0);
  assert_int_equal(evs_status_patcher_sent(p), 0);
  evs_status_patcher_close(p);
  fx_free(&f);
  env_close(&e);
}

/* ---- the bound: at most K patches out, the others wait without a body, pulled on their turn ----
 */

#define BQ_MAX 256

typedef struct {
  evs_status_patcher_t *p;
  unsigned k, max_seen;
  int n;
  char names[BQ_MAX][32];
  evs_status_input_t in[BQ_MAX]; /* each object's current status: what the provider answers */
  int pulls, ended, canceled, expect, done;
  char pulled[BQ_MAX]; /* per object: times its turn came */
} bq_t;

static bq_t BQ;

/* Patches out as the test sees them: sent (the patcher's count) minus those whose callback ran
 * with the server's answer. */
static void bq_sample(void) {
  unsigned out = (unsigned)(evs_status_patcher_sent(BQ.p) - (uint64_t)BQ.ended);
  if (out > BQ.max_seen)
    BQ.max_seen = out;
  assert_true(evs_status_patcher_in_flight(BQ.p) <= BQ.k);
}

static int bq_find(const char *name) {
  for (int i = 0; i < BQ.n; i++)
    if (strcmp(BQ.names[i], name) == 0)
      return i;
  return -1;
}

static int bq_add(const char *name, int32_t original) {
  assert_true(BQ.n < BQ_MAX);
  snprintf(BQ.names[BQ.n], sizeof BQ.names[0], "%s", name);
  BQ.in[BQ.n] = BQ.in[0];
  BQ.in[BQ.n].original_replicas = original;
  return BQ.n++;
}

static void bq_provide(evs_status_patcher_t *p, const char *ns, const char *name, void *arg) {
  assert_ptr_equal(arg, &BQ);
  assert_string_equal(ns, NS);
  int i = bq_find(name);
  assert_true(i >= 0);
  BQ.pulls++;
  BQ.pulled[i]++;
  assert_int_equal(evs_status_patcher_update(p, ns, name, &BQ.in[i], T0 + 1000, NULL, NULL), 1);
  bq_sample();
}

static void bq_done(evs_status_patcher_t *p, int err, int status, void *arg) {
  (void)p;
  (void)arg;
  if (err == EVS_ECANCELED) {
    BQ.canceled++;
  } else {
    assert_int_equal(err, 0);
    assert_int_equal(status, 200);
    BQ.ended++;
  }
  bq_sample();
  if (BQ.ended + BQ.canceled == BQ.expect)
    BQ.done = 1;
}

/* A patcher bounded to k with the test as its provider; BQ.in[0] is the template input. */
static void bq_init(env_t *e, fx_t *f, unsigned k) {
  memset(&BQ, 0, sizeof BQ);
  BQ.k = k;
  evs_status_patcher_options_t o = {.max_in_flight = k};
  assert_int_equal(evs_status_patcher_new(e->kube, &o, &BQ.p), 0);
  evs_status_patcher_set_provider(BQ.p, bq_provide, &BQ);
  fx_init(f, NULL, REDIS);
  BQ.in[0] = mkin(f->so, decide(f, T0 + 1000, 50, 0), NULL);
}

static int bq_update(int i) {
  int rc = evs_status_patcher_update(BQ.p, NS, BQ.names[i], &BQ.in[i], T0 + 1000, bq_done, NULL);
  bq_sample();
  return rc;
}

static char *so_status_path(char *buf, size_t cap, const char *name) {
  snprintf(buf, cap, "/apis/keda.sh/v1alpha1/namespaces/%s/scaledobjects/%s/status", NS, name);
  return buf;
}

/* 200 objects updated at once with a bound of 4: never more than 4 patches out (and 4 out while
 * others wait), each object written once, every status on the server. */
static void test_bounded_in_flight(void **state) {
  (void)state;
  SKIP_IF_NONE();
  enum { N = 200, K = 4 };
  env_t e;
  env_init(&e);
  fx_t f;
  bq_init(&e, &f, K);
  char name[32];
  for (int i = 0; i < N; i++) {
    snprintf(name, sizeof name, "q-%d", i);
    create_so(&e, name);
    bq_add(name, 100 + i);
  }
  BQ.expect = N;
  for (int i = 0; i < N; i++)
    assert_int_equal(bq_update(i), 1);
  assert_int_equal(evs_status_patcher_sent(BQ.p), K);
  assert_true(evs_test_run_until(&e.loop, &BQ.done, 120000));
  assert_int_equal(BQ.ended, N);
  assert_int_equal(BQ.canceled, 0);
  assert_int_equal(BQ.max_seen, K);
  assert_int_equal(BQ.pulls, N - K);
  assert_int_equal(evs_status_patcher_sent(BQ.p), N);
  assert_int_equal(evs_status_patcher_in_flight(BQ.p), 0);
  char args[128];
  snprintf(args, sizeof args, "-n %s get scaledobjects -o json", NS);
  char *out = kw_kubectl(args);
  assert_non_null(out);
  json_t *list = json_loads(out, 0, NULL);
  free(out);
  assert_non_null(list);
  int seen = 0;
  size_t j;
  json_t *item;
  json_array_foreach(json_object_get(list, "items"), j, item) {
    const char *n = json_string_value(json_object_get(json_object_get(item, "metadata"), "name"));
    int i = bq_find(n);
    if (i < 0)
      continue;
    json_t *st = json_object_get(item, "status");
    assert_int_equal(json_integer_value(json_object_get(st, "originalReplicaCount")), 100 + i);
    assert_string_equal(cond_field(st, 0, "reason"), "ScaledObjectReady");
    seen++;
  }
  json_decref(list);
  assert_int_equal(seen, N);
  evs_status_patcher_close(BQ.p);
  fx_free(&f);
  env_close(&e);
}

/* An object updated three times while it waits is written once, with its last status: the
 * first two updates are replaced (EVS_ECANCELED), the body is built on its turn. */
static void test_waiting_written_once_latest(void **state) {
  (void)state;
  SKIP_IF_NONE();
  env_t e;
  env_init(&e);
  fx_t f;
  bq_init(&e, &f, 1);
  create_so(&e, "hold");
  create_so(&e, "three");
  int hold = bq_add("hold", 1), three = bq_add("three", 11);
  char path[256];
  long mark = kw_audit_mark();
  BQ.expect = 4;
  assert_int_equal(bq_update(hold), 1); /* takes the only slot */
  for (int v = 11; v <= 13; v++) {
    BQ.in[three].original_replicas = v;
    assert_int_equal(bq_update(three), 1);
  }
  assert_int_equal(BQ.canceled, 2);
  assert_int_equal(evs_status_patcher_sent(BQ.p), 1);
  assert_true(evs_test_run_until(&e.loop, &BQ.done, 60000));
  assert_int_equal(BQ.ended, 2);
  assert_int_equal(BQ.pulled[three], 1);
  kw_audit_settle();
  assert_int_equal(kw_audit_count(mark, "patch", so_status_path(path, sizeof path, "three")), 1);
  json_t *st = kubectl_status("three");
  assert_int_equal(json_integer_value(json_object_get(st, "originalReplicaCount")), 13);
  json_decref(st);
  /* Its own patch out, an update waits for it (no second patch of one object at once), then
   * goes out with the status of its turn. */
  BQ.done = 0;
  BQ.expect = BQ.ended + BQ.canceled + 2;
  BQ.in[three].original_replicas = 14;
  assert_int_equal(bq_update(three), 1);
  BQ.in[three].original_replicas = 15;
  assert_int_equal(bq_update(three), 1);
  assert_int_equal(evs_status_patcher_in_flight(BQ.p), 1);
  BQ.in[three].original_replicas = 16; /* changed again before its turn: the turn takes 16 */
  assert_true(evs_test_run_until(&e.loop, &BQ.done, 60000));
  assert_int_equal(BQ.pulled[three], 2);
  kw_audit_settle();
  assert_int_equal(kw_audit_count(mark, "patch", path), 3);
  st = kubectl_status("three");
  assert_int_equal(json_integer_value(json_object_get(st, "originalReplicaCount")), 16);
  json_decref(st);
  evs_status_patcher_close(BQ.p);
  fx_free(&f);
  env_close(&e);
}

/* A forgotten object waiting in the queue is not written, and its turn is not asked for. */
static void test_forgotten_waiting_not_written(void **state) {
  (void)state;
  SKIP_IF_NONE();
  env_t e;
  env_init(&e);
  fx_t f;
  bq_init(&e, &f, 1);
  create_so(&e, "hold2");
  create_so(&e, "gone");
  int hold = bq_add("hold2", 1), gone = bq_add("gone", 2), after = bq_add("after", 3);
  create_so(&e, "after");
  char path[256];
  long mark = kw_audit_mark();
  BQ.expect = 3;
  assert_int_equal(bq_update(hold), 1);
  assert_int_equal(bq_update(gone), 1);
  assert_int_equal(bq_update(after), 1);
  evs_status_patcher_forget(BQ.p, NS, "gone");
  assert_int_equal(BQ.canceled, 1); /* gone's callback, at once */
  assert_true(evs_test_run_until(&e.loop, &BQ.done, 60000));
  assert_int_equal(BQ.ended, 2);
  assert_int_equal(BQ.pulled[gone], 0);
  assert_int_equal(BQ.pulled[after], 1);
  assert_int_equal(evs_status_patcher_sent(BQ.p), 2);
  kw_audit_settle();
  assert_int_equal(kw_audit_count(mark, "patch", so_status_path(path, sizeof path, "gone")), 0);
  json_t *st = kubectl_status("gone");
  assert_null(st);
  st = kubectl_status("after");
  assert_int_equal(json_integer_value(json_object_get(st, "originalReplicaCount")), 3);
  json_decref(st);
  evs_status_patcher_close(BQ.p);
  fx_free(&f);
  env_close(&e);
}

/* ---- a failed patch is written again (test/faultproxy.py answers 500) ---- */

typedef struct {
  const evs_status_input_t *in;
  int pulls;
} rprov_t;

static void rprov(evs_status_patcher_t *p, const char *ns, const char *name, void *arg) {
  rprov_t *r = arg;
  r->pulls++;
  (void)evs_status_patcher_update(p, ns, name, r->in, T0 + 1000, NULL, NULL);
}

/* A broken object's status is written once and changes no more, so nothing would write it again
 * after a 500: the patcher's retry timer does, through the provider, with a delay that doubles
 * (100, 200 ms here) while it fails, and nothing more once it is written. A 4xx is not retried
 * (the same body would be refused again): the real server's 404 here. */
static void test_failed_patch_retried(void **state) {
  (void)state;
  SKIP_IF_NONE();
  env_t e;
  env_init(&e);
  create_so(&e, "retried");
  create_so(&e, "gone-later");
  assert_int_equal(kw_proxy_start(&RPROXY), 0);
  uv_loop_t *loop = &e.loop;
  evs_kube_options_t ko = {.kubeconfig = RPROXY.kubeconfig, .request_timeout_ms = 30000};
  evs_kube_t *k = NULL;
  assert_int_equal(evs_kube_new(loop, &ko, &k), 0);
  int opened = 0;
  assert_int_equal(evs_kube_open(k, kw__opened, &opened), 0);
  assert_true(evs_test_run_until(loop, &opened, 60000));
  assert_int_equal(opened, 1);
  evs_status_patcher_options_t o = {.loop = loop, .retry_initial_ms = 100, .retry_max_ms = 400};
  evs_status_patcher_t *p;
  assert_int_equal(evs_status_patcher_new(k, &o, &p), 0);
  evs_status_input_t bad = broken_in();
  rprov_t rp = {.in = &bad};
  evs_status_patcher_set_provider(p, rprov, &rp);
  char path[256], fj[512];
  so_status_path(path, sizeof path, "retried");
  snprintf(fj, sizeof fj, "{\"kind\":\"status\",\"status\":500,\"path_prefix\":\"%s\",\"count\":2}",
           path);
  assert_int_equal(kw_proxy_fault(&RPROXY, NULL), 0);
  assert_int_equal(kw_proxy_fault(&RPROXY, fj), 0);
  pres_t r = {0};
  assert_int_equal(evs_status_patcher_update(p, NS, "retried", &bad, T0 + 1000, on_patched, &r), 1);
  assert_true(evs_test_run_until(loop, &r.n, 30000));
  assert_int_equal(r.status, 500);
  /* No update from here on: the timer writes it, after a second 500. */
  int n = 0;
  for (int i = 0; i < 200 && (n = kw_proxy_count(&RPROXY, path)) < 3; i++) {
    int never = 0;
    evs_test_run_until(loop, &never, 100);
  }
  assert_int_equal(n, 3);
  int never = 0;
  evs_test_run_until(loop, &never, 300); /* its answer */
  json_t *st = kubectl_status("retried");
  assert_non_null(st);
  assert_string_equal(cond_field(st, 0, "status"), "False");
  assert_string_equal(cond_field(st, 0, "reason"), "ScaledObjectCheckFailed");
  json_decref(st);
  assert_int_equal(evs_status_patcher_retries(p), 2);
  assert_int_equal(rp.pulls, 2);
  /* Written: nothing more goes, and the same status again is unchanged. */
  evs_test_run_until(loop, &never, 1000);
  assert_int_equal(kw_proxy_count(&RPROXY, path), 3);
  assert_int_equal(evs_status_patcher_update(p, NS, "retried", &bad, T0 + 1000, NULL, NULL), 0);
  /* A 4xx is not retried: the real server's 404 for an object that does not exist. */
  so_status_path(path, sizeof path, "never-created");
  memset(&r, 0, sizeof r);
  assert_int_equal(
      evs_status_patcher_update(p, NS, "never-created", &bad, T0 + 1000, on_patched, &r), 1);
  assert_true(evs_test_run_until(loop, &r.n, 30000));
  assert_int_equal(r.status, 404);
  evs_test_run_until(loop, &never, 1000); /* past two retry delays */
  assert_int_equal(kw_proxy_count(&RPROXY, path), 1);
  assert_int_equal(evs_status_patcher_retries(p), 2);
  evs_status_patcher_forget(p, NS, "never-created");
  /* An object forgotten while its retry waits is not written (nor pulled) again. */
  so_status_path(path, sizeof path, "gone-later");
  snprintf(fj, sizeof fj,
           "{\"kind\":\"status\",\"status\":503,\"path_prefix\":\"%s\",\"count\":-1}", path);
  assert_int_equal(kw_proxy_fault(&RPROXY, NULL), 0);
  assert_int_equal(kw_proxy_fault(&RPROXY, fj), 0);
  memset(&r, 0, sizeof r);
  assert_int_equal(evs_status_patcher_update(p, NS, "gone-later", &bad, T0 + 1000, on_patched, &r),
                   1);
  assert_true(evs_test_run_until(loop, &r.n, 30000));
  assert_int_equal(r.status, 503);
  evs_status_patcher_forget(p, NS, "gone-later");
  evs_test_run_until(loop, &never, 1500);
  assert_int_equal(kw_proxy_count(&RPROXY, path), 1);
  assert_int_equal(rp.pulls, 2);
  /* Closing with a retry waiting frees it (ASan). */
  assert_int_equal(kw_proxy_fault(&RPROXY, NULL), 0);
  assert_int_equal(kw_proxy_fault(&RPROXY, fj), 0);
  memset(&r, 0, sizeof r);
  assert_int_equal(evs_status_patcher_update(p, NS, "gone-later", &bad, T0 + 1000, on_patched, &r),
                   1);
  assert_true(evs_test_run_until(loop, &r.n, 30000));
  evs_status_patcher_close(p);
  assert_int_equal(kw_kube_close(loop, k), 0);
  kw_proxy_stop(&RPROXY);
  env_close(&e);
}

/* The members of o in the opposite order (a new object). */
static json_t *reversed(json_t *o) {
  const char *keys[64];
  size_t n = 0;
  const char *k;
  json_t *v;
  json_object_foreach(o, k, v) {
    assert_true(n < 64);
    keys[n++] = k;
  }
  json_t *r = json_object();
  while (n-- > 0)
    json_object_set(r, keys[n], json_object_get(o, keys[n]));
  return r;
}

/* A restarted process (a new patcher) that observes the status the server holds writes nothing
 * while its own status is the same (in whatever order the server lists the members, its
 * lastActiveTime kept within the minute); a key the server has and the new status lacks is
 * removed by the first write; once it has written, an observation (a late echo) counts no more
 * until it follows another leader. */
static void test_observed_status_not_written(void **state) {
  (void)state;
  SKIP_IF_NONE();
  env_t e;
  env_init(&e);
  create_so(&e, "obs");
  char path[256];
  snprintf(path, sizeof path, "/apis/keda.sh/v1alpha1/namespaces/%s/scaledobjects/obs/status", NS);
  evs_status_patcher_t *p1, *p2, *p3, *p4;
  assert_int_equal(evs_status_patcher_new(e.kube, NULL, &p1), 0);
  assert_int_equal(evs_status_patcher_new(e.kube, NULL, &p2), 0);
  assert_int_equal(evs_status_patcher_new(e.kube, NULL, &p3), 0);
  assert_int_equal(evs_status_patcher_new(e.kube, NULL, &p4), 0);
  fx_t f;
  fx_init(&f, NULL, REDIS);
  int64_t now = T0 + 1000;
  evs_status_input_t in = mkin(f.so, decide(&f, now, 50, 0), NULL);
  assert_int_equal(update(&e, p1, "obs", &in, now), 1);
  json_t *st = kubectl_status("obs");
  assert_non_null(json_object_get(st, "lastActiveTime"));
  long mark = kw_audit_mark();
  /* the next process: the same decision 10 s later (active, lastActiveTime not due) */
  now += 10000;
  in = mkin(f.so, decide(&f, now, 50, 0), NULL);
  assert_int_equal(evs_status_patcher_observe(p2, NS, "obs", st), 1);
  assert_int_equal(update(&e, p2, "obs", &in, now), 0);
  json_t *rev = reversed(st);
  assert_int_equal(evs_status_patcher_observe(p3, NS, "obs", rev), 1);
  assert_int_equal(update(&e, p3, "obs", &in, now), 0);
  json_decref(rev);
  /* nothing known about another object: its first update writes */
  assert_int_equal(evs_status_patcher_observe(p3, NS, "other", NULL), 0);
  /* a field the status no longer has (written by another writer): removed by the first write */
  assert_int_equal(kw_req(&e.loop, e.kube, "PATCH", path, EVS_KUBE_MERGE_PATCH,
                          "{\"status\":{\"pausedReplicaCount\":5}}", NULL),
                   200);
  json_t *st2 = kubectl_status("obs");
  assert_non_null(json_object_get(st2, "pausedReplicaCount"));
  assert_int_equal(evs_status_patcher_observe(p4, NS, "obs", st2), 1);
  assert_int_equal(update(&e, p4, "obs", &in, now), 1);
  json_t *st3 = kubectl_status("obs");
  assert_null(json_object_get(st3, "pausedReplicaCount"));
  assert_true(json_equal(json_object_get(st3, "conditions"), json_object_get(st, "conditions")));
  json_decref(st3);
  /* written by p4: the old status seen again is an echo, not news */
  assert_int_equal(evs_status_patcher_observe(p4, NS, "obs", st2), 0);
  assert_int_equal(update(&e, p4, "obs", &in, now), 0);
  /* p4 follows another leader, which wrote st2: the next update writes over it */
  evs_status_patcher_follow(p4);
  assert_int_equal(evs_status_patcher_observe(p4, NS, "obs", st2), 1);
  assert_int_equal(update(&e, p4, "obs", &in, now), 1);
  kw_audit_settle();
  /* the test's own PATCH and p4's two */
  assert_int_equal(kw_audit_count(mark, "patch", path), 3);
  assert_int_equal(evs_status_patcher_sent(p2), 0);
  assert_int_equal(evs_status_patcher_sent(p3), 0);
  assert_int_equal(evs_status_patcher_sent(p4), 2);
  json_decref(st);
  json_decref(st2);
  evs_status_patcher_close(p1);
  evs_status_patcher_close(p2);
  evs_status_patcher_close(p3);
  evs_status_patcher_close(p4);
  fx_free(&f);
  env_close(&e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_conditions_are_kedas),
      cmocka_unit_test(test_initialized_and_broken),
      cmocka_unit_test(test_fields),
      cmocka_unit_test(test_last_active_rule),
      cmocka_unit_test(test_patch_and_read_back),
      cmocka_unit_test(test_broken_isolated),
      cmocka_unit_test(test_nested_key_removed),
      cmocka_unit_test(test_renamed_metric_removed),
      cmocka_unit_test(test_many_entries),
      cmocka_unit_test(test_dry_run),
      cmocka_unit_test(test_bounded_in_flight),
      cmocka_unit_test(test_waiting_written_once_latest),
      cmocka_unit_test(test_forgotten_waiting_not_written),
      cmocka_unit_test(test_failed_patch_retried),
      cmocka_unit_test(test_observed_status_not_written),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
