/* The compact workload and HPA decoders (src/kube/workload.c) against payloads captured from the
 * v1.20.2 control plane and a 1.22+ managedFields layout derived from the Kubernetes source (see
 * test/data/workload/README.md for provenance), plus hand-made edge cases: absent fields, wrong
 * types, the managedFields ownership rules, interning and the target key.
 *
 * sizeof(evs_workload_t) is 40 bytes on x86_64 (test_size prints and bounds it): with the
 * informer's own evs_informer_obj_t per object, a Deployment costs that plus its name, uid and
 * resourceVersion strings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "evscale/error.h"
#include "evscale/intern.h"
#include "evscale/informer.h"
#include "evscale/workload.h"
#include "kube_writes_helpers.h"
#include "net_helpers.h"

static json_t *load(const char *name) {
  char path[1024];
  json_error_t err;
  snprintf(path, sizeof path, "%s/test/data/workload/%s", evs_test_src(), name);
  json_t *j = json_load_file(path, 0, &err);
  if (j == NULL)
    fail_msg("%s: %s", path, err.text);
  return j;
}

static json_t *parse(const char *text) {
  json_error_t err;
  json_t *j = json_loads(text, 0, &err);
  if (j == NULL)
    fail_msg("bad test JSON %s: %s", text, err.text);
  return j;
}

static void assert_manager(const evs_workload_t *w, const char *want) {
  if (want == NULL) {
    if (w->replicas_manager != NULL)
      fail_msg("manager: want none, got \"%s\"", w->replicas_manager);
  } else {
    if (w->replicas_manager == NULL)
      fail_msg("manager: want \"%s\", got none", want);
    assert_string_equal(w->replicas_manager, want);
  }
}

/* ---- captured Deployments, StatefulSets and Scales ---- */

typedef struct {
  const char *file;
  int scale; /* a Scale object */
  int32_t spec, status, ready;
  int64_t gen, ogen;
  const char *manager;
  int via_scale;
} wl_case_t;

static const wl_case_t WL_CASES[] = {
    /* /scale on 1.20: managedFields unchanged, the last whole-object writer still owns it */
    {"deployment-v1.20-kubectl-scale.json", 0, 2, 2, 2, 4, 4, "argocd-controller", 0},
    {"deployment-v1.20-update-by-other-manager.json", 0, 4, 4, 0, 3, 3, "argocd-controller", 0},
    /* no replicas in the manifest: defaulted to 1, owned by the creating manager */
    {"deployment-v1.20-replicas-defaulted.json", 0, 1, 1, 1, 1, 1, "kubectl-client-side-apply", 0},
    /* 1.22+: the /scale writer's own entry, subresource "scale"; the controller's "status"
       entry owns f:status.f:replicas, which must not count */
    {"deployment-v1.22-kubectl-scale-subresource.json", 0, 2, 2, 2, 4, 4, "kubectl", 1},
    {"statefulset-v1.20.json", 0, 2, 2, 1, 2, 2, "kubectl-client-side-apply", 0},
    {"scale-deployment-v1.20.json", 1, 2, 2, 2, 0, 0, NULL, 0},
    {"scale-statefulset-v1.20.json", 1, 2, 2, 2, 0, 0, NULL, 0},
};

static void test_captured(void **state) {
  (void)state;
  evs_intern_t *in;
  assert_int_equal(evs_intern_new(&in), 0);
  for (size_t i = 0; i < sizeof WL_CASES / sizeof WL_CASES[0]; i++) {
    const wl_case_t *c = &WL_CASES[i];
    json_t *j = load(c->file);
    void *data = NULL;
    int rc = c->scale ? evs_workload_decode_scale(j, &data, in) : evs_workload_decode(j, &data, in);
    json_decref(j); /* nothing may point into the JSON once decoded */
    if (rc != 0)
      fail_msg("%s: %s", c->file, evs_strerror(rc));
    const evs_workload_t *w = data;
    print_message("%s\n", c->file);
    assert_int_equal(w->spec_replicas, c->spec);
    assert_int_equal(w->status_replicas, c->status);
    assert_int_equal(w->ready_replicas, c->ready);
    assert_int_equal(w->generation, c->gen);
    assert_int_equal(w->observed_generation, c->ogen);
    assert_manager(w, c->manager);
    assert_int_equal(!!(w->flags & EVS_WORKLOAD_F_VIA_SCALE), c->via_scale);
    assert_int_equal(!!(w->flags & EVS_WORKLOAD_F_SCALE_OBJECT), c->scale);
    assert_true(evs_workload_status_current(w));
    evs_workload_free(data, in);
  }
  assert_int_equal(evs_intern_count(in), 0);
  evs_intern_free(in);
}

/* ---- absent fields ---- */

static void test_absent(void **state) {
  (void)state;
  evs_intern_t *in;
  evs_workload_t w;
  const char *docs[] = {"{}", "{\"metadata\":{},\"spec\":{},\"status\":{}}",
                        "{\"metadata\":null,\"spec\":null,\"status\":null}",
                        "{\"spec\":{\"replicas\":null},\"status\":{\"readyReplicas\":null},"
                        "\"metadata\":{\"managedFields\":null}}",
                        "{\"metadata\":{\"managedFields\":[]}}"};
  assert_int_equal(evs_intern_new(&in), 0);
  for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
    json_t *j = parse(docs[i]);
    assert_int_equal(evs_workload_parse(j, in, &w, NULL), 0);
    assert_int_equal(w.spec_replicas, -1); /* absent, not 0: 0 is a real count */
    assert_int_equal(w.status_replicas, 0);
    assert_int_equal(w.ready_replicas, 0);
    assert_int_equal(w.generation, 0);
    assert_int_equal(w.observed_generation, 0);
    assert_null(w.replicas_manager);
    assert_int_equal(w.flags, 0);
    evs_workload_clear(&w, in);
    /* A Scale without spec.replicas means 0 (int32 omitempty), and ready follows status. */
    assert_int_equal(evs_workload_parse_scale(j, &w, NULL), 0);
    assert_int_equal(w.spec_replicas, 0);
    assert_int_equal(w.ready_replicas, 0);
    assert_int_equal(w.flags, EVS_WORKLOAD_F_SCALE_OBJECT);
    json_decref(j);
  }
  /* spec.replicas 0 is kept as 0, distinct from absent */
  json_t *j = parse("{\"spec\":{\"replicas\":0},\"status\":{\"replicas\":3}}");
  assert_int_equal(evs_workload_parse(j, in, &w, NULL), 0);
  assert_int_equal(w.spec_replicas, 0);
  assert_int_equal(w.status_replicas, 3);
  json_decref(j);
  evs_intern_free(in);
}

/* ---- wrong types: a clear error naming the field, never a crash ---- */

typedef struct {
  const char *json;
  int scale;
  int err;
  const char *why;
} bad_case_t;

static const bad_case_t BAD[] = {
    {"{\"spec\":{\"replicas\":\"3\"}}", 0, EVS_EPARSE, "spec.replicas: not an integer"},
    {"{\"spec\":{\"replicas\":3.0}}", 0, EVS_EPARSE, "spec.replicas: not an integer"},
    {"{\"spec\":{\"replicas\":true}}", 0, EVS_EPARSE, "spec.replicas: not an integer"},
    {"{\"spec\":{\"replicas\":-1}}", 0, EVS_ERANGE, "spec.replicas: out of range"},
    {"{\"spec\":{\"replicas\":2147483648}}", 0, EVS_ERANGE, "spec.replicas: out of range"},
    {"{\"spec\":[]}", 0, EVS_EPARSE, "spec: not an object"},
    {"{\"status\":\"ok\"}", 0, EVS_EPARSE, "status: not an object"},
    {"{\"metadata\":7}", 0, EVS_EPARSE, "metadata: not an object"},
    {"{\"status\":{\"replicas\":{}}}", 0, EVS_EPARSE, "status.replicas: not an integer"},
    {"{\"status\":{\"readyReplicas\":[1]}}", 0, EVS_EPARSE, "status.readyReplicas: not an integer"},
    {"{\"status\":{\"readyReplicas\":-5}}", 0, EVS_ERANGE, "status.readyReplicas: out of range"},
    {"{\"metadata\":{\"generation\":\"1\"}}", 0, EVS_EPARSE, "metadata.generation: not an integer"},
    {"{\"metadata\":{\"generation\":-1}}", 0, EVS_ERANGE, "metadata.generation: out of range"},
    {"{\"status\":{\"observedGeneration\":1.5}}", 0, EVS_EPARSE,
     "status.observedGeneration: not an integer"},
    {"{\"metadata\":{\"managedFields\":{}}}", 0, EVS_EPARSE,
     "metadata.managedFields: not an array"},
    {"{\"metadata\":{\"managedFields\":[1]}}", 0, EVS_EPARSE,
     "metadata.managedFields[]: not an object"},
    {"{\"metadata\":{\"managedFields\":[{\"manager\":5}]}}", 0, EVS_EPARSE,
     "metadata.managedFields[].manager: not a string"},
    {"{\"metadata\":{\"managedFields\":[{\"subresource\":[]}]}}", 0, EVS_EPARSE,
     "metadata.managedFields[].subresource: not a string"},
    {"{\"metadata\":{\"managedFields\":[{\"time\":0}]}}", 0, EVS_EPARSE,
     "metadata.managedFields[].time: not a string"},
    {"{\"metadata\":{\"managedFields\":[{\"fieldsV1\":\"f:spec\"}]}}", 0, EVS_EPARSE,
     "metadata.managedFields[].fieldsV1: not an object"},
    {"{\"metadata\":{\"managedFields\":[{\"fieldsV1\":{\"f:spec\":1}}]}}", 0, EVS_EPARSE,
     "metadata.managedFields[].fieldsV1.f:spec: not an object"},
    {"[]", 0, UV_EINVAL, "not an object"},
    {"{\"spec\":{\"replicas\":\"2\"}}", 1, EVS_EPARSE, "spec.replicas: not an integer"},
    {"{\"status\":{\"replicas\":-2}}", 1, EVS_ERANGE, "status.replicas: out of range"},
    {"{\"status\":true}", 1, EVS_EPARSE, "status: not an object"},
    {"\"Scale\"", 1, UV_EINVAL, "not an object"},
};

static void test_wrong_types(void **state) {
  (void)state;
  evs_intern_t *in;
  assert_int_equal(evs_intern_new(&in), 0);
  for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
    const bad_case_t *c = &BAD[i];
    json_t *j = json_loads(c->json, JSON_DECODE_ANY, NULL);
    assert_non_null(j);
    evs_workload_t w;
    const char *why = NULL;
    int rc = c->scale ? evs_workload_parse_scale(j, &w, &why) : evs_workload_parse(j, in, &w, &why);
    if (rc != c->err)
      fail_msg("%s: want %s, got %s (%s)", c->json, evs_err_name(c->err), evs_err_name(rc),
               why ? why : "");
    assert_non_null(why);
    assert_string_equal(why, c->why);
    /* the informer callback fails the same way and leaves nothing behind */
    void *data = (void *)1;
    rc = c->scale ? evs_workload_decode_scale(j, &data, in) : evs_workload_decode(j, &data, in);
    assert_int_equal(rc, c->err);
    assert_null(data);
    json_decref(j);
  }
  assert_int_equal(evs_intern_count(in), 0);
  /* no intern table: refused, not a crash */
  json_t *j = parse("{}");
  evs_workload_t w;
  assert_int_equal(evs_workload_parse(j, NULL, &w, NULL), UV_EINVAL);
  json_decref(j);
  evs_intern_free(in);
}

/* ---- managedFields ownership ---- */

typedef struct {
  const char *what, *managed_fields;
  const char *manager;
  int via_scale;
} mf_case_t;

#define E(mgr, t, sub, fields)                                                                     \
  "{\"manager\":\"" mgr "\",\"operation\":\"Update\",\"apiVersion\":\"apps/v1\"" t sub             \
  ",\"fieldsType\":\"FieldsV1\",\"fieldsV1\":" fields "}"
#define T(x) ",\"time\":\"" x "\""
#define SUB(x) ",\"subresource\":\"" x "\""
#define REPLICAS "{\"f:spec\":{\"f:replicas\":{}}}"
#define OTHER "{\"f:spec\":{\"f:template\":{}},\"f:metadata\":{\"f:labels\":{}}}"
#define STATUS_REPLICAS "{\"f:status\":{\"f:replicas\":{},\"f:readyReplicas\":{}}}"

static const mf_case_t MF[] = {
    {"one owner", "[" E("helm", T("2026-01-01T00:00:00Z"), "", REPLICAS) "]", "helm", 0},
    {"no owner of spec.replicas",
     "[" E("helm", T("2026-01-01T00:00:00Z"), "", OTHER) "," E(
         "kube-controller-manager", T("2026-01-02T00:00:00Z"), SUB("status"), STATUS_REPLICAS) "]",
     NULL, 0},
    {"status.replicas is not spec.replicas",
     "[" E("helm", T("2026-01-01T00:00:00Z"), "", REPLICAS) "," E(
         "kube-controller-manager", T("2026-01-09T00:00:00Z"), SUB("status"), STATUS_REPLICAS) "]",
     "helm", 0},
    {"co-owners: the latest time wins whatever the order",
     "[" E("b-late", T("2026-03-01T10:00:00Z"), "",
           REPLICAS) "," E("a-early", T("2026-03-01T09:59:59Z"), "", REPLICAS) "]",
     "b-late", 0},
    {"scale subresource, newest",
     "[" E("argocd", T("2026-03-01T10:00:00Z"), "",
           REPLICAS) "," E("kubectl", T("2026-03-01T10:05:00Z"), SUB("scale"), REPLICAS) "]",
     "kubectl", 1},
    {"scale subresource, older than a later whole-object write",
     "[" E("kubectl", T("2026-03-01T10:05:00Z"), SUB("scale"),
           REPLICAS) "," E("argocd", T("2026-03-01T10:06:00Z"), "", REPLICAS) "]",
     "argocd", 0},
    {"a tie goes to the later entry",
     "[" E("first", T("2026-03-01T10:00:00Z"), "",
           REPLICAS) "," E("second", T("2026-03-01T10:00:00Z"), "", REPLICAS) "]",
     "second", 0},
    {"an offset time compares as UTC",
     "[" E("utc", T("2026-03-01T10:30:00Z"), "",
           REPLICAS) "," E("plus2", T("2026-03-01T12:00:00+02:00"), "", REPLICAS) "]",
     "utc", 0},
    {"no time ranks oldest",
     "[" E("timed", T("2026-03-01T10:00:00Z"), "", REPLICAS) "," E("untimed", "", "", REPLICAS) "]",
     "timed", 0},
    {"a malformed time ranks oldest",
     "[" E("timed", T("2026-03-01T10:00:00Z"), "", REPLICAS) "," E("garbled", T("yesterday"), "",
                                                                   REPLICAS) "]",
     "timed", 0},
    {"an entry without a manager names nobody",
     "[{\"operation\":\"Update\",\"time\":\"2026-03-02T00:00:00Z\",\"fieldsV1\":" REPLICAS
     "}," E("helm", T("2026-03-01T00:00:00Z"), "", REPLICAS) "]",
     "helm", 0},
    {"a status-subresource entry with the same manager name is another entry",
     "[" E("ctl", T("2026-03-01T00:00:00Z"), "",
           REPLICAS) "," E("ctl", T("2026-03-05T00:00:00Z"), SUB("status"), STATUS_REPLICAS) "]",
     "ctl", 0},
};

static void test_managed_fields(void **state) {
  (void)state;
  evs_intern_t *in;
  assert_int_equal(evs_intern_new(&in), 0);
  for (size_t i = 0; i < sizeof MF / sizeof MF[0]; i++) {
    char doc[4096];
    snprintf(doc, sizeof doc, "{\"metadata\":{\"managedFields\":%s},\"spec\":{\"replicas\":1}}",
             MF[i].managed_fields);
    json_t *j = parse(doc);
    evs_workload_t w;
    const char *why = NULL;
    int rc = evs_workload_parse(j, in, &w, &why);
    if (rc != 0)
      fail_msg("%s: %s", MF[i].what, why);
    print_message("%s\n", MF[i].what);
    assert_manager(&w, MF[i].manager);
    assert_int_equal(!!(w.flags & EVS_WORKLOAD_F_VIA_SCALE), MF[i].via_scale);
    evs_workload_clear(&w, in);
    json_decref(j);
  }
  assert_int_equal(evs_intern_count(in), 0);
  evs_intern_free(in);
}

/* Thousands of objects with one manager hold one string. */
static void test_manager_interned(void **state) {
  (void)state;
  evs_intern_t *in;
  void *a = NULL, *b = NULL;
  assert_int_equal(evs_intern_new(&in), 0);
  json_t *j = load("deployment-v1.20-kubectl-scale.json");
  assert_int_equal(evs_workload_decode(j, &a, in), 0);
  assert_int_equal(evs_workload_decode(j, &b, in), 0);
  json_decref(j);
  const evs_workload_t *wa = a, *wb = b;
  assert_ptr_equal(wa->replicas_manager, wb->replicas_manager);
  assert_int_equal(evs_intern_refs(wa->replicas_manager), 2);
  assert_int_equal(evs_intern_count(in), 1);
  evs_workload_free(a, in);
  assert_int_equal(evs_intern_count(in), 1);
  evs_workload_free(b, in);
  assert_int_equal(evs_intern_count(in), 0);
  evs_workload_free(NULL, in); /* no-op */
  evs_intern_free(in);
}

static void test_status_current(void **state) {
  (void)state;
  evs_workload_t w = {.generation = 5, .observed_generation = 4};
  assert_false(evs_workload_status_current(&w));
  w.observed_generation = 5;
  assert_true(evs_workload_status_current(&w));
  w = (evs_workload_t){.generation = 5, .flags = EVS_WORKLOAD_F_SCALE_OBJECT};
  assert_true(evs_workload_status_current(&w));
}

/* ---- HPAs ---- */

typedef struct {
  const char *file;
  const char *tav, *tkind, *tname;
  const char *oav, *okind, *oname, *ouid; /* NULL: no controller owner */
  int32_t min, max;
  int evscale;
} hpa_case_t;

#define SO_UID "7280792e-4789-4184-81dd-d5c1184f80d2"
static const hpa_case_t HPA[] = {
    {"hpa-v1-evscale-owned.json", "apps/v1", "StatefulSet", "db", "keda.sh/v1alpha1",
     "ScaledObject", "db", SO_UID, 1, 5, 1},
    {"hpa-v2beta2-evscale-owned.json", "apps/v1", "StatefulSet", "db", "keda.sh/v1alpha1",
     "ScaledObject", "db", SO_UID, 1, 5, 1},
    {"hpa-v1-foreign.json", "apps/v1", "Deployment", "web", NULL, NULL, NULL, NULL, 2, 6, 0},
    {"hpa-v2beta2-foreign.json", "apps/v1", "Deployment", "web", NULL, NULL, NULL, NULL, 2, 6, 0},
};

static void assert_str_or_null(const char *got, const char *want) {
  if (want == NULL)
    assert_null(got);
  else {
    assert_non_null(got);
    assert_string_equal(got, want);
  }
}

static void test_hpa_captured(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof HPA / sizeof HPA[0]; i++) {
    const hpa_case_t *c = &HPA[i];
    json_t *j = load(c->file);
    void *data = NULL;
    int rc = evs_hpa_info_decode(j, &data, NULL);
    json_decref(j);
    if (rc != 0)
      fail_msg("%s: %s", c->file, evs_strerror(rc));
    const evs_hpa_info_t *h = data;
    print_message("%s\n", c->file);
    assert_string_equal(h->target_api_version, c->tav);
    assert_string_equal(h->target_kind, c->tkind);
    assert_string_equal(h->target_name, c->tname);
    assert_str_or_null(h->owner_api_version, c->oav);
    assert_str_or_null(h->owner_kind, c->okind);
    assert_str_or_null(h->owner_name, c->oname);
    assert_str_or_null(h->owner_uid, c->ouid);
    assert_int_equal(h->min_replicas, c->min);
    assert_int_equal(h->max_replicas, c->max);
    assert_int_equal(h->evscale, c->evscale);
    evs_hpa_info_free_data(data, NULL);
  }
}

static void test_hpa_edges(void **state) {
  (void)state;
  evs_hpa_info_t *h = NULL;
  const char *why = NULL;
  /* minimal: no apiVersion, no minReplicas, a non-controller owner, another managed-by */
  json_t *j =
      parse("{\"metadata\":{\"labels\":{\"app.kubernetes.io/managed-by\":\"keda-operator\"},"
            "\"ownerReferences\":[{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\","
            "\"name\":\"x\",\"uid\":\"u1\"},{\"apiVersion\":\"apps/v1\",\"kind\":"
            "\"Deployment\",\"name\":\"y\",\"uid\":\"u2\",\"controller\":false}]},"
            "\"spec\":{\"scaleTargetRef\":{\"kind\":\"Rollout\",\"name\":\"r\"},"
            "\"maxReplicas\":0}}");
  assert_int_equal(evs_hpa_info_parse(j, &h, &why), 0);
  assert_string_equal(h->target_api_version, "");
  assert_string_equal(h->target_kind, "Rollout");
  assert_int_equal(h->min_replicas, -1);
  assert_int_equal(h->max_replicas, 0);
  assert_null(h->owner_uid);
  assert_int_equal(h->evscale, 0);
  evs_hpa_info_free(h);
  json_decref(j);

  /* two controllers (invalid, refused by API validation): the first is kept */
  j = parse("{\"metadata\":{\"ownerReferences\":[{\"kind\":\"A\",\"name\":\"a\",\"uid\":\"1\","
            "\"controller\":true},{\"kind\":\"B\",\"name\":\"b\",\"uid\":\"2\","
            "\"controller\":true}]},\"spec\":{\"scaleTargetRef\":{\"kind\":\"Deployment\","
            "\"name\":\"d\"},\"maxReplicas\":3}}");
  assert_int_equal(evs_hpa_info_parse(j, &h, &why), 0);
  assert_string_equal(h->owner_uid, "1");
  assert_string_equal(h->owner_api_version, ""); /* present owner, absent field: "" */
  evs_hpa_info_free(h);
  json_decref(j);

  static const struct {
    const char *json;
    int err;
    const char *why;
  } bad[] = {
      {"{\"spec\":{\"maxReplicas\":3}}", EVS_EPARSE, "spec.scaleTargetRef.kind: missing"},
      {"{\"spec\":{\"scaleTargetRef\":{\"kind\":\"Deployment\"},\"maxReplicas\":3}}", EVS_EPARSE,
       "spec.scaleTargetRef.name: missing"},
      {"{\"spec\":{\"scaleTargetRef\":{\"kind\":\"Deployment\",\"name\":\"d\"}}}", EVS_EPARSE,
       "spec.maxReplicas: missing"},
      {"{\"spec\":{\"scaleTargetRef\":[],\"maxReplicas\":3}}", EVS_EPARSE,
       "spec.scaleTargetRef: not an object"},
      {"{\"spec\":{\"scaleTargetRef\":{\"kind\":1,\"name\":\"d\"},\"maxReplicas\":3}}", EVS_EPARSE,
       "spec.scaleTargetRef.kind: not a string"},
      {"{\"spec\":{\"scaleTargetRef\":{\"kind\":\"D\",\"name\":\"d\",\"apiVersion\":{}},"
       "\"maxReplicas\":3}}",
       EVS_EPARSE, "spec.scaleTargetRef.apiVersion: not a string"},
      {"{\"spec\":{\"scaleTargetRef\":{\"kind\":\"D\",\"name\":\"d\"},\"maxReplicas\":\"3\"}}",
       EVS_EPARSE, "spec.maxReplicas: not an integer"},
      {"{\"spec\":{\"scaleTargetRef\":{\"kind\":\"D\",\"name\":\"d\"},\"maxReplicas\":3,"
       "\"minReplicas\":-1}}",
       EVS_ERANGE, "spec.minReplicas: out of range"},
      {"{\"metadata\":{\"ownerReferences\":{}},\"spec\":{}}", EVS_EPARSE,
       "metadata.ownerReferences: not an array"},
      {"{\"metadata\":{\"ownerReferences\":[\"x\"]}}", EVS_EPARSE,
       "metadata.ownerReferences[]: not an object"},
      {"{\"metadata\":{\"ownerReferences\":[{\"controller\":\"true\"}]}}", EVS_EPARSE,
       "metadata.ownerReferences[].controller: not a boolean"},
      {"{\"metadata\":{\"ownerReferences\":[{\"controller\":true,\"uid\":7}]},\"spec\":{"
       "\"scaleTargetRef\":{\"kind\":\"D\",\"name\":\"d\"},\"maxReplicas\":3}}",
       EVS_EPARSE, "metadata.ownerReferences[].uid: not a string"},
      {"{\"metadata\":{\"labels\":[]}}", EVS_EPARSE, "metadata.labels: not an object"},
      {"{\"metadata\":{\"labels\":{\"app.kubernetes.io/managed-by\":true}}}", EVS_EPARSE,
       "metadata.labels[app.kubernetes.io/managed-by]: not a string"},
      {"[1]", UV_EINVAL, "not an object"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    j = json_loads(bad[i].json, 0, NULL);
    assert_non_null(j);
    why = NULL;
    h = (evs_hpa_info_t *)1;
    int rc = evs_hpa_info_parse(j, &h, &why);
    if (rc != bad[i].err)
      fail_msg("%s: want %s, got %s (%s)", bad[i].json, evs_err_name(bad[i].err), evs_err_name(rc),
               why ? why : "");
    assert_null(h);
    assert_non_null(why);
    assert_string_equal(why, bad[i].why);
    void *data = (void *)1;
    assert_int_equal(evs_hpa_info_decode(j, &data, NULL), bad[i].err);
    assert_null(data);
    json_decref(j);
  }
}

/* ---- target keys ---- */

static void test_target_key(void **state) {
  (void)state;
  static const struct {
    const char *av, *kind, *want;
  } cases[] = {
      {"apps/v1", "Deployment", "apps/Deployment/prod/web"},
      {"apps/v1beta2", "Deployment", "apps/Deployment/prod/web"},
      {NULL, NULL, "apps/Deployment/prod/web"}, /* ScaledObject defaults */
      {"", "", "apps/Deployment/prod/web"},
      {"", "StatefulSet", "apps/StatefulSet/prod/web"},
      {"apps/v1", "StatefulSet", "apps/StatefulSet/prod/web"},
      {"v1", "ReplicationController", "/ReplicationController/prod/web"},
      {"argoproj.io/v1alpha1", "Rollout", "argoproj.io/Rollout/prod/web"},
  };
  char buf[EVS_WORKLOAD_KEY_MAX];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    assert_int_equal(
        evs_workload_target_key("prod", cases[i].av, cases[i].kind, "web", buf, sizeof buf), 0);
    assert_string_equal(buf, cases[i].want);
  }
  /* exactly enough room, then one byte short */
  size_t need = strlen("apps/Deployment/prod/web") + 1;
  assert_int_equal(evs_workload_target_key("prod", "apps/v1", "Deployment", "web", buf, need), 0);
  assert_string_equal(buf, "apps/Deployment/prod/web");
  assert_int_equal(evs_workload_target_key("prod", "apps/v1", "Deployment", "web", buf, need - 1),
                   UV_ENOBUFS);
  assert_string_equal(buf, "");
  assert_int_equal(evs_workload_target_key("prod", "apps/v1", "Deployment", "web", buf, 0),
                   UV_ENOBUFS);
  assert_int_equal(evs_workload_target_key(NULL, "apps/v1", "Deployment", "web", buf, sizeof buf),
                   UV_EINVAL);
  assert_int_equal(evs_workload_target_key("ns", "apps/v1", "Deployment", NULL, buf, sizeof buf),
                   UV_EINVAL);
}

/* An HPA and a ScaledObject naming one target meet on the same key. */
static void test_hpa_key_matches(void **state) {
  (void)state;
  json_t *j = load("hpa-v2beta2-foreign.json");
  evs_hpa_info_t *h = NULL;
  assert_int_equal(evs_hpa_info_parse(j, &h, NULL), 0);
  json_decref(j);
  char a[EVS_WORKLOAD_KEY_MAX], b[EVS_WORKLOAD_KEY_MAX];
  assert_int_equal(evs_workload_target_key("evs-wl-fixtures", h->target_api_version, h->target_kind,
                                           h->target_name, a, sizeof a),
                   0);
  assert_int_equal(evs_workload_target_key("evs-wl-fixtures", NULL, NULL, "web", b, sizeof b), 0);
  assert_string_equal(a, b);
  evs_hpa_info_free(h);
}

/* ---- RFC 3339 ---- */

static void test_parse_time(void **state) {
  (void)state;
  static const struct {
    const char *s;
    int ok;
    int64_t want;
  } cases[] = {
      {"1970-01-01T00:00:00Z", 1, 0},
      {"2026-11-30T11:18:58Z", 1, 1796037538},
      {"2000-02-29T12:00:00Z", 1, 951825600},
      {"2026-11-30T13:18:58+02:00", 1, 1796037538},
      {"2026-11-30T09:18:58-02:00", 1, 1796037538},
      {"2026-11-30T11:18:58.123456Z", 1, 1796037538},
      {"2026-11-30t11:18:58z", 1, 1796037538},
      {"2026-11-30T11:18:58", 0, 0},
      {"2026-11-30 11:18:58Z", 0, 0},
      {"2026-13-30T11:18:58Z", 0, 0},
      {"2026-11-30T11:18:58Zjunk", 0, 0},
      {"2026-11-30T11:18:58+2:00", 0, 0},
      {"", 0, 0},
      {"yesterday", 0, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int64_t t = -1;
    int rc = evs_workload__parse_time(cases[i].s, &t);
    if ((rc == 0) != cases[i].ok)
      fail_msg("%s: rc %d", cases[i].s, rc);
    if (cases[i].ok)
      assert_int_equal(t, cases[i].want);
  }
  int64_t t;
  assert_int_equal(evs_workload__parse_time(NULL, &t), EVS_EPARSE);
}

static void test_size(void **state) {
  (void)state;
  print_message("sizeof(evs_workload_t) = %zu, sizeof(evs_hpa_info_t) = %zu\n",
                sizeof(evs_workload_t), sizeof(evs_hpa_info_t));
  assert_true(sizeof(evs_workload_t) <= 48);
}

/* ---- live: the decoders plugged into an informer on the real API server ---- */

typedef struct {
  uv_loop_t loop;
  evs_kube_t *kube;
  evs_intern_t *intern;
  evs_informer_t *deploys, *hpas;
  char ns[64];
} live_t;

static evs_informer_t *live_informer(live_t *l, const char *path, evs_informer_decode_cb dec,
                                     void (*free_data)(void *, void *), void *arg) {
  evs_informer_options_t o = {.kube = l->kube,
                              .path = path,
                              .intern = l->intern,
                              .backoff_initial_ms = 50,
                              .backoff_max_ms = 1000,
                              .decode = dec,
                              .free_data = free_data,
                              .arg = arg};
  evs_informer_t *inf = NULL;
  assert_int_equal(evs_informer_start(&l->loop, &o, &inf), 0);
  return inf;
}

static void live_req(live_t *l, const char *method, const char *path, const char *ctype,
                     const char *body, char **out) {
  int st = kw_req(&l->loop, l->kube, method, path, ctype, body, out);
  if (st < 200 || st >= 300)
    fail_msg("%s %s: %d %s", method, path, st, st < 0 ? evs_strerror(st) : "");
}

/* Runs the loop until the cached Deployment matches, or 60 s (a generous bound: the
 * controller-manager writes status on a shared 2-core machine). */
static const evs_workload_t *live_wait(live_t *l, const char *name, int32_t spec, int32_t status,
                                       const char *manager) {
  uint64_t t0 = uv_hrtime();
  const evs_workload_t *w = NULL;
  while ((uv_hrtime() - t0) / 1000000 < 60000) {
    const evs_informer_obj_t *o = evs_informer_get(l->deploys, l->ns, name);
    w = o != NULL ? o->data : NULL;
    if (w != NULL && w->spec_replicas == spec && (status < 0 || w->status_replicas == status) &&
        w->replicas_manager != NULL && strcmp(w->replicas_manager, manager) == 0)
      return w;
    int dummy = 0;
    evs_test_run_until(&l->loop, &dummy, 50);
  }
  if (w == NULL)
    fail_msg("%s: never cached", name);
  fail_msg("%s: want spec %d status %d manager %s, got spec %d status %d manager %s", name, spec,
           status, manager, w->spec_replicas, w->status_replicas,
           w->replicas_manager ? w->replicas_manager : "(none)");
  return NULL;
}

static int server_minor(live_t *l) {
  char *body = NULL;
  live_req(l, "GET", "/version", NULL, NULL, &body);
  json_t *v = json_loads(body, 0, NULL);
  free(body);
  const char *minor = json_string_value(json_object_get(v, "minor"));
  int m = minor ? atoi(minor) : 0;
  json_decref(v);
  return m;
}

static void closed_cb(void *arg) { ++*(int *)arg; }

/* Create with one manager, kubectl-scale through /scale, patch with another manager: the cache
 * follows spec.replicas, status.replicas (the deployment controller), the generations and the
 * owner of spec.replicas through the watch; the /scale answer decodes; an HPA carrying evscale's
 * label is recognised. */
static void test_live_informer(void **state) {
  (void)state;
  if (!KW.found && kw_find_controlplane() != 0)
    skip();
  live_t l;
  memset(&l, 0, sizeof l);
  snprintf(l.ns, sizeof l.ns, "evs-wl-%d", (int)getpid());
  assert_int_equal(kw_namespace(l.ns, 1), 201);
  uv_loop_init(&l.loop);
  l.kube = kw_kube(&l.loop);
  assert_non_null(l.kube);
  assert_int_equal(evs_intern_new(&l.intern), 0);
  int minor = server_minor(&l);

  char path[256], body[1024];
  snprintf(path, sizeof path, "/apis/apps/v1/namespaces/%s/deployments", l.ns);
  l.deploys = live_informer(&l, path, evs_workload_decode, evs_workload_free, l.intern);
  snprintf(path, sizeof path, "/apis/autoscaling/v1/namespaces/%s/horizontalpodautoscalers", l.ns);
  l.hpas = live_informer(&l, path, evs_hpa_info_decode, evs_hpa_info_free_data, NULL);

  snprintf(path, sizeof path, "/apis/apps/v1/namespaces/%s/deployments?fieldManager=evs-create",
           l.ns);
  live_req(&l, "POST", path, EVS_KUBE_JSON,
           "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":\"web\"},"
           "\"spec\":{\"replicas\":2,\"selector\":{\"matchLabels\":{\"app\":\"web\"}},"
           "\"template\":{\"metadata\":{\"labels\":{\"app\":\"web\"}},\"spec\":{\"containers\":"
           "[{\"name\":\"c\",\"image\":\"registry.invalid/web:1\"}]}}}}",
           NULL);
  const evs_workload_t *w = live_wait(&l, "web", 2, 2, "evs-create");
  assert_int_equal(w->ready_replicas, 0); /* no kubelet: no pod is ever ready */
  assert_int_equal(w->flags & EVS_WORKLOAD_F_VIA_SCALE, 0);

  /* kubectl scale: a merge patch of /scale, with a manager of its own */
  snprintf(path, sizeof path,
           "/apis/apps/v1/namespaces/%s/deployments/web/scale?fieldManager=evs-scale", l.ns);
  live_req(&l, "PATCH", path, EVS_KUBE_MERGE_PATCH, "{\"spec\":{\"replicas\":5}}", NULL);
  /* Before 1.22 a /scale write leaves managedFields alone: the creator still owns the field. */
  w = live_wait(&l, "web", 5, 5, minor >= 22 ? "evs-scale" : "evs-create");
  assert_int_equal(!!(w->flags & EVS_WORKLOAD_F_VIA_SCALE), minor >= 22);
  print_message("server minor %d: after /scale, spec.replicas owned by %s\n", minor,
                w->replicas_manager);

  /* GET .../scale decodes into the same struct */
  char *scale = NULL;
  snprintf(path, sizeof path, "/apis/apps/v1/namespaces/%s/deployments/web/scale", l.ns);
  live_req(&l, "GET", path, NULL, NULL, &scale);
  json_t *sj = json_loads(scale, 0, NULL);
  free(scale);
  evs_workload_t sw;
  assert_int_equal(evs_workload_parse_scale(sj, &sw, NULL), 0);
  json_decref(sj);
  assert_int_equal(sw.spec_replicas, 5);
  assert_int_equal(sw.flags, EVS_WORKLOAD_F_SCALE_OBJECT);

  /* another writer (a GitOps self-heal) patches the object itself: it now owns spec.replicas */
  snprintf(path, sizeof path, "/apis/apps/v1/namespaces/%s/deployments/web?fieldManager=gitops",
           l.ns);
  live_req(&l, "PATCH", path, EVS_KUBE_MERGE_PATCH, "{\"spec\":{\"replicas\":3}}", NULL);
  w = live_wait(&l, "web", 3, 3, "gitops");
  assert_int_equal(w->flags & EVS_WORKLOAD_F_VIA_SCALE, 0);
  assert_true(w->generation >= 3);
  /* the deployment controller catches up with the new generation */
  uint64_t t0 = uv_hrtime();
  while (!evs_workload_status_current(w) && (uv_hrtime() - t0) / 1000000 < 60000) {
    int dummy = 0;
    evs_test_run_until(&l.loop, &dummy, 50);
    w = evs_informer_get(l.deploys, l.ns, "web")->data;
  }
  assert_true(evs_workload_status_current(w));
  /* one manager string, shared (the cache holds one Deployment: one reference) */
  assert_int_equal(evs_intern_refs(w->replicas_manager), 1);

  /* the fallback HPA evscale would create, found by its label and owner */
  snprintf(path, sizeof path, "/apis/autoscaling/v1/namespaces/%s/horizontalpodautoscalers", l.ns);
  snprintf(body, sizeof body,
           "{\"apiVersion\":\"autoscaling/v1\",\"kind\":\"HorizontalPodAutoscaler\","
           "\"metadata\":{\"name\":\"fallback\",\"labels\":{\"%s\":\"%s\"}},"
           "\"spec\":{\"scaleTargetRef\":{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\","
           "\"name\":\"web\"},\"maxReplicas\":4}}",
           EVS_WORKLOAD_HPA_LABEL, EVS_WORKLOAD_HPA_LABEL_VALUE);
  live_req(&l, "POST", path, EVS_KUBE_JSON, body, NULL);
  const evs_informer_obj_t *ho = NULL;
  t0 = uv_hrtime();
  while ((ho = evs_informer_get(l.hpas, l.ns, "fallback")) == NULL &&
         (uv_hrtime() - t0) / 1000000 < 60000) {
    int dummy = 0;
    evs_test_run_until(&l.loop, &dummy, 50);
  }
  assert_non_null(ho);
  const evs_hpa_info_t *h = ho->data;
  assert_int_equal(h->evscale, 1);
  assert_int_equal(h->min_replicas, 1); /* defaulted by the API server */
  assert_int_equal(h->max_replicas, 4);
  char a[EVS_WORKLOAD_KEY_MAX], b[EVS_WORKLOAD_KEY_MAX];
  assert_int_equal(evs_workload_target_key(l.ns, h->target_api_version, h->target_kind,
                                           h->target_name, a, sizeof a),
                   0);
  assert_int_equal(evs_workload_target_key(l.ns, NULL, NULL, "web", b, sizeof b), 0);
  assert_string_equal(a, b);

  int closed = 0;
  evs_informer_close(l.deploys, closed_cb, &closed);
  evs_informer_close(l.hpas, closed_cb, &closed);
  while (closed < 2) {
    int dummy = 0;
    evs_test_run_until(&l.loop, &dummy, 50);
  }
  assert_int_equal(evs_intern_count(l.intern), 0); /* the namespace string too */
  evs_intern_free(l.intern);
  assert_int_equal(kw_kube_close(&l.loop, l.kube), 0);
  assert_int_equal(evs_test_loop_close(&l.loop), 0);
  kw_namespace(l.ns, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_captured),         cmocka_unit_test(test_absent),
      cmocka_unit_test(test_wrong_types),      cmocka_unit_test(test_managed_fields),
      cmocka_unit_test(test_manager_interned), cmocka_unit_test(test_status_current),
      cmocka_unit_test(test_hpa_captured),     cmocka_unit_test(test_hpa_edges),
      cmocka_unit_test(test_target_key),       cmocka_unit_test(test_hpa_key_matches),
      cmocka_unit_test(test_parse_time),       cmocka_unit_test(test_size),
      cmocka_unit_test(test_live_informer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
