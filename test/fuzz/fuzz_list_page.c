/* libFuzzer: a LIST response body → evs_informer_list_parse, item by item, checked against
 * jansson parsing the whole body as the informer did before: a body accepted item by item is
 * one JSON object whose items array has exactly the items delivered. Nothing may crash, leak or
 * trip UBSan.
 *
 * Seed corpus (test/fuzz/corpus/fuzz_list_page/): responses captured with curl from
 * kube-apiserver v1.20.2 (gitCommit faecb196815e248d3ecfb03c680a4507229c2a56, the shared control
 * plane of tools/controlplane.sh): a ScaledObject (keda.sh/v1alpha1 CRD) page with a continue
 * token (members apiVersion, items, kind, metadata: the unstructured encoding), an empty one, a
 * NamespaceList page with a continue token and an empty ConfigMapList (kind, apiVersion,
 * metadata, items: the typed encoding, pretty-printed as the server does for curl). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/informer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int count(void *ctx, const json_t *obj) {
  (void)obj;
  (*(size_t *)ctx)++;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t n = 0;
  evs_informer_list_meta_t m;
  int rc = evs_informer_list_parse((const char *)data, size, count, &n, &m);
  if (rc == 0) {
    json_error_t jerr;
    json_t *whole = json_loadb((const char *)data, size, 0, &jerr);
    /* One value alone may nest as deep as jansson allows; inside the List it is one deeper. */
    if (whole == NULL && strstr(jerr.text, "depth") == NULL)
      abort();
    if (whole != NULL && json_array_size(json_object_get(whole, "items")) != n)
      abort();
    json_decref(whole);
  } else if (m.cont != NULL || m.rv != NULL) {
    abort();
  }
  free(m.cont);
  free(m.rv);
  return 0;
}
