/* The prometheus trigger's pure parts: metadata/authentication parsing as KEDA's typed config
 * does it, and the response decoder on real Prometheus answers (the fuzz seed corpus, captured
 * from Debian's prometheus 2.42 by test/prom_harness.py) and on hand-made edge bodies.
 * Expected values and messages follow kedacore/keda v2.20.2 pkg/scalers/prometheus_scaler.go,
 * pkg/scalers/authentication/authentication_types.go, pkg/scalers/scalersconfig/typed_config.go. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "evscale/error.h"
#include "evscale/prometheus.h"

#define MAXKV 16

typedef struct {
  evs_prom_kv_t meta[MAXKV], auth[MAXKV];
  size_t nm, na;
  evs_prom_input_t in;
  evs_prom_config_t cfg;
  evs_diag_t diag;
} fx_t;

/* "k=v" strings; "@k=v" goes to authParams. The value is everything after the first '='. */
static void fx_init(fx_t *f, const char *const *kvs) {
  memset(f, 0, sizeof *f);
  static char store[64][512];
  static int si;
  for (size_t i = 0; kvs[i]; i++) {
    char *s = store[si++ % 64];
    snprintf(s, sizeof store[0], "%s", kvs[i]);
    int auth = s[0] == '@';
    char *k = s + auth, *eq = strchr(k, '=');
    *eq = '\0';
    evs_prom_kv_t kv = {k, eq + 1};
    if (auth)
      f->auth[f->na++] = kv;
    else
      f->meta[f->nm++] = kv;
  }
  f->in = (evs_prom_input_t){.object = "ns1/so1",
                             .index = 2,
                             .metadata = {f->meta, f->nm},
                             .auth_params = {f->auth, f->na}};
  evs_diag_init(&f->diag);
}

static int fx_parse(fx_t *f, const char *const *kvs, uint64_t limit) {
  fx_init(f, kvs);
  return evs_prom_config_parse(&f->in, limit, &f->cfg, &f->diag);
}

static void fx_free(fx_t *f) {
  evs_prom_config_free(&f->cfg);
  evs_diag_free(&f->diag);
}

/* The diag text of every entry, joined. */
static const char *fx_text(fx_t *f) {
  static char all[4096];
  all[0] = '\0';
  for (size_t i = 0; i < f->diag.n; i++) {
    char b[600];
    evs_diag_format(&f->diag, i, b, sizeof b);
    strncat(all, b, sizeof all - strlen(all) - 2);
    strcat(all, "\n");
  }
  return all;
}

#define BASE "serverAddress=http://prom:9090", "query=sum(rate(x[1m]))", "threshold=10"

static void test_minimal_defaults(void **state) {
  (void)state;
  fx_t f;
  const char *kv[] = {"serverAddress= http://prom:9090 ", "query=up", "threshold=10.5", NULL};
  assert_int_equal(fx_parse(&f, kv, 0), 0);
  assert_string_equal(f.cfg.server_address, "http://prom:9090"); /* trimmed as KEDA does */
  assert_string_equal(f.cfg.query, "up");
  assert_true(f.cfg.threshold == 10.5);
  assert_true(f.cfg.activation_threshold == 0);
  assert_int_equal(f.cfg.ignore_null_values, 1); /* default=true */
  assert_int_equal(f.cfg.unsafe_ssl, 0);
  assert_int_equal(f.cfg.timeout_ms, 3000); /* KEDA_HTTP_DEFAULT_TIMEOUT */
  assert_null(f.cfg.namespace_);
  assert_int_equal(f.cfg.auth_modes, 0);
  fx_free(&f);
}

static void test_all_fields(void **state) {
  (void)state;
  fx_t f;
  const char *kv[] = {BASE,
                      "activationThreshold=2.5",
                      "namespace=team-a",
                      "customHeaders=X-Scope-OrgID = tenant1 , X-Other=b",
                      "queryParameters=zz=1, dedup=false",
                      "ignoreNullValues=false",
                      "unsafeSsl=true",
                      "timeout=1500",
                      NULL};
  assert_int_equal(fx_parse(&f, kv, 0), 0);
  assert_true(f.cfg.activation_threshold == 2.5);
  assert_string_equal(f.cfg.namespace_, "team-a");
  assert_int_equal(f.cfg.n_custom_headers, 2);
  assert_string_equal(f.cfg.custom_headers[0].name, "X-Scope-OrgID");
  assert_string_equal(f.cfg.custom_headers[0].value, "tenant1");
  assert_int_equal(f.cfg.n_query_params, 2);
  assert_string_equal(f.cfg.query_params[0].name, "dedup"); /* sorted */
  assert_string_equal(f.cfg.query_params[1].value, "1");
  assert_int_equal(f.cfg.ignore_null_values, 0);
  assert_int_equal(f.cfg.unsafe_ssl, 1);
  assert_int_equal(f.cfg.timeout_ms, 1500); /* a bare number is milliseconds (KEDA >= 2.18) */
  fx_free(&f);
}

static void test_timeout_forms(void **state) {
  (void)state;
  static const struct {
    const char *v;
    uint64_t limit;
    int ok;
    uint64_t ms;
  } t[] = {
      {"2s", 0, 1, 2000},   {"1m30s", 0, 1, 90000},   {"1.5s", 0, 1, 1500},
      {"250ms", 0, 1, 250}, {"1500us", 0, 1, 2},      {"0", 0, 1, 3000}, /* 0: the default */
      {"0s", 0, 1, 3000},   {"60s", 10000, 1, 10000},                    /* capped by the limit */
      {"-1s", 0, 0, 0},     {"-5", 0, 0, 0},          {"5d", 0, 0, 0},
      {"abc", 0, 0, 0},     {"1.5", 0, 0, 0},         {"+7", 0, 1, 7},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    fx_t f;
    char tv[64];
    snprintf(tv, sizeof tv, "timeout=%s", t[i].v);
    const char *kv[] = {BASE, tv, NULL};
    int rc = fx_parse(&f, kv, t[i].limit);
    if (t[i].ok) {
      if (rc != 0)
        fail_msg("timeout %s refused: %s", t[i].v, fx_text(&f));
      assert_int_equal(f.cfg.timeout_ms, t[i].ms);
    } else {
      if (rc != UV_EINVAL)
        fail_msg("timeout %s accepted", t[i].v);
      assert_non_null(strstr(fx_text(&f), "spec.triggers[2].metadata.timeout"));
    }
    fx_free(&f);
  }
}

/* Each bad field is named with the ScaledObject, the trigger and the field; all at once. */
static void test_errors_name_everything(void **state) {
  (void)state;
  fx_t f;
  const char *kv[] = {"threshold=abc",
                      "activationThreshold=1e400",
                      "ignoreNullValues=yes",
                      "unsafeSsl=maybe",
                      "customHeaders=a=b=c",
                      "queryParameters=novalue",
                      NULL};
  fx_init(&f, kv);
  f.in.trigger = "my-trigger";
  assert_int_equal(evs_prom_config_parse(&f.in, 0, &f.cfg, &f.diag), UV_EINVAL);
  const char *txt = fx_text(&f);
  static const char *const want[] = {
      "ns1/so1: spec.triggers[2].metadata.serverAddress: trigger \"my-trigger\": missing "
      "required parameter \"serverAddress\"",
      "spec.triggers[2].metadata.query: trigger \"my-trigger\": missing required parameter",
      "spec.triggers[2].metadata.threshold: trigger \"my-trigger\": unable to set param "
      "\"threshold\" value \"abc\"",
      "metadata.activationThreshold",
      "out of range",
      "metadata.ignoreNullValues",
      "metadata.unsafeSsl",
      "metadata.customHeaders",
      "metadata.queryParameters"};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if (strstr(txt, want[i]) == NULL)
      fail_msg("missing \"%s\" in:\n%s", want[i], txt);
  assert_int_equal(f.diag.n, 8);
  fx_free(&f);
}

static void test_header_map_rules(void **state) {
  (void)state;
  static const struct {
    const char *v;
    int ok;
  } t[] = {{"a=1,b=2", 1}, {"a=1,", 0},    {"=1", 0},      {"a b=1", 0},
           {"a=x=y", 0},   {" a = 1 ", 1}, {"a=1,a=2", 1}, {"X-Tab=a\tb", 1}};
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    fx_t f;
    char hv[64];
    snprintf(hv, sizeof hv, "customHeaders=%s", t[i].v);
    const char *kv[] = {BASE, hv, NULL};
    int rc = fx_parse(&f, kv, 0);
    if ((rc == 0) != t[i].ok)
      fail_msg("customHeaders \"%s\": rc %d (%s)", t[i].v, rc, fx_text(&f));
    fx_free(&f);
  }
  /* A later key replaces the earlier one, as in a Go map. */
  fx_t f;
  const char *kv[] = {BASE, "customHeaders=a=1,a=2", NULL};
  assert_int_equal(fx_parse(&f, kv, 0), 0);
  assert_int_equal(f.cfg.n_custom_headers, 1);
  assert_string_equal(f.cfg.custom_headers[0].value, "2");
  fx_free(&f);
}

static void test_auth_modes(void **state) {
  (void)state;
  static const struct {
    const char *kv[4];
    int ok;
    unsigned modes;
    const char *msg;
  } t[] = {
      {{"authModes=bearer", "@bearerToken=tok"}, 1, EVS_PROM_AUTH_BEARER, NULL},
      {{"@authModes=bearer", "@token=tok"}, 1, EVS_PROM_AUTH_BEARER, NULL}, /* alias names */
      {{"authMode=basic", "@username=u"}, 1, EVS_PROM_AUTH_BASIC, NULL},    /* password optional */
      {{"authModes=tls, basic", "@username=u", "@cert=C"}, 0, 0, "cert=<present> and key=<empty>"},
      {{"authModes=custom", "@customAuthHeader=X-Key"},
       0,
       0,
       "customAuthHeader=<present> and customAuthValue=<empty>"},
      {{"authModes=bearer"}, 0, 0, "bearer token=<empty> is required"},
      {{"authModes=basic"}, 0, 0, "username=<empty> is required"},
      {{"authModes=bearer,basic", "@bearerToken=t", "@username=u"},
       0,
       0,
       "must contain only one of"},
      {{"authModes=kerberos"}, 0, 0, "must be one of [apiKey basic tls bearer custom oauth]"},
      {{"authModes=bearer,", "@bearerToken=t"}, 0, 0, "must be one of"},
      {{"authModes=custom,tls", "@customAuthHeader=X-K", "@customAuthValue=v"},
       0,
       0,
       "cert=<empty>"},
      {{"authModes=apiKey"}, 0, 0, "apiKey is required"},
      {{"authModes=oauth", "@clientID=c"}, 0, 0, "oauthTokenURI=<empty> and clientID=<present>"},
      {{"method=POST"}, 0, 0, "\"method\" value \"POST\" must be one of [header query]"},
      {{"@endpointParams=a=1;b=2"}, 0, 0, "expected url.Values"},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    const char *kv[8] = {BASE};
    for (size_t j = 0; j < 4 && t[i].kv[j]; j++)
      kv[3 + j] = t[i].kv[j];
    fx_t f;
    int rc = fx_parse(&f, kv, 0);
    if ((rc == 0) != t[i].ok)
      fail_msg("case %zu: rc %d: %s", i, rc, fx_text(&f));
    if (t[i].ok)
      assert_int_equal(f.cfg.auth_modes, t[i].modes);
    if (t[i].msg && strstr(fx_text(&f), t[i].msg) == NULL)
      fail_msg("case %zu: want \"%s\" in %s", i, t[i].msg, fx_text(&f));
    fx_free(&f);
  }
}

/* A secret never appears in a diag, whatever else is wrong. */
static void test_secrets_never_echoed(void **state) {
  (void)state;
  fx_t f;
  const char *kv[] = {"serverAddress=http://user:hunter2@prom:9090",
                      "query=up",
                      "threshold=x",
                      "authModes=bearer,basic",
                      "@bearerToken=hunter2",
                      "@password=hunter2",
                      "customHeaders=X-Api-Key=hunter2\x01",
                      NULL};
  assert_int_equal(fx_parse(&f, kv, 0), UV_EINVAL);
  assert_null(strstr(fx_text(&f), "hunter2"));
  assert_non_null(strstr(fx_text(&f), "metadata.serverAddress"));
  fx_free(&f);
}

static void test_query_escape(void **state) {
  (void)state;
  char *e = evs_prom_query_escape("sum(rate(http{a=\"b c\"}[1m])) / 2~_.-");
  assert_string_equal(e, "sum%28rate%28http%7Ba%3D%22b+c%22%7D%5B1m%5D%29%29+%2F+2~_.-");
  free(e);
}

/* --- decoder --- */

static char *corpus(const char *name, size_t *len) {
  char path[512];
  snprintf(path, sizeof path, "%s/test/fuzz/corpus/fuzz_prom_response/%s.json",
           getenv("EVS_SOURCE_DIR") ? getenv("EVS_SOURCE_DIR") : EVS_SOURCE_DIR, name);
  FILE *fp = fopen(path, "rb");
  assert_non_null(fp);
  static char buf[8192];
  *len = fread(buf, 1, sizeof buf - 1, fp);
  buf[*len] = '\0';
  fclose(fp);
  return buf;
}

static void test_decode_real_answers(void **state) {
  (void)state;
  static const struct {
    const char *file;
    int ignore, err, empty;
    double value; /* NAN: expect NaN; meaningless when err */
  } t[] = {
      {"vector_one", 1, 0, 0, 42.5},
      {"vector_one", 0, 0, 0, 42.5},
      {"vector_sum", 1, 0, 0, 3},
      {"vector_nan", 0, 0, 0, NAN}, /* NaN is reading.h's business, not the decoder's */
      {"vector_pinf", 0, 0, 0, INFINITY},
      {"vector_ninf", 0, 0, 0, -INFINITY},
      {"vector_empty", 1, 0, 1, 0},
      {"vector_empty", 0, EVS_EMETRIC, 1, 0},
      {"matrix", 1, 0, 1, 0}, /* "values", not "value": KEDA's value list is empty */
      {"matrix", 0, EVS_EMETRIC, 1, 0},
      {"vector_multi", 1, EVS_EMETRIC, 0, 0},
      {"scalar", 1, 0, 0, 42.5}, /* deliberate difference: KEDA cannot decode a scalar */
      {"scalar_lit", 0, 0, 0, 3.25},
      {"string", 1, EVS_EJSON, 0, 0},
      {"error_parse", 1, EVS_ESTATUS, 0, 0},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    size_t len;
    char *b = corpus(t[i].file, &len);
    evs_prom_result_t r;
    int rc = evs_prom_decode(b, len, t[i].ignore, &r);
    if (rc != t[i].err || r.error != t[i].err || r.empty_upstream != t[i].empty)
      fail_msg("%s ignore=%d: rc %d empty %d (%s)", t[i].file, t[i].ignore, rc, r.empty_upstream,
               r.msg);
    if (t[i].err == 0 && !(isnan(t[i].value) ? isnan(r.value) : r.value == t[i].value))
      fail_msg("%s: value %g", t[i].file, r.value);
  }
}

static void test_decode_edges(void **state) {
  (void)state;
  static const struct {
    const char *body;
    int err, empty;
    double value;
  } t[] = {
      {"{\"status\":\"success\",\"data\":{\"result\":[{\"value\":[1,null]}]}}", 0, 0, -1},
      {"{\"status\":\"success\",\"data\":{\"result\":[{\"value\":[1]}]}}", EVS_EMETRIC, 0, 0},
      {"{\"status\":\"success\",\"data\":{\"result\":[{\"value\":[]}]}}", EVS_EMETRIC, 1, 0},
      {"{\"status\":\"success\",\"data\":{\"result\":[null]}}", EVS_EMETRIC, 1, 0},
      {"{\"status\":\"success\",\"data\":null}", EVS_EMETRIC, 1, 0},
      {"{\"status\":\"success\"}", EVS_EMETRIC, 1, 0},
      {"{\"STATUS\":\"success\",\"Data\":{\"RESULT\":[{\"Value\":[1,\"7\"]}]}}", 0, 0, 7},
      {"{\"status\":\"success\",\"data\":{\"result\":[{\"value\":[1,\"7\",\"x\"]}]}}", 0, 0, 7},
      {"{\"status\":\"success\",\"data\":{\"result\":[{\"value\":[1,7]}]}}", EVS_EMETRIC, 0, 0},
      {"{\"status\":\"success\",\"data\":{\"result\":[{\"value\":[1,\"seven\"]}]}}", EVS_EMETRIC, 0,
       0},
      {"{\"status\":\"success\",\"data\":{\"result\":[{\"value\":[1,\" 7\"]}]}}", EVS_EMETRIC, 0,
       0},
      {"{\"status\":\"success\",\"data\":{\"result\":[{\"metric\":5,\"value\":[1,\"7\"]}]}}",
       EVS_EJSON, 0, 0},
      {"{\"status\":\"success\",\"data\":{\"result\":{}}}", EVS_EJSON, 0, 0},
      {"{\"status\":1}", EVS_EJSON, 0, 0},
      {"{\"status\":\"error\",\"data\":{\"result\":[]}}", EVS_ESTATUS, 0, 0},
      {"[]", EVS_EJSON, 0, 0},
      {"{\"status\":\"success\"", EVS_EJSON, 0, 0},
      {"", EVS_EJSON, 0, 0},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    evs_prom_result_t r;
    int rc = evs_prom_decode(t[i].body, strlen(t[i].body), 0, &r);
    if (rc != t[i].err || r.empty_upstream != t[i].empty ||
        (t[i].err == 0 && r.value != t[i].value))
      fail_msg("case %zu %s: rc %d empty %d value %g (%s)", i, t[i].body, rc, r.empty_upstream,
               r.value, r.msg);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_minimal_defaults),     cmocka_unit_test(test_all_fields),
      cmocka_unit_test(test_timeout_forms),        cmocka_unit_test(test_errors_name_everything),
      cmocka_unit_test(test_header_map_rules),     cmocka_unit_test(test_auth_modes),
      cmocka_unit_test(test_secrets_never_echoed), cmocka_unit_test(test_query_escape),
      cmocka_unit_test(test_decode_real_answers),  cmocka_unit_test(test_decode_edges),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
