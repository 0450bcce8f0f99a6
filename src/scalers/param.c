/* KEDA's typed trigger parameters; see include/evscale/param.h. */
#include "evscale/param.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

size_t evs_param_space_len(const char *s) {
  const unsigned char *u = (const unsigned char *)s;
  if (u[0] == ' ' || (u[0] >= '\t' && u[0] <= '\r'))
    return 1;
  if (u[0] == 0xc2 && (u[1] == 0x85 || u[1] == 0xa0)) /* NEL, NO-BREAK SPACE */
    return 2;
  if (u[0] == 0xe1 && u[1] == 0x9a && u[2] == 0x80) /* OGHAM SPACE MARK */
    return 3;
  if (u[0] == 0xe2 && u[1] == 0x80 &&
      (u[2] <= 0x8a || u[2] == 0xa8 || u[2] == 0xa9 ||
       u[2] == 0xaf)) /* U+2000-200A, 2028/9, 202F */
    return u[2] >= 0x80 ? 3 : 0;
  if (u[0] == 0xe2 && u[1] == 0x81 && u[2] == 0x9f) /* MEDIUM MATHEMATICAL SPACE */
    return 3;
  if (u[0] == 0xe3 && u[1] == 0x80 && u[2] == 0x80) /* IDEOGRAPHIC SPACE */
    return 3;
  return 0;
}

/* The trimmed span of s: [*start, *start + *len). */
static void evs__trim_span(const char *s, const char **start, size_t *len) {
  size_t sp;
  while ((sp = evs_param_space_len(s)) > 0)
    s += sp;
  /* The end is after the last character that is not a space. */
  size_t end = 0;
  for (size_t i = 0; s[i];) {
    size_t l = evs_param_space_len(s + i);
    if (l == 0) {
      i++;
      end = i;
    } else {
      i += l;
    }
  }
  *start = s;
  *len = end;
}

int evs_param_trim(const char *s, char *buf, size_t cap) {
  const char *p;
  size_t n;
  evs__trim_span(s, &p, &n);
  if (n + 1 > cap)
    return UV_ENOBUFS;
  memcpy(buf, p, n);
  buf[n] = '\0';
  return 0;
}

char *evs_param_trim_dup(const char *s) {
  const char *p;
  size_t n;
  evs__trim_span(s, &p, &n);
  return n ? strndup(p, n) : NULL;
}

/* The JSON number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?. Returns 1 when s is
 * one, and sets *is_int when it has neither fraction nor exponent. */
static int evs__json_number(const char *s, int *is_int) {
  const char *p = s;
  *is_int = 1;
  if (*p == '-')
    p++;
  if (*p == '0')
    p++;
  else if (*p >= '1' && *p <= '9')
    while (*p >= '0' && *p <= '9')
      p++;
  else
    return 0;
  if (*p == '.') {
    *is_int = 0;
    if (!(*++p >= '0' && *p <= '9'))
      return 0;
    while (*p >= '0' && *p <= '9')
      p++;
  }
  if (*p == 'e' || *p == 'E') {
    *is_int = 0;
    p++;
    if (*p == '+' || *p == '-')
      p++;
    if (!(*p >= '0' && *p <= '9'))
      return 0;
    while (*p >= '0' && *p <= '9')
      p++;
  }
  return *p == '\0';
}

int evs_param_json_int64(const char *s, int64_t *out) {
  int is_int;
  char *end;
  if (!evs__json_number(s, &is_int) || !is_int)
    return UV_EINVAL;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (*end)
    return UV_EINVAL;
  if (errno == ERANGE)
    return EVS_ERANGE;
  *out = v;
  return 0;
}

int evs_param_json_float(const char *s, double *out) {
  int is_int;
  char *end;
  if (!evs__json_number(s, &is_int))
    return UV_EINVAL;
  double v = strtod(s, &end);
  if (*end)
    return UV_EINVAL;
  /* The grammar has no spelling of infinity, so an infinite result is an overflow: Go's decoder
   * refuses it (underflow to 0 is accepted). */
  if (isinf(v))
    return EVS_ERANGE;
  *out = v;
  return 0;
}

int evs_param_go_float(const char *s, double *out) {
  char *end;
  /* strconv.ParseFloat takes no surrounding space and no empty string; strtod's extras that Go
   * also accepts (inf, nan, hex floats) are fine. */
  if (*s == '\0' || evs_param_space_len(s) > 0)
    return UV_EINVAL;
  errno = 0;
  double v = strtod(s, &end);
  if (*end)
    return UV_EINVAL;
  /* strtod signals overflow as ERANGE with HUGE_VAL, Go as ErrRange with ±Inf: refused either
   * way. A spelt-out "Inf" is not an overflow (no ERANGE) and Go accepts it. */
  if (errno == ERANGE && isinf(v))
    return EVS_ERANGE;
  *out = v;
  return 0;
}

int evs_param_go_bool(const char *s, int *out) {
  static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
  static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};
  for (size_t i = 0; i < 6; i++) {
    if (strcmp(s, t[i]) == 0)
      return *out = 1, 0;
    if (strcmp(s, f[i]) == 0)
      return *out = 0, 0;
  }
  return UV_EINVAL;
}
