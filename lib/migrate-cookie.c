/* libsnapmig — the migration cookie: model, formatter, parser (schema, then
 * meaning checks).  See migrate-cookie.h; endpoint URIs and reading a
 * cookie from the peer are in migrate-peer.c.
 *
 * The <snapmig> element has one attribute per field (kebab-case), so the
 * formatter and the parser are two tables walked in opposite directions
 * (see the *_fields arrays): a field added to the model and its table
 * round-trips without further code.
 */
#include "migrate-cookie.h"

#include <stddef.h>
#include <string.h>

#include <libxml/tree.h>

#include "migrate-cookie-private.h"
#include "snapshot-xml.h"

#define LOG_DOMAIN "migrate-cookie"

/* <uuid> is required by the schema: a cookie without one is written with
 * the nil UUID (RFC 4122 "no UUID"), which reads back as NULL. */
#define NIL_UUID "00000000-0000-0000-0000-000000000000"

G_DEFINE_AUTOPTR_CLEANUP_FUNC (xmlDoc, xmlFreeDoc)

/* ---- enums ---------------------------------------------------------------- */

static const char *const storage_names[SM_MIG_STORAGE_LAST] = {
  [SM_MIG_STORAGE_CHAIN] = "chain",
  [SM_MIG_STORAGE_FLAT] = "flat",
  [SM_MIG_STORAGE_INC] = "inc",
};

static const char *const role_names[SM_MIG_LAYER_ROLE_LAST] = {
  [SM_MIG_LAYER_TOP] = "top",
  [SM_MIG_LAYER_COPY] = "copy",
  [SM_MIG_LAYER_SHARED] = "shared",
};

static int
lookup (const char *const *names, int n, const char *s)
{
  int i;

  for (i = 0; s && i < n; i++)
    if (strcmp (names[i], s) == 0)
      return i;
  return -1;
}

const char *
sm_mig_storage_to_string (SmMigStorage s)
{
  return (unsigned) s < SM_MIG_STORAGE_LAST ? storage_names[s] : NULL;
}

int
sm_mig_storage_from_string (const char *s)
{
  return lookup (storage_names, SM_MIG_STORAGE_LAST, s);
}

const char *
sm_mig_layer_role_to_string (SmMigLayerRole r)
{
  return (unsigned) r < SM_MIG_LAYER_ROLE_LAST ? role_names[r] : NULL;
}

int
sm_mig_layer_role_from_string (const char *s)
{
  return lookup (role_names, SM_MIG_LAYER_ROLE_LAST, s);
}

/* ---- model ---------------------------------------------------------------- */

static void
layer_free_cb (gpointer p)
{
  sm_mig_layer_free (p);
}

static void
disk_free_cb (gpointer p)
{
  sm_mig_disk_free (p);
}

SmMigCookie *
sm_mig_cookie_new (void)
{
  SmMigCookie *c = g_new0 (SmMigCookie, 1);

  c->storage = SM_MIG_STORAGE_CHAIN;
  c->disks = g_ptr_array_new_with_free_func (disk_free_cb);
  c->pause_us = -1;
  return c;
}

void
sm_mig_cookie_free (SmMigCookie *c)
{
  if (!c)
    return;
  g_free (c->id);
  g_free (c->phase);
  g_free (c->name);
  g_free (c->uuid);
  g_free (c->hostname);
  g_free (c->copy_mode);
  g_free (c->postcopy_refused);
  g_free (c->transport);
  g_free (c->source_host);
  g_free (c->source_qmp);
  g_strfreev (c->qemu_argv);
  g_free (c->layers_uri);
  g_ptr_array_unref (c->disks);
  g_free (c->dest_host);
  g_free (c->dest_domain);
  g_free (c->dest_run_dir);
  g_free (c->dest_qmp);
  g_free (c->dest_user_qmp);
  g_free (c->nbd_uri);
  g_free (c->migrate_uri);
  g_free (c->error_phase);
  g_free (c->error_message);
  g_free (c);
}

SmMigDisk *
sm_mig_disk_new (const char *name)
{
  SmMigDisk *d = g_new0 (SmMigDisk, 1);

  d->name = g_strdup (name);
  d->migrate = true;
  d->format = SM_IMAGE_FORMAT_RAW;
  d->layers = g_ptr_array_new_with_free_func (layer_free_cb);
  return d;
}

void
sm_mig_disk_free (SmMigDisk *d)
{
  if (!d)
    return;
  g_free (d->name);
  g_free (d->id);
  g_free (d->source_top);
  g_free (d->source_new_top);
  g_free (d->export);
  g_free (d->dest_top);
  g_ptr_array_unref (d->layers);
  g_free (d);
}

SmMigLayer *
sm_mig_layer_new (SmMigLayerRole role)
{
  SmMigLayer *l = g_new0 (SmMigLayer, 1);

  l->role = role;
  l->format = SM_IMAGE_FORMAT_RAW;
  l->backing_format = SM_IMAGE_FORMAT_LAST;
  return l;
}

void
sm_mig_layer_free (SmMigLayer *l)
{
  if (!l)
    return;
  g_free (l->file);
  g_free (l->name);
  g_free (l->backing);
  g_free (l->export);
  g_free (l);
}

SmMigDisk *
sm_mig_cookie_find_disk (const SmMigCookie *c, const char *name)
{
  guint i;

  for (i = 0; c && name && i < c->disks->len; i++) {
    SmMigDisk *d = g_ptr_array_index (c->disks, i);

    if (g_strcmp0 (d->name, name) == 0)
      return d;
  }
  return NULL;
}

/* ---- the attribute tables -------------------------------------------------- */

typedef enum {
  F_STRING,                    /* char *, absent when NULL */
  F_TOKEN,                     /* the same, a <choice> of the schema */
  F_U64,                       /* uint64_t, always written */
  F_PID,                       /* int64_t, absent when <= 0 (unknown) */
  F_PAUSE,                     /* int64_t, absent when < 0 (unknown) */
  F_BOOL,                      /* bool, 'yes' / 'no', always written */
  F_INT,                       /* int >= 0, always written (a negative one
                                  as 0: the schema's numbers are unsigned) */
  F_FORMAT,                    /* SmImageFormat, absent when _LAST */
  F_STORAGE,                   /* SmMigStorage */
  F_ROLE,                      /* SmMigLayerRole */
} FieldType;

typedef struct {
  const char *attr;
  FieldType type;
  size_t offset;
} Field;

#define FIELD(T, member, attr, type) { attr, type, offsetof (T, member) }

static const Field cookie_fields[] = {
  FIELD (SmMigCookie, id, "id", F_STRING),
  FIELD (SmMigCookie, phase, "phase", F_TOKEN),
  FIELD (SmMigCookie, storage, "storage", F_STORAGE),
  FIELD (SmMigCookie, bandwidth, "bandwidth", F_U64),
  FIELD (SmMigCookie, copy_mode, "copy-mode", F_TOKEN),
  FIELD (SmMigCookie, postcopy, "postcopy", F_BOOL),
  FIELD (SmMigCookie, postcopy_after_precopy, "postcopy-after-precopy", F_BOOL),
  FIELD (SmMigCookie, postcopy_fallback, "postcopy-fallback", F_BOOL),
  FIELD (SmMigCookie, postcopy_bandwidth, "postcopy-bandwidth", F_U64),
  FIELD (SmMigCookie, parallel, "parallel", F_INT),
  FIELD (SmMigCookie, transport, "transport", F_TOKEN),
  FIELD (SmMigCookie, link_timeout, "link-timeout", F_INT),
  FIELD (SmMigCookie, source_host, "source-host", F_STRING),
  FIELD (SmMigCookie, source_qmp, "source-qmp", F_STRING),
  FIELD (SmMigCookie, source_pid, "source-pid", F_PID),
  FIELD (SmMigCookie, source_running, "source-running", F_BOOL),
  FIELD (SmMigCookie, layers_uri, "layers-uri", F_STRING),
  FIELD (SmMigCookie, dest_host, "dest-host", F_STRING),
  FIELD (SmMigCookie, dest_domain, "dest-domain", F_STRING),
  FIELD (SmMigCookie, dest_run_dir, "dest-run-dir", F_STRING),
  FIELD (SmMigCookie, dest_qmp, "dest-qmp", F_STRING),
  FIELD (SmMigCookie, dest_user_qmp, "dest-user-qmp", F_STRING),
  FIELD (SmMigCookie, dest_pid, "dest-pid", F_PID),
  FIELD (SmMigCookie, nbd_uri, "nbd-uri", F_STRING),
  FIELD (SmMigCookie, migrate_uri, "migrate-uri", F_STRING),
  /* what became of the post-copy (prepare, perform, the recoveries) */
  FIELD (SmMigCookie, postcopy_refused, "postcopy-refused", F_STRING),
  FIELD (SmMigCookie, postcopy_used, "postcopy-used", F_BOOL),
  FIELD (SmMigCookie, postcopy_requests, "postcopy-requests", F_U64),
  FIELD (SmMigCookie, recoveries, "recoveries", F_INT),
  FIELD (SmMigCookie, link_resumes, "link-resumes", F_INT),
  FIELD (SmMigCookie, tunnel_bytes, "tunnel-bytes", F_PID),
};

static const Field result_fields[] = {
  FIELD (SmMigCookie, failed, "failed", F_BOOL),
  FIELD (SmMigCookie, error_phase, "error-phase", F_STRING),
  FIELD (SmMigCookie, error_message, "error-message", F_STRING),
  FIELD (SmMigCookie, dest_ran, "dest-ran", F_BOOL),
  FIELD (SmMigCookie, disk_bytes, "disk-bytes", F_U64),
  FIELD (SmMigCookie, ram_bytes, "ram-bytes", F_U64),
  FIELD (SmMigCookie, pause_us, "pause-us", F_PAUSE),
  FIELD (SmMigCookie, stopped_at_us, "stopped-at-us", F_PID),
  FIELD (SmMigCookie, resumed_at_us, "resumed-at-us", F_PID),
};

static const Field disk_fields[] = {
  FIELD (SmMigDisk, name, "name", F_STRING),
  FIELD (SmMigDisk, id, "id", F_STRING),
  FIELD (SmMigDisk, migrate, "migrate", F_BOOL),
  FIELD (SmMigDisk, format, "format", F_FORMAT),
  FIELD (SmMigDisk, capacity, "capacity", F_U64),
  FIELD (SmMigDisk, source_top, "source-top", F_STRING),
  FIELD (SmMigDisk, source_new_top, "source-new-top", F_STRING),
  FIELD (SmMigDisk, export, "export", F_STRING),
  FIELD (SmMigDisk, dest_top, "dest-top", F_STRING),
};

static const Field layer_fields[] = {
  FIELD (SmMigLayer, role, "role", F_ROLE),
  FIELD (SmMigLayer, file, "file", F_STRING),
  FIELD (SmMigLayer, name, "name", F_STRING),
  FIELD (SmMigLayer, format, "format", F_FORMAT),
  FIELD (SmMigLayer, virtual_size, "virtual-size", F_U64),
  FIELD (SmMigLayer, file_size, "file-size", F_U64),
  FIELD (SmMigLayer, allocated, "allocated", F_U64),
  FIELD (SmMigLayer, cluster_size, "cluster-size", F_U64),
  FIELD (SmMigLayer, backing, "backing", F_STRING),
  FIELD (SmMigLayer, backing_format, "backing-format", F_FORMAT),
  FIELD (SmMigLayer, export, "export", F_STRING),
};

#define AT(obj, f, T) ((T *) ((char *) (obj) + (f)->offset))

/* Appends the attributes of OBJ that FIELDS describe. */
static void
append_fields (GString *out, const void *obj, const Field *fields, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++) {
    const Field *f = &fields[i];
    g_autofree char *num = NULL;
    const char *value = NULL;
    int64_t v;

    switch (f->type) {
    case F_STRING:
    case F_TOKEN: value = *AT (obj, f, char *); break;
    case F_U64:
      value = num = g_strdup_printf ("%" G_GUINT64_FORMAT, *AT (obj, f, uint64_t));
      break;
    case F_PID:
    case F_PAUSE:
      v = *AT (obj, f, int64_t);
      if (v > 0 || (v == 0 && f->type == F_PAUSE))
        value = num = g_strdup_printf ("%" G_GINT64_FORMAT, v);
      break;
    case F_BOOL: value = *AT (obj, f, bool) ? "yes" : "no"; break;
    case F_INT:
      value = num = g_strdup_printf ("%d", MAX (*AT (obj, f, int), 0));
      break;
    case F_FORMAT:
      value = sm_image_format_to_string (*AT (obj, f, SmImageFormat));
      break;
    case F_STORAGE:
      value = sm_mig_storage_to_string (*AT (obj, f, SmMigStorage));
      break;
    case F_ROLE:
      value = sm_mig_layer_role_to_string (*AT (obj, f, SmMigLayerRole));
      break;
    }
    if (value)
      sm_xml_append_attr (out, f->attr, value);
  }
}

/* Reads into OBJ the attributes of NODE that FIELDS describe; an absent
 * one leaves its field as it is.  The schema has checked the tokens and
 * the digits; what is left is a number too large for its field.  WHAT
 * names the element for messages. */
static bool
read_fields (const xmlNode *node, void *obj, const Field *fields, size_t n,
             const char *what, GError **error)
{
  size_t i;

  for (i = 0; i < n; i++) {
    const Field *f = &fields[i];
    g_autofree char *value = sm_xml_get_attr (node, f->attr);
    guint64 num;

    if (!value)
      continue;
    /* The schema's <value>s and numbers allow whitespace around them
     * (XML Schema's whitespace="collapse"). */
    if (f->type != F_STRING)
      g_strstrip (value);
    switch (f->type) {
    case F_STRING:
    case F_TOKEN:
      g_free (*AT (obj, f, char *));
      *AT (obj, f, char *) = g_steal_pointer (&value);
      break;
    case F_U64:
    case F_PID:
    case F_PAUSE:
    case F_INT:
      if (!g_ascii_string_to_unsigned (value, 10, 0,
                                       f->type == F_U64 ? G_MAXUINT64 :
                                       f->type == F_INT ? G_MAXINT : G_MAXINT64,
                                       &num, NULL)) {
        g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                     "%s: %s='%s' is out of range", what, f->attr, value);
        return false;
      }
      if (f->type == F_U64)
        *AT (obj, f, uint64_t) = num;
      else if (f->type == F_INT)
        *AT (obj, f, int) = (int) num;
      else
        *AT (obj, f, int64_t) = (int64_t) num;
      break;
    case F_BOOL: *AT (obj, f, bool) = strcmp (value, "yes") == 0; break;
    case F_FORMAT:
      *AT (obj, f, SmImageFormat) = sm_image_format_from_string (value);
      break;
    case F_STORAGE:
      *AT (obj, f, SmMigStorage) = sm_mig_storage_from_string (value);
      break;
    case F_ROLE:
      *AT (obj, f, SmMigLayerRole) = sm_mig_layer_role_from_string (value);
      break;
    }
  }
  return true;
}

/* ---- model -> document ------------------------------------------------------ */

char *
sm_mig_cookie_format (const SmMigCookie *c)
{
  GString *out = g_string_new ("<qemu-migration>\n");
  g_auto(SmUri) nbd = { 0 };
  bool any_migrated = false;
  guint i, j;

  g_string_append (out, "  <name>");
  sm_xml_append_text (out, c->name ? c->name : "");
  g_string_append (out, "</name>\n  <uuid>");
  sm_xml_append_text (out, c->uuid ? c->uuid : NIL_UUID);
  g_string_append (out, "</uuid>\n");
  if (c->hostname) {
    g_string_append (out, "  <hostname>");
    sm_xml_append_text (out, c->hostname);
    g_string_append (out, "</hostname>\n");
  }

  /* libvirt's part: the port of a TCP NBD server, the disks it receives. */
  for (i = 0; i < c->disks->len; i++)
    any_migrated |= ((SmMigDisk *) g_ptr_array_index (c->disks, i))->migrate;
  if (c->nbd_uri && !sm_mig_uri_parse (c->nbd_uri, &nbd, NULL))
    memset (&nbd, 0, sizeof nbd);
  if (any_migrated || nbd.port) {
    g_string_append (out, "  <nbd");
    if (nbd.port)
      sm_xml_append_attr (out, "port", nbd.port);
    g_string_append (out, any_migrated ? ">\n" : "/>\n");
    for (i = 0; any_migrated && i < c->disks->len; i++) {
      const SmMigDisk *d = g_ptr_array_index (c->disks, i);
      g_autofree char *capacity = NULL;

      if (!d->migrate)
        continue;
      capacity = g_strdup_printf ("%" G_GUINT64_FORMAT, d->capacity);
      g_string_append (out, "    <disk");
      sm_xml_append_attr (out, "target", d->name ? d->name : "");
      sm_xml_append_attr (out, "capacity", capacity);
      g_string_append (out, "/>\n");
    }
    if (any_migrated)
      g_string_append (out, "  </nbd>\n");
  }

  g_string_append (out, "  <snapmig");
  append_fields (out, c, cookie_fields, G_N_ELEMENTS (cookie_fields));
  g_string_append (out, ">\n");
  if (c->qemu_argv) {
    g_string_append (out, "    <qemu-argv>\n");
    for (i = 0; c->qemu_argv[i]; i++) {
      g_string_append (out, "      <arg>");
      sm_xml_append_text (out, c->qemu_argv[i]);
      g_string_append (out, "</arg>\n");
    }
    g_string_append (out, "    </qemu-argv>\n");
  }
  for (i = 0; i < c->disks->len; i++) {
    const SmMigDisk *d = g_ptr_array_index (c->disks, i);

    g_string_append (out, "    <disk");
    append_fields (out, d, disk_fields, G_N_ELEMENTS (disk_fields));
    if (d->layers->len == 0) {
      g_string_append (out, "/>\n");
      continue;
    }
    g_string_append (out, ">\n");
    for (j = 0; j < d->layers->len; j++) {
      g_string_append (out, "      <layer");
      append_fields (out, g_ptr_array_index (d->layers, j), layer_fields,
                     G_N_ELEMENTS (layer_fields));
      g_string_append (out, "/>\n");
    }
    g_string_append (out, "    </disk>\n");
  }
  g_string_append (out, "    <result");
  append_fields (out, c, result_fields, G_N_ELEMENTS (result_fields));
  g_string_append (out, "/>\n  </snapmig>\n</qemu-migration>\n");
  return g_string_free (out, FALSE);
}

/* ---- meaning checks ------------------------------------------------------------ */

/* OBJECT ("disk 'vda'") may be NULL for a field of the cookie itself. */
static bool
check_path (const char *path, const char *source_name, const char *object,
            const char *what, GError **error)
{
  if (!path || g_path_is_absolute (path))
    return true;
  g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
               "%s: %s%s%s '%s' is not an absolute path", source_name,
               object ? object : "", object ? ": " : "", what, path);
  return false;
}

static bool
check_uri (const char *uri, const char *source_name, const char *what,
           GError **error)
{
  g_autoptr(GError) err = NULL;
  g_auto(SmUri) u = { 0 };

  if (!uri || sm_mig_uri_parse (uri, &u, &err))
    return true;
  g_set_error (error, SM_ERROR, SM_ERROR_INVALID, "%s: %s: %s", source_name,
               what, err->message);
  return false;
}

static bool
check_layer (const SmMigLayer *l, const char *object, const char *source_name,
             GError **error)
{
  if (!check_path (l->file, source_name, object, "file", error))
    return false;
  if (l->role == SM_MIG_LAYER_COPY && !l->export) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "%s: %s: a copy layer needs the export name of its bytes "
                 "on the source's layer server (export='...')",
                 source_name, object);
    return false;
  }
  if (l->role != SM_MIG_LAYER_SHARED &&
      (!l->name || strchr (l->name, '/') || strcmp (l->name, ".") == 0 ||
       strcmp (l->name, "..") == 0)) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "%s: %s: a %s layer needs a plain file name on the "
                 "destination (name='%s')", source_name, object,
                 sm_mig_layer_role_to_string (l->role), l->name ? l->name : "");
    return false;
  }
  return true;
}

static bool
check_disk (const SmMigCookie *c, guint index, const char *source_name,
            GError **error)
{
  const SmMigDisk *d = g_ptr_array_index (c->disks, index);
  g_autofree char *object = g_strdup_printf ("disk '%s'", d->name);
  guint j;

  for (j = 0; j < index; j++)
    if (g_strcmp0 (((SmMigDisk *) g_ptr_array_index (c->disks, j))->name,
                   d->name) == 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "%s: two disks are named '%s' (disk names are unique)",
                   source_name, d->name);
      return false;
    }
  if (!check_path (d->source_top, source_name, object, "source-top", error) ||
      !check_path (d->source_new_top, source_name, object, "source-new-top",
                   error) ||
      !check_path (d->dest_top, source_name, object, "dest-top", error))
    return false;
  for (j = 0; j < d->layers->len; j++) {
    const SmMigLayer *l = g_ptr_array_index (d->layers, j);
    g_autofree char *layer = g_strdup_printf ("disk '%s' layer %u ('%s')",
                                              d->name, j, l->file);

    if (!check_layer (l, layer, source_name, error))
      return false;
  }
  return true;
}

static bool
cookie_check (const SmMigCookie *c, const char *source_name, GError **error)
{
  const struct { const char *path, *what; } paths[] = {
    { c->source_qmp, "source-qmp" },
    { c->dest_domain, "dest-domain" },
    { c->dest_run_dir, "dest-run-dir" },
    { c->dest_qmp, "dest-qmp" },
    { c->dest_user_qmp, "dest-user-qmp" },
  };
  guint i;

  for (i = 0; i < G_N_ELEMENTS (paths); i++)
    if (!check_path (paths[i].path, source_name, NULL, paths[i].what, error))
      return false;
  if (!check_uri (c->layers_uri, source_name, "layers-uri", error) ||
      !check_uri (c->nbd_uri, source_name, "nbd-uri", error) ||
      !check_uri (c->migrate_uri, source_name, "migrate-uri", error))
    return false;
  for (i = 0; i < c->disks->len; i++)
    if (!check_disk (c, i, source_name, error))
      return false;
  return true;
}

/* ---- document -> model -------------------------------------------------------- */

static bool
read_disk (const xmlNode *node, SmMigCookie *c, const char *source_name,
           GError **error)
{
  g_autofree char *name = sm_xml_get_attr (node, "name");
  g_autofree char *what = g_strdup_printf ("%s: disk '%s'", source_name, name);
  SmMigDisk *d = sm_mig_disk_new (name);
  const xmlNode *child;

  g_ptr_array_add (c->disks, d);
  if (!read_fields (node, d, disk_fields, G_N_ELEMENTS (disk_fields), what,
                    error))
    return false;
  for (child = node->children; child; child = child->next) {
    SmMigLayer *l;

    if (!sm_xml_is_element (child, "layer"))
      continue;
    l = sm_mig_layer_new (SM_MIG_LAYER_TOP);
    g_ptr_array_add (d->layers, l);
    if (!read_fields (child, l, layer_fields, G_N_ELEMENTS (layer_fields),
                      what, error))
      return false;
  }
  return true;
}

static bool
read_snapmig (const xmlNode *node, SmMigCookie *c, const char *source_name,
              GError **error)
{
  const xmlNode *child, *arg;

  if (!read_fields (node, c, cookie_fields, G_N_ELEMENTS (cookie_fields),
                    source_name, error))
    return false;
  for (child = node->children; child; child = child->next) {
    if (sm_xml_is_element (child, "qemu-argv")) {
      g_autoptr(GPtrArray) argv = g_ptr_array_new ();

      for (arg = child->children; arg; arg = arg->next)
        if (sm_xml_is_element (arg, "arg"))
          g_ptr_array_add (argv, sm_xml_get_text (arg));
      g_ptr_array_add (argv, NULL);
      c->qemu_argv = (char **) g_ptr_array_free (g_steal_pointer (&argv), FALSE);
    }
    else if (sm_xml_is_element (child, "disk")) {
      if (!read_disk (child, c, source_name, error))
        return false;
    }
    else if (sm_xml_is_element (child, "result") &&
             !read_fields (child, c, result_fields,
                           G_N_ELEMENTS (result_fields), source_name, error))
      return false;
  }
  return true;
}

/* <nbd>: with <snapmig>, every disk it names must be one of snapmig's;
 * without, it is where the disks come from. */
static bool
read_nbd (const xmlNode *node, SmMigCookie *c, bool have_snapmig,
          const char *source_name, GError **error)
{
  const xmlNode *child;

  for (child = node->children; child; child = child->next) {
    g_autofree char *target = NULL;
    g_autofree char *capacity = NULL;
    guint64 bytes = 0;
    SmMigDisk *d;

    if (!sm_xml_is_element (child, "disk"))
      continue;
    target = sm_xml_get_attr (child, "target");
    capacity = sm_xml_get_attr (child, "capacity");
    if (capacity)
      g_strstrip (capacity);
    if (capacity && !g_ascii_string_to_unsigned (capacity, 10, 0, G_MAXUINT64,
                                                 &bytes, NULL)) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "%s: disk '%s' of <nbd>: capacity='%s' is not a number "
                   "of bytes", source_name, target, capacity);
      return false;
    }
    if (!have_snapmig) {
      d = sm_mig_disk_new (target);
      d->capacity = bytes;
      g_ptr_array_add (c->disks, d);
      continue;
    }
    d = sm_mig_cookie_find_disk (c, target);
    if (!d) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "%s: line %ld: disk '%s' of <nbd> is not a disk of "
                   "<snapmig>", source_name, xmlGetLineNo (child), target);
      return false;
    }
    /* libvirt's reader takes the size from <nbd>: it must be ours. */
    if (capacity && bytes != d->capacity) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "%s: line %ld: disk '%s': <nbd> says capacity='%s', "
                   "<snapmig> capacity='%" G_GUINT64_FORMAT "'", source_name,
                   xmlGetLineNo (child), target, capacity, d->capacity);
      return false;
    }
  }
  return true;
}

SmMigCookie *
sm_mig_cookie_parse_named (const char *xml, size_t len,
                           const char *source_name, GError **error)
{
  g_autoptr(xmlDoc) doc = sm_xml_parse_validated (xml, len, "qemu-migration",
                                                  source_name, error);
  g_autoptr(SmMigCookie) c = NULL;
  const xmlNode *root, *child, *nbd = NULL, *snapmig = NULL;

  if (!doc)
    return NULL;
  c = sm_mig_cookie_new ();
  root = xmlDocGetRootElement (doc);
  for (child = root->children; child; child = child->next) {
    if (sm_xml_is_element (child, "name") || sm_xml_is_element (child, "uuid") ||
        sm_xml_is_element (child, "hostname")) {
      char **field = sm_xml_is_element (child, "name") ? &c->name
        : sm_xml_is_element (child, "uuid") ? &c->uuid : &c->hostname;

      g_free (*field);
      *field = sm_xml_get_text (child);
    }
    else if (sm_xml_is_element (child, "nbd"))
      nbd = child;
    else if (sm_xml_is_element (child, "snapmig"))
      snapmig = child;
  }
  /* What sm_mig_cookie_format writes for absent ones. */
  if (c->name && !*c->name)
    g_clear_pointer (&c->name, g_free);
  if (c->uuid && g_ascii_strcasecmp (c->uuid, NIL_UUID) == 0)
    g_clear_pointer (&c->uuid, g_free);

  if (snapmig && !read_snapmig (snapmig, c, source_name, error))
    return NULL;
  if (nbd && !read_nbd (nbd, c, snapmig != NULL, source_name, error))
    return NULL;
  if (!cookie_check (c, source_name, error))
    return NULL;
  sm_debug (LOG_DOMAIN, "%s: %u disks, phase %s", source_name, c->disks->len,
            c->phase ? c->phase : "(none)");
  return g_steal_pointer (&c);
}

SmMigCookie *
sm_mig_cookie_parse (const char *xml, gssize len, GError **error)
{
  g_return_val_if_fail (xml != NULL, NULL);
  return sm_mig_cookie_parse_named (xml, len < 0 ? strlen (xml) : (size_t) len,
                                    "migration cookie", error);
}
