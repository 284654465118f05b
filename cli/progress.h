/* snapmig(1) — progress display for long waits.
 *
 * On a terminal: one bar per item (bytes done/total, rate, ETA), redrawn in
 * place on stderr.  With --json: one JSON object per line on stdout instead,
 * e.g. {"event":"progress","time":"2026-12-01T07:53:33.123Z","item":"vda",
 * "done":1048576,"total":67108864,"rate":52428800,"eta-seconds":1.2}
 * (snapmig-json(7)).  When stderr is not a terminal and --json is
 * off: nothing until sm_progress_done/fail print one summary line per item.
 */
#ifndef SM_PROGRESS_H
#define SM_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>
#include <json-c/json.h>

typedef struct SmProgress SmProgress;

SmProgress *sm_progress_new (bool json) G_GNUC_WARN_UNUSED_RESULT;
void sm_progress_free (SmProgress *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmProgress, sm_progress_free)

/* Updates (adding if new) the item named ITEM ("vda mirror", "base.qcow2
 * copy"); TOTAL may change as QEMU learns more. */
void sm_progress_update (SmProgress *p, const char *item, uint64_t done,
                         uint64_t total);
void sm_progress_done (SmProgress *p, const char *item, const char *message);
void sm_progress_fail (SmProgress *p, const char *item, const char *message);

/* A one-off event: in --json mode the line {"event":NAME,"time":...,
 * "message":MESSAGE, ...FIELDS' members} (FIELDS consumed, may be NULL:
 * typed values, built in lib/), else MESSAGE as a plain line on stdout
 * (nothing when NULL). */
void sm_progress_event (SmProgress *p, const char *name, const char *message,
                        json_object *fields);

/* The command's end: in --json mode the ok result event with FIELDS'
 * members (consumed, may be NULL), else MESSAGE as a plain line. */
void sm_progress_result (SmProgress *p, const char *message,
                         json_object *fields);

#endif /* SM_PROGRESS_H */
