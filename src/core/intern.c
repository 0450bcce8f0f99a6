/* String interning: a chained hash table of refcounted entries; the string is stored inline
 * after its header so that one allocation holds both and the header is found from the string
 * pointer alone (evs_intern_ref/release need no lookup). */
#include "evscale/intern.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "evscale/list.h"

typedef struct entry_s {
  struct entry_s *next;
  uint32_t hash;
  unsigned refs;
  size_t len;
  char s[];
} entry_t;

struct evs_intern_s {
  entry_t **buckets;
  size_t nbuckets; /* a power of two */
  size_t count;
};

/* FNV-1a: short strings, no adversary able to choose many colliding namespace names cheaply
 * enough to matter (they are created through the API server, which rate-limits). */
static uint32_t hash_bytes(const char *s, size_t len) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; i++)
    h = (h ^ (unsigned char)s[i]) * 16777619u;
  return h;
}

static entry_t *entry_of(const char *s) { return evs_container_of(s, entry_t, s); }

int evs_intern_new(evs_intern_t **out) {
  evs_intern_t *t = calloc(1, sizeof *t);
  if (t == NULL)
    return UV_ENOMEM;
  t->nbuckets = 16;
  t->buckets = calloc(t->nbuckets, sizeof *t->buckets);
  if (t->buckets == NULL) {
    free(t);
    return UV_ENOMEM;
  }
  *out = t;
  return 0;
}

void evs_intern_free(evs_intern_t *t) {
  if (t == NULL)
    return;
  for (size_t i = 0; i < t->nbuckets; i++)
    for (entry_t *e = t->buckets[i], *next; e != NULL; e = next) {
      next = e->next;
      free(e);
    }
  free(t->buckets);
  free(t);
}

/* Doubles the table at load factor 1; on allocation failure the table just stays denser. */
static void grow(evs_intern_t *t) {
  size_t n = t->nbuckets * 2;
  entry_t **b = calloc(n, sizeof *b);
  if (b == NULL)
    return;
  for (size_t i = 0; i < t->nbuckets; i++)
    for (entry_t *e = t->buckets[i], *next; e != NULL; e = next) {
      next = e->next;
      e->next = b[e->hash & (n - 1)];
      b[e->hash & (n - 1)] = e;
    }
  free(t->buckets);
  t->buckets = b;
  t->nbuckets = n;
}

const char *evs_intern(evs_intern_t *t, const char *s, size_t len) {
  uint32_t h = hash_bytes(s, len);
  for (entry_t *e = t->buckets[h & (t->nbuckets - 1)]; e != NULL; e = e->next)
    if (e->hash == h && e->len == len && memcmp(e->s, s, len) == 0) {
      e->refs++;
      return e->s;
    }
  entry_t *e = malloc(sizeof *e + len + 1);
  if (e == NULL)
    return NULL;
  e->hash = h;
  e->refs = 1;
  e->len = len;
  memcpy(e->s, s, len);
  e->s[len] = '\0';
  if (t->count >= t->nbuckets)
    grow(t);
  e->next = t->buckets[h & (t->nbuckets - 1)];
  t->buckets[h & (t->nbuckets - 1)] = e;
  t->count++;
  return e->s;
}

const char *evs_intern_str(evs_intern_t *t, const char *s) { return evs_intern(t, s, strlen(s)); }

const char *evs_intern_ref(const char *s) {
  entry_of(s)->refs++;
  return s;
}

void evs_intern_release(evs_intern_t *t, const char *s) {
  if (s == NULL)
    return;
  entry_t *e = entry_of(s);
  if (--e->refs > 0)
    return;
  for (entry_t **p = &t->buckets[e->hash & (t->nbuckets - 1)]; *p != NULL; p = &(*p)->next)
    if (*p == e) {
      *p = e->next;
      break;
    }
  t->count--;
  free(e);
}

size_t evs_intern_len(const char *s) { return entry_of(s)->len; }

size_t evs_intern_count(const evs_intern_t *t) { return t->count; }

unsigned evs_intern_refs(const char *s) { return entry_of(s)->refs; }
