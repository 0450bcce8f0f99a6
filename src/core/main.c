/* evscale entry point: placeholder until the CLI lands. */
#include "evscale/log.h"
int main(void) {
  EVS_LOG_INFO("evscale");
  return 0;
}
