/* The status patcher's bookkeeping without a server: status.c is included with evs_kube_request
 * and evs_kube_cancel replaced by a recorder (STYLE.md: unit tests of static code may include the
 * .c), so every PATCH path and body the patcher sends is compared byte for byte with the bodies
 * the patcher sent before its per-object entry shrank (issue 13: recorded from main 5e5040a,
 * where each entry kept the full path and its own skeleton allocation). The sequences cover what
 * the compact entry must still get right: keys removed at the top and nested (metric names
 * renamed, a trigger removed, health going with the fallback), a failed patch and a forgotten
 * object written in full, updates waiting for a slot and for their own patch. test_status.c
 * checks the same against the real API server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include <malloc.h>
#include <string.h>

#include "evscale/error.h"
#include "evscale/kube.h"

/* ---- the recorder ---- */

typedef struct {
  evs_kube_done_cb on_done;
  void *arg;
  int live;
} rec_req_t;

#define REC_MAX 512
static rec_req_t REQS[REC_MAX];
static int NREQ;
static char LOG[65536];
static size_t LOGN;

static void logf_(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(LOG + LOGN, sizeof LOG - LOGN, fmt, ap);
  va_end(ap);
  assert_true(n >= 0 && (size_t)n < sizeof LOG - LOGN);
  LOGN += (size_t)n;
}

/* Quiet: requests are not logged and their slots are reused (many objects). */
static int QUIET;

static int rec_request(evs_kube_t *k, const evs_kube_request_opts_t *o, evs_kube_req_t **out) {
  (void)k;
  assert_true(NREQ < REC_MAX);
  assert_string_equal(o->verb, "PATCH");
  assert_int_equal(o->priority, EVS_PRIO_LOW);
  if (!QUIET)
    logf_("%d %s %.*s\n", NREQ, o->path, (int)o->body_len, (const char *)o->body);
  REQS[NREQ] = (rec_req_t){o->on_done, o->arg, 1};
  if (out != NULL)
    *out = (evs_kube_req_t *)&REQS[NREQ];
  NREQ++;
  return 0;
}

static void rec_end(int i, int err, int status) {
  rec_req_t *r = &REQS[i];
  assert_true(r->live);
  r->live = 0;
  evs_http_response_t resp;
  memset(&resp, 0, sizeof resp);
  resp.status = status;
  r->on_done((evs_kube_req_t *)r, err, err ? NULL : &resp, NULL, r->arg);
}

static void rec_cancel(evs_kube_req_t *req) {
  rec_end((int)((rec_req_t *)req - REQS), EVS_ECANCELED, 0);
}

/* What status.c itself holds from the heap: its allocations counted as they come and go (bytes
 * as malloc_usable_size says: what was asked under ASan, the chunk's usable part with glibc). */
static long LIVE_N;
static long long LIVE_B;

/* The pointers counted: status.c also frees what jansson and evs_buf_reserve allocated. Linear
 * probing with backward-shift deletion. */
#define SET_BITS 18
static void *SET[1 << SET_BITS];

static size_t set_at(void *q) {
  uintptr_t h = (uintptr_t)q * 0x9E3779B97F4A7C15ull;
  return (size_t)(h >> (64 - SET_BITS));
}

static void set_add(void *q) {
  size_t i = set_at(q);
  while (SET[i] != NULL)
    i = (i + 1) & ((1 << SET_BITS) - 1);
  SET[i] = q;
}

static int set_del(void *q) {
  size_t mask = (1 << SET_BITS) - 1, i = set_at(q);
  while (SET[i] != q) {
    if (SET[i] == NULL)
      return 0;
    i = (i + 1) & mask;
  }
  for (size_t j = (i + 1) & mask; SET[j] != NULL; j = (j + 1) & mask) {
    size_t k = set_at(SET[j]); /* SET[j] may fill the hole at i if its home is not in (i, j] */
    if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
      SET[i] = SET[j];
      i = j;
    }
  }
  SET[i] = NULL;
  return 1;
}

static void *count_in(void *q) {
  if (q != NULL) {
    set_add(q);
    LIVE_N++;
    LIVE_B += (long long)malloc_usable_size(q);
  }
  return q;
}

static void count_out(void *q) {
  if (q != NULL && set_del(q)) {
    LIVE_N--;
    LIVE_B -= (long long)malloc_usable_size(q);
  }
}

/* Out of memory on status.c's FAIL_AT-th allocation (0: never). */
static int FAIL_AT, ALLOCS;

static int failing(void) { return FAIL_AT != 0 && ++ALLOCS == FAIL_AT; }
static void *c_malloc(size_t n) { return failing() ? NULL : count_in(malloc(n)); }
static void *c_calloc(size_t n, size_t m) { return failing() ? NULL : count_in(calloc(n, m)); }
static inline void *c_realloc(void *q, size_t n) {
  count_out(q);
  void *r = realloc(q, n);
  count_in(r != NULL ? r : (n ? q : NULL));
  return r;
}
static void c_free(void *q) {
  count_out(q);
  free(q);
}
static inline char *c_strndup(const char *s, size_t n) { return count_in(strndup(s, n)); }

#define evs_kube_request rec_request
#define evs_kube_cancel rec_cancel
#define malloc c_malloc
#define calloc c_calloc
#define realloc c_realloc
#define free c_free
#define strndup c_strndup
#include "../../src/kube/status.c"
#undef malloc
#undef calloc
#undef realloc
#undef free
#undef strndup
#undef evs_kube_request
#undef evs_kube_cancel

/* ---- inputs ---- */

#define T0 1764493710000LL

/* Each input its own triggers (a few inputs live at once). */
static evs_status_trigger_t POOL[8][4];
static unsigned NPOOL;

static evs_status_input_t input(int ntrig, const char *const *metrics, int health) {
  evs_status_trigger_t *tr = POOL[NPOOL++ % 8];
  evs_status_input_t in;
  memset(&in, 0, sizeof in);
  in.has_conditions = 1;
  in.conditions[0] = (evs_status_condition_t){1, "ScaledObjectReady", "ScaledObject is ready"};
  in.conditions[1] = (evs_status_condition_t){0, "ScalerNotActive", "Scaling is not performed"};
  in.conditions[2] = (evs_status_condition_t){0, "NoFallbackFound", "No fallbacks are active"};
  in.conditions[3] =
      (evs_status_condition_t){0, "ScaledObjectUnpaused", "pause annotation removed"};
  in.gvkr = (evs_status_gvkr_t){"apps", "v1", "Deployment", "deployments"};
  in.original_replicas = 1;
  in.has_spec = 1;
  in.has_activity = 1;
  in.health_reported = (uint8_t)health;
  for (int i = 0; i < ntrig; i++)
    tr[i] = (evs_status_trigger_t){metrics[i], "redis", i ? "creds" : NULL, 0, 0, 0};
  in.triggers = tr;
  in.n_triggers = (size_t)ntrig;
  in.paused_replicas = -1;
  in.hpa_name = "keda-hpa-w";
  return in;
}

typedef struct {
  int n, err, status;
} res_t;

static void on_done(evs_status_patcher_t *p, int err, int status, void *arg) {
  (void)p;
  res_t *r = arg;
  r->n++;
  r->err = err;
  r->status = status;
  logf_("cb %d %d\n", err, status);
}

static evs_status_patcher_t *patcher(unsigned k) {
  NREQ = 0;
  LOGN = 0;
  LOG[0] = '\0';
  evs_status_patcher_t *p = NULL;
  evs_status_patcher_options_t o = {.max_in_flight = k};
  assert_int_equal(evs_status_patcher_new((evs_kube_t *)&REQS, &o, &p), 0);
  return p;
}

static void expect_log(const char *want) {
  if (strcmp(LOG, want) != 0) {
    fprintf(stderr, "---- got\n%s---- want\n%s----\n", LOG, want);
    fail_msg("the patches differ");
  }
}

/* One object through key changes: every body as main 5e5040a sent it. */
static void test_bodies_unchanged(void **state) {
  (void)state;
  evs_status_patcher_t *p = patcher(8);
  static const char *const two[] = {"s0-redis-jobs-1", "s1-redis-jobs-2"};
  static const char *const one[] = {"s0-redis-jobs-1"};
  static const char *const renamed[] = {"s0-redis-jobs-9"};
  res_t r = {0};
  int i = 0;
  evs_status_input_t in = input(2, two, 0);
  /* 1: first write, in full */
  assert_int_equal(evs_status_patcher_update(p, "team-1", "worker-1", &in, T0, on_done, &r), 1);
  rec_end(i++, 0, 200);
  /* 2: the same: nothing */
  assert_int_equal(evs_status_patcher_update(p, "team-1", "worker-1", &in, T0, on_done, &r), 0);
  /* 3: a trigger removed: its triggersActivity entry nulled; paused replicas appear */
  in = input(1, one, 0);
  in.paused_replicas = 2;
  assert_int_equal(evs_status_patcher_update(p, "team-1", "worker-1", &in, T0, on_done, &r), 1);
  rec_end(i++, 0, 200);
  /* 4: renamed metric, health reported (a fallback), paused replicas gone, active */
  in = input(1, renamed, 1);
  in.active = 1;
  in.last_active_ms = T0 + 5000;
  POOL[(NPOOL - 1) % 8][0].active = 1;
  assert_int_equal(evs_status_patcher_update(p, "team-1", "worker-1", &in, T0, on_done, &r), 1);
  rec_end(i++, 0, 200);
  /* 5: health goes, the metric renamed back, two triggers again */
  in = input(2, two, 0);
  assert_int_equal(evs_status_patcher_update(p, "team-1", "worker-1", &in, T0, on_done, &r), 1);
  rec_end(i++, 0, 200);
  /* 6: broken: every spec field nulled; the patch fails (500): 7 writes in full */
  in = input(0, NULL, 0);
  in.has_spec = 0;
  in.check_error = "ScaledObject doesn't have correct triggers specification: x";
  in.gvkr = (evs_status_gvkr_t){0};
  assert_int_equal(evs_status_patcher_update(p, "team-1", "worker-1", &in, T0, on_done, &r), 1);
  rec_end(i++, 0, 500);
  in = input(1, one, 0);
  assert_int_equal(evs_status_patcher_update(p, "team-1", "worker-1", &in, T0, on_done, &r), 1);
  rec_end(i++, 0, 200);
  /* 8: forgotten, then written in full again; a second object with its own keys */
  evs_status_patcher_forget(p, "team-1", "worker-1");
  in = input(2, two, 1);
  assert_int_equal(evs_status_patcher_update(p, "team-1", "worker-1", &in, T0, on_done, &r), 1);
  assert_int_equal(evs_status_patcher_update(p, "team-22", "w", &in, T0, on_done, &r), 1);
  rec_end(i++, 0, 200);
  rec_end(i++, 0, 200);
  in = input(1, renamed, 1);
  assert_int_equal(evs_status_patcher_update(p, "team-22", "w", &in, T0, on_done, &r), 1);
  rec_end(i++, 0, 200);
  assert_int_equal(r.n, 9);
  evs_status_patcher_close(p);
  expect_log(
#include "test_status_entry_golden1.inc"
  );
}

/* Waiting: one slot; updates queue behind it, one waits for its own patch and its key set
 * changes meanwhile; a forgotten waiting object is dropped; close cancels the rest. */
static int PROVIDED;
static evs_status_input_t PIN[3];
static const char *const PNAMES[3] = {"a", "b", "c"};

static void provide(evs_status_patcher_t *p, const char *ns, const char *name, void *arg) {
  (void)arg;
  logf_("turn %s/%s\n", ns, name);
  PROVIDED++;
  for (int i = 0; i < 3; i++)
    if (strcmp(name, PNAMES[i]) == 0)
      assert_int_equal(evs_status_patcher_update(p, ns, name, &PIN[i], T0, NULL, NULL), 1);
}

static void test_waiting_unchanged(void **state) {
  (void)state;
  evs_status_patcher_t *p = patcher(1);
  evs_status_patcher_set_provider(p, provide, NULL);
  static const char *const m1[] = {"s0-redis-q-1"};
  static const char *const m2[] = {"s0-redis-q-2", "s1-redis-other"};
  static const char *const m3[] = {"s0-redis-renamed"};
  res_t r[3] = {{0}};
  PIN[0] = input(1, m1, 0);
  PIN[1] = input(2, m2, 1);
  PIN[2] = input(1, m1, 0);
  evs_status_input_t in = PIN[0];
  assert_int_equal(evs_status_patcher_update(p, "ns", "a", &in, T0, on_done, &r[0]), 1);
  in = PIN[1];
  assert_int_equal(evs_status_patcher_update(p, "ns", "b", &in, T0, on_done, &r[1]), 1);
  in = PIN[2];
  assert_int_equal(evs_status_patcher_update(p, "ns", "c", &in, T0, on_done, &r[2]), 1);
  assert_int_equal(NREQ, 1);
  /* a's update during its own patch: waits for it; its metric is renamed by its turn */
  in = input(1, m3, 0);
  assert_int_equal(evs_status_patcher_update(p, "ns", "a", &in, T0, on_done, &r[0]), 1);
  PIN[0] = input(1, m3, 1);
  rec_end(0, 0, 200); /* b's turn */
  evs_status_patcher_forget(p, "ns", "c");
  rec_end(1, 0, 200); /* c forgotten: a's turn */
  assert_int_equal(NREQ, 3);
  PIN[1] = input(1, m1, 0);
  assert_int_equal(evs_status_patcher_update(p, "ns", "b", &PIN[1], T0, on_done, &r[1]), 1);
  evs_status_patcher_close(p); /* a's patch and b's waiting update canceled */
  assert_int_equal(PROVIDED, 2);
  expect_log(
#include "test_status_entry_golden2.inc"
  );
}

/* Issue 13: at 50,000 objects the patcher holds under 100 B per object (entry, key shape and
 * names, its share of the table), in one allocation per object; it was 178 B of entry plus a
 * 50 B skeleton of its own (two allocations) plus the table. Names as bench_registry's: 50
 * namespaces, one redis trigger each with its own list. */
static void test_bytes_per_object(void **state) {
  (void)state;
  enum { N = 50000 };
  evs_status_patcher_t *p = patcher(8);
  long n0 = LIVE_N;
  long long b0 = LIVE_B;
  QUIET = 1;
  char ns[32], name[32], metric[32];
  for (int i = 0; i < N; i++) {
    snprintf(ns, sizeof ns, "team-%d", i % 50);
    snprintf(name, sizeof name, "worker-%d", i);
    snprintf(metric, sizeof metric, "s0-redis-jobs-%d", i);
    const char *m[] = {metric};
    evs_status_input_t in = input(1, m, 0);
    assert_int_equal(evs_status_patcher_update(p, ns, name, &in, T0, NULL, NULL), 1);
    NREQ = 0;
    rec_end(0, 0, 200);
  }
  QUIET = 0;
  double per = (double)(LIVE_B - b0) / N, allocs = (double)(LIVE_N - n0) / N;
  fprintf(stderr,
          "status patcher at %d objects: %.1f B per object (status.c's own heap), %.3f "
          "allocations per object\n",
          N, per, allocs);
  assert_true(per < 100);
  assert_true(allocs < 1.01);
  /* every object still known: the same status again sends nothing */
  const char *m[] = {"s0-redis-jobs-7"};
  evs_status_input_t in = input(1, m, 0);
  assert_int_equal(evs_status_patcher_update(p, "team-7", "worker-7", &in, T0, NULL, NULL), 0);
  evs_status_patcher_close(p);
  assert_int_equal(LIVE_N, 0); /* everything, the patcher's own too */
  assert_int_equal(LIVE_B, 0);
}

/* Out of memory anywhere in status.c's own allocations (entry, side part, shape, FIFO array,
 * renamed entry): every update that returned 1 still gets its callback exactly once, and
 * nothing is left behind when the patcher closes. */
static int ACCEPTED, CALLED;

static void oom_done(evs_status_patcher_t *p, int err, int status, void *arg) {
  (void)p;
  (void)err;
  (void)status;
  (void)arg;
  CALLED++;
}

static evs_status_input_t OIN[2];

static void oom_provide(evs_status_patcher_t *p, const char *ns, const char *name, void *arg) {
  (void)arg;
  int rc = evs_status_patcher_update(p, ns, name, &OIN[name[0] == 'b'], T0, NULL, NULL);
  assert_true(rc == 1 || rc == UV_ENOMEM);
}

static void oom_update(evs_status_patcher_t *p, const char *name, const evs_status_input_t *in) {
  int rc = evs_status_patcher_update(p, "ns", name, in, T0, oom_done, NULL);
  assert_true(rc == 1 || rc == 0 || rc == UV_ENOMEM);
  ACCEPTED += rc == 1;
}

static void test_out_of_memory(void **state) {
  (void)state;
  static const char *const m1[] = {"s0-redis-q-1"}, *const m2[] = {"s0-redis-q-2", "s1-x"};
  for (int at = 1; at <= 40; at++) { /* the sequence makes 21 allocations */
    evs_status_patcher_t *p = patcher(1);
    evs_status_patcher_set_provider(p, oom_provide, NULL);
    QUIET = 1;
    ACCEPTED = CALLED = 0;
    ALLOCS = 0;
    FAIL_AT = at;
    OIN[0] = input(1, m2, 1);
    OIN[1] = input(2, m2, 0);
    evs_status_input_t a = input(1, m1, 0), b = input(1, m1, 1);
    oom_update(p, "a", &a);
    oom_update(p, "b", &b); /* waits for the slot */
    oom_update(p, "a", &b); /* waits for its own patch */
    for (int i = 0; i < NREQ; i++)
      if (REQS[i].live)
        rec_end(i, 0, 200); /* a's turn again, b's: the provider renames their metrics */
    FAIL_AT = 0;
    evs_status_patcher_close(p);
    QUIET = 0;
    assert_int_equal(CALLED, ACCEPTED);
    assert_int_equal(LIVE_N, 0);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bodies_unchanged),
      cmocka_unit_test(test_waiting_unchanged),
      cmocka_unit_test(test_bytes_per_object),
      cmocka_unit_test(test_out_of_memory),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
