/* A VM described by hand for the planners' unit tests (no QEMU, no file). */
#ifndef SM_TEST_VM_MODEL_H
#define SM_TEST_VM_MODEL_H

#include <stdint.h>

#include "lsm.h"

/* One layer of a disk as query-block shows it. */
SmBlockLayer *sm_test_block_layer (const char *path, const char *format,
                                   uint64_t size);

/* Adds disk DEVICE whose chain is PATHS (top first; "x.raw" files are raw,
 * the others qcow2 backed by the next, by base name), each of SIZE. */
void sm_test_vm_add_disk (SmLsmVm *vm, const char *device,
                          const char *const *paths, uint64_t size);

/* The acceptance tests' VM: drive0 /A/base.qcow2 <- /A/snap1.qcow2 (64 MiB),
 * drive1 /A/d1.raw (32 MiB), drive2 /A/d2.qcow2 (16 MiB); running, with
 * transaction and copy-mode. */
SmLsmVm *sm_test_three_disk_vm (void);

#endif
