/* snapmig(1) — progress display for long waits.
 *
 * On a terminal: one bar per item (bytes done/total, rate, ETA), redrawn in
 * place on stderr.  With --json: one JSON object per line on stdout instead,
 * e.g. {"event":"progress","item":"vda","done":1048576,"total":67108864,
 * "rate":52428800.0,"eta":1.2}.  When stderr is not a terminal and --json is
 * off: nothing until sm_progress_done/fail print one summary line per item.
 */
#ifndef SM_PROGRESS_H
#define SM_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

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

/* A one-off JSON event line ({"event":NAME, ...fields}) in --json mode, a
 * plain line on stdout otherwise (MESSAGE).  After FIRST_KEY come pairs
 * of const char *value, const char *key, ..., ending with NULL: values are
 * strings in the JSON. */
void sm_progress_event (SmProgress *p, const char *name, const char *message,
                        const char *first_key, ...) G_GNUC_NULL_TERMINATED;

/* sm_progress_event with one more JSON field: LIST_KEY, an array of the
 * strings of LIST (char *; NULL is an empty array).  The plain line is
 * MESSAGE alone. */
void sm_progress_event_list (SmProgress *p, const char *name,
                             const char *message, const char *list_key,
                             const GPtrArray *list, const char *first_key,
                             ...) G_GNUC_NULL_TERMINATED;

#endif /* SM_PROGRESS_H */
