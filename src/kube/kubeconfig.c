/* kubeconfig: parse, merge and resolve. See include/evscale/kubeconfig.h for the rules and their
 * source. Each parsed file keeps its document tree; entries are looked up by name across files
 * in KUBECONFIG order, so "first file wins" is simply "first match wins". */
#include "evscale/kubeconfig.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/base64.h>

#include "evscale/error.h"
#include "evscale/node.h"

typedef struct {
  const char *name;
  const evs_node_t *entry; /* the sequence item: {name, cluster|user|context} */
  const evs_node_t *body;  /* its cluster/user/context map (may be NULL: reported on use) */
} kc_named_t;

struct evs_kubeconfig_file_s {
  evs_doc_t *doc;
  char *file;
  char *dir; /* directory of `file` with a trailing '/', "" when the name has none */
  const char *current_context;
  kc_named_t *clusters, *users, *contexts;
  size_t nclusters, nusers, ncontexts;
};

/* Known fields of each stanza (client-go tools/clientcmd/api/v1/types.go). Unknown fields are
 * ignored, as clientcmd's (non-strict) decoder ignores them. */

static char *dupstr(const char *s) { return s ? strdup(s) : NULL; }

static void add(evs_diag_t *d, const char *file, const evs_node_t *at, const char *path,
                const char *msg) {
  evs_diag_add(d, file, at ? at->line : 0, at ? at->col : 0, path, "%s", msg);
}

static int collect(evs_kubeconfig_file_t *f, const evs_node_t *root, const char *list,
                   const char *inner, kc_named_t **out, size_t *nout, evs_diag_t *d) {
  const evs_node_t *seq = evs_node_get(root, list);
  if (seq == NULL || seq->kind == EVS_NODE_NULL)
    return 0;
  if (seq->kind != EVS_NODE_SEQ) {
    add(d, f->file, seq, list, "must be a list");
    return EVS_EINVALCFG;
  }
  int rc = 0;
  *out = calloc(seq->len ? seq->len : 1, sizeof **out);
  if (*out == NULL)
    return UV_ENOMEM;
  for (size_t i = 0; i < seq->len; i++) {
    const evs_node_t *it = evs_node_item(seq, i);
    evs_path_t p;
    evs_path_init(&p);
    evs_path_push_key(&p, list);
    evs_path_push_index(&p, i);
    if (it->kind != EVS_NODE_MAP) {
      add(d, f->file, it, p.buf, "must be a mapping with a name and an entry");
      rc = EVS_EINVALCFG;
      continue;
    }
    const evs_node_t *name = evs_node_get(it, "name");
    if (name == NULL || name->kind != EVS_NODE_STR || name->len == 0) {
      add(d, f->file, name ? name : it, p.buf, "name must be a non-empty string");
      rc = EVS_EINVALCFG;
      continue;
    }
    /* A name given twice in one file is ambiguous; refuse it rather than guess which wins. */
    for (size_t j = 0; j < *nout; j++)
      if (strcmp((*out)[j].name, name->u.text) == 0) {
        evs_diag_add(d, f->file, name->line, name->col, p.buf, "%s name \"%s\" appears twice",
                     inner, name->u.text);
        rc = EVS_EINVALCFG;
      }
    (*out)[*nout].name = name->u.text;
    (*out)[*nout].entry = it;
    (*out)[*nout].body = evs_node_get(it, inner);
    (*nout)++;
  }
  return rc;
}

int evs_kubeconfig_parse(const char *text, size_t len, const char *file,
                         evs_kubeconfig_file_t **out, evs_diag_t *diag) {
  *out = NULL;
  evs_kubeconfig_file_t *f = calloc(1, sizeof *f);
  if (f == NULL)
    return UV_ENOMEM;
  f->file = strdup(file ? file : "kubeconfig");
  const char *slash = f->file ? strrchr(f->file, '/') : NULL;
  f->dir = slash ? strndup(f->file, (size_t)(slash - f->file) + 1) : strdup("");
  if (f->file == NULL || f->dir == NULL) {
    evs_kubeconfig_file_free(f);
    return UV_ENOMEM;
  }
  int rc = evs_doc_parse_yaml(text, len, f->file, &f->doc, diag);
  if (rc != 0) {
    evs_kubeconfig_file_free(f);
    return rc;
  }
  const evs_node_t *root = evs_doc_root(f->doc);
  if (root == NULL || root->kind == EVS_NODE_NULL) {
    *out = f; /* an empty file is an empty config */
    return 0;
  }
  if (root->kind != EVS_NODE_MAP) {
    add(diag, f->file, root, NULL, "a kubeconfig must be a mapping (kind: Config)");
    evs_kubeconfig_file_free(f);
    return EVS_EINVALCFG;
  }
  const evs_node_t *kind = evs_node_get(root, "kind");
  if (kind && kind->kind == EVS_NODE_STR && strcmp(kind->u.text, "Config") != 0) {
    evs_diag_add(diag, f->file, kind->line, kind->col, "kind", "is \"%s\", not Config",
                 kind->u.text);
    rc = EVS_EINVALCFG;
  }
  const evs_node_t *cc = evs_node_get(root, "current-context");
  if (cc && cc->kind == EVS_NODE_STR && cc->len > 0)
    f->current_context = cc->u.text;
  int r;
  if ((r = collect(f, root, "clusters", "cluster", &f->clusters, &f->nclusters, diag)) != 0)
    rc = rc ? rc : r;
  if ((r = collect(f, root, "users", "user", &f->users, &f->nusers, diag)) != 0)
    rc = rc ? rc : r;
  if ((r = collect(f, root, "contexts", "context", &f->contexts, &f->ncontexts, diag)) != 0)
    rc = rc ? rc : r;
  if (rc != 0) {
    evs_kubeconfig_file_free(f);
    return rc;
  }
  *out = f;
  return 0;
}

void evs_kubeconfig_file_free(evs_kubeconfig_file_t *f) {
  if (f == NULL)
    return;
  evs_doc_free(f->doc);
  free(f->clusters);
  free(f->users);
  free(f->contexts);
  free(f->file);
  free(f->dir);
  free(f);
}

/* The first file (in order) that defines `name` in the chosen list wins. */
static const kc_named_t *lookup(evs_kubeconfig_file_t *const *files, size_t n, int which,
                                const char *name, const evs_kubeconfig_file_t **from) {
  for (size_t i = 0; i < n; i++) {
    const evs_kubeconfig_file_t *f = files[i];
    const kc_named_t *v = which == 0 ? f->clusters : which == 1 ? f->users : f->contexts;
    size_t nv = which == 0 ? f->nclusters : which == 1 ? f->nusers : f->ncontexts;
    for (size_t j = 0; j < nv; j++)
      if (strcmp(v[j].name, name) == 0) {
        *from = f;
        return &v[j];
      }
  }
  return NULL;
}

typedef struct {
  const evs_kubeconfig_file_t *f;
  evs_diag_t *d;
  evs_path_t path;
  int rc;
} rctx_t;

static void fail(rctx_t *c, const evs_node_t *at, const char *field, const char *fmt,
                 const char *arg) {
  size_t mark = evs_path_push_key(&c->path, field);
  char msg[512];
  snprintf(msg, sizeof msg, fmt, arg ? arg : "");
  add(c->d, c->f->file, at, c->path.buf, msg);
  evs_path_pop(&c->path, mark);
  if (c->rc == 0)
    c->rc = EVS_EINVALCFG;
}

/* A string field: absent/null → NULL (not an error); present and not a string → error. */
static const char *str_field(rctx_t *c, const evs_node_t *map, const char *key) {
  const evs_node_t *v = evs_node_get(map, key);
  if (v == NULL || v->kind == EVS_NODE_NULL)
    return NULL;
  if (v->kind != EVS_NODE_STR) {
    fail(c, v, key, "must be a string%s", NULL);
    return NULL;
  }
  return v->len ? v->u.text : NULL;
}

static int bool_field(rctx_t *c, const evs_node_t *map, const char *key) {
  const evs_node_t *v = evs_node_get(map, key);
  if (v == NULL || v->kind == EVS_NODE_NULL)
    return 0;
  if (v->kind != EVS_NODE_BOOL) {
    fail(c, v, key, "must be true or false%s", NULL);
    return 0;
  }
  return v->num.b;
}

/* Resolves a path against the directory of the file it came from (clientcmd ResolvePaths). */
static char *resolve_path(const evs_kubeconfig_file_t *f, const char *p) {
  if (p == NULL)
    return NULL;
  if (p[0] == '/' || f->dir[0] == '\0')
    return strdup(p);
  size_t a = strlen(f->dir), b = strlen(p);
  char *s = malloc(a + b + 1);
  if (s) {
    memcpy(s, f->dir, a);
    memcpy(s + a, p, b + 1);
  }
  return s;
}

/* Decodes a `*-data` field (Go's []byte in JSON/YAML: standard base64 with padding). */
static char *b64_field(rctx_t *c, const evs_node_t *map, const char *key, size_t *outlen) {
  const char *s = str_field(c, map, key);
  *outlen = 0;
  if (s == NULL)
    return NULL;
  size_t slen = strlen(s), need = 0;
  (void)mbedtls_base64_decode(NULL, 0, &need, (const unsigned char *)s, slen);
  char *buf = malloc(need + 1);
  if (buf == NULL) {
    c->rc = UV_ENOMEM;
    return NULL;
  }
  size_t got = 0;
  if (mbedtls_base64_decode((unsigned char *)buf, need, &got, (const unsigned char *)s, slen) !=
      0) {
    free(buf);
    fail(c, evs_node_get(map, key), key, "is not valid base64%s", NULL);
    return NULL;
  }
  buf[got] = '\0';
  *outlen = got;
  return buf;
}

static void refuse_if_set(rctx_t *c, const evs_node_t *map, const char *key, const char *why) {
  const evs_node_t *v = evs_node_get(map, key);
  if (v == NULL || v->kind == EVS_NODE_NULL || (evs_node_is_scalar(v) && v->len == 0) ||
      ((v->kind == EVS_NODE_SEQ || v->kind == EVS_NODE_MAP) && v->len == 0))
    return;
  fail(c, v, key, "%s", why);
}

static void resolve_cluster(rctx_t *c, const evs_node_t *m, evs_kubeconfig_t *kc) {
  const char *server = str_field(c, m, "server");
  if (server == NULL)
    fail(c, m, "server", "no server found for cluster \"%s\"", kc->cluster);
  else if (strncmp(server, "https://", 8) != 0 && strncmp(server, "http://", 7) != 0)
    fail(c, evs_node_get(m, "server"), "server", "\"%s\" must start with https:// or http://",
         server);
  kc->server = dupstr(server);
  kc->tls_server_name = dupstr(str_field(c, m, "tls-server-name"));
  kc->insecure = bool_field(c, m, "insecure-skip-tls-verify");
  kc->ca_pem = b64_field(c, m, "certificate-authority-data", &kc->ca_pem_len);
  /* certificate-authority-data overrides certificate-authority (validation.go). */
  if (kc->ca_pem == NULL)
    kc->ca_file = resolve_path(c->f, str_field(c, m, "certificate-authority"));
  refuse_if_set(c, m, "proxy-url",
                "evscale does not connect through a proxy: remove proxy-url, or reach the API "
                "server directly");
}

static void resolve_exec(rctx_t *c, const evs_node_t *m, evs_kubeconfig_t *kc) {
  evs_kubeconfig_exec_t *x = calloc(1, sizeof *x);
  if (x == NULL) {
    c->rc = UV_ENOMEM;
    return;
  }
  kc->exec = x;
  size_t mark = evs_path_push_key(&c->path, "exec");
  const char *cmd = str_field(c, m, "command");
  if (cmd == NULL)
    fail(c, m, "command", "command must be specified for user \"%s\" to use an exec plugin",
         kc->user);
  else if (strchr(cmd, '/'))
    x->command = resolve_path(c->f, cmd); /* only PATH-less commands are file references */
  else
    x->command = strdup(cmd);
  const char *api = str_field(c, m, "apiVersion");
  x->api_version = dupstr(api);
  if (api == NULL)
    fail(c, m, "apiVersion", "apiVersion must be specified for user \"%s\" to use an exec plugin",
         kc->user);
  else if (strcmp(api, "client.authentication.k8s.io/v1") == 0)
    x->version = EVS_EXEC_V1;
  else if (strcmp(api, "client.authentication.k8s.io/v1beta1") == 0)
    x->version = EVS_EXEC_V1BETA1;
  else
    fail(c, evs_node_get(m, "apiVersion"), "apiVersion",
         "\"%s\" is not supported: use client.authentication.k8s.io/v1 or v1beta1 (v1alpha1 was "
         "removed in Kubernetes 1.24)",
         api);
  const char *mode = str_field(c, m, "interactiveMode");
  if (mode == NULL) {
    if (x->version == EVS_EXEC_V1)
      fail(c, m, "interactiveMode",
           "interactiveMode must be specified for user \"%s\" (client.authentication.k8s.io/v1)",
           kc->user);
  } else if (strcmp(mode, "Always") == 0) {
    fail(c, evs_node_get(m, "interactiveMode"), "interactiveMode",
         "is Always, but evscale runs without a terminal: use Never or IfAvailable%s", NULL);
  } else if (strcmp(mode, "Never") != 0 && strcmp(mode, "IfAvailable") != 0) {
    fail(c, evs_node_get(m, "interactiveMode"), "interactiveMode",
         "\"%s\" is not Never, IfAvailable or Always", mode);
  }
  x->install_hint = dupstr(str_field(c, m, "installHint"));
  x->provide_cluster_info = bool_field(c, m, "provideClusterInfo");
  const evs_node_t *args = evs_node_get(m, "args");
  if (args && args->kind == EVS_NODE_SEQ && args->len) {
    x->args = calloc(args->len, sizeof *x->args);
    if (x->args == NULL) {
      c->rc = UV_ENOMEM;
    } else {
      for (size_t i = 0; i < args->len; i++) {
        const evs_node_t *a = evs_node_item(args, i);
        if (!evs_node_is_scalar(a)) {
          fail(c, a, "args", "every argument must be a string%s", NULL);
          continue;
        }
        x->args[x->nargs++] = strdup(evs_node_text(a));
      }
    }
  } else if (args && args->kind != EVS_NODE_NULL && args->kind != EVS_NODE_SEQ) {
    fail(c, args, "args", "must be a list of strings%s", NULL);
  }
  const evs_node_t *env = evs_node_get(m, "env");
  if (env && env->kind == EVS_NODE_SEQ && env->len) {
    x->env = calloc(env->len, sizeof *x->env);
    if (x->env == NULL) {
      c->rc = UV_ENOMEM;
    } else {
      for (size_t i = 0; i < env->len; i++) {
        const evs_node_t *e = evs_node_item(env, i);
        const evs_node_t *nm = evs_node_get(e, "name"), *val = evs_node_get(e, "value");
        if (nm == NULL || !evs_node_is_scalar(nm) || nm->len == 0) {
          fail(c, e, "env", "env variable name must be specified for user \"%s\"", kc->user);
          continue;
        }
        x->env[x->nenv].name = strdup(evs_node_text(nm));
        x->env[x->nenv].value = strdup(val && evs_node_is_scalar(val) ? evs_node_text(val) : "");
        x->nenv++;
      }
    }
  } else if (env && env->kind != EVS_NODE_NULL && env->kind != EVS_NODE_SEQ) {
    fail(c, env, "env", "must be a list of {name, value}%s", NULL);
  }
  evs_path_pop(&c->path, mark);
}

static void resolve_user(rctx_t *c, const evs_node_t *m, evs_kubeconfig_t *kc) {
  kc->cert_pem = b64_field(c, m, "client-certificate-data", &kc->cert_pem_len);
  if (kc->cert_pem == NULL)
    kc->cert_file = resolve_path(c->f, str_field(c, m, "client-certificate"));
  kc->key_pem = b64_field(c, m, "client-key-data", &kc->key_pem_len);
  if (kc->key_pem == NULL)
    kc->key_file = resolve_path(c->f, str_field(c, m, "client-key"));
  if ((kc->cert_pem || kc->cert_file) && !(kc->key_pem || kc->key_file))
    fail(c, m, "client-key",
         "client-key-data or client-key must be specified for user \"%s\" to use a client "
         "certificate",
         kc->user);
  if ((kc->key_pem || kc->key_file) && !(kc->cert_pem || kc->cert_file))
    fail(c, m, "client-certificate",
         "client-certificate-data or client-certificate must be specified for user \"%s\"",
         kc->user);
  kc->token = dupstr(str_field(c, m, "token"));
  kc->token_file = resolve_path(c->f, str_field(c, m, "tokenFile"));
  const evs_node_t *exec = evs_node_get(m, "exec");
  if (exec && exec->kind == EVS_NODE_MAP)
    resolve_exec(c, exec, kc);
  else if (exec && exec->kind != EVS_NODE_NULL)
    fail(c, exec, "exec", "must be a mapping%s", NULL);
  refuse_if_set(c, m, "auth-provider",
                "auth-provider plugins were removed from kubectl and client-go: use the "
                "provider's exec plugin (gke-gcloud-auth-plugin, kubelogin)");
  const char *imp = "impersonation is not supported by evscale: grant its own identity the "
                    "rights instead";
  refuse_if_set(c, m, "as", imp);
  refuse_if_set(c, m, "as-uid", imp);
  refuse_if_set(c, m, "as-groups", imp);
  refuse_if_set(c, m, "as-user-extra", imp);
  const char *basic = "basic authentication was removed from kube-apiserver in 1.19: use a "
                      "token, a client certificate or an exec plugin";
  refuse_if_set(c, m, "username", basic);
  refuse_if_set(c, m, "password", basic);
}

int evs_kubeconfig_resolve(evs_kubeconfig_file_t *const *files, size_t n, const char *context,
                           evs_kubeconfig_t **out, evs_diag_t *diag) {
  *out = NULL;
  if (context == NULL || context[0] == '\0') {
    context = NULL;
    for (size_t i = 0; i < n && context == NULL; i++)
      context = files[i]->current_context;
  }
  if (context == NULL) {
    evs_diag_add(diag, n ? files[0]->file : "kubeconfig", 0, 0, "current-context", "%s",
                 "no context chosen: set current-context or kubernetes.context");
    return EVS_EINVALCFG;
  }
  const evs_kubeconfig_file_t *cf = NULL;
  const kc_named_t *ctx = lookup(files, n, 2, context, &cf);
  if (ctx == NULL) {
    evs_diag_add(diag, n ? files[0]->file : "kubeconfig", 0, 0, "contexts",
                 "context \"%s\" was not found", context);
    return EVS_EINVALCFG;
  }
  evs_kubeconfig_t *kc = calloc(1, sizeof *kc);
  if (kc == NULL)
    return UV_ENOMEM;
  rctx_t c = {.f = cf, .d = diag};
  evs_path_init(&c.path);
  evs_path_push_key(&c.path, "contexts");
  evs_path_push_key(&c.path, context);
  kc->context = strdup(context);
  if (ctx->body == NULL || ctx->body->kind != EVS_NODE_MAP) {
    fail(&c, ctx->entry, "context", "context \"%s\" has no context mapping", context);
  } else {
    evs_path_push_key(&c.path, "context");
    const char *cl = str_field(&c, ctx->body, "cluster");
    const char *us = str_field(&c, ctx->body, "user");
    kc->namespace = dupstr(str_field(&c, ctx->body, "namespace"));
    if (cl == NULL)
      fail(&c, ctx->body, "cluster", "cluster was not specified for context \"%s\"", context);
    if (us == NULL)
      fail(&c, ctx->body, "user", "user was not specified for context \"%s\"", context);
    kc->cluster = dupstr(cl);
    kc->user = dupstr(us);
    const evs_kubeconfig_file_t *from = NULL;
    const kc_named_t *cn = cl ? lookup(files, n, 0, cl, &from) : NULL;
    if (cl && cn == NULL)
      fail(&c, evs_node_get(ctx->body, "cluster"), "cluster",
           "cluster \"%s\" was not found in any kubeconfig file", cl);
    if (cn) {
      rctx_t cc = {.f = from, .d = diag};
      evs_path_init(&cc.path);
      evs_path_push_key(&cc.path, "clusters");
      evs_path_push_key(&cc.path, cl);
      evs_path_push_key(&cc.path, "cluster");
      if (cn->body == NULL || cn->body->kind != EVS_NODE_MAP)
        fail(&cc, cn->entry, "cluster", "cluster \"%s\" has no cluster mapping", cl);
      else
        resolve_cluster(&cc, cn->body, kc);
      if (cc.rc && !c.rc)
        c.rc = cc.rc;
    }
    const kc_named_t *un = us ? lookup(files, n, 1, us, &from) : NULL;
    if (us && un == NULL)
      fail(&c, evs_node_get(ctx->body, "user"), "user",
           "user \"%s\" was not found in any kubeconfig file", us);
    if (un) {
      rctx_t uc = {.f = from, .d = diag};
      evs_path_init(&uc.path);
      evs_path_push_key(&uc.path, "users");
      evs_path_push_key(&uc.path, us);
      evs_path_push_key(&uc.path, "user");
      /* A user stanza may be empty (no credentials: anonymous). */
      if (un->body && un->body->kind == EVS_NODE_MAP)
        resolve_user(&uc, un->body, kc);
      else if (un->body && un->body->kind != EVS_NODE_NULL)
        fail(&uc, un->body, "user", "user \"%s\" must be a mapping", us);
      if (uc.rc && !c.rc)
        c.rc = uc.rc;
    }
  }
  if (c.rc != 0) {
    evs_kubeconfig_free(kc);
    return c.rc;
  }
  *out = kc;
  return 0;
}

void evs_kubeconfig_free(evs_kubeconfig_t *kc) {
  if (kc == NULL)
    return;
  char **s[] = {&kc->context,         &kc->cluster, &kc->user,   &kc->namespace, &kc->server,
                &kc->tls_server_name, &kc->ca_file, &kc->ca_pem, &kc->cert_file, &kc->key_file,
                &kc->cert_pem,        &kc->key_pem, &kc->token,  &kc->token_file};
  for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
    free(*s[i]);
  if (kc->exec) {
    evs_kubeconfig_exec_t *x = kc->exec;
    free(x->command);
    free(x->api_version);
    free(x->install_hint);
    for (size_t i = 0; i < x->nargs; i++)
      free(x->args[i]);
    free(x->args);
    for (size_t i = 0; i < x->nenv; i++) {
      free(x->env[i].name);
      free(x->env[i].value);
    }
    free(x->env);
    free(x);
  }
  free(kc);
}

int evs_kubeconfig_split_env(const char *value, char ***out) {
  *out = NULL;
  size_t cap = 1;
  for (const char *p = value; p && *p; p++)
    cap += *p == ':';
  char **v = calloc(cap, sizeof *v);
  if (v == NULL)
    return UV_ENOMEM;
  int n = 0;
  const char *p = value ? value : "";
  while (*p) {
    const char *e = strchr(p, ':');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len > 0) {
      int dup = 0;
      for (int i = 0; i < n && !dup; i++)
        dup = strlen(v[i]) == len && memcmp(v[i], p, len) == 0;
      if (!dup) {
        v[n] = strndup(p, len);
        if (v[n] == NULL) {
          for (int i = 0; i < n; i++)
            free(v[i]);
          free(v);
          return UV_ENOMEM;
        }
        n++;
      }
    }
    p += len + (e != NULL);
  }
  *out = v;
  return n;
}
