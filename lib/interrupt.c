/* libsnapmig — interruption requests (see interrupt.h). */
#include "interrupt.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t requested;
/* > 0 inside sm_interrupt_block_during: checks report nothing there. */
static int deferred;

static void
on_signal (int sig)
{
  sm_interrupt_request (sig);
}

void
sm_interrupt_install (void)
{
  static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
  struct sigaction sa;
  size_t i;

  memset (&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset (&sa.sa_mask);
  sa.sa_flags = 0;            /* no SA_RESTART: a blocked poll() returns */
  for (i = 0; i < G_N_ELEMENTS (sigs); i++)
    sigaction (sigs[i], &sa, NULL);
}

void
sm_interrupt_uninstall (void)
{
  signal (SIGINT, SIG_DFL);
  signal (SIGTERM, SIG_DFL);
  signal (SIGHUP, SIG_DFL);
  requested = 0;
}

void
sm_interrupt_request (int sig)
{
  requested = sig;
}

int
sm_interrupted (void)
{
  return requested;
}

void
sm_interrupt_clear (void)
{
  requested = 0;
}

int
sm_interrupt_set_aside (void)
{
  int sig = requested;

  requested = 0;
  return sig;
}

void
sm_interrupt_restore (int sig)
{
  if (sig && !requested)
    requested = sig;
}

bool
sm_interrupt_check (GError **error)
{
  int sig = requested;

  if (!sig || deferred > 0)
    return false;
  g_set_error (error, SM_ERROR, SM_ERROR_INTERRUPTED, "interrupted by %s",
               sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM"
               : sig == SIGHUP ? "SIGHUP" : "a signal");
  return true;
}

void
sm_interrupt_block_during (void (*fn) (void *opaque), void *opaque)
{
  sigset_t set, old;

  sigemptyset (&set);
  sigaddset (&set, SIGINT);
  sigaddset (&set, SIGTERM);
  sigaddset (&set, SIGHUP);
  sigprocmask (SIG_BLOCK, &set, &old);
  deferred++;
  fn (opaque);
  deferred--;
  sigprocmask (SIG_SETMASK, &old, NULL);
}
