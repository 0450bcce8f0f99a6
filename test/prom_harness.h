/* C side of test/prom_harness.py: starts it as a child with pipes, reads its first JSON line
 * (server URLs), sends commands and reads one JSON answer per command. Blocking: test setup only,
 * called between loop runs, never from a loop callback. */
#ifndef EVSCALE_TEST_PROM_HARNESS_H
#define EVSCALE_TEST_PROM_HARNESS_H

#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net_helpers.h"

typedef struct {
  pid_t pid;
  FILE *in, *out;
  char prometheus[128], pushgateway[128], proxy[128], ca[256];
} evs_prom_harness_t;

static inline json_t *evs_prom_harness__read(evs_prom_harness_t *h) {
  static char line[1 << 20];
  if (fgets(line, sizeof line, h->out) == NULL)
    return NULL;
  return json_loads(line, 0, NULL);
}

static inline void evs_prom_harness__copy(char *dst, size_t cap, json_t *o, const char *k) {
  const char *v = json_string_value(json_object_get(o, k));
  snprintf(dst, cap, "%s", v ? v : "");
}

/* args: extra command-line words for prom_harness.py, NULL-terminated. 0 once it is up. */
static inline int evs_prom_harness_start(evs_prom_harness_t *h, const char *const *args) {
  memset(h, 0, sizeof *h);
  int to_child[2], from_child[2];
  if (pipe(to_child) != 0 || pipe(from_child) != 0)
    return -1;
  char script[300];
  snprintf(script, sizeof script, "%s/test/prom_harness.py", evs_test_src());
  const char *argv[24] = {"python3", script};
  int n = 2;
  for (; args && args[n - 2] && n < 22; n++)
    argv[n] = args[n - 2];
  argv[n] = NULL;
  h->pid = fork();
  if (h->pid == 0) {
    dup2(to_child[0], 0);
    dup2(from_child[1], 1);
    close(to_child[1]), close(from_child[0]);
    execvp("python3", (char *const *)argv);
    _exit(127);
  }
  close(to_child[0]), close(from_child[1]);
  h->in = fdopen(to_child[1], "w");
  h->out = fdopen(from_child[0], "r");
  json_t *d = evs_prom_harness__read(h);
  if (d == NULL)
    return -1;
  evs_prom_harness__copy(h->prometheus, sizeof h->prometheus, d, "prometheus");
  evs_prom_harness__copy(h->pushgateway, sizeof h->pushgateway, d, "pushgateway");
  evs_prom_harness__copy(h->proxy, sizeof h->proxy, d, "proxy");
  evs_prom_harness__copy(h->ca, sizeof h->ca, d, "ca");
  json_decref(d);
  return 0;
}

/* Sends one command; returns its answer (new reference) or NULL; prints a failed one. */
static inline json_t *evs_prom_harness_cmd(evs_prom_harness_t *h, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfprintf(h->in, fmt, ap);
  va_end(ap);
  fputc('\n', h->in);
  fflush(h->in);
  json_t *r = evs_prom_harness__read(h);
  if (r != NULL && !json_is_true(json_object_get(r, "ok"))) {
    fprintf(stderr, "prom_harness: %s\n", json_string_value(json_object_get(r, "error")));
    json_decref(r);
    return NULL;
  }
  return r;
}

/* A command whose answer only says ok: 0 or -1. */
static inline int evs_prom_harness_do(evs_prom_harness_t *h, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  json_t *r = evs_prom_harness_cmd(h, "%s", buf);
  json_decref(r);
  return r != NULL ? 0 : -1;
}

/* The proxy's count of forwarded requests (-1 on failure). */
static inline long evs_prom_harness_requests(evs_prom_harness_t *h) {
  json_t *r = evs_prom_harness_cmd(h, "count");
  long n = r ? (long)json_integer_value(json_object_get(r, "requests")) : -1;
  json_decref(r);
  return n;
}

static inline void evs_prom_harness_stop(evs_prom_harness_t *h) {
  if (h->in) {
    fputs("quit\n", h->in);
    fflush(h->in);
    fclose(h->in);
  }
  if (h->pid > 0)
    waitpid(h->pid, NULL, 0);
  if (h->out)
    fclose(h->out);
  memset(h, 0, sizeof *h);
}

#endif
