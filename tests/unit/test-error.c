/* lib/error.c: the object an error carries, and the one table from error
 * code to exit status (docs/snapmig.1, EXIT STATUS; snapmig-json(7)). */
#include <glib.h>

#include "error.h"

static void
test_object (void)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(GError) copy = NULL;
  GError *inner = NULL;

  sm_error_set_with_object (&inner, SM_ERROR_NOT_FOUND, "vda",
                            "the VM has no disk %s", "vda");
  g_assert_cmpstr (sm_error_get_object (inner), ==, "vda");
  /* A prefix added on the way up keeps the object. */
  g_propagate_prefixed_error (&err, inner, "create: ");
  g_assert_error (err, SM_ERROR, SM_ERROR_NOT_FOUND);
  g_assert_cmpstr (err->message, ==, "create: the VM has no disk vda");
  g_assert_cmpstr (sm_error_get_object (err), ==, "vda");
  copy = g_error_copy (err);
  g_assert_cmpstr (sm_error_get_object (copy), ==, "vda");
  sm_error_set_object (err, "/images/a.qcow2");
  g_assert_cmpstr (sm_error_get_object (err), ==, "/images/a.qcow2");
  g_assert_cmpstr (sm_error_get_object (copy), ==, "vda");
  sm_error_set_object (err, NULL);
  g_assert_null (sm_error_get_object (err));
}

static void
test_foreign (void)
{
  g_autoptr(GError) err = g_error_new (G_FILE_ERROR, G_FILE_ERROR_NOENT, "x");

  /* Another domain has no object and is "failed". */
  sm_error_set_object (err, "x");
  g_assert_null (sm_error_get_object (err));
  g_assert_cmpstr (sm_error_code_name (err), ==, "failed");
  g_assert_cmpint (sm_error_exit_status (err), ==, 1);
}

static void
test_exit_status (void)
{
  static const struct {
    const char *code;
    int status;
  } table[] = {
    { "failed", 1 }, { "io", 1 }, { "exists", 1 }, { "image", 1 },
    { "unsafe", 1 }, { "usage", 2 }, { "invalid-input", 2 },
    { "invalid-xml", 2 }, { "not-found", 3 }, { "busy", 4 }, { "in-use", 4 },
    { "timeout", 5 }, { "disconnected", 6 }, { "qemu-error", 7 },
    { "qemu-protocol", 7 }, { "unsupported", 7 }, { "no-space", 8 },
    { "interrupted", 130 }, { "no-such-code", 1 },
  };

  g_assert_cmpint (sm_error_exit_status (NULL), ==, 0);
  for (gsize i = 0; i < G_N_ELEMENTS (table); i++) {
    int code = sm_error_code_from_name (table[i].code);
    g_autoptr(GError) err = g_error_new (SM_ERROR, code, "m");

    g_assert_cmpint (sm_error_exit_status_for_name (table[i].code), ==,
                     table[i].status);
    if (g_strcmp0 (table[i].code, "usage") != 0 &&
        g_strcmp0 (table[i].code, "no-such-code") != 0) {
      g_assert_cmpstr (sm_error_code_name (err), ==, table[i].code);
      g_assert_cmpint (sm_error_exit_status (err), ==, table[i].status);
    }
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/error/object", test_object);
  g_test_add_func ("/error/foreign-domain", test_foreign);
  g_test_add_func ("/error/exit-status", test_exit_status);
  return g_test_run ();
}
