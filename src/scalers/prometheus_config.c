/* The prometheus trigger's metadata and authentication, read as KEDA's typed config reads
 * prometheusMetadata and authentication.Config (sources in include/evscale/prometheus.h).
 *
 * KEDA looks each field up in its `order` of maps, taking the first present value after
 * strings.TrimSpace (an empty value counts as absent); every error of one trigger is reported
 * together (errors.Join). We do the same, one diag entry per field. */
#include "evscale/prometheus.h"
#include "evscale/error.h"
#include "evscale/param.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEDA_DEFAULT_TIMEOUT_MS 3000 /* cmd/operator/main.go KEDA_HTTP_DEFAULT_TIMEOUT */

enum { ORD_META = 1, ORD_AUTH = 2 };

typedef struct {
  const evs_prom_input_t *in;
  evs_diag_t *diag;
  int failed, nomem;
} pctx_t;

static const char *map_get(const evs_prom_map_t *m, const char *key) {
  for (size_t i = 0; i < m->n; i++)
    if (m->items[i].key != NULL && strcmp(m->items[i].key, key) == 0)
      return m->items[i].value;
  return NULL;
}

/* configParamValue: for each map in order, for each name, the first non-empty trimmed value.
 * Returns a new string or NULL; *where says which map (for the diag path). */
static char *lookup(pctx_t *c, const char *const *names, int order, const char **where,
                    const char **name_used) {
  const int maps[2] = {ORD_META, ORD_AUTH};
  for (int o = 0; o < 2; o++) {
    if (!(order & maps[o]))
      continue;
    const evs_prom_map_t *m = maps[o] == ORD_META ? &c->in->metadata : &c->in->auth_params;
    for (size_t k = 0; names[k] != NULL; k++) {
      const char *v = map_get(m, names[k]);
      if (v == NULL)
        continue;
      char *t = evs_param_trim_dup(v);
      if (t != NULL) {
        *where = maps[o] == ORD_META ? "metadata" : "authParams";
        *name_used = names[k];
        return t;
      }
    }
  }
  *where = (order & ORD_META) ? "metadata" : "authParams";
  *name_used = names[0];
  return NULL;
}

static void err_at(pctx_t *c, const char *where, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void err_at(pctx_t *c, const char *where, const char *field, const char *fmt, ...) {
  char path[160], msg[400];
  snprintf(path, sizeof path, "spec.triggers[%zu].%s.%s", c->in->index, where, field);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (c->in->trigger != NULL)
    evs_diag_add(c->diag, c->in->object, 0, 0, path, "trigger \"%s\": %s", c->in->trigger, msg);
  else
    evs_diag_add(c->diag, c->in->object, 0, 0, path, "%s", msg);
  c->failed = 1;
}

/* A required or optional string field. */
static char *str_field(pctx_t *c, const char *name, int order, int required) {
  const char *names[] = {name, NULL};
  const char *where, *used;
  char *v = lookup(c, names, order, &where, &used);
  if (v == NULL && required)
    err_at(c, where, name, "missing required parameter \"%s\" in [%s]", name,
           order == ORD_META ? "triggerMetadata" : "triggerMetadata authParams");
  return v;
}

static int float_field(pctx_t *c, const char *name, int required, double *out) {
  char *v = str_field(c, name, ORD_META, required);
  if (v == NULL)
    return 0;
  int rc = evs_param_json_float(v, out);
  if (rc != 0)
    err_at(c, "metadata", name,
           "unable to set param \"%s\" value \"%s\": unable to unmarshal to field type float64%s",
           name, v, rc == EVS_ERANGE ? ": value out of range" : "");
  free(v);
  return rc;
}

static void bool_field(pctx_t *c, const char *name, const char *def, int *out) {
  char *v = str_field(c, name, ORD_META, 0);
  const char *s = v != NULL ? v : def;
  if (s != NULL && evs_param_go_bool(s, out) != 0)
    err_at(c, "metadata", name,
           "unable to set param \"%s\" value \"%s\": unable to parse boolean value \"%s\"", name, s,
           s);
  free(v);
}

/* RFC 7230 token characters: what Go's httpguts.ValidHeaderFieldName accepts. */
static int header_name_ok(const char *s) {
  if (*s == '\0')
    return 0;
  for (; *s; s++)
    if (!(isalnum((unsigned char)*s) || strchr("!#$%&'*+-.^_`|~", *s) != NULL))
      return 0;
  return 1;
}

/* httpguts.ValidHeaderFieldValue: no control byte other than horizontal tab. */
static int header_value_ok(const char *s) {
  for (; *s; s++)
    if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
      return 0;
  return 1;
}

static int pair_cmp(const void *a, const void *b) {
  return strcmp(((const evs_prom_pair_t *)a)->name, ((const evs_prom_pair_t *)b)->name);
}

/* setConfigValueMap: split on ",", trim, split on "=" into exactly two parts, trim both; a later
 * key replaces an earlier one (a Go map). Values may be secrets (headers): never echoed. */
static int map_field(pctx_t *c, const char *name, int headers, evs_prom_pair_t **out, size_t *n) {
  char *v = str_field(c, name, ORD_META, 0);
  if (v == NULL)
    return 0;
  size_t cap = 1;
  for (const char *p = v; *p; p++)
    cap += *p == ',';
  evs_prom_pair_t *pairs = calloc(cap, sizeof *pairs);
  size_t np = 0;
  int rc = 0;
  char *save = v;
  for (size_t i = 0; i < cap && pairs != NULL; i++) {
    char *comma = strchr(save, ',');
    if (comma != NULL)
      *comma = '\0';
    char *eq = strchr(save, '=');
    if (eq == NULL || strchr(eq + 1, '=') != NULL) {
      err_at(c, "metadata", name,
             "unable to set param \"%s\": expected format key=value in element %zu", name, i + 1);
      rc = UV_EINVAL;
      break;
    }
    *eq = '\0';
    char *key = evs_param_trim_dup(save), *val = evs_param_trim_dup(eq + 1);
    if (key == NULL)
      key = strdup("");
    if (val == NULL)
      val = strdup("");
    if (key == NULL || val == NULL) {
      free(key), free(val);
      c->nomem = 1;
      rc = UV_ENOMEM;
      break;
    }
    if (headers && (!header_name_ok(key) || !header_value_ok(val))) {
      err_at(c, "metadata", name, "element %zu: invalid HTTP header %s", i + 1,
             header_name_ok(key) ? "value" : "name");
      free(key), free(val);
      rc = UV_EINVAL;
      break;
    }
    size_t j = 0;
    while (j < np && strcmp(pairs[j].name, key) != 0)
      j++;
    if (j < np) {
      free(pairs[j].name), free(pairs[j].value);
    } else {
      np++;
    }
    pairs[j].name = key, pairs[j].value = val;
    save = comma != NULL ? comma + 1 : save + strlen(save);
  }
  if (pairs == NULL)
    c->nomem = 1, rc = UV_ENOMEM;
  if (rc != 0 && pairs != NULL) {
    for (size_t j = 0; j < np; j++)
      free(pairs[j].name), free(pairs[j].value);
    free(pairs);
    pairs = NULL, np = 0;
  }
  if (pairs != NULL && !headers)
    qsort(pairs, np, sizeof *pairs, pair_cmp);
  free(v);
  *out = pairs;
  *n = np;
  return rc;
}

/* --- Go's time.ParseDuration (src/time/format.go), then ParseInt milliseconds --- */

static const struct {
  const char *name;
  uint64_t ns;
} units[] = {{"ns", 1},       {"us", 1000},         {"\xc2\xb5s", 1000},   {"\xce\xbcs", 1000},
             {"ms", 1000000}, {"s", 1000000000ull}, {"m", 60000000000ull}, {"h", 3600000000000ull}};

static int go_duration(const char *s, uint64_t *out) {
  const uint64_t max = (uint64_t)INT64_MAX;
  int neg = 0;
  if (*s == '-' || *s == '+')
    neg = *s++ == '-';
  if (strcmp(s, "0") == 0)
    return *out = 0, 0;
  if (*s == '\0')
    return UV_EINVAL;
  uint64_t total = 0;
  while (*s) {
    if (!(*s == '.' || isdigit((unsigned char)*s)))
      return UV_EINVAL;
    uint64_t v = 0, f = 0, scale = 1;
    int pre = 0, post = 0, over = 0;
    for (; isdigit((unsigned char)*s); s++, pre = 1) {
      if (v > (max - 9) / 10)
        return EVS_ERANGE;
      v = v * 10 + (uint64_t)(*s - '0');
    }
    if (*s == '.') {
      for (s++; isdigit((unsigned char)*s); s++, post = 1) {
        if (over || f > (max - 9) / 10) {
          over = 1; /* Go drops digits beyond precision */
          continue;
        }
        f = f * 10 + (uint64_t)(*s - '0');
        scale *= 10;
      }
    }
    if (!pre && !post)
      return UV_EINVAL;
    size_t u = 0, ulen = 0;
    for (size_t k = 0; k < sizeof units / sizeof units[0]; k++) {
      size_t l = strlen(units[k].name);
      if (strncmp(s, units[k].name, l) == 0 && l > ulen)
        u = k, ulen = l;
    }
    if (ulen == 0)
      return UV_EINVAL; /* "missing unit" or "unknown unit" */
    s += ulen;
    uint64_t unit = units[u].ns;
    if (v > max / unit)
      return EVS_ERANGE;
    v *= unit;
    if (f > 0) {
      /* float64(f) * (float64(unit) / scale), as Go computes it */
      v += (uint64_t)((double)f * ((double)unit / (double)scale));
      if (v > max)
        return EVS_ERANGE;
    }
    total += v;
    if (total > max)
      return EVS_ERANGE;
  }
  if (neg && total > 0)
    return UV_EINVAL; /* KEDA: "duration cannot be negative" */
  *out = total;
  return 0;
}

int evs_prom_parse_timeout(const char *s, uint64_t *ns) {
  int rc = go_duration(s, ns);
  if (rc == 0)
    return 0;
  /* strconv.ParseInt(s, 10, 64): optional sign, decimal digits only. */
  const char *p = s;
  int neg = 0;
  if (*p == '+' || *p == '-')
    neg = *p++ == '-';
  if (*p == '\0')
    return UV_EINVAL;
  uint64_t v = 0;
  for (; *p; p++) {
    if (!isdigit((unsigned char)*p))
      return UV_EINVAL;
    if (v > ((uint64_t)INT64_MAX - 9) / 10)
      return EVS_ERANGE;
    v = v * 10 + (uint64_t)(*p - '0');
  }
  if (neg && v > 0)
    return UV_EINVAL;
  if (v > (uint64_t)INT64_MAX / 1000000)
    return EVS_ERANGE; /* Go would wrap time.Duration silently; we refuse */
  *ns = v * 1000000;
  return 0;
}

static void timeout_field(pctx_t *c, uint64_t limit_ms, uint64_t *out_ms) {
  char *v = str_field(c, "timeout", ORD_META, 0);
  uint64_t ms = KEDA_DEFAULT_TIMEOUT_MS;
  if (v != NULL) {
    uint64_t ns;
    int rc = evs_prom_parse_timeout(v, &ns);
    if (rc != 0)
      err_at(c, "metadata", "timeout",
             "unable to set param \"timeout\" value \"%s\": must be either a duration string "
             "(e.g. '30s', '5m') or a non-negative number of milliseconds%s",
             v, rc == EVS_ERANGE ? " (out of range)" : "");
    else if (ns > 0) /* KEDA: meta.Timeout > 0 wins over the global timeout */
      ms = (ns + 999999) / 1000000;
  }
  if (limit_ms > 0 && ms > limit_ms)
    ms = limit_ms;
  *out_ms = ms;
  free(v);
}

/* --- authentication.Config --- */

static const struct {
  const char *name;
  unsigned bit;
} modes[] = {{"apiKey", EVS_PROM_AUTH_APIKEY}, {"basic", EVS_PROM_AUTH_BASIC},
             {"tls", EVS_PROM_AUTH_TLS},       {"bearer", EVS_PROM_AUTH_BEARER},
             {"custom", EVS_PROM_AUTH_CUSTOM}, {"oauth", EVS_PROM_AUTH_OAUTH}};

static void auth_modes(pctx_t *c, unsigned *out) {
  const char *names[] = {"authModes", "authMode", NULL};
  const char *where, *used;
  char *v = lookup(c, names, ORD_META | ORD_AUTH, &where, &used);
  *out = 0;
  if (v == NULL)
    return;
  unsigned bits = 0;
  int bad = 0, exclusive = 0;
  char *save = v;
  for (;;) {
    char *comma = strchr(save, ',');
    if (comma != NULL)
      *comma = '\0';
    char buf[64];
    unsigned bit = 0;
    if (evs_param_trim(save, buf, sizeof buf) == 0)
      for (size_t k = 0; k < sizeof modes / sizeof modes[0]; k++)
        if (strcmp(buf, modes[k].name) == 0)
          bit = modes[k].bit;
    if (bit == 0)
      bad = 1;
    if (bit & (EVS_PROM_AUTH_BEARER | EVS_PROM_AUTH_BASIC | EVS_PROM_AUTH_OAUTH))
      exclusive++;
    bits |= bit;
    if (comma == NULL)
      break;
    *comma = ',';
    save = comma + 1;
  }
  if (bad)
    err_at(c, where, used,
           "parameter \"authModes,authMode\" value \"%s\" must be one of [apiKey basic tls "
           "bearer custom oauth]",
           v);
  else if (exclusive > 1)
    err_at(c, where, used,
           "parameter \"authModes,authMode\" value \"%s\" must contain only one of [bearer basic "
           "oauth]",
           v);
  else
    *out = bits;
  free(v);
}

/* url.ParseQuery's errors: a ';' (Go >= 1.17) or a bad %-escape. */
static int url_query_ok(const char *s) {
  for (const char *p = s; *p; p++) {
    if (*p == ';')
      return 0;
    if (*p == '%' && !(isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])))
      return 0;
  }
  return 1;
}

static void auth_fields(pctx_t *c, evs_prom_config_t *o) {
  const char *bt[] = {"bearerToken", "token", NULL}, *where, *used;
  o->bearer_token = lookup(c, bt, ORD_AUTH, &where, &used);
  o->username = str_field(c, "username", ORD_AUTH, 0);
  o->password = str_field(c, "password", ORD_AUTH, 0);
  o->cert = str_field(c, "cert", ORD_AUTH, 0);
  o->key = str_field(c, "key", ORD_AUTH, 0);
  o->ca = str_field(c, "ca", ORD_AUTH, 0);
  o->custom_auth_header = str_field(c, "customAuthHeader", ORD_AUTH, 0);
  o->custom_auth_value = str_field(c, "customAuthValue", ORD_AUTH, 0);
  /* Read by KEDA for every scaler that embeds authentication.Config, whatever the mode:
   * APIKeyAuth.method has default=header and enum=header;query, so a bad `method` fails the
   * trigger; endpointParams goes through url.ParseQuery. */
  char *method = str_field(c, "method", ORD_META | ORD_AUTH, 0);
  if (method != NULL && strcmp(method, "header") != 0 && strcmp(method, "query") != 0)
    err_at(c, "metadata", "method",
           "parameter \"method\" value \"%s\" must be one of [header query]", method);
  free(method);
  char *ep = str_field(c, "endpointParams", ORD_AUTH, 0);
  if (ep != NULL && !url_query_ok(ep))
    err_at(c, "authParams", "endpointParams",
           "unable to set param \"endpointParams\": expected url.Values, unable to parse query");
  free(ep);
  unsigned m = o->auth_modes;
  char *tu = str_field(c, "oauthTokenURI", ORD_AUTH, 0),
       *ci = str_field(c, "clientID", ORD_AUTH, 0);
  char *ak = str_field(c, "apiKey", ORD_META | ORD_AUTH, 0);
  /* Config.Validate, in its order; "<present>"/"<empty>" as KEDA prints them, never a value. */
  if ((m & EVS_PROM_AUTH_BEARER) && o->bearer_token == NULL)
    err_at(c, "authParams", "bearerToken",
           "bearer token=<empty> is required when bearer auth is enabled");
  if ((m & EVS_PROM_AUTH_BASIC) && o->username == NULL)
    err_at(c, "authParams", "username", "username=<empty> is required when basic auth is enabled");
  if ((m & EVS_PROM_AUTH_TLS) && (o->cert == NULL || o->key == NULL))
    err_at(c, "authParams", o->cert == NULL ? "cert" : "key",
           "cert=%s and key=%s are required when tls auth is enabled",
           o->cert ? "<present>" : "<empty>", o->key ? "<present>" : "<empty>");
  if ((m & EVS_PROM_AUTH_OAUTH) && (tu == NULL || ci == NULL))
    err_at(c, "authParams", tu == NULL ? "oauthTokenURI" : "clientID",
           "oauthTokenURI=%s and clientID=%s are required when oauth is enabled",
           tu ? "<present>" : "<empty>", ci ? "<present>" : "<empty>");
  if ((m & EVS_PROM_AUTH_CUSTOM) && (o->custom_auth_header == NULL || o->custom_auth_value == NULL))
    err_at(c, "authParams", o->custom_auth_header == NULL ? "customAuthHeader" : "customAuthValue",
           "customAuthHeader=%s and customAuthValue=%s are required when custom auth is enabled",
           o->custom_auth_header ? "<present>" : "<empty>",
           o->custom_auth_value ? "<present>" : "<empty>");
  if ((m & EVS_PROM_AUTH_APIKEY) && ak == NULL)
    err_at(c, "authParams", "apiKey", "apiKey is required when apiKey auth is enabled");
  if ((m & EVS_PROM_AUTH_CUSTOM) && o->custom_auth_header != NULL &&
      (!header_name_ok(o->custom_auth_header) ||
       (o->custom_auth_value && !header_value_ok(o->custom_auth_value))))
    err_at(c, "authParams", "customAuthHeader", "invalid HTTP header name or value");
  if ((m & EVS_PROM_AUTH_BEARER) && o->bearer_token && !header_value_ok(o->bearer_token))
    err_at(c, "authParams", "bearerToken", "the token holds a control character");
  free(tu), free(ci), free(ak);
}

static int server_ok(const char *s) {
  return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

int evs_prom_config_parse(const evs_prom_input_t *in, uint64_t request_timeout_limit_ms,
                          evs_prom_config_t *o, evs_diag_t *diag) {
  memset(o, 0, sizeof *o);
  pctx_t c = {.in = in, .diag = diag};
  o->server_address = str_field(&c, "serverAddress", ORD_META, 1);
  if (o->server_address != NULL && !server_ok(o->server_address))
    /* The address is not echoed: a URL with userinfo would carry a password. */
    err_at(&c, "metadata", "serverAddress", "must be an http:// or https:// URL");
  else if (o->server_address != NULL && strchr(o->server_address, '@') != NULL)
    err_at(&c, "metadata", "serverAddress",
           "credentials in the URL are not supported: use authModes basic");
  o->query = str_field(&c, "query", ORD_META, 1);
  map_field(&c, "queryParameters", 0, &o->query_params, &o->n_query_params);
  float_field(&c, "threshold", 1, &o->threshold);
  float_field(&c, "activationThreshold", 0, &o->activation_threshold);
  o->namespace_ = str_field(&c, "namespace", ORD_META, 0);
  map_field(&c, "customHeaders", 1, &o->custom_headers, &o->n_custom_headers);
  o->ignore_null_values = 1;
  bool_field(&c, "ignoreNullValues", "true", &o->ignore_null_values);
  bool_field(&c, "unsafeSsl", NULL, &o->unsafe_ssl);
  timeout_field(&c, request_timeout_limit_ms, &o->timeout_ms);
  auth_modes(&c, &o->auth_modes);
  auth_fields(&c, o);
  if (c.failed || c.nomem) {
    evs_prom_config_free(o);
    return c.nomem ? UV_ENOMEM : UV_EINVAL;
  }
  return 0;
}

static void free_pairs(evs_prom_pair_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(p[i].name), free(p[i].value);
  free(p);
}

void evs_prom_config_free(evs_prom_config_t *o) {
  free(o->server_address), free(o->query), free(o->namespace_);
  free_pairs(o->custom_headers, o->n_custom_headers);
  free_pairs(o->query_params, o->n_query_params);
  free(o->bearer_token), free(o->username), free(o->password), free(o->cert), free(o->key);
  free(o->ca), free(o->custom_auth_header), free(o->custom_auth_value);
  memset(o, 0, sizeof *o);
}

char *evs_prom_query_escape(const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  char *out = malloc(strlen(s) * 3 + 1), *p = out;
  if (out == NULL)
    return NULL;
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~')
      *p++ = (char)ch;
    else if (ch == ' ')
      *p++ = '+';
    else
      *p++ = '%', *p++ = hex[ch >> 4], *p++ = hex[ch & 15];
  }
  *p = '\0';
  return out;
}
