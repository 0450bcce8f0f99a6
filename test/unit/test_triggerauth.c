/* The TriggerAuthentication decoder, its check, and KEDA's $(VAR) expansion (evscale/
 * triggerauth.h). Fixtures: test/data/triggerauth/ (see its README: derived from kedacore/keda
 * v2.20.2, commit 68a5b5028f35b22d50597c69819ab32c4e92f21a). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/error.h"
#include "evscale/triggerauth.h"
#include "net_helpers.h"

static evs_triggerauth_t *load(const char *name) {
  char path[600];
  snprintf(path, sizeof path, "%s/test/data/triggerauth/%s", evs_test_src(), name);
  json_error_t e;
  json_t *j = json_load_file(path, 0, &e);
  if (j == NULL)
    fail_msg("%s: %s", path, e.text);
  void *out = NULL;
  assert_int_equal(evs_triggerauth_decode(j, &out, NULL), 0);
  json_decref(j);
  assert_non_null(out);
  return out;
}

static evs_triggerauth_t *decode_text(const char *text, int want) {
  json_t *j = json_loads(text, 0, NULL);
  assert_non_null(j);
  void *out = (void *)1;
  int rc = evs_triggerauth_decode(j, &out, NULL);
  json_decref(j);
  if (rc != want)
    fail_msg("%s: got %s, want %s", text, evs_strerror(rc), evs_strerror(want));
  if (want != 0)
    assert_null(out);
  return out;
}

static void test_sample(void **state) {
  (void)state;
  evs_triggerauth_t *ta = load("sample-triggerauthentication.json");
  assert_int_equal(ta->n_secrets, 1);
  assert_string_equal(ta->secrets[0].parameter, "example-secret-parameter");
  assert_string_equal(ta->secrets[0].name, "example-secret-name");
  assert_string_equal(ta->secrets[0].key, "example-role-key");
  assert_int_equal(ta->n_configmaps, 0);
  assert_int_equal(ta->n_env, 0);
  assert_null(ta->pod_identity);
  assert_int_equal(ta->unsupported, 0);
  char msg[256] = "x";
  assert_int_equal(
      evs_triggerauth_check(ta, EVS_TRIGGERAUTH_NAMESPACED, "prod", "a", msg, sizeof msg), 0);
  assert_string_equal(msg, "");
  evs_triggerauth_free(ta, NULL);

  ta = load("sample-clustertriggerauthentication.json");
  assert_int_equal(ta->n_secrets, 1);
  assert_string_equal(ta->secrets[0].key, "example-role-key");
  evs_triggerauth_free(ta, NULL);
}

static void test_secret_and_configmap(void **state) {
  (void)state;
  evs_triggerauth_t *ta = load("resolver-secret-and-configmap.json");
  assert_int_equal(ta->n_secrets, 1);
  assert_string_equal(ta->secrets[0].parameter, "host-secret");
  assert_string_equal(ta->secrets[0].name, "supersecret");
  assert_string_equal(ta->secrets[0].key, "mysecretkey");
  assert_int_equal(ta->n_configmaps, 1);
  assert_string_equal(ta->configmaps[0].parameter, "host-configmap");
  assert_string_equal(ta->configmaps[0].name, "supercm");
  assert_string_equal(ta->configmaps[0].key, "mycmkey");
  assert_string_equal(ta->pod_identity, "none");
  assert_int_equal(ta->unsupported, 0);
  assert_int_equal(evs_triggerauth_check(ta, EVS_TRIGGERAUTH_NAMESPACED, "test-namespace",
                                         "triggerauth", NULL, 0),
                   0);
  /* A reference outlives the informer's. */
  const evs_triggerauth_t *ref = evs_triggerauth_ref(ta);
  evs_triggerauth_free(ta, NULL);
  assert_string_equal(ref->secrets[0].name, "supersecret");
  evs_triggerauth_free((void *)ref, NULL);
}

static void test_unsupported(void **state) {
  (void)state;
  char msg[512];
  evs_triggerauth_t *ta = load("resolver-hashicorp-vault.json");
  assert_int_equal(ta->unsupported, EVS_TRIGGERAUTH_HASHICORP_VAULT);
  assert_int_equal(
      evs_triggerauth_check(ta, EVS_TRIGGERAUTH_NAMESPACED, "prod", "vault-auth", msg, sizeof msg),
      EVS_EUNSUPPORTED);
  assert_string_equal(msg, "TriggerAuthentication prod/vault-auth: spec.hashiCorpVault is not "
                           "supported (evscale reads secretTargetRef, configMapTargetRef, env "
                           "and podIdentity provider none)");
  evs_triggerauth_free(ta, NULL);

  ta = load("resolver-bound-sa-token.json");
  assert_int_equal(ta->unsupported, EVS_TRIGGERAUTH_BOUND_SA_TOKEN);
  assert_int_equal(
      evs_triggerauth_check(ta, EVS_TRIGGERAUTH_CLUSTER, "ignored", "bsat", msg, sizeof msg),
      EVS_EUNSUPPORTED);
  assert_non_null(
      strstr(msg, "ClusterTriggerAuthentication bsat: spec.boundServiceAccountToken is not"));
  evs_triggerauth_free(ta, NULL);

  ta = load("env-and-podidentity.json");
  assert_int_equal(ta->unsupported, EVS_TRIGGERAUTH_POD_IDENTITY | EVS_TRIGGERAUTH_AZURE_KEY_VAULT |
                                        EVS_TRIGGERAUTH_GCP_SECRET_MANAGER |
                                        EVS_TRIGGERAUTH_AWS_SECRET_MANAGER |
                                        EVS_TRIGGERAUTH_FILE_PATH);
  assert_string_equal(ta->pod_identity, "azure-workload");
  assert_int_equal(ta->n_env, 2);
  assert_string_equal(ta->env[0].parameter, "host");
  assert_string_equal(ta->env[0].name, "REDIS_HOST");
  assert_string_equal(ta->env[0].container, "app");
  assert_string_equal(ta->env[1].container, "");
  /* The first refused field (in the order of EVS_TRIGGERAUTH_SOURCES) is named. */
  assert_int_equal(
      evs_triggerauth_check(ta, EVS_TRIGGERAUTH_NAMESPACED, "ns", "t", msg, sizeof msg),
      EVS_EUNSUPPORTED);
  assert_string_equal(msg, "TriggerAuthentication ns/t: spec.filePath is not supported (evscale "
                           "reads secretTargetRef, configMapTargetRef, env and podIdentity "
                           "provider none)");
  evs_triggerauth_free(ta, NULL);

  ta = decode_text("{\"spec\":{\"podIdentity\":{\"provider\":\"aws\"}}}", 0);
  assert_int_equal(
      evs_triggerauth_check(ta, EVS_TRIGGERAUTH_NAMESPACED, "ns", "t", msg, sizeof msg),
      EVS_EUNSUPPORTED);
  assert_string_equal(msg, "TriggerAuthentication ns/t: spec.podIdentity.provider \"aws\" is not "
                           "supported (evscale accepts only none)");
  evs_triggerauth_free(ta, NULL);
}

/* Accepted: podIdentity none or empty, empty filePath, empty boundServiceAccountToken, null
 * lists, no spec at all. */
static void test_accepted_shapes(void **state) {
  (void)state;
  const char *ok[] = {
      "{\"metadata\":{\"name\":\"x\"}}",
      "{\"spec\":null}",
      "{\"spec\":{}}",
      "{\"spec\":{\"podIdentity\":{\"provider\":\"\"}}}",
      "{\"spec\":{\"podIdentity\":{}}}",
      "{\"spec\":{\"filePath\":\"\",\"boundServiceAccountToken\":[],\"secretTargetRef\":null}}",
      "{\"spec\":{\"hashiCorpVault\":null,\"unknownFutureField\":{\"a\":1}}}",
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    evs_triggerauth_t *ta = decode_text(ok[i], 0);
    if (evs_triggerauth_check(ta, EVS_TRIGGERAUTH_NAMESPACED, "n", "t", NULL, 0) != 0)
      fail_msg("refused: %s", ok[i]);
    assert_int_equal(ta->n_secrets + ta->n_configmaps + ta->n_env, 0);
    evs_triggerauth_free(ta, NULL);
  }
}

static void test_decode_errors(void **state) {
  (void)state;
  const char *bad[] = {
      "[]",
      "{\"spec\":[]}",
      "{\"spec\":{\"secretTargetRef\":{}}}",
      "{\"spec\":{\"secretTargetRef\":[1]}}",
      "{\"spec\":{\"secretTargetRef\":[{\"parameter\":1}]}}",
      "{\"spec\":{\"configMapTargetRef\":[{\"key\":true}]}}",
      "{\"spec\":{\"env\":[{\"containerName\":[]}]}}",
      "{\"spec\":{\"env\":\"x\"}}",
      "{\"spec\":{\"podIdentity\":\"none\"}}",
      "{\"spec\":{\"podIdentity\":{\"provider\":3}}}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    decode_text(bad[i], EVS_EPARSE);
}

static void test_check_fields(void **state) {
  (void)state;
  static const struct {
    const char *spec, *msg;
  } t[] = {
      {"{\"secretTargetRef\":[{\"parameter\":\"p\",\"name\":\"s\",\"key\":\"k\"},"
       "{\"parameter\":\"p\",\"name\":\"s\"}]}",
       "TriggerAuthentication n/t: spec.secretTargetRef[1].key is empty"},
      {"{\"configMapTargetRef\":[{\"name\":\"s\",\"key\":\"k\"}]}",
       "TriggerAuthentication n/t: spec.configMapTargetRef[0].parameter is empty"},
      {"{\"secretTargetRef\":[{\"parameter\":\"p\",\"name\":\"../x\",\"key\":\"k\"}]}",
       "TriggerAuthentication n/t: spec.secretTargetRef[0].name \"../x\" is not a Kubernetes "
       "object name"},
      {"{\"secretTargetRef\":[{\"parameter\":\"p\",\"name\":\"A?b\",\"key\":\"k\"}]}",
       "TriggerAuthentication n/t: spec.secretTargetRef[0].name \"A?b\" is not a Kubernetes "
       "object name"},
      {"{\"env\":[{\"parameter\":\"p\"}]}", "TriggerAuthentication n/t: spec.env[0].name is empty"},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    char text[600], msg[512];
    snprintf(text, sizeof text, "{\"spec\":%s}", t[i].spec);
    evs_triggerauth_t *ta = decode_text(text, 0);
    assert_int_equal(
        evs_triggerauth_check(ta, EVS_TRIGGERAUTH_NAMESPACED, "n", "t", msg, sizeof msg),
        EVS_EINVALCFG);
    assert_string_equal(msg, t[i].msg);
    evs_triggerauth_free(ta, NULL);
  }
}

/* KEDA's TestResolveDependentEnv (scale_resolvers_test.go), plus resolveEnvValue's bounds. */
static void test_expand(void **state) {
  (void)state;
  evs_kv_t items[] = {{"test-env-key", "test-env-value"}, {"k", "V"}};
  evs_kvs_t env = {items, 2}, none = {NULL, 0};
  static const struct {
    const char *in, *out;
    int with_env;
  } t[] = {
      {"$(test-env-key)-dependent-env-value", "test-env-value-dependent-env-value", 1},
      {"dependent-env-value2-$(test-env-key)", "dependent-env-value2-test-env-value", 1},
      /* "unchanged reference env": the variable comes later, so it is unknown here */
      {"$(test-env-key)-dependent-env-value", "$(test-env-key)-dependent-env-value", 0},
      {"$$(test-env-key)-escaped-env-value", "$(test-env-key)-escaped-env-value", 1},
      {"$()-empty-env-value", "$()-empty-env-value", 1},
      {"$(test-env-key-incomplete-env-value", "$(test-env-key-incomplete-env-value", 1},
      /* cursor+3 < len: nothing is expanded in the last three bytes */
      {"$(k)", "V", 1},
      {"x$(k)", "xV", 1},
      {"$$", "$$", 1},
      {"ab$$", "ab$$", 1},
      {"$$$$", "$$$", 1},
      {"$xyz", "$xyz", 1},
      {"a$(k)b$(k)", "aVbV", 1},
      {"", "", 1},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    char *got = evs_triggerauth_expand(t[i].in, t[i].with_env ? &env : &none);
    assert_non_null(got);
    if (strcmp(got, t[i].out) != 0)
      fail_msg("expand(\"%s\") = \"%s\", want \"%s\"", t[i].in, got, t[i].out);
    free(got);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sample),        cmocka_unit_test(test_secret_and_configmap),
      cmocka_unit_test(test_unsupported),   cmocka_unit_test(test_accepted_shapes),
      cmocka_unit_test(test_decode_errors), cmocka_unit_test(test_check_fields),
      cmocka_unit_test(test_expand),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
