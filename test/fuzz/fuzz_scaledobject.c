/* libFuzzer: bytes -> YAML document -> ScaledObject validator -> (when valid) a few engine
 * decisions with readings derived from the input -> free. Nothing may crash, leak or trip
 * UBSan, whatever the input; every diagnostic must format. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "evscale/diag.h"
#include "evscale/engine.h"
#include "evscale/error.h"
#include "evscale/node.h"
#include "evscale/scaledobject.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Drives the engine over a short series so the parsed spec is exercised end to end. */
static void run_engine(const evs_so_t *so, const uint8_t *data, size_t size) {
  evs_engine_config_t cfg;
  evs_engine_state_t *st = NULL;
  evs_reading_t r[8];
  int32_t replicas = 0;
  if (so->n_triggers > 8 || evs_engine_state_new(so, 1000, &st) != 0)
    return;
  evs_engine_config_default(&cfg);
  cfg.max_replicas_cap = size % 3 == 0 ? 7 : 0;
  for (int step = 0; step < 16; step++) {
    int64_t now = 1000 + (int64_t)step * 7919;
    for (size_t i = 0; i < so->n_triggers; i++) {
      uint8_t b = size ? data[(step * 31 + i) % size] : 0;
      r[i] = (evs_reading_t){
          (double)(b % 64) - 4, b & 1, (b & 0xC0) == 0xC0 ? EVS_EMETRIC : 0, now, 0, NULL, 0};
    }
    evs_engine_input_t in = {r, so->n_triggers, replicas, replicas, replicas / 2, now};
    evs_decision_t d;
    if (evs_engine_decide(so, &cfg, st, &in, &d) != 0)
      break;
    if (d.write) {
      evs_engine_record_scale(so, st, replicas, d.desired, now);
      replicas = d.desired;
    }
  }
  evs_engine_state_free(st);
}

/* The same tree as an API object: unknown fields become warnings (formatted like errors). */
static void run_api_mode(const uint8_t *data, size_t size) {
  evs_doc_t *doc = NULL;
  evs_so_t *so = NULL;
  evs_diag_t d, w;
  char buf[512];
  if (evs_doc_parse_yaml((const char *)data, size, "fuzz.yaml", &doc, NULL) != 0)
    return;
  evs_diag_init(&d);
  evs_diag_init(&w);
  evs_so_parse_mode(evs_doc_root(doc), NULL, EVS_SO_API, &so, &d, &w);
  evs_so_free(so);
  for (size_t i = 0; i < w.n; i++)
    evs_diag_format(&w, i, buf, sizeof buf);
  evs_diag_free(&d);
  evs_diag_free(&w);
  evs_doc_free(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  evs_so_t *so = NULL;
  evs_diag_t d;
  char buf[512];
  evs_diag_init(&d);
  if (evs_so_parse_yaml((const char *)data, size, "fuzz.yaml", &so, &d) == 0) {
    run_engine(so, data, size);
    evs_so_free(so);
  }
  for (size_t i = 0; i < d.n; i++)
    evs_diag_format(&d, i, buf, sizeof buf);
  /* Errors come out in file order. */
  for (size_t i = 1; i < d.n; i++)
    if (d.items[i].line && d.items[i - 1].line &&
        (d.items[i].line < d.items[i - 1].line ||
         (d.items[i].line == d.items[i - 1].line && d.items[i].col < d.items[i - 1].col)))
      __builtin_trap();
  evs_diag_free(&d);
  run_api_mode(data, size);
  return 0;
}
