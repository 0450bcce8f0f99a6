/* The scalers' shared services (scaler_services.h) built from a configuration: every field of the
 * environment comes from its key, and a redis scaler and a prometheus scaler created through it
 * read a real redis-server and a real Prometheus (HTTPS, test/prom_harness.py --tls) whose CA is
 * given as the "system" trust store: the Prometheus hub builds its TLS configuration through the
 * services' TLS cache, on libuv's thread pool, not on the loop. Then everything closes, the close
 * callback runs once from a later loop iteration, and the loop closes (ASan: nothing leaks). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "evscale/config.h"
#include "evscale/error.h"
#include "evscale/prometheus.h"
#include "evscale/scaler.h"
#include "evscale/scaler_services.h"

#include "prom_harness.h"
#include "redis_helpers.h"

static evs_prom_harness_t H;

typedef struct {
  evs_scaler_t *s;
  int n, error, closed;
  double value;
  char msg[320];
} rec_t;

static void on_reading(evs_scaler_t *s, const evs_reading_t *r, void *data) {
  rec_t *rec = data;
  assert_ptr_equal(s, rec->s);
  rec->n++;
  rec->value = r->value;
  rec->error = r->error;
  snprintf(rec->msg, sizeof rec->msg, "%s", r->error_msg ? r->error_msg : "");
}

static void on_flag(void *arg) { (*(int *)arg)++; }

static evs_config_t *load(const char *yaml) {
  evs_diag_t d;
  evs_diag_init(&d);
  evs_config_t *cfg = NULL;
  int rc = evs_config_load_buffer(yaml, strlen(yaml), "test.yaml", NULL, &cfg, &d);
  if (rc != 0) {
    char b[400];
    evs_diag_format(&d, 0, b, sizeof b);
    fail_msg("config: %s", b);
  }
  evs_diag_free(&d);
  return cfg;
}

static void create(uv_loop_t *loop, const evs_scaler_env_t *env, const char *type,
                   const evs_kv_t *meta, size_t n, rec_t *rec) {
  evs_diag_t d;
  evs_diag_init(&d);
  evs_scaler_config_t c = {.type = type, .object = "svc/test", .index = 0, .metadata = {meta, n}};
  memset(rec, 0, sizeof *rec);
  int rc = evs_scaler_create(loop, env, &c, &rec->s, &d);
  if (rc != 0) {
    char b[400];
    evs_diag_format(&d, 0, b, sizeof b);
    fail_msg("create %s: %s", type, b);
  }
  evs_diag_free(&d);
  assert_int_equal(evs_scaler_start(rec->s, on_reading, rec), 0);
}

/* Runs the loop until rec has a reading without error (the last one is kept) or ms pass. */
static int wait_ok(uv_loop_t *loop, rec_t *rec, uint64_t ms) {
  uint64_t t0 = uv_hrtime();
  while ((rec->n == 0 || rec->error != 0) && (uv_hrtime() - t0) / 1000000 < ms) {
    int never = 0;
    evs_test_run_until(loop, &never, 20);
  }
  return rec->n > 0 && rec->error == 0;
}

static void test_env_from_config(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  evs_config_t *cfg = load("limits:\n  request_timeout: 7s\n  max_response_bytes: 2Mi\n"
                           "backoff:\n  initial: 250ms\n  max: 9s\n"
                           "redis:\n  keyspace_events: off\n  configure_keyspace_events: true\n");
  evs_scaler_services_t *svc = NULL;
  evs_metrics_t *metrics = (evs_metrics_t *)&loop; /* borrowed, never dereferenced here */
  assert_int_equal(evs_scaler_services_new(&loop, cfg, metrics, &svc), 0);
  evs_config_free(cfg);
  const evs_scaler_env_t *e = evs_scaler_services_env(svc);
  assert_non_null(e->http);
  assert_non_null(e->redis);
  assert_non_null(e->tls);
  assert_non_null(e->prom_hub);
  assert_non_null(e->timerq);
  assert_ptr_equal(e->metrics, metrics);
  assert_int_equal(e->request_timeout_ms, 7000);
  assert_int_equal(e->backoff_initial_ms, 250);
  assert_int_equal(e->backoff_max_ms, 9000);
  assert_int_equal(e->redis_keyspace_events, EVS_KEYSPACE_OFF);
  assert_int_equal(e->redis_configure_keyspace, 1);
  int closed = 0;
  evs_scaler_services_close(svc, on_flag, &closed);
  evs_scaler_services_close(svc, on_flag, &closed); /* idempotent */
  assert_int_equal(closed, 0);                      /* never from inside the call */
  assert_true(evs_test_run_until(&loop, &closed, 5000));
  assert_int_equal(closed, 1);
  assert_int_equal(evs_test_loop_close(&loop), 0);
  assert_int_equal(evs_scaler_services_new(NULL, NULL, NULL, &svc), UV_EINVAL);
}

static void test_redis_and_prometheus_through_env(void **state) {
  (void)state;
  cli(&shared, "RPUSH evs-svc-list a b c");
  assert_int_equal(evs_prom_harness_do(&H, "push j evs_svc_value 7"), 0);
  assert_int_equal(evs_prom_harness_do(&H, "wait evs_svc_value 7"), 0);
  usleep(1100000); /* KEDA asks with time=<now> in whole seconds */

  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  evs_config_t *cfg = load("limits:\n  request_timeout: 5s\n"
                           "redis:\n  keyspace_events: off\n");
  /* The harness's CA stands for the system trust store: the trigger names no `ca`, so the hub's
   * TLS configuration verifies Prometheus only if the cache read that bundle. */
  evs_scaler_services_options_t o = {.system_ca_file = H.ca};
  evs_scaler_services_t *svc = NULL;
  assert_int_equal(evs_scaler_services_new_ex(&loop, cfg, NULL, &o, &svc), 0);
  evs_config_free(cfg);
  const evs_scaler_env_t *env = evs_scaler_services_env(svc);

  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", shared.port);
  evs_kv_t rm[] = {{"address", addr}, {"listName", "evs-svc-list"}, {"listLength", "5"}};
  evs_kv_t pm[] = {{"serverAddress", H.prometheus}, {"query", "evs_svc_value"}, {"threshold", "1"}};
  rec_t r, p;
  create(&loop, env, "redis", rm, 3, &r);
  create(&loop, env, "prometheus", pm, 3, &p);
  assert_true(wait_ok(&loop, &r, 20000));
  assert_true(r.value == 3);
  if (!wait_ok(&loop, &p, 20000))
    fail_msg("prometheus: %d readings, error %d: %s", p.n, p.error, p.msg);
  assert_true(p.value == 7);
  assert_int_equal(evs_redis_registry_size(env->redis), 1);
  /* The hub's TLS configuration came from the cache (built on the thread pool). */
  assert_int_equal(evs_tls_cache_size(env->tls), 1);

  evs_scaler_close(r.s, on_flag, &r.closed);
  evs_scaler_close(p.s, on_flag, &p.closed);
  int closed = 0;
  evs_scaler_services_close(svc, on_flag, &closed);
  assert_true(evs_test_run_until(&loop, &closed, 10000));
  assert_int_equal(r.closed, 1);
  assert_int_equal(p.closed, 1);
  assert_int_equal(closed, 1);
  assert_int_equal(evs_test_loop_close(&loop), 0);
}

/* Closing right after creation, while the TLS build of a new https group may be on the thread
 * pool: the services wait for it and free everything. */
static void test_close_while_tls_builds(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  evs_config_t *cfg = load("");
  evs_scaler_services_options_t o = {.system_ca_file = H.ca};
  evs_scaler_services_t *svc = NULL;
  assert_int_equal(evs_scaler_services_new_ex(&loop, cfg, NULL, &o, &svc), 0);
  evs_config_free(cfg);
  const evs_scaler_env_t *env = evs_scaler_services_env(svc);
  evs_kv_t pm[] = {{"serverAddress", H.prometheus}, {"query", "evs_svc_value"}, {"threshold", "1"}};
  rec_t p;
  create(&loop, env, "prometheus", pm, 3, &p);
  assert_int_equal(evs_scaler_set_cadence(p.s, 1), 0); /* the first tick at once */
  int never = 0;
  evs_test_run_until(&loop, &never, 5);
  evs_scaler_close(p.s, on_flag, &p.closed);
  int closed = 0;
  evs_scaler_services_close(svc, on_flag, &closed);
  assert_true(evs_test_run_until(&loop, &closed, 10000));
  assert_int_equal(p.closed, 1);
  assert_int_equal(evs_test_loop_close(&loop), 0);
}

static int setup(void **state) {
  const char *args[] = {"--tls", NULL};
  if (evs_prom_harness_start(&H, args) != 0)
    return -1;
  return group_setup(state);
}

static int teardown(void **state) {
  evs_prom_harness_stop(&H);
  return group_teardown(state);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_env_from_config),
      cmocka_unit_test(test_redis_and_prometheus_through_env),
      cmocka_unit_test(test_close_while_tls_builds),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
