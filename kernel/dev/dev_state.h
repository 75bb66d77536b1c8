/* SPDX-License-Identifier: MIT */
#ifndef VMM_DEV_DEV_STATE_H
#define VMM_DEV_DEV_STATE_H

/*
 * Devices save their state as the protobuf messages of proto/devices.proto
 * (dev_ops.state_type names the message); these keep save()'s contract.
 */

#include <errno.h>
#include <limits.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

#include "devices.pb-c.h"

/* Packs @msg into @buf (@len bytes); with @buf NULL, the size needed. */
static inline int dev_state_pack(const ProtobufCMessage *msg, void *buf,
				 size_t len)
{
	size_t n = protobuf_c_message_get_packed_size(msg);

	if (n > INT_MAX)
		return -E2BIG;
	if (!buf)
		return (int)n;
	if (len < n)
		return -ENOSPC;
	return (int)protobuf_c_message_pack(msg, buf);
}

#endif /* VMM_DEV_DEV_STATE_H */
