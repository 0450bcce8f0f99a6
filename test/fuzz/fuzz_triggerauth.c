/* libFuzzer: bytes -> JSON -> the (Cluster)TriggerAuthentication decoder (the informer's decode
 * callback) -> check with its message -> a second reference dropped -> free; and the same bytes
 * through KEDA's $(VAR) expansion. Nothing may crash, leak or trip UBSan, and every field the
 * decoder reports must be a readable string.
 *
 * Seed corpus (test/fuzz/corpus/fuzz_triggerauth/): the fixtures of test/data/triggerauth/
 * (derived from kedacore/keda v2.20.2, commit 68a5b5028f35b22d50597c69819ab32c4e92f21a:
 * config/samples and pkg/scaling/resolver/scale_resolvers_test.go), plus expansion strings of
 * that test's TestResolveDependentEnv. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/triggerauth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t refs_len(const evs_triggerauth_ref_t *r, size_t n) {
  size_t len = 0;
  for (size_t i = 0; i < n; i++)
    len += strlen(r[i].parameter) + strlen(r[i].name) + strlen(r[i].key);
  return len;
}

static void decode(const uint8_t *data, size_t size) {
  json_t *j = json_loadb((const char *)data, size, 0, NULL);
  if (j == NULL)
    return;
  void *out = NULL;
  if (evs_triggerauth_decode(j, &out, NULL) == 0) {
    evs_triggerauth_t *ta = out;
    size_t len = refs_len(ta->secrets, ta->n_secrets) + refs_len(ta->configmaps, ta->n_configmaps);
    for (size_t i = 0; i < ta->n_env; i++)
      len += strlen(ta->env[i].parameter) + strlen(ta->env[i].name) + strlen(ta->env[i].container);
    if (ta->pod_identity != NULL)
      len += strlen(ta->pod_identity);
    char msg[512];
    evs_triggerauth_check(ta, size & 1 ? EVS_TRIGGERAUTH_CLUSTER : EVS_TRIGGERAUTH_NAMESPACED, "ns",
                          "name", msg, sizeof msg);
    if (memchr(msg, '\0', sizeof msg) == NULL)
      abort();
    evs_triggerauth_free((void *)evs_triggerauth_ref(ta), NULL);
    evs_triggerauth_free(ta, NULL);
    (void)len;
  }
  json_decref(j);
}

static void expand(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  if (s == NULL)
    return;
  memcpy(s, data, size);
  s[size] = '\0';
  evs_kv_t items[] = {{"A", "x"}, {"test-env-key", "test-env-value"}, {"", "empty"}};
  evs_kvs_t env = {items, 3};
  char *out = evs_triggerauth_expand(s, &env);
  /* Expansion never grows what it does not expand: a bound on the output. */
  if (out != NULL && strlen(out) > strlen(s) * 15 + 1)
    abort();
  free(out);
  free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 0 && data[0] == '{')
    decode(data, size);
  else
    expand(data, size);
  return 0;
}
