/* libFuzzer target: the scalingModifiers formula parser and evaluator. Input: a formula (first
 * line) — parsed, and when it parses, evaluated with values derived from the remaining bytes,
 * some variables marked failed, so `??` and nil paths run too. Must never crash, leak or hit UB. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/formula.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 4096)
    return 0;
  const uint8_t *nl = memchr(data, '\n', size);
  size_t flen = nl ? (size_t)(nl - data) : size;
  char *src = malloc(flen + 1);
  if (!src)
    return 0;
  memcpy(src, data, flen);
  src[flen] = '\0';
  evs_formula_t *f;
  size_t col;
  char err[128];
  if (evs_formula_parse(src, &f, &col, err, sizeof err) == 0) {
    size_t n = evs_formula_var_count(f);
    double *vars = calloc(n + 1, sizeof *vars);
    int *ok = calloc(n + 1, sizeof *ok);
    const uint8_t *rest = nl ? nl + 1 : data + size;
    size_t rlen = (size_t)(data + size - rest);
    static const double specials[] = {0, -1, 1, 0.5, 1e308, -1e308, 5e-324, 1.0 / 0.0};
    for (size_t i = 0; vars && ok && i < n; i++) {
      uint8_t b = i < rlen ? rest[i] : (uint8_t)i;
      vars[i] = (b & 0x80) ? specials[b & 7] : (double)(b & 0x3f) - 16;
      ok[i] = (b & 0x40) == 0;
      (void)evs_formula_var_name(f, i);
    }
    double out;
    int is_nil;
    if (vars && ok) {
      evs_formula_eval_ex(f, vars, ok, &out, &is_nil, err, sizeof err);
      evs_formula_eval(f, vars, NULL, &out);
    }
    free(vars);
    free(ok);
    evs_formula_free(f);
  } else if (col > flen + 1) {
    abort(); /* the column must point into the formula (or just past its end) */
  }
  free(src);
  return 0;
}
