/* The command-line grammar, as a table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "evscale/cli.h"
#include "evscale/error.h"

typedef struct {
  const char *args[8];
  int rc;
  evs_cmd_t cmd;
  const char *config, *level, *format, *topic;
  int dry_run;
  const char *err_part;
} cli_case_t;

static const cli_case_t cases[] = {
    {{NULL}, 0, EVS_CMD_RUN, NULL, NULL, NULL, NULL, 0, NULL},
    {{"run", "--config", "/c.yaml", "--dry-run"},
     0,
     EVS_CMD_RUN,
     "/c.yaml",
     NULL,
     NULL,
     NULL,
     1,
     NULL},
    {{"--config=/x.yaml", "--log-level", "debug", "--log-format=json"},
     0,
     EVS_CMD_RUN,
     "/x.yaml",
     "debug",
     "json",
     NULL,
     0,
     NULL},
    {{"check-config", "--config", "a.yaml"},
     0,
     EVS_CMD_CHECK_CONFIG,
     "a.yaml",
     NULL,
     NULL,
     NULL,
     0,
     NULL},
    {{"check-config", "--dry-run"}, UV_EINVAL, 0, NULL, NULL, NULL, NULL, 0, "only to 'run'"},
    {{"version"}, 0, EVS_CMD_VERSION, NULL, NULL, NULL, NULL, 0, NULL},
    {{"--version"}, 0, EVS_CMD_VERSION, NULL, NULL, NULL, NULL, 0, NULL},
    {{"version", "x"}, UV_EINVAL, 0, NULL, NULL, NULL, NULL, 0, "unexpected argument 'x'"},
    {{"help"}, 0, EVS_CMD_HELP, NULL, NULL, NULL, NULL, 0, NULL},
    {{"help", "check-config"}, 0, EVS_CMD_HELP, NULL, NULL, NULL, "check-config", 0, NULL},
    {{"help", "nope"}, UV_EINVAL, 0, NULL, NULL, NULL, NULL, 0, "unknown command 'nope'"},
    {{"--help"}, 0, EVS_CMD_HELP, NULL, NULL, NULL, "run", 0, NULL},
    {{"check-config", "-h"}, 0, EVS_CMD_HELP, NULL, NULL, NULL, "check-config", 0, NULL},
    {{"frobnicate"}, UV_EINVAL, 0, NULL, NULL, NULL, NULL, 0, "unknown command 'frobnicate'"},
    {{"run", "--bogus"}, UV_EINVAL, 0, NULL, NULL, NULL, NULL, 0, "unknown option '--bogus'"},
    {{"run", "--config"}, UV_EINVAL, 0, NULL, NULL, NULL, NULL, 0, "--config needs a value"},
    {{"run", "--config="}, UV_EINVAL, 0, NULL, NULL, NULL, NULL, 0, "non-empty"},
    {{"run", "stray"}, UV_EINVAL, 0, NULL, NULL, NULL, NULL, 0, "unexpected argument 'stray'"},
    {{"--configx", "a"}, UV_EINVAL, 0, NULL, NULL, NULL, NULL, 0, "unknown option '--configx'"},
};

static void cli_table(void **state) {
  (void)state;
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const cli_case_t *k = &cases[c];
    char *argv[10] = {"evscale"};
    int argc = 1;
    for (; k->args[argc - 1]; argc++)
      argv[argc] = (char *)k->args[argc - 1];
    evs_cli_t cli;
    char err[256];
    int rc = evs_cli_parse(argc, argv, &cli, err, sizeof err);
    if (rc != k->rc)
      fail_msg("case %zu: rc %d, want %d (%s)", c, rc, k->rc, err);
    if (rc != 0) {
      if (strstr(err, k->err_part) == NULL)
        fail_msg("case %zu: error '%s' lacks '%s'", c, err, k->err_part);
      continue;
    }
    assert_int_equal(cli.cmd, k->cmd);
    assert_int_equal(cli.dry_run, k->dry_run);
#define SAME(a, b)                                                                                 \
  if (((a) == NULL) != ((b) == NULL) || ((a) && strcmp((a), (b)) != 0))                            \
    fail_msg("case %zu: %s = '%s', want '%s'", c, #a, (a) ? (a) : "(null)", (b) ? (b) : "(null)");
    SAME(cli.config_path, k->config);
    SAME(cli.log_level, k->level);
    SAME(cli.log_format, k->format);
    SAME(cli.help_topic, k->topic);
  }
}

static void simulate_keeps_its_arguments(void **state) {
  (void)state;
  char *argv[] = {"evscale", "simulate", "so.yaml", "r.csv", "--replicas", "3"};
  evs_cli_t cli;
  char err[128];
  assert_int_equal(evs_cli_parse(6, argv, &cli, err, sizeof err), 0);
  assert_int_equal(cli.cmd, EVS_CMD_SIMULATE);
  assert_int_equal(cli.sub_argc, 5);
  assert_string_equal(cli.sub_argv[0], "simulate");
  assert_string_equal(cli.sub_argv[4], "3");
}

static void usage_texts(void **state) {
  (void)state;
  assert_non_null(strstr(evs_cli_usage(EVS_CMD_HELP), "Exit codes"));
  assert_non_null(strstr(evs_cli_usage(EVS_CMD_CHECK_CONFIG), "check-config"));
  assert_non_null(strstr(evs_cli_usage(EVS_CMD_SIMULATE), "READINGS.csv"));
  assert_int_equal(evs_cli_command("simulate"), EVS_CMD_SIMULATE);
  assert_int_equal(evs_cli_command("Simulate"), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(cli_table),
      cmocka_unit_test(simulate_keeps_its_arguments),
      cmocka_unit_test(usage_texts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
