/* The /api/v1/query response rules of KEDA's ExecutePromQuery (kedacore/keda v2.20.2
 * pkg/scalers/prometheus_scaler.go), on jansson.
 *
 * KEDA decodes into promQueryResult with encoding/json, so a field of the wrong JSON type
 * anywhere in the decoded shape (status, data, resultType, result, an element, its metric or
 * value) fails the whole body, while unknown fields are ignored and null leaves a field empty.
 * Go matches field names case-insensitively; so do we (ASCII). Then, in KEDA's order:
 *   no series            -> empty (counted): 0 with ignoreNullValues, else an error;
 *   more than one series -> error;
 *   value list empty     -> empty (counted), as above; one element -> error;
 *   value[1] null        -> -1 (KEDA's initial v), no error;
 *   value[1] a string    -> strconv.ParseFloat, an error if it fails.
 * Our additions: status must be "success"; a scalar result is accepted. */
#include "evscale/prometheus.h"
#include "evscale/error.h"
#include "evscale/param.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int fail(evs_prom_result_t *out, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(evs_prom_result_t *out, int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(out->msg, sizeof out->msg, fmt, ap);
  va_end(ap);
  out->error = err;
  out->value = 0;
  return err;
}

/* Go's field matching: an exact key wins, else a case-insensitive one. */
static json_t *field(json_t *obj, const char *name) {
  json_t *v = json_object_get(obj, name);
  if (v != NULL)
    return v;
  const char *k;
  json_t *val;
  json_object_foreach(obj, k, val) {
    if (strcasecmp(k, name) == 0)
      v = val;
  }
  return v;
}

static int is_null(const json_t *v) { return v == NULL || json_is_null(v); }

/* The value string (or null) of a sample. */
static int sample_value(const json_t *val, evs_prom_result_t *out) {
  if (json_is_null(val)) {
    out->value = -1; /* KEDA: `var v float64 = -1`, returned as is when Value[1] is nil */
    return 0;
  }
  if (!json_is_string(val))
    return fail(out, EVS_EMETRIC, "prometheus sample value is not a string");
  char buf[128];
  const char *s = json_string_value(val);
  if (json_string_length(val) >= sizeof buf || strlen(s) != json_string_length(val))
    return fail(out, EVS_EMETRIC, "strconv.ParseFloat: parsing value: invalid syntax");
  snprintf(buf, sizeof buf, "%s", s);
  int rc = evs_param_go_float(buf, &out->value);
  if (rc != 0) {
    out->value = 0;
    return fail(out, EVS_EMETRIC, "strconv.ParseFloat: parsing \"%.60s\": %s", buf,
                rc == EVS_ERANGE ? "value out of range" : "invalid syntax");
  }
  return 0;
}

static int empty(evs_prom_result_t *out, int ignore_null, const char *what) {
  out->empty_upstream = 1;
  if (ignore_null) {
    out->value = 0;
    return 0;
  }
  return fail(out, EVS_EMETRIC, "prometheus metrics 'prometheus' target may be lost, the %s", what);
}

/* Checks every element's shape as encoding/json would before looking at the count. */
static int check_elements(json_t *result, evs_prom_result_t *out) {
  size_t i;
  json_t *el;
  json_array_foreach(result, i, el) {
    if (json_is_null(el))
      continue;
    if (!json_is_object(el))
      return fail(out, EVS_EJSON, "json: cannot unmarshal result element %zu", i);
    json_t *m = field(el, "metric"), *v = field(el, "value");
    if (!is_null(m) && !json_is_object(m))
      return fail(out, EVS_EJSON, "json: cannot unmarshal metric of result element %zu", i);
    if (!is_null(v) && !json_is_array(v))
      return fail(out, EVS_EJSON, "json: cannot unmarshal value of result element %zu", i);
  }
  return 0;
}

static int decode_tree(json_t *root, int ignore_null, evs_prom_result_t *out) {
  if (!json_is_object(root))
    return fail(out, EVS_EJSON, "json: cannot unmarshal response: not an object");
  json_t *status = field(root, "status"), *data = field(root, "data");
  if (!is_null(status) && !json_is_string(status))
    return fail(out, EVS_EJSON, "json: cannot unmarshal status");
  if (!is_null(data) && !json_is_object(data))
    return fail(out, EVS_EJSON, "json: cannot unmarshal data");
  json_t *rtype = is_null(data) ? NULL : field(data, "resultType");
  json_t *result = is_null(data) ? NULL : field(data, "result");
  if (!is_null(rtype) && !json_is_string(rtype))
    return fail(out, EVS_EJSON, "json: cannot unmarshal data.resultType");
  if (!is_null(result) && !json_is_array(result))
    return fail(out, EVS_EJSON, "json: cannot unmarshal data.result");
  if (status == NULL || !json_is_string(status) || strcmp(json_string_value(status), "success"))
    return fail(out, EVS_ESTATUS, "prometheus answered status \"%.40s\"",
                json_is_string(status) ? json_string_value(status) : "");
  /* Beyond KEDA: a scalar result is [<time>, "<value>"]. */
  if (json_is_string(rtype) && strcmp(json_string_value(rtype), "scalar") == 0 &&
      json_is_array(result)) {
    if (json_array_size(result) < 2)
      return fail(out, EVS_EMETRIC, "prometheus scalar result has no value");
    return sample_value(json_array_get(result, 1), out);
  }
  size_t n = json_is_array(result) ? json_array_size(result) : 0;
  if (n > 0 && check_elements(result, out) != 0)
    return out->error;
  if (n == 0)
    return empty(out, ignore_null, "result is empty");
  if (n > 1)
    return fail(out, EVS_EMETRIC, "prometheus query returned multiple elements");
  json_t *el = json_array_get(result, 0);
  json_t *value = json_is_object(el) ? field(el, "value") : NULL;
  size_t vlen = json_is_array(value) ? json_array_size(value) : 0;
  if (vlen == 0)
    return empty(out, ignore_null, "value list is empty");
  if (vlen < 2)
    return fail(out, EVS_EMETRIC, "prometheus query didn't return enough values");
  return sample_value(json_array_get(value, 1), out);
}

int evs_prom_decode(const char *body, size_t len, int ignore_null, evs_prom_result_t *out) {
  memset(out, 0, sizeof *out);
  json_error_t jerr;
  json_t *root = json_loadb(body, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
  if (root == NULL)
    return fail(out, EVS_EJSON, "invalid JSON at offset %d: %.80s", jerr.position, jerr.text);
  int rc = decode_tree(root, ignore_null, out);
  json_decref(root);
  return rc;
}
