/* libsnapmig — reading members of json-c objects (QMP replies, journals,
 * state files).
 *
 * Every accessor takes the object that holds KEY and tolerates a NULL or
 * non-object OBJ (the member is then absent), so that lookups chain:
 *   sm_json_get_string (sm_json_get_object (reply, "file"), "filename")
 * Nothing here takes a reference: a returned string or object belongs to OBJ
 * and lives as long as OBJ does.
 */
#ifndef SM_JSON_UTIL_H
#define SM_JSON_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <json-c/json.h>

/* The string member KEY of OBJ; NULL when OBJ is NULL or not an object, KEY
 * is absent, or its value is not a string.  Owned by OBJ. */
const char *sm_json_get_string (json_object *obj, const char *key);

/* The object member KEY of OBJ; NULL when OBJ is NULL or not an object, KEY
 * is absent, or its value is not an object.  Owned by OBJ (no reference
 * taken). */
json_object *sm_json_get_object (json_object *obj, const char *key);

/* The array member KEY of OBJ; NULL when OBJ is NULL or not an object, KEY
 * is absent, or its value is not an array.  Owned by OBJ (no reference
 * taken). */
json_object *sm_json_get_array (json_object *obj, const char *key);

/* Whether OBJ has member KEY; when it has, *OUT receives its value converted
 * the way json_object_get_int64 () / _get_uint64 () / _get_boolean () convert
 * (a number as is, a numeric string parsed, null and other types 0/false).
 * False, and *OUT untouched, when OBJ is NULL or not an object or KEY is
 * absent.  The conversion is that lenient on purpose: QEMU sends these as
 * numbers and booleans, and callers treat a present member the same
 * whatever json-c makes of it. */
bool sm_json_get_int64 (json_object *obj, const char *key, int64_t *out);
bool sm_json_get_uint64 (json_object *obj, const char *key, uint64_t *out);
bool sm_json_get_bool (json_object *obj, const char *key, bool *out);

#endif /* SM_JSON_UTIL_H */
