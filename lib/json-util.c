/* libsnapmig — reading members of json-c objects (see json-util.h). */
#include "json-util.h"

/* json_object_object_get_ex () already answers false for a NULL or
 * non-object OBJ, which is what lets the accessors chain. */
static json_object *
get_typed (json_object *obj, const char *key, json_type type)
{
  json_object *v;

  if (!json_object_object_get_ex (obj, key, &v) ||
      !json_object_is_type (v, type))
    return NULL;
  return v;
}

const char *
sm_json_get_string (json_object *obj, const char *key)
{
  return json_object_get_string (get_typed (obj, key, json_type_string));
}

json_object *
sm_json_get_object (json_object *obj, const char *key)
{
  return get_typed (obj, key, json_type_object);
}

json_object *
sm_json_get_array (json_object *obj, const char *key)
{
  return get_typed (obj, key, json_type_array);
}

bool
sm_json_get_int64 (json_object *obj, const char *key, int64_t *out)
{
  json_object *v;

  if (!json_object_object_get_ex (obj, key, &v))
    return false;
  *out = json_object_get_int64 (v);
  return true;
}

bool
sm_json_get_uint64 (json_object *obj, const char *key, uint64_t *out)
{
  json_object *v;

  if (!json_object_object_get_ex (obj, key, &v))
    return false;
  *out = json_object_get_uint64 (v);
  return true;
}

bool
sm_json_get_bool (json_object *obj, const char *key, bool *out)
{
  json_object *v;

  if (!json_object_object_get_ex (obj, key, &v))
    return false;
  *out = json_object_get_boolean (v);
  return true;
}
