/* Internals shared by src/core/config*.c: the key table and the value handlers. */
#ifndef EVSCALE_CONFIG_INT_H
#define EVSCALE_CONFIG_INT_H

#include <stddef.h>

#include "evscale/config.h"

typedef enum {
  EVS_CONFIG__BOOL,
  EVS_CONFIG__INT,    /* int64_t */
  EVS_CONFIG__OPTINT, /* int64_t, 0 = none (YAML null, env "" or "none") */
  EVS_CONFIG__REAL,   /* double */
  EVS_CONFIG__DUR,    /* uint64_t milliseconds */
  EVS_CONFIG__STR,    /* char * */
  EVS_CONFIG__ENUM,   /* int index into names */
  EVS_CONFIG__LIST,   /* evs_strlist_t */
  EVS_CONFIG__SIZE,   /* uint64_t bytes; "16Mi" or an integer */
  EVS_CONFIG__ADDR,   /* server.address: char * plus server.host/port */
  EVS_CONFIG__METRIC  /* circuit_breaker.fallback_metric: char * plus resource/utilization */
} evs_config__type_t;

/* Range flags: the bound itself is excluded. */
#define EVS_CONFIG__MIN_EXCL 1
#define EVS_CONFIG__MAX_EXCL 2
/* Strings and list items: a Kubernetes namespace (DNS-1123 label; "" allowed for strings) or an
 * object name (DNS-1123 subdomain). */
#define EVS_CONFIG__DNS_LABEL 4
#define EVS_CONFIG__DNS_SUBDOMAIN 8

typedef struct {
  const char *path; /* "circuit_breaker.enabled" */
  int type;         /* evs_config__type_t */
  size_t off;       /* offset of the field in evs_config_t */
  int reload;       /* 1 = applies at reload, 0 = needs a restart */
  const char *def;  /* the default, as text, parsed through the same handler as an env value */
  double min, max;  /* numbers: value; durations: ms; sizes: bytes; lists/strings: unused */
  int flags;
  const char *const *names; /* EVS_CONFIG__ENUM: NULL-terminated */
  const char *help;         /* one line for the README and example.yaml */
} evs_config__key_t;

extern const evs_config__key_t evs_config__keys[];
extern const size_t evs_config__nkeys;

/* One value to parse: a YAML node (file), or text (env, flag, default) when node is NULL. */
typedef struct {
  const evs_node_t *node;
  const char *text;
} evs_config__in_t;

/* Where a key's value came from, for cross-key messages. source NULL = the default. */
typedef struct {
  char *source;
  uint32_t line, col;
} evs_config__origin_t;

const evs_config__key_t *evs_config__find(const char *path);
/* Parses `in` into cfg's field for k. 0, or UV_EINVAL with a message in err (the field is left
 * unchanged), or UV_ENOMEM. */
int evs_config__parse(const evs_config__key_t *k, evs_config_t *cfg, const evs_config__in_t *in,
                      char *err, size_t cap);
void evs_config__free_value(const evs_config__key_t *k, evs_config_t *cfg);
int evs_config__equal(const evs_config__key_t *k, const evs_config_t *a, const evs_config_t *b);
/* Deep-copies k's value from src to dst (dst's old value is freed). 0 or UV_ENOMEM. */
int evs_config__copy(const evs_config__key_t *k, evs_config_t *dst, const evs_config_t *src);
/* The value as YAML text (strings quoted). Returns the would-be length. */
int evs_config__format(const evs_config__key_t *k, const evs_config_t *cfg, char *buf, size_t cap);
/* Double-quoted YAML string with escapes; URL userinfo passwords masked. */
int evs_config__quote(const char *s, char *buf, size_t cap);
/* Copies s into buf with the password of a "scheme://user:pass@host" URL replaced. */
void evs_config__mask_url(const char *s, char *buf, size_t cap);
/* Copies the value of an address field into buf with the userinfo of each comma-separated item
 * masked, with or without a scheme: "default:pw@h:6379" → "default:<redacted>@h:6379",
 * "tok@[::1]:6379" → "<redacted>@[::1]:6379". Needs up to strlen(s) * 11 + 1 bytes. */
void evs_config__mask_address(const char *s, char *buf, size_t cap);

#endif
