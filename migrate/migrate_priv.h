/* SPDX-License-Identifier: MIT */
#ifndef VMM_MIGRATE_MIGRATE_PRIV_H
#define VMM_MIGRATE_MIGRATE_PRIV_H

/*
 * The frames around the image stream (docs/migration-protocol.md), read
 * and written on the raw socket, never through a buffered stream, so
 * that no read-ahead takes bytes that belong to the image.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Little-endian fields of the frames and the chunk headers. */
static inline void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static inline uint64_t get64(const uint8_t *p)
{
	return get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* A reply's message is at most this long. */
#define WIRE_MAX_MESSAGE 1024

/*
 * HELLO: "VMRUNMIG", version, the number of data connections (0: the
 * stream goes on this one), and a token the data connections repeat.
 */
int wire_send_hello(int fd, uint32_t conns, uint64_t token);
/* Reads a HELLO; -EPROTO (with @err) if it is none, -errno for the link.
 * @conns and @token are read only when @version is this vmrun's. */
int wire_recv_hello(int fd, uint32_t *version, uint32_t *conns, uint64_t *token,
		    char *err, size_t errlen);

/* DATA: "VMRUNDAT", index, count, token: the first bytes of a data
 * connection. */
int wire_send_data_hello(int fd, uint32_t index, uint32_t conns,
			 uint64_t token);
int wire_recv_data_hello(int fd, uint32_t *index, uint32_t *conns,
			 uint64_t *token);

/*
 * One stream over @n connected sockets @fds (docs/migration-protocol.md,
 * "Several connections"): chunks of up to STRIPE_CHUNK bytes, chunk k on
 * connection k mod n behind a STRIPE_HEADER (u32 length, u32 k), sent or
 * received by a thread per connection. The stream owns the fds from
 * here, even on failure, and closes them with it. A reader waits
 * @timeout_ms at most for a chunk.
 */
#define STRIPE_CHUNK (256u << 10)
#define STRIPE_HEADER 8
/* Data connections at most. */
#define STRIPE_MAX_CONNS 16
struct stream;
int stripe_open(const int *fds, unsigned int n, bool writing,
		unsigned int timeout_ms, struct stream **out);

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
