/* libsnapmig — the tunnel of `snapmig migrate --tunnel` (issue 12): every
 * stream between the hosts (one NBD connection per disk, the migration
 * stream, the connections a post-copy recovery opens, and the destination's
 * pull of the source's lower layers) goes through the connection the
 * destination command (--dest-cmd) opens, between unix sockets at both
 * ends: no TCP port is opened on the destination.
 *
 * Process model (source first):
 *
 *   migrate ──spawns──> `snapmig tunnel` (sm_tunnel_serve), its control
 *                        channel the child's stdin/stdout, one line per
 *                        request and one per answer (below)
 *   `snapmig tunnel` ──ssh mode (DEST_ARGV[0]'s base name is "ssh")──>
 *       one OpenSSH ControlMaster:  ssh -M -S LOCAL/ssh.ctl -T
 *         -o ControlPersist=no -o ExitOnForwardFailure=yes
 *         -o StreamLocalBindUnlink=yes -o ServerAliveInterval=5
 *         [-o Ciphers=aes128-gcm@openssh.com,...: only when the CPU has
 *         AES instructions and the user's ssh configuration leaves the
 *         cipher order at OpenSSH's built-in one (`ssh -G`)]
 *         [the user's ssh options] HOST [remote command] relay --hold
 *         --id=ID [DEST_EXTRA]
 *       and a unix-socket forward per endpoint on it:
 *         ssh -S LOCAL/ssh.ctl -O forward -L LOCAL/NAME:REMOTE HOST
 *         ssh -S LOCAL/ssh.ctl -O forward -R REMOTE:LOCAL HOST
 *       (host keys checked as the user's ssh configuration says)
 *   `snapmig tunnel` ──relay mode (any other --dest-cmd)──>
 *       DEST_ARGV relay --id=ID [DEST_EXTRA], whose stdin/stdout carry the
 *       relay protocol (lib/relay.h): many streams, each with its own flow
 *       control, over one pipe pair
 *   `snapmig relay` (destination, sm_relay_dest) makes the tunnel's
 *       directory STATE/run/ID-tunnel (0700; sm_tunnel_dest_dir), removes
 *       stale sockets there, prints "snapmig-relay 1 DIR\n"; with --hold it
 *       then only waits for end of file on stdin, otherwise it serves the
 *       relay protocol until end of file.
 *
 * The control channel (lines; paths are the rest of the line):
 *   tunnel -> "ready MODE REMOTE-DIR"          once, when first up
 *   "forward REMOTE-PATH"     -> "ok LOCAL-PATH" | "error MESSAGE"
 *       a local socket LOCAL/BASENAME whose connections reach REMOTE-PATH
 *       on the destination (the same answer for the same REMOTE-PATH)
 *   "reverse NAME LOCAL-PATH" -> "ok REMOTE-DIR/NAME.sock" | "error ..."
 *       a socket on the destination whose connections reach LOCAL-PATH
 *   "state"                   -> "state up|down RESTARTS BYTES PID"
 *       BYTES carried so far (both ways, relay mode; -1 in ssh mode), PID
 *       of the transport process (ssh master or the relay command)
 * When the transport dies (ssh killed, a relay's pipe closed) the tunnel
 * is "down": it starts the transport again (every 0.5 s, then 1 s) and
 * adds every forward again, the same local paths, so that QEMU's NBD
 * clients reconnect (reconnect-delay) and stopped mirrors can be resumed;
 * when it cannot within the link timeout it prints "error MESSAGE" to
 * stderr and exits 3.  At end of file on its stdin (migrate ended, or was
 * killed) it closes the transport, removes LOCAL and exits 0.  LOCAL also
 * holds transport.pid (the transport's PID, rewritten at each restart).
 */
#ifndef SM_TUNNEL_H
#define SM_TUNNEL_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

typedef struct SmTunnel SmTunnel;

typedef struct {
  bool up;                     /* the transport runs */
  int restarts;                /* times it was started again */
  int64_t bytes;               /* carried both ways, -1 unknown (ssh) */
  int pid;                     /* the transport process */
} SmTunnelState;

/* Starts `SELF_EXE tunnel` for the migration ID with its private directory
 * LOCAL_DIR (created 0700, must not exist; removed when the tunnel ends)
 * and waits (TIMEOUT_MS) until it is up.  DEST_ARGV is --dest-cmd split,
 * DEST_EXTRA the destination phases' options (given to `relay` too: its
 * --state-dir).  NULL with an error naming the transport and its last
 * stderr line when it does not come up. */
SmTunnel *sm_tunnel_open (const char *self_exe, const char *const *dest_argv,
                          const char *const *dest_extra, const char *id,
                          const char *local_dir, int link_timeout_ms,
                          int timeout_ms, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* "ssh" or "relay". */
const char *sm_tunnel_mode (const SmTunnel *t);

/* The tunnel's directory on the destination (STATE/run/ID-tunnel). */
const char *sm_tunnel_remote_dir (const SmTunnel *t);

/* The local endpoint ("unix:LOCAL-PATH") that reaches the destination's
 * REMOTE_URI ("unix:PATH"; anything else is SM_ERROR_INVALID).  Caller
 * frees. */
char *sm_tunnel_forward (SmTunnel *t, const char *remote_uri, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* A socket on the destination, "unix:REMOTE-DIR/NAME.sock", whose
 * connections reach the local LOCAL_URI ("unix:PATH").  Caller frees. */
char *sm_tunnel_reverse (SmTunnel *t, const char *name, const char *local_uri,
                         GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* The tunnel's state; false with an error when the tunnel process is gone
 * (it gave up after the link timeout: its message). */
bool sm_tunnel_state (SmTunnel *t, SmTunnelState *state, GError **error);

/* Ends the tunnel (end of file on its control channel, then SIGTERM and
 * SIGKILL after bounded waits) and frees T. */
void sm_tunnel_close (SmTunnel *t);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmTunnel, sm_tunnel_close)

/* ---- the processes ------------------------------------------------------ */

typedef struct {
  const char *const *dest_argv;
  const char *const *dest_extra;
  const char *id;
  const char *local_dir;
  int link_timeout_ms;
} SmTunnelServeOptions;

/* `snapmig tunnel`: the source's end (see above); control requests on
 * CTL_IN, answers on CTL_OUT.  Returns at end of file on CTL_IN (true) or
 * when the link timeout passed without a transport (false). */
bool sm_tunnel_serve (const SmTunnelServeOptions *o, int ctl_in, int ctl_out,
                      GError **error);

/* `snapmig relay`: the destination's end, on IN_FD/OUT_FD (its stdin and
 * stdout).  HOLD: ssh mode (only the directory, then wait for end of
 * file). */
bool sm_relay_dest (const char *state_dir, const char *id, bool hold,
                    int in_fd, int out_fd, GError **error);

/* The tunnel's reverse forward of the source's layer server, in the
 * destination's tunnel directory: what migrate-prepare --tunnel pulls the
 * lower layers from. */
#define SM_TUNNEL_LAYERS_SOCK "layers.sock"

/* STATE_DIR/run/ID-tunnel.  Caller frees. */
char *sm_tunnel_dest_dir (const char *state_dir, const char *id)
  G_GNUC_WARN_UNUSED_RESULT;

/* Removes STATE_DIR/run/ID-tunnel with the sockets in it (the incoming
 * migration's clean-up, at its end or roll-back). */
void sm_tunnel_dest_dir_remove (const char *state_dir, const char *id);

/* Removes the entries of a tunnel's directory DIR (not recursively: the
 * sockets, transport.pid, ssh.ctl, the log) and DIR. */
void sm_tunnel_remove_dir (const char *dir);

/* ---- pure parts (unit-tested) ------------------------------------------ */

/* When DEST_ARGV runs ssh (its first word's base name is "ssh"): true, with
 * *SSH_OPTS the options before the destination (each option with its
 * argument: -p 22, -o X=Y, -i KEY, -F CONFIG, ...), *HOST the destination
 * and *REMOTE the remote command (snapmig and any words before it, e.g.
 * "ip netns exec B snapmig").  False for any other command. */
bool sm_tunnel_ssh_split (const char *const *dest_argv, char ***ssh_opts,
                          char **host, char ***remote);

#endif /* SM_TUNNEL_H */
