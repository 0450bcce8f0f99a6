/* libFuzzer: bytes → configuration loader (fixed empty environment) → dump, reload diff,
 * evs_config_set → free. Whatever the input, no crash, no leak, no UB. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "evscale/config.h"
#include "evscale/duration.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *devnull;
static evs_config_t *defaults;

static void exercise(evs_config_t *cfg) {
  evs_config_dump(cfg, devnull);
  evs_diag_t w;
  evs_diag_init(&w);
  evs_config_diff_reload(defaults, cfg, &w);
  evs_diag_free(&w);
  evs_diag_init(&w);
  evs_config_set(cfg, "log.level", "debug", "fuzz", &w);
  evs_diag_free(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char *envp[] = {NULL};
  if (devnull == NULL) {
    devnull = fopen("/dev/null", "w");
    evs_config_load_buffer("", 0, "defaults", envp, &defaults, NULL);
  }
  evs_config_t *cfg = NULL;
  evs_diag_t d;
  evs_diag_init(&d);
  if (evs_config_load_buffer((const char *)data, size, "fuzz.yaml", envp, &cfg, &d) == 0)
    exercise(cfg);
  char buf[512];
  for (size_t i = 0; i < d.n; i++)
    evs_diag_format(&d, i, buf, sizeof buf);
  evs_diag_free(&d);
  evs_config_free(cfg);
  /* The same bytes as a duration: the parser must refuse or accept without UB. */
  if (size < 64) {
    char s[64];
    memcpy(s, data, size);
    s[size] = '\0';
    uint64_t ms;
    if (evs_duration_parse(s, &ms) == 0) {
      char out[64];
      evs_duration_format(ms, out, sizeof out);
    }
  }
  return 0;
}
