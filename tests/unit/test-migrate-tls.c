/* Unit tests for the TLS of a direct migration (lib/migrate-tls.c): the
 * check of --tls-creds DIR, the objects' ids, the members added to the
 * migration parameters, the destination's qemu-img arguments and source,
 * and the message for a certificate that does not name a host — no QEMU.
 */
#include <string.h>
#include <unistd.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "json-util.h"
#include "migrate-private.h"

static const char *const files[] = {
  "ca-cert.pem", "server-cert.pem", "server-key.pem", "client-cert.pem",
  "client-key.pem", NULL
};

/* A temporary DIR with every file of FILES but SKIP (NULL: none), each a
 * PEM block, or BAD_CONTENT in BAD (NULL: none).  Caller removes it. */
static char *
make_dir (const char *skip, const char *bad, const char *bad_content)
{
  g_autoptr(GError) err = NULL;
  char *dir = g_dir_make_tmp ("sm-tls-XXXXXX", &err);

  g_assert_no_error (err);
  for (const char *const *f = files; *f; f++) {
    g_autofree char *path = g_build_filename (dir, *f, NULL);
    const char *text = "-----BEGIN CERTIFICATE-----\nAAAA\n"
                       "-----END CERTIFICATE-----\n";

    if (g_strcmp0 (*f, skip) == 0)
      continue;
    if (g_strcmp0 (*f, bad) == 0)
      text = bad_content;
    g_assert_true (g_file_set_contents (path, text, -1, NULL));
  }
  return dir;
}

static void
remove_dir (const char *dir)
{
  for (const char *const *f = files; *f; f++) {
    g_autofree char *path = g_build_filename (dir, *f, NULL);
    g_unlink (path);
  }
  g_rmdir (dir);
}

static void
check_fails (const char *dir, int code, const char *want1, const char *want2)
{
  g_autoptr(GError) err = NULL;

  g_assert_false (sm_mig_tls_check_dir (dir, &err));
  g_assert_error (err, SM_ERROR, code);
  if (!strstr (err->message, want1) || (want2 && !strstr (err->message, want2)))
    g_error ("'%s' does not contain '%s' and '%s'", err->message, want1,
             want2 ? want2 : "");
}

static void
test_check_dir (void)
{
  g_autofree char *ok = make_dir (NULL, NULL, NULL);
  g_autofree char *no_key = make_dir ("server-key.pem", NULL, NULL);
  g_autofree char *not_pem = make_dir (NULL, "client-cert.pem", "hello\n");
  g_autofree char *gone = g_build_filename (ok, "nothing-here", NULL);
  g_autoptr(GError) err = NULL;

  g_assert_true (sm_mig_tls_check_dir (ok, &err));
  g_assert_no_error (err);
  check_fails (NULL, SM_ERROR_INVALID, "--tls-creds", "ca-cert.pem");
  check_fails (gone, SM_ERROR_NOT_FOUND, "not a directory", "client-key.pem");
  check_fails (no_key, SM_ERROR_NOT_FOUND, "server-key.pem is missing",
               "must hold ca-cert.pem");
  check_fails (not_pem, SM_ERROR_INVALID, "client-cert.pem is not a PEM file",
               NULL);
  remove_dir (ok);
  remove_dir (no_key);
  remove_dir (not_pem);
}

static SmMigCookie *
cookie (const char *transport)
{
  SmMigCookie *c = sm_mig_cookie_new ();

  c->id = g_strdup ("20261130T000000-0123abcd");
  c->transport = g_strdup (transport);
  c->dest_host = g_strdup ("10.0.0.2");
  c->source_host = g_strdup ("10.0.0.1");
  c->layers_uri = g_strdup ("tcp:10.0.0.1:49152");
  return c;
}

static void
test_ids (void)
{
  g_autoptr(SmMigCookie) tls = cookie ("tls");
  g_autoptr(SmMigCookie) tcp = cookie ("tcp");
  g_autofree char *srv = sm_mig_tls_server_id (tls);
  g_autofree char *cli = sm_mig_tls_client_id (tls);
  g_autofree char *none_srv = sm_mig_tls_server_id (tcp);
  g_autofree char *none_cli = sm_mig_tls_client_id (tcp);

  g_assert_true (sm_mig_tls_used (tls));
  g_assert_false (sm_mig_tls_used (tcp));
  g_assert_cmpstr (srv, ==, "sm-tls-srv-0123abcd");
  g_assert_cmpstr (cli, ==, "sm-tls-cli-0123abcd");
  g_assert_null (none_srv);
  g_assert_null (none_cli);
}

static void
test_parameters (void)
{
  g_autoptr(SmMigCookie) tls = cookie ("tls");
  g_autoptr(SmMigCookie) tcp = cookie ("tcp");
  g_autoptr(json_object) p = json_object_new_object ();
  g_autoptr(json_object) q = json_object_new_object ();

  sm_mig_tls_parameters (tls, p);
  g_assert_cmpstr (sm_json_get_string (p, "tls-creds"), ==,
                   "sm-tls-cli-0123abcd");
  g_assert_cmpstr (sm_json_get_string (p, "tls-hostname"), ==, "10.0.0.2");
  /* a plain migration clears what an earlier TLS one may have left */
  sm_mig_tls_parameters (tcp, q);
  g_assert_cmpstr (sm_json_get_string (q, "tls-creds"), ==, "");
  g_assert_cmpstr (sm_json_get_string (q, "tls-hostname"), ==, "");
}

static void
test_pull (void)
{
  g_autoptr(SmMigCookie) tls = cookie ("tls");
  g_autoptr(SmMigCookie) tcp = cookie ("tcp");
  g_auto(GStrv) argv = sm_mig_tls_pull_argv (tls, "/etc/pki/a,b");
  g_auto(GStrv) none = sm_mig_tls_pull_argv (tcp, "/etc/pki");
  g_autofree char *src = sm_mig_layer_source (tls, tls->layers_uri,
                                              "layer-vda-0", 30, NULL);
  g_autofree char *plain = sm_mig_layer_source (tcp, tcp->layers_uri,
                                                "layer-vda-0", 30, NULL);
  g_autoptr(json_object) o = NULL;
  json_object *file, *server;

  g_assert_cmpuint (g_strv_length (argv), ==, 2);
  g_assert_cmpstr (argv[0], ==, "--object");
  /* QEMU's option syntax: a comma in a value is doubled */
  g_assert_cmpstr (argv[1], ==, "tls-creds-x509,id=sm-tls-cli-0123abcd,"
                   "endpoint=client,dir=/etc/pki/a,,b");
  g_assert_cmpuint (g_strv_length (none), ==, 0);
  g_assert_nonnull (plain);
  g_assert_null (strstr (plain, "tls-creds"));
  g_assert_nonnull (strstr (plain, "\"reconnect-delay\":30"));

  g_assert_nonnull (src);
  g_assert_true (g_str_has_prefix (src, "json:"));
  o = json_tokener_parse (src + 5);
  g_assert_nonnull (o);
  g_assert_cmpstr (sm_json_get_string (o, "driver"), ==, "raw");
  file = sm_json_get_object (o, "file");
  g_assert_nonnull (file);
  g_assert_cmpstr (sm_json_get_string (file, "driver"), ==, "nbd");
  g_assert_cmpstr (sm_json_get_string (file, "export"), ==, "layer-vda-0");
  g_assert_cmpstr (sm_json_get_string (file, "tls-creds"), ==,
                   "sm-tls-cli-0123abcd");
  g_assert_cmpstr (sm_json_get_string (file, "tls-hostname"), ==, "10.0.0.1");
  server = sm_json_get_object (file, "server");
  g_assert_nonnull (server);
  g_assert_cmpstr (sm_json_get_string (server, "type"), ==, "inet");
  g_assert_cmpstr (sm_json_get_string (server, "host"), ==, "10.0.0.1");
  g_assert_cmpstr (sm_json_get_string (server, "port"), ==, "49152");
}

static void
test_hint (void)
{
  g_autoptr(SmMigCookie) tls = cookie ("tls");
  g_autoptr(SmMigCookie) tcp = cookie ("tcp");
  g_autoptr(GError) host = g_error_new (SM_ERROR, SM_ERROR_QMP, "blockdev-add: "
                                        "Certificate does not match the "
                                        "hostname 10.0.0.2");
  g_autoptr(GError) ca = g_error_new (SM_ERROR, SM_ERROR_QMP, "Verify "
                                      "failed: No certificate was found.");
  g_autoptr(GError) plain = g_error_new (SM_ERROR, SM_ERROR_QMP, "Certificate "
                                         "does not match the hostname x");
  g_autoptr(GError) other = g_error_new (SM_ERROR, SM_ERROR_QMP, "Connection "
                                         "refused");

  sm_mig_tls_hint (tls, NULL, "10.0.0.2", "--dest-host", &host);
  g_assert_error (host, SM_ERROR, SM_ERROR_QMP);
  g_assert_true (g_str_has_prefix (host->message, "blockdev-add: Certificate "
                                   "does not match the hostname 10.0.0.2 ("));
  g_assert_nonnull (strstr (host->message, "does not name 10.0.0.2 "
                            "(--dest-host)"));
  g_assert_nonnull (strstr (host->message, "both hosts"));
  sm_mig_tls_hint (tls, NULL, "10.0.0.1", "--source-host", &ca);
  g_assert_nonnull (strstr (ca->message, "ca-cert.pem"));
  sm_mig_tls_hint (tcp, NULL, "10.0.0.2", "--dest-host", &plain);
  g_assert_cmpstr (plain->message, ==, "Certificate does not match the "
                   "hostname x");
  sm_mig_tls_hint (tls, NULL, "10.0.0.2", "--dest-host", &other);
  g_assert_cmpstr (other->message, ==, "Connection refused");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/migrate-tls/check-dir", test_check_dir);
  g_test_add_func ("/migrate-tls/ids", test_ids);
  g_test_add_func ("/migrate-tls/parameters", test_parameters);
  g_test_add_func ("/migrate-tls/pull", test_pull);
  g_test_add_func ("/migrate-tls/hint", test_hint);
  return g_test_run ();
}
