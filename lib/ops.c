/* libsnapmig — the commands' orchestration (ops.h): what snapmig(1)'s
 * create, pivot, abort, status and validate and the public API share.
 */
#include "ops.h"

#include <errno.h>
#include <stdlib.h>

int
sm_op_default_timeout_s (char **warning)
{
  const char *env = g_getenv ("SNAPMIG_DEFAULT_TIMEOUT");
  char *end;
  long v;

  if (warning)
    *warning = NULL;
  if (!env || !*env)
    return SM_OP_DEFAULT_TIMEOUT_S;
  errno = 0;
  v = strtol (env, &end, 10);
  if (errno == 0 && *end == '\0' && v > 0 && v <= SM_OP_TIMEOUT_MAX_S)
    return (int) v;
  if (warning)
    *warning = g_strdup_printf ("SNAPMIG_DEFAULT_TIMEOUT='%s' is not a "
                                "number of seconds; using %d", env,
                                SM_OP_DEFAULT_TIMEOUT_S);
  return SM_OP_DEFAULT_TIMEOUT_S;
}

SmQmp *
sm_op_connect (const char *address, int reply_timeout_s, GError **error)
{
  int ms = reply_timeout_s * 1000;
  SmQmp *qmp = sm_qmp_connect (address, ms, error);

  if (qmp)
    sm_qmp_set_timeout (qmp, ms);
  return qmp;
}

bool
sm_op_target_is_libvirt (const SmOpTarget *t)
{
  return t->uri != NULL || t->domain != NULL;
}

bool
sm_op_target_check (const char *command, const SmOpTarget *t, GError **error)
{
  const char *why = NULL;

  if (t->address && sm_op_target_is_libvirt (t))
    why = "--qmp and --connect/--domain are mutually exclusive (--qmp for a "
          "QEMU of your own, --connect URI --domain NAME for a libvirt "
          "domain)";
  else if (t->uri && !t->domain)
    why = "--connect URI needs --domain NAME";
  else if (t->domain && !t->uri)
    why = "--domain NAME needs --connect URI (\"qemu:///system\", ...)";
  else if (!t->address && !t->uri)
    why = "--qmp SOCKET or --connect URI --domain NAME is required";
  if (!why)
    return true;
  g_set_error (error, SM_ERROR, SM_ERROR_INVALID, "%s: %s", command, why);
  return false;
}

char *
sm_op_target_label (const SmOpTarget *t)
{
  if (sm_op_target_is_libvirt (t))
    return g_strdup_printf ("domain %s at %s", t->domain ? t->domain : "?",
                            t->uri ? t->uri : "?");
  return g_strdup (t->address);
}

SmVmAccess *
sm_op_access (const SmOpTarget *t, GError **error)
{
  int ms = t->reply_timeout_s * 1000;

  if (!sm_op_target_check ("snapmig", t, error))
    return NULL;
  if (sm_op_target_is_libvirt (t))
    return sm_vm_access_open_libvirt (t->uri, t->domain, ms, error);
  return sm_vm_access_open_qmp (t->address, ms, error);
}

bool
sm_op_require_qmp (const char *command, const SmOpTarget *t, GError **error)
{
  g_autofree char *label = NULL;

  if (!sm_op_target_is_libvirt (t))
    return true;
  label = sm_op_target_label (t);
  g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED,
               "%s: %s: this command does not work through libvirt yet "
               "(issue 14: disks, validate and status do)", command, label);
  return false;
}

bool
sm_op_open (const SmOpTarget *t, bool lock, SmQmp **qmp, SmVmState **st,
            GError **error)
{
  g_autofree char *state_dir = t->state_dir ? g_strdup (t->state_dir)
                                            : sm_state_default_dir ();

  *qmp = sm_op_connect (t->address, t->reply_timeout_s, error);
  if (!*qmp)
    return false;
  if (!st)
    return true;
  *st = sm_vm_state_open (state_dir, t->address, error);
  return *st && (!lock || sm_vm_state_lock (*st, error));
}

void
sm_op_result_clear (SmOpResult *r)
{
  g_clear_pointer (&r->plan, sm_lsm_plan_free);
  g_clear_pointer (&r->plan_text, g_free);
  sm_lsm_pivot_result_clear (&r->pivot);
  r->usage = false;
  r->waited = false;
}

/* The snapshot A describes, on VM. */
static SmSnapshotDef *
create_def (const SmLsmVm *vm, const SmOpCreateArgs *a, SmOpResult *r,
            GError **error)
{
  g_autoptr(SmSnapshotDef) def = NULL;
  bool mirrors = false;
  size_t i;

  if (a->xml_file)
    def = sm_snapshot_parse_file (a->xml_file, error);
  else if (a->xml_text)
    def = sm_snapshot_parse_string (a->xml_text, "the snapshot XML", error);
  else
    def = sm_lsm_def_from_options (vm, a->name, a->diskspecs,
                                   a->mirror_domain, error);
  if (!def)
    return NULL;
  /* A mirror destination requests mirroring by itself; the options that
   * only concern mirrors are refused without one, not ignored. */
  for (i = 0; i < def->disks->len; i++)
    mirrors |= ((SmSnapshotDisk *) def->disks->pdata[i])->mirror_file != NULL;
  if (!mirrors && (a->require_mirror || a->options.bandwidth ||
                   a->options.copy_mode)) {
    r->usage = true;
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "%s: no disk has a mirror destination (use "
                 "--mirror-domain DIR or --diskspec DISK,mirror=PATH)",
                 a->require_mirror ? "--mirror"
                 : a->options.bandwidth ? "--bandwidth" : "--copy-mode");
    return NULL;
  }
  return g_steal_pointer (&def);
}

bool
sm_op_create (const SmOpTarget *t, const SmOpCreateArgs *a, SmOpResult *r,
              GError **error)
{
  g_autoptr(SmQmp) qmp = NULL;
  g_autoptr(SmVmState) st = NULL;
  g_autoptr(SmLsmVm) vm = NULL;
  g_autoptr(SmSnapshotDef) def = NULL;
  g_autofree char *current = NULL;
  GError *err = NULL;
  bool has_mirrors = false;
  size_t i;

  /* A dry run touches nothing, not even the state directory. */
  if (!sm_op_open (t, true, &qmp, a->dry_run ? NULL : &st, error))
    return false;
  vm = sm_lsm_vm_query (qmp, error);
  if (!vm)
    return false;
  def = create_def (vm, a, r, error);
  if (!def)
    return false;
  current = st ? sm_vm_state_get_current (st, &err) : NULL;
  if (err) {
    g_propagate_error (error, err);
    return false;
  }
  r->plan = sm_lsm_plan_create (vm, def, current, &a->options, error);
  if (!r->plan)
    return false;
  if (a->dry_run) {
    r->plan_text = sm_lsm_plan_format (r->plan);
    return true;
  }
  for (i = 0; i < r->plan->info->disks->len; i++)
    has_mirrors |= ((SmLsmDisk *) r->plan->info->disks->pdata[i])->mirror
                   != NULL;
  if (a->wait && has_mirrors) {
    /* The wait is part of the create: an interruption during it rolls
     * back. */
    SmLsmWaitOptions wait = { t->wait_timeout_ms, a->progress, a->opaque };

    if (!sm_lsm_create_wait (qmp, st, r->plan, &wait, a->created,
                             a->created_opaque, error))
      return false;
    r->waited = true;
    return true;
  }
  if (!sm_lsm_create (qmp, st, r->plan, error))
    return false;
  if (a->created)
    a->created (r->plan, a->created_opaque);
  return true;
}

/* What pivot and abort share before they plan: the VM opened (locked
 * unless a dry run), its current snapshot, the move's record, a guest an
 * interrupted pivot paused resumed, the VM asked. */
static bool
switch_prepare (const SmOpTarget *t, const SmOpSwitchArgs *a, SmQmp **qmp,
                SmVmState **st, char **current, SmLsmInfo **info,
                SmLsmVm **vm, GError **error)
{
  GError *err = NULL;

  if (!sm_op_open (t, !a->dry_run, qmp, st, error))
    return false;
  if (current) {
    *current = sm_vm_state_get_current (*st, &err);
    if (err) {
      g_propagate_error (error, err);
      return false;
    }
  }
  *info = sm_lsm_info_load (*st, a->snapshot, error);
  if (!*info)
    return false;
  if (!a->dry_run) {
    g_auto(GStrv) said = sm_lsm_resume_interrupted (*qmp, *st, error);
    size_t i;

    if (!said)
      return false;
    for (i = 0; a->resumed && said[i]; i++)
      a->resumed (said[i], a->resumed_opaque);
  }
  *vm = sm_lsm_vm_query (*qmp, error);
  return *vm != NULL;
}

bool
sm_op_pivot (const SmOpTarget *t, const SmOpSwitchArgs *a, SmOpResult *r,
             GError **error)
{
  g_autoptr(SmQmp) qmp = NULL;
  g_autoptr(SmVmState) st = NULL;
  g_autoptr(SmLsmVm) vm = NULL;
  g_autoptr(SmLsmInfo) info = NULL;
  g_autofree char *current = NULL;
  SmLsmWaitOptions wait = { t->wait_timeout_ms, a->progress, a->opaque };

  if (!switch_prepare (t, a, &qmp, &st, &current, &info, &vm, error))
    return false;
  r->plan = sm_lsm_plan_pivot (vm, info, current, a->flags, error);
  if (!r->plan)
    return false;
  if (a->dry_run) {
    r->plan_text = sm_lsm_plan_format (r->plan);
    return true;
  }
  return sm_lsm_pivot (qmp, st, r->plan, &wait, &r->pivot, error);
}

bool
sm_op_abort (const SmOpTarget *t, const SmOpSwitchArgs *a, SmOpResult *r,
             GError **error)
{
  g_autoptr(SmQmp) qmp = NULL;
  g_autoptr(SmVmState) st = NULL;
  g_autoptr(SmLsmVm) vm = NULL;
  g_autoptr(SmLsmInfo) info = NULL;

  if (!switch_prepare (t, a, &qmp, &st, NULL, &info, &vm, error))
    return false;
  r->plan = sm_lsm_plan_abort (vm, info, error);
  if (!r->plan)
    return false;
  if (a->dry_run) {
    r->plan_text = sm_lsm_plan_format (r->plan);
    return true;
  }
  return sm_lsm_abort (qmp, st, r->plan, t->wait_timeout_ms, error);
}

/* SNAPSHOT, or else the current snapshot of ST; NULL when there is none
 * (ERROR set only when the current one could not be read). */
static char *
snapshot_or_current (SmVmState *st, const char *snapshot, GError **error)
{
  GError *err = NULL;
  char *current;

  if (snapshot)
    return g_strdup (snapshot);
  current = sm_vm_state_get_current (st, &err);
  if (!current && err)
    g_propagate_error (error, err);
  g_clear_error (&err);
  return current;
}

bool
sm_op_wait (const SmOpTarget *t, const char *snapshot, SmLsmProgress progress,
            void *opaque, GError **error)
{
  g_autoptr(SmQmp) qmp = NULL;
  g_autoptr(SmVmState) st = NULL;
  g_autoptr(SmLsmInfo) info = NULL;
  g_autoptr(GError) err = NULL;
  g_autofree char *name = NULL;
  SmLsmWaitOptions wait = { t->wait_timeout_ms, progress, opaque };

  if (!sm_op_open (t, false, &qmp, &st, error))
    return false;
  name = snapshot_or_current (st, snapshot, &err);
  if (!name) {
    if (err)
      g_propagate_error (error, g_steal_pointer (&err));
    else
      g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                   "the VM at '%s' has no current snapshot: nothing is "
                   "moving", t->address);
    return false;
  }
  info = sm_lsm_info_load (st, name, error);
  return info && sm_lsm_wait (qmp, st, info, &wait, error);
}

/* sm_op_status for a libvirt domain: its state is kept under its UUID
 * (SmVmAccess.state_key).  No move of one can be in progress while create
 * does not work through libvirt, so a snapshot to show is refused. */
static bool
status_libvirt (const SmOpTarget *t, const char *state_dir,
                const char *snapshot, char **name, GError **error)
{
  g_autoptr(SmVmAccess) access = sm_op_access (t, error);
  g_autoptr(SmVmState) st = NULL;
  g_autofree char *shown = NULL;
  GError *err = NULL;

  if (!access)
    return false;
  st = sm_vm_state_open (state_dir, access->state_key, error);
  if (!st)
    return false;
  shown = snapshot_or_current (st, snapshot, &err);
  if (err) {
    g_propagate_error (error, err);
    return false;
  }
  if (!shown)
    return true;
  *name = NULL;
  return sm_op_require_qmp ("status", t, error);
}

bool
sm_op_status (const SmOpTarget *t, const char *snapshot, json_object **status,
              char **name, GError **error)
{
  g_autoptr(SmQmp) qmp = NULL;
  g_autoptr(SmVmState) st = NULL;
  g_autoptr(SmLsmInfo) info = NULL;
  g_autofree char *shown = NULL;
  g_autofree char *state_dir = t->state_dir ? g_strdup (t->state_dir)
                                            : sm_state_default_dir ();
  GError *err = NULL;

  *status = NULL;
  *name = NULL;
  if (sm_op_target_is_libvirt (t))
    return status_libvirt (t, state_dir, snapshot, name, error);
  /* The state first, without the lock and without QEMU: a create --wait or
   * pivot that waits holds QEMU's monitor and publishes its progress. */
  st = sm_vm_state_open (state_dir, t->address, error);
  if (!st)
    return false;
  shown = snapshot_or_current (st, snapshot, &err);
  if (err) {
    g_propagate_error (error, err);
    return false;
  }
  if (!shown) {
    /* Nothing is moving — but only about a VM that answers, not a
     * mistyped socket. */
    qmp = sm_op_connect (t->address, t->reply_timeout_s, error);
    return qmp != NULL;
  }
  *status = sm_lsm_status_watched (st, shown);
  if (!*status) {
    qmp = sm_op_connect (t->address, t->reply_timeout_s, error);
    if (!qmp)
      return false;
    info = sm_lsm_info_load (st, shown, error);
    if (!info)
      return false;
    *status = sm_lsm_status (qmp, st, info, error);
    if (!*status)
      return false;
  }
  *name = g_steal_pointer (&shown);
  return true;
}

SmValidateReport *
sm_op_validate (const char *const *domains, const SmOpTarget *vms,
                size_t n_vms, const char *state_dir, GError **error)
{
  g_autoptr(GPtrArray) queried =
    g_ptr_array_new_with_free_func ((GDestroyNotify) sm_validate_vm_free);
  g_autofree char *dir = state_dir ? g_strdup (state_dir)
                                   : sm_state_default_dir ();
  SmValidateOptions opts = { 0 };
  size_t i;

  for (i = 0; i < n_vms; i++) {
    g_autoptr(SmVmAccess) access = sm_op_access (&vms[i], error);
    g_autofree char *label = sm_op_target_label (&vms[i]);
    SmValidateVm *vm;

    if (!access)
      return NULL;
    g_autoptr(SmBlockVm) view = access->ops->query_view (access, error);

    if (!view) {
      g_prefix_error (error, "VM %s: ", label);
      return NULL;
    }
    vm = sm_validate_vm_from_block (view, label);
    g_ptr_array_add (queried, vm);
  }
  opts.domains = domains;
  opts.vms = (SmValidateVm *const *) queried->pdata;
  opts.n_vms = queried->len;
  opts.state_dir = dir;
  return sm_validate_run (&opts, error);
}
