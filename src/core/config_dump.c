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
  case EVS_CONFIG__ENUM:
    return snprintf(buf, cap, "%s", k->names[*CFIELD(cfg, k, int)]);
  case EVS_CONFIG__LIST:
    return evs__fmt_list(CFIELD(cfg, k, evs_strlist_t), buf, cap);
  default:
    return evs_config__quote(*CFIELD(cfg, k, char *const), buf, cap);
  }
}

/* ---- scaled_objects: nodes back to YAML ---- */

/* Keys whose values are credentials (KEDA trigger metadata: password, token, ...). A "...FromEnv"
 * key holds the NAME of a variable, not its value, and stays visible. */
static int evs__secret_key(const char *key) {
  static const char *const words[] = {"password", "passwd",     "token",
                                      "secret",   "credential", "apikey",
                                      "api_key",  "privatekey", "private_key"};
  size_t n = strlen(key);
  if (n >= 7 && strcmp(key + n - 7, "FromEnv") == 0)
    return 0;
  char low[128];
  size_t i = 0;
  for (; i < n && i < sizeof low - 1; i++)
    low[i] = (char)tolower((unsigned char)key[i]);
  low[i] = '\0';
  for (size_t w = 0; w < sizeof words / sizeof words[0]; w++)
    if (strstr(low, words[w]))
      return 1;
  return i >= 3 && strcmp(low + i - 3, "key") == 0; /* key, tlsKey, clientKey */
}

typedef struct {
  FILE *out;
  size_t budget; /* nodes left: aliases can make a small document print enormously */
} evs__emit_t;

static void evs__emit_scalar(evs__emit_t *e, const evs_node_t *n, int masked) {
  if (masked) {
    fputs("\"" EVS__REDACTED "\"", e->out);
  } else if (n->kind == EVS_NODE_STR) {
    size_t cap = strlen(n->u.text) * 4 + 80;
    char *q = malloc(cap);
    if (q) {
      evs_config__quote(n->u.text, q, cap);
      fputs(q, e->out);
    }
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

static void evs__emit(evs__emit_t *e, const evs_node_t *n, int indent, int masked);

/* A value after "key:" or "- ": inline when scalar or empty, else on the next lines. */
static void evs__emit_value(evs__emit_t *e, const evs_node_t *v, int indent, int masked) {
  if (evs_node_is_scalar(v) || v->len == 0) {
    fputc(' ', e->out);
    if (!evs_node_is_scalar(v))
      fputs(v->kind == EVS_NODE_MAP ? "{}" : "[]", e->out);
    else
      evs__emit_scalar(e, v, masked);
    fputc('\n', e->out);
    return;
  }
  fputc('\n', e->out);
  evs__emit(e, v, indent, masked);
}

static void evs__emit(evs__emit_t *e, const evs_node_t *n, int indent, int masked) {
  for (size_t i = 0; i < n->len; i++) {
    if (e->budget == 0 || e->budget-- == 1) {
      fprintf(e->out, "%*s# ... (output cut: aliases expand beyond 100000 entries)\n", indent, "");
      e->budget = 0;
      return;
    }
    fprintf(e->out, "%*s", indent, "");
    if (n->kind == EVS_NODE_SEQ) {
      fputc('-', e->out);
      evs__emit_value(e, evs_node_item(n, i), indent + 2, masked);
    } else {
      const char *key = evs_node_text(evs_node_key(n, i));
      evs__emit_key(e, key);
      fputc(':', e->out);
      evs__emit_value(e, evs_node_value(n, i), indent + 2, masked || evs__secret_key(key));
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
        "(keda.sh/v1alpha1 schema) |\n",
        out);
}
