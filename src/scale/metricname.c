/* KEDA's external metric names (see include/evscale/metricname.h for the sources). */
#include "evscale/metricname.h"

#include <stdio.h>
#include <string.h>

/* A small bounded writer: appends and remembers whether anything was cut. */
typedef struct {
  char *buf;
  size_t cap, len;
} evs__mn_out_t;

static void mn_putc(evs__mn_out_t *o, char c) {
  if (o->len + 1 < o->cap)
    o->buf[o->len] = c;
  o->len++;
}

static void mn_puts(evs__mn_out_t *o, const char *s) {
  for (; *s; s++)
    mn_putc(o, *s);
}

/* strings.TrimSpace for the ASCII white space KEDA's values can carry. */
static void mn_trimmed(const char *s, const char **start, size_t *len) {
  size_t n;
  if (s == NULL)
    s = "";
  while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\v' || *s == '\f')
    s++;
  n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r' ||
                   s[n - 1] == '\v' || s[n - 1] == '\f'))
    n--;
  *start = s;
  *len = n;
}

static void mn_put_trimmed(evs__mn_out_t *o, const char *s) {
  const char *p;
  size_t n;
  mn_trimmed(s, &p, &n);
  for (size_t i = 0; i < n; i++)
    mn_putc(o, p[i]);
}

/* cron_scaler.go parseCronTimeFormat: " " removed, "*" -> "x", "/" -> "Sl", "?" -> "Qm",
 * "," -> "Cm" (applied in that order; none of the replacements produces another's input). */
static void mn_put_cron(evs__mn_out_t *o, const char *s) {
  const char *p;
  size_t n;
  mn_trimmed(s, &p, &n);
  for (size_t i = 0; i < n; i++) {
    switch (p[i]) {
    case ' ':
      break;
    case '*':
      mn_putc(o, 'x');
      break;
    case '/':
      mn_puts(o, "Sl");
      break;
    case '?':
      mn_puts(o, "Qm");
      break;
    case ',':
      mn_puts(o, "Cm");
      break;
    default:
      mn_putc(o, p[i]);
    }
  }
}

void evs_metricname_normalize(char *s) {
  for (; *s; s++)
    if (*s == '/' || *s == '.' || *s == ':' || *s == '%' || *s == '(' || *s == ')')
      *s = '-';
}

int evs_metricname_build(const char *type, size_t index, const evs_kvs_t *metadata, char *buf,
                         size_t cap) {
  evs__mn_out_t o = {buf, cap, 0};
  char prefix[32];
  size_t plen;
  if (type == NULL || buf == NULL)
    return UV_EINVAL;
  snprintf(prefix, sizeof prefix, "s%zu-", index);
  mn_puts(&o, prefix);
  plen = o.len;
  if (strcmp(type, "redis") == 0) {
    mn_puts(&o, "redis-");
    mn_put_trimmed(&o, evs_kvs_get(metadata, "listName"));
  } else if (strcmp(type, "prometheus") == 0) {
    mn_puts(&o, "prometheus");
  } else if (strcmp(type, "cron") == 0) {
    mn_puts(&o, "cron-");
    mn_put_trimmed(&o, evs_kvs_get(metadata, "timezone"));
    mn_putc(&o, '-');
    mn_put_cron(&o, evs_kvs_get(metadata, "start"));
    mn_putc(&o, '-');
    mn_put_cron(&o, evs_kvs_get(metadata, "end"));
  } else {
    return UV_EINVAL;
  }
  if (o.len + 1 > cap)
    return UV_ENOBUFS;
  buf[o.len] = '\0';
  /* Only the scaler's part is normalized: the "s{i}-" prefix has nothing to replace. */
  evs_metricname_normalize(buf + plen);
  return (int)o.len;
}
