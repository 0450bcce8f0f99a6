/* libFuzzer: kubeconfig text → parse → resolve the current context and a named one, as two
 * merged files (the input and itself) → free. Every error path must free what it built. */
#include <stddef.h>
#include <stdint.h>

#include "evscale/diag.h"
#include "evscale/kubeconfig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  evs_diag_t d;
  evs_diag_init(&d);
  evs_kubeconfig_file_t *f = NULL;
  char buf[256];
  if (evs_kubeconfig_parse((const char *)data, size, "dir/kubeconfig", &f, &d) == 0) {
    evs_kubeconfig_file_t *files[2] = {f, f};
    const char *ctx[] = {NULL, "dev", "x"};
    for (size_t i = 0; i < 3; i++) {
      evs_kubeconfig_t *kc = NULL;
      if (evs_kubeconfig_resolve(files, 2, ctx[i], &kc, &d) == 0)
        evs_kubeconfig_free(kc);
    }
    evs_kubeconfig_file_free(f);
  }
  for (size_t i = 0; i < d.n; i++)
    evs_diag_format(&d, i, buf, sizeof buf);
  evs_diag_free(&d);
  return 0;
}
