/* libsnapmig — ssh's command lines for the tunnel's ssh mode (lib/tunnel.h,
 * lib/tunnel-private.h): the destination command split into ssh's options,
 * the host and the remote command, and the ControlMaster's and the
 * forwards' argument vectors.
 */
#include <string.h>

#include "tunnel.h"
#include "tunnel-private.h"

/* ssh(1)'s options that take an argument (OpenSSH 9: "1246ab:c:e:fgi:kl:
 * m:no:p:qstvx:AB:CD:E:F:GI:J:KL:MNO:P:Q:R:S:TVw:W:XYy"). */
static const char ssh_arg_opts[] = "BbcDEeFIiJLlmOopQRSWw";

bool
sm_tunnel_ssh_split (const char *const *dest_argv, char ***ssh_opts,
                     char **host, char ***remote)
{
  g_autofree char *base = NULL;
  g_autoptr(GPtrArray) opts = NULL;
  size_t i;

  *ssh_opts = NULL;
  *host = NULL;
  *remote = NULL;
  if (!dest_argv || !dest_argv[0])
    return false;
  base = g_path_get_basename (dest_argv[0]);
  if (strcmp (base, "ssh") != 0)
    return false;
  opts = g_ptr_array_new_with_free_func (g_free);
  for (i = 1; dest_argv[i]; i++) {
    const char *w = dest_argv[i];
    bool takes_next = false;

    if (strcmp (w, "--") == 0) {
      i++;
      break;
    }
    if (w[0] != '-' || w[1] == '\0')
      break;
    /* a group of flags, possibly ending with an option and its joined
     * argument (-4A, -tt, -p22, -oX=Y, -4p22) or an option whose argument
     * is the next word (-p 22) */
    for (const char *c = w + 1; *c; c++)
      if (strchr (ssh_arg_opts, *c)) {
        takes_next = c[1] == '\0';
        break;
      }
    g_ptr_array_add (opts, g_strdup (w));
    if (takes_next) {
      if (!dest_argv[i + 1])
        return false;
      g_ptr_array_add (opts, g_strdup (dest_argv[++i]));
    }
  }
  if (!dest_argv[i])
    return false;
  *host = g_strdup (dest_argv[i]);
  g_ptr_array_add (opts, NULL);
  *ssh_opts = (char **) g_ptr_array_free (g_steal_pointer (&opts), FALSE);
  *remote = g_strdupv ((char **) dest_argv + i + 1);
  return true;
}

char **
sm_tunnel_ssh_master_argv (const char *ssh, char *const *opts,
                           const char *host, char *const *remote,
                           const char *ctl, const char *id,
                           const char *const *extra, const char *cipher_opt)
{
  GPtrArray *a = g_ptr_array_new ();
  size_t i;

  g_ptr_array_add (a, g_strdup (ssh));
  g_ptr_array_add (a, g_strdup ("-M"));
  g_ptr_array_add (a, g_strdup ("-S"));
  g_ptr_array_add (a, g_strdup (ctl));
  g_ptr_array_add (a, g_strdup ("-T"));
  /* ssh keeps the first value it reads for an option: ours come first */
  for (i = 0; i < 5; i++) {
    static const char *const ours[] = {
      "ControlPersist=no", "ExitOnForwardFailure=yes",
      "StreamLocalBindUnlink=yes", "ServerAliveInterval=5",
      "ServerAliveCountMax=3",
    };
    g_ptr_array_add (a, g_strdup ("-o"));
    g_ptr_array_add (a, g_strdup (ours[i]));
  }
  if (cipher_opt) {
    g_ptr_array_add (a, g_strdup ("-o"));
    g_ptr_array_add (a, g_strdup (cipher_opt));
  }
  for (i = 0; opts && opts[i]; i++)
    g_ptr_array_add (a, g_strdup (opts[i]));
  g_ptr_array_add (a, g_strdup (host));
  /* the user's own remote words as they are (they are shell words
   * already); ours quoted */
  for (i = 0; remote && remote[i]; i++)
    g_ptr_array_add (a, g_strdup (remote[i]));
  g_ptr_array_add (a, g_shell_quote ("relay"));
  g_ptr_array_add (a, g_shell_quote ("--hold"));
  {
    g_autofree char *idopt = g_strconcat ("--id=", id, NULL);

    g_ptr_array_add (a, g_shell_quote (idopt));
  }
  for (i = 0; extra && extra[i]; i++)
    g_ptr_array_add (a, g_shell_quote (extra[i]));
  g_ptr_array_add (a, NULL);
  return (char **) g_ptr_array_free (a, FALSE);
}

char **
sm_tunnel_ssh_forward_argv (const char *ssh, char *const *opts,
                            const char *host, const char *ctl,
                            const char *flag, const char *spec)
{
  GPtrArray *a = g_ptr_array_new ();
  size_t i;

  g_ptr_array_add (a, g_strdup (ssh));
  /* the same configuration as the master's: -F and -o */
  for (i = 0; opts && opts[i]; i++) {
    const char *w = opts[i];

    if ((strcmp (w, "-F") == 0 || strcmp (w, "-o") == 0) && opts[i + 1]) {
      g_ptr_array_add (a, g_strdup (w));
      g_ptr_array_add (a, g_strdup (opts[++i]));
    } else if (strncmp (w, "-F", 2) == 0 || strncmp (w, "-o", 2) == 0)
      g_ptr_array_add (a, g_strdup (w));
    else if (w[0] == '-' && w[1] && !w[2] && strchr (ssh_arg_opts, w[1]) &&
             opts[i + 1])
      i++;                     /* another option's argument */
  }
  g_ptr_array_add (a, g_strdup ("-S"));
  g_ptr_array_add (a, g_strdup (ctl));
  g_ptr_array_add (a, g_strdup ("-O"));
  g_ptr_array_add (a, g_strdup ("forward"));
  g_ptr_array_add (a, g_strdup (flag));
  g_ptr_array_add (a, g_strdup (spec));
  g_ptr_array_add (a, g_strdup (host));
  g_ptr_array_add (a, NULL);
  return (char **) g_ptr_array_free (a, FALSE);
}

/* The cipher ssh prefers when the user's configuration does not say:
 * AES-GCM is the fastest OpenSSH cipher where the CPU has AES instructions
 * (the tunnel's bulk data, the layer pull, is bound by ssh's crypto), while
 * OpenSSH's built-in order puts chacha20-poly1305 first, the better choice
 * without them. */
#define FAST_AES_CIPHER "aes128-gcm@openssh.com"

char *
sm_tunnel_ssh_cipher_pref (const char *effective, const char *builtin,
                           bool cpu_aes)
{
  g_auto(GStrv) names = NULL;
  GString *o;

  if (!cpu_aes || !effective || !builtin || strcmp (effective, builtin) != 0)
    return NULL;
  names = g_strsplit (effective, ",", -1);
  if (!names[0] || strcmp (names[0], FAST_AES_CIPHER) == 0 ||
      !g_strv_contains ((const char *const *) names, FAST_AES_CIPHER))
    return NULL;
  o = g_string_new ("Ciphers=" FAST_AES_CIPHER);
  for (size_t i = 0; names[i]; i++)
    if (*names[i] && strcmp (names[i], FAST_AES_CIPHER) != 0)
      g_string_append_printf (o, ",%s", names[i]);
  return g_string_free (o, false);
}

/* The "ciphers" value of `SSH -G [OPTS] HOST` (NO_CONFIG: `SSH -G -F none
 * HOST`, OpenSSH's built-in list), NULL when ssh does not say. */
static char *
ssh_config_ciphers (const char *ssh, char *const *opts, const char *host,
                    bool no_config)
{
  g_autoptr(GPtrArray) a = g_ptr_array_new ();
  g_autofree char *out = NULL;
  g_auto(GStrv) lines = NULL;
  int status = 0;

  g_ptr_array_add (a, (char *) ssh);
  g_ptr_array_add (a, (char *) "-G");
  if (no_config) {
    g_ptr_array_add (a, (char *) "-F");
    g_ptr_array_add (a, (char *) "none");
  } else
    for (size_t i = 0; opts && opts[i]; i++)
      g_ptr_array_add (a, opts[i]);
  g_ptr_array_add (a, (char *) host);
  g_ptr_array_add (a, NULL);
  if (!g_spawn_sync (NULL, (char **) a->pdata, NULL,
                     G_SPAWN_SEARCH_PATH | G_SPAWN_STDERR_TO_DEV_NULL,
                     NULL, NULL, &out, NULL,
                     &status, NULL) ||
      !g_spawn_check_wait_status (status, NULL))
    return NULL;
  lines = g_strsplit (out, "\n", -1);
  for (size_t i = 0; lines[i]; i++)
    if (g_str_has_prefix (lines[i], "ciphers "))
      return g_strdup (lines[i] + strlen ("ciphers "));
  return NULL;
}

/* The CPU has AES instructions (x86 "aes" flag, arm64 "aes" feature). */
static bool
cpu_has_aes (void)
{
  g_autofree char *info = NULL;
  g_auto(GStrv) lines = NULL;

  if (!g_file_get_contents ("/proc/cpuinfo", &info, NULL, NULL))
    return false;
  lines = g_strsplit (info, "\n", -1);
  for (size_t i = 0; lines[i]; i++) {
    const char *colon = strchr (lines[i], ':');
    g_auto(GStrv) words = NULL;

    if (!colon || !(g_str_has_prefix (lines[i], "flags") ||
                    g_str_has_prefix (lines[i], "Features")))
      continue;
    words = g_strsplit_set (colon + 1, " \t", -1);
    return g_strv_contains ((const char *const *) words, "aes");
  }
  return false;
}

char *
sm_tunnel_ssh_cipher_opt (const char *ssh, char *const *opts,
                          const char *host)
{
  g_autofree char *eff = NULL, *builtin = NULL;

  if (!cpu_has_aes ())
    return NULL;
  eff = ssh_config_ciphers (ssh, opts, host, false);
  builtin = ssh_config_ciphers (ssh, opts, host, true);
  return sm_tunnel_ssh_cipher_pref (eff, builtin, true);
}
