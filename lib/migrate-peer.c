/* libsnapmig — the other side of a migration: endpoint URIs (QEMU's
 * SocketAddress from "tcp:HOST:PORT" / "unix:/PATH") and reading its
 * cookie from a pipe.  See migrate-cookie.h.
 */
#include "migrate-cookie.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "interrupt.h"
#include "migrate-cookie-private.h"

/* What sm_mig_cookie_read_fd accepts at most. */
#define MAX_COOKIE_SIZE (16 * 1024 * 1024)

/* The line that ends a cookie, with the newline before it. */
#define COOKIE_END "\n</qemu-migration>\n"

/* A UNIX socket path's room in struct sockaddr_un, without the NUL. */
#define MAX_UNIX_PATH 107

/* ---- URIs ------------------------------------------------------------------ */

void
sm_mig_uri_clear (SmUri *u)
{
  g_free (u->host);
  g_free (u->port);
  g_free (u->path);
}

bool
sm_mig_uri_parse (const char *uri, SmUri *u, GError **error)
{
  const char *hostport, *colon;
  guint64 port;

  memset (u, 0, sizeof *u);
  if (uri && g_str_has_prefix (uri, "unix:")) {
    const char *path = uri + strlen ("unix:");

    if (!g_path_is_absolute (path) || strlen (path) > MAX_UNIX_PATH) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "URI '%s': a unix socket needs an absolute path of at "
                   "most %d bytes (unix:/PATH)", uri, MAX_UNIX_PATH);
      return false;
    }
    u->path = g_strdup (path);
    return true;
  }
  if (!uri || !g_str_has_prefix (uri, "tcp:")) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "URI '%s': not tcp:HOST:PORT or unix:/PATH",
                 uri ? uri : "");
    return false;
  }
  hostport = uri + strlen ("tcp:");
  colon = strrchr (hostport, ':');
  if (!colon || colon == hostport ||
      !g_ascii_string_to_unsigned (colon + 1, 10, 1, 65535, &port, NULL)) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "URI '%s': expected tcp:HOST:PORT with a port from 1 to 65535",
                 uri);
    return false;
  }
  if (hostport[0] == '[') {
    /* [IPv6]: the brackets hold the whole host. */
    if (colon - hostport < 3 || colon[-1] != ']' ||
        memchr (hostport + 1, ']', colon - hostport - 2)) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "URI '%s': an IPv6 host is written in brackets: "
                   "tcp:[ADDRESS]:PORT", uri);
      return false;
    }
    u->host = g_strndup (hostport + 1, colon - hostport - 2);
  }
  else if (memchr (hostport, ':', colon - hostport) ||
           memchr (hostport, ']', colon - hostport)) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "URI '%s': an IPv6 host is written in brackets: "
                 "tcp:[ADDRESS]:PORT", uri);
    return false;
  }
  else
    u->host = g_strndup (hostport, colon - hostport);
  u->port = g_strdup_printf ("%" G_GUINT64_FORMAT, port);
  return true;
}

struct json_object *
sm_mig_uri_to_socket_address (const char *uri, GError **error)
{
  g_auto(SmUri) u = { 0 };
  json_object *addr;

  if (!sm_mig_uri_parse (uri, &u, error))
    return NULL;
  addr = json_object_new_object ();
  if (u.path) {
    json_object_object_add (addr, "type", json_object_new_string ("unix"));
    json_object_object_add (addr, "path", json_object_new_string (u.path));
  }
  else {
    /* QAPI's InetSocketAddress has "port" as a string. */
    json_object_object_add (addr, "type", json_object_new_string ("inet"));
    json_object_object_add (addr, "host", json_object_new_string (u.host));
    json_object_object_add (addr, "port", json_object_new_string (u.port));
  }
  return addr;
}

/* ---- reading from a peer ----------------------------------------------------- */

/* How many bytes of COOKIE_END the end of BUF already holds (the start of
 * the stream counting as a newline).  Reading no more than the rest can
 * never read past the closing line: what follows it stays in the pipe. */
static size_t
end_overlap (const GString *buf)
{
  const size_t n = strlen (COOKIE_END);
  size_t k;

  for (k = n; k > 0; k--) {
    if (buf->len >= k && memcmp (buf->str + buf->len - k, COOKIE_END, k) == 0)
      return k;
    if (buf->len == k - 1 && memcmp (buf->str, COOKIE_END + 1, k - 1) == 0)
      return k;
  }
  return 0;
}

SmMigCookie *
sm_mig_cookie_read_fd (int fd, const char *peer, int timeout_ms,
                       GError **error)
{
  g_autoptr(GString) buf = g_string_new (NULL);
  g_autofree char *source_name = g_strdup_printf ("migration cookie from %s",
                                                  peer);
  gint64 deadline = timeout_ms > 0
    ? g_get_monotonic_time () + (gint64) timeout_ms * 1000 : -1;
  const size_t end_len = strlen (COOKIE_END);
  size_t overlap;

  while ((overlap = end_overlap (buf)) < end_len) {
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    char chunk[sizeof COOKIE_END];
    int left = -1, r;
    ssize_t n;

    if (sm_interrupt_check (error))
      return NULL;
    if (buf->len > MAX_COOKIE_SIZE) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "%s: larger than %d bytes, not a migration cookie",
                   source_name, MAX_COOKIE_SIZE);
      return NULL;
    }
    if (deadline >= 0) {
      gint64 us = deadline - g_get_monotonic_time ();

      /* Rounded up, so that a poll never returns just before it. */
      left = us <= 0 ? 0 : (int) MIN ((us + 999) / 1000, G_MAXINT);
    }
    /* At the deadline poll still says whether bytes are there: a cookie
     * that has arrived is read, not refused for the size of our reads. */
    r = poll (&pfd, 1, left);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: poll: %s", source_name,
                   g_strerror (errno));
      return NULL;
    }
    if (r == 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
                   "no migration cookie from %s within %d ms (%zu bytes "
                   "read, no closing </qemu-migration> line)", peer,
                   timeout_ms, buf->len);
      return NULL;
    }
    n = read (fd, chunk, end_len - overlap);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (n < 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: read: %s", source_name,
                   g_strerror (errno));
      return NULL;
    }
    if (n == 0)
      break;
    g_string_append_len (buf, chunk, n);
  }
  if (buf->len == 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_DISCONNECTED,
                 "no migration cookie: %s closed its output", peer);
    return NULL;
  }
  return sm_mig_cookie_parse_named (buf->str, buf->len, source_name, error);
}
