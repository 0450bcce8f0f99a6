#include "evscale/buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <uv.h>

int evs_buf_reserve(void **items, size_t *cap, size_t need, size_t elem, size_t initial) {
  if (need <= *cap)
    return 0;
  if (elem == 0)
    return UV_EINVAL;
  size_t n = *cap ? *cap : (initial ? initial : 1);
  while (n < need) {
    if (n > SIZE_MAX / 2)
      return UV_E2BIG;
    n *= 2;
  }
  if (n > SIZE_MAX / elem)
    return UV_E2BIG;
  void *p = realloc(*items, n * elem);
  if (p == NULL)
    return UV_ENOMEM;
  *items = p;
  *cap = n;
  return 0;
}
