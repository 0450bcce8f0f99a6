/* KEDA's metric families against fixtures derived from KEDA's source, a ScaledObject's series
 * set and removed with it, the 2.13 names behind metrics.keda_compat, and `promtool check
 * metrics` over evscale's own families.
 *
 * Fixtures: test/data/keda_metrics/v2.20.x.txt and v2.13.1.txt, from kedacore/keda
 * pkg/metricscollector/prommetrics.go at tags v2.20.2 and v2.13.1 (commits in their headers). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "evscale/config.h"
#include "evscale/diag.h"
#include "evscale/error.h"
#include "evscale/keda_metrics.h"
#include "evscale/metrics.h"
#include "test_data.h"

typedef struct {
  char name[128], type[16], labels[256], help[512];
} fixture_t;

/* Reads a fixture: name TAB type TAB labels (comma-separated, "-" for none) TAB help. */
static size_t read_fixture(const char *file, fixture_t *out, size_t cap) {
  const char *dir = evs_test_data();
  char path[512], line[1024];
  snprintf(path, sizeof path, "%s/keda_metrics/%s", dir, file);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  size_t n = 0;
  while (fgets(line, sizeof line, f)) {
    if (line[0] == '#' || line[0] == '\n')
      continue;
    line[strcspn(line, "\n")] = '\0';
    assert_true(n < cap);
    fixture_t *x = &out[n++];
    char *fields[4] = {NULL, NULL, NULL, ""};
    char *p = line;
    for (int i = 0; i < 4 && p; i++) {
      fields[i] = p;
      p = strchr(p, '\t');
      if (p)
        *p++ = '\0';
    }
    assert_non_null(fields[2]);
    assert_true(strlen(fields[0]) < sizeof x->name && strlen(fields[1]) < sizeof x->type &&
                strlen(fields[2]) < sizeof x->labels && strlen(fields[3]) < sizeof x->help);
    strcpy(x->name, fields[0]);
    strcpy(x->type, fields[1]);
    strcpy(x->labels, fields[2]);
    strcpy(x->help, fields[3]);
  }
  fclose(f);
  return n;
}

static const char *type_name(evs_metric_type_t t) {
  return t == EVS_METRIC_COUNTER ? "counter" : t == EVS_METRIC_GAUGE ? "gauge" : "histogram";
}

static void labels_of(const evs_metric_desc_t *d, char *buf, size_t cap) {
  size_t len = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < d->n_labels; i++)
    len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? "," : "", d->label_names[i]);
  if (d->n_labels == 0)
    snprintf(buf, cap, "-");
}

static const evs_metric_desc_t *find(const evs_metric_desc_t *t, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(t[i].name, name) == 0)
      return &t[i];
  return NULL;
}

static void check_family(const fixture_t *x, const evs_metric_desc_t *d, int with_help) {
  char labels[256];
  if (d == NULL)
    print_message("family %s of the fixture is not defined\n", x->name);
  assert_non_null(d);
  labels_of(d, labels, sizeof labels);
  assert_string_equal(type_name(d->type), x->type);
  assert_string_equal(labels, x->labels);
  if (with_help)
    assert_string_equal(d->help ? d->help : "", x->help);
}

static void test_v2_20_families(void **state) {
  (void)state;
  fixture_t fx[32];
  size_t n = read_fixture("v2.20.x.txt", fx, 32);
  assert_int_equal(n, EVS_KEDA_FAMILIES_N); /* every family of the fixture, and no other */
  for (size_t i = 0; i < n; i++)
    check_family(&fx[i], find(EVS_KEDA_FAMILIES, EVS_KEDA_FAMILIES_N, fx[i].name), 1);
  /* The HTTP duration histogram keeps KEDA's buckets (DefBuckets). */
  const evs_metric_desc_t *h = &EVS_KEDA_FAMILIES[EVS_KEDA_SCALER_HTTP_REQUEST_DURATION_SECONDS];
  assert_int_equal(h->n_buckets, 11);
  assert_true(h->buckets[0] == 0.005 && h->buckets[10] == 10);
}

/* 2.13's families: those 2.20 dropped are in the compat table (help too); the others have the
 * same name, type and labels in 2.20 and are exported once. */
static void test_v2_13_families(void **state) {
  (void)state;
  fixture_t fx[32];
  size_t n = read_fixture("v2.13.1.txt", fx, 32);
  size_t only213 = 0;
  for (size_t i = 0; i < n; i++) {
    const evs_metric_desc_t *d = find(EVS_KEDA_213_FAMILIES, EVS_KEDA213_FAMILIES_N, fx[i].name);
    if (d) {
      only213++;
      check_family(&fx[i], d, 1);
    } else {
      check_family(&fx[i], find(EVS_KEDA_FAMILIES, EVS_KEDA_FAMILIES_N, fx[i].name), 0);
    }
  }
  assert_int_equal(only213, EVS_KEDA213_FAMILIES_N);
}

static char *expose(evs_metrics_t *reg) {
  char *out;
  size_t len;
  assert_int_equal(evs_metrics_expose(reg, &out, &len), 0);
  return out;
}

static const evs_keda_build_t build = {"0.1.0", "abc123"};

static void test_object_series(void **state) {
  (void)state;
  evs_metrics_t *reg = evs_metrics_new();
  evs_keda_metrics_t *km;
  assert_int_equal(evs_keda_metrics_new(reg, EVS_KEDA_COMPAT_NONE, &build, &km), 0);
  assert_null(evs_metrics_find(reg, "keda_scaler_errors"));
  evs_keda_trigger_t tr[] = {{"redisScaler", "s0-redis-jobs", "redis"},
                             {"cronScaler", "s1-cron-UTC-0800xx-1800xx", "cron"}};
  evs_keda_metrics_object_t *a, *b;
  assert_int_equal(evs_keda_metrics_object_new(km, "prod", "worker-a", tr, 2, &a), 0);
  assert_int_equal(evs_keda_metrics_object_new(km, "prod", "worker-b", tr, 1, &b), 0);
  assert_int_equal(evs_keda_metrics_object_series(a), 7 + 2 * 4);
  evs_keda_metrics_set_value(a, 0, 42.5);
  evs_keda_metrics_set_latency(a, 0, 0.0123);
  evs_keda_metrics_set_active(a, 0, 1);
  evs_keda_metrics_scaler_error(a, 1);
  evs_keda_metrics_scaler_error(a, 1);
  evs_keda_metrics_set_paused(b, 1);
  evs_keda_metrics_set_loop_latency(a, 0.25);
  evs_keda_metrics_scaled(a, EVS_KEDA_DIR_UP, 0.8);
  evs_keda_metrics_set_breaker(b, 1);
  evs_keda_metrics_breaker_trip(b);
  evs_keda_metrics_write_coalesced(km);
  evs_keda_metrics_set_value(a, 9, 1); /* out of range: nothing */
  char *out = expose(reg);
  static const char *want[] = {
      "keda_build_info{version=\"0.1.0\",git_commit=\"abc123\",goversion=\"\",goos=\"linux\",",
      "keda_scaler_metrics_value{namespace=\"prod\",metric=\"s0-redis-jobs\","
      "scaledObject=\"worker-a\",scaler=\"redisScaler\",triggerIndex=\"0\","
      "type=\"scaledobject\"} 42.5\n",
      "keda_scaler_metrics_latency_seconds{namespace=\"prod\",metric=\"s0-redis-jobs\","
      "scaledObject=\"worker-a\",scaler=\"redisScaler\",triggerIndex=\"0\","
      "type=\"scaledobject\"} 0.0123\n",
      "keda_scaler_active{namespace=\"prod\",metric=\"s0-redis-jobs\",scaledObject=\"worker-a\","
      "scaler=\"redisScaler\",triggerIndex=\"0\",type=\"scaledobject\"} 1\n",
      "keda_scaler_detail_errors_total{namespace=\"prod\",metric=\"s1-cron-UTC-0800xx-1800xx\","
      "scaledObject=\"worker-a\",scaler=\"cronScaler\",triggerIndex=\"1\","
      "type=\"scaledobject\"} 2\n",
      "keda_scaler_detail_errors_total{namespace=\"prod\",metric=\"s0-redis-jobs\","
      "scaledObject=\"worker-a\",scaler=\"redisScaler\",triggerIndex=\"0\","
      "type=\"scaledobject\"} 0\n",
      "keda_scaled_object_errors_total{namespace=\"prod\",scaledObject=\"worker-a\"} 2\n",
      "keda_scaled_object_paused{namespace=\"prod\",scaledObject=\"worker-b\"} 1\n",
      "keda_internal_scale_loop_latency_seconds{namespace=\"prod\",type=\"scaledobject\","
      "resource=\"worker-a\"} 0.25\n",
      "keda_trigger_registered_total{type=\"redis\"} 2\n",
      "keda_trigger_registered_total{type=\"cron\"} 1\n",
      "keda_resource_registered_total{type=\"scaled_object\",namespace=\"prod\"} 2\n",
      "evscale_scale_events_total{namespace=\"prod\",scaled_object=\"worker-a\",direction=\"up\"} "
      "1\n",
      "evscale_scale_events_total{namespace=\"prod\",scaled_object=\"worker-a\",direction=\"down\"}"
      " "
      "0\n",
      "evscale_scaling_latency_seconds_bucket{direction=\"up\",le=\"1\"} 1\n",
      "evscale_scaling_latency_seconds_bucket{direction=\"up\",le=\"0.5\"} 0\n",
      "evscale_breaker_state{namespace=\"prod\",scaled_object=\"worker-b\"} 1\n",
      "evscale_breaker_trips_total{namespace=\"prod\",scaled_object=\"worker-b\"} 1\n",
      "evscale_writes_coalesced_total 1\n",
  };
  for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
    if (strstr(out, want[i]) == NULL)
      print_message("missing: %s\n--- exposition ---\n%s", want[i], out);
    assert_non_null(strstr(out, want[i]));
  }
  free(out);
  /* worker-a goes: every one of its series with it, and the counts drop (cron to nothing). */
  evs_keda_metrics_object_free(a);
  out = expose(reg);
  assert_null(strstr(out, "worker-a"));
  assert_null(strstr(out, "type=\"cron\""));
  assert_non_null(strstr(out, "keda_trigger_registered_total{type=\"redis\"} 1\n"));
  assert_non_null(strstr(out, "keda_resource_registered_total{type=\"scaled_object\","
                              "namespace=\"prod\"} 1\n"));
  assert_non_null(strstr(out, "scaledObject=\"worker-b\""));
  free(out);
  evs_keda_metrics_object_free(b);
  assert_int_equal(evs_metric_family_size(evs_keda_metrics_family(km, EVS_KEDA_SCALER_ACTIVE)), 0);
  assert_int_equal(
      evs_metric_family_size(evs_keda_metrics_family(km, EVS_KEDA_TRIGGER_REGISTERED_TOTAL)), 0);
  assert_int_equal(
      evs_metric_family_size(evs_keda_metrics_evscale_family(km, EVS_EVSCALE_SCALE_EVENTS_TOTAL)),
      0);
  evs_keda_metrics_free(km);
  evs_metrics_free(reg);
}

/* ---- the same exposition as one child per series ------------------------------------------ */

/* The objects of test_same_as_children: namespaces shared, metric names that sort the other way
 * round from the object names (keda_scaler_* sort by metric before scaledObject), two triggers,
 * an untyped one (not counted), a name that needs escaping. */
typedef struct {
  const char *ns, *name;
  evs_keda_trigger_t tr[2];
  size_t n;
} ref_obj_t;

static const ref_obj_t ref_objs[] = {
    {"prod", "worker-a", {{"redisScaler", "s0-redis-z", "redis"}}, 1},
    {"prod", "worker-b", {{"redisScaler", "s0-redis-a", "redis"}}, 1},
    {"prod",
     "worker",
     {{"cronScaler", "s0-cron", "cron"}, {"redisScaler", "s1-redis", "redis"}},
     2},
    {"dev", "worker-a", {{"prometheusScaler", "s0-prometheus", "prometheus"}}, 1},
    {"dev", "q\"\\x", {{"redisScaler", "s0-redis-a", ""}}, 1},
    {"a-team", "z", {{"redisScaler", "s0-redis-a", "redis"}}, 1},
};
#define REF_N (sizeof ref_objs / sizeof *ref_objs)

/* One object's series made as children, the way evs_keda_metrics_object_new made them before
 * row sets: the reference the rows must print the same as. */
typedef struct {
  evs_metric_t *t[2][7]; /* value, latency, active, errors, latency ms, errors 2.13, type count */
  evs_metric_t *type213[2];
  evs_metric_t *o[10]; /* errors, paused, loop, breaker, trips, up, down, errors 2.13, loop ms */
  evs_metric_t *res[2];
} ref_series_t;

typedef struct {
  evs_metrics_t *reg;
  evs_metric_family_t *keda[EVS_KEDA_FAMILIES_N], *k213[EVS_KEDA213_FAMILIES_N],
      *own[EVS_EVSCALE_FAMILIES_N];
  evs_metric_t *errors_all, *lat[2], *coalesced;
  int compat;
} ref_reg_t;

static evs_metric_t *ref_count(evs_metric_family_t *f, const char *const *v) {
  evs_metric_t *m = evs_metric_family_child(f, v);
  evs_metric_inc(m);
  return m;
}

static void ref_uncount(evs_metric_t *m) {
  if (m == NULL)
    return;
  evs_metric_add(m, -1);
  if (evs_metric_value(m) <= 0)
    evs_metric_remove(m);
}

static void ref_new(ref_reg_t *r, int compat) {
  memset(r, 0, sizeof *r);
  r->compat = compat;
  r->reg = evs_metrics_new();
  for (int i = 0; i < EVS_KEDA_FAMILIES_N; i++)
    assert_int_equal(evs_metrics_register(r->reg, &EVS_KEDA_FAMILIES[i], &r->keda[i]), 0);
  for (int i = 0; i < EVS_EVSCALE_FAMILIES_N; i++)
    assert_int_equal(evs_metrics_register(r->reg, &EVS_EVSCALE_FAMILIES[i], &r->own[i]), 0);
  for (int i = 0; compat && i < EVS_KEDA213_FAMILIES_N; i++)
    assert_int_equal(evs_metrics_register(r->reg, &EVS_KEDA_213_FAMILIES[i], &r->k213[i]), 0);
#if defined(__x86_64__)
  const char *arch = "amd64";
#elif defined(__aarch64__)
  const char *arch = "arm64";
#else
  const char *arch = "unknown";
#endif
  const char *bv[] = {build.version, build.revision, "", "linux", arch};
  evs_metric_set(evs_metric_family_child(r->keda[EVS_KEDA_BUILD_INFO], bv), 1);
  const char *up[] = {"up"}, *down[] = {"down"};
  r->lat[0] = evs_metric_family_child(r->own[EVS_EVSCALE_SCALING_LATENCY_SECONDS], up);
  r->lat[1] = evs_metric_family_child(r->own[EVS_EVSCALE_SCALING_LATENCY_SECONDS], down);
  r->coalesced = evs_metric_family_child(r->own[EVS_EVSCALE_WRITES_COALESCED_TOTAL], NULL);
  if (compat)
    r->errors_all = evs_metric_family_child(r->k213[EVS_KEDA213_SCALER_ERRORS_TOTAL], NULL);
}

static void ref_object(ref_reg_t *r, const ref_obj_t *x, ref_series_t *s) {
  memset(s, 0, sizeof *s);
  for (size_t i = 0; i < x->n; i++) {
    char idx[8];
    snprintf(idx, sizeof idx, "%u", (unsigned)i);
    const char *v[] = {x->ns, x->tr[i].metric, x->name, x->tr[i].scaler, idx, "scaledobject"};
    const char *tv[] = {x->tr[i].type};
    s->t[i][0] = evs_metric_family_child(r->keda[EVS_KEDA_SCALER_METRICS_VALUE], v);
    s->t[i][1] = evs_metric_family_child(r->keda[EVS_KEDA_SCALER_METRICS_LATENCY_SECONDS], v);
    s->t[i][2] = evs_metric_family_child(r->keda[EVS_KEDA_SCALER_ACTIVE], v);
    s->t[i][3] = evs_metric_family_child(r->keda[EVS_KEDA_SCALER_DETAIL_ERRORS_TOTAL], v);
    if (x->tr[i].type[0])
      s->t[i][6] = ref_count(r->keda[EVS_KEDA_TRIGGER_REGISTERED_TOTAL], tv);
    if (!r->compat)
      continue;
    s->t[i][4] = evs_metric_family_child(r->k213[EVS_KEDA213_SCALER_METRICS_LATENCY], v);
    s->t[i][5] = evs_metric_family_child(r->k213[EVS_KEDA213_SCALER_ERRORS], v);
    if (x->tr[i].type[0])
      s->type213[i] = ref_count(r->k213[EVS_KEDA213_TRIGGER_TOTALS], tv);
  }
  const char *v[] = {x->ns, x->name}, *lv[] = {x->ns, "scaledobject", x->name};
  const char *rv[] = {"scaled_object", x->ns};
  const char *up[] = {x->ns, x->name, "up"}, *down[] = {x->ns, x->name, "down"};
  s->o[0] = evs_metric_family_child(r->keda[EVS_KEDA_SCALED_OBJECT_ERRORS_TOTAL], v);
  s->o[1] = evs_metric_family_child(r->keda[EVS_KEDA_SCALED_OBJECT_PAUSED], v);
  s->o[2] = evs_metric_family_child(r->keda[EVS_KEDA_INTERNAL_SCALE_LOOP_LATENCY_SECONDS], lv);
  s->o[3] = evs_metric_family_child(r->own[EVS_EVSCALE_BREAKER_STATE], v);
  s->o[4] = evs_metric_family_child(r->own[EVS_EVSCALE_BREAKER_TRIPS_TOTAL], v);
  s->o[5] = evs_metric_family_child(r->own[EVS_EVSCALE_SCALE_EVENTS_TOTAL], up);
  s->o[6] = evs_metric_family_child(r->own[EVS_EVSCALE_SCALE_EVENTS_TOTAL], down);
  s->res[0] = ref_count(r->keda[EVS_KEDA_RESOURCE_REGISTERED_TOTAL], rv);
  if (r->compat) {
    s->o[7] = evs_metric_family_child(r->k213[EVS_KEDA213_SCALED_OBJECT_ERRORS], v);
    s->o[8] = evs_metric_family_child(r->k213[EVS_KEDA213_INTERNAL_SCALE_LOOP_LATENCY], lv);
    s->res[1] = ref_count(r->k213[EVS_KEDA213_RESOURCE_TOTALS], rv);
  }
}

static void ref_object_free(ref_series_t *s) {
  for (int i = 0; i < 2; i++) {
    for (int k = 0; k < 6; k++)
      evs_metric_remove(s->t[i][k]);
    ref_uncount(s->t[i][6]);
    ref_uncount(s->type213[i]);
  }
  for (int k = 0; k < 10; k++)
    evs_metric_remove(s->o[k]);
  ref_uncount(s->res[0]);
  ref_uncount(s->res[1]);
}

/* Object j's readings, both ways. */
static void feed(evs_keda_metrics_object_t *o, ref_reg_t *r, ref_series_t *s, size_t j) {
  const ref_obj_t *x = &ref_objs[j];
  for (size_t i = 0; i < x->n; i++) {
    double v = 10.5 * (double)(j + 1) + (double)i, lat = 0.0125 * (double)(j + i + 1);
    evs_keda_metrics_set_value(o, i, v);
    evs_metric_set(s->t[i][0], v);
    evs_keda_metrics_set_latency(o, i, lat);
    evs_metric_set(s->t[i][1], lat);
    evs_metric_set(s->t[i][4], (double)(long long)(lat * 1000));
    evs_keda_metrics_set_active(o, i, (int)((i + j) & 1));
    evs_metric_set(s->t[i][2], (double)((i + j) & 1));
    for (size_t e = 0; e < j + i; e++) {
      evs_keda_metrics_scaler_error(o, i);
      evs_metric_inc(s->t[i][3]);
      evs_metric_inc(s->t[i][5]);
      evs_metric_inc(s->o[0]);
      evs_metric_inc(s->o[7]);
      evs_metric_inc(r->errors_all);
    }
  }
  evs_keda_metrics_set_paused(o, (int)(j % 2));
  evs_metric_set(s->o[1], (double)(j % 2));
  evs_keda_metrics_set_loop_latency(o, 0.25 * (double)j);
  evs_metric_set(s->o[2], 0.25 * (double)j);
  evs_metric_set(s->o[8], (double)(long long)(0.25 * (double)j * 1000));
  evs_keda_metrics_set_breaker(o, j == 2);
  evs_metric_set(s->o[3], j == 2);
  for (size_t e = 0; e < j; e++) {
    evs_keda_metrics_breaker_trip(o);
    evs_metric_inc(s->o[4]);
    evs_keda_direction_t dir = e % 3 ? EVS_KEDA_DIR_UP : EVS_KEDA_DIR_DOWN;
    evs_keda_metrics_scaled(o, dir, 0.1 * (double)e);
    evs_metric_inc(s->o[dir == EVS_KEDA_DIR_UP ? 5 : 6]);
    evs_metric_observe(r->lat[dir], 0.1 * (double)e);
  }
}

static void assert_same(evs_metrics_t *a, evs_metrics_t *b) {
  char *x = expose(a), *y = expose(b);
  if (strcmp(x, y) != 0)
    print_message("--- rows ---\n%s\n--- children ---\n%s", x, y);
  assert_string_equal(x, y);
  free(x);
  free(y);
}

/* A ScaledObject's series print exactly as they did when each was a child of its own, with and
 * without the 2.13 names: objects sharing a namespace, sorted by metric before name in the
 * per-trigger families, down before up in the events, escaping; and after objects went. A
 * second object of the same namespace and name is refused (its series would print twice). */
static void test_same_as_children(void **state) {
  (void)state;
  for (int compat = 0; compat <= 1; compat++) {
    evs_metrics_t *reg = evs_metrics_new();
    evs_keda_metrics_t *km;
    assert_int_equal(evs_keda_metrics_new(reg, compat, &build, &km), 0);
    ref_reg_t r;
    ref_new(&r, compat);
    evs_keda_metrics_object_t *o[REF_N];
    ref_series_t s[REF_N];
    for (size_t j = 0; j < REF_N; j++) {
      const ref_obj_t *x = &ref_objs[j];
      assert_int_equal(evs_keda_metrics_object_new(km, x->ns, x->name, x->tr, x->n, &o[j]), 0);
      ref_object(&r, x, &s[j]);
      feed(o[j], &r, &s[j], j);
    }
    evs_keda_metrics_write_coalesced(km);
    evs_metric_inc(r.coalesced);
    assert_same(reg, r.reg);
    evs_keda_metrics_object_t *dup;
    assert_int_equal(evs_keda_metrics_object_new(km, "prod", "worker-a", ref_objs[0].tr, 1, &dup),
                     UV_EEXIST);
    assert_same(reg, r.reg); /* nothing left behind */
    for (size_t j = 0; j < REF_N; j += 2) {
      evs_keda_metrics_object_free(o[j]);
      ref_object_free(&s[j]);
    }
    assert_same(reg, r.reg);
    for (size_t j = 1; j < REF_N; j += 2) {
      evs_keda_metrics_object_free(o[j]);
      ref_object_free(&s[j]);
    }
    assert_same(reg, r.reg);
    evs_keda_metrics_free(km);
    evs_metrics_free(reg);
    evs_metrics_free(r.reg);
  }
}

static void test_compat_213(void **state) {
  (void)state;
  evs_metrics_t *reg = evs_metrics_new();
  evs_keda_metrics_t *km;
  assert_int_equal(evs_keda_metrics_new(reg, EVS_KEDA_COMPAT_2_13, &build, &km), 0);
  evs_keda_trigger_t tr[] = {{"redisScaler", "s0-redis-jobs", "redis"}};
  evs_keda_metrics_object_t *a;
  assert_int_equal(evs_keda_metrics_object_new(km, "prod", "worker-a", tr, 1, &a), 0);
  assert_int_equal(evs_keda_metrics_object_series(a), 7 + 2 + 4 + 2);
  evs_keda_metrics_set_latency(a, 0, 0.0127);
  evs_keda_metrics_set_loop_latency(a, 1.5);
  evs_keda_metrics_scaler_error(a, 0);
  char *out = expose(reg);
  static const char *want[] = {
      "keda_scaler_errors_total 1\n",
      "keda_scaler_errors{namespace=\"prod\",metric=\"s0-redis-jobs\",scaledObject=\"worker-a\","
      "scaler=\"redisScaler\",triggerIndex=\"0\",type=\"scaledobject\"} 1\n",
      "keda_scaled_object_errors{namespace=\"prod\",scaledObject=\"worker-a\"} 1\n",
      "keda_scaler_metrics_latency{namespace=\"prod\",metric=\"s0-redis-jobs\","
      "scaledObject=\"worker-a\",scaler=\"redisScaler\",triggerIndex=\"0\","
      "type=\"scaledobject\"} 12\n",
      "keda_internal_scale_loop_latency{namespace=\"prod\",type=\"scaledobject\","
      "resource=\"worker-a\"} 1500\n",
      "# TYPE keda_trigger_totals gauge\nkeda_trigger_totals{type=\"redis\"} 1\n",
      "keda_resource_totals{type=\"scaled_object\",namespace=\"prod\"} 1\n",
      "keda_scaler_detail_errors_total{namespace=\"prod\"", /* the current names stay */
  };
  for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
    if (strstr(out, want[i]) == NULL)
      print_message("missing: %s\n--- exposition ---\n%s", want[i], out);
    assert_non_null(strstr(out, want[i]));
  }
  free(out);
  /* A latency no integer holds prints as it is (the conversion to whole milliseconds would be
   * undefined: x86 made NaN -9223372036854775808). */
  evs_keda_metrics_set_latency(a, 0, NAN);
  evs_keda_metrics_set_loop_latency(a, INFINITY);
  out = expose(reg);
  assert_non_null(strstr(out, "triggerIndex=\"0\",type=\"scaledobject\"} NaN\n"));
  assert_non_null(strstr(out, "resource=\"worker-a\"} +Inf\n"));
  assert_null(strstr(out, "-9223372036854775808"));
  assert_null(strstr(out, "-9.223372036854776e+18"));
  free(out);
  evs_keda_metrics_set_latency(a, 0, 0.0127);
  evs_keda_metrics_set_loop_latency(a, 1.5);
  /* A second object in another namespace: the counts are found again by their labels when an
   * object goes (the object keeps no handle to them), each name's count on its own. */
  evs_keda_trigger_t tr2[] = {{"redisScaler", "s0-redis-jobs", "redis"},
                              {"cronScaler", "s1-cron-UTC-0800xx-1800xx", "cron"}};
  evs_keda_metrics_object_t *b;
  assert_int_equal(evs_keda_metrics_object_new(km, "dev", "worker-b", tr2, 2, &b), 0);
  out = expose(reg);
  static const char *both[] = {
      "keda_trigger_totals{type=\"redis\"} 2\n",
      "keda_trigger_totals{type=\"cron\"} 1\n",
      "keda_trigger_registered_total{type=\"redis\"} 2\n",
      "keda_resource_totals{type=\"scaled_object\",namespace=\"prod\"} 1\n",
      "keda_resource_totals{type=\"scaled_object\",namespace=\"dev\"} 1\n",
      "keda_resource_registered_total{type=\"scaled_object\",namespace=\"dev\"} 1\n",
  };
  for (size_t i = 0; i < sizeof both / sizeof *both; i++) {
    if (strstr(out, both[i]) == NULL)
      print_message("missing: %s\n--- exposition ---\n%s", both[i], out);
    assert_non_null(strstr(out, both[i]));
  }
  free(out);
  evs_keda_metrics_object_free(a);
  out = expose(reg);
  assert_null(strstr(out, "worker-a"));
  assert_null(strstr(out, "namespace=\"prod\""));
  assert_non_null(strstr(out, "keda_trigger_totals{type=\"redis\"} 1\n"));
  assert_non_null(strstr(out, "keda_trigger_registered_total{type=\"redis\"} 1\n"));
  assert_non_null(strstr(out, "keda_trigger_totals{type=\"cron\"} 1\n"));
  assert_non_null(
      strstr(out, "keda_resource_totals{type=\"scaled_object\",namespace=\"dev\"} 1\n"));
  free(out);
  evs_keda_metrics_object_free(b);
  out = expose(reg);
  assert_null(strstr(out, "keda_trigger_totals{"));
  assert_null(strstr(out, "keda_resource_totals{"));
  assert_null(strstr(out, "keda_trigger_registered_total{"));
  assert_null(strstr(out, "keda_resource_registered_total{"));
  free(out);
  evs_keda_metrics_free(km);
  evs_metrics_free(reg);
}

static void test_bad_arguments(void **state) {
  (void)state;
  evs_metrics_t *reg = evs_metrics_new();
  evs_keda_metrics_t *km;
  assert_int_equal(evs_keda_metrics_new(reg, 7, &build, &km), UV_EINVAL);
  assert_int_equal(evs_keda_metrics_new(reg, EVS_KEDA_COMPAT_NONE, &build, &km), 0);
  evs_keda_metrics_t *again;
  assert_int_equal(evs_keda_metrics_new(reg, EVS_KEDA_COMPAT_NONE, &build, &again), UV_EEXIST);
  evs_keda_trigger_t bad[] = {{"s", NULL, "redis"}};
  evs_keda_metrics_object_t *o;
  assert_int_equal(evs_keda_metrics_object_new(km, "ns", "n", bad, 1, &o), UV_EINVAL);
  evs_keda_metrics_free(km);
  evs_metrics_free(reg);
}

/* metrics.keda_compat: "" by default, "2.13" quoted, bare or from the environment, anything
 * else refused with the choices; the dump reads back. */
static int load(const char *yaml, char **envp, evs_config_t **cfg, char *msg, size_t cap) {
  evs_diag_t d;
  evs_diag_init(&d);
  int rc = evs_config_load_buffer(yaml, strlen(yaml), "t.yaml", envp, cfg, &d);
  msg[0] = '\0';
  if (d.n > 0)
    evs_diag_format(&d, 0, msg, cap);
  evs_diag_free(&d);
  return rc;
}

static void test_config_key(void **state) {
  (void)state;
  evs_config_t *cfg;
  char msg[512];
  assert_int_equal(load("", NULL, &cfg, msg, sizeof msg), 0);
  assert_int_equal(cfg->metrics.keda_compat, EVS_KEDA_COMPAT_NONE);
  evs_config_free(cfg);
  assert_int_equal(load("metrics:\n  keda_compat: \"2.13\"\n", NULL, &cfg, msg, sizeof msg), 0);
  assert_int_equal(cfg->metrics.keda_compat, EVS_KEDA_COMPAT_2_13);
  char *dump = NULL;
  size_t dlen = 0;
  FILE *f = open_memstream(&dump, &dlen);
  assert_int_equal(evs_config_dump(cfg, f), 0);
  fclose(f);
  assert_non_null(strstr(dump, "keda_compat: \"2.13\""));
  evs_config_t *back;
  assert_int_equal(load(dump, NULL, &back, msg, sizeof msg), 0);
  assert_int_equal(back->metrics.keda_compat, EVS_KEDA_COMPAT_2_13);
  evs_config_free(back);
  free(dump);
  evs_config_free(cfg);
  assert_int_equal(load("metrics:\n  keda_compat: 2.13\n", NULL, &cfg, msg, sizeof msg), 0);
  assert_int_equal(cfg->metrics.keda_compat, EVS_KEDA_COMPAT_2_13);
  evs_config_free(cfg);
  assert_int_equal(load("metrics:\n  keda_compat: \"\"\n", NULL, &cfg, msg, sizeof msg), 0);
  assert_int_equal(cfg->metrics.keda_compat, EVS_KEDA_COMPAT_NONE);
  evs_config_free(cfg);
  char *env[] = {"EVSCALE_METRICS_KEDA_COMPAT=2.13", NULL};
  assert_int_equal(load("", env, &cfg, msg, sizeof msg), 0);
  assert_int_equal(cfg->metrics.keda_compat, EVS_KEDA_COMPAT_2_13);
  evs_config_free(cfg);
  cfg = NULL;
  assert_int_equal(load("metrics:\n  keda_compat: \"2.14\"\n", NULL, &cfg, msg, sizeof msg),
                   EVS_EINVALCFG);
  assert_null(cfg);
  assert_non_null(
      strstr(msg, "metrics.keda_compat: invalid value '2.14': must be one of \"\", 2.13"));
  assert_int_equal(load("metrics:\n  keda_compat: [a]\n", NULL, &cfg, msg, sizeof msg),
                   EVS_EINVALCFG);
}

/* evscale's own families, with values, pass promtool's parser and linter. */
static void test_promtool_evscale_families(void **state) {
  (void)state;
  if (access("/usr/bin/promtool", X_OK) != 0) {
    print_message("SKIP: /usr/bin/promtool absent (install the Debian package 'prometheus')\n");
    skip();
  }
  evs_metrics_t *reg = evs_metrics_new();
  evs_keda_metrics_t *km;
  assert_int_equal(evs_keda_metrics_new(reg, EVS_KEDA_COMPAT_NONE, &build, &km), 0);
  evs_keda_trigger_t tr[] = {{"redisScaler", "s0-redis-jobs", "redis"}};
  evs_keda_metrics_object_t *a;
  assert_int_equal(evs_keda_metrics_object_new(km, "prod", "worker-a", tr, 1, &a), 0);
  evs_keda_metrics_scaled(a, EVS_KEDA_DIR_UP, 0.042);
  evs_keda_metrics_scaled(a, EVS_KEDA_DIR_DOWN, 3.5);
  evs_keda_metrics_breaker_trip(a);
  evs_keda_metrics_set_breaker(a, 1);
  evs_keda_metrics_write_coalesced(km);
  char *out = expose(reg);
  /* Only the evscale_* families: KEDA's keep KEDA's camelCase labels and names as they are. */
  char *mine = calloc(1, strlen(out) + 1);
  size_t ml = 0;
  for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
    const char *name = line[0] == '#' ? line + 7 : line;
    if (strncmp(name, "evscale_", 8) == 0)
      ml += (size_t)sprintf(mine + ml, "%s\n", line);
  }
  for (int i = 0; i < EVS_EVSCALE_FAMILIES_N; i++) {
    char t[128];
    snprintf(t, sizeof t, "# TYPE %s ", EVS_EVSCALE_FAMILIES[i].name);
    assert_non_null(strstr(mine, t));
  }
  char path[] = "/tmp/evs_promtool_keda_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, mine, ml), (ssize_t)ml);
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
    print_message("promtool said (status %d):\n%s\n--- input ---\n%s\n", st, report, mine);
  assert_int_equal(st, 0);
  assert_int_equal(n, 0);
  free(mine);
  free(out);
  evs_keda_metrics_object_free(a);
  evs_keda_metrics_free(km);
  evs_metrics_free(reg);
}

/* ---- one record per object (issue 13) -------------------------------------------------- */

/* An object is one allocation of 48 bytes, 32 per trigger and its label strings: the saving
 * pinned (as row sets an object with one trigger held two rows of about 100 bytes each and a
 * 40-byte handle record besides its strings). */
static void test_object_bytes(void **state) {
  (void)state;
  evs_metrics_t *reg = evs_metrics_new();
  evs_keda_metrics_t *km;
  assert_int_equal(evs_keda_metrics_new(reg, EVS_KEDA_COMPAT_2_13, &build, &km), 0);
  evs_keda_trigger_t tr[] = {{"redisScaler", "s0-redis-jobs", "redis"},
                             {"cronScaler", "s1-cron", "cron"}};
  evs_keda_metrics_object_t *a, *b;
  assert_int_equal(evs_keda_metrics_object_new(km, "prod", "worker-a", tr, 1, &a), 0);
  assert_int_equal(evs_keda_metrics_object_new(km, "prod", "worker-b", tr, 2, &b), 0);
  size_t strings_a =
      sizeof "prod" + sizeof "worker-a" + sizeof "s0-redis-jobs" + sizeof "redisScaler";
  assert_int_equal(evs_keda_metrics_object_bytes(a), 48 + 32 + strings_a);
  assert_int_equal(evs_keda_metrics_object_bytes(b),
                   48 + 2 * 32 + strings_a + sizeof "s1-cron" + sizeof "cronScaler");
  evs_keda_metrics_object_free(a);
  evs_keda_metrics_object_free(b);
  evs_keda_metrics_free(km);
  evs_metrics_free(reg);
}

/* triggerIndex sorts as text ("10" before "2"), as the series of children with those labels
 * did: twelve triggers of one object with the same metric and scaler. */
static void test_trigger_index_order(void **state) {
  (void)state;
  evs_metrics_t *reg = evs_metrics_new();
  evs_keda_metrics_t *km;
  assert_int_equal(evs_keda_metrics_new(reg, EVS_KEDA_COMPAT_NONE, &build, &km), 0);
  ref_reg_t r;
  ref_new(&r, 0);
  evs_keda_trigger_t tr[12];
  for (size_t i = 0; i < 12; i++)
    tr[i] = (evs_keda_trigger_t){"redisScaler", "s-redis", i % 2 ? "redis" : ""};
  evs_keda_metrics_object_t *o;
  assert_int_equal(evs_keda_metrics_object_new(km, "ns", "so", tr, 12, &o), 0);
  const char *v[] = {"ns", "so"}, *lv[] = {"ns", "scaledobject", "so"};
  const char *up[] = {"ns", "so", "up"}, *down[] = {"ns", "so", "down"};
  evs_metric_family_child(r.keda[EVS_KEDA_SCALED_OBJECT_ERRORS_TOTAL], v);
  evs_metric_family_child(r.keda[EVS_KEDA_SCALED_OBJECT_PAUSED], v);
  evs_metric_family_child(r.keda[EVS_KEDA_INTERNAL_SCALE_LOOP_LATENCY_SECONDS], lv);
  evs_metric_family_child(r.own[EVS_EVSCALE_BREAKER_STATE], v);
  evs_metric_family_child(r.own[EVS_EVSCALE_BREAKER_TRIPS_TOTAL], v);
  evs_metric_family_child(r.own[EVS_EVSCALE_SCALE_EVENTS_TOTAL], up);
  evs_metric_family_child(r.own[EVS_EVSCALE_SCALE_EVENTS_TOTAL], down);
  const char *rv[] = {"scaled_object", "ns"}, *tv[] = {"redis"};
  evs_metric_set(evs_metric_family_child(r.keda[EVS_KEDA_RESOURCE_REGISTERED_TOTAL], rv), 1);
  evs_metric_set(evs_metric_family_child(r.keda[EVS_KEDA_TRIGGER_REGISTERED_TOTAL], tv), 6);
  for (size_t i = 0; i < 12; i++) {
    char idx[8];
    snprintf(idx, sizeof idx, "%zu", i);
    const char *t[] = {"ns", "s-redis", "so", "redisScaler", idx, "scaledobject"};
    evs_keda_metrics_set_value(o, i, (double)i + 0.5);
    evs_metric_set(evs_metric_family_child(r.keda[EVS_KEDA_SCALER_METRICS_VALUE], t),
                   (double)i + 0.5);
    evs_metric_family_child(r.keda[EVS_KEDA_SCALER_METRICS_LATENCY_SECONDS], t);
    evs_metric_family_child(r.keda[EVS_KEDA_SCALER_ACTIVE], t);
    evs_metric_family_child(r.keda[EVS_KEDA_SCALER_DETAIL_ERRORS_TOTAL], t);
  }
  assert_same(reg, r.reg);
  evs_keda_metrics_object_free(o);
  evs_keda_metrics_free(km);
  evs_metrics_free(reg);
  evs_metrics_free(r.reg);
}

/* Drops the lines holding needle (in place). */
static void drop_lines(char *s, const char *needle) {
  char *w = s;
  for (char *line = s; *line;) {
    char *nl = strchr(line, '\n');
    size_t n = nl ? (size_t)(nl - line) + 1 : strlen(line);
    char save = line[n];
    line[n] = '\0';
    int drop = strstr(line, needle) != NULL;
    line[n] = save;
    if (!drop) {
      memmove(w, line, n);
      w += n;
    }
    line += n;
  }
  *w = '\0';
}

/* Objects freed and made while a scrape is in progress: the stream prints each series that
 * lived from its start to its end exactly once and nothing of a freed object, whose record
 * waits for the stream's end (ASan: no use after free; no leak once the stream is freed). The
 * slices together are what a scrape after the changes prints in one go, but for the new
 * object's series, which a stream may or may not print. */
static void test_free_during_stream(void **state) {
  (void)state;
  for (int compat = 0; compat <= 1; compat++) {
    evs_metrics_t *reg = evs_metrics_new();
    evs_keda_metrics_t *km;
    assert_int_equal(evs_keda_metrics_new(reg, compat, &build, &km), 0);
    evs_keda_metrics_object_t *o[REF_N];
    for (size_t j = 0; j < REF_N; j++) {
      const ref_obj_t *x = &ref_objs[j];
      assert_int_equal(evs_keda_metrics_object_new(km, x->ns, x->name, x->tr, x->n, &o[j]), 0);
      evs_keda_metrics_set_value(o[j], 0, 1.25 * (double)j);
      evs_keda_metrics_scaler_error(o[j], 0);
    }
    evs_metrics_stream_t *st;
    assert_int_equal(evs_metrics_stream_new(reg, &st), 0);
    char *all = calloc(1, 1), *slice;
    size_t len = 0, n;
    int turn = 0;
    evs_keda_metrics_object_t *late = NULL;
    for (;;) {
      assert_int_equal(evs_metrics_stream_next(st, 32, &slice, &n), 0);
      if (slice == NULL)
        break;
      all = realloc(all, len + n + 1);
      memcpy(all + len, slice, n + 1);
      len += n;
      free(slice);
      if (++turn == 3) { /* in the first family, evscale_breaker_state: a series per slice */
        assert_true(strstr(all, "evscale_breaker_state{") != NULL);
        assert_null(strstr(all, "worker-b\""));
        evs_keda_metrics_object_free(o[1]); /* prod/worker-b, printed later in that family */
        o[1] = NULL;
        evs_keda_trigger_t tr = {"redisScaler", "s0-late", "redis"};
        assert_int_equal(evs_keda_metrics_object_new(km, "zz", "late", &tr, 1, &late), 0);
      }
    }
    assert_true(turn > 3);
    assert_int_equal(evs_metrics_streams(reg), 1);
    evs_metrics_stream_free(st);
    assert_null(strstr(all, "worker-b\""));
    char *now = expose(reg);
    assert_non_null(strstr(now, "\"late\""));
    drop_lines(all, "\"zz\"");
    drop_lines(now, "\"zz\"");
    if (strcmp(all, now) != 0)
      print_message("--- streamed ---\n%s\n--- now ---\n%s", all, now);
    assert_string_equal(all, now);
    free(now);
    free(all);
    evs_keda_metrics_object_free(late);
    for (size_t j = 0; j < REF_N; j++)
      evs_keda_metrics_object_free(o[j]);
    evs_keda_metrics_free(km);
    evs_metrics_free(reg);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_v2_20_families),     cmocka_unit_test(test_v2_13_families),
      cmocka_unit_test(test_object_series),      cmocka_unit_test(test_compat_213),
      cmocka_unit_test(test_same_as_children),   cmocka_unit_test(test_bad_arguments),
      cmocka_unit_test(test_config_key),         cmocka_unit_test(test_promtool_evscale_families),
      cmocka_unit_test(test_object_bytes),       cmocka_unit_test(test_trigger_index_order),
      cmocka_unit_test(test_free_during_stream),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
