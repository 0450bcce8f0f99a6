/* Diagnostics: a list of every error found in one input, each with its position and field path,
 * so a user sees all of them at once ("every error is reported, not just the first").
 *
 * An entry prints as "file:line:col: path: message" when the position is known (YAML),
 * "source: path: message" otherwise (an API object, where source is "namespace/name"). */
#ifndef EVSCALE_DIAG_H
#define EVSCALE_DIAG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  char *source;  /* file name or "namespace/name"; owned */
  uint32_t line; /* 0 when unknown */
  uint32_t col;
  char *path; /* dotted field path ("circuit_breaker.cooldown_period"), may be NULL; owned */
  char *msg;  /* owned */
} evs_diag_entry_t;

typedef struct {
  evs_diag_entry_t *items;
  size_t n, cap;
  size_t max; /* entries beyond this are counted in `dropped`, not stored (0 = 1000) */
  size_t dropped;
} evs_diag_t;

void evs_diag_init(evs_diag_t *d);
void evs_diag_free(evs_diag_t *d);
/* Adds one entry; every string is copied. Allocation failure drops the entry (counted). */
void evs_diag_add(evs_diag_t *d, const char *source, uint32_t line, uint32_t col, const char *path,
                  const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* Formats entry i into buf (NUL-terminated, truncated); returns the would-be length. Control
 * bytes (< 0x20, 0x7f) in any part are written as \xNN, so input cannot drive a terminal. */
int evs_diag_format(const evs_diag_t *d, size_t i, char *buf, size_t cap);
/* Appends every entry of src to dst. */
void evs_diag_merge(evs_diag_t *dst, const evs_diag_t *src);
/* Puts entries [from, n) in input order: by line, then column, stable, entries without a
 * position last. A validator that checks fields in its own order calls it so that errors print
 * in file order. */
void evs_diag_sort(evs_diag_t *d, size_t from);

/* A dotted field path built while descending a tree: push "spec", "triggers", index 0 →
 * "spec.triggers[0]". Fixed size; a path too long is cut (still NUL-terminated). */
typedef struct {
  char buf[256];
  size_t len;
} evs_path_t;

void evs_path_init(evs_path_t *p);
/* Push returns the previous length, to pass to evs_path_pop. */
size_t evs_path_push_key(evs_path_t *p, const char *key);
size_t evs_path_push_index(evs_path_t *p, size_t index);
void evs_path_pop(evs_path_t *p, size_t len);

#endif
