/* Internal helpers shared by the ScaledObject validator's files (src/scale/scaledobject.c,
 * src/scale/so_triggers.c). Not a public header. */
#ifndef EVSCALE_SO_CHECK_H
#define EVSCALE_SO_CHECK_H

#include <stdint.h>

#include "evscale/diag.h"
#include "evscale/node.h"
#include "evscale/scaledobject.h"

typedef struct {
  evs_diag_t *diag;
  const char *source; /* file, or "namespace/name" */
  evs_path_t path;
  int errors;
  evs_so_t *so;
  evs_so_mode_t mode;
  evs_diag_t *warn; /* EVS_SO_API: where unknown fields are reported; may be NULL */
} evs_so__ctx_t;

/* Adds one error at node n (its position when known) under the current path, extended by
 * `field` when not NULL. */
void evs_so__err(evs_so__ctx_t *c, const evs_node_t *n, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Copies a string into the object's arena; NULL on allocation failure (counted as an error). */
const char *evs_so__strdup(evs_so__ctx_t *c, const char *s);
void *evs_so__alloc(evs_so__ctx_t *c, size_t n);

/* Reports every field of the object that KEDA's CRD does not define (so_fields.c): an error in
 * EVS_SO_FILE mode, a warning into c->warn in EVS_SO_API mode. */
void evs_so__check_fields(evs_so__ctx_t *c, const evs_node_t *root);

/* FNV-1a of a trigger name: the slot in so->name_index is evs_so__name_hash(name) & name_mask. */
size_t evs_so__name_hash(const char *name);

/* Validates spec.triggers (the node may be NULL) into c->so. */
void evs_so__parse_triggers(evs_so__ctx_t *c, const evs_node_t *spec);

#endif
