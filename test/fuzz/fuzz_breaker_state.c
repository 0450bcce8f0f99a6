/* libFuzzer target: the circuit breaker's annotation decoder (its value comes from the API), and
 * decisions on whatever state it accepts. Whatever decodes must re-encode to the same text and
 * survive a few decisions. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/breaker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  evs_breaker_t st;
  if (evs_breaker_decode((const char *)data, size, &st) != 0)
    return 0;
  char buf[EVS_BREAKER_ENCODED_MAX];
  int n = evs_breaker_encode(&st, buf, sizeof buf);
  if (n <= 0 || (size_t)n != size || memcmp(buf, data, size) != 0)
    abort(); /* the encoding is canonical: decode accepts exactly what encode writes */
  evs_breaker_config_t cfg;
  evs_breaker_config_default(&cfg);
  int64_t now = st.last_write_ms + 1;
  int r = 3, next;
  for (int i = 0; i < 8; i++) {
    evs_breaker_verdict_t v = evs_breaker_decide(&st, &cfg, r, (i % 2) ? 1 : 6, now, &next);
    if (v == EVS_BREAKER_WRITE || v == EVS_BREAKER_CLOSE)
      r = (i % 2) ? 1 : 6;
    now += (i * 7919) % 70000;
  }
  evs_breaker_reset(&st, now);
  n = evs_breaker_encode(&st, buf, sizeof buf);
  if (n <= 0 || n >= (int)sizeof buf || evs_breaker_decode(buf, (size_t)n, &st) != 0)
    abort();
  return 0;
}
