/* Document trees with positions, from libyaml events or jansson values. */
#include "evscale/node.h"
#include "evscale/buf.h"
#include "evscale/error.h"
#include "node_int.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

_Thread_local uint64_t evs_node__compares;

/* Nodes and strings of one document come from one arena, freed at once: a config file or an
 * API object is parsed, validated into compact structs and dropped. */
typedef struct evs__chunk_s {
  struct evs__chunk_s *next;
  size_t used, cap;
  _Alignas(max_align_t) unsigned char data[];
} evs__chunk_t;

/* A large array grown with realloc while parsing (a big collection's items, a key index) that the
 * document adopts instead of copying it into the arena: for a 1 MiB map that copy alone touches
 * megabytes of fresh pages. The list's links live in the arena. */
typedef struct evs__owned_s {
  struct evs__owned_s *next;
  void *p;
} evs__owned_t;

struct evs_doc_s {
  evs__chunk_t *chunks;
  evs__owned_t *owned;
  evs_node_t *root;
  char *file;
};

static void *evs__alloc(evs_doc_t *doc, size_t n) {
  /* 8-byte alignment is all a node, a string or an index needs. */
  n = (n + 7) & ~(size_t)7;
  evs__chunk_t *c = doc->chunks;
  if (c == NULL || c->cap - c->used < n) {
    /* Chunks double up to 1 MiB: an API object fits in one 8 KiB chunk, a 4 MiB file does not
     * take thousands. */
    size_t cap = c == NULL ? 8192 : c->cap >= (1u << 19) ? (1u << 20) : 2 * c->cap;
    if (cap < n)
      cap = n;
    c = malloc(sizeof *c + cap);
    if (c == NULL)
      return NULL;
    c->used = 0;
    c->cap = cap;
    c->next = doc->chunks;
    doc->chunks = c;
  }
  void *p = c->data + c->used;
  c->used += n;
  return p;
}

/* The document takes ownership of malloc'd p (freed by evs_doc_free); on failure p is freed. */
static int evs__adopt(evs_doc_t *doc, void *p) {
  evs__owned_t *o = evs__alloc(doc, sizeof *o);
  if (o == NULL) {
    free(p);
    return UV_ENOMEM;
  }
  o->p = p;
  o->next = doc->owned;
  doc->owned = o;
  return 0;
}

static char *evs__strndup(evs_doc_t *doc, const char *s, size_t n) {
  char *p = evs__alloc(doc, n + 1);
  if (p) {
    memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}

static evs_doc_t *evs__doc_new(const char *file) {
  evs_doc_t *doc = calloc(1, sizeof *doc);
  if (doc == NULL)
    return NULL;
  doc->file = strdup(file ? file : "<input>");
  if (doc->file == NULL) {
    free(doc);
    return NULL;
  }
  return doc;
}

void evs_doc_free(evs_doc_t *doc) {
  if (doc == NULL)
    return;
  for (evs__owned_t *o = doc->owned; o; o = o->next)
    free(o->p);
  evs__chunk_t *c = doc->chunks;
  while (c) {
    evs__chunk_t *next = c->next;
    free(c);
    c = next;
  }
  free(doc->file);
  free(doc);
}

const evs_node_t *evs_doc_root(const evs_doc_t *doc) { return doc ? doc->root : NULL; }
const char *evs_doc_file(const evs_doc_t *doc) { return doc ? doc->file : NULL; }

static evs_node_t *evs__node_new(evs_doc_t *doc, int kind, uint32_t line, uint32_t col) {
  evs_node_t *n = evs__alloc(doc, sizeof *n);
  if (n == NULL)
    return NULL;
  memset(n, 0, sizeof *n);
  n->kind = (uint8_t)kind;
  n->line = line;
  n->col = col;
  return n;
}

/* ---- keyed hashing and key indexes ---- */

/* SipHash-1-3 (Aumasson and Bernstein, "SipHash: a fast short-input PRF", with the round counts
 * Rust and Python use for their hash tables). Its key is random per process: keys are outside
 * input (a config file, any object a user may create in the cluster), and with a fixed hash
 * one crafted file could put every key in one chain and bring the quadratic cost back. */
static uint64_t evs__sip_k0, evs__sip_k1;
static pthread_once_t evs__sip_once = PTHREAD_ONCE_INIT;

static void evs__sip_seed(void) {
  uint64_t k[2];
  if (getrandom(k, sizeof k, GRND_NONBLOCK) != (ssize_t)sizeof k) {
    /* Early boot without entropy yet: weaker, still not guessable from the input alone. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    k[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
    k[1] = (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&ts;
  }
  evs__sip_k0 = k[0];
  evs__sip_k1 = k[1];
}

#define EVS__ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define EVS__SIPROUND                                                                              \
  do {                                                                                             \
    v0 += v1;                                                                                      \
    v1 = EVS__ROTL(v1, 13);                                                                        \
    v1 ^= v0;                                                                                      \
    v0 = EVS__ROTL(v0, 32);                                                                        \
    v2 += v3;                                                                                      \
    v3 = EVS__ROTL(v3, 16);                                                                        \
    v3 ^= v2;                                                                                      \
    v0 += v3;                                                                                      \
    v3 = EVS__ROTL(v3, 21);                                                                        \
    v3 ^= v0;                                                                                      \
    v2 += v1;                                                                                      \
    v1 = EVS__ROTL(v1, 17);                                                                        \
    v1 ^= v2;                                                                                      \
    v2 = EVS__ROTL(v2, 32);                                                                        \
  } while (0)

uint64_t evs_node_hash(const void *buf, size_t len) {
  pthread_once(&evs__sip_once, evs__sip_seed);
  const unsigned char *p = buf;
  uint64_t v0 = evs__sip_k0 ^ 0x736f6d6570736575ull, v1 = evs__sip_k1 ^ 0x646f72616e646f6dull;
  uint64_t v2 = evs__sip_k0 ^ 0x6c7967656e657261ull, v3 = evs__sip_k1 ^ 0x7465646279746573ull;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t m = 0;
    for (int j = 7; j >= 0; j--)
      m = m << 8 | p[i + (size_t)j];
    v3 ^= m;
    EVS__SIPROUND;
    v0 ^= m;
  }
  uint64_t m = (uint64_t)len << 56;
  for (size_t j = 0; i + j < len; j++)
    m |= (uint64_t)p[i + j] << (8 * j);
  v3 ^= m;
  EVS__SIPROUND;
  v0 ^= m;
  v2 ^= 0xff;
  EVS__SIPROUND;
  EVS__SIPROUND;
  EVS__SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

/* Hash tables of keys (a map's) and anchor names: open addressing with linear probing, at most
 * half full. A slot holds the low 32 bits of the key's hash (the tag) above the entry's number +
 * 1 (0 = empty): the tag places the entry again when the table grows and skips almost every
 * other key without reading it, so a probe seldom touches more than the table. The entries
 * themselves (key nodes, anchors) live elsewhere: tables store no strings. */
typedef struct {
  uint64_t *slots;
  uint32_t mask; /* capacity - 1; capacity is a power of two */
  uint32_t used;
} evs__tab_t;

#define EVS__SLOT(tag, entry) ((uint64_t)(tag) << 32 | ((uint64_t)(entry) + 1))
#define EVS__SLOT_TAG(s) ((uint32_t)((s) >> 32))
#define EVS__SLOT_ENTRY(s) ((uint32_t)(s)-1)

/* A map's key index: slots whose entries are pair numbers (adopted by the document). */
struct evs_node_index_s {
  uint32_t mask;
  const uint64_t *slots;
};

/* Capacity for n entries: a power of two at least 2n. */
static uint32_t evs__tab_cap(size_t n) {
  uint32_t cap = 16;
  while (cap < 2 * n)
    cap *= 2;
  return cap;
}

/* Makes room for one more entry: doubles the table when it would be more than half full. */
static int evs__tab_reserve(evs__tab_t *t) {
  uint32_t cap = evs__tab_cap((size_t)t->used + 1);
  if (t->slots && cap <= t->mask + 1)
    return 0;
  uint64_t *slots = calloc(cap, sizeof *slots);
  if (slots == NULL)
    return UV_ENOMEM;
  for (uint32_t i = 0; t->slots && i <= t->mask; i++) {
    if (t->slots[i] == 0)
      continue;
    uint32_t j = EVS__SLOT_TAG(t->slots[i]) & (cap - 1);
    while (slots[j] != 0)
      j = (j + 1) & (cap - 1);
    slots[j] = t->slots[i];
  }
  free(t->slots);
  t->slots = slots;
  t->mask = cap - 1;
  return 0;
}

static int evs__key_eq(const evs_node_t *k, const char *key, size_t klen) {
  evs_node__compares++;
  return k->len == klen && memcmp(k->u.text, key, klen) == 0;
}

/* The position of `key` among a map's pairs (`items`), or of the empty slot where it goes. */
static uint32_t evs__key_pos(const uint64_t *slots, uint32_t mask, evs_node_t *const *items,
                             const char *key, size_t klen, uint32_t tag) {
  uint32_t i = tag & mask;
  while (slots[i] != 0 && (EVS__SLOT_TAG(slots[i]) != tag ||
                           !evs__key_eq(items[2 * EVS__SLOT_ENTRY(slots[i])], key, klen)))
    i = (i + 1) & mask;
  return i;
}

/* Adds pair `pair` of items to t unless its key is there already (the first one stays). */
static void evs__key_add(evs__tab_t *t, evs_node_t *const *items, uint32_t pair) {
  const evs_node_t *k = items[2 * pair];
  uint32_t tag = (uint32_t)evs_node_hash(k->u.text, k->len);
  uint32_t i = evs__key_pos(t->slots, t->mask, items, k->u.text, k->len, tag);
  if (t->slots[i] == 0) {
    t->slots[i] = EVS__SLOT(tag, pair);
    t->used++;
  }
}

/* Makes t the index of a finished map, owned by the document. */
static evs_node_index_t *evs__index_keep(evs_doc_t *doc, evs__tab_t *t) {
  evs_node_index_t *ix = evs__alloc(doc, sizeof *ix);
  uint64_t *slots = t->slots;
  t->slots = NULL;
  if (ix == NULL) {
    free(slots);
    return NULL;
  }
  if (evs__adopt(doc, slots) != 0)
    return NULL;
  ix->mask = t->mask;
  ix->slots = slots;
  return ix;
}

/* Indexes the n pairs of a finished map (n >= EVS_NODE__INDEX_MIN). */
static evs_node_index_t *evs__index_build(evs_doc_t *doc, evs_node_t *const *items, uint32_t n) {
  evs__tab_t t = {0};
  for (uint32_t i = 0; i < n; i++) {
    if (evs__tab_reserve(&t) != 0) {
      free(t.slots);
      return NULL;
    }
    evs__key_add(&t, items, i);
  }
  return evs__index_keep(doc, &t);
}

/* ---- YAML 1.2 core schema resolution of plain scalars ---- */

static int evs__is_null(const char *s) {
  return *s == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
         strcmp(s, "NULL") == 0;
}

static int evs__parse_bool(const char *s, int *b) {
  if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
    *b = 1;
  else if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
    *b = 0;
  else
    return 0;
  return 1;
}

static int evs__parse_int(const char *s, int64_t *out) {
  const char *p = s;
  int base = 10;
  if (*p == '-' || *p == '+')
    p++;
  if (p[0] == '0' && p[1] == 'x') {
    base = 16;
    p += 2;
  } else if (p[0] == '0' && p[1] == 'o') {
    base = 8;
    p += 2;
  }
  if (*p == '\0')
    return 0;
  for (const char *q = p; *q; q++) {
    int ok = base == 16
                 ? (*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f') || (*q >= 'A' && *q <= 'F')
             : base == 8 ? (*q >= '0' && *q <= '7')
                         : (*q >= '0' && *q <= '9');
    if (!ok)
      return 0;
  }
  errno = 0;
  char *end;
  long long v = strtoll(p, &end, base);
  if (errno == ERANGE || *end != '\0')
    return 0;
  *out = s[0] == '-' ? -v : v;
  return 1;
}

static int evs__parse_real(const char *s, double *out) {
  const char *p = s;
  if (*p == '-' || *p == '+')
    p++;
  if (!strcmp(p, ".inf") || !strcmp(p, ".Inf") || !strcmp(p, ".INF")) {
    *out = s[0] == '-' ? -INFINITY : INFINITY;
    return 1;
  }
  if (!strcmp(s, ".nan") || !strcmp(s, ".NaN") || !strcmp(s, ".NAN")) {
    *out = NAN;
    return 1;
  }
  /* [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )? */
  int digits = 0;
  while (*p >= '0' && *p <= '9') {
    p++;
    digits++;
  }
  if (*p == '.') {
    p++;
    while (*p >= '0' && *p <= '9') {
      p++;
      digits++;
    }
  }
  if (!digits)
    return 0;
  if (*p == 'e' || *p == 'E') {
    p++;
    if (*p == '-' || *p == '+')
      p++;
    if (!(*p >= '0' && *p <= '9'))
      return 0;
    while (*p >= '0' && *p <= '9')
      p++;
  }
  if (*p != '\0')
    return 0;
  *out = strtod(s, NULL);
  return 1;
}

static void evs__resolve_plain(evs_node_t *n) {
  /* Only these can start a null, a boolean or a number; most plain scalars are words. */
  if (n->u.text[0] != '\0' && strchr("~nNtTfF0123456789+-.", n->u.text[0]) == NULL)
    return;
  if (evs__is_null(n->u.text))
    n->kind = EVS_NODE_NULL;
  else if (evs__parse_bool(n->u.text, &n->num.b))
    n->kind = EVS_NODE_BOOL;
  else if (evs__parse_int(n->u.text, &n->num.i))
    n->kind = EVS_NODE_INT;
  else if (evs__parse_real(n->u.text, &n->num.d))
    n->kind = EVS_NODE_REAL;
}

/* ---- YAML: an event-driven builder with an explicit stack ---- */

typedef struct {
  evs_node_t *node;
  evs_node_t **items;
  size_t n, cap;
  evs__tab_t tab;  /* maps of EVS_NODE__INDEX_MIN pairs or more: their key index, as it grows */
  size_t anchor;   /* the collection's anchor: index + 1 in evs__ybuild_t.anchors, or 0 */
  uint64_t weight; /* nodes in this subtree with aliases expanded */
} evs__frame_t;

typedef struct {
  char *name;
  evs_node_t *node; /* NULL while the anchored collection is still open */
  uint64_t weight;
} evs__anchor_t;

/* Aliases share nodes, so memory stays small, but every walk of the tree visits a shared node
 * once per alias: "billion laughs" input would make a validator's walk exponential. The tree is
 * refused when its size with aliases expanded passes this bound (far above any real file). */
#define EVS__MAX_EXPANDED_NODES 1000000u

typedef struct {
  evs_doc_t *doc;
  evs_diag_t *diag;
  evs__frame_t *stack;
  size_t depth, cap;
  evs__anchor_t *anchors; /* every definition, in document order */
  size_t nanchors, anchors_cap;
  evs__tab_t atab; /* anchor names to their latest definition in anchors */
  uint64_t root_weight;
  int failed;
} evs__ybuild_t;

/* Nesting deeper than this is refused: no configuration needs it, and it bounds the stack. */
#define EVS__MAX_DEPTH 64

static void evs__yerr(evs__ybuild_t *b, uint32_t line, uint32_t col, const char *msg,
                      const char *arg) {
  if (arg)
    evs_diag_add(b->diag, b->doc->file, line, col, NULL, "%s '%s'", msg, arg);
  else
    evs_diag_add(b->diag, b->doc->file, line, col, NULL, "%s", msg);
  b->failed = 1;
}

static int evs__frame_append(evs__frame_t *f, evs_node_t *n) {
  if (evs_buf_reserve((void **)&f->items, &f->cap, f->n + 1, sizeof *f->items, 8) != 0)
    return UV_ENOMEM;
  f->items[f->n++] = n;
  return 0;
}

/* The position of anchor `name` in b->atab, or of the empty slot where it goes. */
static uint32_t evs__anchor_pos(const evs__ybuild_t *b, const char *name, uint32_t tag) {
  const evs__tab_t *t = &b->atab;
  uint32_t i = tag & t->mask;
  while (t->slots[i] != 0) {
    if (EVS__SLOT_TAG(t->slots[i]) == tag) {
      evs_node__compares++;
      if (strcmp(b->anchors[EVS__SLOT_ENTRY(t->slots[i])].name, name) == 0)
        break;
    }
    i = (i + 1) & t->mask;
  }
  return i;
}

/* Records a definition of anchor `name`; later aliases to the name find this one. */
static int evs__anchor_add(evs__ybuild_t *b, const char *name, evs_node_t *node, uint64_t weight) {
  if (evs_buf_reserve((void **)&b->anchors, &b->anchors_cap, b->nanchors + 1, sizeof *b->anchors,
                      4) != 0)
    return UV_ENOMEM;
  if (evs__tab_reserve(&b->atab) != 0)
    return UV_ENOMEM;
  evs__anchor_t *a = &b->anchors[b->nanchors];
  if ((a->name = strdup(name)) == NULL)
    return UV_ENOMEM;
  a->node = node;
  a->weight = weight;
  uint32_t tag = (uint32_t)evs_node_hash(name, strlen(name));
  uint32_t i = evs__anchor_pos(b, name, tag);
  if (b->atab.slots[i] == 0)
    b->atab.used++;
  /* Latest definition wins, as YAML allows redefining an anchor. */
  b->atab.slots[i] = EVS__SLOT(tag, b->nanchors);
  b->nanchors++;
  return 0;
}

static evs__anchor_t *evs__anchor_find(evs__ybuild_t *b, const char *name) {
  if (b->atab.slots == NULL)
    return NULL;
  uint64_t s = b->atab.slots[evs__anchor_pos(b, name, (uint32_t)evs_node_hash(name, strlen(name)))];
  return s ? &b->anchors[EVS__SLOT_ENTRY(s)] : NULL;
}

/* Checks a new key of the open map f before it is appended as pair f->n / 2: a duplicate is an
 * error. Small maps are scanned; from EVS_NODE__INDEX_MIN pairs on the keys are hashed, so a
 * map of n keys costs O(n), not the n^2/2 comparisons of a scan per key. Once the key is
 * appended, *val goes in slot *pos of the index (nothing when *val is 0). */
static int evs__map_key(evs__ybuild_t *b, evs__frame_t *f, const evs_node_t *k, uint64_t *val,
                        uint32_t *pos) {
  uint32_t pairs = (uint32_t)(f->n / 2);
  *val = 0;
  if (f->tab.slots == NULL && pairs < EVS_NODE__INDEX_MIN) {
    for (size_t i = 0; i < f->n; i += 2) {
      if (evs__key_eq(f->items[i], k->u.text, k->len)) {
        evs__yerr(b, k->line, k->col, "duplicate key", k->u.text);
        break;
      }
    }
    return 0;
  }
  for (uint32_t i = f->tab.slots ? pairs : 0; i <= pairs; i++) {
    if (evs__tab_reserve(&f->tab) != 0)
      return UV_ENOMEM;
    if (i < pairs) /* the map has just grown large: index the keys it has */
      evs__key_add(&f->tab, f->items, i);
  }
  uint32_t tag = (uint32_t)evs_node_hash(k->u.text, k->len);
  uint32_t i = evs__key_pos(f->tab.slots, f->tab.mask, f->items, k->u.text, k->len, tag);
  if (f->tab.slots[i] != 0)
    evs__yerr(b, k->line, k->col, "duplicate key", k->u.text);
  else
    *val = EVS__SLOT(tag, pairs);
  *pos = i;
  return 0;
}

/* Adds a finished node of `weight` expanded nodes to the open collection (or makes it the
 * root). */
static int evs__attach(evs__ybuild_t *b, evs_node_t *n, uint64_t weight) {
  if (b->depth == 0) {
    b->doc->root = n;
    b->root_weight = weight;
    return 0;
  }
  evs__frame_t *f = &b->stack[b->depth - 1];
  f->weight += weight;
  if (f->weight > EVS__MAX_EXPANDED_NODES) {
    if (!b->failed)
      evs__yerr(b, n->line, n->col, "document too large with its aliases expanded", NULL);
    return EVS_EYAML;
  }
  if (f->node->kind == EVS_NODE_MAP && f->n % 2 == 0) {
    /* A key: must be a scalar, and unique in its map. */
    if (!evs_node_is_scalar(n)) {
      evs__yerr(b, n->line, n->col, "mapping keys must be scalars", NULL);
      return 0;
    }
    n->kind = EVS_NODE_STR;
    uint64_t val;
    uint32_t pos;
    int rc = evs__map_key(b, f, n, &val, &pos);
    if (rc == 0)
      rc = evs__frame_append(f, n);
    if (rc == 0 && val) {
      f->tab.slots[pos] = val;
      f->tab.used++;
    }
    return rc;
  }
  return evs__frame_append(f, n);
}

static int evs__open(evs__ybuild_t *b, int kind, const yaml_event_t *ev, const char *anchor) {
  if (b->depth >= EVS__MAX_DEPTH) {
    evs__yerr(b, (uint32_t)ev->start_mark.line + 1, (uint32_t)ev->start_mark.column + 1,
              "nesting too deep", NULL);
    return EVS_EYAML;
  }
  if (evs_buf_reserve((void **)&b->stack, &b->cap, b->depth + 1, sizeof *b->stack, 8) != 0)
    return UV_ENOMEM;
  evs_node_t *n = evs__node_new(b->doc, kind, (uint32_t)ev->start_mark.line + 1,
                                (uint32_t)ev->start_mark.column + 1);
  if (n == NULL)
    return UV_ENOMEM;
  evs__frame_t *f = &b->stack[b->depth++];
  memset(f, 0, sizeof *f);
  f->node = n;
  f->weight = 1;
  if (anchor) {
    if (evs__anchor_add(b, anchor, NULL, 0) != 0)
      return UV_ENOMEM;
    f->anchor = b->nanchors;
  }
  return 0;
}

/* Collections with this many items keep their growth array (adopted); smaller ones are copied
 * into the arena, which costs less than a malloc'd block each. */
#define EVS__ADOPT_MIN 256

static int evs__close(evs__ybuild_t *b) {
  evs__frame_t *f = &b->stack[--b->depth];
  evs_node_t *n = f->node;
  int rc = 0;
  if (n->kind == EVS_NODE_MAP && f->n % 2 != 0)
    f->n--; /* cannot happen with a well-formed event stream */
  n->len = (uint32_t)(n->kind == EVS_NODE_MAP ? f->n / 2 : f->n);
  if (f->n >= EVS__ADOPT_MIN) {
    n->u.items = f->items;
    f->items = NULL;
    rc = evs__adopt(b->doc, n->u.items);
  } else if (f->n) {
    n->u.items = evs__alloc(b->doc, f->n * sizeof *n->u.items);
    if (n->u.items == NULL)
      rc = UV_ENOMEM;
    else
      memcpy(n->u.items, f->items, f->n * sizeof *n->u.items);
  }
  if (rc == 0 && n->kind == EVS_NODE_MAP && n->len >= EVS_NODE__INDEX_MIN) {
    /* The index grown while parsing becomes the map's, for evs_node_get. */
    n->num.index = f->tab.slots ? evs__index_keep(b->doc, &f->tab)
                                : evs__index_build(b->doc, n->u.items, n->len);
    if (n->num.index == NULL)
      rc = UV_ENOMEM;
  }
  if (f->anchor) {
    /* The definition this collection opened, even if a node inside redefined the name. */
    b->anchors[f->anchor - 1].node = n;
    b->anchors[f->anchor - 1].weight = f->weight;
  }
  free(f->tab.slots);
  free(f->items);
  if (rc == 0)
    rc = evs__attach(b, n, f->weight);
  return rc;
}

static int evs__scalar(evs__ybuild_t *b, const yaml_event_t *ev) {
  evs_node_t *n = evs__node_new(b->doc, EVS_NODE_STR, (uint32_t)ev->start_mark.line + 1,
                                (uint32_t)ev->start_mark.column + 1);
  if (n == NULL)
    return UV_ENOMEM;
  n->u.text = evs__strndup(b->doc, (const char *)ev->data.scalar.value, ev->data.scalar.length);
  if (n->u.text == NULL)
    return UV_ENOMEM;
  n->len = (uint32_t)ev->data.scalar.length;
  /* A scalar with a NUL inside cannot be used as a C string: refuse it rather than cut it. */
  if (strlen(n->u.text) != ev->data.scalar.length)
    evs__yerr(b, n->line, n->col, "NUL byte in scalar", NULL);
  /* Only untagged plain scalars are resolved; "5" stays a string. */
  if (ev->data.scalar.plain_implicit && ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
    evs__resolve_plain(n);
  if (ev->data.scalar.anchor && evs__anchor_add(b, (const char *)ev->data.scalar.anchor, n, 1) != 0)
    return UV_ENOMEM;
  return evs__attach(b, n, 1);
}

static int evs__alias(evs__ybuild_t *b, const yaml_event_t *ev) {
  const char *name = (const char *)ev->data.alias.anchor;
  evs__anchor_t *a = evs__anchor_find(b, name);
  uint32_t line = (uint32_t)ev->start_mark.line + 1, col = (uint32_t)ev->start_mark.column + 1;
  if (a == NULL) {
    evs__yerr(b, line, col, "unknown alias", name);
    return 0;
  }
  if (a->node == NULL) {
    evs__yerr(b, line, col, "alias refers to a node that contains it", name);
    return 0;
  }
  /* Documents are trees of borrowed nodes freed together, so an alias may share its target. */
  return evs__attach(b, a->node, a->weight);
}

int evs_doc_parse_yaml(const char *buf, size_t len, const char *file, evs_doc_t **out,
                       evs_diag_t *diag) {
  *out = NULL;
  evs_doc_t *doc = evs__doc_new(file);
  if (doc == NULL)
    return UV_ENOMEM;
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) {
    evs_doc_free(doc);
    return UV_ENOMEM;
  }
  yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
  evs__ybuild_t b = {.doc = doc, .diag = diag};
  int rc = 0, docs = 0, done = 0;
  while (!done && rc == 0) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&parser, &ev)) {
      const char *problem = parser.problem ? parser.problem : "syntax error";
      yaml_mark_t m = parser.problem_mark;
      if (parser.context)
        evs_diag_add(diag, doc->file, (uint32_t)m.line + 1, (uint32_t)m.column + 1, NULL, "%s %s",
                     problem, parser.context);
      else
        evs_diag_add(diag, doc->file, (uint32_t)m.line + 1, (uint32_t)m.column + 1, NULL, "%s",
                     problem);
      b.failed = 1;
      break;
    }
    switch (ev.type) {
    case YAML_STREAM_END_EVENT:
      done = 1;
      break;
    case YAML_DOCUMENT_START_EVENT:
      if (++docs > 1)
        evs__yerr(&b, (uint32_t)ev.start_mark.line + 1, (uint32_t)ev.start_mark.column + 1,
                  "only one YAML document is allowed", NULL);
      break;
    case YAML_MAPPING_START_EVENT:
      rc = evs__open(&b, EVS_NODE_MAP, &ev, (const char *)ev.data.mapping_start.anchor);
      break;
    case YAML_SEQUENCE_START_EVENT:
      rc = evs__open(&b, EVS_NODE_SEQ, &ev, (const char *)ev.data.sequence_start.anchor);
      break;
    case YAML_MAPPING_END_EVENT:
    case YAML_SEQUENCE_END_EVENT:
      rc = evs__close(&b);
      break;
    case YAML_SCALAR_EVENT:
      rc = evs__scalar(&b, &ev);
      break;
    case YAML_ALIAS_EVENT:
      rc = evs__alias(&b, &ev);
      break;
    default:
      break;
    }
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&parser);
  while (b.depth > 0) {
    evs__frame_t *f = &b.stack[--b.depth];
    free(f->items);
    free(f->tab.slots);
  }
  free(b.stack);
  for (size_t i = 0; i < b.nanchors; i++)
    free(b.anchors[i].name);
  free(b.anchors);
  free(b.atab.slots);
  if (rc == 0 && b.failed)
    rc = EVS_EYAML;
  if (rc != 0) {
    evs_doc_free(doc);
    return rc;
  }
  *out = doc;
  return 0;
}

/* ---- JSON through jansson ---- */

static evs_node_t *evs__from_json(evs_doc_t *doc, const json_t *j, int depth, int *rc) {
  if (depth > EVS__MAX_DEPTH) {
    *rc = EVS_EJSON;
    return NULL;
  }
  evs_node_t *n = evs__node_new(doc, EVS_NODE_NULL, 0, 0);
  if (n == NULL) {
    *rc = UV_ENOMEM;
    return NULL;
  }
  char tmp[64];
  const char *text = NULL;
  size_t tlen = 0;
  switch (json_typeof(j)) {
  case JSON_OBJECT: {
    n->kind = EVS_NODE_MAP;
    size_t cnt = json_object_size(j), i = 0;
    n->len = (uint32_t)cnt;
    n->u.items = cnt ? evs__alloc(doc, 2 * cnt * sizeof *n->u.items) : NULL;
    if (cnt && n->u.items == NULL) {
      *rc = UV_ENOMEM;
      return NULL;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)j, key, v) {
      evs_node_t *k = evs__node_new(doc, EVS_NODE_STR, 0, 0);
      if (k == NULL || (k->u.text = evs__strndup(doc, key, strlen(key))) == NULL) {
        *rc = UV_ENOMEM;
        return NULL;
      }
      k->len = (uint32_t)strlen(key);
      n->u.items[2 * i] = k;
      n->u.items[2 * i + 1] = evs__from_json(doc, v, depth + 1, rc);
      if (n->u.items[2 * i + 1] == NULL)
        return NULL;
      i++;
    }
    /* jansson has refused duplicate keys; the index serves evs_node_get (a 50,000-object list
     * from the API server is one array, but its objects' labels and annotations are maps). */
    if (cnt >= EVS_NODE__INDEX_MIN &&
        (n->num.index = evs__index_build(doc, n->u.items, (uint32_t)cnt)) == NULL) {
      *rc = UV_ENOMEM;
      return NULL;
    }
    return n;
  }
  case JSON_ARRAY: {
    n->kind = EVS_NODE_SEQ;
    size_t cnt = json_array_size(j);
    n->len = (uint32_t)cnt;
    n->u.items = cnt ? evs__alloc(doc, cnt * sizeof *n->u.items) : NULL;
    if (cnt && n->u.items == NULL) {
      *rc = UV_ENOMEM;
      return NULL;
    }
    for (size_t i = 0; i < cnt; i++) {
      n->u.items[i] = evs__from_json(doc, json_array_get(j, i), depth + 1, rc);
      if (n->u.items[i] == NULL)
        return NULL;
    }
    return n;
  }
  case JSON_STRING:
    n->kind = EVS_NODE_STR;
    text = json_string_value(j);
    tlen = json_string_length(j);
    break;
  case JSON_INTEGER:
    n->kind = EVS_NODE_INT;
    n->num.i = json_integer_value(j);
    tlen = (size_t)snprintf(tmp, sizeof tmp, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
    text = tmp;
    break;
  case JSON_REAL:
    n->kind = EVS_NODE_REAL;
    n->num.d = json_real_value(j);
    tlen = (size_t)snprintf(tmp, sizeof tmp, "%.17g", n->num.d);
    text = tmp;
    break;
  case JSON_TRUE:
  case JSON_FALSE:
    n->kind = EVS_NODE_BOOL;
    n->num.b = json_is_true(j);
    text = n->num.b ? "true" : "false";
    tlen = strlen(text);
    break;
  default:
    text = "";
    break;
  }
  n->u.text = evs__strndup(doc, text, tlen);
  n->len = (uint32_t)tlen;
  if (n->u.text == NULL) {
    *rc = UV_ENOMEM;
    return NULL;
  }
  return n;
}

int evs_doc_from_jansson(const void *json, const char *file, evs_doc_t **out) {
  *out = NULL;
  evs_doc_t *doc = evs__doc_new(file);
  if (doc == NULL)
    return UV_ENOMEM;
  int rc = 0;
  doc->root = evs__from_json(doc, json, 0, &rc);
  if (doc->root == NULL) {
    evs_doc_free(doc);
    return rc ? rc : UV_ENOMEM;
  }
  *out = doc;
  return 0;
}

int evs_doc_parse_json(const char *buf, size_t len, const char *file, evs_doc_t **out,
                       evs_diag_t *diag) {
  *out = NULL;
  json_error_t err;
  json_t *j = json_loadb(buf, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);
  if (j == NULL) {
    evs_diag_add(diag, file ? file : "<input>", (uint32_t)(err.line > 0 ? err.line : 0),
                 (uint32_t)(err.column > 0 ? err.column : 0), NULL, "%s", err.text);
    return EVS_EJSON;
  }
  int rc = evs_doc_from_jansson(j, file, out);
  json_decref(j);
  if (rc == EVS_EJSON)
    evs_diag_add(diag, file ? file : "<input>", 0, 0, NULL, "nesting too deep");
  return rc;
}

/* ---- accessors ---- */

const evs_node_t *evs_node_get(const evs_node_t *map, const char *key) {
  if (map == NULL || map->kind != EVS_NODE_MAP)
    return NULL;
  size_t klen = strlen(key);
  if (map->num.index) {
    const evs_node_index_t *ix = map->num.index;
    uint32_t tag = (uint32_t)evs_node_hash(key, klen);
    uint64_t s = ix->slots[evs__key_pos(ix->slots, ix->mask, map->u.items, key, klen, tag)];
    return s ? map->u.items[2 * EVS__SLOT_ENTRY(s) + 1] : NULL;
  }
  for (uint32_t i = 0; i < map->len; i++)
    if (evs__key_eq(map->u.items[2 * i], key, klen))
      return map->u.items[2 * i + 1];
  return NULL;
}

const evs_node_t *evs_node_key(const evs_node_t *map, size_t i) {
  if (map == NULL || map->kind != EVS_NODE_MAP || i >= map->len)
    return NULL;
  return map->u.items[2 * i];
}

const evs_node_t *evs_node_value(const evs_node_t *map, size_t i) {
  if (map == NULL || map->kind != EVS_NODE_MAP || i >= map->len)
    return NULL;
  return map->u.items[2 * i + 1];
}

const evs_node_t *evs_node_item(const evs_node_t *seq, size_t i) {
  if (seq == NULL || seq->kind != EVS_NODE_SEQ || i >= seq->len)
    return NULL;
  return seq->u.items[i];
}

int evs_node_is_scalar(const evs_node_t *n) {
  return n && n->kind != EVS_NODE_MAP && n->kind != EVS_NODE_SEQ;
}

const char *evs_node_text(const evs_node_t *n) { return evs_node_is_scalar(n) ? n->u.text : NULL; }

const char *evs_node_kind_name(int kind) {
  static const char *const names[] = {"null",   "boolean", "integer", "number",
                                      "string", "mapping", "sequence"};
  return kind >= 0 && kind <= EVS_NODE_SEQ ? names[kind] : "unknown";
}
