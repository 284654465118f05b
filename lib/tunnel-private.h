/* libsnapmig — the tunnel's private parts shared by lib/tunnel.c (the
 * processes) and lib/tunnel-ssh.c (ssh's command lines).
 */
#ifndef SM_TUNNEL_PRIVATE_H
#define SM_TUNNEL_PRIVATE_H

#include <glib.h>

/* The ControlMaster: SSH -M -S CTL -T [our -o options] OPTS HOST
 * [REMOTE...] relay --hold --id=ID [EXTRA...], the words snapmig adds
 * quoted for the remote shell (ssh joins the remote command's words with
 * spaces).  NULL-ended; caller frees. */
char **sm_tunnel_ssh_master_argv (const char *ssh, char *const *opts,
                                  const char *host, char *const *remote,
                                  const char *ctl, const char *id,
                                  const char *const *extra)
  G_GNUC_WARN_UNUSED_RESULT;

/* A forward added to the master at CTL: SSH [the -F and -o options of
 * OPTS] -S CTL -O forward FLAG SPEC HOST (FLAG "-L" or "-R").  Caller
 * frees. */
char **sm_tunnel_ssh_forward_argv (const char *ssh, char *const *opts,
                                   const char *host, const char *ctl,
                                   const char *flag, const char *spec)
  G_GNUC_WARN_UNUSED_RESULT;

#endif /* SM_TUNNEL_PRIVATE_H */
