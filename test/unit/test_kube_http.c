/* The stream, TLS and HTTP client against a real Kubernetes API server (kube-apiserver 1.20 on
 * loopback, tools/controlplane.sh) and, for faults it will not produce, through
 * test/faultproxy.py in front of it.
 *
 * The control plane: KUBE_API_URL, KUBE_CA, KUBE_TOKEN (+ KUBE_CLIENT_CERT/KEY) from the
 * environment when set (tools/test.sh starts one for the whole run); otherwise the shared one of
 * test/e2e/evstest.py (started once under a lock and left running, ~/.cache/evscale/cp-shared).
 * The test is skipped, saying why, only when the Kubernetes binaries cannot be built.
 *
 * Paths and payload shapes follow Kubernetes v1.20.2 (kubernetes/kubernetes, commit
 * faecb196815e248d3ecfb03c680a4507229c2a56): list pagination with limit/continue and
 * metadata.continue (staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/types.go ListMeta), watch
 * events as one JSON object {"type","object"} per line on a chunked 200 response
 * (staging/src/k8s.io/apiserver/pkg/endpoints/handlers/watch.go), merge-patch with
 * Content-Type application/merge-patch+json (.../endpoints/handlers/patch.go). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>

#include "evscale/error.h"
#include "evscale/http_client.h"
#include "kube_env.h"
#include "net_helpers.h"

static struct {
  int skip;
  char url[256], ca[512], token[256], cert[512], key[512];
  char ns[64];
  evs_tls_config_t *tls_token, *tls_cert, *tls_proxy;
  evs_test_server_t proxy;
  int proxy_control_port;
  char auth[300];
} K;

typedef struct {
  int done, err, status;
  int64_t retry_after;
  char *body;
  size_t body_len;
  /* streaming */
  int heads;
  char *stream;
  size_t stream_len;
  int want_lines;
} res_t;

static void on_done(evs_http_req_t *req, int err, const evs_http_response_t *resp, void *arg) {
  (void)req;
  res_t *r = arg;
  r->done = 1;
  r->err = err;
  if (resp == NULL)
    return;
  r->status = resp->status;
  r->retry_after = resp->retry_after_s;
  if (resp->body != NULL) {
    r->body = strndup(resp->body, resp->body_len);
    r->body_len = resp->body_len;
  }
}

static void on_head(evs_http_req_t *req, const evs_http_response_t *resp, void *arg) {
  (void)req;
  res_t *r = arg;
  r->heads++;
  r->status = resp->status;
}

static int on_body(evs_http_req_t *req, const char *buf, size_t n, void *arg) {
  (void)req;
  res_t *r = arg;
  r->stream = realloc(r->stream, r->stream_len + n + 1);
  memcpy(r->stream + r->stream_len, buf, n);
  r->stream_len += n;
  r->stream[r->stream_len] = '\0';
  return 0;
}

static void res_free(res_t *r) {
  free(r->body);
  free(r->stream);
  memset(r, 0, sizeof *r);
}

static int count_lines(const char *s) {
  int n = 0;
  for (; s != NULL && *s; s++)
    n += *s == '\n';
  return n;
}

/* Every test is skipped, not failed, when setup found no way to run a control plane. */
#define SKIP_IF_NO_CONTROLPLANE()                                                                  \
  do {                                                                                             \
    if (K.skip)                                                                                    \
      skip();                                                                                      \
  } while (0)

/* --- control plane discovery --- */

static int apiserver_buildable(void) {
  const char *cache = getenv("EVS_CACHE");
  char path[512];
  if (cache != NULL)
    snprintf(path, sizeof path, "%s/bin/kube-apiserver", cache);
  else
    snprintf(path, sizeof path, "%s/.cache/evscale/bin/kube-apiserver", getenv("HOME"));
  if (access(path, X_OK) == 0)
    return 1;
  /* Not built yet: try (this is what takes ~6-10 minutes the first time). */
  char cmd[600];
  snprintf(cmd, sizeof cmd, "%s/tools/controlplane.sh build >&2", evs_test_src());
  return system(cmd) == 0;
}

static int find_controlplane(void) {
  evs_test_kube_env_t e;
  if (evs_test_kube_env(&e) != 0)
    return -1;
  EVS_TEST_COPY(K.url, e.url);
  EVS_TEST_COPY(K.ca, e.ca);
  EVS_TEST_COPY(K.token, e.token);
  EVS_TEST_COPY(K.cert, e.cert);
  EVS_TEST_COPY(K.key, e.key);
  return 0;
}

static evs_tls_config_t *tls(const char *ca, const char *cert, const char *key) {
  evs_tls_options_t o = {.ca_file = ca, .cert_file = cert, .key_file = key};
  evs_tls_config_t *cfg = NULL;
  const char *why = NULL;
  int rc = evs_tls_config_new(&o, &cfg, &why);
  if (rc != 0)
    fail_msg("tls config: %s (%s)", evs_strerror(rc), why ? why : "");
  return cfg;
}

static int start_proxy(void) {
  if (evs_test_server_dir(&K.proxy) != 0)
    return -1;
  return evs_test_faultproxy_start(&K.proxy, K.url, K.ca, &K.proxy_control_port);
}

/* --- requests --- */

typedef struct {
  uv_loop_t loop;
  evs_http_client_t *c;
} env_t;

static void env_init(env_t *e) {
  uv_loop_init(&e->loop);
  assert_int_equal(evs_http_client_new(&e->loop, NULL, &e->c), 0);
}

static void set_flag(void *arg) { *(int *)arg = 1; }

static void env_close(env_t *e) {
  int closed = 0;
  evs_http_client_close(e->c, set_flag, &closed);
  assert_true(evs_test_run_until(&e->loop, &closed, 10000));
  assert_int_equal(evs_test_loop_close(&e->loop), 0);
}

typedef struct {
  const char *base; /* K.url or the proxy's */
  evs_tls_config_t *tls;
  int bearer;
  const char *content_type;
  uint64_t timeout_ms;
} how_t;

static void send_req(env_t *e, const how_t *h, const char *method, const char *path,
                     const char *body, res_t *r, int streaming) {
  char url[1024];
  snprintf(url, sizeof url, "%s%s", h->base, path);
  evs_http_header_t hs[3];
  size_t n = 0;
  if (h->bearer)
    hs[n++] = (evs_http_header_t){"Authorization", K.auth};
  hs[n++] = (evs_http_header_t){"Accept", "application/json"};
  if (body != NULL)
    hs[n++] =
        (evs_http_header_t){"Content-Type", h->content_type ? h->content_type : "application/json"};
  evs_http_request_opts_t o = {.method = method,
                               .url = url,
                               .headers = hs,
                               .nheaders = n,
                               .body = body,
                               .body_len = body ? strlen(body) : 0,
                               .tls = h->tls,
                               .timeout_ms = h->timeout_ms,
                               .on_done = on_done,
                               .arg = r};
  if (streaming) {
    o.on_head = on_head;
    o.on_body = on_body;
  }
  assert_int_equal(evs_http_request(e->c, &o, NULL), 0);
}

static void do_req(env_t *e, const how_t *h, const char *method, const char *path, const char *body,
                   res_t *r) {
  send_req(e, h, method, path, body, r, 0);
  assert_true(evs_test_run_until(&e->loop, &r->done, 60000));
}

static how_t direct(void) { return (how_t){.base = K.url, .tls = K.tls_token, .bearer = 1}; }

static how_t via_proxy(void) {
  static char base[64];
  snprintf(base, sizeof base, "https://127.0.0.1:%d", K.proxy.port);
  return (how_t){.base = base, .tls = K.tls_proxy, .bearer = 1};
}

static json_t *proxy_control(env_t *e, const char *method, const char *path, const char *body) {
  char base[64];
  snprintf(base, sizeof base, "http://127.0.0.1:%d", K.proxy_control_port);
  how_t h = {.base = base};
  res_t r = {0};
  do_req(e, &h, method, path, body, &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.status, 200);
  json_t *j = json_loads(r.body, 0, NULL);
  assert_non_null(j);
  res_free(&r);
  return j;
}

static int setup(void **state) {
  (void)state;
  if (find_controlplane() != 0) {
    if (!apiserver_buildable()) {
      fprintf(stderr, "SKIP test_kube_http: the Kubernetes control plane cannot be built here "
                      "(tools/controlplane.sh build failed)\n");
      K.skip = 1;
      return 0;
    }
    if (find_controlplane() != 0) {
      fprintf(stderr, "test_kube_http: cannot start the control plane\n");
      return -1;
    }
  }
  snprintf(K.auth, sizeof K.auth, "Bearer %s", K.token);
  snprintf(K.ns, sizeof K.ns, "evs-net-%d-%ld", (int)getpid(), (long)time(NULL) % 100000);
  K.tls_token = tls(K.ca, NULL, NULL);
  K.tls_cert = K.cert[0] ? tls(K.ca, K.cert, K.key) : NULL;
  K.tls_proxy = tls(evs_test_cert("ca.crt"), NULL, NULL);
  if (start_proxy() != 0) {
    fprintf(stderr, "test_kube_http: cannot start test/faultproxy.py\n");
    return -1;
  }
  env_t e;
  env_init(&e);
  how_t h = direct();
  res_t r = {0};
  char body[128];
  snprintf(body, sizeof body,
           "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"%s\"}}", K.ns);
  do_req(&e, &h, "POST", "/api/v1/namespaces", body, &r);
  int ok = r.err == 0 && r.status == 201;
  if (!ok)
    fprintf(stderr, "creating namespace: %s %d %s\n", evs_strerror(r.err), r.status, r.body);
  res_free(&r);
  env_close(&e);
  return ok ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  if (K.skip)
    return 0;
  if (K.url[0] != '\0' && K.tls_token != NULL) {
    env_t e;
    env_init(&e);
    how_t h = direct();
    res_t r = {0};
    char path[128];
    snprintf(path, sizeof path, "/api/v1/namespaces/%s", K.ns);
    do_req(&e, &h, "DELETE", path, NULL, &r);
    res_free(&r);
    env_close(&e);
  }
  evs_test_server_stop(&K.proxy);
  evs_tls_config_unref(K.tls_token);
  evs_tls_config_unref(K.tls_cert);
  evs_tls_config_unref(K.tls_proxy);
  return 0;
}

static void test_version_bearer(void **state) {
  (void)state;
  SKIP_IF_NO_CONTROLPLANE();
  env_t e;
  env_init(&e);
  how_t h = direct();
  res_t r = {0};
  do_req(&e, &h, "GET", "/version", NULL, &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.status, 200);
  json_t *j = json_loads(r.body, 0, NULL);
  assert_non_null(j);
  assert_string_equal(json_string_value(json_object_get(j, "major")), "1");
  json_decref(j);
  res_free(&r);
  /* Without credentials the same server refuses (anonymous is 401 or 403 under RBAC). */
  h.bearer = 0;
  do_req(&e, &h, "GET", "/api/v1/namespaces", NULL, &r);
  assert_int_equal(r.err, 0);
  assert_true(r.status == 401 || r.status == 403);
  res_free(&r);
  env_close(&e);
}

static void test_client_certificate(void **state) {
  (void)state;
  SKIP_IF_NO_CONTROLPLANE();
  if (K.tls_cert == NULL)
    skip();
  env_t e;
  env_init(&e);
  how_t h = {.base = K.url, .tls = K.tls_cert};
  res_t r = {0};
  char path[128];
  snprintf(path, sizeof path, "/api/v1/namespaces/%s", K.ns);
  do_req(&e, &h, "GET", path, NULL, &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, K.ns));
  res_free(&r);
  env_close(&e);
}

/* The API server's certificate carries IP SANs (127.0.0.1): with the wrong CA it is refused. */
static void test_wrong_ca(void **state) {
  (void)state;
  SKIP_IF_NO_CONTROLPLANE();
  env_t e;
  env_init(&e);
  evs_tls_config_t *wrong = tls(evs_test_cert("wrong-ca.crt"), NULL, NULL);
  how_t h = {.base = K.url, .tls = wrong, .bearer = 1};
  res_t r = {0};
  do_req(&e, &h, "GET", "/version", NULL, &r);
  assert_int_equal(r.err, EVS_ECERT);
  res_free(&r);
  env_close(&e);
  evs_tls_config_unref(wrong);
}

static void create_configmap(env_t *e, const char *name) {
  how_t h = direct();
  res_t r = {0};
  char path[128], body[256];
  snprintf(path, sizeof path, "/api/v1/namespaces/%s/configmaps", K.ns);
  snprintf(body, sizeof body,
           "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"%s\"},"
           "\"data\":{\"k\":\"v\"}}",
           name);
  do_req(e, &h, "POST", path, body, &r);
  assert_int_equal(r.err, 0);
  if (r.status != 201)
    fail_msg("create %s: %d %s", name, r.status, r.body);
  res_free(&r);
}

/* Five ConfigMaps listed two at a time: three pages linked by metadata.continue. */
static void test_paginated_list(void **state) {
  (void)state;
  SKIP_IF_NO_CONTROLPLANE();
  env_t e;
  env_init(&e);
  for (int i = 0; i < 5; i++) {
    char name[32];
    snprintf(name, sizeof name, "page-%d", i);
    create_configmap(&e, name);
  }
  how_t h = direct();
  char cont[1024] = "", path[1400];
  int pages = 0, items = 0;
  do {
    res_t r = {0};
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/configmaps?limit=2%s%s", K.ns,
             cont[0] ? "&continue=" : "", cont);
    do_req(&e, &h, "GET", path, NULL, &r);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.status, 200);
    json_t *j = json_loads(r.body, 0, NULL);
    assert_non_null(j);
    json_t *list = json_object_get(j, "items");
    assert_true(json_array_size(list) <= 2);
    for (size_t i = 0; i < json_array_size(list); i++) {
      const char *n = json_string_value(
          json_object_get(json_object_get(json_array_get(list, i), "metadata"), "name"));
      items += n != NULL && strncmp(n, "page-", 5) == 0;
    }
    const char *c = json_string_value(json_object_get(json_object_get(j, "metadata"), "continue"));
    snprintf(cont, sizeof cont, "%s", c ? c : "");
    json_decref(j);
    res_free(&r);
    pages++;
  } while (cont[0] != '\0' && pages < 10);
  assert_int_equal(items, 5);
  assert_int_equal(pages, 3);
  /* All of it over one kept-alive connection. */
  assert_int_equal(evs_http_client_connects(e.c), 1);
  env_close(&e);
}

/* A watch from "now" reads the ADDED events of ConfigMaps created while it runs. */
static void test_watch_events(void **state) {
  (void)state;
  SKIP_IF_NO_CONTROLPLANE();
  env_t e;
  env_init(&e);
  how_t h = direct();
  res_t list = {0};
  char path[256];
  snprintf(path, sizeof path, "/api/v1/namespaces/%s/configmaps?limit=1", K.ns);
  do_req(&e, &h, "GET", path, NULL, &list);
  assert_int_equal(list.status, 200);
  json_t *j = json_loads(list.body, 0, NULL);
  const char *rv =
      json_string_value(json_object_get(json_object_get(j, "metadata"), "resourceVersion"));
  assert_non_null(rv);
  snprintf(path, sizeof path,
           "/api/v1/namespaces/%s/configmaps?watch=1&resourceVersion=%s&timeoutSeconds=60", K.ns,
           rv);
  json_decref(j);
  res_free(&list);
  res_t w = {0};
  h.timeout_ms = 10000;
  send_req(&e, &h, "GET", path, NULL, &w, 1);
  while (w.heads == 0 && !w.done)
    uv_run(&e.loop, UV_RUN_ONCE);
  assert_int_equal(w.status, 200);
  for (int i = 0; i < 3; i++) {
    char name[32];
    snprintf(name, sizeof name, "watched-%d", i);
    create_configmap(&e, name); /* on a second connection: the watch holds the first */
  }
  uint64_t t0 = uv_hrtime();
  while (count_lines(w.stream) < 3 && !w.done && (uv_hrtime() - t0) / 1000000 < 30000)
    uv_run(&e.loop, UV_RUN_ONCE);
  assert_int_equal(w.done, 0); /* still streaming */
  assert_true(count_lines(w.stream) >= 3);
  char *save = NULL;
  int seen = 0;
  for (char *line = strtok_r(w.stream, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    json_t *ev = json_loads(line, 0, NULL);
    assert_non_null(ev);
    assert_string_equal(json_string_value(json_object_get(ev, "type")), "ADDED");
    const char *n = json_string_value(
        json_object_get(json_object_get(json_object_get(ev, "object"), "metadata"), "name"));
    seen += n != NULL && strncmp(n, "watched-", 8) == 0;
    json_decref(ev);
  }
  assert_int_equal(seen, 3);
  w.stream_len = 0;
  env_close(&e); /* cancels the watch: on_done(ECANCELED) */
  assert_int_equal(w.done, 1);
  assert_int_equal(w.err, EVS_ECANCELED);
  res_free(&w);
}

static void test_merge_patch(void **state) {
  (void)state;
  SKIP_IF_NO_CONTROLPLANE();
  env_t e;
  env_init(&e);
  create_configmap(&e, "patched");
  how_t h = direct();
  h.content_type = "application/merge-patch+json";
  res_t r = {0};
  char path[128];
  snprintf(path, sizeof path, "/api/v1/namespaces/%s/configmaps/patched", K.ns);
  do_req(&e, &h, "PATCH", path, "{\"data\":{\"replicas\":\"7\"}}", &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.status, 200);
  json_t *j = json_loads(r.body, 0, NULL);
  json_t *data = json_object_get(j, "data");
  assert_string_equal(json_string_value(json_object_get(data, "replicas")), "7");
  assert_string_equal(json_string_value(json_object_get(data, "k")), "v");
  json_decref(j);
  res_free(&r);
  env_close(&e);
}

/* The pool under a controller's traffic: six watches open on the API server (more than the four
 * connections per host of the defaults) and a scale-like PATCH sent while they all run. The
 * PATCH is answered at once, not after a watch ends or its own timeout, and every watch then
 * carries the MODIFIED event it caused. */
static void test_patch_not_delayed_by_watches(void **state) {
  (void)state;
  SKIP_IF_NO_CONTROLPLANE();
  enum { NW = 6 };
  env_t e;
  env_init(&e);
  create_configmap(&e, "scaled");
  how_t h = direct();
  res_t list = {0};
  char path[256];
  snprintf(path, sizeof path, "/api/v1/namespaces/%s/configmaps?limit=1", K.ns);
  do_req(&e, &h, "GET", path, NULL, &list);
  assert_int_equal(list.status, 200);
  json_t *j = json_loads(list.body, 0, NULL);
  const char *rv =
      json_string_value(json_object_get(json_object_get(j, "metadata"), "resourceVersion"));
  assert_non_null(rv);
  snprintf(path, sizeof path,
           "/api/v1/namespaces/%s/configmaps?watch=1&resourceVersion=%s&timeoutSeconds=120"
           "&fieldSelector=metadata.name%%3Dscaled",
           K.ns, rv);
  json_decref(j);
  res_free(&list);
  res_t w[NW] = {0};
  h.timeout_ms = 30000;
  for (int i = 0; i < NW; i++)
    send_req(&e, &h, "GET", path, NULL, &w[i], 1);
  uint64_t t0 = uv_hrtime();
  for (int i = 0; i < NW && (uv_hrtime() - t0) / 1000000 < 20000; i++)
    while (w[i].heads == 0 && !w[i].done && (uv_hrtime() - t0) / 1000000 < 20000) {
      int never = 0;
      evs_test_run_until(&e.loop, &never, 20);
    }
  int heads = 0;
  for (int i = 0; i < NW; i++)
    heads += w[i].heads;
  /* The PATCH: /scale's merge-patch shape on a ConfigMap (no workload controller runs here). */
  h.timeout_ms = 15000;
  h.content_type = "application/merge-patch+json";
  res_t p = {0};
  snprintf(path, sizeof path, "/api/v1/namespaces/%s/configmaps/scaled", K.ns);
  t0 = uv_hrtime();
  do_req(&e, &h, "PATCH", path, "{\"data\":{\"replicas\":\"9\"}}", &p);
  uint64_t took = (uv_hrtime() - t0) / 1000000;
  if (p.err != 0 || p.status != 200)
    fail_msg("PATCH with %d watches open (%d started): %s %d after %llu ms", NW, heads,
             evs_strerror(p.err), p.status, (unsigned long long)took);
  if (took > 3000)
    fail_msg("the PATCH waited %llu ms behind the watches", (unsigned long long)took);
  fprintf(stderr, "test_patch_not_delayed_by_watches: PATCH answered in %llu ms, %d watches open\n",
          (unsigned long long)took, heads);
  res_free(&p);
  assert_int_equal(heads, NW);
  t0 = uv_hrtime();
  for (int i = 0; i < NW; i++)
    while ((w[i].stream == NULL || strstr(w[i].stream, "\"MODIFIED\"") == NULL) && !w[i].done &&
           (uv_hrtime() - t0) / 1000000 < 30000) {
      int never = 0;
      evs_test_run_until(&e.loop, &never, 20);
    }
  for (int i = 0; i < NW; i++) {
    assert_int_equal(w[i].done, 0);
    assert_non_null(w[i].stream);
    assert_non_null(strstr(w[i].stream, "\"MODIFIED\""));
  }
  env_close(&e);
  for (int i = 0; i < NW; i++) {
    assert_int_equal(w[i].err, EVS_ECANCELED);
    res_free(&w[i]);
  }
}

static json_int_t stat_int(json_t *stats, const char *key) {
  return json_integer_value(json_object_get(stats, key));
}

/* Ten requests through the proxy: it sees one connection (and so does the API server, since the
 * proxy mirrors each client connection upstream). */
static void test_keepalive_seen_by_proxy(void **state) {
  (void)state;
  SKIP_IF_NO_CONTROLPLANE();
  env_t e;
  env_init(&e);
  json_decref(proxy_control(&e, "POST", "/reset", "{}"));
  how_t h = via_proxy();
  for (int i = 0; i < 10; i++) {
    res_t r = {0};
    do_req(&e, &h, "GET", "/version", NULL, &r);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.status, 200);
    res_free(&r);
  }
  json_t *s = proxy_control(&e, "GET", "/stats", NULL);
  assert_int_equal(stat_int(s, "connections"), 1);
  assert_int_equal(stat_int(s, "requests"), 10);
  json_decref(s);
  env_close(&e);
}

static void fault(env_t *e, const char *spec) {
  json_decref(proxy_control(e, "POST", "/fault", spec));
}

static void test_faults(void **state) {
  (void)state;
  SKIP_IF_NO_CONTROLPLANE();
  env_t e;
  env_init(&e);
  how_t h = via_proxy();
  char path[128];
  snprintf(path, sizeof path, "/api/v1/namespaces/%s/configmaps", K.ns);
  res_t r = {0};

  fault(&e, "{\"kind\":\"status\",\"status\":429,\"retry_after\":\"2\"}");
  do_req(&e, &h, "GET", path, NULL, &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.status, 429);
  assert_int_equal(r.retry_after, 2);
  assert_true(evs_http_status_retryable(r.status, 1));
  res_free(&r);

  fault(&e, "{\"kind\":\"status\",\"status\":500}");
  do_req(&e, &h, "GET", path, NULL, &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.status, 500);
  res_free(&r);

  /* Dropped mid-body: the head arrived, the rest never will. Not retried (bytes were seen). */
  fault(&e, "{\"kind\":\"drop_mid_body\"}");
  do_req(&e, &h, "GET", path, NULL, &r);
  assert_int_equal(r.err, EVS_ECLOSED);
  assert_true(evs_http_error_retryable(r.err));
  res_free(&r);

  /* Slow server: 3 s of delay against a 500 ms request timeout. */
  fault(&e, "{\"kind\":\"delay\",\"delay_ms\":3000}");
  h.timeout_ms = 500;
  uint64_t t0 = uv_hrtime();
  do_req(&e, &h, "GET", path, NULL, &r);
  assert_int_equal(r.err, EVS_ETIMEDOUT);
  assert_true((uv_hrtime() - t0) / 1000000 < 2900);
  res_free(&r);
  h.timeout_ms = 0;

  /* After all that, an ordinary request works. */
  fault(&e, "{\"kind\":\"none\"}");
  do_req(&e, &h, "GET", path, NULL, &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.status, 200);
  res_free(&r);
  env_close(&e);
}

/* A watch dropped by the network ends with EVS_ECLOSED (the informer then re-watches); a watch
 * answered with 410 Gone ends normally with an ERROR event (the informer then re-lists). */
static void test_watch_dropped(void **state) {
  (void)state;
  SKIP_IF_NO_CONTROLPLANE();
  env_t e;
  env_init(&e);
  fault(&e, "{\"kind\":\"drop_watch\",\"delay_ms\":300}");
  how_t h = via_proxy();
  char path[256];
  snprintf(path, sizeof path, "/api/v1/namespaces/%s/configmaps?watch=1&timeoutSeconds=60", K.ns);
  res_t w = {0};
  send_req(&e, &h, "GET", path, NULL, &w, 1);
  assert_true(evs_test_run_until(&e.loop, &w.done, 30000));
  assert_int_equal(w.heads, 1);
  assert_int_equal(w.err, EVS_ECLOSED);
  res_free(&w);

  /* A watch turned into 410 Gone (an expired resourceVersion): a 200 stream carrying one ERROR
   * event with the Status, then its end, which is a normal completion for the client. */
  fault(&e, "{\"kind\":\"gone\"}");
  send_req(&e, &h, "GET", path, NULL, &w, 1);
  assert_true(evs_test_run_until(&e.loop, &w.done, 30000));
  assert_int_equal(w.err, 0);
  assert_int_equal(w.status, 200);
  json_t *ev = json_loads(w.stream, 0, NULL);
  assert_non_null(ev);
  assert_string_equal(json_string_value(json_object_get(ev, "type")), "ERROR");
  assert_int_equal(json_integer_value(json_object_get(json_object_get(ev, "object"), "code")), 410);
  json_decref(ev);
  res_free(&w);
  fault(&e, "{\"kind\":\"none\"}");
  env_close(&e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_version_bearer),
      cmocka_unit_test(test_client_certificate),
      cmocka_unit_test(test_wrong_ca),
      cmocka_unit_test(test_paginated_list),
      cmocka_unit_test(test_watch_events),
      cmocka_unit_test(test_merge_patch),
      cmocka_unit_test(test_patch_not_delayed_by_watches),
      cmocka_unit_test(test_keepalive_seen_by_proxy),
      cmocka_unit_test(test_faults),
      cmocka_unit_test(test_watch_dropped),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
