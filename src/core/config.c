/* The configuration loader: defaults, then the YAML file, then EVSCALE_* variables, then
 * cross-key checks; every problem goes to the diag list with its position. */
#include "config_int.h"
#include "evscale/error.h"
#include "evscale/file.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
  evs_config_t *cfg;
  evs_diag_t diag;
  const char *file;
  /* Keys whose value was refused: cross-key checks skip them, since their value in cfg is not
   * what the user wrote. */
  unsigned char bad[64];
  /* The accepted ScaledObjects by namespace/name (slot: hash tag << 32 | index + 1, 0 = empty),
   * so a second definition is found without comparing with every earlier object (issue 9). */
  uint64_t *so_slots;
  uint32_t so_mask;
} evs__ctx_t;

/* ---- did-you-mean ---- */

size_t evs_edit_distance(const char *a, const char *b) {
  /* Optimal string alignment: Levenshtein plus adjacent transpositions ("qsp" → "qps" is 1). */
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64)
    return la > lb ? la : lb;
  size_t d[65][65];
  for (size_t i = 0; i <= la; i++)
    d[i][0] = i;
  for (size_t j = 0; j <= lb; j++)
    d[0][j] = j;
  for (size_t i = 1; i <= la; i++) {
    for (size_t j = 1; j <= lb; j++) {
      size_t cost = a[i - 1] != b[j - 1];
      size_t v = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < v)
        v = d[i][j - 1] + 1;
      if (d[i - 1][j - 1] + cost < v)
        v = d[i - 1][j - 1] + cost;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
        v = d[i - 2][j - 2] + 1;
      d[i][j] = v;
    }
  }
  return d[la][lb];
}

const char *evs_did_you_mean(const char *word, const char *const *candidates, size_t n) {
  /* A typo's reach grows with the word: one edit for short words, up to three for long ones. */
  size_t len = strlen(word);
  size_t reach = len <= 4 ? 1 : len <= 8 ? 2 : 3;
  const char *best = NULL;
  size_t best_d = reach + 1;
  for (size_t i = 0; i < n; i++) {
    size_t dist = evs_edit_distance(word, candidates[i]);
    if (dist < best_d) {
      best_d = dist;
      best = candidates[i];
    }
  }
  return best;
}

/* ---- small helpers ---- */

uint64_t evs_config_hash(const void *buf, size_t len) {
  const unsigned char *p = buf;
  uint64_t h = 14695981039346656037ull;
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

int evs_config_env_name(const char *key, char *buf, size_t cap) {
  static const char prefix[] = "EVSCALE_";
  size_t n = 0;
  /* Like snprintf: write what fits, NUL-terminate, return the full length. */
  for (const char *p = prefix; *p; p++, n++)
    if (n + 1 < cap)
      buf[n] = *p;
  for (const char *p = key; *p; p++, n++)
    if (n + 1 < cap)
      buf[n] = *p == '.' ? '_' : (*p >= 'a' && *p <= 'z') ? (char)(*p - 'a' + 'A') : *p;
  if (cap > 0)
    buf[n < cap ? n : cap - 1] = '\0';
  return (int)n;
}

size_t evs_config_key_count(void) { return evs_config__nkeys; }

const char *evs_config_key_path(size_t i) {
  return i < evs_config__nkeys ? evs_config__keys[i].path : NULL;
}

int evs_config_reloadable(const char *key) {
  if (strcmp(key, "scaled_objects") == 0)
    return 1;
  const evs_config__key_t *k = evs_config__find(key);
  return k ? k->reload : EVS_ENOTFOUND;
}

int evs_config_changed(const evs_config_t *a, const evs_config_t *b, const char *key) {
  const evs_config__key_t *k = evs_config__find(key);
  return k ? !evs_config__equal(k, a, b) : EVS_ENOTFOUND;
}

static evs_config__origin_t *evs__origin(const evs_config_t *cfg, const evs_config__key_t *k) {
  return &((evs_config__origin_t *)cfg->origins)[k - evs_config__keys];
}

static int evs__set_origin(evs_config_t *cfg, const evs_config__key_t *k, const char *source,
                           uint32_t line, uint32_t col) {
  evs_config__origin_t *o = evs__origin(cfg, k);
  char *dup = source ? strdup(source) : NULL;
  if (source && dup == NULL)
    return UV_ENOMEM;
  free(o->source);
  o->source = dup;
  o->line = line;
  o->col = col;
  return 0;
}

/* Parses one value into the config; a bad value becomes a diag entry at (source, line, col). */
static int evs__apply(evs__ctx_t *c, const evs_config__key_t *k, const evs_config__in_t *in,
                      const char *source, uint32_t line, uint32_t col) {
  char err[512];
  int rc = evs_config__parse(k, c->cfg, in, err, sizeof err);
  if (rc == 0)
    rc = evs__set_origin(c->cfg, k, source, line, col);
  if (rc == UV_ENOMEM)
    return rc;
  if (rc != 0) {
    evs_diag_add(&c->diag, source, line, col, k->path, "%s", err);
    c->bad[(size_t)(k - evs_config__keys) % sizeof c->bad] = 1;
  }
  return 0;
}

/* ---- the file ---- */

#define EVS__MAX_SECTIONS 16

/* The distinct first components of the key paths, in table order, plus scaled_objects. */
static size_t evs__sections(char names[][32], const char **out) {
  size_t n = 0;
  for (size_t i = 0; i < evs_config__nkeys && n < EVS__MAX_SECTIONS - 1; i++) {
    const char *p = evs_config__keys[i].path;
    size_t len = (size_t)(strchr(p, '.') - p);
    if (n && strlen(out[n - 1]) == len && strncmp(out[n - 1], p, len) == 0)
      continue;
    snprintf(names[n], sizeof names[n], "%.*s", (int)len, p);
    out[n] = names[n];
    n++;
  }
  out[n++] = "scaled_objects";
  return n;
}

/* Entries past the diag's cap are only counted (evs_diag_add drops them): their did-you-mean
 * search is skipped, or a file of 80,000 unknown keys costs 80,000 of them (issue 9). */
static int evs__diag_full(evs__ctx_t *c) {
  if (c->diag.n < (c->diag.max ? c->diag.max : 1000))
    return 0;
  c->diag.dropped++;
  return 1;
}

static void evs__unknown_leaf(evs__ctx_t *c, const char *section, const evs_node_t *key) {
  if (evs__diag_full(c))
    return;
  const char *cands[64];
  size_t n = 0, slen = strlen(section);
  const char *elsewhere = NULL;
  for (size_t i = 0; i < evs_config__nkeys && n < 64; i++) {
    const char *p = evs_config__keys[i].path;
    if (strncmp(p, section, slen) == 0 && p[slen] == '.')
      cands[n++] = p + slen + 1;
    else if (strcmp(strchr(p, '.') + 1, key->u.text) == 0)
      elsewhere = p; /* the right key in the wrong section */
  }
  const char *near = evs_did_you_mean(key->u.text, cands, n);
  char path[256];
  snprintf(path, sizeof path, "%s.%s", section, key->u.text);
  if (near)
    evs_diag_add(&c->diag, c->file, key->line, key->col, path, "unknown key (did you mean '%s'?)",
                 near);
  else if (elsewhere)
    evs_diag_add(&c->diag, c->file, key->line, key->col, path, "unknown key (did you mean '%s'?)",
                 elsewhere);
  else
    evs_diag_add(&c->diag, c->file, key->line, key->col, path, "unknown key");
}

static int evs__walk_section(evs__ctx_t *c, const char *section, const evs_node_t *map) {
  if (map->kind == EVS_NODE_NULL)
    return 0; /* "server:" with nothing under it: all defaults */
  if (map->kind != EVS_NODE_MAP) {
    evs_diag_add(&c->diag, c->file, map->line, map->col, section, "expected a mapping, got %s",
                 evs_node_kind_name(map->kind));
    return 0;
  }
  for (size_t i = 0; i < map->len; i++) {
    const evs_node_t *key = evs_node_key(map, i), *val = evs_node_value(map, i);
    char path[256];
    snprintf(path, sizeof path, "%s.%s", section, key->u.text);
    const evs_config__key_t *k = evs_config__find(path);
    if (k == NULL) {
      evs__unknown_leaf(c, section, key);
      continue;
    }
    evs_config__in_t in = {val, evs_node_text(val)};
    int rc = evs__apply(c, k, &in, c->file, val->line, val->col);
    if (rc != 0)
      return rc;
  }
  return 0;
}

static void evs__unknown_section(evs__ctx_t *c, const evs_node_t *key, const char **secs,
                                 size_t nsecs) {
  if (evs__diag_full(c))
    return;
  /* "circuit_breaker.enabled: true" at the top: a real key written flat. */
  if (evs_config__find(key->u.text)) {
    evs_diag_add(&c->diag, c->file, key->line, key->col, key->u.text,
                 "unknown key: write it nested (%.*s: then %s: on the next line, indented)",
                 (int)(strchr(key->u.text, '.') - key->u.text), key->u.text,
                 strchr(key->u.text, '.') + 1);
    return;
  }
  const char *near = evs_did_you_mean(key->u.text, secs, nsecs);
  if (near)
    evs_diag_add(&c->diag, c->file, key->line, key->col, key->u.text,
                 "unknown key (did you mean '%s'?)", near);
  else
    evs_diag_add(&c->diag, c->file, key->line, key->col, key->u.text, "unknown key");
}

/* ---- scaled_objects: structure only; the ScaledObject validator checks the rest ---- */

/* A required string field of `map` with an exact value (or any non-empty string if want is
 * NULL). Returns the node when it is good. */
static const evs_node_t *evs__want_str(evs__ctx_t *c, const evs_node_t *map, const char *key,
                                       const char *want, evs_path_t *path) {
  size_t mark = evs_path_push_key(path, key);
  const evs_node_t *v = evs_node_get(map, key);
  const evs_node_t *good = NULL;
  if (v == NULL)
    evs_diag_add(&c->diag, c->file, map->line, map->col, path->buf, "missing (required%s%s)",
                 want ? ": " : "", want ? want : "");
  else if (v->kind != EVS_NODE_STR || v->len == 0)
    evs_diag_add(&c->diag, c->file, v->line, v->col, path->buf, "expected a non-empty string");
  else if (want && strcmp(v->u.text, want) != 0)
    evs_diag_add(&c->diag, c->file, v->line, v->col, path->buf, "must be '%s', got '%s'", want,
                 v->u.text);
  else
    good = v;
  evs_path_pop(path, mark);
  return good;
}

static const evs_node_t *evs__want_map(evs__ctx_t *c, const evs_node_t *map, const char *key,
                                       evs_path_t *path) {
  size_t mark = evs_path_push_key(path, key);
  const evs_node_t *v = evs_node_get(map, key);
  if (v == NULL)
    evs_diag_add(&c->diag, c->file, map->line, map->col, path->buf, "missing (required)");
  else if (v->kind != EVS_NODE_MAP)
    evs_diag_add(&c->diag, c->file, v->line, v->col, path->buf, "expected a mapping, got %s",
                 evs_node_kind_name(v->kind));
  evs_path_pop(path, mark);
  return v && v->kind == EVS_NODE_MAP ? v : NULL;
}

static const char *evs__so_ns(const evs_node_t *meta) {
  const evs_node_t *ns = evs_node_get(meta, "namespace");
  return ns && ns->kind == EVS_NODE_STR ? ns->u.text : "";
}

static uint32_t evs__so_tag(const char *ns, const char *name) {
  return (uint32_t)(evs_node_hash(name, strlen(name)) * 0x9e3779b97f4a7c15ull ^
                    evs_node_hash(ns, strlen(ns)));
}

/* Two objects of the file with one namespace/name would fight over one target. A new name is
 * recorded as ScaledObject number `index`; a second one is reported. */
static void evs__check_dup(evs__ctx_t *c, const evs_node_t *meta, const evs_node_t *name,
                           size_t index, evs_path_t *path) {
  const char *nss = evs__so_ns(meta);
  uint32_t tag = evs__so_tag(nss, name->u.text), i = tag & c->so_mask;
  for (; c->so_slots[i] != 0; i = (i + 1) & c->so_mask) {
    if ((uint32_t)(c->so_slots[i] >> 32) != tag)
      continue;
    const evs_node_t *m =
        evs_node_get(c->cfg->scaled_objects[(uint32_t)c->so_slots[i] - 1], "metadata");
    const evs_node_t *n2 = evs_node_get(m, "name");
    if (strcmp(n2->u.text, name->u.text) == 0 && strcmp(nss, evs__so_ns(m)) == 0) {
      size_t mark = evs_path_push_key(path, "metadata.name");
      evs_diag_add(&c->diag, c->file, name->line, name->col, path->buf,
                   "duplicate ScaledObject '%s' (first defined at line %u)", name->u.text,
                   n2->line);
      evs_path_pop(path, mark);
      return;
    }
  }
  c->so_slots[i] = (uint64_t)tag << 32 | ((uint64_t)index + 1);
}

static void evs__walk_one_so(evs__ctx_t *c, const evs_node_t *so, evs_path_t *path) {
  if (so->kind != EVS_NODE_MAP) {
    evs_diag_add(&c->diag, c->file, so->line, so->col, path->buf,
                 "expected a mapping (a ScaledObject), got %s", evs_node_kind_name(so->kind));
    return;
  }
  int ok = evs__want_str(c, so, "apiVersion", "keda.sh/v1alpha1", path) != NULL;
  ok &= evs__want_str(c, so, "kind", "ScaledObject", path) != NULL;
  const evs_node_t *meta = evs__want_map(c, so, "metadata", path);
  const evs_node_t *name = NULL;
  if (meta) {
    size_t mark = evs_path_push_key(path, "metadata");
    name = evs__want_str(c, meta, "name", NULL, path);
    const evs_node_t *ns = evs_node_get(meta, "namespace");
    if (ns && ns->kind != EVS_NODE_STR) {
      evs_path_push_key(path, "namespace");
      evs_diag_add(&c->diag, c->file, ns->line, ns->col, path->buf, "expected a string");
      ok = 0;
    }
    evs_path_pop(path, mark);
  }
  ok &= evs__want_map(c, so, "spec", path) != NULL;
  if (!ok || name == NULL)
    return;
  evs__check_dup(c, meta, name, c->cfg->n_scaled_objects, path);
  c->cfg->scaled_objects[c->cfg->n_scaled_objects++] = so;
}

static int evs__walk_scaled_objects(evs__ctx_t *c, const evs_node_t *seq) {
  if (seq->kind == EVS_NODE_NULL)
    return 0;
  if (seq->kind != EVS_NODE_SEQ) {
    evs_diag_add(&c->diag, c->file, seq->line, seq->col, "scaled_objects",
                 "expected a list of ScaledObjects, got %s", evs_node_kind_name(seq->kind));
    return 0;
  }
  if (seq->len == 0)
    return 0;
  c->cfg->scaled_objects = calloc(seq->len, sizeof *c->cfg->scaled_objects);
  if (c->cfg->scaled_objects == NULL)
    return UV_ENOMEM;
  /* At most half full with every object in it: no growth, no full probe. */
  size_t cap = 16;
  while (cap < 2 * seq->len)
    cap *= 2;
  c->so_slots = calloc(cap, sizeof *c->so_slots);
  if (c->so_slots == NULL)
    return UV_ENOMEM;
  c->so_mask = (uint32_t)(cap - 1);
  evs_path_t path;
  evs_path_init(&path);
  evs_path_push_key(&path, "scaled_objects");
  for (size_t i = 0; i < seq->len; i++) {
    size_t mark = evs_path_push_index(&path, i);
    evs__walk_one_so(c, evs_node_item(seq, i), &path);
    evs_path_pop(&path, mark);
  }
  free(c->so_slots);
  c->so_slots = NULL;
  return 0;
}

static int evs__walk_root(evs__ctx_t *c, const evs_node_t *root) {
  if (root == NULL || root->kind == EVS_NODE_NULL)
    return 0; /* an empty file (or only comments): every default */
  if (root->kind != EVS_NODE_MAP) {
    evs_diag_add(&c->diag, c->file, root->line, root->col, NULL,
                 "the configuration must be a mapping of sections, got %s",
                 evs_node_kind_name(root->kind));
    return 0;
  }
  const char *secs[EVS__MAX_SECTIONS];
  char names[EVS__MAX_SECTIONS][32];
  size_t nsecs = evs__sections(names, secs);
  for (size_t i = 0; i < root->len; i++) {
    const evs_node_t *key = evs_node_key(root, i), *val = evs_node_value(root, i);
    size_t s = 0;
    while (s < nsecs && strcmp(secs[s], key->u.text) != 0)
      s++;
    int rc = 0;
    if (s == nsecs)
      evs__unknown_section(c, key, secs, nsecs);
    else if (strcmp(key->u.text, "scaled_objects") == 0)
      rc = evs__walk_scaled_objects(c, val);
    else
      rc = evs__walk_section(c, key->u.text, val);
    if (rc != 0)
      return rc;
  }
  return 0;
}

/* ---- the environment ---- */

/* Not keys: the file path the command line reads, and what the kubelet injects for a Service
 * named "evscale" ({SVC}_SERVICE_HOST, {SVC}_SERVICE_PORT[_{NAME}], {SVC}_PORT,
 * {SVC}_PORT_{port}_{PROTO}[_PROTO|_PORT|_ADDR]; kubernetes/kubernetes
 * pkg/kubelet/envvars/envvars.go, commit 0359a856528764d9bae5e0a9b5e62220a70b49f0). */
static int evs__env_ignored(const char *name, size_t len) {
  const char *rest = name + 8;
  size_t rlen = len - 8;
  if ((rlen == 6 && strncmp(rest, "CONFIG", 6) == 0) || (rlen == 4 && !strncmp(rest, "PORT", 4)))
    return 1;
  if (rlen > 8 && strncmp(rest, "SERVICE_", 8) == 0)
    return 1;
  return rlen > 5 && strncmp(rest, "PORT_", 5) == 0 && rest[5] >= '0' && rest[5] <= '9';
}

static void evs__env_unknown(evs__ctx_t *c, const char *name, const char *source) {
  char envs[64][96];
  const char *cands[64];
  size_t n = 0;
  for (; n < evs_config__nkeys && n < 64; n++) {
    evs_config_env_name(evs_config__keys[n].path, envs[n], sizeof envs[n]);
    cands[n] = envs[n];
  }
  if (strcmp(name, "EVSCALE_SCALED_OBJECTS") == 0) {
    evs_diag_add(&c->diag, source, 0, 0, "scaled_objects", "has no environment form");
    return;
  }
  const char *near = evs_did_you_mean(name, cands, n);
  if (near)
    evs_diag_add(&c->diag, source, 0, 0, NULL, "unknown variable (did you mean %s?)", near);
  else
    evs_diag_add(&c->diag, source, 0, 0, NULL, "unknown variable: no configuration key");
}

static int evs__apply_env_one(evs__ctx_t *c, const char *entry) {
  const char *eq = strchr(entry, '=');
  if (eq == NULL || strncmp(entry, "EVSCALE_", 8) != 0)
    return 0;
  size_t len = (size_t)(eq - entry);
  if (len >= 96 || evs__env_ignored(entry, len))
    return 0;
  char name[96], source[112], env[96];
  snprintf(name, sizeof name, "%.*s", (int)len, entry);
  snprintf(source, sizeof source, "env %s", name);
  for (size_t i = 0; i < evs_config__nkeys; i++) {
    evs_config_env_name(evs_config__keys[i].path, env, sizeof env);
    if (strcmp(env, name) == 0) {
      evs_config__in_t in = {NULL, eq + 1};
      return evs__apply(c, &evs_config__keys[i], &in, source, 0, 0);
    }
  }
  evs__env_unknown(c, name, source);
  return 0;
}

static int evs__apply_env(evs__ctx_t *c, char **envp) {
  for (size_t i = 0; envp && envp[i]; i++) {
    int rc = evs__apply_env_one(c, envp[i]);
    if (rc != 0)
      return rc;
  }
  return 0;
}

/* ---- cross-key checks ---- */

/* Reports "a [+ plus] must be <rel> b" at the position of whichever key was set explicitly (a
 * first, then plus, then b), since that is the line the user has to change. */
static void evs__cross(const evs_config_t *cfg, evs_diag_t *diag, const char *a, const char *plus,
                       const char *rel, const char *b) {
  const char *order[3] = {a, plus, b};
  const evs_config__origin_t *o = evs__origin(cfg, evs_config__find(a));
  const char *path = a;
  for (size_t i = 1; i < 3 && o->source == NULL; i++) {
    if (order[i] != NULL && evs__origin(cfg, evs_config__find(order[i]))->source != NULL) {
      o = evs__origin(cfg, evs_config__find(order[i]));
      path = order[i];
    }
  }
  char va[64], vp[64] = "", vb[64], sum[200] = "";
  evs_config__format(evs_config__find(a), cfg, va, sizeof va);
  evs_config__format(evs_config__find(b), cfg, vb, sizeof vb);
  if (plus != NULL) {
    evs_config__format(evs_config__find(plus), cfg, vp, sizeof vp);
    snprintf(sum, sizeof sum, " + %s (%s)", plus, vp);
  }
  evs_diag_add(diag, o->source ? o->source : "<defaults>", o->line, o->col, path,
               "%s (%s)%s must be %s %s (%s)", a, va, sum, rel, b, vb);
}

typedef struct {
  const char *a, *rel, *b;
  int strict;       /* a < b, else a <= b */
  const char *plus; /* NULL, or a key added to a: a + plus < b */
} evs__rule_t;

static const evs__rule_t evs__rules[] = {
    {"leader_election.renew_deadline", "less than", "leader_election.lease_duration", 1, NULL},
    {"leader_election.retry_period", "less than", "leader_election.renew_deadline", 1, NULL},
    /* Issue 14: the leader notices a missed renewal at most retry_period after renew_deadline
     * (client-go checks once per retry_period), and must have stopped writing before a follower
     * may take the lease, lease_duration after it last saw it renewed. */
    {"leader_election.renew_deadline", "less than", "leader_election.lease_duration", 1,
     "leader_election.retry_period"},
    {"backoff.initial", "at most", "backoff.max", 0, NULL},
    {"circuit_breaker.cooldown_period", "at most", "circuit_breaker.max_cooldown_period", 0, NULL},
};

static uint64_t evs__dur(const evs_config_t *cfg, const evs_config__key_t *k) {
  return *(const uint64_t *)(const void *)((const char *)cfg + k->off);
}

static int evs__key_bad(const unsigned char *bad, const evs_config__key_t *k) {
  return bad && bad[(size_t)(k - evs_config__keys) % 64];
}

/* The rules compare durations; a key refused earlier (bad) is left out of them, and a sum rule
 * is left out when a plain rule on its keys failed already (one message per mistake). */
static int evs__check(const evs_config_t *cfg, evs_diag_t *diag, const unsigned char *bad) {
  int fails = 0;
  unsigned char failed[sizeof evs__rules / sizeof evs__rules[0]] = {0};
  for (size_t i = 0; i < sizeof evs__rules / sizeof evs__rules[0]; i++) {
    const evs__rule_t *r = &evs__rules[i];
    const evs_config__key_t *ka = evs_config__find(r->a), *kb = evs_config__find(r->b);
    const evs_config__key_t *kp = r->plus ? evs_config__find(r->plus) : NULL;
    if (evs__key_bad(bad, ka) || evs__key_bad(bad, kb) || (kp && evs__key_bad(bad, kp)))
      continue;
    int skip = 0;
    for (size_t j = 0; kp && j < i && !skip; j++) {
      const evs__rule_t *f = &evs__rules[j];
      skip = failed[j] &&
             (strcmp(f->a, r->a) == 0 || strcmp(f->a, r->plus) == 0 || strcmp(f->a, r->b) == 0) &&
             (strcmp(f->b, r->a) == 0 || strcmp(f->b, r->plus) == 0 || strcmp(f->b, r->b) == 0);
    }
    if (skip)
      continue;
    uint64_t va = evs__dur(cfg, ka) + (kp ? evs__dur(cfg, kp) : 0), vb = evs__dur(cfg, kb);
    if (r->strict ? va < vb : va <= vb)
      continue;
    evs__cross(cfg, diag, r->a, r->plus, r->rel, r->b);
    failed[i] = 1;
    fails++;
  }
  return fails ? EVS_EINVALCFG : 0;
}

int evs_config_check(const evs_config_t *cfg, evs_diag_t *diag) {
  return evs__check(cfg, diag, NULL);
}

/* ---- load, set, free ---- */

void evs_config_free(evs_config_t *cfg) {
  if (cfg == NULL)
    return;
  for (size_t i = 0; i < evs_config__nkeys; i++) {
    evs_config__free_value(&evs_config__keys[i], cfg);
    if (cfg->origins)
      free(evs__origin(cfg, &evs_config__keys[i])->source);
  }
  free(cfg->origins);
  free(cfg->scaled_objects);
  evs_doc_free(cfg->doc);
  free(cfg);
}

static evs_config_t *evs__defaults(void) {
  /* evs__ctx_t.bad has one flag per key: a table that outgrows it must grow it too. */
  if (evs_config__nkeys > sizeof((evs__ctx_t *)0)->bad)
    return NULL;
  evs_config_t *cfg = calloc(1, sizeof *cfg);
  if (cfg == NULL)
    return NULL;
  cfg->origins = calloc(evs_config__nkeys, sizeof(evs_config__origin_t));
  if (cfg->origins == NULL) {
    free(cfg);
    return NULL;
  }
  for (size_t i = 0; i < evs_config__nkeys; i++) {
    /* Defaults go through the handlers, so the table cannot hold a value the parser refuses
     * (test_config checks that loading an empty file gives no error). */
    char err[256];
    evs_config__in_t in = {NULL, evs_config__keys[i].def};
    if (evs_config__parse(&evs_config__keys[i], cfg, &in, err, sizeof err) != 0) {
      evs_config_free(cfg);
      return NULL;
    }
  }
  return cfg;
}

/* Ends a load: the collected entries go to the caller's diag; a config with any is refused. */
static int evs__finish(evs__ctx_t *c, int rc, evs_config_t **out, evs_diag_t *diag) {
  if (rc == 0 && (c->diag.n > 0 || c->diag.dropped > 0))
    rc = EVS_EINVALCFG;
  if (diag)
    evs_diag_merge(diag, &c->diag);
  evs_diag_free(&c->diag);
  if (rc != 0) {
    evs_config_free(c->cfg);
    return rc;
  }
  *out = c->cfg;
  return 0;
}

int evs_config_load_buffer(const char *buf, size_t len, const char *file, char **envp,
                           evs_config_t **out, evs_diag_t *diag) {
  *out = NULL;
  evs__ctx_t c = {.file = file ? file : "<config>"};
  evs_diag_init(&c.diag);
  c.cfg = evs__defaults();
  if (c.cfg == NULL)
    return UV_ENOMEM;
  c.cfg->source_hash = evs_config_hash(buf, len);
  /* A YAML syntax error stops the file, but the environment is still checked so one run shows
   * every problem. */
  int rc = evs_doc_parse_yaml(buf, len, c.file, &c.cfg->doc, &c.diag);
  if (rc == 0)
    rc = evs__walk_root(&c, evs_doc_root(c.cfg->doc));
  else if (rc == EVS_EYAML)
    rc = 0;
  if (rc == 0)
    rc = evs__apply_env(&c, envp);
  if (rc == 0)
    evs__check(c.cfg, &c.diag, c.bad);
  return evs__finish(&c, rc, out, diag);
}

int evs_config_load_file(const char *path, char **envp, evs_config_t **out, evs_diag_t *diag) {
  *out = NULL;
  char *buf = NULL;
  size_t len = 0;
  /* file.h refuses a FIFO, device or directory instead of blocking start-up on it. */
  int rc = evs_file_read_sync(path, EVS_FILE_CONFIG_MAX, &buf, &len);
  if (rc != 0) {
    evs_diag_add(diag, path, 0, 0, NULL, "cannot read: %s", evs_file_strerror(rc));
    return rc;
  }
  rc = evs_config_load_buffer(buf, len, path, envp, out, diag);
  free(buf);
  return rc;
}

int evs_config_set(evs_config_t *cfg, const char *key, const char *value, const char *source,
                   evs_diag_t *diag) {
  evs__ctx_t c = {.cfg = cfg, .file = source};
  evs_diag_init(&c.diag);
  const evs_config__key_t *k = evs_config__find(key);
  int rc = 0;
  if (k == NULL) {
    const char *cands[64];
    size_t n = 0;
    for (; n < evs_config__nkeys && n < 64; n++)
      cands[n] = evs_config__keys[n].path;
    const char *near = evs_did_you_mean(key, cands, n);
    evs_diag_add(&c.diag, source, 0, 0, key, "unknown key%s%s%s", near ? " (did you mean '" : "",
                 near ? near : "", near ? "'?)" : "");
    rc = EVS_ENOTFOUND;
  } else {
    evs_config__in_t in = {NULL, value};
    rc = evs__apply(&c, k, &in, source, 0, 0);
    if (rc == 0 && c.diag.n == 0)
      evs_config_check(cfg, &c.diag);
    if (rc == 0 && c.diag.n > 0)
      rc = EVS_EINVALCFG;
  }
  if (diag)
    evs_diag_merge(diag, &c.diag);
  evs_diag_free(&c.diag);
  return rc;
}

/* ---- reload ---- */

int evs_config_diff_reload(const evs_config_t *old, evs_config_t *next, evs_diag_t *warn) {
  int kept = 0;
  for (size_t i = 0; i < evs_config__nkeys; i++) {
    const evs_config__key_t *k = &evs_config__keys[i];
    if (k->reload || evs_config__equal(k, old, next))
      continue;
    char was[512], now[512];
    evs_config__format(k, old, was, sizeof was);
    evs_config__format(k, next, now, sizeof now);
    const evs_config__origin_t *o = evs__origin(next, k);
    evs_diag_add(warn, o->source ? o->source : "<defaults>", o->line, o->col, k->path,
                 "changed from %s to %s: needs a restart; keeping %s until then", was, now, was);
    if (evs_config__copy(k, next, old) != 0)
      return UV_ENOMEM;
    evs__set_origin(next, k, evs__origin(old, k)->source, evs__origin(old, k)->line,
                    evs__origin(old, k)->col);
    kept++;
  }
  return kept;
}
