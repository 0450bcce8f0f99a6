/* Trigger parameters as KEDA's scalers read them (kedacore/keda
 * 8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a pkg/scalers/scalersconfig/typed_config.go): every
 * value trimmed with Go's strings.TrimSpace (Unicode white space), an empty value counting as
 * absent, numbers decoded by encoding/json, bools by strconv.ParseBool.
 *
 * One module for the ScaledObject validator and every scaler, so that check-config and a
 * scaler's creation read a parameter the same way. Pure: no allocation except evs_param_trim_dup.
 */
#ifndef EVSCALE_PARAM_H
#define EVSCALE_PARAM_H

#include <stddef.h>
#include <stdint.h>

/* Go's unicode.IsSpace at s: the byte length of the space character there (UTF-8), or 0. */
size_t evs_param_space_len(const char *s);
/* strings.TrimSpace into a bounded buffer; returns 0, or -1 when it does not fit. */
int evs_param_trim(const char *s, char *buf, size_t cap);
/* strings.TrimSpace as a new string (free it); NULL when nothing is left or out of memory. */
char *evs_param_trim_dup(const char *s);
/* json.Unmarshal into an int64: -?(0|[1-9][0-9]*) in range. 0 or -1. */
int evs_param_json_int64(const char *s, int64_t *out);
/* json.Unmarshal into a float64: the JSON number grammar, finite. 0 or -1. */
int evs_param_json_float(const char *s, double *out);
/* strconv.ParseFloat(s, 64): no surrounding space, overflow refused. 0 or -1. */
int evs_param_go_float(const char *s, double *out);
/* strconv.ParseBool: 1 t T TRUE true True / 0 f F FALSE false False. 0 or -1. */
int evs_param_go_bool(const char *s, int *out);

#endif
