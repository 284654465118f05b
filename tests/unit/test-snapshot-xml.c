/* Unit tests for lib/snapshot-xml: the <domainsnapshot> grammar against
 * libvirt's own test documents (../shared/corpus), golden input/output
 * pairs (tests/data/NAME.in.xml -> NAME.out.xml; SM_REGENERATE=1 rewrites
 * the .out files), round trips that must lose no data, the meaning checks,
 * and that the library never prints.
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "harness.h"
#include "snapshot-xml.h"

G_DEFINE_AUTOPTR_CLEANUP_FUNC (xmlDoc, xmlFreeDoc)

static char *top_dir;             /* the source tree */
static char *shared_dir;          /* TOP/../shared, or NULL when absent */

/* The corpus inputs libvirt itself refuses. */
static const char *const corpus_invalid[] = {
  "disk-invalid.xml", "disk-network-seclabel-invalid.xml", NULL
};

static bool
name_in (const char *const *names, const char *name)
{
  for (; *names; names++)
    if (strcmp (*names, name) == 0)
      return true;
  return false;
}

static gint
compare_strings (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

/* Sorted paths of the files in DIR whose names end in SUFFIX. */
static GPtrArray *
list_files (const char *dir, const char *suffix)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(GDir) d = g_dir_open (dir, 0, &err);
  GPtrArray *files = g_ptr_array_new_with_free_func (g_free);
  const char *name;

  g_assert_no_error (err);
  while ((name = g_dir_read_name (d)))
    if (g_str_has_suffix (name, suffix))
      g_ptr_array_add (files, g_build_filename (dir, name, NULL));
  g_ptr_array_sort (files, compare_strings);
  return files;
}

static char *
read_text (const char *path)
{
  g_autoptr(GError) err = NULL;
  char *text = NULL;

  g_file_get_contents (path, &text, NULL, &err);
  g_assert_no_error (err);
  return text;
}

/* The corpus's snapshot documents (in/ and out/), or NULL after
 * g_test_skip when ../shared is absent. */
static GPtrArray *
corpus_snapshots (void)
{
  g_autofree char *in = NULL, *out = NULL;
  g_autoptr(GPtrArray) files = NULL, more = NULL;
  guint i;

  if (!shared_dir) {
    g_test_skip ("../shared (libvirt's test corpus) is absent");
    return NULL;
  }
  in = g_build_filename (shared_dir, "corpus", "libvirt-domainsnapshot", "in", NULL);
  out = g_build_filename (shared_dir, "corpus", "libvirt-domainsnapshot", "out", NULL);
  files = list_files (in, ".xml");
  more = list_files (out, ".xml");
  for (i = 0; i < more->len; i++)
    g_ptr_array_add (files, g_strdup (g_ptr_array_index (more, i)));
  g_assert_cmpuint (files->len, >=, 20);
  return g_steal_pointer (&files);
}

static bool
is_corpus_invalid (const char *path)
{
  g_autofree char *base = g_path_get_basename (path);
  g_autofree char *dir = g_path_get_dirname (path);

  return g_str_has_suffix (dir, "/in") && name_in (corpus_invalid, base);
}

static char *
format_file (const char *path)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmSnapshotDef) def = sm_snapshot_parse_file (path, &err);

  g_assert_no_error (err);
  g_assert_nonnull (def);
  return sm_snapshot_format (def);
}

static char *
reformat (const char *xml, const char *what)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmSnapshotDef) def = sm_snapshot_parse_string (xml, what, &err);

  g_assert_no_error (err);
  return sm_snapshot_format (def);
}

/* ---- a canonical form of a document, for "no data was lost" ------------ */

static bool
blank (const xmlChar *s)
{
  for (; s && *s; s++)
    if (!g_ascii_isspace (*s))
      return false;
  return true;
}

/* A text form of NODE that ignores what carries no data: comments,
 * whitespace between elements, attribute order and quoting, CDATA versus
 * escaping, the order of <domainsnapshot> and <disk> children (the grammar
 * interleaves them), an empty <source/> or <driver/> of a disk, and
 * whitespace around token values. */
static char *
canonical (const xmlNode *node)
{
  g_autoptr(GPtrArray) attrs = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GPtrArray) kids = g_ptr_array_new_with_free_func (g_free);
  GString *out = g_string_new (NULL);
  const xmlAttr *attr;
  const xmlNode *child;
  bool has_elements = false, unordered;
  guint i;

  for (child = node->children; child; child = child->next)
    if (child->type == XML_ELEMENT_NODE)
      has_elements = true;
  unordered = !node->ns && (strcmp ((const char *) node->name, "domainsnapshot") == 0 ||
                            (strcmp ((const char *) node->name, "disk") == 0 &&
                             node->parent && node->parent->name &&
                             strcmp ((const char *) node->parent->name, "disks") == 0));

  g_string_append_printf (out, "<{%s}%s", node->ns ? (const char *) node->ns->href : "",
                          (const char *) node->name);
  for (attr = node->properties; attr; attr = attr->next) {
    xmlChar *v = xmlNodeGetContent ((const xmlNode *) attr);

    g_ptr_array_add (attrs, g_strdup_printf ("{%s}%s=%s",
                                             attr->ns ? (const char *) attr->ns->href : "",
                                             (const char *) attr->name, (const char *) v));
    xmlFree (v);
  }
  g_ptr_array_sort (attrs, compare_strings);
  for (i = 0; i < attrs->len; i++)
    g_string_append_printf (out, " %s", (const char *) g_ptr_array_index (attrs, i));
  g_string_append_c (out, '>');

  for (child = node->children; child; child = child->next) {
    if (child->type == XML_ELEMENT_NODE) {
      if (strcmp ((const char *) node->name, "disk") == 0 && !child->properties &&
          !child->children &&
          (strcmp ((const char *) child->name, "source") == 0 ||
           strcmp ((const char *) child->name, "driver") == 0))
        continue;
      g_ptr_array_add (kids, canonical (child));
    }
    else if ((child->type == XML_TEXT_NODE || child->type == XML_CDATA_SECTION_NODE) &&
             !(has_elements && blank (child->content))) {
      /* Adjacent text and CDATA pieces are one piece of text. */
      if (kids->len > 0 && g_str_has_prefix (g_ptr_array_index (kids, kids->len - 1), "T:")) {
        char *prev = g_ptr_array_index (kids, kids->len - 1);

        kids->pdata[kids->len - 1] = g_strconcat (prev, (const char *) child->content, NULL);
        g_free (prev);
      }
      else
        g_ptr_array_add (kids, g_strconcat ("T:", (const char *) child->content, NULL));
    }
  }
  /* <state> and <creationTime> are tokens in the grammar: surrounding
   * whitespace is not data. */
  if (!node->ns && node->parent && node->parent->type == XML_ELEMENT_NODE &&
      strcmp ((const char *) node->parent->name, "domainsnapshot") == 0 &&
      (strcmp ((const char *) node->name, "state") == 0 ||
       strcmp ((const char *) node->name, "creationTime") == 0) &&
      kids->len == 1) {
    char *text = g_ptr_array_index (kids, 0);

    kids->pdata[0] = g_strconcat ("T:", g_strstrip (text + 2), NULL);
    g_free (text);
  }
  if (unordered)
    g_ptr_array_sort (kids, compare_strings);
  for (i = 0; i < kids->len; i++)
    g_string_append (out, g_ptr_array_index (kids, i));
  g_string_append (out, "</>");
  return g_string_free (out, FALSE);
}

static char *
canonical_text (const char *xml)
{
  g_autoptr(xmlDoc) doc = xmlReadMemory (xml, strlen (xml), NULL, NULL,
                                         XML_PARSE_NONET | XML_PARSE_NOERROR |
                                         XML_PARSE_NOWARNING);

  g_assert_nonnull (doc);
  return canonical (xmlDocGetRootElement (doc));
}

/* ---- golden files ------------------------------------------------------- */

static void
test_golden (void)
{
  g_autofree char *data = g_build_filename (top_dir, "tests", "data", NULL);
  g_autoptr(GPtrArray) inputs = list_files (data, ".in.xml");
  bool regenerate = g_strcmp0 (g_getenv ("SM_REGENERATE"), "1") == 0;
  guint i;

  g_assert_cmpuint (inputs->len, >=, 3);
  for (i = 0; i < inputs->len; i++) {
    const char *in = g_ptr_array_index (inputs, i);
    g_autofree char *stem = g_strndup (in, strlen (in) - strlen (".in.xml"));
    g_autofree char *out = g_strconcat (stem, ".out.xml", NULL);
    g_autofree char *got = format_file (in);
    g_autofree char *again = reformat (got, out);
    g_autofree char *input = read_text (in);
    g_autofree char *canon_in = canonical_text (input);
    g_autofree char *canon_got = canonical_text (got);

    g_test_message ("golden pair %s", in);
    if (regenerate) {
      g_autoptr(GError) err = NULL;

      g_file_set_contents (out, got, -1, &err);
      g_assert_no_error (err);
    }
    else {
      g_autofree char *want = read_text (out);

      g_assert_cmpstr (got, ==, want);
    }
    /* The .out file is a fixed point, and holds all the input's data. */
    g_assert_cmpstr (again, ==, got);
    g_assert_cmpstr (canon_got, ==, canon_in);
  }
}

/* Every XML file under tests/data validates against its schema. */
static void
test_data_valid (void)
{
  g_autofree char *data = g_build_filename (top_dir, "tests", "data", NULL);
  g_autoptr(GPtrArray) files = list_files (data, ".xml");
  guint i, cookies = 0;

  g_assert_cmpuint (files->len, >=, 7);
  for (i = 0; i < files->len; i++) {
    g_autoptr(GError) err = NULL;
    const char *kind = NULL;

    g_test_message ("validating %s", (const char *) g_ptr_array_index (files, i));
    g_assert_true (sm_xml_validate_file (g_ptr_array_index (files, i), &kind, &err));
    g_assert_no_error (err);
    if (strcmp (kind, "qemu-migration") == 0)
      cookies++;
    else
      g_assert_cmpstr (kind, ==, "domainsnapshot");
  }
  g_assert_cmpuint (cookies, >=, 1);
}

/* ---- libvirt's corpus ---------------------------------------------------- */

static void
test_corpus_valid (void)
{
  g_autoptr(GPtrArray) files = corpus_snapshots ();
  g_autofree char *cookie_dir = NULL;
  g_autoptr(GPtrArray) cookies = NULL;
  guint i, valid = 0;

  if (!files)
    return;
  for (i = 0; i < files->len; i++) {
    const char *path = g_ptr_array_index (files, i);
    g_autoptr(GError) err = NULL;
    const char *kind = NULL;

    if (is_corpus_invalid (path))
      continue;
    g_test_message ("validating %s", path);
    g_assert_true (sm_xml_validate_file (path, &kind, &err));
    g_assert_no_error (err);
    g_assert_cmpstr (kind, ==, "domainsnapshot");
    valid++;
  }
  g_assert_cmpuint (valid, ==, files->len - 2);

  cookie_dir = g_build_filename (shared_dir, "corpus", "libvirt-migration-cookie", NULL);
  cookies = list_files (cookie_dir, ".xml");
  g_assert_cmpuint (cookies->len, ==, 4);
  for (i = 0; i < cookies->len; i++) {
    g_autoptr(GError) err = NULL;
    const char *kind = NULL;

    g_test_message ("validating %s", (const char *) g_ptr_array_index (cookies, i));
    g_assert_true (sm_xml_validate_file (g_ptr_array_index (cookies, i), &kind, &err));
    g_assert_no_error (err);
    g_assert_cmpstr (kind, ==, "qemu-migration");
  }
}

static void
test_corpus_invalid (void)
{
  static const struct {
    const char *file;
    const char *needles[4];
  } cases[] = {
    { "disk-invalid.xml", { "line 6", "'source'", "startupPolicy", NULL } },
    { "disk-network-seclabel-invalid.xml", { "line 8", "'seclabel'", "'source'", NULL } },
  };
  size_t i, j;

  if (!shared_dir) {
    g_test_skip ("../shared (libvirt's test corpus) is absent");
    return;
  }
  for (i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *path = g_build_filename (shared_dir, "corpus", "libvirt-domainsnapshot",
                                              "in", cases[i].file, NULL);
    g_autoptr(GError) err = NULL;
    g_autoptr(GError) err2 = NULL;
    g_autoptr(SmSnapshotDef) def = sm_snapshot_parse_file (path, &err);

    g_assert_null (def);
    g_assert_error (err, SM_ERROR, SM_ERROR_XML);
    g_test_message ("%s", err->message);
    g_assert_true (g_str_has_prefix (err->message, path));
    for (j = 0; cases[i].needles[j]; j++)
      g_assert_nonnull (strstr (err->message, cases[i].needles[j]));
    g_assert_false (sm_xml_validate_file (path, NULL, &err2));
    g_assert_cmpstr (err2->message, ==, err->message);
  }
}

/* parse -> format -> parse -> format gives the same text twice, and the
 * first formatting holds every piece of data of the original. */
static void
test_corpus_round_trip (void)
{
  g_autoptr(GPtrArray) files = corpus_snapshots ();
  guint i;

  if (!files)
    return;
  for (i = 0; i < files->len; i++) {
    const char *path = g_ptr_array_index (files, i);
    g_autofree char *first = NULL, *second = NULL, *original = NULL;
    g_autofree char *canon_original = NULL, *canon_first = NULL;

    if (is_corpus_invalid (path))
      continue;
    g_test_message ("round trip of %s", path);
    first = format_file (path);
    second = reformat (first, path);
    g_assert_cmpstr (second, ==, first);
    original = read_text (path);
    canon_original = canonical_text (original);
    canon_first = canonical_text (first);
    g_assert_cmpstr (canon_first, ==, canon_original);
  }
}

/* libvirt's own formatted documents come out byte for byte. */
static void
test_corpus_libvirt_layout (void)
{
  g_autoptr(GPtrArray) files = corpus_snapshots ();
  guint i, n = 0;

  if (!files)
    return;
  for (i = 0; i < files->len; i++) {
    const char *path = g_ptr_array_index (files, i);
    g_autofree char *dir = g_path_get_dirname (path);
    g_autofree char *got = NULL, *want = NULL;

    if (!g_str_has_suffix (dir, "/out"))
      continue;
    got = format_file (path);
    want = read_text (path);
    g_test_message ("libvirt layout of %s", path);
    g_assert_cmpstr (got, ==, want);
    n++;
  }
  g_assert_cmpuint (n, >=, 10);
}

static void
test_corpus_model (void)
{
  g_autofree char *path = NULL;
  g_autoptr(GError) err = NULL;
  g_autoptr(SmSnapshotDef) def = NULL;
  const SmSnapshotDisk *d;
  guint i, hde = 0;

  if (!shared_dir) {
    g_test_skip ("../shared (libvirt's test corpus) is absent");
    return;
  }
  path = g_build_filename (shared_dir, "corpus", "libvirt-domainsnapshot", "in",
                           "disk_snapshot.xml", NULL);
  def = sm_snapshot_parse_file (path, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (def->name, ==, "my snap name");
  g_assert_cmpstr (def->description, ==, "!@#$%^");
  g_assert_cmpint (def->creation_time, ==, -1);
  g_assert_true (def->has_disks);
  g_assert_cmpuint (def->disks->len, ==, 9);

  /* The duplicate 'hde' is libvirt's business at apply time, not ours. */
  for (i = 0; i < def->disks->len; i++) {
    d = g_ptr_array_index (def->disks, i);
    if (strcmp (d->name, "hde") == 0)
      hde++;
  }
  g_assert_cmpuint (hde, ==, 2);

  d = sm_snapshot_find_disk (def, "/dev/HostVG/QEMUGuest1");
  g_assert_nonnull (d);
  g_assert_cmpint (d->snapshot, ==, SM_SNAPSHOT_LOCATION_DEFAULT);
  g_assert_false (sm_snapshot_disk_is_external (d));
  d = sm_snapshot_find_disk (def, "hdb");
  g_assert_cmpint (d->snapshot, ==, SM_SNAPSHOT_LOCATION_NO);
  d = sm_snapshot_find_disk (def, "hdd");
  g_assert_cmpint (d->snapshot, ==, SM_SNAPSHOT_LOCATION_EXTERNAL);
  g_assert_null (d->source);
  g_assert_cmpstr (d->driver_type, ==, "qed");
  d = sm_snapshot_find_disk (def, "hde");
  g_assert_cmpstr (d->source, ==, "/path/to/new");
  g_assert_cmpint (d->type, ==, SM_DISK_TYPE_DEFAULT);
  d = sm_snapshot_find_disk (def, "hdf");
  g_assert_cmpint (d->type, ==, SM_DISK_TYPE_BLOCK);
  g_assert_cmpstr (d->source, ==, "/path/to/new3");
  d = sm_snapshot_find_disk (def, "hdh");
  g_assert_cmpint (d->type, ==, SM_DISK_TYPE_NETWORK);
  g_assert_cmpstr (d->source_protocol, ==, "rbd");
  g_assert_cmpstr (d->source, ==, "vol/name");
  g_assert_nonnull (strstr (d->source_xml, "        <host name='host2' port='1234' transport='rdma'/>\n"));
  g_assert_null (d->mirror_file);
  g_assert_null (sm_snapshot_find_disk (def, "vdz"));
}

/* ---- tests/data --------------------------------------------------------- */

static SmSnapshotDef *
parse_data (const char *name)
{
  g_autofree char *path = g_build_filename (top_dir, "tests", "data", name, NULL);
  g_autoptr(GError) err = NULL;
  SmSnapshotDef *def = sm_snapshot_parse_file (path, &err);

  g_assert_no_error (err);
  return def;
}

static void
test_model_mirror (void)
{
  g_autoptr(SmSnapshotDef) two = parse_data ("mirror-two-disks.in.xml");
  g_autoptr(SmSnapshotDef) raw = parse_data ("mirror-raw.in.xml");
  g_autoptr(SmSnapshotDef) mixed = parse_data ("mixed.in.xml");
  const SmSnapshotDisk *d;

  d = sm_snapshot_find_disk (two, "/src/base.img");
  g_assert_nonnull (d);
  g_assert_true (sm_snapshot_disk_is_external (d));
  g_assert_cmpstr (d->source, ==, "/src/snap.img");
  g_assert_cmpstr (d->mirror_file, ==, "/dest/snap.img");
  g_assert_null (d->mirror_format);
  g_assert_cmpuint (two->disks->len, ==, 2);

  d = sm_snapshot_find_disk (raw, "vda");
  g_assert_cmpstr (d->mirror_format, ==, "raw");
  g_assert_cmpint (d->type, ==, SM_DISK_TYPE_FILE);
  d = sm_snapshot_find_disk (raw, "vdb");
  g_assert_cmpstr (d->mirror_format, ==, "qcow2");
  g_assert_cmpstr (d->source, ==, "/dev/vg-sd1/vdb-top");

  g_assert_cmpstr (mixed->name, ==, "mixed <1>");
  g_assert_cmpstr (mixed->description, ==,
                   "Before the \"upgrade\" & reboot: <keep> 'this'\n"
                   "second line\tafter a tab; caf\xc3\xa9 \xe2\x9c\x93 >");
  g_assert_cmpstr (mixed->state, ==, "running");
  g_assert_cmpstr (mixed->parent, ==, "base");
  g_assert_cmpint (mixed->creation_time, ==, 1700000000);
  g_assert_cmpstr (mixed->memory_snapshot, ==, "external");
  g_assert_cmpstr (mixed->memory_file, ==, "/var/lib/snapmig/mem/mixed.save");
  g_assert_cmpint (sm_snapshot_find_disk (mixed, "vdb")->snapshot, ==,
                   SM_SNAPSHOT_LOCATION_NO);
  g_assert_cmpint (sm_snapshot_find_disk (mixed, "sda")->snapshot, ==,
                   SM_SNAPSHOT_LOCATION_INTERNAL);
  d = sm_snapshot_find_disk (mixed, "vdc");
  g_assert_cmpstr (d->mirror_file, ==, "/sd2/vdc.snap2.qcow2");
  g_assert_cmpstr (d->source_protocol, ==, "nbd");
  g_assert_true (g_str_has_prefix (mixed->extra_xml, "  <active>1</active>\n  <domain type='kvm'>\n"));
}

/* ---- meaning checks ------------------------------------------------------ */

#define DISKS(x) "<domainsnapshot><name>s</name><disks>" x "</disks></domainsnapshot>"

static void
test_meaning (void)
{
  static const struct {
    const char *xml;
    const char *needles[3];
  } bad[] = {
    { DISKS ("<disk name='vda' snapshot='no'><mirror file='/d/top'/></disk>"),
      { "disk 'vda'", "snapshot='external'", "'no'" } },
    { DISKS ("<disk name='vda' snapshot='internal'><mirror file='/d/top'/></disk>"),
      { "disk 'vda'", "snapshot='external'", "'internal'" } },
    /* No snapshot= and nothing saying where the new image goes. */
    { DISKS ("<disk name='vdb'><mirror file='/d/top'/></disk>"),
      { "disk 'vdb'", "snapshot='external'", NULL } },
    { DISKS ("<disk name='vda' snapshot='external'><source file='/s/top'/>"
             "<mirror file='d/top'/></disk>"),
      { "disk 'vda'", "mirror file 'd/top'", "absolute" } },
    { DISKS ("<disk name='vda' snapshot='external'><source file='s/top'/></disk>"),
      { "disk 'vda'", "new file 's/top'", "absolute" } },
    { DISKS ("<disk name='vdc' snapshot='external' type='block'>"
             "<source dev='dm-3'/></disk>"),
      { "disk 'vdc'", "new device 'dm-3'", "absolute" } },
    { DISKS ("<disk name='vdn' snapshot='external' type='network'>"
             "<source protocol='nbd' name='e'/><mirror file='top.qcow2'/></disk>"),
      { "disk 'vdn'", "network disk", "'top.qcow2'" } },
    { DISKS ("<disk name='vdk' snapshot='external' type='block'>"
             "<source dev='/dev/a'/><mirror file='b'/></disk>"),
      { "disk 'vdk'", "block disk", "absolute" } },
    { DISKS ("<disk name='vda' snapshot='external'><source file='/s/top'/>"
             "<mirror file='/d/top' format='vmdk'/></disk>"),
      { "disk 'vda'", "'vmdk'", "raw or qcow2" } },
    { "<domainsnapshot><memory file='mem.save'/></domainsnapshot>",
      { "memory file 'mem.save'", "absolute", NULL } },
    { "<domainsnapshot><creationTime>18000000000000000000</creationTime></domainsnapshot>",
      { "creationTime", NULL, NULL } },
  };
  static const char *const good[] = {
    DISKS ("<disk name='vdn' snapshot='external' type='network'>"
           "<source protocol='nbd' name='e'/><mirror file='/d/top.qcow2'/></disk>"),
    DISKS ("<disk name='vdk' snapshot='external' type='block'>"
           "<source dev='/dev/a'/><mirror file='/dev/b' format='raw'/></disk>"),
    /* No snapshot=, but a new source: external, as libvirt reads it. */
    DISKS ("<disk name='vda'><source file='/s/top'/><mirror file='/d/top'/></disk>"),
    /* The mirror element may come before the source. */
    DISKS ("<disk name='vda' snapshot='external'><mirror file='/d/top' format='qcow2'/>"
           "<source file='/s/top'/></disk>"),
    DISKS ("<disk name='vda' snapshot='external'><source file='/s/top'/>"
           "<mirror file='/d/top'/></disk><disk name='vda' snapshot='no'/>"),
  };
  size_t i, j;

  for (i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr(GError) err = NULL;
    g_autoptr(SmSnapshotDef) def = sm_snapshot_parse_string (bad[i].xml, "t.xml", &err);

    g_assert_null (def);
    g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
    g_test_message ("%s", err->message);
    g_assert_true (g_str_has_prefix (err->message, "t.xml: "));
    for (j = 0; j < G_N_ELEMENTS (bad[i].needles) && bad[i].needles[j]; j++)
      g_assert_nonnull (strstr (err->message, bad[i].needles[j]));
  }
  for (i = 0; i < G_N_ELEMENTS (good); i++) {
    g_autoptr(GError) err = NULL;
    g_autoptr(SmSnapshotDef) def = sm_snapshot_parse_string (good[i], "t.xml", &err);

    g_assert_no_error (err);
    g_assert_nonnull (def);
  }
}

/* Schema errors name the element or attribute and the line. */
static void
test_schema_errors (void)
{
  static const struct {
    const char *xml;
    const char *needles[3];
  } bad[] = {
    { "<domainsnapshot>\n<disks>\n<disk name='vda' snapshot='sideways'/>\n</disks>\n</domainsnapshot>",
      { "line 3", "snapshot='sideways'", "'disk'" } },
    { "<domainsnapshot>\n<name>a</name>\n<name>b</name>\n</domainsnapshot>",
      { "line 3", "element 'name'", "'domainsnapshot'" } },
    { "<domainsnapshot>\n<state>dancing</state>\n</domainsnapshot>",
      { "line 2", "element 'state' (text 'dancing')", NULL } },
    { "<domainsnapshot>\n<creationTime>yesterday</creationTime>\n</domainsnapshot>",
      { "line 2", "element 'creationTime' (text 'yesterday')", NULL } },
    { "<domainsnapshot>\n<disks>\n<disk name='vda'>\n<mirror file='/a' size='1'/>\n"
      "</disk>\n</disks>\n</domainsnapshot>",
      { "line 4", "size='1'", "'mirror'" } },
    { "<domainsnapshot><unknown/></domainsnapshot>",
      { "line 1", "'unknown'", NULL } },
    { "<domainsnapshot><disks><disk name='vda' type='network'>"
      "<source protocol='nbd'><seclabel/></source></disk></disks></domainsnapshot>",
      { "'seclabel'", "'source'", NULL } },
  };
  size_t i, j;

  for (i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr(GError) err = NULL;
    g_autoptr(SmSnapshotDef) def = sm_snapshot_parse_string (bad[i].xml, "s.xml", &err);

    g_assert_null (def);
    g_assert_error (err, SM_ERROR, SM_ERROR_XML);
    g_test_message ("%s", err->message);
    g_assert_true (g_str_has_prefix (err->message, "s.xml: "));
    for (j = 0; j < G_N_ELEMENTS (bad[i].needles) && bad[i].needles[j]; j++)
      g_assert_nonnull (strstr (err->message, bad[i].needles[j]));
  }
}

static void
test_malformed (void)
{
  static const struct {
    const char *xml;
    const char *needle;
  } bad[] = {
    { "<domainsnapshot>\n<name>a</name>\n<disks><disk name='a'></disks>\n</domainsnapshot>",
      "line 3" },
    { "", "malformed" },
    { "<domainsnapshot><name>a &undefined; b</name></domainsnapshot>", "undefined" },
    { "<domainsnapshot><domain><x:y/></domain></domainsnapshot>", "malformed" },
    { "<!DOCTYPE domainsnapshot [<!ENTITY e 'x'>]><domainsnapshot><name>&e;</name></domainsnapshot>",
      "DOCTYPE" },
    { "<!DOCTYPE domainsnapshot SYSTEM '/nonexistent/snapshot.dtd'><domainsnapshot/>",
      "DOCTYPE" },
    { "<domain><name>a</name></domain>", "root element is 'domain'" },
    { "<domainsnapshot xmlns='urn:x'/>",
      "root element is 'domainsnapshot' in namespace 'urn:x'" },
  };
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr(GError) err = NULL;
    g_autoptr(SmSnapshotDef) def = sm_snapshot_parse_string (bad[i].xml, "m.xml", &err);

    g_assert_null (def);
    g_assert_error (err, SM_ERROR, SM_ERROR_XML);
    g_test_message ("%s", err->message);
    g_assert_true (g_str_has_prefix (err->message, "m.xml: "));
    g_assert_nonnull (strstr (err->message, bad[i].needle));
  }
}

static void
test_validate_file_errors (void)
{
  g_autofree char *dir = g_dir_make_tmp ("snapmig-xml-XXXXXX", NULL);
  g_autofree char *missing = g_build_filename (dir, "missing.xml", NULL);
  g_autofree char *other = g_build_filename (dir, "other.xml", NULL);
  g_autoptr(GError) err = NULL;
  g_autoptr(GError) err2 = NULL;
  g_autoptr(GError) err3 = NULL;
  g_autoptr(SmSnapshotDef) def = NULL;

  g_assert_nonnull (dir);
  g_assert_false (sm_xml_validate_file (missing, NULL, &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (err->message, missing));

  g_assert_true (g_file_set_contents (other, "<network><name>n</name></network>\n", -1, NULL));
  g_assert_false (sm_xml_validate_file (other, NULL, &err2));
  g_assert_error (err2, SM_ERROR, SM_ERROR_XML);
  g_assert_nonnull (strstr (err2->message, other));
  g_assert_nonnull (strstr (err2->message, "unknown root element 'network'"));

  def = sm_snapshot_parse_file (dir, &err3);
  g_assert_null (def);
  g_assert_error (err3, SM_ERROR, SM_ERROR_IO);
  g_assert_nonnull (strstr (err3->message, dir));

  g_unlink (other);
  g_rmdir (dir);
}

/* A definition built in code formats to a document that parses back. */
static void
test_build (void)
{
  g_autoptr(SmSnapshotDef) def = sm_snapshot_def_new ();
  g_autoptr(SmSnapshotDef) back = NULL;
  g_autoptr(GError) err = NULL;
  g_autoptr(GError) err2 = NULL;
  g_autofree char *empty = sm_snapshot_format (def);
  g_autofree char *xml = NULL;
  SmSnapshotDisk *disk;

  g_assert_cmpstr (empty, ==, "<domainsnapshot/>\n");
  def->name = g_strdup ("lsm 'a' & <b>");
  def->description = g_strdup ("tab\there, CR\rthere");
  def->creation_time = 1234;
  disk = sm_snapshot_disk_new ("vda");
  disk->snapshot = SM_SNAPSHOT_LOCATION_EXTERNAL;
  disk->source = g_strdup ("/sd1/top's \"new\"\n.qcow2");
  disk->mirror_file = g_strdup ("/sd2/top.qcow2");
  disk->mirror_format = g_strdup ("qcow2");
  g_ptr_array_add (def->disks, disk);
  disk = sm_snapshot_disk_new ("vdb");
  disk->snapshot = SM_SNAPSHOT_LOCATION_NO;
  g_ptr_array_add (def->disks, disk);
  g_assert_true (sm_snapshot_def_check (def, "built", &err));

  xml = sm_snapshot_format (def);
  back = sm_snapshot_parse_string (xml, "built", &err);
  g_assert_no_error (err);
  g_assert_cmpstr (back->name, ==, def->name);
  g_assert_cmpstr (back->description, ==, def->description);
  g_assert_cmpint (back->creation_time, ==, 1234);
  g_assert_cmpuint (back->disks->len, ==, 2);
  disk = sm_snapshot_find_disk (back, "vda");
  g_assert_cmpstr (disk->source, ==, "/sd1/top's \"new\"\n.qcow2");
  g_assert_cmpstr (disk->mirror_format, ==, "qcow2");

  /* The checks apply to definitions built in code too. */
  disk = sm_snapshot_find_disk (def, "vdb");
  disk->mirror_file = g_strdup ("/sd2/vdb.qcow2");
  g_assert_false (sm_snapshot_def_check (def, "built", &err2));
  g_assert_error (err2, SM_ERROR, SM_ERROR_INVALID);
  g_assert_nonnull (strstr (err2->message, "disk 'vdb'"));

  g_assert_cmpstr (sm_snapshot_location_to_string (SM_SNAPSHOT_LOCATION_MANUAL), ==, "manual");
  g_assert_cmpstr (sm_disk_type_to_string (SM_DISK_TYPE_NETWORK), ==, "network");
  g_assert_null (sm_disk_type_to_string (SM_DISK_TYPE_LAST));
}

/* Namespaced content kept under <domain> stays well-formed when its
 * prefix was declared on <domainsnapshot>, and CR and tabs in attribute
 * values survive. */
static void
test_kept_xml (void)
{
  static const char xml[] =
    "<domainsnapshot xmlns:m='urn:meta'>\n"
    "  <domain><metadata><m:info m:k='v&#9;w&#13;'>text &amp; more</m:info></metadata>"
    "<description> mixed <b>bold</b> text </description><empty></empty>"
    "<blank>   </blank></domain>\n"
    "</domainsnapshot>\n";
  g_autofree char *first = reformat (xml, "ns.xml");
  g_autofree char *second = reformat (first, "ns.xml");
  g_autofree char *canon_in = canonical_text (xml);
  g_autofree char *canon_out = canonical_text (first);

  g_test_message ("%s", first);
  g_assert_cmpstr (second, ==, first);
  g_assert_cmpstr (canon_out, ==, canon_in);
  g_assert_nonnull (strstr (first, "  <domain xmlns:m='urn:meta'>\n"));
  g_assert_nonnull (strstr (first, "<m:info m:k=\"v&#9;w&#13;\">text &amp; more</m:info>"));
  g_assert_nonnull (strstr (first, "<description> mixed <b>bold</b> text </description>"));
  g_assert_nonnull (strstr (first, "<empty/>"));
  g_assert_nonnull (strstr (first, "<blank>   </blank>"));
}

/* Nothing reaches stderr, whatever the document: libxml2 prints its
 * errors there unless told otherwise. */
static void
test_quiet (void)
{
  static const char *const docs[] = {
    "<domainsnapshot><disks><disk name='a'></disks></domainsnapshot>",
    "<domainsnapshot><bogus/></domainsnapshot>",
    "<!DOCTYPE d [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><domainsnapshot><name>&e;</name></domainsnapshot>",
    "<domainsnapshot><disks><disk name='v' snapshot='external' type='network'>"
    "<source protocol='nbd'><seclabel/></source></disk></disks></domainsnapshot>",
    "\xff\xfe<",
    "<domainsnapshot><domain><a:b/></domain></domainsnapshot>",
  };
  g_autofree char *dir = g_dir_make_tmp ("snapmig-xml-XXXXXX", NULL);
  g_autofree char *log = g_build_filename (dir, "stderr", NULL);
  g_autofree char *printed = NULL;
  int fd, saved;
  size_t i;

  fflush (stderr);
  saved = dup (2);
  fd = open (log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  g_assert_cmpint (fd, >=, 0);
  dup2 (fd, 2);
  close (fd);
  for (i = 0; i < G_N_ELEMENTS (docs); i++) {
    g_autoptr(GError) err = NULL;
    g_autoptr(SmSnapshotDef) def = sm_snapshot_parse_string (docs[i], "q.xml", &err);

    g_assert_null (def);
    g_assert_nonnull (err);
  }
  fflush (stderr);
  dup2 (saved, 2);
  close (saved);

  printed = read_text (log);
  g_assert_cmpstr (printed, ==, "");
  g_unlink (log);
  g_rmdir (dir);
}

int
main (int argc, char **argv)
{
  int rc;

  g_test_init (&argc, &argv, NULL);
  top_dir = sm_test_source_tree ("lib/snapshot-xml.h", &shared_dir);

  g_test_add_func ("/snapshot-xml/golden", test_golden);
  g_test_add_func ("/snapshot-xml/data-valid", test_data_valid);
  g_test_add_func ("/snapshot-xml/corpus/valid", test_corpus_valid);
  g_test_add_func ("/snapshot-xml/corpus/invalid", test_corpus_invalid);
  g_test_add_func ("/snapshot-xml/corpus/round-trip", test_corpus_round_trip);
  g_test_add_func ("/snapshot-xml/corpus/libvirt-layout", test_corpus_libvirt_layout);
  g_test_add_func ("/snapshot-xml/corpus/model", test_corpus_model);
  g_test_add_func ("/snapshot-xml/model-mirror", test_model_mirror);
  g_test_add_func ("/snapshot-xml/meaning", test_meaning);
  g_test_add_func ("/snapshot-xml/schema-errors", test_schema_errors);
  g_test_add_func ("/snapshot-xml/malformed", test_malformed);
  g_test_add_func ("/snapshot-xml/validate-file-errors", test_validate_file_errors);
  g_test_add_func ("/snapshot-xml/build", test_build);
  g_test_add_func ("/snapshot-xml/kept-xml", test_kept_xml);
  g_test_add_func ("/snapshot-xml/quiet", test_quiet);
  rc = g_test_run ();
  g_free (top_dir);
  g_free (shared_dir);
  return rc;
}
