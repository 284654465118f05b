/* libsnapmig — the snapmig binary the library execs for its helper
 * processes: the lower layers' copy worker (`snapmig copy-worker`,
 * lib/layer-copy.c) and migrate's tunnel (`snapmig tunnel`).  The library
 * never forks without exec: a helper is always a fresh snapmig process.
 */
#ifndef SM_HELPER_H
#define SM_HELPER_H

/* Sets the binary (the CLI passes its own /proc/self/exe; a program using
 * the library, snapmig_set_helper).  NULL: back to the default. */
void sm_helper_set_path (const char *path);

/* The binary to exec: the path set, else $SNAPMIG_HELPER when set and not
 * empty, else the one `make install` put beside the shared library
 * (BINDIR/snapmig, found from the library's own file and BINDIR's place
 * relative to LIBDIR), else "snapmig" (looked up in PATH).  Caller
 * frees. */
char *sm_helper_path (void);

#endif /* SM_HELPER_H */
