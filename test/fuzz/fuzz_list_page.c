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
 * metadata, items: the typed encoding, pretty-printed as the server does for curl), and
 * odd-forms.json: a ConfigMapList of that shape whose uids and resourceVersions were edited into
 * every form the cache entry packs or keeps as a string (upper case, 35 and 37 characters, leading
 * zeros, 2^64 - 1 and 2^64, non-digits, empty).
 *
 * Every item with metadata also becomes a cache entry (evs_informer__entry_new): its uid and
 * resourceVersion must read back byte-exactly, and an entry is never larger than the strings
 * kept whole. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/informer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void entry_round_trip(const json_t *obj) {
  evs_informer_meta_t m;
  if (evs_informer_meta_get(obj, &m) != 0)
    return;
  size_t size = 0;
  evs_informer_obj_t *o = evs_informer__entry_new(&m, m.ns ? m.ns : "", &size);
  if (o == NULL)
    return;
  char ub[EVS_INFORMER_UID_BUF], rb[EVS_INFORMER_RV_BUF];
  const char *uid = m.uid ? m.uid : "";
  if (strcmp(evs_informer_obj_uid(o, ub), uid) != 0 ||
      strcmp(evs_informer_obj_rv(o, rb), m.rv) != 0 || strcmp(o->name, m.name) != 0 ||
      size > offsetof(evs_informer_obj_t, name) + strlen(m.name) + strlen(uid) + strlen(m.rv) + 3)
    abort();
  free(o);
}

static int count(void *ctx, const json_t *obj) {
  entry_round_trip(obj);
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
