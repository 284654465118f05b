/* Unit tests for lib/migrate-libvirt.c's pure part: the destination's
 * domain XML made from the XML libvirt 9.0 wrote
 * (tests/data/libvirt/domain-mirror.xml): the migrated disk's <source
 * file> is its pre-created top and its <backingStore> chain is gone, the
 * other disk is untouched, a target the domain lacks is refused.  Built
 * without libvirt, the migration's answer says so.  The migration itself
 * needs two libvirt daemons: tests/integration/test-libvirt-migrate.sh.
 */
#include <string.h>
#include <glib.h>

#include "harness.h"
#include "migrate-libvirt.h"
#include "vm-libvirt.h"

static char *top_dir;

static char *
recorded (void)
{
  g_autofree char *path = g_build_filename (top_dir, "tests", "data",
                                            "libvirt", "domain-mirror.xml",
                                            NULL);
  g_autoptr(GError) err = NULL;
  char *xml = NULL;

  g_file_get_contents (path, &xml, NULL, &err);
  g_assert_no_error (err);
  return xml;
}

/* The recorded XML with TARGET moved to FILE, read back as the backend
 * reads a domain; *OUT gets the XML. */
static SmBlockVm *
moved (const char *target, const char *file, char **out)
{
  g_autofree char *xml = recorded ();
  g_autoptr(GHashTable) files = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr(GError) err = NULL;
  SmBlockVm *view;

  g_hash_table_insert (files, (gpointer) target, (gpointer) file);
  *out = sm_mig_libvirt_dest_xml (xml, files, &err);
  g_assert_no_error (err);
  g_assert_nonnull (*out);
  view = sm_vm_libvirt_parse_xml (*out, NULL, &err);
  g_assert_no_error (err);
  return view;
}

static void
test_dest_xml (void)
{
  g_autofree char *out = NULL;
  g_autoptr(SmBlockVm) view = moved ("vdb", "/D/d1.raw", &out);
  const SmBlockDisk *vda, *vdb;
  const SmBlockLayer *top;

  /* vdb on its new file alone, vda as it was (its chain of three), the
   * cdrom too. */
  g_assert_cmpuint (view->disks->len, ==, 3);
  vda = view->disks->pdata[0];
  vdb = view->disks->pdata[1];
  g_assert_cmpstr (vdb->device, ==, "vdb");
  g_assert_cmpuint (vdb->chain->len, ==, 1);
  top = vdb->chain->pdata[0];
  g_assert_cmpstr (top->filename, ==, "/D/d1.raw");
  g_assert_cmpstr (top->format, ==, "raw");
  g_assert_cmpuint (vda->chain->len, ==, 3);
  g_assert_cmpstr (((SmBlockLayer *) vda->chain->pdata[0])->filename, ==,
                   "/T/A/s1.qcow2");
}

static void
test_dest_xml_chain_dropped (void)
{
  g_autofree char *out = NULL;
  g_autoptr(SmBlockVm) view = moved ("vda", "/D/s1.qcow2", &out);
  const SmBlockDisk *vda = view->disks->pdata[0];

  /* No <backingStore> left under vda: libvirt reads the destination's
   * chain from its headers, never the source's files. */
  g_assert_null (strstr (out, "/T/A/top.qcow2"));
  g_assert_null (strstr (out, "/T/A/base.qcow2"));
  g_assert_cmpstr (((SmBlockLayer *) vda->chain->pdata[0])->filename, ==,
                   "/D/s1.qcow2");
}

static void
test_dest_xml_errors (void)
{
  g_autofree char *xml = recorded ();
  g_autoptr(GHashTable) files = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr(GError) err = NULL;
  char *out;

  g_hash_table_insert (files, (gpointer) "vdz", (gpointer) "/D/z.qcow2");
  out = sm_mig_libvirt_dest_xml (xml, files, &err);
  g_assert_null (out);
  g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
  g_clear_error (&err);
  out = sm_mig_libvirt_dest_xml ("not xml", files, &err);
  g_assert_null (out);
  g_assert_error (err, SM_ERROR, SM_ERROR_QMP_PROTOCOL);
}

/* The library never prints: libxml2's parser errors stay silent. */
static void
test_dest_xml_silent (void)
{
  if (g_test_subprocess ()) {
    g_autoptr(GHashTable) files = g_hash_table_new (g_str_hash, g_str_equal);
    g_autoptr(GError) err = NULL;

    g_assert_null (sm_mig_libvirt_dest_xml ("not xml", files, &err));
    return;
  }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  g_test_trap_assert_stderr ("");
}

#ifndef SM_HAVE_LIBVIRT
static void
test_built_without (void)
{
  SmMigLibvirtOptions o = { .uri = "qemu:///system", .domain = "vm",
                            .dest_uri = "qemu+ssh://b/system",
                            .dest_domain = "/D" };
  g_autoptr(GError) err = NULL;

  g_assert_null (sm_migrate_libvirt (&o, &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_UNSUPPORTED);
  g_assert_nonnull (strstr (err->message, "built without libvirt"));
}
#endif

int
main (int argc, char **argv)
{
  int r;

  g_test_init (&argc, &argv, NULL);
  top_dir = sm_test_source_tree ("lib/migrate-libvirt.h", NULL);
  g_test_add_func ("/migrate-libvirt/dest-xml", test_dest_xml);
  g_test_add_func ("/migrate-libvirt/dest-xml-chain-dropped",
                   test_dest_xml_chain_dropped);
  g_test_add_func ("/migrate-libvirt/dest-xml-errors", test_dest_xml_errors);
  g_test_add_func ("/migrate-libvirt/dest-xml-silent", test_dest_xml_silent);
#ifndef SM_HAVE_LIBVIRT   /* a build with libvirt (CI) reports no skip */
  g_test_add_func ("/migrate-libvirt/built-without", test_built_without);
#endif
  r = g_test_run ();
  g_free (top_dir);
  return r;
}
