/* libsnapmig — files in use by other processes or other VMs (see
 * lsm-inuse.h). */
#include "lsm-inuse.h"

#include <string.h>

#include "image-lock.h"
#include "lsm.h"
#include "lsm-private.h"

static void
add (GHashTable *known, const char *path, const char *who)
{
  if (path && *path && !g_hash_table_contains (known, path))
    g_hash_table_insert (known, g_canonicalize_filename (path, "/"),
                         g_strdup (who));
}

static void
add_created (GHashTable *known, const char *record, const char *who)
{
  g_autoptr(SmCreatedFiles) files = sm_created_files_load (record, NULL);
  const char *const *p;

  if (!files)
    return;
  for (p = sm_created_files_paths (files, NULL); *p; p++)
    add (known, *p, who);
}

/* STATE/vms/KEY/snapshots/NAME.xml: the files a snapshot names (its disks'
 * sources and mirrors), as validate counts them. */
static void
add_snapshots (GHashTable *known, const char *vm_dir, const char *vm)
{
  g_autofree char *snap_dir = g_build_filename (vm_dir, "snapshots", NULL);
  g_autoptr(GDir) dir = g_dir_open (snap_dir, 0, NULL);
  const char *name;

  while (dir && (name = g_dir_read_name (dir))) {
    g_autofree char *path = g_build_filename (snap_dir, name, NULL);
    g_autofree char *who = NULL;
    g_autoptr(SmSnapshotDef) def = NULL;
    guint i;

    if (!g_str_has_suffix (name, ".xml") ||
        !(def = sm_snapshot_parse_file (path, NULL)))
      continue;
    who = g_strdup_printf ("VM %s (snapshot %s)", vm, def->name);
    for (i = 0; def->disks && i < def->disks->len; i++) {
      const SmSnapshotDisk *disk = def->disks->pdata[i];

      add (known, disk->source, who);
      add (known, disk->mirror_file, who);
    }
  }
}

/* One other VM's directory STATE/vms/KEY; the VM is named by the QMP
 * address its `vm` file records (KEY when there is none). */
static void
add_vm (GHashTable *known, const char *vm_dir, const char *key)
{
  g_autofree char *vm_file = g_build_filename (vm_dir, "vm", NULL);
  g_autofree char *vm = NULL;
  g_autofree char *lsm_dir = g_build_filename (vm_dir, "lsm", NULL);
  g_autofree char *journal_dir = g_build_filename (vm_dir, "journal", NULL);
  g_autoptr(GDir) dir = g_dir_open (lsm_dir, 0, NULL);
  const char *name;

  if (g_file_get_contents (vm_file, &vm, NULL, NULL))
    g_strstrip (vm);
  if (!vm || !*vm) {
    g_free (vm);
    vm = g_strdup (key);
  }
  key = vm;
  while (dir && (name = g_dir_read_name (dir))) {
    g_autofree char *path = g_build_filename (lsm_dir, name, NULL);
    g_autofree char *snapshot = NULL;
    g_autofree char *who = NULL;

    if (g_str_has_suffix (name, ".copy.json")) {
      g_autoptr(SmCopyStatus) status = sm_copy_status_load (path, NULL);
      guint i;

      snapshot = g_strndup (name, strlen (name) - strlen (".copy.json"));
      who = g_strdup_printf ("VM %s (snapshot %s)", key, snapshot);
      for (i = 0; status && i < status->layers->len; i++) {
        const SmCopyStatusLayer *l = status->layers->pdata[i];

        add (known, l->copy->source, who);
        add (known, l->copy->dest, who);
      }
    } else if (g_str_has_suffix (name, ".created")) {
      snapshot = g_strndup (name, strlen (name) - strlen (".created"));
      who = g_strdup_printf ("VM %s (snapshot %s)", key, snapshot);
      add_created (known, path, who);
    } else if (g_str_has_suffix (name, ".json")) {
      g_autofree char *text = NULL;
      g_autoptr(json_object) obj = NULL;
      g_autoptr(SmLsmInfo) info = NULL;
      guint i;

      if (!g_file_get_contents (path, &text, NULL, NULL) ||
          !(obj = json_tokener_parse (text)) ||
          !(info = sm_lsm_info_from_json (obj, NULL)))
        continue;
      who = g_strdup_printf ("VM %s (snapshot %s)", key, info->snapshot);
      for (i = 0; i < info->disks->len; i++) {
        const SmLsmDisk *d = info->disks->pdata[i];

        add (known, d->orig_top, who);
        add (known, d->new_top, who);
        add (known, d->mirror, who);
      }
    }
  }
  g_clear_pointer (&dir, g_dir_close);
  dir = g_dir_open (journal_dir, 0, NULL);
  while (dir && (name = g_dir_read_name (dir))) {
    g_autofree char *path = g_build_filename (journal_dir, name, NULL);
    g_autofree char *opid = NULL;
    g_autofree char *who = NULL;

    if (!g_str_has_suffix (name, ".created"))
      continue;
    opid = g_strndup (name, strlen (name) - strlen (".created"));
    who = g_strdup_printf ("VM %s (operation %s)", key, opid);
    add_created (known, path, who);
  }
  add_snapshots (known, vm_dir, vm);
}

GHashTable *
sm_lsm_known_files (SmVmState *st)
{
  GHashTable *known = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                             g_free);
  g_autofree char *own = g_path_get_basename (sm_vm_state_dir (st));
  g_autofree char *vms = g_path_get_dirname (sm_vm_state_dir (st));
  g_autoptr(GDir) dir = g_dir_open (vms, 0, NULL);
  const char *key;

  while (dir && (key = g_dir_read_name (dir))) {
    g_autofree char *vm_dir = NULL;

    if (strcmp (key, own) == 0)
      continue;
    vm_dir = g_build_filename (vms, key, NULL);
    if (g_file_test (vm_dir, G_FILE_TEST_IS_DIR))
      add_vm (known, vm_dir, key);
  }
  return known;
}

pid_t
sm_lsm_own_qemu_pid (SmVmState *st)
{
  return sm_unix_socket_server_pid (sm_vm_state_canonical_address (st));
}

bool
sm_lsm_check_not_in_use (GHashTable *known, const char *path, pid_t own_pid,
                         GError **error)
{
  g_autofree char *canon = g_canonicalize_filename (path, "/");
  const char *who = known ? g_hash_table_lookup (known, canon) : NULL;

  if (who) {
    sm_error_set_with_object (error, SM_ERROR_IN_USE, path,
                              "%s: in use by %s", path, who);
    return false;
  }
  return sm_image_check_unlocked (path, own_pid, error);
}
