/* Informer list+sync against the real API server: time from start to on_synced for N small
 * ConfigMaps listed 500 at a time, and the memory the cache takes per object (heap in use and
 * RSS, before and after the sync).
 *
 *   build/rel/bench_informer -n 10000 [--ns NAME] [--keep] [--runs 3] [--page 500]
 *
 * The control plane: KUBE_API_URL, KUBE_CA, KUBE_TOKEN from the environment, else the shared one
 * (~/.cache/evscale/cp-shared/env, started by test/e2e/evstest.py controlplane()). The objects
 * are created first (8 connections in parallel) in the namespace NAME (default
 * evs-bench-inf-<n>), unless it already holds at least N; --keep leaves them for the next run.
 * The decoder keeps 8 bytes per object (an int parsed from data.k plus padding), the size of a
 * compact record, so the per-object figure is the informer's own overhead plus that. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "evscale/error.h"
#include "evscale/http_client.h"
#include "evscale/informer.h"

static char url[1024], ca[1024], token[1024], auth[1100];

static void load_env(void) {
  if (getenv("KUBE_API_URL") && getenv("KUBE_CA") && getenv("KUBE_TOKEN")) {
    snprintf(url, sizeof url, "%s", getenv("KUBE_API_URL"));
    snprintf(ca, sizeof ca, "%s", getenv("KUBE_CA"));
    snprintf(token, sizeof token, "%s", getenv("KUBE_TOKEN"));
  } else {
    char path[512], line[1024];
    snprintf(path, sizeof path, "%s/.cache/evscale/cp-shared/env", getenv("HOME"));
    FILE *f = fopen(path, "r");
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
      line[strcspn(line, "\r\n")] = '\0';
      if (strncmp(line, "KUBE_API_URL=", 13) == 0)
        snprintf(url, sizeof url, "%s", line + 13);
      else if (strncmp(line, "KUBE_CA=", 8) == 0)
        snprintf(ca, sizeof ca, "%s", line + 8);
      else if (strncmp(line, "KUBE_TOKEN=", 11) == 0)
        snprintf(token, sizeof token, "%s", line + 11);
    }
    if (f != NULL)
      fclose(f);
  }
  if (url[0] == '\0') {
    fprintf(stderr, "no control plane: set KUBE_API_URL/KUBE_CA/KUBE_TOKEN or start one with "
                    "test/e2e/evstest.py controlplane()\n");
    exit(2);
  }
  snprintf(auth, sizeof auth, "Bearer %s", token);
}

typedef struct {
  int done, err, status;
  char *body;
} res_t;

static void on_done(evs_http_req_t *req, int err, const evs_http_response_t *resp, void *arg) {
  (void)req;
  res_t *r = arg;
  r->done = 1;
  r->err = err;
  if (resp != NULL) {
    r->status = resp->status;
    r->body = resp->body ? strndup(resp->body, resp->body_len) : NULL;
  }
}

static uv_loop_t loop;
static evs_tls_config_t *tls;

static void req(evs_http_client_t *c, const char *method, const char *path, const char *body,
                res_t *r) {
  char u[2048];
  snprintf(u, sizeof u, "%s%s", url, path);
  evs_http_header_t hs[] = {{"Authorization", auth},
                            {"Accept", "application/json"},
                            {"Content-Type", "application/json"}};
  evs_http_request_opts_t o = {.method = method,
                               .url = u,
                               .headers = hs,
                               .nheaders = 3,
                               .body = body,
                               .body_len = body ? strlen(body) : 0,
                               .tls = tls,
                               .timeout_ms = UINT64_MAX,
                               .on_done = on_done,
                               .arg = r};
  if (evs_http_request(c, &o, NULL) != 0)
    abort();
}

static void wait_all(res_t *r, int n) {
  for (int i = 0; i < n;) {
    if (r[i].done)
      i++;
    else
      uv_run(&loop, UV_RUN_ONCE);
  }
}

static long existing(evs_http_client_t *c, const char *ns) {
  char path[256];
  res_t r = {0};
  snprintf(path, sizeof path, "/api/v1/namespaces/%s/configmaps?limit=1", ns);
  req(c, "GET", path, NULL, &r);
  wait_all(&r, 1);
  long n = 0;
  const char *rc = r.body ? strstr(r.body, "\"remainingItemCount\":") : NULL;
  if (r.status == 200)
    n = rc ? atol(rc + 21) + 1 : (strstr(r.body, "\"items\":[]") ? 0 : 1);
  free(r.body);
  return r.status == 200 ? n : -1;
}

static void create(evs_http_client_t *c, const char *ns, int n) {
  char path[256], body[300];
  res_t r = {0};
  snprintf(body, sizeof body,
           "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"%s\"}}", ns);
  req(c, "POST", "/api/v1/namespaces", body, &r);
  wait_all(&r, 1);
  free(r.body);
  snprintf(path, sizeof path, "/api/v1/namespaces/%s/configmaps", ns);
  enum { WINDOW = 256 };
  res_t *w = calloc(WINDOW, sizeof *w);
  int64_t t0 = now_ns();
  for (int base = 0; base < n; base += WINDOW) {
    int k = n - base < WINDOW ? n - base : WINDOW;
    for (int i = 0; i < k; i++) {
      memset(&w[i], 0, sizeof w[i]);
      snprintf(body, sizeof body,
               "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"cm-%d\","
               "\"labels\":{\"app\":\"bench\"}},\"data\":{\"k\":\"%d\"}}",
               base + i, base + i);
      req(c, "POST", path, body, &w[i]);
    }
    wait_all(w, k);
    for (int i = 0; i < k; i++) {
      if (w[i].status != 201 && w[i].status != 409)
        fprintf(stderr, "create: %s %d %.200s\n", evs_strerror(w[i].err), w[i].status,
                w[i].body ? w[i].body : "");
      free(w[i].body);
    }
  }
  double s = (double)(now_ns() - t0) / 1e9;
  printf("created %d ConfigMaps in %.1f s (%.0f/s, 8 connections)\n", n, s, n / s);
  free(w);
}

typedef struct {
  int32_t v, pad;
} rec_t;

static int decode(const json_t *obj, void **out, void *arg) {
  (void)arg;
  rec_t *r = malloc(sizeof *r);
  if (r == NULL)
    return UV_ENOMEM;
  const char *k = json_string_value(json_object_get(json_object_get(obj, "data"), "k"));
  r->v = k != NULL ? atoi(k) : 0;
  r->pad = 0;
  *out = r;
  return 0;
}

static void free_rec(void *d, void *arg) {
  (void)arg;
  free(d);
}

static int synced;
static void on_synced(evs_informer_t *inf, void *arg) {
  (void)inf;
  (void)arg;
  synced = 1;
}

static int decorate(evs_http_request_opts_t *r, evs_http_header_t *h, size_t *n, size_t cap,
                    void *arg) {
  (void)r;
  (void)arg;
  if (*n >= cap)
    return UV_ENOBUFS;
  h[(*n)++] = (evs_http_header_t){"Authorization", auth};
  return 0;
}

static void set_flag(void *arg) { *(int *)arg = 1; }

int main(int argc, char **argv) {
  int n = 10000, keep = 0, runs = 3;
  unsigned page = 500;
  char ns[128] = "";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
      n = atoi(argv[++i]);
    else if (strcmp(argv[i], "--ns") == 0 && i + 1 < argc)
      snprintf(ns, sizeof ns, "%s", argv[++i]);
    else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
      runs = atoi(argv[++i]);
    else if (strcmp(argv[i], "--page") == 0 && i + 1 < argc)
      page = (unsigned)atoi(argv[++i]);
    else if (strcmp(argv[i], "--keep") == 0)
      keep = 1;
  }
  if (ns[0] == '\0')
    snprintf(ns, sizeof ns, "evs-bench-inf-%d", n);
  load_env();
  uv_loop_init(&loop);
  evs_tls_options_t to = {.ca_file = ca};
  const char *why = NULL;
  if (evs_tls_config_new(&to, &tls, &why) != 0) {
    fprintf(stderr, "tls: %s\n", why ? why : "?");
    return 1;
  }
  evs_http_client_options_t co = {.max_conns_per_host = 8};
  evs_http_client_t *c = NULL, *ic = NULL;
  evs_http_client_new(&loop, &co, &c);
  long have = existing(c, ns);
  if (have < n)
    create(c, ns, n);
  have = existing(c, ns);
  printf("namespace %s holds %ld ConfigMaps; page size %u\n", ns, have, page);

  char path[256];
  snprintf(path, sizeof path, "/api/v1/namespaces/%s/configmaps", ns);
  for (int run = 0; run < runs; run++) {
    evs_http_client_new(&loop, NULL, &ic);
    malloc_trim(0);
    long rss0 = rss_bytes();
    size_t heap0 = heap_in_use();
    evs_informer_options_t o = {.http = ic,
                                .base_url = url,
                                .tls = tls,
                                .path = path,
                                .page_size = page,
                                .decorate = decorate,
                                .decode = decode,
                                .free_data = free_rec,
                                .on_synced = on_synced};
    evs_informer_t *inf = NULL;
    synced = 0;
    int64_t t0 = now_ns();
    double cpu0 = cpu_seconds();
    evs_informer_start(&loop, &o, &inf);
    while (!synced)
      uv_run(&loop, UV_RUN_ONCE);
    double secs = (double)(now_ns() - t0) / 1e9, cpu = cpu_seconds() - cpu0;
    malloc_trim(0);
    long rss1 = rss_bytes();
    size_t heap1 = heap_in_use(), cnt = evs_informer_count(inf);
    evs_informer_stats_t st;
    evs_informer_get_stats(inf, &st);
    printf("run %d: list+sync %zu objects in %.3f s (%.0f objects/s, %llu pages, CPU %.3f s); "
           "heap +%.1f MiB = %.0f B/object; RSS +%.1f MiB = %.0f B/object\n",
           run, cnt, secs, cnt / secs, (unsigned long long)st.list_pages, cpu,
           (double)(heap1 - heap0) / 1048576.0, (double)(heap1 - heap0) / (double)cnt,
           (double)(rss1 - rss0) / 1048576.0, (double)(rss1 - rss0) / (double)cnt);
    int closed = 0;
    evs_informer_close(inf, set_flag, &closed);
    evs_http_client_close(ic, NULL, NULL);
    while (!closed)
      uv_run(&loop, UV_RUN_ONCE);
  }
  if (!keep) {
    char p[256];
    res_t r = {0};
    snprintf(p, sizeof p, "/api/v1/namespaces/%s", ns);
    req(c, "DELETE", p, NULL, &r);
    wait_all(&r, 1);
    free(r.body);
  }
  int closed = 0;
  evs_http_client_close(c, set_flag, &closed);
  while (!closed)
    uv_run(&loop, UV_RUN_ONCE);
  uv_run(&loop, UV_RUN_DEFAULT);
  evs_tls_config_unref(tls);
  return uv_loop_close(&loop) == 0 ? 0 : 1;
}
