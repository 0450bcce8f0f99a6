/* The scaler registry: one entry per trigger type. */
#include "evscale/scaler.h"
#include "evscale/cron.h"
#include "evscale/error.h"

#include <string.h>

/* Each trigger type's file defines its evs_scaler_type_t; list it here. */
static const evs_scaler_type_t *const evs__scaler_types[] = {
    &evs_scaler_cron_type, /* redis, prometheus register here */
};

const char *evs_kvs_get(const evs_kvs_t *kvs, const char *key) {
  if (kvs == NULL)
    return NULL;
  for (size_t i = 0; i < kvs->n; i++)
    if (kvs->items[i].key && strcmp(kvs->items[i].key, key) == 0)
      return kvs->items[i].value;
  return NULL;
}

const evs_scaler_type_t *evs_scaler_type_find(const char *name) {
  for (size_t i = 0; i < sizeof evs__scaler_types / sizeof evs__scaler_types[0]; i++)
    if (evs__scaler_types[i] && strcmp(evs__scaler_types[i]->name, name) == 0)
      return evs__scaler_types[i];
  return NULL;
}

int evs_scaler_create(uv_loop_t *loop, const evs_scaler_config_t *cfg, evs_scaler_t **out,
                      evs_diag_t *diag) {
  *out = NULL;
  const evs_scaler_type_t *t = cfg->type ? evs_scaler_type_find(cfg->type) : NULL;
  if (t == NULL) {
    evs_diag_add(diag, cfg->object, 0, 0, "type", "unsupported trigger type '%s'",
                 cfg->type ? cfg->type : "");
    return UV_EINVAL;
  }
  int rc = t->create(loop, cfg, out, diag);
  if (rc == 0) {
    (*out)->type = t;
    (*out)->loop = loop;
  }
  return rc;
}

int evs_scaler_start(evs_scaler_t *scaler, evs_scaler_reading_cb cb, void *data) {
  scaler->on_reading = cb;
  scaler->data = data;
  return scaler->type->start(scaler);
}

int evs_scaler_poll(evs_scaler_t *scaler) { return scaler->type->poll(scaler); }

void evs_scaler_close(evs_scaler_t *scaler, evs_scaler_close_cb on_close, void *data) {
  if (scaler->type == NULL)
    return; /* already closing */
  scaler->on_reading = NULL;
  scaler->on_close = on_close;
  scaler->data = data;
  const evs_scaler_type_t *t = scaler->type;
  scaler->type = NULL;
  t->close(scaler);
}
