/* Unit tests for lib/qemu-proc: the destination command line derived from
 * the source's (disks through the path map, sockets, pidfile and logs into
 * the run directory, QEMU's ",," escapes, -blockdev JSON and key=value,
 * the refusals), reading a process's command line and start time, starting
 * a real QEMU detached and stopping it, and a process whose start time
 * differs left alone. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <json-c/json.h>

#include "harness.h"
#include "image-lock.h"
#include "qemu-proc.h"

#define RUN "/run/dst"
#define QMP RUN "/snapmig.qmp"
#define TAIL "-S -incoming defer -qmp unix:" QMP ",server=on,wait=off"

static char **saved_argv;

/* ---- command line rewrite ---------------------------------------------- */

static GHashTable *
disk_map (void)
{
  GHashTable *m = g_hash_table_new (g_str_hash, g_str_equal);

  g_hash_table_insert (m, "/img/a.qcow2", "/dst/a.qcow2");
  g_hash_table_insert (m, "/img/b.qcow2", "/dst/b.qcow2");
  g_hash_table_insert (m, "/img/we,ird.qcow2", "/dst/x,y.qcow2");
  g_hash_table_insert (m, "nbd://nas/export", "/dst/nbd.raw");
  return m;
}

/* Rewrites the shell-quoted CMDLINE; the result's words joined by spaces,
 * or NULL with ERROR. */
static char *
rewrite (const char *cmdline, GHashTable *map, const char *incoming,
         char **user_qmp, GError **error)
{
  SmQemuRewrite rw = { .path_map = map, .run_dir = RUN, .qmp_path = QMP,
                       .incoming = incoming };
  g_auto(GStrv) argv = NULL;
  g_auto(GStrv) out = NULL;

  g_assert_true (g_shell_parse_argv (cmdline, NULL, &argv, NULL));
  out = sm_qemu_cmdline_rewrite ((const char *const *) argv, &rw, user_qmp,
                                 error);
  return out ? g_strjoinv (" ", out) : NULL;
}

/* Checks that CMDLINE becomes EXPECTED (without the appended TAIL) and that
 * the user's QMP is USER_QMP (NULL: none). */
static void
check_rewrite (const char *cmdline, const char *expected,
               const char *user_qmp)
{
  g_autoptr(GHashTable) map = disk_map ();
  g_autoptr(GError) err = NULL;
  g_autofree char *qmp = NULL;
  g_autofree char *got = rewrite (cmdline, map, NULL, &qmp, &err);
  g_autofree char *want = g_strdup_printf ("%s %s", expected, TAIL);

  g_assert_no_error (err);
  g_assert_cmpstr (got, ==, want);
  g_assert_cmpstr (qmp, ==, user_qmp);
}

/* Checks that CMDLINE is refused naming OPTION and WHAT. */
static void
check_refused (const char *cmdline, const char *option, const char *what)
{
  g_autoptr(GHashTable) map = disk_map ();
  g_autoptr(GError) err = NULL;
  g_autofree char *qmp = g_strdup ("untouched");
  g_autofree char *got = rewrite (cmdline, map, NULL, &qmp, &err);

  g_assert_null (got);
  g_assert_error (err, SM_ERROR, SM_ERROR_UNSUPPORTED);
  g_assert_true (g_str_has_prefix (err->message, option));
  g_assert_nonnull (strstr (err->message, what));
  g_assert_nonnull (strstr (err->message, "--dest-qemu"));
  /* Set only on success. */
  g_assert_cmpstr (qmp, ==, "untouched");
}

static void
test_rewrite_three_drives (void)
{
  check_rewrite (
    "/usr/bin/qemu-system-x86_64 -name guest=vm1,debug-threads=on "
    "-machine q35,accel=kvm -m 2048 -smp 2 -nodefaults "
    "-drive file=/img/a.qcow2,format=qcow2,if=none,id=drive0,cache=none "
    "-device virtio-blk-pci,drive=drive0,id=vda,bootindex=1 "
    "-drive file=/img/b.qcow2,format=qcow2,if=none,id=drive1 "
    "-device virtio-blk-pci,drive=drive1,id=vdb "
    "-drive file=/shared/c.raw,format=raw,if=none,id=drive2,readonly=on "
    "-device virtio-blk-pci,drive=drive2,id=vdc "
    "-netdev user,id=net0 -device virtio-net-pci,netdev=net0 "
    "-qmp unix:/var/lib/vm1/vm.qmp,server=on,wait=off "
    "-daemonize -pidfile /var/lib/vm1/vm.pid -D /var/log/vm1/qemu.log "
    "-display none -S",
    "/usr/bin/qemu-system-x86_64 -name guest=vm1,debug-threads=on "
    "-machine q35,accel=kvm -m 2048 -smp 2 -nodefaults "
    "-drive file=/dst/a.qcow2,format=qcow2,if=none,id=drive0,cache=none "
    "-device virtio-blk-pci,drive=drive0,id=vda,bootindex=1 "
    "-drive file=/dst/b.qcow2,format=qcow2,if=none,id=drive1 "
    "-device virtio-blk-pci,drive=drive1,id=vdb "
    "-drive file=/shared/c.raw,format=raw,if=none,id=drive2,readonly=on "
    "-device virtio-blk-pci,drive=drive2,id=vdc "
    "-netdev user,id=net0 -device virtio-net-pci,netdev=net0 "
    "-qmp unix:" RUN "/vm.qmp,server=on,wait=off "
    "-pidfile " RUN "/vm.pid -D " RUN "/qemu.log "
    "-display none",
    RUN "/vm.qmp");
}

static void
test_rewrite_commas (void)
{
  /* ",," is a comma in the file name; written back escaped. */
  check_rewrite ("qemu --drive file=/img/we,,ird.qcow2,if=virtio "
                 "-qmp unix:/tmp/a,,b.sock,server=on,wait=off "
                 "-name x,,y",
                 "qemu --drive file=/dst/x,,y.qcow2,if=virtio "
                 "-qmp unix:" RUN "/a,,b.sock,server=on,wait=off -name x,,y",
                 RUN "/a,b.sock");
  /* A comma in the run directory's own QMP path is escaped too. */
  {
    SmQemuRewrite rw = { .run_dir = "/r,d", .qmp_path = "/r,d/s.qmp" };
    const char *argv[] = { "qemu", NULL };
    g_auto(GStrv) out = sm_qemu_cmdline_rewrite (argv, &rw, NULL, NULL);

    g_assert_cmpstr (out[5], ==, "unix:/r,,d/s.qmp,server=on,wait=off");
  }
}

static void
test_rewrite_blockdev_keyval (void)
{
  check_rewrite (
    "qemu -blockdev driver=file,node-name=f0,filename=/img/a.qcow2 "
    "-blockdev driver=qcow2,node-name=q0,file=f0 "
    "-blockdev driver=qcow2,node-name=q1,file.driver=file,"
    "file.filename=/img/b.qcow2,backing=null "
    "-blockdev driver=raw,node-name=r0,file.driver=file,"
    "file.filename=/shared/c.raw "
    "-drive if=none,id=d3,file.driver=file,file.filename=/img/we,,ird.qcow2",
    "qemu -blockdev driver=file,node-name=f0,filename=/dst/a.qcow2 "
    "-blockdev driver=qcow2,node-name=q0,file=f0 "
    "-blockdev driver=qcow2,node-name=q1,file.driver=file,"
    "file.filename=/dst/b.qcow2,backing=null "
    "-blockdev driver=raw,node-name=r0,file.driver=file,"
    "file.filename=/shared/c.raw "
    "-drive if=none,id=d3,file.driver=file,file.filename=/dst/x,,y.qcow2",
    NULL);
}

static void
test_rewrite_blockdev_json (void)
{
  g_autoptr(GHashTable) map = disk_map ();
  g_autoptr(GError) err = NULL;
  const char *in =
    "{\"driver\":\"qcow2\",\"node-name\":\"q0\",\"backing\":null,"
    "\"file\":{\"driver\":\"file\",\"filename\":\"/img/a.qcow2\"}}";
  const char *shared =
    "{\"driver\":\"raw\",\"file\":{\"driver\":\"file\","
    "\"filename\":\"/shared/c.raw\"}}";
  const char *argv[] = { "qemu", "-blockdev", in, "--blockdev", shared,
                         NULL };
  SmQemuRewrite rw = { .path_map = map, .run_dir = RUN, .qmp_path = QMP };
  g_auto(GStrv) out = sm_qemu_cmdline_rewrite (argv, &rw, NULL, &err);
  json_object *root, *file, *v;

  g_assert_no_error (err);
  g_assert_cmpstr (out[1], ==, "-blockdev");
  root = json_tokener_parse (out[2]);
  g_assert_nonnull (root);
  g_assert_true (json_object_object_get_ex (root, "file", &file));
  g_assert_true (json_object_object_get_ex (file, "filename", &v));
  g_assert_cmpstr (json_object_get_string (v), ==, "/dst/a.qcow2");
  g_assert_true (json_object_object_get_ex (root, "node-name", &v));
  g_assert_cmpstr (json_object_get_string (v), ==, "q0");
  g_assert_true (json_object_object_get_ex (root, "backing", &v));
  g_assert_null (v);
  json_object_put (root);
  /* Not migrated: byte for byte as it was. */
  g_assert_cmpstr (out[3], ==, "--blockdev");
  g_assert_cmpstr (out[4], ==, shared);
  g_assert_cmpstr (out[5], ==, "-S");
}

static void
test_rewrite_chardev_mon (void)
{
  check_rewrite (
    "qemu -chardev socket,id=charmon,path=/var/lib/vm/mon.sock,server=on,"
    "wait=off -mon chardev=charmon,mode=control",
    "qemu -chardev socket,id=charmon,path=" RUN "/mon.sock,server=on,"
    "wait=off -mon chardev=charmon,mode=control",
    RUN "/mon.sock");
  /* -mon before its -chardev, implied key, old-style flags. */
  check_rewrite (
    "qemu -mon qm,mode=control -chardev socket,id=qm,path=/v/q.sock,server,"
    "nowait",
    "qemu -mon qm,mode=control -chardev socket,id=qm,path=" RUN "/q.sock,"
    "server,nowait",
    RUN "/q.sock");
  /* A readline -mon is not the user's QMP; the -qmp after it is. */
  check_rewrite (
    "qemu -chardev socket,id=h,path=/v/hmp.sock,server=on,wait=off "
    "-mon chardev=h -qmp unix:/v/vm.qmp,server=on,wait=off",
    "qemu -chardev socket,id=h,path=" RUN "/hmp.sock,server=on,wait=off "
    "-mon chardev=h -qmp unix:" RUN "/vm.qmp,server=on,wait=off",
    RUN "/vm.qmp");
  /* -qmp chardev:ID; a TCP chardev and an abstract socket stay. */
  check_rewrite (
    "qemu -chardev socket,id=t,host=127.0.0.1,port=4444,server=on "
    "-chardev socket,id=a,path=vm-abs,abstract=on,server=on "
    "-chardev socket,id=u,path=/v/u.sock,server=on -qmp chardev:t "
    "-qmp chardev:u",
    "qemu -chardev socket,id=t,host=127.0.0.1,port=4444,server=on "
    "-chardev socket,id=a,path=vm-abs,abstract=on,server=on "
    "-chardev socket,id=u,path=" RUN "/u.sock,server=on -qmp chardev:t "
    "-qmp chardev:u",
    RUN "/u.sock");
}

static void
test_rewrite_serial_vnc_logs (void)
{
  check_rewrite (
    "qemu -serial unix:/v/console.sock,server=on,wait=off "
    "-serial mon:unix:/v/s2.sock,server "
    "-parallel unix:/v/par.sock,server=on,wait=off -serial stdio "
    "-monitor unix:/v/hmp.sock,server,nowait -vnc unix:/v/vnc.sock "
    "-chardev file,id=log0,path=/v/serial.txt,logfile=/v/chr.log "
    "-pidfile /v/q.pid",
    "qemu -serial unix:" RUN "/console.sock,server=on,wait=off "
    "-serial mon:unix:" RUN "/s2.sock,server "
    "-parallel unix:" RUN "/par.sock,server=on,wait=off -serial stdio "
    "-monitor unix:" RUN "/hmp.sock,server,nowait -vnc unix:" RUN "/vnc.sock "
    "-chardev file,id=log0,path=" RUN "/serial.txt,logfile=" RUN "/chr.log "
    "-pidfile " RUN "/q.pid",
    NULL);
  /* File outputs (console logs) are the destination's own: never the
   * source's file, which the destination would truncate. */
  check_rewrite (
    "qemu -serial file:/v/console.log -parallel pipe:/v/fifo "
    "-serial mon:file:/v/m.log",
    "qemu -serial file:" RUN "/console.log -parallel pipe:" RUN "/fifo "
    "-serial mon:file:" RUN "/m.log",
    NULL);
  /* Client sockets connect to a daemon outside QEMU: they stay. */
  check_rewrite (
    "qemu -chardev socket,id=vfs,path=/run/virtiofsd.sock "
    "-chardev socket,id=c2,path=/v/c2.sock,server=off "
    "-chardev socket,id=c3,path=/v/c3.sock,server,noserver "
    "-serial unix:/v/logger.sock -qmp unix:/v/client.qmp",
    "qemu -chardev socket,id=vfs,path=/run/virtiofsd.sock "
    "-chardev socket,id=c2,path=/v/c2.sock,server=off "
    "-chardev socket,id=c3,path=/v/c3.sock,server,noserver "
    "-serial unix:/v/logger.sock -qmp unix:/v/client.qmp",
    NULL);
  /* -vnc on TCP stays. */
  check_rewrite ("qemu -vnc :1,password=on", "qemu -vnc :1,password=on",
                 NULL);
}

static void
test_rewrite_duplicates (void)
{
  /* The same base name twice gets a suffix before its extension; a name
   * snapmig's own socket holds is not given to the VM; the same source
   * path maps alike. */
  check_rewrite (
    "qemu -qmp unix:/a/vm.qmp,server=on,wait=off "
    "-chardev socket,id=c,path=/b/vm.qmp,server=on "
    "-serial unix:/c/vm.qmp,server=on "
    "-monitor unix:/d/snapmig.qmp,server=on "
    "-chardev socket,id=m1,path=/e/mon,server=on "
    "-chardev socket,id=m2,path=/f/mon,server=on "
    "-pidfile /a/vm.qmp",
    "qemu -qmp unix:" RUN "/vm.qmp,server=on,wait=off "
    "-chardev socket,id=c,path=" RUN "/vm-2.qmp,server=on "
    "-serial unix:" RUN "/vm-3.qmp,server=on "
    "-monitor unix:" RUN "/snapmig-2.qmp,server=on "
    "-chardev socket,id=m1,path=" RUN "/mon,server=on "
    "-chardev socket,id=m2,path=" RUN "/mon-2,server=on "
    "-pidfile " RUN "/vm.qmp",
    RUN "/vm.qmp");
}

static void
test_rewrite_removed (void)
{
  g_autoptr(GHashTable) map = disk_map ();
  g_autoptr(GError) err = NULL;
  g_autofree char *got = NULL;

  /* Bare images are -hda; values after no-value options are options. */
  check_rewrite ("qemu -enable-kvm /img/a.qcow2 -nographic -hdb /img/b.qcow2 "
                 "-cdrom /iso/boot.iso -S --daemonize -incoming tcp:0:4444 "
                 "-loadvm snap1 --snapshotx 1",
                 "qemu -enable-kvm /dst/a.qcow2 -nographic -hdb /dst/b.qcow2 "
                 "-cdrom /iso/boot.iso --snapshotx 1",
                 NULL);
  got = rewrite ("qemu -m 512", map, "unix:" RUN "/mig.sock", NULL, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (got, ==, "qemu -m 512 -S -incoming unix:" RUN "/mig.sock "
                   "-qmp unix:" QMP ",server=on,wait=off");
}

static void
test_rewrite_refused (void)
{
  check_refused ("qemu -m 1 -snapshot", "-snapshot", "temporary overlay");
  check_refused ("qemu --snapshot", "--snapshot", "temporary overlay");
  check_refused ("qemu -drive file=/img/a.qcow2,snapshot=on", "-drive",
                 "snapshot=on");
  check_refused ("qemu -blockdev driver=qcow2,node-name=top,file=f1,"
                 "backing=base", "-blockdev", "backing=base");
  check_refused ("qemu -blockdev '{\"driver\":\"qcow2\",\"node-name\":\"t\","
                 "\"file\":\"f1\",\"backing\":\"base\"}'", "-blockdev",
                 "\"backing\": \"base\"");
  check_refused ("qemu -drive file=nbd://nas/export,if=virtio", "-drive",
                 "nbd protocol");
  check_refused ("qemu -blockdev driver=nbd,node-name=n,"
                 "filename=/img/a.qcow2", "-blockdev", "nbd protocol");
  check_refused ("qemu -readconfig /etc/vm.cfg", "-readconfig",
                 "configuration file");
  /* Not migrated: an NBD disk stays, nothing refused. */
  check_rewrite ("qemu -drive file=nbd://other/e,if=virtio",
                 "qemu -drive file=nbd://other/e,if=virtio", NULL);
  {
    g_autoptr(GError) err = NULL;
    g_autofree char *got = rewrite ("qemu -blockdev '{\"driver\":'", NULL,
                                    NULL, NULL, &err);

    g_assert_null (got);
    g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
  }
}

static void
test_from_string (void)
{
  g_autoptr(GHashTable) map = disk_map ();
  g_autoptr(GError) err = NULL;
  g_autofree char *qmp = NULL;
  g_autofree char *joined = NULL;
  g_auto(GStrv) out = NULL;
  SmQemuRewrite rw = { .path_map = map, .run_dir = RUN, .qmp_path = QMP };

  out = sm_qemu_cmdline_from_string (
    "qemu-system-x86_64 -M none -drive file=/img/a.qcow2,if=virtio "
    "-qmp 'unix:/tmp/my vm/q.sock,server=on,wait=off' -incoming defer",
    &rw, &qmp, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (out[4], ==, "file=/img/a.qcow2,if=virtio");
  g_assert_cmpstr (out[6], ==, "unix:" RUN "/q.sock,server=on,wait=off");
  g_assert_cmpstr (qmp, ==, RUN "/q.sock");
  joined = g_strjoinv (" ", out);
  g_assert_cmpstr (joined, ==, "qemu-system-x86_64 -M none "
                   "-drive file=/img/a.qcow2,if=virtio -qmp unix:" RUN
                   "/q.sock,server=on,wait=off " TAIL);

  g_clear_pointer (&out, g_strfreev);
  out = sm_qemu_cmdline_from_string ("qemu -name 'vm", &rw, NULL, &err);
  g_assert_null (out);
  g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
  g_assert_nonnull (strstr (err->message, "--dest-qemu"));
}

/* ---- processes --------------------------------------------------------- */

/* QEMUs and children a failed assertion must not leave running. */
static pid_t tracked[8];
static uint64_t tracked_start[8];

static void
track (pid_t pid, uint64_t start_time)
{
  guint i;

  for (i = 0; i < G_N_ELEMENTS (tracked); i++)
    if (!tracked[i]) {
      tracked[i] = pid;
      tracked_start[i] = start_time;
      return;
    }
}

static void
kill_tracked (void)
{
  guint i;

  for (i = 0; i < G_N_ELEMENTS (tracked); i++)
    if (tracked[i] && sm_proc_alive (tracked[i], tracked_start[i]))
      kill (tracked[i], SIGKILL);
}

static void (*harness_on_abort) (int);

static void
on_abort (int sig)
{
  kill_tracked ();
  signal (sig, harness_on_abort ? harness_on_abort : SIG_DFL);
  raise (sig);
}

static void
test_read_cmdline (void)
{
  g_autoptr(GError) err = NULL;
  g_auto(GStrv) self = sm_qemu_read_cmdline (getpid (), &err);
  pid_t child;
  int status;

  g_assert_no_error (err);
  g_assert_cmpstrv (self, saved_argv);

  /* A process that is gone. */
  child = fork ();
  g_assert_cmpint (child, >=, 0);
  if (child == 0)
    _exit (0);
  g_assert_cmpint (waitpid (child, &status, 0), ==, child);
  g_assert_null (sm_qemu_read_cmdline (child, &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_NOT_FOUND);
  g_assert_cmpuint (sm_proc_start_time (child), ==, 0);
  g_assert_false (sm_proc_alive (child, 0));
}

static void
test_start_time (void)
{
  uint64_t st = sm_proc_start_time (getpid ());

  g_assert_cmpuint (st, >, 0);
  g_assert_cmpuint (sm_proc_start_time (getpid ()), ==, st);
  g_assert_true (sm_proc_alive (getpid (), st));
  g_assert_true (sm_proc_alive (getpid (), 0));
  g_assert_false (sm_proc_alive (getpid (), st + 1));
  g_assert_cmpuint (sm_proc_start_time (0), ==, 0);
  g_assert_cmpuint (sm_proc_start_time (-1), ==, 0);
}

/* A `sleep 1000` child; IGNORE_TERM: with SIGTERM ignored. */
static pid_t
sleeper (bool ignore_term)
{
  pid_t pid = fork ();

  g_assert_cmpint (pid, >=, 0);
  if (pid == 0) {
    if (ignore_term)
      signal (SIGTERM, SIG_IGN);
    execlp ("sleep", "sleep", "1000", (char *) NULL);
    _exit (127);
  }
  /* Wait until it is sleep, not our fork, so that its start time is
   * read from the process that will be signalled. */
  for (;;) {
    g_auto(GStrv) argv = sm_qemu_read_cmdline (pid, NULL);

    if (argv && g_strcmp0 (argv[0], "sleep") == 0)
      break;
    g_usleep (5000);
  }
  track (pid, sm_proc_start_time (pid));
  return pid;
}

/* libvirt's QEMU is told by its monitor chardev and named by -name. */
static void
test_libvirt_domain (void)
{
  char *qemu[] = { "qemu-system-x86_64", "-name", "guest=vm1,debug-threads=on",
                   "-uuid", "0b04", NULL };
  g_autofree char *name = sm_qemu_cmdline_option (qemu, "-name");
  g_autofree char *uuid = sm_qemu_cmdline_option (qemu, "-uuid");
  g_autofree char *none = sm_qemu_cmdline_option (qemu, "-m");
  g_autofree char *self = sm_qemu_libvirt_domain (getpid ());
  g_autofree char *dom = NULL;
  pid_t pid = fork ();
  int status;

  g_assert_cmpstr (name, ==, "vm1");
  g_assert_cmpstr (uuid, ==, "0b04");
  g_assert_null (none);
  g_assert_null (self);
  g_assert_null (sm_qemu_libvirt_domain (0));
  /* A process with libvirt's arguments (sh keeps them as $0...). */
  g_assert_cmpint (pid, >=, 0);
  if (pid == 0) {
    execl ("/bin/sh", "sh", "-c", "sleep 1000; :", "sh", "-chardev",
           "socket,id=charmonitor,fd=22,server=on,wait=off", "-name",
           "guest=dom1,debug-threads=on", (char *) NULL);
    _exit (127);
  }
  for (int i = 0; i < 1000 && !dom; i++) {
    dom = sm_qemu_libvirt_domain (pid);
    if (!dom)
      g_usleep (5000);
  }
  kill (pid, SIGKILL);
  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  g_assert_cmpstr (dom, ==, "dom1");
}

static void
test_stop_start_time_differs (void)
{
  g_autoptr(GError) err = NULL;
  pid_t pid = sleeper (false);
  uint64_t st = sm_proc_start_time (pid);
  int status;

  g_assert_cmpuint (st, >, 0);
  /* A reused PID: left alone, counts as stopped/gone. */
  g_assert_true (sm_proc_stop (pid, st + 1, 100, &err));
  g_assert_no_error (err);
  g_assert_true (sm_proc_wait_gone (pid, st + 1, 100));
  g_assert_true (sm_proc_alive (pid, st));
  g_assert_cmpint (waitpid (pid, &status, WNOHANG), ==, 0);
  g_assert_false (sm_proc_wait_gone (pid, st, 50));

  /* The right start time: stopped by SIGTERM. */
  g_assert_true (sm_proc_stop (pid, st, 5000, &err));
  g_assert_no_error (err);
  g_assert_false (sm_proc_alive (pid, st));
  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  g_assert_true (WIFSIGNALED (status));
  g_assert_cmpint (WTERMSIG (status), ==, SIGTERM);
}

static void
test_stop_escalates (void)
{
  g_autoptr(GError) err = NULL;
  pid_t pid = sleeper (true);
  uint64_t st = sm_proc_start_time (pid);
  int status;

  g_assert_true (sm_proc_stop (pid, st, 100, &err));
  g_assert_no_error (err);
  g_assert_false (sm_proc_alive (pid, st));
  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  g_assert_true (WIFSIGNALED (status));
  g_assert_cmpint (WTERMSIG (status), ==, SIGKILL);
}

static bool
have_qemu (void)
{
  g_autofree char *qemu = g_find_program_in_path ("qemu-system-x86_64");

  if (!qemu)
    g_test_skip ("qemu-system-x86_64 is not installed");
  return qemu != NULL;
}

/* Field N (3: state, 4: ppid, 6: session) of /proc/PID/stat. */
static long
stat_field (pid_t pid, int n)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/stat", (int) pid);
  g_autofree char *text = NULL;
  g_auto(GStrv) f = NULL;

  g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
  f = g_strsplit (strrchr (text, ')') + 2, " ", -1);
  return strtol (f[n - 3], NULL, 10);
}

/* Starts `qemu-system-x86_64 -M none -nodefaults -display none [EXTRA]
 * -qmp unix:DIR/dst.qmp,...` in a new temporary directory, its log holding
 * an old run's line first.  *QMP_OPT: the -qmp value; *LOG: the log. */
static SmQemuProc *
spawn_qemu (const char *extra, char **qmp_opt, char **log, GError **error)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *qmp = g_build_filename (dir, "dst.qmp", NULL);
  const char *argv[] = { "qemu-system-x86_64", "-M", "none", "-nodefaults",
                         "-display", "none", "-qmp", NULL, NULL, NULL };
  SmQemuProc *p;

  *qmp_opt = g_strdup_printf ("unix:%s,server=on,wait=off", qmp);
  *log = g_build_filename (dir, "qemu.log", NULL);
  g_assert_true (g_file_set_contents (*log, "an old run's line\n", -1,
                                      NULL));
  argv[7] = *qmp_opt;
  if (extra) {
    argv[8] = argv[7];
    argv[7] = argv[6];
    argv[6] = extra;
  }
  p = sm_qemu_spawn (argv, *log, qmp, 30000, error);
  if (p)
    track (p->pid, p->start_time);
  return p;
}

static void
test_spawn_qemu (void)
{
  g_autofree char *qmp_opt = NULL;
  g_autofree char *log = NULL;
  g_autoptr(GError) err = NULL;
  g_autoptr(SmQemuProc) p = NULL;
  g_auto(GStrv) cmdline = NULL;
  g_autofree char *qmp = NULL;

  if (!have_qemu ())
    return;
  p = spawn_qemu (NULL, &qmp_opt, &log, &err);
  g_assert_no_error (err);
  g_assert_nonnull (p);
  g_assert_cmpuint (p->start_time, ==, sm_proc_start_time (p->pid));
  g_assert_cmpstr (p->log_path, ==, log);
  g_assert_true (sm_proc_alive (p->pid, p->start_time));
  /* The QEMU listens on the socket, is not our child and runs in a session
   * of its own. */
  qmp = g_strndup (qmp_opt + 5, strchr (qmp_opt, ',') - qmp_opt - 5);
  g_assert_cmpint (sm_unix_socket_server_pid (qmp), ==, p->pid);
  g_assert_cmpint (stat_field (p->pid, 4), !=, getpid ());
  g_assert_cmpint (stat_field (p->pid, 6), !=, getsid (0));
  g_assert_cmpint (waitpid (p->pid, NULL, WNOHANG), ==, -1);
  g_assert_cmpint (errno, ==, ECHILD);
  cmdline = sm_qemu_read_cmdline (p->pid, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (cmdline[6], ==, "-qmp");
  g_assert_cmpstr (cmdline[7], ==, qmp_opt);

  g_assert_true (sm_proc_stop (p->pid, p->start_time, 5000, &err));
  g_assert_no_error (err);
  g_assert_false (sm_proc_alive (p->pid, p->start_time));
  g_assert_true (sm_proc_wait_gone (p->pid, p->start_time, 0));
}

static void
test_spawn_bad_option (void)
{
  g_autofree char *qmp_opt = NULL;
  g_autofree char *log = NULL;
  g_autoptr(GError) err = NULL;
  SmQemuProc *p;

  if (!have_qemu ())
    return;
  p = spawn_qemu ("-no-such-option", &qmp_opt, &log, &err);
  g_assert_null (p);
  g_assert_error (err, SM_ERROR, SM_ERROR_FAILED);
  g_assert_true (g_str_has_prefix (err->message,
                                   "destination QEMU exited: "));
  g_assert_nonnull (strstr (err->message,
                            "-no-such-option: invalid option"));
  g_assert_nonnull (strstr (err->message, log));
  /* Only this run's lines. */
  g_assert_null (strstr (err->message, "old run"));
}

static void
test_spawn_missing_program (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *qmp = g_build_filename (dir, "dst.qmp", NULL);
  g_autofree char *log = g_build_filename (dir, "qemu.log", NULL);
  g_autoptr(GError) err = NULL;
  const char *argv[] = { "/nonexistent/qemu-system-x86_64", "-M", "none",
                         NULL };
  SmQemuProc *p = sm_qemu_spawn (argv, log, qmp, 30000, &err);

  g_assert_null (p);
  g_assert_error (err, SM_ERROR, SM_ERROR_FAILED);
  g_assert_nonnull (strstr (err->message, argv[0]));
  g_assert_nonnull (strstr (err->message, g_strerror (ENOENT)));
}

static void
test_spawn_timeout (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *qmp = g_build_filename (dir, "never.qmp", NULL);
  g_autofree char *log = g_build_filename (dir, "sleep.log", NULL);
  g_autoptr(GError) err = NULL;
  const char *argv[] = { "sleep", "1000", NULL };
  SmQemuProc *p = sm_qemu_spawn (argv, log, qmp, 100, &err);
  const char *pid_s;
  pid_t pid;

  g_assert_null (p);
  g_assert_error (err, SM_ERROR, SM_ERROR_TIMEOUT);
  g_assert_nonnull (strstr (err->message, qmp));
  /* It was killed: the PID the message names is gone. */
  pid_s = strstr (err->message, "(pid ");
  g_assert_nonnull (pid_s);
  pid = (pid_t) strtol (pid_s + 5, NULL, 10);
  g_assert_cmpint (pid, >, 0);
  g_assert_true (sm_proc_wait_gone (pid, 0, 10000));
}

int
main (int argc, char **argv)
{
  g_autofree char *dir = NULL;

  saved_argv = g_strdupv (argv);
  g_test_init (&argc, &argv, NULL);
  /* The harness's abort handler (removing temporary directories) is set by
   * the first sm_test_tmpdir; ours kills tracked processes first. */
  dir = sm_test_tmpdir ();
  harness_on_abort = signal (SIGABRT, on_abort);
  g_test_add_func ("/qemu-proc/rewrite/three-drives",
                   test_rewrite_three_drives);
  g_test_add_func ("/qemu-proc/rewrite/commas", test_rewrite_commas);
  g_test_add_func ("/qemu-proc/rewrite/blockdev-keyval",
                   test_rewrite_blockdev_keyval);
  g_test_add_func ("/qemu-proc/rewrite/blockdev-json",
                   test_rewrite_blockdev_json);
  g_test_add_func ("/qemu-proc/rewrite/chardev-mon", test_rewrite_chardev_mon);
  g_test_add_func ("/qemu-proc/rewrite/serial-vnc-logs",
                   test_rewrite_serial_vnc_logs);
  g_test_add_func ("/qemu-proc/rewrite/duplicates", test_rewrite_duplicates);
  g_test_add_func ("/qemu-proc/rewrite/removed", test_rewrite_removed);
  g_test_add_func ("/qemu-proc/rewrite/refused", test_rewrite_refused);
  g_test_add_func ("/qemu-proc/rewrite/from-string", test_from_string);
  g_test_add_func ("/qemu-proc/read-cmdline", test_read_cmdline);
  g_test_add_func ("/qemu-proc/start-time", test_start_time);
  g_test_add_func ("/qemu-proc/libvirt-domain", test_libvirt_domain);
  g_test_add_func ("/qemu-proc/stop/start-time-differs",
                   test_stop_start_time_differs);
  g_test_add_func ("/qemu-proc/stop/escalates", test_stop_escalates);
  g_test_add_func ("/qemu-proc/spawn/qemu", test_spawn_qemu);
  g_test_add_func ("/qemu-proc/spawn/bad-option", test_spawn_bad_option);
  g_test_add_func ("/qemu-proc/spawn/missing-program",
                   test_spawn_missing_program);
  g_test_add_func ("/qemu-proc/spawn/timeout", test_spawn_timeout);
  {
    int r = g_test_run ();

    kill_tracked ();
    g_strfreev (saved_argv);
    return r;
  }
}
