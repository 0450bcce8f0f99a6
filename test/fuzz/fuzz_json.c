/* libFuzzer: JSON text → document tree (the path every API object takes) → walk → free. */
#include <stddef.h>
#include <stdint.h>

#include "evscale/diag.h"
#include "evscale/node.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t walk(const evs_node_t *n, int depth) {
  size_t count = 1;
  if (n == NULL || depth > 100)
    return 0;
  if (n->kind == EVS_NODE_MAP) {
    for (size_t i = 0; i < n->len; i++) {
      /* Every key finds its own value, hashed map or scanned one (jansson refused duplicates). */
      if (evs_node_get(n, evs_node_text(evs_node_key(n, i))) != evs_node_value(n, i))
        __builtin_trap();
      count += walk(evs_node_value(n, i), depth + 1) + (evs_node_text(evs_node_key(n, i)) != 0);
    }
  } else if (n->kind == EVS_NODE_SEQ) {
    for (size_t i = 0; i < n->len; i++)
      count += walk(evs_node_item(n, i), depth + 1);
  }
  return count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  evs_doc_t *doc = NULL;
  evs_diag_t d;
  evs_diag_init(&d);
  if (evs_doc_parse_json((const char *)data, size, "fuzz", &doc, &d) == 0) {
    walk(evs_doc_root(doc), 0);
    evs_doc_free(doc);
  }
  evs_diag_free(&d);
  return 0;
}
