/* SPDX-License-Identifier: MIT */
/*
 * The source's side of a live migration (migrate.h): the handshake, the
 * live save onto the socket, and the wait for the destination's
 * acceptance with the vCPUs frozen, which decides whether the VM stops
 * here for good or runs on as if nothing had happened.
 */
#include "migrate/migrate.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kernel/machine.h"
#include "kernel/util/log.h"
#include "kernel/vm.h"
#include "migrate/migrate_priv.h"
#include "snapshot/stream.h"
#include "snapshot/vmsnap.h"

struct send_ctx {
	int fd;
	struct stream *s;
	struct machine *m;
	const char *peer;
	const struct migrate_opts *o;
	struct migrate_stats *st;
	/* The image bytes the destination has read, as it last said. */
	uint64_t consumed;
	/* The destination's refusal, when it gave one. */
	int refused;
	char why[WIRE_MAX_MESSAGE + 1];
};

static int read_frame(struct send_ctx *x, int *status);

/*
 * Between slices of memory: the client's progress, and a look for a
 * refusal the destination sent while pages were still going out (it
 * stops reading then), which fails the stream at once.
 */
static void on_progress(void *opaque, uint64_t done, uint64_t total)
{
	struct send_ctx *x = opaque;
	int status = 0;

	if (x->o->progress)
		x->o->progress(x->o->opaque, done, total);
	while (!x->refused && wire_readable(x->fd, 0) &&
	       read_frame(x, &status) == 0)
		;
}

/*
 * Reads one frame from the destination: its progress, or a reply, which
 * at this point can only be a refusal (then the stream is failed at once
 * and -ECONNABORTED returned). The link's failures are -errno.
 */
static int read_frame(struct send_ctx *x, int *status)
{
	enum wire_kind kind;
	uint64_t bytes = 0;
	int ret = wire_recv_frame(x->fd, &kind, status, &bytes, x->why,
				  sizeof(x->why));

	if (!ret && kind == WIRE_PROGRESS) {
		if (bytes > x->consumed)
			x->consumed = bytes;
		return 0;
	}
	if (ret < 0) {
		*status = ECONNABORTED;
		snprintf(x->why, sizeof(x->why), "it closed the connection");
	}
	x->refused = *status ? *status : EPROTO;
	stream_set_error(x->s, -ECONNABORTED);
	return -ECONNABORTED;
}

/* Bytes of a round the destination may not have said it read yet: what
 * follows its last page section (frame ends). */
#define DRAIN_SLACK (64u << 10)

/*
 * After a running round: waits (the vCPUs run) until the destination has
 * read about all that was sent, so that the round's rate is the whole
 * pipeline's (sending, its decompressing and faulting pages in) and the
 * frozen end does not wait behind a backlog.
 */
static int on_drain(void *opaque, struct stream *s, char *err, size_t errlen)
{
	struct send_ctx *x = opaque;
	uint64_t sent = stream_bytes_written(s);
	int status = 0, ret = 0;

	while (!ret && x->consumed + DRAIN_SLACK < sent)
		ret = read_frame(x, &status);
	if (ret < 0)
		return err_printf(err, errlen, ret,
				  "the destination refused the machine: %s",
				  x->why);
	return 0;
}

static void on_round(void *opaque, unsigned int round, uint64_t pages,
		     uint64_t bytes, uint64_t ns, uint64_t next)
{
	struct send_ctx *x = opaque;

	x->st->last_round_pages = pages;
	x->st->last_round_bytes = bytes;
	x->st->last_round_ns = ns;
	pr_info("migration round %u: %llu pages, %llu bytes in %.1f ms; %llu "
		"dirty again",
		round, (unsigned long long)pages, (unsigned long long)bytes,
		(double)ns / 1e6, (unsigned long long)next);
}

/*
 * The image is complete and sent, the vCPUs frozen: the destination
 * loads it and answers. Only its acceptance stops the VM here, before
 * the thaw, so that no vCPU runs on this side once the other may.
 */
static int on_commit(void *opaque, char *err, size_t errlen)
{
	struct send_ctx *x = opaque;
	uint64_t t0 = vmsnap_now_ns();
	int status = 0, ret;

	ret = wire_recv_reply(x->fd, &status, x->why, sizeof(x->why));
	x->st->accept_ns = vmsnap_now_ns() - t0;
	if (ret < 0)
		return err_printf(err, errlen, ret,
				  "the destination did not accept the "
				  "machine: %s",
				  ret == -EPROTO ? "a malformed answer" :
						   strerror(-ret));
	if (status) {
		x->refused = status;
		return err_printf(err, errlen, -status,
				  "the destination refused the machine: %s",
				  x->why);
	}
	ret = wire_send_go(x->fd);
	if (ret < 0)
		return err_printf(err, errlen, ret,
				  "confirming to the destination: %s",
				  strerror(-ret));
	vm_stop_detail(machine_vm(x->m), VM_EXIT_REQUESTED, "migrated to %s",
		       x->peer);
	return 0;
}

int migrate_send(struct machine *m, int fd, const char *peer,
		 const struct migrate_opts *o, struct migrate_stats *st,
		 char *err, size_t errlen)
{
	struct send_ctx x = {
		.fd = fd, .m = m, .peer = peer, .o = o, .st = st
	};
	struct vmsnap_save_opts so = {
		.codec = o->codec,
		.aligned = o->codec == IMAGE_CODEC_NONE,
		.live = true,
		.live_rounds = 1,
		.downtime_ns = o->downtime_ns,
		.live_max_rounds = o->max_rounds,
		.round = on_round,
		.drain = on_drain,
		.commit = on_commit,
		.commit_opaque = &x,
		.progress = on_progress,
		.opaque = &x,
	};
	uint64_t t0 = vmsnap_now_ns();
	struct vmsnap_stats vs;
	int ret, status = 0;

	memset(st, 0, sizeof(*st));
	if (vm_wait(machine_vm(m), 0) != VM_EXIT_NONE)
		return err_printf(err, errlen, -ESRCH, "the VM is stopping");
	ret = wire_send_hello(fd);
	if (!ret)
		ret = wire_recv_reply(fd, &status, x.why, sizeof(x.why));
	if (ret < 0)
		return err_printf(err, errlen, ret, "handshake with %s: %s",
				  peer,
				  ret == -EPROTO ? "not a vmrun destination" :
						   strerror(-ret));
	if (status)
		return err_printf(err, errlen, -status,
				  "%s refused the migration: %s", peer, x.why);
	ret = stream_open_fd_dir(fd, true, &x.s);
	if (ret < 0)
		return err_printf(err, errlen, ret, "%s", strerror(-ret));
	ret = vmsnap_save_stream(m, x.s, &so, &vs, err, errlen);
	/* A write failed: the destination may have said why first. */
	if (ret < 0 && !x.refused && wire_readable(fd, 1000) &&
	    wire_recv_reply(fd, &status, x.why, sizeof(x.why)) == 0 && status)
		x.refused = status;
	if (ret < 0 && x.refused && !strstr(err, x.why))
		err_printf(err, errlen, ret,
			   "the destination refused the machine: %s", x.why);
	stream_close(x.s);
	st->bytes = vs.bytes;
	st->pages = vs.pages;
	st->zero_pages = vs.zero_pages;
	st->mem_bytes = vs.mem_bytes;
	st->frozen_ns = vs.frozen_ns;
	st->rounds = vs.rounds;
	st->ns = vmsnap_now_ns() - t0;
	return ret;
}
