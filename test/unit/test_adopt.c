/* Adopting KEDA's HPAs (src/registry/adopt.h): which HPA is the one KEDA's operator created for
 * a ScaledObject evscale holds, and the re-creation window that tells KEDA's operator still runs.
 *
 * The HPA below is shaped as KEDA's operator writes it (kedacore/keda v2.20.2, commit
 * 68a5b5028f35b22d50597c69819ab32c4e92f21a, controllers/keda/hpa.go newHPAForScaledObject:
 * name getHPAName = "keda-hpa-<so>", labels app.kubernetes.io/{name,version,part-of,managed-by:
 * keda-operator}, scaleTargetRef from the resolved GVKR, and controller-runtime's
 * SetControllerReference: apiVersion keda.sh/v1alpha1, kind ScaledObject, controller and
 * blockOwnerDeletion true), decoded by the informer's own decoder (evs_hpa_info_parse). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "evscale/workload.h"
#include "registry/adopt.h"

#define UID "6b0a8f1c-3d1e-4c1b-9a51-2f5a0d8d7c11"
#define OTHER_UID "0f6a3c52-8a7e-4f2d-b3c4-5d9e1a2b7c64"
#define TARGET "apps/Deployment/shop/web"

static const char keda_hpa[] =
    "{\"apiVersion\":\"autoscaling/v2\",\"kind\":\"HorizontalPodAutoscaler\","
    "\"metadata\":{\"name\":\"keda-hpa-web\",\"namespace\":\"shop\","
    "\"uid\":\"2c1d7e44-0a5b-4f0e-8d7c-9b6a5e4d3c21\","
    "\"labels\":{\"app.kubernetes.io/name\":\"keda-hpa-web\",\"app.kubernetes.io/version\":"
    "\"2.20.2\",\"app.kubernetes.io/part-of\":\"web\",\"app.kubernetes.io/managed-by\":"
    "\"keda-operator\"},"
    "\"ownerReferences\":[{\"apiVersion\":\"keda.sh/v1alpha1\",\"kind\":\"ScaledObject\","
    "\"name\":\"web\",\"uid\":\"" UID "\",\"controller\":true,\"blockOwnerDeletion\":true}]},"
    "\"spec\":{\"scaleTargetRef\":{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\","
    "\"name\":\"web\"},\"minReplicas\":1,\"maxReplicas\":10,\"metrics\":[{\"type\":\"External\","
    "\"external\":{\"metric\":{\"name\":\"s0-redis-jobs\",\"selector\":{\"matchLabels\":"
    "{\"scaledobject.keda.sh/name\":\"web\"}}},\"target\":{\"type\":\"AverageValue\","
    "\"averageValue\":\"5\"}}}]}}";

static evs_hpa_info_t *decode(const char *text) {
  json_error_t e;
  json_t *j = json_loads(text, 0, &e);
  assert_non_null(j);
  evs_hpa_info_t *h = NULL;
  assert_int_equal(evs_hpa_info_parse(j, &h, NULL), 0);
  json_decref(j);
  return h;
}

static evs_adopt_hpa_t view(const evs_hpa_info_t *h, const char *ns) {
  return (evs_adopt_hpa_t){.ns = ns,
                           .target_key = TARGET,
                           .owner_api_version = h->owner_api_version,
                           .owner_kind = h->owner_kind,
                           .owner_name = h->owner_name,
                           .owner_uid = h->owner_uid,
                           .evscale_owned = h->evscale};
}

static void keda_shaped_hpa_is_adopted(void **state) {
  (void)state;
  evs_hpa_info_t *h = decode(keda_hpa);
  evs_adopt_hpa_t v = view(h, "shop");
  evs_adopt_so_t so = {"shop", "web", UID, TARGET};
  assert_null(evs_adopt_why_not(&v, &so));
  /* Another version of the group is the same group. */
  v.owner_api_version = "keda.sh/v1beta1";
  assert_null(evs_adopt_why_not(&v, &so));
  evs_hpa_info_free(h);
}

/* KEDA copies the ScaledObject's labels over its own: a Helm-installed ScaledObject's HPA says
 * managed-by Helm, and is still KEDA's (the label is not what identifies it). */
static void managed_by_label_not_required(void **state) {
  (void)state;
  char text[sizeof keda_hpa + 16];
  const char *at = strstr(keda_hpa, "\"keda-operator\"");
  assert_non_null(at);
  snprintf(text, sizeof text, "%.*s\"Helm\"%s", (int)(at - keda_hpa), keda_hpa,
           at + strlen("\"keda-operator\""));
  evs_hpa_info_t *h = decode(text);
  evs_adopt_hpa_t v = view(h, "shop");
  evs_adopt_so_t so = {"shop", "web", UID, TARGET};
  assert_null(evs_adopt_why_not(&v, &so));
  evs_hpa_info_free(h);
}

/* Every condition, one at a time: each refuses. */
static void other_hpas_refused(void **state) {
  (void)state;
  evs_hpa_info_t *h = decode(keda_hpa);
  const evs_adopt_so_t so = {"shop", "web", UID, TARGET};
  const evs_adopt_so_t other_target = {"shop", "web", UID, "apps/Deployment/shop/api"};
  static const struct {
    const char *what, *av, *kind, *name, *uid, *ns;
    int evscale, no_so;
  } rows[] = {
      {"evscale's own fallback HPA", "keda.sh/v1alpha1", "ScaledObject", "web", UID, "shop", 1, 0},
      {"no controller", NULL, NULL, NULL, NULL, "shop", 0, 0},
      {"another group", "example.com/v1", "ScaledObject", "web", UID, "shop", 0, 0},
      {"a group ending in keda.sh", "notkeda.sh/v1alpha1", "ScaledObject", "web", UID, "shop", 0,
       0},
      {"no version", "keda.sh", "ScaledObject", "web", UID, "shop", 0, 0},
      {"a ScaledJob", "keda.sh/v1alpha1", "ScaledJob", "web", UID, "shop", 0, 0},
      {"a Deployment owner", "apps/v1", "Deployment", "web", UID, "shop", 0, 0},
      {"a ScaledObject evscale does not hold", "keda.sh/v1alpha1", "ScaledObject", "web", UID,
       "shop", 0, 1},
      {"another ScaledObject's name", "keda.sh/v1alpha1", "ScaledObject", "api", UID, "shop", 0, 0},
      {"another namespace", "keda.sh/v1alpha1", "ScaledObject", "web", UID, "other", 0, 0},
      {"another uid", "keda.sh/v1alpha1", "ScaledObject", "web", OTHER_UID, "shop", 0, 0},
      {"no uid", "keda.sh/v1alpha1", "ScaledObject", "web", "", "shop", 0, 0},
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    evs_adopt_hpa_t v = {.ns = rows[i].ns,
                         .target_key = TARGET,
                         .owner_api_version = rows[i].av,
                         .owner_kind = rows[i].kind,
                         .owner_name = rows[i].name,
                         .owner_uid = rows[i].uid,
                         .evscale_owned = rows[i].evscale};
    const char *why = evs_adopt_why_not(&v, rows[i].no_so ? NULL : &so);
    if (why == NULL)
      fail_msg("adopted: %s", rows[i].what);
  }
  /* KEDA's own HPA, but the ScaledObject of that name now targets something else. */
  evs_adopt_hpa_t v = view(h, "shop");
  assert_non_null(evs_adopt_why_not(&v, &other_target));
  assert_string_equal(evs_adopt_why_not(&v, &other_target),
                      "its scaleTargetRef is not the ScaledObject's target");
  evs_hpa_info_free(h);
}

static void owner_is_so(void **state) {
  (void)state;
  assert_true(evs_adopt_owner_is_so("keda.sh/v1alpha1", "ScaledObject"));
  assert_false(evs_adopt_owner_is_so("keda.sh/v1alpha1", "ScaledJob"));
  assert_false(evs_adopt_owner_is_so("xkeda.sh/v1alpha1", "ScaledObject"));
  assert_false(evs_adopt_owner_is_so("keda.sh", "ScaledObject"));
  assert_false(evs_adopt_owner_is_so(NULL, "ScaledObject"));
  assert_false(evs_adopt_owner_is_so("keda.sh/v1alpha1", NULL));
}

#define T0 1700000000000LL
#define W 300000LL

/* The re-creation window, with time as an argument. */
static void recreation_window(void **state) {
  (void)state;
  int64_t until = -1;
  /* Never deleted: delete. */
  assert_int_equal(evs_adopt_step("a", NULL, 0, T0, W, &until), EVS_ADOPT_DELETE);
  assert_int_equal(until, 0);
  /* The one evscale deleted, still in the cache (or updated): wait, however long. */
  assert_int_equal(evs_adopt_step("a", "a", T0, T0 + 1, W, &until), EVS_ADOPT_WAIT);
  assert_int_equal(evs_adopt_step("a", "a", T0, T0 + 10 * W, W, &until), EVS_ADOPT_WAIT);
  /* A new one right after, and up to the window's last millisecond: KEDA's operator runs. */
  assert_int_equal(evs_adopt_step("b", "a", T0, T0 + 500, W, &until), EVS_ADOPT_RECREATED);
  assert_int_equal(until, T0 + W);
  assert_int_equal(evs_adopt_step("b", "a", T0, T0 + W - 1, W, &until), EVS_ADOPT_RECREATED);
  /* The window has passed: delete again. */
  assert_int_equal(evs_adopt_step("b", "a", T0, T0 + W, W, &until), EVS_ADOPT_DELETE);
  assert_int_equal(until, 0);
  /* A clock stepped back is inside the window. */
  assert_int_equal(evs_adopt_step("b", "a", T0, T0 - 60000, W, &until), EVS_ADOPT_RECREATED);
  /* A shorter window (a registry option). */
  assert_int_equal(evs_adopt_step("b", "a", T0, T0 + 2000, 1000, NULL), EVS_ADOPT_DELETE);
  /* A dry run remembers the uid it logged without a time: delete (log) is not repeated by the
   * registry, and the step says delete. */
  assert_int_equal(evs_adopt_step("a", "a", 0, T0, W, NULL), EVS_ADOPT_DELETE);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(keda_shaped_hpa_is_adopted), cmocka_unit_test(managed_by_label_not_required),
      cmocka_unit_test(other_hpas_refused),         cmocka_unit_test(owner_is_so),
      cmocka_unit_test(recreation_window),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
