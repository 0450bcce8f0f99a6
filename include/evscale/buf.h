/* Growable arrays: the capacity-doubling step written once.
 *
 *   if (evs_buf_reserve((void **)&v->items, &v->cap, v->len + 1, sizeof *v->items, 8) != 0)
 *     return UV_ENOMEM;
 *   v->items[v->len++] = x;
 *
 * The caller owns the array (free() it); on failure the array and its capacity are unchanged.
 */
#ifndef EVSCALE_BUF_H
#define EVSCALE_BUF_H

#include <stddef.h>

/* Makes room for at least `need` elements of `elem` bytes in *items (capacity *cap, in
 * elements), doubling from `initial` (at least 1) so appends are amortised O(1). Returns 0,
 * UV_ENOMEM, or UV_E2BIG when need * elem overflows size_t. */
int evs_buf_reserve(void **items, size_t *cap, size_t need, size_t elem, size_t initial);

#endif
