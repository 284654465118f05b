/* Deterministic mutation fuzzing of sm_snapshot_parse_string and, for
 * migration cookies, sm_mig_cookie_parse.
 *
 * Inputs: libvirt's snapshot documents and migration cookies (../shared,
 * when present) and every XML file under tests/data.  Mutations, all
 * derived from a fixed seed so that a failure reproduces: truncation at
 * every k-th offset, bit flips, removed and duplicated tags, and inserted
 * XML-significant fragments.  Each mutant must either fail with an
 * SM_ERROR_XML / SM_ERROR_INVALID GError that names the source, or parse
 * into a definition whose formatting parses back and formats identically.
 *
 * SM_FUZZ_ITERATIONS sets the number of mutants per kind and input
 * (default 200, or 10 under valgrind, i.e. SM_VALGRIND=1 as tests/run-tests
 * sets it); SM_FUZZ_SEED another seed, for longer campaigns by hand.
 */
#include <string.h>

#include <glib.h>

#include "migrate-cookie.h"
#include "snapshot-xml.h"

#define DEFAULT_SEED 0x5eed5eedu

static guint32 seed;

typedef struct {
  char *path;
  char *text;
  gsize len;
  bool cookie;                    /* a <qemu-migration> document */
} FuzzInput;

static guint iterations;

static void
fuzz_input_free (gpointer p)
{
  FuzzInput *in = p;

  g_free (in->path);
  g_free (in->text);
  g_free (in);
}

/* Prints a mutant so that a failure can be reproduced by hand. */
static void
show_mutant (const char *what, const char *text)
{
  g_autofree char *escaped = g_strescape (text, NULL);

  g_test_message ("%s: mutant: \"%s\"", what, escaped);
}

/* Parses TEXT as one kind of document and formats it again; NULL with
 * ERROR set when it is refused.  Messages begin with "fuzz.xml: " for a
 * snapshot, "migration cookie: " for a cookie. */
static char *
reformat_snapshot (const char *text, GError **error)
{
  g_autoptr(SmSnapshotDef) def = sm_snapshot_parse_string (text, "fuzz.xml", error);

  return def ? sm_snapshot_format (def) : NULL;
}

static char *
reformat_cookie (const char *text, GError **error)
{
  g_autoptr(SmMigCookie) c = sm_mig_cookie_parse (text, -1, error);

  return c ? sm_mig_cookie_format (c) : NULL;
}

/* The property every mutant must have: refused with an XML or meaning
 * error naming the document, or read into a model whose formatting reads
 * back and formats identically. */
static void
check_mutant (const FuzzInput *in, const char *what, const char *text)
{
  char *(*reformat) (const char *, GError **) =
    in->cookie ? reformat_cookie : reformat_snapshot;
  const char *prefix = in->cookie ? "migration cookie: " : "fuzz.xml: ";
  g_autoptr(GError) err = NULL;
  g_autoptr(GError) err2 = NULL;
  g_autofree char *first = reformat (text, &err);
  g_autofree char *second = NULL;

  if (!first) {
    if (!err || err->domain != SM_ERROR ||
        (err->code != SM_ERROR_XML && err->code != SM_ERROR_INVALID) ||
        !g_str_has_prefix (err->message, prefix)) {
      show_mutant (in->path, text);
      g_test_message ("%s: unexpected error: %s", what, err ? err->message : "(none)");
      g_assert_not_reached ();
    }
    return;
  }
  g_assert_null (err);
  second = reformat (first, &err2);
  if (!second || strcmp (second, first) != 0) {
    show_mutant (in->path, text);
    g_test_message ("%s: formatted: %s", what, first);
    g_test_message ("%s: reparsed: %s", what, err2 ? err2->message : second);
    g_assert_not_reached ();
  }
}

static void
mutate_truncate (const FuzzInput *in)
{
  gsize step = MAX (1, in->len / iterations), off;

  for (off = 0; off < in->len; off += step) {
    g_autofree char *t = g_strndup (in->text, off);

    check_mutant (in, "truncation", t);
  }
}

static void
mutate_bit_flips (const FuzzInput *in, GRand *rand)
{
  guint i, j;

  for (i = 0; i < iterations && in->len > 0; i++) {
    g_autofree char *t = g_strndup (in->text, in->len);
    guint flips = g_rand_int_range (rand, 1, 5);

    for (j = 0; j < flips; j++) {
      gsize off = g_rand_int_range (rand, 0, (gint32) in->len);

      t[off] ^= (char) (1u << g_rand_int_range (rand, 0, 8));
    }
    check_mutant (in, "bit flips", t);
  }
}

/* Offsets of every '<' that starts a tag, and of the '>' ending it. */
static void
find_tags (const FuzzInput *in, GArray *starts, GArray *ends)
{
  gsize i;

  for (i = 0; i < in->len; i++) {
    const char *gt;

    if (in->text[i] != '<')
      continue;
    gt = strchr (in->text + i, '>');
    if (!gt)
      break;
    g_array_append_val (starts, i);
    i = gt - in->text;
    g_array_append_val (ends, i);
  }
}

static void
mutate_tags (const FuzzInput *in, GRand *rand)
{
  g_autoptr(GArray) starts = g_array_new (FALSE, FALSE, sizeof (gsize));
  g_autoptr(GArray) ends = g_array_new (FALSE, FALSE, sizeof (gsize));
  guint i;

  find_tags (in, starts, ends);
  for (i = 0; i < iterations && starts->len > 0; i++) {
    guint k = g_rand_int_range (rand, 0, (gint32) starts->len);
    gsize s = g_array_index (starts, gsize, k);
    gsize e = g_array_index (ends, gsize, k) + 1;
    g_autoptr(GString) t = g_string_new_len (in->text, s);

    if (i % 2 == 0) {
      /* Removed tag. */
      g_string_append (t, in->text + e);
      check_mutant (in, "removed tag", t->str);
    }
    else {
      /* Duplicated tag, or a tag moved after the next one. */
      g_string_append_len (t, in->text + s, e - s);
      g_string_append (t, in->text + s);
      check_mutant (in, "duplicated tag", t->str);
    }
  }
}

static void
mutate_inserts (const FuzzInput *in, GRand *rand)
{
  static const char *const fragments[] = {
    "&", "<", ">", "'", "\"", "&amp;", "&#0;", "&#x10FFFF;", "]]>", "<!--",
    "-->", "<![CDATA[x]]>", " xmlns:x='urn:x'", " x:a='1'", "<x:y/>",
    "<mirror file='/m'/>", "<mirror file='rel'/>", " snapshot='external'",
    " type='network'", "<source file='/s'/>", "<domain/>", "<name>n</name>",
    "\xc3\x28", "\xef\xbb\xbf", "<?pi x?>", "<!DOCTYPE x>", "\r", "\t",
  };
  guint i;

  for (i = 0; i < iterations && in->len > 0; i++) {
    gsize off = g_rand_int_range (rand, 0, (gint32) in->len);
    const char *frag = fragments[g_rand_int_range (rand, 0, G_N_ELEMENTS (fragments))];
    g_autoptr(GString) t = g_string_new_len (in->text, off);

    g_string_append (t, frag);
    g_string_append (t, in->text + off);
    check_mutant (in, "insertion", t->str);
  }
}

static void
test_input (gconstpointer data)
{
  const FuzzInput *in = data;
  g_autoptr(GRand) rand = g_rand_new_with_seed (seed ^ g_str_hash (in->path));

  /* The input itself goes through the same check. */
  check_mutant (in, "unmodified", in->text);
  mutate_truncate (in);
  mutate_bit_flips (in, rand);
  mutate_tags (in, rand);
  mutate_inserts (in, rand);
}

static gint
compare_paths (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

static void
add_dir (GPtrArray *inputs, const char *dir)
{
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  const char *name;
  guint i;

  g_assert_nonnull (d);
  while ((name = g_dir_read_name (d)))
    if (g_str_has_suffix (name, ".xml"))
      g_ptr_array_add (names, g_build_filename (dir, name, NULL));
  g_ptr_array_sort (names, compare_paths);
  for (i = 0; i < names->len; i++) {
    FuzzInput *in = g_new0 (FuzzInput, 1);

    in->path = g_strdup (g_ptr_array_index (names, i));
    g_assert_true (g_file_get_contents (in->path, &in->text, &in->len, NULL));
    in->cookie = g_str_has_prefix (in->text, "<qemu-migration>");
    g_ptr_array_add (inputs, in);
  }
}

int
main (int argc, char **argv)
{
  g_autoptr(GPtrArray) inputs = g_ptr_array_new_with_free_func (fuzz_input_free);
  g_autofree char *here = NULL, *top = NULL, *shared = NULL, *data = NULL;
  const char *env = g_getenv ("SM_FUZZ_ITERATIONS");
  const char *seed_env = g_getenv ("SM_FUZZ_SEED");
  guint i;
  int rc;

  g_test_init (&argc, &argv, NULL);
  if (env && *env)
    iterations = MAX (1, (guint) g_ascii_strtoull (env, NULL, 10));
  else
    iterations = g_strcmp0 (g_getenv ("SM_VALGRIND"), "1") == 0 ? 10 : 200;
  seed = seed_env && *seed_env ? (guint32) g_ascii_strtoull (seed_env, NULL, 0)
    : DEFAULT_SEED;
  g_test_message ("%u mutants per kind and input, seed %#x", iterations, seed);

  /* The source tree is two levels above this program (see
   * test-snapshot-xml.c). */
  here = g_test_build_filename (G_TEST_DIST, "..", "..", NULL);
  top = g_canonicalize_filename (here, NULL);
  data = g_build_filename (top, "tests", "data", NULL);
  if (!g_file_test (data, G_FILE_TEST_IS_DIR))
    g_error ("cannot find the source tree (no %s)", data);
  add_dir (inputs, data);
  shared = g_build_filename (top, "..", "shared", "corpus", NULL);
  if (g_file_test (shared, G_FILE_TEST_IS_DIR)) {
    g_autofree char *in = g_build_filename (shared, "libvirt-domainsnapshot", "in", NULL);
    g_autofree char *out = g_build_filename (shared, "libvirt-domainsnapshot", "out", NULL);
    g_autofree char *cookies = g_build_filename (shared, "libvirt-migration-cookie", NULL);

    add_dir (inputs, in);
    add_dir (inputs, out);
    add_dir (inputs, cookies);
  }
  else
    g_test_message ("../shared is absent: fuzzing tests/data only");

  for (i = 0; i < inputs->len; i++) {
    const FuzzInput *in = g_ptr_array_index (inputs, i);
    g_autofree char *dir = g_path_get_dirname (in->path);
    g_autofree char *dir_base = g_path_get_basename (dir);
    g_autofree char *base = g_path_get_basename (in->path);
    g_autofree char *name = g_strdup_printf ("/fuzz-xml/%s/%s", dir_base, base);

    g_test_add_data_func (name, in, test_input);
  }
  rc = g_test_run ();
  return rc;
}
