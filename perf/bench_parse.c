/* bench_parse: time to build a document (and to load a configuration) from large inputs of
 * every shape, at 1 MiB (the ConfigMap limit) and at 4 MiB (4x the objects, the largest file
 * evscale reads), to show that the cost grows linearly with the input (issue 9, "Parsing is
 * quadratic").
 *
 *   bench_parse [reps = 5] [budget_s = 30] [max_scale = 4] [shape]
 *
 * Inputs are generated in memory. For each shape and size it prints the parse time p50/max over
 * `reps` runs (fewer when one shape takes more than budget_s seconds in all: the unfixed code
 * needs minutes for some), the result code and the number of items, for:
 *   yaml    evs_doc_parse_yaml alone;
 *   reload  evs_config_load_buffer + evs_app_check_scaled_objects: everything a reload does on
 *           the loop thread with the bytes it has read (src/core/reload.c, src/core/app.c);
 *   json    evs_doc_parse_json (jansson, then the tree), the path of API objects.
 * Times are wall (what the loop would stall) and CPU of the thread (what the code costs: on a
 * shared machine the wall time includes waiting for a core). RSS is printed at the start,
 * after each shape and at the end. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/app.h"
#include "evscale/config.h"
#include "evscale/diag.h"
#include "evscale/node.h"

#include "bench_util.h"

#define MIB (1024 * 1024)

typedef struct {
  char *p;
  size_t n, cap;
} buf_t;

static void put(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(buf_t *b, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    if ((size_t)w < b->cap - b->n) {
      b->n += (size_t)w;
      return;
    }
    b->cap = b->cap * 2 + (size_t)w + 1;
    b->p = realloc(b->p, b->cap);
    if (b->p == NULL)
      abort();
  }
}

/* ---- shapes: each generator writes about `target` bytes and returns the item count ---- */

typedef size_t (*gen_fn)(buf_t *b, size_t target, int json);

/* One mapping with many keys (the "80,000 keys in one mapping"). */
static size_t gen_keys(buf_t *b, size_t target, int json) {
  size_t i = 0;
  put(b, json ? "{" : "");
  while (b->n < target) {
    if (json)
      put(b, "%s\"key%07zu\":\"v\"", i ? "," : "", i);
    else
      put(b, "key%07zu: v\n", i);
    i++;
  }
  put(b, json ? "}" : "");
  return i;
}

static size_t gen_seq(buf_t *b, size_t target, int json) {
  size_t i = 0;
  put(b, json ? "[" : "");
  while (b->n < target) {
    if (json)
      put(b, "%s\"item%zu\"", i ? "," : "", i);
    else
      put(b, "- item%zu\n", i);
    i++;
  }
  put(b, json ? "]" : "");
  return i;
}

/* "[[[[...": must be refused quickly, without exhausting the stack. */
static size_t gen_deep(buf_t *b, size_t target, int json) {
  (void)json;
  b->p = realloc(b->p, target + 1);
  memset(b->p, '[', target);
  b->p[target] = '\0';
  b->n = b->cap = target;
  b->cap++;
  return target;
}

/* Many aliases to one anchor. */
static size_t gen_aliases(buf_t *b, size_t target, int json) {
  size_t i = 0;
  (void)json;
  put(b, "base: &base {x: 1}\nlist:\n");
  while (b->n < target) {
    put(b, "- *base\n");
    i++;
  }
  return i;
}

/* Many anchors, then one alias to each, oldest first (the old lookup scanned from the newest). */
static size_t gen_anchors(buf_t *b, size_t target, int json) {
  size_t n = 0;
  (void)json;
  put(b, "defs:\n");
  while (b->n < target / 2) {
    put(b, "- &a%zu x\n", n);
    n++;
  }
  put(b, "uses:\n");
  for (size_t i = 0; i < n; i++)
    put(b, "- *a%zu\n", i);
  return n;
}

/* Realistic ScaledObjects under scaled_objects (YAML) or a Kubernetes list (JSON). */
static size_t gen_sos(buf_t *b, size_t target, int json) {
  size_t i = 0;
  put(b, json ? "{\"apiVersion\":\"keda.sh/v1alpha1\",\"kind\":\"ScaledObjectList\",\"items\":["
              : "scaled_objects:\n");
  while (b->n < target) {
    if (json)
      put(b,
          "%s{\"apiVersion\":\"keda.sh/v1alpha1\",\"kind\":\"ScaledObject\",\"metadata\":{\"name\":"
          "\"worker-%zu\",\"namespace\":\"ns-%zu\"},\"spec\":{\"scaleTargetRef\":{\"name\":"
          "\"worker-%zu\"},\"pollingInterval\":15,\"minReplicaCount\":1,\"maxReplicaCount\":100,"
          "\"triggers\":[{\"type\":\"redis\",\"metadata\":{\"address\":\"redis.redis.svc:6379\","
          "\"listName\":\"jobs-%zu\",\"listLength\":\"20\"}}]}}",
          i ? "," : "", i, i % 50, i, i);
    else
      put(b,
          "- apiVersion: keda.sh/v1alpha1\n"
          "  kind: ScaledObject\n"
          "  metadata:\n"
          "    name: worker-%zu\n"
          "    namespace: ns-%zu\n"
          "  spec:\n"
          "    scaleTargetRef:\n"
          "      name: worker-%zu\n"
          "    pollingInterval: 15\n"
          "    minReplicaCount: 1\n"
          "    maxReplicaCount: 100\n"
          "    triggers:\n"
          "    - type: redis\n"
          "      metadata:\n"
          "        address: redis.redis.svc:6379\n"
          "        listName: jobs-%zu\n"
          "        listLength: \"20\"\n",
          i, i % 50, i, i);
    i++;
  }
  put(b, json ? "]}" : "");
  return i;
}

/* One ScaledObject with many named triggers (the validator checks trigger names are unique). */
static size_t gen_triggers(buf_t *b, size_t target, int json) {
  size_t i = 0;
  (void)json;
  put(b, "scaled_objects:\n"
         "- apiVersion: keda.sh/v1alpha1\n"
         "  kind: ScaledObject\n"
         "  metadata: {name: many, namespace: default}\n"
         "  spec:\n"
         "    scaleTargetRef: {name: many}\n"
         "    triggers:\n");
  while (b->n < target) {
    put(b, "    - {type: redis, name: t%zu, metadata: {address: 'r:6379', listName: l%zu}}\n", i,
        i);
    i++;
  }
  return i;
}

/* A few long strings (64 KiB each). */
static size_t gen_longstr(buf_t *b, size_t target, int json) {
  size_t i = 0;
  char *s = malloc(65537);
  memset(s, 'x', 65536);
  s[65536] = '\0';
  put(b, json ? "{" : "");
  while (b->n < target) {
    if (json)
      put(b, "%s\"s%zu\":\"%s\"", i ? "," : "", i, s);
    else
      put(b, "s%zu: \"%s\"\n", i, s);
    i++;
  }
  put(b, json ? "}" : "");
  free(s);
  return i;
}

typedef struct {
  const char *name;
  gen_fn gen;
  int json; /* has a JSON form */
} shape_t;

static const shape_t shapes[] = {
    {"keys", gen_keys, 1},       {"seq", gen_seq, 1},           {"deep", gen_deep, 1},
    {"aliases", gen_aliases, 0}, {"anchors", gen_anchors, 0},   {"scaledobjects", gen_sos, 1},
    {"longstr", gen_longstr, 1}, {"triggers", gen_triggers, 0},
};

/* ---- measuring ---- */

static int64_t thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

enum { M_YAML, M_RELOAD, M_JSON };
static const char *const mode_names[] = {"yaml", "reload", "json"};

static int run_once(int mode, const buf_t *b, size_t *out_items) {
  evs_diag_t d;
  evs_diag_init(&d);
  int rc;
  *out_items = 0;
  if (mode == M_RELOAD) {
    evs_config_t *cfg = NULL;
    char *envp[] = {NULL};
    rc = evs_config_load_buffer(b->p, b->n, "bench.yaml", envp, &cfg, &d);
    if (rc == 0) {
      *out_items = cfg->n_scaled_objects;
      rc = evs_app_check_scaled_objects(cfg, &d);
    }
    evs_config_free(cfg);
  } else {
    evs_doc_t *doc = NULL;
    rc = mode == M_YAML ? evs_doc_parse_yaml(b->p, b->n, "bench.yaml", &doc, &d)
                        : evs_doc_parse_json(b->p, b->n, "bench.json", &doc, &d);
    const evs_node_t *root = evs_doc_root(doc);
    *out_items = root && !evs_node_is_scalar(root) ? root->len : 0;
    evs_doc_free(doc);
  }
  evs_diag_free(&d);
  return rc;
}

static void measure(const shape_t *s, int scale, int mode, int reps, double budget_s) {
  buf_t b = {malloc(4096), 0, 4096};
  size_t gen_items = s->gen(&b, (size_t)scale * MIB, mode == M_JSON);
  uint64_t *lat = calloc((size_t)reps, sizeof *lat), *cpu = calloc((size_t)reps, sizeof *cpu);
  int rc = 0, done = 0;
  size_t items = 0;
  int64_t start = now_ns();
  for (; done < reps; done++) {
    if (done > 0 && (double)(now_ns() - start) / 1e9 > budget_s)
      break;
    int64_t t0 = now_ns(), c0 = thread_cpu_ns();
    rc = run_once(mode, &b, &items);
    lat[done] = (uint64_t)(now_ns() - t0);
    cpu[done] = (uint64_t)(thread_cpu_ns() - c0);
  }
  qsort(lat, (size_t)done, sizeof *lat, cmp_u64);
  qsort(cpu, (size_t)done, sizeof *cpu, cmp_u64);
  printf("%-13s %-6s %dx %5.2f MiB %7zu %7zu %6d %4d %9.1f %9.1f %9.1f %9.1f %7.1f\n", s->name,
         mode_names[mode], scale, (double)b.n / MIB, gen_items, items, rc, done,
         (double)lat[done / 2] / 1e6, (double)lat[done - 1] / 1e6, (double)cpu[done / 2] / 1e6,
         (double)cpu[done - 1] / 1e6, (double)rss_bytes() / MIB);
  fflush(stdout);
  free(lat);
  free(cpu);
  free(b.p);
}

int main(int argc, char **argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 5;
  double budget = argc > 2 ? atof(argv[2]) : 30;
  int max_scale = argc > 3 ? atoi(argv[3]) : 4;
  const char *only = argc > 4 ? argv[4] : NULL;
  if (reps < 1)
    reps = 1;
  long rss0 = rss_bytes();
  printf("bench_parse: reps %d, budget %.0f s per shape; RSS at start %.1f MiB\n", reps, budget,
         (double)rss0 / MIB);
  printf("%-13s %-6s %-2s %9s %7s %7s %6s %4s %9s %9s %9s %9s %7s\n", "shape", "path", "sz",
         "bytes", "items", "result", "rc", "reps", "wall p50", "wall max", "cpu p50", "cpu max",
         "RSS MiB");
  printf("(items: generated; result: the root's length, or ScaledObjects loaded; times in ms)\n");
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    if (only == NULL || strcmp(only, shapes[i].name) == 0)
      for (int scale = 1; scale <= max_scale; scale *= 4)
        for (int mode = M_YAML; mode <= M_JSON; mode++)
          if (mode != M_JSON || shapes[i].json)
            measure(&shapes[i], scale, mode, reps, budget);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("RSS at end %.1f MiB (start %.1f MiB); peak %ld MiB\n", (double)rss_bytes() / MIB,
         (double)rss0 / MIB, ru.ru_maxrss / 1024);
  return 0;
}
