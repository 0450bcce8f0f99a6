/* The directory of the tests' data files (test/data): $EVS_TEST_DATA as ctest sets it, else the
 * source tree's own, so a test binary run by hand from any directory finds its files too. */
#ifndef EVSCALE_TEST_DATA_H
#define EVSCALE_TEST_DATA_H

#include <stdlib.h>

static inline const char *evs_test_data(void) {
  const char *d = getenv("EVS_TEST_DATA");
  return d && *d ? d : EVS_SOURCE_DIR "/test/data";
}

#endif
