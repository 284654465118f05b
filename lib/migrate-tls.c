/* libsnapmig — x509 TLS on every stream of a direct migration (issue 12,
 * `migrate --tls --tls-creds DIR`): the credentials directory checked
 * before anything moves, QEMU's tls-creds-x509 objects, the TLS members of
 * nbd-server-start, blockdev-add nbd, migrate-set-parameters and the
 * destination's qemu-img convert, and their undoing.
 *
 * Who is what: the source QEMU is an NBD server (begin's layer server) and
 * client (perform's mirrors) and the migration client; the destination
 * QEMU is an NBD server (prepare's exports) and the migration server; the
 * destination's qemu-img convert is an NBD client.  Servers verify the
 * client's certificate (verify-peer), clients the server's and its name
 * (tls-hostname: the other host's address, so the one server certificate
 * of DIR must name both hosts). */
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "json-util.h"
#include "migrate-private.h"

#define DOMAIN "migrate"

/* QEMU's file names (crypto/tlscredsx509.h); both hosts read the same. */
static const char *const tls_files[] = {
  "ca-cert.pem", "server-cert.pem", "server-key.pem", "client-cert.pem",
  "client-key.pem", NULL
};

#define TLS_DIR_HOLDS "ca-cert.pem, server-cert.pem, server-key.pem, " \
  "client-cert.pem and client-key.pem (QEMU's x509 names; the server " \
  "certificate naming both hosts' addresses, see snapmig(1) TUNNEL AND TLS)"

bool
sm_mig_tls_check_dir (const char *dir, GError **error)
{
  if (!dir || !*dir) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "--tls needs --tls-creds DIR, a directory holding "
                 TLS_DIR_HOLDS);
    return false;
  }
  if (!g_file_test (dir, G_FILE_TEST_IS_DIR)) {
    g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                 "--tls-creds %s: not a directory on %s; it must hold "
                 TLS_DIR_HOLDS, dir, g_get_host_name ());
    return false;
  }
  for (const char *const *f = tls_files; *f; f++) {
    g_autofree char *path = g_build_filename (dir, *f, NULL);
    g_autofree char *text = NULL;
    GError *err = NULL;

    if (!g_file_test (path, G_FILE_TEST_EXISTS)) {
      g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                   "--tls-creds %s: %s is missing on %s; the directory must "
                   "hold " TLS_DIR_HOLDS, dir, *f, g_get_host_name ());
      return false;
    }
    if (!g_file_get_contents (path, &text, NULL, &err)) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "--tls-creds %s: %s cannot be read: %s", dir, *f,
                   err->message);
      g_error_free (err);
      return false;
    }
    if (!strstr (text, "-----BEGIN ")) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "--tls-creds %s: %s is not a PEM file; the directory must "
                   "hold " TLS_DIR_HOLDS, dir, *f);
      return false;
    }
  }
  return true;
}

bool
sm_mig_tls_used (const SmMigCookie *c)
{
  return g_strcmp0 (c->transport, "tls") == 0;
}

/* sm-tls-WHAT-XXXXXXXX: the last 8 characters of C's id, as the layer
 * server's socket names the migration. */
static char *
tls_id (const SmMigCookie *c, const char *what)
{
  const char *id = c->id ? c->id : "";
  size_t n = strlen (id);

  return g_strdup_printf ("sm-tls-%s-%s", what, n > 8 ? id + n - 8 : id);
}

char *
sm_mig_tls_server_id (const SmMigCookie *c)
{
  return sm_mig_tls_used (c) ? tls_id (c, "srv") : NULL;
}

char *
sm_mig_tls_client_id (const SmMigCookie *c)
{
  return sm_mig_tls_used (c) ? tls_id (c, "cli") : NULL;
}

/* object-add tls-creds-x509 ID from DIR; a server verifies its clients. */
static bool
add_creds (SmQmp *qmp, const char *id, const char *dir, bool server,
           GError **error)
{
  GError *err = NULL;

  if (sm_qmp_run (qmp, "object-add",
                  sm_qmp_args (&err, "s:qom-type", "tls-creds-x509",
                               "s:id", id, "s:dir", dir,
                               "s:endpoint", server ? "server" : "client",
                               "b:verify-peer", true, NULL), &err))
    return true;
  g_set_error (error, SM_ERROR, err->code,
               "QEMU behind %s cannot load the TLS credentials of %s as a "
               "%s: %s", sm_qmp_address (qmp), dir,
               server ? "server (ca-cert.pem, server-cert.pem, "
                        "server-key.pem)"
                      : "client (ca-cert.pem, client-cert.pem, "
                        "client-key.pem)", err->message);
  g_error_free (err);
  return false;
}

bool
sm_mig_tls_source_setup (SmQmp *qmp, const SmMigCookie *c, const char *dir,
                         GError **error)
{
  g_autofree char *srv = sm_mig_tls_server_id (c);
  g_autofree char *cli = sm_mig_tls_client_id (c);

  if (!srv)
    return true;
  return add_creds (qmp, srv, dir, true, error) &&
         add_creds (qmp, cli, dir, false, error);
}

bool
sm_mig_tls_dest_setup (SmQmp *qmp, const SmMigCookie *c, const char *dir,
                       GError **error)
{
  g_autofree char *srv = sm_mig_tls_server_id (c);

  if (!srv)
    return true;
  /* the incoming migration (and a post-copy recovery's migrate-recover)
   * listens with the parameters of the moment it starts */
  return add_creds (qmp, srv, dir, true, error) &&
         sm_qmp_run (qmp, "migrate-set-parameters",
                     sm_qmp_args (error, "s:tls-creds", srv, NULL), error);
}

void
sm_mig_tls_parameters (const SmMigCookie *c, json_object *params)
{
  g_autofree char *cli = sm_mig_tls_client_id (c);

  /* "" (no TLS) always: parameters a TLS migration left behind must not
   * make a later plain one try TLS */
  json_object_object_add (params, "tls-creds",
                          json_object_new_string (cli ? cli : ""));
  json_object_object_add (params, "tls-hostname",
                          json_object_new_string (cli && c->dest_host ?
                                                  c->dest_host : ""));
}

/* VALUE with every comma doubled (QEMU's option syntax). */
static char *
opt_escape (const char *value)
{
  g_auto(GStrv) parts = g_strsplit (value, ",", -1);

  return g_strjoinv (",,", parts);
}

char **
sm_mig_tls_pull_argv (const SmMigCookie *c, const char *dir)
{
  g_autofree char *cli = sm_mig_tls_client_id (c);
  g_autofree char *d = NULL;
  char **argv;

  if (!cli)
    return g_new0 (char *, 1);
  d = opt_escape (dir ? dir : "");
  argv = g_new0 (char *, 3);
  argv[0] = g_strdup ("--object");
  argv[1] = g_strdup_printf ("tls-creds-x509,id=%s,endpoint=client,dir=%s",
                             cli, d);
  return argv;
}

char *
sm_mig_layer_source (const SmMigCookie *c, const char *uri, const char *export,
                     int reconnect_s, GError **error)
{
  g_autofree char *cli = sm_mig_tls_client_id (c);
  g_autoptr(json_object) o = NULL;
  json_object *file, *server;

  server = sm_mig_uri_to_socket_address (uri, error);
  if (!server)
    return NULL;
  file = json_object_new_object ();
  json_object_object_add (file, "driver", json_object_new_string ("nbd"));
  json_object_object_add (file, "server", server);
  json_object_object_add (file, "export", json_object_new_string (export));
  json_object_object_add (file, "reconnect-delay",
                          json_object_new_int (reconnect_s));
  if (cli) {
    json_object_object_add (file, "tls-creds", json_object_new_string (cli));
    json_object_object_add (file, "tls-hostname",
                            json_object_new_string (c->source_host ?
                                                    c->source_host : ""));
  }
  o = json_object_new_object ();
  json_object_object_add (o, "driver", json_object_new_string ("raw"));
  json_object_object_add (o, "file", file);
  return g_strconcat ("json:", json_object_to_json_string_ext (
                        o, JSON_C_TO_STRING_PLAIN |
                        JSON_C_TO_STRING_NOSLASHESCAPE), NULL);
}

/* The subjectAltName of DIR/server-cert.pem as openssl prints it ("IP
 * Address:10.0.0.1, DNS:a.example"), or NULL: only for a message, so
 * openssl is asked when it is there and nothing else is tried. */
static char *
server_cert_names (const char *dir)
{
  g_autofree char *path = dir ? g_build_filename (dir, "server-cert.pem", NULL)
                              : NULL;
  g_autofree char *out = NULL;
  g_autofree char *prog = g_find_program_in_path ("openssl");
  const char *argv[] = { prog, "x509", "-noout", "-ext", "subjectAltName",
                         "-in", path, NULL };
  int status = 0;
  char *nl;

  if (!path || !prog ||
      !g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_STDERR_TO_DEV_NULL,
                     NULL, NULL, &out, NULL, &status, NULL) ||
      !g_spawn_check_wait_status (status, NULL) || !out)
    return NULL;
  /* "X509v3 Subject Alternative Name: 
    IP Address:..., DNS:...
" */
  nl = strchr (out, '\n');
  if (!nl || !*g_strstrip (nl + 1))
    return NULL;
  return g_strdup (g_strstrip (nl + 1));
}

/* *ERROR's message followed by " (WHY)". */
static void G_GNUC_PRINTF (2, 3)
append_error (GError **error, const char *fmt, ...)
{
  g_autofree char *why = NULL;
  char *msg;
  va_list ap;

  va_start (ap, fmt);
  why = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  msg = g_strdup_printf ("%s (%s)", (*error)->message, why);
  g_free ((*error)->message);
  (*error)->message = msg;
}

void
sm_mig_tls_hint (const SmMigCookie *c, const char *dir, const char *host,
                 const char *option, GError **error)
{
  GError *e = error ? *error : NULL;

  if (!e || !sm_mig_tls_used (c))
    return;
  if (strstr (e->message, "does not match the hostname")) {
    g_autofree char *names = server_cert_names (dir);

    append_error (error, "TLS: the server certificate, server-cert.pem of "
                  "--tls-creds, does not name %s (%s)%s%s%s: its "
                  "subjectAltName must list the addresses of both hosts",
                  host ? host : "?", option, names ? "; it names " : "",
                  names ? names : "", names ? " only" : "");
    return;
  }
  if (strstr (e->message, "ertificate") || strstr (e->message, "TLS"))
    append_error (error, "TLS: both hosts' certificates in --tls-creds must "
                  "be signed by its ca-cert.pem");
}

/* object-del ID, quiet (debug log only). */
static void
del_object (SmQmp *qmp, const char *id)
{
  GError *err = NULL;

  if (!sm_qmp_run (qmp, "object-del", sm_qmp_args (NULL, "s:id", id, NULL),
                   &err)) {
    sm_debug (DOMAIN, "object-del %s: %s", id, err->message);
    g_error_free (err);
  }
}

void
sm_mig_tls_del_server (SmQmp *qmp, const SmMigCookie *c)
{
  g_autofree char *srv = sm_mig_tls_server_id (c);

  if (qmp && srv)
    del_object (qmp, srv);
}

void
sm_mig_tls_remove (SmQmp *qmp, const SmMigCookie *c)
{
  const char *what[] = { "srv", "cli" };
  g_autoptr(json_object) p = NULL;
  const char *creds;

  if (!qmp || !c->id)
    return;
  /* the parameters only when they are this migration's (a recovery's
   * cookie, read from the journal, does not say the transport) */
  p = sm_qmp_execute_type (qmp, "query-migrate-parameters", NULL,
                           json_type_object, NULL);
  creds = p ? sm_json_get_string (p, "tls-creds") : NULL;
  if (creds && g_str_has_prefix (creds, "sm-tls-")) {
    g_autofree char *srv = tls_id (c, "srv");
    g_autofree char *cli = tls_id (c, "cli");

    if (strcmp (creds, srv) == 0 || strcmp (creds, cli) == 0)
      sm_qmp_run (qmp, "migrate-set-parameters",
                  sm_qmp_args (NULL, "s:tls-creds", "", "s:tls-hostname", "",
                               NULL), NULL);
  }
  for (guint i = 0; i < G_N_ELEMENTS (what); i++) {
    g_autofree char *id = tls_id (c, what[i]);

    del_object (qmp, id);
  }
}
