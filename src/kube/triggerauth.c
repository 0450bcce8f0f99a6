/* Trigger authentication and target environment, as KEDA v2.20.2 resolves them. See
 * evscale/triggerauth.h; KEDA references are to kedacore/keda at tag v2.20.2 (commit
 * 68a5b5028f35b22d50597c69819ab32c4e92f21a). */
#include "evscale/triggerauth.h"
#include "evscale/buf.h"
#include "evscale/error.h"

#include <mbedtls/base64.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Decoding: two passes over the spec, the first counting, the second filling one allocation. */

typedef struct {
  int fill;
  size_t n_sec, n_cm, n_env, bytes;
  evs_triggerauth_ref_t *sec, *cm;
  evs_triggerauth_env_t *env;
  char *p; /* next string byte (fill) */
  unsigned unsupported;
  const char *pod_identity;
} bld_t;

/* A string field: "" when absent or null, EVS_EPARSE for another type. */
static int str_field(bld_t *b, const json_t *o, const char *key, const char **dst) {
  const json_t *v = json_object_get(o, key);
  const char *s = "";
  size_t len = 0;
  if (v != NULL && !json_is_null(v)) {
    if (!json_is_string(v))
      return EVS_EPARSE;
    s = json_string_value(v);
    len = strlen(s); /* a string with a NUL (not from a real server) is cut there */
  }
  if (!b->fill) {
    b->bytes += len + 1;
    return 0;
  }
  memcpy(b->p, s, len + 1);
  *dst = b->p;
  b->p += len + 1;
  return 0;
}

/* spec[key]: NULL when absent or null; EVS_EPARSE in *rc when not an array. */
static const json_t *list_of(const json_t *spec, const char *key, int *rc) {
  const json_t *a = json_object_get(spec, key);
  if (a == NULL || json_is_null(a))
    return NULL;
  if (!json_is_array(a))
    *rc = EVS_EPARSE;
  return json_is_array(a) ? a : NULL;
}

/* secretTargetRef / configMapTargetRef (AuthTargetRef: parameter, name, key). */
static int refs(bld_t *b, const json_t *spec, const char *key, evs_triggerauth_ref_t *out,
                size_t *n) {
  int rc = 0;
  const json_t *a = list_of(spec, key, &rc), *e;
  size_t i;
  json_array_foreach(a, i, e) {
    evs_triggerauth_ref_t tmp, *r = b->fill ? &out[i] : &tmp;
    if (!json_is_object(e))
      return EVS_EPARSE;
    if ((rc = str_field(b, e, "parameter", &r->parameter)) != 0 ||
        (rc = str_field(b, e, "name", &r->name)) != 0 ||
        (rc = str_field(b, e, "key", &r->key)) != 0)
      return rc;
  }
  *n = a != NULL ? json_array_size(a) : 0;
  return rc;
}

/* env (AuthEnvironment: parameter, name, containerName). */
static int envs(bld_t *b, const json_t *spec) {
  int rc = 0;
  const json_t *a = list_of(spec, "env", &rc), *e;
  size_t i;
  json_array_foreach(a, i, e) {
    evs_triggerauth_env_t tmp, *r = b->fill ? &b->env[i] : &tmp;
    if (!json_is_object(e))
      return EVS_EPARSE;
    if ((rc = str_field(b, e, "parameter", &r->parameter)) != 0 ||
        (rc = str_field(b, e, "name", &r->name)) != 0 ||
        (rc = str_field(b, e, "containerName", &r->container)) != 0)
      return rc;
  }
  b->n_env = a != NULL ? json_array_size(a) : 0;
  return rc;
}

static int present(const json_t *spec, const char *key) {
  const json_t *v = json_object_get(spec, key);
  return v != NULL && !json_is_null(v);
}

/* The sources evscale refuses, and podIdentity (provider "none" or empty is accepted: KEDA's
 * default, PodIdentityProviderNone, triggerauthentication_types.go). */
static int sources(bld_t *b, const json_t *spec) {
  static const struct {
    const char *key;
    unsigned bit;
  } objs[] = {{"hashiCorpVault", EVS_TRIGGERAUTH_HASHICORP_VAULT},
              {"azureKeyVault", EVS_TRIGGERAUTH_AZURE_KEY_VAULT},
              {"gcpSecretManager", EVS_TRIGGERAUTH_GCP_SECRET_MANAGER},
              {"awsSecretManager", EVS_TRIGGERAUTH_AWS_SECRET_MANAGER},
              {"oauth2", EVS_TRIGGERAUTH_OAUTH2}};
  b->unsupported = 0;
  for (size_t i = 0; i < sizeof objs / sizeof objs[0]; i++)
    if (present(spec, objs[i].key))
      b->unsupported |= objs[i].bit;
  const json_t *fp = json_object_get(spec, "filePath");
  if (fp != NULL && !json_is_null(fp) && !(json_is_string(fp) && json_string_length(fp) == 0))
    b->unsupported |= EVS_TRIGGERAUTH_FILE_PATH;
  const json_t *bsat = json_object_get(spec, "boundServiceAccountToken");
  if (bsat != NULL && !json_is_null(bsat) && !(json_is_array(bsat) && json_array_size(bsat) == 0))
    b->unsupported |= EVS_TRIGGERAUTH_BOUND_SA_TOKEN;
  const json_t *pi = json_object_get(spec, "podIdentity");
  if (pi == NULL || json_is_null(pi))
    return 0;
  if (!json_is_object(pi))
    return EVS_EPARSE;
  int rc = str_field(b, pi, "provider", &b->pod_identity);
  if (rc == 0 && b->fill && b->pod_identity[0] != '\0' && strcmp(b->pod_identity, "none") != 0)
    b->unsupported |= EVS_TRIGGERAUTH_POD_IDENTITY;
  return rc;
}

static int walk(bld_t *b, const json_t *spec) {
  int rc;
  if ((rc = refs(b, spec, "secretTargetRef", b->sec, &b->n_sec)) != 0 ||
      (rc = refs(b, spec, "configMapTargetRef", b->cm, &b->n_cm)) != 0 || (rc = envs(b, spec)) != 0)
    return rc;
  return sources(b, spec);
}

int evs_triggerauth_decode(const json_t *obj, void **out, void *arg) {
  (void)arg;
  *out = NULL;
  if (!json_is_object(obj))
    return EVS_EPARSE;
  /* TriggerAuthenticationSpec is `json:"spec"`; an object without one decodes as empty. */
  const json_t *spec = json_object_get(obj, "spec");
  if (spec == NULL || json_is_null(spec))
    spec = NULL;
  else if (!json_is_object(spec))
    return EVS_EPARSE;
  bld_t b = {0};
  int rc = spec != NULL ? walk(&b, spec) : 0;
  if (rc != 0)
    return rc;
  size_t size = sizeof(evs_triggerauth_t) + (b.n_sec + b.n_cm) * sizeof(evs_triggerauth_ref_t) +
                b.n_env * sizeof(evs_triggerauth_env_t) + b.bytes;
  evs_triggerauth_t *ta = calloc(1, size);
  if (ta == NULL)
    return UV_ENOMEM;
  b.fill = 1;
  b.sec = (evs_triggerauth_ref_t *)(ta + 1);
  b.cm = b.sec + b.n_sec;
  b.env = (evs_triggerauth_env_t *)(b.cm + b.n_cm);
  b.p = (char *)(b.env + b.n_env);
  if (spec != NULL && (rc = walk(&b, spec)) != 0) { /* cannot differ from the first pass */
    free(ta);
    return rc;
  }
  ta->refs = 1;
  ta->unsupported = b.unsupported;
  ta->pod_identity = b.pod_identity;
  ta->secrets = b.sec, ta->n_secrets = b.n_sec;
  ta->configmaps = b.cm, ta->n_configmaps = b.n_cm;
  ta->env = b.env, ta->n_env = b.n_env;
  *out = ta;
  return 0;
}

void evs_triggerauth_free(void *p, void *arg) {
  (void)arg;
  evs_triggerauth_t *ta = p;
  if (ta != NULL && --ta->refs == 0)
    free(ta);
}

const evs_triggerauth_t *evs_triggerauth_ref(const evs_triggerauth_t *ta) {
  ((evs_triggerauth_t *)ta)->refs++;
  return ta;
}

const char *evs_triggerauth_kind_name(evs_triggerauth_kind_t kind) {
  return kind == EVS_TRIGGERAUTH_CLUSTER ? "ClusterTriggerAuthentication" : "TriggerAuthentication";
}

/* ------------------------------------------------------------------------------------------ */
/* Checking */

/* A Kubernetes object name (a DNS-1123 subdomain): it goes into a request path, so nothing else
 * ("/", "?", "..") may pass. */
static int valid_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 253)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
          s[i] == '.'))
      return 0;
  return s[0] != '.' && s[0] != '-' && s[n - 1] != '.' && s[n - 1] != '-';
}

static int say(char *msg, size_t cap, int rc, evs_triggerauth_kind_t kind, const char *ns,
               const char *name, const char *fmt, ...) {
  if (msg == NULL || cap == 0)
    return rc;
  int n = kind == EVS_TRIGGERAUTH_CLUSTER
              ? snprintf(msg, cap, "%s %s: ", evs_triggerauth_kind_name(kind), name)
              : snprintf(msg, cap, "%s %s/%s: ", evs_triggerauth_kind_name(kind), ns, name);
  if (n >= 0 && (size_t)n < cap) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, cap - (size_t)n, fmt, ap);
    va_end(ap);
  }
  return rc;
}

static int check_refs(const evs_triggerauth_ref_t *r, size_t n, const char *field,
                      evs_triggerauth_kind_t kind, const char *ns, const char *name, char *msg,
                      size_t cap) {
  for (size_t i = 0; i < n; i++) {
    const char *empty = r[i].parameter[0] == '\0' ? "parameter"
                        : r[i].name[0] == '\0'    ? "name"
                        : r[i].key[0] == '\0'     ? "key"
                                                  : NULL;
    if (empty != NULL)
      return say(msg, cap, EVS_EINVALCFG, kind, ns, name, "spec.%s[%zu].%s is empty", field, i,
                 empty);
    if (!valid_name(r[i].name))
      return say(msg, cap, EVS_EINVALCFG, kind, ns, name,
                 "spec.%s[%zu].name \"%s\" is not a Kubernetes object name", field, i, r[i].name);
  }
  return 0;
}

int evs_triggerauth_check(const evs_triggerauth_t *ta, evs_triggerauth_kind_t kind, const char *ns,
                          const char *name, char *msg, size_t cap) {
  static const char *const fields[] = {
#define EVS_TRIGGERAUTH__FIELD(n, bit, field) field,
      EVS_TRIGGERAUTH_SOURCES(EVS_TRIGGERAUTH__FIELD)
#undef EVS_TRIGGERAUTH__FIELD
  };
  ns = ns != NULL ? ns : "";
  name = name != NULL ? name : "";
  for (unsigned bit = 0; bit < sizeof fields / sizeof fields[0]; bit++) {
    if (!(ta->unsupported & (1u << bit)))
      continue;
    if ((1u << bit) == EVS_TRIGGERAUTH_POD_IDENTITY)
      return say(msg, cap, EVS_EUNSUPPORTED, kind, ns, name,
                 "spec.podIdentity.provider \"%s\" is not supported (evscale accepts only none)",
                 ta->pod_identity);
    return say(msg, cap, EVS_EUNSUPPORTED, kind, ns, name,
               "spec.%s is not supported (evscale reads secretTargetRef, configMapTargetRef, env "
               "and podIdentity provider none)",
               fields[bit]);
  }
  int rc = check_refs(ta->secrets, ta->n_secrets, "secretTargetRef", kind, ns, name, msg, cap);
  if (rc == 0)
    rc = check_refs(ta->configmaps, ta->n_configmaps, "configMapTargetRef", kind, ns, name, msg,
                    cap);
  for (size_t i = 0; rc == 0 && i < ta->n_env; i++) {
    const evs_triggerauth_env_t *e = &ta->env[i];
    if (e->parameter[0] == '\0' || e->name[0] == '\0')
      rc = say(msg, cap, EVS_EINVALCFG, kind, ns, name, "spec.env[%zu].%s is empty", i,
               e->parameter[0] == '\0' ? "parameter" : "name");
  }
  if (rc == 0 && msg != NULL && cap > 0)
    msg[0] = '\0';
  return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* $(VAR) expansion: KEDA's resolveEnvValue (scale_resolvers.go), transcribed with its bounds. */

typedef const char *(*lookup_fn)(void *ctx, const char *key, size_t len);

typedef struct {
  char *p;
  size_t len, cap;
  int oom;
} sbuf_t;

static void sb_add(sbuf_t *s, const char *p, size_t n) {
  if (s->oom || evs_buf_reserve((void **)&s->p, &s->cap, s->len + n + 1, 1, 64) != 0) {
    s->oom = 1;
    return;
  }
  memcpy(s->p + s->len, p, n);
  s->len += n;
  s->p[s->len] = '\0';
}

static char *expand(const char *value, lookup_fn look, void *ctx) {
  sbuf_t s = {0};
  size_t len = strlen(value), checkpoint = 0;
  sb_add(&s, "", 0);
  for (size_t cursor = 0; cursor < len; cursor++) {
    if (value[cursor] != '$' || cursor + 3 >= len)
      continue;
    sb_add(&s, value + checkpoint, cursor - checkpoint);
    size_t length = 1;
    if (value[cursor + 1] == '$') {
      sb_add(&s, "$", 1); /* escaped reference */
    } else if (value[cursor + 1] == '(') {
      size_t i = 2;
      while (i < len - cursor && value[cursor + i] != ')')
        i++;
      if (i < len - cursor) {
        const char *v = look(ctx, value + cursor + 2, i - 2);
        if (v != NULL)
          sb_add(&s, v, strlen(v));
        else
          sb_add(&s, value + cursor, i + 1); /* unknown: "$(KEY)" stays */
        length = i;
      } else {
        sb_add(&s, "$(", 2); /* no closer */
      }
    } else {
      sb_add(&s, value + cursor, 2);
    }
    cursor += length;
    checkpoint = cursor + 1;
  }
  sb_add(&s, value + checkpoint, len - checkpoint);
  if (s.oom) {
    if (s.p != NULL)
      explicit_bzero(s.p, s.cap);
    free(s.p);
    return NULL;
  }
  return s.p;
}

static const char *kvs_look(void *ctx, const char *key, size_t len) {
  const evs_kvs_t *env = ctx;
  const char *found = NULL;
  for (size_t i = 0; env != NULL && i < env->n; i++) /* the last one wins, as in a map */
    if (strlen(env->items[i].key) == len && memcmp(env->items[i].key, key, len) == 0)
      found = env->items[i].value;
  return found;
}

char *evs_triggerauth_expand(const char *value, const evs_kvs_t *env) {
  return expand(value, kvs_look, (void *)env);
}

/* ------------------------------------------------------------------------------------------ */
/* Maps: a JSON object of strings (hashed, so a large envFrom stays linear). Values may be
 * secrets: every string is wiped before jansson frees it. */

static void wipe_tree(json_t *j) {
  const char *k;
  json_t *v;
  size_t i;
  if (json_is_string(j))
    explicit_bzero((char *)json_string_value(j), json_string_length(j));
  else if (json_is_object(j))
    json_object_foreach(j, k, v) wipe_tree(v);
  else if (json_is_array(j))
    json_array_foreach(j, i, v) wipe_tree(v);
}

static void wipe_free(json_t *j) {
  if (j != NULL && j->refcount == 1)
    wipe_tree(j);
  json_decref(j);
}

static int map_set(json_t *m, const char *key, const char *val, size_t vlen) {
  json_t *old = json_object_get(m, key);
  if (old != NULL)
    wipe_tree(old);
  json_t *s = json_stringn_nocheck(val, vlen);
  return s != NULL && json_object_set_new_nocheck(m, key, s) == 0 ? 0 : UV_ENOMEM;
}

static const char *map_look(void *ctx, const char *key, size_t len) {
  char small[256], *buf = len < sizeof small ? small : malloc(len + 1);
  if (buf == NULL)
    return NULL;
  memcpy(buf, key, len);
  buf[len] = '\0';
  const char *v = json_string_value(json_object_get(ctx, buf));
  if (buf != small)
    free(buf);
  return v;
}

/* base64 of a Secret's data value → a NUL-terminated malloc'd copy (*out_len bytes). */
static int b64_decode(const char *s, size_t slen, char **out, size_t *out_len) {
  size_t need = 0;
  (void)mbedtls_base64_decode(NULL, 0, &need, (const unsigned char *)s, slen);
  char *buf = malloc(need + 1);
  if (buf == NULL)
    return UV_ENOMEM;
  if (mbedtls_base64_decode((unsigned char *)buf, need + 1, out_len, (const unsigned char *)s,
                            slen) != 0) {
    explicit_bzero(buf, need + 1);
    free(buf);
    return EVS_EPARSE;
  }
  buf[*out_len] = '\0';
  *out = buf;
  return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Requests */

typedef enum { F_SECRET, F_CONFIGMAP, F_TARGET } fkind_t;

typedef struct fetch_s {
  fkind_t kind;
  char *ns, *name; /* F_TARGET: name is the path */
  evs_kube_req_t *kreq;
  evs_triggerauth_req_t *owner;
  int done, err, status;
  json_t *root; /* 200: the object */
} fetch_t;

typedef struct {
  char *container;
  evs_triggerauth_req_t *req; /* the child env resolution in flight */
  json_t *map;                /* its result; NULL when it failed */
  struct evs_triggerauth_req_s *parent;
} kid_t;

struct evs_triggerauth_req_s {
  uv_timer_t timer; /* defers a resolution that needs no request; owns the lifetime */
  uv_loop_t *loop;
  evs_kube_t *kube;
  int env_op; /* 0: authentication, 1: environment */
  evs_triggerauth_cb cb;
  void *arg;
  fetch_t **f;
  size_t nf, capf, pending;
  int canceled, in_cb, closing;
  char msg[1024];
  /* authentication */
  const evs_triggerauth_t *ta;
  evs_triggerauth_kind_t kind;
  char *name, *ns, *obj_ns, *target_path, *env_container;
  json_t *given_env;
  kid_t *kids;
  size_t nkids;
  /* environment */
  char *target, *container;
  int phase; /* 0: fetching the target, 1: its Secrets and ConfigMaps */
  json_t *c; /* the container (borrowed from the target's fetch root) */
  size_t ci; /* its index */
};

static void on_close(uv_handle_t *h) {
  evs_triggerauth_req_t *r = (evs_triggerauth_req_t *)h;
  for (size_t i = 0; i < r->nf; i++) {
    fetch_t *f = r->f[i];
    if (f->kind == F_SECRET)
      wipe_free(f->root);
    else
      json_decref(f->root);
    free(f->ns), free(f->name), free(f);
  }
  for (size_t i = 0; i < r->nkids; i++)
    wipe_free(r->kids[i].map), free(r->kids[i].container);
  wipe_free(r->given_env);
  if (r->ta != NULL)
    evs_triggerauth_free((void *)r->ta, NULL);
  free(r->f), free(r->kids), free(r->name), free(r->ns), free(r->obj_ns), free(r->target_path);
  free(r->env_container), free(r->target), free(r->container);
  free(r);
}

static void release(evs_triggerauth_req_t *r) {
  if (r->closing)
    return;
  r->closing = 1;
  uv_close((uv_handle_t *)&r->timer, on_close);
}

/* Stops every request in flight (their on_done runs now and sees canceled), then frees. */
static void stop(evs_triggerauth_req_t *r) {
  r->canceled = 1;
  for (size_t i = 0; i < r->nf; i++)
    if (r->f[i]->kreq != NULL)
      evs_kube_cancel(r->f[i]->kreq);
  for (size_t i = 0; i < r->nkids; i++)
    if (r->kids[i].req != NULL) {
      evs_triggerauth_cancel(r->kids[i].req);
      r->kids[i].req = NULL;
    }
  release(r);
}

void evs_triggerauth_cancel(evs_triggerauth_req_t *r) {
  if (r == NULL || r->canceled || r->in_cb || r->closing)
    return;
  stop(r);
}

/* Delivers the result (err 0: the map m) and frees r afterwards. */
static void deliver(evs_triggerauth_req_t *r, int err, json_t *m) {
  evs_kv_t *items = NULL;
  size_t n = 0;
  if (err == 0) {
    items = calloc(json_object_size(m) + 1, sizeof *items);
    if (items == NULL) {
      err = UV_ENOMEM;
      snprintf(r->msg, sizeof r->msg, "out of memory");
    }
  }
  if (err == 0) {
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v) items[n++] = (evs_kv_t){k, json_string_value(v)};
  }
  evs_kvs_t kvs = {items, n};
  r->in_cb = 1;
  r->cb(r, err, err != 0 ? r->msg : NULL, err == 0 ? &kvs : NULL, r->arg);
  r->in_cb = 0;
  free(items);
  stop(r); /* an early failure may leave requests in flight */
}

static int fail(evs_triggerauth_req_t *r, int err, const char *fmt, ...) {
  int n =
      r->env_op ? snprintf(r->msg, sizeof r->msg, "%s: ", r->target)
      : r->kind == EVS_TRIGGERAUTH_CLUSTER
          ? snprintf(r->msg, sizeof r->msg, "%s %s: ", evs_triggerauth_kind_name(r->kind), r->name)
          : snprintf(r->msg, sizeof r->msg, "%s %s/%s: ", evs_triggerauth_kind_name(r->kind), r->ns,
                     r->name);
  if (n >= 0 && (size_t)n < sizeof r->msg) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg + n, sizeof r->msg - (size_t)n, fmt, ap);
    va_end(ap);
  }
  return err;
}

static const char *kind_word(fkind_t k) { return k == F_SECRET ? "secret" : "configmap"; }

/* Why a fetched Secret or ConfigMap cannot be used (into r->msg after `field`), or 0. */
static int fetch_error(evs_triggerauth_req_t *r, const fetch_t *f, const char *field) {
  if (f->err != 0)
    return fail(r, f->err, "%s: %s %s/%s: %s", field, kind_word(f->kind), f->ns, f->name,
                f->err == UV_EINVAL ? "not a Kubernetes object name" : evs_strerror(f->err));
  if (f->status == 404)
    return fail(r, EVS_ENOTFOUND, "%s: %s %s/%s not found", field, kind_word(f->kind), f->ns,
                f->name);
  if (f->status != 200)
    return fail(r, EVS_ESTATUS, "%s: GET %s %s/%s: HTTP %d", field, kind_word(f->kind), f->ns,
                f->name, f->status);
  if (f->root == NULL)
    return fail(r, EVS_EPARSE, "%s: %s %s/%s: the answer is not a JSON object", field,
                kind_word(f->kind), f->ns, f->name);
  return 0;
}

static void finish(evs_triggerauth_req_t *r);

static void on_fetched(evs_kube_req_t *kreq, int err, const evs_http_response_t *resp,
                       const char *msg, void *arg) {
  (void)kreq, (void)msg;
  fetch_t *f = arg;
  evs_triggerauth_req_t *r = f->owner;
  f->kreq = NULL;
  f->done = 1;
  if (r->canceled)
    return;
  f->err = err;
  if (err == 0) {
    f->status = resp->status;
    if (resp->status == 200 && resp->body != NULL) {
      f->root = json_loadb(resp->body, resp->body_len, 0, NULL);
      if (f->root != NULL && !json_is_object(f->root)) {
        json_decref(f->root);
        f->root = NULL;
      }
    }
  }
  if (--r->pending == 0)
    finish(r);
}

static fetch_t *find(const evs_triggerauth_req_t *r, fkind_t kind, const char *ns,
                     const char *name) {
  for (size_t i = 0; i < r->nf; i++)
    if (r->f[i]->kind == kind && strcmp(r->f[i]->ns, ns) == 0 && strcmp(r->f[i]->name, name) == 0)
      return r->f[i];
  return NULL;
}

/* The fetch of (kind, ns, name), started when new. NULL: out of memory or the request refused
 * (r->msg says so). An invalid name is fetched as done with UV_EINVAL, never requested. */
static fetch_t *fetch(evs_triggerauth_req_t *r, fkind_t kind, const char *ns, const char *name,
                      int *rc) {
  fetch_t *old = find(r, kind, ns, name);
  if (old != NULL)
    return old;
  if (evs_buf_reserve((void **)&r->f, &r->capf, r->nf + 1, sizeof *r->f, 4) != 0)
    return *rc = UV_ENOMEM, NULL;
  fetch_t *f = calloc(1, sizeof *f);
  if (f == NULL || (f->ns = strdup(ns)) == NULL || (f->name = strdup(name)) == NULL) {
    if (f != NULL)
      free(f->ns), free(f);
    return *rc = UV_ENOMEM, NULL;
  }
  f->kind = kind;
  f->owner = r;
  r->f[r->nf++] = f;
  char path[700];
  if (kind == F_TARGET)
    snprintf(path, sizeof path, "%s", name);
  else if (!valid_name(ns) || !valid_name(name)) {
    f->done = 1, f->err = UV_EINVAL;
    return f;
  } else
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/%s/%s", ns,
             kind == F_SECRET ? "secrets" : "configmaps", name);
  evs_kube_request_opts_t o = {
      .verb = "GET", .path = path, .priority = EVS_PRIO_LOW, .on_done = on_fetched, .arg = f};
  *rc = evs_kube_request(r->kube, &o, &f->kreq);
  if (*rc != 0) {
    f->done = 1, f->err = *rc;
    return NULL;
  }
  r->pending++;
  return f;
}

static void on_timer(uv_timer_t *t) { finish((evs_triggerauth_req_t *)t); }

static evs_triggerauth_req_t *req_new(uv_loop_t *loop, evs_kube_t *kube, evs_triggerauth_cb cb,
                                      void *arg) {
  evs_triggerauth_req_t *r = calloc(1, sizeof *r);
  if (r == NULL)
    return NULL;
  uv_timer_init(loop, &r->timer);
  r->loop = loop, r->kube = kube, r->cb = cb, r->arg = arg;
  return r;
}

/* After the start's requests: nothing in flight means a result now, delivered from the loop. */
static int started(evs_triggerauth_req_t *r, int rc, evs_triggerauth_req_t **out) {
  if (rc != 0) {
    evs_triggerauth_cancel(r);
    return rc;
  }
  if (r->pending == 0)
    uv_timer_start(&r->timer, on_timer, 0, 0);
  if (out != NULL)
    *out = r;
  return 0;
}

/* --- The environment (ResolveContainerEnv + resolveEnv). --- */

static const char *jstr(const json_t *o, const char *key) {
  return json_string_value(json_object_get(o, key));
}

static int jtrue(const json_t *o, const char *key) { return json_is_true(json_object_get(o, key)); }

/* Which object envFrom[i] or env[i].valueFrom reads: *kind and the selector, or NULL. KEDA
 * looks at configMapRef before secretRef in envFrom, and secretKeyRef before configMapKeyRef in
 * valueFrom. */
static const json_t *env_from_ref(const json_t *src, fkind_t *kind) {
  const json_t *s = json_object_get(src, "configMapRef");
  if (json_is_object(s))
    return *kind = F_CONFIGMAP, s;
  s = json_object_get(src, "secretRef");
  return json_is_object(s) ? (*kind = F_SECRET, s) : NULL;
}

static const json_t *value_from_ref(const json_t *env, fkind_t *kind) {
  const char *v = jstr(env, "value");
  const json_t *vf = json_object_get(env, "valueFrom");
  if ((v != NULL && v[0] != '\0') || !json_is_object(vf))
    return NULL;
  const json_t *s = json_object_get(vf, "secretKeyRef");
  if (json_is_object(s))
    return *kind = F_SECRET, s;
  s = json_object_get(vf, "configMapKeyRef");
  return json_is_object(s) ? (*kind = F_CONFIGMAP, s) : NULL;
}

static const char *ref_name(const json_t *sel) {
  const char *n = jstr(sel, "name");
  return n != NULL ? n : "";
}

/* The target arrived: pick the container and fetch every Secret and ConfigMap it names. */
static int env_target(evs_triggerauth_req_t *r) {
  fetch_t *t = r->f[0];
  if (t->err != 0)
    return fail(r, t->err, "GET failed: %s", evs_strerror(t->err));
  if (t->status == 404)
    return fail(r, EVS_ENOTFOUND, "not found");
  if (t->status != 200)
    return fail(r, EVS_ESTATUS, "GET: HTTP %d", t->status);
  if (t->root == NULL)
    return fail(r, EVS_EPARSE, "the answer is not a JSON object");
  const json_t *cs = json_object_get(
      json_object_get(json_object_get(json_object_get(t->root, "spec"), "template"), "spec"),
      "containers");
  /* No containers: KEDA's ResolveScaleTargetPodSpec returns no pod spec, and the environment
   * stays empty. */
  if (json_array_size(cs) == 0)
    return 0;
  r->c = NULL;
  if (r->container[0] == '\0')
    r->c = json_array_get(cs, 0), r->ci = 0;
  for (size_t i = 0; r->c == NULL && i < json_array_size(cs); i++) {
    const char *name = jstr(json_array_get(cs, i), "name");
    if (name != NULL && strcmp(r->container, name) == 0)
      r->c = json_array_get(cs, i), r->ci = i;
  }
  if (r->c == NULL)
    return fail(r, EVS_ENOTFOUND, "spec.template.spec.containers has no container named \"%s\"",
                r->container);
  int rc = 0;
  const json_t *e;
  size_t i;
  fkind_t k;
  json_array_foreach(json_object_get(r->c, "envFrom"), i, e) {
    const json_t *sel = env_from_ref(e, &k);
    if (sel != NULL && fetch(r, k, r->ns, ref_name(sel), &rc) == NULL)
      return fail(r, rc, "%s", evs_strerror(rc));
  }
  json_array_foreach(json_object_get(r->c, "env"), i, e) {
    const json_t *sel = value_from_ref(e, &k);
    if (sel != NULL && fetch(r, k, r->ns, ref_name(sel), &rc) == NULL)
      return fail(r, rc, "%s", evs_strerror(rc));
  }
  return 0;
}

/* The value of data[key] of a fetched object (decoded for a Secret): 0 with *out (malloc'd, or
 * NULL when the key is absent), or an error. */
static int data_value(const fetch_t *f, const json_t *jv, char **out, size_t *len) {
  *out = NULL, *len = 0;
  if (!json_is_string(jv))
    return 0;
  if (f->kind == F_SECRET)
    return b64_decode(json_string_value(jv), json_string_length(jv), out, len);
  *len = json_string_length(jv);
  *out = malloc(*len + 1);
  if (*out == NULL)
    return UV_ENOMEM;
  memcpy(*out, json_string_value(jv), *len + 1);
  return 0;
}

static void free_value(char *v, size_t len) {
  if (v != NULL)
    explicit_bzero(v, len);
  free(v);
}

static int env_from(evs_triggerauth_req_t *r, json_t *m, size_t i, const json_t *src) {
  fkind_t k;
  const json_t *sel = env_from_ref(src, &k);
  if (sel == NULL)
    return 0;
  const fetch_t *f = find(r, k, r->ns, ref_name(sel));
  if (f == NULL) /* registered by env_target: cannot happen */
    return fail(r, EVS_ESTATE, "internal error");
  char field[128];
  snprintf(field, sizeof field, "spec.template.spec.containers[%zu].envFrom[%zu].%s", r->ci, i,
           k == F_SECRET ? "secretRef" : "configMapRef");
  if (f->err != 0 || f->status != 200 || f->root == NULL)
    return jtrue(sel, "optional") ? 0 : fetch_error(r, f, field);
  const char *prefix = jstr(src, "prefix") ? jstr(src, "prefix") : "", *key;
  json_t *jv;
  json_object_foreach(json_object_get(f->root, "data"), key, jv) {
    char *v, *name;
    size_t len;
    int rc = data_value(f, jv, &v, &len);
    if (rc == EVS_EPARSE)
      return fail(r, rc, "%s: secret %s/%s: data[\"%s\"] is not base64", field, f->ns, f->name,
                  key);
    if (rc == 0 && v != NULL) {
      if (asprintf(&name, "%s%s", prefix, key) < 0)
        rc = UV_ENOMEM;
      else
        rc = map_set(m, name, v, len), free(name);
    }
    free_value(v, len);
    if (rc != 0)
      return fail(r, rc, "%s", evs_strerror(rc));
  }
  return 0;
}

static int env_var(evs_triggerauth_req_t *r, json_t *m, size_t i, const json_t *e) {
  const char *name = jstr(e, "name"), *value = jstr(e, "value");
  if (name == NULL)
    return 0;
  char *v = NULL;
  size_t len = 0;
  int rc = 0;
  fkind_t k;
  const json_t *sel = value_from_ref(e, &k);
  if (value != NULL && value[0] != '\0') {
    if ((v = expand(value, map_look, m)) == NULL)
      return fail(r, UV_ENOMEM, "%s", evs_strerror(UV_ENOMEM));
    len = strlen(v);
  } else if (sel != NULL) {
    const fetch_t *f = find(r, k, r->ns, ref_name(sel));
    if (f == NULL)
      return fail(r, EVS_ESTATE, "internal error");
    char field[160];
    snprintf(field, sizeof field, "spec.template.spec.containers[%zu].env[%zu].valueFrom.%s", r->ci,
             i, k == F_SECRET ? "secretKeyRef" : "configMapKeyRef");
    if (f->err != 0 || f->status != 200 || f->root == NULL)
      return jtrue(sel, "optional") ? 0 : fetch_error(r, f, field);
    const char *key = jstr(sel, "key") ? jstr(sel, "key") : "";
    /* A missing key gives "": KEDA's string(secret.Data[keyName]). */
    rc = data_value(f, json_object_get(json_object_get(f->root, "data"), key), &v, &len);
    if (rc == EVS_EPARSE)
      return fail(r, rc, "%s: secret %s/%s: data[\"%s\"] is not base64", field, f->ns, f->name,
                  key);
  } else if (json_is_object(json_object_get(e, "valueFrom"))) {
    return 0; /* fieldRef, resourceFieldRef: KEDA skips them */
  }
  if (rc == 0)
    rc = map_set(m, name, v != NULL ? v : "", len);
  free_value(v, len);
  return rc != 0 ? fail(r, rc, "%s", evs_strerror(rc)) : 0;
}

static int env_compute(evs_triggerauth_req_t *r, json_t *m) {
  const json_t *e;
  size_t i;
  int rc = 0;
  if (r->c == NULL)
    return 0;
  json_array_foreach(json_object_get(r->c, "envFrom"), i,
                     e) if ((rc = env_from(r, m, i, e)) != 0) return rc;
  json_array_foreach(json_object_get(r->c, "env"), i,
                     e) if ((rc = env_var(r, m, i, e)) != 0) return rc;
  return 0;
}

/* --- The authentication (resolveAuthRef). --- */

static int auth_compute(evs_triggerauth_req_t *r, json_t *m) {
  const evs_triggerauth_t *ta = r->ta;
  int rc = 0;
  for (size_t i = 0; i < ta->n_env && rc == 0; i++) {
    const evs_triggerauth_env_t *e = &ta->env[i];
    const json_t *src = NULL;
    if (r->given_env != NULL && strcmp(e->container, r->env_container) == 0)
      src = r->given_env;
    for (size_t j = 0; src == NULL && j < r->nkids; j++)
      if (strcmp(r->kids[j].container, e->container) == 0)
        src = r->kids[j].map;
    const char *v = src != NULL ? json_string_value(json_object_get(src, e->name)) : NULL;
    rc = map_set(m, e->parameter, v != NULL ? v : "", v != NULL ? strlen(v) : 0);
  }
  for (int sec = 0; sec < 2 && rc == 0; sec++) {
    const evs_triggerauth_ref_t *refs = sec ? ta->secrets : ta->configmaps;
    size_t n = sec ? ta->n_secrets : ta->n_configmaps;
    for (size_t i = 0; i < n && rc == 0; i++) {
      const fetch_t *f = find(r, sec ? F_SECRET : F_CONFIGMAP, r->obj_ns, refs[i].name);
      if (f == NULL)
        return fail(r, EVS_ESTATE, "internal error");
      char field[64];
      snprintf(field, sizeof field, "spec.%s[%zu]", sec ? "secretTargetRef" : "configMapTargetRef",
               i);
      if ((rc = fetch_error(r, f, field)) != 0)
        return rc;
      char *v;
      size_t len;
      rc = data_value(f, json_object_get(json_object_get(f->root, "data"), refs[i].key), &v, &len);
      if (rc == EVS_EPARSE)
        return fail(r, rc, "%s: secret %s/%s: key \"%s\" is not base64", field, f->ns, f->name,
                    refs[i].key);
      if (rc == 0 && v == NULL)
        return fail(r, EVS_ENOTFOUND, "%s: %s %s/%s has no key \"%s\"", field, kind_word(f->kind),
                    f->ns, f->name, refs[i].key);
      if (rc == 0)
        rc = map_set(m, refs[i].parameter, v, len);
      free_value(v, len);
    }
  }
  return rc != 0 && r->msg[0] == '\0' ? fail(r, rc, "%s", evs_strerror(rc)) : rc;
}

static void finish(evs_triggerauth_req_t *r) {
  if (r->canceled || r->closing)
    return;
  json_t *m = json_object();
  int rc = m == NULL ? fail(r, UV_ENOMEM, "%s", evs_strerror(UV_ENOMEM)) : 0;
  if (rc == 0 && r->env_op && r->phase == 0) {
    r->phase = 1;
    rc = env_target(r);
    if (rc == 0 && r->pending > 0) { /* waiting for the Secrets and ConfigMaps */
      json_decref(m);
      return;
    }
  }
  if (rc == 0)
    rc = r->env_op ? env_compute(r, m) : auth_compute(r, m);
  deliver(r, rc, m);
  wipe_free(m);
}

static void on_kid(evs_triggerauth_req_t *req, int err, const char *msg, const evs_kvs_t *params,
                   void *arg) {
  (void)req, (void)msg;
  kid_t *kid = arg;
  evs_triggerauth_req_t *r = kid->parent;
  kid->req = NULL;
  /* A failure leaves the parameters "" (resolveAuthRef ignores ResolveContainerEnv's error). */
  if (err == 0 && (kid->map = json_object()) != NULL)
    for (size_t i = 0; i < params->n; i++)
      if (map_set(kid->map, params->items[i].key, params->items[i].value,
                  strlen(params->items[i].value)) != 0) {
        wipe_free(kid->map);
        kid->map = NULL;
        break;
      }
  if (--r->pending == 0)
    finish(r);
}

static int env_start(uv_loop_t *loop, evs_kube_t *kube, const evs_triggerauth_env_opts_t *o,
                     evs_triggerauth_req_t **out);

/* One child resolution per container spec.env names (other than the one given). */
static int auth_kids(evs_triggerauth_req_t *r) {
  const evs_triggerauth_t *ta = r->ta;
  if (ta->n_env == 0 || r->target_path == NULL)
    return 0;
  if ((r->kids = calloc(ta->n_env, sizeof *r->kids)) == NULL)
    return UV_ENOMEM;
  for (size_t i = 0; i < ta->n_env; i++) {
    const char *c = ta->env[i].container;
    int seen = r->given_env != NULL && strcmp(c, r->env_container) == 0;
    for (size_t j = 0; j < r->nkids && !seen; j++)
      seen = strcmp(r->kids[j].container, c) == 0;
    if (seen)
      continue;
    kid_t *kid = &r->kids[r->nkids];
    if ((kid->container = strdup(c)) == NULL)
      return UV_ENOMEM;
    kid->parent = r;
    r->nkids++;
    evs_triggerauth_env_opts_t eo = {
        .target_path = r->target_path, .ns = r->ns, .container = c, .cb = on_kid, .arg = kid};
    int rc = env_start(r->loop, r->kube, &eo, &kid->req);
    if (rc != 0)
      return rc;
    r->pending++;
  }
  return 0;
}

static int copy_env(evs_triggerauth_req_t *r, const evs_kvs_t *env) {
  if (env == NULL)
    return 0;
  if ((r->given_env = json_object()) == NULL)
    return UV_ENOMEM;
  for (size_t i = 0; i < env->n; i++)
    if (map_set(r->given_env, env->items[i].key, env->items[i].value,
                strlen(env->items[i].value)) != 0)
      return UV_ENOMEM;
  return 0;
}

int evs_triggerauth_resolve(uv_loop_t *loop, evs_kube_t *kube, const evs_triggerauth_opts_t *o,
                            evs_triggerauth_req_t **out) {
  if (loop == NULL || kube == NULL || o == NULL || o->auth == NULL || o->name == NULL ||
      o->ns == NULL || o->cb == NULL)
    return UV_EINVAL;
  int rc = evs_triggerauth_check(o->auth, o->kind, o->ns, o->name, NULL, 0);
  if (rc != 0)
    return rc;
  evs_triggerauth_req_t *r = req_new(loop, kube, o->cb, o->arg);
  if (r == NULL)
    return UV_ENOMEM;
  r->ta = evs_triggerauth_ref(o->auth);
  r->kind = o->kind;
  /* KEDA's getTriggerAuthSpec: a ClusterTriggerAuthentication's objects live in the cluster
   * object namespace (util.GetClusterObjectNamespace). */
  const char *obj_ns = o->kind != EVS_TRIGGERAUTH_CLUSTER ? o->ns
                       : o->cluster_namespace != NULL && o->cluster_namespace[0] != '\0'
                           ? o->cluster_namespace
                           : evs_kube_namespace(kube);
  r->name = strdup(o->name), r->ns = strdup(o->ns), r->obj_ns = strdup(obj_ns);
  r->env_container = strdup(o->env_container != NULL ? o->env_container : "");
  if (o->target_path != NULL)
    r->target_path = strdup(o->target_path);
  if (!r->name || !r->ns || !r->obj_ns || !r->env_container ||
      (o->target_path != NULL && !r->target_path) || copy_env(r, o->env) != 0)
    return started(r, UV_ENOMEM, out);
  for (size_t i = 0; i < r->ta->n_configmaps && rc == 0; i++)
    if (fetch(r, F_CONFIGMAP, r->obj_ns, r->ta->configmaps[i].name, &rc) == NULL && rc == 0)
      rc = UV_ENOMEM;
  for (size_t i = 0; i < r->ta->n_secrets && rc == 0; i++)
    if (fetch(r, F_SECRET, r->obj_ns, r->ta->secrets[i].name, &rc) == NULL && rc == 0)
      rc = UV_ENOMEM;
  if (rc == 0)
    rc = auth_kids(r);
  return started(r, rc, out);
}

static int env_start(uv_loop_t *loop, evs_kube_t *kube, const evs_triggerauth_env_opts_t *o,
                     evs_triggerauth_req_t **out) {
  evs_triggerauth_req_t *r = req_new(loop, kube, o->cb, o->arg);
  if (r == NULL)
    return UV_ENOMEM;
  r->env_op = 1;
  r->ns = strdup(o->ns);
  r->target = strdup(o->target != NULL ? o->target : o->target_path);
  r->container = strdup(o->container != NULL ? o->container : "");
  if (!r->ns || !r->target || !r->container)
    return started(r, UV_ENOMEM, out);
  int rc = 0;
  if (fetch(r, F_TARGET, "", o->target_path, &rc) == NULL && rc == 0)
    rc = UV_ENOMEM;
  return started(r, rc, out);
}

int evs_triggerauth_env_resolve(uv_loop_t *loop, evs_kube_t *kube,
                                const evs_triggerauth_env_opts_t *o, evs_triggerauth_req_t **out) {
  if (loop == NULL || kube == NULL || o == NULL || o->target_path == NULL ||
      o->target_path[0] != '/' || o->ns == NULL || o->cb == NULL)
    return UV_EINVAL;
  return env_start(loop, kube, o, out);
}
