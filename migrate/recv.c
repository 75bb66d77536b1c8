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
 * 64 KiB of the image (pages under way), =before-accept once the whole machine is loaded
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

/*
 * For the tests that cancel a migration in a chosen phase:
 * VMRUN_TEST_MIGRATE_HOLD=ready|accept holds the destination before it
 * says it can build the machine, or that it has loaded it, while the
 * file VMRUN_TEST_MIGRATE_HOLD_FILE exists (60 s at most).
 */
static void migrate_hold(const char *where)
{
	const char *e = getenv("VMRUN_TEST_MIGRATE_HOLD");
	const char *f = getenv("VMRUN_TEST_MIGRATE_HOLD_FILE");
	int i;

	if (!e || !f || strcmp(e, where))
		return;
	for (i = 0; i < 6000 && access(f, F_OK) == 0; i++)
		usleep(10000);
}

struct recv_ctx {
	int fd;
	uint64_t reported;
	int fault_mode; /* migrate_fault(), read once */
	bool fault;	/* injected: the link dropped */
};

/* Tells the source how far the image has been read (its drain waits on
 * it), at most every 16 KiB of the stream. */
static void on_consumed(void *opaque, uint64_t bytes)
{
	struct recv_ctx *r = opaque;

	if (r->fault_mode == 1 && bytes > (64u << 10)) {
		/* Gone mid-stream: the next read ends the restore. */
		shutdown(r->fd, SHUT_RDWR);
		r->fault = true;
		return;
	}
	if (bytes < r->reported + (16u << 10))
		return;
	r->reported = bytes;
	/* A link gone shows in the stream's next read. */
	(void)wire_send_progress(r->fd, bytes);
}

/* The machine is built and fits this host: the source may send pages. */
static void on_built(void *opaque)
{
	struct recv_ctx *r = opaque;

	migrate_hold("ready");
	/* A link gone shows in the stream's next read. */
	(void)wire_send_reply(r->fd, 0, "ready");
}

int migrate_recv(int fd, const char *peer, const struct vmsnap_restore_opts *o,
		 struct machine **out, struct vmsnap_stats *st, char *err,
		 size_t errlen)
{
	struct recv_ctx rc = { .fd = fd, .fault_mode = migrate_fault() };
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
	ret = stream_open_fd_dir(fd, false, &s);
	if (ret < 0)
		return err_printf(err, errlen, ret, "%s", strerror(-ret));
	ro = *o;
	ro.consumed = on_consumed;
	ro.consumed_opaque = &rc;
	ro.built = on_built;
	ret = vmsnap_restore_stream(s, peer, &ro, &m, st, err, errlen);
	if (!ret && rc.fault_mode == 2) {
		machine_destroy(m);
		return err_printf(err, errlen, -ECONNABORTED,
				  "fault injected: gone before accepting");
	}
	if (ret < 0 && rc.fault)
		return err_printf(err, errlen, -ECONNABORTED,
				  "fault injected: gone mid-stream");
	if (ret < 0) {
		/* A stalled or closed link is no refusal: nobody listens. */
		if (ret != -ETIMEDOUT && ret != -ECONNRESET && ret != -EPIPE)
			refuse(fd, ret, err);
		return ret;
	}
	migrate_hold("accept");
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
