/* SPDX-License-Identifier: MIT */
#ifndef VMM_MIGRATE_MIGRATE_PRIV_H
#define VMM_MIGRATE_MIGRATE_PRIV_H

/*
 * The frames around the image stream (docs/migration-protocol.md), read
 * and written on the raw socket, never through a buffered stream, so
 * that no read-ahead takes bytes that belong to the image.
 */

#include <stddef.h>
#include <stdint.h>

/* A reply's message is at most this long. */
#define WIRE_MAX_MESSAGE 1024

/* HELLO: "VMRUNMIG", version, flags (0). */
int wire_send_hello(int fd);
/* Reads a HELLO; -EPROTO (with @err) if it is none, -errno for the link. */
int wire_recv_hello(int fd, uint32_t *version, char *err, size_t errlen);

/* REPLY: "VMRR", status (0, or a positive errno value), message. */
int wire_send_reply(int fd, int status, const char *msg);
int wire_recv_reply(int fd, int *status, char *msg, size_t len);

/*
 * PROGRESS: "VMRP", u64 bytes of the image read so far: the destination's
 * pace, which the source waits on after each running round. The source
 * reads any frame with wire_recv_frame(); wire_recv_reply() skips these.
 */
int wire_send_progress(int fd, uint64_t bytes);
enum wire_kind { WIRE_REPLY, WIRE_PROGRESS };
int wire_recv_frame(int fd, enum wire_kind *kind, int *status, uint64_t *bytes,
		    char *msg, size_t len);

/* GO: "VMGO", the source's go-ahead once it has stopped for good. */
int wire_send_go(int fd);
int wire_recv_go(int fd);

/* Whether a byte waits on @fd (poll, no waiting). */
int wire_readable(int fd, int timeout_ms);

#endif /* VMM_MIGRATE_MIGRATE_PRIV_H */
