/* libFuzzer: bytes → JSON → evs_registry_decode, the ScaledObject informer's decoder (the model
 * in API mode, creationTimestamp / lastActiveTime, originalReplicaCount, the breaker's
 * annotations, deletionTimestamp and finalizers), then the RFC 3339 parser on the raw bytes.
 * Nothing may crash, leak or trip UBSan; a decoded object is either a model or a message.
 *
 * Seed corpus (test/fuzz/corpus/fuzz_registry_decode/): ScaledObjects as test/unit/
 * test_registry.c and test/e2e/test_scaling.py write them (keda.sh/v1alpha1, the CRD of
 * kedacore/keda v2.20.2 in test/data/crds), with status, annotations and finalizers. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "evscale/log.h"
#include "evscale/registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int quiet;
  if (!quiet) {
    evs_log_set_level(EVS_LOG_ERROR); /* the decoder logs unknown fields as warnings */
    quiet = 1;
  }
  char *text = malloc(size + 1);
  if (text == NULL)
    return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  (void)evs_registry_parse_time(text);
  free(text);

  json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
  if (j == NULL)
    return 0;
  void *out = NULL;
  if (evs_registry_decode(j, &out, NULL) == 0) {
    evs_registry_decoded_t *d = out;
    if (d == NULL || (d->so == NULL) == (d->check_error == NULL))
      __builtin_trap();
    if (d->original_replicas < -1 || d->created_ms < 0 || d->last_active_ms < 0)
      __builtin_trap();
    evs_registry_decoded_free(d, NULL);
  }
  json_decref(j);
  return 0;
}
