/* libFuzzer target: the strict RFC 4180 reader used by `evscale simulate`, then — for inputs it
 * accepts — the whole simulate command on them (column mapping, number parsing, the replay loop
 * with engine and breaker) against a fixed two-trigger ScaledObject, bounded to 90 simulated
 * seconds. Checks the reader's contract on every input: a successful parse has n_records ×
 * n_cols fields whose text lies in the buffer; an error points inside the input; simulate exits
 * 0 or 1, never 2, on a valid command line. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "evscale/csv.h"
#include "evscale/error.h"
#include "evscale/simulate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char so_yaml[] = "apiVersion: keda.sh/v1alpha1\n"
                              "kind: ScaledObject\n"
                              "metadata: {name: fz, namespace: fz}\n"
                              "spec:\n"
                              "  scaleTargetRef: {name: fz}\n"
                              "  minReplicaCount: 0\n"
                              "  maxReplicaCount: 20\n"
                              "  cooldownPeriod: 30\n"
                              "  advanced:\n"
                              "    horizontalPodAutoscalerConfig:\n"
                              "      behavior:\n"
                              "        scaleDown: {stabilizationWindowSeconds: 5}\n"
                              "  triggers:\n"
                              "  - type: redis\n"
                              "    name: queue\n"
                              "    metadata: {address: 'r:6379', listName: q, listLength: '5'}\n"
                              "  - type: redis\n"
                              "    metadata: {address: 'r:6379', listName: q2}\n";

static char so_path[64], csv_path[64];
static FILE *devnull;

static int setup(void) {
  snprintf(so_path, sizeof so_path, "/tmp/fuzz_sim_%d.yaml", (int)getpid());
  snprintf(csv_path, sizeof csv_path, "/tmp/fuzz_sim_%d.csv", (int)getpid());
  FILE *f = fopen(so_path, "w");
  if (!f)
    return -1;
  fputs(so_yaml, f);
  fclose(f);
  devnull = fopen("/dev/null", "w");
  return devnull ? 0 : -1;
}

static void run_simulate(const uint8_t *data, size_t size) {
  static int ready = -2;
  if (ready == -2)
    ready = setup();
  if (ready != 0)
    return;
  FILE *f = fopen(csv_path, "wb");
  if (!f)
    return;
  fwrite(data, 1, size, f);
  fclose(f);
  char *argv[] = {"simulate", so_path, csv_path, "--until", "90", "--format", "json", NULL};
  int rc = evs_simulate_run(7, argv, devnull, devnull);
  if (rc != 0 && rc != 1)
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  evs_csv_t csv;
  uint32_t line = 0, col = 0;
  char err[128];
  int rc = evs_csv_parse((const char *)data, size, &csv, &line, &col, err, sizeof err);
  if (rc == 0) {
    if (csv.n_records == 0 || csv.n_cols == 0)
      abort();
    for (size_t r = 0; r < csv.n_records; r++)
      for (size_t k = 0; k < csv.n_cols; k++) {
        const char *t = evs_csv_text(&csv, r, k);
        const evs_csv_field_t *f = evs_csv_at(&csv, r, k);
        if (!t || strlen(t) > size || f->line == 0 || f->col == 0)
          abort();
      }
    evs_csv_free(&csv);
    if (size <= 2048)
      run_simulate(data, size);
  } else if (rc != EVS_EPARSE || line == 0 || col == 0 || col > size + 1) {
    abort();
  }
  return 0;
}
