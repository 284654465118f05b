/* Unit tests for lib/migrate-cookie: a full cookie round-trips through
 * format and parse (and its text is the golden file
 * tests/data/migration-cookie-snapmig.xml; SM_REGENERATE=1 rewrites it),
 * libvirt's cookies (../shared/corpus) are read, malformed and meaningless
 * cookies are refused naming the line or the object, a cookie is read from
 * a pipe (EOF, closing line, timeout), and endpoint URIs convert to QEMU's
 * SocketAddress.
 */
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <json-c/json.h>

#include "harness.h"
#include "interrupt.h"
#include "migrate-cookie.h"
#include "snapshot-xml.h"

static char *top_dir;             /* the source tree */
static char *shared_dir;          /* TOP/../shared, or NULL when absent */

static SmMigLayer *
layer (SmMigLayerRole role, const char *file, const char *name,
       SmImageFormat format, uint64_t size, const char *backing,
       SmImageFormat backing_format, const char *export)
{
  SmMigLayer *l = sm_mig_layer_new (role);

  l->file = g_strdup (file);
  l->name = g_strdup (name);
  l->format = format;
  l->virtual_size = size;
  l->file_size = size / 2 + 1;
  l->allocated = size / 4 + 3;
  l->cluster_size = format == SM_IMAGE_FORMAT_QCOW2 ? 65536 : 0;
  l->backing = g_strdup (backing);
  l->backing_format = backing_format;
  l->export = g_strdup (export);
  return l;
}

static SmMigDisk *
disk (SmMigCookie *c, const char *name, const char *id, SmImageFormat format,
      uint64_t capacity)
{
  SmMigDisk *d = sm_mig_disk_new (name);

  d->id = g_strdup (id);
  d->format = format;
  d->capacity = capacity;
  d->source_top = g_strdup_printf ("/src/%s-top.img", name);
  d->export = g_strdup (name);
  d->dest_top = g_strdup_printf ("/sd2/%s-top.img", name);
  g_ptr_array_add (c->disks, d);
  return d;
}

/* Three disks as the acceptance test has them: a 2-layer qcow2
 * chain (a new top, its copied base), a raw disk, and a qcow2 disk on a
 * base both hosts share; every field set. */
static SmMigCookie *
full_cookie (void)
{
  static const char *const argv[] = {
    "/usr/bin/qemu-system-x86_64", "-name", "guest one",
    "-drive", "file=/src/vda top.qcow2,format=qcow2,,x,id=drive0,if=none",
    "-uuid", "", "quotes ' \" & < > ]]>", "tab\tnew\nline", NULL
  };
  SmMigCookie *c = sm_mig_cookie_new ();
  SmMigDisk *d;

  c->id = g_strdup ("mig-20261130-1");
  c->phase = g_strdup ("prepare");
  c->name = g_strdup ("guest one");
  c->uuid = g_strdup ("6a2f3c1e-0b7d-4c55-9e1a-2f4b8d6c7e90");
  c->hostname = g_strdup ("hostb");
  c->storage = SM_MIG_STORAGE_CHAIN;
  c->bandwidth = 104857600;
  c->copy_mode = g_strdup ("write-blocking");
  c->postcopy = true;
  c->postcopy_after_precopy = true;
  c->postcopy_fallback = true;
  c->postcopy_bandwidth = G_MAXUINT64;
  c->parallel = 4;
  c->transport = g_strdup ("tls");
  c->link_timeout = 45;
  c->link_resumes = 3;
  c->tunnel_bytes = 123456789;
  c->source_host = g_strdup ("10.0.0.1");
  c->source_qmp = g_strdup ("/run/vm1.qmp");
  c->source_pid = 4242;
  c->qemu_argv = g_strdupv ((char **) argv);
  c->layers_uri = g_strdup ("tcp:10.0.0.1:49200");
  c->dest_host = g_strdup ("fe80::1%veth0");
  c->dest_domain = g_strdup ("/sd2");
  c->dest_run_dir = g_strdup ("/run/snapmig/mig-1");
  c->dest_qmp = g_strdup ("/run/snapmig/mig-1/snapmig.qmp");
  c->dest_user_qmp = g_strdup ("/run/snapmig/mig-1/vm1.qmp");
  c->dest_pid = 5151;
  c->nbd_uri = g_strdup ("tcp:[fe80::1]:49153");
  c->migrate_uri = g_strdup ("unix:/run/snapmig/mig-1/migrate.sock");
  c->failed = true;
  c->error_phase = g_strdup ("perform");
  c->error_message = g_strdup ("disk 'vda': mirror failed:\n\tNo space left");
  c->dest_ran = true;
  c->disk_bytes = G_MAXUINT64;
  c->ram_bytes = 1073741824;
  c->pause_us = 0;
  c->postcopy_refused = g_strdup ("userfaultfd: 'Operation not permitted'\n"
                                  "\trun as root <here>");
  c->postcopy_used = true;
  c->postcopy_requests = 123456789012;
  c->recoveries = G_MAXINT;

  d = disk (c, "vda", "drive0", SM_IMAGE_FORMAT_QCOW2, 10737418240);
  d->source_new_top = g_strdup ("/src/vda-snap.qcow2");
  g_ptr_array_add (d->layers,
                   layer (SM_MIG_LAYER_TOP, "/src/vda-snap.qcow2", "vda-snap.qcow2",
                          SM_IMAGE_FORMAT_QCOW2, 10737418240, "vda top.qcow2",
                          SM_IMAGE_FORMAT_QCOW2, NULL));
  g_ptr_array_add (d->layers,
                   layer (SM_MIG_LAYER_COPY, "/src/vda top.qcow2", "vda top.qcow2",
                          SM_IMAGE_FORMAT_QCOW2, 10737418240, NULL,
                          SM_IMAGE_FORMAT_LAST, "layer-vda-1"));
  d = disk (c, "vdb", "virtio-disk1", SM_IMAGE_FORMAT_RAW, 1073741824);
  g_ptr_array_add (d->layers,
                   layer (SM_MIG_LAYER_TOP, "/src/vdb.raw", "vdb.raw",
                          SM_IMAGE_FORMAT_RAW, 1073741824, NULL,
                          SM_IMAGE_FORMAT_LAST, NULL));
  d = disk (c, "vdc", NULL, SM_IMAGE_FORMAT_QCOW2, 2147483648);
  g_ptr_array_add (d->layers,
                   layer (SM_MIG_LAYER_TOP, "/src/vdc.qcow2", "vdc.qcow2",
                          SM_IMAGE_FORMAT_QCOW2, 2147483648, "/shared/base.raw",
                          SM_IMAGE_FORMAT_RAW, NULL));
  g_ptr_array_add (d->layers,
                   layer (SM_MIG_LAYER_SHARED, "/shared/base.raw", NULL,
                          SM_IMAGE_FORMAT_RAW, 2147483648, NULL,
                          SM_IMAGE_FORMAT_LAST, NULL));
  return c;
}

static void
assert_layers_equal (const SmMigLayer *a, const SmMigLayer *b)
{
  g_assert_cmpint (a->role, ==, b->role);
  g_assert_cmpstr (a->file, ==, b->file);
  g_assert_cmpstr (a->name, ==, b->name);
  g_assert_cmpint (a->format, ==, b->format);
  g_assert_cmpuint (a->virtual_size, ==, b->virtual_size);
  g_assert_cmpuint (a->file_size, ==, b->file_size);
  g_assert_cmpuint (a->allocated, ==, b->allocated);
  g_assert_cmpuint (a->cluster_size, ==, b->cluster_size);
  g_assert_cmpstr (a->backing, ==, b->backing);
  g_assert_cmpint (a->backing_format, ==, b->backing_format);
  g_assert_cmpstr (a->export, ==, b->export);
}

static void
assert_disks_equal (const SmMigDisk *a, const SmMigDisk *b)
{
  guint i;

  g_assert_cmpstr (a->name, ==, b->name);
  g_assert_cmpstr (a->id, ==, b->id);
  g_assert_cmpint (a->migrate, ==, b->migrate);
  g_assert_cmpint (a->format, ==, b->format);
  g_assert_cmpuint (a->capacity, ==, b->capacity);
  g_assert_cmpstr (a->source_top, ==, b->source_top);
  g_assert_cmpstr (a->source_new_top, ==, b->source_new_top);
  g_assert_cmpstr (a->export, ==, b->export);
  g_assert_cmpstr (a->dest_top, ==, b->dest_top);
  g_assert_cmpuint (a->layers->len, ==, b->layers->len);
  for (i = 0; i < a->layers->len; i++)
    assert_layers_equal (g_ptr_array_index (a->layers, i),
                         g_ptr_array_index (b->layers, i));
}

static void
assert_cookies_equal (const SmMigCookie *a, const SmMigCookie *b)
{
  guint i;

  g_assert_cmpstr (a->id, ==, b->id);
  g_assert_cmpstr (a->phase, ==, b->phase);
  g_assert_cmpstr (a->name, ==, b->name);
  g_assert_cmpstr (a->uuid, ==, b->uuid);
  g_assert_cmpstr (a->hostname, ==, b->hostname);
  g_assert_cmpint (a->storage, ==, b->storage);
  g_assert_cmpuint (a->bandwidth, ==, b->bandwidth);
  g_assert_cmpstr (a->copy_mode, ==, b->copy_mode);
  g_assert_cmpint (a->postcopy, ==, b->postcopy);
  g_assert_cmpint (a->postcopy_after_precopy, ==, b->postcopy_after_precopy);
  g_assert_cmpint (a->postcopy_fallback, ==, b->postcopy_fallback);
  g_assert_cmpuint (a->postcopy_bandwidth, ==, b->postcopy_bandwidth);
  g_assert_cmpint (a->parallel, ==, b->parallel);
  g_assert_cmpstr (a->transport, ==, b->transport);
  g_assert_cmpint (a->link_timeout, ==, b->link_timeout);
  g_assert_cmpint (a->link_resumes, ==, b->link_resumes);
  g_assert_cmpint (a->tunnel_bytes, ==, b->tunnel_bytes);
  g_assert_cmpstr (a->source_host, ==, b->source_host);
  g_assert_cmpstr (a->source_qmp, ==, b->source_qmp);
  g_assert_cmpint (a->source_pid, ==, b->source_pid);
  g_assert_cmpint (a->qemu_argv == NULL, ==, b->qemu_argv == NULL);
  if (a->qemu_argv)
    g_assert_true (g_strv_equal ((const char *const *) a->qemu_argv,
                                 (const char *const *) b->qemu_argv));
  g_assert_cmpstr (a->layers_uri, ==, b->layers_uri);
  g_assert_cmpstr (a->dest_host, ==, b->dest_host);
  g_assert_cmpstr (a->dest_domain, ==, b->dest_domain);
  g_assert_cmpstr (a->dest_run_dir, ==, b->dest_run_dir);
  g_assert_cmpstr (a->dest_qmp, ==, b->dest_qmp);
  g_assert_cmpstr (a->dest_user_qmp, ==, b->dest_user_qmp);
  g_assert_cmpint (a->dest_pid, ==, b->dest_pid);
  g_assert_cmpstr (a->nbd_uri, ==, b->nbd_uri);
  g_assert_cmpstr (a->migrate_uri, ==, b->migrate_uri);
  g_assert_cmpint (a->failed, ==, b->failed);
  g_assert_cmpstr (a->error_phase, ==, b->error_phase);
  g_assert_cmpstr (a->error_message, ==, b->error_message);
  g_assert_cmpint (a->dest_ran, ==, b->dest_ran);
  g_assert_cmpuint (a->disk_bytes, ==, b->disk_bytes);
  g_assert_cmpuint (a->ram_bytes, ==, b->ram_bytes);
  g_assert_cmpint (a->pause_us, ==, b->pause_us);
  g_assert_cmpstr (a->postcopy_refused, ==, b->postcopy_refused);
  g_assert_cmpint (a->postcopy_used, ==, b->postcopy_used);
  g_assert_cmpuint (a->postcopy_requests, ==, b->postcopy_requests);
  g_assert_cmpint (a->recoveries, ==, b->recoveries);
  g_assert_cmpuint (a->disks->len, ==, b->disks->len);
  for (i = 0; i < a->disks->len; i++)
    assert_disks_equal (g_ptr_array_index (a->disks, i),
                        g_ptr_array_index (b->disks, i));
}

/* Formats C, parses it back, checks the two are equal and that the text
 * is a fixed point; returns the text. */
static char *
round_trip (const SmMigCookie *c)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmMigCookie) back = NULL;
  g_autofree char *again = NULL;
  char *text = sm_mig_cookie_format (c);

  back = sm_mig_cookie_parse (text, -1, &err);
  g_assert_no_error (err);
  g_assert_nonnull (back);
  assert_cookies_equal (c, back);
  again = sm_mig_cookie_format (back);
  g_assert_cmpstr (again, ==, text);
  return text;
}

/* ---- enums -------------------------------------------------------------- */

static void
test_enums (void)
{
  int i;

  for (i = 0; i < SM_MIG_STORAGE_LAST; i++)
    g_assert_cmpint (sm_mig_storage_from_string (sm_mig_storage_to_string (i)), ==, i);
  for (i = 0; i < SM_MIG_LAYER_ROLE_LAST; i++)
    g_assert_cmpint (sm_mig_layer_role_from_string (sm_mig_layer_role_to_string (i)), ==, i);
  g_assert_cmpstr (sm_mig_storage_to_string (SM_MIG_STORAGE_INC), ==, "inc");
  g_assert_cmpstr (sm_mig_layer_role_to_string (SM_MIG_LAYER_COPY), ==, "copy");
  g_assert_null (sm_mig_storage_to_string (SM_MIG_STORAGE_LAST));
  g_assert_null (sm_mig_layer_role_to_string (SM_MIG_LAYER_ROLE_LAST));
  g_assert_cmpint (sm_mig_storage_from_string ("all"), ==, -1);
  g_assert_cmpint (sm_mig_storage_from_string (NULL), ==, -1);
  g_assert_cmpint (sm_mig_layer_role_from_string ("TOP"), ==, -1);
}

/* ---- round trips ---------------------------------------------------------- */

static void
test_round_trip_full (void)
{
  g_autoptr(SmMigCookie) c = full_cookie ();
  g_autofree char *text = round_trip (c);
  g_autofree char *golden = g_build_filename (top_dir, "tests", "data",
                                              "migration-cookie-snapmig.xml", NULL);
  g_autoptr(GError) err = NULL;

  /* libvirt's part: the NBD port and the migrated disks. */
  g_assert_nonnull (strstr (text, "  <nbd port='49153'>\n"
                            "    <disk target='vda' capacity='10737418240'/>\n"
                            "    <disk target='vdb' capacity='1073741824'/>\n"
                            "    <disk target='vdc' capacity='2147483648'/>\n"
                            "  </nbd>\n"));
  g_assert_nonnull (strstr (text, "<arg>file=/src/vda top.qcow2,format=qcow2,,x,"
                            "id=drive0,if=none</arg>"));
  g_assert_nonnull (strstr (text, " pause-us='0'"));
  /* The post-copy fields, kebab-case attributes of <snapmig>. */
  g_assert_nonnull (strstr (text, " postcopy='yes' postcopy-after-precopy='yes'"
                            " postcopy-fallback='yes'"
                            " postcopy-bandwidth='18446744073709551615'"
                            " parallel='4' "));
  g_assert_nonnull (strstr (text, " postcopy-refused='userfaultfd: "
                            "&apos;Operation not permitted&apos;&#10;&#9;run "
                            "as root &lt;here&gt;' postcopy-used='yes'"
                            " postcopy-requests='123456789012'"
                            " recoveries='2147483647' link-resumes='3'"
                            " tunnel-bytes='123456789'>\n"));

  if (g_strcmp0 (g_getenv ("SM_REGENERATE"), "1") == 0) {
    g_file_set_contents (golden, text, -1, &err);
    g_assert_no_error (err);
  }
  else {
    g_autofree char *want = NULL;

    g_file_get_contents (golden, &want, NULL, &err);
    g_assert_no_error (err);
    g_assert_cmpstr (text, ==, want);
  }
}

/* What a cookie leaves unset stays unset, and `check-xml`'s validation
 * accepts what the formatter writes. */
static void
test_round_trip_sparse (void)
{
  g_autoptr(SmMigCookie) c = sm_mig_cookie_new ();
  g_autofree char *empty = NULL, *text = NULL, *no_argv = NULL, *path = NULL;
  g_autofree char *dir = sm_test_tmpdir ();
  g_autoptr(GError) err = NULL;
  const char *kind = NULL;
  SmMigDisk *d;

  g_assert_cmpint (c->pause_us, ==, -1);
  empty = round_trip (c);
  g_assert_null (strstr (empty, "<nbd"));
  g_assert_null (strstr (empty, "pause-us"));
  g_assert_null (strstr (empty, "qemu-argv"));
  g_assert_null (strstr (empty, "postcopy-refused"));
  g_assert_nonnull (strstr (empty, " postcopy='no' postcopy-after-precopy='no'"
                            " postcopy-fallback='no' postcopy-bandwidth='0'"
                            " parallel='0' "));
  g_assert_nonnull (strstr (empty, " postcopy-used='no' postcopy-requests='0'"
                            " recoveries='0' link-resumes='0'>"));

  /* A disk left on shared storage is not in <nbd>; an empty command line
   * is not an absent one; a unix NBD server has no port. */
  c->storage = SM_MIG_STORAGE_INC;
  c->qemu_argv = g_new0 (char *, 1);
  c->nbd_uri = g_strdup ("unix:/run/nbd.sock");
  d = sm_mig_disk_new ("vdz");
  d->migrate = false;
  g_ptr_array_add (c->disks, d);
  text = round_trip (c);
  g_assert_nonnull (strstr (text, "<qemu-argv>\n    </qemu-argv>"));
  g_assert_null (strstr (text, "<nbd"));

  path = g_build_filename (dir, "cookie.xml", NULL);
  g_file_set_contents (path, text, -1, &err);
  g_assert_no_error (err);
  g_assert_true (sm_xml_validate_file (path, &kind, &err));
  g_assert_no_error (err);
  g_assert_cmpstr (kind, ==, "qemu-migration");
}

/* ---- libvirt's cookies ------------------------------------------------------ */

/* What each file of the corpus holds, as libvirt's own tests say. */
static const struct {
  const char *file, *name, *uuid, *hostname;
  const char *disks[2];
  uint64_t capacities[2];
} corpus[] = {
  { "full-xml2xml-in.xml", "upstream", "dcf47dbd-46d1-4d5b-b442-262a806a333a",
    "hostname2", { "vda", "vdb" }, { 123, 1235 } },
  { "full-xml2xml-out.xml", "upstream", "dcf47dbd-46d1-4d5b-b442-262a806a333a",
    "hostname", { "vda", "vdb" }, { 123, 1235 } },
  { "nbd-bitmaps-xml2xml-in.xml", "migr", "10b01607-0323-486b-afe2-3014a8a5b98b",
    "sourcehost", { "hda", "vda" }, { 708837376, 10485760 } },
  { "nbd-bitmaps-xml2xml-out.xml", "migr", "10b01607-0323-486b-afe2-3014a8a5b98b",
    "hostname", { "hda", "vda" }, { 708837376, 10485760 } },
};

static void
test_corpus (void)
{
  g_autofree char *dir = NULL;
  g_autoptr(GDir) d = NULL;
  g_autoptr(GError) err = NULL;
  const char *name;
  guint i, n = 0;

  if (!shared_dir) {
    g_test_skip ("../shared (libvirt's test corpus) is absent");
    return;
  }
  dir = g_build_filename (shared_dir, "corpus", "libvirt-migration-cookie", NULL);
  d = g_dir_open (dir, 0, &err);
  g_assert_no_error (err);
  while ((name = g_dir_read_name (d)))
    n++;
  /* A new file in the corpus gets a row in the table. */
  g_assert_cmpuint (n, ==, G_N_ELEMENTS (corpus));

  for (i = 0; i < G_N_ELEMENTS (corpus); i++) {
    g_autofree char *path = g_build_filename (dir, corpus[i].file, NULL);
    g_autofree char *text = NULL;
    g_autofree char *again = NULL;
    g_autoptr(SmMigCookie) c = NULL, back = NULL;
    guint j;

    g_test_message ("reading %s", path);
    g_file_get_contents (path, &text, NULL, &err);
    g_assert_no_error (err);
    c = sm_mig_cookie_parse (text, -1, &err);
    g_assert_no_error (err);
    g_assert_nonnull (c);

    /* libvirt's part only: identity and the <nbd> disks. */
    g_assert_cmpstr (c->name, ==, corpus[i].name);
    g_assert_cmpstr (c->uuid, ==, corpus[i].uuid);
    g_assert_cmpstr (c->hostname, ==, corpus[i].hostname);
    g_assert_null (c->phase);
    g_assert_null (c->qemu_argv);
    g_assert_cmpuint (c->disks->len, ==, 2);
    for (j = 0; j < 2; j++) {
      SmMigDisk *disk_j = g_ptr_array_index (c->disks, j);

      g_assert_cmpstr (disk_j->name, ==, corpus[i].disks[j]);
      g_assert_cmpuint (disk_j->capacity, ==, corpus[i].capacities[j]);
      g_assert_true (disk_j->migrate);
      g_assert_cmpuint (disk_j->layers->len, ==, 0);
      g_assert_true (sm_mig_cookie_find_disk (c, corpus[i].disks[j]) == disk_j);
    }
    g_assert_null (sm_mig_cookie_find_disk (c, "vdz"));

    /* What we read, we write and read again. */
    again = sm_mig_cookie_format (c);
    back = sm_mig_cookie_parse (again, -1, &err);
    g_assert_no_error (err);
    assert_cookies_equal (c, back);
  }
}

/* ---- refusals ------------------------------------------------------------------ */

typedef struct {
  const char *xml;
  int code;
  const char *needles[3];
} Refusal;

static void
expect_refusals (const Refusal *cases, size_t n)
{
  size_t i, j;

  for (i = 0; i < n; i++) {
    g_autoptr(GError) err = NULL;
    g_autoptr(SmMigCookie) c = NULL;

    g_test_message ("case %zu: %s", i, cases[i].xml);
    c = sm_mig_cookie_parse (cases[i].xml, -1, &err);
    g_assert_null (c);
    g_assert_error (err, SM_ERROR, cases[i].code);
    g_test_message ("-> %s", err->message);
    g_assert_true (g_str_has_prefix (err->message, "migration cookie: "));
    for (j = 0; j < G_N_ELEMENTS (cases[i].needles) && cases[i].needles[j]; j++)
      g_assert_nonnull (strstr (err->message, cases[i].needles[j]));
  }
}

#define HEAD "<qemu-migration>\n<name>g</name>\n<uuid>6a2f3c1e-0b7d-4c55-9e1a-2f4b8d6c7e90</uuid>\n"
#define SNAPMIG "<snapmig storage='chain' bandwidth='0'>\n"
#define TAIL "</snapmig>\n</qemu-migration>\n"
#define LAYER(attrs) \
  "<layer format='qcow2' virtual-size='1' file-size='1' allocated='1' " \
  "cluster-size='65536' " attrs "/>\n"
#define DISK(name, inner) \
  "<disk name='" name "' migrate='yes' format='qcow2' capacity='1'>\n" inner "</disk>\n"

static void
test_malformed (void)
{
  static const Refusal cases[] = {
    { "<qemu-migration>\n<name>g</name>\n<uuid>x</nbd>\n</qemu-migration>",
      SM_ERROR_XML, { "line 3", "malformed XML", NULL } },
    { "", SM_ERROR_XML, { "malformed XML", NULL } },
    { "<domainsnapshot/>", SM_ERROR_XML, { "line 1", "'domainsnapshot'", "'qemu-migration'" } },
    { "<qemu-migration>\n<uuid>6a2f3c1e-0b7d-4c55-9e1a-2f4b8d6c7e90</uuid>\n</qemu-migration>",
      SM_ERROR_XML, { NULL } },
    { HEAD "<snapmig storage='all' bandwidth='0'>\n" TAIL,
      SM_ERROR_XML, { "line 4", "element 'snapmig'", NULL } },
    { HEAD "<snapmig id='a b' storage='chain' bandwidth='0'>\n" TAIL,
      SM_ERROR_XML, { "line 4", "id='a b'", NULL } },
    { HEAD SNAPMIG "\n" DISK ("vda", "<layer role='top' file='/a' name='a' format='raw' "
                              "virtual-size='-1' file-size='1' allocated='1' cluster-size='0'/>\n") TAIL,
      SM_ERROR_XML, { "line 7", "element 'layer'", NULL } },
    { HEAD SNAPMIG DISK ("vda", LAYER ("role='copy' file='/a' name='a' export='e' backing='b'")) TAIL,
      SM_ERROR_XML, { "line 6", NULL } },
    { HEAD SNAPMIG "<result failed='maybe' dest-ran='no' disk-bytes='0' ram-bytes='0'/>\n" TAIL,
      SM_ERROR_XML, { "line 5", "element 'result'", NULL } },
    { HEAD SNAPMIG "<qemu-argv><arg><x/></arg></qemu-argv>\n" TAIL,
      SM_ERROR_XML, { "line 5", NULL } },
    { "<!DOCTYPE qemu-migration [<!ENTITY e 'x'>]>" HEAD "</qemu-migration>",
      SM_ERROR_XML, { "DOCTYPE", NULL } },
    { HEAD "<snapmig storage='chain' bandwidth='0' postcopy='maybe'>\n" TAIL,
      SM_ERROR_XML, { "line 4", "element 'snapmig'", NULL } },
    { HEAD "<snapmig storage='chain' bandwidth='0' parallel='-1'>\n" TAIL,
      SM_ERROR_XML, { "line 4", NULL } },
    { HEAD "<snapmig storage='chain' bandwidth='0' recoveries='1.5'>\n" TAIL,
      SM_ERROR_XML, { "line 4", NULL } },
    { HEAD "<snapmig storage='chain' bandwidth='0' postcopy-used=''>\n" TAIL,
      SM_ERROR_XML, { "line 4", NULL } },
    { HEAD "<snapmig storage='chain' bandwidth='0' postcopy-requests='18446744073709551616'>\n" TAIL,
      SM_ERROR_XML, { "line 4", "postcopy-requests", NULL } },
  };

  expect_refusals (cases, G_N_ELEMENTS (cases));
}

static void
test_meaning (void)
{
  static const Refusal cases[] = {
    { HEAD SNAPMIG DISK ("vda", LAYER ("role='top' file='vda.qcow2' name='a'")) TAIL,
      SM_ERROR_INVALID, { "disk 'vda' layer 0", "'vda.qcow2'", "absolute" } },
    { HEAD SNAPMIG DISK ("vda", LAYER ("role='top' file='/a' name='a' backing='b' backing-format='qcow2'")
                        LAYER ("role='copy' file='/b' name='b'")) TAIL,
      SM_ERROR_INVALID, { "disk 'vda' layer 1 ('/b')", "export=", NULL } },
    { HEAD SNAPMIG DISK ("vda", LAYER ("role='top' file='/a'")) TAIL,
      SM_ERROR_INVALID, { "disk 'vda' layer 0", "name=", NULL } },
    { HEAD SNAPMIG DISK ("vda", LAYER ("role='top' file='/a' name='../a'")) TAIL,
      SM_ERROR_INVALID, { "disk 'vda' layer 0", "'../a'", NULL } },
    { HEAD SNAPMIG DISK ("vda", "") DISK ("vdb", "") DISK ("vda", "") TAIL,
      SM_ERROR_INVALID, { "two disks", "'vda'", NULL } },
    { HEAD "<nbd port='1'><disk target='vda'/><disk target='vdx' capacity='1'/></nbd>\n"
      SNAPMIG DISK ("vda", "") TAIL,
      SM_ERROR_INVALID, { "line 4", "disk 'vdx' of <nbd>", "<snapmig>" } },
    { HEAD "<nbd port='1'><disk target='vda' capacity='2'/></nbd>\n" SNAPMIG DISK ("vda", "") TAIL,
      SM_ERROR_INVALID, { "line 4", "disk 'vda'", "capacity='2'" } },
    { HEAD "<nbd><disk target='vda'/><disk target='vda'/></nbd>\n</qemu-migration>\n",
      SM_ERROR_INVALID, { "two disks", "'vda'", NULL } },
    { HEAD "<snapmig storage='chain' bandwidth='0' nbd-uri='tcp:hostb'>\n" TAIL,
      SM_ERROR_INVALID, { "nbd-uri", "'tcp:hostb'", "tcp:HOST:PORT" } },
    { HEAD "<snapmig storage='chain' bandwidth='0' migrate-uri='rdma:h:1'>\n" TAIL,
      SM_ERROR_INVALID, { "migrate-uri", "'rdma:h:1'", NULL } },
    { HEAD "<snapmig storage='chain' bandwidth='0' layers-uri='unix:nbd.sock'>\n" TAIL,
      SM_ERROR_INVALID, { "layers-uri", "absolute", NULL } },
    { HEAD "<snapmig storage='chain' bandwidth='0' dest-domain='sd2'>\n" TAIL,
      SM_ERROR_INVALID, { "dest-domain", "'sd2'", "absolute" } },
    { HEAD SNAPMIG "<disk name='vda' migrate='yes' format='raw' capacity='1' dest-top='t.raw'/>\n" TAIL,
      SM_ERROR_INVALID, { "disk 'vda'", "dest-top", "'t.raw'" } },
    { HEAD "<snapmig storage='chain' bandwidth='0' source-pid='9223372036854775808'>\n" TAIL,
      SM_ERROR_INVALID, { "source-pid", "out of range", NULL } },
    { HEAD "<snapmig storage='chain' bandwidth='0' parallel='2147483648'>\n" TAIL,
      SM_ERROR_INVALID, { "parallel='2147483648'", "out of range", NULL } },
    { HEAD "<snapmig storage='chain' bandwidth='0' recoveries='99999999999'>\n" TAIL,
      SM_ERROR_INVALID, { "recoveries", "out of range", NULL } },
  };

  expect_refusals (cases, G_N_ELEMENTS (cases));
}

/* The schema lets whitespace surround a token (found by tests/fuzz/fuzz-xml)
 * and libvirt's <nbd> numbers: the model gets the value without it.
 * snapmig's numbers are digits only. */
static void
test_tokens (void)
{
  static const char xml[] =
    HEAD "<nbd><disk target='vda' capacity=' 7 '/></nbd>\n"
    "<snapmig storage=' inc' bandwidth='5' phase=' prepare ' copy-mode='background\t'>\n"
    "<disk name='vda' migrate=' no ' format='qcow2&#10;' capacity='7'>\n"
    "<layer role=' shared' file='/a b ' format=' raw' virtual-size='1' file-size='1' "
    "allocated='1' cluster-size='0'/>\n</disk>\n" TAIL;
  g_autoptr(GError) err = NULL;
  g_autoptr(SmMigCookie) c = sm_mig_cookie_parse (xml, -1, &err);
  SmMigDisk *d;
  SmMigLayer *l;

  g_assert_no_error (err);
  g_assert_cmpint (c->storage, ==, SM_MIG_STORAGE_INC);
  g_assert_cmpuint (c->bandwidth, ==, 5);
  g_assert_cmpstr (c->phase, ==, "prepare");
  g_assert_cmpstr (c->copy_mode, ==, "background");
  d = sm_mig_cookie_find_disk (c, "vda");
  g_assert_nonnull (d);
  g_assert_false (d->migrate);
  g_assert_cmpint (d->format, ==, SM_IMAGE_FORMAT_QCOW2);
  g_assert_cmpuint (d->capacity, ==, 7);
  l = g_ptr_array_index (d->layers, 0);
  g_assert_cmpint (l->role, ==, SM_MIG_LAYER_SHARED);
  g_assert_cmpint (l->format, ==, SM_IMAGE_FORMAT_RAW);
  /* A path is not a token: its spaces are its own. */
  g_assert_cmpstr (l->file, ==, "/a b ");
  g_clear_pointer (&c, sm_mig_cookie_free);

  c = sm_mig_cookie_parse (HEAD "<snapmig storage='inc' bandwidth='5 '>\n" TAIL, -1, &err);
  g_assert_null (c);
  g_assert_error (err, SM_ERROR, SM_ERROR_XML);
}

/* ---- post-copy ------------------------------------------------------------------ */

/* A cookie of a snapmig without post-copy (no such attributes) reads with
 * every post-copy field at its default; tokens may carry whitespace like
 * the others; each field round-trips on its own (a table entry pointing at
 * the wrong member would show here); a negative count is written as 0. */
static void
test_postcopy (void)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmMigCookie) c = sm_mig_cookie_parse (HEAD SNAPMIG TAIL, -1, &err);
  g_autofree char *text = NULL;
  guint i;

  g_assert_no_error (err);
  g_assert_false (c->postcopy);
  g_assert_false (c->postcopy_after_precopy);
  g_assert_false (c->postcopy_fallback);
  g_assert_cmpuint (c->postcopy_bandwidth, ==, 0);
  g_assert_cmpint (c->parallel, ==, 0);
  g_assert_null (c->postcopy_refused);
  g_assert_false (c->postcopy_used);
  g_assert_cmpuint (c->postcopy_requests, ==, 0);
  g_assert_cmpint (c->recoveries, ==, 0);
  g_clear_pointer (&c, sm_mig_cookie_free);

  c = sm_mig_cookie_parse (HEAD "<snapmig storage='chain' bandwidth='0' "
                           "postcopy=' yes' postcopy-used='yes\t' "
                           "parallel='3' postcopy-refused=' no root '>\n"
                           TAIL, -1, &err);
  g_assert_no_error (err);
  g_assert_true (c->postcopy);
  g_assert_true (c->postcopy_used);
  g_assert_cmpint (c->parallel, ==, 3);
  g_assert_cmpstr (c->postcopy_refused, ==, " no root ");
  g_clear_pointer (&c, sm_mig_cookie_free);

  /* migrate-recover --incoming writes its cookie as phase 'recover'. */
  c = sm_mig_cookie_parse (HEAD "<snapmig phase='recover' storage='chain' "
                           "bandwidth='0' migrate-uri='tcp:10.0.0.2:49160'>\n"
                           TAIL, -1, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (c->phase, ==, "recover");
  g_clear_pointer (&c, sm_mig_cookie_free);

  for (i = 0; i < 9; i++) {
    g_autoptr(SmMigCookie) one = sm_mig_cookie_new ();
    g_autofree char *t = NULL;

    switch (i) {
    case 0: one->postcopy = true; break;
    case 1: one->postcopy_after_precopy = true; break;
    case 2: one->postcopy_fallback = true; break;
    case 3: one->postcopy_bandwidth = 7; break;
    case 4: one->parallel = 8; break;
    case 5: one->postcopy_refused = g_strdup (""); break;
    case 6: one->postcopy_used = true; break;
    case 7: one->postcopy_requests = 9; break;
    default: one->recoveries = 10; break;
    }
    t = round_trip (one);
  }

  c = sm_mig_cookie_new ();
  c->parallel = -2;
  c->recoveries = -1;
  text = sm_mig_cookie_format (c);
  g_assert_nonnull (strstr (text, " parallel='0' "));
  g_assert_nonnull (strstr (text, " recoveries='0'"));
}

/* ---- reading from a pipe ------------------------------------------------------ */

static void
make_pipe (int fds[2])
{
  g_assert_cmpint (pipe (fds), ==, 0);
}

static void
write_all (int fd, const char *text, size_t len)
{
  g_assert_cmpint (write (fd, text, len), ==, (ssize_t) len);
}

static void
test_read_fd_eof (void)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmMigCookie) c = NULL;
  int fds[2];

  make_pipe (fds);
  close (fds[1]);
  c = sm_mig_cookie_read_fd (fds[0], "the destination", 10000, &err);
  g_assert_null (c);
  g_assert_error (err, SM_ERROR, SM_ERROR_DISCONNECTED);
  g_assert_cmpstr (err->message, ==,
                   "no migration cookie: the destination closed its output");
  close (fds[0]);
}

/* The writer keeps its end open after the closing line: the cookie is read
 * without waiting for EOF, and nothing after that line is consumed. */
static void
test_read_fd_closing_line (void)
{
  g_autoptr(SmMigCookie) full = full_cookie ();
  g_autofree char *text = sm_mig_cookie_format (full);
  g_autoptr(GError) err = NULL;
  g_autoptr(SmMigCookie) c = NULL;
  char rest[16] = "";
  int fds[2];

  make_pipe (fds);
  write_all (fds[1], text, strlen (text));
  write_all (fds[1], "NEXT\n", 5);
  /* A bound, not a timing check: a reader waiting for EOF fails, not hangs. */
  c = sm_mig_cookie_read_fd (fds[0], "the destination", 60000, &err);
  g_assert_no_error (err);
  assert_cookies_equal (full, c);
  g_assert_cmpint (read (fds[0], rest, sizeof rest - 1), ==, 5);
  g_assert_cmpstr (rest, ==, "NEXT\n");
  close (fds[0]);
  close (fds[1]);
}

/* EOF ends a cookie without the closing newline; garbage is an XML error
 * naming the peer. */
static void
test_read_fd_eof_after (void)
{
  g_autoptr(SmMigCookie) full = full_cookie ();
  g_autofree char *text = sm_mig_cookie_format (full);
  g_autoptr(GError) err = NULL;
  g_autoptr(SmMigCookie) c = NULL;
  int fds[2];

  make_pipe (fds);
  write_all (fds[1], text, strlen (text) - 1);
  close (fds[1]);
  c = sm_mig_cookie_read_fd (fds[0], "ssh hostb", 10000, &err);
  g_assert_no_error (err);
  assert_cookies_equal (full, c);
  close (fds[0]);

  make_pipe (fds);
  write_all (fds[1], "bash: snapmig: command not found\n", 33);
  close (fds[1]);
  g_clear_pointer (&c, sm_mig_cookie_free);
  c = sm_mig_cookie_read_fd (fds[0], "ssh hostb", 10000, &err);
  g_assert_null (c);
  g_assert_error (err, SM_ERROR, SM_ERROR_XML);
  g_assert_true (g_str_has_prefix (err->message,
                                   "migration cookie from ssh hostb: line 1"));
  close (fds[0]);
}

static void
test_read_fd_timeout (void)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmMigCookie) c = NULL;
  int fds[2];

  make_pipe (fds);
  write_all (fds[1], HEAD, strlen (HEAD));
  c = sm_mig_cookie_read_fd (fds[0], "the destination", 50, &err);
  g_assert_null (c);
  g_assert_error (err, SM_ERROR, SM_ERROR_TIMEOUT);
  g_assert_nonnull (strstr (err->message, "from the destination within 50 ms"));
  g_assert_nonnull (strstr (err->message, "</qemu-migration>"));
  close (fds[0]);
  close (fds[1]);
}

static void
test_read_fd_interrupted (void)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmMigCookie) c = NULL;
  int fds[2];

  make_pipe (fds);
  sm_interrupt_request (SIGINT);
  c = sm_mig_cookie_read_fd (fds[0], "the destination", 0, &err);
  sm_interrupt_clear ();
  g_assert_null (c);
  g_assert_error (err, SM_ERROR, SM_ERROR_INTERRUPTED);
  close (fds[0]);
  close (fds[1]);
}

/* ---- URIs ------------------------------------------------------------------------ */

static void
test_uri (void)
{
  static const struct { const char *uri, *json; } good[] = {
    { "tcp:127.0.0.1:49152",
      "{\"type\":\"inet\",\"host\":\"127.0.0.1\",\"port\":\"49152\"}" },
    { "tcp:hostb.example.org:1",
      "{\"type\":\"inet\",\"host\":\"hostb.example.org\",\"port\":\"1\"}" },
    { "tcp:[::1]:65535", "{\"type\":\"inet\",\"host\":\"::1\",\"port\":\"65535\"}" },
    { "tcp:[fe80::1%veth0]:49153",
      "{\"type\":\"inet\",\"host\":\"fe80::1%veth0\",\"port\":\"49153\"}" },
    { "unix:/run/snapmig/nbd.sock",
      "{\"type\":\"unix\",\"path\":\"\\/run\\/snapmig\\/nbd.sock\"}" },
  };
  static const char *const bad[] = {
    "", "tcp:", "tcp:hostb", "tcp::5000", "tcp:hostb:", "tcp:hostb:0",
    "tcp:hostb:65536", "tcp:hostb:12ab", "tcp:hostb:-1", "tcp:::1:5000",
    "tcp:[::1:5000", "tcp:[]:5000", "tcp:[::1]x:5000", "tcp:a]:1",
    "unix:", "unix:nbd.sock", "udp:h:1", "exec:cat", "TCP:h:1",
  };
  g_autofree char *long_path = g_strdup_printf ("unix:/%0107d", 0);
  guint i;

  for (i = 0; i < G_N_ELEMENTS (good); i++) {
    g_autoptr(GError) err = NULL;
    json_object *addr = sm_mig_uri_to_socket_address (good[i].uri, &err);

    g_assert_no_error (err);
    g_assert_nonnull (addr);
    g_assert_cmpstr (json_object_to_json_string_ext (addr, JSON_C_TO_STRING_PLAIN),
                     ==, good[i].json);
    json_object_put (addr);
  }
  for (i = 0; i <= G_N_ELEMENTS (bad); i++) {
    const char *uri = i < G_N_ELEMENTS (bad) ? bad[i] : long_path;
    g_autoptr(GError) err = NULL;

    g_test_message ("bad URI '%s'", uri);
    g_assert_null (sm_mig_uri_to_socket_address (uri, &err));
    g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
    g_assert_nonnull (strstr (err->message, uri));
  }
}

int
main (int argc, char **argv)
{
  int rc;

  g_test_init (&argc, &argv, NULL);
  top_dir = sm_test_source_tree ("lib/migrate-cookie.h", &shared_dir);

  g_test_add_func ("/migrate-cookie/enums", test_enums);
  g_test_add_func ("/migrate-cookie/round-trip/full", test_round_trip_full);
  g_test_add_func ("/migrate-cookie/round-trip/sparse", test_round_trip_sparse);
  g_test_add_func ("/migrate-cookie/corpus", test_corpus);
  g_test_add_func ("/migrate-cookie/malformed", test_malformed);
  g_test_add_func ("/migrate-cookie/meaning", test_meaning);
  g_test_add_func ("/migrate-cookie/tokens", test_tokens);
  g_test_add_func ("/migrate-cookie/postcopy", test_postcopy);
  g_test_add_func ("/migrate-cookie/read-fd/eof", test_read_fd_eof);
  g_test_add_func ("/migrate-cookie/read-fd/closing-line", test_read_fd_closing_line);
  g_test_add_func ("/migrate-cookie/read-fd/eof-after", test_read_fd_eof_after);
  g_test_add_func ("/migrate-cookie/read-fd/timeout", test_read_fd_timeout);
  g_test_add_func ("/migrate-cookie/read-fd/interrupted", test_read_fd_interrupted);
  g_test_add_func ("/migrate-cookie/uri", test_uri);
  rc = g_test_run ();
  g_free (top_dir);
  g_free (shared_dir);
  return rc;
}
