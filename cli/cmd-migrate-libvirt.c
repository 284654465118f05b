/* snapmig migrate --connect URI --domain NAME --dest-connect URI2
 * --dest-domain DIR (issue 14): a libvirt domain to another libvirt host
 * through libvirt's own migration (lib/migrate-libvirt.h).  Option checks
 * and printing only.
 */
#include <stdio.h>

#include "cmd-migrate.h"
#include "migrate-libvirt.h"
#include "report-json.h"

char *mig_opt_connect;
char *mig_opt_domain;
char *mig_opt_dest_connect;

/* The first option given that libvirt's migration does not take, or
 * NULL. */
static const char *
qmp_only_option (void)
{
  return mig_opt_qmp ? "--qmp"
    : mig_opt_dest_cmd ? "--dest-cmd"
    : mig_opt_dest_state_dir ? "--dest-state-dir"
    : mig_opt_dest_run_dir ? "--dest-run-dir"
    : mig_opt_dest_qemu ? "--dest-qemu"
    : mig_opt_source_host ? "--source-host"
    : mig_opt_port_range ? "--port-range"
    : mig_opt_copy_mode ? "--copy-mode"
    : mig_opt_unix ? "--unix"
    : mig_opt_tunnel ? "--tunnel"
    : mig_opt_tls ? "--tls"
    : mig_opt_postcopy || mig_opt_postcopy_after_precopy ? "--postcopy"
    : mig_opt_parallel || mig_opt_parallel_connections != UNSET ? "--parallel"
    : NULL;
}

static void
print_result (const SmMigLibvirtResult *r, const SmMigOptions *o,
              double seconds)
{
  const char *storage = o->storage == SM_MIG_STORAGE_INC ? "inc" : "all";

  if (sm_cli_json) {
    json_object *f = json_object_new_object ();
    json_object *disks = json_object_new_array ();

    for (guint i = 0; i < r->disks->len; i++) {
      const SmMigLibvirtDisk *d = r->disks->pdata[i];
      json_object *j = json_object_new_object ();

      json_object_object_add (j, "disk", json_object_new_string (d->disk));
      json_object_object_add (j, "file", json_object_new_string (d->dest_top));
      json_object_array_add (disks, j);
    }
    json_object_object_add (f, "domain", json_object_new_string (r->domain));
    json_object_object_add (f, "dest-connect",
                            json_object_new_string (mig_opt_dest_connect));
    json_object_object_add (f, "dest-domain",
                            json_object_new_string (mig_opt_dest_domain));
    json_object_object_add (f, "storage", json_object_new_string (storage));
    json_object_object_add (f, "disks", disks);
    json_object_object_add (f, "disk-bytes",
                            json_object_new_int64 ((int64_t) r->disk_bytes));
    json_object_object_add (f, "ram-bytes",
                            json_object_new_int64 ((int64_t) r->ram_bytes));
    json_object_object_add (f, "seconds", json_object_new_double (seconds));
    (void) sm_cli_result (f);
    return;
  }
  printf ("migrated domain %s to %s (copy-storage-%s)\n", r->domain,
          mig_opt_dest_connect, storage);
  for (guint i = 0; i < r->disks->len; i++) {
    const SmMigLibvirtDisk *d = r->disks->pdata[i];

    printf ("  %s: %s\n", d->disk, d->dest_top);
  }
  {
    g_autofree char *disk = sm_cli_format_size (r->disk_bytes);
    g_autofree char *ram = sm_cli_format_size (r->ram_bytes);

    printf ("moved: disks %s, RAM %s, %.1f s in all\n", disk, ram, seconds);
  }
}

/* --dry-run: the files that would be made, as text or a plan event and
 * the dry-run result. */
static int
print_plan (const SmMigLibvirtResult *r)
{
  json_object *disks = json_object_object_get (r->plan, "disks");

  if (sm_cli_json) {
    g_autoptr(json_object) ev = sm_report_event_new ("plan");

    json_object_object_add (ev, "plan", json_object_get (r->plan));
    sm_cli_print_event (ev);
    return sm_cli_result (NULL);
  }
  printf ("# would create in %s, then migrate domain %s to %s:\n",
          mig_opt_dest_domain, r->domain, mig_opt_dest_connect);
  for (size_t i = 0; i < json_object_array_length (disks); i++) {
    json_object *d = json_object_array_get_idx (disks, i);
    json_object *layers = json_object_object_get (d, "layers");

    for (size_t j = 0; j < json_object_array_length (layers); j++) {
      json_object *l = json_object_array_get_idx (layers, j);
      json_object *backing = json_object_object_get (l, "backing");
      g_autofree char *size = sm_cli_format_size ((guint64) json_object_get_int64 (
          json_object_object_get (l, "virtual-size")));

      printf ("%s %s %s %s%s%s\n",
              json_object_get_string (json_object_object_get (d, "disk")),
              json_object_get_string (json_object_object_get (l, "file")),
              json_object_get_string (json_object_object_get (l, "format")),
              size, backing ? " backed by " : "",
              backing ? json_object_get_string (backing) : "");
    }
  }
  return SM_EXIT_OK;
}

int
mig_libvirt_run (const SmMigOptions *o)
{
  g_autoptr(SmMigLibvirtResult) r = NULL;
  g_autoptr(GError) err = NULL;
  g_autofree char *domain_dir = NULL;
  gint64 start = g_get_monotonic_time ();
  const char *bad = qmp_only_option ();
  SmMigLibvirtOptions lo = { 0 };

  if (!mig_opt_connect || !mig_opt_domain || !mig_opt_dest_connect ||
      !mig_opt_dest_domain)
    return sm_cli_usage ("migrate: libvirt's migration needs --connect URI, "
                         "--domain NAME, --dest-connect URI and --dest-domain "
                         "DIR");
  if (bad)
    return sm_cli_usage ("migrate: %s is not for libvirt's migration "
                         "(--connect): libvirt runs the destination QEMU and "
                         "its streams", bad);
  domain_dir = g_canonicalize_filename (mig_opt_dest_domain, NULL);
  lo.uri = mig_opt_connect;
  lo.domain = mig_opt_domain;
  lo.dest_uri = mig_opt_dest_connect;
  lo.dest_domain = domain_dir;
  lo.storage = o->storage;
  lo.disks = o->disks;
  lo.bandwidth = o->bandwidth;
  lo.dest_host = o->dest_host;
  lo.timeout_ms = o->timeout_ms;
  lo.dry_run = mig_opt_dry_run;
  lo.event = o->event;
  lo.opaque = o->opaque;
  r = sm_migrate_libvirt (&lo, &err);
  if (!r)
    return sm_cli_fail ("migrate", err, mig_opt_domain);
  if (r->plan)
    return print_plan (r);
  print_result (r, o, mig_elapsed_s (start));
  return SM_EXIT_OK;
}
