/* Diagnostics list and field paths. */
#include "evscale/diag.h"

#include "evscale/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void evs_diag_init(evs_diag_t *d) { memset(d, 0, sizeof *d); }

void evs_diag_free(evs_diag_t *d) {
  for (size_t i = 0; i < d->n; i++) {
    free(d->items[i].source);
    free(d->items[i].path);
    free(d->items[i].msg);
  }
  free(d->items);
  memset(d, 0, sizeof *d);
}

static char *evs__strdup_opt(const char *s) { return s ? strdup(s) : NULL; }

static void evs__diag_push(evs_diag_t *d, const char *source, uint32_t line, uint32_t col,
                           const char *path, char *msg) {
  size_t max = d->max ? d->max : 1000;
  if (msg == NULL || d->n >= max) {
    free(msg);
    d->dropped++;
    return;
  }
  if (evs_buf_reserve((void **)&d->items, &d->cap, d->n + 1, sizeof *d->items, 8) != 0) {
    free(msg);
    d->dropped++;
    return;
  }
  evs_diag_entry_t *e = &d->items[d->n++];
  e->source = evs__strdup_opt(source);
  e->line = line;
  e->col = col;
  e->path = path && *path ? strdup(path) : NULL;
  e->msg = msg;
}

void evs_diag_add(evs_diag_t *d, const char *source, uint32_t line, uint32_t col, const char *path,
                  const char *fmt, ...) {
  if (d == NULL)
    return;
  va_list ap;
  va_start(ap, fmt);
  char *msg = NULL;
  if (vasprintf(&msg, fmt, ap) < 0)
    msg = NULL;
  va_end(ap);
  evs__diag_push(d, source, line, col, path, msg);
}

void evs_diag_merge(evs_diag_t *dst, const evs_diag_t *src) {
  for (size_t i = 0; i < src->n; i++) {
    const evs_diag_entry_t *e = &src->items[i];
    evs__diag_push(dst, e->source, e->line, e->col, e->path, strdup(e->msg));
  }
  dst->dropped += src->dropped;
}

/* Line and column as one key; no position sorts after every position. */
static uint64_t evs__diag_key(const evs_diag_entry_t *e) {
  return e->line ? ((uint64_t)e->line << 32) | e->col : UINT64_MAX;
}

void evs_diag_sort(evs_diag_t *d, size_t from) {
  /* Insertion sort: stable, and the entries of one object are few and nearly in order already
   * (at most d->max). */
  for (size_t i = from + 1; i < d->n; i++) {
    evs_diag_entry_t e = d->items[i];
    uint64_t k = evs__diag_key(&e);
    size_t j = i;
    while (j > from && evs__diag_key(&d->items[j - 1]) > k) {
      d->items[j] = d->items[j - 1];
      j--;
    }
    d->items[j] = e;
  }
}

/* A bounded writer that keeps the would-be length, like snprintf. */
typedef struct {
  char *buf;
  size_t cap, len;
} evs__out_t;

static void evs__out_byte(evs__out_t *o, char c) {
  if (o->len + 1 < o->cap)
    o->buf[o->len] = c;
  o->len++;
}

/* Control bytes from the input (a YAML key or value holding ESC [2J, or a CR that rewrites the
 * line) must not reach a terminal or a log raw: they are written as \xNN (issue 9). */
static void evs__out_text(evs__out_t *o, const char *s) {
  static const char hex[] = "0123456789abcdef";
  for (; s && *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c < 0x20 || c == 0x7f) {
      evs__out_byte(o, '\\');
      evs__out_byte(o, 'x');
      evs__out_byte(o, hex[c >> 4]);
      evs__out_byte(o, hex[c & 15]);
    } else {
      evs__out_byte(o, (char)c);
    }
  }
}

int evs_diag_format(const evs_diag_t *d, size_t i, char *buf, size_t cap) {
  const evs_diag_entry_t *e = &d->items[i];
  evs__out_t o = {buf, cap, 0};
  char pos[48] = "";
  if (e->line)
    snprintf(pos, sizeof pos, ":%u:%u", e->line, e->col);
  evs__out_text(&o, e->source ? e->source : "<input>");
  evs__out_text(&o, pos);
  evs__out_text(&o, ": ");
  if (e->path) {
    evs__out_text(&o, e->path);
    evs__out_text(&o, ": ");
  }
  evs__out_text(&o, e->msg);
  if (cap)
    buf[o.len < cap ? o.len : cap - 1] = '\0';
  return (int)o.len;
}

void evs_path_init(evs_path_t *p) {
  p->len = 0;
  p->buf[0] = '\0';
}

static size_t evs__path_append(evs_path_t *p, const char *s) {
  size_t old = p->len;
  size_t n = strlen(s);
  if (p->len + n >= sizeof p->buf)
    n = sizeof p->buf - 1 - p->len;
  memcpy(p->buf + p->len, s, n);
  p->len += n;
  p->buf[p->len] = '\0';
  return old;
}

size_t evs_path_push_key(evs_path_t *p, const char *key) {
  size_t old = p->len;
  if (p->len > 0)
    evs__path_append(p, ".");
  evs__path_append(p, key);
  return old;
}

size_t evs_path_push_index(evs_path_t *p, size_t index) {
  char tmp[32];
  snprintf(tmp, sizeof tmp, "[%zu]", index);
  return evs__path_append(p, tmp);
}

void evs_path_pop(evs_path_t *p, size_t len) {
  if (len <= p->len) {
    p->len = len;
    p->buf[len] = '\0';
  }
}
