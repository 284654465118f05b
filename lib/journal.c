/* libsnapmig — operation journals (see journal.h). */
#include "journal.h"
#include "qmp.h"        /* g_autoptr(json_object) */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct SmJournal {
  char *path;
  int fd;
  unsigned records;            /* records written, the header included */
};

char *
sm_journal_new_opid (void)
{
  g_autoptr(GDateTime) now = g_date_time_new_now_utc ();
  g_autofree char *stamp = g_date_time_format (now, "%Y%m%dT%H%M%S");

  return g_strdup_printf ("%s-%08x", stamp, g_random_int ());
}

SmJournal *
sm_journal_create (const char *dir, const char *opid, json_object *header,
                   GError **error)
{
  g_autoptr(json_object) owned = header;
  g_autoptr(SmJournal) journal = g_new0 (SmJournal, 1);

  journal->fd = -1;
  if (g_mkdir_with_parents (dir, 0700) < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: cannot create: %s", dir,
                 g_strerror (errno));
    return NULL;
  }
  journal->path = g_strdup_printf ("%s/%s.journal", dir, opid);
  journal->fd = open (journal->path,
                      O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
  if (journal->fd < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "journal %s: cannot create: %s",
                 journal->path, g_strerror (errno));
    return NULL;
  }
  if (!sm_journal_append (journal, g_steal_pointer (&owned), error) ||
      !sm_state_fsync_dir (dir, error)) {
    unlink (journal->path);
    return NULL;
  }
  return g_steal_pointer (&journal);
}

SmJournal *
sm_journal_open_append (const char *path, GError **error)
{
  g_autoptr(SmJournal) journal = g_new0 (SmJournal, 1);

  journal->path = g_strdup (path);
  journal->fd = open (path, O_WRONLY | O_APPEND | O_CLOEXEC);
  if (journal->fd < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "journal %s: cannot open: %s",
                 path, g_strerror (errno));
    return NULL;
  }
  return g_steal_pointer (&journal);
}

/* Test hook SNAPMIG_TEST_CRASH_AT_RECORD=N[:SIGNAL] (see journal.h): the
 * process sends itself SIGNAL once RECORDS, the number of the record just
 * made durable, is N.  Once per process. */
static void
test_crash_at_record (unsigned records)
{
  static bool fired;
  const char *s = g_getenv ("SNAPMIG_TEST_CRASH_AT_RECORD");
  char *end = NULL;
  int sig = SIGKILL;

  if (!s || fired || strtoul (s, &end, 10) != records || end == s)
    return;
  if (*end == ':') {
    const char *name = end + 1;

    if (g_str_has_prefix (name, "SIG"))
      name += 3;
    if (strcmp (name, "INT") == 0)
      sig = SIGINT;
    else if (strcmp (name, "TERM") == 0)
      sig = SIGTERM;
    else if (strcmp (name, "HUP") == 0)
      sig = SIGHUP;
    else if (strcmp (name, "KILL") != 0)
      return;
  }
  fired = true;
  kill (getpid (), sig);
}

bool
sm_journal_append (SmJournal *journal, json_object *record, GError **error)
{
  return sm_journal_append_many (journal, &record, 1, true, error);
}

bool
sm_journal_append_many (SmJournal *journal, json_object **records, guint n,
                        bool sync, GError **error)
{
  g_autoptr(GString) lines = g_string_new (NULL);
  gint64 now = g_get_real_time () / 1000;
  size_t off = 0;
  guint i;

  for (i = 0; i < n; i++) {
    json_object_object_add (records[i], "time", json_object_new_int64 (now));
    g_string_append_printf (lines, "%s\n", json_object_to_json_string_ext (
                              records[i], JSON_C_TO_STRING_PLAIN |
                              JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put (records[i]);
    records[i] = NULL;
  }
  /* One write for the records: with O_APPEND a crash leaves whole records
   * and at most one torn last line. */
  while (off < lines->len) {
    ssize_t w = write (journal->fd, lines->str + off, lines->len - off);

    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "journal %s: write: %s",
                   journal->path, g_strerror (errno));
      return false;
    }
    off += (size_t) w;
  }
  if (sync && fdatasync (journal->fd) < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "journal %s: sync: %s",
                 journal->path, g_strerror (errno));
    return false;
  }
  for (i = 0; i < n; i++)
    test_crash_at_record (++journal->records);
  return true;
}

SmJournal *
sm_journal_reopen (const char *path, GError **error)
{
  g_autoptr(SmJournal) journal = g_new0 (SmJournal, 1);
  g_autofree char *data = NULL;
  size_t size = 0;
  const char *nl;

  journal->path = g_strdup (path);
  journal->fd = open (path, O_WRONLY | O_APPEND | O_CLOEXEC);
  if (journal->fd < 0) {
    g_set_error (error, SM_ERROR,
                 errno == ENOENT ? SM_ERROR_NOT_FOUND : SM_ERROR_IO,
                 "journal %s: cannot open: %s", path, g_strerror (errno));
    return NULL;
  }
  if (!g_file_get_contents (path, &data, &size, NULL))
    size = 0;
  nl = size ? memrchr (data, '\n', size) : NULL;
  if (size && (!nl || (size_t) (nl - data) + 1 != size) &&
      ftruncate (journal->fd, nl ? (off_t) (nl - data) + 1 : 0) < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO,
                 "journal %s: cannot cut its torn last line: %s", path,
                 g_strerror (errno));
    return NULL;
  }
  return g_steal_pointer (&journal);
}

const char *
sm_journal_path (const SmJournal *journal)
{
  return journal->path;
}

void
sm_journal_free (SmJournal *journal)
{
  if (!journal)
    return;
  if (journal->fd >= 0)
    close (journal->fd);
  g_free (journal->path);
  g_free (journal);
}

bool
sm_journal_finish (SmJournal *journal, GError **error)
{
  g_autofree char *dir = g_path_get_dirname (journal->path);

  if (unlink (journal->path) < 0 && errno != ENOENT) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "journal %s: cannot remove: %s",
                 journal->path, g_strerror (errno));
    sm_journal_free (journal);
    return false;
  }
  sm_journal_free (journal);
  return sm_state_fsync_dir (dir, error);
}

/* Parses LINE (LEN bytes, no newline) as one record, or NULL. */
static json_object *
parse_record (const char *line, size_t len)
{
  json_tokener *tok;
  json_object *rec;
  bool whole;

  if (len == 0 || len > INT_MAX || memchr (line, '\0', len))
    return NULL;
  tok = json_tokener_new ();
  rec = json_tokener_parse_ex (tok, line, (int) len);
  whole = rec && json_tokener_get_error (tok) == json_tokener_success &&
          json_tokener_get_parse_end (tok) == len &&
          json_object_is_type (rec, json_type_object);
  json_tokener_free (tok);
  if (!whole) {
    json_object_put (rec);
    return NULL;
  }
  return rec;
}

json_object *
sm_journal_load (const char *path, GError **error)
{
  g_autofree char *data = NULL;
  g_autoptr(json_object) records = NULL;
  GError *err = NULL;
  size_t size, off = 0, line = 0;

  if (!g_file_get_contents (path, &data, &size, &err)) {
    g_set_error (error, SM_ERROR,
                 err->code == G_FILE_ERROR_NOENT ? SM_ERROR_NOT_FOUND
                                                 : SM_ERROR_IO,
                 "journal %s: %s", path, err->message);
    g_error_free (err);
    return NULL;
  }
  records = json_object_new_array ();
  /* Walk by length, not as a C string: a NUL byte (a block the file system
   * never wrote) must not hide the records after it. */
  while (off < size) {
    const char *start = data + off;
    const char *nl = memchr (start, '\n', size - off);
    size_t len = nl ? (size_t) (nl - start) : size - off;
    json_object *rec;

    line++;
    off += len + (nl ? 1 : 0);
    rec = parse_record (start, len);
    if (rec) {
      json_object_array_add (records, rec);
      continue;
    }
    /* One write() per record, newline last: a crash in the middle of the
     * last write leaves one unterminated line, which is dropped (its step
     * never ran).  Anything else was not written by snapmig. */
    if (!nl)
      break;
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "journal %s: line %zu is %s", path, line,
                 len == 0 ? "empty"
                          : "not a JSON object (cut or overwritten)");
    return NULL;
  }
  return g_steal_pointer (&records);
}

static gint
compare_strings (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

char **
sm_journal_list (const char *dir, GError **error)
{
  g_autoptr(GPtrArray) paths = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GDir) d = NULL;
  GError *err = NULL;
  const char *name;

  d = g_dir_open (dir, 0, &err);
  if (!d) {
    if (err->code == G_FILE_ERROR_NOENT) {
      g_error_free (err);
      return g_new0 (char *, 1);
    }
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: %s", dir, err->message);
    g_error_free (err);
    return NULL;
  }
  while ((name = g_dir_read_name (d)))
    if (g_str_has_suffix (name, ".journal"))
      g_ptr_array_add (paths, g_build_filename (dir, name, NULL));
  g_ptr_array_sort (paths, compare_strings);
  g_ptr_array_add (paths, NULL);
  return (char **) g_ptr_array_free (g_steal_pointer (&paths), false);
}
