/* The `redis` trigger: KEDA's redis scaler (kedacore/keda v2.20.2,
 * 68a5b5028f35b22d50597c69819ab32c4e92f21a, pkg/scalers/redis_scaler.go), read over evscale's
 * shared Redis connections (redis_conn.h), pushed by keyspace events as well as polled.
 *
 * Parameters, looked up as KEDA's typed config does (pkg/scalers/scalersconfig/typed_config.go
 * configParamValue: for each source in the field's order, for each of its names, the value
 * trimmed, empty = absent; the resolvedEnv source reads resolvedEnv[metadata["<name>FromEnv"]]):
 *   address;addresses  metadata, authParams, resolvedEnv  comma list, the first one used
 *   host;hosts         metadata, resolvedEnv, authParams  comma list } when both are given their
 *   port;ports         metadata, resolvedEnv, authParams  comma list } pairs are appended to the
 *                                                         addresses (same count required)
 *   username, password metadata, resolvedEnv, authParams
 *   listName           metadata, required
 *   listLength         metadata, int64, default 5 (evscale: at least 1, the HPA's target)
 *   activationListLength metadata, int64, default 0
 *   databaseIndex      metadata, int, default 0 (evscale: 0..INT_MAX)
 *   enableTLS          metadata, strconv.ParseBool }  not both (KEDA's SetEnableTLS)
 *   tls                authParams, enable|disable  }
 *   unsafeSsl          metadata, ParseBool, default false
 *   ca, cert (or Cert), key   authParams: PEM text; cert and key are used only together, as
 *                      KEDA's util.NewTLSConfigWithPassword does; the system roots are trusted
 *                      too (KEDA clones Go's system pool before adding `ca`)
 *   keyPassword        authParams: refused (mbedTLS config here takes no encrypted keys)
 * The address is host:port as Go's net.SplitHostPort reads it ("[::1]:6379"); evscale wants a
 * numeric port. Every error names the ScaledObject, the trigger and the field:
 *   default/orders: triggers[0].metadata.listLength: "ten" is not a number
 * and never shows a password (values of address/host/username/password are not echoed).
 *
 * Value: KEDA runs one Lua script per read: TYPE of the key, then ZCARD (zset), SCARD (set),
 * HLEN (hash), LLEN (list, or a missing key: 0), and an error for any other type. evscale runs
 * the same branches in a script (EVALSHA, EVAL after NOSCRIPT) that also returns the type, so an
 * error names the key and its type; the ACL commands a user needs are KEDA's. The count goes
 * through evs_reading_redis (activity: count > activationListLength).
 *
 * Push (config redis.keyspace_events: auto | on | off): one subscriber connection per server
 * identity, shared by every trigger on it through the registry; each trigger listens on
 * `__keyspace@<db>__:<listName>`. A message re-reads at once: at most one read in flight per
 * trigger, messages meanwhile coalesce into one more read. After every (re)subscribe every key is
 * read again (messages may have been missed). The cadence (scaler.h) keeps polling as the safety
 * net: FLUSHDB, FLUSHALL and SWAPDB publish no per-key event.
 * The server must publish the key's class: `notify-keyspace-events` with K, the type's class
 * (l, z, s, h; l while the key is missing), g, x and e, or KA. When CONFIG GET is allowed and
 * shows them off, or SUBSCRIBE is refused (a Redis 7 ACL user without `&__keyspace@*`), the
 * trigger polls only and says why in its readings' notice (once in the log); with `on` these
 * are error readings instead. redis.configure_keyspace_events: true adds the missing flags with
 * CONFIG SET; nothing else ever changes a server's configuration.
 *
 * Failures: every failed read is an error reading (fallback can act) with a message naming the
 * server and key, counted in the scaler's stats, logged once per change of error. */
#ifndef EVSCALE_REDIS_SCALER_H
#define EVSCALE_REDIS_SCALER_H

#include <stdint.h>

#include "evscale/scaler.h"

extern const evs_scaler_type_t evs_scaler_redis_type;

typedef enum {
  EVS_REDIS_PUSH_OFF = 0,     /* polling only: mode off, or not (yet) subscribed */
  EVS_REDIS_PUSH_ACTIVE = 1,  /* subscribed and the server publishes the key's events */
  EVS_REDIS_PUSH_UNKNOWN = 2, /* subscribed; CONFIG GET not allowed, so the flags are unknown */
  EVS_REDIS_PUSH_EVENTS_OFF = 3,
  EVS_REDIS_PUSH_REFUSED = 4
} evs_redis_push_t;

typedef struct {
  uint64_t reads;         /* reads sent (EVALSHA or EVAL) */
  uint64_t readings;      /* readings delivered (errors included) */
  uint64_t errors;        /* error readings: the hook for keda_scaler_detail_errors_total */
  uint64_t events;        /* keyspace messages received for this trigger */
  uint64_t event_reads;   /* reads started by a message */
  uint64_t coalesced;     /* messages folded into a read already due */
  uint64_t server_events; /* keyspace messages received by the shared subscriber connection */
  evs_redis_push_t push;  /* the push state */
  int last_error;         /* 0 or the error of the last reading */
} evs_redis_scaler_stats_t;

/* UV_EINVAL when s is not a redis scaler. */
int evs_redis_scaler_stats(const evs_scaler_t *s, evs_redis_scaler_stats_t *out);

/* The keyspace flags a key of `type` ("list", "zset", "set", "hash", "none") needs that `flags`
 * (CONFIG GET notify-keyspace-events) lacks, written to missing (NUL-terminated, "" = none);
 * pure, for tests and the fuzzer. */
void evs_redis_keyspace_missing(const char *flags, const char *type, char *missing, size_t cap);

#endif
