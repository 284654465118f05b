/* libsnapmig — the relay engine (lib/relay.h): one poll() loop, non-blocking
 * sockets, bounded buffers, the same code on both ends of the transport.
 */
#include "relay.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "error.h"
#include "interrupt.h"

/* Stop reading the relayed sockets while this much waits for the
 * transport: the transport's buffer stays bounded. */
#define TOUT_HIGH (256 * 1024)
/* Read the transport in chunks of this size. */
#define TIN_CHUNK (128 * 1024)
/* A receiver credits what it wrote once it is a quarter of the window (or
 * its buffer ran empty). */
#define CREDIT_STEP (SM_RELAY_WINDOW / 4)

static const char *const frame_names[SM_RELAY_FRAME_LAST] = {
  [SM_RELAY_OPEN] = "OPEN", [SM_RELAY_OPENED] = "OPENED",
  [SM_RELAY_FAILED] = "FAILED", [SM_RELAY_DATA] = "DATA",
  [SM_RELAY_CREDIT] = "CREDIT", [SM_RELAY_SHUT] = "SHUT",
  [SM_RELAY_CLOSE] = "CLOSE", [SM_RELAY_LISTEN] = "LISTEN",
};

const char *
sm_relay_frame_name (int type)
{
  if (type <= 0 || type >= SM_RELAY_FRAME_LAST)
    return "?";
  return frame_names[type];
}

/* A byte buffer consumed from the front: data[off..len) is pending. */
typedef struct {
  char *data;
  size_t off, len, cap;
} Buf;

static size_t buf_avail (const Buf *b) { return b->len - b->off; }

/* Room for N more bytes at data + len. */
static char *
buf_reserve (Buf *b, size_t n)
{
  if (b->off > 0 && (b->off == b->len || b->len + n > b->cap)) {
    memmove (b->data, b->data + b->off, b->len - b->off);
    b->len -= b->off;
    b->off = 0;
  }
  if (b->len + n > b->cap) {
    b->cap = MAX (b->cap * 2, b->len + n);
    b->data = g_realloc (b->data, b->cap);
  }
  return b->data + b->len;
}

static void
buf_consume (Buf *b, size_t n)
{
  b->off += n;
  if (b->off == b->len)
    b->off = b->len = 0;
}

/* Gives back memory of a buffer that ran empty after a burst. */
static void
buf_trim (Buf *b)
{
  if (b->len == 0 && b->cap > 2 * SM_RELAY_WINDOW) {
    g_free (b->data);
    b->data = NULL;
    b->cap = 0;
  }
}

typedef struct {
  uint32_t id;
  int fd;
  Buf out;                     /* from the peer, to write into fd */
  int64_t credit;              /* bytes we may still send the peer */
  size_t unacked;              /* written into fd, not yet credited */
  bool rd_eof;                 /* fd gave end of file; SHUT sent */
  bool peer_shut;              /* SHUT received */
  bool wr_shut;                /* fd's write side shut */
} Chan;

typedef struct {
  int fd;
  char *target;
  char *path;                  /* made by the engine (LISTEN): unlinked */
} Listener;

enum { SLOT_TIN, SLOT_TOUT, SLOT_TBOTH, SLOT_LISTENER, SLOT_CHAN };
typedef struct {
  int kind;
  uint32_t id;                 /* channel id or listener index */
} Slot;

struct SmRelay {
  int in_fd, out_fd;
  uint32_t next_id;
  Buf tin, tout;
  GHashTable *chans;           /* id -> Chan */
  GPtrArray *listeners;        /* Listener */
  GHashTable *listens;         /* request id -> NULL pending, "" ok, message */
  GArray *slots;
  int64_t bytes;
  bool paused;
};

static void
set_nonblock (int fd)
{
  int fl = fcntl (fd, F_GETFL);

  if (fl >= 0 && !(fl & O_NONBLOCK))
    (void) fcntl (fd, F_SETFL, fl | O_NONBLOCK);
}

static void
chan_free (gpointer p)
{
  Chan *c = p;

  if (c->fd >= 0)
    close (c->fd);
  g_free (c->out.data);
  g_free (c);
}

static void
listener_free (gpointer p)
{
  Listener *l = p;

  if (l->path) {
    close (l->fd);
    (void) unlink (l->path);
  }
  g_free (l->target);
  g_free (l->path);
  g_free (l);
}

SmRelay *
sm_relay_new (int in_fd, int out_fd, bool odd)
{
  SmRelay *r = g_new0 (SmRelay, 1);

  r->in_fd = in_fd;
  r->out_fd = out_fd;
  r->next_id = odd ? 1 : 2;
  set_nonblock (in_fd);
  set_nonblock (out_fd);
  /* A pipe holds 64 KiB, one frame: a round of the loop would move one
   * frame.  A larger pipe (pipe-max-size, 1 MiB by default, allowed to
   * everyone) lets a round move many; a socket refuses, harmlessly. */
  (void) fcntl (in_fd, F_SETPIPE_SZ, 1024 * 1024);
  (void) fcntl (out_fd, F_SETPIPE_SZ, 1024 * 1024);
  r->chans = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL,
                                    chan_free);
  r->listeners = g_ptr_array_new_with_free_func (listener_free);
  r->listens = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL,
                                      g_free);
  r->slots = g_array_new (FALSE, FALSE, sizeof (Slot));
  return r;
}

void
sm_relay_free (SmRelay *r)
{
  if (!r)
    return;
  g_hash_table_destroy (r->chans);
  g_ptr_array_free (r->listeners, TRUE);
  g_hash_table_destroy (r->listens);
  g_array_free (r->slots, TRUE);
  g_free (r->tin.data);
  g_free (r->tout.data);
  g_free (r);
}

/* ---- frames out ---------------------------------------------------------- */

static void
put_header (char *h, int type, size_t len, uint32_t id)
{
  h[0] = (char) type;
  h[1] = (char) (len >> 16);
  h[2] = (char) (len >> 8);
  h[3] = (char) len;
  h[4] = (char) (id >> 24);
  h[5] = (char) (id >> 16);
  h[6] = (char) (id >> 8);
  h[7] = (char) id;
}

static void
send_frame (SmRelay *r, int type, uint32_t id, const void *payload,
            size_t len)
{
  char *p = buf_reserve (&r->tout, SM_RELAY_HEADER + len);

  g_assert (len <= SM_RELAY_MAX_PAYLOAD);
  put_header (p, type, len, id);
  if (len)
    memcpy (p + SM_RELAY_HEADER, payload, len);
  r->tout.len += SM_RELAY_HEADER + len;
}

static void
send_text (SmRelay *r, int type, uint32_t id, const char *text)
{
  send_frame (r, type, id, text, MIN (strlen (text), SM_RELAY_MAX_PAYLOAD));
}

static void
send_credit (SmRelay *r, Chan *c)
{
  unsigned char n[4] = { c->unacked >> 24, c->unacked >> 16, c->unacked >> 8,
                         c->unacked };

  send_frame (r, SM_RELAY_CREDIT, c->id, n, 4);
  c->unacked = 0;
}

/* ---- channels ------------------------------------------------------------ */

static Chan *
chan_new (SmRelay *r, uint32_t id, int fd)
{
  Chan *c = g_new0 (Chan, 1);

  c->id = id;
  c->fd = fd;
  c->credit = SM_RELAY_WINDOW;
  set_nonblock (fd);
  g_hash_table_insert (r->chans, GUINT_TO_POINTER (id), c);
  return c;
}

static void
chan_drop (SmRelay *r, Chan *c, bool tell_peer)
{
  if (tell_peer)
    send_frame (r, SM_RELAY_CLOSE, c->id, NULL, 0);
  g_hash_table_remove (r->chans, GUINT_TO_POINTER (c->id));
}

/* Both directions shut and everything written: forgotten on this side (the
 * peer reaches the same state from the same frames). */
static bool
chan_maybe_done (SmRelay *r, Chan *c)
{
  if (c->rd_eof && c->wr_shut) {
    chan_drop (r, c, false);
    return true;
  }
  return false;
}

static void
chan_shut_write (SmRelay *r, Chan *c)
{
  if (c->peer_shut && !c->wr_shut && buf_avail (&c->out) == 0) {
    (void) shutdown (c->fd, SHUT_WR);
    c->wr_shut = true;
    chan_maybe_done (r, c);
  }
}

/* Reads what the window allows from C's socket into a DATA frame; true
 * when it filled the frame (there may be more). */
static bool
chan_read (SmRelay *r, Chan *c)
{
  size_t n = MIN ((int64_t) SM_RELAY_MAX_PAYLOAD, c->credit);
  char *p = buf_reserve (&r->tout, SM_RELAY_HEADER + n);
  ssize_t got = recv (c->fd, p + SM_RELAY_HEADER, n, MSG_DONTWAIT);

  if (got < 0 && (errno == EAGAIN || errno == EINTR))
    return false;
  if (got < 0) {
    chan_drop (r, c, true);
    return false;
  }
  if (got == 0) {
    c->rd_eof = true;
    send_frame (r, SM_RELAY_SHUT, c->id, NULL, 0);
    chan_maybe_done (r, c);
    return false;
  }
  put_header (p, SM_RELAY_DATA, got, c->id);
  r->tout.len += SM_RELAY_HEADER + got;
  c->credit -= got;
  r->bytes += got;
  return (size_t) got == n;
}

static void
chan_write (SmRelay *r, Chan *c)
{
  ssize_t n = send (c->fd, c->out.data + c->out.off, buf_avail (&c->out),
                    MSG_DONTWAIT | MSG_NOSIGNAL);

  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  if (n < 0) {
    chan_drop (r, c, true);
    return;
  }
  buf_consume (&c->out, n);
  c->unacked += n;
  if (c->unacked >= CREDIT_STEP ||
      (buf_avail (&c->out) == 0 && !c->peer_shut))
    send_credit (r, c);
  if (buf_avail (&c->out) == 0) {
    buf_trim (&c->out);
    chan_shut_write (r, c);
  }
}

/* ---- unix sockets -------------------------------------------------------- */

/* A non-blocking unix socket for PATH with its address in *SA; -1 with
 * ERROR naming PATH. */
static int
unix_socket (const char *path, struct sockaddr_un *sa, GError **error)
{
  int fd;

  memset (sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  if (strlen (path) >= sizeof sa->sun_path) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "unix socket path %s is too long (%zu bytes at most): use "
                 "a shorter directory", path, sizeof sa->sun_path - 1);
    return -1;
  }
  strcpy (sa->sun_path, path);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "socket for %s: %s", path,
                 g_strerror (errno));
  return fd;
}

/* Closes FD after CALL on PATH failed with errno; -1. */
static int
unix_fail (int fd, const char *call, const char *path, GError **error)
{
  int e = errno;

  close (fd);
  g_set_error (error, SM_ERROR, e == ENOENT ? SM_ERROR_NOT_FOUND
               : SM_ERROR_IO, "cannot %s %s: %s", call, path, g_strerror (e));
  return -1;
}

int
sm_relay_unix_listen (const char *path, GError **error)
{
  struct sockaddr_un sa;
  int fd = unix_socket (path, &sa, error);

  if (fd < 0)
    return -1;
  (void) unlink (path);
  if (bind (fd, (struct sockaddr *) &sa, sizeof sa) < 0 ||
      listen (fd, 64) < 0)
    return unix_fail (fd, "listen on", path, error);
  return fd;
}

int
sm_relay_unix_connect (const char *path, GError **error)
{
  struct sockaddr_un sa;
  int fd = unix_socket (path, &sa, error);

  if (fd < 0)
    return -1;
  /* A unix socket connects at once or fails at once (EAGAIN: a full
   * backlog), so the loop never waits for it. */
  if (connect (fd, (struct sockaddr *) &sa, sizeof sa) < 0 &&
      errno != EINPROGRESS)
    return unix_fail (fd, "connect to", path, error);
  return fd;
}

/* ---- the caller's requests ----------------------------------------------- */

static uint32_t
alloc_id (SmRelay *r)
{
  uint32_t id = r->next_id;

  r->next_id += 2;
  return id;
}

void
sm_relay_add_listener (SmRelay *r, int listen_fd, const char *target)
{
  Listener *l = g_new0 (Listener, 1);

  l->fd = listen_fd;
  l->target = g_strdup (target);
  set_nonblock (listen_fd);
  g_ptr_array_add (r->listeners, l);
}

uint32_t
sm_relay_connect (SmRelay *r, int fd, const char *target)
{
  Chan *c = chan_new (r, alloc_id (r), fd);

  send_text (r, SM_RELAY_OPEN, c->id, target);
  return c->id;
}

uint32_t
sm_relay_listen (SmRelay *r, const char *path, const char *target)
{
  uint32_t id = alloc_id (r);
  g_autofree char *payload = g_strconcat (path, "|", target, NULL);
  size_t plen = strlen (path);

  payload[plen] = '\0';
  send_frame (r, SM_RELAY_LISTEN, id, payload,
              MIN (plen + 1 + strlen (target), SM_RELAY_MAX_PAYLOAD));
  g_hash_table_insert (r->listens, GUINT_TO_POINTER (id), NULL);
  return id;
}

int
sm_relay_listen_result (SmRelay *r, uint32_t id, char **message)
{
  gpointer key, value;
  int res;

  *message = NULL;
  if (!g_hash_table_lookup_extended (r->listens, GUINT_TO_POINTER (id), &key,
                                     &value))
    return -1;
  if (!value)
    return 0;
  res = *(char *) value ? -1 : 1;
  if (res < 0)
    *message = g_strdup (value);
  g_hash_table_remove (r->listens, GUINT_TO_POINTER (id));
  return res;
}

int64_t sm_relay_bytes (const SmRelay *r) { return r->bytes; }
unsigned sm_relay_channels (const SmRelay *r)
{
  return g_hash_table_size (r->chans);
}
void sm_relay_set_paused (SmRelay *r, bool paused) { r->paused = paused; }

/* ---- frames in ----------------------------------------------------------- */

static void
on_open (SmRelay *r, uint32_t id, const char *path)
{
  g_autoptr(GError) err = NULL;
  int fd;

  if (g_hash_table_contains (r->chans, GUINT_TO_POINTER (id)))
    return;
  fd = sm_relay_unix_connect (path, &err);
  if (fd < 0) {
    send_text (r, SM_RELAY_FAILED, id, err->message);
    return;
  }
  chan_new (r, id, fd);
  send_frame (r, SM_RELAY_OPENED, id, NULL, 0);
}

static void
on_listen (SmRelay *r, uint32_t id, const char *payload, size_t len)
{
  g_autoptr(GError) err = NULL;
  const char *target = memchr (payload, '\0', len);
  Listener *l;
  guint i;
  int fd;

  if (!target) {
    send_text (r, SM_RELAY_FAILED, id, "malformed LISTEN");
    return;
  }
  target++;
  /* The same path again (a tunnel that came back): one listener. */
  for (i = 0; i < r->listeners->len; i++) {
    l = g_ptr_array_index (r->listeners, i);
    if (l->path && strcmp (l->path, payload) == 0) {
      g_free (l->target);
      l->target = g_strdup (target);
      send_frame (r, SM_RELAY_OPENED, id, NULL, 0);
      return;
    }
  }
  fd = sm_relay_unix_listen (payload, &err);
  if (fd < 0) {
    send_text (r, SM_RELAY_FAILED, id, err->message);
    return;
  }
  sm_relay_add_listener (r, fd, target);
  l = g_ptr_array_index (r->listeners, r->listeners->len - 1);
  l->path = g_strdup (payload);
  send_frame (r, SM_RELAY_OPENED, id, NULL, 0);
}

static bool
on_frame (SmRelay *r, int type, uint32_t id, const char *p, size_t len,
          GError **error)
{
  Chan *c = g_hash_table_lookup (r->chans, GUINT_TO_POINTER (id));
  g_autofree char *text = NULL;

  switch ((SmRelayFrame) type) {
  case SM_RELAY_OPEN:
    text = g_strndup (p, len);
    on_open (r, id, text);
    break;
  case SM_RELAY_LISTEN:
    text = g_malloc (len + 1);      /* PATH\0TARGET: not g_strndup */
    memcpy (text, p, len);
    text[len] = '\0';
    on_listen (r, id, text, len);
    break;
  case SM_RELAY_OPENED:
    if (g_hash_table_contains (r->listens, GUINT_TO_POINTER (id)))
      g_hash_table_insert (r->listens, GUINT_TO_POINTER (id), g_strdup (""));
    break;
  case SM_RELAY_FAILED:
    if (g_hash_table_contains (r->listens, GUINT_TO_POINTER (id)))
      g_hash_table_insert (r->listens, GUINT_TO_POINTER (id),
                           len ? g_strndup (p, len) : g_strdup ("failed"));
    else if (c) {
      sm_debug ("relay", "channel %u: %.*s", id, (int) len, p);
      chan_drop (r, c, false);
    }
    break;
  case SM_RELAY_DATA:
    if (!c || c->peer_shut || c->wr_shut)
      break;
    if (buf_avail (&c->out) + len > SM_RELAY_WINDOW) {
      /* the peer ignored the window: this stream is broken */
      chan_drop (r, c, true);
      break;
    }
    memcpy (buf_reserve (&c->out, len), p, len);
    c->out.len += len;
    r->bytes += len;
    break;
  case SM_RELAY_CREDIT:
    if (len != 4) {
      g_set_error (error, SM_ERROR, SM_ERROR_IO,
                   "relay protocol: CREDIT of %zu bytes", len);
      return false;
    }
    if (c)
      c->credit += ((uint32_t) (unsigned char) p[0] << 24) |
                   ((uint32_t) (unsigned char) p[1] << 16) |
                   ((uint32_t) (unsigned char) p[2] << 8) |
                   (uint32_t) (unsigned char) p[3];
    break;
  case SM_RELAY_SHUT:
    if (c) {
      c->peer_shut = true;
      chan_shut_write (r, c);
    }
    break;
  case SM_RELAY_CLOSE:
    if (c)
      chan_drop (r, c, false);
    break;
  case SM_RELAY_FRAME_LAST:
  default:
    g_set_error (error, SM_ERROR, SM_ERROR_IO,
                 "relay protocol: unknown frame type %d", type);
    return false;
  }
  return true;
}

/* Reads the transport and handles every whole frame.  False at end of
 * file (ERROR unset) or on an error. */
static bool
transport_read (SmRelay *r, GError **error)
{
  char *p = buf_reserve (&r->tin, TIN_CHUNK);
  ssize_t n = read (r->in_fd, p, TIN_CHUNK);

  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return true;
  if (n < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "relay transport: read: %s",
                 g_strerror (errno));
    return false;
  }
  if (n == 0)
    return false;
  r->tin.len += n;
  while (buf_avail (&r->tin) >= SM_RELAY_HEADER) {
    const unsigned char *h = (unsigned char *) r->tin.data + r->tin.off;
    size_t len = ((size_t) h[1] << 16) | ((size_t) h[2] << 8) | h[3];
    uint32_t id = ((uint32_t) h[4] << 24) | ((uint32_t) h[5] << 16) |
                  ((uint32_t) h[6] << 8) | h[7];

    if (len > SM_RELAY_MAX_PAYLOAD) {
      g_set_error (error, SM_ERROR, SM_ERROR_IO,
                   "relay protocol: %s frame of %zu bytes",
                   sm_relay_frame_name (h[0]), len);
      return false;
    }
    if (buf_avail (&r->tin) < SM_RELAY_HEADER + len)
      break;
    if (!on_frame (r, h[0], id, (char *) h + SM_RELAY_HEADER, len, error))
      return false;
    buf_consume (&r->tin, SM_RELAY_HEADER + len);
  }
  return true;
}

static bool
transport_write (SmRelay *r, GError **error)
{
  ssize_t n = send (r->out_fd, r->tout.data + r->tout.off,
                    buf_avail (&r->tout), MSG_DONTWAIT | MSG_NOSIGNAL);

  if (n < 0 && errno == ENOTSOCK)   /* a pipe: SIGPIPE is ignored (cli) */
    n = write (r->out_fd, r->tout.data + r->tout.off, buf_avail (&r->tout));
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return true;
  if (n < 0) {
    if (errno == EPIPE)
      return false;            /* the peer is gone: end of the transport */
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "relay transport: write: %s",
                 g_strerror (errno));
    return false;
  }
  buf_consume (&r->tout, n);
  buf_trim (&r->tout);
  return true;
}

/* ---- the loop ------------------------------------------------------------ */

size_t
sm_relay_nfds_max (const SmRelay *r)
{
  return 2 + r->listeners->len + g_hash_table_size (r->chans);
}

static size_t
add_slot (SmRelay *r, struct pollfd *fds, size_t i, size_t max, int fd,
          short events, int kind, uint32_t id)
{
  Slot s = { kind, id };

  if (!events || i >= max)
    return i;
  fds[i].fd = fd;
  fds[i].events = events;
  fds[i].revents = 0;
  g_array_append_val (r->slots, s);
  return i + 1;
}

size_t
sm_relay_pollfds (SmRelay *r, struct pollfd *fds, size_t max)
{
  bool room = buf_avail (&r->tout) < TOUT_HIGH;
  short tin = r->paused ? 0 : POLLIN;
  short tout = buf_avail (&r->tout) ? POLLOUT : 0;
  GHashTableIter it;
  gpointer v;
  size_t i = 0;
  guint k;

  g_array_set_size (r->slots, 0);
  if (r->in_fd == r->out_fd)
    i = add_slot (r, fds, i, max, r->in_fd, tin | tout, SLOT_TBOTH, 0);
  else {
    i = add_slot (r, fds, i, max, r->in_fd, tin, SLOT_TIN, 0);
    i = add_slot (r, fds, i, max, r->out_fd, tout, SLOT_TOUT, 0);
  }
  for (k = 0; k < r->listeners->len; k++) {
    Listener *l = g_ptr_array_index (r->listeners, k);

    i = add_slot (r, fds, i, max, l->fd, room ? POLLIN : 0, SLOT_LISTENER, k);
  }
  g_hash_table_iter_init (&it, r->chans);
  while (g_hash_table_iter_next (&it, NULL, &v)) {
    Chan *c = v;
    short ev = 0;

    if (!c->rd_eof && c->credit > 0 && room)
      ev |= POLLIN;
    if (buf_avail (&c->out))
      ev |= POLLOUT;
    i = add_slot (r, fds, i, max, c->fd, ev, SLOT_CHAN, c->id);
  }
  return i;
}

static void
accept_one (SmRelay *r, Listener *l)
{
  int fd = accept4 (l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

  if (fd >= 0)
    sm_relay_connect (r, fd, l->target);
}

bool
sm_relay_dispatch (SmRelay *r, const struct pollfd *fds, size_t n,
                   GError **error)
{
  size_t i;

  g_assert (n <= r->slots->len);
  for (i = 0; i < n; i++) {
    const Slot *s = &g_array_index (r->slots, Slot, i);
    short re = fds[i].revents;
    Chan *c;

    if (!re)
      continue;
    switch (s->kind) {
    case SLOT_TIN: case SLOT_TOUT: case SLOT_TBOTH:
      if ((re & POLLOUT) && !transport_write (r, error))
        return false;
      if ((re & (POLLIN | POLLHUP | POLLERR)) && s->kind != SLOT_TOUT &&
          !transport_read (r, error))
        return false;
      if ((re & (POLLHUP | POLLERR)) && s->kind == SLOT_TOUT) {
        if (!transport_write (r, error))
          return false;
      }
      break;
    case SLOT_LISTENER:
      accept_one (r, g_ptr_array_index (r->listeners, s->id));
      break;
    default:
      c = g_hash_table_lookup (r->chans, GUINT_TO_POINTER (s->id));
      if (c && (re & POLLOUT))
        chan_write (r, c);
      c = g_hash_table_lookup (r->chans, GUINT_TO_POINTER (s->id));
      if (c && (re & (POLLIN | POLLHUP | POLLERR)) && !c->rd_eof &&
          c->credit > 0) {
        /* a few frames a round: fewer polls, and the other channels still
         * get theirs (the transport's buffer bounds it) */
        for (int k = 0; k < 4 && chan_read (r, c) && c->credit > 0 &&
             buf_avail (&r->tout) < TOUT_HIGH; k++)
          ;
      } else if (c && (re & POLLERR))
        chan_drop (r, c, true);
      break;
    }
  }
  /* What this round produced goes out now when the transport takes it. */
  if (buf_avail (&r->tout) && !transport_write (r, error))
    return false;
  return true;
}

bool
sm_relay_run (SmRelay *r, GError **error)
{
  g_autofree struct pollfd *fds = NULL;
  size_t cap = 0;

  for (;;) {
    size_t want = sm_relay_nfds_max (r), n;
    GError *err = NULL;

    if (want > cap) {
      cap = want * 2;
      fds = g_renew (struct pollfd, fds, cap);
    }
    n = sm_relay_pollfds (r, fds, cap);
    if (poll (fds, n, -1) < 0) {
      if (errno != EINTR) {
        g_set_error (error, SM_ERROR, SM_ERROR_IO, "relay: poll: %s",
                     g_strerror (errno));
        return false;
      }
      if (sm_interrupt_check (error))
        return false;
      continue;
    }
    if (!sm_relay_dispatch (r, fds, n, &err)) {
      if (!err)
        return true;
      g_propagate_error (error, err);
      return false;
    }
  }
}
