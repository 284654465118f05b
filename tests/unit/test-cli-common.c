/* Unit tests for cli/common.c: --bandwidth RATE parsing and size formatting.
 *
 * CLI code is not linked into test programs, so cli/common.c is compiled in
 * here (as test-progress.c does).
 */
#include "../../cli/common.c"

#include "harness.h"

typedef struct {
  const char *text;
  guint64 rate;                /* G_MAXUINT64: refused */
} RateCase;

#define BAD G_MAXUINT64

static const RateCase rate_cases[] = {
  { "0", 0 },
  { "1048576", 1048576 },
  { "512K", 512 * 1024 },
  { "512k", 512 * 1024 },
  { "10M", 10 << 20 },
  { "1.5G", 3ULL << 29 },
  { "2.5", 2 },
  { "1T", 1ULL << 40 },
  { "64MiB", 64 << 20 },
  { "64Mi", 64 << 20 },
  { "64mb", 64 << 20 },
  { "1048576B", 1048576 },
  { "8M/s", 8 << 20 },
  { "8MiB/s", 8 << 20 },
  { "100/s", 100 },
  { "8000000000G", 8000000000ULL << 30 },
  { "", BAD }, { "M", BAD }, { "-1", BAD }, { "-1K", BAD }, { "10X", BAD },
  { "10 M", BAD }, { "10MM", BAD }, { "1e400", BAD },
  { "1i", BAD },               /* "i" only after a suffix */
  { "8M/", BAD }, { "8M/s/s", BAD },
  { "9000000000G", BAD },      /* 2^63 and more do not fit QEMU's int64 */
  { "16777216T", BAD },
};

static void
test_rate (void)
{
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (rate_cases); i++) {
    guint64 rate = 12345;
    bool ok = sm_cli_parse_rate (rate_cases[i].text, &rate);

    g_test_message ("RATE '%s'", rate_cases[i].text);
    if (rate_cases[i].rate == BAD) {
      g_assert_false (ok);
      g_assert_cmpuint (rate, ==, 12345);   /* untouched */
    } else {
      g_assert_true (ok);
      g_assert_cmpuint (rate, ==, rate_cases[i].rate);
    }
  }
}

static void
test_format_size (void)
{
  g_autofree char *b = sm_cli_format_size (512);
  g_autofree char *k = sm_cli_format_size (1536);
  g_autofree char *g = sm_cli_format_size (1ULL << 30);

  g_assert_cmpstr (b, ==, "512 B");
  g_assert_cmpstr (k, ==, "1.5 KiB");
  g_assert_cmpstr (g, ==, "1.0 GiB");
}

/* --qmp and --connect/--domain: exactly one way to the VM
 * (sm_op_target_check), each wrong combination named. */
static void
test_vm_target (void)
{
  static const struct {
    const char *qmp, *uri, *domain;
    const char *error;           /* NULL: accepted */
  } cases[] = {
    { "/run/vm.qmp", NULL, NULL, NULL },
    { NULL, "qemu:///system", "vm1", NULL },
    { "/run/vm.qmp", "qemu:///system", "vm1", "mutually exclusive" },
    { "/run/vm.qmp", NULL, "vm1", "mutually exclusive" },
    { NULL, "qemu:///system", NULL, "--connect URI needs --domain NAME" },
    { NULL, NULL, "vm1", "--domain NAME needs --connect URI" },
    { NULL, NULL, NULL, "--qmp SOCKET or --connect URI --domain NAME is "
                        "required" },
  };
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (cases); i++) {
    SmOpTarget t = { .address = cases[i].qmp, .uri = cases[i].uri,
                     .domain = cases[i].domain };
    g_autoptr(GError) err = NULL;
    bool ok = sm_op_target_check ("disks", &t, &err);

    if (!cases[i].error) {
      g_assert_no_error (err);
      g_assert_true (ok);
      continue;
    }
    g_assert_false (ok);
    g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
    g_assert_nonnull (strstr (err->message, cases[i].error));
    g_assert_true (g_str_has_prefix (err->message, "disks: "));
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/cli-common/rate", test_rate);
  g_test_add_func ("/cli-common/format-size", test_format_size);
  g_test_add_func ("/cli-common/vm-target", test_vm_target);
  return g_test_run ();
}
