/* Internal to the tz module (tz.c, tzcache.c). */
#ifndef EVSCALE_TZ_INT_H
#define EVSCALE_TZ_INT_H

#include "evscale/tz.h"

/* Called by tz.c when a zone's last reference goes: the cache forgets its entry. */
void evs_tz__cache_forget(void *entry);
/* The cache entry a zone belongs to (set once by tzcache.c). */
void evs_tz__set_cache(evs_tz_t *tz, void *entry);

#endif
