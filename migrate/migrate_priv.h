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

/* GO: "VMGO", the source's go-ahead once it has stopped for good. */
int wire_send_go(int fd);
int wire_recv_go(int fd);

/* Whether a byte waits on @fd (poll, no waiting). */
int wire_readable(int fd, int timeout_ms);

#endif /* VMM_MIGRATE_MIGRATE_PRIV_H */
