/* libsnapmig — the tunnel's private parts shared by lib/tunnel.c (the
 * processes) and lib/tunnel-ssh.c (ssh's command lines).
 */
#ifndef SM_TUNNEL_PRIVATE_H
#define SM_TUNNEL_PRIVATE_H

#include <glib.h>

#include <stdbool.h>
#include <sys/types.h>

/* How long a stopped transport or tunnel gets after end of file, then
 * after SIGTERM, before the next step. */
#define STOP_EOF_MS 2000
#define STOP_TERM_MS 2000

static inline gint64
sm_tunnel_now_ms (void)
{
  return g_get_monotonic_time () / 1000;
}

/* Collected stderr of a child: its last complete (or pending) line. */
typedef struct {
  GString *pending;
  char *last;
  bool echo;                   /* copy each line to our stderr */
} SmTunnelErrLog;

/* Milliseconds left until DEADLINE (sm_tunnel_now_ms), 0 when past. */
int sm_tunnel_ms_left (gint64 deadline);

/* Waits (MS at most) for PID to exit; true when it did (reaped). */
bool sm_tunnel_wait_exit (pid_t pid, int ms, int *status);

/* Ends the child PID whose stdin the caller closed: a bounded wait, then
 * SIGTERM, then SIGKILL, always by PID. */
void sm_tunnel_stop_child (pid_t pid, int eof_ms);

/* Spawns ARGV with its stdin *IN_FD (a socket or pipe we write), stdout
 * *OUT_FD (we read) and stderr *ERR_FD (we read), all close-on-exec on our
 * side, *ERR_FD non-blocking. */
bool sm_tunnel_spawn (char *const *argv, pid_t *pid, int *in_fd,
                      int *out_fd, int *err_fd, GError **error);

/* Adds N bytes at P of the child's stderr to L. */
void sm_tunnel_errlog_feed (SmTunnelErrLog *l, const char *p, size_t n);

/* Reads what FD has now; false at end of file or error. */
bool sm_tunnel_errlog_read (SmTunnelErrLog *l, int fd);

/* L's last line ("" when none); owned by L. */
const char *sm_tunnel_errlog_last (SmTunnelErrLog *l);

/* Reads one line from FD until DEADLINE, collecting ERR_FD into LOG
 * meanwhile (ERR_FD -1: none).  *LINE without its newline; false with
 * *EOF_SEEN or a timeout or an interruption error. */
bool sm_tunnel_read_line (int fd, GString *buf, int err_fd,
                          SmTunnelErrLog *log, gint64 deadline, char **line,
                          GError **error);

/* Writes all N bytes at P to FD (EINTR and partial writes handled). */
bool sm_tunnel_write_all (int fd, const char *p, size_t n);


/* A migration id usable as a file name, else SM_ERROR_INVALID. */
bool sm_tunnel_valid_id (const char *id, GError **error);

/* The ControlMaster: SSH -M -S CTL -T [our -o options] [-o CIPHER_OPT]
 * OPTS HOST [REMOTE...] relay --hold --id=ID [EXTRA...], the words snapmig
 * adds quoted for the remote shell (ssh joins the remote command's words
 * with spaces).  CIPHER_OPT may be NULL.  NULL-ended; caller frees. */
char **sm_tunnel_ssh_master_argv (const char *ssh, char *const *opts,
                                  const char *host, char *const *remote,
                                  const char *ctl, const char *id,
                                  const char *const *extra,
                                  const char *cipher_opt)
  G_GNUC_WARN_UNUSED_RESULT;

/* "Ciphers=aes128-gcm@openssh.com,REST" (EFFECTIVE reordered, AES-GCM
 * first) when CPU_AES and the user's configuration leaves the cipher
 * order at OpenSSH's built-in one (EFFECTIVE, what `ssh -G` says with the
 * user's options, equals BUILTIN, what it says with -F none); NULL
 * otherwise: a configured Ciphers (file or -c/-o) is the user's choice and
 * stays in charge.  Caller frees. */
char *sm_tunnel_ssh_cipher_pref (const char *effective, const char *builtin,
                                 bool cpu_aes) G_GNUC_WARN_UNUSED_RESULT;

/* sm_tunnel_ssh_cipher_pref for this CPU and `SSH -G` with OPTS and HOST
 * (two runs of ssh, no connection).  Caller frees. */
char *sm_tunnel_ssh_cipher_opt (const char *ssh, char *const *opts,
                                const char *host) G_GNUC_WARN_UNUSED_RESULT;

/* A forward added to the master at CTL: SSH [the -F and -o options of
 * OPTS] -S CTL -O forward FLAG SPEC HOST (FLAG "-L" or "-R").  Caller
 * frees. */
char **sm_tunnel_ssh_forward_argv (const char *ssh, char *const *opts,
                                   const char *host, const char *ctl,
                                   const char *flag, const char *spec)
  G_GNUC_WARN_UNUSED_RESULT;

#endif /* SM_TUNNEL_PRIVATE_H */
