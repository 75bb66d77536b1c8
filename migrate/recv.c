/* SPDX-License-Identifier: MIT */
/*
 * The destination's side of a live migration (migrate.h): the handshake,
 * the machine read from the stream and loaded as a restore loads an
 * image (everything checked before anything runs), then the acceptance
 * and the source's go-ahead. Without the go-ahead the machine is
 * destroyed, never run: the source runs the guest on.
 */
#include "migrate/migrate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kernel/machine.h"
#include "kernel/util/log.h"
#include "migrate/migrate_priv.h"
#include "snapshot/stream.h"
#include "snapshot/vmsnap.h"

/*
 * Refuses: says why, stops sending, and reads what is still coming for a
 * moment, so that the source reads the reason instead of a reset.
 */
static void refuse(int fd, int ret, const char *why)
{
	char sink[65536];
	int i;

	if (wire_send_reply(fd, ret < 0 ? -ret : EPROTO, why) < 0)
		return;
	shutdown(fd, SHUT_WR);
	for (i = 0; i < 200 && wire_readable(fd, 10); i++)
		if (recv(fd, sink, sizeof(sink), 0) <= 0)
			break;
}

/*
 * Fault injection for the tests that prove a failed migration loses
 * nothing: VMRUN_TEST_MIGRATE_FAULT=mid-stream drops the connection after
 * 64 KiB of the image, =before-accept once the whole machine is loaded
 * but before saying so.
 */
static int migrate_fault(void)
{
	const char *e = getenv("VMRUN_TEST_MIGRATE_FAULT");

	return !e			   ? 0 :
	       !strcmp(e, "mid-stream")	   ? 1 :
	       !strcmp(e, "before-accept") ? 2 :
					     0;
}

struct recv_ctx {
	int fd;
	uint64_t reported;
};

/* Tells the source how far the image has been read (its drain waits on
 * it), at most every 16 KiB of the stream. */
static void on_consumed(void *opaque, uint64_t bytes)
{
	struct recv_ctx *r = opaque;

	if (bytes < r->reported + (16u << 10))
		return;
	r->reported = bytes;
	/* A link gone shows in the stream's next read. */
	(void)wire_send_progress(r->fd, bytes);
}

int migrate_recv(int fd, const char *peer, const struct vmsnap_restore_opts *o,
		 struct machine **out, struct vmsnap_stats *st, char *err,
		 size_t errlen)
{
	struct recv_ctx rc = { .fd = fd };
	struct vmsnap_restore_opts ro;
	struct machine *m = NULL;
	struct stream *s;
	uint32_t version;
	char why[WIRE_MAX_MESSAGE];
	int ret;

	ret = wire_recv_hello(fd, &version, err, errlen);
	if (ret == -EPROTO)
		return -EBADMSG;
	if (ret < 0)
		return ret;
	if (version != MIGRATE_VERSION) {
		ret = err_printf(err, errlen, -EPROTONOSUPPORT,
				 "migration protocol version %u; this vmrun "
				 "speaks %u",
				 version, MIGRATE_VERSION);
		refuse(fd, ret, err);
		return ret;
	}
	ret = wire_send_reply(fd, 0, "");
	if (ret < 0)
		return err_printf(err, errlen, ret, "answering %s: %s", peer,
				  strerror(-ret));
	if (migrate_fault() == 1) {
		char sink[65536];

		(void)!recv(fd, sink, sizeof(sink), MSG_WAITALL);
		return err_printf(err, errlen, -ECONNABORTED,
				  "fault injected: gone mid-stream");
	}
	ret = stream_open_fd_dir(fd, false, &s);
	if (ret < 0)
		return err_printf(err, errlen, ret, "%s", strerror(-ret));
	ro = *o;
	ro.consumed = on_consumed;
	ro.consumed_opaque = &rc;
	ret = vmsnap_restore_stream(s, peer, &ro, &m, st, err, errlen);
	if (!ret && migrate_fault() == 2) {
		machine_destroy(m);
		return err_printf(err, errlen, -ECONNABORTED,
				  "fault injected: gone before accepting");
	}
	if (ret < 0) {
		/* A stalled or closed link is no refusal: nobody listens. */
		if (ret != -ETIMEDOUT && ret != -ECONNRESET && ret != -EPIPE)
			refuse(fd, ret, err);
		return ret;
	}
	ret = wire_send_reply(fd, 0, "loaded");
	if (!ret)
		ret = wire_recv_go(fd);
	if (ret < 0) {
		snprintf(why, sizeof(why), "%s", strerror(-ret));
		machine_destroy(m);
		return err_printf(err, errlen, ret,
				  "the source did not confirm the switch (%s): "
				  "it runs the guest on",
				  ret == -EPROTO ? "a malformed answer" : why);
	}
	*out = m;
	return 0;
}
