/* SPDX-License-Identifier: MIT */
#ifndef VMM_SNAPSHOT_STATE_DIFF_H
#define VMM_SNAPSHOT_STATE_DIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

/*
 * Compares two messages of one type field by field, through their
 * protobuf-c descriptors. Returns true if they differ, with the path of the
 * first differing field in @out (e.g. "msrs[12](index 0x10).value:
 * 0x5 != 0x6"; repeated elements that have an "index" field name it).
 */
bool state_diff(const ProtobufCMessage *a, const ProtobufCMessage *b, char *out,
		size_t n);

#endif /* VMM_SNAPSHOT_STATE_DIFF_H */
