/* libFuzzer target: arbitrary bytes as the body of a 2xx /api/v1/query answer, through
 * evs_prom_decode with ignoreNullValues both ways. Invariants: an error has a message and a zero
 * value; without an error there is no message; ignoreNullValues only ever turns an "empty"
 * error into value 0 (same empty_upstream flag both ways, and a body that decodes without
 * ignoreNullValues decodes to the same value with it). Seeds: real responses of Debian's
 * prometheus 2.42, captured with test/prom_harness.py (test/fuzz/corpus/fuzz_prom_response). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/prometheus.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  evs_prom_result_t strict, lax;
  int a = evs_prom_decode((const char *)data, size, 0, &strict);
  int b = evs_prom_decode((const char *)data, size, 1, &lax);
  if (a != strict.error || b != lax.error)
    abort();
  if (strict.error != 0 && (strict.msg[0] == '\0' || strict.value != 0))
    abort();
  if (strict.error == 0 && strict.msg[0] != '\0')
    abort();
  if (strict.empty_upstream != lax.empty_upstream)
    abort();
  if (strict.error == 0 &&
      (lax.error != 0 || (memcmp(&strict.value, &lax.value, sizeof lax.value) != 0)))
    abort();
  if (lax.empty_upstream && (lax.error != 0 || lax.value != 0))
    abort();
  return 0;
}
