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
	struct stream *s;
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
		/* Gone mid-stream: the next read ends the restore (on
		 * several connections, the stream's error does). */
		shutdown(r->fd, SHUT_RDWR);
		stream_set_error(r->s, -ECONNRESET);
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

/*
 * The source's @n data connections, accepted on @lfd within the link's
 * time-out, each introduced by @token and its place; a stray connection
 * is closed and not counted. The stream over them, or -errno.
 */
static int accept_data(int lfd, const struct migrate_uri *u, unsigned int n,
		       uint64_t token, struct stream **s, char *err,
		       size_t errlen)
{
	uint64_t until = vmsnap_now_ns() + MIGRATE_IO_TIMEOUT_MS * 1000000ULL;
	int fds[STRIPE_MAX_CONNS];
	unsigned int got = 0, i;
	int ret = 0;

	for (i = 0; i < n; i++)
		fds[i] = -1;
	while (got < n) {
		uint64_t now = vmsnap_now_ns();
		uint32_t index, count;
		uint64_t tok;
		int fd;

		if (now >= until) {
			ret = err_printf(err, errlen, -ETIMEDOUT,
					 "%u of the source's %u connections "
					 "came (timed out)",
					 got, n);
			break;
		}
		fd = migrate_accept_within(lfd, u,
					   (int)((until - now) / 1000000ULL),
					   MIGRATE_IO_TIMEOUT_MS, err, errlen);
		if (fd < 0) {
			ret = fd;
			break;
		}
		if (wire_recv_data_hello(fd, &index, &count, &tok) < 0 ||
		    tok != token || count != n || index >= n ||
		    fds[index] >= 0) {
			pr_warn("incoming migration: a connection that is not "
				"one of the source's: closed");
			close(fd);
			continue;
		}
		fds[index] = fd;
		got++;
	}
	if (ret < 0) {
		for (i = 0; i < n; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		return ret;
	}
	ret = stripe_open(fds, n, false, MIGRATE_IO_TIMEOUT_MS, s);
	return ret < 0 ? err_printf(err, errlen, ret, "%s", strerror(-ret)) : 0;
}

int migrate_recv(int fd, int lfd, const struct migrate_uri *u, const char *peer,
		 const struct vmsnap_restore_opts *o, struct machine **out,
		 struct vmsnap_stats *st, char *err, size_t errlen)
{
	struct recv_ctx rc = { .fd = fd, .fault_mode = migrate_fault() };
	struct vmsnap_restore_opts ro;
	struct machine *m = NULL;
	struct stream *s;
	uint32_t version, conns;
	uint64_t token;
	char why[WIRE_MAX_MESSAGE];
	int ret;

	ret = wire_recv_hello(fd, &version, &conns, &token, err, errlen);
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
	if (conns == 1 || conns > STRIPE_MAX_CONNS || (conns && lfd < 0)) {
		ret = conns && lfd < 0 ?
			      err_printf(err, errlen, -EINVAL,
					 "the source asks for %u connections; "
					 "this destination has one (fd:N)",
					 conns) :
			      err_printf(err, errlen, -EBADMSG,
					 "the source asks for %u connections "
					 "(2 to %u)",
					 conns, STRIPE_MAX_CONNS);
		refuse(fd, ret, err);
		return ret;
	}
	ret = wire_send_reply(fd, 0, "");
	if (ret < 0)
		return err_printf(err, errlen, ret, "answering %s: %s", peer,
				  strerror(-ret));
	if (conns) {
		ret = accept_data(lfd, u, conns, token, &s, err, errlen);
		if (ret < 0) {
			refuse(fd, ret, err);
			return ret;
		}
	} else {
		ret = stream_open_fd_dir(fd, false, &s);
		if (ret < 0)
			return err_printf(err, errlen, ret, "%s",
					  strerror(-ret));
	}
	rc.s = s;
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
