/* Unit tests for the public API's parts that need no QEMU (lib/api-*.c,
 * lib/helper.c): error codes and their names, argument checks that fail
 * before any connection, a monitor that is not there, validate of an empty
 * domain, the version and the helper binary's choice. */
#include <stdlib.h>
#include <string.h>
#include <glib.h>
#include <json-c/json.h>

#include "snapmig.h"
#include "error.h"
#include "harness.h"
#include "helper.h"

static void
test_codes (void)
{
  g_autoptr(GHashTable) names = g_hash_table_new (g_str_hash, g_str_equal);
  int c;

  g_assert_null (snapmig_code_name (SNAPMIG_OK));
  g_assert_null (snapmig_code_name (SNAPMIG_ERR_LAST));
  g_assert_null (snapmig_code_name ((snapmig_code) -1));
  for (c = SNAPMIG_ERR_FAILED; c < SNAPMIG_ERR_LAST; c++) {
    const char *name = snapmig_code_name ((snapmig_code) c);

    g_assert_nonnull (name);
    g_assert_false (g_hash_table_contains (names, name));
    g_hash_table_add (names, (gpointer) name);
    /* The JSON contract's name of the library's own code. */
    g_assert_cmpint (sm_error_code_from_name (name), ==, c - 1);
  }
  g_assert_cmpstr (snapmig_code_name (SNAPMIG_ERR_NOT_FOUND), ==, "not-found");
  g_assert_cmpstr (snapmig_code_name (SNAPMIG_ERR_QEMU_ERROR), ==,
                   "qemu-error");
  g_assert_cmpstr (snapmig_code_name (SNAPMIG_ERR_NO_SPACE), ==, "no-space");
  g_assert_cmpstr (snapmig_version (), ==, SM_VERSION);
  g_assert_true (SM_CHECK_VERSION (0, 2, 0));
  g_assert_false (SM_CHECK_VERSION (0, 3, 0));
}

static void
test_bad_arguments (void)
{
  snapmig_error *err = NULL;
  snapmig_create_options *o;

  g_assert_null (snapmig_vm_new (NULL, NULL, 0, &err));
  g_assert_cmpint (snapmig_error_code (err), ==, SNAPMIG_ERR_INVALID_INPUT);
  g_assert_cmpstr (snapmig_error_code_name (err), ==, "invalid-input");
  g_assert_nonnull (strstr (snapmig_error_message (err), "QMP socket"));
  g_assert_null (snapmig_error_object (err));
  g_clear_pointer (&err, snapmig_error_free);
  g_assert_null (snapmig_vm_new ("/x.qmp", NULL, -1, &err));
  g_assert_cmpint (snapmig_error_code (err), ==, SNAPMIG_ERR_INVALID_INPUT);
  g_clear_pointer (&err, snapmig_error_free);
  /* No error wanted: still fails, nothing leaks. */
  g_assert_null (snapmig_vm_new ("", NULL, 0, NULL));

  o = snapmig_create_options_new ("s1");
  g_assert_cmpint (snapmig_create_options_add_diskspec (o, "", &err), ==, -1);
  g_assert_cmpint (snapmig_error_code (err), ==, SNAPMIG_ERR_INVALID_INPUT);
  g_clear_pointer (&err, snapmig_error_free);
  g_assert_cmpint (snapmig_create_options_set_mirror_domain (o, NULL, &err),
                   ==, -1);
  g_clear_pointer (&err, snapmig_error_free);
  g_assert_cmpint (snapmig_create_options_add_diskspec (o, "vda", &err), ==, 0);
  g_assert_cmpint (snapmig_create_options_set_xml (o, "<x/>", &err), ==, 0);
  {
    /* XML and diskspecs together: refused before any connection. */
    snapmig_vm *vm = snapmig_vm_new ("/nonexistent/vm.qmp", NULL, 1, &err);

    g_assert_nonnull (vm);
    g_assert_cmpint (snapmig_create (vm, o, NULL, NULL, &err), ==, -1);
    g_assert_cmpint (snapmig_error_code (err), ==, SNAPMIG_ERR_INVALID_INPUT);
    g_clear_pointer (&err, snapmig_error_free);
    g_assert_cmpint (snapmig_pivot (vm, NULL, 0, NULL, NULL, NULL, &err), ==,
                     -1);
    g_assert_cmpint (snapmig_error_code (err), ==, SNAPMIG_ERR_INVALID_INPUT);
    g_clear_pointer (&err, snapmig_error_free);
    snapmig_vm_free (vm);
  }
  snapmig_create_options_free (o);
  g_assert_cmpint (snapmig_validate (NULL, NULL, 0, NULL, &err), ==, -1);
  g_assert_cmpint (snapmig_error_code (err), ==, SNAPMIG_ERR_INVALID_INPUT);
  g_clear_pointer (&err, snapmig_error_free);
}

/* A monitor that is not there: the error names the socket. */
static void
test_no_monitor (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *sock = g_build_filename (dir, "vm.qmp", NULL);
  snapmig_error *err = NULL;
  snapmig_vm *vm = snapmig_vm_new (sock, dir, 2, &err);
  snapmig_disks *disks;

  g_assert_nonnull (vm);
  disks = snapmig_disks_query (vm, &err);
  g_assert_null (disks);
  g_assert_nonnull (err);
  g_assert_cmpint (snapmig_error_code (err), !=, SNAPMIG_OK);
  g_assert_nonnull (strstr (snapmig_error_message (err), sock));
  snapmig_error_free (err);
  g_assert_null (snapmig_status_json (vm, NULL, NULL));
  snapmig_vm_free (vm);
  g_assert_cmpuint (snapmig_disks_count (NULL), ==, 0);
  g_assert_null (snapmig_disk_name (NULL, 0));
}

/* An empty domain, no VM: consistent, and the report is JSON. */
static void
test_validate_empty (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  const char *domains[] = { dir, NULL };
  snapmig_error *err = NULL;
  char *report = NULL;
  json_object *doc;

  g_assert_cmpint (snapmig_validate (domains, NULL, SNAPMIG_VALIDATE_STRICT,
                                     &report, &err), ==, 1);
  g_assert_null (err);
  g_assert_nonnull (report);
  doc = json_tokener_parse (report);
  g_assert_nonnull (doc);
  json_object_put (doc);
  free (report);
  g_assert_cmpint (snapmig_validate (domains, NULL, 0x80, NULL, &err), ==, -1);
  g_assert_cmpint (snapmig_error_code (err), ==, SNAPMIG_ERR_INVALID_INPUT);
  snapmig_error_free (err);
}

/* The helper binary: set path, else $SNAPMIG_HELPER, else (a program
 * linked with the static archive: no library file to look beside)
 * "snapmig" from PATH. */
static void
test_helper (void)
{
  g_autofree char *a = NULL;
  g_autofree char *b = NULL;
  g_autofree char *c = NULL;

  g_unsetenv ("SNAPMIG_HELPER");
  snapmig_set_helper (NULL);
  a = sm_helper_path ();
  g_assert_cmpstr (a, ==, "snapmig");
  g_setenv ("SNAPMIG_HELPER", "/opt/x/snapmig", TRUE);
  b = sm_helper_path ();
  g_assert_cmpstr (b, ==, "/opt/x/snapmig");
  snapmig_set_helper ("/usr/bin/snapmig");
  c = sm_helper_path ();
  g_assert_cmpstr (c, ==, "/usr/bin/snapmig");
  snapmig_set_helper (NULL);
  g_unsetenv ("SNAPMIG_HELPER");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/api/codes", test_codes);
  g_test_add_func ("/api/bad-arguments", test_bad_arguments);
  g_test_add_func ("/api/no-monitor", test_no_monitor);
  g_test_add_func ("/api/validate-empty", test_validate_empty);
  g_test_add_func ("/api/helper", test_helper);
  return g_test_run ();
}
