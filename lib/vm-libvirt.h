/* libsnapmig — the parts of the libvirt backend (vm-libvirt.c) that need
 * no libvirt: reading a domain's XML into the VM view.  Built with or
 * without libvirt, so that recorded XML (tests/data/libvirt/) tests them
 * anywhere. */
#ifndef SM_VM_LIBVIRT_H
#define SM_VM_LIBVIRT_H

#include <glib.h>

#include "blockjob.h"
#include "error.h"

/* Parses the live XML of a domain (virDomainGetXMLDesc) into a view with
 * no jobs and no nodes: each <disk> (a cdrom without medium too, with an
 * empty chain) with its target as the device name, its alias as the qdev
 * path "/machine/peripheral/ALIAS", the <driver type> as the top's format,
 * and its chain from <source> down the nested <backingStore>s, the formats
 * libvirt states for each layer.  A layer's backing_file is the next
 * layer's file as libvirt resolved it (absolute), not the name its header
 * records; virtual sizes are 0 (libvirt's XML has none, and its block stats
 * with backing layers — virDomainListGetStats BLOCK + BACKING, `virsh
 * domstats --block --backing` — crashed QEMU 7.2 under libvirt 9.0 in 8 of
 * 12 block pulls they ran during, 0 of 12 without: read sizes from the
 * images).  *READY (caller
 * unrefs) gets the targets whose <mirror> says ready='yes'.
 * SM_ERROR_QMP_PROTOCOL when XML is no domain XML.  Caller frees.  Pure. */
SmBlockVm *sm_vm_libvirt_parse_xml (const char *xml, GHashTable **ready,
                                    GError **error) G_GNUC_WARN_UNUSED_RESULT;

#endif /* SM_VM_LIBVIRT_H */
