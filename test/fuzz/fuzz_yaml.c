/* libFuzzer: YAML text → document tree with positions → lookups → free. */
#include <stddef.h>
#include <stdint.h>

#include "evscale/diag.h"
#include "evscale/node.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  evs_doc_t *doc = NULL;
  evs_diag_t d;
  evs_diag_init(&d);
  char buf[256];
  if (evs_doc_parse_yaml((const char *)data, size, "fuzz.yaml", &doc, &d) == 0) {
    const evs_node_t *root = evs_doc_root(doc);
    (void)evs_node_get(root, "spec");
    /* Every key finds its own value, hashed map or scanned one (keys are unique). */
    for (size_t i = 0; root && root->kind == EVS_NODE_MAP && i < root->len; i++)
      if (evs_node_get(root, evs_node_text(evs_node_key(root, i))) != evs_node_value(root, i))
        __builtin_trap();
    evs_doc_free(doc);
  }
  for (size_t i = 0; i < d.n; i++)
    evs_diag_format(&d, i, buf, sizeof buf);
  evs_diag_free(&d);
  return 0;
}
