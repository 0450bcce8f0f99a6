/* libFuzzer target: the discovery decoders (evscale/discovery.h) on API server bodies — an
 * APIGroupList and an APIResourceList. The first byte picks the decoder; the rest is the body.
 * Must never crash, leak or hit UB, whatever the JSON holds (wrong types, missing names, a
 * "/scale" entry without its parent). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "evscale/discovery.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 65536)
    return 0;
  evs_kube_discovery_t *d = calloc(1, sizeof *d);
  if (d == NULL)
    return 0;
  const char *body = (const char *)data + 1;
  if (data[0] & 1) {
    char **gvs = NULL;
    size_t n = 0;
    evs_kube_discovery_groups(d, body, size - 1, &gvs, &n);
    for (size_t i = 0; i < n; i++)
      free(gvs[i]);
    free(gvs);
  } else {
    evs_kube_discovery_resources(d, body, size - 1);
    for (size_t i = 0; i < d->n_scalable; i++)
      (void)evs_kube_discovery_find(d, d->scalable[i].group, d->scalable[i].kind);
  }
  evs_kube_discovery_free(d);
  return 0;
}
