/* SPDX-License-Identifier: MIT */
/* The frames around a migration's image stream (migrate_priv.h). */
#include "migrate/migrate_priv.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kernel/util/log.h"
#include "migrate/migrate.h"

static int send_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Exactly @len bytes; -ECONNRESET at a clean end, -ETIMEDOUT on a stall. */
static int recv_all(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = recv(fd, p, len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		if (n == 0)
			return -ECONNRESET;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* HELLO and DATA: an 8-byte magic, two u32 and the u64 token. */
static int send_intro(int fd, const char *magic, uint32_t a, uint32_t b,
		      uint64_t token)
{
	uint8_t f[24];

	memcpy(f, magic, 8);
	put32(f + 8, a);
	put32(f + 12, b);
	put64(f + 16, token);
	return send_all(fd, f, sizeof(f));
}

int wire_send_hello(int fd, uint32_t conns, uint64_t token)
{
	return send_intro(fd, "VMRUNMIG", MIGRATE_VERSION, conns, token);
}

int wire_recv_hello(int fd, uint32_t *version, uint32_t *conns, uint64_t *token,
		    char *err, size_t errlen)
{
	uint8_t b[24];
	int ret = recv_all(fd, b, 16);

	if (ret < 0)
		return err_printf(err, errlen, ret, "reading the handshake: %s",
				  strerror(-ret));
	if (memcmp(b, "VMRUNMIG", 8))
		return err_printf(
			err, errlen, -EPROTO,
			"not a vmrun migration stream (no handshake)");
	*version = get32(b + 8);
	*conns = 0;
	*token = 0;
	/* Another version's HELLO may be shorter: refused without more. */
	if (*version != MIGRATE_VERSION)
		return 0;
	ret = recv_all(fd, b + 16, 8);
	if (ret < 0)
		return err_printf(err, errlen, ret, "reading the handshake: %s",
				  strerror(-ret));
	*conns = get32(b + 12);
	*token = get64(b + 16);
	return 0;
}

int wire_send_data_hello(int fd, uint32_t index, uint32_t conns, uint64_t token)
{
	return send_intro(fd, "VMRUNDAT", index, conns, token);
}

int wire_recv_data_hello(int fd, uint32_t *index, uint32_t *conns,
			 uint64_t *token)
{
	uint8_t b[24];
	int ret = recv_all(fd, b, sizeof(b));

	if (ret < 0)
		return ret;
	if (memcmp(b, "VMRUNDAT", 8))
		return -EPROTO;
	*index = get32(b + 8);
	*conns = get32(b + 12);
	*token = get64(b + 16);
	return 0;
}

int wire_send_reply(int fd, int status, const char *msg)
{
	size_t n = strnlen(msg, WIRE_MAX_MESSAGE);
	uint8_t b[12 + WIRE_MAX_MESSAGE];

	memcpy(b, "VMRR", 4);
	put32(b + 4, (uint32_t)status);
	put32(b + 8, (uint32_t)n);
	memcpy(b + 12, msg, n);
	return send_all(fd, b, 12 + n);
}

int wire_send_progress(int fd, uint64_t bytes)
{
	uint8_t b[12];

	memcpy(b, "VMRP", 4);
	put64(b + 4, bytes);
	return send_all(fd, b, sizeof(b));
}

int wire_recv_frame(int fd, enum wire_kind *kind, int *status, uint64_t *bytes,
		    char *msg, size_t len)
{
	uint8_t b[12];
	char text[WIRE_MAX_MESSAGE + 1];
	uint32_t n;
	int ret = recv_all(fd, b, sizeof(b));

	if (ret < 0)
		return ret;
	if (!memcmp(b, "VMRP", 4)) {
		*kind = WIRE_PROGRESS;
		*bytes = get64(b + 4);
		return 0;
	}
	n = get32(b + 8);
	if (memcmp(b, "VMRR", 4) || n > WIRE_MAX_MESSAGE || get32(b + 4) > 4095)
		return -EPROTO;
	ret = recv_all(fd, text, n);
	if (ret < 0)
		return ret;
	text[n] = 0;
	snprintf(msg, len, "%s", text);
	*kind = WIRE_REPLY;
	*status = (int)get32(b + 4);
	return 0;
}

int wire_recv_reply(int fd, int *status, char *msg, size_t len)
{
	enum wire_kind kind;
	uint64_t bytes;
	int ret;

	do
		ret = wire_recv_frame(fd, &kind, status, &bytes, msg, len);
	while (!ret && kind == WIRE_PROGRESS);
	return ret;
}

int wire_send_go(int fd)
{
	return send_all(fd, "VMGO", 4);
}

int wire_recv_go(int fd)
{
	uint8_t b[4];
	int ret = recv_all(fd, b, sizeof(b));

	return ret < 0 ? ret : memcmp(b, "VMGO", 4) ? -EPROTO : 0;
}

int wire_readable(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int n;

	do
		n = poll(&p, 1, timeout_ms);
	while (n < 0 && errno == EINTR);
	return n > 0;
}
