/* libsnapmig — what the migration cookie's files (migrate-cookie.c,
 * migrate-peer.c) share.  Not part of the library's API.
 */
#ifndef SM_MIGRATE_COOKIE_PRIVATE_H
#define SM_MIGRATE_COOKIE_PRIVATE_H

#include "migrate-cookie.h"

/* An endpoint URI taken apart. */
typedef struct {
  char *host;                  /* tcp: without brackets, else NULL */
  char *port;                  /* tcp: decimal 1..65535, else NULL */
  char *path;                  /* unix: absolute, else NULL */
} SmUri;

/* Parses URI into U (cleared first; free its strings with
 * sm_mig_uri_clear).  SM_ERROR_INVALID naming URI and the form expected. */
bool sm_mig_uri_parse (const char *uri, SmUri *u, GError **error);
void sm_mig_uri_clear (SmUri *u);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (SmUri, sm_mig_uri_clear)

/* sm_mig_cookie_parse, each message beginning with SOURCE_NAME ("migration
 * cookie from the destination"). */
SmMigCookie *sm_mig_cookie_parse_named (const char *xml, size_t len,
                                        const char *source_name,
                                        GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

#endif /* SM_MIGRATE_COOKIE_PRIVATE_H */
