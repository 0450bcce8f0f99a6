/* The index of zone names the system's tz database offers; see evs_tz_index_load in tz.h. */
#include "evscale/error.h"
#include "evscale/buf.h"
#include "evscale/tz.h"

#include <ftw.h>
#include <stdlib.h>
#include <string.h>

/* Read-only after start-up, like the tz database itself: one process-wide sorted array. */
static char **evs__tz_names;
static size_t evs__tz_n, evs__tz_cap;
static size_t evs__tz_root_len;
static int evs__tz_oom;

static int evs__tz_collect(const char *path, const struct stat *st, int type, struct FTW *ftw) {
  (void)st;
  (void)ftw;
  /* Regular files and symbolic links (the tz database's aliases, such as Cuba -> America/Havana)
   * are names LoadLocation accepts; a file that is not TZif fails later, when it is loaded. */
  if ((type != FTW_F && type != FTW_SL) || strlen(path) <= evs__tz_root_len + 1)
    return 0;
  if (evs_buf_reserve((void **)&evs__tz_names, &evs__tz_cap, evs__tz_n + 1, sizeof *evs__tz_names,
                      1024) != 0) {
    evs__tz_oom = 1;
    return 1;
  }
  evs__tz_names[evs__tz_n] = strdup(path + evs__tz_root_len + 1);
  if (evs__tz_names[evs__tz_n] == NULL) {
    evs__tz_oom = 1;
    return 1;
  }
  evs__tz_n++;
  return 0;
}

static int evs__tz_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

void evs_tz_index_free(void) {
  for (size_t i = 0; i < evs__tz_n; i++)
    free(evs__tz_names[i]);
  free(evs__tz_names);
  evs__tz_names = NULL;
  evs__tz_n = evs__tz_cap = 0;
}

int evs_tz_index_load(const char *tzdir) {
  evs_tz_index_free();
  if (tzdir == NULL)
    tzdir = getenv("TZDIR");
  if (tzdir == NULL || *tzdir == '\0')
    tzdir = "/usr/share/zoneinfo";
  size_t len = strlen(tzdir);
  while (len > 1 && tzdir[len - 1] == '/')
    len--;
  char *root = strndup(tzdir, len);
  if (root == NULL)
    return UV_ENOMEM;
  evs__tz_root_len = len;
  evs__tz_oom = 0;
  /* FTW_PHYS: list links as links (not followed), so Debian's posix -> . loop is no loop. */
  int rc = nftw(root, evs__tz_collect, 16, FTW_PHYS);
  free(root);
  if (evs__tz_oom || rc != 0 || evs__tz_n == 0) {
    evs_tz_index_free();
    return evs__tz_oom ? UV_ENOMEM : UV_ENOENT;
  }
  qsort(evs__tz_names, evs__tz_n, sizeof *evs__tz_names, evs__tz_cmp);
  return 0;
}

int evs_tz_index_has(const char *name) {
  /* Built in, as in evs_tz_load: no file needed. */
  if (*name == '\0' || strcmp(name, "UTC") == 0 || strcmp(name, "Local") == 0)
    return 1;
  if (evs__tz_names == NULL)
    return EVS_ESTATE;
  return bsearch(&name, evs__tz_names, evs__tz_n, sizeof *evs__tz_names, evs__tz_cmp) != NULL;
}
