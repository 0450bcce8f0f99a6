/* Printing the configuration: values as YAML, the whole dump with secrets masked, and the
 * README table. */
#include "config_int.h"
#include "evscale/duration.h"
#include "evscale/error.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CFIELD(cfg, k, T) ((const T *)(const void *)((const char *)(cfg) + (k)->off))
#define EVS__REDACTED "<redacted>"

/* Appends to a bounded buffer, keeping the would-be length like snprintf. */
typedef struct {
  char *buf;
  size_t cap, len;
} evs__sb_t;

static void evs__sb_put(evs__sb_t *b, const char *s, size_t n) {
  if (b->len < b->cap) {
    size_t room = b->cap - b->len - 1;
    memcpy(b->buf + b->len, s, n < room ? n : room);
    b->buf[b->len + (n < room ? n : room)] = '\0';
  }
  b->len += n;
}

/* Each "scheme://userinfo@host" in s: the password (or a user with no password, often a token)
 * is replaced, so a connection string can be shown without its secret. */
void evs_config__mask_url(const char *s, char *buf, size_t cap) {
  evs__sb_t b = {buf, cap, 0};
  if (cap)
    buf[0] = '\0';
  while (*s) {
    const char *sep = strstr(s, "://");
    if (sep == NULL)
      break;
    const char *auth = sep + 3;
    size_t alen = strcspn(auth, "/?# \t\"'");
    const char *at = NULL;
    for (const char *p = auth; p < auth + alen; p++)
      if (*p == '@')
        at = p;
    if (at == NULL) {
      evs__sb_put(&b, s, (size_t)(auth - s));
      s = auth;
      continue;
    }
    const char *colon = memchr(auth, ':', (size_t)(at - auth));
    const char *keep_end = colon ? colon + 1 : auth;
    evs__sb_put(&b, s, (size_t)(keep_end - s));
    evs__sb_put(&b, EVS__REDACTED, strlen(EVS__REDACTED));
    s = at;
  }
  evs__sb_put(&b, s, strlen(s));
}

/* One address item: "[scheme://]userinfo@host[:port]", where host may be "[v6]". In an address
 * field every '@' belongs to the userinfo (a password may contain one), so the last one ends it.
 * "user:pass@" keeps the user; a lone "token@" is all secret. */
static void evs__mask_address_item(evs__sb_t *b, const char *s, size_t n) {
  const char *end = s + n, *start = s, *at = NULL;
  for (const char *p = s; p + 3 <= end; p++)
    if (memcmp(p, "://", 3) == 0) {
      start = p + 3;
      break;
    }
  for (const char *p = start; p < end; p++)
    if (*p == '@')
      at = p;
  if (at == NULL) {
    evs__sb_put(b, s, n);
    return;
  }
  const char *colon = memchr(start, ':', (size_t)(at - start));
  const char *keep_end = colon ? colon + 1 : start;
  evs__sb_put(b, s, (size_t)(keep_end - s));
  evs__sb_put(b, EVS__REDACTED, strlen(EVS__REDACTED));
  evs__sb_put(b, at, (size_t)(end - at));
}

/* An address field may hold a comma-separated list (KEDA's redis "addresses", "hosts"). */
void evs_config__mask_address(const char *s, char *buf, size_t cap) {
  evs__sb_t b = {buf, cap, 0};
  if (cap)
    buf[0] = '\0';
  for (;;) {
    size_t n = strcspn(s, ",");
    evs__mask_address_item(&b, s, n);
    if (s[n] == '\0')
      break;
    evs__sb_put(&b, ",", 1);
    s += n + 1;
  }
}

int evs_config__quote(const char *s, char *buf, size_t cap) {
  /* Masking a one-letter user makes it ten letters: room for the worst case. */
  size_t mlen = strlen(s) * 3 + 64;
  char *masked = malloc(mlen);
  if (masked)
    evs_config__mask_url(s, masked, mlen);
  const char *p = masked ? masked : s;
  evs__sb_t b = {buf, cap, 0};
  if (cap)
    buf[0] = '\0';
  evs__sb_put(&b, "\"", 1);
  for (; *p; p++) {
    unsigned char c = (unsigned char)*p;
    char esc[8];
    if (c == '"' || c == '\\') {
      esc[0] = '\\';
      esc[1] = (char)c;
      evs__sb_put(&b, esc, 2);
    } else if (c < 0x20 || c == 0x7f) {
      snprintf(esc, sizeof esc, "\\x%02x", c);
      evs__sb_put(&b, esc, 4);
    } else {
      evs__sb_put(&b, (const char *)&c, 1);
    }
  }
  evs__sb_put(&b, "\"", 1);
  free(masked);
  return (int)b.len;
}

/* The shortest text strtod reads back to the same double. */
static int evs__fmt_real(double d, char *buf, size_t cap) {
  char tmp[40];
  /* Whole numbers print as written ("50", not the shortest %g form "5e+01"). */
  if (d == (double)(int64_t)d && d > -1e15 && d < 1e15)
    return snprintf(buf, cap, "%.0f", d);
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*g", prec, d);
    if (strtod(tmp, NULL) == d)
      break;
  }
  /* A bare "50" would read back as an integer node, which a real field accepts too. */
  return snprintf(buf, cap, "%s", tmp);
}

static int evs__fmt_size(uint64_t v, char *buf, size_t cap) {
  static const char *const sfx[] = {"Gi", "Mi", "Ki"};
  static const uint64_t mul[] = {1073741824, 1048576, 1024};
  for (size_t i = 0; i < 3; i++)
    if (v && v % mul[i] == 0)
      return snprintf(buf, cap, "%llu%s", (unsigned long long)(v / mul[i]), sfx[i]);
  return snprintf(buf, cap, "%llu", (unsigned long long)v);
}

static int evs__fmt_list(const evs_strlist_t *l, char *buf, size_t cap) {
  evs__sb_t b = {buf, cap, 0};
  if (cap)
    buf[0] = '\0';
  evs__sb_put(&b, "[", 1);
  for (size_t i = 0; i < l->n; i++) {
    char q[512];
    int n = evs_config__quote(l->items[i], q, sizeof q);
    if (i)
      evs__sb_put(&b, ", ", 2);
    evs__sb_put(&b, q, (size_t)n < sizeof q ? (size_t)n : sizeof q - 1);
  }
  evs__sb_put(&b, "]", 1);
  return (int)b.len;
}

int evs_config__format(const evs_config__key_t *k, const evs_config_t *cfg, char *buf, size_t cap) {
  switch (k->type) {
  case EVS_CONFIG__BOOL:
    return snprintf(buf, cap, "%s", *CFIELD(cfg, k, int) ? "true" : "false");
  case EVS_CONFIG__INT:
    return snprintf(buf, cap, "%lld", (long long)*CFIELD(cfg, k, int64_t));
  case EVS_CONFIG__OPTINT:
    if (*CFIELD(cfg, k, int64_t) == 0)
      return snprintf(buf, cap, "null");
    return snprintf(buf, cap, "%lld", (long long)*CFIELD(cfg, k, int64_t));
  case EVS_CONFIG__REAL:
    return evs__fmt_real(*CFIELD(cfg, k, double), buf, cap);
  case EVS_CONFIG__DUR:
    return evs_duration_format(*CFIELD(cfg, k, uint64_t), buf, cap);
  case EVS_CONFIG__SIZE:
    return evs__fmt_size(*CFIELD(cfg, k, uint64_t), buf, cap);
  case EVS_CONFIG__ENUM: {
    /* "" and "2.13" (metrics.keda_compat) must stay strings when read back. */
    const char *name = k->names[*CFIELD(cfg, k, int)];
    if (name[0] == '\0' || (name[0] >= '0' && name[0] <= '9'))
      return evs_config__quote(name, buf, cap);
    return snprintf(buf, cap, "%s", name);
  }
  case EVS_CONFIG__LIST:
    return evs__fmt_list(CFIELD(cfg, k, evs_strlist_t), buf, cap);
  default:
    return evs_config__quote(*CFIELD(cfg, k, char *const), buf, cap);
  }
}

/* ---- scaled_objects: nodes back to YAML ---- */

/* Lower-cases key into low (cut to cap); returns its length. */
static size_t evs__lower(const char *key, char *low, size_t cap) {
  size_t i = 0;
  for (; key[i] && i < cap - 1; i++)
    low[i] = (char)tolower((unsigned char)key[i]);
  low[i] = '\0';
  return i;
}

/* The credential fields of KEDA's scalers, matched exactly (case-insensitively), read at
 * kedacore/keda commit 8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a (v2.20.1-117):
 *  - pkg/scalers/redis_scaler.go, redisConnectionInfo: `keda:"name=password, order=triggerMetadata;
 *    resolvedEnv;authParams"`, `name=sentinelPassword`, `name=keyPassword, order=authParams`,
 *    `name=key, order=authParams`, `name=Cert;cert, order=authParams`, `name=ca, order=authParams`;
 *  - pkg/scalers/prometheus_scaler.go embeds authentication.Config,
 *    pkg/scalers/authentication/authentication_types.go: BasicAuth `name=password`, CertAuth
 *    `name=cert`/`name=key`/`name=ca`, OAuth `name=clientSecret`, APIKeyAuth `name=apiKey,
 *    order=triggerMetadata;authParams`, CustomAuth `name=customAuthValue`, and
 *    `name=bearerToken;token`.
 * KEDA has no "secret" tag: these are the fields a TriggerAuthentication fills from a Secret and
 * that hold the credential itself. Certificates and CAs are public, but they travel in the same
 * Secrets and a dump gains nothing from a page of PEM. Usernames, customAuthHeader (a header
 * NAME) and sentinelMaster stay visible: they name things, and hiding them hides mistakes. */
static const char *const evs__keda_secrets[] = {
    "password", "sentinelpassword", "keypassword",  "key",   "cert",           "ca",
    "apikey",   "bearertoken",      "clientsecret", "token", "customauthvalue"};

/* Keys whose values are credentials: KEDA's fields above, and by their words any other
 * credential-looking key (password, token, secret, ...). A "...FromEnv" key holds the NAME of a
 * variable, not its value, and stays visible. */
static int evs__secret_key(const char *key) {
  static const char *const words[] = {"password", "passwd",     "token",
                                      "secret",   "credential", "apikey",
                                      "api_key",  "privatekey", "private_key"};
  size_t n = strlen(key);
  if (n >= 7 && strcmp(key + n - 7, "FromEnv") == 0)
    return 0;
  char low[128];
  size_t i = evs__lower(key, low, sizeof low);
  for (size_t w = 0; w < sizeof evs__keda_secrets / sizeof evs__keda_secrets[0]; w++)
    if (strcmp(low, evs__keda_secrets[w]) == 0)
      return 1;
  for (size_t w = 0; w < sizeof words / sizeof words[0]; w++)
    if (strstr(low, words[w]))
      return 1;
  return i >= 3 && strcmp(low + i - 3, "key") == 0; /* key, tlsKey, clientKey */
}

/* Keys whose values are addresses, where a userinfo may come without a scheme
 * ("default:S3CRET@redis:6379"): redis's address/addresses/host/hosts, prometheus's
 * serverAddress, and any *url / *uri / *endpoint. Elsewhere an '@' is not userinfo (PromQL's
 * "@ end()" modifier, an e-mail address), so only scheme URLs are masked there. */
static int evs__address_key(const char *key) {
  static const char *const exact[] = {"host", "hosts"};
  static const char *const suffix[] = {"address", "addresses", "url", "uri", "endpoint"};
  char low[128];
  size_t n = evs__lower(key, low, sizeof low);
  for (size_t w = 0; w < sizeof exact / sizeof exact[0]; w++)
    if (strcmp(low, exact[w]) == 0)
      return 1;
  for (size_t w = 0; w < sizeof suffix / sizeof suffix[0]; w++) {
    size_t sl = strlen(suffix[w]);
    if (n >= sl && strcmp(low + n - sl, suffix[w]) == 0)
      return 1;
  }
  return 0;
}

/* How a value is printed: as is, wholly masked, or as an address with its userinfo masked. */
enum { EVS__PLAIN = 0, EVS__MASKED = 1, EVS__ADDRESS = 2 };

static int evs__key_mode(const char *key, int inherited) {
  if (inherited == EVS__MASKED || evs__secret_key(key))
    return EVS__MASKED;
  return evs__address_key(key) ? EVS__ADDRESS : inherited;
}

typedef struct {
  FILE *out;
  size_t budget; /* nodes left: aliases can make a small document print enormously */
} evs__emit_t;

static void evs__emit_scalar(evs__emit_t *e, const evs_node_t *n, int mode) {
  if (mode == EVS__MASKED) {
    fputs("\"" EVS__REDACTED "\"", e->out);
  } else if (n->kind == EVS_NODE_STR) {
    /* Masking a one-letter user makes it ten letters: room for the worst case. */
    size_t len = strlen(n->u.text), mcap = len * 11 + 64, cap = mcap * 4 + 80;
    char *m = mode == EVS__ADDRESS ? malloc(mcap) : NULL;
    char *q = malloc(cap);
    if (m)
      evs_config__mask_address(n->u.text, m, mcap);
    if (q && (m || mode != EVS__ADDRESS)) {
      evs_config__quote(m ? m : n->u.text, q, cap);
      fputs(q, e->out);
    } else {
      fputs("\"" EVS__REDACTED "\"", e->out); /* out of memory: never print it unmasked */
    }
    free(m);
    free(q);
  } else {
    fputs(n->kind == EVS_NODE_NULL ? "null" : n->u.text, e->out);
  }
}

static void evs__emit_key(evs__emit_t *e, const char *key) {
  int plain = *key != '\0';
  for (const char *p = key; *p; p++)
    if (!isalnum((unsigned char)*p) && !strchr("_-./", *p))
      plain = 0;
  if (plain && !strchr("-.", *key))
    fputs(key, e->out);
  else
    evs__emit_scalar(e, &(evs_node_t){.kind = EVS_NODE_STR, .u.text = key}, 0);
}

static void evs__emit(evs__emit_t *e, const evs_node_t *n, int indent, int mode);

/* A value after "key:" or "- ": inline when scalar or empty, else on the next lines. */
static void evs__emit_value(evs__emit_t *e, const evs_node_t *v, int indent, int mode) {
  if (evs_node_is_scalar(v) || v->len == 0) {
    fputc(' ', e->out);
    if (!evs_node_is_scalar(v))
      fputs(v->kind == EVS_NODE_MAP ? "{}" : "[]", e->out);
    else
      evs__emit_scalar(e, v, mode);
    fputc('\n', e->out);
    return;
  }
  fputc('\n', e->out);
  evs__emit(e, v, indent, mode);
}

static void evs__emit(evs__emit_t *e, const evs_node_t *n, int indent, int mode) {
  for (size_t i = 0; i < n->len; i++) {
    if (e->budget == 0 || e->budget-- == 1) {
      fprintf(e->out, "%*s# ... (output cut: aliases expand beyond 100000 entries)\n", indent, "");
      e->budget = 0;
      return;
    }
    fprintf(e->out, "%*s", indent, "");
    if (n->kind == EVS_NODE_SEQ) {
      fputc('-', e->out);
      evs__emit_value(e, evs_node_item(n, i), indent + 2, mode);
    } else {
      const char *key = evs_node_text(evs_node_key(n, i));
      evs__emit_key(e, key);
      fputc(':', e->out);
      evs__emit_value(e, evs_node_value(n, i), indent + 2, evs__key_mode(key, mode));
    }
  }
}

int evs_config_dump(const evs_config_t *cfg, FILE *out) {
  char section[64] = "";
  for (size_t i = 0; i < evs_config__nkeys; i++) {
    const evs_config__key_t *k = &evs_config__keys[i];
    const char *dot = strchr(k->path, '.');
    size_t slen = (size_t)(dot - k->path);
    if (strlen(section) != slen || strncmp(section, k->path, slen) != 0) {
      snprintf(section, sizeof section, "%.*s", (int)slen, k->path);
      fprintf(out, "%s:\n", section);
    }
    char val[4096];
    evs_config__format(k, cfg, val, sizeof val);
    fprintf(out, "  %s: %s\n", dot + 1, val);
  }
  fputs("scaled_objects:", out);
  evs__emit_t e = {out, 100000};
  if (cfg->n_scaled_objects == 0)
    fputs(" []\n", out);
  else
    fputc('\n', out);
  for (size_t i = 0; i < cfg->n_scaled_objects; i++) {
    fputs("  -", out);
    evs__emit_value(&e, cfg->scaled_objects[i], 4, 0);
  }
  return ferror(out) ? UV_EIO : 0;
}

void evs_config_print_markdown(FILE *out) {
  fputs("| key | env | default | reload | meaning |\n|---|---|---|---|---|\n", out);
  for (size_t i = 0; i < evs_config__nkeys; i++) {
    const evs_config__key_t *k = &evs_config__keys[i];
    char env[128];
    evs_config_env_name(k->path, env, sizeof env);
    const char *def = k->def;
    if (*def == '\0')
      def = k->type == EVS_CONFIG__OPTINT ? "none" : k->type == EVS_CONFIG__LIST ? "[]" : "\"\"";
    fprintf(out, "| `%s` | `%s` | `%s` | %s | %s |\n", k->path, env, def, k->reload ? "yes" : "no",
            k->help);
  }
  fputs("| `scaled_objects` | (none) | `[]` | yes | ScaledObjects defined in the file "
        "(keda.sh/v1alpha1 schema); status to the log and /metrics only; a name clash with an "
        "API object: the API's is used |\n",
        out);
}
