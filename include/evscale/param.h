/* Trigger parameters as KEDA's scalers read them (kedacore/keda
 * 8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a pkg/scalers/scalersconfig/typed_config.go): every
 * value trimmed with Go's strings.TrimSpace (Unicode white space), an empty value counting as
 * absent, numbers decoded by encoding/json, bools by strconv.ParseBool.
 *
 * One module for the ScaledObject validator and every scaler, so that check-config and a
 * scaler's creation read a parameter the same way. Pure: no allocation except evs_param_trim_dup.
 *
 * Every function returns 0, UV_EINVAL when the text is not of the expected form, or EVS_ERANGE
 * when it is well formed but does not fit the type (Go's strconv.ErrRange: "1e400" is out of
 * range for a float64, not +Inf), so a caller can say which. */
#ifndef EVSCALE_PARAM_H
#define EVSCALE_PARAM_H

#include <stddef.h>
#include <stdint.h>

#include "evscale/error.h"

/* Go's unicode.IsSpace at s: the byte length of the space character there (UTF-8), or 0. */
size_t evs_param_space_len(const char *s);
/* strings.TrimSpace into a bounded buffer; returns 0, or UV_ENOBUFS when it does not fit. */
int evs_param_trim(const char *s, char *buf, size_t cap);
/* strings.TrimSpace as a new string (free it); NULL when nothing is left or out of memory. */
char *evs_param_trim_dup(const char *s);
/* json.Unmarshal into an int64: -?(0|[1-9][0-9]*); EVS_ERANGE beyond int64. */
int evs_param_json_int64(const char *s, int64_t *out);
/* json.Unmarshal into a float64: the JSON number grammar; EVS_ERANGE when it overflows float64
 * (underflow to 0 is accepted, as Go's decoder does). */
int evs_param_json_float(const char *s, double *out);
/* strconv.ParseFloat(s, 64): no surrounding space; "inf"/"nan" spelt out are accepted as Go
 * does, a finite number that overflows is EVS_ERANGE. */
int evs_param_go_float(const char *s, double *out);
/* strconv.ParseBool: 1 t T TRUE true True / 0 f F FALSE false False; else UV_EINVAL. */
int evs_param_go_bool(const char *s, int *out);

#endif
