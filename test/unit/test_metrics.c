/* Metrics registry and exposition: exact text for each type, label escaping, float formatting,
 * removal, and `promtool check metrics` over the families the foundation exposes.
 *
 * The expected text follows prometheus/common expfmt/text_create.go (commit
 * 08bb632dfe0f8dee4689f8f4f93d8af23fa43176: MetricFamilyToText, writeSample,
 * writeEscapedString, writeFloat) and Go's strconv.FormatFloat(f, 'g', -1, 64) (golang/go
 * src/strconv/ftoa.go, commit 067e8dfd82163ddcbde248dbe5a1187a417e5d36: %e form when the
 * exponent is < -4 or >= 6 for the shortest representation). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "evscale/error.h"
#include "evscale/health.h"
#include "evscale/http_server.h"
#include "evscale/metrics.h"
#include "evscale/procstat.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

static char *expose(evs_metrics_t *reg) {
  char *out;
  size_t len;
  assert_int_equal(evs_metrics_expose(reg, &out, &len), 0);
  assert_int_equal(strlen(out), len);
  return out;
}

static void test_float_format(void **state) {
  (void)state;
  static const struct {
    double v;
    const char *want;
  } cases[] = {
      {0, "0"},
      {-0.0, "0"},
      {1, "1"},
      {-1, "-1"},
      {0.1, "0.1"},
      {1.5, "1.5"},
      {-2.25, "-2.25"},
      {100, "100"},
      {123456, "123456"},
      {999999, "999999"},
      {1e6, "1e+06"},
      {1234567, "1.234567e+06"},
      {1e21, "1e+21"},
      {0.0001, "0.0001"},
      {0.00001, "1e-05"},
      {0.000123, "0.000123"},
      {0.005, "0.005"},
      {1.0 / 3.0, "0.3333333333333333"},
      {1.7976931348623157e308, "1.7976931348623157e+308"},
      {5e-324, "5e-324"},
      {1700000000.5, "1.7000000005e+09"},
      {INFINITY, "+Inf"},
      {-INFINITY, "-Inf"},
      {NAN, "NaN"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char buf[EVS_METRICS_FLOAT_BUF];
    evs_metrics_format_float(buf, cases[i].v);
    assert_string_equal(buf, cases[i].want);
  }
}

/* The formatter before the fast path (git 9746bdc src/obs/metrics.c): snprintf + strtod at
 * every precision from 15 (normal) or 1 (subnormal) until the digits read back, then Go's
 * layout. Slow but plainly right; the fast path must agree with it on every value. */
static void reference_format(char *out, double v) {
  if (isnan(v) || isinf(v) || v == 0 || (v == (double)(long long)v && fabs(v) < 1e6)) {
    evs_metrics_format_float(out, v); /* the special cases are checked by the table above */
    return;
  }
  char tmp[64], digits[24];
  int prec = fabs(v) >= 2.2250738585072014e-308 ? 15 : 1;
  for (; prec < 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
    if (strtod(tmp, NULL) == v)
      break;
  }
  snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
  const char *e = strchr(tmp, 'e');
  int exp = atoi(e + 1), n = 0;
  for (const char *q = tmp; q < e; q++)
    if (*q >= '0' && *q <= '9')
      digits[n++] = *q;
  while (n > 1 && digits[n - 1] == '0')
    n--;
  char *o = out;
  if (v < 0)
    *o++ = '-';
  if (exp < -4 || exp >= 6) {
    *o++ = digits[0];
    if (n > 1) {
      *o++ = '.';
      memcpy(o, digits + 1, (size_t)n - 1);
      o += n - 1;
    }
    sprintf(o, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    return;
  }
  if (exp < 0) {
    o += sprintf(o, "0.%0*d", -exp - 1, 0) - (exp == -1 ? 1 : 0);
    if (exp == -1)
      *o = '\0';
    memcpy(o, digits, (size_t)n);
    o[n] = '\0';
    return;
  }
  for (int i = 0; i <= exp; i++)
    *o++ = i < n ? digits[i] : '0';
  if (n > exp + 1) {
    *o++ = '.';
    memcpy(o, digits + exp + 1, (size_t)(n - exp - 1));
    o += n - exp - 1;
  }
  *o = '\0';
}

static uint64_t g_rng = 88172645463325252ull;
static uint64_t next_rand(void) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return g_rng;
}

/* A random double of one of the shapes samples have: any bit pattern (mostly 17 digits, every
 * exponent, subnormals), a short decimal scaled by a power of ten (the fast path and its edges),
 * an integer, a ratio (16-17 digits), a value next to a short decimal (one ulp off). */
static double random_double(void) {
  uint64_t r = next_rand();
  double d;
  switch (r % 5) {
  case 0:
    memcpy(&d, &r, sizeof d);
    return d;
  case 1: {
    double m = (double)(next_rand() % 1000000000000000ull) / (double)(1ull << (r >> 8) % 50);
    return m * pow(10, (int)((r >> 16) % 60) - 30);
  }
  case 2:
    return (double)(int64_t)(next_rand() >> ((r >> 8) % 64));
  case 3:
    return (double)(next_rand() % 100000) / (double)(1 + next_rand() % 999);
  default: {
    double m = (double)(next_rand() % 100000000) * pow(10, (int)((r >> 16) % 40) - 20);
    return nextafter(m, (r >> 32) & 1 ? INFINITY : -INFINITY);
  }
  }
}

static void test_float_format_against_reference(void **state) {
  (void)state;
  char got[EVS_METRICS_FLOAT_BUF], want[64];
  long n = getenv("EVS_FLOAT_CASES") ? atol(getenv("EVS_FLOAT_CASES")) : 2000000;
  for (long i = 0; i < n; i++) {
    double v = random_double();
    if (isnan(v))
      continue;
    size_t len = evs_metrics_format_float(got, v);
    reference_format(want, v);
    if (strcmp(got, want) != 0 || len != strlen(got)) {
      print_message("v=%a: got %s want %s\n", v, got, want);
      fail();
    }
    assert_true(strtod(got, NULL) == v || (v == 0 && strtod(got, NULL) == 0));
  }
}

static void test_counter_gauge_exact(void **state) {
  (void)state;
  evs_metrics_t *reg = evs_metrics_new();
  evs_metric_family_t *c, *g;
  evs_metric_desc_t dc = {"b_requests_total", "Requests.", EVS_METRIC_COUNTER, NULL, 0, NULL, 0};
  evs_metric_desc_t dg = {"a_temp", "Line one\nback\\slash", EVS_METRIC_GAUGE, NULL, 0, NULL, 0};
  assert_int_equal(evs_metrics_register(reg, &dc, &c), 0);
  assert_int_equal(evs_metrics_register(reg, &dg, &g), 0);
  assert_int_equal(evs_metrics_register(reg, &dc, NULL), UV_EEXIST);
  char *out = expose(reg);
  assert_string_equal(out, "# HELP a_temp Line one\\nback\\\\slash\n"
                           "# TYPE a_temp gauge\n"
                           "a_temp 0\n"
                           "# HELP b_requests_total Requests.\n"
                           "# TYPE b_requests_total counter\n"
                           "b_requests_total 0\n");
  free(out);
  evs_metric_t *cm = evs_metric_family_child(c, NULL);
  evs_metric_inc(cm);
  evs_metric_add(cm, 2.5);
  evs_metric_add(cm, -10); /* ignored: counters only go up */
  evs_metric_add(cm, NAN);
  evs_metric_set(evs_metric_family_child(g, NULL), -1e-7);
  out = expose(reg);
  assert_string_equal(out, "# HELP a_temp Line one\\nback\\\\slash\n"
                           "# TYPE a_temp gauge\n"
                           "a_temp -1e-07\n"
                           "# HELP b_requests_total Requests.\n"
                           "# TYPE b_requests_total counter\n"
                           "b_requests_total 3.5\n");
  free(out);
  evs_metrics_free(reg);
}

static void test_labels_escaping_order_remove(void **state) {
  (void)state;
  evs_metrics_t *reg = evs_metrics_new();
  static const char *labels[] = {"namespace", "name"};
  evs_metric_desc_t d = {"x_items", NULL, EVS_METRIC_GAUGE, labels, 2, NULL, 0};
  evs_metric_family_t *f;
  assert_int_equal(evs_metrics_register(reg, &d, &f), 0);
  char *out = expose(reg);
  assert_string_equal(out, ""); /* a labelled family without children prints nothing */
  free(out);
  const char *v1[] = {"ns-b", "q\"uote\\back\nline"};
  const char *v2[] = {"ns-a", "z"};
  const char *v3[] = {"ns-a", "a"};
  const char *v4[] = {"ns-a", ""};
  evs_metric_set(evs_metric_family_child(f, v1), 1);
  evs_metric_set(evs_metric_family_child(f, v2), 2);
  evs_metric_set(evs_metric_family_child(f, v3), 3);
  evs_metric_set(evs_metric_family_child(f, v4), 4);
  assert_ptr_equal(evs_metric_family_child(f, v2), evs_metric_family_lookup(f, v2));
  assert_int_equal(evs_metric_family_size(f), 4);
  /* A child's labels as given (the empty one too), unescaped. */
  assert_string_equal(evs_metric_label(evs_metric_family_lookup(f, v1), 0), "ns-b");
  assert_string_equal(evs_metric_label(evs_metric_family_lookup(f, v1), 1), v1[1]);
  assert_string_equal(evs_metric_label(evs_metric_family_lookup(f, v4), 1), "");
  assert_null(evs_metric_label(evs_metric_family_lookup(f, v4), 2));
  assert_null(evs_metric_label(NULL, 0));
  out = expose(reg);
  assert_string_equal(out, "# TYPE x_items gauge\n"
                           "x_items{namespace=\"ns-a\",name=\"\"} 4\n"
                           "x_items{namespace=\"ns-a\",name=\"a\"} 3\n"
                           "x_items{namespace=\"ns-a\",name=\"z\"} 2\n"
                           "x_items{namespace=\"ns-b\",name=\"q\\\"uote\\\\back\\nline\"} 1\n");
  free(out);
  assert_int_equal(evs_metric_family_remove(f, v1), 0);
  assert_int_equal(evs_metric_family_remove(f, v1), EVS_ENOTFOUND);
  assert_int_equal(evs_metric_family_remove_matching(f, 0, "ns-a"), 3);
  assert_null(evs_metric_family_lookup(f, v2));
  assert_int_equal(evs_metric_family_size(f), 0);
  const char *bad[] = {"x", NULL};
  assert_null(evs_metric_family_child(f, bad));
  assert_null(evs_metric_family_child(f, NULL));
  evs_metric_inc(NULL); /* a failed child() costs only that sample */
  evs_metrics_free(reg);
}

static void test_histogram_exact(void **state) {
  (void)state;
  evs_metrics_t *reg = evs_metrics_new();
  static const char *labels[] = {"op"};
  static const double b[] = {0.1, 1, 2.5};
  evs_metric_desc_t d = {"h_seconds", "Durations.", EVS_METRIC_HISTOGRAM, labels, 1, b, 3};
  evs_metric_family_t *f;
  assert_int_equal(evs_metrics_register(reg, &d, &f), 0);
  const char *v[] = {"read"};
  evs_metric_t *m = evs_metric_family_child(f, v);
  evs_metric_observe(m, 0.05);
  evs_metric_observe(m, 0.1); /* le is inclusive */
  evs_metric_observe(m, 2);
  evs_metric_observe(m, 7);
  assert_int_equal(evs_metric_count(m), 4);
  char *out = expose(reg);
  assert_string_equal(out, "# HELP h_seconds Durations.\n"
                           "# TYPE h_seconds histogram\n"
                           "h_seconds_bucket{op=\"read\",le=\"0.1\"} 2\n"
                           "h_seconds_bucket{op=\"read\",le=\"1\"} 2\n"
                           "h_seconds_bucket{op=\"read\",le=\"2.5\"} 3\n"
                           "h_seconds_bucket{op=\"read\",le=\"+Inf\"} 4\n"
                           "h_seconds_sum{op=\"read\"} 9.15\n"
                           "h_seconds_count{op=\"read\"} 4\n");
  free(out);
  evs_metric_desc_t d2 = {"h2", NULL, EVS_METRIC_HISTOGRAM, NULL, 0, NULL, 0};
  evs_metric_family_t *f2;
  assert_int_equal(evs_metrics_register(reg, &d2, &f2), 0); /* default buckets */
  evs_metric_observe(evs_metric_family_child(f2, NULL), 0.3);
  out = expose(reg);
  assert_non_null(strstr(out, "# TYPE h2 histogram\n"
                              "h2_bucket{le=\"0.005\"} 0\n"));
  assert_non_null(strstr(out, "h2_bucket{le=\"0.25\"} 0\nh2_bucket{le=\"0.5\"} 1\n"));
  assert_non_null(strstr(out, "h2_bucket{le=\"10\"} 1\nh2_bucket{le=\"+Inf\"} 1\n"
                              "h2_sum 0.3\nh2_count 1\n"));
  free(out);
  evs_metrics_free(reg);
}

static void test_name_validation(void **state) {
  (void)state;
  evs_metrics_t *reg = evs_metrics_new();
  static const char *ok[] = {"scaledObject", "triggerIndex"};
  static const char *dup[] = {"a", "a"};
  static const char *reserved[] = {"__name"};
  static const char *le[] = {"le"};
  static const char *digit[] = {"1a"};
  static const double dec[] = {1, 0.5};
  static const double inf[] = {1, INFINITY};
  evs_metric_desc_t cases[] = {
      {"9bad", NULL, EVS_METRIC_GAUGE, NULL, 0, NULL, 0},
      {"", NULL, EVS_METRIC_GAUGE, NULL, 0, NULL, 0},
      {"a-b", NULL, EVS_METRIC_GAUGE, NULL, 0, NULL, 0},
      {"g", NULL, EVS_METRIC_GAUGE, dup, 2, NULL, 0},
      {"g", NULL, EVS_METRIC_GAUGE, reserved, 1, NULL, 0},
      {"g", NULL, EVS_METRIC_GAUGE, digit, 1, NULL, 0},
      {"h", NULL, EVS_METRIC_HISTOGRAM, le, 1, NULL, 0},
      {"h", NULL, EVS_METRIC_HISTOGRAM, NULL, 0, dec, 2},
      {"h", NULL, EVS_METRIC_HISTOGRAM, NULL, 0, inf, 2},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    assert_int_equal(evs_metrics_register(reg, &cases[i], NULL), UV_EINVAL);
  evs_metric_desc_t good = {"ns:sub_metric", NULL, EVS_METRIC_GAUGE, ok, 2, NULL, 0};
  assert_int_equal(evs_metrics_register(reg, &good, NULL), 0);
  assert_non_null(evs_metrics_find(reg, "ns:sub_metric"));
  assert_null(evs_metrics_find(reg, "nope"));
  evs_metrics_free(reg);
}

/* KEDA's families keep KEDA's names and camelCase labels; the registry must take them as they
 * are (promtool's lint is not applied to these). */
static void test_keda_families_exact(void **state) {
  (void)state;
  evs_metrics_t *reg = evs_metrics_new();
  static const char *labels[] = {"namespace", "metric",       "scaledObject",
                                 "scaler",    "triggerIndex", "type"};
  evs_metric_desc_t d = {"keda_scaler_metrics_value",
                         "The current value for each scaler's metric that would be used by the "
                         "HPA in computing the target average.",
                         EVS_METRIC_GAUGE,
                         labels,
                         6,
                         NULL,
                         0};
  evs_metric_family_t *f;
  assert_int_equal(evs_metrics_register(reg, &d, &f), 0);
  const char *v[] = {"prod", "s0-redis-jobs", "worker", "redisScaler", "0", "scaledobject"};
  evs_metric_set(evs_metric_family_child(f, v), 42);
  char *out = expose(reg);
  assert_string_equal(
      out, "# HELP keda_scaler_metrics_value The current value for each scaler's metric that "
           "would be used by the HPA in computing the target average.\n"
           "# TYPE keda_scaler_metrics_value gauge\n"
           "keda_scaler_metrics_value{namespace=\"prod\",metric=\"s0-redis-jobs\","
           "scaledObject=\"worker\",scaler=\"redisScaler\",triggerIndex=\"0\","
           "type=\"scaledobject\"} 42\n");
  free(out);
  evs_metrics_free(reg);
}

/* Many children: the table grows, lookups stay right, removal of all leaves nothing. */
static void test_many_children(void **state) {
  (void)state;
  evs_metrics_t *reg = evs_metrics_new();
  static const char *labels[] = {"so"};
  evs_metric_desc_t d = {"many", NULL, EVS_METRIC_COUNTER, labels, 1, NULL, 0};
  evs_metric_family_t *f;
  assert_int_equal(evs_metrics_register(reg, &d, &f), 0);
  char name[32];
  for (int i = 0; i < 20000; i++) {
    snprintf(name, sizeof name, "so-%d", i);
    const char *v[] = {name};
    evs_metric_add(evs_metric_family_child(f, v), i);
  }
  assert_int_equal(evs_metric_family_size(f), 20000);
  for (int i = 0; i < 20000; i += 2) {
    snprintf(name, sizeof name, "so-%d", i);
    const char *v[] = {name};
    assert_true(evs_metric_value(evs_metric_family_lookup(f, v)) == i);
    assert_int_equal(evs_metric_family_remove(f, v), 0);
  }
  assert_int_equal(evs_metric_family_size(f), 10000);
  char *out = expose(reg);
  assert_non_null(strstr(out, "many{so=\"so-19999\"} 19999\n"));
  assert_null(strstr(out, "many{so=\"so-19998\"}"));
  free(out);
  evs_metrics_free(reg);
}

static int g_collects;
static void collect(evs_metric_family_t *f, void *data) {
  (void)data;
  g_collects++;
  evs_metric_set(evs_metric_family_child(f, NULL), g_collects * 10);
}

static void test_collect_callback(void **state) {
  (void)state;
  evs_metrics_t *reg = evs_metrics_new();
  evs_metric_desc_t d = {"cb_gauge", NULL, EVS_METRIC_GAUGE, NULL, 0, NULL, 0};
  evs_metric_family_t *f;
  assert_int_equal(evs_metrics_register(reg, &d, &f), 0);
  evs_metric_family_set_collect(f, collect, NULL);
  g_collects = 0;
  char *out = expose(reg);
  assert_string_equal(out, "# TYPE cb_gauge gauge\ncb_gauge 10\n");
  free(out);
  out = expose(reg);
  assert_string_equal(out, "# TYPE cb_gauge gauge\ncb_gauge 20\n");
  free(out);
  evs_metrics_free(reg);
}

/* Process metrics against what the test can check independently: two new descriptors show up,
 * the start time is this process's (now minus at most the test's run time), RSS is non-zero,
 * max fds is the soft RLIMIT_NOFILE. */
static void test_procstat_values(void **state) {
  (void)state;
  evs_procstat_t a, b;
  assert_int_equal(evs_procstat_read(&a), 0);
  int p[2];
  assert_int_equal(pipe(p), 0);
  assert_int_equal(evs_procstat_read(&b), 0);
  close(p[0]);
  close(p[1]);
  assert_true(b.open_fds == a.open_fds + 2);
  assert_true(a.resident_bytes > 1024 * 1024);
  assert_true(a.virtual_bytes >= a.resident_bytes);
  assert_true(a.cpu_seconds >= 0 && b.cpu_seconds >= a.cpu_seconds);
  double now = (double)time(NULL);
  assert_true(a.start_time_seconds <= now + 2 && a.start_time_seconds > now - 600);
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur != RLIM_INFINITY)
    assert_true(a.max_fds == (double)rl.rlim_cur);
}

static void closed(void *data) { *(int *)data = 1; }

/* The evscale_* and process_* families the foundation registers pass promtool's parser and
 * linter. promtool comes with the Debian package 'prometheus' (tools/install-deps.sh). */
static void test_promtool_check(void **state) {
  (void)state;
  if (access("/usr/bin/promtool", X_OK) != 0) {
    print_message("SKIP: /usr/bin/promtool absent (install the Debian package 'prometheus')\n");
    skip();
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  evs_metrics_t *reg = evs_metrics_new();
  evs_health_t *h;
  assert_int_equal(evs_health_new(&loop, reg, NULL, &h), 0);
  evs_health_config_reload(h, 1, 1700000000.25);
  evs_health_config_reload(h, 0, 1700000100);
  char *out = expose(reg);
  assert_non_null(strstr(out, "evscale_build_info{version=\""));
  assert_non_null(strstr(out, "evscale_config_reloads_total{result=\"failure\"} 1\n"));
  assert_non_null(strstr(out, "evscale_config_reloads_total{result=\"success\"} 1\n"));
  assert_non_null(strstr(out, "evscale_config_last_reload_successful 0\n"));
  assert_non_null(
      strstr(out, "evscale_config_last_reload_success_timestamp_seconds 1.70000000025e+09\n"));
  assert_non_null(strstr(out, "\nprocess_resident_memory_bytes "));
  assert_non_null(strstr(out, "\nprocess_open_fds "));
  char path[] = "/tmp/evs_promtool_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, out, strlen(out)), (ssize_t)strlen(out));
  close(fd);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "/usr/bin/promtool check metrics < %s 2>&1", path);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  char report[4096] = {0};
  size_t n = fread(report, 1, sizeof report - 1, p);
  int st = pclose(p);
  unlink(path);
  if (st != 0 || n != 0)
    print_message("promtool said (status %d):\n%s\n--- input ---\n%s\n", st, report, out);
  assert_int_equal(st, 0);
  assert_int_equal(n, 0);
  free(out);
  int done = 0;
  evs_health_close(h, closed, &done);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_true(done);
  assert_int_equal(uv_loop_close(&loop), 0);
  evs_metrics_free(reg);
}

/* The last occurrence of needle in hay (NULL when none). */
static const char *strrstr_last(const char *hay, const char *needle) {
  const char *last = NULL;
  for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
    last = p;
  return last;
}

/* ---- removal by handle, streams --------------------------------------------------------- */

static void test_remove_by_handle(void **state) {
  (void)state;
  evs_metrics_t *reg = evs_metrics_new();
  static const char *labels[] = {"so", "trigger"};
  evs_metric_desc_t d = {"h_items", NULL, EVS_METRIC_GAUGE, labels, 2, NULL, 0};
  evs_metric_family_t *f;
  assert_int_equal(evs_metrics_register(reg, &d, &f), 0);
  evs_metric_t *m[6];
  char so[16], tr[16];
  for (int i = 0; i < 6; i++) {
    snprintf(so, sizeof so, "so-%d", i / 2);
    snprintf(tr, sizeof tr, "%d", i % 2);
    const char *v[] = {so, tr};
    m[i] = evs_metric_family_child(f, v);
    evs_metric_set(m[i], i);
  }
  assert_int_equal(evs_metric_remove(m[2]), 0);
  assert_int_equal(evs_metric_remove(m[3]), 0);
  assert_int_equal(evs_metric_remove(NULL), EVS_ENOTFOUND);
  assert_int_equal(evs_metric_family_size(f), 4);
  const char *gone[] = {"so-1", "0"}, *kept[] = {"so-2", "1"};
  assert_null(evs_metric_family_lookup(f, gone));
  assert_ptr_equal(evs_metric_family_lookup(f, kept), m[5]);
  char *out = expose(reg);
  assert_string_equal(out, "# TYPE h_items gauge\n"
                           "h_items{so=\"so-0\",trigger=\"0\"} 0\n"
                           "h_items{so=\"so-0\",trigger=\"1\"} 1\n"
                           "h_items{so=\"so-2\",trigger=\"0\"} 4\n"
                           "h_items{so=\"so-2\",trigger=\"1\"} 5\n");
  free(out);
  evs_metrics_free(reg);
}

/* A registry of three families (one a histogram) and n children in the big one. */
static evs_metrics_t *stream_registry(int n, evs_metric_t **kids) {
  evs_metrics_t *reg = evs_metrics_new();
  static const char *labels[] = {"so"};
  evs_metric_desc_t big = {"m_big", "Big.", EVS_METRIC_GAUGE, labels, 1, NULL, 0};
  evs_metric_desc_t hist = {"m_hist", "Hist.", EVS_METRIC_HISTOGRAM, labels, 1, NULL, 0};
  evs_metric_desc_t one = {"a_one", NULL, EVS_METRIC_COUNTER, NULL, 0, NULL, 0};
  evs_metric_family_t *fb, *fh;
  assert_int_equal(evs_metrics_register(reg, &big, &fb), 0);
  assert_int_equal(evs_metrics_register(reg, &hist, &fh), 0);
  assert_int_equal(evs_metrics_register(reg, &one, NULL), 0);
  char so[16];
  for (int i = 0; i < n; i++) {
    snprintf(so, sizeof so, "so-%05d", i);
    const char *v[] = {so};
    kids[i] = evs_metric_family_child(fb, v);
    evs_metric_set(kids[i], i + 0.25);
    if (i % 100 == 0)
      evs_metric_observe(evs_metric_family_child(fh, v), i / 1000.0);
  }
  return reg;
}

/* Slices of any size put together are the one-go exposition. */
static void test_stream_equals_expose(void **state) {
  (void)state;
  enum { N = 5000 };
  evs_metric_t *kids[N];
  evs_metrics_t *reg = stream_registry(N, kids);
  char *whole = expose(reg);
  static const size_t sizes[] = {0, 1, 100, 4096, 1 << 20};
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
    evs_metrics_stream_t *st;
    assert_int_equal(evs_metrics_stream_new(reg, &st), 0);
    assert_int_equal(evs_metrics_streams(reg), 1);
    size_t total = 0, slices = 0;
    char *chunk;
    size_t len;
    for (;;) {
      assert_int_equal(evs_metrics_stream_next(st, sizes[s], &chunk, &len), 0);
      if (chunk == NULL)
        break;
      assert_true(len > 0 && chunk[len - 1] == '\n'); /* whole lines */
      assert_true(len <= (sizes[s] ? sizes[s] : 1) + 2048);
      assert_memory_equal(chunk, whole + total, len);
      total += len;
      slices++;
      free(chunk);
    }
    assert_int_equal(total, strlen(whole));
    assert_true(evs_metrics_stream_done(st));
    if (sizes[s] == 4096)
      assert_true(slices > 20);
    evs_metrics_stream_free(st);
    assert_int_equal(evs_metrics_streams(reg), 0);
  }
  free(whole);
  evs_metrics_free(reg);
}

/* The registry changes between slices: series removed before their slice are not printed (and
 * not freed under the stream: ASan), series added to the family being printed make it re-sort
 * without disturbing the stream's view, a family registered after the stream's position is
 * printed, one before it is not; nothing is printed twice. */
static void test_stream_survives_changes(void **state) {
  (void)state;
  enum { N = 3000 };
  evs_metric_t *kids[N];
  evs_metrics_t *reg = stream_registry(N, kids);
  evs_metric_family_t *big = evs_metrics_find(reg, "m_big");
  evs_metrics_stream_t *st;
  assert_int_equal(evs_metrics_stream_new(reg, &st), 0);
  char *body = calloc(1, 1 << 20), *chunk; /* zeroed: strstr reads it as a string */
  size_t total = 0, len;
  /* Into the big family: a_one comes first, then m_big's first lines. */
  assert_int_equal(evs_metrics_stream_next(st, 2000, &chunk, &len), 0);
  memcpy(body + total, chunk, len);
  total += len;
  free(chunk);
  assert_non_null(strstr(body, "m_big{so=\"so-00010\"}"));
  assert_null(strstr(body, "m_big{so=\"so-01000\"}"));
  for (int i = 1000; i < N; i++) /* not printed yet: they must not appear */
    assert_int_equal(evs_metric_remove(kids[i]), 0);
  assert_int_equal(evs_metric_remove(kids[0]), 0); /* printed already */
  const char *nv[] = {"so-00500x"};
  evs_metric_set(evs_metric_family_child(big, nv), 7); /* re-sort while the view is held */
  evs_metric_desc_t late = {"z_late", NULL, EVS_METRIC_GAUGE, NULL, 0, NULL, 0};
  evs_metric_desc_t early = {"b_early", NULL, EVS_METRIC_GAUGE, NULL, 0, NULL, 0};
  assert_int_equal(evs_metrics_register(reg, &late, NULL), 0);
  assert_int_equal(evs_metrics_register(reg, &early, NULL), 0);
  for (;;) {
    assert_int_equal(evs_metrics_stream_next(st, 2000, &chunk, &len), 0);
    if (chunk == NULL)
      break;
    memcpy(body + total, chunk, len);
    total += len;
    free(chunk);
  }
  body[total] = '\0';
  evs_metrics_stream_free(st);
  assert_non_null(strstr(body, "m_big{so=\"so-00000\"} 0.25\n"));
  assert_non_null(strstr(body, "m_big{so=\"so-00999\"} 999.25\n"));
  assert_null(strstr(body, "so-01000\"} 1000.25"));
  assert_null(strstr(body, "so-02999"));
  assert_null(strstr(body, "so-00500x")); /* created meanwhile: not in this stream's view */
  assert_non_null(strstr(body, "m_hist_bucket{so=\"so-02900\",le=\"+Inf\"} 1\n"));
  assert_non_null(strstr(body, "\nz_late 0\n"));
  assert_null(strstr(body, "b_early"));
  assert_ptr_equal(strstr(body, "so-00999\""), strrstr_last(body, "so-00999\""));
  free(body);
  /* The next exposition sees the registry as it is now. */
  char *out = expose(reg);
  assert_non_null(strstr(out, "m_big{so=\"so-00500x\"} 7\n"));
  assert_non_null(strstr(out, "\nb_early 0\n"));
  assert_null(strstr(out, "m_big{so=\"so-00000\"}"));
  free(out);
  evs_metrics_free(reg);
}

/* ---- /metrics streamed over a socket ----------------------------------------------------- */

/* 60000 series of 330 bytes: a 20 MB body, several times what the kernel's socket buffers can
 * take (tcp_wmem's default maximum is 4 MB), so the scrape is still running when the scraper
 * stalls. */
enum { SCRAPE_N = 60000 };
#define PAD10 "xxxxxxxxxx"
#define PAD300                                                                                     \
  PAD10 PAD10 PAD10 PAD10 PAD10 PAD10 PAD10 PAD10 PAD10 PAD10 PAD10 PAD10 PAD10 PAD10 PAD10 PAD10  \
      PAD10 PAD10 PAD10 PAD10 PAD10 PAD10 PAD10 PAD10 PAD10 PAD10 PAD10 PAD10 PAD10 PAD10

typedef struct {
  uv_loop_t loop;
  evs_metrics_t *reg;
  evs_health_t *health;
  evs_http_server_t *srv;
  uv_async_t remove, done;
  uv_sem_t removed;
  evs_metric_t *kids[SCRAPE_N];
  int port;
  size_t streams_at_removal;
  char *resp;
  size_t resp_len;
  char probe[4096];
  int health_closed;
} scrape_ctx_t;

static int scrape_connect(int port, int rcvbuf) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (rcvbuf) /* before connect: the window the client offers stays small */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct timeval tv = {30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static size_t recv_upto(int fd, char *buf, size_t want) {
  size_t len = 0;
  ssize_t r;
  while (len < want && (r = recv(fd, buf + len, want - len, 0)) > 0)
    len += (size_t)r;
  return len;
}

/* The scraper reads the start of the answer and stops reading (a slow Prometheus); while it
 * stalls, the loop removes half the series and answers a probe on another connection; then the
 * scraper reads the rest, and the /healthz it pipelined behind the scrape. */
static void scrape_client(void *arg) {
  scrape_ctx_t *c = arg;
  int fd = scrape_connect(c->port, 4096);
  const char req[] = "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n"
                     "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
  if (fd < 0 || send(fd, req, sizeof req - 1, MSG_NOSIGNAL) != (ssize_t)sizeof req - 1) {
    uv_async_send(&c->done);
    return;
  }
  size_t cap = 64 << 20;
  c->resp = malloc(cap);
  c->resp_len = recv_upto(fd, c->resp, 32 * 1024);
  usleep(200 * 1000); /* let the server fill what buffers it can */
  uv_async_send(&c->remove);
  uv_sem_wait(&c->removed);
  int p = scrape_connect(c->port, 0);
  const char probe[] = "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
  if (p >= 0 && send(p, probe, sizeof probe - 1, MSG_NOSIGNAL) == (ssize_t)sizeof probe - 1)
    c->probe[recv_upto(p, c->probe, sizeof c->probe - 1)] = '\0';
  if (p >= 0)
    close(p);
  c->resp_len += recv_upto(fd, c->resp + c->resp_len, cap - 1 - c->resp_len);
  c->resp[c->resp_len] = '\0';
  close(fd);
  uv_async_send(&c->done);
}

static void on_scrape_remove(uv_async_t *a) {
  scrape_ctx_t *c = a->data;
  c->streams_at_removal = evs_metrics_streams(c->reg);
  for (int i = SCRAPE_N / 2; i < SCRAPE_N; i++)
    evs_metric_remove(c->kids[i]);
  uv_sem_post(&c->removed);
}

static void on_scrape_health_closed(void *data) { ((scrape_ctx_t *)data)->health_closed = 1; }

static void on_scrape_srv_closed(evs_http_server_t *s, void *data) {
  (void)s;
  scrape_ctx_t *c = data;
  evs_health_close(c->health, on_scrape_health_closed, c);
}

static void on_scrape_done(uv_async_t *a) {
  scrape_ctx_t *c = a->data;
  evs_http_server_close(c->srv, on_scrape_srv_closed, c);
  uv_close((uv_handle_t *)&c->done, NULL);
  uv_close((uv_handle_t *)&c->remove, NULL);
}

/* Decodes a chunked body starting at p; returns the end of the terminal chunk, or NULL. */
static const char *dechunk(const char *p, char *out, size_t *out_len) {
  *out_len = 0;
  for (;;) {
    char *end;
    unsigned long n = strtoul(p, &end, 16);
    if (end == p || strncmp(end, "\r\n", 2) != 0)
      return NULL;
    p = end + 2;
    if (n == 0)
      return strncmp(p, "\r\n", 2) == 0 ? p + 2 : NULL;
    memcpy(out + *out_len, p, n);
    *out_len += n;
    p += n;
    if (strncmp(p, "\r\n", 2) != 0)
      return NULL;
    p += 2;
  }
}

static void test_scrape_streamed(void **state) {
  (void)state;
  scrape_ctx_t *c = calloc(1, sizeof(*c));
  uv_loop_init(&c->loop);
  c->reg = evs_metrics_new();
  assert_int_equal(evs_health_new(&c->loop, c->reg, NULL, &c->health), 0);
  static const char *labels[] = {"so"};
  evs_metric_desc_t d = {"zz_series", "Many.", EVS_METRIC_GAUGE, labels, 1, NULL, 0};
  evs_metric_family_t *f;
  assert_int_equal(evs_metrics_register(c->reg, &d, &f), 0);
  char so[400];
  for (int i = 0; i < SCRAPE_N; i++) {
    snprintf(so, sizeof so, "so-%05d" PAD300, i);
    const char *v[] = {so};
    c->kids[i] = evs_metric_family_child(f, v);
    evs_metric_set(c->kids[i], i + 0.5);
  }
  assert_int_equal(evs_http_server_new(&c->loop, NULL, &c->srv), 0);
  assert_int_equal(evs_health_attach(c->health, c->srv), 0);
  assert_int_equal(evs_http_server_listen(c->srv, "127.0.0.1:0"), 0);
  c->port = evs_http_server_port(c->srv);
  uv_async_init(&c->loop, &c->remove, on_scrape_remove);
  uv_async_init(&c->loop, &c->done, on_scrape_done);
  c->remove.data = c->done.data = c;
  uv_sem_init(&c->removed, 0);
  uv_thread_t t;
  uv_thread_create(&t, scrape_client, c);
  uv_run(&c->loop, UV_RUN_DEFAULT);
  uv_thread_join(&t);
  uv_sem_destroy(&c->removed);
  assert_true(c->health_closed);
  assert_int_equal(uv_loop_close(&c->loop), 0);
  assert_int_equal(evs_metrics_streams(c->reg), 0);

  /* The probe was answered while the scrape was still in progress. */
  assert_true(c->streams_at_removal == 1);
  assert_non_null(strstr(c->probe, "HTTP/1.1 200 OK\r\n"));
  const char *r = c->resp;
  assert_non_null(r);
  assert_true(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
  const char *hend = strstr(r, "\r\n\r\n");
  assert_non_null(hend);
  assert_non_null(strstr(r, "Transfer-Encoding: chunked\r\n"));
  assert_true(strstr(r, "Content-Length") == NULL || strstr(r, "Content-Length") > hend);
  char *body = malloc(c->resp_len + 1);
  size_t blen;
  const char *after = dechunk(hend + 4, body, &blen);
  assert_non_null(after);
  body[blen] = '\0';
  /* The pipelined /healthz comes after the whole scrape. */
  assert_true(strncmp(after, "HTTP/1.1 200 OK\r\n", 17) == 0);
  assert_non_null(strstr(after, "\r\n\r\nok\n"));
  /* Series printed before the stall are there once; those removed before their slice are not. */
  assert_non_null(
      strstr(body, "# TYPE zz_series gauge\nzz_series{so=\"so-00000" PAD300 "\"} 0.5\n"));
  assert_non_null(strstr(body, "zz_series{so=\"so-29999" PAD300 "\"} 29999.5\n"));
  assert_null(strstr(body, "zz_series{so=\"so-30000"));
  assert_null(strstr(body, "zz_series{so=\"so-59999"));
  assert_non_null(strstr(body, "# TYPE evscale_build_info gauge\n"));
  assert_true(blen > 0 && body[blen - 1] == '\n');
  free(body);
  free(c->resp);
  evs_metrics_free(c->reg);
  free(c);
}

static void closed_cb_flag(void *data) { *(int *)data = 1; }

/* Socketless connections take the same streamed path: HTTP/1.0 gets the body without chunks and
 * the connection closes after it; HEAD gets the headers alone and the stream ends at once;
 * HTTP/1.1 gets chunks, then the request pipelined behind is answered. */
static void sink(const char *data, size_t len, void *out) {
  char **buf = out;
  size_t have = *buf ? strlen(*buf) : 0;
  *buf = realloc(*buf, have + len + 1);
  memcpy(*buf + have, data, len);
  (*buf)[have + len] = '\0';
}

/* The answer to req lands in *out (malloc'd; NULL when nothing came). */
static char *vconn_get(evs_http_server_t *srv, const char *req, int *closed, char **out) {
  evs_http_vconn_t *v;
  *out = NULL;
  assert_int_equal(evs_http_vconn_new(srv, sink, out, &v), 0);
  *closed = evs_http_vconn_feed(v, req, strlen(req)) == EVS_ECLOSED;
  evs_http_vconn_free(v);
  assert_non_null(*out);
  return *out;
}

static void test_scrape_streamed_vconn(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  enum { N = 20000 };
  evs_metric_t *kids[N];
  evs_metrics_t *reg = stream_registry(N, kids);
  evs_health_t *h;
  assert_int_equal(evs_health_new(&loop, reg, NULL, &h), 0);
  evs_http_server_t *srv;
  assert_int_equal(evs_http_server_new(&loop, NULL, &srv), 0);
  assert_int_equal(evs_health_attach(h, srv), 0);
  int closed;
  char *r, *buf;
  r = vconn_get(srv, "GET /metrics HTTP/1.0\r\n\r\n", &closed, &buf);
  assert_true(closed);
  assert_non_null(strstr(r, "Connection: close\r\n"));
  assert_null(strstr(r, "Transfer-Encoding"));
  assert_null(strstr(r, "Content-Length"));
  const char *body = strstr(r, "\r\n\r\n") + 4;
  assert_true(strlen(body) > EVS_HEALTH_SCRAPE_SLICE);
  assert_non_null(strstr(body, "m_big{so=\"so-19999\"} 19999.25\n"));
  assert_null(strstr(body, "\r\n")); /* no chunk framing */
  free(r);
  r = vconn_get(srv, "HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n", &closed, &buf);
  assert_false(closed);
  assert_non_null(strstr(r, "Transfer-Encoding: chunked\r\n"));
  if (strstr(r, "\r\n\r\n")[4] != 0)
    print_message("HEAD answer:\n%.300s\n", r);
  assert_true(strstr(r, "\r\n\r\n")[4] == 0);
  assert_int_equal(evs_metrics_streams(reg), 0);
  free(r);
  r = vconn_get(srv, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n",
                &closed, &buf);
  assert_false(closed);
  const char *end = strstr(r, "\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n");
  assert_non_null(end);
  assert_non_null(strstr(end, "\r\n\r\nok\n"));
  free(r);
  assert_int_equal(evs_metrics_streams(reg), 0);
  evs_http_server_close(srv, NULL, NULL);
  int done = 0;
  evs_health_close(h, closed_cb_flag, &done);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_true(done);
  assert_int_equal(uv_loop_close(&loop), 0);
  evs_metrics_free(reg);
}

/* ---- sources ------------------------------------------------------------------------------ */

/* A caller's record: a source prints its label and value; dead once retired. */
typedef struct rec_s {
  struct rec_s *next; /* the first word: evs_metrics_retire links it */
  const char *label;
  double v;
  int dead;
} rec_t;

typedef struct {
  rec_t *list;
  size_t n;
  size_t lists; /* list callbacks: sorts */
} recs_t;

static size_t recs_list(void *data, const void **items, size_t n) {
  recs_t *r = data;
  size_t k = 0;
  r->lists++;
  for (rec_t *x = r->list; x && k < n; x = x->next)
    items[k++] = x;
  return k;
}

static int recs_cmp(const void *a, const void *b) {
  const rec_t *x = *(const void *const *)a, *y = *(const void *const *)b;
  return strcmp(x->label, y->label);
}

/* Family 0 {k}: the value; family 1 {k, side}: "a" then "b", twice the value for "b". */
static void recs_print(evs_metrics_out_t *out, const void *item, size_t fam) {
  const rec_t *x = item;
  if (x->dead)
    return;
  if (fam == 0) {
    const char *v[] = {x->label};
    evs_metrics_out_sample(out, v, x->v);
    return;
  }
  const char *a[] = {x->label, "a"}, *b[] = {x->label, "b"};
  evs_metrics_out_sample(out, a, x->v);
  evs_metrics_out_sample(out, b, 2 * x->v);
}

static rec_t *rec_add(recs_t *r, evs_metrics_source_t *src, const char *label, double v) {
  rec_t *x = calloc(1, sizeof *x);
  assert_non_null(x);
  x->label = label;
  x->v = v;
  x->next = r->list;
  r->list = x;
  evs_metrics_source_changed(src, ++r->n);
  return x;
}

static void rec_remove(recs_t *r, evs_metrics_source_t *src, evs_metrics_t *reg, rec_t *x) {
  rec_t **l = &r->list;
  while (*l != x)
    l = &(*l)->next;
  *l = x->next;
  x->dead = 1;
  evs_metrics_source_changed(src, --r->n);
  evs_metrics_retire(reg, x);
}

static const evs_metrics_source_ops_t recs_ops = {recs_list, recs_cmp, recs_print};

/* A source's families print exactly what children with the same labels and values print:
 * sorted, escaped, a family with no records prints nothing; the sorted view is made again only
 * after a change; child() on a source's family gives NULL and size counts its series. */
static void test_source_prints_as_children(void **state) {
  (void)state;
  evs_metrics_t *reg = evs_metrics_new(), *ref = evs_metrics_new();
  const char *lk[] = {"k"}, *lks[] = {"k", "side"};
  evs_metric_desc_t d0 = {"t_val", "Values.", EVS_METRIC_GAUGE, lk, 1, NULL, 0};
  evs_metric_desc_t d1 = {"t_sides_total", "Sides \\ two.", EVS_METRIC_COUNTER, lks, 2, NULL, 0};
  evs_metric_family_t *f0, *f1, *r0, *r1;
  assert_int_equal(evs_metrics_register(reg, &d0, &f0), 0);
  assert_int_equal(evs_metrics_register(reg, &d1, &f1), 0);
  assert_int_equal(evs_metrics_register(ref, &d0, &r0), 0);
  assert_int_equal(evs_metrics_register(ref, &d1, &r1), 0);
  recs_t r = {0};
  evs_metrics_source_t *src;
  evs_metrics_source_family_t fams[] = {{f0, 1}, {f1, 2}};
  assert_int_equal(evs_metrics_source_new(reg, fams, 2, &recs_ops, &r, &src), 0);
  char *empty = expose(reg), *ref_empty = expose(ref);
  assert_string_equal(empty, ref_empty);
  free(empty);
  free(ref_empty);
  assert_int_equal(r.lists, 0);
  static const char *labels[] = {"m", "a\"q\n\\", "z", "b"};
  rec_t *x[4];
  for (int i = 0; i < 4; i++) {
    x[i] = rec_add(&r, src, labels[i], 0.5 + i);
    const char *v[] = {labels[i]}, *a[] = {labels[i], "a"}, *b[] = {labels[i], "b"};
    evs_metric_set(evs_metric_family_child(r0, v), 0.5 + i);
    evs_metric_add(evs_metric_family_child(r1, a), 0.5 + i);
    evs_metric_add(evs_metric_family_child(r1, b), 2 * (0.5 + i));
  }
  assert_null(evs_metric_family_child(f0, labels));
  assert_int_equal(evs_metric_family_size(f0), 4);
  assert_int_equal(evs_metric_family_size(f1), 8);
  char *got = expose(reg), *want = expose(ref);
  assert_string_equal(got, want);
  free(got);
  got = expose(reg);
  assert_string_equal(got, want);
  free(got);
  free(want);
  assert_int_equal(r.lists, 1); /* sorted once for both families and both scrapes */
  rec_remove(&r, src, reg, x[1]);
  const char *v[] = {labels[1]}, *a[] = {labels[1], "a"}, *b[] = {labels[1], "b"};
  evs_metric_family_remove(r0, v);
  evs_metric_family_remove(r1, a);
  evs_metric_family_remove(r1, b);
  got = expose(reg);
  want = expose(ref);
  assert_string_equal(got, want);
  free(got);
  free(want);
  assert_int_equal(r.lists, 2);
  for (int i = 0; i < 4; i++)
    if (i != 1)
      rec_remove(&r, src, reg, x[i]);
  assert_int_equal(evs_metric_family_size(f1), 0);
  evs_metrics_free(reg);
  evs_metrics_free(ref);
}

/* A record retired while a stream may reach it is kept until the last stream ends: the stream
 * goes on over its view without printing it (ASan: no use after free) and it is freed with the
 * last stream. */
static void test_source_retire_during_stream(void **state) {
  (void)state;
  evs_metrics_t *reg = evs_metrics_new();
  const char *lk[] = {"k"};
  evs_metric_desc_t d0 = {"t_val", NULL, EVS_METRIC_GAUGE, lk, 1, NULL, 0};
  evs_metric_family_t *f0;
  assert_int_equal(evs_metrics_register(reg, &d0, &f0), 0);
  recs_t r = {0};
  evs_metrics_source_t *src;
  evs_metrics_source_family_t fams[] = {{f0, 1}};
  assert_int_equal(evs_metrics_source_new(reg, fams, 1, &recs_ops, &r, &src), 0);
  rec_t *a = rec_add(&r, src, "a", 1), *b = rec_add(&r, src, "b", 2);
  rec_add(&r, src, "c", 3);
  evs_metrics_stream_t *st;
  assert_int_equal(evs_metrics_stream_new(reg, &st), 0);
  char *s1, *s2, *s3;
  size_t n;
  assert_int_equal(evs_metrics_stream_next(st, 1, &s1, &n), 0); /* the TYPE line */
  assert_string_equal(s1, "# TYPE t_val gauge\n");
  assert_int_equal(evs_metrics_stream_next(st, 1, &s2, &n), 0);
  assert_string_equal(s2, "t_val{k=\"a\"} 1\n");
  rec_remove(&r, src, reg, b); /* kept: the stream's view still holds it */
  rec_remove(&r, src, reg, a); /* printed already, kept too */
  assert_int_equal(evs_metrics_stream_next(st, SIZE_MAX, &s3, &n), 0);
  assert_string_equal(s3, "t_val{k=\"c\"} 3\n");
  free(s1);
  free(s2);
  free(s3);
  evs_metrics_stream_free(st);
  /* not in any view yet: still kept until the stream ends (the leak check sees it freed) */
  assert_int_equal(evs_metrics_stream_new(reg, &st), 0);
  rec_remove(&r, src, reg, r.list);
  evs_metrics_stream_free(st);
  assert_int_equal(r.n, 0);
  evs_metrics_free(reg);
}

/* What a source may attach: counters and gauges of its registry, without series, each in one
 * source only. */
static void test_source_rules(void **state) {
  (void)state;
  evs_metrics_t *reg = evs_metrics_new(), *other = evs_metrics_new();
  const char *lk[] = {"k"};
  evs_metric_desc_t g = {"t_g", NULL, EVS_METRIC_GAUGE, lk, 1, NULL, 0};
  evs_metric_desc_t h = {"t_h", NULL, EVS_METRIC_HISTOGRAM, lk, 1, NULL, 0};
  evs_metric_desc_t used = {"t_used", NULL, EVS_METRIC_GAUGE, lk, 1, NULL, 0};
  evs_metric_family_t *fg, *fh, *fu, *fo;
  assert_int_equal(evs_metrics_register(reg, &g, &fg), 0);
  assert_int_equal(evs_metrics_register(reg, &h, &fh), 0);
  assert_int_equal(evs_metrics_register(reg, &used, &fu), 0);
  assert_int_equal(evs_metrics_register(other, &g, &fo), 0);
  const char *v[] = {"x"};
  assert_non_null(evs_metric_family_child(fu, v));
  recs_t r = {0};
  evs_metrics_source_t *src;
  evs_metrics_source_family_t bad[][2] = {{{fh, 1}}, {{fu, 1}},          {{fo, 1}},
                                          {{fg, 0}}, {{fg, 1}, {fg, 1}}, {{NULL, 1}}};
  size_t n_bad[] = {1, 1, 1, 1, 2, 1};
  for (size_t i = 0; i < sizeof n_bad / sizeof *n_bad; i++)
    assert_int_equal(evs_metrics_source_new(reg, bad[i], n_bad[i], &recs_ops, &r, &src), UV_EINVAL);
  evs_metrics_source_ops_t no_cmp = {recs_list, NULL, recs_print};
  evs_metrics_source_family_t ok[] = {{fg, 1}};
  assert_int_equal(evs_metrics_source_new(reg, ok, 1, &no_cmp, &r, &src), UV_EINVAL);
  assert_int_equal(evs_metrics_source_new(reg, ok, 0, &recs_ops, &r, &src), UV_EINVAL);
  assert_int_equal(evs_metrics_source_new(reg, ok, 1, &recs_ops, &r, &src), 0);
  assert_int_equal(evs_metrics_source_new(reg, ok, 1, &recs_ops, &r, &src), UV_EINVAL);
  /* A family printed from a source has no children of its own. */
  assert_null(evs_metric_family_child(fg, v));
  assert_int_equal(evs_metric_family_size(fg), 0);
  evs_metrics_free(reg);
  evs_metrics_free(other);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_float_format),
      cmocka_unit_test(test_float_format_against_reference),
      cmocka_unit_test(test_counter_gauge_exact),
      cmocka_unit_test(test_labels_escaping_order_remove),
      cmocka_unit_test(test_histogram_exact),
      cmocka_unit_test(test_name_validation),
      cmocka_unit_test(test_keda_families_exact),
      cmocka_unit_test(test_many_children),
      cmocka_unit_test(test_collect_callback),
      cmocka_unit_test(test_procstat_values),
      cmocka_unit_test(test_promtool_check),
      cmocka_unit_test(test_remove_by_handle),
      cmocka_unit_test(test_stream_equals_expose),
      cmocka_unit_test(test_stream_survives_changes),
      cmocka_unit_test(test_source_prints_as_children),
      cmocka_unit_test(test_source_retire_during_stream),
      cmocka_unit_test(test_source_rules),
      cmocka_unit_test(test_scrape_streamed),
      cmocka_unit_test(test_scrape_streamed_vconn),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
