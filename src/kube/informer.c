/* Informer: list (paginated) then watch, one state machine per collection, an open-addressing
 * hash table of compact objects keyed by namespace/name. See include/evscale/informer.h for the
 * protocol.
 *
 * Relists use mark and sweep instead of a second table: a full list starts by unmarking every
 * object and marks each it mentions; after the last page, the unmarked objects were deleted
 * while we were not watching and are delivered as deletes. Changes are delivered as pages
 * arrive, so a relist of 50,000 objects never holds two caches at once. A relist that fails
 * midway is restarted from the first page, unmarking again: what it already delivered stays
 * true of a newer snapshot, so nothing is delivered twice. */
#include "evscale/informer.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/backoff.h"
#include "evscale/buf.h"
#include "evscale/error.h"
#include "evscale/list.h"
#include "evscale/log.h"

typedef enum { ST_IDLE, ST_LIST, ST_WATCH, ST_WAIT } state_t;
/* What the watch's on_done does next, decided while the stream was read. */
typedef enum { NEXT_REWATCH, NEXT_RELIST, NEXT_BACKOFF, NEXT_BACKOFF_RELIST } next_t;

struct evs_informer_s {
  uv_loop_t *loop;
  uv_timer_t timer;
  evs_informer_options_t o;
  evs_intern_t *own_intern;
  /* cache */
  evs_informer_obj_t **slots; /* cap (a power of two) slots, count used */
  size_t cap, count;
  /* protocol */
  state_t state;
  int synced, closing, wait_list;
  evs_http_req_t *req;  /* direct mode: the request in flight */
  evs_kube_req_t *kreq; /* kube mode: the request in flight */
  char rv[128];
  char *cont;
  evs_informer_lines_t lines;
  int watch_status;
  next_t next;
  evs_backoff_t backoff;
  uint64_t rng;
  evs_informer_stats_t st;
  void (*close_cb)(void *arg);
  void *close_arg;
};

static void start_list(evs_informer_t *inf);
static void start_watch(evs_informer_t *inf);

/* --- the cache --- */

/* Entry flags. */
enum {
  F_UID_PACKED = 1, /* uid_ holds the uid; else it is a string after the name */
  F_RV_NUM = 2,     /* rv_ holds the resourceVersion; else a string after the name (and uid) */
  F_SEEN = 4        /* seen in the full list in progress (cleared when one starts) */
};

static int hexval(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* 1 and out filled when uid is 8-4-4-4-12 lowercase hex (the form the API server's uuid
 * generator writes, so the one that round-trips); 0 otherwise. */
static int uid_pack(const char *uid, uint8_t out[16]) {
  size_t k = 0;
  for (size_t i = 0; i < 36; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (uid[i] != '-')
        return 0;
      continue;
    }
    int hi = hexval(uid[i]), lo = hi >= 0 ? hexval(uid[++i]) : -1;
    if (lo < 0)
      return 0;
    out[k++] = (uint8_t)(hi << 4 | lo);
  }
  return uid[36] == '\0';
}

/* 1 and *out set when rv is a decimal without leading zeros ("0" itself included) that fits
 * in 64 bits: printing *out gives rv back. 0 otherwise (kept as the string). */
static int rv_pack(const char *rv, uint64_t *out) {
  uint64_t n = 0;
  if (rv[0] < '0' || rv[0] > '9' || (rv[0] == '0' && rv[1] != '\0'))
    return 0;
  for (const char *p = rv; *p; p++) {
    if (*p < '0' || *p > '9' || n > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
      return 0;
    n = n * 10 + (uint64_t)(*p - '0');
  }
  *out = n;
  return 1;
}

static const char *tail_uid(const evs_informer_obj_t *o) { return o->name + strlen(o->name) + 1; }

static const char *tail_rv(const evs_informer_obj_t *o) {
  const char *u = tail_uid(o);
  return (o->flags_ & F_UID_PACKED) ? u : u + strlen(u) + 1;
}

const char *evs_informer_obj_uid(const evs_informer_obj_t *o, char buf[EVS_INFORMER_UID_BUF]) {
  static const char hex[] = "0123456789abcdef";
  if (!(o->flags_ & F_UID_PACKED))
    return tail_uid(o);
  char *p = buf;
  for (size_t i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      *p++ = '-';
    *p++ = hex[o->uid_[i] >> 4];
    *p++ = hex[o->uid_[i] & 15];
  }
  *p = '\0';
  return buf;
}

const char *evs_informer_obj_rv(const evs_informer_obj_t *o, char buf[EVS_INFORMER_RV_BUF]) {
  if (!(o->flags_ & F_RV_NUM))
    return tail_rv(o);
  snprintf(buf, EVS_INFORMER_RV_BUF, "%" PRIu64, o->rv_);
  return buf;
}

/* Whether o's resourceVersion is rv. A form is packed exactly when it can be, so a packed and
 * an unpacked one always differ. */
static int rv_is(const evs_informer_obj_t *o, const char *rv) {
  uint64_t n;
  if (rv_pack(rv, &n))
    return (o->flags_ & F_RV_NUM) && o->rv_ == n;
  return !(o->flags_ & F_RV_NUM) && strcmp(tail_rv(o), rv) == 0;
}

static int same_uid(const evs_informer_obj_t *a, const evs_informer_obj_t *b) {
  if ((a->flags_ ^ b->flags_) & F_UID_PACKED)
    return 0;
  return (a->flags_ & F_UID_PACKED) ? memcmp(a->uid_, b->uid_, sizeof a->uid_) == 0
                                    : strcmp(tail_uid(a), tail_uid(b)) == 0;
}

evs_informer_obj_t *evs_informer__entry_new(const evs_informer_meta_t *m, const char *ns,
                                            size_t *size) {
  uint8_t uid[16];
  uint64_t rv = 0;
  const char *u = m->uid ? m->uid : "";
  int packed = uid_pack(u, uid), num = rv_pack(m->rv, &rv);
  size_t ln = strlen(m->name) + 1, lu = packed ? 0 : strlen(u) + 1,
         lr = num ? 0 : strlen(m->rv) + 1;
  size_t n = offsetof(evs_informer_obj_t, name) + ln + lu + lr;
  evs_informer_obj_t *o = malloc(n);
  if (o == NULL)
    return NULL;
  memset(o, 0, offsetof(evs_informer_obj_t, name));
  o->ns = ns;
  o->flags_ = (uint8_t)((packed ? F_UID_PACKED : 0) | (num ? F_RV_NUM : 0));
  if (packed)
    memcpy(o->uid_, uid, sizeof uid);
  o->rv_ = rv;
  memcpy(o->name, m->name, ln);
  memcpy(o->name + ln, u, lu);
  memcpy(o->name + ln + lu, m->rv, lr);
  if (size != NULL)
    *size = n;
  return o;
}

static uint32_t hash_key(const char *ns, const char *name) {
  uint32_t h = 2166136261u;
  for (const char *p = ns; *p; p++)
    h = (h ^ (unsigned char)*p) * 16777619u;
  h = (h ^ '/') * 16777619u;
  for (const char *p = name; *p; p++)
    h = (h ^ (unsigned char)*p) * 16777619u;
  return h;
}

/* Open addressing with linear probing: the table holds only pointers (a chained table's link
 * would be 8 more bytes in every entry), at most 80% full, and deletion shifts the entries after
 * the hole back (no tombstones), so a probe ends at the first empty slot. Returns the slot
 * holding ns/name, or the empty slot where it would go. */
static size_t find(const evs_informer_t *inf, const char *ns, const char *name, uint32_t h) {
  size_t mask = inf->cap - 1, i = h & mask;
  for (const evs_informer_obj_t *o; (o = inf->slots[i]) != NULL; i = (i + 1) & mask)
    if (o->hash_ == h && strcmp(o->name, name) == 0 && strcmp(o->ns, ns) == 0)
      return i;
  return i;
}

/* Empties slot i and moves back the entries of its probe run that may take the hole. */
static void unlink_at(evs_informer_t *inf, size_t i) {
  size_t mask = inf->cap - 1;
  inf->slots[i] = NULL;
  inf->count--;
  for (size_t j = (i + 1) & mask; inf->slots[j] != NULL; j = (j + 1) & mask) {
    size_t home = inf->slots[j]->hash_ & mask;
    /* The entry at j may fill the hole when its home is not in (hole, j] (cyclically). */
    if (((j - home) & mask) >= ((j - i) & mask)) {
      inf->slots[i] = inf->slots[j];
      inf->slots[j] = NULL;
      i = j;
    }
  }
}

static int over_load(size_t count, size_t cap) { return count * 5 > cap * 4; }

static void grow(evs_informer_t *inf) {
  size_t n = inf->cap * 2, mask = n - 1;
  evs_informer_obj_t **t = calloc(n, sizeof *t);
  if (t == NULL)
    return; /* longer probes, still correct until the table is full (upsert checks) */
  for (size_t i = 0; i < inf->cap; i++) {
    evs_informer_obj_t *o = inf->slots[i];
    if (o == NULL)
      continue;
    size_t j = o->hash_ & mask;
    while (t[j] != NULL)
      j = (j + 1) & mask;
    t[j] = o;
  }
  free(inf->slots);
  inf->slots = t;
  inf->cap = n;
}

static evs_intern_t *intern_of(const evs_informer_t *inf) {
  return inf->o.intern != NULL ? inf->o.intern : inf->own_intern;
}

static void free_data(evs_informer_t *inf, void *data) {
  if (data != NULL && inf->o.free_data != NULL)
    inf->o.free_data(data, inf->o.arg);
}

static void obj_free(evs_informer_t *inf, evs_informer_obj_t *o) {
  if (o == NULL)
    return;
  free_data(inf, o->data);
  evs_intern_release(intern_of(inf), o->ns);
  free(o);
}

/* One allocation (evs_informer__entry_new), immutable but for data and the mark: an update
 * makes a new object, so old and new can both be handed to on_update. */
static evs_informer_obj_t *obj_new(evs_informer_t *inf, const evs_informer_meta_t *m, void *data) {
  const char *ns = evs_intern(intern_of(inf), m->ns ? m->ns : "", m->ns ? m->ns_len : 0);
  if (ns == NULL)
    return NULL;
  evs_informer_obj_t *o = evs_informer__entry_new(m, ns, NULL);
  if (o == NULL) {
    evs_intern_release(intern_of(inf), ns);
    return NULL;
  }
  o->data = data;
  o->hash_ = hash_key(o->ns, o->name);
  o->flags_ |= F_SEEN;
  return o;
}

static void cache_free_all(evs_informer_t *inf) {
  for (size_t i = 0; i < inf->cap; i++)
    obj_free(inf, inf->slots[i]);
  free(inf->slots);
  inf->slots = NULL;
  inf->count = 0;
}

/* A new full list starts: no object has been seen in it yet. (A mark bit reset here rather than
 * a generation number in every entry: a walk per list is nothing next to the list itself.) */
static void unmark_all(evs_informer_t *inf) {
  for (size_t i = 0; i < inf->cap; i++)
    if (inf->slots[i] != NULL)
      inf->slots[i]->flags_ &= (uint8_t)~F_SEEN;
}

/* --- delivering changes --- */

static void deliver_delete(evs_informer_t *inf, size_t at) {
  evs_informer_obj_t *old = inf->slots[at];
  unlink_at(inf, at);
  if (inf->o.on_delete != NULL && !inf->closing)
    inf->o.on_delete(inf, old, inf->o.arg);
  obj_free(inf, old);
}

/* After on_add/on_update: with drop_data, what the handler had to take is gone. */
static void delivered(evs_informer_t *inf, evs_informer_obj_t *o) {
  if (inf->o.drop_data && o->data != NULL) {
    free_data(inf, o->data);
    o->data = NULL;
  }
}

/* A new object into the empty slot `at` (found for it), growing the table first if needed. */
static void insert(evs_informer_t *inf, size_t at, evs_informer_obj_t *o) {
  if (over_load(inf->count + 1, inf->cap)) {
    grow(inf);
    at = find(inf, o->ns, o->name, o->hash_);
  }
  if (inf->count + 2 > inf->cap) {
    /* Could not grow and one slot must stay empty to end every probe. */
    EVS_LOG_ERROR("informer: out of memory, object dropped", EVS_KV_STR("name", o->name));
    obj_free(inf, o);
    return;
  }
  inf->slots[at] = o;
  inf->count++;
  if (inf->o.on_add != NULL && !inf->closing)
    inf->o.on_add(inf, o, inf->o.arg);
  delivered(inf, o);
}

/* Applies the object's current state (list item, ADDED or MODIFIED): a new object is an add, a
 * changed resourceVersion an update, the same one nothing (already delivered). */
static void upsert(evs_informer_t *inf, const json_t *item, const evs_informer_meta_t *m) {
  const char *ns = m->ns ? m->ns : ""; /* NUL-terminated, no NUL inside: evs_informer_meta_get */
  uint32_t h = hash_key(ns, m->name);
  size_t at = find(inf, ns, m->name, h);
  evs_informer_obj_t *old = inf->slots[at];
  if (old != NULL) {
    old->flags_ |= F_SEEN;
    if (rv_is(old, m->rv)) {
      inf->st.duplicates++;
      return;
    }
  }
  void *data = NULL;
  if (inf->o.decode != NULL && inf->o.decode(item, &data, inf->o.arg) < 0) {
    EVS_LOG_WARN("informer: object not decoded, ignored", EVS_KV_STR("path", inf->o.path),
                 EVS_KV_STR("namespace", ns), EVS_KV_STR("name", m->name));
    free_data(inf, data);
    if (old != NULL)
      deliver_delete(inf, at);
    return;
  }
  evs_informer_obj_t *o = obj_new(inf, m, data);
  if (o == NULL) {
    free_data(inf, data);
    EVS_LOG_ERROR("informer: out of memory, object dropped", EVS_KV_STR("name", m->name));
    return;
  }
  if (old != NULL && !same_uid(old, o)) {
    /* Deleted and recreated under the same name while we were not watching. */
    deliver_delete(inf, at);
    if (inf->closing) {
      obj_free(inf, o);
      return;
    }
    at = find(inf, ns, m->name, h);
    old = NULL;
  }
  if (old == NULL) {
    insert(inf, at, o);
    return;
  }
  inf->slots[at] = o;
  if (inf->o.on_update != NULL && !inf->closing)
    inf->o.on_update(inf, old, o, inf->o.arg);
  obj_free(inf, old);
  delivered(inf, o);
}

static void remove_obj(evs_informer_t *inf, const evs_informer_meta_t *m) {
  const char *ns = m->ns ? m->ns : "";
  size_t at = find(inf, ns, m->name, hash_key(ns, m->name));
  if (inf->slots[at] != NULL)
    deliver_delete(inf, at);
}

/* After a full list: what the list did not mention is gone. A delete shifts later entries back
 * into the slot, so the slot is looked at again; an entry can only move to a slot not yet
 * passed, or (wrapping around the end) to one whose entries were all kept: none is missed. */
static void sweep(evs_informer_t *inf) {
  for (size_t i = 0; i < inf->cap && !inf->closing;) {
    const evs_informer_obj_t *o = inf->slots[i];
    if (o != NULL && !(o->flags_ & F_SEEN))
      deliver_delete(inf, i);
    else
      i++;
  }
}

static void set_rv(evs_informer_t *inf, const char *rv) {
  if (rv != NULL && strlen(rv) < sizeof inf->rv)
    snprintf(inf->rv, sizeof inf->rv, "%s", rv);
}

/* --- decoding --- */

int evs_informer_meta_get(const json_t *obj, evs_informer_meta_t *m) {
  memset(m, 0, sizeof *m);
  const json_t *md = json_object_get(obj, "metadata");
  const json_t *ns = json_object_get(md, "namespace");
  m->name = json_string_value(json_object_get(md, "name"));
  m->uid = json_string_value(json_object_get(md, "uid"));
  m->rv = json_string_value(json_object_get(md, "resourceVersion"));
  if (json_is_string(ns)) {
    m->ns = json_string_value(ns);
    m->ns_len = json_string_length(ns);
  }
  if (m->rv == NULL)
    return EVS_EPARSE;
  /* Names with NULs would alias in the C-string key: refuse them (the API server never sends
   * one; the check keeps hostile input from confusing the table). */
  if (m->name == NULL || strlen(m->name) != json_string_length(json_object_get(md, "name")) ||
      (m->ns != NULL && strlen(m->ns) != m->ns_len))
    return EVS_EPARSE;
  return 0;
}

int evs_informer_event_parse(const char *line, size_t len, evs_informer_event_t *ev) {
  static const struct {
    const char *name;
    evs_informer_event_type_t type;
  } types[] = {{"ADDED", EVS_INFORMER_EV_ADDED},
               {"MODIFIED", EVS_INFORMER_EV_MODIFIED},
               {"DELETED", EVS_INFORMER_EV_DELETED},
               {"BOOKMARK", EVS_INFORMER_EV_BOOKMARK},
               {"ERROR", EVS_INFORMER_EV_ERROR}};
  memset(ev, 0, sizeof *ev);
  json_error_t jerr;
  json_t *root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
  if (root == NULL)
    return EVS_EJSON;
  const char *type = json_string_value(json_object_get(root, "type"));
  const json_t *obj = json_object_get(root, "object");
  for (size_t i = 0; type != NULL && i < sizeof types / sizeof types[0]; i++)
    if (strcmp(type, types[i].name) == 0)
      ev->type = types[i].type;
  if (ev->type == 0 || !json_is_object(obj)) {
    json_decref(root);
    return EVS_EPARSE;
  }
  ev->root = root;
  ev->object = obj;
  if (ev->type == EVS_INFORMER_EV_ERROR) {
    json_int_t code = json_integer_value(json_object_get(obj, "code"));
    ev->code = code > 0 && code < 1000 ? (int)code : 0;
  }
  return 0;
}

int evs_informer_lines_feed(evs_informer_lines_t *l, const char *buf, size_t n,
                            int (*line)(void *ctx, const char *text, size_t len), void *ctx) {
  while (n > 0) {
    const char *nl = memchr(buf, '\n', n);
    size_t take = nl != NULL ? (size_t)(nl - buf) : n;
    if (l->len + take > l->max) {
      l->len = 0;
      return EVS_ETOOBIG;
    }
    const char *text = buf;
    size_t tlen = take;
    if (l->len > 0 || nl == NULL) {
      /* Only a line split across reads is copied; whole lines are parsed in place. */
      if (evs_buf_reserve((void **)&l->buf, &l->cap, l->len + take + 1, 1, 4096) != 0) {
        l->len = 0;
        return UV_ENOMEM;
      }
      memcpy(l->buf + l->len, buf, take);
      l->len += take;
      text = l->buf;
      tlen = l->len;
    }
    if (nl == NULL)
      return 0;
    buf += take + 1;
    n -= take + 1;
    if (tlen > 0 && text[tlen - 1] == '\r')
      tlen--;
    l->len = 0;
    if (tlen > 0) {
      int rc = line(ctx, text, tlen);
      if (rc != 0)
        return rc;
    }
  }
  return 0;
}

void evs_informer_lines_free(evs_informer_lines_t *l) {
  free(l->buf);
  l->buf = NULL;
  l->len = l->cap = 0;
}

/* --- the list page, item by item --- */

/* A page of 500 ScaledObjects is a few megabytes of jansson nodes when parsed whole, allocated
 * before and freed after the records its items become: glibc then holds that much free between
 * long-lived chunks. The top level is therefore walked by hand and each value parsed alone
 * (json_loadb with JSON_DISABLE_EOF_CHECK reports in position how many bytes the value took),
 * so one item's tree lives at a time. */

static size_t skip_ws(const char *s, size_t len, size_t i) {
  while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
    i++;
  return i;
}

/* One JSON value at s[*i]; *i moves past it. NULL when malformed. */
static json_t *value_at(const char *s, size_t len, size_t *i) {
  json_error_t jerr;
  json_t *v = json_loadb(s + *i, len - *i, JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK, &jerr);
  if (v != NULL && (jerr.position <= 0 || (size_t)jerr.position > len - *i)) {
    json_decref(v);
    return NULL;
  }
  if (v != NULL)
    *i += (size_t)jerr.position;
  return v;
}

/* Past the separator after a member or element: 1 after ',', 0 after `close`, -1 otherwise. */
static int next_member(const char *s, size_t len, size_t *i, char close) {
  *i = skip_ws(s, len, *i);
  if (*i < len && (s[*i] == ',' || s[*i] == close))
    return s[(*i)++] == ',';
  return -1;
}

static int list_items(const char *s, size_t len, size_t *i,
                      int (*item)(void *ctx, const json_t *obj), void *ctx) {
  *i = skip_ws(s, len, *i);
  if (*i >= len || s[*i] != '[')
    return EVS_EJSON;
  *i = skip_ws(s, len, *i + 1);
  if (*i < len && s[*i] == ']') {
    (*i)++;
    return 0;
  }
  for (int more = 1; more == 1;) {
    json_t *v = value_at(s, len, i);
    if (v == NULL)
      return EVS_EJSON;
    int stop = item(ctx, v);
    json_decref(v);
    if (stop != 0)
      return stop;
    more = next_member(s, len, i, ']');
    if (more < 0)
      return EVS_EJSON;
  }
  return 0;
}

static int list_metadata(json_t *md, evs_informer_list_meta_t *meta) {
  const char *cont = json_string_value(json_object_get(md, "continue"));
  const char *rv = json_string_value(json_object_get(md, "resourceVersion"));
  if ((cont != NULL && (meta->cont = strdup(cont)) == NULL) ||
      (rv != NULL && (meta->rv = strdup(rv)) == NULL))
    return UV_ENOMEM;
  return 0;
}

/* The members read apart: items (1) and metadata (2); others (kind, apiVersion) are skipped. */
static int member_bit(const char *k) {
  if (k == NULL)
    return 0;
  return strcmp(k, "items") == 0 ? 1 : strcmp(k, "metadata") == 0 ? 2 : 0;
}

/* One member of the List at body[*i]: "key": value. *seen: the member_bits met so far. */
static int list_member(const char *body, size_t len, size_t *i,
                       int (*item)(void *ctx, const json_t *obj), void *ctx,
                       evs_informer_list_meta_t *meta, int *seen) {
  *i = skip_ws(body, len, *i);
  json_t *key = *i < len && body[*i] == '"' ? value_at(body, len, i) : NULL;
  const char *k = json_string_value(key);
  int rc = EVS_EJSON, which = member_bit(k), is_key = k != NULL;
  json_decref(key);
  if (is_key)
    *i = skip_ws(body, len, *i);
  if (!is_key || *i >= len || body[*i] != ':' || (*seen & which) != 0)
    return EVS_EJSON; /* not a member, or a second items/metadata: not one List */
  (*i)++;
  *seen |= which;
  if (which == 1)
    return list_items(body, len, i, item, ctx);
  json_t *v = value_at(body, len, i);
  if (v != NULL)
    rc = which == 2 ? list_metadata(v, meta) : 0;
  json_decref(v);
  return rc;
}

int evs_informer_list_parse(const char *body, size_t len, int (*item)(void *ctx, const json_t *obj),
                            void *ctx, evs_informer_list_meta_t *meta) {
  memset(meta, 0, sizeof *meta);
  size_t i = skip_ws(body, len, 0);
  int rc = 0, seen = 0, more = 1;
  if (i >= len || body[i] != '{')
    return EVS_EJSON;
  i = skip_ws(body, len, i + 1);
  if (i < len && body[i] == '}') {
    more = 0;
    i++;
  }
  while (rc == 0 && more == 1) {
    rc = list_member(body, len, &i, item, ctx, meta, &seen);
    if (rc == 0 && (more = next_member(body, len, &i, '}')) < 0)
      rc = EVS_EJSON;
  }
  if (rc == 0 && ((seen & 1) == 0 || skip_ws(body, len, i) != len))
    rc = EVS_EJSON; /* no items, or bytes after the List */
  if (rc != 0) {
    free(meta->cont);
    free(meta->rv);
    memset(meta, 0, sizeof *meta);
  }
  return rc;
}

/* --- requests --- */

typedef struct {
  char *s;
  size_t len, cap;
  int oom;
} sbuf_t;

static void sb_add(sbuf_t *b, const char *s, size_t n) {
  if (b->oom || evs_buf_reserve((void **)&b->s, &b->cap, b->len + n + 1, 1, 256) != 0) {
    b->oom = 1;
    return;
  }
  memcpy(b->s + b->len, s, n);
  b->len += n;
  b->s[b->len] = '\0';
}

static void sb_str(sbuf_t *b, const char *s) { sb_add(b, s, strlen(s)); }

/* Query values (continue tokens, label selectors) percent-encoded per RFC 3986 unreserved. */
static void sb_escaped(sbuf_t *b, const char *s) {
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      sb_add(b, s, 1);
    } else {
      char esc[4];
      snprintf(esc, sizeof esc, "%%%02X", c);
      sb_add(b, esc, 3);
    }
  }
}

static double rand_u(evs_informer_t *inf) {
  /* xorshift64*: jitter only needs to differ between processes and attempts. */
  inf->rng ^= inf->rng >> 12;
  inf->rng ^= inf->rng << 25;
  inf->rng ^= inf->rng >> 27;
  return (double)((inf->rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

static void timer_cb(uv_timer_t *t) {
  evs_informer_t *inf = evs_container_of(t, evs_informer_t, timer);
  inf->state = ST_IDLE;
  if (inf->wait_list)
    start_list(inf);
  else
    start_watch(inf);
}

static void schedule(evs_informer_t *inf, uint64_t delay_ms, int list) {
  inf->state = ST_WAIT;
  inf->wait_list = list;
  uv_timer_start(&inf->timer, timer_cb, delay_ms, 0);
}

/* A failed attempt: retried after the next backoff delay, at least Retry-After. */
static void fail(evs_informer_t *inf, int err, int status, int64_t retry_after_s, int list) {
  uint64_t delay = evs_backoff_next(&inf->backoff, rand_u(inf));
  if (retry_after_s > 0 && (uint64_t)retry_after_s * 1000 > delay)
    delay = (uint64_t)retry_after_s * 1000;
  inf->st.failures++;
  EVS_LOG_WARN("informer: request failed, retrying", EVS_KV_STR("path", inf->o.path),
               EVS_KV_STR("op", list ? "list" : "watch"), EVS_KV_ERR("error", err),
               EVS_KV_INT("status", status), EVS_KV_UINT("retry_in_ms", delay));
  if (list) {
    free(inf->cont);
    inf->cont = NULL;
  }
  schedule(inf, delay, list);
}

static int send_req(evs_informer_t *inf, const char *pathq, int streaming);

static int list_item(void *ctx, const json_t *item) {
  evs_informer_t *inf = ctx;
  evs_informer_meta_t m;
  if (evs_informer_meta_get(item, &m) == 0)
    upsert(inf, item, &m);
  else
    inf->st.failures++;
  return inf->closing;
}

static void list_page(evs_informer_t *inf, const evs_http_response_t *resp) {
  evs_informer_list_meta_t meta;
  int rc = evs_informer_list_parse(resp->body, resp->body_len, list_item, inf, &meta);
  if (inf->closing) {
    free(meta.cont);
    free(meta.rv);
    return;
  }
  if (rc != 0) {
    /* The items before the fault were delivered: true of a snapshot at least as new as the
     * cache, so the relist this starts (a new generation) delivers nothing twice. */
    fail(inf, rc, resp->status, -1, 1);
    return;
  }
  inf->st.list_pages++;
  free(inf->cont);
  inf->cont = meta.cont != NULL && meta.cont[0] != '\0' ? meta.cont : NULL;
  if (inf->cont == NULL) {
    free(meta.cont);
    set_rv(inf, meta.rv);
  }
  free(meta.rv);
  if (inf->closing)
    return;
  if (inf->cont != NULL) {
    start_list(inf);
    return;
  }
  /* The last page: the snapshot is complete. */
  sweep(inf);
  if (inf->closing)
    return;
  if (inf->st.lists++ > 0)
    inf->st.relists++;
  evs_backoff_reset(&inf->backoff);
  if (!inf->synced) {
    inf->synced = 1;
    if (inf->o.on_synced != NULL)
      inf->o.on_synced(inf, inf->o.arg);
    if (inf->closing)
      return;
  }
  start_watch(inf);
}

static void list_done(evs_informer_t *inf, int err, const evs_http_response_t *resp) {
  inf->state = ST_IDLE;
  if (inf->closing)
    return;
  if (err != 0) {
    fail(inf, err, 0, -1, 1);
  } else if (resp->status == 410) {
    /* The continue token expired (compaction): start over from a fresh snapshot. */
    inf->st.gone++;
    fail(inf, EVS_ESTATUS, 410, -1, 1);
  } else if (resp->status != 200) {
    fail(inf, EVS_ESTATUS, resp->status, resp->retry_after_s, 1);
  } else {
    list_page(inf, resp);
  }
}

static void start_list(evs_informer_t *inf) {
  sbuf_t u = {0};
  char num[32];
  if (inf->cont == NULL)
    unmark_all(inf); /* a new full list: marks what it mentions */
  sb_str(&u, inf->o.path);
  snprintf(num, sizeof num, "?limit=%u", inf->o.page_size);
  sb_str(&u, num);
  if (inf->cont != NULL) {
    sb_str(&u, "&continue=");
    sb_escaped(&u, inf->cont);
  }
  if (inf->o.label_selector != NULL) {
    sb_str(&u, "&labelSelector=");
    sb_escaped(&u, inf->o.label_selector);
  }
  int rc = u.oom ? UV_ENOMEM : send_req(inf, u.s, 0);
  free(u.s);
  if (rc == 0)
    inf->state = ST_LIST;
  else
    fail(inf, rc, 0, -1, 1);
}

/* --- watch --- */

static int apply_event(void *ctx, const char *line, size_t len) {
  evs_informer_t *inf = ctx;
  evs_informer_event_t ev;
  int rc = evs_informer_event_parse(line, len, &ev);
  if (rc != 0) {
    /* A stream we cannot follow: resume from the last good resourceVersion after backoff. */
    EVS_LOG_WARN("informer: malformed watch event", EVS_KV_STR("path", inf->o.path),
                 EVS_KV_ERR("error", rc));
    inf->next = NEXT_BACKOFF;
    return 1;
  }
  evs_informer_meta_t m;
  if (ev.type == EVS_INFORMER_EV_ERROR) {
    inf->next = ev.code == 410 ? NEXT_RELIST : NEXT_BACKOFF;
    inf->st.gone += ev.code == 410;
    if (ev.code != 410)
      EVS_LOG_WARN("informer: watch ERROR event", EVS_KV_STR("path", inf->o.path),
                   EVS_KV_INT("code", ev.code));
    rc = 1;
  } else if (ev.type == EVS_INFORMER_EV_BOOKMARK) {
    inf->st.bookmarks++;
    const json_t *md = json_object_get(ev.object, "metadata");
    set_rv(inf, json_string_value(json_object_get(md, "resourceVersion")));
  } else if (evs_informer_meta_get(ev.object, &m) != 0) {
    inf->st.failures++;
    inf->next = NEXT_BACKOFF;
    rc = 1;
  } else {
    inf->st.events++;
    if (ev.type == EVS_INFORMER_EV_DELETED)
      remove_obj(inf, &m);
    else
      upsert(inf, ev.object, &m);
    set_rv(inf, m.rv);
  }
  json_decref(ev.root);
  return rc != 0 || inf->closing;
}

static void watch_head(evs_http_req_t *req, const evs_http_response_t *resp, void *arg) {
  (void)req;
  evs_informer_t *inf = arg;
  inf->watch_status = resp->status;
  if (resp->status == 200)
    evs_backoff_reset(&inf->backoff);
}

static int watch_body(evs_http_req_t *req, const char *buf, size_t n, void *arg) {
  (void)req;
  evs_informer_t *inf = arg;
  if (inf->closing)
    return 1;
  if (inf->watch_status != 200)
    return 0; /* a Status body: the status code says enough */
  int rc = evs_informer_lines_feed(&inf->lines, buf, n, apply_event, inf);
  if (rc < 0) {
    EVS_LOG_ERROR("informer: watch event too large or no memory, relisting",
                  EVS_KV_STR("path", inf->o.path), EVS_KV_ERR("error", rc));
    inf->next = NEXT_BACKOFF_RELIST;
  }
  return rc != 0;
}

static void watch_done(evs_informer_t *inf, int err, const evs_http_response_t *resp) {
  inf->state = ST_IDLE;
  inf->lines.len = 0;
  if (inf->closing)
    return;
  next_t next = inf->next;
  int status = inf->watch_status;
  if (next == NEXT_RELIST) {
    /* 410 in an ERROR event: the resourceVersion is too old; a fresh list, at once. */
    start_list(inf);
  } else if (next == NEXT_BACKOFF_RELIST) {
    fail(inf, EVS_ETOOBIG, status, -1, 1);
  } else if (next == NEXT_BACKOFF) {
    fail(inf, EVS_EPARSE, status, -1, 0);
  } else if (err == EVS_ETIMEDOUT && status == 200) {
    /* Silent past the server's timeout plus grace: the connection is presumed dead; resume. */
    inf->st.idle_restarts++;
    start_watch(inf);
  } else if (err != 0) {
    fail(inf, err, status, -1, 0);
  } else if (resp->status == 410) {
    inf->st.gone++;
    start_list(inf);
  } else if (resp->status != 200) {
    fail(inf, EVS_ESTATUS, resp->status, resp->retry_after_s, 0);
  } else {
    start_watch(inf); /* the server's timeoutSeconds ended it: resume */
  }
}

static void start_watch(evs_informer_t *inf) {
  sbuf_t u = {0};
  char num[64];
  sb_str(&u, inf->o.path);
  sb_str(&u, "?watch=1&allowWatchBookmarks=true&resourceVersion=");
  sb_escaped(&u, inf->rv);
  snprintf(num, sizeof num, "&timeoutSeconds=%u", inf->o.watch_timeout_s);
  sb_str(&u, num);
  if (inf->o.label_selector != NULL) {
    sb_str(&u, "&labelSelector=");
    sb_escaped(&u, inf->o.label_selector);
  }
  inf->next = NEXT_REWATCH;
  inf->watch_status = 0;
  inf->lines.len = 0;
  int rc = u.oom ? UV_ENOMEM : send_req(inf, u.s, 1);
  free(u.s);
  if (rc == 0) {
    inf->state = ST_WATCH;
    inf->st.watches++;
  } else {
    fail(inf, rc, 0, -1, 0);
  }
}

/* The two transports' callbacks, down to list_done/watch_done (the state says which request
 * was in flight: it is set when the request starts and kept until its done). */
static void http_done(evs_http_req_t *req, int err, const evs_http_response_t *resp, void *arg) {
  (void)req;
  evs_informer_t *inf = arg;
  inf->req = NULL;
  (inf->state == ST_WATCH ? watch_done : list_done)(inf, err, resp);
}

static void kube_done(evs_kube_req_t *req, int err, const evs_http_response_t *resp,
                      const char *msg, void *arg) {
  (void)req;
  evs_informer_t *inf = arg;
  inf->kreq = NULL;
  if (err != 0 && msg != NULL && !inf->closing)
    EVS_LOG_DEBUG("informer: request failed", EVS_KV_STR("path", inf->o.path),
                  EVS_KV_STR("why", msg));
  (inf->state == ST_WATCH ? watch_done : list_done)(inf, err, resp);
}

/* Through the Kubernetes client: lists and watches are background work, at EVS_PRIO_LOW so
 * scale writes and lease renewals pass them in the rate limiter. A watch keeps the client's
 * request timeout until its head arrives (the API server sends it at once), then only the
 * idle timeout. */
static int send_kube(evs_informer_t *inf, const char *pathq, int streaming) {
  evs_kube_request_opts_t r = {.verb = "GET",
                               .path = pathq,
                               .priority = EVS_PRIO_LOW,
                               .timeout_ms = streaming ? 0 : inf->o.list_timeout_ms,
                               .on_done = kube_done,
                               .arg = inf};
  if (streaming) {
    r.on_head = watch_head;
    r.on_body = watch_body;
    r.stream_idle_timeout_ms = inf->o.idle_timeout_ms;
  }
  return evs_kube_request(inf->o.kube, &r, &inf->kreq);
}

static int send_req(evs_informer_t *inf, const char *pathq, int streaming) {
  if (inf->o.kube != NULL)
    return send_kube(inf, pathq, streaming);
  sbuf_t u = {0};
  sb_str(&u, inf->o.base_url);
  sb_str(&u, pathq);
  if (u.oom) {
    free(u.s);
    return UV_ENOMEM;
  }
  evs_http_header_t hs[16] = {{"Accept", "application/json"}};
  size_t n = 1;
  evs_http_request_opts_t r = {.method = "GET",
                               .url = u.s,
                               .headers = hs,
                               .tls = inf->o.tls,
                               .on_done = http_done,
                               .arg = inf};
  r.timeout_ms = streaming ? 0 : inf->o.list_timeout_ms;
  if (streaming) {
    r.on_head = watch_head;
    r.on_body = watch_body;
    r.stream_idle_timeout_ms = inf->o.idle_timeout_ms;
  }
  int rc = inf->o.decorate != NULL
               ? inf->o.decorate(&r, hs, &n, sizeof hs / sizeof hs[0], inf->o.decorate_arg)
               : 0;
  r.nheaders = n;
  if (rc == 0)
    rc = evs_http_request(inf->o.http, &r, &inf->req);
  free(u.s);
  return rc;
}

/* --- lifecycle --- */

static char *dup_opt(const char *s) { return s != NULL ? strdup(s) : NULL; }

static void free_strings(evs_informer_t *inf) {
  free((char *)inf->o.base_url);
  free((char *)inf->o.path);
  free((char *)inf->o.label_selector);
}

int evs_informer_start(uv_loop_t *loop, const evs_informer_options_t *opts, evs_informer_t **out) {
  if (opts == NULL || opts->path == NULL || opts->path[0] != '/' ||
      (opts->kube == NULL && (opts->http == NULL || opts->base_url == NULL)))
    return UV_EINVAL;
  evs_informer_t *inf = calloc(1, sizeof *inf);
  if (inf == NULL)
    return UV_ENOMEM;
  inf->loop = loop;
  inf->o = *opts;
  inf->o.base_url = dup_opt(opts->kube != NULL ? "" : opts->base_url);
  inf->o.path = dup_opt(opts->path);
  inf->o.label_selector = dup_opt(opts->label_selector);
  inf->o.page_size = opts->page_size ? opts->page_size : 500;
  inf->o.list_timeout_ms = opts->list_timeout_ms ? opts->list_timeout_ms : 60000;
  inf->o.watch_timeout_s = opts->watch_timeout_s ? opts->watch_timeout_s : 300;
  inf->o.idle_timeout_ms = opts->idle_timeout_ms ? opts->idle_timeout_ms
                                                 : (uint64_t)inf->o.watch_timeout_s * 1000 + 30000;
  inf->o.max_line_bytes = opts->max_line_bytes ? opts->max_line_bytes : 16u << 20;
  inf->lines.max = inf->o.max_line_bytes;
  inf->cap = 64;
  inf->slots = calloc(inf->cap, sizeof *inf->slots);
  int bad = inf->o.base_url == NULL || inf->o.path == NULL || inf->slots == NULL ||
            (opts->label_selector != NULL && inf->o.label_selector == NULL);
  if (!bad && opts->intern == NULL)
    bad = evs_intern_new(&inf->own_intern) != 0;
  if (bad) {
    free_strings(inf);
    free(inf->slots);
    evs_intern_free(inf->own_intern);
    free(inf);
    return UV_ENOMEM;
  }
  evs_backoff_init(&inf->backoff, opts->backoff_initial_ms ? opts->backoff_initial_ms : 500,
                   opts->backoff_max_ms ? opts->backoff_max_ms : 30000, EVS_BACKOFF_FULL);
  inf->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)inf ^ 0x9e3779b97f4a7c15ull;
  uv_timer_init(loop, &inf->timer);
  *out = inf;
  start_list(inf);
  return 0;
}

static void on_timer_close(uv_handle_t *h) {
  evs_informer_t *inf = evs_container_of((uv_timer_t *)h, evs_informer_t, timer);
  void (*cb)(void *) = inf->close_cb;
  void *arg = inf->close_arg;
  cache_free_all(inf);
  evs_intern_free(inf->own_intern);
  evs_informer_lines_free(&inf->lines);
  free(inf->cont);
  free_strings(inf);
  free(inf);
  if (cb != NULL)
    cb(arg);
}

void evs_informer_close(evs_informer_t *inf, void (*cb)(void *arg), void *arg) {
  if (inf == NULL || inf->closing)
    return;
  inf->closing = 1;
  inf->close_cb = cb;
  inf->close_arg = arg;
  uv_timer_stop(&inf->timer);
  /* watch_done/list_done see `closing` and do nothing */
  if (inf->req != NULL)
    evs_http_cancel(inf->req);
  if (inf->kreq != NULL)
    evs_kube_cancel(inf->kreq);
  uv_close((uv_handle_t *)&inf->timer, on_timer_close);
}

const evs_informer_obj_t *evs_informer_get(const evs_informer_t *inf, const char *ns,
                                           const char *name) {
  ns = ns != NULL ? ns : "";
  return inf->slots[find(inf, ns, name, hash_key(ns, name))];
}

size_t evs_informer_count(const evs_informer_t *inf) { return inf->count; }

int evs_informer_synced(const evs_informer_t *inf) { return inf->synced; }

const char *evs_informer_resource_version(const evs_informer_t *inf) { return inf->rv; }

void evs_informer_foreach(const evs_informer_t *inf,
                          void (*fn)(const evs_informer_obj_t *obj, void *arg), void *arg) {
  for (size_t i = 0; i < inf->cap; i++)
    if (inf->slots[i] != NULL)
      fn(inf->slots[i], arg);
}

void evs_informer_get_stats(const evs_informer_t *inf, evs_informer_stats_t *out) {
  *out = inf->st;
}
