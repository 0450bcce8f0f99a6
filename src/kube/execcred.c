/* Exec credential plugins: KUBERNETES_EXEC_INFO, the child process on libuv, the decoder.
 * See include/evscale/execcred.h for the protocol and its source. */
#include "evscale/execcred.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <mbedtls/base64.h>

#include "evscale/buf.h"
#include "evscale/error.h"

extern char **environ;

enum { OUT_MAX = 1 << 20, ERR_TAIL = 2048 };

void evs_execcred_clear(evs_execcred_t *c) {
  if (c == NULL)
    return;
  /* Wipe: a token or key should not linger in freed memory. */
  if (c->token)
    memset(c->token, 0, strlen(c->token));
  if (c->key_pem)
    memset(c->key_pem, 0, strlen(c->key_pem));
  free(c->token);
  free(c->cert_pem);
  free(c->key_pem);
  memset(c, 0, sizeof *c);
}

static const char *version_str(evs_exec_version_t v) {
  return v == EVS_EXEC_V1 ? "client.authentication.k8s.io/v1"
                          : "client.authentication.k8s.io/v1beta1";
}

int evs_execcred_info(const evs_kubeconfig_t *kc, char **out) {
  *out = NULL;
  json_t *root = json_object(), *spec = json_object();
  if (root == NULL || spec == NULL)
    goto nomem;
  json_object_set_new(root, "kind", json_string("ExecCredential"));
  json_object_set_new(root, "apiVersion", json_string(version_str(kc->exec->version)));
  json_object_set_new(spec, "interactive", json_false());
  if (kc->exec->provide_cluster_info) {
    json_t *cl = json_object();
    if (cl == NULL)
      goto nomem;
    json_object_set_new(spec, "cluster", cl);
    json_object_set_new(cl, "server", json_string(kc->server ? kc->server : ""));
    if (kc->tls_server_name)
      json_object_set_new(cl, "tls-server-name", json_string(kc->tls_server_name));
    if (kc->insecure)
      json_object_set_new(cl, "insecure-skip-tls-verify", json_true());
    if (kc->ca_pem) {
      /* []byte fields travel as standard base64, as in the kubeconfig itself. */
      size_t need = 0;
      (void)mbedtls_base64_encode(NULL, 0, &need, (const unsigned char *)kc->ca_pem,
                                  kc->ca_pem_len);
      unsigned char *b = malloc(need + 1);
      size_t got = 0;
      if (b == NULL || mbedtls_base64_encode(b, need + 1, &got, (const unsigned char *)kc->ca_pem,
                                             kc->ca_pem_len) != 0) {
        free(b);
        goto nomem;
      }
      b[got] = '\0';
      json_object_set_new(cl, "certificate-authority-data", json_string((char *)b));
      free(b);
    }
  }
  json_object_set_new(root, "spec", spec);
  spec = NULL;
  *out = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  return *out ? 0 : UV_ENOMEM;
nomem:
  json_decref(spec);
  json_decref(root);
  return UV_ENOMEM;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (H. Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = (unsigned)(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char *s, int n, int *v) {
  *v = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    *v = *v * 10 + (s[i] - '0');
  }
  return 0;
}

/* RFC 3339 date-time (metav1.Time): "2006-01-02T15:04:05Z", fractions and offsets allowed. */
static int parse_rfc3339(const char *s, int64_t *ms) {
  int y, mo, d, h, mi, se;
  if (strlen(s) < 20 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
      digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') || digits(s + 11, 2, &h) ||
      s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' || digits(s + 17, 2, &se))
    return -1;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
    return -1;
  const char *p = s + 19;
  int64_t frac_ms = 0;
  if (*p == '.') {
    int n = 0;
    for (p++; *p >= '0' && *p <= '9'; p++, n++)
      if (n < 3)
        frac_ms = frac_ms * 10 + (*p - '0');
    if (n == 0)
      return -1;
    for (; n < 3; n++)
      frac_ms *= 10;
  }
  int64_t off = 0;
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    int oh, om;
    if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om) || oh > 23 || om > 59)
      return -1;
    off = (*p == '+' ? 1 : -1) * (int64_t)(oh * 3600 + om * 60);
    p += 6;
  } else {
    return -1;
  }
  if (*p != '\0')
    return -1;
  int64_t secs = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + se;
  *ms = (secs - off) * 1000 + frac_ms;
  return 0;
}

int evs_execcred_decode(const char *text, size_t len, evs_exec_version_t version,
                        evs_execcred_t *out, char *why, size_t whycap) {
  memset(out, 0, sizeof *out);
  json_error_t jerr;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  int rc = EVS_EPARSE;
  if (root == NULL || !json_is_object(root)) {
    snprintf(why, whycap, "decoding stdout: not a JSON object (%s)",
             root ? "another JSON value" : jerr.text);
    goto out;
  }
  const char *api = json_string_value(json_object_get(root, "apiVersion"));
  const char *kind = json_string_value(json_object_get(root, "kind"));
  if (kind == NULL || strcmp(kind, "ExecCredential") != 0) {
    snprintf(why, whycap, "decoding stdout: kind is not ExecCredential");
    goto out;
  }
  if (api == NULL || strcmp(api, version_str(version)) != 0) {
    snprintf(why, whycap,
             "exec plugin is configured to use API version %s, plugin returned version %.80s",
             version_str(version), api ? api : "(none)");
    goto out;
  }
  json_t *st = json_object_get(root, "status");
  if (!json_is_object(st)) {
    snprintf(why, whycap, "exec plugin didn't return a status field");
    goto out;
  }
  const char *tok = json_string_value(json_object_get(st, "token"));
  const char *crt = json_string_value(json_object_get(st, "clientCertificateData"));
  const char *key = json_string_value(json_object_get(st, "clientKeyData"));
  const char *exp = json_string_value(json_object_get(st, "expirationTimestamp"));
  if (tok && !*tok)
    tok = NULL;
  if (crt && !*crt)
    crt = NULL;
  if (key && !*key)
    key = NULL;
  if (!tok && !crt && !key) {
    snprintf(why, whycap, "exec plugin didn't return a token or cert/key pair");
    goto out;
  }
  if (!crt != !key) {
    snprintf(why, whycap, "exec plugin returned only certificate or key, not both");
    goto out;
  }
  if (exp && *exp && parse_rfc3339(exp, &out->expires_ms) != 0) {
    snprintf(why, whycap, "exec plugin returned an unparsable expirationTimestamp \"%.40s\"", exp);
    goto out;
  }
  out->token = tok ? strdup(tok) : NULL;
  out->cert_pem = crt ? strdup(crt) : NULL;
  out->key_pem = key ? strdup(key) : NULL;
  if ((tok && !out->token) || (crt && !out->cert_pem) || (key && !out->key_pem)) {
    evs_execcred_clear(out);
    rc = UV_ENOMEM;
    snprintf(why, whycap, "out of memory");
    goto out;
  }
  rc = 0;
  why[0] = '\0';
out:
  json_decref(root);
  return rc;
}

int64_t evs_execcred_refresh_at(int64_t issued_ms, int64_t expires_ms) {
  if (expires_ms <= 0)
    return INT64_MAX;
  int64_t life = expires_ms - issued_ms;
  if (life < 120000)
    return issued_ms + (life > 0 ? life / 2 : 0);
  return expires_ms - 60000;
}

/* --- the child process ------------------------------------------------------------------ */

struct evs_execcred_run_s {
  uv_process_t proc;
  uv_pipe_t out, err;
  uv_timer_t timer;
  int open_handles;
  evs_execcred_cb cb;
  void *arg;
  evs_exec_version_t version;
  char *command; /* for messages */
  char *hint;
  char *obuf;
  size_t olen, ocap;
  char etail[ERR_TAIL];
  size_t elen;
  int exited, out_eof, err_eof;
  int64_t exit_status;
  int term_signal;
  int result; /* set when the run is decided early (timeout, cancel, overflow) */
  int done;
};

static void run_closed(uv_handle_t *h) {
  evs_execcred_run_t *r = h->data;
  if (--r->open_handles > 0)
    return;
  if (r->obuf)
    memset(r->obuf, 0, r->olen); /* it held the credential */
  free(r->obuf);
  free(r->command);
  free(r->hint);
  free(r);
}

static void close_all(evs_execcred_run_t *r) {
  uv_handle_t *hs[] = {(uv_handle_t *)&r->proc, (uv_handle_t *)&r->out, (uv_handle_t *)&r->err,
                       (uv_handle_t *)&r->timer};
  for (size_t i = 0; i < 4; i++)
    if (!uv_is_closing(hs[i]))
      uv_close(hs[i], run_closed);
}

static void finish(evs_execcred_run_t *r) {
  if (r->done)
    return;
  /* Decide only once the child has exited and both pipes are drained, unless decided early. */
  if (r->result == 0 && !(r->exited && r->out_eof && r->err_eof))
    return;
  r->done = 1;
  char msg[ERR_TAIL + 512];
  evs_execcred_t cred = {0};
  int status = r->result;
  if (status == EVS_ETIMEDOUT) {
    snprintf(msg, sizeof msg, "exec plugin %s: killed after its timeout", r->command);
  } else if (status == EVS_ECANCELED) {
    snprintf(msg, sizeof msg, "exec plugin %s: canceled", r->command);
  } else if (status == EVS_ETOOBIG) {
    snprintf(msg, sizeof msg, "exec plugin %s: more than %d bytes on stdout", r->command, OUT_MAX);
  } else if (r->exit_status != 0 || r->term_signal != 0) {
    status = EVS_ESTATUS;
    /* The plugin's stderr is its message to the user; keep it on one line. */
    for (size_t i = 0; i < r->elen; i++)
      if (r->etail[i] == '\n' || r->etail[i] == '\r')
        r->etail[i] = ' ';
    while (r->elen > 0 && r->etail[r->elen - 1] == ' ')
      r->elen--;
    if (r->term_signal)
      snprintf(msg, sizeof msg, "exec plugin %s: killed by signal %d%s%.*s", r->command,
               r->term_signal, r->elen ? ": " : "", (int)r->elen, r->etail);
    else
      snprintf(msg, sizeof msg, "exec plugin %s: exit status %lld%s%.*s", r->command,
               (long long)r->exit_status, r->elen ? ": " : "", (int)r->elen, r->etail);
  } else {
    char why[256];
    status =
        evs_execcred_decode(r->obuf ? r->obuf : "", r->olen, r->version, &cred, why, sizeof why);
    if (status != 0)
      snprintf(msg, sizeof msg, "exec plugin %s: %s", r->command, why);
    else
      msg[0] = '\0';
  }
  r->cb(r->arg, status, status == 0 ? &cred : NULL, msg);
  evs_execcred_clear(&cred); /* whatever the callback did not take */
  close_all(r);
}

static void decide(evs_execcred_run_t *r, int result) {
  if (r->result == 0)
    r->result = result;
  if (!r->exited)
    uv_process_kill(&r->proc, SIGKILL);
  finish(r);
}

static void run_exited(uv_process_t *p, int64_t status, int sig) {
  evs_execcred_run_t *r = p->data;
  r->exited = 1;
  r->exit_status = status;
  r->term_signal = sig;
  uv_timer_stop(&r->timer);
  finish(r);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  evs_execcred_run_t *r = h->data;
  (void)suggested;
  if ((uv_pipe_t *)h == &r->err) {
    static char scratch[1024]; /* stderr bytes are folded into etail at once */
    *buf = uv_buf_init(scratch, sizeof scratch);
    return;
  }
  /* At least 4 KiB to read into, plus the NUL that on_out writes after the bytes. */
  if (evs_buf_reserve((void **)&r->obuf, &r->ocap, r->olen + 4096 + 1, 1, 8192) != 0) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  *buf = uv_buf_init(r->obuf + r->olen, (unsigned)(r->ocap - r->olen - 1));
}

static void on_out(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  evs_execcred_run_t *r = s->data;
  (void)buf;
  if (n > 0) {
    r->olen += (size_t)n;
    r->obuf[r->olen] = '\0';
    if (r->olen > OUT_MAX) {
      uv_read_stop(s);
      r->out_eof = 1;
      decide(r, EVS_ETOOBIG);
    }
    return;
  }
  if (n < 0) {
    uv_read_stop(s);
    r->out_eof = 1;
    if (n == UV_ENOBUFS)
      decide(r, UV_ENOMEM);
    else
      finish(r);
  }
}

static void on_err(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  evs_execcred_run_t *r = s->data;
  if (n > 0) {
    /* Keep the last ERR_TAIL bytes. */
    size_t k = (size_t)n;
    const char *p = buf->base;
    if (k >= ERR_TAIL) {
      p += k - ERR_TAIL;
      k = ERR_TAIL;
    }
    if (r->elen + k > ERR_TAIL) {
      size_t drop = r->elen + k - ERR_TAIL;
      memmove(r->etail, r->etail + drop, r->elen - drop);
      r->elen -= drop;
    }
    memcpy(r->etail + r->elen, p, k);
    r->elen += k;
    return;
  }
  if (n < 0) {
    uv_read_stop(s);
    r->err_eof = 1;
    finish(r);
  }
}

static void on_timeout(uv_timer_t *t) { decide(t->data, EVS_ETIMEDOUT); }

void evs_execcred_cancel(evs_execcred_run_t *r) {
  if (r == NULL || r->done)
    return;
  decide(r, EVS_ECANCELED);
}

int evs_execcred_start(uv_loop_t *loop, const evs_kubeconfig_t *kc, uint64_t timeout_ms,
                       evs_execcred_cb cb, void *arg, evs_execcred_run_t **out) {
  if (out)
    *out = NULL;
  if (kc == NULL || kc->exec == NULL || kc->exec->command == NULL || cb == NULL)
    return UV_EINVAL;
  const evs_kubeconfig_exec_t *x = kc->exec;
  char *info = NULL;
  int rc = evs_execcred_info(kc, &info);
  if (rc != 0)
    return rc;
  /* environ, then the kubeconfig's env (later entries override earlier ones in execve's
   * getenv: the child sees the kubeconfig's value), then KUBERNETES_EXEC_INFO. */
  size_t nenv = 0;
  while (environ && environ[nenv])
    nenv++;
  char **env = calloc(nenv + x->nenv + 2, sizeof *env);
  char **argv = calloc(x->nargs + 2, sizeof *argv);
  char **owned = calloc(x->nenv + 1, sizeof *owned);
  evs_execcred_run_t *r = calloc(1, sizeof *r);
  size_t ne = 0, no = 0;
  rc = UV_ENOMEM;
  if (!env || !argv || !owned || !r)
    goto fail;
  /* Drop inherited entries the kubeconfig or the protocol sets, so each name appears once. */
  for (size_t i = 0; i < nenv; i++) {
    const char *e = environ[i];
    int shadowed = strncmp(e, "KUBERNETES_EXEC_INFO=", 21) == 0;
    for (size_t j = 0; j < x->nenv && !shadowed; j++) {
      size_t l = strlen(x->env[j].name);
      shadowed = strncmp(e, x->env[j].name, l) == 0 && e[l] == '=';
    }
    if (!shadowed)
      env[ne++] = (char *)e;
  }
  for (size_t j = 0; j < x->nenv; j++) {
    size_t a = strlen(x->env[j].name), b = strlen(x->env[j].value);
    char *s = malloc(a + b + 2);
    if (s == NULL)
      goto fail;
    memcpy(s, x->env[j].name, a);
    s[a] = '=';
    memcpy(s + a + 1, x->env[j].value, b + 1);
    owned[no++] = s;
    env[ne++] = s;
  }
  size_t il = strlen(info);
  char *ie = malloc(il + sizeof "KUBERNETES_EXEC_INFO=");
  if (ie == NULL)
    goto fail;
  memcpy(ie, "KUBERNETES_EXEC_INFO=", 21);
  memcpy(ie + 21, info, il + 1);
  owned[no++] = ie;
  env[ne++] = ie;
  argv[0] = x->command;
  for (size_t i = 0; i < x->nargs; i++)
    argv[i + 1] = x->args[i];

  r->cb = cb;
  r->arg = arg;
  r->version = x->version;
  r->command = strdup(x->command);
  r->hint = x->install_hint ? strdup(x->install_hint) : NULL;
  if (r->command == NULL)
    goto fail;
  uv_pipe_init(loop, &r->out, 0);
  uv_pipe_init(loop, &r->err, 0);
  uv_timer_init(loop, &r->timer);
  r->out.data = r->err.data = r->timer.data = r->proc.data = r;
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE; /* no terminal: the plugin gets /dev/null */
  stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[1].data.stream = (uv_stream_t *)&r->out;
  stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[2].data.stream = (uv_stream_t *)&r->err;
  uv_process_options_t po = {0};
  po.exit_cb = run_exited;
  po.file = x->command;
  po.args = argv;
  po.env = env;
  po.stdio_count = 3;
  po.stdio = stdio;
  rc = uv_spawn(loop, &r->proc, &po);
  if (rc != 0) {
    /* The process handle is initialised even on failure and must be closed too. */
    r->open_handles = 4;
    r->done = 1;
    uv_close((uv_handle_t *)&r->proc, run_closed);
    uv_close((uv_handle_t *)&r->out, run_closed);
    uv_close((uv_handle_t *)&r->err, run_closed);
    uv_close((uv_handle_t *)&r->timer, run_closed);
    r = NULL; /* freed by run_closed */
    goto fail;
  }
  r->open_handles = 4;
  uv_read_start((uv_stream_t *)&r->out, on_alloc, on_out);
  uv_read_start((uv_stream_t *)&r->err, on_alloc, on_err);
  uv_timer_start(&r->timer, on_timeout, timeout_ms ? timeout_ms : 30000, 0);
  if (out)
    *out = r;
  rc = 0;
  r = NULL;
fail:
  for (size_t i = 0; i < no; i++)
    free(owned[i]);
  free(owned);
  free(env);
  free(argv);
  free(info);
  if (r) {
    free(r->command);
    free(r->hint);
    free(r);
  }
  return rc;
}

int evs_execcred_start_error(const evs_kubeconfig_t *kc, int rc, char *msg, size_t cap) {
  const evs_kubeconfig_exec_t *x = kc->exec;
  return snprintf(msg, cap, "exec plugin %s could not be started: %s%s%s",
                  x && x->command ? x->command : "(none)", evs_strerror(rc),
                  x && x->install_hint ? "; " : "", x && x->install_hint ? x->install_hint : "");
}
