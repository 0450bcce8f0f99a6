/* libFuzzer target: cron expression parser and Next, plus KEDA's window rule, on any input.
 * The input is the spec itself (NUL-terminated copy). Parsed specs are evaluated in UTC at a few
 * instants; Next must stay within its five-year horizon and return a time after `now`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/cron.h"
#include "evscale/cronexpr.h"
#include "evscale/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 4096)
    return 0;
  char *spec = malloc(size + 1);
  if (spec == NULL)
    return 0;
  memcpy(spec, data, size);
  spec[size] = 0;
  evs_cronexpr_t e;
  char err[256];
  if (evs_cronexpr_parse(spec, &e, err, sizeof err) == 0) {
    static const int64_t nows[] = {1795478400123LL, 951782400000LL, 4102444799999LL};
    for (size_t i = 0; i < sizeof nows / sizeof nows[0]; i++) {
      int64_t next;
      if (evs_cronexpr_next(&e, evs_tz_utc(), nows[i], &next) == 0 &&
          (next * 1000 <= nows[i] || next > nows[i] / 1000 + 6 * 366 * 86400LL))
        abort();
    }
    evs_cron_window_t w;
    evs_cron_window(&e, evs_tz_utc(), &e, evs_tz_utc(), nows[0], &w);
  } else if (strlen(err) == 0) {
    abort(); /* every rejection explains itself */
  }
  free(spec);
  return 0;
}
