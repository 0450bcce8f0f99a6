/* The command line: `evscale [COMMAND] [OPTIONS]`.
 *
 *   evscale [run] [--config PATH] [--dry-run] [--log-level L] [--log-format logfmt|json]
 *   evscale check-config [--config PATH] [--log-level L] [--log-format F]
 *   evscale simulate SCALEDOBJECT.yaml READINGS.csv [--replicas N] [--format text|json]
 *   evscale version | --version
 *   evscale help [COMMAND] | --help | -h
 *
 * Parsing is pure (no I/O) so it is tested as a table; `simulate` keeps its own arguments and
 * parses them itself. Options accept both `--opt value` and `--opt=value`. */
#ifndef EVSCALE_CLI_H
#define EVSCALE_CLI_H

#include <stddef.h>

/* Exit codes, documented in the README. */
enum {
  EVS_EXIT_OK = 0,
  EVS_EXIT_CONFIG = 1,  /* invalid configuration or input (every error printed) */
  EVS_EXIT_USAGE = 2,   /* bad command line */
  EVS_EXIT_RUNTIME = 3, /* failed to start or failed while running (e.g. address in use) */
};

typedef enum {
  EVS_CMD_RUN = 0,
  EVS_CMD_CHECK_CONFIG,
  EVS_CMD_SIMULATE,
  EVS_CMD_VERSION,
  EVS_CMD_HELP
} evs_cmd_t;

typedef struct {
  evs_cmd_t cmd;
  const char *config_path; /* borrowed from argv; NULL = $EVSCALE_CONFIG or none */
  const char *log_level;   /* borrowed; NULL = from the configuration */
  const char *log_format;  /* borrowed; NULL = from the configuration */
  int dry_run;
  const char *help_topic; /* for `help COMMAND` */
  int sub_argc;           /* simulate: its arguments, argv[0] = "simulate" */
  char **sub_argv;
} evs_cli_t;

/* Returns 0, or UV_EINVAL with a one-line message in err. */
int evs_cli_parse(int argc, char **argv, evs_cli_t *out, char *err, size_t errcap);

/* Usage text for a command (EVS_CMD_HELP = the overview); static, never NULL. */
const char *evs_cli_usage(evs_cmd_t cmd);
/* Maps "run", "check-config", … to a command; -1 when unknown. */
int evs_cli_command(const char *name);

#endif
