/* Document trees that keep source positions: one shape for YAML (config file, `simulate`
 * input) and JSON (objects from the Kubernetes API), so a single validator serves both and its
 * errors read "file:line:col" for files and "namespace/name: field" for API objects.
 *
 * A document owns every node in it (one arena); nodes are borrowed from the document and die
 * with evs_doc_free. Scalars keep their source text; plain YAML scalars are also resolved by the
 * YAML 1.2 core schema (null, bool, int, float), quoted ones stay strings.
 *
 * Building is linear in the input whatever its shape (issue 9): the keys of a large map are
 * hashed (duplicate check while parsing, then evs_node_get), anchors are indexed by name, and
 * nesting deeper than 64 levels is refused. */
#ifndef EVSCALE_NODE_H
#define EVSCALE_NODE_H

#include <stddef.h>
#include <stdint.h>

#include "evscale/diag.h"

typedef enum {
  EVS_NODE_NULL = 0,
  EVS_NODE_BOOL,
  EVS_NODE_INT,
  EVS_NODE_REAL,
  EVS_NODE_STR,
  EVS_NODE_MAP,
  EVS_NODE_SEQ
} evs_node_kind_t;

typedef struct evs_node_s evs_node_t;
typedef struct evs_node_index_s evs_node_index_t; /* private to node.c */
struct evs_node_s {
  uint8_t kind;  /* evs_node_kind_t */
  uint32_t line; /* 1-based; 0 when unknown (JSON) */
  uint32_t col;  /* 1-based; 0 when unknown */
  uint32_t len;  /* scalar: bytes of text; map: number of pairs; seq: number of items */
  union {
    const char *text;   /* scalars: NUL-terminated source text ("" for an empty null) */
    evs_node_t **items; /* seq: len items; map: 2*len entries, key (a STR node) then value */
  } u;
  union {
    int64_t i; /* EVS_NODE_INT */
    double d;  /* EVS_NODE_REAL */
    int b;     /* EVS_NODE_BOOL */
    /* EVS_NODE_MAP: the hash of its keys (in the document's arena) when the map is large enough
     * for one to pay; NULL otherwise, and in maps built by hand: lookups then scan. */
    const evs_node_index_t *index;
  } num;
};

typedef struct evs_doc_s evs_doc_t;

/* Parses one YAML document. On success *out is a new document (free with evs_doc_free); on
 * failure returns EVS_EYAML and adds "file:line:col: …" entries to diag (which may be NULL).
 * Duplicate keys, several documents and aliases to unfinished nodes are errors. `file` is
 * copied and used for positions. */
int evs_doc_parse_yaml(const char *buf, size_t len, const char *file, evs_doc_t **out,
                       evs_diag_t *diag);
/* Parses JSON text (positions are unknown: 0). Same contract as evs_doc_parse_yaml. */
int evs_doc_parse_json(const char *buf, size_t len, const char *file, evs_doc_t **out,
                       evs_diag_t *diag);
/* Converts a jansson value (borrowed, not stolen). `json` is a `json_t *`, typed void here so
 * this header does not pull in jansson. */
int evs_doc_from_jansson(const void *json, const char *file, evs_doc_t **out);

void evs_doc_free(evs_doc_t *doc);
/* Borrowed; NULL for an empty document. */
const evs_node_t *evs_doc_root(const evs_doc_t *doc);
/* The file name the document was parsed from (borrowed). */
const char *evs_doc_file(const evs_doc_t *doc);

/* Map lookup: hashed in large maps, a scan of the few keys of small ones. NULL when absent or
 * when `map` is not a map. */
const evs_node_t *evs_node_get(const evs_node_t *map, const char *key);
/* The keyed hash of the document indexes (SipHash-1-3 with a random per-process key), for other
 * tables keyed by outside input: a fixed hash would let a crafted file collide every key. */
uint64_t evs_node_hash(const void *buf, size_t len);

/* Pair i of a map. */
const evs_node_t *evs_node_key(const evs_node_t *map, size_t i);
const evs_node_t *evs_node_value(const evs_node_t *map, size_t i);
/* Item i of a sequence. */
const evs_node_t *evs_node_item(const evs_node_t *seq, size_t i);
/* The text of any scalar (NULL for maps and sequences). */
const char *evs_node_text(const evs_node_t *n);
int evs_node_is_scalar(const evs_node_t *n);
const char *evs_node_kind_name(int kind);

#endif
