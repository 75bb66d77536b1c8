/* SPDX-License-Identifier: MIT */
#include "snapshot/state_diff.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static size_t elem_size(const ProtobufCFieldDescriptor *f)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return 8;
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(void *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	default:
		return 4;
	}
}

static uint64_t scalar(const void *p, size_t sz)
{
	uint32_t v32;
	uint64_t v64;

	if (sz == 8) {
		memcpy(&v64, p, 8);
		return v64;
	}
	memcpy(&v32, p, 4);
	return v32;
}

static bool msg_diff(const ProtobufCMessage *a, const ProtobufCMessage *b,
		     const char *path, char *out, size_t n);

/* Compares one value (an element of a repeated field, or the field). */
static bool value_diff(const ProtobufCFieldDescriptor *f, const void *pa,
		       const void *pb, const char *path, char *out, size_t n)
{
	size_t sz = elem_size(f);

	if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
		const ProtobufCMessage *ma, *mb;

		memcpy(&ma, pa, sizeof(ma));
		memcpy(&mb, pb, sizeof(mb));
		if (!ma || !mb) {
			if (ma == mb)
				return false;
			snprintf(out, n, "%s: %s != %s", path,
				 ma ? "present" : "absent",
				 mb ? "present" : "absent");
			return true;
		}
		return msg_diff(ma, mb, path, out, n);
	}
	if (f->type == PROTOBUF_C_TYPE_BYTES) {
		const ProtobufCBinaryData *ba = pa, *bb = pb;
		size_t i;

		if (ba->len != bb->len) {
			snprintf(out, n, "%s: %zu != %zu bytes", path, ba->len,
				 bb->len);
			return true;
		}
		for (i = 0; i < ba->len && ba->data[i] == bb->data[i]; i++)
			;
		if (i == ba->len)
			return false;
		snprintf(out, n, "%s: byte %#zx: %#x != %#x", path, i,
			 ba->data[i], bb->data[i]);
		return true;
	}
	if (f->type == PROTOBUF_C_TYPE_STRING) {
		const char *sa, *sb;

		memcpy(&sa, pa, sizeof(sa));
		memcpy(&sb, pb, sizeof(sb));
		if (!strcmp(sa ? sa : "", sb ? sb : ""))
			return false;
		snprintf(out, n, "%s: \"%s\" != \"%s\"", path, sa, sb);
		return true;
	}
	if (!memcmp(pa, pb, sz))
		return false;
	snprintf(out, n, "%s: %#" PRIx64 " != %#" PRIx64, path, scalar(pa, sz),
		 scalar(pb, sz));
	return true;
}

/* " (index 0x...)" for an element message with an "index" field. */
static void elem_name(const ProtobufCFieldDescriptor *f, const void *elem,
		      char *buf, size_t n)
{
	const ProtobufCMessageDescriptor *d = f->descriptor;
	const ProtobufCFieldDescriptor *ix;
	const ProtobufCMessage *m;

	buf[0] = 0;
	if (f->type != PROTOBUF_C_TYPE_MESSAGE)
		return;
	memcpy(&m, elem, sizeof(m));
	ix = protobuf_c_message_descriptor_get_field_by_name(d, "index");
	if (m && ix && ix->label != PROTOBUF_C_LABEL_REPEATED)
		snprintf(buf, n, "(index %#" PRIx64 ")",
			 scalar((const char *)m + ix->offset, elem_size(ix)));
}

static bool msg_diff(const ProtobufCMessage *a, const ProtobufCMessage *b,
		     const char *path, char *out, size_t n)
{
	const ProtobufCMessageDescriptor *d = a->descriptor;
	char sub[256], name[48];
	unsigned int i;

	for (i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const char *fa = (const char *)a + f->offset;
		const char *fb = (const char *)b + f->offset;
		size_t na, nb, j, sz = elem_size(f);
		const char *ea, *eb;

		if (f->label != PROTOBUF_C_LABEL_REPEATED) {
			snprintf(sub, sizeof(sub), "%s%s%s", path,
				 *path ? "." : "", f->name);
			if (value_diff(f, fa, fb, sub, out, n))
				return true;
			continue;
		}
		memcpy(&na, (const char *)a + f->quantifier_offset, sizeof(na));
		memcpy(&nb, (const char *)b + f->quantifier_offset, sizeof(nb));
		if (na != nb) {
			snprintf(out, n, "%s%s%s: %zu != %zu entries", path,
				 *path ? "." : "", f->name, na, nb);
			return true;
		}
		memcpy(&ea, fa, sizeof(ea));
		memcpy(&eb, fb, sizeof(eb));
		for (j = 0; j < na; j++) {
			elem_name(f, ea + j * sz, name, sizeof(name));
			snprintf(sub, sizeof(sub), "%s%s%s[%zu]%s", path,
				 *path ? "." : "", f->name, j, name);
			if (value_diff(f, ea + j * sz, eb + j * sz, sub, out,
				       n))
				return true;
		}
	}
	return false;
}

bool state_diff(const ProtobufCMessage *a, const ProtobufCMessage *b, char *out,
		size_t n)
{
	out[0] = 0;
	if (a->descriptor != b->descriptor) {
		snprintf(out, n, "different message types");
		return true;
	}
	return msg_diff(a, b, "", out, n);
}
