/* The redis scaler (see include/evscale/redis_scaler.h for behaviour and sources).
 *
 * Requests on shared connections outlive a closing scaler (a connection other triggers use is
 * not closed with it), so every request carries a small req_t whose back pointer close detaches:
 * a late reply then only frees the req_t (h2o's close_and_detach_connection pattern). The
 * scaler has no libuv handle of its own: one entry of the loop's timer queue (`deliver`: errors
 * found synchronously are delivered from the loop, never inside poll) and a pending TLS cache
 * request; its close completes through evs_scaler__close_later.
 *
 * Memory (issue 13: 50,000 triggers waiting for a server that is down): the parameters' strings
 * live at the end of the scaler's own allocation, found by their lengths; the keyspace channel is
 * formatted when it is needed; counters are 32-bit, flags are bits, the key's type is a small
 * code; what is never needed at once shares room (the waiting read and a failure's delivery,
 * the TLS request and the command connection, the subscriber's waiter and the push counters);
 * what only a trigger whose server answered needs (requests in flight, the server's flags) is
 * behind a pointer made at the first request; the reading counters and the notice are the
 * generic header's, and the environment is borrowed, not copied. */
#include "evscale/redis_scaler.h"
#include "evscale/error.h"
#include "evscale/list.h"
#include "evscale/log.h"
#include "evscale/param.h"
#include "evscale/reading.h"

#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <mbedtls/sha1.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* KEDA's branches (redis_scaler.go NewRedisScaler luaScript), returning the type as well. */
static const char LUA[] = "local t = redis.call('type', KEYS[1]).ok\n"
                          "if t == 'zset' then return {t, redis.call('zcard', KEYS[1])}\n"
                          "elseif t == 'set' then return {t, redis.call('scard', KEYS[1])}\n"
                          "elseif t == 'hash' then return {t, redis.call('hlen', KEYS[1])}\n"
                          "elseif t == 'list' or t == 'none' then\n"
                          "  return {t, redis.call('llen', KEYS[1])}\n"
                          "else return {t, -1} end\n";

typedef struct redis_s redis_t;

/* The key's type as the script last answered it (Redis's TYPE names). */
enum { T_UNKNOWN, T_NONE, T_LIST, T_SET, T_ZSET, T_HASH, T_STRING, T_STREAM, T_OTHER };
static const char *const TYPE_NAMES[] = {"",     "none",   "list",   "set",  "zset",
                                         "hash", "string", "stream", "other"};

typedef enum { R_READ, R_EVAL, R_CONFIG_SET } req_kind_t;

typedef struct req_s req_t;
struct req_s {
  req_t *next; /* in r->live->reqs while attached: at most a read and a CONFIG SET at once */
  redis_t *r;  /* NULL once the scaler closed */
  req_kind_t kind;
};

/* What only a trigger whose command connection came up needs: made at its first request
 * (issue 13: a trigger waiting for a server that is down holds none of it, 16 B less). */
typedef struct {
  req_t *reqs;                      /* requests in flight: late replies find r NULL once closed */
  evs_redis_flags_req_t *flags_req; /* waiting for the connection's flags */
  char *flags;                      /* the server's notify-keyspace-events, NULL when unknown */
} live_t;

/* What parsing gives: every string a malloc'd copy, packed into the scaler afterwards. */
typedef struct {
  char *host, *username, *password, *list, *ca, *cert, *key;
  int port, db, tls, unsafe_ssl;
  int64_t list_length, activation;
} params_t;

/* Issue 13 (50,000 triggers): pointers first, then 32-bit fields, then bytes, then the strings,
 * so the struct has no holes and the strings no allocation of their own. */
struct redis_s {
  evs_scaler_t base;           /* first; base.notice is ours (see push_notice) */
  const evs_scaler_env_t *env; /* borrowed: the environment outlives its scalers */
  int64_t activation;
  /* Before `ready` the pending TLS cache request (NULL when none), from then on the command
   * connection, a reference of ours: the request ends before the connection is acquired. */
  union {
    evs_tls_cache_req_t *tls_req;
    evs_redis_conn_t *cmd;
  };
  union {
    evs_redis_sub_t *sub;   /* its connection (evs_redis_sub_conn) is a reference of ours */
    evs_redis_conn_t *subc; /* while sub_waiting: the subscriber connection, our reference */
  };
  live_t *live; /* NULL until the first request (see live_t) */
  /* `wait` holds the read while the command connection is not up (`waiting`: no command
   * queued); `deliver` an error found synchronously (pending_err), delivered from the loop.
   * Never both: a read that waits is in flight, and one in flight never fails synchronously
   * until it is sent (after the wait). */
  union {
    evs_redis_waiter_t wait;
    evs_timerq_entry_t deliver;
  };
  /* `subw` while the subscriber connection is not up (sub_waiting: no channel held), then,
   * once subscribed (the waiter never used again), the push counters of
   * evs_redis_scaler_stats_t: no message arrives before a subscription. */
  union {
    evs_redis_waiter_t subw;
    struct {
      uint32_t events, event_reads, coalesced;
    } ev;
  };
  int32_t db;
  int pending_err; /* an error found synchronously, delivered by `deliver` */
  int last_logged_err;
  uint32_t read_start; /* uv_hrtime in microseconds, modulo 2^32, when the read was sent */
  /* evs_redis_scaler_stats_t's own counter (readings and errors are the header's, the push
   * counters in `ev`). */
  uint32_t reads;
  uint16_t port;
  /* The trigger's position, for logs only (issue 13: 2 B): positions above 65,535 log as
   * 65,535. */
  uint16_t index;
  unsigned opt : 5;           /* O_* bits: which optional strings follow the host, in order */
  unsigned type : 4;          /* T_*: the key's type as last read */
  unsigned notice_logged : 3; /* the push state last logged + 1, 0 none */
  unsigned tls : 1, unsafe_ssl : 1;
  unsigned ready : 1;       /* connections acquired: `cmd` is set */
  unsigned read_busy : 1;   /* a read in flight */
  unsigned read_again : 1;  /* a read is due when it returns */
  unsigned config_busy : 1; /* a CONFIG SET in flight */
  unsigned configured : 1;  /* CONFIG SET sent once */
  unsigned sub_active : 1, sub_refused : 1;
  unsigned waiting : 1;     /* the read waits in `wait` for the connection */
  unsigned sub_waiting : 1; /* `subw` waits for the subscriber connection: `subc` set */
  /* The parameters' strings: the object ("namespace/name"), the list and the host, then those
   * of username, password, ca, cert, key that are set; each found by the lengths before it. */
  char strs[];
};

static const char *r_object(const redis_t *r) { return r->strs; }
static const char *r_list(const redis_t *r) { return r->strs + strlen(r->strs) + 1; }
static const char *r_host(const redis_t *r) {
  const char *l = r_list(r);
  return l + strlen(l) + 1;
}
enum { O_USER = 1, O_PASS = 2, O_CA = 4, O_CERT = 8, O_KEY = 16 };
/* An optional string (O_*), or NULL: the set ones follow the host in the order of the bits. */
static const char *r_opt(const redis_t *r, uint8_t bit) {
  if (!(r->opt & bit))
    return NULL;
  const char *p = r_host(r);
  p += strlen(p) + 1;
  for (uint8_t b = 1; b < bit; b <<= 1)
    if (r->opt & b)
      p += strlen(p) + 1;
  return p;
}
static const char *r_type(const redis_t *r) { return TYPE_NAMES[r->type]; }

static uint8_t type_code(const char *t) {
  for (uint8_t i = T_NONE; i < T_OTHER; i++)
    if (strcmp(t, TYPE_NAMES[i]) == 0)
      return i;
  return T_OTHER;
}

/* The SHA1 of LUA (EVALSHA), the same for every scaler: computed once. */
static char evs__lua_sha[41];

/* ---- parameters (KEDA's typed config) ---- */

typedef enum { TM, AP, RE } src_t;

typedef struct {
  const evs_scaler_config_t *cfg;
  evs_diag_t *diag;
  int bad;
} pctx_t;

/* configParamValue: a trimmed copy (free it) and where it came from, or NULL. */
static char *lookup(pctx_t *p, const char *const *names, const src_t *order, size_t n_order,
                    char *where, size_t where_cap) {
  for (size_t o = 0; o < n_order; o++) {
    for (size_t i = 0; names[i]; i++) {
      const char *v = NULL;
      char key[96];
      if (order[o] == TM) {
        v = evs_kvs_get(&p->cfg->metadata, names[i]);
        snprintf(where, where_cap, "metadata.%s", names[i]);
      } else if (order[o] == AP) {
        v = evs_kvs_get(&p->cfg->auth_params, names[i]);
        snprintf(where, where_cap, "authParams.%s", names[i]);
      } else {
        snprintf(key, sizeof key, "%.60sFromEnv", names[i]);
        const char *env = evs_kvs_get(&p->cfg->metadata, key);
        v = env ? evs_kvs_get(&p->cfg->resolved_env, env) : NULL;
        snprintf(where, where_cap, "metadata.%.70s", key);
      }
      char *t = v ? evs_param_trim_dup(v) : NULL;
      if (t)
        return t;
    }
  }
  return NULL;
}

static void perr(pctx_t *p, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void perr(pctx_t *p, const char *field, const char *fmt, ...) {
  char path[160], msg[300];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(path, sizeof path, "triggers[%zu].%s", p->cfg->index, field);
  evs_diag_add(p->diag, p->cfg->object ? p->cfg->object : "", 0, 0, path, "%s", msg);
  p->bad = 1;
}

static const src_t ORDER_TM[] = {TM};
static const src_t ORDER_AP[] = {AP};
static const src_t ORDER_ADDR[] = {TM, AP, RE};
static const src_t ORDER_CRED[] = {TM, RE, AP};

static char *meta(pctx_t *p, const char *name) {
  const char *names[] = {name, NULL};
  char where[96];
  return lookup(p, names, ORDER_TM, 1, where, sizeof where);
}

/* An int64 metadata field; absent keeps *out. */
static void p_int64(pctx_t *p, const char *name, int64_t *out) {
  char *v = meta(p, name);
  if (v == NULL)
    return;
  char field[64];
  snprintf(field, sizeof field, "metadata.%s", name);
  double d;
  int rc = evs_param_json_int64(v, out);
  if (rc == EVS_ERANGE)
    perr(p, field, "\"%.40s\" is out of range for an int64", v);
  else if (rc != 0 && evs_param_json_float(v, &d) == 0)
    perr(p, field, "\"%.40s\" is not an integer", v);
  else if (rc != 0)
    perr(p, field, "\"%.40s\" is not a number", v);
  free(v);
}

static void p_bool(pctx_t *p, const char *name, int *out) {
  char *v = meta(p, name);
  if (v == NULL)
    return;
  char field[64];
  snprintf(field, sizeof field, "metadata.%s", name);
  if (evs_param_go_bool(v, out) != 0)
    perr(p, field, "\"%.40s\" is not a boolean (true or false)", v);
  free(v);
}

/* Splits a comma list (KEDA's []string: each element trimmed) and returns element i (a copy)
 * and the count. */
static size_t list_count(const char *s) {
  size_t n = 1;
  for (; *s; s++)
    n += *s == ',';
  return n;
}

static char *list_elem(const char *s, size_t i) {
  for (; i > 0; i--)
    s = strchr(s, ',') + 1;
  const char *e = strchr(s, ',');
  size_t len = e ? (size_t)(e - s) : strlen(s);
  char *tmp = malloc(len + 1);
  if (tmp == NULL)
    return NULL;
  memcpy(tmp, s, len);
  tmp[len] = '\0';
  char *t = evs_param_trim_dup(tmp);
  free(tmp);
  return t ? t : calloc(1, 1);
}

/* Go's net.SplitHostPort, then a numeric port. 0 or a message. */
static const char *split_host_port(const char *a, char **host, int *port) {
  const char *colon, *h;
  size_t hlen;
  if (a[0] == '[') {
    const char *rb = strchr(a, ']');
    if (rb == NULL)
      return "missing ']' in address";
    if (rb[1] != ':')
      return rb[1] ? "unexpected text after ']' in address" : "missing port in address";
    h = a + 1;
    hlen = (size_t)(rb - h);
    colon = rb + 1;
  } else {
    colon = strrchr(a, ':');
    if (colon == NULL)
      return "missing port in address";
    if (strchr(a, ':') != colon)
      return "too many colons in address";
    h = a;
    hlen = (size_t)(colon - a);
  }
  const char *ps = colon + 1;
  char *end;
  long v = *ps >= '0' && *ps <= '9' ? strtol(ps, &end, 10) : -1;
  if (v < 1 || v > 65535 || *end != '\0')
    return "the port must be a number from 1 to 65535";
  if (hlen == 0)
    return "missing host in address";
  *host = strndup(h, hlen);
  *port = (int)v;
  return NULL;
}

static void parse_address(pctx_t *p, params_t *r) {
  static const char *const addr_n[] = {"address", "addresses", NULL};
  static const char *const host_n[] = {"host", "hosts", NULL};
  static const char *const port_n[] = {"port", "ports", NULL};
  char wa[96], wh[96], wp[96];
  char *addr = lookup(p, addr_n, ORDER_ADDR, 3, wa, sizeof wa);
  char *hosts = lookup(p, host_n, ORDER_CRED, 3, wh, sizeof wh);
  char *ports = lookup(p, port_n, ORDER_CRED, 3, wp, sizeof wp);
  char *first = NULL;
  const char *field = wa;
  if (addr) {
    first = list_elem(addr, 0);
  } else if (hosts && ports) {
    /* validateRedisAddress: pairs appended after any address; the first is used. */
    if (list_count(hosts) != list_count(ports)) {
      perr(p, wh,
           "not enough hosts or ports given. number of hosts should be equal to the number of "
           "ports (%zu hosts, %zu ports)",
           list_count(hosts), list_count(ports));
      goto out;
    }
    char *h = list_elem(hosts, 0), *po = list_elem(ports, 0);
    if (h && po && h[0] && po[0]) {
      size_t n = strlen(h) + strlen(po) + 4;
      first = malloc(n);
      if (first)
        snprintf(first, n, strchr(h, ':') ? "[%s]:%s" : "%s:%s", h, po);
    }
    field = po && !po[0] ? wp : wh;
    free(h);
    free(po);
  }
  if (first == NULL || first[0] == '\0') {
    perr(p,
         addr             ? wa
         : hosts && ports ? field
                          : "metadata.address",
         "no addresses or hosts given. address should be a comma separated list of host:port or "
         "set the host/port values");
    goto out;
  }
  const char *why = split_host_port(first, &r->host, &r->port);
  if (why)
    perr(p, addr ? wa : wh, "%s", why);
out:
  free(first);
  free(addr);
  free(hosts);
  free(ports);
}

static void parse_tls(pctx_t *p, params_t *r) {
  static const char *const tls_n[] = {"tls", NULL};
  char w[96];
  char *m = meta(p, "enableTLS");
  char *a = lookup(p, tls_n, ORDER_AP, 1, w, sizeof w);
  if (m && a) {
    perr(p, "metadata.enableTLS",
         "unable to set `tls` in both ScaledObject and TriggerAuthentication together");
  } else if (m) {
    if (evs_param_go_bool(m, &r->tls) != 0)
      perr(p, "metadata.enableTLS", "\"%.40s\" is not a boolean (true or false)", m);
  } else if (a) {
    if (strcmp(a, "enable") == 0)
      r->tls = 1;
    else if (strcmp(a, "disable") == 0)
      r->tls = 0;
    else
      perr(p, "authParams.tls", "\"%.40s\" is neither enable nor disable", a);
  }
  free(m);
  free(a);
  p_bool(p, "unsafeSsl", &r->unsafe_ssl);
  static const char *const ca_n[] = {"ca", NULL}, *const cert_n[] = {"Cert", "cert", NULL},
                           *const key_n[] = {"key", NULL}, *const kp_n[] = {"keyPassword", NULL};
  r->ca = lookup(p, ca_n, ORDER_AP, 1, w, sizeof w);
  r->cert = lookup(p, cert_n, ORDER_AP, 1, w, sizeof w);
  r->key = lookup(p, key_n, ORDER_AP, 1, w, sizeof w);
  char *kp = lookup(p, kp_n, ORDER_AP, 1, w, sizeof w);
  if (kp && r->tls)
    perr(p, "authParams.keyPassword",
         "encrypted client keys are not supported: give `key` "
         "unencrypted");
  free(kp);
  if (!(r->cert && r->key)) { /* NewTLSConfigWithPassword uses them only together */
    free(r->cert);
    free(r->key);
    r->cert = r->key = NULL;
  }
}

static int parse(params_t *r, const evs_scaler_env_t *env, const evs_scaler_config_t *cfg,
                 evs_diag_t *diag) {
  pctx_t p = {cfg, diag, 0};
  parse_address(&p, r);
  static const char *const user_n[] = {"username", NULL}, *const pw_n[] = {"password", NULL};
  char w[96];
  r->username = lookup(&p, user_n, ORDER_CRED, 3, w, sizeof w);
  r->password = lookup(&p, pw_n, ORDER_CRED, 3, w, sizeof w);
  r->list = meta(&p, "listName");
  if (r->list == NULL)
    perr(&p, "metadata.listName", "missing required parameter \"listName\"");
  r->list_length = 5;
  p_int64(&p, "listLength", &r->list_length);
  if (r->list_length < 1)
    perr(&p, "metadata.listLength", "must be at least 1 (it is the HPA's target)");
  p_int64(&p, "activationListLength", &r->activation);
  int64_t db = 0;
  p_int64(&p, "databaseIndex", &db);
  if (db < 0 || db > INT_MAX)
    perr(&p, "metadata.databaseIndex", "must be from 0 to %d", INT_MAX);
  r->db = (int)db;
  parse_tls(&p, r);
  if (env->redis == NULL)
    perr(&p, "type", "no Redis connection registry in this process");
  if (r->tls && env->tls == NULL)
    perr(&p, "metadata.enableTLS", "no TLS configuration cache in this process");
  return p.bad ? UV_EINVAL : 0;
}

/* ---- keyspace flags ---- */

static char class_of(const char *type) {
  if (strcmp(type, "zset") == 0)
    return 'z';
  if (strcmp(type, "set") == 0)
    return 's';
  if (strcmp(type, "hash") == 0)
    return 'h';
  return 'l'; /* list, and a missing key: KEDA's script reads it as a list */
}

void evs_redis_keyspace_missing(const char *flags, const char *type, char *missing, size_t cap) {
  /* Redis prints the full set g$lshzxet(d) as "A" (keyspaceEventsFlagsToString). */
  int all = strchr(flags, 'A') != NULL;
  char need[6] = {'K', class_of(type), 'g', 'x', 'e', 0};
  size_t n = 0;
  for (int i = 0; need[i] && n + 1 < cap; i++)
    if (strchr(flags, need[i]) == NULL && (i == 0 || !all))
      missing[n++] = need[i];
  if (cap)
    missing[n < cap ? n : cap - 1] = '\0';
}

/* ---- readings ---- */

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The server's flags as last known, or NULL. */
static const char *r_flags(const redis_t *r) { return r->live ? r->live->flags : NULL; }

/* r->live, made now if need be; NULL when out of memory. */
static live_t *r_live(redis_t *r) {
  if (r->live == NULL)
    r->live = calloc(1, sizeof *r->live);
  return r->live;
}

static evs_redis_push_t push_state(const redis_t *r) {
  if (r->env->redis_keyspace_events == EVS_KEYSPACE_OFF)
    return EVS_REDIS_PUSH_OFF;
  if (r->sub_refused)
    return EVS_REDIS_PUSH_REFUSED;
  if (!r->sub_active)
    return EVS_REDIS_PUSH_OFF;
  const char *flags = r_flags(r);
  if (flags == NULL)
    return EVS_REDIS_PUSH_UNKNOWN;
  char missing[8];
  evs_redis_keyspace_missing(flags, r->type ? r_type(r) : "none", missing, sizeof missing);
  return missing[0] ? EVS_REDIS_PUSH_EVENTS_OFF : EVS_REDIS_PUSH_ACTIVE;
}

/* The notice of the push state (NULL when push works or is off by configuration); logged once
 * per change. */
static const char *push_notice(redis_t *r, int *err) {
  evs_redis_push_t ps = push_state(r);
  *err = 0;
  char text[384];
  text[0] = '\0';
  if (ps == EVS_REDIS_PUSH_REFUSED) {
    snprintf(text, sizeof text,
             "SUBSCRIBE __keyspace@%d__:%s refused by %s (a Redis 7 ACL user needs the channel "
             "rule &__keyspace@*): polling only",
             (int)r->db, r_list(r), evs_redis_conn_describe(evs_redis_sub_conn(r->sub)));
    *err = UV_EPERM;
  } else if (ps == EVS_REDIS_PUSH_EVENTS_OFF) {
    char missing[8];
    evs_redis_keyspace_missing(r_flags(r), r->type ? r_type(r) : "none", missing, sizeof missing);
    snprintf(text, sizeof text,
             "keyspace events are off on %s for this %s key (notify-keyspace-events \"%s\" lacks "
             "\"%s\"; KA or K%cgxe needed): polling only",
             evs_redis_conn_describe(r->cmd), r->type ? r_type(r) : "missing", r_flags(r), missing,
             class_of(r->type ? r_type(r) : "none"));
    *err = EVS_EUNSUPPORTED;
  }
  /* The header's notice is the type's to own (scaler.h): the copy lives there, allocated only
   * when push is off for a reason the user should read. */
  char *notice = (char *)r->base.notice;
  if (text[0] == '\0') {
    free(notice);
    notice = NULL;
  } else if (notice == NULL || strcmp(notice, text) != 0) {
    char *copy = strdup(text);
    if (copy != NULL) { /* out of memory: the previous notice (or none) stays */
      free(notice);
      notice = copy;
    }
  }
  r->base.notice = notice;
  if ((unsigned)ps + 1 != r->notice_logged) {
    r->notice_logged = (unsigned)ps + 1;
    if (notice != NULL)
      EVS_LOG_WARN("redis trigger push mode off", EVS_KV_STR("scaled_object", r_object(r)),
                   EVS_KV_UINT("trigger", r->index), EVS_KV_STR("reason", notice));
    else if (ps == EVS_REDIS_PUSH_ACTIVE)
      EVS_LOG_DEBUG("redis trigger push mode on", EVS_KV_STR("scaled_object", r_object(r)),
                    EVS_KV_UINT("trigger", r->index), EVS_KV_STR("key", r_list(r)));
  }
  return notice;
}

static void log_error_change(redis_t *r, int err, const char *msg) {
  if (err == r->last_logged_err)
    return;
  if (err != 0)
    EVS_LOG_WARN("redis trigger read failed", EVS_KV_STR("scaled_object", r_object(r)),
                 EVS_KV_UINT("trigger", r->index), EVS_KV_ERR("error", err),
                 EVS_KV_STR("detail", msg));
  else
    EVS_LOG_INFO("redis trigger read again", EVS_KV_STR("scaled_object", r_object(r)),
                 EVS_KV_UINT("trigger", r->index), EVS_KV_STR("key", r_list(r)));
  r->last_logged_err = err;
}

/* latency_us: the round trip behind the reading (0: none, as for an error found before any). */
static void emit(redis_t *r, int err, const char *msg, double value, int active,
                 uint32_t latency_us) {
  int perr_ = 0;
  const char *notice = push_notice(r, &perr_);
  if (err == 0 && perr_ != 0 && r->env->redis_keyspace_events == EVS_KEYSPACE_ON) {
    err = perr_; /* `on`: push is required, its absence is the trigger's error */
    msg = notice;
  }
  evs_reading_t rd = {.value = err ? 0 : value,
                      .active = err ? 0 : active,
                      .error = err,
                      .time_ms = wall_ms(),
                      .error_msg = err ? msg : NULL};
  log_error_change(r, err, msg);
  evs_scaler__emit_timed(&r->base, &rd, latency_us);
}

static void emit_error(redis_t *r, int err, uint32_t latency_us, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void emit_error(redis_t *r, int err, uint32_t latency_us, const char *fmt, ...) {
  char msg[512]; /* the reading's consumer copies what it keeps */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  emit(r, err, msg, 0, 0, latency_us);
}

/* ---- requests ---- */

static void on_reply(evs_redis_conn_t *c, int err, const char *msg, const redisReply *reply,
                     void *arg);

static req_t *req_new(redis_t *r, req_kind_t kind) {
  live_t *l = r_live(r);
  req_t *q = l ? calloc(1, sizeof *q) : NULL;
  if (q) {
    q->r = r;
    q->kind = kind;
    q->next = l->reqs;
    l->reqs = q;
  }
  return q;
}

static void req_detach(redis_t *r, req_t *q) {
  req_t **p = &r->live->reqs; /* made with q */
  while (*p != q)
    p = &(*p)->next;
  *p = q->next;
}

static int send_req(redis_t *r, req_kind_t kind, int argc, const char **argv) {
  req_t *q = req_new(r, kind);
  if (q == NULL)
    return UV_ENOMEM;
  int rc = evs_redis_command_argv(r->cmd, on_reply, q, argc, argv, NULL);
  if (rc != 0) {
    req_detach(r, q);
    free(q);
  }
  return rc;
}

static void on_deliver(evs_timerq_entry_t *e);

/* A read that could not even be sent: its error is delivered from the loop. */
static void read_failed_sync(redis_t *r, int rc) {
  r->pending_err = rc;
  evs_timerq_t *q = evs_scaler__timerq(&r->base);
  if (!evs_timerq_active(&r->deliver)) /* the waiter's leftovers (see redis_s); slot is 0 */
    evs_timerq_entry_init(&r->deliver);
  if (q == NULL || evs_timerq_start(q, &r->deliver, on_deliver, 0) != 0)
    r->pending_err = 0; /* out of memory: no reading, but the next poll reads again */
}

static void send_read(redis_t *r, int eval) {
  const char *argv[4] = {eval ? "EVAL" : "EVALSHA", eval ? LUA : evs__lua_sha, "1", r_list(r)};
  int rc = send_req(r, eval ? R_EVAL : R_READ, 4, argv);
  if (rc != 0) {
    r->read_busy = 0;
    read_failed_sync(r, rc);
  }
}

static void on_conn_wait(evs_redis_conn_t *c, int err, const char *msg, evs_redis_waiter_t *w);

/* A read: sent at once when the connection is up; otherwise it waits for the connection in
 * `wait` (formatted and queued only then: a trigger waiting for a server that is down costs no
 * request, issue 13). Either way it counts as in flight from now. */
static void start_read(redis_t *r, int eval) {
  if (!r->ready)
    return;
  r->read_busy = 1;
  r->read_start = (uint32_t)(uv_hrtime() / 1000);
  r->reads++;
  if (!eval) {
    memset(&r->wait, 0, sizeof r->wait); /* the union's timer entry is not queued */
    int rc = evs_redis_conn_wait(r->cmd, &r->wait, on_conn_wait);
    if (rc == 0) {
      r->waiting = 1;
      return;
    }
    if (rc < 0) {
      r->read_busy = 0;
      read_failed_sync(r, rc);
      return;
    }
  }
  send_read(r, eval);
}

/* At most one read in flight; any request meanwhile becomes one more read after it. */
static void want_read(redis_t *r) {
  if (r->read_busy || r->pending_err) {
    r->read_again = 1;
    return;
  }
  start_read(r, 0);
}

static void config_check(redis_t *r);

static void on_deliver(evs_timerq_entry_t *e) {
  redis_t *r = evs_container_of(e, redis_t, deliver);
  int err = r->pending_err;
  r->pending_err = 0;
  if (err) {
    const char *m = NULL;
    if (!r->ready || evs_redis_conn_last_error(r->cmd, &m) != err || m == NULL)
      m = evs_strerror(err);
    emit_error(r, err, 0, "reading key \"%s\": %s", r_list(r), m);
  }
  if (r->base.state != EVS_SCALER_CLOSING && r->read_again) {
    r->read_again = 0;
    want_read(r);
  }
}

/* {type, count}: the script's answer. */
static void read_done(redis_t *r, int err, const char *msg, const redisReply *rep) {
  r->read_busy = 0;
  /* KEDA's keda_scaler_metrics_latency_seconds: the time GetMetricsAndActivity took. */
  uint32_t lat = (uint32_t)(uv_hrtime() / 1000) - r->read_start; /* modulo 2^32: < 71 min */
  if (err != 0) {
    emit_error(r, err, lat, "reading key \"%s\": %s", r_list(r), msg ? msg : evs_strerror(err));
  } else if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
             (rep->element[0]->type != REDIS_REPLY_STRING &&
              rep->element[0]->type != REDIS_REPLY_STATUS) ||
             rep->element[1]->type != REDIS_REPLY_INTEGER) {
    emit_error(r, EVS_EPARSE, lat,
               "reading key \"%s\" on %s: unexpected reply to the length script", r_list(r),
               evs_redis_conn_describe(r->cmd));
  } else {
    const char *type = rep->element[0]->str;
    long long n = rep->element[1]->integer;
    uint8_t code = type_code(type);
    int changed = code != r->type;
    r->type = code;
    evs_conv_t v;
    if (n < 0) {
      /* KEDA: redis.error_reply('ERR unsupported key type: ' .. listType) */
      emit_error(r, EVS_EREDIS, lat,
                 "key \"%s\" on %s is a %s: unsupported key type (KEDA reads list, set, zset "
                 "and hash lengths)",
                 r_list(r), evs_redis_conn_describe(r->cmd), type);
    } else if (evs_reading_redis(n, r->activation, &v) != 0 || v.error) {
      emit_error(r, v.error ? v.error : EVS_EPARSE, lat, "key \"%s\": %s", r_list(r),
                 v.error_msg ? v.error_msg : "bad length");
    } else {
      emit(r, 0, NULL, v.value, v.active, lat);
    }
    if (changed && r->base.state != EVS_SCALER_CLOSING)
      config_check(r); /* the flags needed depend on the key's type */
  }
  if (r->base.state != EVS_SCALER_CLOSING && r->read_again && !r->pending_err) {
    r->read_again = 0;
    start_read(r, 0);
  }
}

/* The command connection is up (err 0) or failed: the waiting read goes out now, with the
 * keyspace check that waited for it, or fails as a queued request would have. */
static void on_conn_wait(evs_redis_conn_t *c, int err, const char *msg, evs_redis_waiter_t *w) {
  (void)c;
  redis_t *r = evs_container_of(w, redis_t, wait);
  r->waiting = 0;
  if (err != 0) {
    read_done(r, err, msg, NULL);
    return;
  }
  config_check(r);
  send_read(r, 0);
}

/* The server's flags (or why there are none), as the connection knows them. */
static void config_done(redis_t *r, int err, const char *flags) {
  live_t *l = r->live; /* made by config_check */
  if (err != 0 || flags == NULL) {
    free(l->flags); /* not allowed (ACL) or not answerable: push state unknown */
    l->flags = NULL;
    return;
  }
  char *f = strdup(flags);
  if (f == NULL)
    return;
  free(l->flags);
  l->flags = f;
  char missing[8];
  evs_redis_keyspace_missing(f, r->type ? r_type(r) : "none", missing, sizeof missing);
  if (missing[0] && r->env->redis_configure_keyspace && !r->configured) {
    /* redis.configure_keyspace_events: the server's flags plus the missing ones. */
    char set[64];
    snprintf(set, sizeof set, "%.40s%s", f, missing);
    const char *argv[] = {"CONFIG", "SET", "notify-keyspace-events", set};
    r->configured = 1;
    if (send_req(r, R_CONFIG_SET, 4, argv) == 0) {
      r->config_busy = 1;
      EVS_LOG_INFO("redis trigger sets notify-keyspace-events",
                   EVS_KV_STR("server", evs_redis_conn_describe(r->cmd)), EVS_KV_STR("value", set));
    }
  }
}

static void on_flags(evs_redis_conn_t *c, int err, const char *flags, void *arg) {
  (void)c;
  redis_t *r = arg;
  r->live->flags_req = NULL;
  config_done(r, err, flags);
}

/* The flags are the server's: the connection asks once for every trigger sharing it (issue 15:
 * once per server connection, not once per trigger), and answers from what it knows. */
static void config_check(redis_t *r) {
  /* Not connected: asked when the waiting read finds the connection up (on_conn_wait). */
  if (r->env->redis_keyspace_events == EVS_KEYSPACE_OFF || r->config_busy ||
      (r->live && r->live->flags_req) || !r->ready || !evs_redis_conn_ready(r->cmd))
    return;
  live_t *l = r_live(r);
  if (l == NULL)
    return; /* out of memory: the flags stay unknown until the next check */
  const char *flags = NULL;
  int err = 0;
  if (evs_redis_keyspace_flags(r->cmd, on_flags, r, &l->flags_req, &flags, &err) == 1)
    config_done(r, err, flags);
}

static void on_reply(evs_redis_conn_t *c, int err, const char *msg, const redisReply *reply,
                     void *arg) {
  (void)c;
  req_t *q = arg;
  redis_t *r = q->r;
  req_kind_t kind = q->kind;
  if (r)
    req_detach(r, q);
  free(q);
  if (r == NULL || r->base.state == EVS_SCALER_CLOSING)
    return;
  switch (kind) {
  case R_READ:
    if (err != 0 && reply && reply->str && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
      r->read_busy = 0;
      start_read(r, 1); /* a restarted server forgot the script: EVAL loads it again */
      return;
    }
    /* fall through */
  case R_EVAL:
    read_done(r, err, msg, reply);
    break;
  case R_CONFIG_SET:
    r->config_busy = 0;
    if (err != 0)
      EVS_LOG_WARN("redis trigger cannot set notify-keyspace-events",
                   EVS_KV_STR("scaled_object", r_object(r)), EVS_KV_STR("detail", msg));
    else
      evs_redis_keyspace_flags_forget(r->cmd); /* the server's flags changed: ask again */
    config_check(r);
    break;
  }
}

/* ---- push ---- */

static void on_message(evs_redis_sub_t *s, const char *payload, size_t len, void *arg) {
  (void)s;
  (void)payload;
  (void)len;
  redis_t *r = arg;
  r->ev.events++;
  if (r->read_busy || r->pending_err) {
    r->ev.coalesced++;
    r->read_again = 1;
    return;
  }
  r->ev.event_reads++;
  start_read(r, 0);
}

static void on_sub_state(evs_redis_sub_t *s, evs_redis_sub_state_t state, int err, const char *msg,
                         void *arg) {
  (void)s;
  redis_t *r = arg;
  if (state == EVS_REDIS_SUB_ACTIVE) {
    r->sub_active = 1;
    r->sub_refused = 0;
    config_check(r); /* the server may have restarted with other flags */
    want_read(r);    /* events may have been missed before the subscription */
  } else if (state == EVS_REDIS_SUB_DOWN) {
    r->sub_active = 0;
  } else {
    r->sub_active = 0;
    r->sub_refused = 1;
    EVS_LOG_DEBUG("redis subscribe refused", EVS_KV_ERR("error", err),
                  EVS_KV_STR("detail", msg ? msg : ""));
    want_read(r); /* the reading carries the notice */
  }
}

/* ---- lifecycle ---- */

/* The keyspace channel of the key, formatted when it is needed (a copy in every scaler was ~50 B
 * of 50,000 objects'). *len its length; free() it; NULL when out of memory. */
static char *channel_dup(const redis_t *r, size_t *len) {
  size_t n = strlen(r_list(r)) + 32;
  char *c = malloc(n);
  if (c != NULL)
    *len = (size_t)snprintf(c, n, "__keyspace@%d__:%s", (int)r->db, r_list(r));
  return c;
}

/* The listener on the key's channel; on failure the subscriber connection is given back and push
 * stays off (polling only). */
static void subscribe(redis_t *r, evs_redis_conn_t *subc) {
  static const evs_redis_sub_handlers_t h = {on_message, on_sub_state};
  size_t len = 0;
  char *channel = channel_dup(r, &len);
  if (channel == NULL || evs_redis_subscribe(subc, channel, len, &h, r, &r->sub) != 0) {
    evs_redis_registry_release(r->env->redis, subc);
    r->sub = NULL;
  }
  free(channel);
}

/* The subscriber connection is up (err 0): the listener is made now. EVS_ECANCELED: the
 * connection closed under us (the registry closing): nothing to give back. */
static void on_sub_wait(evs_redis_conn_t *c, int err, const char *msg, evs_redis_waiter_t *w) {
  (void)msg;
  redis_t *r = evs_container_of(w, redis_t, subw);
  r->sub_waiting = 0;
  r->subc = NULL;
  memset(&r->ev, 0, sizeof r->ev); /* the waiter's room holds the push counters from now */
  if (err == 0)
    subscribe(r, c);
}

/* tls: the configuration to connect with (borrowed: the connection takes its own reference). */
static void redis_connect(redis_t *r, evs_tls_config_t *tls) {
  const evs_scaler_env_t *env = r->env;
  evs_redis_options_t o = {.host = r_host(r),
                           .port = r->port,
                           .tls = tls,
                           .username = r_opt(r, O_USER),
                           .password = r_opt(r, O_PASS),
                           .db = r->db,
                           .request_timeout_ms =
                               env->request_timeout_ms ? env->request_timeout_ms : 10000,
                           .backoff_initial_ms = env->backoff_initial_ms,
                           .backoff_max_ms = env->backoff_max_ms};
  evs_redis_conn_t *cmd = NULL;
  int rc = evs_redis_registry_acquire(env->redis, &o, EVS_REDIS_COMMANDS, &cmd);
  if (rc != 0) {
    read_failed_sync(r, rc); /* never a reading from inside start */
    return;
  }
  r->cmd = cmd; /* the TLS request, if any, is over: the union is the connection's from now */
  r->ready = 1;
  evs_redis_conn_t *subc = NULL;
  if (env->redis_keyspace_events != EVS_KEYSPACE_OFF &&
      evs_redis_registry_acquire(env->redis, &o, EVS_REDIS_SUBSCRIBER, &subc) == 0) {
    int w = evs_redis_conn_wait(subc, &r->subw, on_sub_wait);
    if (w == 1) {
      memset(&r->ev, 0, sizeof r->ev); /* the waiter is not used: the push counters */
      subscribe(r, subc);
    } else if (w == 0) {
      r->sub_waiting = 1; /* subscribed when the connection is up: nothing held meanwhile */
      r->subc = subc;
    } else {
      memset(&r->ev, 0, sizeof r->ev);
      evs_redis_registry_release(env->redis, subc);
    }
  }
  config_check(r);
  want_read(r);
}

static void on_tls(int err, const char *why, evs_tls_config_t *cfg, void *arg) {
  redis_t *r = arg;
  r->tls_req = NULL;
  if (err != 0) {
    emit_error(r, err, 0, "TLS configuration for %s:%d: %s", r_host(r), (int)r->port, why);
    return;
  }
  redis_connect(r, cfg);
}

static int redis_start(evs_scaler_t *s) {
  redis_t *r = (redis_t *)s;
  if (!r->tls) {
    redis_connect(r, NULL);
    return 0;
  }
  evs_tls_options_t o = {.ca_pem = r_opt(r, O_CA),
                         .cert_pem = r_opt(r, O_CERT),
                         .key_pem = r_opt(r, O_KEY),
                         .insecure = r->unsafe_ssl};
  return evs_tls_cache_get(r->env->tls, &o, on_tls, r, &r->tls_req);
}

static int redis_poll(evs_scaler_t *s) {
  redis_t *r = (redis_t *)s;
  if (!r->ready) /* TLS still building or the registry refused: the answer is on its way */
    return 0;
  want_read(r);
  return 0;
}

static void wipe(char *s) {
  if (s) {
    volatile char *p = s;
    while (*p)
      *p++ = 0;
  }
}

static void params_free(params_t *p) {
  free(p->host);
  free(p->username);
  wipe(p->password);
  free(p->password);
  free(p->list);
  free(p->ca);
  free(p->cert);
  wipe(p->key);
  free(p->key);
}

/* The strings of p (and the object's name) in the order of redis_s.strs: their total size, and
 * copied into r->strs (sized for it) when r is not NULL. */
static size_t pack(redis_t *r, const params_t *p, const char *object) {
  const char *src[] = {object, p->list, p->host, p->username, p->password, p->ca, p->cert, p->key};
  size_t at = 0;
  for (size_t i = 0; i < 8; i++) {
    if (src[i] == NULL)
      continue;
    size_t n = strlen(src[i]) + 1;
    if (r != NULL) {
      memcpy(r->strs + at, src[i], n);
      if (i > 2)
        r->opt |= 1u << (i - 3);
    }
    at += n;
  }
  return at;
}

static void redis_free(evs_scaler_t *s) {
  redis_t *r = (redis_t *)s;
  char *pass = (char *)r_opt(r, O_PASS), *key = (char *)r_opt(r, O_KEY);
  wipe(key); /* both found first: a wiped string no longer leads to the next */
  wipe(pass);
  if (r->live != NULL)
    free(r->live->flags);
  free(r->live);
  free((char *)r->base.notice);
  free(r);
}

static void redis_close(evs_scaler_t *s) {
  redis_t *r = (redis_t *)s;
  live_t *l = r->live;
  for (req_t *q = l ? l->reqs : NULL; q != NULL; q = q->next) /* late replies: no scaler */
    q->r = NULL;
  if (!r->ready) {
    evs_tls_cache_cancel(r->tls_req);
    r->tls_req = NULL;
  }
  if (l != NULL) {
    l->reqs = NULL;
    evs_redis_keyspace_flags_cancel(l->flags_req);
    l->flags_req = NULL;
  }
  if (r->waiting) /* else the union is the delivery's entry (if anything) */
    evs_redis_conn_wait_cancel(r->cmd, &r->wait);
  else
    evs_timerq_stop(r->base.tq, &r->deliver);
  r->waiting = 0;
  if (r->sub_waiting) {
    evs_redis_conn_wait_cancel(r->subc, &r->subw);
    evs_redis_registry_release(r->env->redis, r->subc);
    r->sub_waiting = 0;
  } else if (r->sub) {
    evs_redis_conn_t *subc = evs_redis_sub_conn(r->sub); /* before the listener is freed */
    evs_redis_unsubscribe(r->sub);
    evs_redis_registry_release(r->env->redis, subc);
  }
  if (r->ready)
    evs_redis_registry_release(r->env->redis, r->cmd);
  r->sub = NULL;
  r->cmd = NULL;
  r->ready = 0;
  evs_scaler__close_later(&r->base, redis_free);
}

static int redis_create(uv_loop_t *loop, const evs_scaler_env_t *env,
                        const evs_scaler_config_t *cfg, evs_scaler_t **out, evs_diag_t *diag) {
  params_t p = {0};
  const char *object = cfg->object ? cfg->object : "";
  int rc = parse(&p, env, cfg, diag);
  /* The strings begin in the struct's tail padding (offsetof, not sizeof). */
  size_t size = offsetof(redis_t, strs) + pack(NULL, &p, object);
  redis_t *r = rc == 0 ? calloc(1, size > sizeof *r ? size : sizeof *r) : NULL;
  if (rc == 0 && r == NULL)
    rc = UV_ENOMEM;
  if (rc != 0) {
    params_free(&p);
    return rc;
  }
  pack(r, &p, object);
  r->env = env;
  r->index = cfg->index > UINT16_MAX ? UINT16_MAX : (uint16_t)cfg->index;
  r->activation = p.activation;
  r->db = p.db;
  r->port = (uint16_t)p.port;
  r->tls = p.tls != 0;
  r->unsafe_ssl = p.unsafe_ssl != 0;
  params_free(&p);
  r->base.loop = loop;
  if (evs__lua_sha[0] == '\0') { /* loop thread only: no race */
    unsigned char h[20];
    mbedtls_sha1_ret((const unsigned char *)LUA, sizeof LUA - 1, h);
    for (int i = 0; i < 20; i++)
      snprintf(evs__lua_sha + 2 * i, 3, "%02x", h[i]);
  }
  *out = &r->base;
  return 0;
}

int evs_redis_scaler_stats(const evs_scaler_t *s, evs_redis_scaler_stats_t *out) {
  if (s == NULL || s->type != &evs_scaler_redis_type)
    return UV_EINVAL;
  const redis_t *r = (const redis_t *)s;
  *out = (evs_redis_scaler_stats_t){.reads = r->reads,
                                    .readings = s->readings,
                                    .errors = s->errors,
                                    /* `ev` is the waiter's room until subscribed */
                                    .events = r->sub_waiting ? 0 : r->ev.events,
                                    .event_reads = r->sub_waiting ? 0 : r->ev.event_reads,
                                    .coalesced = r->sub_waiting ? 0 : r->ev.coalesced,
                                    .push = push_state(r),
                                    .last_error = s->last_error};
  if (r->sub && !r->sub_waiting) {
    evs_redis_conn_stats_t cs;
    evs_redis_conn_stats(evs_redis_sub_conn(r->sub), &cs);
    out->server_events = cs.messages;
  }
  return 0;
}

const evs_scaler_type_t evs_scaler_redis_type = {"redis",    redis_create, redis_start,
                                                 redis_poll, redis_close,  NULL};
