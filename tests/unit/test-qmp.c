/* Unit tests for lib/qmp.c, against real QEMU (qemu-system-x86_64 -M none)
 * and, only for what real QEMU never sends, a fake QMP peer.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"
#include "interrupt.h"
#include "qmp.h"

#define MiB (1024 * 1024)

static char *tmpdir;

/* A VM with one 4 MiB qcow2 disk "drive0" at DIR/NAME.qcow2. */
static SmTestVm *
start_vm_one_disk (const char *name)
{
  g_autofree char *img = g_strdup_printf ("%s/%s.qcow2", tmpdir, name);
  g_autofree char *drive = g_strdup_printf ("file=%s,if=none,id=drive0,"
                                            "format=qcow2", img);
  const char *drives[] = { drive, NULL };

  g_assert_true (sm_test_create_qcow2 (img, 4 * MiB, NULL, NULL));
  return sm_test_vm_start (tmpdir, name, drives);
}

static void
test_connect_and_probe (void)
{
  g_autoptr(SmTestVm) vm = start_vm_one_disk ("probe");
  g_autoptr(GError) err = NULL;
  const SmQmpCaps *caps;
  SmQmp *qmp;
  int i;

  g_assert_nonnull (vm);
  qmp = sm_test_vm_qmp (vm);
  g_assert_cmpstr (sm_qmp_address (qmp), ==, sm_test_vm_socket (vm));
  caps = sm_qmp_probe (qmp, &err);
  g_assert_no_error (err);
  g_assert_nonnull (caps);
  g_assert_cmpint (caps->major, >=, 7);
  /* QEMU 7.2 has everything snapmig can use. */
  for (i = 0; i < SM_QMP_CAP_LAST; i++) {
    g_test_message ("cap %s = %d", sm_qmp_cap_to_string (i), caps->caps[i]);
    g_assert_true (caps->caps[i]);
  }
  /* Cached: the same answer without another round trip. */
  g_assert_true (sm_qmp_probe (qmp, &err) == caps);
  g_assert_cmpstr (sm_qmp_cap_to_string (SM_QMP_CAP_MIGRATE_POSTCOPY), ==,
                   "postcopy-ram");
  g_assert_null (sm_qmp_cap_to_string (SM_QMP_CAP_LAST));
}

static void
test_execute_query_block (void)
{
  g_autoptr(SmTestVm) vm = start_vm_one_disk ("query");
  g_autoptr(GError) err = NULL;
  g_autoptr(json_object) ret = NULL;
  json_object *dev;

  g_assert_nonnull (vm);
  ret = sm_qmp_execute (sm_test_vm_qmp (vm), "query-block", NULL, &err);
  g_assert_no_error (err);
  g_assert_true (json_object_is_type (ret, json_type_array));
  g_assert_cmpint (json_object_array_length (ret), ==, 1);
  g_assert_true (json_object_object_get_ex (json_object_array_get_idx (ret, 0),
                                            "device", &dev));
  g_assert_cmpstr (json_object_get_string (dev), ==, "drive0");
  g_assert_true (sm_qmp_run (sm_test_vm_qmp (vm), "query-version", NULL,
                             &err));
  g_assert_no_error (err);
}

static void
test_error_reply (void)
{
  g_autoptr(SmTestVm) vm = start_vm_one_disk ("error");
  g_autoptr(GError) err = NULL;
  g_autoptr(json_object) ret = NULL;
  g_autofree char *hmp = NULL;
  SmQmp *qmp;

  g_assert_nonnull (vm);
  qmp = sm_test_vm_qmp (vm);
  g_assert_null (sm_qmp_last_error_class (qmp));
  ret = sm_qmp_execute (qmp, "block-job-complete",
                        sm_qmp_args (&err, "s:device", "drive0", NULL), &err);
  g_assert_null (ret);
  g_assert_error (err, SM_ERROR, SM_ERROR_QMP);
  g_assert_cmpstr (err->message, ==,
                   "block-job-complete: Block job 'drive0' not found");
  g_assert_cmpstr (sm_qmp_last_error_class (qmp), ==, "DeviceNotActive");
  g_clear_error (&err);

  /* A failed builder inside the call: nothing is sent, its error stays. */
  g_assert_false (sm_qmp_run (qmp, "block-job-cancel",
                              sm_qmp_args (&err, "s:device", NULL, NULL),
                              &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
  g_assert_cmpstr (sm_qmp_last_error_class (qmp), ==, "DeviceNotActive");
  g_clear_error (&err);

  g_assert_false (sm_qmp_run (qmp, "no-such-command", NULL, &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_QMP);
  g_assert_true (g_str_has_prefix (err->message, "no-such-command: "));
  g_assert_cmpstr (sm_qmp_last_error_class (qmp), ==, "CommandNotFound");
  g_clear_error (&err);

  /* The connection stays usable after errors. */
  hmp = sm_qmp_hmp (qmp, "info block", &err);
  g_assert_no_error (err);
  g_assert_nonnull (strstr (hmp, "drive0"));
}

static void
test_args (void)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(json_object) args = NULL;
  g_autoptr(json_object) empty = NULL;
  json_object *arr = json_object_new_array ();
  json_object *bad;

  json_object_array_add (arr, json_object_new_int (1));
  args = sm_qmp_args (&err,
                      "s:device", "drive0",
                      "S:job-id", NULL,
                      "S:target", "/t.qcow2",
                      "b:force", true,
                      "B:auto-dismiss", false,
                      "B:sparse", true,
                      "i:speed", (int64_t) -5,
                      "u:big", (uint64_t) G_MAXUINT64,
                      "P:buf-size", (uint64_t) 0,
                      "P:granularity", (uint64_t) 65536,
                      "J:opts", NULL,
                      "j:list", arr,
                      NULL);
  g_assert_no_error (err);
  g_assert_cmpstr (json_object_to_json_string_ext (args,
                                                   JSON_C_TO_STRING_PLAIN |
                                                   JSON_C_TO_STRING_NOSLASHESCAPE),
                   ==,
                   "{\"device\":\"drive0\",\"target\":\"/t.qcow2\","
                   "\"force\":true,\"sparse\":true,\"speed\":-5,"
                   "\"big\":18446744073709551615,\"granularity\":65536,"
                   "\"list\":[1]}");

  /* Programming errors name the key; consumed objects are still released
   * (valgrind checks that). */
  bad = sm_qmp_args (&err, "s:device", NULL, "j:x", json_object_new_object (),
                     NULL);
  g_assert_null (bad);
  g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
  g_assert_nonnull (strstr (err->message, "'device'"));
  g_clear_error (&err);

  bad = sm_qmp_args (&err, "j:obj", NULL, NULL);
  g_assert_null (bad);
  g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
  g_clear_error (&err);

  bad = sm_qmp_args (&err, "device", "drive0", NULL);
  g_assert_null (bad);
  g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
  g_assert_nonnull (strstr (err->message, "'device'"));
  g_clear_error (&err);

  bad = sm_qmp_args (&err, "q:device", "drive0", NULL);
  g_assert_null (bad);
  g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
  g_clear_error (&err);

  /* No keys: an empty object. */
  empty = sm_qmp_args (&err, NULL, NULL);
  g_assert_no_error (err);
  g_assert_cmpint (json_object_object_length (empty), ==, 0);
}

static bool
match_device (json_object *event, void *opaque)
{
  json_object *data;
  json_object *dev;

  return json_object_object_get_ex (event, "data", &data) &&
    json_object_object_get_ex (data, "device", &dev) &&
    g_strcmp0 (json_object_get_string (dev), opaque) == 0;
}

/* sm_qmp_run_batch: every command goes out before any reply is read; each
 * gets its own outcome, in order; the STOP and RESUME events QEMU sends
 * inside `stop` and `cont` are queued with their timestamps. */
static void
test_batch (void)
{
  g_autoptr(SmTestVm) vm = start_vm_one_disk ("batch");
  g_autoptr(GError) err = NULL;
  g_autoptr(json_object) stop = NULL;
  g_autoptr(json_object) resume = NULL;
  g_autoptr(json_object) status = NULL;
  const char *commands[] = { "stop", "block-job-complete", "query-status",
                             "cont" };
  json_object *args[4] = { NULL, NULL, NULL, NULL };
  GError *errors[4] = { NULL, NULL, NULL, NULL };
  json_object *ts;
  SmQmp *qmp;

  g_assert_nonnull (vm);
  qmp = sm_test_vm_qmp (vm);
  args[1] = sm_qmp_args (NULL, "s:device", "no-such-job", NULL);
  g_assert_true (sm_qmp_run_batch (qmp, 4, commands, args, errors, &err));
  g_assert_no_error (err);
  g_assert_null (args[1]);             /* consumed */
  g_assert_no_error (errors[0]);
  g_assert_error (errors[1], SM_ERROR, SM_ERROR_QMP);
  g_assert_cmpstr (errors[1]->message, ==,
                   "block-job-complete: Block job 'no-such-job' not found");
  g_clear_error (&errors[1]);
  g_assert_no_error (errors[2]);
  g_assert_no_error (errors[3]);
  stop = sm_qmp_wait_event (qmp, "STOP", NULL, NULL, 0, &err);
  g_assert_no_error (err);
  g_assert_true (json_object_object_get_ex (stop, "timestamp", &ts));
  resume = sm_qmp_wait_event (qmp, "RESUME", NULL, NULL, 0, &err);
  g_assert_no_error (err);
  status = sm_qmp_execute (qmp, "query-status", NULL, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (json_object_get_string (json_object_object_get (status,
                                                                   "status")),
                   ==, "running");

  /* QEMU gone: the batch as a whole fails, nothing hangs. */
  sm_test_vm_kill (vm);
  g_assert_false (sm_qmp_run_batch (qmp, 1, commands + 2, args + 2, errors,
                                    &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_DISCONNECTED);
}

static void
test_event_block_job (void)
{
  g_autoptr(SmTestVm) vm = start_vm_one_disk ("mirror");
  g_autofree char *target = g_strdup_printf ("%s/mirror-copy.qcow2", tmpdir);
  g_autoptr(GError) err = NULL;
  g_autoptr(json_object) ev = NULL;
  g_autoptr(json_object) jobs = NULL;
  json_object *name;
  SmQmp *qmp;

  g_assert_nonnull (vm);
  qmp = sm_test_vm_qmp (vm);
  g_assert_true (sm_test_guest_write (vm, "drive0", 0x22, MiB, MiB));
  g_assert_true (sm_qmp_run (qmp, "drive-mirror",
                             sm_qmp_args (&err, "s:device", "drive0",
                                          "s:target", target,
                                          "s:format", "qcow2",
                                          "s:sync", "full", NULL),
                             &err));
  g_assert_no_error (err);

  /* An event for another device never matches; the wait would time out. */
  ev = sm_qmp_wait_event (qmp, "BLOCK_JOB_READY", match_device,
                          (void *) "drive9", 0, &err);
  g_assert_null (ev);
  g_assert_error (err, SM_ERROR, SM_ERROR_TIMEOUT);
  g_clear_error (&err);

  ev = sm_qmp_wait_event (qmp, "BLOCK_JOB_READY", match_device,
                          (void *) "drive0", 20000, &err);
  g_assert_no_error (err);
  g_assert_nonnull (ev);
  g_assert_true (json_object_object_get_ex (ev, "event", &name));
  g_assert_cmpstr (json_object_get_string (name), ==, "BLOCK_JOB_READY");
  g_clear_pointer (&ev, json_object_put);

  jobs = sm_qmp_execute (qmp, "query-block-jobs", NULL, &err);
  g_assert_no_error (err);
  g_assert_cmpint (json_object_array_length (jobs), ==, 1);

  /* QEMU-FACTS: a cancel after READY (without force) ends with
   * BLOCK_JOB_COMPLETED, not BLOCK_JOB_CANCELLED, and leaves a consistent
   * copy in the target without a pivot. */
  g_assert_true (sm_qmp_run (qmp, "block-job-cancel",
                             sm_qmp_args (&err, "s:device", "drive0", NULL),
                             &err));
  g_assert_no_error (err);
  ev = sm_qmp_wait_event (qmp, "BLOCK_JOB_COMPLETED", match_device,
                          (void *) "drive0", 20000, &err);
  g_assert_no_error (err);
  g_assert_nonnull (ev);
  g_clear_pointer (&ev, json_object_put);
  /* The guest still sees its disk, and the copy holds what it wrote. */
  g_assert_true (sm_test_guest_read (vm, "drive0", 0x22, MiB, MiB));
  g_assert_true (sm_test_image_read_pattern (target, "qcow2", 0x22, MiB, MiB));

  /* Events queued meanwhile (JOB_STATUS_CHANGE) are handed out in order and
   * can be dropped. */
  ev = sm_qmp_wait_event (qmp, "JOB_STATUS_CHANGE", NULL, NULL, 0, &err);
  g_assert_no_error (err);
  g_assert_nonnull (ev);
  g_clear_pointer (&ev, json_object_put);
  sm_qmp_clear_events (qmp);
  ev = sm_qmp_wait_event (qmp, NULL, NULL, NULL, 0, &err);
  g_assert_error (err, SM_ERROR, SM_ERROR_TIMEOUT);
}

static void
test_wait_timeout (void)
{
  g_autoptr(SmTestVm) vm = start_vm_one_disk ("timeout");
  g_autoptr(GError) err = NULL;
  g_autoptr(json_object) ev = NULL;

  g_assert_nonnull (vm);
  ev = sm_qmp_wait_event (sm_test_vm_qmp (vm), "NO_SUCH_EVENT", NULL, NULL,
                          100, &err);
  g_assert_null (ev);
  g_assert_error (err, SM_ERROR, SM_ERROR_TIMEOUT);
  g_assert_nonnull (strstr (err->message, "NO_SUCH_EVENT"));
  g_assert_nonnull (strstr (err->message, sm_test_vm_socket (vm)));
}

static void
test_qemu_killed (void)
{
  g_autoptr(SmTestVm) vm1 = start_vm_one_disk ("killed1");
  g_autoptr(SmTestVm) vm2 = start_vm_one_disk ("killed2");
  g_autoptr(GError) err = NULL;
  g_autoptr(json_object) ret = NULL;
  g_autoptr(json_object) ev = NULL;

  g_assert_nonnull (vm1);
  g_assert_nonnull (vm2);

  /* execute first: the write may succeed into the socket buffer or fail
   * with EPIPE (which must not raise SIGPIPE); either way the answer is
   * DISCONNECTED, never a hang. */
  sm_test_vm_kill (vm1);
  ret = sm_qmp_execute (sm_test_vm_qmp (vm1), "query-block", NULL, &err);
  g_assert_null (ret);
  g_assert_error (err, SM_ERROR, SM_ERROR_DISCONNECTED);
  g_assert_nonnull (strstr (err->message, sm_test_vm_socket (vm1)));
  g_clear_error (&err);
  ev = sm_qmp_wait_event (sm_test_vm_qmp (vm1), "BLOCK_JOB_READY", NULL, NULL,
                          -1, &err);
  g_assert_null (ev);
  g_assert_error (err, SM_ERROR, SM_ERROR_DISCONNECTED);
  g_clear_error (&err);

  /* wait_event (forever) first. */
  sm_test_vm_kill (vm2);
  ev = sm_qmp_wait_event (sm_test_vm_qmp (vm2), NULL, NULL, NULL, -1, &err);
  g_assert_null (ev);
  g_assert_error (err, SM_ERROR, SM_ERROR_DISCONNECTED);
  g_assert_nonnull (strstr (err->message, sm_test_vm_socket (vm2)));
  g_clear_error (&err);
  g_assert_false (sm_qmp_run (sm_test_vm_qmp (vm2), "query-block", NULL,
                              &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_DISCONNECTED);
}

static void
test_connect_missing (void)
{
  g_autofree char *missing = g_strdup_printf ("%s/nobody.qmp", tmpdir);
  g_autofree char *stale = g_strdup_printf ("%s/stale.qmp", tmpdir);
  struct sockaddr_un sun = { .sun_family = AF_UNIX };
  g_autoptr(GError) err = NULL;
  g_autoptr(SmQmp) qmp = NULL;
  int fd;

  qmp = sm_qmp_connect (missing, 5000, &err);
  g_assert_null (qmp);
  g_assert_error (err, SM_ERROR, SM_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (err->message, missing));
  g_assert_cmpstr (sm_error_get_object (err), ==, missing);
  g_clear_error (&err);

  /* A socket file left by a dead QEMU: bound, nobody listening. */
  g_assert_cmpuint (strlen (stale), <, sizeof sun.sun_path);
  strcpy (sun.sun_path, stale);
  fd = socket (AF_UNIX, SOCK_STREAM, 0);
  g_assert_cmpint (bind (fd, (struct sockaddr *) &sun, sizeof sun), ==, 0);
  qmp = sm_qmp_connect (stale, 5000, &err);
  close (fd);
  g_assert_null (qmp);
  g_assert_error (err, SM_ERROR, SM_ERROR_DISCONNECTED);
  g_assert_nonnull (strstr (err->message, stale));
  g_assert_cmpstr (sm_error_get_object (err), ==, stale);
  g_assert_nonnull (strstr (err->message, "refused"));
}

/* QEMU serves one client per monitor; a second one is never greeted and
 * must get a bounded, explained failure rather than a hang. */
static void
test_second_client (void)
{
  g_autoptr(SmTestVm) vm = start_vm_one_disk ("second");
  g_autoptr(SmQmp) qmp = NULL;
  g_autoptr(GError) err = NULL;

  g_assert_nonnull (vm);
  qmp = sm_qmp_connect (sm_test_vm_socket (vm), 300, &err);
  g_assert_null (qmp);
  g_assert_error (err, SM_ERROR, SM_ERROR_TIMEOUT);
  g_assert_nonnull (strstr (err->message, sm_test_vm_socket (vm)));
  g_assert_nonnull (strstr (err->message, "another client"));
  /* The first client is unaffected. */
  g_assert_true (sm_qmp_run (sm_test_vm_qmp (vm), "query-status", NULL,
                             NULL));
}

static void
test_tcp (void)
{
  SmTestVmOptions opts = { .dir = tmpdir, .name = "tcp", .no_connect = true };
  g_autoptr(SmTestVm) vm = NULL;
  g_autoptr(SmQmp) qmp = NULL;
  g_autoptr(GError) err = NULL;
  g_autoptr(json_object) ret = NULL;
  g_autofree char *refused = NULL;
  int port = sm_test_free_port ();

  g_assert_cmpint (port, >, 0);
  opts.tcp_port = port;
  vm = sm_test_vm_start_full (&opts);
  g_assert_nonnull (vm);
  g_assert_null (sm_test_vm_qmp (vm));
  qmp = sm_qmp_connect (sm_test_vm_socket (vm), 5000, &err);
  g_assert_no_error (err);
  ret = sm_qmp_execute (qmp, "query-version", NULL, &err);
  g_assert_no_error (err);
  g_assert_true (json_object_object_get_ex (ret, "qemu", NULL));

  /* Nobody listens on a freshly released port. */
  refused = g_strdup_printf ("127.0.0.1:%d", sm_test_free_port ());
  g_clear_pointer (&qmp, sm_qmp_free);
  qmp = sm_qmp_connect (refused, 5000, &err);
  g_assert_null (qmp);
  g_assert_error (err, SM_ERROR, SM_ERROR_DISCONNECTED);
  g_assert_nonnull (strstr (err->message, refused));
}

static void
test_disable_env (void)
{
  g_autoptr(SmTestVm) vm = start_vm_one_disk ("disable");
  g_autoptr(SmQmp) qmp2 = NULL;
  g_autoptr(GError) err = NULL;
  const SmQmpCaps *caps;

  g_assert_nonnull (vm);
  g_setenv ("SNAPMIG_QMP_DISABLE", "transaction, postcopy-ram", TRUE);
  caps = sm_qmp_probe (sm_test_vm_qmp (vm), &err);
  g_assert_no_error (err);
  g_assert_false (caps->caps[SM_QMP_CAP_TRANSACTION]);
  g_assert_false (caps->caps[SM_QMP_CAP_MIGRATE_POSTCOPY]);
  g_assert_true (caps->caps[SM_QMP_CAP_DRIVE_MIRROR]);

  /* A typo must not silently leave a capability on. */
  sm_test_vm_free (g_steal_pointer (&vm));
  vm = start_vm_one_disk ("disable2");
  g_assert_nonnull (vm);
  g_setenv ("SNAPMIG_QMP_DISABLE", "transacton", TRUE);
  caps = sm_qmp_probe (sm_test_vm_qmp (vm), &err);
  g_unsetenv ("SNAPMIG_QMP_DISABLE");
  g_assert_null (caps);
  g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
  g_assert_nonnull (strstr (err->message, "transacton"));
}

/* ---- a FAKE QMP peer --------------------------------------------------
 * Real QEMU never sends malformed JSON, a reply without return/error, or no
 * greeting, so these cases are played by a thread serving a unix socket
 * from a script: "<" reads one request line, "|" closes the connection,
 * "=" waits for the test's go-ahead (fake_peer_go), "*" sends 'x' and "e"
 * events, both as fast as it can until the client closes;
 * anything else is sent as it is.  So are a line that never ends, replies
 * that never come and a full listen backlog (QEMU stopped).
 */
typedef struct {
  int listen_fd;
  const char *const *script;
} FakePeer;

static GMutex go_lock;
static GCond go_cond;
static int go_count;

static void
fake_peer_go (void)
{
  g_mutex_lock (&go_lock);
  go_count++;
  g_cond_signal (&go_cond);
  g_mutex_unlock (&go_lock);
}

static void
fake_peer_wait_go (void)
{
  g_mutex_lock (&go_lock);
  while (go_count == 0)
    g_cond_wait (&go_cond, &go_lock);
  go_count--;
  g_mutex_unlock (&go_lock);
}

/* Sends 'x' (or, with EVENTS, whole event lines) until the client goes
 * away. */
static void
fake_peer_stream (int fd, bool events)
{
  static const char event[] = "{\"event\": \"FLOOD\", \"data\": {}}\r\n";
  static char chunk[65536];
  size_t len = sizeof chunk;

  if (events) {
    len = sizeof chunk / (sizeof event - 1) * (sizeof event - 1);
    for (size_t i = 0; i < len; i += sizeof event - 1)
      memcpy (chunk + i, event, sizeof event - 1);
  } else {
    memset (chunk, 'x', sizeof chunk);
  }
  while (send (fd, chunk, len, MSG_NOSIGNAL) > 0)
    ;
}

static gpointer
fake_peer_run (gpointer data)
{
  FakePeer *peer = data;
  int fd = accept (peer->listen_fd, NULL, NULL);
  size_t i;

  g_assert_cmpint (fd, >=, 0);
  for (i = 0; peer->script[i]; i++) {
    const char *step = peer->script[i];

    if (strcmp (step, "<") == 0) {
      char c;

      while (read (fd, &c, 1) == 1 && c != '\n')
        ;
    } else if (strcmp (step, "|") == 0) {
      break;
    } else if (strcmp (step, "=") == 0) {
      fake_peer_wait_go ();
    } else if (strcmp (step, "*") == 0) {
      fake_peer_stream (fd, false);
    } else if (strcmp (step, "e") == 0) {
      fake_peer_stream (fd, true);
    } else {
      g_assert_cmpint (send (fd, step, strlen (step), MSG_NOSIGNAL), ==,
                       (ssize_t) strlen (step));
      /* Gives the client a chance to read this piece alone (a partial
       * message); correctness does not depend on it. */
      g_usleep (5000);
    }
  }
  close (fd);
  return NULL;
}

#define GREETING "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, " \
  "\"minor\": 2, \"major\": 7}}, \"capabilities\": []}}\r\n"

/* Serves SCRIPT once on a fresh socket DIR/NAME.sock (*PATH), from a
 * thread.  fake_peer_join waits for the script's end (close the client
 * first when the script reads or streams until it goes away). */
static GThread *
fake_peer_start (const char *name, const char *const *script, FakePeer *peer,
                 char **path)
{
  struct sockaddr_un sun = { .sun_family = AF_UNIX };

  *path = g_strdup_printf ("%s/%s.sock", tmpdir, name);
  strcpy (sun.sun_path, *path);
  peer->script = script;
  peer->listen_fd = socket (AF_UNIX, SOCK_STREAM, 0);
  g_assert_cmpint (bind (peer->listen_fd, (struct sockaddr *) &sun,
                         sizeof sun), ==, 0);
  g_assert_cmpint (listen (peer->listen_fd, 1), ==, 0);
  return g_thread_new ("fake-qmp", fake_peer_run, peer);
}

static void
fake_peer_join (GThread *thread, FakePeer *peer)
{
  g_thread_join (thread);
  close (peer->listen_fd);
}

/* Serves SCRIPT once on a fresh socket; connects; runs COMMAND if non-NULL.
 * Returns the connection (or NULL) and the error from connect or command.
 */
static SmQmp *
with_fake_peer (const char *name, const char *const *script,
                const char *command, json_object **ret, GError **error)
{
  g_autofree char *path = NULL;
  FakePeer peer;
  g_autoptr(SmQmp) qmp = NULL;
  GThread *thread = fake_peer_start (name, script, &peer, &path);

  qmp = sm_qmp_connect (path, 2000, error);
  if (qmp && command)
    *ret = sm_qmp_execute (qmp, command, NULL, error);
  /* Closing our end unblocks a peer still reading. */
  if (qmp && (!error || *error))
    g_clear_pointer (&qmp, sm_qmp_free);
  fake_peer_join (thread, &peer);
  return g_steal_pointer (&qmp);
}

static void
test_fake_malformed (void)
{
  const char *const script[] = {
    GREETING, "<", "{\"return\": {}}\r\n", "<", "{\"return\": [1, 2\r\n",
    "<", NULL,
  };
  g_autoptr(GError) err = NULL;
  g_autoptr(json_object) ret = NULL;
  g_autoptr(SmQmp) qmp = with_fake_peer ("malformed", script, "query-block",
                                         &ret, &err);

  g_assert_null (qmp);
  g_assert_null (ret);
  g_assert_error (err, SM_ERROR, SM_ERROR_QMP_PROTOCOL);
  g_assert_nonnull (strstr (err->message, "query-block"));
  g_assert_nonnull (strstr (err->message, "malformed.sock"));
}

static void
test_fake_no_return (void)
{
  const char *const script[] = {
    GREETING, "<", "{\"return\": {}}\r\n", "<", "{\"something\": 1}\r\n",
    "<", NULL,
  };
  g_autoptr(GError) err = NULL;
  g_autoptr(json_object) ret = NULL;
  g_autoptr(SmQmp) qmp = with_fake_peer ("noreturn", script, "query-block",
                                         &ret, &err);

  g_assert_null (qmp);
  g_assert_error (err, SM_ERROR, SM_ERROR_QMP_PROTOCOL);
  g_assert_nonnull (strstr (err->message, "neither return nor error"));
}

static void
test_fake_no_greeting (void)
{
  const char *const wrong[] = { "{\"return\": {}}\r\n", "<", NULL };
  const char *const silent[] = { "<", NULL };
  const char *const hangup[] = { "|", NULL };
  g_autoptr(GError) err = NULL;
  g_autoptr(SmQmp) qmp = NULL;

  qmp = with_fake_peer ("wrong", wrong, NULL, NULL, &err);
  g_assert_null (qmp);
  g_assert_error (err, SM_ERROR, SM_ERROR_QMP_PROTOCOL);
  g_assert_nonnull (strstr (err->message, "greeting"));
  g_clear_error (&err);

  /* A peer that accepts and says nothing: the handshake deadline. */
  qmp = with_fake_peer ("silent", silent, NULL, NULL, &err);
  g_assert_null (qmp);
  g_assert_error (err, SM_ERROR, SM_ERROR_TIMEOUT);
  g_assert_nonnull (strstr (err->message, "silent.sock"));
  g_clear_error (&err);

  qmp = with_fake_peer ("hangup", hangup, NULL, NULL, &err);
  g_assert_null (qmp);
  g_assert_error (err, SM_ERROR, SM_ERROR_DISCONNECTED);
  g_assert_nonnull (strstr (err->message, "hangup.sock"));
}

static void
test_fake_framing (void)
{
  /* The greeting split in the middle of a token, then an event, a stale
   * reply to an unknown id and the real reply in a single write. */
  const char *const script[] = {
    "{\"QMP\": {\"version\": {\"qemu\": {\"mic", "ro\": 0, \"minor\": 2, "
    "\"major\": 7}}, \"capabilities\": []}}\r", "\n",
    "<", "{\"return\": {}, \"id\": \"sm-1\"}\r\n",
    "<", "{\"event\": \"STOP\", \"data\": {}}\r\n"
    "{\"return\": 7, \"id\": \"stale\"}\r\n"
    "{\"return\": {\"x\": 1}, \"id\": \"sm-2\"}\r\n",
    NULL,
  };
  g_autoptr(GError) err = NULL;
  g_autoptr(json_object) ret = NULL;
  g_autoptr(json_object) ev = NULL;
  g_autoptr(SmQmp) qmp = with_fake_peer ("framing", script, "query-status",
                                         &ret, &err);

  g_assert_no_error (err);
  g_assert_nonnull (qmp);
  g_assert_cmpstr (json_object_to_json_string_ext (ret, JSON_C_TO_STRING_PLAIN),
                   ==, "{\"x\":1}");
  ev = sm_qmp_wait_event (qmp, "STOP", NULL, NULL, 0, &err);
  g_assert_no_error (err);
  g_assert_nonnull (ev);
}

static void
test_fake_event_before_greeting (void)
{
  /* Real QEMU 7.2 did this once in our suite (an event raised while the
   * previous client disconnected reached the next one before its
   * greeting), but only in a race: the fake peer plays it every time. */
  const char *const script[] = {
    "{\"event\": \"BLOCK_JOB_COMPLETED\", \"data\": {\"device\": \"j1\"}}\r\n",
    GREETING, "<", "{\"return\": {}, \"id\": \"sm-1\"}\r\n",
    "<", "{\"return\": {\"status\": \"running\"}, \"id\": \"sm-2\"}\r\n",
    NULL,
  };
  g_autoptr(GError) err = NULL;
  g_autoptr(json_object) ret = NULL;
  g_autoptr(json_object) ev = NULL;
  g_autoptr(SmQmp) qmp = with_fake_peer ("early-event", script, "query-status",
                                         &ret, &err);

  g_assert_no_error (err);
  g_assert_nonnull (qmp);
  g_assert_nonnull (ret);
  /* The early event is not lost: it waits in the queue like any other. */
  ev = sm_qmp_wait_event (qmp, "BLOCK_JOB_COMPLETED", NULL, NULL, 0, &err);
  g_assert_no_error (err);
  g_assert_nonnull (ev);
}

/* A line that never ends: the line limit (lowered here from 64 MiB so that
 * the test sends little) gives up the connection, and every later call
 * says so rather than read on. */
static void
test_fake_line_limit (void)
{
  const char *const script[] = {
    GREETING, "<", "{\"return\": {}}\r\n", "<", "{\"return\": \"", "*", NULL,
  };
  g_autofree char *path = NULL;
  g_autoptr(GError) err = NULL;
  g_autoptr(json_object) ret = NULL;
  FakePeer peer;
  GThread *thread = fake_peer_start ("endless", script, &peer, &path);
  SmQmp *qmp = sm_qmp_connect (path, 2000, &err);

  g_assert_no_error (err);
  sm_qmp_set_max_line (qmp, 1 << 20);
  sm_qmp_set_timeout (qmp, 20000);
  ret = sm_qmp_execute (qmp, "query-block", NULL, &err);
  g_assert_null (ret);
  g_assert_error (err, SM_ERROR, SM_ERROR_QMP_PROTOCOL);
  g_assert_nonnull (strstr (err->message, "query-block"));
  g_assert_nonnull (strstr (err->message, path));
  g_assert_nonnull (strstr (err->message, "more than 1 MiB without ending "
                            "the line"));
  g_clear_error (&err);
  /* The connection is closed: the peer's next send fails, its thread
   * ends, and every later call gives the same answer. */
  fake_peer_join (thread, &peer);
  g_assert_false (sm_qmp_run (qmp, "query-status", NULL, &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_QMP_PROTOCOL);
  g_assert_nonnull (strstr (err->message, "without ending the line"));
  sm_qmp_free (qmp);
}

/* A peer that never stops sending (events, as fast as it can) and never
 * replies: the reply's deadline still passes.  It was checked only while
 * nothing arrived, so this waited forever, its event queue growing. */
static void
test_fake_flood_deadline (void)
{
  const char *const script[] = {
    GREETING, "<", "{\"return\": {}}\r\n", "<", "e", NULL,
  };
  const char *const quiet[] = { GREETING, "<", "{\"return\": {}}\r\n", NULL };
  g_autofree char *path = NULL;
  g_autoptr(GError) err = NULL;
  g_autoptr(json_object) ret = NULL;
  FakePeer peer;
  GThread *thread = fake_peer_start ("flood", script, &peer, &path);
  SmQmp *qmp = sm_qmp_connect (path, 2000, &err);
  gint64 start;

  g_assert_no_error (err);
  g_assert_cmpint (sm_qmp_get_timeout (qmp), ==, SM_QMP_DEFAULT_TIMEOUT_MS);
  sm_qmp_set_timeout (qmp, 300);
  g_assert_cmpint (sm_qmp_get_timeout (qmp), ==, 300);
  start = g_get_monotonic_time ();
  ret = sm_qmp_execute (qmp, "query-block", NULL, &err);
  g_test_message ("gave up after %" G_GINT64_FORMAT " ms",
                  (g_get_monotonic_time () - start) / 1000);
  g_assert_null (ret);
  g_assert_error (err, SM_ERROR, SM_ERROR_TIMEOUT);
  g_assert_nonnull (strstr (err->message, path));
  g_assert_nonnull (strstr (err->message, "did not answer within 0.3 s"));
  /* Generous: the point is that it ends, not its precision. */
  g_assert_cmpint (g_get_monotonic_time () - start, <, 5 * G_USEC_PER_SEC);
  g_clear_error (&err);
  sm_qmp_free (qmp);
  fake_peer_join (thread, &peer);

  /* 0 restores the default: there is no "forever". */
  qmp = with_fake_peer ("default-timeout", quiet, NULL, NULL, &err);
  g_assert_no_error (err);
  sm_qmp_set_timeout (qmp, 0);
  g_assert_cmpint (sm_qmp_get_timeout (qmp), ==, SM_QMP_DEFAULT_TIMEOUT_MS);
  sm_qmp_free (qmp);
}

/* After a reply timed out, the commands that follow share the stall grace
 * instead of a full timeout each; anything from QEMU ends the stall, and
 * the late reply is dropped by its id. */
static void
test_fake_stall (void)
{
  const char *const script[] = {
    GREETING, "<", "{\"return\": {}}\r\n",
    "<", "<", "<", "=",
    "{\"event\": \"RESUME\", \"data\": {}}\r\n"
    "{\"return\": 2, \"id\": \"sm-2\"}\r\n",
    "<", "{\"return\": {\"five\": 5}, \"id\": \"sm-5\"}\r\n", "<", NULL,
  };
  g_autofree char *path = NULL;
  g_autoptr(GError) err = NULL;
  g_autoptr(json_object) ret = NULL;
  g_autoptr(json_object) ev = NULL;
  FakePeer peer;
  GThread *thread = fake_peer_start ("stall", script, &peer, &path);
  SmQmp *qmp = sm_qmp_connect (path, 2000, &err);
  gint64 start;

  g_assert_no_error (err);
  sm_qmp_set_timeout (qmp, 1000);
  g_assert_false (sm_qmp_run (qmp, "stop", NULL, &err));          /* sm-2 */
  g_assert_error (err, SM_ERROR, SM_ERROR_TIMEOUT);
  g_assert_nonnull (strstr (err->message, "did not answer within 1 s"));
  g_clear_error (&err);
  /* Two more commands: half a second in all, not a second each. */
  start = g_get_monotonic_time ();
  g_assert_false (sm_qmp_run (qmp, "cont", NULL, &err));          /* sm-3 */
  g_assert_error (err, SM_ERROR, SM_ERROR_TIMEOUT);
  g_assert_nonnull (strstr (err->message, "stopped answering"));
  g_assert_nonnull (strstr (err->message, path));
  g_clear_error (&err);
  g_assert_false (sm_qmp_run (qmp, "cont", NULL, &err));          /* sm-4 */
  g_assert_error (err, SM_ERROR, SM_ERROR_TIMEOUT);
  g_clear_error (&err);
  g_test_message ("two commands after the timeout took %" G_GINT64_FORMAT
                  " ms", (g_get_monotonic_time () - start) / 1000);
  g_assert_cmpint (g_get_monotonic_time () - start, <, 1500 * 1000);

  /* QEMU speaks again: the stall ends, the late reply is dropped. */
  fake_peer_go ();
  ev = sm_qmp_wait_event (qmp, "RESUME", NULL, NULL, 5000, &err);
  g_assert_no_error (err);
  g_assert_nonnull (ev);
  ret = sm_qmp_execute (qmp, "query-status", NULL, &err);         /* sm-5 */
  g_assert_no_error (err);
  g_assert_cmpstr (json_object_to_json_string_ext (ret, JSON_C_TO_STRING_PLAIN),
                   ==, "{\"five\":5}");
  sm_qmp_free (qmp);
  fake_peer_join (thread, &peer);
}

static void *
interrupt_later (void *data)
{
  g_usleep (200 * 1000);
  pthread_kill (*(pthread_t *) data, SIGINT);
  return NULL;
}

static void
run_query (void *data)
{
  SmQmp *qmp = data;
  g_autoptr(GError) err = NULL;

  g_assert_true (sm_qmp_run (qmp, "query-status", NULL, &err));
  g_assert_no_error (err);
}

/* A signal ends a wait at once (SM_ERROR_INTERRUPTED, not after the 30 s
 * default); a request recorded before a wait ends it before it starts; the
 * replies to interrupted commands, one of them half read, are dropped by
 * id; inside sm_interrupt_block_during commands still run. */
static void
test_fake_interrupt (void)
{
  const char *const script[] = {
    GREETING, "<", "{\"return\": {}}\r\n",
    "<", "{\"ret", "=", "urn\": 2, \"id\": \"sm-2\"}\r\n",
    "<", "<", "{\"return\": 3, \"id\": \"sm-3\"}\r\n"
    "{\"return\": {\"four\": 4}, \"id\": \"sm-4\"}\r\n",
    "<", "{\"return\": {}, \"id\": \"sm-5\"}\r\n", "<", NULL,
  };
  g_autofree char *path = NULL;
  g_autoptr(GError) err = NULL;
  g_autoptr(json_object) ret = NULL;
  pthread_t self = pthread_self ();
  FakePeer peer;
  GThread *thread = fake_peer_start ("interrupt", script, &peer, &path);
  SmQmp *qmp = sm_qmp_connect (path, 2000, &err);
  GThread *killer;
  gint64 start;

  g_assert_no_error (err);
  sm_interrupt_install ();
  /* SIGINT while waiting for sm-2's reply, half of it read. */
  killer = g_thread_new ("sigint", interrupt_later, &self);
  start = g_get_monotonic_time ();
  g_assert_false (sm_qmp_run (qmp, "query-block", NULL, &err));   /* sm-2 */
  g_thread_join (killer);
  g_assert_error (err, SM_ERROR, SM_ERROR_INTERRUPTED);
  g_assert_nonnull (strstr (err->message, "query-block"));
  g_assert_nonnull (strstr (err->message, "SIGINT"));
  g_assert_cmpint (g_get_monotonic_time () - start, <, 10 * G_USEC_PER_SEC);
  g_clear_error (&err);
  /* The request stays: the next wait ends before it starts. */
  g_assert_false (sm_qmp_run (qmp, "query-block", NULL, &err));   /* sm-3 */
  g_assert_error (err, SM_ERROR, SM_ERROR_INTERRUPTED);
  g_clear_error (&err);
  /* An error path after the interruption still talks to QEMU. */
  fake_peer_go ();
  sm_interrupt_block_during (run_query, qmp);                      /* sm-4 */
  g_assert_true (sm_interrupt_check (NULL));
  sm_interrupt_clear ();
  sm_interrupt_uninstall ();
  /* The replies to sm-2 and sm-3 came and went unnoticed. */
  ret = sm_qmp_execute (qmp, "query-status", NULL, &err);          /* sm-5 */
  g_assert_no_error (err);
  g_assert_cmpint (json_object_object_length (ret), ==, 0);
  sm_qmp_free (qmp);
  fake_peer_join (thread, &peer);
}

/* An executor's unwinding sets a request aside and restores it; a newer
 * request that came meanwhile wins. */
static void
test_interrupt_set_aside (void)
{
  int sig;

  sm_interrupt_clear ();
  g_assert_cmpint (sm_interrupt_set_aside (), ==, 0);
  sm_interrupt_restore (0);
  g_assert_cmpint (sm_interrupted (), ==, 0);
  sm_interrupt_request (SIGINT);
  sig = sm_interrupt_set_aside ();
  g_assert_cmpint (sig, ==, SIGINT);
  g_assert_false (sm_interrupt_check (NULL));
  sm_interrupt_restore (sig);
  g_assert_true (sm_interrupt_check (NULL));
  sig = sm_interrupt_set_aside ();
  sm_interrupt_request (SIGTERM);
  sm_interrupt_restore (sig);
  g_assert_cmpint (sm_interrupted (), ==, SIGTERM);
  sm_interrupt_clear ();
}

/* A monitor whose listen backlog is full (as a stopped QEMU's gets): the
 * connect does not block; it is retried until the deadline, then says so. */
static void
test_backlog_full (void)
{
  g_autofree char *path = g_strdup_printf ("%s/backlog.sock", tmpdir);
  struct sockaddr_un sun = { .sun_family = AF_UNIX };
  g_autoptr(GError) err = NULL;
  g_autoptr(SmQmp) qmp = NULL;
  int fds[64];
  int n = 0;
  int lfd;
  gint64 start;

  strcpy (sun.sun_path, path);
  lfd = socket (AF_UNIX, SOCK_STREAM, 0);
  g_assert_cmpint (bind (lfd, (struct sockaddr *) &sun, sizeof sun), ==, 0);
  g_assert_cmpint (listen (lfd, 0), ==, 0);
  for (;;) {
    g_assert_cmpint (n, <, (int) G_N_ELEMENTS (fds));
    fds[n] = socket (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (connect (fds[n], (struct sockaddr *) &sun, sizeof sun) < 0) {
      g_assert_cmpint (errno, ==, EAGAIN);
      close (fds[n]);
      break;
    }
    n++;
  }
  start = g_get_monotonic_time ();
  qmp = sm_qmp_connect (path, 300, &err);
  g_assert_null (qmp);
  g_assert_error (err, SM_ERROR, SM_ERROR_TIMEOUT);
  g_assert_nonnull (strstr (err->message, path));
  g_assert_nonnull (strstr (err->message, "accepted no connection within "
                            "0.3 s"));
  g_assert_cmpint (g_get_monotonic_time () - start, <, 5 * G_USEC_PER_SEC);
  while (n > 0)
    close (fds[--n]);
  close (lfd);
}

int
main (int argc, char **argv)
{
  g_autofree char *qemu = g_find_program_in_path ("qemu-system-x86_64");
  int rc;

  g_test_init (&argc, &argv, NULL);
  if (!qemu) {
    g_print ("1..0 # SKIP qemu-system-x86_64 not installed\n");
    return 77;
  }
  tmpdir = sm_test_tmpdir ();

  g_test_add_func ("/qmp/connect-and-probe", test_connect_and_probe);
  g_test_add_func ("/qmp/execute-query-block", test_execute_query_block);
  g_test_add_func ("/qmp/error-reply", test_error_reply);
  g_test_add_func ("/qmp/args", test_args);
  g_test_add_func ("/qmp/event-block-job", test_event_block_job);
  g_test_add_func ("/qmp/batch", test_batch);
  g_test_add_func ("/qmp/wait-timeout", test_wait_timeout);
  g_test_add_func ("/qmp/qemu-killed", test_qemu_killed);
  g_test_add_func ("/qmp/connect-missing", test_connect_missing);
  g_test_add_func ("/qmp/second-client", test_second_client);
  g_test_add_func ("/qmp/tcp", test_tcp);
  g_test_add_func ("/qmp/disable-env", test_disable_env);
  g_test_add_func ("/qmp/fake-malformed", test_fake_malformed);
  g_test_add_func ("/qmp/fake-no-return", test_fake_no_return);
  g_test_add_func ("/qmp/fake-no-greeting", test_fake_no_greeting);
  g_test_add_func ("/qmp/fake-framing", test_fake_framing);
  g_test_add_func ("/qmp/fake-event-before-greeting",
                   test_fake_event_before_greeting);
  g_test_add_func ("/qmp/fake-line-limit", test_fake_line_limit);
  g_test_add_func ("/qmp/fake-flood-deadline", test_fake_flood_deadline);
  g_test_add_func ("/qmp/fake-stall", test_fake_stall);
  g_test_add_func ("/qmp/fake-interrupt", test_fake_interrupt);
  g_test_add_func ("/qmp/backlog-full", test_backlog_full);
  g_test_add_func ("/qmp/interrupt-set-aside", test_interrupt_set_aside);

  rc = g_test_run ();

  g_free (tmpdir);
  return rc;
}
