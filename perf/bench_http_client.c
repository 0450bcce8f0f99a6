/* Network benchmark of evscale's own HTTP client (evs_http_*) against the real local
 * kube-apiserver (TLS, bearer token):
 *
 *   1. scale PATCH latency on one kept-alive TLS connection: N sequential merge-PATCHes of
 *      deployments/NAME/scale, alternating replicas 2/1 so every PATCH is a real write. Client
 *      time (uv_hrtime from evs_http_request to on_done) next to the API server's own time from
 *      the audit log (stageTimestamp - requestReceivedTimestamp of the request's ResponseComplete
 *      event, matched by the Audit-Id response header and filtered by namespace + verb patch);
 *      their per-request difference is what our client, TLS and loopback add. Also requests/s
 *      and process CPU time per request (getrusage).
 *   1b. a burst of K PATCHes to K Deployments at once on a pool of P connections (default 4, the
 *      client's default; opened beforehand): what evscale does when many ScaledObjects change in
 *      one tick. With -p 1 it shows what the pool's queue adds.
 *   2. connect cost: C times a new client (so a new TCP + TLS handshake) + GET /version, next to
 *      the same GET on a kept-alive connection.
 *   3. heap per kept-alive TLS connection: M concurrent GET /version with
 *      max_conns_per_host = M, mallinfo2() before and after.
 *
 *   bench_http_client [-n 500] [-w 10] [-b 40] [-p 4] [-c 50] [-m 50]
 *
 * The control plane: KUBE_API_URL, KUBE_CA, KUBE_TOKEN, KUBE_AUDIT_LOG from the environment, or
 * else the file named by EVS_CP_ENV, or else ~/.cache/evscale/cp-shared/env (the shared control
 * plane of test/e2e/evstest.py; perf/bench_net.sh starts it when needed).
 *
 * Kubernetes shapes, read from kubernetes/kubernetes (the local server is v1.20.2):
 * - Deployment (apps/v1: spec.replicas, spec.selector, spec.template) from
 *   staging/src/k8s.io/api/apps/v1/types.go @ 0122c43a017029d0572474da5a6382e1463f9710;
 *   Scale (autoscaling/v1: spec.replicas) from staging/src/k8s.io/api/autoscaling/v1/types.go
 *   @ 0226316d6a24ddc42701b5f874eda5b729648ca7; the merge-patch content type as in
 *   test/unit/test_kube_http.c (handlers/patch.go at v1.20.2, commit
 *   faecb196815e248d3ecfb03c680a4507229c2a56).
 * - Audit events (auditID, stage "ResponseComplete", verb, objectRef.namespace,
 *   requestReceivedTimestamp, stageTimestamp) from
 *   staging/src/k8s.io/apiserver/pkg/apis/audit/v1/types.go @
 *   0a40c4e8a5678c0e8f4d01291875b754b0fc76fa; the timestamps are metav1.MicroTime, formatted
 *   RFC3339Micro "2006-01-02T15:04:05.000000Z07:00" (apimachinery/pkg/apis/meta/v1/micro_time.go);
 *   the response header HeaderAuditID = "Audit-ID" (apiserver/pkg/apis/audit/types.go). */
#include <getopt.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "evscale/error.h"
#include "evscale/http_client.h"

#define AUDIT_ID_MAX 64

typedef struct {
  char url[256], ca[512], token[256], audit[512];
  char auth[300];
  evs_tls_config_t *tls;
  unsigned burst_conns; /* max_conns_per_host of the burst (-p; 4, the client's default) */
  uv_loop_t loop;
} bench_t;

/* One request's outcome. */
typedef struct {
  int done, err, status;
  int want_body;
  uint64_t t0, t1; /* uv_hrtime at evs_http_request and at on_done */
  char audit_id[AUDIT_ID_MAX];
  char *body;
} call_t;

typedef struct {
  size_t n;
  double p50, p95, p99, max, mean;
} stats_t;

/* --- figures --- */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Nearest-rank percentiles (every figure is an observed value), as perf/bench_scale_patch.py. */
static double rank(const double *sorted, size_t n, double p) {
  size_t r = (size_t)((p * (double)n + 99.0) / 100.0);
  if (r < 1)
    r = 1;
  return sorted[(r > n ? n : r) - 1];
}

static stats_t stats(double *v, size_t n) {
  stats_t s = {.n = n};
  if (n == 0)
    return s;
  qsort(v, n, sizeof *v, cmp_double);
  double sum = 0;
  for (size_t i = 0; i < n; i++)
    sum += v[i];
  s.p50 = rank(v, n, 50);
  s.p95 = rank(v, n, 95);
  s.p99 = rank(v, n, 99);
  s.max = v[n - 1];
  s.mean = sum / (double)n;
  return s;
}

static void print_row(const char *label, stats_t s) {
  printf("| %s | %.2f ms | %.2f ms | %.2f ms | %.2f ms | %.2f ms | %zu |\n", label, s.p50, s.p95,
         s.p99, s.max, s.mean, s.n);
}

static void print_table_head(void) {
  printf("| measured | p50 | p95 | p99 | max | mean | n |\n|---|---|---|---|---|---|---|\n");
}

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Heap in use: the main arena plus mmapped chunks. Everything here runs on the main thread (the
 * URL is an IP literal, so no getaddrinfo in the thread pool), so the main arena is the heap. */
static size_t heap_in_use(void) {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

/* --- control plane discovery --- */

static void env_set(bench_t *b, const char *k, const char *v) {
  struct {
    const char *name;
    char *dst;
    size_t cap;
  } map[] = {{"KUBE_API_URL", b->url, sizeof b->url},
             {"KUBE_CA", b->ca, sizeof b->ca},
             {"KUBE_TOKEN", b->token, sizeof b->token},
             {"KUBE_AUDIT_LOG", b->audit, sizeof b->audit}};
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
    if (strcmp(k, map[i].name) == 0 && map[i].dst[0] == '\0')
      snprintf(map[i].dst, map[i].cap, "%.*s", (int)strcspn(v, "\r\n"), v);
}

static int find_controlplane(bench_t *b) {
  const char *names[] = {"KUBE_API_URL", "KUBE_CA", "KUBE_TOKEN", "KUBE_AUDIT_LOG"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (getenv(names[i]) != NULL)
      env_set(b, names[i], getenv(names[i]));
  char path[600];
  if (getenv("EVS_CP_ENV") != NULL)
    snprintf(path, sizeof path, "%s", getenv("EVS_CP_ENV"));
  else
    snprintf(path, sizeof path, "%s/.cache/evscale/cp-shared/env", getenv("HOME"));
  FILE *f = b->url[0] == '\0' || b->audit[0] == '\0' ? fopen(path, "r") : NULL;
  char line[1024];
  while (f != NULL && fgets(line, sizeof line, f) != NULL) {
    char *eq = strchr(line, '=');
    if (eq != NULL) {
      *eq = '\0';
      env_set(b, line, eq + 1);
    }
  }
  if (f != NULL)
    fclose(f);
  if (b->url[0] == '\0' || b->ca[0] == '\0' || b->token[0] == '\0' || b->audit[0] == '\0') {
    fprintf(stderr,
            "no control plane: set KUBE_API_URL, KUBE_CA, KUBE_TOKEN, KUBE_AUDIT_LOG or "
            "write %s (perf/bench_net.sh does)\n",
            path);
    return -1;
  }
  snprintf(b->auth, sizeof b->auth, "Bearer %s", b->token);
  return 0;
}

/* --- requests --- */

static void on_done(evs_http_req_t *req, int err, const evs_http_response_t *resp, void *arg) {
  (void)req;
  call_t *c = arg;
  c->t1 = uv_hrtime();
  c->done = 1;
  c->err = err;
  if (resp == NULL)
    return;
  c->status = resp->status;
  const char *id = evs_http_response_header(resp, "Audit-Id");
  snprintf(c->audit_id, sizeof c->audit_id, "%s", id != NULL ? id : "");
  if (c->want_body && resp->body != NULL)
    c->body = strndup(resp->body, resp->body_len);
}

static int start_call(bench_t *b, evs_http_client_t *cl, const char *method, const char *path,
                      const char *body, const char *ctype, call_t *c) {
  char url[1024];
  snprintf(url, sizeof url, "%s%s", b->url, path);
  evs_http_header_t hs[] = {{"Authorization", b->auth},
                            {"Accept", "application/json"},
                            {"Content-Type", ctype != NULL ? ctype : "application/json"}};
  evs_http_request_opts_t o = {.method = method,
                               .url = url,
                               .headers = hs,
                               .nheaders = body != NULL ? 3 : 2,
                               .body = body,
                               .body_len = body != NULL ? strlen(body) : 0,
                               .tls = b->tls,
                               .on_done = on_done,
                               .arg = c};
  c->done = 0;
  c->t0 = uv_hrtime();
  int rc = evs_http_request(cl, &o, NULL);
  if (rc != 0) {
    fprintf(stderr, "%s %s: %s\n", method, path, evs_strerror(rc));
    c->done = 1;
    c->err = rc;
  }
  return rc;
}

/* Runs the loop until every call is done. Each one's on_done is guaranteed (request timeout). */
static void wait_calls(bench_t *b, call_t *calls, size_t n) {
  for (size_t i = 0; i < n; i++)
    while (!calls[i].done)
      uv_run(&b->loop, UV_RUN_ONCE);
}

/* A request that must answer `want`; 0 or -1 (said on stderr). */
static int call(bench_t *b, evs_http_client_t *cl, const char *method, const char *path,
                const char *body, const char *ctype, int want, call_t *c) {
  if (start_call(b, cl, method, path, body, ctype, c) != 0)
    return -1;
  wait_calls(b, c, 1);
  if (c->err == 0 && c->status == want)
    return 0;
  fprintf(stderr, "%s %s: %s, status %d (want %d) %.300s\n", method, path,
          c->err ? evs_strerror(c->err) : "ok", c->status, want, c->body ? c->body : "");
  return -1;
}

static double call_ms(const call_t *c) { return (double)(c->t1 - c->t0) / 1e6; }

static void set_flag(void *arg) { *(int *)arg = 1; }

static void client_close(bench_t *b, evs_http_client_t *cl) {
  int closed = 0;
  evs_http_client_close(cl, set_flag, &closed);
  while (!closed)
    uv_run(&b->loop, UV_RUN_ONCE);
  /* The client frees itself right after calling back: one more turn, so heap figures taken
   * after this do not count it. */
  uv_run(&b->loop, UV_RUN_NOWAIT);
}

static evs_http_client_t *client_new(bench_t *b, unsigned max_conns) {
  evs_http_client_options_t o = {.max_conns_per_host = max_conns,
                                 .connect_timeout_ms = 10000,
                                 .request_timeout_ms = 30000,
                                 .idle_conn_timeout_ms = 300000,
                                 .max_response_bytes = 16u << 20};
  evs_http_client_t *cl = NULL;
  int rc = evs_http_client_new(&b->loop, &o, &cl);
  if (rc != 0) {
    fprintf(stderr, "evs_http_client_new: %s\n", evs_strerror(rc));
    exit(1);
  }
  return cl;
}

/* --- setup and cleanup of the namespace and the Deployment --- */

static int create_namespace(bench_t *b, evs_http_client_t *cl, const char *ns) {
  char body[256];
  call_t c = {.want_body = 1};
  snprintf(body, sizeof body,
           "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"%s\"}}", ns);
  int rc = call(b, cl, "POST", "/api/v1/namespaces", body, NULL, 201, &c);
  free(c.body);
  return rc;
}

/* A Deployment with 1 replica whose pods never run (no scheduler, an unpullable image): all the
 * scale subresource needs. */
static int create_deployment(bench_t *b, evs_http_client_t *cl, const char *ns, const char *name) {
  char body[1024], path[256];
  snprintf(body, sizeof body,
           "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\","
           "\"metadata\":{\"name\":\"%s\",\"namespace\":\"%s\"},"
           "\"spec\":{\"replicas\":1,\"selector\":{\"matchLabels\":{\"app\":\"%s\"}},"
           "\"template\":{\"metadata\":{\"labels\":{\"app\":\"%s\"}},"
           "\"spec\":{\"containers\":[{\"name\":\"c\",\"image\":\"registry.invalid/none:1\"}]}}}}",
           name, ns, name, name);
  snprintf(path, sizeof path, "/apis/apps/v1/namespaces/%s/deployments", ns);
  call_t c = {.want_body = 1};
  int rc = call(b, cl, "POST", path, body, NULL, 201, &c);
  free(c.body);
  return rc;
}

static void delete_namespace(bench_t *b, evs_http_client_t *cl, const char *ns) {
  char path[256];
  snprintf(path, sizeof path, "/api/v1/namespaces/%s", ns);
  call_t c = {.want_body = 1};
  /* The namespace controller finishes the deletion in the background; 200 is the answer. */
  if (call(b, cl, "DELETE", path, NULL, NULL, 200, &c) != 0)
    fprintf(stderr, "warning: namespace %s not deleted\n", ns);
  free(c.body);
}

/* GET .../scale; the replicas it reports, or -1. */
static int scale_replicas(bench_t *b, evs_http_client_t *cl, const char *ns) {
  char path[256];
  snprintf(path, sizeof path, "/apis/apps/v1/namespaces/%s/deployments/bench/scale", ns);
  call_t c = {.want_body = 1};
  int replicas = -1;
  if (call(b, cl, "GET", path, NULL, NULL, 200, &c) == 0) {
    json_t *j = json_loads(c.body, 0, NULL);
    json_t *r = json_object_get(json_object_get(j, "spec"), "replicas");
    replicas = json_is_integer(r) ? (int)json_integer_value(r) : -1;
    json_decref(j);
  }
  free(c.body);
  return replicas;
}

/* --- the audit log --- */

/* RFC3339Micro, UTC ("...Z"): microseconds since the epoch, or -1. */
static int64_t parse_micro(const char *s) {
  struct tm tm = {0};
  int us = 0, n = 0;
  if (s == NULL ||
      sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%6d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
             &tm.tm_min, &tm.tm_sec, &us, &n) != 7 ||
      s[n] != 'Z' || s[n + 1] != '\0')
    return -1;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return (int64_t)timegm(&tm) * 1000000 + us;
}

static const char *jstr(json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}

/* One audit line: if it is the ResponseComplete of one of our PATCHes, its server time in ms
 * goes to server_ms[i] (for the call i whose Audit-Id it carries). Returns 1 when matched. */
static int audit_line(const char *line, const char *ns, const call_t *calls, size_t n,
                      double *server_ms) {
  json_t *e = json_loads(line, 0, NULL);
  int matched = 0;
  const char *id = jstr(e, "auditID"), *stage = jstr(e, "stage"), *verb = jstr(e, "verb");
  const char *ens = jstr(json_object_get(e, "objectRef"), "namespace");
  if (id != NULL && stage != NULL && strcmp(stage, "ResponseComplete") == 0 && verb != NULL &&
      strcmp(verb, "patch") == 0 && ens != NULL && strcmp(ens, ns) == 0) {
    int64_t t0 = parse_micro(jstr(e, "requestReceivedTimestamp"));
    int64_t t1 = parse_micro(jstr(e, "stageTimestamp"));
    for (size_t i = 0; i < n && t0 >= 0 && t1 >= t0; i++)
      if (server_ms[i] < 0 && strcmp(calls[i].audit_id, id) == 0) {
        server_ms[i] = (double)(t1 - t0) / 1000.0;
        matched = 1;
        break;
      }
  }
  json_decref(e);
  return matched;
}

/* Reads the audit log from offset until all n PATCHes are found or ~30 s pass. The log is
 * written as requests complete (blocking backend); this runs in main between loop phases, not
 * inside a loop callback, so its sleeps and reads delay nothing. Returns how many matched. */
static size_t audit_collect(const bench_t *b, off_t offset, const char *ns, const call_t *calls,
                            size_t n, double *server_ms) {
  size_t found = 0;
  char *line = NULL;
  size_t cap = 0;
  for (int tries = 0; tries < 150 && found < n; tries++) {
    FILE *f = fopen(b->audit, "r");
    if (f == NULL || fseeko(f, offset, SEEK_SET) != 0) {
      perror(b->audit);
      if (f != NULL)
        fclose(f);
      break;
    }
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0 && line[len - 1] == '\n') {
      offset += len; /* only whole lines: a partial last line is read again next time */
      found += (size_t)audit_line(line, ns, calls, n, server_ms);
    }
    fclose(f);
    if (found < n)
      nanosleep(&(struct timespec){.tv_nsec = 200000000}, NULL);
  }
  free(line);
  return found;
}

/* --- 1. scale PATCH latency on one kept-alive connection --- */

typedef struct {
  int n, warmup, connects, conns;
  double wall_s, cpu_s;
  size_t matched;
} patch_run_t;

static int run_patches(bench_t *b, evs_http_client_t *cl, const char *ns, call_t *calls,
                       patch_run_t *r, off_t *audit_offset) {
  char path[256], body[64];
  snprintf(path, sizeof path, "/apis/apps/v1/namespaces/%s/deployments/bench/scale", ns);
  for (int i = 0; i < r->warmup + r->n; i++) {
    if (i == r->warmup) {
      struct stat st;
      if (stat(b->audit, &st) != 0)
        return -1;
      *audit_offset = st.st_size;
      r->cpu_s = cpu_seconds();
      r->wall_s = (double)uv_hrtime() / 1e9;
    }
    /* Replicas 2, 1, 2, ... from a Deployment created with 1: every PATCH changes the value. */
    snprintf(body, sizeof body, "{\"spec\":{\"replicas\":%d}}", 2 - i % 2);
    call_t scratch = {0}, *c = i < r->warmup ? &scratch : &calls[i - r->warmup];
    if (call(b, cl, "PATCH", path, body, "application/merge-patch+json", 200, c) != 0)
      return -1;
  }
  r->cpu_s = cpu_seconds() - r->cpu_s;
  r->wall_s = (double)uv_hrtime() / 1e9 - r->wall_s;
  r->connects = (int)evs_http_client_connects(cl);
  r->conns = (int)evs_http_client_connections(cl);
  return 0;
}

static void report_patches(const patch_run_t *r, const call_t *calls, double *server_ms) {
  double *client_ms = calloc((size_t)r->n, sizeof *client_ms);
  double *diff_ms = calloc((size_t)r->n, sizeof *diff_ms);
  size_t nd = 0;
  for (int i = 0; i < r->n; i++) {
    client_ms[i] = (double)(calls[i].t1 - calls[i].t0) / 1e6;
    if (server_ms[i] >= 0)
      diff_ms[nd++] = client_ms[i] - server_ms[i];
  }
  size_t ns = 0; /* drop unmatched server figures (reported as such) */
  for (int i = 0; i < r->n; i++)
    if (server_ms[i] >= 0)
      server_ms[ns++] = server_ms[i];
  stats_t sc = stats(client_ms, (size_t)r->n), ss = stats(server_ms, ns), sd = stats(diff_ms, nd);
  printf("\n### 1. scale PATCH x%d (after %d warm-up), one kept-alive TLS connection\n\n", r->n,
         r->warmup);
  print_table_head();
  print_row("client: evs_http_request -> on_done", sc);
  print_row("server: audit stageTimestamp - requestReceivedTimestamp", ss);
  print_row("client - server, per request (our client + TLS + loopback)", sd);
  printf("\np50 client - p50 server = %.2f ms; p99 client - p99 server = %.2f ms\n",
         sc.p50 - ss.p50, sc.p99 - ss.p99);
  printf("throughput %.1f requests/s (sequential); process CPU %.1f us/request (user+sys, "
         "getrusage); audit events matched %zu/%d; connects during the run %d, open %d\n",
         (double)r->n / r->wall_s, r->cpu_s * 1e6 / (double)r->n, r->matched, r->n, r->connects,
         r->conns);
  free(client_ms);
  free(diff_ms);
}

/* --- 1b. a burst of PATCHes to K Deployments at once (-p connections, 4 by default) --- */

/* What evscale does when many ScaledObjects change in the same tick: K writes queued on the
 * default pool. Handshakes are taken out first (one GET per connection). */
static int burst_run(bench_t *b, evs_http_client_t *cl, const char *ns, call_t *calls, int k,
                     off_t *offset, double *wall_ms) {
  unsigned conns = b->burst_conns;
  call_t *warm = calloc(conns, sizeof *warm);
  int rc = 0;
  for (unsigned i = 0; i < conns; i++)
    rc = rc ? rc : start_call(b, cl, "GET", "/version", NULL, NULL, &warm[i]);
  wait_calls(b, warm, conns);
  free(warm);
  struct stat st;
  if (rc != 0 || stat(b->audit, &st) != 0)
    return -1;
  *offset = st.st_size;
  uint64_t t0 = uv_hrtime();
  for (int i = 0; i < k && rc == 0; i++) {
    char path[256];
    snprintf(path, sizeof path, "/apis/apps/v1/namespaces/%s/deployments/burst-%d/scale", ns, i);
    calls[i] = (call_t){0};
    rc = start_call(b, cl, "PATCH", path, "{\"spec\":{\"replicas\":2}}",
                    "application/merge-patch+json", &calls[i]);
  }
  wait_calls(b, calls, (size_t)k);
  *wall_ms = (double)(uv_hrtime() - t0) / 1e6;
  for (int i = 0; i < k && rc == 0; i++)
    if (calls[i].err != 0 || calls[i].status != 200) {
      fprintf(stderr, "burst PATCH %d: %s, status %d\n", i, evs_strerror(calls[i].err),
              calls[i].status);
      rc = -1;
    }
  return rc;
}

static int bench_burst(bench_t *b, const char *ns, int k) {
  evs_http_client_t *cl = client_new(b, b->burst_conns);
  call_t *calls = calloc((size_t)k, sizeof *calls);
  double *client_ms = calloc((size_t)k, sizeof *client_ms), *server_ms = malloc((size_t)k * 8);
  double wall_ms = 0;
  off_t offset = 0;
  int rc = 0;
  for (int i = 0; i < k && rc == 0; i++) {
    char name[32];
    snprintf(name, sizeof name, "burst-%d", i);
    rc = create_deployment(b, cl, ns, name);
  }
  if (rc == 0)
    rc = burst_run(b, cl, ns, calls, k, &offset, &wall_ms);
  uint64_t connects = evs_http_client_connects(cl);
  client_close(b, cl);
  if (rc == 0) {
    for (int i = 0; i < k; i++) {
      client_ms[i] = call_ms(&calls[i]);
      server_ms[i] = -1;
    }
    size_t matched = audit_collect(b, offset, ns, calls, (size_t)k, server_ms), ns_ = 0;
    for (int i = 0; i < k; i++)
      if (server_ms[i] >= 0)
        server_ms[ns_++] = server_ms[i];
    printf("\n### 1b. burst: %d scale PATCHes to %d Deployments at once, max_conns_per_host=%u%s, "
           "connections opened beforehand\n\n",
           k, k, b->burst_conns, b->burst_conns == 4 ? " (the default)" : "");
    print_table_head();
    print_row("client: evs_http_request -> on_done (queueing included)",
              stats(client_ms, (size_t)k));
    print_row("server: audit stageTimestamp - requestReceivedTimestamp", stats(server_ms, ns_));
    printf("\nwhole burst %.2f ms = %.1f PATCHes/s; audit events matched %zu/%d; connections "
           "opened %" PRIu64 "\n",
           wall_ms, k / (wall_ms / 1e3), matched, k, connects);
  }
  free(calls);
  free(client_ms);
  free(server_ms);
  return rc;
}

static int bench_patch(bench_t *b, int n, int warmup, int burst) {
  char ns[64];
  snprintf(ns, sizeof ns, "evs-perfnet-%ld", (long)getpid());
  evs_http_client_t *cl = client_new(b, 1);
  call_t *calls = calloc((size_t)n, sizeof *calls);
  double *server_ms = malloc((size_t)n * sizeof *server_ms);
  patch_run_t r = {.n = n, .warmup = warmup};
  off_t offset = 0;
  int rc = create_namespace(b, cl, ns);
  if (rc == 0)
    rc = create_deployment(b, cl, ns, "bench");
  if (rc == 0)
    rc = run_patches(b, cl, ns, calls, &r, &offset);
  int last = n > 0 ? 2 - (warmup + n - 1) % 2 : 1, got = rc == 0 ? scale_replicas(b, cl, ns) : -1;
  if (rc == 0 && got != last) {
    fprintf(stderr, "scale reports %d replicas after the run, want %d\n", got, last);
    rc = -1;
  }
  if (rc == 0) {
    for (int i = 0; i < n; i++)
      server_ms[i] = -1;
    r.matched = audit_collect(b, offset, ns, calls, (size_t)n, server_ms);
    report_patches(&r, calls, server_ms);
  }
  if (rc == 0 && burst > 0)
    rc = bench_burst(b, ns, burst);
  delete_namespace(b, cl, ns);
  client_close(b, cl);
  free(calls);
  free(server_ms);
  return rc;
}

/* --- 2. connect cost --- */

static int bench_connect(bench_t *b, int n) {
  double *cold = calloc((size_t)n, sizeof *cold), *warm = calloc((size_t)n, sizeof *warm);
  int rc = 0, fresh = 0;
  double cpu0 = cpu_seconds();
  for (int i = 0; i < n && rc == 0; i++) {
    evs_http_client_t *cl = client_new(b, 1);
    call_t c = {0};
    rc = call(b, cl, "GET", "/version", NULL, NULL, 200, &c);
    cold[i] = call_ms(&c);
    fresh += evs_http_client_connects(cl) == 1;
    client_close(b, cl);
  }
  double cpu_cold = (cpu_seconds() - cpu0) / n;
  evs_http_client_t *cl = client_new(b, 1);
  call_t c = {0};
  if (rc == 0)
    rc = call(b, cl, "GET", "/version", NULL, NULL, 200, &c); /* opens the kept-alive one */
  for (int i = 0; i < n && rc == 0; i++) {
    rc = call(b, cl, "GET", "/version", NULL, NULL, 200, &c);
    warm[i] = call_ms(&c);
  }
  uint64_t warm_connects = evs_http_client_connects(cl);
  client_close(b, cl);
  if (rc == 0) {
    stats_t sc = stats(cold, (size_t)n), sw = stats(warm, (size_t)n);
    printf("\n### 2. connect cost: GET /version x%d\n\n", n);
    print_table_head();
    print_row("new client each time: TCP + TLS handshake + GET", sc);
    print_row("same client, kept-alive connection: GET", sw);
    printf("\nhandshake cost ~ p50 %.2f ms (cold p50 - warm p50), p99 %.2f ms; process CPU %.2f "
           "ms per cold connect+GET (user+sys); fresh connects %d/%d, kept-alive run opened "
           "%" PRIu64 " connection(s)\n",
           sc.p50 - sw.p50, sc.p99 - sw.p99, cpu_cold * 1e3, fresh, n, warm_connects);
  }
  free(cold);
  free(warm);
  return rc;
}

/* --- 3. heap per kept-alive TLS connection --- */

static long rss_kib(void) {
  long pages = 0, rss = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f != NULL && fscanf(f, "%ld %ld", &pages, &rss) != 2)
    rss = 0;
  if (f != NULL)
    fclose(f);
  return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

/* M concurrent GETs; 0 when all answered 200. */
static int burst(bench_t *b, evs_http_client_t *cl, call_t *calls, unsigned m) {
  for (unsigned i = 0; i < m; i++) {
    calls[i] = (call_t){0};
    if (start_call(b, cl, "GET", "/version", NULL, NULL, &calls[i]) != 0)
      return -1;
  }
  wait_calls(b, calls, m);
  for (unsigned i = 0; i < m; i++)
    if (calls[i].err != 0 || calls[i].status != 200) {
      fprintf(stderr, "burst GET %u: %s, status %d\n", i, evs_strerror(calls[i].err),
              calls[i].status);
      return -1;
    }
  return 0;
}

static int bench_memory(bench_t *b, unsigned m) {
  call_t *calls = calloc(m, sizeof *calls);
  size_t h_before = heap_in_use();
  evs_http_client_t *cl = client_new(b, m);
  /* One connection first, so that what is allocated once per client or per process (mbedTLS
   * tables, the pool key) is in the baseline, not spread over the M connections. */
  int rc = burst(b, cl, calls, 1);
  size_t h0 = heap_in_use();
  long r0 = rss_kib();
  if (rc == 0)
    rc = burst(b, cl, calls, m);
  size_t h1 = heap_in_use();
  long r1 = rss_kib();
  unsigned conns = evs_http_client_connections(cl);
  if (rc == 0)
    rc = burst(b, cl, calls, m); /* all reused: the heap should not grow */
  size_t h2 = heap_in_use();
  uint64_t connects = evs_http_client_connects(cl);
  client_close(b, cl);
  size_t h_after = heap_in_use();
  if (rc == 0 && conns > 1) {
    printf("\n### 3. heap per kept-alive TLS connection (max_conns_per_host=%u, %u concurrent GET "
           "/version)\n\n",
           m, m);
    printf("open connections %u (connects %" PRIu64 " after a second burst); heap (mallinfo2 "
           "uordblks+hblkhd) +%zd bytes for %u new connections = %.0f bytes (%.1f KiB) per "
           "connection; RSS +%ld KiB (%.1f KiB per connection)\n",
           conns, connects, (ssize_t)(h1 - h0), conns - 1, (double)(h1 - h0) / (conns - 1),
           (double)(h1 - h0) / (conns - 1) / 1024.0, r1 - r0, (double)(r1 - r0) / (conns - 1));
    printf("second burst on the same connections: heap %+zd bytes; after evs_http_client_close: "
           "heap %+zd bytes against before evs_http_client_new\n",
           (ssize_t)(h2 - h1), (ssize_t)(h_after - h_before));
    if (h1 == h0)
      printf("(mallinfo2 sees nothing: a sanitizer build replaces malloc; use a Release build)\n");
  }
  free(calls);
  return rc;
}

/* --- main --- */

typedef struct {
  int n, warmup, burst, pool, connects, conns;
} args_t;

static int print_header(bench_t *b, const args_t *a) {
  evs_http_client_t *cl = client_new(b, 1);
  call_t v = {.want_body = 1};
  const char *version = "?";
  json_t *j = NULL;
  int rc = call(b, cl, "GET", "/version", NULL, NULL, 200, &v);
  if (rc == 0) {
    j = json_loads(v.body, 0, NULL);
    version = jstr(j, "gitVersion") ? jstr(j, "gitVersion") : "?";
  }
  client_close(b, cl);
  double load[3] = {0};
  char when[64];
  time_t now = time(NULL);
  strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", gmtime(&now));
  printf("bench_http_client -n %d -w %d -b %d -p %d -c %d -m %d: %s, kube-apiserver %s at %s\n",
         a->n, a->warmup, a->burst, a->pool, a->connects, a->conns, when, version, b->url);
  if (getloadavg(load, 3) == 3)
    printf("load average %.2f %.2f %.2f, %ld CPUs (shared machine)\n", load[0], load[1], load[2],
           sysconf(_SC_NPROCESSORS_ONLN));
  json_decref(j);
  free(v.body);
  return rc;
}

static void usage(void) {
  fprintf(stderr, "usage: bench_http_client [-n patches=500] [-w warmup=10] [-b burst=40 (0: "
                  "skip)] [-p burst pool=4] "
                  "[-c connects=50] [-m conns=50 (>= 2)]\n");
  exit(2);
}

static args_t parse_args(int argc, char **argv) {
  args_t a = {.n = 500, .warmup = 10, .burst = 40, .pool = 4, .connects = 50, .conns = 50};
  int opt;
  while ((opt = getopt(argc, argv, "n:w:b:p:c:m:")) != -1) {
    char *end = NULL;
    long v = optarg != NULL ? strtol(optarg, &end, 10) : -1;
    int *dst = opt == 'n'   ? &a.n
               : opt == 'w' ? &a.warmup
               : opt == 'b' ? &a.burst
               : opt == 'p' ? &a.pool
               : opt == 'c' ? &a.connects
               : opt == 'm' ? &a.conns
                            : NULL;
    int min = opt == 'm' ? 2 : opt == 'n' || opt == 'c' || opt == 'p' ? 1 : 0;
    if (dst == NULL || end == optarg || *end != '\0' || v < min || v > (opt == 'p' ? 64 : 100000))
      usage();
    *dst = (int)v;
  }
  if (optind != argc)
    usage();
  return a;
}

int main(int argc, char **argv) {
  args_t a = parse_args(argc, argv);
  bench_t b = {.burst_conns = (unsigned)a.pool};
  if (find_controlplane(&b) != 0)
    return 1;
  evs_tls_options_t to = {.ca_file = b.ca};
  const char *why = NULL;
  int rc = evs_tls_config_new(&to, &b.tls, &why);
  if (rc != 0) {
    fprintf(stderr, "TLS config from %s: %s (%s)\n", b.ca, evs_strerror(rc), why ? why : "");
    return 1;
  }
  setvbuf(stdout, NULL, _IOLBF, 0); /* figures and stderr complaints in order */
  uv_loop_init(&b.loop);
  rc = print_header(&b, &a);
  if (rc == 0)
    rc = bench_patch(&b, a.n, a.warmup, a.burst);
  if (rc == 0)
    rc = bench_connect(&b, a.connects);
  if (rc == 0)
    rc = bench_memory(&b, (unsigned)a.conns);
  evs_tls_config_unref(b.tls);
  while (uv_loop_close(&b.loop) == UV_EBUSY)
    uv_run(&b.loop, UV_RUN_ONCE);
  return rc == 0 ? 0 : 1;
}
