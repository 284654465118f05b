/* libsnapmig — a libvirt domain's XML read into the VM view (see
 * vm-libvirt.h); compiled with or without libvirt. */
#include "vm-libvirt.h"

#include <string.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

G_DEFINE_AUTOPTR_CLEANUP_FUNC (xmlDoc, xmlFreeDoc)

static xmlNode *
child (xmlNode *node, const char *name)
{
  for (xmlNode *c = node ? node->children : NULL; c; c = c->next)
    if (c->type == XML_ELEMENT_NODE && strcmp ((const char *) c->name, name) == 0)
      return c;
  return NULL;
}

static char *
attr (xmlNode *node, const char *name)
{
  xmlChar *v = node ? xmlGetProp (node, (const xmlChar *) name) : NULL;
  char *s = v ? g_strdup ((const char *) v) : NULL;

  xmlFree (v);
  return s;
}

/* The file a <source> names: file= (file), dev= (block), name= (network). */
static char *
source_file (xmlNode *source)
{
  char *s = attr (source, "file");

  if (!s)
    s = attr (source, "dev");
  if (!s)
    s = attr (source, "name");
  return s;
}

static SmBlockLayer *
new_layer (char *file, char *format, bool read_only)
{
  SmBlockLayer *layer = g_new0 (SmBlockLayer, 1);

  layer->filename = file;
  layer->qemu_filename = g_strdup (file);
  layer->format = format;
  layer->read_only = read_only;
  return layer;
}

/* DISK's chain from its <source> and nested <backingStore>s.  libvirt
 * resolves backing names to files, so a layer's backing_file is the next
 * layer's file (absolute), not the name its header records. */
static void
fill_chain (SmBlockDisk *disk, xmlNode *xdisk)
{
  xmlNode *source;
  xmlNode *bs = child (xdisk, "backingStore");
  SmBlockLayer *prev;

  if (!disk->file)
    return;
  prev = new_layer (g_strdup (disk->file), g_strdup (disk->format),
                    disk->read_only);
  g_ptr_array_add (disk->chain, prev);
  while (bs && (source = child (bs, "source")) != NULL) {
    SmBlockLayer *layer = new_layer (source_file (source),
                                     attr (child (bs, "format"), "type"),
                                     true);

    if (!layer->filename || disk->chain->len >= SM_BLOCK_MAX_CHAIN) {
      sm_block_layer_free (layer);
      break;
    }
    prev->backing_file = g_strdup (layer->filename);
    g_ptr_array_add (disk->chain, layer);
    prev = layer;
    bs = child (bs, "backingStore");
  }
}

/* One <disk> of the live XML; *READY is its <mirror ready='yes'>. */
static SmBlockDisk *
parse_disk (xmlNode *xdisk, bool *ready)
{
  SmBlockDisk *disk = g_new0 (SmBlockDisk, 1);
  g_autofree char *mirror_ready = attr (child (xdisk, "mirror"), "ready");
  g_autofree char *alias = attr (child (xdisk, "alias"), "name");

  disk->device = attr (child (xdisk, "target"), "dev");
  if (alias)
    disk->qdev = g_strdup_printf ("/machine/peripheral/%s", alias);
  disk->format = attr (child (xdisk, "driver"), "type");
  disk->file = source_file (child (xdisk, "source"));
  disk->read_only = child (xdisk, "readonly") != NULL;
  disk->chain = g_ptr_array_new_with_free_func
    ((GDestroyNotify) sm_block_layer_free);
  fill_chain (disk, xdisk);
  *ready = g_strcmp0 (mirror_ready, "yes") == 0;
  return disk;
}

SmBlockVm *
sm_vm_libvirt_parse_xml (const char *xml, GHashTable **ready, GError **error)
{
  g_autoptr(SmBlockVm) view = g_new0 (SmBlockVm, 1);
  g_autoptr(GHashTable) readies = g_hash_table_new_full (g_str_hash,
                                                         g_str_equal, g_free,
                                                         NULL);
  g_autoptr(xmlDoc) doc = xmlReadMemory (xml, (int) strlen (xml), "domain.xml",
                                         NULL, XML_PARSE_NONET
                                         | XML_PARSE_NOERROR
                                         | XML_PARSE_NOWARNING);
  xmlNode *root = doc ? xmlDocGetRootElement (doc) : NULL;
  xmlNode *devices = root && strcmp ((const char *) root->name, "domain") == 0
    ? child (root, "devices") : NULL;

  if (!devices) {
    g_set_error (error, SM_ERROR, SM_ERROR_QMP_PROTOCOL,
                 "libvirt's domain XML has no <domain><devices>");
    return NULL;
  }
  view->disks = g_ptr_array_new_with_free_func
    ((GDestroyNotify) sm_block_disk_free);
  view->jobs = g_ptr_array_new_with_free_func
    ((GDestroyNotify) sm_block_job_free);
  view->nodes = g_ptr_array_new_with_free_func
    ((GDestroyNotify) sm_block_node_free);
  for (xmlNode *c = devices->children; c; c = c->next) {
    SmBlockDisk *disk;
    bool mirror_ready;

    if (c->type != XML_ELEMENT_NODE || strcmp ((const char *) c->name, "disk"))
      continue;
    disk = parse_disk (c, &mirror_ready);
    g_ptr_array_add (view->disks, disk);
    if (mirror_ready && disk->device)
      g_hash_table_add (readies, g_strdup (disk->device));
  }
  if (ready)
    *ready = g_steal_pointer (&readies);
  return g_steal_pointer (&view);
}
