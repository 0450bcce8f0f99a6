/* Internal helpers shared by the ScaledObject validator's files (src/scale/scaledobject.c,
 * src/scale/so_triggers.c). Not a public header. */
#ifndef EVSCALE_SO_CHECK_H
#define EVSCALE_SO_CHECK_H

#include <stdint.h>

#include "evscale/diag.h"
#include "evscale/node.h"
#include "evscale/scaledobject.h"

/* The parse's scratch arena: a first block on the parser's stack, then blocks of the heap for
 * large objects; everything is packed into the object's own allocation at the end
 * (scaledobject.c so_pack), so an ordinary decode allocates once. */
typedef struct evs_so__block_s {
  struct evs_so__block_s *next;
  _Alignas(8) char data[];
} evs_so__block_t;

typedef struct {
  evs_diag_t *diag;
  const char *source; /* file, or "namespace/name" */
  evs_path_t path;
  int errors;
  evs_so_t *so;
  evs_so_mode_t mode;
  evs_diag_t *warn; /* EVS_SO_API: where unknown fields are reported; may be NULL */
  char *cur;        /* the scratch arena: next free byte, bytes left, heap blocks */
  size_t left;
  evs_so__block_t *spill;
  /* An open-addressing index of the triggers' names (trigger index + 1, 0 = empty;
   * name_mask + 1 slots) in the scratch arena, so that the duplicate-name check stays linear. */
  uint32_t *name_index;
  size_t name_mask;
} evs_so__ctx_t;

/* Adds one error at node n (its position when known) under the current path, extended by
 * `field` when not NULL. */
void evs_so__err(evs_so__ctx_t *c, const evs_node_t *n, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Copies a string into the scratch arena; NULL on allocation failure (counted as an error). */
const char *evs_so__strdup(evs_so__ctx_t *c, const char *s);
void *evs_so__alloc(evs_so__ctx_t *c, size_t n);

/* Reports every field of the object that KEDA's CRD does not define (so_fields.c): an error in
 * EVS_SO_FILE mode, a warning into c->warn in EVS_SO_API mode. */
void evs_so__check_fields(evs_so__ctx_t *c, const evs_node_t *root);

/* FNV-1a of a trigger name: the slot in the name index is evs_so__name_hash(name) & mask. */
size_t evs_so__name_hash(const char *name);
/* Slots of the name index for n triggers: a power of two >= 8 and >= 2n. */
size_t evs_so__index_slots(size_t n);

/* The static copy of s when it is one of the strings the model knows (the default target, the
 * metadata keys the scalers read, ""), else NULL: the packed object points there
 * rather than keep a copy per object. */
const char *evs_so__word(const char *s);

/* How many distinct strings the process's objects share now (scaledobject.c), for tests. */
size_t evs_so__shared_count(void);

/* The size of so's block as allocated (what the object asked of malloc), for tests:
 * malloc_usable_size says what a chunk holds, which depends on the heap's history (a reused
 * chunk may carry up to 31 B more), and failed a size test once under load. */
size_t evs_so__packed_size(const evs_so_t *so);

/* Validates spec.triggers (the node may be NULL) into c->so. */
void evs_so__parse_triggers(evs_so__ctx_t *c, const evs_node_t *spec);

#endif
