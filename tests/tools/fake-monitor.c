/* fake-monitor — a FAKE QMP peer for what a real QEMU never does, for
 * tests/integration/test-qmp-bounds.sh.
 *
 *   fake-monitor backlog SOCKET   listens with a backlog of 0 and never
 *                                 accepts; fills the backlog with its own
 *                                 connections, so that the next connect
 *                                 finds it full.
 *   fake-monitor endless SOCKET   greets, answers qmp_capabilities, then
 *                                 answers the next command with a line that
 *                                 never ends (until the client goes away).
 *
 * Prints "ready" on stdout once SOCKET can be used, then runs until killed
 * (endless: until its client closes the connection).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define GREETING "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, " \
  "\"minor\": 2, \"major\": 7}}, \"capabilities\": []}}\r\n"

static int
listen_on (const char *path, int backlog)
{
  struct sockaddr_un sun = { .sun_family = AF_UNIX };
  int fd = socket (AF_UNIX, SOCK_STREAM, 0);

  if (fd < 0 || strlen (path) >= sizeof sun.sun_path) {
    perror ("fake-monitor: socket");
    return -1;
  }
  strcpy (sun.sun_path, path);
  if (bind (fd, (struct sockaddr *) &sun, sizeof sun) < 0 ||
      listen (fd, backlog) < 0) {
    perror ("fake-monitor: bind/listen");
    return -1;
  }
  return fd;
}

static void
ready (void)
{
  printf ("ready\n");
  fflush (stdout);
}

/* Connects to PATH without blocking until the backlog refuses (EAGAIN). */
static int
fill_backlog (const char *path)
{
  struct sockaddr_un sun = { .sun_family = AF_UNIX };
  int n;

  strcpy (sun.sun_path, path);
  for (n = 0; n < 64; n++) {
    int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);

    if (connect (fd, (struct sockaddr *) &sun, sizeof sun) < 0) {
      int saved = errno;

      close (fd);
      if (saved == EAGAIN)
        return n;
      perror ("fake-monitor: connect");
      return -1;
    }
    /* Kept open: each one holds its place in the backlog. */
  }
  fprintf (stderr, "fake-monitor: the backlog never filled\n");
  return -1;
}

static int
read_line (int fd)
{
  char c;
  ssize_t n;

  while ((n = read (fd, &c, 1)) == 1)
    if (c == '\n')
      return 0;
  return -1;
}

static int
send_all (int fd, const char *buf, size_t len)
{
  while (len > 0) {
    ssize_t n = send (fd, buf, len, MSG_NOSIGNAL);

    if (n < 0)
      return -1;
    buf += n;
    len -= (size_t) n;
  }
  return 0;
}

static int
endless (int lfd)
{
  static const char start[] = "{\"return\": [\"";
  char chunk[65536];
  int fd = accept (lfd, NULL, NULL);

  if (fd < 0)
    return 1;
  memset (chunk, 'x', sizeof chunk);
  if (send_all (fd, GREETING, strlen (GREETING)) < 0 || read_line (fd) < 0)
    return 1;
  if (send_all (fd, "{\"return\": {}}\r\n", 16) < 0 || read_line (fd) < 0)
    return 1;
  if (send_all (fd, start, strlen (start)) < 0)
    return 1;
  /* Until the client gives up and closes: then EPIPE. */
  while (send_all (fd, chunk, sizeof chunk) == 0)
    ;
  return 0;
}

int
main (int argc, char **argv)
{
  int fd;

  if (argc != 3) {
    fprintf (stderr, "usage: fake-monitor backlog|endless SOCKET\n");
    return 2;
  }
  if (strcmp (argv[1], "backlog") == 0) {
    fd = listen_on (argv[2], 0);
    if (fd < 0 || fill_backlog (argv[2]) < 0)
      return 1;
    ready ();
    for (;;)
      pause ();
  }
  if (strcmp (argv[1], "endless") == 0) {
    fd = listen_on (argv[2], 1);
    if (fd < 0)
      return 1;
    ready ();
    return endless (fd);
  }
  fprintf (stderr, "fake-monitor: unknown mode %s\n", argv[1]);
  return 2;
}
