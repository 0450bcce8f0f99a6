/* Test helpers for the Kubernetes writers (scale writer, status patcher, lease elector) against
 * the real API server: finds the control plane as test_kube_http.c does (KUBE_* from the
 * environment, else the shared one of test/e2e/evstest.py controlplane()), builds an
 * evs_kubereq_conn_t with a Bearer decorator, sends blocking-style requests by running the loop,
 * runs kubectl and counts requests in the API server's audit log (KUBE_AUDIT_LOG).
 * Blocking is fine here: it is test setup, not the loop. */
#ifndef EVSCALE_TEST_KUBE_WRITES_HELPERS_H
#define EVSCALE_TEST_KUBE_WRITES_HELPERS_H

#include <jansson.h>

#include "evscale/error.h"
#include "evscale/http_client.h"
#include "evscale/kubereq.h"
#include "kube_env.h"
#include "net_helpers.h"

typedef struct {
  int found;
  char url[256], ca[512], token[256], kubeconfig[512], audit[512];
  char auth[300];
  evs_tls_config_t *tls;
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
  snprintf(KW.auth, sizeof KW.auth, "Bearer %s", KW.token);
  evs_tls_options_t o = {.ca_file = KW.ca};
  const char *why = NULL;
  if (evs_tls_config_new(&o, &KW.tls, &why) != 0)
    return -1;
  KW.found = 1;
  return 0;
}

static inline int kw_decorate(void *arg, evs_http_header_t *hs, size_t cap) {
  (void)arg;
  if (cap < 1)
    return 0;
  hs[0] = (evs_http_header_t){"Authorization", KW.auth};
  return 1;
}

static inline void kw_conn(evs_kubereq_conn_t *c, evs_http_client_t *http,
                           evs_ratelimit_t *limiter) {
  memset(c, 0, sizeof *c);
  c->http = http;
  c->limiter = limiter;
  c->tls = KW.tls;
  snprintf(c->base_url, sizeof c->base_url, "%s", KW.url);
  c->decorate = kw_decorate;
}

typedef struct {
  int done, err, status;
  char *body;
} kw_res_t;

static inline void kw__on_done(evs_http_req_t *req, int err, const evs_http_response_t *resp,
                               void *arg) {
  (void)req;
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
static inline int kw_req(uv_loop_t *loop, const evs_kubereq_conn_t *c, const char *method,
                         const char *path, const char *ctype, const char *body, char **out) {
  kw_res_t r = {0};
  int rc = evs_kubereq_send(c, method, path, ctype, body, EVS_PRIO_NORMAL, kw__on_done, &r, NULL);
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
static inline void kw__set_flag(void *arg) { *(int *)arg = 1; }

static inline int kw_namespace(const char *ns, int create) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  evs_http_client_t *http = NULL;
  if (evs_http_client_new(&loop, NULL, &http) != 0)
    return -1;
  evs_kubereq_conn_t c;
  kw_conn(&c, http, NULL);
  char path[128], body[128];
  int st;
  if (create) {
    snprintf(body, sizeof body, "{\"metadata\":{\"name\":\"%s\"}}", ns);
    st = kw_req(&loop, &c, "POST", "/api/v1/namespaces", EVS_KUBEREQ_JSON, body, NULL);
  } else {
    snprintf(path, sizeof path, "/api/v1/namespaces/%s", ns);
    st = kw_req(&loop, &c, "DELETE", path, NULL, NULL, NULL);
  }
  int closed = 0;
  evs_http_client_close(http, kw__set_flag, &closed);
  evs_test_run_until(&loop, &closed, 10000);
  if (evs_test_loop_close(&loop) != 0)
    return -1;
  return st;
}

#endif
