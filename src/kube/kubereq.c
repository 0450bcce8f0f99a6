/* See include/evscale/kubereq.h. */
#include "evscale/kubereq.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

int evs_kubereq_send(const evs_kubereq_conn_t *conn, const char *method, const char *path,
                     const char *content_type, const char *body, evs_prio_t prio,
                     evs_http_done_cb cb, void *arg, evs_http_req_t **out) {
  if (conn == NULL || conn->http == NULL || method == NULL || path == NULL || cb == NULL)
    return UV_EINVAL;
  char url[1024];
  int n = snprintf(url, sizeof url, "%s%s", conn->base_url, path);
  if (n < 0 || (size_t)n >= sizeof url)
    return UV_EINVAL;
  evs_http_header_t hs[2 + EVS_KUBEREQ_MAX_DECORATION];
  size_t nh = 0;
  hs[nh++] = (evs_http_header_t){"Accept", EVS_KUBEREQ_JSON};
  if (body != NULL)
    hs[nh++] = (evs_http_header_t){"Content-Type", content_type ? content_type : EVS_KUBEREQ_JSON};
  if (conn->decorate != NULL) {
    int d = conn->decorate(conn->decorate_arg, hs + nh, EVS_KUBEREQ_MAX_DECORATION);
    if (d < 0)
      return d;
    nh += (size_t)d > EVS_KUBEREQ_MAX_DECORATION ? EVS_KUBEREQ_MAX_DECORATION : (size_t)d;
  }
  evs_http_request_opts_t o = {.method = method,
                               .url = url,
                               .headers = hs,
                               .nheaders = nh,
                               .body = body,
                               .body_len = body ? strlen(body) : 0,
                               .tls = conn->tls,
                               .timeout_ms = conn->timeout_ms,
                               .limiter = conn->limiter,
                               .priority = prio,
                               .on_done = cb,
                               .arg = arg};
  return evs_http_request(conn->http, &o, out);
}

const char *evs_kubereq_status_message(const evs_http_response_t *resp, char *buf, size_t cap) {
  if (cap == 0)
    return buf;
  snprintf(buf, cap, "HTTP %d", resp ? resp->status : 0);
  if (resp == NULL || resp->body == NULL)
    return buf;
  json_t *j = json_loadb(resp->body, resp->body_len, 0, NULL);
  const char *m = j ? json_string_value(json_object_get(j, "message")) : NULL;
  if (m != NULL)
    snprintf(buf, cap, "%s", m);
  json_decref(j);
  return buf;
}
