/* Unit tests for lib/json-util.c: typed member lookups on the shapes QEMU
 * replies and snapmig's own journals hold, including absent members, wrong
 * types, JSON null and NULL/non-object holders (which must read as absent so
 * that lookups chain). */
#include "json-util.h"

#include "qmp.h"

static json_object *
parse (const char *text)
{
  json_object *obj = json_tokener_parse (text);

  g_assert_nonnull (obj);
  return obj;
}

static void
test_string (void)
{
  g_autoptr(json_object) o =
    parse ("{\"s\": \"abc\", \"e\": \"\", \"n\": 5, \"z\": null,"
           " \"o\": {\"file\": {\"filename\": \"/d/top.qcow2\"}}}");

  g_assert_cmpstr (sm_json_get_string (o, "s"), ==, "abc");
  g_assert_cmpstr (sm_json_get_string (o, "e"), ==, "");
  g_assert_null (sm_json_get_string (o, "n"));
  g_assert_null (sm_json_get_string (o, "z"));
  g_assert_null (sm_json_get_string (o, "o"));
  g_assert_null (sm_json_get_string (o, "missing"));
  g_assert_null (sm_json_get_string (NULL, "s"));
  g_assert_cmpstr (sm_json_get_string (sm_json_get_object (
                     sm_json_get_object (o, "o"), "file"), "filename"),
                   ==, "/d/top.qcow2");
  g_assert_null (sm_json_get_string (sm_json_get_object (o, "x"), "s"));
}

static void
test_object_array (void)
{
  g_autoptr(json_object) o =
    parse ("{\"o\": {\"a\": 1}, \"a\": [1, 2], \"s\": \"x\", \"z\": null}");
  g_autoptr(json_object) arr = parse ("[{\"a\": 1}]");

  g_assert_nonnull (sm_json_get_object (o, "o"));
  g_assert_null (sm_json_get_object (o, "a"));
  g_assert_null (sm_json_get_object (o, "s"));
  g_assert_null (sm_json_get_object (o, "z"));
  g_assert_null (sm_json_get_object (o, "missing"));
  g_assert_null (sm_json_get_object (NULL, "o"));

  g_assert_cmpuint (json_object_array_length (sm_json_get_array (o, "a")),
                    ==, 2);
  g_assert_null (sm_json_get_array (o, "o"));
  g_assert_null (sm_json_get_array (o, "z"));
  g_assert_null (sm_json_get_array (NULL, "a"));

  /* An array holder has no members. */
  g_assert_null (sm_json_get_object (arr, "a"));
  g_assert_null (sm_json_get_string (arr, "a"));
}

static int64_t
int64_of (json_object *o, const char *key)
{
  int64_t v = 7;

  g_assert_true (sm_json_get_int64 (o, key, &v));
  return v;
}

static uint64_t
uint64_of (json_object *o, const char *key)
{
  uint64_t v = 7;

  g_assert_true (sm_json_get_uint64 (o, key, &v));
  return v;
}

static bool
bool_of (json_object *o, const char *key)
{
  bool v = true;

  g_assert_true (sm_json_get_bool (o, key, &v));
  return v;
}

/* An absent member: false from each accessor, the output untouched. */
static void
assert_absent (json_object *o, const char *key)
{
  int64_t i = 7;
  uint64_t u = 7;
  bool b = true;

  g_assert_false (sm_json_get_int64 (o, key, &i));
  g_assert_false (sm_json_get_uint64 (o, key, &u));
  g_assert_false (sm_json_get_bool (o, key, &b));
  g_assert_cmpint (i, ==, 7);
  g_assert_cmpuint (u, ==, 7);
  g_assert_true (b);
}

static void
test_scalars (void)
{
  g_autoptr(json_object) o =
    parse ("{\"len\": 1073741824, \"neg\": -1, \"big\": 18446744073709551615,"
           " \"z\": null, \"str\": \"42\", \"t\": true, \"f\": false}");

  g_assert_cmpint (int64_of (o, "len"), ==, 1073741824);
  g_assert_cmpint (int64_of (o, "neg"), ==, -1);
  g_assert_cmpuint (uint64_of (o, "len"), ==, 1073741824);
  g_assert_cmpuint (uint64_of (o, "big"), ==, UINT64_MAX);
  g_assert_true (bool_of (o, "t"));
  g_assert_false (bool_of (o, "f"));

  /* Present but of another type: converted the way json-c converts. */
  g_assert_cmpint (int64_of (o, "z"), ==, 0);
  g_assert_cmpuint (uint64_of (o, "str"), ==, 42);
  g_assert_false (bool_of (o, "z"));

  assert_absent (o, "missing");
  assert_absent (NULL, "len");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/json-util/string", test_string);
  g_test_add_func ("/json-util/object-array", test_object_array);
  g_test_add_func ("/json-util/scalars", test_scalars);
  return g_test_run ();
}
