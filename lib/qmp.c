/* libsnapmig — QMP client.
 *
 * The socket is non-blocking (the connect too) and every wait goes through
 * poll() with a deadline that is checked on every pass, also while bytes
 * keep arriving, so that a QEMU that stops answering is a timeout, a peer
 * that streams garbage is a protocol error, a QEMU that died is
 * SM_ERROR_DISCONNECTED and a signal is SM_ERROR_INTERRUPTED, never a hang.
 * QMP frames messages as one JSON object per line; bytes are accumulated
 * until a newline arrives (at most SM_QMP_MAX_LINE of them), so partial
 * reads and several messages in one read both work.
 */
#include "qmp.h"
#include "image-lock.h"

#include <errno.h>
#include <glib-unix.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "interrupt.h"
#include "qemu-proc.h"

/* After a reply timed out, the commands that follow (an error path resuming
 * the guest, cancelling a job) share this much more time, unless QEMU shows
 * it is alive again by sending anything: a stopped QEMU then costs the
 * caller its timeout plus this, not a timeout per cleanup command. */
#define STALL_GRACE_MS 500

/* Reads past the deadline, of what is readable at once (see read_message). */
#define LATE_READS_MAX 4

/* Events kept for sm_qmp_wait_event at most; beyond, the oldest go.  QEMU
 * sends a handful per block job and snapmig's loops take or clear them, so
 * only a peer flooding events reaches this: memory stays bounded. */
#define EVENTS_MAX 10000

struct SmQmp {
  char *address;
  int fd;                       /* -1 once the peer is gone */
  int timeout_ms;               /* per-command reply timeout, > 0 */
  gint64 stalled_until;         /* monotonic us, see STALL_GRACE_MS; -1 */
  bool oob;                     /* out-of-band execution negotiated */
  char *broken;                 /* why the connection was given up, or NULL */
  size_t max_line;              /* SM_QMP_MAX_LINE unless a test lowers it */
  GString *inbuf;               /* bytes read, from `start` not yet taken */
  size_t start;                 /* inbuf's first byte not taken as a line */
  size_t scanned;               /* inbuf[start..scanned) holds no \n */
  gint64 late_deadline;         /* the deadline late_reads counts for */
  int late_reads;               /* reads after it passed (LATE_READS_MAX) */
  GQueue *events;               /* json_object *, owned, arrival order */
  char *last_error_class;
  guint64 next_id;
  bool probed;
  SmQmpCaps caps;
};

/* A deadline in g_get_monotonic_time() microseconds; -1 means none. */
typedef gint64 Deadline;

static Deadline
deadline_after (int timeout_ms)
{
  if (timeout_ms < 0)
    return -1;
  return g_get_monotonic_time () + (gint64) timeout_ms * 1000;
}

/* Milliseconds left for poll(): -1 for no deadline, 0 when passed. */
static int
deadline_remaining_ms (Deadline deadline)
{
  gint64 left;

  if (deadline < 0)
    return -1;
  left = deadline - g_get_monotonic_time ();
  if (left <= 0)
    return 0;
  /* Round up so that a poll never returns just before the deadline. */
  return (int) MIN ((left + 999) / 1000, G_MAXINT);
}

/* "2 s", "0.5 s": a timeout for messages. */
static char *
format_ms (int ms)
{
  if (ms % 1000 == 0)
    return g_strdup_printf ("%d s", ms / 1000);
  return g_strdup_printf ("%.1f s", ms / 1000.0);
}

static const char *
to_json (json_object *obj)
{
  return json_object_to_json_string_ext (obj, JSON_C_TO_STRING_PLAIN |
                                         JSON_C_TO_STRING_NOSLASHESCAPE);
}

static bool
set_disconnected (SmQmp *qmp, GError **error)
{
  if (qmp->fd >= 0) {
    close (qmp->fd);
    qmp->fd = -1;
  }
  sm_error_set_with_object (error, SM_ERROR_DISCONNECTED, qmp->address,
               "QEMU closed the monitor connection %s", qmp->address);
  return false;
}

/* ---- connecting ------------------------------------------------------ */

/* "host:port" is TCP when it has no '/' and ends in ":DIGITS"; anything
 * else is a unix socket path.  "[v6addr]:port" is accepted too.
 */
static bool
parse_tcp_address (const char *address, char **host, char **port)
{
  const char *colon;
  const char *p;

  if (strchr (address, '/'))
    return false;
  colon = strrchr (address, ':');
  if (!colon || colon == address || colon[1] == '\0')
    return false;
  for (p = colon + 1; *p; p++)
    if (!g_ascii_isdigit (*p))
      return false;
  if (address[0] == '[' && colon[-1] == ']')
    *host = g_strndup (address + 1, colon - address - 2);
  else
    *host = g_strndup (address, colon - address);
  *port = g_strdup (colon + 1);
  return true;
}

/* A unix connect does not wait for the peer's accept(), but it blocks while
 * the listener's backlog is full (QEMU stopped, or another client connecting
 * in a loop); non-blocking it fails with EAGAIN instead, and Linux offers no
 * way to wait for room but to try again.  So: try, back off, try, until
 * DEADLINE.  Nobody listening (ECONNREFUSED, ENOENT) fails at once. */
static int
connect_unix (const char *path, Deadline deadline, int timeout_ms,
              GError **error)
{
  struct sockaddr_un sun = { .sun_family = AF_UNIX };
  int backoff_ms = 1;

  if (strlen (path) >= sizeof sun.sun_path) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "QEMU monitor socket path %s is too long", path);
    return -1;
  }
  strcpy (sun.sun_path, path);
  for (;;) {
    int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int saved;
    int left;

    if (fd < 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "socket: %s",
                   g_strerror (errno));
      return -1;
    }
    if (connect (fd, (struct sockaddr *) &sun, sizeof sun) == 0)
      return fd;
    saved = errno;
    close (fd);
    if (saved != EAGAIN && saved != EINTR) {
      /* No socket file: not-found; a socket nobody listens on (QEMU
       * died): disconnected; anything else: io. */
      sm_error_set_with_object (error, saved == ENOENT ? SM_ERROR_NOT_FOUND
                                : saved == ECONNREFUSED ? SM_ERROR_DISCONNECTED
                                : SM_ERROR_IO, path,
                                "cannot connect to QEMU monitor %s: %s", path,
                                g_strerror (saved));
      return -1;
    }
    if (sm_interrupt_check (error))
      return -1;
    left = deadline_remaining_ms (deadline);
    if (left == 0) {
      g_autofree char *t = format_ms (timeout_ms);

      sm_error_set_with_object (error, SM_ERROR_TIMEOUT, path,
                   "cannot connect to QEMU monitor %s: it accepted no "
                   "connection within %s (another client may hold the "
                   "monitor, or QEMU may be stopped)", path, t);
      return -1;
    }
    /* A signal ends the sleep early (no SA_RESTART); checked above. */
    poll (NULL, 0, left < 0 ? backoff_ms : MIN (backoff_ms, left));
    backoff_ms = MIN (backoff_ms * 2, 100);
  }
}

/* Non-blocking connect bounded by DEADLINE. */
static int
connect_tcp_one (const struct addrinfo *ai, Deadline deadline, int *err)
{
  struct pollfd pfd;
  socklen_t len = sizeof *err;
  int fd;
  int r;

  fd = socket (ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
               ai->ai_protocol);
  if (fd < 0) {
    *err = errno;
    return -1;
  }
  if (connect (fd, ai->ai_addr, ai->ai_addrlen) == 0)
    return fd;
  if (errno != EINPROGRESS) {
    *err = errno;
    close (fd);
    return -1;
  }
  pfd = (struct pollfd) { .fd = fd, .events = POLLOUT };
  do {
    if (sm_interrupt_check (NULL)) {
      *err = EINTR;
      close (fd);
      return -1;
    }
    r = poll (&pfd, 1, deadline_remaining_ms (deadline));
  } while (r < 0 && errno == EINTR);
  if (r == 0) {
    *err = ETIMEDOUT;
    close (fd);
    return -1;
  }
  if (r < 0 || getsockopt (fd, SOL_SOCKET, SO_ERROR, err, &len) < 0) {
    *err = errno;
    close (fd);
    return -1;
  }
  if (*err != 0) {
    close (fd);
    return -1;
  }
  return fd;
}

static int
connect_tcp (const char *address, const char *host, const char *port,
             Deadline deadline, GError **error)
{
  struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
  struct addrinfo *res = NULL;
  const struct addrinfo *ai;
  int err = 0;
  int fd = -1;
  int r;

  r = getaddrinfo (host, port, &hints, &res);
  if (r != 0) {
    sm_error_set_with_object (error, SM_ERROR_IO, address,
                 "cannot connect to QEMU monitor %s: %s", address,
                 gai_strerror (r));
    return -1;
  }
  for (ai = res; ai && fd < 0; ai = ai->ai_next)
    fd = connect_tcp_one (ai, deadline, &err);
  freeaddrinfo (res);
  if (fd < 0 && err == EINTR && sm_interrupt_check (error))
    return -1;
  if (fd < 0)
    sm_error_set_with_object (error,
                 err == ETIMEDOUT ? SM_ERROR_TIMEOUT
                 : err == ECONNREFUSED ? SM_ERROR_DISCONNECTED : SM_ERROR_IO,
                 address, "cannot connect to QEMU monitor %s: %s", address,
                 g_strerror (err));
  return fd;
}

/* ---- reading and writing --------------------------------------------- */

/* A connection given up on (a peer that broke the protocol): every later
 * call fails the same way rather than read what follows. */
static bool
check_broken (SmQmp *qmp, GError **error)
{
  if (!qmp->broken)
    return true;
  g_set_error (error, SM_ERROR, SM_ERROR_QMP_PROTOCOL, "%s", qmp->broken);
  return false;
}

static bool
set_broken (SmQmp *qmp, GError **error, const char *fmt, ...)
  G_GNUC_PRINTF (3, 4);

static bool
set_broken (SmQmp *qmp, GError **error, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  g_free (qmp->broken);
  qmp->broken = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  if (qmp->fd >= 0) {
    close (qmp->fd);
    qmp->fd = -1;
  }
  /* Give the memory back: it may be max_line bytes. */
  g_string_free (qmp->inbuf, TRUE);
  qmp->inbuf = g_string_new (NULL);
  qmp->start = qmp->scanned = 0;
  return check_broken (qmp, error);
}

static bool
timed_out (SmQmp *qmp, GError **error)
{
  g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
               "timed out waiting for QEMU monitor %s", qmp->address);
  return false;
}

static bool
send_line (SmQmp *qmp, const char *line, Deadline deadline, GError **error)
{
  g_autofree char *msg = g_strconcat (line, "\r\n", NULL);
  size_t len = strlen (msg);
  size_t done = 0;

  if (!check_broken (qmp, error))
    return false;
  if (qmp->fd < 0)
    return set_disconnected (qmp, error);
  sm_debug ("qmp", "%s -> %s", qmp->address, line);
  while (done < len) {
    /* MSG_NOSIGNAL: a dead QEMU must be an error, not a SIGPIPE. */
    ssize_t n = send (qmp->fd, msg + done, len - done, MSG_NOSIGNAL);

    if (n >= 0) {
      done += n;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
      struct pollfd pfd = { .fd = qmp->fd, .events = POLLOUT };
      int left = deadline_remaining_ms (deadline);
      int r;

      if (sm_interrupt_check (error))
        return false;
      if (left == 0)
        return timed_out (qmp, error);
      r = poll (&pfd, 1, left);
      if (r < 0 && errno != EINTR) {
        g_set_error (error, SM_ERROR, SM_ERROR_IO,
                     "poll on QEMU monitor %s: %s", qmp->address,
                     g_strerror (errno));
        return false;
      }
    } else if (errno == EPIPE || errno == ECONNRESET) {
      return set_disconnected (qmp, error);
    } else {
      g_set_error (error, SM_ERROR, SM_ERROR_IO,
                   "cannot write to QEMU monitor %s: %s", qmp->address,
                   g_strerror (errno));
      return false;
    }
  }
  return true;
}

/* Takes one whole line out of the input buffer, if there is one.  Bytes
 * already searched are not searched again, and taken lines are dropped
 * from the buffer only once none is left: a long line arriving in many
 * pieces, or many short ones in one read, cost linear time. */
static char *
take_line (SmQmp *qmp)
{
  GString *in = qmp->inbuf;
  char *nl;
  char *line;

  qmp->scanned = MAX (qmp->scanned, qmp->start);
  nl = memchr (in->str + qmp->scanned, '\n', in->len - qmp->scanned);
  if (!nl) {
    qmp->scanned = in->len;
    if (qmp->start > 0) {
      g_string_erase (in, 0, qmp->start);
      qmp->scanned -= qmp->start;
      qmp->start = 0;
    }
    return NULL;
  }
  line = g_strndup (in->str + qmp->start, nl - (in->str + qmp->start));
  qmp->start = qmp->scanned = nl - in->str + 1;
  return line;
}

static json_object *
parse_message (SmQmp *qmp, const char *line, GError **error)
{
  json_tokener *tok = json_tokener_new ();
  json_object *obj;
  size_t len = strlen (line);
  bool ok;

  /* The whole line must be one object: trailing bytes are an error too. */
  obj = json_tokener_parse_ex (tok, line, len);
  ok = obj && json_tokener_get_error (tok) == json_tokener_success &&
    json_tokener_get_parse_end (tok) == len &&
    json_object_is_type (obj, json_type_object);
  json_tokener_free (tok);
  if (!ok) {
    json_object_put (obj);
    g_set_error (error, SM_ERROR, SM_ERROR_QMP_PROTOCOL,
                 "QEMU monitor %s sent a message that is not a JSON object",
                 qmp->address);
    return NULL;
  }
  return obj;
}

/* Reads the next message (a JSON object) before DEADLINE.
 *
 * The deadline is checked on every pass, not only when poll() times out: a
 * peer that keeps sending without ever ending a line cannot hold us past it
 * (nor past max_line bytes).  At and after the deadline, what is readable at
 * once is still read, a few buffers of it (LATE_READS_MAX), so that a wait
 * of 0 ms sees what has arrived.  A signal (interrupt.h) ends the wait with
 * SM_ERROR_INTERRUPTED; bytes of a message read so far stay buffered, and a
 * reply that arrives later is recognised by its id and dropped. */
static json_object *
read_message (SmQmp *qmp, Deadline deadline, GError **error)
{
  /* One budget of late reads per deadline, not per call: each call may
   * return a message at once, and a wait makes many calls. */
  if (qmp->late_deadline != deadline) {
    qmp->late_deadline = deadline;
    qmp->late_reads = 0;
  }
  for (;;) {
    g_autofree char *line = take_line (qmp);
    char buf[65536];
    struct pollfd pfd;
    ssize_t n;
    int left;
    int r;

    if (line) {
      /* Anything from QEMU shows it is alive again. */
      qmp->stalled_until = -1;
      g_strstrip (line);        /* QMP ends lines with \r\n */
      if (line[0] == '\0')
        continue;
      sm_debug ("qmp", "%s <- %s", qmp->address, line);
      return parse_message (qmp, line, error);
    }
    if (!check_broken (qmp, error))
      return NULL;
    if (qmp->inbuf->len > qmp->max_line) {
      g_autofree char *size = qmp->max_line % (1 << 20) == 0
        ? g_strdup_printf ("%zu MiB", qmp->max_line >> 20)
        : g_strdup_printf ("%zu bytes", qmp->max_line);

      set_broken (qmp, error, "QEMU monitor %s sent more than %s without "
                  "ending the line: no QMP message is that long, the "
                  "connection is given up", qmp->address, size);
      return NULL;
    }
    if (qmp->fd < 0) {
      set_disconnected (qmp, error);
      return NULL;
    }
    if (sm_interrupt_check (error))
      return NULL;
    left = deadline_remaining_ms (deadline);
    if (left == 0 && qmp->late_reads++ >= LATE_READS_MAX) {
      timed_out (qmp, error);
      return NULL;
    }
    pfd = (struct pollfd) { .fd = qmp->fd, .events = POLLIN };
    r = poll (&pfd, 1, left);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "poll on QEMU monitor %s: %s",
                   qmp->address, g_strerror (errno));
      return NULL;
    }
    if (r == 0) {
      timed_out (qmp, error);
      return NULL;
    }
    n = recv (qmp->fd, buf, sizeof buf, 0);
    if (n > 0) {
      g_string_append_len (qmp->inbuf, buf, n);
    } else if (n == 0 || errno == ECONNRESET || errno == EPIPE) {
      if (qmp->inbuf->len > 0)
        sm_debug ("qmp", "%s: %zu bytes without a newline before EOF",
                  qmp->address, qmp->inbuf->len);
      set_disconnected (qmp, error);
      return NULL;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      g_set_error (error, SM_ERROR, SM_ERROR_IO,
                   "cannot read from QEMU monitor %s: %s", qmp->address,
                   g_strerror (errno));
      return NULL;
    }
  }
}

/* Keeps EVENT (consumed) for sm_qmp_wait_event. */
static void
queue_event (SmQmp *qmp, json_object *event)
{
  g_queue_push_tail (qmp->events, event);
  if (g_queue_get_length (qmp->events) > EVENTS_MAX) {
    sm_debug ("qmp", "%s: more than %d events waiting, dropping the oldest",
              qmp->address, EVENTS_MAX);
    json_object_put (g_queue_pop_head (qmp->events));
  }
}

/* ---- commands -------------------------------------------------------- */

/* The one reply checker: returns the "return" value (new reference) or turns
 * an "error" object into SM_ERROR_QMP "COMMAND: DESC", keeping the class.
 */
static json_object *
check_reply (SmQmp *qmp, const char *command, json_object *reply,
             GError **error)
{
  json_object *ret;
  json_object *err;

  if (json_object_object_get_ex (reply, "error", &err)) {
    json_object *cls = NULL;
    json_object *desc = NULL;

    json_object_object_get_ex (err, "class", &cls);
    json_object_object_get_ex (err, "desc", &desc);
    g_free (qmp->last_error_class);
    qmp->last_error_class = g_strdup (cls ? json_object_get_string (cls)
                                      : "GenericError");
    g_set_error (error, SM_ERROR, SM_ERROR_QMP, "%s: %s", command,
                 desc ? json_object_get_string (desc) : "unknown error");
    return NULL;
  }
  if (json_object_object_get_ex (reply, "return", &ret))
    return json_object_get (ret);
  g_set_error (error, SM_ERROR, SM_ERROR_QMP_PROTOCOL,
               "%s: QEMU monitor %s replied with neither return nor error",
               command, qmp->address);
  return NULL;
}

/* COMMAND's wait for its reply ended in ERR: turns a timeout into the
 * message a user reads (and starts the stall grace), prefixes the rest. */
static void
reply_failed (SmQmp *qmp, const char *command, int timeout_ms, bool stalled,
              GError *err, GError **error)
{
  g_autofree char *t = NULL;

  if (!g_error_matches (err, SM_ERROR, SM_ERROR_TIMEOUT)) {
    g_propagate_prefixed_error (error, err, "%s: ", command);
    return;
  }
  g_error_free (err);
  if (qmp->stalled_until < 0)
    qmp->stalled_until = g_get_monotonic_time () +
                         (gint64) STALL_GRACE_MS * 1000;
  if (stalled) {
    sm_error_set_with_object (error, SM_ERROR_TIMEOUT, qmp->address,
                 "%s: QEMU monitor %s did not answer: it stopped answering "
                 "an earlier command (QEMU may be stopped or hung)", command,
                 qmp->address);
    return;
  }
  t = format_ms (timeout_ms);
  sm_error_set_with_object (error, SM_ERROR_TIMEOUT, qmp->address,
               "%s: QEMU monitor %s did not answer within %s (QEMU may be "
               "stopped or hung)", command, qmp->address, t);
}

/* Sends COMMAND and waits for its reply until TIMEOUT_MS from now, cut
 * short by the stall grace when an earlier command got no reply. */
static json_object *
execute_as (SmQmp *qmp, const char *exec, const char *command,
            json_object *args, int timeout_ms, GError **error);

static json_object *
execute_within (SmQmp *qmp, const char *command, json_object *args,
                int timeout_ms, GError **error)
{
  return execute_as (qmp, "execute", command, args, timeout_ms, error);
}

/* EXEC: "execute", or "exec-oob" (answered by QEMU's monitor thread even
 * while its main loop waits for the global lock). */
static json_object *
execute_as (SmQmp *qmp, const char *exec, const char *command,
            json_object *args, int timeout_ms, GError **error)
{
  g_autoptr(json_object) req = json_object_new_object ();
  g_autofree char *id = g_strdup_printf ("sm-%" G_GUINT64_FORMAT,
                                         ++qmp->next_id);
  gint64 now = g_get_monotonic_time ();
  bool stalled = qmp->stalled_until >= 0;
  GError *err = NULL;
  Deadline deadline;

  if (stalled)
    timeout_ms = (int) CLAMP ((qmp->stalled_until - now) / 1000, 0,
                              timeout_ms);
  deadline = now + (gint64) timeout_ms * 1000;

  json_object_object_add (req, exec, json_object_new_string (command));
  if (args)
    json_object_object_add (req, "arguments", args);
  json_object_object_add (req, "id", json_object_new_string (id));
  if (!send_line (qmp, to_json (req), deadline, &err)) {
    reply_failed (qmp, command, timeout_ms, stalled, err, error);
    return NULL;
  }

  for (;;) {
    g_autoptr(json_object) msg = read_message (qmp, deadline, &err);
    json_object *msg_id;

    if (!msg) {
      reply_failed (qmp, command, timeout_ms, stalled, err, error);
      return NULL;
    }
    if (json_object_object_get_ex (msg, "event", NULL)) {
      queue_event (qmp, g_steal_pointer (&msg));
      continue;
    }
    /* A reply to an earlier command that timed out or was interrupted is
     * dropped by id.  QEMU echoes the id on every reply to a request that
     * carried one. */
    if (json_object_object_get_ex (msg, "id", &msg_id) &&
        g_strcmp0 (json_object_get_string (msg_id), id) != 0) {
      sm_debug ("qmp", "%s: dropping a reply to another command",
                qmp->address);
      continue;
    }
    return check_reply (qmp, command, msg, error);
  }
}

/* Sends every command of the batch before reading any reply: QEMU answers
 * them in order, and the client does not wait a round trip per command. */
bool
sm_qmp_run_batch (SmQmp *qmp, guint n, const char *const *commands,
                  json_object **args, GError **errors, GError **error)
{
  Deadline deadline = deadline_after (qmp->timeout_ms > 0 ? qmp->timeout_ms
                                      : -1);
  g_autoptr(GPtrArray) ids = g_ptr_array_new_with_free_func (g_free);
  guint i, answered = 0;

  for (i = 0; i < n; i++) {
    g_autoptr(json_object) req = json_object_new_object ();
    char *id = g_strdup_printf ("sm-%" G_GUINT64_FORMAT, ++qmp->next_id);

    g_ptr_array_add (ids, id);
    errors[i] = NULL;
    json_object_object_add (req, "execute",
                            json_object_new_string (commands[i]));
    if (args[i])
      json_object_object_add (req, "arguments", g_steal_pointer (&args[i]));
    json_object_object_add (req, "id", json_object_new_string (id));
    if (!send_line (qmp, to_json (req), deadline, error)) {
      g_prefix_error (error, "%s: ", commands[i]);
      for (i++; i < n; i++)
        g_clear_pointer (&args[i], json_object_put);
      return false;
    }
  }
  while (answered < n) {
    g_autoptr(json_object) msg = read_message (qmp, deadline, error);
    json_object *msg_id;
    guint k;

    if (!msg) {
      g_prefix_error (error, "%s: ", commands[answered]);
      return false;
    }
    if (json_object_object_get_ex (msg, "event", NULL)) {
      g_queue_push_tail (qmp->events, g_steal_pointer (&msg));
      continue;
    }
    if (!json_object_object_get_ex (msg, "id", &msg_id))
      continue;
    for (k = 0; k < n; k++)
      if (g_strcmp0 (json_object_get_string (msg_id), ids->pdata[k]) == 0)
        break;
    if (k == n) {
      sm_debug ("qmp", "%s: dropping a reply to another command",
                qmp->address);
      continue;
    }
    json_object_put (check_reply (qmp, commands[k], msg, &errors[k]));
    answered++;
  }
  return true;
}

json_object *
sm_qmp_execute (SmQmp *qmp, const char *command, json_object *args,
                GError **error)
{
  /* The idiom sm_qmp_execute (q, "x", sm_qmp_args (&err, ...), &err): a
   * failed builder has already set the error, and the command must not go
   * out without its arguments. */
  if (error && *error) {
    json_object_put (args);
    return NULL;
  }
  return execute_within (qmp, command, args, qmp->timeout_ms, error);
}

json_object *
sm_qmp_execute_type (SmQmp *qmp, const char *command, json_object *args,
                     json_type type, GError **error)
{
  g_autoptr(json_object) ret = sm_qmp_execute (qmp, command, args, error);

  if (!ret)
    return NULL;
  if (!json_object_is_type (ret, type)) {
    g_set_error (error, SM_ERROR, SM_ERROR_QMP_PROTOCOL,
                 "%s: QEMU monitor %s answered %s where %s was expected",
                 command, qmp->address,
                 json_type_to_name (json_object_get_type (ret)),
                 json_type_to_name (type));
    return NULL;
  }
  return g_steal_pointer (&ret);
}

bool
sm_qmp_run (SmQmp *qmp, const char *command, json_object *args,
            GError **error)
{
  g_autoptr(json_object) ret = sm_qmp_execute (qmp, command, args, error);

  return ret != NULL;
}

char *
sm_qmp_hmp (SmQmp *qmp, const char *command_line, GError **error)
{
  g_autoptr(json_object) args = json_object_new_object ();
  g_autoptr(json_object) ret = NULL;

  json_object_object_add (args, "command-line",
                          json_object_new_string (command_line));
  ret = sm_qmp_execute_type (qmp, "human-monitor-command",
                             g_steal_pointer (&args), json_type_string, error);
  if (!ret)
    return NULL;
  return g_strdup (json_object_get_string (ret));
}

const char *
sm_qmp_last_error_class (const SmQmp *qmp)
{
  return qmp->last_error_class;
}

const char *
sm_qmp_address (const SmQmp *qmp)
{
  return qmp->address;
}

gint64
sm_qmp_event_time_us (json_object *event)
{
  json_object *ts, *sec, *usec;

  if (!event || !json_object_object_get_ex (event, "timestamp", &ts) ||
      !json_object_object_get_ex (ts, "seconds", &sec) ||
      !json_object_object_get_ex (ts, "microseconds", &usec))
    return -1;
  return json_object_get_int64 (sec) * G_USEC_PER_SEC +
         json_object_get_int64 (usec);
}

pid_t
sm_qmp_peer_pid (const SmQmp *qmp)
{
  pid_t pid = 0;

  if (qmp->fd < 0 || !sm_socket_peer_pid (qmp->fd, &pid, NULL))
    return 0;
  return pid;
}

void
sm_qmp_set_timeout (SmQmp *qmp, int timeout_ms)
{
  qmp->timeout_ms = timeout_ms > 0 ? timeout_ms : SM_QMP_DEFAULT_TIMEOUT_MS;
}

int
sm_qmp_get_timeout (const SmQmp *qmp)
{
  return qmp->timeout_ms;
}

void
sm_qmp_set_max_line (SmQmp *qmp, size_t bytes)
{
  qmp->max_line = bytes > 0 ? bytes : SM_QMP_MAX_LINE;
}

/* ---- connection lifetime --------------------------------------------- */

void
sm_qmp_clear_events (SmQmp *qmp)
{
  json_object *ev;

  while ((ev = g_queue_pop_head (qmp->events)))
    json_object_put (ev);
}

void
sm_qmp_free (SmQmp *qmp)
{
  if (!qmp)
    return;
  if (qmp->fd >= 0)
    close (qmp->fd);
  sm_qmp_clear_events (qmp);
  g_queue_free (qmp->events);
  g_string_free (qmp->inbuf, TRUE);
  g_free (qmp->broken);
  g_free (qmp->last_error_class);
  g_free (qmp->address);
  g_free (qmp);
}

/* How long a QEMU libvirt started is given to greet when it cannot be told
 * whether the socket is libvirt's monitor (connect_monitor). */
#define LIBVIRT_GREETING_MS 2000

static void
set_libvirt_owned (GError **error, const char *address, const char *domain)
{
  g_set_error (error, SM_ERROR, SM_ERROR_IN_USE,
               "QEMU monitor %s belongs to libvirt (domain %s), which must "
               "see every change to the VM: use --connect URI --domain %s "
               "instead of --qmp", address, domain, domain);
}

/* libvirt's monitor of its QEMU is libvirt's alone, also while libvirtd is
 * down (when QEMU would greet us): a change made through it would leave
 * libvirt's XML stale (issue 14).  False with ERROR when QMP's peer is
 * that monitor; *DOMAIN set when it may be (its greeting then decides:
 * libvirt holds the monitor and none comes), NULL for any other QEMU or
 * socket (a -qmp of the user's own on libvirt's QEMU greets at once). */
static bool
check_libvirt (SmQmp *qmp, char **domain, GError **error)
{
  pid_t pid = sm_qmp_peer_pid (qmp);
  g_autofree char *name = sm_qemu_libvirt_domain (pid);

  if (!name)
    return true;
  switch (sm_qemu_libvirt_monitor (pid, qmp->address)) {
  case SM_LIBVIRT_MONITOR_YES:
    set_libvirt_owned (error, qmp->address, name);
    return false;
  case SM_LIBVIRT_MONITOR_UNKNOWN:
    *domain = g_steal_pointer (&name);
    return true;
  case SM_LIBVIRT_MONITOR_NO:
  case SM_LIBVIRT_MONITOR_LAST:
  default:
    return true;
  }
}

static SmQmp *
connect_monitor (const char *address, int timeout_ms, bool want_oob,
                 GError **error)
{
  g_autoptr(SmQmp) qmp = g_new0 (SmQmp, 1);
  g_autofree char *host = NULL;
  g_autofree char *port = NULL;
  g_autofree char *t = NULL;
  g_autoptr(json_object) greeting = NULL;
  g_autoptr(json_object) ret = NULL;
  g_autoptr(GError) err = NULL;
  g_autofree char *libvirt_domain = NULL;
  Deadline deadline;
  gint64 left_ms;

  if (timeout_ms <= 0)
    timeout_ms = SM_QMP_DEFAULT_TIMEOUT_MS;
  deadline = deadline_after (timeout_ms);
  t = format_ms (timeout_ms);
  qmp->address = g_strdup (address);
  qmp->fd = -1;
  qmp->timeout_ms = SM_QMP_DEFAULT_TIMEOUT_MS;
  qmp->stalled_until = -1;
  qmp->max_line = SM_QMP_MAX_LINE;
  qmp->inbuf = g_string_new (NULL);
  qmp->events = g_queue_new ();

  if (parse_tcp_address (address, &host, &port))
    qmp->fd = connect_tcp (address, host, port, deadline, error);
  else
    qmp->fd = connect_unix (address, deadline, timeout_ms, error);
  if (qmp->fd < 0)
    return NULL;
  if (!g_unix_set_fd_nonblocking (qmp->fd, TRUE, NULL)) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO,
                 "cannot make QEMU monitor %s non-blocking", address);
    return NULL;
  }
  if (!check_libvirt (qmp, &libvirt_domain, error))
    return NULL;
  if (libvirt_domain && deadline > deadline_after (LIBVIRT_GREETING_MS))
    deadline = deadline_after (LIBVIRT_GREETING_MS);

  /* QEMU may emit an event on a new connection before the greeting (seen
   * with 7.2: a BLOCK_JOB_COMPLETED raised while the previous client
   * disconnected arrived first), so events are queued until the greeting. */
  while ((greeting = read_message (qmp, deadline, &err)) != NULL &&
         json_object_object_get_ex (greeting, "event", NULL)) {
    sm_debug ("qmp", "event before the greeting from %s: %s", address,
              to_json (greeting));
    queue_event (qmp, g_steal_pointer (&greeting));
  }
  if (!greeting) {
    if (libvirt_domain && g_error_matches (err, SM_ERROR, SM_ERROR_TIMEOUT)) {
      set_libvirt_owned (error, address, libvirt_domain);
      return NULL;
    }
    /* QEMU serves one client per monitor: a second one is accepted by the
     * kernel but never greeted, which looks exactly like a stopped QEMU. */
    if (g_error_matches (err, SM_ERROR, SM_ERROR_TIMEOUT)) {
      g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
                   "no QMP greeting from %s within %s (is another client "
                   "connected to this monitor, or is QEMU stopped?)",
                   address, t);
      return NULL;
    }
    g_propagate_prefixed_error (error, g_steal_pointer (&err),
                                "waiting for the QMP greeting: ");
    return NULL;
  }
  if (!json_object_object_get_ex (greeting, "QMP", NULL)) {
    g_set_error (error, SM_ERROR, SM_ERROR_QMP_PROTOCOL,
                 "%s is not a QEMU monitor: no QMP greeting", address);
    return NULL;
  }
  /* The handshake shares the connect's deadline. */
  left_ms = (deadline - g_get_monotonic_time () + 999) / 1000;
  if (want_oob) {
    json_object *caps = NULL, *q = NULL;
    bool offered = false;

    if (json_object_object_get_ex (greeting, "QMP", &q) &&
        json_object_object_get_ex (q, "capabilities", &caps) &&
        json_object_is_type (caps, json_type_array))
      for (size_t i = 0; i < json_object_array_length (caps); i++)
        offered = offered || g_strcmp0 (json_object_get_string (
                               json_object_array_get_idx (caps, i)), "oob") == 0;
    if (!offered) {
      g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED,
                   "QEMU monitor %s offers no out-of-band execution (oob)",
                   address);
      return NULL;
    }
    ret = execute_within (qmp, "qmp_capabilities",
                          sm_qmp_args (NULL, "j:enable",
                                       json_tokener_parse ("[\"oob\"]"), NULL),
                          (int) CLAMP (left_ms, 0, timeout_ms), error);
    qmp->oob = ret != NULL;
  } else {
    ret = execute_within (qmp, "qmp_capabilities", NULL,
                          (int) CLAMP (left_ms, 0, timeout_ms), error);
  }
  if (!ret)
    return NULL;
  return g_steal_pointer (&qmp);
}

SmQmp *
sm_qmp_connect (const char *address, int timeout_ms, GError **error)
{
  return connect_monitor (address, timeout_ms, false, error);
}

SmQmp *
sm_qmp_connect_oob (const char *address, int timeout_ms, GError **error)
{
  return connect_monitor (address, timeout_ms, true, error);
}

json_object *
sm_qmp_execute_oob (SmQmp *qmp, const char *command, json_object *args,
                    GError **error)
{
  if ((error && *error) || !qmp->oob) {     /* as sm_qmp_execute */
    json_object_put (args);
    if (!(error && *error))
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "%s: the connection to %s has no out-of-band execution",
                   command, qmp->address);
    return NULL;
  }
  return execute_as (qmp, "exec-oob", command, args, qmp->timeout_ms, error);
}

/* ---- arguments ------------------------------------------------------- */

json_object *
sm_qmp_args (GError **error, const char *first, ...)
{
  g_autoptr(json_object) obj = json_object_new_object ();
  g_autoptr(GError) err = NULL;
  const char *key;
  bool stop = false;
  va_list ap;

  va_start (ap, first);
  for (key = first; key; key = va_arg (ap, const char *)) {
    const char *name = key + 2;
    json_object *val = NULL;
    bool skip = false;

    if (strlen (key) < 3 || key[1] != ':') {
      /* The following varargs' types are unknown: stop here.  A 'j' value
       * after this point leaks, which only a programming error can cause. */
      if (!err)
        g_set_error (&err, SM_ERROR, SM_ERROR_INVALID,
                     "QMP argument key '%s' is not of the form T:name", key);
      break;
    }
    switch (key[0]) {
    case 's':
    case 'S': {
      const char *s = va_arg (ap, const char *);

      if (s)
        val = json_object_new_string (s);
      else if (key[0] == 'S')
        skip = true;
      else if (!err)
        g_set_error (&err, SM_ERROR, SM_ERROR_INVALID,
                     "QMP argument '%s' must not be NULL", name);
      break;
    }
    case 'b':
    case 'B': {
      int b = va_arg (ap, int);

      if (key[0] == 'B' && !b)
        skip = true;
      else
        val = json_object_new_boolean (b != 0);
      break;
    }
    case 'i':
      val = json_object_new_int64 (va_arg (ap, int64_t));
      break;
    case 'u':
    case 'P': {
      uint64_t u = va_arg (ap, uint64_t);

      if (key[0] == 'P' && u == 0)
        skip = true;
      else
        val = json_object_new_uint64 (u);
      break;
    }
    case 'j':
    case 'J':
      val = va_arg (ap, json_object *);
      if (!val && key[0] == 'J')
        skip = true;
      else if (!val && !err)
        g_set_error (&err, SM_ERROR, SM_ERROR_INVALID,
                     "QMP argument '%s' must not be NULL", name);
      break;
    default:
      /* The vararg's type is unknown, so nothing after it can be read. */
      if (!err)
        g_set_error (&err, SM_ERROR, SM_ERROR_INVALID,
                     "QMP argument key '%s' has an unknown type '%c'", key,
                     key[0]);
      stop = true;
      break;
    }
    if (stop)
      break;
    if (skip || !val)
      continue;
    if (err) {
      /* Keep consuming so that every 'j' object is released. */
      json_object_put (val);
      continue;
    }
    json_object_object_add (obj, name, val);
  }
  va_end (ap);
  if (err) {
    g_propagate_error (error, g_steal_pointer (&err));
    return NULL;
  }
  return g_steal_pointer (&obj);
}

/* ---- events ---------------------------------------------------------- */

static bool
event_matches (json_object *event, const char *name, SmQmpEventMatch match,
               void *opaque)
{
  json_object *ev;

  if (name) {
    if (!json_object_object_get_ex (event, "event", &ev) ||
        g_strcmp0 (json_object_get_string (ev), name) != 0)
      return false;
  }
  return !match || match (event, opaque);
}

json_object *
sm_qmp_wait_event (SmQmp *qmp, const char *name, SmQmpEventMatch match,
                   void *opaque, int timeout_ms, GError **error)
{
  Deadline deadline = deadline_after (timeout_ms);
  GList *l;

  for (l = qmp->events->head; l; l = l->next) {
    if (event_matches (l->data, name, match, opaque)) {
      json_object *event = l->data;

      g_queue_delete_link (qmp->events, l);
      return event;
    }
  }

  for (;;) {
    g_autoptr(GError) err = NULL;
    g_autoptr(json_object) msg = read_message (qmp, deadline, &err);

    if (!msg) {
      if (g_error_matches (err, SM_ERROR, SM_ERROR_TIMEOUT))
        g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
                     "timed out waiting for event %s from QEMU monitor %s",
                     name ? name : "(any)", qmp->address);
      else
        g_propagate_error (error, g_steal_pointer (&err));
      return NULL;
    }
    if (!json_object_object_get_ex (msg, "event", NULL)) {
      sm_debug ("qmp", "%s: dropping a reply while waiting for an event",
                qmp->address);
      continue;
    }
    if (event_matches (msg, name, match, opaque))
      return g_steal_pointer (&msg);
    queue_event (qmp, g_steal_pointer (&msg));
  }
}

/* ---- capabilities ---------------------------------------------------- */

static const char *const cap_names[SM_QMP_CAP_LAST] = {
  [SM_QMP_CAP_TRANSACTION] = "transaction",
  [SM_QMP_CAP_BLOCKDEV_SNAPSHOT_SYNC] = "blockdev-snapshot-sync",
  [SM_QMP_CAP_DRIVE_MIRROR] = "drive-mirror",
  [SM_QMP_CAP_MIRROR_COPY_MODE] = "mirror-copy-mode",
  [SM_QMP_CAP_BLOCK_JOB_COMPLETE] = "block-job-complete",
  [SM_QMP_CAP_BLOCK_JOB_CANCEL] = "block-job-cancel",
  [SM_QMP_CAP_BLOCK_STREAM] = "block-stream",
  [SM_QMP_CAP_BLOCK_COMMIT] = "block-commit",
  [SM_QMP_CAP_NBD_SERVER] = "nbd-server",
  [SM_QMP_CAP_BLOCK_EXPORT_ADD] = "block-export-add",
  [SM_QMP_CAP_MIGRATE] = "migrate",
  [SM_QMP_CAP_MIGRATE_POSTCOPY] = "postcopy-ram",
  [SM_QMP_CAP_QUERY_NAMED_BLOCK_NODES] = "query-named-block-nodes",
};

const char *
sm_qmp_cap_to_string (SmQmpCap cap)
{
  if ((unsigned) cap >= SM_QMP_CAP_LAST)
    return NULL;
  return cap_names[cap];
}

static bool
have_command (GHashTable *commands, const char *name)
{
  return g_hash_table_contains (commands, name);
}

static bool
apply_disable_env (SmQmpCaps *caps, GError **error)
{
  const char *env = g_getenv ("SNAPMIG_QMP_DISABLE");
  g_auto(GStrv) names = NULL;
  size_t i;

  if (!env || !*env)
    return true;
  names = g_strsplit (env, ",", -1);
  for (i = 0; names[i]; i++) {
    const char *n = g_strstrip (names[i]);
    int c;

    if (!*n)
      continue;
    for (c = 0; c < SM_QMP_CAP_LAST; c++)
      if (strcmp (cap_names[c], n) == 0)
        break;
    /* A typo must not silently leave the capability on. */
    if (c == SM_QMP_CAP_LAST) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "SNAPMIG_QMP_DISABLE: unknown capability '%s'", n);
      return false;
    }
    sm_debug ("qmp", "capability %s disabled by SNAPMIG_QMP_DISABLE", n);
    caps->caps[c] = false;
  }
  return true;
}

static int
version_part (json_object *qemu, const char *key)
{
  json_object *v;

  if (!json_object_object_get_ex (qemu, key, &v))
    return 0;
  return json_object_get_int (v);
}

const SmQmpCaps *
sm_qmp_probe (SmQmp *qmp, GError **error)
{
  g_autoptr(json_object) version = NULL;
  g_autoptr(json_object) commands = NULL;
  g_autoptr(GHashTable) names = g_hash_table_new (g_str_hash, g_str_equal);
  SmQmpCaps caps = { 0 };
  json_object *qemu;
  size_t i;

  if (qmp->probed)
    return &qmp->caps;

  version = sm_qmp_execute (qmp, "query-version", NULL, error);
  if (!version)
    return NULL;
  if (!json_object_object_get_ex (version, "qemu", &qemu)) {
    g_set_error (error, SM_ERROR, SM_ERROR_QMP_PROTOCOL,
                 "query-version: no qemu version in the reply of %s",
                 qmp->address);
    return NULL;
  }
  caps.major = version_part (qemu, "major");
  caps.minor = version_part (qemu, "minor");
  caps.micro = version_part (qemu, "micro");

  commands = sm_qmp_execute (qmp, "query-commands", NULL, error);
  if (!commands)
    return NULL;
  if (!json_object_is_type (commands, json_type_array)) {
    g_set_error (error, SM_ERROR, SM_ERROR_QMP_PROTOCOL,
                 "query-commands: %s did not return a list", qmp->address);
    return NULL;
  }
  /* The names point into COMMANDS, which outlives the table. */
  for (i = 0; i < json_object_array_length (commands); i++) {
    json_object *name;

    if (json_object_object_get_ex (json_object_array_get_idx (commands, i),
                                   "name", &name))
      g_hash_table_add (names, (char *) json_object_get_string (name));
  }

  caps.caps[SM_QMP_CAP_TRANSACTION] = have_command (names, "transaction");
  caps.caps[SM_QMP_CAP_BLOCKDEV_SNAPSHOT_SYNC] =
    have_command (names, "blockdev-snapshot-sync");
  caps.caps[SM_QMP_CAP_DRIVE_MIRROR] = have_command (names, "drive-mirror");
  /* drive-mirror's copy-mode argument appeared in QEMU 3.0 (QAPI Since). */
  caps.caps[SM_QMP_CAP_MIRROR_COPY_MODE] =
    caps.caps[SM_QMP_CAP_DRIVE_MIRROR] && caps.major >= 3;
  caps.caps[SM_QMP_CAP_BLOCK_JOB_COMPLETE] =
    have_command (names, "block-job-complete");
  caps.caps[SM_QMP_CAP_BLOCK_JOB_CANCEL] =
    have_command (names, "block-job-cancel");
  caps.caps[SM_QMP_CAP_BLOCK_STREAM] = have_command (names, "block-stream");
  caps.caps[SM_QMP_CAP_BLOCK_COMMIT] = have_command (names, "block-commit");
  caps.caps[SM_QMP_CAP_NBD_SERVER] =
    have_command (names, "nbd-server-start") &&
    have_command (names, "nbd-server-add") &&
    have_command (names, "nbd-server-stop");
  caps.caps[SM_QMP_CAP_BLOCK_EXPORT_ADD] =
    have_command (names, "block-export-add");
  caps.caps[SM_QMP_CAP_MIGRATE] = have_command (names, "migrate");
  caps.caps[SM_QMP_CAP_QUERY_NAMED_BLOCK_NODES] =
    have_command (names, "query-named-block-nodes");

  if (have_command (names, "query-migrate-capabilities")) {
    g_autoptr(json_object) mcaps =
      sm_qmp_execute (qmp, "query-migrate-capabilities", NULL, error);

    if (!mcaps)
      return NULL;
    for (i = 0; json_object_is_type (mcaps, json_type_array) &&
         i < json_object_array_length (mcaps); i++) {
      json_object *cap;

      if (json_object_object_get_ex (json_object_array_get_idx (mcaps, i),
                                     "capability", &cap) &&
          g_strcmp0 (json_object_get_string (cap), "postcopy-ram") == 0)
        caps.caps[SM_QMP_CAP_MIGRATE_POSTCOPY] = true;
    }
  }

  if (!apply_disable_env (&caps, error))
    return NULL;
  qmp->caps = caps;
  qmp->probed = true;
  return &qmp->caps;
}
