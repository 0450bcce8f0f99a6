/* bench_scaledobjects: what check-config (and a reload) costs for a file of many ScaledObjects.
 *
 *   bench_scaledobjects [max objects = 8000] [triggers per object = 2]
 *
 * Builds in memory a configuration of n ScaledObjects (n = 1000, 2000, 4000, ... up to max; 7
 * namespaces; one redis and one prometheus trigger each, or the count given) and times, in CPU
 * seconds, evs_config_load_buffer (YAML, structure, duplicate namespace/name) plus
 * evs_app_check_scaled_objects (every object through the ScaledObject validator), as
 * `evscale check-config` does. Also one object with 4000..16000 named triggers (the per-object
 * duplicate-name check). Printed per size: CPU seconds, microseconds per object, and the ratio to
 * the previous size (2.0 for a doubling is linear, 4.0 quadratic). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/app.h"
#include "evscale/config.h"
#include "evscale/diag.h"
#include "evscale/scaledobject.h"

#include "bench_util.h"

static char *objects(size_t n, size_t triggers, size_t *len) {
  size_t cap = 64 + n * (300 + triggers * 120), at = 0;
  char *buf = malloc(cap);
  if (buf == NULL)
    return NULL;
  at += (size_t)snprintf(buf, cap, "scaled_objects:\n");
  for (size_t i = 0; i < n; i++) {
    at += (size_t)snprintf(buf + at, cap - at,
                           "- apiVersion: keda.sh/v1alpha1\n"
                           "  kind: ScaledObject\n"
                           "  metadata: {name: worker-%zu, namespace: ns-%zu}\n"
                           "  spec:\n"
                           "    scaleTargetRef: {name: worker-%zu}\n"
                           "    maxReplicaCount: 20\n"
                           "    triggers:\n",
                           i, i % 7, i);
    for (size_t t = 0; t < triggers; t++)
      at += (size_t)snprintf(
          buf + at, cap - at,
          t % 2
              ? "    - {type: prometheus, name: p%zu, metadata: {serverAddress: \"http://p:9090\", "
                "query: \"sum(x)\", threshold: \"10\"}}\n"
              : "    - {type: redis, name: r%zu, metadata: {address: \"redis:6379\", "
                "listName: jobs, listLength: \"5\"}}\n",
          t);
  }
  *len = at;
  return buf;
}

static char *one_object(size_t triggers, size_t *len) {
  size_t cap = 256 + triggers * 64, at = 0;
  char *buf = malloc(cap);
  if (buf == NULL)
    return NULL;
  at += (size_t)snprintf(buf, cap,
                         "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: w}\n"
                         "spec:\n  scaleTargetRef: {name: w}\n  triggers:\n");
  for (size_t i = 0; i < triggers; i++)
    at += (size_t)snprintf(buf + at, cap - at,
                           "  - {type: redis, name: t%zu, metadata: {listName: l}}\n", i);
  *len = at;
  return buf;
}

static double check_file(const char *buf, size_t len) {
  char *envp[] = {NULL};
  evs_config_t *cfg = NULL;
  evs_diag_t d;
  evs_diag_init(&d);
  double t0 = cpu_seconds();
  int rc = evs_config_load_buffer(buf, len, "bench.yaml", envp, &cfg, &d);
  if (rc == 0)
    rc = evs_app_check_scaled_objects(cfg, &d);
  double t = cpu_seconds() - t0;
  if (rc != 0 || d.n)
    fprintf(stderr, "unexpected: rc %d, %zu diagnostics\n", rc, d.n);
  evs_config_free(cfg);
  evs_diag_free(&d);
  return t;
}

static double parse_one(const char *buf, size_t len) {
  evs_so_t *so = NULL;
  evs_diag_t d;
  evs_diag_init(&d);
  double t0 = cpu_seconds();
  int rc = evs_so_parse_yaml(buf, len, "bench.yaml", &so, &d);
  double t = cpu_seconds() - t0;
  if (rc != 0)
    fprintf(stderr, "unexpected: rc %d, %zu diagnostics\n", rc, d.n);
  evs_so_free(so);
  evs_diag_free(&d);
  return t;
}

/* The best of three runs: the least disturbed. */
static double best(double (*run)(const char *, size_t), const char *buf, size_t len) {
  double b = 1e9;
  for (int r = 0; r < 3; r++) {
    double t = run(buf, len);
    b = t < b ? t : b;
  }
  return b;
}

int main(int argc, char **argv) {
  size_t max = argc > 1 ? strtoul(argv[1], NULL, 10) : 8000;
  size_t triggers = argc > 2 ? strtoul(argv[2], NULL, 10) : 2;
  double prev = 0;
  printf("| objects | file | CPU (best of 3) | per object | x previous |\n|---|---|---|---|---|\n");
  for (size_t n = 1000; n <= max; n *= 2) {
    size_t len;
    char *buf = objects(n, triggers, &len);
    if (buf == NULL)
      return 1;
    double t = best(check_file, buf, len);
    char ratio[16] = "-";
    if (prev > 0)
      snprintf(ratio, sizeof ratio, "%.1f", t / prev);
    printf("| %zu | %.1f MiB | %.3f s | %.1f us | %s |\n", n, len / 1048576.0, t, t / n * 1e6,
           ratio);
    prev = t;
    free(buf);
  }
  prev = 0;
  printf("\n| named triggers in one object | CPU (best of 3) | x previous |\n|---|---|---|\n");
  for (size_t n = 4000; n <= 16000; n *= 2) {
    size_t len;
    char *buf = one_object(n, &len);
    if (buf == NULL)
      return 1;
    double t = best(parse_one, buf, len);
    char ratio[16] = "-";
    if (prev > 0)
      snprintf(ratio, sizeof ratio, "%.1f", t / prev);
    printf("| %zu | %.3f s | %s |\n", n, t, ratio);
    prev = t;
    free(buf);
  }
  return 0;
}
