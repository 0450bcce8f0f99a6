/* The trigger type "prometheus" through the scaler interface (evs_scaler_create with type
 * "prometheus"), against a real Prometheus scraping a real Pushgateway (test/prom_harness.py):
 * a pushed value with its activity, an empty result without ignoreNullValues as an error reading,
 * two scalers with the same query sharing one request (counted at the harness proxy), a cadence
 * change moving the subscription, close-safety, and creation errors naming the field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "evscale/error.h"
#include "evscale/prometheus.h"
#include "evscale/scaler.h"
#include "prom_harness.h"

static evs_prom_harness_t H;
static char server_addr[160], proxy_addr[160];

#define MAXR 256

typedef struct {
  evs_scaler_t *s;
  int n, closed;
  double value;
  int active, error;
  int empty_upstream; /* of the last reading */
  char msg[256];
  int close_at; /* close from the reading callback once n reaches this */
} rec_t;

typedef struct {
  uv_loop_t loop;
  evs_prom_hub_t *hub;
  evs_scaler_env_t env;
  int hub_closed;
} fx_t;

static void on_closed(void *data) { ((rec_t *)data)->closed++; }

static void on_reading(evs_scaler_t *s, const evs_reading_t *r, void *data) {
  rec_t *rec = data;
  assert_ptr_equal(s, rec->s);
  assert_int_equal(rec->closed, 0);
  rec->n++;
  rec->value = r->value;
  rec->active = r->active;
  rec->error = r->error;
  rec->empty_upstream = r->empty_upstream;
  assert_true(r->error == 0 ? r->error_msg == NULL : r->error_msg != NULL);
  snprintf(rec->msg, sizeof rec->msg, "%s", r->error_msg ? r->error_msg : "");
  if (rec->close_at == rec->n)
    evs_scaler_close(s, on_closed, rec);
}

static void fx_init(fx_t *fx) {
  memset(fx, 0, sizeof *fx);
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  evs_prom_hub_options_t o = {.backoff_initial_ms = 100, .backoff_max_ms = 1000};
  assert_int_equal(evs_prom_hub_new(&fx->loop, &o, &fx->hub), 0);
  fx->env = (evs_scaler_env_t){.prom_hub = fx->hub, .request_timeout_ms = 5000};
}

static void on_hub_closed(void *arg) { *(int *)arg = 1; }

static void fx_done(fx_t *fx) {
  evs_prom_hub_close(fx->hub, on_hub_closed, &fx->hub_closed);
  assert_true(evs_test_run_until(&fx->loop, &fx->hub_closed, 10000));
  assert_int_equal(evs_test_loop_close(&fx->loop), 0);
}

/* Splits "k=v" / "@k=v" (authParams) and creates a "prometheus" scaler; diag collects errors. */
static int make(fx_t *fx, const evs_scaler_env_t *env, const char *const *kvs, evs_scaler_t **out,
                evs_diag_t *diag) {
  evs_kv_t meta[16], auth[16];
  size_t nm = 0, na = 0;
  static char store[16][512];
  for (size_t i = 0; kvs[i]; i++) {
    snprintf(store[i], sizeof store[i], "%s", kvs[i]);
    int a = store[i][0] == '@';
    char *k = store[i] + a, *eq = strchr(k, '=');
    *eq = '\0';
    if (a)
      auth[na++] = (evs_kv_t){k, eq + 1};
    else
      meta[nm++] = (evs_kv_t){k, eq + 1};
  }
  evs_scaler_config_t cfg = {.type = "prometheus",
                             .name = "prom-trigger",
                             .index = 2,
                             .object = "team-a/web",
                             .metadata = {meta, nm},
                             .auth_params = {auth, na}};
  return evs_scaler_create(&fx->loop, env, &cfg, out, diag);
}

static void make_ok(fx_t *fx, const char *const *kvs, rec_t *rec) {
  evs_diag_t d;
  evs_diag_init(&d);
  memset(rec, 0, sizeof *rec);
  int rc = make(fx, &fx->env, kvs, &rec->s, &d);
  if (rc != 0) {
    char b[400];
    evs_diag_format(&d, 0, b, sizeof b);
    fail_msg("create: %s", b);
  }
  evs_diag_free(&d);
}

static int wait_n(fx_t *fx, rec_t *rec, int n, uint64_t ms) {
  uint64_t t0 = uv_hrtime();
  while (rec->n < n && (uv_hrtime() - t0) / 1000000 < ms) {
    int never = 0;
    evs_test_run_until(&fx->loop, &never, 20);
  }
  return rec->n >= n;
}

static void close_wait(fx_t *fx, rec_t *rec) {
  evs_scaler_close(rec->s, on_closed, rec);
  assert_true(evs_test_run_until(&fx->loop, &rec->closed, 5000));
  assert_int_equal(rec->closed, 1);
}

/* KEDA asks with `time=<now>` in whole seconds: once Prometheus shows the value, wait a second. */
static void push_wait(const char *metric, const char *value) {
  assert_int_equal(evs_prom_harness_do(&H, "push j %s %s", metric, value), 0);
  assert_int_equal(evs_prom_harness_do(&H, "wait %s %s", metric, value), 0);
  usleep(1100000);
}

static void test_reads_pushed_value(void **state) {
  (void)state;
  push_wait("evs_ps_value", "42");
  fx_t fx;
  fx_init(&fx);
  rec_t hi, lo;
  const char *a[] = {server_addr, "query=evs_ps_value", "threshold=10", "activationThreshold=41.5",
                     NULL};
  const char *b[] = {server_addr, "query=evs_ps_value", "threshold=10", "activationThreshold=42",
                     NULL};
  make_ok(&fx, a, &hi);
  make_ok(&fx, b, &lo);
  assert_ptr_equal(hi.s->type, &evs_scaler_prometheus_type);
  assert_int_equal(evs_scaler_poll(hi.s), EVS_ESTATE); /* not started */
  assert_int_equal(evs_scaler_start(hi.s, on_reading, &hi), 0);
  assert_int_equal(evs_scaler_start(lo.s, on_reading, &lo), 0);
  assert_int_equal(hi.n, 0); /* never inside start */
  assert_true(wait_n(&fx, &hi, 1, 20000));
  assert_true(wait_n(&fx, &lo, 1, 20000));
  assert_int_equal(hi.error, 0);
  assert_true(hi.value == 42);
  assert_int_equal(hi.active, 1);
  assert_int_equal(lo.error, 0);
  assert_true(lo.value == 42);
  assert_int_equal(lo.active, 0); /* strictly greater, as KEDA */
  /* poll gives another reading, later */
  int before = hi.n;
  assert_int_equal(evs_scaler_poll(hi.s), 0);
  assert_int_equal(hi.n, before);
  assert_true(wait_n(&fx, &hi, before + 1, 20000));
  assert_true(hi.value == 42);
  close_wait(&fx, &hi);
  close_wait(&fx, &lo);
  fx_done(&fx);
}

static void test_empty_without_ignore_null_is_error(void **state) {
  (void)state;
  fx_t fx;
  fx_init(&fx);
  rec_t strict, lax;
  const char *a[] = {server_addr, "query=evs_ps_never_pushed", "threshold=1",
                     "ignoreNullValues=false", NULL};
  const char *b[] = {server_addr, "query=evs_ps_never_pushed", "threshold=1",
                     "activationThreshold=-1", NULL};
  make_ok(&fx, a, &strict);
  make_ok(&fx, b, &lax);
  assert_int_equal(evs_scaler_start(strict.s, on_reading, &strict), 0);
  assert_int_equal(evs_scaler_start(lax.s, on_reading, &lax), 0);
  assert_true(wait_n(&fx, &strict, 1, 20000));
  assert_true(wait_n(&fx, &lax, 1, 20000));
  assert_int_equal(strict.error, EVS_EMETRIC);
  assert_non_null(strstr(strict.msg, "the result is empty"));
  assert_int_equal(lax.error, 0); /* the default, ignoreNullValues true: 0 */
  assert_true(lax.value == 0);
  assert_int_equal(lax.active, 1); /* 0 > -1 */
  /* KEDA counts keda_scaler_empty_upstream_responses_total both ways (prometheus_scaler.go,
   * ExecutePromQuery: RecordEmptyUpstreamResponse before the ignoreNullValues test). */
  assert_int_equal(strict.empty_upstream, 1);
  assert_int_equal(lax.empty_upstream, 1);
  evs_scaler_stats_t st;
  assert_int_equal(evs_scaler_stats(strict.s, &st), 0);
  assert_int_equal(st.readings, (uint64_t)strict.n);
  assert_int_equal(st.errors, (uint64_t)strict.n); /* keda_scaler_detail_errors_total */
  assert_int_equal(st.last_error, EVS_EMETRIC);
  assert_int_equal(evs_scaler_stats(lax.s, &st), 0);
  assert_int_equal(st.errors, 0);
  close_wait(&fx, &strict);
  close_wait(&fx, &lax);
  fx_done(&fx);
}

/* Two scalers (different thresholds, same request and cadence) share one group: the proxy sees
 * one request per cadence, not two. */
static void test_identical_query_asked_once(void **state) {
  (void)state;
  push_wait("evs_ps_shared", "7");
  assert_int_equal(evs_prom_harness_do(&H, "require_none"), 0);
  assert_int_equal(evs_prom_harness_do(&H, "reset"), 0);
  fx_t fx;
  fx_init(&fx);
  rec_t a, b;
  const char *ka[] = {proxy_addr, "query=evs_ps_shared", "threshold=1", NULL};
  const char *kb[] = {proxy_addr, "query=evs_ps_shared", "threshold=3", "activationThreshold=9",
                      NULL};
  make_ok(&fx, ka, &a);
  make_ok(&fx, kb, &b);
  const uint64_t cadence = 500;
  assert_int_equal(evs_scaler_set_cadence(a.s, cadence), 0);
  assert_int_equal(evs_scaler_set_cadence(b.s, cadence), 0);
  assert_int_equal(evs_scaler_start(a.s, on_reading, &a), 0);
  assert_int_equal(evs_scaler_start(b.s, on_reading, &b), 0);
  evs_prom_hub_stats_t st;
  evs_prom_hub_stats(fx.hub, &st);
  assert_int_equal(st.groups, 1);
  assert_int_equal(st.subscribers, 2);
  int never = 0;
  uint64_t t0 = uv_hrtime();
  evs_test_run_until(&fx.loop, &never, 2600);
  uint64_t ran = (uv_hrtime() - t0) / 1000000;
  long max = (long)(ran / cadence) + 1;
  json_t *cnt = evs_prom_harness_cmd(&H, "count");
  assert_non_null(cnt);
  long n =
      (long)json_integer_value(json_object_get(json_object_get(cnt, "by_query"), "evs_ps_shared"));
  json_decref(cnt);
  print_message("ran %llu ms: %ld requests for 2 scalers, %d and %d readings\n",
                (unsigned long long)ran, n, a.n, b.n);
  /* Shared: each request answers both scalers, so the requests are about the readings of one
   * of them (a late timer under load may add one), far fewer than a.n + b.n; two scalers asking
   * apart would make that sum, about 2 * max. (CI's load has made 7 requests in 2.6 s at 500 ms:
   * the bound allows two beyond the cadence's count.) */
  assert_true(a.n >= 3 && b.n >= 3);
  int most = a.n > b.n ? a.n : b.n;
  assert_in_range(n, 3, max + 2);
  assert_in_range(n, 3, most + 1);
  assert_int_equal(a.error, 0);
  assert_true(a.value == 7 && b.value == 7);
  assert_int_equal(a.empty_upstream, 0); /* a sample: nothing to count */
  assert_int_equal(a.active, 1);
  assert_int_equal(b.active, 0);
  /* A cadence change moves b to another group at once; a poll then asks that group. */
  assert_int_equal(evs_scaler_set_cadence(b.s, 60000), 0);
  int bn = b.n;
  assert_int_equal(evs_scaler_poll(b.s), 0);
  evs_prom_hub_stats(fx.hub, &st);
  assert_int_equal(st.groups, 2);
  assert_int_equal(st.subscribers, 2);
  assert_true(wait_n(&fx, &b, bn + 1, 20000));
  assert_true(b.value == 7);
  close_wait(&fx, &a);
  evs_prom_hub_stats(fx.hub, &st);
  assert_int_equal(st.groups, 1);
  close_wait(&fx, &b);
  evs_prom_hub_stats(fx.hub, &st);
  assert_int_equal(st.groups, 0);
  assert_int_equal(st.subscribers, 0);
  fx_done(&fx);
}

/* The cadence is the hub group's own timer: a trigger gets one reading per period, not one from
 * the group's timer plus one from the generic cadence poll (issue 16), and the query is asked
 * once per period. */
static void test_one_reading_per_period(void **state) {
  (void)state;
  push_wait("evs_ps_period", "4");
  assert_int_equal(evs_prom_harness_do(&H, "require_none"), 0);
  assert_int_equal(evs_prom_harness_do(&H, "reset"), 0);
  fx_t fx;
  fx_init(&fx);
  rec_t a;
  const char *ka[] = {proxy_addr, "query=evs_ps_period", "threshold=1", NULL};
  make_ok(&fx, ka, &a);
  const uint64_t cadence = 400;
  assert_int_equal(evs_scaler_set_cadence(a.s, cadence), 0);
  assert_int_equal(evs_scaler_start(a.s, on_reading, &a), 0);
  int never = 0;
  uint64_t t0 = uv_hrtime();
  evs_test_run_until(&fx.loop, &never, 4000);
  uint64_t ran = (uv_hrtime() - t0) / 1000000;
  /* The first tick, then the group's random phase within the next cadence: at most one more
   * than a fixed schedule. Two schedules would give about twice ran / cadence. */
  int max = (int)(ran / cadence) + 2;
  json_t *cnt = evs_prom_harness_cmd(&H, "count");
  assert_non_null(cnt);
  long n =
      (long)json_integer_value(json_object_get(json_object_get(cnt, "by_query"), "evs_ps_period"));
  json_decref(cnt);
  print_message("ran %llu ms at %llu ms: %d readings, %ld requests\n", (unsigned long long)ran,
                (unsigned long long)cadence, a.n, n);
  assert_in_range(a.n, (int)(ran / cadence) - 1, max);
  assert_in_range(n, (long)(ran / cadence) - 1, max);
  assert_true(a.value == 4);
  evs_scaler_stats_t sst;
  assert_int_equal(evs_scaler_stats(a.s, &sst), 0);
  assert_int_equal(sst.readings, (uint64_t)a.n);
  assert_int_equal(sst.errors, 0);
  assert_true(sst.last_latency_us > 0); /* the group's request round trip */
  assert_true(sst.last_latency_us < 20000000);
  /* A cadence change while started moves the trigger at once, still one schedule. */
  assert_int_equal(evs_scaler_set_cadence(a.s, 200), 0);
  int n0 = a.n;
  t0 = uv_hrtime();
  evs_test_run_until(&fx.loop, &never, 2000);
  ran = (uv_hrtime() - t0) / 1000000;
  print_message("then %llu ms at 200 ms: %d readings\n", (unsigned long long)ran, a.n - n0);
  assert_in_range(a.n - n0, (int)(ran / 200) - 2, (int)(ran / 200) + 3);
  evs_prom_hub_stats_t st;
  evs_prom_hub_stats(fx.hub, &st);
  assert_int_equal(st.groups, 1);
  close_wait(&fx, &a);
  fx_done(&fx);
}

/* Closing while a request is in flight, from inside a reading callback, and twice: every call
 * after close returns EVS_ESTATE, no reading follows, the close callback runs once (ASan checks
 * nothing is touched after the free). */
static void test_close_safety(void **state) {
  (void)state;
  push_wait("evs_ps_close", "3");
  fx_t fx;
  fx_init(&fx);
  rec_t a, b;
  const char *k[] = {server_addr, "query=evs_ps_close", "threshold=1", NULL};
  make_ok(&fx, k, &a);
  make_ok(&fx, k, &b);
  assert_int_equal(evs_scaler_set_cadence(b.s, 200), 0);
  assert_int_equal(evs_scaler_start(a.s, on_reading, &a), 0);
  assert_int_equal(evs_scaler_start(b.s, on_reading, &b), 0);
  uv_run(&fx.loop, UV_RUN_NOWAIT); /* a's request starts */
  evs_scaler_close(a.s, on_closed, &a);
  assert_int_equal(evs_scaler_poll(a.s), EVS_ESTATE);
  assert_int_equal(evs_scaler_start(a.s, on_reading, &a), EVS_ESTATE);
  assert_int_equal(evs_scaler_set_cadence(a.s, 100), EVS_ESTATE);
  evs_scaler_close(a.s, on_closed, &a); /* no-op */
  assert_int_equal(a.closed, 0);        /* never inside close */
  assert_true(evs_test_run_until(&fx.loop, &a.closed, 5000));
  assert_int_equal(a.n, 0);
  /* b closes itself from its second reading (the cadence's) */
  b.close_at = 2;
  assert_true(evs_test_run_until(&fx.loop, &b.closed, 20000));
  int never = 0;
  evs_test_run_until(&fx.loop, &never, 500);
  assert_int_equal(b.n, 2);
  assert_int_equal(a.closed, 1);
  assert_int_equal(b.closed, 1);
  fx_done(&fx);
}

static int diag_has(const evs_diag_t *d, const char *a, const char *b) {
  char buf[512];
  for (size_t i = 0; i < d->n; i++) {
    evs_diag_format(d, i, buf, sizeof buf);
    if (strstr(buf, a) && (b == NULL || strstr(buf, b)))
      return 1;
  }
  return 0;
}

static void test_creation_errors_name_the_field(void **state) {
  (void)state;
  fx_t fx;
  fx_init(&fx);
  evs_diag_t d;
  evs_scaler_t *s = (evs_scaler_t *)&d; /* must be cleared */
  evs_diag_init(&d);
  const char *noquery[] = {server_addr, "threshold=x", NULL};
  assert_int_equal(make(&fx, &fx.env, noquery, &s, &d), UV_EINVAL);
  assert_null(s);
  assert_true(diag_has(&d, "team-a/web", "metadata.query"));
  assert_true(diag_has(&d, "metadata.threshold", "prom-trigger"));
  evs_diag_free(&d);
  evs_diag_init(&d);
  const char *timeout[] = {server_addr, "query=up", "threshold=1", "timeout=-5s", NULL};
  assert_int_equal(make(&fx, &fx.env, timeout, &s, &d), UV_EINVAL);
  assert_true(diag_has(&d, "metadata.timeout", NULL));
  evs_diag_free(&d);
  /* No hub in the environment: refused, naming `type`. */
  evs_diag_init(&d);
  evs_scaler_env_t nohub = fx.env;
  nohub.prom_hub = NULL;
  const char *ok[] = {server_addr, "query=up", "threshold=1", NULL};
  assert_int_equal(make(&fx, &nohub, ok, &s, &d), UV_EINVAL);
  assert_null(s);
  assert_true(diag_has(&d, "type", "Prometheus hub"));
  evs_diag_free(&d);
  evs_diag_init(&d);
  assert_int_equal(make(&fx, NULL, ok, &s, &d), UV_EINVAL); /* no environment at all */
  evs_diag_free(&d);
  fx_done(&fx);
}

static int setup(void **state) {
  (void)state;
  const char *args[] = {"--proxy", NULL};
  if (evs_prom_harness_start(&H, args) != 0)
    return -1;
  snprintf(server_addr, sizeof server_addr, "serverAddress=%s", H.prometheus);
  snprintf(proxy_addr, sizeof proxy_addr, "serverAddress=%s", H.proxy);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  evs_prom_harness_stop(&H);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_creation_errors_name_the_field),
      cmocka_unit_test(test_reads_pushed_value),
      cmocka_unit_test(test_empty_without_ignore_null_is_error),
      cmocka_unit_test(test_identical_query_asked_once),
      cmocka_unit_test(test_one_reading_per_period),
      cmocka_unit_test(test_close_safety),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
