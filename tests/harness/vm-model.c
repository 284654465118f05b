/* A VM described by hand, as the planners see it (SmLsmVm): for unit tests
 * of the live storage migration and cross-host migration planners. */
#include <string.h>

#include "vm-model.h"


static SmImageInfo *
image_info (const char *path, SmImageFormat format, uint64_t size,
       const char *backing, const char *backing_format)
{
  SmImageInfo *info = g_new0 (SmImageInfo, 1);

  info->path = g_strdup (path);
  info->format = format;
  info->virtual_size = size;
  info->file_size = size;
  info->allocated_bytes = 1 << 20;
  if (format == SM_IMAGE_FORMAT_QCOW2) {
    info->qcow2_version = 3;
    info->cluster_bits = 16;
    info->cluster_size = 65536;
  }
  info->backing_file = g_strdup (backing);
  info->backing_format = g_strdup (backing_format);
  return info;
}

SmBlockLayer *
sm_test_block_layer (const char *path, const char *format, uint64_t size)
{
  SmBlockLayer *l = g_new0 (SmBlockLayer, 1);

  l->filename = g_strdup (path);
  l->format = g_strdup (format);
  l->virtual_size = size;
  return l;
}

static void
block_layer_free (gpointer p)
{
  SmBlockLayer *l = p;

  g_free (l->filename);
  g_free (l->format);
  g_free (l);
}

/* Adds disk DEVICE whose chain is PATHS (top first; "x.raw" files are raw,
 * the others qcow2 backed by the next, by base name). */
void
sm_test_vm_add_disk (SmLsmVm *vm, const char *device, const char *const *paths,
          uint64_t size)
{
  SmBlockDisk *disk = g_new0 (SmBlockDisk, 1);
  SmImageChain *chain = g_new0 (SmImageChain, 1);
  size_t i;

  disk->device = g_strdup (device);
  disk->node_name = g_strdup_printf ("#node-%s", device);
  disk->chain = g_ptr_array_new_with_free_func (block_layer_free);
  chain->layers = g_ptr_array_new_with_free_func (
    (GDestroyNotify) sm_image_info_free);
  for (i = 0; paths[i]; i++) {
    bool raw = g_str_has_suffix (paths[i], ".raw");
    const char *next = paths[i + 1];
    g_autofree char *next_base = next ? g_path_get_basename (next) : NULL;

    g_ptr_array_add (disk->chain, sm_test_block_layer (paths[i], raw ? "raw" : "qcow2",
                                               size));
    g_ptr_array_add (chain->layers,
                     image_info (paths[i], raw ? SM_IMAGE_FORMAT_RAW
                                          : SM_IMAGE_FORMAT_QCOW2, size,
                            next_base,
                            next ? (g_str_has_suffix (next, ".raw") ? "raw"
                                                                    : "qcow2")
                                 : NULL));
  }
  g_ptr_array_add (vm->disks, disk);
  g_hash_table_insert (vm->chains, g_strdup (device), chain);
}

/* The acceptance test's VM: drive0 base <- snap1, drive1 raw, drive2 qcow2. */
SmLsmVm *
sm_test_three_disk_vm (void)
{
  SmLsmVm *vm = sm_lsm_vm_new ();
  static const char *const d0[] = { "/A/snap1.qcow2", "/A/base.qcow2", NULL };
  static const char *const d1[] = { "/A/d1.raw", NULL };
  static const char *const d2[] = { "/A/d2.qcow2", NULL };

  sm_test_vm_add_disk (vm, "drive0", d0, 64 << 20);
  sm_test_vm_add_disk (vm, "drive1", d1, 32 << 20);
  sm_test_vm_add_disk (vm, "drive2", d2, 16 << 20);
  vm->has_transaction = true;
  vm->has_copy_mode = true;
  vm->run_state = g_strdup ("running");
  return vm;
}

