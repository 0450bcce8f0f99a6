/* Redis client benchmark against a real redis-server it starts on a free loopback port:
 *
 *   bench_redis [-n ROUNDTRIPS] [-p PIPELINED] [-w WINDOW]
 *
 * 1. floor: LLEN round trips on a blocking socket (write the RESP bytes, read the reply): what
 *    the server and the kernel cost, without any client library;
 * 2. evs_redis LLEN round trips, one at a time (each issued from the previous reply's callback);
 * 3. pipelined throughput: PIPELINED LLENs with WINDOW in flight, replies per second and the
 *    process's CPU per 1000 replies;
 * 4. push: LPUSH on a command connection → the keyspace `message` on a subscriber connection,
 *    one at a time (the latency push mode adds on top of a read).
 * Latencies are p50/p99/max in microseconds. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "bench_util.h"
#include "evscale/redis_conn.h"

static int port;
static pid_t server;
static char dir[64];

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  int p = 0;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    p = ntohs(a.sin_port);
  close(fd);
  return p;
}

static int dial(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static void start_server(void) {
  snprintf(dir, sizeof dir, "/tmp/evs-bench-redis-XXXXXX");
  if (mkdtemp(dir) == NULL)
    exit(1);
  port = free_port();
  char p[16];
  snprintf(p, sizeof p, "%d", port);
  server = fork();
  if (server == 0) {
    execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "no", "--dir", dir, "--logfile", "/dev/null", (char *)NULL);
    _exit(127);
  }
  for (int i = 0; i < 200; i++) {
    int fd = dial();
    if (fd >= 0) {
      close(fd);
      return;
    }
    usleep(50000);
  }
  fprintf(stderr, "redis-server did not start\n");
  exit(1);
}

static void stop_server(void) {
  kill(server, SIGKILL);
  waitpid(server, NULL, 0);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "cannot remove %s\n", dir);
}

static void report(const char *what, uint32_t *lat, int n) {
  qsort(lat, (size_t)n, sizeof *lat, cmp_u32);
  double sum = 0;
  for (int i = 0; i < n; i++)
    sum += lat[i];
  printf("| %s | %.1f | %.1f | %.1f | %.1f | %d |\n", what, lat[n / 2] / 1e3,
         lat[(int)(n * 0.99)] / 1e3, lat[n - 1] / 1e3, sum / n / 1e3, n);
}

/* 1. The floor: blocking socket, no library. */
static void floor_roundtrips(int n, uint32_t *lat) {
  int fd = dial();
  static const char cmd[] = "*2\r\n$4\r\nLLEN\r\n$7\r\nbench:l\r\n";
  char buf[64];
  for (int i = 0; i < n; i++) {
    int64_t t0 = now_ns();
    if (write(fd, cmd, sizeof cmd - 1) != (ssize_t)(sizeof cmd - 1))
      exit(1);
    ssize_t k = 0;
    while (k == 0 || buf[k - 1] != '\n') {
      ssize_t r = read(fd, buf + k, sizeof buf - (size_t)k);
      if (r <= 0)
        exit(1);
      k += r;
    }
    lat[i] = since(t0);
  }
  close(fd);
}

typedef struct {
  evs_redis_conn_t *c;
  int n, done, issued, window, errors;
  int64_t t0;
  uint32_t *lat;
} seq_t;

static void on_seq(evs_redis_conn_t *c, int err, const char *msg, const redisReply *r, void *arg);

static void issue_seq(seq_t *s) {
  s->t0 = now_ns();
  if (evs_redis_command(s->c, on_seq, s, "LLEN bench:l") != 0)
    exit(1);
}

static void on_seq(evs_redis_conn_t *c, int err, const char *msg, const redisReply *r, void *arg) {
  (void)c, (void)msg, (void)r;
  seq_t *s = arg;
  if (err != 0)
    s->errors++;
  s->lat[s->done++] = since(s->t0);
  if (s->done < s->n)
    issue_seq(s);
}

static void on_pipe(evs_redis_conn_t *c, int err, const char *msg, const redisReply *r, void *arg) {
  (void)msg, (void)r;
  seq_t *s = arg;
  if (err != 0)
    s->errors++;
  s->done++;
  if (s->issued < s->n) {
    s->issued++;
    if (evs_redis_command(c, on_pipe, s, "LLEN bench:l") != 0)
      exit(1);
  }
}

typedef struct {
  evs_redis_conn_t *cmd;
  int active, n, done;
  int64_t t0;
  uint32_t *lat;
} push_t;

static void on_lpush(evs_redis_conn_t *c, int err, const char *msg, const redisReply *r,
                     void *arg) {
  (void)c, (void)msg, (void)r, (void)arg;
  if (err != 0)
    exit(1);
}

static void push_next(push_t *p) {
  p->t0 = now_ns();
  if (evs_redis_command(p->cmd, on_lpush, p, "LPUSH bench:push x") != 0)
    exit(1);
}

static void on_push_msg(evs_redis_sub_t *s, const char *payload, size_t len, void *arg) {
  (void)s, (void)payload, (void)len;
  push_t *p = arg;
  p->lat[p->done++] = since(p->t0);
  if (p->done < p->n)
    push_next(p);
}

static void on_push_state(evs_redis_sub_t *s, evs_redis_sub_state_t st, int err, const char *msg,
                          void *arg) {
  (void)s, (void)err, (void)msg;
  if (st == EVS_REDIS_SUB_ACTIVE)
    ((push_t *)arg)->active = 1;
}

static void run_until(uv_loop_t *loop, const int *v, int want) {
  while (*v < want)
    uv_run(loop, UV_RUN_ONCE);
}

static void on_set(evs_redis_conn_t *c, int err, const char *msg, const redisReply *r, void *arg) {
  (void)c, (void)err, (void)msg, (void)r;
  (*(int *)arg)++;
}

int main(int argc, char **argv) {
  int n = 20000, pipelined = 200000, window = 1000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "-n") == 0)
      n = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "-p") == 0)
      pipelined = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "-w") == 0)
      window = atoi(argv[i + 1]);
  }
  start_server();
  uint32_t *lat = calloc((size_t)n, sizeof *lat);
  double la[3] = {0};
  if (getloadavg(la, 3) < 0)
    la[0] = -1;
  printf("bench_redis -n %d -p %d -w %d: redis-server on 127.0.0.1:%d, load average %.2f %.2f "
         "%.2f, %ld CPUs\n\n",
         n, pipelined, window, port, la[0], la[1], la[2], sysconf(_SC_NPROCESSORS_ONLN));
  printf("| round trip (us) | p50 | p99 | max | mean | n |\n|---|---|---|---|---|---|\n");
  floor_roundtrips(n / 10 > 200 ? 200 : n / 10, lat); /* warm-up */
  floor_roundtrips(n, lat);
  report("floor: blocking socket, LLEN", lat, n);

  uv_loop_t loop;
  uv_loop_init(&loop);
  evs_redis_options_t o = {.host = "127.0.0.1", .port = port, .request_timeout_ms = 30000};
  evs_redis_conn_t *c, *sc;
  evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &c);
  int setn = 0;
  evs_redis_command(c, on_set, &setn, "RPUSH bench:l a b c");
  evs_redis_command(c, on_set, &setn, "CONFIG SET notify-keyspace-events Kl");
  run_until(&loop, &setn, 2);

  seq_t s = {.c = c, .n = n, .lat = lat};
  issue_seq(&s);
  run_until(&loop, &s.done, n);
  report("evs_redis: LLEN, one at a time", lat, n);

  seq_t p = {.c = c, .n = pipelined, .window = window};
  double cpu0 = cpu_seconds();
  int64_t t0 = now_ns();
  for (; p.issued < window && p.issued < pipelined; p.issued++)
    evs_redis_command(c, on_pipe, &p, "LLEN bench:l");
  run_until(&loop, &p.done, pipelined);
  double secs = (double)(now_ns() - t0) / 1e9, cpu = cpu_seconds() - cpu0;

  evs_redis_conn_new(&loop, &o, EVS_REDIS_SUBSCRIBER, &sc);
  push_t pu = {.cmd = c, .n = n, .lat = lat};
  evs_redis_sub_handlers_t h = {.on_message = on_push_msg, .on_state = on_push_state};
  evs_redis_sub_t *sub;
  const char *chan = "__keyspace@0__:bench:push";
  evs_redis_subscribe(sc, chan, strlen(chan), &h, &pu, &sub);
  run_until(&loop, &pu.active, 1);
  push_next(&pu);
  run_until(&loop, &pu.done, n);
  report("evs_redis: LPUSH → keyspace message on the subscriber", lat, n);

  printf("\n| pipelined LLEN | replies | window | seconds | replies/s | CPU s (process) | CPU us "
         "per reply | errors |\n|---|---|---|---|---|---|---|---|\n");
  printf("| evs_redis | %d | %d | %.2f | %.0f | %.2f | %.2f | %d |\n", pipelined, window, secs,
         pipelined / secs, cpu, cpu * 1e6 / pipelined, p.errors + s.errors);

  evs_redis_unsubscribe(sub);
  evs_redis_conn_close(c, NULL, NULL);
  evs_redis_conn_close(sc, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  free(lat);
  stop_server();
  return 0;
}
