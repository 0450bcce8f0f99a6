/* Go-style duration strings, in milliseconds. */
#include "evscale/duration.h"
#include "evscale/error.h"

#include <stdio.h>
#include <string.h>

typedef struct {
  const char *name;
  uint64_t ms;
} evs__unit_t;

/* Longest names first so "ms" is not read as "m" followed by garbage. */
static const evs__unit_t evs__units[] = {{"ms", 1}, {"h", 3600000}, {"m", 60000}, {"s", 1000}};

static const evs__unit_t *evs__unit(const char **p) {
  for (size_t i = 0; i < sizeof evs__units / sizeof evs__units[0]; i++) {
    size_t n = strlen(evs__units[i].name);
    if (strncmp(*p, evs__units[i].name, n) == 0) {
      *p += n;
      return &evs__units[i];
    }
  }
  return NULL;
}

static int evs__add(uint64_t *acc, uint64_t v) {
  if (*acc > UINT64_MAX - v)
    return EVS_ERANGE;
  *acc += v;
  return 0;
}

/* One "<int>[.<frac>]<unit>" component; adds its value to *acc. */
static int evs__component(const char **pp, uint64_t *acc) {
  const char *p = *pp;
  uint64_t whole = 0, frac = 0, scale = 1;
  int digits = 0, range = 0, fdigits = 0;
  for (; *p >= '0' && *p <= '9'; p++, digits++) {
    uint64_t d = (uint64_t)(*p - '0');
    if (whole > (UINT64_MAX - d) / 10)
      range = 1;
    else
      whole = whole * 10 + d;
  }
  if (*p == '.') {
    /* Trailing zeros change nothing. With the last digit non-zero, more than nine fraction
     * digits never make whole milliseconds (the largest unit, 1h, is 36 * 10^5 ms), which also
     * keeps frac * unit inside 64 bits. */
    const char *f = ++p;
    while (*p >= '0' && *p <= '9')
      p++;
    const char *end = p;
    while (end > f && end[-1] == '0')
      end--;
    for (const char *q = f; q < end; q++, fdigits++) {
      if (fdigits == 9)
        return UV_EINVAL;
      frac = frac * 10 + (uint64_t)(*q - '0');
      scale *= 10;
    }
    digits += (int)(p - f);
  }
  if (digits == 0)
    return UV_EINVAL;
  const evs__unit_t *u = evs__unit(&p);
  if (u == NULL)
    return UV_EINVAL;
  if (range || (whole && whole > UINT64_MAX / u->ms))
    return EVS_ERANGE;
  if ((frac * u->ms) % scale != 0)
    return UV_EINVAL; /* finer than a millisecond */
  int rc = evs__add(acc, whole * u->ms);
  if (rc == 0)
    rc = evs__add(acc, frac * u->ms / scale);
  *pp = p;
  return rc;
}

int evs_duration_parse(const char *s, uint64_t *ms) {
  if (s == NULL)
    return UV_EINVAL;
  const char *p = s;
  if (*p == '+')
    p++;
  if (strcmp(p, "0") == 0) {
    *ms = 0;
    return 0;
  }
  if (*p == '\0')
    return UV_EINVAL;
  uint64_t acc = 0;
  while (*p) {
    int rc = evs__component(&p, &acc);
    if (rc != 0)
      return rc;
  }
  *ms = acc;
  return 0;
}

int evs_duration_format(uint64_t ms, char *buf, size_t cap) {
  if (ms == 0)
    return snprintf(buf, cap, "0s");
  if (ms < 1000)
    return snprintf(buf, cap, "%llums", (unsigned long long)ms);
  char out[64];
  size_t n = 0;
  uint64_t h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60, rest = ms % 1000;
  if (h)
    n += (size_t)snprintf(out + n, sizeof out - n, "%lluh", (unsigned long long)h);
  if (m)
    n += (size_t)snprintf(out + n, sizeof out - n, "%llum", (unsigned long long)m);
  if (s || rest) {
    n += (size_t)snprintf(out + n, sizeof out - n, "%llu", (unsigned long long)s);
    if (rest) {
      /* Milliseconds as a decimal fraction without trailing zeros: 500 → ".5". */
      unsigned frac = (unsigned)rest;
      int digits = 3;
      while (frac % 10 == 0) { /* rest > 0, so this stops */
        frac /= 10;
        digits--;
      }
      n += (size_t)snprintf(out + n, sizeof out - n, ".%0*u", digits, frac);
    }
    n += (size_t)snprintf(out + n, sizeof out - n, "s");
  }
  return snprintf(buf, cap, "%s", out);
}
