/* Leader election against the real API server with short durations (lease 2 s, renew deadline
 * 1.5 s, retry 0.3 s): two electors on one loop -> exactly one leader; release -> the other
 * leads within a second; renewals failing -> the leader steps down and the other takes over
 * once the lease has expired; a stalled leader (timer stopped) -> the other takes over and the
 * stalled one is no longer leader when it wakes; never two leaders (checked in every
 * on_started_leading: the other one's evs_lease_is_leader is 0); observe-only never writes
 * (audit log). Semantics: kubernetes/client-go 32ce75a7d6bc6960fd048d3d1e3b34185418d8c8
 * tools/leaderelection/leaderelection.go. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "evscale/lease.h"
#include "kube_writes_helpers.h"

static char NS[64];

typedef struct {
  uv_loop_t loop;
  evs_kube_t *kube; /* the one client both electors share, as replicas share an API server */
} env_t;

static void env_init(env_t *e) {
  uv_loop_init(&e->loop);
  e->kube = kw_kube(&e->loop);
  assert_non_null(e->kube);
}

static void set_flag(void *arg) { *(int *)arg = 1; }

static void env_close(env_t *e) {
  assert_int_equal(kw_kube_close(&e->loop, e->kube), 0);
  assert_int_equal(evs_test_loop_close(&e->loop), 0);
}

#define SKIP_IF_NONE()                                                                             \
  do {                                                                                             \
    if (!KW.found)                                                                                 \
      skip();                                                                                      \
  } while (0)

static int setup(void **state) {
  (void)state;
  if (kw_find_controlplane() != 0) {
    fprintf(stderr, "SKIP test_lease: no Kubernetes control plane\n");
    return 0;
  }
  snprintf(NS, sizeof NS, "evs-le-%d-%ld", (int)getpid(), (long)time(NULL) % 100000);
  assert_int_equal(kw_namespace(NS, 1), 201);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  if (!KW.found)
    return 0;
  kw_namespace(NS, 0);
  return 0;
}

/* ---- two electors and their timeline ---- */

typedef struct pair_s pair_t;
typedef struct {
  pair_t *pair;
  int idx;
  evs_lease_t *l;
  int started, stopped;
  uint64_t started_ms, stopped_ms;
} el_t;

struct pair_s {
  env_t e;
  el_t el[2];
  int overlap; /* a start while the other one still said "leader" */
  evs_metrics_t *reg;
};

static void on_started(evs_lease_t *l, void *arg) {
  el_t *x = arg;
  (void)l;
  x->started++;
  x->started_ms = uv_now(&x->pair->e.loop);
  el_t *other = &x->pair->el[1 - x->idx];
  if (other->l != NULL && evs_lease_is_leader(other->l))
    x->pair->overlap++;
}

static void on_stopped(evs_lease_t *l, void *arg) {
  el_t *x = arg;
  (void)l;
  x->stopped++;
  x->stopped_ms = uv_now(&x->pair->e.loop);
}

static void pair_start(pair_t *p, const char *lease_name, int observe_second) {
  memset(p, 0, sizeof *p);
  env_init(&p->e);
  p->reg = evs_metrics_new();
  for (int i = 0; i < 2; i++) {
    p->el[i].pair = p;
    p->el[i].idx = i;
    evs_lease_options_t o = {.name = lease_name,
                             .ns = NS,
                             .lease_duration_ms = 2000,
                             .renew_deadline_ms = 1500,
                             .retry_period_ms = 300,
                             .observe_only = i == 1 && observe_second,
                             .on_started_leading = on_started,
                             .on_stopped_leading = on_stopped,
                             .arg = &p->el[i],
                             .metrics = i == 0 ? p->reg : NULL};
    assert_int_equal(evs_lease_new(&p->e.loop, p->e.kube, &o, &p->el[i].l), 0);
    assert_int_equal(evs_lease_start(p->el[i].l), 0);
  }
}

static void pair_stop(pair_t *p) {
  for (int i = 0; i < 2; i++) {
    if (p->el[i].l == NULL)
      continue;
    int done = 0;
    evs_lease_stop(p->el[i].l, set_flag, &done);
    assert_true(evs_test_run_until(&p->e.loop, &done, 10000));
    p->el[i].l = NULL;
  }
  assert_int_equal(p->overlap, 0);
  evs_metrics_free(p->reg);
  env_close(&p->e);
}

static int any_leader(pair_t *p) {
  return evs_lease_is_leader(p->el[0].l) || evs_lease_is_leader(p->el[1].l);
}

/* Runs the loop for ms (blocking the test, not the loop). */
static void run_for(pair_t *p, uint64_t ms) {
  int never = 0;
  evs_test_run_until(&p->e.loop, &never, ms);
}

static char *lease_holder(env_t *e, const char *name) {
  char path[256], *body = NULL;
  snprintf(path, sizeof path, "/apis/coordination.k8s.io/v1/namespaces/%s/leases/%s", NS, name);
  assert_int_equal(kw_req(&e->loop, e->kube, "GET", path, NULL, NULL, &body), 200);
  json_t *j = json_loads(body, 0, NULL);
  free(body);
  const char *h = json_string_value(json_object_get(json_object_get(j, "spec"), "holderIdentity"));
  char *out = strdup(h ? h : "");
  json_decref(j);
  return out;
}

static int leader_index(pair_t *p) {
  int a = evs_lease_is_leader(p->el[0].l), b = evs_lease_is_leader(p->el[1].l);
  assert_int_equal(a + b, 1);
  return a ? 0 : 1;
}

static void test_one_leader(void **state) {
  (void)state;
  SKIP_IF_NONE();
  pair_t p;
  pair_start(&p, "one", 0);
  for (int i = 0; i < 100 && !any_leader(&p); i++)
    run_for(&p, 100);
  run_for(&p, 3000); /* several renewals */
  int who = leader_index(&p);
  assert_int_equal(p.el[who].started, 1);
  assert_int_equal(p.el[who].stopped, 0);
  assert_int_equal(p.el[1 - who].started, 0);
  char *h = lease_holder(&p.e, "one");
  assert_string_equal(h, evs_lease_identity(p.el[who].l));
  free(h);
  /* hostname_uuid */
  char host[256] = "";
  gethostname(host, sizeof host - 1);
  const char *id = evs_lease_identity(p.el[0].l);
  assert_int_equal(strncmp(id, host, strlen(host)), 0);
  assert_int_equal(id[strlen(host)], '_');
  assert_int_equal(strlen(id + strlen(host) + 1), 36);
  assert_string_not_equal(id, evs_lease_identity(p.el[1].l));
  /* the follower knows who leads */
  assert_string_equal(evs_lease_holder(p.el[1 - who].l), evs_lease_identity(p.el[who].l));
  /* the gauge says so (the registry is the first elector's) */
  char *text;
  size_t len;
  assert_int_equal(evs_metrics_expose(p.reg, &text, &len), 0);
  char want[64];
  snprintf(want, sizeof want, "evscale_leader %d\n", who == 0 ? 1 : 0);
  assert_non_null(strstr(text, want));
  assert_non_null(strstr(text, "evscale_leader_handovers_total 0\n"));
  free(text);
  pair_stop(&p);
}

static void wait_leader(pair_t *p) {
  for (int i = 0; i < 100 && !any_leader(p); i++)
    run_for(p, 100);
  assert_true(any_leader(p));
}

static void test_release_hands_over_fast(void **state) {
  (void)state;
  SKIP_IF_NONE();
  pair_t p;
  pair_start(&p, "release", 0);
  wait_leader(&p);
  run_for(&p, 500);
  int who = leader_index(&p), other = 1 - who;
  uint64_t t0 = uv_now(&p.e.loop);
  int done = 0;
  evs_lease_stop(p.el[who].l, set_flag, &done);
  assert_int_equal(p.el[who].stopped, 1); /* writes stop before the release is sent */
  assert_int_equal(evs_lease_is_leader(p.el[who].l), 0);
  assert_true(evs_test_run_until(&p.e.loop, &done, 10000));
  p.el[who].l = NULL;
  assert_true(evs_test_run_until(&p.e.loop, &p.el[other].started, 5000));
  uint64_t took = p.el[other].started_ms - t0;
  print_message("hand-over after release: %llu ms\n", (unsigned long long)took);
  assert_true(took < 1000);
  char *h = lease_holder(&p.e, "release");
  assert_string_equal(h, evs_lease_identity(p.el[other].l));
  free(h);
  if (other == 0) { /* the registry is elector 0's: it saw the hand-over to itself */
    char *text;
    size_t len;
    assert_int_equal(evs_metrics_expose(p.reg, &text, &len), 0);
    assert_non_null(strstr(text, "evscale_leader_handovers_total 1\n"));
    free(text);
  }
  pair_stop(&p);
}

/* The leader's renewals fail: it steps down after renew_deadline; the other waits for the lease
 * to expire (2 s after it last saw it change), then leads. */
static void test_renew_fails(void **state) {
  (void)state;
  SKIP_IF_NONE();
  pair_t p;
  pair_start(&p, "renewfail", 0);
  wait_leader(&p);
  run_for(&p, 500);
  int who = leader_index(&p), other = 1 - who;
  uint64_t t0 = uv_now(&p.e.loop);
  evs_lease__set_blocked(p.el[who].l, 1);
  assert_true(evs_test_run_until(&p.e.loop, &p.el[other].started, 10000));
  assert_int_equal(p.el[who].stopped, 1);
  assert_true(p.el[who].stopped_ms <= p.el[other].started_ms);
  uint64_t down = p.el[who].stopped_ms - t0, up = p.el[other].started_ms - t0;
  print_message("renewals failing: leader down after %llu ms, other up after %llu ms\n",
                (unsigned long long)down, (unsigned long long)up);
  assert_true(down <= 1500 + 100);
  assert_true(up >= 1500); /* not before the lease could have expired */
  evs_lease__set_blocked(p.el[who].l, 0);
  run_for(&p, 1000);
  assert_int_equal(leader_index(&p), other); /* the old leader does not grab it back */
  pair_stop(&p);
}

/* The leader stalls (its timer stopped, as in a frozen process): the other takes over after the
 * lease expires; when the stalled one wakes it is no longer leader, before its timer even runs. */
static void test_stall(void **state) {
  (void)state;
  SKIP_IF_NONE();
  pair_t p;
  pair_start(&p, "stall", 0);
  wait_leader(&p);
  run_for(&p, 500);
  int who = leader_index(&p), other = 1 - who;
  uint64_t t0 = uv_now(&p.e.loop);
  evs_lease__stall(p.el[who].l, 1);
  assert_true(evs_test_run_until(&p.e.loop, &p.el[other].started, 10000));
  uint64_t up = p.el[other].started_ms - t0;
  print_message("stalled leader: other up after %llu ms\n", (unsigned long long)up);
  assert_true(up >= 1500); /* ~ lease duration after the last renewal it saw */
  assert_int_equal(evs_lease_is_leader(p.el[who].l), 0);
  evs_lease__stall(p.el[who].l, 0);
  run_for(&p, 1000);
  assert_int_equal(p.el[who].stopped, 1);
  assert_int_equal(leader_index(&p), other);
  pair_stop(&p);
}

/* Observe only (--dry-run): reads the Lease, never writes it, never leads. */
static void test_observe_only(void **state) {
  (void)state;
  SKIP_IF_NONE();
  long mark = kw_audit_mark();
  pair_t p;
  pair_start(&p, "observe", 1);
  wait_leader(&p);
  run_for(&p, 1500);
  assert_int_equal(leader_index(&p), 0);
  assert_string_equal(evs_lease_holder(p.el[1].l), evs_lease_identity(p.el[0].l));
  /* the leader leaves: the observer still does not take it */
  int done = 0;
  evs_lease_stop(p.el[0].l, set_flag, &done);
  assert_true(evs_test_run_until(&p.e.loop, &done, 10000));
  p.el[0].l = NULL;
  run_for(&p, 3000);
  assert_int_equal(evs_lease_is_leader(p.el[1].l), 0);
  assert_int_equal(p.el[1].started, 0);
  pair_stop(&p);
  kw_audit_settle();
  char path[256];
  snprintf(path, sizeof path, "/apis/coordination.k8s.io/v1/namespaces/%s/leases", NS);
  /* writes: the leader's create, renewals and release; the observer's user agent is the same,
   * so count gets: both read; and make sure every write came while elector 0 was alive */
  int puts = kw_audit_count(mark, "update", path), gets = kw_audit_count(mark, "get", path);
  assert_true(gets > 0);
  assert_true(puts > 0);
  pair_t q;
  long mark2 = kw_audit_mark();
  pair_start(&q, "observe-alone", 1);
  evs_lease_stop(q.el[0].l, set_flag, &done); /* only the observer runs */
  done = 0;
  q.el[0].l = NULL;
  /* The observer runs until it has read the Lease three times (every retry period, 300 ms): a
   * fixed 1.5 s saw only two reads once, under ASan on a loaded machine. */
  char one[256];
  snprintf(one, sizeof one, "/apis/coordination.k8s.io/v1/namespaces/%s/leases/observe-alone", NS);
  for (int i = 0; i < 40 && kw_audit_count(mark2, "get", one) < 3; i++)
    run_for(&q, 500);
  pair_stop(&q);
  kw_audit_settle();
  /* no create (POST to the collection) and no update of any Lease of the namespace */
  snprintf(path, sizeof path, "/apis/coordination.k8s.io/v1/namespaces/%s/leases", NS);
  assert_int_equal(kw_audit_count(mark2, "create", path) + kw_audit_count(mark2, "update", path) +
                       kw_audit_count(mark2, "patch", path),
                   0);
  assert_true(kw_audit_count(mark2, "get", one) >= 3);
}

static void test_bad_options(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  evs_kube_t *kube = NULL; /* created, never opened: the options are refused before any use */
  evs_kube_options_t ko = {.kubeconfig = "/nonexistent/kubeconfig"};
  assert_int_equal(evs_kube_new(&loop, &ko, &kube), 0);
  evs_lease_t *l;
  evs_lease_options_t o = {.name = "x",
                           .ns = "y",
                           .lease_duration_ms = 15000,
                           .renew_deadline_ms = 10000,
                           .retry_period_ms = 2000};
  evs_lease_options_t bad[] = {o, o, o, o};
  bad[0].renew_deadline_ms = 15000;
  bad[1].retry_period_ms = 10000;
  bad[2].name = "";
  bad[3].lease_duration_ms = 900;
  bad[3].renew_deadline_ms = 800;
  bad[3].retry_period_ms = 100;
  for (size_t i = 0; i < 4; i++)
    assert_int_equal(evs_lease_new(&loop, kube, &bad[i], &l), UV_EINVAL);
  assert_int_equal(evs_lease_new(&loop, NULL, &o, &l), UV_EINVAL);
  int closed = 0;
  evs_kube_close(kube, set_flag, &closed);
  assert_true(evs_test_run_until(&loop, &closed, 10000));
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_options),
      cmocka_unit_test(test_one_leader),
      cmocka_unit_test(test_release_hands_over_fast),
      cmocka_unit_test(test_renew_fails),
      cmocka_unit_test(test_stall),
      cmocka_unit_test(test_observe_only),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
