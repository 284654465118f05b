/* libsnapmig — <domainsnapshot> parsing, checking and formatting, and
 * validation of the other XML documents snapmig reads.  See snapshot-xml.h.
 *
 * Pipeline: libxml2 parses (no network, no entity substitution, no DTD
 * loading; a document with a DOCTYPE is refused outright), the embedded
 * RelaxNG schema of the root element validates, the model is extracted and
 * sm_snapshot_def_check runs the meaning checks.  libxml2 reports errors
 * through process-wide handlers that print to stderr by default: every call
 * into it runs with our own handlers installed (see quiet_begin), so the
 * library never prints.
 */
#include "snapshot-xml.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libxml/globals.h>
#include <libxml/parser.h>
#include <libxml/relaxng.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>

/* The schemas, from schemas/ (lib/schemas.S). */
extern const char sm_schema_domainsnapshot[];
extern const char sm_schema_migration_cookie[];

#define LOG_DOMAIN "snapshot-xml"

/* Larger documents are refused before parsing: a snapshot with a full
 * <domain> is a few tens of KiB. */
#define MAX_DOCUMENT_SIZE (16 * 1024 * 1024)

/* How many single-removal validations explain_invalid may try, and how many
 * nodes they may visit in all (a trial validates the whole document). */
#define MAX_CULPRIT_TRIALS 200
#define MAX_CULPRIT_WORK (2 * 1000 * 1000)

/* Depth of the kept children of <source> and <driver>:
 * domainsnapshot / disks / disk / source / child. */
#define DISK_CHILD_DEPTH 4

G_DEFINE_AUTOPTR_CLEANUP_FUNC (xmlDoc, xmlFreeDoc)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (xmlParserCtxt, xmlFreeParserCtxt)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (xmlRelaxNGParserCtxt, xmlRelaxNGFreeParserCtxt)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (xmlRelaxNGValidCtxt, xmlRelaxNGFreeValidCtxt)

/* ---- enums ------------------------------------------------------------ */

static const char *const location_names[SM_SNAPSHOT_LOCATION_LAST] = {
  [SM_SNAPSHOT_LOCATION_DEFAULT] = "default",
  [SM_SNAPSHOT_LOCATION_NO] = "no",
  [SM_SNAPSHOT_LOCATION_INTERNAL] = "internal",
  [SM_SNAPSHOT_LOCATION_EXTERNAL] = "external",
  [SM_SNAPSHOT_LOCATION_MANUAL] = "manual",
};

const char *
sm_snapshot_location_to_string (SmSnapshotLocation loc)
{
  if ((unsigned) loc >= SM_SNAPSHOT_LOCATION_LAST)
    return NULL;
  return location_names[loc];
}

static const char *const disk_type_names[SM_DISK_TYPE_LAST] = {
  [SM_DISK_TYPE_DEFAULT] = "default",
  [SM_DISK_TYPE_FILE] = "file",
  [SM_DISK_TYPE_BLOCK] = "block",
  [SM_DISK_TYPE_NETWORK] = "network",
};

const char *
sm_disk_type_to_string (SmDiskType type)
{
  if ((unsigned) type >= SM_DISK_TYPE_LAST)
    return NULL;
  return disk_type_names[type];
}

/* Index of VALUE in NAMES (N entries), or -1.  The schema's <value>s are
 * tokens, so surrounding whitespace is allowed and ignored. */
static int
lookup_token (const char *const *names, int n, const char *value)
{
  g_autofree char *token = g_strstrip (g_strdup (value));
  int i;

  for (i = 0; i < n; i++)
    if (strcmp (names[i], token) == 0)
      return i;
  return -1;
}

/* ---- model ------------------------------------------------------------ */

SmSnapshotDisk *
sm_snapshot_disk_new (const char *name)
{
  SmSnapshotDisk *disk = g_new0 (SmSnapshotDisk, 1);

  disk->name = g_strdup (name);
  disk->snapshot = SM_SNAPSHOT_LOCATION_DEFAULT;
  disk->type = SM_DISK_TYPE_DEFAULT;
  return disk;
}

void
sm_snapshot_disk_free (SmSnapshotDisk *disk)
{
  if (!disk)
    return;
  g_free (disk->name);
  g_free (disk->source);
  g_free (disk->source_protocol);
  g_free (disk->driver_type);
  g_free (disk->mirror_file);
  g_free (disk->mirror_format);
  g_free (disk->source_xml);
  g_free (disk->driver_xml);
  g_free (disk);
}

static void
disk_free_cb (gpointer disk)
{
  sm_snapshot_disk_free (disk);
}

SmSnapshotDef *
sm_snapshot_def_new (void)
{
  SmSnapshotDef *def = g_new0 (SmSnapshotDef, 1);

  def->creation_time = -1;
  def->disks = g_ptr_array_new_with_free_func (disk_free_cb);
  return def;
}

void
sm_snapshot_def_free (SmSnapshotDef *def)
{
  if (!def)
    return;
  g_free (def->name);
  g_free (def->description);
  g_free (def->state);
  g_free (def->parent);
  g_free (def->memory_snapshot);
  g_free (def->memory_file);
  if (def->disks)
    g_ptr_array_unref (def->disks);
  g_free (def->extra_xml);
  g_free (def);
}

SmSnapshotDisk *
sm_snapshot_find_disk (const SmSnapshotDef *def, const char *name)
{
  guint i;

  if (!def->disks || !name)
    return NULL;
  for (i = 0; i < def->disks->len; i++) {
    SmSnapshotDisk *disk = g_ptr_array_index (def->disks, i);

    if (disk->name && strcmp (disk->name, name) == 0)
      return disk;
  }
  return NULL;
}

bool
sm_snapshot_disk_is_external (const SmSnapshotDisk *disk)
{
  if (disk->snapshot == SM_SNAPSHOT_LOCATION_EXTERNAL)
    return true;
  /* libvirt turns an unspecified location into external when the disk
   * says where or in which format the new image goes. */
  return disk->snapshot == SM_SNAPSHOT_LOCATION_DEFAULT &&
    (disk->source || disk->source_protocol || disk->driver_type);
}

/* ---- meaning checks ---------------------------------------------------- */

bool
sm_snapshot_def_check (const SmSnapshotDef *def, const char *source_name,
                       GError **error)
{
  guint i;

  if (def->memory_file && !g_path_is_absolute (def->memory_file)) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "%s: memory file '%s' is not an absolute path",
                 source_name, def->memory_file);
    return false;
  }
  if (def->creation_time < -1) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "%s: creation time %" PRId64 " is negative",
                 source_name, def->creation_time);
    return false;
  }

  for (i = 0; def->disks && i < def->disks->len; i++) {
    const SmSnapshotDisk *disk = g_ptr_array_index (def->disks, i);
    const char *name = disk->name ? disk->name : "(unnamed)";
    bool external = sm_snapshot_disk_is_external (disk);

    if (!disk->name || !disk->name[0]) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "%s: disk %u has no name", source_name, i + 1);
      return false;
    }
    /* A relative new image would be resolved against QEMU's working
     * directory, not the disk's storage domain. */
    if (disk->source && external && disk->type != SM_DISK_TYPE_NETWORK &&
        !g_path_is_absolute (disk->source)) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "%s: disk '%s': new %s '%s' is not an absolute path",
                   source_name, name,
                   disk->type == SM_DISK_TYPE_BLOCK ? "device" : "file",
                   disk->source);
      return false;
    }

    if (!disk->mirror_file && !disk->mirror_format)
      continue;
    /* The mirror copies the new top layer that the snapshot creates, so a
     * disk that gets no new top layer has nothing to mirror. */
    if (!external && disk->snapshot == SM_SNAPSHOT_LOCATION_DEFAULT) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "%s: disk '%s': <mirror> needs snapshot='external' "
                   "(the disk has no snapshot= and no new source)",
                   source_name, name);
      return false;
    }
    if (!external) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "%s: disk '%s': <mirror> needs snapshot='external' "
                   "(the disk's snapshot is '%s')", source_name, name,
                   sm_snapshot_location_to_string (disk->snapshot));
      return false;
    }
    if (!disk->mirror_file) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "%s: disk '%s': <mirror> has no file", source_name, name);
      return false;
    }
    if (!g_path_is_absolute (disk->mirror_file)) {
      if (disk->type == SM_DISK_TYPE_NETWORK || disk->type == SM_DISK_TYPE_BLOCK)
        g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                     "%s: disk '%s' is a %s disk: its mirror file '%s' must "
                     "be an absolute path", source_name, name,
                     sm_disk_type_to_string (disk->type), disk->mirror_file);
      else
        g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                     "%s: disk '%s': mirror file '%s' is not an absolute path",
                     source_name, name, disk->mirror_file);
      return false;
    }
    if (disk->mirror_format && strcmp (disk->mirror_format, "raw") != 0 &&
        strcmp (disk->mirror_format, "qcow2") != 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "%s: disk '%s': mirror format '%s' is not supported "
                   "(use raw or qcow2)", source_name, name, disk->mirror_format);
      return false;
    }
  }
  return true;
}

/* ---- libxml2 errors ----------------------------------------------------- */

/* One error libxml2 reported. */
typedef struct {
  long line;                      /* 0 if unknown */
  int depth;                      /* of the element concerned, -1 if none */
  const xmlNode *node;            /* that element (only compared), or NULL */
  char *element;                  /* its name, or NULL */
  char *message;                  /* libxml2's text, without the newline */
} SmXmlIssue;

static void
issue_free (gpointer p)
{
  SmXmlIssue *issue = p;

  g_free (issue->element);
  g_free (issue->message);
  g_free (issue);
}

static GPtrArray *
issues_new (void)
{
  return g_ptr_array_new_with_free_func (issue_free);
}

static int
node_depth (const xmlNode *node)
{
  int depth = -1;

  for (; node && node->type == XML_ELEMENT_NODE; node = node->parent)
    depth++;
  return depth;
}

/* "prefix:name" or "name". */
static char *
qualified_name (const xmlNs *ns, const xmlChar *name)
{
  if (ns && ns->prefix)
    return g_strdup_printf ("%s:%s", (const char *) ns->prefix,
                            (const char *) name);
  return g_strdup ((const char *) name);
}

/* "'name'" or "'name' in namespace 'URI'", for messages about the root. */
static char *
describe_root (const xmlNode *root)
{
  g_autofree char *name = qualified_name (root->ns, root->name);

  if (root->ns && root->ns->href)
    return g_strdup_printf ("'%s' in namespace '%s'", name,
                            (const char *) root->ns->href);
  return g_strdup_printf ("'%s'", name);
}

/* A structured error handler: appends to the GPtrArray OPAQUE (NULL:
 * drops the error).  Warnings are dropped: a warning never decides
 * anything here. */
static void
collect_error (void *opaque, xmlErrorPtr err)
{
  GPtrArray *issues = opaque;
  SmXmlIssue *issue;
  const xmlNode *node;

  if (!issues || !err || err->level == XML_ERR_WARNING)
    return;
  issue = g_new0 (SmXmlIssue, 1);
  issue->line = err->line;
  issue->depth = -1;
  issue->message = g_strstrip (g_strdup (err->message ? err->message
                                         : "unknown error"));
  node = err->node;
  if (node && node->type == XML_ELEMENT_NODE) {
    issue->node = node;
    issue->depth = node_depth (node);
    issue->element = qualified_name (node->ns, node->name);
    if (issue->line <= 0)
      issue->line = xmlGetLineNo (node);
  }
  g_ptr_array_add (issues, issue);
}

static void
discard_generic_error (void *ctx, const char *msg, ...)
{
  (void) ctx;
  (void) msg;
}

/* libxml2's process-wide (per-thread) error handlers, saved while ours are
 * installed.  Some code paths (the RelaxNG compiler, the parser before a
 * context exists) report through these instead of a context's handler;
 * the defaults print to stderr. */
typedef struct {
  xmlStructuredErrorFunc serror;
  void *serror_ctx;
  xmlGenericErrorFunc gerror;
  void *gerror_ctx;
} SmXmlQuiet;

static void
quiet_begin (SmXmlQuiet *q, GPtrArray *issues)
{
  q->serror = xmlStructuredError;
  q->serror_ctx = xmlStructuredErrorContext;
  q->gerror = xmlGenericError;
  q->gerror_ctx = xmlGenericErrorContext;
  xmlSetStructuredErrorFunc (issues, collect_error);
  xmlSetGenericErrorFunc (NULL, discard_generic_error);
}

static void
quiet_end (SmXmlQuiet *q)
{
  xmlSetStructuredErrorFunc (q->serror_ctx, q->serror);
  xmlSetGenericErrorFunc (q->gerror_ctx, q->gerror);
}

static gpointer
init_libxml2 (gpointer unused)
{
  (void) unused;
  xmlInitParser ();
  return NULL;
}

static void
ensure_libxml2 (void)
{
  static GOnce once = G_ONCE_INIT;

  g_once (&once, init_libxml2, NULL);
}

/* ---- schemas ------------------------------------------------------------ */

typedef struct {
  const char *root;               /* root element this schema is for */
  const char *text;               /* the RelaxNG grammar */
  /* Children of the root carried through unread (any content): an error
   * can never be inside them, so explain_invalid does not look there. */
  const char *const *opaque;
  xmlRelaxNGPtr rng;              /* compiled on first use; kept */
} SmXmlSchema;

static const char *const snapshot_opaque[] = {
  "domain", "inactiveDomain", "cookie", "revertDisks", NULL
};
static const char *const cookie_opaque[] = {
  "graphics", "lockstate", "domain", "persistent", "network", "statistics",
  "memory-balloon", "cpu", "blockDirtyBitmaps", NULL
};

static SmXmlSchema schemas[] = {
  { "domainsnapshot", sm_schema_domainsnapshot, snapshot_opaque, NULL },
  { "qemu-migration", sm_schema_migration_cookie, cookie_opaque, NULL },
};
#define SCHEMA_DOMAINSNAPSHOT (&schemas[0])

static GMutex schemas_lock;

static SmXmlSchema *
schema_for_root (const xmlNode *root)
{
  size_t i;

  if (root->ns)
    return NULL;
  for (i = 0; i < G_N_ELEMENTS (schemas); i++)
    if (strcmp ((const char *) root->name, schemas[i].root) == 0)
      return &schemas[i];
  return NULL;
}

/* The compiled grammar, owned by SCHEMA (compiled once per process; a
 * compiled RelaxNG grammar is read-only while validating). */
static xmlRelaxNGPtr
schema_get (SmXmlSchema *schema, GError **error)
{
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new (&schemas_lock);
  g_autoptr(GPtrArray) issues = NULL;
  g_autoptr(xmlRelaxNGParserCtxt) pctxt = NULL;
  SmXmlQuiet quiet;

  if (schema->rng)
    return schema->rng;
  issues = issues_new ();
  quiet_begin (&quiet, issues);
  pctxt = xmlRelaxNGNewMemParserCtxt (schema->text, (int) strlen (schema->text));
  if (pctxt) {
    xmlRelaxNGSetParserStructuredErrors (pctxt, collect_error, issues);
    schema->rng = xmlRelaxNGParse (pctxt);
  }
  quiet_end (&quiet);
  if (!schema->rng) {
    const SmXmlIssue *first = issues->len ? g_ptr_array_index (issues, 0) : NULL;

    g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                 "the embedded schema for <%s> does not compile: %s",
                 schema->root, first ? first->message : "out of memory");
    return NULL;
  }
  return schema->rng;
}

/* ---- parsing ------------------------------------------------------------ */

/* No network, no entity substitution (XML_PARSE_NOENT unset), no external
 * DTD or entity loading (XML_PARSE_DTDLOAD unset), no XInclude.  CDATA
 * sections become text so that the kept XML needs only one escaping. */
#define PARSE_OPTIONS \
  (XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | \
   XML_PARSE_NOCDATA | XML_PARSE_BIG_LINES)

static xmlDoc *
parse_xml (const char *text, size_t len, const char *source_name,
           GError **error)
{
  g_autoptr(GPtrArray) issues = issues_new ();
  g_autoptr(xmlParserCtxt) ctxt = NULL;
  g_autoptr(xmlDoc) doc = NULL;
  SmXmlQuiet quiet;
  bool well_formed;

  ensure_libxml2 ();
  if (len > INT_MAX) {
    g_set_error (error, SM_ERROR, SM_ERROR_XML,
                 "%s: document too large (%zu bytes)", source_name, len);
    return NULL;
  }
  quiet_begin (&quiet, issues);
  ctxt = xmlNewParserCtxt ();
  if (ctxt)
    doc = xmlCtxtReadMemory (ctxt, text, (int) len, NULL, NULL, PARSE_OPTIONS);
  quiet_end (&quiet);
  if (!ctxt) {
    g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                 "%s: cannot create an XML parser", source_name);
    return NULL;
  }

  /* A namespace error (an undeclared prefix) leaves a document behind:
   * refuse it too, the kept XML could not be written back. */
  well_formed = doc && ctxt->wellFormed && ctxt->nsWellFormed;
  if (!well_formed) {
    const SmXmlIssue *first = issues->len ? g_ptr_array_index (issues, 0) : NULL;
    const xmlError *last = xmlCtxtGetLastError (ctxt);
    const char *why = first ? first->message
      : last && last->message ? last->message : "not well-formed";
    long line = first ? first->line : last ? last->line : 0;
    g_autofree char *why_stripped = g_strstrip (g_strdup (why));

    if (line > 0)
      g_set_error (error, SM_ERROR, SM_ERROR_XML,
                   "%s: line %ld: malformed XML: %s", source_name, line,
                   why_stripped);
    else
      g_set_error (error, SM_ERROR, SM_ERROR_XML, "%s: malformed XML: %s",
                   source_name, why_stripped);
    return NULL;
  }

  /* snapmig's documents never need a DTD; refusing them means no entity
   * ever needs deciding about (expansion, external loading). */
  if (doc->intSubset || doc->extSubset) {
    g_set_error (error, SM_ERROR, SM_ERROR_XML,
                 "%s: document type declarations (<!DOCTYPE ...>) are not "
                 "accepted", source_name);
    return NULL;
  }
  if (!xmlDocGetRootElement (doc)) {
    g_set_error (error, SM_ERROR, SM_ERROR_XML, "%s: no root element",
                 source_name);
    return NULL;
  }
  return g_steal_pointer (&doc);
}

/* Reads PATH whole, NUL-terminated. */
static char *
read_document (const char *path, size_t *len_out, GError **error)
{
  g_autofree char *buf = NULL;
  size_t len = 0, cap;
  struct stat st;
  int fd, saved_errno;

  fd = open (path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    saved_errno = errno;
    g_set_error (error, SM_ERROR,
                 saved_errno == ENOENT ? SM_ERROR_NOT_FOUND : SM_ERROR_IO,
                 "%s: cannot open: %s", path, g_strerror (saved_errno));
    return NULL;
  }
  if (fstat (fd, &st) < 0) {
    saved_errno = errno;
    close (fd);
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: cannot stat: %s", path,
                 g_strerror (saved_errno));
    return NULL;
  }
  if (S_ISDIR (st.st_mode)) {
    close (fd);
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: is a directory", path);
    return NULL;
  }
  cap = S_ISREG (st.st_mode) && st.st_size > 0 && st.st_size <= MAX_DOCUMENT_SIZE
    ? (size_t) st.st_size + 1 : 4096;
  buf = g_malloc (cap);
  for (;;) {
    ssize_t n;

    if (len > MAX_DOCUMENT_SIZE)
      break;
    if (len + 1 >= cap) {
      cap *= 2;
      buf = g_realloc (buf, cap);
    }
    n = read (fd, buf + len, cap - len - 1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      saved_errno = errno;
      close (fd);
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: cannot read: %s", path,
                   g_strerror (saved_errno));
      return NULL;
    }
    if (n == 0)
      break;
    len += n;
  }
  close (fd);
  if (len > MAX_DOCUMENT_SIZE) {
    g_set_error (error, SM_ERROR, SM_ERROR_XML,
                 "%s: larger than %d bytes, not a document snapmig reads",
                 path, MAX_DOCUMENT_SIZE);
    return NULL;
  }
  buf[len] = '\0';
  *len_out = len;
  return g_steal_pointer (&buf);
}

/* ---- validation --------------------------------------------------------- */

static void
clear_psvi (xmlNode *node)
{
  for (; node; node = node->next) {
    node->psvi = NULL;
    if (node->type == XML_ELEMENT_NODE)
      clear_psvi (node->children);
  }
}

/* Validates DOC, collecting errors in ISSUES (NULL: dropping them).
 * 1 valid, 0 invalid, -1 the validator itself failed. */
static int
rng_validate (xmlRelaxNGPtr rng, xmlDoc *doc, GPtrArray *issues)
{
  g_autoptr(xmlRelaxNGValidCtxt) vctxt = NULL;
  SmXmlQuiet quiet;
  int rc = -1;

  /* libxml2 remembers in node->psvi which elements matched which pattern
   * and skips them next time: forget it, the tree may have changed. */
  clear_psvi (xmlDocGetRootElement (doc));
  quiet_begin (&quiet, issues);
  vctxt = xmlRelaxNGNewValidCtxt (rng);
  if (vctxt) {
    xmlRelaxNGSetValidStructuredErrors (vctxt, collect_error, issues);
    rc = xmlRelaxNGValidateDoc (vctxt, doc);
  }
  quiet_end (&quiet);
  return rc == 0 ? 1 : rc > 0 ? 0 : -1;
}

typedef struct {
  xmlNode *node;                  /* element to remove, or the attribute's */
  xmlAttr *attr;                  /* attribute to remove, or NULL */
  int depth;
  guint order;                    /* document order, for stable sorting */
} SmCandidate;

static bool
name_in (const char *const *names, const xmlChar *name)
{
  for (; names && *names; names++)
    if (strcmp (*names, (const char *) name) == 0)
      return true;
  return false;
}

static guint
count_nodes (const xmlNode *node)
{
  guint n = 0;

  for (; node; node = node->next) {
    n++;
    if (node->type == XML_ELEMENT_NODE)
      n += count_nodes (node->children);
  }
  return n;
}

static void
collect_candidates (xmlNode *node, int depth, const SmXmlSchema *schema,
                    GArray *attrs, GArray *elems)
{
  for (; node; node = node->next) {
    xmlAttr *attr;

    if (node->type != XML_ELEMENT_NODE)
      continue;
    for (attr = node->properties; attr; attr = attr->next) {
      SmCandidate c = { node, attr, depth, attrs->len };

      g_array_append_val (attrs, c);
    }
    if (depth > 0) {
      SmCandidate c = { node, NULL, depth, elems->len };

      g_array_append_val (elems, c);
    }
    if (depth == 1 && node->ns == NULL && name_in (schema->opaque, node->name))
      continue;
    collect_candidates (node->children, depth + 1, schema, attrs, elems);
  }
}

/* Deeper first; at the same depth, later first. */
static gint
deeper_first (gconstpointer a, gconstpointer b)
{
  const SmCandidate *ca = a, *cb = b;

  if (ca->depth != cb->depth)
    return ca->depth > cb->depth ? -1 : 1;
  /* Of two <name>s, the second is the one too many. */
  return ca->order > cb->order ? -1 : ca->order < cb->order ? 1 : 0;
}

/* Whether DOC validates once C is taken out (it is put back). */
static bool
valid_without (xmlRelaxNGPtr rng, xmlDoc *doc, const SmCandidate *c)
{
  bool valid;

  if (c->attr) {
    xmlUnlinkNode ((xmlNode *) c->attr);
    valid = rng_validate (rng, doc, NULL) == 1;
    xmlAddChild (c->node, (xmlNode *) c->attr);
  }
  else {
    xmlNode *parent = c->node->parent, *next = c->node->next;

    xmlUnlinkNode (c->node);
    valid = rng_validate (rng, doc, NULL) == 1;
    if (next)
      xmlAddPrevSibling (next, c->node);
    else
      xmlAddChild (parent, c->node);
  }
  return valid;
}

/* The text of an element holding only text (<state>dancing</state>),
 * shortened for a message; NULL otherwise. */
static char *
text_value (const xmlNode *node)
{
  const xmlNode *child;
  xmlChar *text;
  const xmlChar *p;
  char *value;

  if (!node->children)
    return NULL;
  for (child = node->children; child; child = child->next)
    if (child->type == XML_ELEMENT_NODE)
      return NULL;
  text = xmlNodeGetContent (node);
  if (!text)
    return NULL;
  /* Only indentation (an element whose children were all taken out in a
   * trial): no value worth showing. */
  for (p = text; g_ascii_isspace (*p); p++)
    ;
  if (!*p) {
    xmlFree (text);
    return NULL;
  }
  value = g_utf8_make_valid ((const char *) text, -1);
  xmlFree (text);
  if (g_utf8_strlen (value, -1) > 40) {
    char *shorter = g_strdup_printf ("%.*s...", (int) (g_utf8_offset_to_pointer (value, 40) - value), value);

    g_free (value);
    value = shorter;
  }
  return value;
}

/* Sets ERROR for a document that does not match its schema.  libxml2's
 * RelaxNG messages are often about an outer element ("Extra element disks
 * in interleave") because errors inside a choice or interleave branch are
 * discarded.  So look for the single attribute, else the deepest single
 * element, whose removal makes the document valid: that is what the user
 * has to fix.  When there is none (a missing element, several errors),
 * report libxml2's message about the deepest element. */
static void
explain_invalid (SmXmlSchema *schema, xmlRelaxNGPtr rng, xmlDoc *doc,
                 GPtrArray *issues, const char *source_name, GError **error)
{
  g_autoptr(GArray) attrs = g_array_new (FALSE, FALSE, sizeof (SmCandidate));
  g_autoptr(GArray) elems = g_array_new (FALSE, FALSE, sizeof (SmCandidate));
  const SmXmlIssue *deepest = NULL;
  guint nodes = count_nodes (xmlDocGetRootElement (doc));
  guint max_trials = MIN (MAX_CULPRIT_TRIALS, MAX_CULPRIT_WORK / MAX (nodes, 1));
  guint i, trials = 0;

  collect_candidates (xmlDocGetRootElement (doc), 0, schema, attrs, elems);
  g_array_sort (elems, deeper_first);

  for (i = 0; i < attrs->len && trials < max_trials; i++, trials++) {
    const SmCandidate *c = &g_array_index (attrs, SmCandidate, i);

    if (valid_without (rng, doc, c)) {
      g_autofree char *elem = qualified_name (c->node->ns, c->node->name);
      g_autofree char *attr = qualified_name (c->attr->ns, c->attr->name);
      g_autofree char *value = (char *) xmlNodeGetContent ((xmlNode *) c->attr);

      g_set_error (error, SM_ERROR, SM_ERROR_XML,
                   "%s: line %ld: element '%s': attribute %s='%s' is not "
                   "valid here", source_name, xmlGetLineNo (c->node), elem,
                   attr, value ? value : "");
      return;
    }
  }
  for (i = 0; i < elems->len && trials < max_trials; i++, trials++) {
    const SmCandidate *c = &g_array_index (elems, SmCandidate, i);

    if (valid_without (rng, doc, c)) {
      g_autofree char *elem = qualified_name (c->node->ns, c->node->name);
      g_autofree char *parent = qualified_name (c->node->parent->ns,
                                                c->node->parent->name);
      g_autofree char *value = text_value (c->node);

      /* Either the element may not be there, or its attributes or text
       * are wrong: libxml2 does not say which.  Show a text value. */
      g_set_error (error, SM_ERROR, SM_ERROR_XML,
                   "%s: line %ld: element '%s'%s%s%s inside '%s' is not valid",
                   source_name, xmlGetLineNo (c->node), elem,
                   value ? " (text '" : "", value ? value : "",
                   value ? "')" : "", parent);
      return;
    }
  }

  for (i = 0; i < issues->len; i++) {
    const SmXmlIssue *issue = g_ptr_array_index (issues, i);

    if (!deepest || issue->depth > deepest->depth)
      deepest = issue;
  }
  if (deepest && deepest->element)
    g_set_error (error, SM_ERROR, SM_ERROR_XML,
                 "%s: line %ld: element '%s': %s", source_name, deepest->line,
                 deepest->element, deepest->message);
  else if (deepest)
    g_set_error (error, SM_ERROR, SM_ERROR_XML, "%s: %s", source_name,
                 deepest->message);
  else
    g_set_error (error, SM_ERROR, SM_ERROR_XML,
                 "%s: does not match the <%s> schema", source_name,
                 schema->root);
}

static bool
validate_doc (SmXmlSchema *schema, xmlDoc *doc, const char *source_name,
              GError **error)
{
  g_autoptr(GPtrArray) issues = issues_new ();
  xmlRelaxNGPtr rng = schema_get (schema, error);
  int rc;

  if (!rng)
    return false;
  rc = rng_validate (rng, doc, issues);
  if (rc == 1) {
    sm_debug (LOG_DOMAIN, "%s: valid <%s>", source_name, schema->root);
    return true;
  }
  if (rc < 0) {
    const SmXmlIssue *first = issues->len ? g_ptr_array_index (issues, 0) : NULL;

    g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                 "%s: the RelaxNG validator failed: %s", source_name,
                 first ? first->message : "out of memory");
    return false;
  }
  explain_invalid (schema, rng, doc, issues, source_name, error);
  return false;
}

/* ---- kept XML ------------------------------------------------------------ */

/* Escapes as libvirt does (all five XML specials), plus what a parser
 * would otherwise normalise away: CR anywhere, newline and tab in
 * attribute values.  Other control characters cannot be written in
 * XML 1.0 at all and are dropped. */
static void
append_escaped (GString *out, const char *s, bool attribute)
{
  const char *p;

  for (p = s; *p; p++) {
    switch (*p) {
    case '&': g_string_append (out, "&amp;"); break;
    case '<': g_string_append (out, "&lt;"); break;
    case '>': g_string_append (out, "&gt;"); break;
    case '\'': g_string_append (out, "&apos;"); break;
    case '"': g_string_append (out, "&quot;"); break;
    case '\r': g_string_append (out, "&#13;"); break;
    case '\n':
      g_string_append (out, attribute ? "&#10;" : "\n");
      break;
    case '\t':
      g_string_append (out, attribute ? "&#9;" : "\t");
      break;
    default:
      if ((unsigned char) *p >= 0x20)
        g_string_append_c (out, *p);
      break;
    }
  }
}

static void
append_indent (GString *out, int depth)
{
  int i;

  for (i = 0; i < depth; i++)
    g_string_append (out, "  ");
}

static void
append_attr (GString *out, const char *name, const char *value)
{
  g_string_append_printf (out, " %s='", name);
  append_escaped (out, value, true);
  g_string_append_c (out, '\'');
}

void
sm_xml_append_attr (GString *out, const char *name, const char *value)
{
  append_attr (out, name, value);
}

void
sm_xml_append_text (GString *out, const char *text)
{
  append_escaped (out, text, false);
}

static void
append_qname (GString *out, const xmlNs *ns, const xmlChar *name)
{
  if (ns && ns->prefix)
    g_string_append_printf (out, "%s:", (const char *) ns->prefix);
  g_string_append (out, (const char *) name);
}

static void
append_ns_decl (GString *out, const xmlNs *ns, char quote)
{
  g_auto(GStrv) pieces = NULL;
  g_autofree char *href = NULL;

  if (ns->prefix)
    g_string_append_printf (out, " xmlns:%s=%c", (const char *) ns->prefix,
                            quote);
  else
    g_string_append_printf (out, " xmlns=%c", quote);
  /* Without entity substitution libxml2 keeps every '&' of an attribute
   * value as "&#38;" in the raw value, and a namespace name is that raw
   * value: decode it, or each round trip would escape it once more. */
  pieces = g_strsplit (ns->href ? (const char *) ns->href : "", "&#38;", -1);
  href = g_strjoinv ("&", pieces);
  append_escaped (out, href, true);
  g_string_append_c (out, quote);
}

/* Whether NS is declared on NODE or an ancestor up to and including TOP. */
static bool
ns_declared_within (const xmlNs *ns, const xmlNode *node, const xmlNode *top)
{
  for (; node; node = node->parent) {
    const xmlNs *d;

    for (d = node->nsDef; d; d = d->next)
      if (d == ns)
        return true;
    if (node == top)
      break;
  }
  return false;
}

static void
note_outer_ns (GPtrArray *outer, const xmlNs *ns, const xmlNode *node,
               const xmlNode *top)
{
  guint i;

  if (!ns || (ns->prefix && strcmp ((const char *) ns->prefix, "xml") == 0))
    return;
  if (ns_declared_within (ns, node, top))
    return;
  for (i = 0; i < outer->len; i++)
    if (g_ptr_array_index (outer, i) == ns)
      return;
  g_ptr_array_add (outer, (gpointer) ns);
}

/* The namespaces used under TOP but declared above it: the kept copy of
 * TOP must declare them itself. */
static void
collect_outer_ns (GPtrArray *outer, const xmlNode *node, const xmlNode *top)
{
  for (; node; node = node->next) {
    const xmlAttr *attr;

    if (node->type != XML_ELEMENT_NODE)
      continue;
    note_outer_ns (outer, node->ns, node, top);
    for (attr = node->properties; attr; attr = attr->next)
      note_outer_ns (outer, attr->ns, node, top);
    collect_outer_ns (outer, node->children, top);
    if (node == top)
      break;
  }
}

static void
append_start_tag (GString *out, const xmlNode *node, GPtrArray *outer_ns)
{
  /* libvirt writes its own elements with single quotes, and foreign
   * (namespaced) ones, the content of <metadata>, through libxml2's
   * serializer, which uses double quotes: do the same, so that libvirt's
   * documents come out unchanged. */
  char quote = node->ns ? '"' : '\'';
  const xmlNs *ns;
  const xmlAttr *attr;
  guint i;

  g_string_append_c (out, '<');
  append_qname (out, node->ns, node->name);
  for (i = 0; outer_ns && i < outer_ns->len; i++)
    append_ns_decl (out, g_ptr_array_index (outer_ns, i), quote);
  for (ns = node->nsDef; ns; ns = ns->next)
    append_ns_decl (out, ns, quote);
  for (attr = node->properties; attr; attr = attr->next) {
    g_autofree char *value = (char *) xmlNodeGetContent ((const xmlNode *) attr);

    g_string_append_c (out, ' ');
    append_qname (out, attr->ns, attr->name);
    g_string_append_c (out, '=');
    g_string_append_c (out, quote);
    append_escaped (out, value ? value : "", true);
    g_string_append_c (out, quote);
  }
}

static void
append_end_tag (GString *out, const xmlNode *node)
{
  g_string_append (out, "</");
  append_qname (out, node->ns, node->name);
  g_string_append_c (out, '>');
}

static bool
is_blank (const char *s)
{
  for (; *s; s++)
    if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
      return false;
  return true;
}

typedef enum {
  CONTENT_EMPTY,                  /* <x/> */
  CONTENT_ELEMENTS,               /* element children, blank text only */
  CONTENT_MIXED,                  /* text matters: written as it is */
} SmContentKind;

static SmContentKind
content_kind (const xmlNode *node)
{
  const xmlNode *child;
  bool elements = false, text = false, blank_text = false;

  for (child = node->children; child; child = child->next) {
    /* Comments and processing instructions are not data: dropped. */
    if (child->type == XML_ELEMENT_NODE)
      elements = true;
    else if (child->type == XML_TEXT_NODE ||
             child->type == XML_CDATA_SECTION_NODE) {
      if (child->content && !is_blank ((const char *) child->content))
        text = true;
      else if (child->content && child->content[0])
        blank_text = true;
    }
  }
  if (text || (blank_text && !elements))
    return CONTENT_MIXED;
  return elements ? CONTENT_ELEMENTS : CONTENT_EMPTY;
}

/* Writes NODE's children exactly: text matters in mixed content. */
static void
append_inline_children (GString *out, const xmlNode *node)
{
  const xmlNode *child;

  for (child = node->children; child; child = child->next) {
    if (child->type == XML_TEXT_NODE || child->type == XML_CDATA_SECTION_NODE) {
      if (child->content)
        append_escaped (out, (const char *) child->content, false);
    }
    else if (child->type == XML_ELEMENT_NODE) {
      append_start_tag (out, child, NULL);
      if (content_kind (child) == CONTENT_EMPTY)
        g_string_append (out, "/>");
      else {
        g_string_append_c (out, '>');
        append_inline_children (out, child);
        append_end_tag (out, child);
      }
    }
  }
}

/* Writes the element NODE at DEPTH: one element per line when the content
 * is only elements, else inline.  Applying this to its own output gives
 * the same text again. */
static void
append_element (GString *out, const xmlNode *node, int depth, GPtrArray *outer_ns)
{
  const xmlNode *child;

  append_indent (out, depth);
  append_start_tag (out, node, outer_ns);
  switch (content_kind (node)) {
  case CONTENT_EMPTY:
    g_string_append (out, "/>\n");
    break;
  case CONTENT_ELEMENTS:
    g_string_append (out, ">\n");
    for (child = node->children; child; child = child->next)
      if (child->type == XML_ELEMENT_NODE)
        append_element (out, child, depth + 1, NULL);
    append_indent (out, depth);
    append_end_tag (out, node);
    g_string_append_c (out, '\n');
    break;
  case CONTENT_MIXED:
    g_string_append_c (out, '>');
    append_inline_children (out, node);
    append_end_tag (out, node);
    g_string_append_c (out, '\n');
    break;
  }
}

/* Appends the element NODE, kept for writing back at DEPTH, to *XML. */
static void
keep_element (char **xml, const xmlNode *node, int depth)
{
  g_autoptr(GPtrArray) outer_ns = g_ptr_array_new ();
  GString *out = g_string_new (*xml);

  collect_outer_ns (outer_ns, node, node);
  append_element (out, node, depth, outer_ns);
  g_free (*xml);
  *xml = g_string_free (out, FALSE);
}

/* Keeps every element child of NODE. */
static char *
keep_children (const xmlNode *node, int depth)
{
  const xmlNode *child;
  char *xml = NULL;

  for (child = node->children; child; child = child->next)
    if (child->type == XML_ELEMENT_NODE)
      keep_element (&xml, child, depth);
  return xml;
}

/* ---- document -> model -------------------------------------------------- */

bool
sm_xml_is_element (const xmlNode *node, const char *name)
{
  return node->type == XML_ELEMENT_NODE && node->ns == NULL &&
    strcmp ((const char *) node->name, name) == 0;
}

char *
sm_xml_get_attr (const xmlNode *node, const char *name)
{
  xmlChar *value = xmlGetNoNsProp (node, (const xmlChar *) name);
  char *copy;

  if (!value)
    return NULL;
  copy = g_strdup ((const char *) value);
  xmlFree (value);
  return copy;
}

char *
sm_xml_get_text (const xmlNode *node)
{
  xmlChar *value = xmlNodeGetContent (node);
  char *copy = g_strdup (value ? (const char *) value : "");

  xmlFree (value);
  return copy;
}

static SmSnapshotDisk *
disk_from_node (const xmlNode *node)
{
  g_autofree char *name = sm_xml_get_attr (node, "name");
  g_autofree char *snapshot = sm_xml_get_attr (node, "snapshot");
  g_autofree char *type = sm_xml_get_attr (node, "type");
  g_autoptr(SmSnapshotDisk) disk = sm_snapshot_disk_new (name);
  const xmlNode *child;

  /* The schema allows only known values: an unknown one cannot get here. */
  if (snapshot) {
    int loc = lookup_token (location_names, SM_SNAPSHOT_LOCATION_LAST, snapshot);

    disk->snapshot = loc > 0 ? (SmSnapshotLocation) loc
      : SM_SNAPSHOT_LOCATION_DEFAULT;
  }
  if (type) {
    int t = lookup_token (disk_type_names, SM_DISK_TYPE_LAST, type);

    disk->type = t > 0 ? (SmDiskType) t : SM_DISK_TYPE_DEFAULT;
  }

  for (child = node->children; child; child = child->next) {
    if (sm_xml_is_element (child, "source")) {
      disk->source = sm_xml_get_attr (child, "file");
      if (!disk->source)
        disk->source = sm_xml_get_attr (child, "dev");
      if (!disk->source)
        disk->source = sm_xml_get_attr (child, "name");
      disk->source_protocol = sm_xml_get_attr (child, "protocol");
      if (disk->source_protocol)
        g_strstrip (disk->source_protocol);
      disk->source_xml = keep_children (child, DISK_CHILD_DEPTH);
    }
    else if (sm_xml_is_element (child, "driver")) {
      disk->driver_type = sm_xml_get_attr (child, "type");
      disk->driver_xml = keep_children (child, DISK_CHILD_DEPTH);
    }
    else if (sm_xml_is_element (child, "mirror")) {
      disk->mirror_file = sm_xml_get_attr (child, "file");
      disk->mirror_format = sm_xml_get_attr (child, "format");
    }
  }
  return g_steal_pointer (&disk);
}

/* Reads the creation time: the schema checked it is an unsignedLong. */
static bool
parse_creation_time (const xmlNode *node, const char *source_name,
                     int64_t *out, GError **error)
{
  g_autofree char *text = g_strstrip (sm_xml_get_text (node));
  const char *digits = text[0] == '+' ? text + 1 : text;
  guint64 value;

  if (!g_ascii_string_to_unsigned (digits, 10, 0, INT64_MAX, &value, NULL)) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "%s: line %ld: creationTime '%s' is not a time snapmig can "
                 "hold (seconds since 1970, at most %" PRId64 ")", source_name,
                 xmlGetLineNo (node), text, (int64_t) INT64_MAX);
    return false;
  }
  *out = (int64_t) value;
  return true;
}

static SmSnapshotDef *
def_from_doc (xmlDoc *doc, const char *source_name, GError **error)
{
  g_autoptr(SmSnapshotDef) def = sm_snapshot_def_new ();
  const xmlNode *root = xmlDocGetRootElement (doc);
  const xmlNode *node, *child;

  for (node = root->children; node; node = node->next) {
    if (node->type != XML_ELEMENT_NODE)
      continue;
    if (sm_xml_is_element (node, "name"))
      def->name = sm_xml_get_text (node);
    else if (sm_xml_is_element (node, "description"))
      def->description = sm_xml_get_text (node);
    else if (sm_xml_is_element (node, "state"))
      def->state = g_strstrip (sm_xml_get_text (node));
    else if (sm_xml_is_element (node, "creationTime")) {
      if (!parse_creation_time (node, source_name, &def->creation_time, error))
        return NULL;
    }
    else if (sm_xml_is_element (node, "parent")) {
      for (child = node->children; child; child = child->next)
        if (sm_xml_is_element (child, "name"))
          def->parent = sm_xml_get_text (child);
    }
    else if (sm_xml_is_element (node, "memory")) {
      def->memory_snapshot = sm_xml_get_attr (node, "snapshot");
      if (def->memory_snapshot)
        g_strstrip (def->memory_snapshot);
      def->memory_file = sm_xml_get_attr (node, "file");
    }
    else if (sm_xml_is_element (node, "disks")) {
      def->has_disks = true;
      for (child = node->children; child; child = child->next)
        if (sm_xml_is_element (child, "disk"))
          g_ptr_array_add (def->disks, disk_from_node (child));
    }
    else
      keep_element (&def->extra_xml, node, 1);
  }
  return g_steal_pointer (&def);
}

xmlDoc *
sm_xml_parse_validated (const char *text, size_t len, const char *root_name,
                        const char *source_name, GError **error)
{
  g_autoptr(xmlDoc) doc = parse_xml (text, len, source_name, error);
  SmXmlSchema *schema;
  const xmlNode *root;

  if (!doc)
    return NULL;
  root = xmlDocGetRootElement (doc);
  schema = schema_for_root (root);
  if (!schema || strcmp (schema->root, root_name) != 0) {
    g_autofree char *name = describe_root (root);

    g_set_error (error, SM_ERROR, SM_ERROR_XML,
                 "%s: line %ld: root element is %s, expected '%s'",
                 source_name, xmlGetLineNo (root), name, root_name);
    return NULL;
  }
  if (!validate_doc (schema, doc, source_name, error))
    return NULL;
  return g_steal_pointer (&doc);
}

/* Parse, validate, extract, check. */
static SmSnapshotDef *
snapshot_from_text (const char *text, size_t len, const char *source_name,
                    GError **error)
{
  g_autoptr(xmlDoc) doc = sm_xml_parse_validated (text, len, "domainsnapshot",
                                                  source_name, error);
  g_autoptr(SmSnapshotDef) def = NULL;

  if (!doc)
    return NULL;
  def = def_from_doc (doc, source_name, error);
  if (!def || !sm_snapshot_def_check (def, source_name, error))
    return NULL;
  return g_steal_pointer (&def);
}

SmSnapshotDef *
sm_snapshot_parse_string (const char *xml, const char *source_name,
                          GError **error)
{
  g_return_val_if_fail (xml != NULL, NULL);
  return snapshot_from_text (xml, strlen (xml),
                             source_name ? source_name : "<string>", error);
}

SmSnapshotDef *
sm_snapshot_parse_file (const char *path, GError **error)
{
  g_autofree char *text = NULL;
  size_t len;

  text = read_document (path, &len, error);
  if (!text)
    return NULL;
  return snapshot_from_text (text, len, path, error);
}

bool
sm_xml_validate_file (const char *path, const char **kind, GError **error)
{
  g_autofree char *text = NULL;
  g_autoptr(xmlDoc) doc = NULL;
  g_autoptr(SmSnapshotDef) def = NULL;
  SmXmlSchema *schema;
  const xmlNode *root;
  size_t len;

  text = read_document (path, &len, error);
  if (!text)
    return false;
  doc = parse_xml (text, len, path, error);
  if (!doc)
    return false;
  root = xmlDocGetRootElement (doc);
  schema = schema_for_root (root);
  if (!schema) {
    g_autofree char *name = describe_root (root);

    g_set_error (error, SM_ERROR, SM_ERROR_XML,
                 "%s: line %ld: unknown root element %s (snapmig reads "
                 "<domainsnapshot> and <qemu-migration>)", path,
                 xmlGetLineNo (root), name);
    return false;
  }
  if (!validate_doc (schema, doc, path, error))
    return false;
  if (schema == SCHEMA_DOMAINSNAPSHOT) {
    def = def_from_doc (doc, path, error);
    if (!def || !sm_snapshot_def_check (def, path, error))
      return false;
  }
  if (kind)
    *kind = schema->root;
  return true;
}

/* ---- model -> document -------------------------------------------------- */

static void
append_text_element (GString *out, int depth, const char *name,
                     const char *text)
{
  append_indent (out, depth);
  g_string_append_printf (out, "<%s>", name);
  append_escaped (out, text, false);
  g_string_append_printf (out, "</%s>\n", name);
}

static void
append_disk (GString *out, const SmSnapshotDisk *disk)
{
  bool driver = disk->driver_type || disk->driver_xml;
  bool source = disk->source || disk->source_protocol || disk->source_xml;
  bool mirror = disk->mirror_file || disk->mirror_format;

  g_string_append (out, "    <disk");
  append_attr (out, "name", disk->name ? disk->name : "");
  if (disk->snapshot != SM_SNAPSHOT_LOCATION_DEFAULT &&
      sm_snapshot_location_to_string (disk->snapshot))
    append_attr (out, "snapshot", sm_snapshot_location_to_string (disk->snapshot));
  if (disk->type != SM_DISK_TYPE_DEFAULT && sm_disk_type_to_string (disk->type))
    append_attr (out, "type", sm_disk_type_to_string (disk->type));
  if (!driver && !source && !mirror) {
    g_string_append (out, "/>\n");
    return;
  }
  g_string_append (out, ">\n");

  /* libvirt writes <driver> before <source>. */
  if (driver) {
    g_string_append (out, "      <driver");
    if (disk->driver_type)
      append_attr (out, "type", disk->driver_type);
    if (disk->driver_xml)
      g_string_append_printf (out, ">\n%s      </driver>\n", disk->driver_xml);
    else
      g_string_append (out, "/>\n");
  }
  if (source) {
    g_string_append (out, "      <source");
    if (disk->type == SM_DISK_TYPE_NETWORK) {
      if (disk->source_protocol)
        append_attr (out, "protocol", disk->source_protocol);
      if (disk->source)
        append_attr (out, "name", disk->source);
    }
    else if (disk->source)
      append_attr (out, disk->type == SM_DISK_TYPE_BLOCK ? "dev" : "file",
                   disk->source);
    if (disk->source_xml)
      g_string_append_printf (out, ">\n%s      </source>\n", disk->source_xml);
    else
      g_string_append (out, "/>\n");
  }
  if (mirror) {
    g_string_append (out, "      <mirror");
    if (disk->mirror_file)
      append_attr (out, "file", disk->mirror_file);
    if (disk->mirror_format)
      append_attr (out, "format", disk->mirror_format);
    g_string_append (out, "/>\n");
  }
  g_string_append (out, "    </disk>\n");
}

/* "<memory snapshot=... file=..." without its end: the formatter's and
 * sm_snapshot_def_memory_request's. */
static void
append_memory (GString *out, const SmSnapshotDef *def)
{
  g_string_append (out, "<memory");
  if (def->memory_snapshot)
    append_attr (out, "snapshot", def->memory_snapshot);
  if (def->memory_file)
    append_attr (out, "file", def->memory_file);
}

char *
sm_snapshot_def_memory_request (const SmSnapshotDef *def)
{
  /* libvirt's states of a snapshot without memory: the disks alone
   * (disk-snapshot), a VM that was off (shutoff), none recorded. */
  static const char *const diskonly_states[] = {
    "disk-snapshot", "shutoff", "nostate", NULL
  };
  GString *what;

  if ((!def->memory_snapshot || strcmp (def->memory_snapshot, "no") == 0) &&
      !def->memory_file &&
      (!def->state || g_strv_contains (diskonly_states, def->state)))
    return NULL;
  what = g_string_new (NULL);
  if (def->memory_file ||
      (def->memory_snapshot && strcmp (def->memory_snapshot, "no") != 0)) {
    append_memory (what, def);
    g_string_append (what, ">");
  }
  if (def->state && !g_strv_contains (diskonly_states, def->state))
    g_string_append_printf (what, "%s<state>%s</state>",
                            what->len ? ", " : "", def->state);
  return g_string_free (what, FALSE);
}

char *
sm_snapshot_format (const SmSnapshotDef *def)
{
  GString *out = g_string_new ("<domainsnapshot>\n");
  gsize empty_len = out->len;
  guint i;

  /* libvirt's order. */
  if (def->name)
    append_text_element (out, 1, "name", def->name);
  if (def->description)
    append_text_element (out, 1, "description", def->description);
  if (def->state)
    append_text_element (out, 1, "state", def->state);
  if (def->parent) {
    g_string_append (out, "  <parent>\n");
    append_text_element (out, 2, "name", def->parent);
    g_string_append (out, "  </parent>\n");
  }
  if (def->creation_time >= 0)
    g_string_append_printf (out, "  <creationTime>%" PRId64 "</creationTime>\n",
                            def->creation_time);
  if (def->memory_snapshot || def->memory_file) {
    g_string_append (out, "  ");
    append_memory (out, def);
    g_string_append (out, "/>\n");
  }
  if (def->disks && def->disks->len > 0) {
    g_string_append (out, "  <disks>\n");
    for (i = 0; i < def->disks->len; i++)
      append_disk (out, g_ptr_array_index (def->disks, i));
    g_string_append (out, "  </disks>\n");
  }
  else if (def->has_disks)
    g_string_append (out, "  <disks/>\n");
  if (def->extra_xml)
    g_string_append (out, def->extra_xml);

  if (out->len == empty_len) {
    g_string_free (out, TRUE);
    return g_strdup ("<domainsnapshot/>\n");
  }
  g_string_append (out, "</domainsnapshot>\n");
  return g_string_free (out, FALSE);
}
