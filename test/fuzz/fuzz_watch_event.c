/* libFuzzer: a watch response body → lines (split across two reads at an input-chosen point,
 * with a small line cap) → WatchEvent → object metadata. Nothing may crash, leak or trip UBSan.
 *
 * Seed corpus (test/fuzz/corpus/fuzz_watch_event/): real watch streams captured with curl from
 * kube-apiserver v1.20.2 (gitCommit faecb196815e248d3ecfb03c680a4507229c2a56, the shared control
 * plane of tools/controlplane.sh): ConfigMap ADDED/MODIFIED/DELETED/BOOKMARK, ScaledObject
 * (keda.sh/v1alpha1 CRD) ADDED/MODIFIED/DELETED/BOOKMARK, and the ERROR event with Status 410
 * Expired that a watch from resourceVersion=1 gets; each stream whole and line by line. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "evscale/informer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_line(void *ctx, const char *text, size_t len) {
  size_t *n = ctx;
  evs_informer_event_t ev;
  if (evs_informer_event_parse(text, len, &ev) == 0) {
    evs_informer_meta_t m;
    if (evs_informer_meta_get(ev.object, &m) == 0) {
      *n += strlen(m.name) + strlen(m.rv) + m.ns_len;
      if (m.ns != NULL)
        *n += (size_t)(memchr(m.ns, '\0', m.ns_len + 1) != NULL);
    }
    json_decref(ev.root);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  size_t cut = data[0] % size, n = 0;
  evs_informer_lines_t l = {.max = 1u << 16};
  evs_informer_lines_feed(&l, (const char *)data, cut, on_line, &n);
  evs_informer_lines_feed(&l, (const char *)data + cut, size - cut, on_line, &n);
  evs_informer_lines_free(&l);
  return (int)(n & 0);
}
