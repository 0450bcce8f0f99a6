/* Command-line grammar; see include/evscale/cli.h. */
#include "evscale/cli.h"
#include "evscale/error.h"

#include <stdio.h>
#include <string.h>

static const char evs__usage_main[] =
    "Usage: evscale [COMMAND] [OPTIONS]\n"
    "\n"
    "An event-driven autoscaler for Kubernetes that runs KEDA ScaledObjects unchanged.\n"
    "\n"
    "Commands:\n"
    "  run            run the autoscaler (the default command)\n"
    "  check-config   validate a configuration file and print the effective configuration\n"
    "  simulate       replay trigger readings through a ScaledObject and print the replicas\n"
    "  version        print the version\n"
    "  help [COMMAND] print help for a command\n"
    "\n"
    "Options of run:\n"
    "  --config PATH            configuration file (default: $EVSCALE_CONFIG, else none)\n"
    "  --dry-run                decide but write nothing to Kubernetes; never take the lease\n"
    "  --log-level LEVEL        debug, info, warn or error (overrides log.level)\n"
    "  --log-format FORMAT      logfmt or json (overrides log.format)\n"
    "  -h, --help               this text;  --version  the version\n"
    "\n"
    "Exit codes: 0 success, 1 invalid configuration or input, 2 usage error,\n"
    "3 failure at start-up or while running.\n";

static const char evs__usage_check[] =
    "Usage: evscale check-config [--config PATH]\n"
    "\n"
    "Parses and validates the configuration (file, then EVSCALE_* environment variables), and\n"
    "prints the effective configuration with secrets masked. Exits 0 when it is valid; otherwise\n"
    "prints every error as file:line:column: key: message and exits 1.\n";

static const char evs__usage_simulate[] =
    "Usage: evscale simulate SCALEDOBJECT.yaml READINGS.csv [--replicas N] [--format text|json]\n"
    "                        [--until SECONDS] [--no-breaker] [--max-scale-events N]\n"
    "                        [--breaker-cooldown SECONDS] [--fallback-replicas N]\n"
    "\n"
    "Runs the ScaledObject model, the decision engine and the circuit breaker over a CSV of\n"
    "readings (columns: time in seconds from the start, trigger, value, optional error) and\n"
    "prints the replica timeline with the reason for every change and every breaker trip.\n"
    "--replicas sets the starting count (default: minReplicaCount); --until the end time\n"
    "(default: the last reading). The breaker options default to circuit_breaker.* defaults.\n"
    "Exit codes: 0 ok, 1 input errors (each as file:line:col), 2 usage.\n";

static const char evs__usage_version[] = "Usage: evscale version\n\nPrints the version.\n";

static const char *const evs__cmd_names[] = {"run", "check-config", "simulate", "version", "help"};

int evs_cli_command(const char *name) {
  for (int i = 0; i < (int)(sizeof evs__cmd_names / sizeof evs__cmd_names[0]); i++)
    if (strcmp(name, evs__cmd_names[i]) == 0)
      return i;
  return -1;
}

const char *evs_cli_usage(evs_cmd_t cmd) {
  switch (cmd) {
  case EVS_CMD_CHECK_CONFIG:
    return evs__usage_check;
  case EVS_CMD_SIMULATE:
    return evs__usage_simulate;
  case EVS_CMD_VERSION:
    return evs__usage_version;
  default:
    return evs__usage_main;
  }
}

/* Matches "--name value" and "--name=value"; advances *i past what it consumed. Returns 1 on a
 * match with *val set, 0 when argv[*i] is another option, -1 when the value is missing. */
static int evs__opt_value(int argc, char **argv, int *i, const char *name, const char **val) {
  size_t n = strlen(name);
  const char *a = argv[*i];
  if (strncmp(a, name, n) != 0)
    return 0;
  if (a[n] == '=') {
    *val = a + n + 1;
    return 1;
  }
  if (a[n] != '\0')
    return 0;
  if (*i + 1 >= argc)
    return -1;
  *val = argv[++*i];
  return 1;
}

static int evs__fail(char *err, size_t cap, const char *fmt, const char *arg) {
  snprintf(err, cap, fmt, arg);
  return UV_EINVAL;
}

static int evs__parse_opts(int argc, char **argv, int i, evs_cli_t *out, char *err, size_t cap) {
  static const char *const names[] = {"--config", "--log-level", "--log-format"};
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      out->help_topic = evs__cmd_names[out->cmd];
      out->cmd = EVS_CMD_HELP;
      return 0;
    }
    if (strcmp(a, "--dry-run") == 0) {
      if (out->cmd != EVS_CMD_RUN)
        return evs__fail(err, cap, "--dry-run applies only to 'run'%s", "");
      out->dry_run = 1;
      continue;
    }
    const char **slots[] = {&out->config_path, &out->log_level, &out->log_format};
    int matched = 0;
    for (size_t k = 0; k < 3 && !matched; k++) {
      int r = evs__opt_value(argc, argv, &i, names[k], slots[k]);
      if (r < 0)
        return evs__fail(err, cap, "option %s needs a value", names[k]);
      if (r > 0 && **slots[k] == '\0')
        return evs__fail(err, cap, "option %s needs a non-empty value", names[k]);
      matched = r;
    }
    if (!matched)
      return evs__fail(err, cap, a[0] == '-' ? "unknown option '%s'" : "unexpected argument '%s'",
                       a);
  }
  return 0;
}

int evs_cli_parse(int argc, char **argv, evs_cli_t *out, char *err, size_t cap) {
  memset(out, 0, sizeof *out);
  err[0] = '\0';
  int i = 1;
  out->cmd = EVS_CMD_RUN;
  if (argc > 1 && argv[1][0] != '-') {
    int c = evs_cli_command(argv[1]);
    if (c < 0)
      return evs__fail(err, cap, "unknown command '%s' (try 'evscale help')", argv[1]);
    out->cmd = (evs_cmd_t)c;
    i = 2;
  }
  if (argc > 1 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)) {
    if (argc > 2)
      return evs__fail(err, cap, "unexpected argument '%s'", argv[2]);
    out->cmd = EVS_CMD_VERSION;
    return 0;
  }
  switch (out->cmd) {
  case EVS_CMD_SIMULATE:
    out->sub_argc = argc - 1;
    out->sub_argv = argv + 1;
    return 0;
  case EVS_CMD_HELP:
    if (argc > 3)
      return evs__fail(err, cap, "unexpected argument '%s'", argv[3]);
    if (argc == 3 && evs_cli_command(argv[2]) < 0)
      return evs__fail(err, cap, "no help for unknown command '%s'", argv[2]);
    out->help_topic = argc == 3 ? argv[2] : NULL;
    return 0;
  case EVS_CMD_VERSION:
    if (argc > i)
      return evs__fail(err, cap, "unexpected argument '%s'", argv[i]);
    return 0;
  default:
    return evs__parse_opts(argc, argv, i, out, err, cap);
  }
}
