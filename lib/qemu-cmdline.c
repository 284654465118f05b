/* libsnapmig — a destination QEMU's command line derived from the source's
 * (see qemu-proc.h).
 *
 * QEMU reads its command line option by option: "-opt" or "--opt", then
 * the next argument as its value unless the option takes none; an argument
 * that is not an option is a disk image (-hda).  Most values are QemuOpts or
 * keyval strings, comma-separated items in which ",," stands for a comma;
 * -blockdev also takes JSON.  Only the options that name a disk, a socket, a
 * pidfile or a log are parsed and written again; every other argument is
 * kept byte for byte.
 */
#include "qemu-proc.h"

#include <string.h>
#include <json-c/json.h>

/* The options that take no value (QEMU 7.2's qemu-options.hx, plus a few
 * older ones so that a command line of an older QEMU is read right). */
static const char *const no_value_options[] = {
  "h", "help", "version", "mem-prealloc", "audio-help", "snapshot", "usb",
  "nographic", "portrait", "full-screen", "win2k-hack", "no-fd-bootchk",
  "no-acpi", "no-hpet", "singlestep", "preconfig", "S", "s", "enable-kvm",
  "xen-attach", "xen-domid-restrict", "no-reboot", "no-shutdown",
  "daemonize", "only-migratable", "nodefaults", "no-user-config",
  "async-teardown", "enable-sync-profile", "semihosting", "no-quit",
  "alt-grab", "ctrl-grab", "no-frame", "sdl", "curses", "no-kvm",
  "enable-fips", "nodefconfig", "old-param", NULL,
};

/* Options whose value is a disk image path, as -hda's. */
static const char *const disk_options[] = {
  "hda", "hdb", "hdc", "hdd", "cdrom", "fda", "fdb", "mtdblock", "sd",
  "pflash", NULL,
};

/* Options whose value is a character device in QEMU's short syntax
 * ("unix:PATH[,OPTS]", "mon:unix:...", "chardev:ID", "stdio", ...). */
static const char *const chardev_options[] = {
  "qmp", "qmp-pretty", "monitor", "serial", "parallel", "debugcon", "gdb",
  NULL,
};

static bool
in_list (const char *const *list, const char *name)
{
  return g_strv_contains (list, name);
}

/* One item of a QemuOpts/keyval string: KEY=VALUE; a bare value of the
 * option's implied key (KEY NULL); or a bare flag (VALUE NULL). */
typedef struct {
  char *key;
  char *value;
} OptItem;

static void
opt_item_free (gpointer p)
{
  OptItem *it = p;

  g_free (it->key);
  g_free (it->value);
  g_free (it);
}

/* Splits S at single commas (",," is a comma); the first bare item is the
 * value of the implied key when IMPLIED. */
static GPtrArray *
opts_parse (const char *s, bool implied)
{
  GPtrArray *items = g_ptr_array_new_with_free_func (opt_item_free);
  g_autoptr(GString) cur = g_string_new (NULL);
  const char *p = s;

  for (;;) {
    if (*p == ',' && p[1] == ',') {
      g_string_append_c (cur, ',');
      p += 2;
      continue;
    }
    if (*p && *p != ',') {
      g_string_append_c (cur, *p++);
      continue;
    }
    {
      OptItem *it = g_new0 (OptItem, 1);
      char *eq = strchr (cur->str, '=');

      if (eq) {
        it->key = g_strndup (cur->str, eq - cur->str);
        it->value = g_strdup (eq + 1);
      } else if (implied && items->len == 0) {
        it->value = g_strdup (cur->str);
      } else {
        it->key = g_strdup (cur->str);
      }
      g_ptr_array_add (items, it);
      g_string_truncate (cur, 0);
    }
    if (!*p)
      break;
    p++;
  }
  return items;
}

static void
append_escaped (GString *s, const char *text)
{
  for (; *text; text++) {
    if (*text == ',')
      g_string_append_c (s, ',');
    g_string_append_c (s, *text);
  }
}

static char *
opts_format (GPtrArray *items)
{
  GString *s = g_string_new (NULL);
  guint i;

  for (i = 0; i < items->len; i++) {
    const OptItem *it = items->pdata[i];

    if (i)
      g_string_append_c (s, ',');
    if (it->key)
      append_escaped (s, it->key);
    if (it->key && it->value)
      g_string_append_c (s, '=');
    if (it->value)
      append_escaped (s, it->value);
  }
  return g_string_free (s, false);
}

/* The item of KEY (NULL: the implied key's bare value). */
static OptItem *
opts_find (GPtrArray *items, const char *key)
{
  guint i;

  for (i = 0; i < items->len; i++) {
    OptItem *it = items->pdata[i];

    if (key ? g_strcmp0 (it->key, key) == 0 && it->value : !it->key)
      return it;
  }
  return NULL;
}

/* The implied key's value, given bare or as KEY=. */
static const char *
opts_implied (GPtrArray *items, const char *key)
{
  OptItem *it = opts_find (items, NULL);

  if (!it)
    it = opts_find (items, key);
  return it ? it->value : NULL;
}

static void
opts_set (OptItem *it, const char *value)
{
  g_free (it->value);
  it->value = g_strdup (value);
}

/* A QemuOpts boolean: KEY=on|yes|true|y, bare KEY (on) or noKEY (off);
 * the last one given counts; absent is off. */
static bool
opts_bool (GPtrArray *items, const char *key)
{
  bool on = false;
  guint i;

  for (i = 0; i < items->len; i++) {
    const OptItem *it = items->pdata[i];

    if (!it->key)
      continue;
    if (!it->value && strcmp (it->key, key) == 0)
      on = true;
    else if (!it->value && g_str_has_prefix (it->key, "no") &&
             strcmp (it->key + 2, key) == 0)
      on = false;
    else if (it->value && strcmp (it->key, key) == 0)
      on = g_strv_contains ((const char *const[]) { "on", "yes", "true", "y",
                                                    NULL }, it->value);
  }
  return on;
}

typedef struct {
  const SmQemuRewrite *rw;
  GHashTable *moved;           /* source path → path in run_dir */
  GHashTable *used;            /* base names taken in run_dir */
  GHashTable *chardevs;        /* chardev id → its socket's new path */
  GPtrArray *monitors;         /* control monitors in order: "p:PATH" or
                                  "c:CHARDEV-ID" */
  GPtrArray *out;
} Rewriter;

/* PATH's place in run_dir: the same base name, "NAME-2.EXT", "NAME-3.EXT"...
 * when taken by another path.  The same source path always maps alike. */
static const char *
move_to_run_dir (Rewriter *r, const char *path)
{
  const char *done = g_hash_table_lookup (r->moved, path);
  g_autofree char *base = NULL;
  char *name, *dot;
  unsigned n;

  if (done)
    return done;
  base = g_path_get_basename (path);
  name = g_strdup (base);
  dot = strrchr (base, '.');
  if (dot == base)
    dot = NULL;
  for (n = 2; g_hash_table_contains (r->used, name); n++) {
    g_free (name);
    name = dot ? g_strdup_printf ("%.*s-%u%s", (int) (dot - base), base, n,
                                  dot)
               : g_strdup_printf ("%s-%u", base, n);
  }
  g_hash_table_add (r->used, name);
  g_hash_table_insert (r->moved, g_strdup (path),
                       g_build_filename (r->rw->run_dir, name, NULL));
  return g_hash_table_lookup (r->moved, path);
}

/* The destination of the disk image PATH, NULL when it is not migrated
 * (stays as it is). */
static const char *
disk_lookup (Rewriter *r, const char *path)
{
  const char *to;
  g_autofree char *canon = NULL;

  if (!r->rw->path_map)
    return NULL;
  if ((to = g_hash_table_lookup (r->rw->path_map, path)))
    return to;
  if (!g_path_is_absolute (path))
    return NULL;
  canon = g_canonicalize_filename (path, "/");
  return g_hash_table_lookup (r->rw->path_map, canon);
}

/* The protocol prefix QEMU sees in a file name ("nbd" in
 * "nbd://host/export"): a colon before any slash. */
static char *
path_protocol (const char *path)
{
  const char *colon = strchr (path, ':');
  const char *slash = strchr (path, '/');

  if (!colon || colon == path || (slash && slash < colon))
    return NULL;
  return g_strndup (path, colon - path);
}

static bool
is_file_protocol (const char *driver)
{
  return !driver || strcmp (driver, "file") == 0 ||
         strcmp (driver, "host_device") == 0 ||
         strcmp (driver, "host_cdrom") == 0;
}

/* Maps the disk image PATH of OPTION into *TO (PATH itself when it is not
 * migrated); a migrated disk reached through another protocol than a file
 * (DRIVER, or a "proto:" prefix) is refused: its data is not in a file
 * snapmig can copy. */
static bool
map_disk (Rewriter *r, const char *option, const char *path,
          const char *driver, const char **to, GError **error)
{
  g_autofree char *proto = path_protocol (path);
  const char *mapped = disk_lookup (r, path);

  *to = mapped ? mapped : path;
  if (mapped && (!is_file_protocol (driver) || (proto && !driver))) {
    g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED,
                 "%s: disk '%s' is reached through the %s protocol, not a "
                 "file: snapmig cannot migrate it; give the destination's "
                 "command line with --dest-qemu", option, path,
                 driver ? driver : proto);
    return false;
  }
  return true;
}

static bool
refuse (const char *option, const char *why, GError **error)
{
  g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED,
               "%s: %s; give the destination QEMU's command line with "
               "--dest-qemu", option, why);
  return false;
}

/* A "backing" value that names another node (not none). */
static bool
names_backing_node (const char *value)
{
  return value && *value && strcmp (value, "null") != 0;
}

/* -drive and -blockdev key=value: disk paths under "file" (-drive),
 * "filename" and any "CHILD.filename", the protocol driver next to each. */
static bool
rewrite_disk_opts (Rewriter *r, const char *option, bool blockdev,
                   const char *value, char **out, GError **error)
{
  g_autoptr(GPtrArray) items = opts_parse (value, false);
  bool changed = false;
  guint i;

  for (i = 0; i < items->len; i++) {
    OptItem *it = items->pdata[i];
    g_autofree char *driver_key = NULL;
    const char *to;

    if (!it->key || !it->value)
      continue;
    if (blockdev && (strcmp (it->key, "backing") == 0 ||
                     g_str_has_suffix (it->key, ".backing")) &&
        names_backing_node (it->value)) {
      g_autofree char *why = g_strdup_printf (
          "%s=%s names another node as a backing file, a graph snapmig does "
          "not rewrite", it->key, it->value);
      return refuse (option, why, error);
    }
    if (!blockdev && strcmp (it->key, "snapshot") == 0 &&
        strcmp (it->value, "on") == 0)
      return refuse (option, "snapshot=on: its temporary overlay cannot be "
                     "migrated", error);
    if (!blockdev && strcmp (it->key, "file") == 0)
      driver_key = g_strdup ("file.driver");
    else if (strcmp (it->key, "filename") == 0)
      driver_key = g_strdup ("driver");
    else if (g_str_has_suffix (it->key, ".filename"))
      driver_key = g_strdup_printf ("%.*s.driver",
                                    (int) strlen (it->key) - 9, it->key);
    else
      continue;
    {
      OptItem *drv = opts_find (items, driver_key);

      if (!map_disk (r, option, it->value, drv ? drv->value : NULL, &to,
                     error))
        return false;
    }
    if (strcmp (to, it->value) != 0) {
      const char *fmt = r->rw->format_map ?
                        g_hash_table_lookup (r->rw->format_map, to) : NULL;

      opts_set (it, to);
      changed = true;
      /* the copy has another format (a raw disk gets a qcow2 top) */
      if (fmt) {
        const char *fkey = blockdev ? "driver" : "format";
        OptItem *f = opts_find (items, fkey);

        if (blockdev && strcmp (it->key, "file.filename") != 0)
          continue;
        if (f) {
          opts_set (f, fmt);
        } else {
          OptItem *add = g_new0 (OptItem, 1);
          add->key = g_strdup (fkey);
          add->value = g_strdup (fmt);
          g_ptr_array_add (items, add);
        }
      }
    }
  }
  *out = changed ? opts_format (items) : g_strdup (value);
  return true;
}

/* -blockdev JSON: every "filename" (protocol: the "driver" beside it), a
 * "backing" that names a node refused. */
static bool
rewrite_blockdev_json (Rewriter *r, const char *option, json_object *obj,
                       bool *changed, GError **error)
{
  json_object *drv = NULL;
  const char *driver;

  json_object_object_get_ex (obj, "driver", &drv);
  driver = json_object_is_type (drv, json_type_string)
             ? json_object_get_string (drv) : NULL;
  json_object_object_foreach (obj, key, val) {
    if (strcmp (key, "backing") == 0 &&
        json_object_is_type (val, json_type_string) &&
        names_backing_node (json_object_get_string (val))) {
      g_autofree char *why = g_strdup_printf (
          "\"backing\": \"%s\" names another node as a backing file, a graph "
          "snapmig does not rewrite", json_object_get_string (val));
      return refuse (option, why, error);
    }
    if (strcmp (key, "filename") == 0 &&
        json_object_is_type (val, json_type_string)) {
      const char *from = json_object_get_string (val);
      const char *to;

      if (!map_disk (r, option, from, driver, &to, error))
        return false;
      if (strcmp (to, from) != 0) {
        json_object_object_add (obj, key, json_object_new_string (to));
        *changed = true;
      }
    } else if (json_object_is_type (val, json_type_object) &&
               !rewrite_blockdev_json (r, option, val, changed, error)) {
      return false;
    }
  }
  return true;
}

static bool
rewrite_blockdev (Rewriter *r, const char *option, const char *value,
                  char **out, GError **error)
{
  json_object *root;
  bool changed = false, ok;

  if (value[0] != '{')
    return rewrite_disk_opts (r, option, true, value, out, error);
  root = json_tokener_parse (value);
  if (!json_object_is_type (root, json_type_object)) {
    json_object_put (root);
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "%s: '%s' is not a JSON object", option, value);
    return false;
  }
  ok = rewrite_blockdev_json (r, option, root, &changed, error);
  if (ok)
    *out = changed ? g_strdup (json_object_to_json_string_ext (
                       root, JSON_C_TO_STRING_PLAIN |
                             JSON_C_TO_STRING_NOSLASHESCAPE))
                   : g_strdup (value);
  json_object_put (root);
  return ok;
}

/* -chardev: a listening socket's path (not an abstract one) and any
 * backend's logfile move into run_dir; the socket is remembered by id for
 * -mon.  A client socket (server=off) connects to a daemon outside QEMU (a
 * vhost-user backend, a console logger) and keeps its path: in run_dir
 * nobody would listen. */
static char *
rewrite_chardev (Rewriter *r, const char *value)
{
  g_autoptr(GPtrArray) items = opts_parse (value, true);
  const char *backend = opts_implied (items, "backend");
  OptItem *path = opts_find (items, "path");
  OptItem *id = opts_find (items, "id");
  OptItem *log = opts_find (items, "logfile");

  if (!path && !log)
    return g_strdup (value);
  /* a file or pipe output (a console log): the destination's own, so that
   * it never truncates the source's */
  if (path && (g_strcmp0 (backend, "file") == 0 ||
               g_strcmp0 (backend, "pipe") == 0))
    opts_set (path, move_to_run_dir (r, path->value));
  if (path && g_strcmp0 (backend, "socket") == 0 &&
      opts_bool (items, "server") && !opts_bool (items, "abstract")) {
    opts_set (path, move_to_run_dir (r, path->value));
    if (id)
      g_hash_table_insert (r->chardevs, g_strdup (id->value),
                           g_strdup (path->value));
  }
  if (log)
    opts_set (log, move_to_run_dir (r, log->value));
  return opts_format (items);
}

/* QEMU's short character device syntax (-qmp, -serial, ...):
 * "[mon:]unix:PATH,server[,OPTS]" moves PATH (a client socket stays, as
 * with -chardev); CONTROL (a QMP monitor) records the
 * monitor for *USER_QMP, also "chardev:ID". */
static char *
rewrite_chardev_short (Rewriter *r, const char *value, bool control)
{
  const char *rest = value;
  bool mon = g_str_has_prefix (rest, "mon:");
  g_autoptr(GPtrArray) items = NULL;
  OptItem *path;
  g_autofree char *opts = NULL;

  if (control && g_str_has_prefix (value, "chardev:"))
    g_ptr_array_add (r->monitors, g_strdup_printf ("c:%s", value + 8));
  if (mon)
    rest += 4;
  /* file:PATH and pipe:PATH (a console log): moved, so that the
   * destination never truncates the source's */
  if (g_str_has_prefix (rest, "file:") || g_str_has_prefix (rest, "pipe:")) {
    g_autofree char *kind = g_strndup (rest, 5);

    return g_strdup_printf ("%s%s%s", mon ? "mon:" : "", kind,
                            move_to_run_dir (r, rest + 5));
  }
  if (!g_str_has_prefix (rest, "unix:"))
    return g_strdup (value);
  items = opts_parse (rest + 5, true);
  path = opts_find (items, NULL);
  if (!path)
    path = opts_find (items, "path");
  if (!path || !opts_bool (items, "server"))
    return g_strdup (value);
  opts_set (path, move_to_run_dir (r, path->value));
  if (control)
    g_ptr_array_add (r->monitors, g_strdup_printf ("p:%s", path->value));
  opts = opts_format (items);
  return g_strdup_printf ("%sunix:%s", mon ? "mon:" : "", opts);
}

/* -mon [chardev=]ID,mode=control: a QMP monitor on chardev ID. */
static void
note_mon (Rewriter *r, const char *value)
{
  g_autoptr(GPtrArray) items = opts_parse (value, true);
  const char *id = opts_implied (items, "chardev");
  OptItem *mode = opts_find (items, "mode");

  if (id && mode && strcmp (mode->value, "control") == 0)
    g_ptr_array_add (r->monitors, g_strdup_printf ("c:%s", id));
}

/* -vnc unix:PATH[,OPTS] */
static char *
rewrite_vnc (Rewriter *r, const char *value)
{
  g_autoptr(GPtrArray) items = opts_parse (value, true);
  OptItem *display = opts_find (items, NULL);
  g_autofree char *to = NULL;

  if (!display || !g_str_has_prefix (display->value, "unix:"))
    return g_strdup (value);
  to = g_strconcat ("unix:", move_to_run_dir (r, display->value + 5), NULL);
  opts_set (display, to);
  return opts_format (items);
}

/* The rewritten value of OPTION (its name NAME without dashes), NULL with
 * ERROR set when it is refused. */
static char *
rewrite_value (Rewriter *r, const char *option, const char *name,
               const char *value, GError **error)
{
  char *out = NULL;

  if (in_list (disk_options, name)) {
    const char *to;

    return map_disk (r, option, value, NULL, &to, error) ? g_strdup (to)
                                                        : NULL;
  }
  if (strcmp (name, "drive") == 0)
    return rewrite_disk_opts (r, option, false, value, &out, error) ? out
                                                                   : NULL;
  if (strcmp (name, "blockdev") == 0)
    return rewrite_blockdev (r, option, value, &out, error) ? out : NULL;
  if (strcmp (name, "chardev") == 0)
    return rewrite_chardev (r, value);
  if (in_list (chardev_options, name))
    return rewrite_chardev_short (r, value, g_str_has_prefix (name, "qmp"));
  if (strcmp (name, "mon") == 0)
    note_mon (r, value);
  else if (strcmp (name, "pidfile") == 0 || strcmp (name, "D") == 0)
    return g_strdup (move_to_run_dir (r, value));
  else if (strcmp (name, "vnc") == 0)
    return rewrite_vnc (r, value);
  else if (strcmp (name, "readconfig") == 0) {
    refuse (option, "a configuration file's disks and sockets are not "
            "rewritten", error);
    return NULL;
  }
  return g_strdup (value);
}

/* The first control monitor on a unix socket, NULL when none. */
static char *
first_user_qmp (Rewriter *r)
{
  guint i;

  for (i = 0; i < r->monitors->len; i++) {
    const char *m = r->monitors->pdata[i];
    const char *path = m[0] == 'p' ? m + 2
                                   : g_hash_table_lookup (r->chardevs, m + 2);

    if (path)
      return g_strdup (path);
  }
  return NULL;
}

char **
sm_qemu_cmdline_rewrite (const char *const *argv, const SmQemuRewrite *rw,
                         char **user_qmp, GError **error)
{
  Rewriter r = { .rw = rw };
  g_autoptr(GHashTable) moved = NULL, used = NULL, chardevs = NULL;
  g_autoptr(GPtrArray) monitors = NULL, out = NULL;
  g_autofree char *qmp_dir = NULL;
  g_autoptr(GString) qmp = g_string_new ("unix:");
  guint i;

  g_return_val_if_fail (argv && argv[0], NULL);
  g_return_val_if_fail (rw && rw->run_dir && rw->qmp_path, NULL);
  r.moved = moved = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                           g_free);
  r.used = used = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                         NULL);
  r.chardevs = chardevs = g_hash_table_new_full (g_str_hash, g_str_equal,
                                                 g_free, g_free);
  r.monitors = monitors = g_ptr_array_new_with_free_func (g_free);
  r.out = out = g_ptr_array_new_with_free_func (g_free);

  /* snapmig's own socket keeps its name when it lives in run_dir. */
  qmp_dir = g_path_get_dirname (rw->qmp_path);
  if (strcmp (qmp_dir, rw->run_dir) == 0)
    g_hash_table_add (used, g_path_get_basename (rw->qmp_path));
  if (rw->ctl_qmp_path)
    g_hash_table_add (used, g_path_get_basename (rw->ctl_qmp_path));

  g_ptr_array_add (out, g_strdup (argv[0]));
  for (i = 1; argv[i]; i++) {
    const char *arg = argv[i];
    const char *name = arg + 1;
    const char *value;
    char *to;

    if (arg[0] != '-' || !arg[1]) {
      /* A bare image: -hda. */
      if (!(to = rewrite_value (&r, "-hda", "hda", arg, error)))
        return NULL;
      g_ptr_array_add (out, to);
      continue;
    }
    if (name[0] == '-' && name[1])
      name++;
    if (strcmp (name, "snapshot") == 0) {
      refuse (arg, "its temporary overlay cannot be migrated", error);
      return NULL;
    }
    if (in_list (no_value_options, name)) {
      if (strcmp (name, "S") != 0 && strcmp (name, "daemonize") != 0)
        g_ptr_array_add (out, g_strdup (arg));
      continue;
    }
    value = argv[i + 1];
    if (!value) {
      g_ptr_array_add (out, g_strdup (arg));   /* QEMU will say */
      break;
    }
    i++;
    if (strcmp (name, "incoming") == 0 || strcmp (name, "loadvm") == 0)
      continue;
    if (!(to = rewrite_value (&r, arg, name, value, error)))
      return NULL;
    g_ptr_array_add (out, g_strdup (arg));
    g_ptr_array_add (out, to);
  }

  append_escaped (qmp, rw->qmp_path);
  g_string_append (qmp, ",server=on,wait=off");
  g_ptr_array_add (out, g_strdup ("-S"));
  g_ptr_array_add (out, g_strdup ("-incoming"));
  g_ptr_array_add (out, g_strdup (rw->incoming ? rw->incoming : "defer"));
  g_ptr_array_add (out, g_strdup ("-qmp"));
  g_ptr_array_add (out, g_string_free (g_steal_pointer (&qmp), false));
  if (rw->ctl_qmp_path) {
    GString *ctl = g_string_new ("unix:");

    append_escaped (ctl, rw->ctl_qmp_path);
    g_string_append (ctl, ",server=on,wait=off");
    g_ptr_array_add (out, g_strdup ("-qmp"));
    g_ptr_array_add (out, g_string_free (ctl, false));
  }
  g_ptr_array_add (out, NULL);
  if (user_qmp)
    *user_qmp = first_user_qmp (&r);
  return (char **) g_ptr_array_free (g_steal_pointer (&out), false);
}

char **
sm_qemu_cmdline_from_string (const char *args, const SmQemuRewrite *rw,
                             char **user_qmp, GError **error)
{
  g_auto(GStrv) argv = NULL;
  g_autoptr(GError) err = NULL;
  SmQemuRewrite plain;

  g_return_val_if_fail (args && rw, NULL);
  if (!g_shell_parse_argv (args, NULL, &argv, &err)) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "--dest-qemu '%s': %s", args, err->message);
    return NULL;
  }
  plain = *rw;
  plain.path_map = NULL;
  return sm_qemu_cmdline_rewrite ((const char *const *) argv, &plain,
                                  user_qmp, error);
}
