/* KEDA's external metric names, "s{index}-{scaler name}", exactly as KEDA builds them, because
 * users' dashboards, status.health keys and status.externalMetricNames use them.
 *
 * kedacore/keda 8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a:
 *  - pkg/scalers/scaler.go GenerateMetricNameWithIndex: fmt.Sprintf("s%d-%s", index, name)
 *  - pkg/util/normalize_string.go NormalizeString: "/", ".", ":", "%", "(", ")" -> "-"
 *  - redis_scaler.go GetMetricSpecForScaling: NormalizeString("redis-" + listName)
 *  - prometheus_scaler.go: NormalizeString("prometheus")
 *  - cron_scaler.go: NormalizeString("cron-" + timezone + "-" + f(start) + "-" + f(end)) where f
 *    (parseCronTimeFormat) removes " " and maps "*" -> "x", "/" -> "Sl", "?" -> "Qm", "," -> "Cm".
 * KEDA reads listName / timezone / start / end trimmed (scalersconfig/typed_config.go). */
#ifndef EVSCALE_METRICNAME_H
#define EVSCALE_METRICNAME_H

#include <stddef.h>

#include "evscale/scaler.h"

/* Writes the metric name of trigger `index` of type `type` with `metadata` into buf
 * (NUL-terminated). Returns the length (excluding NUL), UV_ENOBUFS when cap is too small, or
 * UV_EINVAL for an unknown type. A missing metadata value is taken as "". */
int evs_metricname_build(const char *type, size_t index, const evs_kvs_t *metadata, char *buf,
                         size_t cap);

/* KEDA's NormalizeString, in place. */
void evs_metricname_normalize(char *s);

#endif
