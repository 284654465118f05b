/* snapmig(1) — progress display for long waits (see progress.h).
 *
 * Three modes, chosen once at sm_progress_new:
 *   tty   stderr is a terminal: every item is one bar line, the whole block
 *         redrawn in place (cursor up, clear line) at most 10 times a second;
 *   json  one JSON object per line on stdout, progress lines rate-limited
 *         per item, done/fail/event lines always;
 *   quiet neither: only one summary line per item on done/fail (stderr).
 */
#include "progress.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <json-c/json.h>

#include "cli.h"
#include "qmp.h"      /* only for json_object's g_autoptr cleanup */
#include "report-json.h"

/* At most this many redraws (tty) or progress lines per item (json) a
 * second: a terminal that scrolls 100 lines a second is unreadable, and a
 * consumer of --json wants a steady trickle, not QEMU's poll rate. */
#define MIN_INTERVAL_US (G_USEC_PER_SEC / 10)

/* Time constant of the rate's exponential moving average: long enough to
 * smooth QEMU's bursty job offsets, short enough to follow a throttle. */
#define RATE_TAU_S 3.0

/* Rate samples closer together than this are merged into the next one, so
 * that two updates a millisecond apart do not make a spike. */
#define RATE_MIN_SAMPLE_US (G_USEC_PER_SEC / 5)

typedef enum {
  ITEM_RUNNING,
  ITEM_DONE,
  ITEM_FAILED,
} ItemState;

typedef struct {
  char *name;
  uint64_t done;
  uint64_t total;
  double rate;              /* bytes/s, EMA; 0 until the first sample */
  gint64 start_us;
  gint64 end_us;
  gint64 sample_us;         /* last rate sample */
  uint64_t sample_done;
  gint64 emitted_us;        /* last json progress line; 0 = never */
  ItemState state;
  char *message;            /* done/fail message */
} Item;

typedef enum {
  MODE_TTY,
  MODE_JSON,
  MODE_QUIET,
} Mode;

struct SmProgress {
  Mode mode;
  GPtrArray *items;         /* Item *, in order of first update */
  gint64 drawn_us;          /* last tty redraw; 0 = never */
  unsigned lines_drawn;     /* bar lines on screen below the cursor's line */
  bool dirty;               /* an update not yet drawn */
};

static void
item_free (gpointer data)
{
  Item *it = data;

  g_free (it->name);
  g_free (it->message);
  g_free (it);
}

SmProgress *
sm_progress_new (bool json)
{
  SmProgress *p = g_new0 (SmProgress, 1);

  if (json)
    p->mode = MODE_JSON;
  else if (isatty (STDERR_FILENO))
    p->mode = MODE_TTY;
  else
    p->mode = MODE_QUIET;
  p->items = g_ptr_array_new_with_free_func (item_free);
  return p;
}

static Item *
find_item (SmProgress *p, const char *name, bool create)
{
  guint i;
  Item *it;

  for (i = 0; i < p->items->len; i++) {
    it = g_ptr_array_index (p->items, i);
    if (strcmp (it->name, name) == 0)
      return it;
  }
  if (!create)
    return NULL;
  it = g_new0 (Item, 1);
  it->name = g_strdup (name);
  it->start_us = g_get_monotonic_time ();
  it->sample_us = it->start_us;
  g_ptr_array_add (p->items, it);
  return it;
}

/* Folds the bytes done since the last sample into the moving average.  The
 * weight of the new sample grows with the time it covers, so the average
 * does not depend on how often the caller polls. */
static void
item_sample_rate (Item *it, uint64_t done, gint64 now)
{
  gint64 dt_us = now - it->sample_us;
  double dt, inst, alpha;

  if (done < it->sample_done) {
    /* QEMU restarted counting (a job was replaced): start over. */
    it->sample_done = done;
    it->sample_us = now;
    it->rate = 0;
    return;
  }
  if (dt_us < RATE_MIN_SAMPLE_US)
    return;
  dt = (double) dt_us / G_USEC_PER_SEC;
  inst = (double) (done - it->sample_done) / dt;
  if (it->rate == 0)
    it->rate = inst;
  else {
    /* dt / (tau + dt) ~ 1 - exp (-dt / tau) for short samples, without
     * libm. */
    alpha = dt / (RATE_TAU_S + dt);
    it->rate = alpha * inst + (1.0 - alpha) * it->rate;
  }
  it->sample_done = done;
  it->sample_us = now;
}

/* Seconds left at the current rate, or -1 when unknown. */
static double
item_eta (const Item *it)
{
  if (it->total == 0 || it->rate <= 0)
    return -1;
  if (it->done >= it->total)
    return 0;
  return (double) (it->total - it->done) / it->rate;
}

static char *
format_duration (double seconds)
{
  unsigned long s;

  if (seconds < 0)
    return g_strdup ("--:--");
  s = (unsigned long) (seconds + 0.5);
  if (s >= 3600)
    return g_strdup_printf ("%lu:%02lu:%02lu", s / 3600, s / 60 % 60, s % 60);
  return g_strdup_printf ("%lu:%02lu", s / 60, s % 60);
}

static char *
format_rate (double rate)
{
  g_autofree char *size = sm_cli_format_size ((guint64) (rate + 0.5));

  return g_strdup_printf ("%s/s", size);
}

/* The terminal's width: stderr's (TIOCGWINSZ), else $COLUMNS, else 80. */
static unsigned
terminal_width (void)
{
  struct winsize ws;
  const char *columns = g_getenv ("COLUMNS");
  guint64 n;

  if (ioctl (STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
    return ws.ws_col;
  if (columns && g_ascii_string_to_unsigned (columns, 10, 1, 10000, &n, NULL))
    return (unsigned) n;
  return 80;
}

/* NAME in at most WIDTH columns: a longer one keeps its start and its end
 * (where a file name's distinguishing parts are: the disk and the
 * suffix) around "...". */
static char *
shorten_middle (const char *name, size_t width)
{
  size_t len = strlen (name), head, tail;

  if (len <= width)
    return g_strdup (name);
  if (width <= 3)
    return g_strndup (name, width);
  head = (width - 3 + 1) / 2;
  tail = width - 3 - head;
  return g_strdup_printf ("%.*s...%s", (int) head, name, name + len - tail);
}

/* The numbers after the bar: percent, done/total, then the rate and ETA
 * or the final word. */
/* SIZES false leaves out done/total, for a narrow terminal: the rate and
 * the time left say more there. */
static char *
format_bar_tail (const Item *it, unsigned pct, bool sizes)
{
  GString *tail = g_string_new (NULL);
  g_autofree char *done = sm_cli_format_size (it->done);
  g_autofree char *total = sm_cli_format_size (it->total);

  g_string_append_printf (tail, "%3u%%", pct);
  if (sizes)
    g_string_append_printf (tail, " %s/%s", done, total);
  switch (it->state) {
  case ITEM_RUNNING: {
    g_autofree char *rate = it->rate > 0 ? format_rate (it->rate)
                                         : g_strdup ("-- B/s");
    g_autofree char *eta = format_duration (item_eta (it));

    g_string_append_printf (tail, " %s ETA %s", rate, eta);
    break;
  }
  case ITEM_DONE:
    g_string_append_printf (tail, " done%s%s", it->message ? ": " : "",
                            it->message ? it->message : "");
    break;
  case ITEM_FAILED:
    g_string_append_printf (tail, " FAILED%s%s", it->message ? ": " : "",
                            it->message ? it->message : "");
    break;
  }
  return g_string_free (tail, FALSE);
}

/* One bar line, without newline, at most WIDTH - 1 columns so that the
 * terminal never wraps it (a wrapped line would break the cursor-up count).
 * The name is shortened in the middle to NAME_WIDTH; the bar gets what ~45
 * columns of numbers leave, the same on every line and redraw (numbers
 * change length as they grow; the bar must not jitter), and is left out
 * below 5 columns, and then done/total too if the line is still too long.
 * Names and numbers are ASCII, so bytes are columns. */
static char *
format_bar_line (const Item *it, size_t name_width, unsigned width)
{
  GString *s = g_string_new (NULL);
  g_autofree char *name = shorten_middle (it->name, name_width);
  g_autofree char *tail = NULL;
  unsigned pct = 0, fill, i;
  long bar;

  if (it->total > 0)
    pct = it->done >= it->total ? 100 : (unsigned) (it->done * 100 / it->total);
  if (it->state == ITEM_DONE)
    pct = 100;
  bar = (long) width - 1 - (long) name_width - 4 - 45;
  tail = format_bar_tail (it, pct, true);
  if (bar < 5 && name_width + 1 + strlen (tail) > width - 1) {
    g_free (tail);
    tail = format_bar_tail (it, pct, false);
  }
  g_string_append_printf (s, "%-*s ", (int) name_width, name);
  if (bar >= 5) {
    bar = MIN (bar, 30);
    fill = pct * (unsigned) bar / 100;
    g_string_append_c (s, '[');
    for (i = 0; i < (unsigned) bar; i++) {
      if (i < fill)
        g_string_append_c (s, '=');
      else if (i == fill && it->state == ITEM_RUNNING)
        g_string_append_c (s, '>');
      else
        g_string_append_c (s, ' ');
    }
    g_string_append (s, "] ");
  }
  g_string_append (s, tail);
  if (width > 1 && s->len > width - 1)
    g_string_truncate (s, width - 1);
  return g_string_free (s, FALSE);
}

/* Moves the cursor back to the first bar line and clears the block. */
static void
tty_erase (SmProgress *p)
{
  if (p->lines_drawn > 0)
    fprintf (stderr, "\033[%uA\r\033[J", p->lines_drawn);
  p->lines_drawn = 0;
}

static void
tty_draw (SmProgress *p)
{
  size_t name_width = 0;
  unsigned width = terminal_width ();
  guint i;

  for (i = 0; i < p->items->len; i++) {
    const Item *it = g_ptr_array_index (p->items, i);

    name_width = MAX (name_width, strlen (it->name));
  }
  name_width = MIN (name_width, (size_t) MAX (width / 3, 8u));
  if (p->lines_drawn > 0)
    fprintf (stderr, "\033[%uA", p->lines_drawn);
  for (i = 0; i < p->items->len; i++) {
    g_autofree char *line =
      format_bar_line (g_ptr_array_index (p->items, i), name_width, width);

    fprintf (stderr, "\r\033[2K%s\n", line);
  }
  fflush (stderr);
  p->lines_drawn = p->items->len;
  p->drawn_us = g_get_monotonic_time ();
  p->dirty = false;
}

static void
json_print (json_object *obj)
{
  sm_report_event_stamp (obj);
  printf ("%s\n", json_object_to_json_string_ext (
            obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
  fflush (stdout);
}

/* json-c prints doubles with 17 digits; a rate or a duration needs far
 * fewer. */
static json_object *
json_number (double v, int decimals)
{
  g_autofree char *text = g_strdup_printf ("%.*f", decimals, v);

  return json_object_new_double_s (v, text);
}

static json_object *
item_json (const Item *it, const char *event)
{
  json_object *obj = sm_report_event_new (event);
  double eta = item_eta (it);

  json_object_object_add (obj, "item", json_object_new_string (it->name));
  json_object_object_add (obj, "done", json_object_new_uint64 (it->done));
  json_object_object_add (obj, "total", json_object_new_uint64 (it->total));
  if (strcmp (event, "progress") == 0) {
    json_object_object_add (obj, "rate", json_number (it->rate, 0));
    json_object_object_add (obj, "eta-seconds", eta < 0 ? NULL
                            : json_number (eta, 1));
  } else {
    json_object_object_add (obj, "seconds", json_number (
      (double) (it->end_us - it->start_us) / G_USEC_PER_SEC, 3));
    if (it->message)
      json_object_object_add (obj, "message",
                              json_object_new_string (it->message));
  }
  return obj;
}

void
sm_progress_update (SmProgress *p, const char *item, uint64_t done,
                    uint64_t total)
{
  Item *it = find_item (p, item, true);
  gint64 now = g_get_monotonic_time ();

  item_sample_rate (it, done, now);
  it->done = done;
  it->total = total;
  it->state = ITEM_RUNNING;
  p->dirty = true;

  switch (p->mode) {
  case MODE_TTY:
    if (p->drawn_us == 0 || now - p->drawn_us >= MIN_INTERVAL_US)
      tty_draw (p);
    break;
  case MODE_JSON:
    if (it->emitted_us == 0 || now - it->emitted_us >= MIN_INTERVAL_US) {
      g_autoptr(json_object) obj = item_json (it, "progress");

      json_print (obj);
      it->emitted_us = now;
    }
    break;
  case MODE_QUIET:
    break;
  }
}

static void
finish (SmProgress *p, const char *item, const char *message, ItemState state)
{
  Item *it = find_item (p, item, true);
  const char *event = state == ITEM_DONE ? "done" : "fail";

  it->state = state;
  it->end_us = g_get_monotonic_time ();
  g_free (it->message);
  it->message = g_strdup (message);
  if (state == ITEM_DONE && it->total > 0)
    it->done = it->total;

  switch (p->mode) {
  case MODE_TTY:
    tty_draw (p);
    break;
  case MODE_JSON: {
    g_autoptr(json_object) obj = item_json (it, event);

    json_print (obj);
    break;
  }
  case MODE_QUIET: {
    GString *s = g_string_new (NULL);

    g_string_append_printf (s, "%s: %s", it->name,
                            state == ITEM_DONE ? "done" : "failed");
    if (message)
      g_string_append_printf (s, ": %s", message);
    if (it->total > 0) {
      double secs = (double) (it->end_us - it->start_us) / G_USEC_PER_SEC;
      g_autofree char *done = sm_cli_format_size (it->done);
      g_autofree char *total = sm_cli_format_size (it->total);

      g_string_append_printf (s, " (%s/%s in %.1f s)", done, total, secs);
    }
    fprintf (stderr, "%s\n", s->str);
    g_string_free (s, TRUE);
    break;
  }
  }
}

void
sm_progress_done (SmProgress *p, const char *item, const char *message)
{
  finish (p, item, message, ITEM_DONE);
}

void
sm_progress_fail (SmProgress *p, const char *item, const char *message)
{
  finish (p, item, message, ITEM_FAILED);
}

/* MESSAGE as a plain line on stdout, above the bars on a terminal. */
static void
print_message_line (SmProgress *p, const char *message)
{
  if (!message)
    return;
  if (p->mode == MODE_TTY && p->lines_drawn > 0) {
    /* The line goes above the bars: erase them, print, draw them again
     * below, so that stdout and stderr on one terminal do not interleave
     * with a half-redrawn block. */
    tty_erase (p);
    fflush (stderr);
    printf ("%s\n", message);
    fflush (stdout);
    tty_draw (p);
    return;
  }
  printf ("%s\n", message);
  fflush (stdout);
}

void
sm_progress_event (SmProgress *p, const char *name, const char *message,
                   json_object *fields)
{
  if (p->mode == MODE_JSON) {
    g_autoptr(json_object) obj = sm_report_event_new (name);

    if (message)
      json_object_object_add (obj, "message", json_object_new_string (message));
    if (fields) {
      json_object_object_foreach (fields, key, val) {
        json_object_object_add (obj, key, json_object_get (val));
      }
    }
    json_print (obj);
  } else
    print_message_line (p, message);
  if (fields)
    json_object_put (fields);
}

void
sm_progress_result (SmProgress *p, const char *message, json_object *fields)
{
  if (p->mode == MODE_JSON) {
    g_autoptr(json_object) obj = sm_report_result_ok (fields);

    json_print (obj);
    return;
  }
  if (fields)
    json_object_put (fields);
  print_message_line (p, message);
}

void
sm_progress_free (SmProgress *p)
{
  if (!p)
    return;
  /* The last update may have been rate-limited away: show final numbers. */
  if (p->mode == MODE_TTY && p->dirty)
    tty_draw (p);
  g_ptr_array_unref (p->items);
  g_free (p);
}
