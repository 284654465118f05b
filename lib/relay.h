/* libsnapmig — the relay protocol of `migrate --tunnel` in relay mode
 * (lib/tunnel.h): many unix-socket streams, each with its own flow
 * control, over one byte stream (a pipe pair or a socket).  The engine is
 * symmetric: `snapmig tunnel` runs it on the source's end, `snapmig relay`
 * on the destination's, the same code.
 *
 * Frames: an 8-byte header then the payload (at most SM_RELAY_MAX_PAYLOAD):
 *   byte 0     type (SmRelayFrame)
 *   bytes 1-3  payload length, big-endian
 *   bytes 4-7  channel id, big-endian; odd when the source side (odd=true)
 *              made the channel, even when the destination side did, so
 *              both ends allocate without asking each other
 * Messages:
 *   OPEN ch PATH          connect to the unix socket PATH on the receiving
 *                         side and carry channel ch's bytes to it
 *   OPENED ch             the connection (or the LISTEN) of ch is up
 *   FAILED ch MESSAGE     it is not (the channel is gone on both sides)
 *   DATA ch BYTES         stream bytes
 *   CREDIT ch N           (4 bytes, big-endian) the receiver wrote N more
 *                         bytes into its socket: the sender may send N more.
 *                         A sender never has more than SM_RELAY_WINDOW bytes
 *                         unacknowledged per channel, so a slow reader
 *                         stalls only its own stream and memory is bounded
 *   SHUT ch               no more DATA on ch from the sender (half close:
 *                         the receiver shuts its socket's write side once
 *                         its buffer is written); a channel whose both
 *                         directions are shut is forgotten on both sides
 *   CLOSE ch              the sender dropped ch (error, reset): drop it too
 *   LISTEN ch PATH\0TARGET  listen on the unix socket PATH (replacing a
 *                         stale one) and, for each connection accepted,
 *                         open a channel back with OPEN TARGET; answered
 *                         OPENED ch or FAILED ch (ch only names the request)
 * Frames for a channel the receiver does not know are ignored (it may have
 * been closed meanwhile: ids are never reused).
 */
#ifndef SM_RELAY_H
#define SM_RELAY_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#define SM_RELAY_HEADER 8
#define SM_RELAY_MAX_PAYLOAD (64 * 1024)
#define SM_RELAY_WINDOW (1024 * 1024)

typedef enum {
  SM_RELAY_OPEN = 1,
  SM_RELAY_OPENED,
  SM_RELAY_FAILED,
  SM_RELAY_DATA,
  SM_RELAY_CREDIT,
  SM_RELAY_SHUT,
  SM_RELAY_CLOSE,
  SM_RELAY_LISTEN,
  SM_RELAY_FRAME_LAST
} SmRelayFrame;

/* "OPEN", "DATA", ...; "?" for anything else. */
const char *sm_relay_frame_name (int type);

typedef struct SmRelay SmRelay;

/* An engine on the transport IN_FD (frames read) and OUT_FD (frames
 * written; may be IN_FD), both set non-blocking here; the engine does not
 * own them (the caller closes them after sm_relay_free).  ODD: this is the
 * side whose channel ids are odd (the source). */
SmRelay *sm_relay_new (int in_fd, int out_fd, bool odd)
  G_GNUC_WARN_UNUSED_RESULT;

/* Closes every relayed connection (their peers see end of file) and the
 * listeners the engine made; frees R.  Listeners given with
 * sm_relay_add_listener stay open (they are the caller's). */
void sm_relay_free (SmRelay *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmRelay, sm_relay_free)

/* Serves the listening socket LISTEN_FD (the caller's; set non-blocking
 * here): each connection accepted becomes a channel to the peer's TARGET
 * (OPEN TARGET).  Until sm_relay_free. */
void sm_relay_add_listener (SmRelay *r, int listen_fd, const char *target);

/* Relays the connected socket FD (owned by R from now on) to the peer's
 * TARGET.  Returns the channel id. */
uint32_t sm_relay_connect (SmRelay *r, int fd, const char *target);

/* Asks the peer to listen on PATH and open a channel back to TARGET (on
 * this side) for each connection.  Returns the request's id for
 * sm_relay_listen_result. */
uint32_t sm_relay_listen (SmRelay *r, const char *path, const char *target);

/* The answer to the LISTEN request ID: 0 still pending, 1 listening, -1
 * refused (*MESSAGE the peer's reason, caller frees).  An answer is given
 * once; afterwards (and for an unknown ID) -1 with *MESSAGE NULL. */
int sm_relay_listen_result (SmRelay *r, uint32_t id, char **message);

/* The poll() set: fills at most MAX entries of FDS with what the engine
 * waits for now and returns their number (at most sm_relay_nfds_max).
 * Pass the same entries, after poll(), to sm_relay_dispatch. */
size_t sm_relay_nfds_max (const SmRelay *r);
size_t sm_relay_pollfds (SmRelay *r, struct pollfd *fds, size_t max);

/* Handles what poll() reported on the entries sm_relay_pollfds filled.
 * False when the transport ended: end of file (no error set) or an error
 * or a malformed frame (ERROR set). */
bool sm_relay_dispatch (SmRelay *r, const struct pollfd *fds, size_t n,
                        GError **error);

/* Runs the engine alone (poll, dispatch) until the transport ends; true at
 * end of file, false with ERROR on a transport error or an interruption
 * (sm_interrupted). */
bool sm_relay_run (SmRelay *r, GError **error);

/* Stream bytes carried so far (both ways), the channels open now. */
int64_t sm_relay_bytes (const SmRelay *r);
unsigned sm_relay_channels (const SmRelay *r);

/* Stops reading new frames (tests: a peer that does not read; the
 * transport's buffer fills and the sender stops).  Off again with false. */
void sm_relay_set_paused (SmRelay *r, bool paused);

/* Unix socket helpers of the relay and the tunnel: a non-blocking
 * listening socket at PATH (a stale socket there removed first), a
 * non-blocking connect to PATH (EINPROGRESS is success).  -1 with ERROR
 * naming PATH. */
int sm_relay_unix_listen (const char *path, GError **error);
int sm_relay_unix_connect (const char *path, GError **error);

#endif /* SM_RELAY_H */
