/* room: core
 * String interning: one refcounted copy of each distinct string (namespaces, names, addresses,
 * queries), shared by every object that holds it. 50,000 ScaledObjects in a handful of
 * namespaces then hold a handful of namespace strings, and equal interned strings compare by
 * pointer.
 *
 *   evs_intern_t *t;
 *   evs_intern_new(&t);
 *   const char *ns = evs_intern(t, "default", 7);   // new reference
 *   const char *again = evs_intern(t, "default", 7); // same pointer, second reference
 *   evs_intern_release(t, again);
 *   evs_intern_release(t, ns);                       // last reference: the string is freed
 *   evs_intern_free(t);
 *
 * Not thread-safe: one table per loop. Strings may contain NULs (len counts); the returned
 * string is always NUL-terminated. */
#ifndef EVSCALE_INTERN_H
#define EVSCALE_INTERN_H

#include <stddef.h>

typedef struct evs_intern_s evs_intern_t;

/* 0 or UV_ENOMEM. */
int evs_intern_new(evs_intern_t **out);
/* Frees the table and every string still in it: references still held become dangling, so
 * release them first (evs_intern_count says how many distinct strings remain). NULL is a no-op. */
void evs_intern_free(evs_intern_t *t);
/* A new reference to the interned copy of s[0..len), or NULL on allocation failure. */
const char *evs_intern(evs_intern_t *t, const char *s, size_t len);
/* Shorthand for evs_intern(t, s, strlen(s)). */
const char *evs_intern_str(evs_intern_t *t, const char *s);
/* Another reference to an interned string (s must come from evs_intern); returns s. */
const char *evs_intern_ref(const char *s);
/* Drops one reference; the last one frees the string. NULL is a no-op. */
void evs_intern_release(evs_intern_t *t, const char *s);
/* The length of an interned string (O(1)). */
size_t evs_intern_len(const char *s);
/* Distinct strings currently held, and the references to s (for tests and metrics). */
size_t evs_intern_count(const evs_intern_t *t);
unsigned evs_intern_refs(const char *s);

#endif
