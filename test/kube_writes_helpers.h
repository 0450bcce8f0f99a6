/* Test helpers for the Kubernetes writers (scale writer, status patcher, lease elector) against
 * the real API server: finds the control plane as test_kube_http.c does (KUBE_* from the
 * environment, else the shared one of test/e2e/evstest.py controlplane()), opens an evs_kube_t
 * (evscale/kube.h) on its kubeconfig, sends blocking-style requests by running the loop,
 * runs kubectl and counts requests in the API server's audit log (KUBE_AUDIT_LOG).
 * Blocking is fine here: it is test setup, not the loop. */
#ifndef EVSCALE_TEST_KUBE_WRITES_HELPERS_H
#define EVSCALE_TEST_KUBE_WRITES_HELPERS_H

#include <jansson.h>

#include "evscale/error.h"
#include "evscale/http_client.h"
#include "evscale/kube.h"
#include "kube_env.h"
#include "net_helpers.h"

typedef struct {
  int found;
  char url[256], ca[512], token[256], kubeconfig[512], audit[512];
} kw_env_t;

static kw_env_t KW;

/* 0 when a control plane answers (KW filled), -1 otherwise. */
static inline int kw_find_controlplane(void) {
  evs_test_kube_env_t e;
  if (evs_test_kube_env(&e) != 0)
    return -1;
  EVS_TEST_COPY(KW.url, e.url);
  EVS_TEST_COPY(KW.ca, e.ca);
  EVS_TEST_COPY(KW.token, e.token);
  EVS_TEST_COPY(KW.kubeconfig, e.kubeconfig);
  EVS_TEST_COPY(KW.audit, e.audit);
  if (KW.kubeconfig[0] == '\0') /* the clients below open the control plane's kubeconfig */
    return -1;
  KW.found = 1;
  return 0;
}

/* An open client of the control plane's kubeconfig (its admin token), as the process builds
 * one: qps <= 0 is unlimited; read_only as --dry-run. Runs the loop until it is open. */
static inline void kw__opened(evs_kube_t *k, int status, const char *msg, void *arg) {
  (void)k;
  if (status != 0)
    fprintf(stderr, "kw_kube: open failed: %s\n", msg ? msg : "?");
  *(int *)arg = status == 0 ? 1 : -1;
}

static inline evs_kube_t *kw_kube_opts(uv_loop_t *loop, double qps, unsigned burst, int read_only) {
  evs_kube_options_t o = {.kubeconfig = KW.kubeconfig,
                          .qps = qps,
                          .burst = burst,
                          .request_timeout_ms = 30000,
                          .read_only = read_only};
  evs_kube_t *k = NULL;
  if (evs_kube_new(loop, &o, &k) != 0)
    return NULL;
  int opened = 0;
  if (evs_kube_open(k, kw__opened, &opened) != 0 || !evs_test_run_until(loop, &opened, 60000) ||
      opened != 1)
    return NULL; /* the test fails on NULL; the loop's leftovers do not matter then */
  return k;
}

static inline evs_kube_t *kw_kube(uv_loop_t *loop) { return kw_kube_opts(loop, 0, 1, 0); }

static inline void kw__set_flag(void *arg) { *(int *)arg = 1; }

/* Closes the client and runs the loop until it is freed. 0, or -1 when it took too long. */
static inline int kw_kube_close(uv_loop_t *loop, evs_kube_t *k) {
  int closed = 0;
  evs_kube_close(k, kw__set_flag, &closed);
  return evs_test_run_until(loop, &closed, 20000) ? 0 : -1;
}

typedef struct {
  int done, err, status;
  char *body;
} kw_res_t;

static inline void kw__on_done(evs_kube_req_t *req, int err, const evs_http_response_t *resp,
                               const char *msg, void *arg) {
  (void)req;
  (void)msg;
  kw_res_t *r = arg;
  r->done = 1;
  r->err = err;
  if (resp != NULL) {
    r->status = resp->status;
    r->body = resp->body ? strndup(resp->body, resp->body_len) : NULL;
  }
}

/* Sends and runs the loop until the answer; returns the HTTP status (negative: transport error).
 * *body (may be NULL) gets a malloc'd copy of the body. */
static inline int kw_req(uv_loop_t *loop, evs_kube_t *k, const char *method, const char *path,
                         const char *ctype, const char *body, char **out) {
  kw_res_t r = {0};
  evs_kube_request_opts_t o = {.verb = method,
                               .path = path,
                               .content_type = body ? (ctype ? ctype : EVS_KUBE_JSON) : NULL,
                               .body = body,
                               .body_len = body ? strlen(body) : 0,
                               .on_done = kw__on_done,
                               .arg = &r};
  int rc = evs_kube_request(k, &o, NULL);
  if (rc != 0)
    return rc;
  if (!evs_test_run_until(loop, &r.done, 60000))
    return EVS_ETIMEDOUT;
  if (out != NULL)
    *out = r.body;
  else
    free(r.body);
  return r.err != 0 ? r.err : r.status;
}

/* kubectl with the control plane's kubeconfig; its stdout (malloc'd) or NULL on failure. */
static inline char *kw_kubectl(const char *args) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "KUBECONFIG=%s kubectl %s 2>/dev/null", KW.kubeconfig, args);
  FILE *p = popen(cmd, "r");
  if (p == NULL)
    return NULL;
  size_t cap = 4096, len = 0;
  char *out = malloc(cap);
  size_t n;
  while ((n = fread(out + len, 1, cap - len - 1, p)) > 0) {
    len += n;
    if (cap - len < 2)
      out = realloc(out, cap *= 2);
  }
  out[len] = '\0';
  if (pclose(p) != 0) {
    free(out);
    return NULL;
  }
  return out;
}

/* Size of the audit log now: count from here on. */
static inline long kw_audit_mark(void) {
  struct stat st;
  return stat(KW.audit, &st) == 0 ? (long)st.st_size : 0;
}

/* Audit entries after `mark` with this verb whose requestURI starts with uri_prefix (and,
 * when user_agent != NULL, whose userAgent contains it). ResponseComplete stage only. */
static inline int kw_audit_count(long mark, const char *verb, const char *uri_prefix) {
  FILE *f = fopen(KW.audit, "r");
  if (f == NULL)
    return -1;
  fseek(f, mark, SEEK_SET);
  char v[64], u[600];
  snprintf(v, sizeof v, "\"verb\":\"%s\"", verb);
  snprintf(u, sizeof u, "\"requestURI\":\"%s", uri_prefix);
  int n = 0;
  char *line = NULL;
  size_t cap = 0;
  while (getline(&line, &cap, f) > 0)
    if (strstr(line, v) && strstr(line, u) && strstr(line, "\"stage\":\"ResponseComplete\""))
      n++;
  free(line);
  fclose(f);
  return n;
}

/* Waits (blocking) until the audit log has been written up to now: the API server writes
 * entries when the response completes, so a short settle suffices. */
static inline void kw_audit_settle(void) { usleep(300 * 1000); }

/* Creates (create = 1, expecting 201) or deletes the test namespace `ns` on a loop and client of
 * its own, so a suite's setup and teardown need nothing else. Returns the HTTP status. */
static inline int kw_namespace(const char *ns, int create) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  evs_kube_t *k = kw_kube(&loop);
  if (k == NULL)
    return -1;
  char path[128], body[128];
  int st;
  if (create) {
    snprintf(body, sizeof body, "{\"metadata\":{\"name\":\"%s\"}}", ns);
    st = kw_req(&loop, k, "POST", "/api/v1/namespaces", EVS_KUBE_JSON, body, NULL);
  } else {
    snprintf(path, sizeof path, "/api/v1/namespaces/%s", ns);
    st = kw_req(&loop, k, "DELETE", path, NULL, NULL, NULL);
  }
  if (kw_kube_close(&loop, k) != 0 || evs_test_loop_close(&loop) != 0)
    return -1;
  return st;
}

/* test/faultproxy.py between a client and the control plane, for the faults the real server will
 * not produce on demand (see the script's docstring). p->kubeconfig points a client at it with
 * the control plane's token. 0, or -1 when it did not start. */
typedef struct {
  evs_test_server_t srv;
  int cport; /* its control port */
  char kubeconfig[400];
} kw_proxy_t;

static inline int kw_proxy_start(kw_proxy_t *p) {
  memset(p, 0, sizeof *p);
  if (evs_test_faultproxy_start(&p->srv, KW.url, KW.ca, &p->cport) != 0)
    return -1;
  snprintf(p->kubeconfig, sizeof p->kubeconfig, "%s/kubeconfig", p->srv.dir);
  FILE *f = p->cport > 0 ? fopen(p->kubeconfig, "w") : NULL;
  if (f == NULL)
    return -1;
  fprintf(f,
          "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n"
          "    server: https://127.0.0.1:%d\n    certificate-authority: %s\n"
          "users:\n- name: u\n  user:\n    token: %s\n"
          "contexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n",
          p->srv.port, evs_test_cert("ca.crt"), KW.token);
  fclose(f);
  return 0;
}

/* Sets the proxy's fault (json as its POST /fault takes), or clears it and its statistics
 * (json NULL). 0 on success. */
static inline int kw_proxy_fault(const kw_proxy_t *p, const char *json) {
  char cmd[1200];
  snprintf(cmd, sizeof cmd,
           "curl -sf -X POST -H 'Content-Type: application/json' -d '%s' "
           "http://127.0.0.1:%d/%s >/dev/null",
           json ? json : "{}", p->cport, json ? "fault" : "reset");
  return system(cmd) == 0 ? 0 : -1;
}

/* Requests the proxy has received for path (any verb, query left out; NULL: all requests) since
 * its last reset, or -1. */
static inline int kw_proxy_count(const kw_proxy_t *p, const char *path) {
  char cmd[200];
  snprintf(cmd, sizeof cmd, "curl -sf http://127.0.0.1:%d/stats", p->cport);
  FILE *f = popen(cmd, "r");
  if (f == NULL)
    return -1;
  json_t *j = json_loadf(f, 0, NULL);
  pclose(f);
  json_t *n =
      path ? json_object_get(json_object_get(j, "by_path"), path) : json_object_get(j, "requests");
  int r = j == NULL ? -1 : (int)json_integer_value(n);
  json_decref(j);
  return r;
}

static inline void kw_proxy_stop(kw_proxy_t *p) {
  if (p->srv.pid > 0)
    evs_test_server_stop(&p->srv);
}

#endif
