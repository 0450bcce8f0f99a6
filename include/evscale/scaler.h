/* The scaler interface: every trigger type (cron, redis, prometheus) implements it.
 *
 * A scaler is created from a trigger's configuration (metadata + resolved authentication, as
 * KEDA hands them to its scalers), started with a reading callback, and delivers readings
 * (value, active, error, time) through it: when its backend pushes (Redis keyspace events), when
 * a boundary passes (cron) or when asked (evs_scaler_poll). It is torn down through the loop:
 * evs_scaler_close stops every callback at once and frees the scaler from its last uv_close
 * callback, then calls the close callback.
 *
 * Data flows one way: the scaler never calls into the engine; whoever owns it (the registry)
 * receives readings and feeds the engine. */
#ifndef EVSCALE_SCALER_H
#define EVSCALE_SCALER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "evscale/diag.h"

/* A borrowed string pair. */
typedef struct {
  const char *key;
  const char *value;
} evs_kv_t;

typedef struct {
  const evs_kv_t *items;
  size_t n;
} evs_kvs_t;

/* What a trigger hands to its scaler. Everything is borrowed for the duration of create; a
 * scaler copies what it keeps. The three maps are KEDA's ScalerConfig: TriggerMetadata,
 * AuthParams (from a TriggerAuthentication) and ResolvedEnv (the target's container env). */
typedef struct {
  const char *type;       /* "cron", "redis", "prometheus" */
  const char *name;       /* the trigger's `name`, or NULL */
  size_t index;           /* position in spec.triggers: KEDA's metric names are s{index}-… */
  const char *object;     /* "namespace/name" of the ScaledObject, for errors and logs */
  int metric_type_value;  /* 1 when metricType is Value, 0 for AverageValue */
  evs_kvs_t metadata;     /* trigger.metadata */
  evs_kvs_t auth_params;  /* resolved TriggerAuthentication parameters */
  evs_kvs_t resolved_env; /* resolved environment of the scale target's containers */
} evs_scaler_config_t;

/* Looks a key up in a map; NULL when absent. */
const char *evs_kvs_get(const evs_kvs_t *kvs, const char *key);

typedef struct {
  double value;    /* raw metric value, as KEDA's GetMetricsAndActivity returns it */
  int active;      /* the scaler's own activity verdict */
  int error;       /* 0, or a negative code: value and active are then meaningless */
  int64_t time_ms; /* wall-clock time the reading was taken (ms since the epoch) */
  /* When the reading will change by itself (a cron boundary), ms since the epoch; 0 = unknown.
   * Lets the engine schedule its next look without polling. */
  int64_t next_change_ms;
  const char *error_msg; /* optional detail for status and logs; borrowed for the callback */
} evs_reading_t;

typedef struct evs_scaler_s evs_scaler_t;
typedef struct evs_scaler_type_s evs_scaler_type_t;

typedef void (*evs_scaler_reading_cb)(evs_scaler_t *scaler, const evs_reading_t *reading,
                                      void *data);
typedef void (*evs_scaler_close_cb)(void *data);

struct evs_scaler_type_s {
  const char *name;
  /* Validates cfg and builds a scaler; on bad input returns UV_EINVAL (or a closer code) and
   * adds errors naming the field ("metadata.start: …") to diag. Never does I/O. */
  int (*create)(uv_loop_t *loop, const evs_scaler_config_t *cfg, evs_scaler_t **out,
                evs_diag_t *diag);
  /* Begins delivering readings to cb. */
  int (*start)(evs_scaler_t *scaler);
  /* Asks for a reading soon (polled scalers read their backend; others may answer at once). */
  int (*poll)(evs_scaler_t *scaler);
  /* Stops every callback now; frees the scaler after its handles close, then calls cb. */
  void (*close)(evs_scaler_t *scaler);
};

/* Every scaler struct begins with this header. */
struct evs_scaler_s {
  const evs_scaler_type_t *type;
  uv_loop_t *loop;
  evs_scaler_reading_cb on_reading;
  evs_scaler_close_cb on_close;
  void *data;
};

/* The type registered under `name` ("cron", …), or NULL. */
const evs_scaler_type_t *evs_scaler_type_find(const char *name);

/* Dispatches on cfg->type; UV_EINVAL with a diag entry naming `type` for an unknown type. */
int evs_scaler_create(uv_loop_t *loop, const evs_scaler_config_t *cfg, evs_scaler_t **out,
                      evs_diag_t *diag);
/* Readings go to cb(data) from now on. */
int evs_scaler_start(evs_scaler_t *scaler, evs_scaler_reading_cb cb, void *data);
int evs_scaler_poll(evs_scaler_t *scaler);
/* Idempotent per scaler; on_close(data) runs once, from a later loop iteration, after which the
 * scaler is freed. No reading callback runs after this call. */
void evs_scaler_close(evs_scaler_t *scaler, evs_scaler_close_cb on_close, void *data);

#endif
