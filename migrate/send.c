/* SPDX-License-Identifier: MIT */
/*
 * The source's side of a live migration (migrate.h): the handshake, the
 * live save onto the socket, paced by the bandwidth cap and converged by
 * throttling the vCPUs, and the wait for the destination's acceptance
 * with the vCPUs frozen, which decides whether the VM stops here for
 * good or runs on as if nothing had happened.
 */
#include "migrate/migrate.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

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
	uint64_t t0;
	/* The bandwidth cap's reference: when the running rounds began and
	 * the stream's bytes then. */
	uint64_t cap_t0, cap_b0;
	/* The image bytes the destination has read, as it last said, and
	 * when that last grew. */
	uint64_t consumed, consumed_ns;
	/* The destination's refusal, when it gave one. */
	int refused;
	char why[WIRE_MAX_MESSAGE + 1];
	/*
	 * Of the downtime target, what the frozen end spends besides its
	 * pages (the state, the destination loading it, the answer): taken
	 * to be what the destination took to check the machine and answer,
	 * at most half the target.
	 */
	uint64_t reserve_ns;
	/* Given up on this side (cancel, time limit, VM stopping): why. */
	int aborted;
	char abort_why[256];
};

const char *migrate_phase_name(enum migrate_phase p)
{
	static const char *const n[] = { "handshake", "rounds", "final",
					 "accept",    "done",	"failed" };

	return (unsigned int)p < ARRAY_SIZE(n) ? n[p] : "?";
}

static int read_frame(struct send_ctx *x, int *status);

static unsigned int io_timeout_ms(const struct send_ctx *x)
{
	return x->o->io_timeout_ms ? x->o->io_timeout_ms :
				     MIGRATE_IO_TIMEOUT_MS;
}

/* Gives the migration up for good with @ret, @why kept for messages. */
static int give_up(struct send_ctx *x, int ret, const char *why)
{
	snprintf(x->abort_why, sizeof(x->abort_why), "%s", why);
	x->aborted = -ret;
	if (x->s)
		stream_set_error(x->s, ret);
	return ret;
}

/*
 * The caller's loop, and the limits this side sets itself: -errno once
 * the migration is to be given up (then for good: the reason is kept).
 */
static int service(struct send_ctx *x)
{
	uint64_t now = vmsnap_now_ns();
	char why[128];
	int ret = 0;

	x->st->ns = now - x->t0;
	if (x->aborted)
		return -x->aborted;
	if (x->o->service)
		ret = x->o->service(x->o->opaque);
	if (ret < 0)
		return give_up(x, ret,
			       ret == -ECANCELED ? "cancelled" :
			       ret == -ESRCH	 ? "the VM is stopping" :
						   strerror(-ret));
	if (x->o->max_ns && now - x->t0 > x->o->max_ns) {
		snprintf(why, sizeof(why),
			 "not done within the time limit of %.0f s",
			 (double)x->o->max_ns / 1e9);
		return give_up(x, -ETIME, why);
	}
	return 0;
}

/*
 * Waits until the destination has a frame for us, running the caller's
 * loop meanwhile: 0, the caller's -errno, or -ETIMEDOUT after
 * the link's time-out of silence.
 */
static int await_frame(struct send_ctx *x)
{
	uint64_t until = vmsnap_now_ns() + io_timeout_ms(x) * 1000000ULL;
	int ret;

	for (;;) {
		if (wire_readable(x->fd, 20))
			return 0;
		ret = service(x);
		if (ret < 0)
			return ret;
		if (vmsnap_now_ns() > until)
			return -ETIMEDOUT;
	}
}

/* Bytes of a round the destination may not have said it read yet: what
 * follows its last page section (frame ends). */
#define DRAIN_SLACK (64u << 10)

/*
 * While pages go out: reads what the destination sent (its progress, or
 * a refusal), and gives up on a destination that has read nothing for
 * the link's time-out though more was sent (stopped, or its host gone):
 * the socket's own time-out would wait for the buffers on both ends to
 * fill first, many megabytes at a capped rate.
 */
static int pump(struct send_ctx *x)
{
	unsigned int ms = io_timeout_ms(x);
	char why[96];
	int status = 0, ret;

	while (!x->refused && wire_readable(x->fd, 0) &&
	       read_frame(x, &status) == 0)
		;
	ret = service(x);
	if (ret < 0 || x->refused)
		return ret;
	if (stream_bytes_written(x->s) > x->consumed + DRAIN_SLACK &&
	    vmsnap_now_ns() - x->consumed_ns > ms * 1000000ULL) {
		snprintf(why, sizeof(why),
			 "the destination read nothing for %u s (timed out)",
			 ms / 1000);
		return give_up(x, -ETIMEDOUT, why);
	}
	return 0;
}

/* Sleeps @ns in steps, pump() between them. */
static int pace(struct send_ctx *x, uint64_t ns)
{
	uint64_t until = vmsnap_now_ns() + ns, now;
	int ret = 0;

	while (!ret && (now = vmsnap_now_ns()) < until) {
		uint64_t step = MIN(until - now, 20000000ULL);
		struct timespec ts = { 0, (long)step };

		nanosleep(&ts, NULL);
		ret = pump(x);
	}
	return ret;
}

/*
 * Between slices of memory: the client's progress, the caller's loop, a
 * look for a refusal the destination sent while pages were still going
 * out (it stops reading then), which fails the stream at once, and with
 * the vCPUs running, the bandwidth cap.
 */
static void on_progress(void *opaque, uint64_t done, uint64_t total)
{
	struct send_ctx *x = opaque;

	x->st->pass_done = done;
	x->st->pass_total = total;
	x->st->bytes = stream_bytes_written(x->s);
	if (x->o->progress)
		x->o->progress(x->o->opaque, done, total);
	if (pump(x) < 0 || x->refused)
		return;
	if (x->o->bandwidth && x->st->phase == MIGRATE_ROUNDS) {
		uint64_t sent = x->st->bytes - x->cap_b0;
		uint64_t due = x->cap_t0 + (uint64_t)((double)sent * 1e9 /
						      (double)x->o->bandwidth);
		uint64_t now = vmsnap_now_ns();

		if (due > now)
			pace(x, due - now);
	}
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
		if (bytes > x->consumed) {
			x->consumed = bytes;
			x->consumed_ns = vmsnap_now_ns();
		}
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

/* Reads the destination's next reply (its progress frames taken in
 * passing), serving the caller while none is there. */
static int await_reply(struct send_ctx *x, int *status)
{
	enum wire_kind kind = WIRE_PROGRESS;
	uint64_t bytes;
	int ret = 0;

	while (!ret && kind == WIRE_PROGRESS) {
		ret = await_frame(x);
		if (!ret)
			ret = wire_recv_frame(x->fd, &kind, status, &bytes,
					      x->why, sizeof(x->why));
		if (!ret && kind == WIRE_PROGRESS && bytes > x->consumed) {
			x->consumed = bytes;
			x->consumed_ns = vmsnap_now_ns();
		}
	}
	return ret;
}

/*
 * The header, the machine section and the layout are out: the
 * destination builds that machine and checks it against its host and
 * its command line, and says so before a single page is sent.
 */
static int on_begun(void *opaque, struct stream *s, char *err, size_t errlen)
{
	struct send_ctx *x = opaque;
	uint64_t t0 = vmsnap_now_ns();
	int status = 0, ret = stream_flush(s);

	if (!ret)
		ret = await_reply(x, &status);
	x->reserve_ns = MIN(vmsnap_now_ns() - t0, x->o->downtime_ns / 2);
	if (ret < 0)
		return err_printf(err, errlen, ret,
				  "%s did not check the machine: %s", x->peer,
				  x->aborted	 ? x->abort_why :
				  ret == -EPROTO ? "a malformed answer" :
						   strerror(-ret));
	if (status) {
		x->refused = status;
		return err_printf(err, errlen, -status,
				  "%s refused the machine: %s", x->peer,
				  x->why);
	}
	x->st->phase = MIGRATE_ROUNDS;
	x->consumed_ns = vmsnap_now_ns();
	x->cap_t0 = vmsnap_now_ns();
	x->cap_b0 = stream_bytes_written(s);
	return 0;
}

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

	while (!ret && x->consumed + DRAIN_SLACK < sent) {
		ret = await_frame(x);
		if (!ret)
			ret = read_frame(x, &status);
	}
	if (ret < 0 && x->aborted)
		return err_printf(err, errlen, ret, "%s", x->abort_why);
	if (ret < 0 && x->refused)
		return err_printf(err, errlen, ret,
				  "the destination refused the machine: %s",
				  x->why);
	if (ret < 0)
		return err_printf(err, errlen, ret,
				  "waiting for the destination to read the "
				  "round: %s",
				  strerror(-ret));
	return 0;
}

/* After a running round: the figures, then more rounds, the frozen end,
 * or (not converging in the rounds allowed) giving up. */
static int on_round(void *opaque, const struct vmsnap_round *r, char *err,
		    size_t errlen)
{
	struct send_ctx *x = opaque;
	struct migrate_stats *st = x->st;
	unsigned int max =
		x->o->max_rounds ? x->o->max_rounds : MIGRATE_MAX_ROUNDS;
	double per_page = r->pages ? (double)r->bytes / (double)r->pages :
				     (double)PAGE_SIZE;
	/* The pages may take the target less the reserve. */
	uint64_t budget =
		x->o->downtime_ns ?
			(uint64_t)((double)r->final_pages *
				   (double)(x->o->downtime_ns - x->reserve_ns) /
				   (double)x->o->downtime_ns) :
			r->final_pages;
	int ret;

	st->round = r->round + 1;
	st->last_round_pages = r->pages;
	st->last_round_bytes = r->bytes;
	st->last_round_ns = r->ns;
	st->remaining_pages = r->next;
	if (r->ns) {
		st->bandwidth =
			(uint64_t)((double)r->bytes * 1e9 / (double)r->ns);
		st->dirty_rate = (uint64_t)((double)r->next * PAGE_SIZE * 1e9 /
					    (double)r->ns);
	}
	st->expected_downtime_ns =
		(st->bandwidth ? (uint64_t)((double)r->next * per_page * 1e9 /
					    (double)st->bandwidth) :
				 0) +
		x->reserve_ns;
	pr_info("migration round %u: %llu pages, %llu bytes in %.1f ms; %llu "
		"dirty again (%.1f ms frozen at this rate)",
		r->round, (unsigned long long)r->pages,
		(unsigned long long)r->bytes, (double)r->ns / 1e6,
		(unsigned long long)r->next,
		(double)st->expected_downtime_ns / 1e6);
	ret = service(x);
	if (ret < 0)
		return err_printf(err, errlen, ret, "%s", x->abort_why);
	if (r->next <= budget) {
		st->phase = MIGRATE_FINAL;
		return VMSNAP_ROUND_FINAL;
	}
	if (st->round >= max)
		return err_printf(
			err, errlen, -ETIME,
			"did not converge in %u rounds: %llu pages still dirty would keep the VM frozen about %.0f ms, over the %.0f ms target%s",
			max, (unsigned long long)r->next,
			(double)st->expected_downtime_ns / 1e6,
			(double)x->o->downtime_ns / 1e6,
			x->o->auto_converge ? " even throttled" :
					      " (auto-converge is off)");
	if (!r->shrinking && x->o->auto_converge &&
	    st->throttle < VM_THROTTLE_MAX) {
		unsigned int t = st->throttle ?
					 st->throttle + MIGRATE_THROTTLE_STEP :
					 MIGRATE_THROTTLE_FIRST;

		ret = vm_throttle(machine_vm(x->m), t);
		if (ret < 0)
			return err_printf(err, errlen, ret,
					  "throttling the vCPUs: %s",
					  strerror(-ret));
		st->throttle = vm_throttle_level(machine_vm(x->m));
		st->throttle_max = MAX(st->throttle_max, st->throttle);
		pr_info("migration: rounds do not shrink; vCPUs throttled "
			"%u%%",
			st->throttle);
	}
	return VMSNAP_ROUND_MORE;
}

/*
 * The image is complete and sent, the vCPUs frozen: the destination
 * loads it and answers. Only its acceptance stops the VM here, before
 * the thaw, so that no vCPU runs on this side once the other may; a
 * cancel up to the go-ahead still leaves it here.
 */
static int on_commit(void *opaque, char *err, size_t errlen)
{
	struct send_ctx *x = opaque;
	uint64_t t0 = vmsnap_now_ns();
	int status = 0, ret;

	x->st->phase = MIGRATE_ACCEPT;
	x->st->bytes = stream_bytes_written(x->s);
	ret = await_reply(x, &status);
	x->st->accept_ns = vmsnap_now_ns() - t0;
	if (ret < 0 && x->aborted)
		return err_printf(err, errlen, ret, "%s", x->abort_why);
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
	/* The last moment a cancel can take effect. */
	ret = service(x);
	if (ret < 0)
		return err_printf(err, errlen, ret, "%s", x->abort_why);
	ret = wire_send_go(x->fd);
	if (ret < 0)
		return err_printf(err, errlen, ret,
				  "confirming to the destination: %s",
				  strerror(-ret));
	vm_stop_detail(machine_vm(x->m), VM_EXIT_REQUESTED, "migrated to %s",
		       x->peer);
	return 0;
}

/* The handshake: HELLO out, the destination's answer in. */
static int handshake(struct send_ctx *x, uint64_t token, char *err,
		     size_t errlen)
{
	unsigned int n = x->o->connections > 1 ? x->o->connections : 0;
	int status = 0, ret = wire_send_hello(x->fd, n, token);

	if (!ret)
		ret = await_reply(x, &status);
	if (ret < 0)
		return err_printf(err, errlen, ret, "handshake with %s: %s",
				  x->peer,
				  x->aborted	 ? x->abort_why :
				  ret == -EPROTO ? "not a vmrun destination" :
						   strerror(-ret));
	if (status)
		return err_printf(err, errlen, -status,
				  "%s refused the migration: %s", x->peer,
				  x->why);
	return 0;
}

/*
 * The stream: on the handshake's connection, or on @o->connections more
 * to the same place, each introduced by the handshake's @token.
 */
static int open_stream(struct send_ctx *x, uint64_t token, char *err,
		       size_t errlen)
{
	unsigned int i, n = x->o->connections;
	int fds[STRIPE_MAX_CONNS], ret = 0;

	if (n <= 1) {
		ret = stream_open_fd_dir(x->fd, true, &x->s);
		return ret < 0 ? err_printf(err, errlen, ret, "%s",
					    strerror(-ret)) :
				 0;
	}
	for (i = 0; i < n; i++) {
		fds[i] = migrate_connect(x->o->uri, (int)io_timeout_ms(x), err,
					 errlen);
		if (fds[i] < 0) {
			ret = fds[i];
			break;
		}
		ret = wire_send_data_hello(fds[i], i, n, token);
		if (ret < 0) {
			close(fds[i]);
			err_printf(err, errlen, ret, "%s", strerror(-ret));
			break;
		}
	}
	if (ret < 0) {
		char why[256];

		snprintf(why, sizeof(why), "%s", err);
		err_printf(err, errlen, ret,
			   "opening connection %u of %u to %s: %s", i + 1, n,
			   x->peer, why);
		while (i--)
			close(fds[i]);
		return ret;
	}
	ret = stripe_open(fds, n, true, io_timeout_ms(x), &x->s);
	return ret < 0 ? err_printf(err, errlen, ret, "%s", strerror(-ret)) : 0;
}

int migrate_send(struct machine *m, int fd, const char *peer,
		 const struct migrate_opts *o, struct migrate_stats *st,
		 char *err, size_t errlen)
{
	struct send_ctx x = { .fd = fd,
			      .m = m,
			      .peer = peer,
			      .o = o,
			      .st = st,
			      .t0 = vmsnap_now_ns() };
	struct vmsnap_save_opts so = {
		.codec = o->codec,
		.aligned = o->codec == IMAGE_CODEC_NONE,
		.threads = o->threads,
		.adaptive = o->adaptive,
		.live = true,
		.live_rounds = 1,
		.downtime_ns = o->downtime_ns,
		/* on_round() ends the rounds, or gives up. */
		.live_max_rounds = UINT32_MAX,
		.begun = on_begun,
		.round = on_round,
		.drain = on_drain,
		.commit = on_commit,
		.commit_opaque = &x,
		.progress = on_progress,
		.opaque = &x,
	};
	struct vmsnap_stats vs = { 0 };
	uint64_t token = 0;
	int ret, status = 0;

	memset(st, 0, sizeof(*st));
	st->phase = MIGRATE_HANDSHAKE;
	st->connections = o->connections > 1 ? o->connections : 1;
	if (o->connections > STRIPE_MAX_CONNS ||
	    (o->connections > 1 && (!o->uri || o->uri->kind == MIGRATE_FD)))
		return err_printf(err, errlen, -EINVAL,
				  "several connections need tcp:HOST:PORT or "
				  "unix:PATH (at most %u)",
				  STRIPE_MAX_CONNS);
	if (vm_wait(machine_vm(m), 0) != VM_EXIT_NONE)
		return err_printf(err, errlen, -ESRCH, "the VM is stopping");
	if (getrandom(&token, sizeof(token), 0) != sizeof(token))
		token = vmsnap_now_ns();
	ret = handshake(&x, token, err, errlen);
	if (!ret)
		ret = open_stream(&x, token, err, errlen);
	if (!ret) {
		ret = vmsnap_save_stream(m, x.s, &so, &vs, err, errlen);
		/* A write failed: the destination may have said why first. */
		if (ret < 0 && !x.refused && !x.aborted &&
		    wire_readable(fd, 1000) &&
		    wire_recv_reply(fd, &status, x.why, sizeof(x.why)) == 0 &&
		    status)
			x.refused = status;
		if (ret < 0 && x.aborted && !strstr(err, x.abort_why))
			err_printf(err, errlen, ret, "%s", x.abort_why);
		else if (ret < 0 && x.refused && !strstr(err, x.why))
			err_printf(err, errlen, ret,
				   "the destination refused the machine: %s",
				   x.why);
		stream_close(x.s);
	}
	/* Done or not, the guest runs at full speed again (if it runs). */
	if (st->throttle && vm_throttle(machine_vm(m), 0) < 0)
		pr_warn("migration: cannot end the throttle");
	st->throttle = 0;
	st->phase = ret < 0 ? MIGRATE_FAILED : MIGRATE_DONE;
	st->bytes = vs.bytes;
	st->pages = vs.pages;
	st->zero_pages = vs.zero_pages;
	st->data_pages = vs.pages - vs.zero_pages;
	st->mem_bytes = vs.mem_bytes;
	st->frozen_ns = vs.frozen_ns;
	st->rounds = vs.rounds;
	st->batches = vs.batches;
	st->raw_batches = vs.raw_batches;
	st->ns = vmsnap_now_ns() - x.t0;
	return ret;
}
