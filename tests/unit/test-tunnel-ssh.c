/* Unit tests for lib/tunnel-ssh.c: the destination command split into
 * ssh's options, the host and the remote command (sm_tunnel_ssh_split),
 * the ControlMaster's and the forwards' command lines, and the
 * destination's directory (sm_tunnel_dest_dir).
 */
#include <string.h>
#include <glib.h>

#include "harness.h"
#include "tunnel.h"
#include "tunnel-private.h"

/* Splits the words of CMD (spaces only); checks OPTS, HOST and REMOTE
 * (words joined by "|"; NULL host: not ssh). */
static void
split_is (const char *cmd, const char *opts, const char *host,
          const char *remote)
{
  g_auto(GStrv) argv = g_strsplit (cmd, " ", 0);
  g_auto(GStrv) o = NULL, r = NULL;
  g_autofree char *h = NULL;
  g_autofree char *oj = NULL, *rj = NULL;
  bool ssh = sm_tunnel_ssh_split ((const char *const *) argv, &o, &h, &r);

  if (!host) {
    g_assert_false (ssh);
    g_assert_null (o);
    g_assert_null (h);
    g_assert_null (r);
    return;
  }
  g_assert_true (ssh);
  oj = g_strjoinv ("|", o);
  rj = g_strjoinv ("|", r);
  g_assert_cmpstr (oj, ==, opts);
  g_assert_cmpstr (h, ==, host);
  g_assert_cmpstr (rj, ==, remote);
}

static void
test_split (void)
{
  split_is ("ssh hostb snapmig", "", "hostb", "snapmig");
  split_is ("/usr/bin/ssh hostb /opt/sm/snapmig", "", "hostb",
            "/opt/sm/snapmig");
  split_is ("ssh -p 2222 -i /k/id -o StrictHostKeyChecking=yes user@h "
            "ip netns exec B snapmig",
            "-p|2222|-i|/k/id|-o|StrictHostKeyChecking=yes", "user@h",
            "ip|netns|exec|B|snapmig");
  /* joined arguments */
  split_is ("ssh -p22 -oBatchMode=yes -Fcfg h sm", "-p22|-oBatchMode=yes|-Fcfg",
            "h", "sm");
  /* grouped flags, and a group ending with an option taking the next word */
  split_is ("ssh -4A -tt -Cp 22 h sm", "-4A|-tt|-Cp|22", "h", "sm");
  split_is ("ssh -4p22 h sm", "-4p22", "h", "sm");
  /* every option with an argument takes the next word */
  split_is ("ssh -B a -b a -c a -D a -E a -e a -F a -I a -i a -J a -L a "
            "-l a -m a -O a -o a -p a -Q a -R a -S a -W a -w a h sm",
            "-B|a|-b|a|-c|a|-D|a|-E|a|-e|a|-F|a|-I|a|-i|a|-J|a|-L|a|"
            "-l|a|-m|a|-O|a|-o|a|-p|a|-Q|a|-R|a|-S|a|-W|a|-w|a", "h", "sm");
  /* an option's argument that looks like a host, or like an option */
  split_is ("ssh -l admin -J jump h sm", "-l|admin|-J|jump", "h", "sm");
  split_is ("ssh -o -v h sm", "-o|-v", "h", "sm");
  /* -- ends the options */
  split_is ("ssh -v -- -weird-host sm", "-v", "-weird-host", "sm");
  /* no remote command */
  split_is ("ssh h", "", "h", "");
  /* not ssh */
  split_is ("ip netns exec B snapmig", NULL, NULL, NULL);
  split_is ("/usr/local/bin/snapmig", NULL, NULL, NULL);
  split_is ("sshpass ssh h sm", NULL, NULL, NULL);
  /* ssh without a host, or an option's argument missing */
  split_is ("ssh -v", NULL, NULL, NULL);
  split_is ("ssh -p", NULL, NULL, NULL);
  g_assert_false (sm_tunnel_ssh_split (NULL, &(char **) { NULL },
                                       &(char *) { NULL },
                                       &(char **) { NULL }));
}

static void
test_master_argv (void)
{
  char *opts[] = { (char *) "-F", (char *) "/c f", (char *) "-p",
                   (char *) "22", NULL };
  char *remote[] = { (char *) "ip", (char *) "netns", (char *) "exec",
                     (char *) "B", (char *) "snapmig", NULL };
  const char *extra[] = { "--state-dir=/var/lib/my state", "--tunnel", NULL };
  g_auto(GStrv) a = sm_tunnel_ssh_master_argv ("ssh", opts, "h", remote,
                                               "/l/ssh.ctl", "m1", extra,
                                               NULL);
  g_autofree char *j = g_strjoinv ("|", a);

  g_assert_cmpstr (j, ==,
                   "ssh|-M|-S|/l/ssh.ctl|-T|-o|ControlPersist=no|"
                   "-o|ExitOnForwardFailure=yes|-o|StreamLocalBindUnlink=yes|"
                   "-o|ServerAliveInterval=5|-o|ServerAliveCountMax=3|"
                   "-F|/c f|-p|22|h|ip|netns|exec|B|snapmig|'relay'|'--hold'|"
                   "'--id=m1'|'--state-dir=/var/lib/my state'|'--tunnel'");
}

static void
test_master_argv_cipher (void)
{
  g_auto(GStrv) a = sm_tunnel_ssh_master_argv ("ssh", NULL, "h", NULL,
                                               "/c", "m1", NULL,
                                               "Ciphers=x,y");
  g_autofree char *j = g_strjoinv ("|", a);

  g_assert_nonnull (strstr (j, "|-o|ServerAliveCountMax=3|-o|Ciphers=x,y|h|"));
}

static void
test_cipher_pref (void)
{
  const char *def = "chacha20-poly1305@openssh.com,aes128-ctr,"
    "aes128-gcm@openssh.com,aes256-gcm@openssh.com";
  g_autofree char *p = sm_tunnel_ssh_cipher_pref (def, def, true);

  g_assert_cmpstr (p, ==, "Ciphers=aes128-gcm@openssh.com,"
                   "chacha20-poly1305@openssh.com,aes128-ctr,"
                   "aes256-gcm@openssh.com");
  /* no AES instructions: OpenSSH's own order */
  g_assert_null (sm_tunnel_ssh_cipher_pref (def, def, false));
  /* the user's configuration chose: theirs */
  g_assert_null (sm_tunnel_ssh_cipher_pref ("chacha20-poly1305@openssh.com",
                                            def, true));
  g_assert_null (sm_tunnel_ssh_cipher_pref (NULL, def, true));
  g_assert_null (sm_tunnel_ssh_cipher_pref (def, NULL, true));
  /* already first, or not offered */
  g_assert_null (sm_tunnel_ssh_cipher_pref ("aes128-gcm@openssh.com,x",
                                            "aes128-gcm@openssh.com,x", true));
  g_assert_null (sm_tunnel_ssh_cipher_pref ("x,y", "x,y", true));
}

static void
test_forward_argv (void)
{
  char *opts[] = { (char *) "-F", (char *) "/cfg", (char *) "-p",
                   (char *) "22", (char *) "-oBatchMode=yes", (char *) "-l",
                   (char *) "-o", (char *) "-i", (char *) "/k", NULL };
  g_auto(GStrv) a = sm_tunnel_ssh_forward_argv ("/usr/bin/ssh", opts, "h",
                                                "/l/ssh.ctl", "-L",
                                                "/l/x.sock:/r/x.sock");
  g_autofree char *j = g_strjoinv ("|", a);

  /* -F and -o only: the same configuration; -l's argument "-o" is not an
   * option */
  g_assert_cmpstr (j, ==,
                   "/usr/bin/ssh|-F|/cfg|-oBatchMode=yes|-S|/l/ssh.ctl|-O|"
                   "forward|-L|/l/x.sock:/r/x.sock|h");
}

static void
test_dest_dir (void)
{
  g_autofree char *d = sm_tunnel_dest_dir ("/var/lib/snapmig", "m1");

  g_autofree char *top = sm_test_tmpdir ();
  g_autofree char *made = sm_tunnel_dest_dir (top, "m2");
  g_autofree char *sock = g_build_filename (made, "nbd-vda.sock", NULL);

  g_assert_cmpstr (d, ==, "/var/lib/snapmig/run/m1-tunnel");
  /* removed with what is in it; another id's directory stays */
  g_assert_cmpint (g_mkdir_with_parents (made, 0700), ==, 0);
  g_assert_true (g_file_set_contents (sock, "", 0, NULL));
  sm_tunnel_dest_dir_remove (top, "m1");
  g_assert_true (g_file_test (sock, G_FILE_TEST_EXISTS));
  sm_tunnel_dest_dir_remove (top, "m2");
  g_assert_false (g_file_test (made, G_FILE_TEST_EXISTS));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/tunnel-ssh/split", test_split);
  g_test_add_func ("/tunnel-ssh/master-argv", test_master_argv);
  g_test_add_func ("/tunnel-ssh/master-argv-cipher", test_master_argv_cipher);
  g_test_add_func ("/tunnel-ssh/cipher-pref", test_cipher_pref);
  g_test_add_func ("/tunnel-ssh/forward-argv", test_forward_argv);
  g_test_add_func ("/tunnel-ssh/dest-dir", test_dest_dir);
  return g_test_run ();
}
