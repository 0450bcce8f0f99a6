/* Helpers for the network unit tests: start test/net_server.py (or any script) as a child on a
 * free loopback port, make the test certificates with tools/testcerts.sh, run a loop until a
 * condition holds. Blocking is fine here: it is test setup, not the loop. */
#ifndef EVSCALE_TEST_NET_HELPERS_H
#define EVSCALE_TEST_NET_HELPERS_H

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

typedef struct {
  pid_t pid;
  int port;
  char dir[64];
} evs_test_server_t;

static inline const char *evs_test_src(void) {
  const char *s = getenv("EVS_SOURCE_DIR");
  return s != NULL ? s : EVS_SOURCE_DIR;
}

/* The certificate set of tools/testcerts.sh, made once per machine (idempotent script). */
static inline const char *evs_test_certs(void) {
  static char dir[256];
  if (dir[0] == '\0') {
    snprintf(dir, sizeof dir, "/tmp/evscale-testcerts-%d", (int)getuid());
    char cmd[600];
    snprintf(cmd, sizeof cmd, "%s/tools/testcerts.sh %s", evs_test_src(), dir);
    if (system(cmd) != 0) {
      fprintf(stderr, "tools/testcerts.sh failed\n");
      abort();
    }
  }
  return dir;
}

static inline const char *evs_test_cert(const char *name) {
  static char buf[8][320];
  static int i;
  char *b = buf[i++ % 8];
  snprintf(b, sizeof buf[0], "%s/%s", evs_test_certs(), name);
  return b;
}

/* A private temporary directory for a server's files (port files, logs). */
static inline int evs_test_server_dir(evs_test_server_t *s) {
  snprintf(s->dir, sizeof s->dir, "/tmp/evs-netsrv-XXXXXX");
  return mkdtemp(s->dir) == NULL ? -1 : 0;
}

/* Starts `python3 <repo>/<script> ARGS... --port-file DIR/port`; returns 0 once it listens.
 * s->dir is made here unless the caller made it first (to name more files in ARGS). */
static inline int evs_test_script_start(evs_test_server_t *s, const char *rel_script,
                                        const char *const *args) {
  if (s->dir[0] == '\0' && evs_test_server_dir(s) != 0)
    return -1;
  char script[300], pf[128];
  snprintf(script, sizeof script, "%s/%s", evs_test_src(), rel_script);
  snprintf(pf, sizeof pf, "%s/port", s->dir);
  const char *argv[32] = {"python3", script};
  int n = 2;
  for (; args[n - 2] != NULL && n < 28; n++)
    argv[n] = args[n - 2];
  argv[n++] = "--port-file";
  argv[n++] = pf;
  argv[n] = NULL;
  s->pid = fork();
  if (s->pid == 0) {
    execvp("python3", (char *const *)argv);
    _exit(127);
  }
  for (int tries = 0; tries < 400; tries++) {
    FILE *f = fopen(pf, "r");
    if (f != NULL) {
      int ok = fscanf(f, "%d", &s->port) == 1;
      fclose(f);
      if (ok)
        return 0;
    }
    usleep(50000);
  }
  return -1;
}

/* Starts test/net_server.py with ARGS. */
static inline int evs_test_server_start(evs_test_server_t *s, const char *const *args) {
  s->dir[0] = '\0';
  return evs_test_script_start(s, "test/net_server.py", args);
}

/* Starts test/faultproxy.py in front of the API server at upstream (verified with ca), serving
 * tools/testcerts.sh's ip-only certificate (clients trust evs_test_cert("ca.crt")); s->port is
 * its port, *cport its control port. 0, or -1 when it did not start. */
static inline int evs_test_faultproxy_start(evs_test_server_t *s, const char *upstream,
                                            const char *ca, int *cport) {
  *cport = 0;
  if (s->dir[0] == '\0' && evs_test_server_dir(s) != 0)
    return -1;
  char cpf[200];
  snprintf(cpf, sizeof cpf, "%s/control-port", s->dir);
  const char *args[] = {"--listen",
                        "127.0.0.1:0",
                        "--upstream",
                        upstream,
                        "--ca",
                        ca,
                        "--cert",
                        evs_test_cert("ip-only.crt"),
                        "--key",
                        evs_test_cert("ip-only.key"),
                        "--control-port-file",
                        cpf,
                        NULL};
  if (evs_test_script_start(s, "test/faultproxy.py", args) != 0)
    return -1;
  for (int i = 0; i < 200; i++) {
    FILE *f = fopen(cpf, "r");
    int ok = f != NULL && fscanf(f, "%d", cport) == 1;
    if (f != NULL)
      fclose(f);
    if (ok)
      return 0;
    usleep(50000);
  }
  return -1;
}

static inline void evs_test_server_stop(evs_test_server_t *s) {
  if (s->pid > 0) {
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
  }
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", s->dir);
  if (system(cmd) != 0)
    fprintf(stderr, "cannot remove %s\n", s->dir);
}

/* Runs the loop until *flag becomes nonzero or timeout_ms passes; returns *flag. */
/* A loopback port nobody listens on: bound and closed again (not port 1, which a process run
 * as root may well hold). 0 on failure. */
static inline int evs_test_closed_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  int port = 0;
  if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0)
    close(fd);
  return port;
}

static inline void evs_test__noop(uv_timer_t *t) { (void)t; }
static inline void evs_test__free_handle(uv_handle_t *h) { free(h); }

/* A heartbeat timer (unreferenced) bounds each poll, so a test waiting on a socket that never
 * speaks still reaches its deadline. */
static inline int evs_test_run_until(uv_loop_t *loop, const int *flag, uint64_t timeout_ms) {
  uv_timer_t *hb = malloc(sizeof *hb);
  uv_timer_init(loop, hb);
  uv_timer_start(hb, evs_test__noop, 50, 50);
  uv_unref((uv_handle_t *)hb);
  uint64_t start = uv_hrtime();
  while (!*flag && (uv_hrtime() - start) / 1000000 < timeout_ms)
    uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)hb, evs_test__free_handle);
  uv_run(loop, UV_RUN_NOWAIT);
  return *flag;
}

/* Runs the loop to completion and checks it closes: no handle left behind. */
static inline int evs_test_loop_close(uv_loop_t *loop) {
  for (int i = 0; i < 1000 && uv_loop_alive(loop); i++)
    uv_run(loop, UV_RUN_NOWAIT);
  uv_run(loop, UV_RUN_DEFAULT);
  return uv_loop_close(loop);
}

#endif
