/* See include/evscale/workload.h. */
#include "evscale/workload.h"

#include <stdlib.h>
#include <string.h>

#include "evscale/error.h"

/* ---- typed field access: absent (or null) is fine, a wrong type is an error ---- */

#define FAIL(code, msg)                                                                            \
  do {                                                                                             \
    if (why != NULL)                                                                               \
      *why = (msg);                                                                                \
    return (code);                                                                                 \
  } while (0)

/* *out = obj[key] when it is an object, NULL when absent or null. */
static int get_obj(const json_t *obj, const char *key, const json_t **out, const char *msg,
                   const char **why) {
  const json_t *v = obj != NULL ? json_object_get(obj, key) : NULL;
  *out = NULL;
  if (v == NULL || json_is_null(v))
    return 0;
  if (!json_is_object(v))
    FAIL(EVS_EPARSE, msg);
  *out = v;
  return 0;
}

/* *out = obj[key] in [lo, hi]; unchanged when absent or null. */
static int get_int(const json_t *obj, const char *key, int64_t lo, int64_t hi, int64_t *out,
                   const char *msg_type, const char *msg_range, const char **why) {
  const json_t *v = obj != NULL ? json_object_get(obj, key) : NULL;
  if (v == NULL || json_is_null(v))
    return 0;
  /* A real (3.0) is rejected too: Kubernetes' own decoder refuses it for an int32 field. */
  if (!json_is_integer(v))
    FAIL(EVS_EPARSE, msg_type);
  json_int_t i = json_integer_value(v);
  if (i < lo || i > hi)
    FAIL(EVS_ERANGE, msg_range);
  *out = (int64_t)i;
  return 0;
}

static int get_i32(const json_t *obj, const char *key, int32_t *out, const char *msg_type,
                   const char *msg_range, const char **why) {
  int64_t v = *out;
  int rc = get_int(obj, key, 0, INT32_MAX, &v, msg_type, msg_range, why);
  if (rc == 0)
    *out = (int32_t)v;
  return rc;
}

/* *out = obj[key] when a string, NULL when absent or null. */
static int get_str(const json_t *obj, const char *key, const char **out, const char *msg,
                   const char **why) {
  const json_t *v = obj != NULL ? json_object_get(obj, key) : NULL;
  *out = NULL;
  if (v == NULL || json_is_null(v))
    return 0;
  if (!json_is_string(v))
    FAIL(EVS_EPARSE, msg);
  *out = json_string_value(v);
  return 0;
}

/* ---- RFC 3339 ---- */

static int digits(const char *s, int n, int *out) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

int evs_workload__parse_time(const char *s, int64_t *out) {
  int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
  if (s == NULL || strlen(s) < 20 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) ||
      s[7] != '-' || digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') ||
      digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' ||
      digits(s + 17, 2, &sec))
    return EVS_EPARSE;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
    return EVS_EPARSE;
  const char *p = s + 19;
  if (*p == '.') /* the fraction does not change the second: ignored */
    for (p++; *p >= '0' && *p <= '9'; p++)
      ;
  if (*p == 'Z' || *p == 'z')
    p++;
  else if ((*p == '+' || *p == '-') && !digits(p + 1, 2, &oh) && p[3] == ':' &&
           !digits(p + 4, 2, &om) && oh <= 23 && om <= 59) {
    sign = *p == '+' ? 1 : -1;
    p += 6;
  } else
    return EVS_EPARSE;
  if (*p != '\0')
    return EVS_EPARSE;
  *out =
      days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - sign * (oh * 3600 + om * 60);
  return 0;
}

/* ---- Deployments and StatefulSets ---- */

typedef struct {
  const char *manager;
  int64_t time; /* INT64_MIN: no time (oldest) */
  int via_scale;
} owner_t;

/* One managedFields entry: does it own spec.replicas, and is it newer than *best? */
static int managed_entry(const json_t *e, owner_t *best, const char **why) {
  const json_t *fields, *spec;
  const char *manager, *sub, *time;
  int rc;
  if (!json_is_object(e))
    FAIL(EVS_EPARSE, "metadata.managedFields[]: not an object");
  if ((rc = get_str(e, "manager", &manager, "metadata.managedFields[].manager: not a string",
                    why)) != 0 ||
      (rc = get_str(e, "subresource", &sub, "metadata.managedFields[].subresource: not a string",
                    why)) != 0 ||
      (rc = get_str(e, "time", &time, "metadata.managedFields[].time: not a string", why)) != 0 ||
      (rc = get_obj(e, "fieldsV1", &fields, "metadata.managedFields[].fieldsV1: not an object",
                    why)) != 0 ||
      (rc = get_obj(fields, "f:spec", &spec,
                    "metadata.managedFields[].fieldsV1.f:spec: not an object", why)) != 0)
    return rc;
  /* An entry without a manager names nobody: it cannot be reported, so it is not an owner. */
  if (spec == NULL || json_object_get(spec, "f:replicas") == NULL || manager == NULL)
    return 0;
  int64_t t = INT64_MIN;
  if (time != NULL && evs_workload__parse_time(time, &t) != 0)
    t = INT64_MIN; /* a malformed time ranks as the oldest, it does not reject the object */
  if (best->manager == NULL || t >= best->time) {
    best->manager = manager;
    best->time = t;
    best->via_scale = sub != NULL && strcmp(sub, "scale") == 0;
  }
  return 0;
}

static int replicas_owner(const json_t *meta, owner_t *best, const char **why) {
  const json_t *mf = meta != NULL ? json_object_get(meta, "managedFields") : NULL;
  size_t i;
  const json_t *e;
  best->manager = NULL;
  best->time = INT64_MIN;
  best->via_scale = 0;
  if (mf == NULL || json_is_null(mf))
    return 0;
  if (!json_is_array(mf))
    FAIL(EVS_EPARSE, "metadata.managedFields: not an array");
  json_array_foreach(mf, i, e) {
    int rc = managed_entry(e, best, why);
    if (rc != 0)
      return rc;
  }
  return 0;
}

int evs_workload_parse(const json_t *obj, evs_intern_t *intern, evs_workload_t *out,
                       const char **why) {
  const json_t *meta, *spec, *status;
  int64_t gen = 0, ogen = 0, spec_r = -1;
  int rc;
  owner_t owner;
  if (obj == NULL || out == NULL || intern == NULL || !json_is_object(obj))
    FAIL(UV_EINVAL, "not an object");
  memset(out, 0, sizeof *out);
  if ((rc = get_obj(obj, "metadata", &meta, "metadata: not an object", why)) != 0 ||
      (rc = get_obj(obj, "spec", &spec, "spec: not an object", why)) != 0 ||
      (rc = get_obj(obj, "status", &status, "status: not an object", why)) != 0 ||
      (rc = get_int(spec, "replicas", 0, INT32_MAX, &spec_r, "spec.replicas: not an integer",
                    "spec.replicas: out of range", why)) != 0 ||
      (rc = get_i32(status, "replicas", &out->status_replicas, "status.replicas: not an integer",
                    "status.replicas: out of range", why)) != 0 ||
      (rc = get_i32(status, "readyReplicas", &out->ready_replicas,
                    "status.readyReplicas: not an integer", "status.readyReplicas: out of range",
                    why)) != 0 ||
      (rc = get_int(meta, "generation", 0, INT64_MAX, &gen, "metadata.generation: not an integer",
                    "metadata.generation: out of range", why)) != 0 ||
      (rc = get_int(status, "observedGeneration", 0, INT64_MAX, &ogen,
                    "status.observedGeneration: not an integer",
                    "status.observedGeneration: out of range", why)) != 0 ||
      (rc = replicas_owner(meta, &owner, why)) != 0)
    return rc;
  out->spec_replicas = (int32_t)spec_r;
  out->generation = gen;
  out->observed_generation = ogen;
  if (owner.manager != NULL) {
    /* Managers are a handful of distinct strings ("kubectl", "argocd-controller", evscale
     * itself) across thousands of objects: interned, each costs a pointer. */
    out->replicas_manager = evs_intern_str(intern, owner.manager);
    if (out->replicas_manager == NULL)
      FAIL(UV_ENOMEM, "out of memory");
    if (owner.via_scale)
      out->flags |= EVS_WORKLOAD_F_VIA_SCALE;
  }
  return 0;
}

int evs_workload_parse_scale(const json_t *obj, evs_workload_t *out, const char **why) {
  const json_t *spec, *status;
  int rc;
  if (obj == NULL || out == NULL || !json_is_object(obj))
    FAIL(UV_EINVAL, "not an object");
  memset(out, 0, sizeof *out);
  /* ScaleSpec.Replicas is a plain int32 with omitempty: absent means 0, not "unset". */
  if ((rc = get_obj(obj, "spec", &spec, "spec: not an object", why)) != 0 ||
      (rc = get_obj(obj, "status", &status, "status: not an object", why)) != 0 ||
      (rc = get_i32(spec, "replicas", &out->spec_replicas, "spec.replicas: not an integer",
                    "spec.replicas: out of range", why)) != 0 ||
      (rc = get_i32(status, "replicas", &out->status_replicas, "status.replicas: not an integer",
                    "status.replicas: out of range", why)) != 0)
    return rc;
  /* A Scale carries no ready count: the replicas that exist stand for the ready ones (the
   * deviation issue 13 documents for kinds read through /scale). */
  out->ready_replicas = out->status_replicas;
  out->flags = EVS_WORKLOAD_F_SCALE_OBJECT;
  return 0;
}

void evs_workload_clear(evs_workload_t *w, evs_intern_t *intern) {
  if (w == NULL)
    return;
  if (w->replicas_manager != NULL)
    evs_intern_release(intern, w->replicas_manager);
  memset(w, 0, sizeof *w);
}

static int decode_with(const json_t *obj, void **out, evs_intern_t *intern, int scale) {
  evs_workload_t *w = malloc(sizeof *w);
  int rc;
  *out = NULL;
  if (w == NULL)
    return UV_ENOMEM;
  rc = scale ? evs_workload_parse_scale(obj, w, NULL) : evs_workload_parse(obj, intern, w, NULL);
  if (rc != 0) {
    free(w);
    return rc;
  }
  *out = w;
  return 0;
}

int evs_workload_decode(const json_t *obj, void **out, void *arg) {
  return decode_with(obj, out, arg, 0);
}

int evs_workload_decode_scale(const json_t *obj, void **out, void *arg) {
  return decode_with(obj, out, arg, 1);
}

void evs_workload_free(void *data, void *arg) {
  if (data == NULL)
    return;
  evs_workload_clear(data, arg);
  free(data);
}

int evs_workload_status_current(const evs_workload_t *w) {
  return (w->flags & EVS_WORKLOAD_F_SCALE_OBJECT) || w->observed_generation >= w->generation;
}

/* ---- HorizontalPodAutoscalers ---- */

enum { H_TAV, H_TKIND, H_TNAME, H_OAV, H_OKIND, H_ONAME, H_OUID, H__N };

/* The ownerReference with controller: true (API validation allows at most one). */
static int controller_owner(const json_t *meta, const json_t **out, const char **why) {
  const json_t *refs = meta != NULL ? json_object_get(meta, "ownerReferences") : NULL, *r;
  size_t i;
  *out = NULL;
  if (refs == NULL || json_is_null(refs))
    return 0;
  if (!json_is_array(refs))
    FAIL(EVS_EPARSE, "metadata.ownerReferences: not an array");
  json_array_foreach(refs, i, r) {
    if (!json_is_object(r))
      FAIL(EVS_EPARSE, "metadata.ownerReferences[]: not an object");
    const json_t *c = json_object_get(r, "controller");
    if (c != NULL && !json_is_null(c) && !json_is_boolean(c))
      FAIL(EVS_EPARSE, "metadata.ownerReferences[].controller: not a boolean");
    if (json_is_true(c) && *out == NULL)
      *out = r;
  }
  return 0;
}

static int evscale_label(const json_t *meta, uint8_t *out, const char **why) {
  const json_t *labels;
  const char *v;
  int rc;
  if ((rc = get_obj(meta, "labels", &labels, "metadata.labels: not an object", why)) != 0 ||
      (rc = get_str(labels, EVS_WORKLOAD_HPA_LABEL, &v,
                    "metadata.labels[" EVS_WORKLOAD_HPA_LABEL "]: not a string", why)) != 0)
    return rc;
  *out = v != NULL && strcmp(v, EVS_WORKLOAD_HPA_LABEL_VALUE) == 0;
  return 0;
}

static int hpa_strings(const json_t *ref, const json_t *owner, const char *s[H__N],
                       const char **why) {
  int rc;
  if ((rc = get_str(ref, "apiVersion", &s[H_TAV], "spec.scaleTargetRef.apiVersion: not a string",
                    why)) != 0 ||
      (rc = get_str(ref, "kind", &s[H_TKIND], "spec.scaleTargetRef.kind: not a string", why)) !=
          0 ||
      (rc = get_str(ref, "name", &s[H_TNAME], "spec.scaleTargetRef.name: not a string", why)) !=
          0 ||
      (rc = get_str(owner, "apiVersion", &s[H_OAV],
                    "metadata.ownerReferences[].apiVersion: not a string", why)) != 0 ||
      (rc = get_str(owner, "kind", &s[H_OKIND], "metadata.ownerReferences[].kind: not a string",
                    why)) != 0 ||
      (rc = get_str(owner, "name", &s[H_ONAME], "metadata.ownerReferences[].name: not a string",
                    why)) != 0 ||
      (rc = get_str(owner, "uid", &s[H_OUID], "metadata.ownerReferences[].uid: not a string",
                    why)) != 0)
    return rc;
  if (s[H_TKIND] == NULL || s[H_TKIND][0] == '\0')
    FAIL(EVS_EPARSE, "spec.scaleTargetRef.kind: missing");
  if (s[H_TNAME] == NULL || s[H_TNAME][0] == '\0')
    FAIL(EVS_EPARSE, "spec.scaleTargetRef.name: missing");
  if (s[H_TAV] == NULL)
    s[H_TAV] = "";
  if (owner != NULL)
    for (int i = H_OAV; i < H__N; i++)
      if (s[i] == NULL)
        s[i] = "";
  return 0;
}

/* One allocation: the struct, then the strings back to back. */
static evs_hpa_info_t *hpa_alloc(const char *s[H__N]) {
  size_t len[H__N], total = sizeof(evs_hpa_info_t);
  for (int i = 0; i < H__N; i++)
    total += (len[i] = s[i] != NULL ? strlen(s[i]) + 1 : 0);
  evs_hpa_info_t *h = calloc(1, total);
  if (h == NULL)
    return NULL;
  char *p = (char *)(h + 1);
  const char **dst[H__N] = {&h->target_api_version, &h->target_kind, &h->target_name,
                            &h->owner_api_version,  &h->owner_kind,  &h->owner_name,
                            &h->owner_uid};
  for (int i = 0; i < H__N; i++) {
    if (s[i] == NULL)
      continue;
    memcpy(p, s[i], len[i]);
    *dst[i] = p;
    p += len[i];
  }
  return h;
}

int evs_hpa_info_parse(const json_t *obj, evs_hpa_info_t **out, const char **why) {
  const json_t *meta, *spec, *ref, *owner;
  const char *s[H__N] = {0};
  int64_t min = -1, max = -1;
  uint8_t label = 0;
  int rc;
  if (out != NULL)
    *out = NULL;
  if (obj == NULL || out == NULL || !json_is_object(obj))
    FAIL(UV_EINVAL, "not an object");
  if ((rc = get_obj(obj, "metadata", &meta, "metadata: not an object", why)) != 0 ||
      (rc = get_obj(obj, "spec", &spec, "spec: not an object", why)) != 0 ||
      (rc = get_obj(spec, "scaleTargetRef", &ref, "spec.scaleTargetRef: not an object", why)) !=
          0 ||
      (rc = get_int(spec, "minReplicas", 0, INT32_MAX, &min, "spec.minReplicas: not an integer",
                    "spec.minReplicas: out of range", why)) != 0 ||
      (rc = get_int(spec, "maxReplicas", 0, INT32_MAX, &max, "spec.maxReplicas: not an integer",
                    "spec.maxReplicas: out of range", why)) != 0 ||
      (rc = controller_owner(meta, &owner, why)) != 0 ||
      (rc = evscale_label(meta, &label, why)) != 0 || (rc = hpa_strings(ref, owner, s, why)) != 0)
    return rc;
  if (max < 0)
    FAIL(EVS_EPARSE, "spec.maxReplicas: missing");
  evs_hpa_info_t *h = hpa_alloc(s);
  if (h == NULL)
    FAIL(UV_ENOMEM, "out of memory");
  h->min_replicas = (int32_t)min;
  h->max_replicas = (int32_t)max;
  h->evscale = label;
  *out = h;
  return 0;
}

void evs_hpa_info_free(evs_hpa_info_t *h) { free(h); }

int evs_hpa_info_decode(const json_t *obj, void **out, void *arg) {
  (void)arg;
  evs_hpa_info_t *h = NULL;
  int rc = evs_hpa_info_parse(obj, &h, NULL);
  *out = h;
  return rc;
}

void evs_hpa_info_free_data(void *data, void *arg) {
  (void)arg;
  evs_hpa_info_free(data);
}

/* ---- target keys ---- */

int evs_workload_target_key(const char *ns, const char *api_version, const char *kind,
                            const char *name, char *buf, size_t cap) {
  if (buf != NULL && cap > 0)
    buf[0] = '\0';
  if (ns == NULL || name == NULL || buf == NULL)
    return UV_EINVAL;
  if (api_version == NULL || api_version[0] == '\0')
    api_version = "apps/v1";
  if (kind == NULL || kind[0] == '\0')
    kind = "Deployment";
  /* "apps/v1" → "apps"; "v1" (the core group) → "". */
  const char *slash = strrchr(api_version, '/');
  size_t glen = slash != NULL ? (size_t)(slash - api_version) : 0;
  size_t klen = strlen(kind), nslen = strlen(ns), nlen = strlen(name);
  size_t need = glen + klen + nslen + nlen + 4;
  if (need > cap)
    return UV_ENOBUFS;
  char *p = buf;
  memcpy(p, api_version, glen);
  p += glen;
  *p++ = '/';
  memcpy(p, kind, klen);
  p += klen;
  *p++ = '/';
  memcpy(p, ns, nslen);
  p += nslen;
  *p++ = '/';
  memcpy(p, name, nlen);
  p[nlen] = '\0';
  return 0;
}
