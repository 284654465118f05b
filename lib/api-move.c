/* libsnapmig's public API: a move's create, wait, status, pivot and abort
 * (include/snapmig.h), each one call of lib/ops.c. */
#include "api-private.h"

#include <stdlib.h>
#include <string.h>

/* ---- progress ---- */

/* The library's progress items ("DISK mirror", "FILE copy") as the API's
 * KIND and NAME, reported only when a number changed. */
typedef struct {
  snapmig_progress_fn fn;
  void *opaque;
  GHashTable *last;            /* item → "DONE/TOTAL/FINISHED" reported */
} Progress;

static void
progress_init (Progress *p, snapmig_progress_fn fn, void *opaque)
{
  p->fn = fn;
  p->opaque = opaque;
  p->last = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
}

static void
progress_clear (Progress *p)
{
  g_clear_pointer (&p->last, g_hash_table_unref);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Progress, progress_clear)

static void
on_progress (const char *item, uint64_t done, uint64_t total, bool finished,
             void *opaque)
{
  Progress *p = opaque;
  const char *space = strrchr (item, ' ');
  g_autofree char *name = NULL;
  g_autofree char *now = NULL;

  if (!p->fn || !space)
    return;
  now = g_strdup_printf ("%" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT "/%d",
                         done, total, finished);
  if (g_strcmp0 (g_hash_table_lookup (p->last, item), now) == 0)
    return;
  g_hash_table_insert (p->last, g_strdup (item), g_strdup (now));
  name = g_strndup (item, (gsize) (space - item));
  p->fn (space + 1, name, done, total, finished, p->opaque);
}

/* ---- create ---- */

struct snapmig_create_options {
  char *name;
  GPtrArray *diskspecs;        /* char *, NULL-terminated */
  char *mirror_domain;
  char *xml;
  uint64_t bandwidth;
  bool wait;
};

snapmig_create_options *
snapmig_create_options_new (const char *name)
{
  snapmig_create_options *o = g_new0 (snapmig_create_options, 1);

  o->name = g_strdup (name);
  o->diskspecs = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (o->diskspecs, NULL);
  return o;
}

void
snapmig_create_options_free (snapmig_create_options *o)
{
  if (!o)
    return;
  g_free (o->name);
  g_ptr_array_unref (o->diskspecs);
  g_free (o->mirror_domain);
  g_free (o->xml);
  g_free (o);
}

/* Sets *FIELD to a copy of VALUE; refuses NULL or "" (WHY says what was
 * expected). */
static int
set_text (char **field, const char *value, const char *why,
          snapmig_error **error)
{
  if (!value || !*value) {
    sm_api_error_invalid (error, "%s", why);
    return -1;
  }
  g_free (*field);
  *field = g_strdup (value);
  return 0;
}

int
snapmig_create_options_set_mirror_domain (snapmig_create_options *o,
                                          const char *dir,
                                          snapmig_error **error)
{
  return set_text (&o->mirror_domain, dir, "mirror domain: no directory "
                   "given", error);
}

int
snapmig_create_options_add_diskspec (snapmig_create_options *o,
                                     const char *spec, snapmig_error **error)
{
  if (!spec || !*spec) {
    sm_api_error_invalid (error, "diskspec: empty (expected "
                          "DISK[,file=PATH][,mirror=PATH][,snapshot=no])");
    return -1;
  }
  g_ptr_array_insert (o->diskspecs, (gint) o->diskspecs->len - 1,
                      g_strdup (spec));
  return 0;
}

int
snapmig_create_options_set_xml (snapmig_create_options *o, const char *xml,
                                snapmig_error **error)
{
  return set_text (&o->xml, xml, "snapshot XML: empty document", error);
}

void
snapmig_create_options_set_bandwidth (snapmig_create_options *o,
                                      uint64_t bytes_per_second)
{
  o->bandwidth = bytes_per_second;
}

void
snapmig_create_options_set_wait (snapmig_create_options *o, bool wait)
{
  o->wait = wait;
}

int
snapmig_create (snapmig_vm *vm, const snapmig_create_options *o,
                snapmig_progress_fn progress, void *opaque,
                snapmig_error **error)
{
  SmOpTarget t = sm_api_target (vm);
  SmOpCreateArgs a = { 0 };
  SmOpResult r = { 0 };
  g_auto(Progress) p = { 0 };
  GError *err = NULL;
  bool ok;

  if (!o || (!o->xml && !o->name)) {
    sm_api_error_invalid (error, "create: the options name no snapshot "
                          "(snapmig_create_options_new (NAME) or "
                          "snapmig_create_options_set_xml)");
    return -1;
  }
  if (o->xml && (o->diskspecs->len > 1 || o->mirror_domain)) {
    sm_api_error_invalid (error, "create: give either the snapshot XML or "
                          "diskspecs and a mirror domain, not both");
    return -1;
  }
  progress_init (&p, progress, opaque);
  a.xml_text = o->xml;
  a.name = o->name;
  a.diskspecs = (const char *const *) o->diskspecs->pdata;
  a.mirror_domain = o->mirror_domain;
  a.wait = o->wait;
  a.options.bandwidth = o->bandwidth;
  a.progress = on_progress;
  a.opaque = &p;
  ok = sm_op_create (&t, &a, &r, &err);
  sm_op_result_clear (&r);
  return sm_api_op_return (ok, err, error);
}

/* ---- status, wait ---- */

char *
snapmig_status_json (snapmig_vm *vm, const char *snapshot,
                     snapmig_error **error)
{
  SmOpTarget t = sm_api_target (vm);
  g_autoptr(json_object) status = NULL;
  g_autofree char *name = NULL;
  GError *err = NULL;
  bool ok = sm_op_status (&t, snapshot, &status, &name, &err);

  sm_api_op_end ();
  if (!ok) {
    sm_api_error_set (error, err);
    return NULL;
  }
  if (!status) {
    /* Nothing is moving: the document `snapmig status --json` prints. */
    status = json_object_new_object ();
    json_object_object_add (status, "snapshot", NULL);
    json_object_object_add (status, "moving", json_object_new_boolean (0));
  }
  return sm_api_json_text (status, false);
}

int
snapmig_wait (snapmig_vm *vm, const char *snapshot,
              snapmig_progress_fn progress, void *opaque,
              snapmig_error **error)
{
  SmOpTarget t = sm_api_target (vm);
  g_auto(Progress) p = { 0 };
  GError *err = NULL;
  bool ok;

  progress_init (&p, progress, opaque);
  ok = sm_op_wait (&t, snapshot, on_progress, &p, &err);
  return sm_api_op_return (ok, err, error);
}

/* ---- pivot, abort ---- */

struct snapmig_pivot_result {
  int64_t pause_us;
  GPtrArray *moved;            /* char * */
  GPtrArray *removed;          /* char * */
};

/* A copy of the strings of ARR (may be NULL). */
static GPtrArray *
strings_copy (const GPtrArray *arr)
{
  GPtrArray *copy = g_ptr_array_new_with_free_func (g_free);
  guint i;

  for (i = 0; arr && i < arr->len; i++)
    g_ptr_array_add (copy, g_strdup (arr->pdata[i]));
  return copy;
}

int
snapmig_pivot (snapmig_vm *vm, const char *snapshot, unsigned flags,
               snapmig_progress_fn progress, void *opaque,
               snapmig_pivot_result **result, snapmig_error **error)
{
  SmOpTarget t = sm_api_target (vm);
  SmOpSwitchArgs a = { 0 };
  SmOpResult r = { 0 };
  g_auto(Progress) p = { 0 };
  GError *err = NULL;
  bool ok;

  if (result)
    *result = NULL;
  if (!snapshot || !*snapshot) {
    sm_api_error_invalid (error, "pivot: no snapshot named");
    return -1;
  }
  if (flags & ~(unsigned) SNAPMIG_PIVOT_DELETE_SOURCE) {
    sm_api_error_invalid (error, "pivot: unknown flags 0x%x", flags);
    return -1;
  }
  progress_init (&p, progress, opaque);
  a.snapshot = snapshot;
  a.flags = flags & SNAPMIG_PIVOT_DELETE_SOURCE ? SM_LSM_DELETE_SOURCE : 0;
  a.progress = on_progress;
  a.opaque = &p;
  ok = sm_op_pivot (&t, &a, &r, &err);
  if (ok && result) {
    snapmig_pivot_result *res = g_new0 (snapmig_pivot_result, 1);

    res->pause_us = r.pivot.pause_us;
    res->moved = strings_copy (r.pivot.moved);
    res->removed = strings_copy (r.pivot.removed);
    *result = res;
  }
  sm_op_result_clear (&r);
  return sm_api_op_return (ok, err, error);
}

int64_t
snapmig_pivot_result_pause_us (const snapmig_pivot_result *result)
{
  return result ? result->pause_us : -1;
}

size_t
snapmig_pivot_result_moved_count (const snapmig_pivot_result *result)
{
  return result ? result->moved->len : 0;
}

const char *
snapmig_pivot_result_moved (const snapmig_pivot_result *result, size_t i)
{
  return result && i < result->moved->len ? result->moved->pdata[i] : NULL;
}

size_t
snapmig_pivot_result_removed_count (const snapmig_pivot_result *result)
{
  return result ? result->removed->len : 0;
}

const char *
snapmig_pivot_result_removed (const snapmig_pivot_result *result, size_t i)
{
  return result && i < result->removed->len ? result->removed->pdata[i]
                                            : NULL;
}

void
snapmig_pivot_result_free (snapmig_pivot_result *result)
{
  if (!result)
    return;
  g_ptr_array_unref (result->moved);
  g_ptr_array_unref (result->removed);
  g_free (result);
}

int
snapmig_abort (snapmig_vm *vm, const char *snapshot, snapmig_error **error)
{
  SmOpTarget t = sm_api_target (vm);
  SmOpSwitchArgs a = { 0 };
  SmOpResult r = { 0 };
  GError *err = NULL;
  bool ok;

  if (!snapshot || !*snapshot) {
    sm_api_error_invalid (error, "abort: no snapshot named");
    return -1;
  }
  a.snapshot = snapshot;
  ok = sm_op_abort (&t, &a, &r, &err);
  sm_op_result_clear (&r);
  return sm_api_op_return (ok, err, error);
}
