/* libFuzzer: bytes → JSON → every decoder of src/kube/workload.c (Deployment/StatefulSet, Scale,
 * HPA), then the target key of what was decoded. Nothing may crash, leak (the interned manager
 * must be released: the table must end empty) or trip UBSan, and every failure must name the
 * field (a non-NULL why).
 *
 * Seed corpus (test/fuzz/corpus/fuzz_workload/): the payloads of test/data/workload/ (captured
 * from kube-apiserver v1.20.2, see its README), compacted to one line, plus a few hand-made
 * managedFields and wrong-type cases from test/unit/test_workload.c. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "evscale/intern.h"
#include "evscale/workload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static evs_intern_t *intern;

static void check_why(int rc, const char *why) {
  if (rc != 0 && why == NULL)
    __builtin_trap();
}

static void key_of(const char *av, const char *kind, const char *name) {
  char buf[EVS_WORKLOAD_KEY_MAX];
  if (evs_workload_target_key("ns", av, kind, name, buf, sizeof buf) == 0 &&
      strlen(buf) >= sizeof buf)
    __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_error_t err;
  json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, &err);
  const char *why = NULL;
  int rc;
  if (j == NULL)
    return 0;
  if (intern == NULL && evs_intern_new(&intern) != 0)
    __builtin_trap();

  evs_workload_t w;
  rc = evs_workload_parse(j, intern, &w, &why);
  check_why(rc, why);
  if (rc == 0) {
    if (w.spec_replicas < -1 || w.status_replicas < 0 || w.ready_replicas < 0)
      __builtin_trap();
    (void)evs_workload_status_current(&w);
    evs_workload_clear(&w, intern);
  }
  why = NULL;
  rc = evs_workload_parse_scale(j, &w, &why);
  check_why(rc, why);
  if (rc == 0 && w.ready_replicas != w.status_replicas)
    __builtin_trap();

  evs_hpa_info_t *h = NULL;
  why = NULL;
  rc = evs_hpa_info_parse(j, &h, &why);
  check_why(rc, why);
  if (rc == 0) {
    key_of(h->target_api_version, h->target_kind, h->target_name);
    if (h->owner_uid != NULL)
      key_of(h->owner_api_version, h->owner_kind, h->owner_name);
    evs_hpa_info_free(h);
  }
  void *d = NULL;
  if (evs_workload_decode(j, &d, intern) == 0)
    evs_workload_free(d, intern);
  json_decref(j);
  if (evs_intern_count(intern) != 0)
    __builtin_trap();
  return 0;
}
