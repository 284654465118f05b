/* libsnapmig — QEMU processes: the command line of a running QEMU, a
 * destination QEMU's command line derived from it, and starting and
 * stopping a QEMU snapmig owns (the destination of `snapmig migrate`).
 *
 * The source QEMU is found from its QMP socket (lib/image-lock.h:
 * sm_unix_socket_server_pid, or the peer credentials of a connected
 * socket) and its command line read from /proc/PID/cmdline.
 *
 * A process snapmig started is identified by PID *and* start time
 * (/proc/PID/stat field 22), so that a PID the kernel reused is never
 * signalled.
 */
#ifndef SM_QEMU_PROC_H
#define SM_QEMU_PROC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <glib.h>

#include "error.h"

/* /proc/PID/cmdline as a NULL-terminated vector.  SM_ERROR_NOT_FOUND for a
 * process that is gone, SM_ERROR_IO otherwise.  Caller g_strfreev. */
char **sm_qemu_read_cmdline (pid_t pid, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* The value of option OPT ("-name", "-uuid") in ARGV (a QEMU command
 * line), its first comma-separated field with a "guest=" prefix removed;
 * NULL when absent.  Caller frees. */
char *sm_qemu_cmdline_option (char **argv, const char *opt)
  G_GNUC_WARN_UNUSED_RESULT;

/* The libvirt domain whose QEMU PID is: a QEMU libvirt started has
 * libvirt's own monitor, "-chardev socket,id=charmonitor,..." (the socket
 * passed as fd=N, or path= in older libvirt), and "-name guest=NAME";
 * NULL for any other process (or a gone one).  Caller frees. */
char *sm_qemu_libvirt_domain (pid_t pid) G_GNUC_WARN_UNUSED_RESULT;

typedef enum {
  SM_LIBVIRT_MONITOR_NO,      /* another socket (a -qmp of the user's own) */
  SM_LIBVIRT_MONITOR_YES,     /* libvirt's monitor of that QEMU */
  SM_LIBVIRT_MONITOR_UNKNOWN, /* cannot be told: another user's QEMU whose
                                 /proc/PID/fd is not ours to read */
  SM_LIBVIRT_MONITOR_LAST
} SmLibvirtMonitor;

/* Whether the unix socket PATH, served by the QEMU PID that libvirt
 * started, is libvirt's own monitor: the listening socket's inode is that
 * of the QEMU's charmonitor fd=N, or PATH is its path=. */
SmLibvirtMonitor sm_qemu_libvirt_monitor (pid_t pid, const char *path);

/* /proc/PID/stat's start time (clock ticks since boot), 0 when the process
 * is gone. */
uint64_t sm_proc_start_time (pid_t pid);

/* How a destination command line is derived from the source's. */
typedef struct {
  GHashTable *path_map;        /* source image path → destination path
                                  (char * → char *); a disk path of the
                                  command line that is absent stays as it is
                                  (shared storage) */
  GHashTable *format_map;      /* destination path → format name, for a
                                  mapped disk whose destination has another
                                  format than the source (-drive format=,
                                  -blockdev key=value driver= beside
                                  file.filename); may be NULL */
  const char *run_dir;         /* absolute, existing: every listening
                                  unix socket path (-qmp, -monitor,
                                  -chardev socket, -serial/-parallel unix:,
                                  -vnc unix:), -pidfile, -D log, chardev
                                  logfile and file/pipe outputs
                                  (-serial file:, -chardev file) of the
                                  command line is moved here
                                  (same base name; a second one of the same
                                  name gets a suffix: vm-2.qmp); a client
                                  socket (server=off: a vhost-user daemon's)
                                  keeps its path */
  const char *qmp_path;        /* snapmig's own monitor, added as
                                  -qmp unix:PATH,server=on,wait=off */
  const char *ctl_qmp_path;    /* a second one (NULL: none): a monitor
                                  serves one client at a time, and a
                                  post-copy recovery must reach QEMU while
                                  the finish holds the first */
  const char *incoming;        /* NULL: "-incoming defer"; else the URI */
} SmQemuRewrite;

/* Rewrites ARGV (argv[0] the emulator) for the destination: disk paths
 * through path_map (-drive file=..., -hda/-hdb/-hdc/-hdd/-cdrom PATH,
 * -blockdev key=value filename=... and JSON "filename", including nested
 * file.filename), sockets, pidfile and log into run_dir, removes
 * -daemonize, -incoming, -S, -loadvm and -snapshot (refused, see below),
 * then appends -S, -incoming ... and snapmig's -qmp.  Commas doubled in
 * QEMU's option syntax (",,") are read and written correctly.
 * *USER_QMP (when non-NULL) gets the remapped path of the VM's first
 * control monitor (-qmp unix:..., or -chardev socket + -mon mode=control),
 * or NULL when it has none.
 * Refuses with SM_ERROR_UNSUPPORTED naming the option: -snapshot (its
 * temporary overlay cannot be migrated), a -blockdev graph whose node
 * names a "backing" child (give --dest-qemu), a -drive/-blockdev whose
 * file is a non-file protocol of a migrated disk.  Pure: touches nothing.
 * Caller g_strfreev. */
char **sm_qemu_cmdline_rewrite (const char *const *argv,
                                const SmQemuRewrite *rw, char **user_qmp,
                                GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Parses a --dest-qemu 'ARGS...' string (shell quoting, g_shell_parse_argv)
 * and applies the socket/pidfile remapping and -incoming/-S/-qmp additions
 * of sm_qemu_cmdline_rewrite with an empty path_map. */
char **sm_qemu_cmdline_from_string (const char *args, const SmQemuRewrite *rw,
                                    char **user_qmp, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* A QEMU started by sm_qemu_spawn. */
typedef struct {
  pid_t pid;
  uint64_t start_time;         /* sm_proc_start_time at spawn */
  char *log_path;              /* its stdout+stderr */
} SmQemuProc;
void sm_qemu_proc_free (SmQemuProc *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmQemuProc, sm_qemu_proc_free)

/* Starts ARGV in a new session (setsid), stdin from /dev/null, stdout and
 * stderr appended to LOG_PATH, detached so that it outlives the caller (it
 * is not left a zombie of a long-lived caller either), then waits until the
 * unix socket QMP_PATH accepts a connection (at most TIMEOUT_MS).  A QEMU
 * that exits first is SM_ERROR_FAILED "destination QEMU exited: LAST LINES
 * OF ITS LOG"; a socket that never appears SM_ERROR_TIMEOUT.  On failure
 * the process is killed.  Caller frees. */
SmQemuProc *sm_qemu_spawn (const char *const *argv, const char *log_path,
                           const char *qmp_path, int timeout_ms,
                           GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* True when PID is alive and its start time is START_TIME (0: any). */
bool sm_proc_alive (pid_t pid, uint64_t start_time);

/* Stops the process PID (start time START_TIME, 0: not checked): SIGTERM,
 * then SIGKILL after GRACE_MS, then waits until it is gone (bounded: 10 s
 * more).  A process that is already gone, or whose start time differs (a
 * reused PID), is left alone and counts as stopped.  SM_ERROR_TIMEOUT when
 * it survives SIGKILL that long. */
bool sm_proc_stop (pid_t pid, uint64_t start_time, int grace_ms,
                   GError **error);

/* Waits up to TIMEOUT_MS for PID (START_TIME as above) to exit by itself;
 * true when it did. */
bool sm_proc_wait_gone (pid_t pid, uint64_t start_time, int timeout_ms);

/* Shuts down (SHUT_RDWR) every TCP connection of process PID to
 * HOST:PORT (an IPv4 or IPv6 address literal), through a duplicate of its
 * descriptor (pidfd_getfd: root, or a process snapmig may trace).  For a
 * QEMU whose NBD client waits on a connection whose link died silently:
 * its requests then fail at once instead of after TCP's own timeout
 * (minutes), so that its block jobs can end.  *COUNT gets the number of
 * connections shut down.  SM_ERROR_IO when /proc or the kernel refuses. */
bool sm_proc_sever_tcp (pid_t pid, const char *host, int port, int *count,
                        GError **error);

#endif /* SM_QEMU_PROC_H */
