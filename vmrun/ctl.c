/* SPDX-License-Identifier: MIT */
#include "vmrun/ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.pb-c.h"
#include "kernel/machine.h"
#include "kernel/util/log.h"
#include "kernel/vcpu.h"
#include "kernel/vm.h"
#include "migrate/migrate.h"
#include "snapshot/checkpoint.h"
#include "snapshot/pool.h"
#include "snapshot/vmsnap.h"
#include "vmrun/migrate_cmd.h"
#include "vmrun/vmrun.h"

#define CTL_MAX_CONNS 8

/* What a command needs the dispatcher to take before calling it. */
enum ctl_needs {
	NEEDS_NONE,
	NEEDS_FREEZE_ALL,   /* every vCPU paused around the handler */
	NEEDS_NONE_ANYTIME, /* served during a migration too */
};

struct ctl;

struct ctl_conn {
	struct ctl *ctl;
	int fd;	    /* -1: free */
	size_t len; /* bytes in buf */
	uint8_t buf[4 + CTL_MAX_FRAME];
};

struct ctl {
	struct machine *m;
	int lfd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	uint64_t mem_bytes;
	unsigned int pauses; /* pauses taken through the socket */
	char msg[512];	     /* a reply's message, when it is built */
	Vmrun__CtlSaveResult save;
	char save_path[4096];
	struct vmsnap_chain chain; /* the last save: the next one's base */
	struct checkpoint *ck;	   /* CHECKPOINT's, for RESET */
	Vmrun__CtlResetResult reset;
	Vmrun__CtlMigrateResult migrate;
	char migrate_uri[512];
	/* A migration under way (MIGRATE runs nested requests meanwhile). */
	const Vmrun__CtlRequest *migrating;
	bool migrate_cancel;
	struct migrate_stats migrate_st;
	Vmrun__CtlMigrateResult migrate_live;
	char migrate_msg[512];
	int cur_fd; /* the connection being answered */
	uint64_t last_progress_ns;
	struct ctl_conn conns[CTL_MAX_CONNS];
};

typedef int (*ctl_fn_t)(struct ctl *c, const Vmrun__CtlRequest *q,
			Vmrun__CtlReply *r);

static int op_status(struct ctl *c, const Vmrun__CtlRequest *q,
		     Vmrun__CtlReply *r);
static int op_pause(struct ctl *c, const Vmrun__CtlRequest *q,
		    Vmrun__CtlReply *r);
static int op_resume(struct ctl *c, const Vmrun__CtlRequest *q,
		     Vmrun__CtlReply *r);
static int op_stop(struct ctl *c, const Vmrun__CtlRequest *q,
		   Vmrun__CtlReply *r);
static int op_save(struct ctl *c, const Vmrun__CtlRequest *q,
		   Vmrun__CtlReply *r);
static int op_checkpoint(struct ctl *c, const Vmrun__CtlRequest *q,
			 Vmrun__CtlReply *r);
static int op_reset(struct ctl *c, const Vmrun__CtlRequest *q,
		    Vmrun__CtlReply *r);
static int op_migrate(struct ctl *c, const Vmrun__CtlRequest *q,
		      Vmrun__CtlReply *r);
static int op_migrate_cancel(struct ctl *c, const Vmrun__CtlRequest *q,
			     Vmrun__CtlReply *r);

/* The command table: op, handler, what the dispatcher must take first. */
static const struct {
	Vmrun__CtlOp op;
	ctl_fn_t fn;
	enum ctl_needs needs;
} ctl_table[] = {
	{ VMRUN__CTL_OP__CTL_OP_STATUS, op_status, NEEDS_NONE_ANYTIME },
	{ VMRUN__CTL_OP__CTL_OP_PAUSE, op_pause, NEEDS_NONE },
	{ VMRUN__CTL_OP__CTL_OP_RESUME, op_resume, NEEDS_NONE },
	{ VMRUN__CTL_OP__CTL_OP_STOP, op_stop, NEEDS_NONE_ANYTIME },
	{ VMRUN__CTL_OP__CTL_OP_SAVE, op_save, NEEDS_NONE },
	{ VMRUN__CTL_OP__CTL_OP_CHECKPOINT, op_checkpoint, NEEDS_NONE },
	{ VMRUN__CTL_OP__CTL_OP_RESET, op_reset, NEEDS_NONE },
	{ VMRUN__CTL_OP__CTL_OP_MIGRATE, op_migrate, NEEDS_NONE },
	{ VMRUN__CTL_OP__CTL_OP_MIGRATE_CANCEL, op_migrate_cancel,
	  NEEDS_NONE_ANYTIME },
};

static const char *state_name(struct ctl *c)
{
	struct vm *vm = machine_vm(c->m);

	if (vm_wait(vm, 0) != VM_EXIT_NONE)
		return "stopping";
	return c->pauses ? "paused" : "running";
}

static int op_status(struct ctl *c, const Vmrun__CtlRequest *q __unused,
		     Vmrun__CtlReply *r)
{
	struct vm *vm = machine_vm(c->m);
	unsigned int i, n = vm_nr_vcpus(vm);

	r->nr_vcpus = n;
	r->mem_bytes = c->mem_bytes;
	r->mem_loading = machine_mem_loading(c->m, &r->mem_loaded_pages,
					     &r->mem_data_pages);
	if (c->migrating) {
		ctl_migrate_fill(&c->migrate_live, &c->migrate_st, c->migrating,
				 c->migrate_uri);
		r->migrating = &c->migrate_live;
	}
	r->vcpus = calloc(n, sizeof(*r->vcpus));
	if (!r->vcpus)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		Vmrun__CtlVcpu *v = calloc(1, sizeof(*v));
		struct vcpu_stats st;

		if (!v)
			return -ENOMEM;
		vmrun__ctl_vcpu__init(v);
		vcpu_get_stats(vm_vcpu(vm, i), &st);
		v->id = i;
		v->exits = st.exits;
		v->io_exits = st.io_exits;
		v->mmio_exits = st.mmio_exits;
		r->vcpus[r->n_vcpus++] = v;
	}
	return 0;
}

static int op_pause(struct ctl *c, const Vmrun__CtlRequest *q __unused,
		    Vmrun__CtlReply *r __unused)
{
	int ret = vm_pause(machine_vm(c->m));

	if (!ret)
		c->pauses++;
	return ret;
}

static int op_resume(struct ctl *c, const Vmrun__CtlRequest *q __unused,
		     Vmrun__CtlReply *r)
{
	if (!c->pauses) {
		r->message = "not paused";
		return -EINVAL;
	}
	c->pauses--;
	vm_resume(machine_vm(c->m));
	return 0;
}

static int op_stop(struct ctl *c, const Vmrun__CtlRequest *q __unused,
		   Vmrun__CtlReply *r __unused)
{
	struct vm *vm = machine_vm(c->m);

	vm_stop_detail(vm, VM_EXIT_REQUESTED,
		       "stopped through the control socket");
	while (c->pauses) {
		c->pauses--;
		vm_resume(vm);
	}
	return 0;
}

static int op_checkpoint(struct ctl *c, const Vmrun__CtlRequest *q __unused,
			 Vmrun__CtlReply *r)
{
	struct checkpoint *ck;
	uint64_t t0 = vmsnap_now_ns();
	int ret;

	if (machine_config(c->m)->nr_disks) {
		r->message = "a checkpoint holds memory and state, not disk "
			     "contents, and this VM has disks";
		return -EOPNOTSUPP;
	}
	c->msg[0] = 0;
	ret = checkpoint_take(c->m, &ck, c->msg, sizeof(c->msg));
	if (ret < 0) {
		r->message = c->msg;
		return ret;
	}
	checkpoint_free(c->ck);
	c->ck = ck;
	vmrun__ctl_reset_result__init(&c->reset);
	c->reset.pages = checkpoint_mem_pages(ck);
	c->reset.ns = vmsnap_now_ns() - t0;
	r->reset = &c->reset;
	return 0;
}

static int op_reset(struct ctl *c, const Vmrun__CtlRequest *q,
		    Vmrun__CtlReply *r)
{
	struct checkpoint_reset_stats st;
	int ret;

	if (!c->ck) {
		r->message = "no checkpoint: take one first (vmrun ctl SOCKET "
			     "checkpoint)";
		return -EINVAL;
	}
	/* The pages a reset takes are no longer known to the save chain. */
	c->chain.valid = false;
	/* One freeze over both: the guest must not run between them. */
	ret = machine_freeze(c->m);
	if (ret < 0)
		return ret;
	c->msg[0] = 0;
	ret = checkpoint_reset(c->ck, c->m, &st, c->msg, sizeof(c->msg));
	if (ret < 0) {
		/* Half put back is no VM to run on. */
		vm_stop_detail(machine_vm(c->m), VM_EXIT_ERROR, "%s", c->msg);
		machine_thaw(c->m);
		r->message = c->msg;
		return ret;
	}
	vmrun__ctl_reset_result__init(&c->reset);
	c->reset.pages = st.pages;
	c->reset.ns = st.ns;
	if (q->verify) {
		ret = checkpoint_verify(c->ck, c->m, c->msg, sizeof(c->msg));
		if (ret) {
			if (ret < 0)
				snprintf(c->msg, sizeof(c->msg),
					 "verifying: %s", strerror(-ret));
			machine_thaw(c->m);
			r->message = c->msg;
			return ret < 0 ? ret : -EIO;
		}
		c->reset.verified = true;
	}
	machine_thaw(c->m);
	r->reset = &c->reset;
	return 0;
}

/*
 * Saves the machine to q->path. Runs in the event loop, which serves
 * nothing else meanwhile; the vCPUs are frozen for the capture.
 */
static int send_reply(int fd, const Vmrun__CtlReply *r);

/* A progress frame to the client of a save, ten a second at most. */
static void save_progress(void *opaque, uint64_t done, uint64_t total)
{
	struct ctl *c = opaque;
	Vmrun__CtlProgress p;
	Vmrun__CtlReply r;
	uint64_t now = vmsnap_now_ns();

	if (done < total && now - c->last_progress_ns < 100000000ULL)
		return;
	c->last_progress_ns = now;
	vmrun__ctl_progress__init(&p);
	vmrun__ctl_reply__init(&r);
	p.done = done;
	p.total = total;
	r.progress = &p;
	r.state = (char *)(uintptr_t)state_name(c);
	/* A client gone is the final reply's problem, not the save's. */
	(void)send_reply(c->cur_fd, &r);
}

static int op_save(struct ctl *c, const Vmrun__CtlRequest *q,
		   Vmrun__CtlReply *r)
{
	struct vmsnap_save_opts o = { .codec = IMAGE_CODEC_LZ4,
				      .chain = &c->chain,
				      .incremental = q->incremental,
				      .live = q->live,
				      .live_rounds = q->live_rounds,
				      .threads = q->threads,
				      .progress = q->progress ? save_progress :
								NULL,
				      .opaque = c };
	uint64_t base_hash = c->chain.hash;
	struct vmsnap_stats st;
	int ret;

	if (!q->path[0] || q->path[0] != '/') {
		r->message = "save needs an absolute path";
		return -EINVAL;
	}
	if (q->live_rounds > VMSNAP_LIVE_MAX_ROUNDS ||
	    (q->live_rounds && !q->live)) {
		r->message = "live rounds: 1 to 8, with --live";
		return -EINVAL;
	}
	if (q->codec[0] && image_codec_parse(q->codec, &o.codec) < 0) {
		r->message = "codec: expected lz4, zstd or none";
		return -EINVAL;
	}
	if (q->threads > POOL_MAX_THREADS) {
		r->message = "threads: 1 to 64";
		return -EINVAL;
	}
	o.aligned = o.codec == IMAGE_CODEC_NONE;
	if (vm_wait(machine_vm(c->m), 0) != VM_EXIT_NONE) {
		r->message = "the VM is stopping";
		return -ESRCH;
	}
	ret = vmsnap_save_file(c->m, q->path, &o, &st, c->msg, sizeof(c->msg));
	if (ret < 0) {
		r->message = c->msg;
		return ret;
	}
	snprintf(c->save_path, sizeof(c->save_path), "%s", q->path);
	vmrun__ctl_save_result__init(&c->save);
	c->save.path = c->save_path;
	c->save.bytes = st.bytes;
	c->save.pages = st.pages;
	c->save.zero_pages = st.zero_pages;
	c->save.mem_bytes = st.mem_bytes;
	c->save.ns = st.ns;
	c->save.frozen_ns = st.frozen_ns;
	c->save.content_hash = st.hash;
	c->save.codec = (char *)(uintptr_t)image_codec_name(o.codec);
	c->save.incremental = q->incremental;
	c->save.base_hash = q->incremental ? base_hash : 0;
	c->save.links = st.links;
	c->save.live = q->live;
	c->save.rounds = st.rounds;
	r->save = &c->save;
	return 0;
}

static void migrate_progress(void *opaque, unsigned long long done,
			     unsigned long long total)
{
	save_progress(opaque, done, total);
}

/* While a migration runs: the event loop, once, and whether to stop. */
static int migrate_service(void *opaque)
{
	struct ctl *c = opaque;
	bool stopping = machine_poll(c->m, 0);

	return c->migrate_cancel ? -ECANCELED : stopping ? -ESRCH : 0;
}

static struct ctl_conn *conn_of(struct ctl *c, int fd)
{
	unsigned int i;

	for (i = 0; i < CTL_MAX_CONNS; i++)
		if (c->conns[i].fd == fd)
			return &c->conns[i];
	return NULL;
}

static void conn_readable(struct machine *m, int fd, void *opaque);

/*
 * Live migration (vmrun/migrate_cmd.c). It runs on the event loop's
 * thread, which it keeps serving between slices and while it waits:
 * other connections may ask for STATUS, MIGRATE_CANCEL or STOP
 * meanwhile (this one is not read until the reply). On success the VM
 * is stopped, so vmrun exits once this reply has gone out.
 */
static int op_migrate(struct ctl *c, const Vmrun__CtlRequest *q,
		      Vmrun__CtlReply *r)
{
	struct ctl_migrate_hooks h = {
		.progress = q->progress ? migrate_progress : NULL,
		.service = migrate_service,
		.opaque = c,
		.live = &c->migrate_st,
	};
	struct ctl_conn *cn = conn_of(c, c->cur_fd);
	int ret;

	if (vm_wait(machine_vm(c->m), 0) != VM_EXIT_NONE) {
		r->message = "the VM is stopping";
		return -ESRCH;
	}
	if (c->pauses) {
		r->message = "the VM is paused: resume it first";
		return -EBUSY;
	}
	if (cn)
		machine_unwatch_fd(c->m, cn->fd);
	c->migrating = q;
	c->migrate_cancel = false;
	ret = ctl_migrate(c->m, q, &c->migrate, c->migrate_uri,
			  sizeof(c->migrate_uri), &h, c->migrate_msg,
			  sizeof(c->migrate_msg));
	c->migrating = NULL;
	if (cn && machine_watch_fd(c->m, cn->fd, conn_readable, cn) < 0)
		pr_warn("control socket: cannot watch a connection again");
	if (ret < 0) {
		r->message = c->migrate_msg;
		return ret;
	}
	r->migrate = &c->migrate;
	return 0;
}

static int op_migrate_cancel(struct ctl *c, const Vmrun__CtlRequest *q __unused,
			     Vmrun__CtlReply *r)
{
	if (!c->migrating) {
		r->message = "no migration is under way";
		return -EINVAL;
	}
	c->migrate_cancel = true;
	return 0;
}

static void reply_free(Vmrun__CtlReply *r)
{
	size_t i;

	for (i = 0; i < r->n_vcpus; i++)
		free(r->vcpus[i]);
	free(r->vcpus);
}

/* Sends one framed reply; returns 0 or -errno. */
static int send_reply(int fd, const Vmrun__CtlReply *r)
{
	size_t n = vmrun__ctl_reply__get_packed_size(r);
	uint8_t *buf = malloc(4 + n);
	size_t off = 0;
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	buf[0] = (uint8_t)n;
	buf[1] = (uint8_t)(n >> 8);
	buf[2] = (uint8_t)(n >> 16);
	buf[3] = (uint8_t)(n >> 24);
	vmrun__ctl_reply__pack(r, buf + 4);
	while (off < 4 + n) {
		ssize_t w = send(fd, buf + off, 4 + n - off, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			ret = w < 0 ? -errno : -EPIPE;
			break;
		}
		off += (size_t)w;
	}
	free(buf);
	return ret;
}

/* Decodes and runs one request frame; fills @r. */
static void dispatch(struct ctl *c, const uint8_t *msg, size_t len,
		     Vmrun__CtlReply *r)
{
	Vmrun__CtlRequest *req;
	struct vm *vm = machine_vm(c->m);
	unsigned int i;
	int ret = -EINVAL;

	req = vmrun__ctl_request__unpack(NULL, len, msg);
	if (!req) {
		r->error = EINVAL;
		r->message = "malformed request";
		return;
	}
	for (i = 0; i < ARRAY_SIZE(ctl_table); i++) {
		if (ctl_table[i].op != req->op)
			continue;
		if (c->migrating && ctl_table[i].needs != NEEDS_NONE_ANYTIME) {
			r->message = "a migration is under way (migrate-cancel "
				     "ends it)";
			ret = -EBUSY;
			break;
		}
		if (ctl_table[i].needs == NEEDS_FREEZE_ALL) {
			ret = vm_pause(vm);
			if (ret < 0)
				break;
		}
		ret = ctl_table[i].fn(c, req, r);
		if (ctl_table[i].needs == NEEDS_FREEZE_ALL)
			vm_resume(vm);
		break;
	}
	if (i == ARRAY_SIZE(ctl_table))
		r->message = "unknown operation";
	else if (ret < 0 && !r->message[0])
		r->message = strerror(-ret);
	r->error = ret < 0 ? -ret : 0;
	vmrun__ctl_request__free_unpacked(req, NULL);
}

static void conn_close(struct ctl_conn *cn)
{
	machine_unwatch_fd(cn->ctl->m, cn->fd);
	close(cn->fd);
	cn->fd = -1;
	cn->len = 0;
}

/* Reads what is there; answers every complete frame. */
static void conn_readable(struct machine *m __unused, int fd, void *opaque)
{
	struct ctl_conn *cn = opaque;
	ssize_t n = recv(fd, cn->buf + cn->len, sizeof(cn->buf) - cn->len,
			 MSG_DONTWAIT);
	int saved_fd;

	if (n <= 0) {
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		conn_close(cn);
		return;
	}
	cn->len += (size_t)n;
	while (cn->len >= 4) {
		uint32_t flen =
			(uint32_t)cn->buf[0] | (uint32_t)cn->buf[1] << 8 |
			(uint32_t)cn->buf[2] << 16 | (uint32_t)cn->buf[3] << 24;
		Vmrun__CtlReply r;

		vmrun__ctl_reply__init(&r);
		if (flen > CTL_MAX_FRAME) {
			/* The stream cannot be resynchronised: say why, go. */
			r.error = EMSGSIZE;
			r.message = "frame larger than 65536 bytes";
			r.state = (char *)(uintptr_t)state_name(cn->ctl);
			send_reply(fd, &r);
			conn_close(cn);
			return;
		}
		if (cn->len < 4 + flen)
			return;
		/* Nested inside a migration's, restore the one it answers. */
		saved_fd = cn->ctl->cur_fd;
		cn->ctl->cur_fd = fd;
		dispatch(cn->ctl, cn->buf + 4, flen, &r);
		cn->ctl->cur_fd = saved_fd;
		r.state = (char *)(uintptr_t)state_name(cn->ctl);
		if (send_reply(fd, &r) < 0) {
			reply_free(&r);
			conn_close(cn);
			return;
		}
		reply_free(&r);
		memmove(cn->buf, cn->buf + 4 + flen, cn->len - 4 - flen);
		cn->len -= 4 + flen;
	}
}

static void ctl_accept(struct machine *m, int fd, void *opaque)
{
	struct ctl *c = opaque;
	unsigned int i;
	int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (cfd < 0)
		return;
	for (i = 0; i < CTL_MAX_CONNS && c->conns[i].fd >= 0; i++)
		;
	if (i == CTL_MAX_CONNS ||
	    machine_watch_fd(m, cfd, conn_readable, &c->conns[i]) < 0) {
		pr_warn("control socket: too many connections");
		close(cfd);
		return;
	}
	c->conns[i].fd = cfd;
	c->conns[i].len = 0;
}

int ctl_open(struct machine *m, const char *path, uint64_t mem_bytes,
	     const struct vmsnap_chain *chain, struct ctl **out, char *err,
	     size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	struct ctl *c;
	unsigned int i;
	int ret;

	if (strlen(path) + 4 >= sizeof(sa.sun_path))
		return err_printf(err, errlen, -ENAMETOOLONG,
				  "--ctl %s: path too long", path);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return err_printf(
				err, errlen, -EEXIST,
				"--ctl %s: exists and is not a socket", path);
		unlink(path); /* a stale socket from an earlier run */
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->m = m;
	c->mem_bytes = mem_bytes;
	if (chain)
		c->chain = *chain;
	for (i = 0; i < CTL_MAX_CONNS; i++) {
		c->conns[i].fd = -1;
		c->conns[i].ctl = c;
	}
	snprintf(c->path, sizeof(c->path), "%s", path);
	/* Bound and listening under a temporary name, then renamed: a
	 * client that waits for the path never finds a socket that refuses
	 * connections. */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s.new", path);
	if (lstat(sa.sun_path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(sa.sun_path); /* left by a killed vmrun */
	c->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->lfd < 0 || bind(c->lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(c->lfd, 4) || rename(sa.sun_path, path)) {
		ret = -errno;
		err_printf(err, errlen, ret, "--ctl %s: %s", path,
			   strerror(-ret));
		unlink(sa.sun_path);
		goto err_close;
	}
	ret = machine_watch_fd(m, c->lfd, ctl_accept, c);
	if (ret < 0) {
		err_printf(err, errlen, ret, "--ctl %s: %s", path,
			   strerror(-ret));
		goto err_unlink;
	}
	*out = c;
	return 0;

err_unlink:
	unlink(path);
err_close:
	if (c->lfd >= 0)
		close(c->lfd);
	free(c);
	return ret;
}

void ctl_close(struct ctl *c)
{
	unsigned int i;

	if (!c)
		return;
	for (i = 0; i < CTL_MAX_CONNS; i++)
		if (c->conns[i].fd >= 0)
			conn_close(&c->conns[i]);
	machine_unwatch_fd(c->m, c->lfd);
	close(c->lfd);
	unlink(c->path);
	checkpoint_free(c->ck);
	free(c);
}

static void ctl_usage(FILE *f)
{
	fprintf(f,
		"usage: vmrun ctl SOCKET status|pause|resume|stop|checkpoint|migrate-cancel\n"
		"       vmrun ctl SOCKET reset [--verify]\n"
		"       vmrun ctl SOCKET save FILE [--compress lz4|zstd|none]\n"
		"                                  [--incremental] [--live]\n"
		"                                  [--live-rounds N] [--threads N]\n"
		"                                  [--json]\n"
		"       vmrun ctl SOCKET migrate URI [--downtime MS] [--bandwidth MB/s]\n"
		"                                    [--max-time S] [--link-timeout S]\n"
		"                                    [--no-auto-converge] [--threads N]\n"
		"                                    [--connections N]\n"
		"                                    [--compress auto|lz4|zstd|none]\n"
		"                                    [--json]\n"
		"\n"
		"Talks to a VM started with 'vmrun run --ctl SOCKET' (or 'vmrun\n"
		"restore --ctl SOCKET').\n"
		"\n"
		"save writes a snapshot image of the running VM to FILE: it freezes\n"
		"the vCPUs and devices, writes the image to a temporary file beside\n"
		"FILE, syncs it, renames it to FILE and lets the VM run on. On any\n"
		"failure the VM runs on untouched and an older FILE is kept. The\n"
		"image is restored with 'vmrun restore FILE'. On a terminal a\n"
		"progress bar shows each pass over memory; then one summary line.\n"
		"  --compress C   lz4 (default), zstd, or none (uncompressed, guest\n"
		"                 pages page-aligned in the file)\n"
		"  --incremental  only the pages written since the last save of this\n"
		"                 VM, over that image (the base, which must stay\n"
		"                 where it was, or beside FILE): restoring FILE\n"
		"                 reads the whole chain. The first save of a VM\n"
		"                 starts dirty tracking, which then stays on; a\n"
		"                 VM restored with --ctl tracks from the restore,\n"
		"                 so its first save may be incremental over the\n"
		"                 image it was restored from.\n"
		"  --live         write memory while the vCPUs run, then again what\n"
		"                 they wrote meanwhile, in rounds (at most 8), and\n"
		"                 freeze them only for the last pages, the state and\n"
		"                 the fsync: the image holds the VM as it was at the\n"
		"                 end of the save. Can be combined with --incremental.\n"
		"  --live-rounds N  live, with at least N (1 to 8) rounds while the\n"
		"                 vCPUs run, however small they get\n"
		"  --threads N    compress on N threads while pages are scanned and\n"
		"                 written (default: one per CPU, up to 4)\n"
		"  --json         print the result as one JSON object\n"
		"\n"
		"migrate moves the running VM to a 'vmrun run --incoming URI' on\n"
		"this or another host (URI: tcp:HOST:PORT, unix:PATH, or fd:N of\n"
		"the VM's process): the destination first checks that it can\n"
		"build this machine (memory, vCPUs, CPU features, devices) and\n"
		"refuses before any page is sent if not; then memory is sent\n"
		"while the vCPUs run, in rounds, until what is left fits the\n"
		"downtime target, and the vCPUs are frozen for the last pages\n"
		"and the state. The VM stops here only once the destination has\n"
		"loaded all of it and said so; vmrun then exits 0. On any\n"
		"failure before that (refused, connection lost or stalled for\n"
		"--link-timeout, cancelled, out of time or rounds) the VM runs on\n"
		"here untouched. While it runs, 'status' on another connection shows\n"
		"its phase, rates and throttle, and 'migrate-cancel' ends it.\n"
		"  --downtime MS  the target for the frozen end (default 300); it is\n"
		"                 never knowingly exceeded: a migration that cannot\n"
		"                 get there in 100 rounds gives up instead\n"
		"  --bandwidth MB/s  cap the rate while the vCPUs run (the frozen\n"
		"                 end goes at full speed)\n"
		"  --max-time S   give up after S seconds\n"
		"  --link-timeout S  give up when the link makes no progress for S\n"
		"                 seconds (default 60)\n"
		"  --no-auto-converge  never throttle the vCPUs; by default, each\n"
		"                 round that does not shrink the dirty memory by an\n"
		"                 eighth takes 20%%, then 10%% more (up to 99%%) of\n"
		"                 the vCPUs' time until it does\n"
		"  --compress C   auto (default): lz4 (zstd under a --bandwidth of\n"
		"                 100 MB/s or less), each batch sent raw instead\n"
		"                 while every compression thread is busy, so a\n"
		"                 link faster than the CPUs is not held to their\n"
		"                 pace; or lz4, zstd or none for every batch\n"
		"  --threads N    compress on N threads while the stream goes out\n"
		"                 (default: one per CPU, up to 4); the destination\n"
		"                 decompresses on as many as it has, up to 4\n"
		"  --connections N  send the stream on N connections (2 to 16,\n"
		"                 tcp: or unix:), a thread each, when one cannot\n"
		"                 fill the link (default 1: the stream shares the\n"
		"                 control connection)\n"
		"  --json         print the result as one JSON object\n"
		"\n"
		"migrate-cancel gives up the migration under way; it is answered at\n"
		"once, and the migration's own reply says it was cancelled. Up to\n"
		"the moment the destination is told to run the guest, the VM runs\n"
		"on here as if nothing had happened.\n"
		"\n"
		"checkpoint keeps the VM's memory and state in memory (replacing an\n"
		"earlier checkpoint); reset puts the VM back to it, copying back only\n"
		"the pages written since, then the VM, device and vCPU state, and\n"
		"lets it run on. Disk contents are not part of it: a VM with disks\n"
		"cannot take one. A reset ends the chain of incremental saves (the\n"
		"next save is a full one).\n"
		"  --verify       after the reset, compare all memory and state with\n"
		"                 the checkpoint and fail naming the first difference\n"
		"\n"
		"exit status: 0 done, 1 the VMM refused or failed, 2 bad\n"
		"arguments or no VM at SOCKET.\n");
}

static void print_save(const Vmrun__CtlSaveResult *s, bool json)
{
	/* Guest bytes the image stands for, per image byte. */
	double ratio =
		s->bytes ? (double)s->pages * 4096.0 / (double)s->bytes : 0;

	if (json) {
		printf("{\"path\":");
		json_str(stdout, s->path);
		printf(",\"codec\":\"%s\",\"bytes\":%llu,"
		       "\"mem_bytes\":%llu,\"pages\":%llu,\"zero_pages\":%llu,"
		       "\"ratio\":%.2f,\"ms\":%.3f,\"frozen_ms\":%.3f,"
		       "\"content_hash\":\"%016llx\",\"incremental\":%s,"
		       "\"base_hash\":\"%016llx\",\"links\":%u,"
		       "\"live\":%s,\"rounds\":%u}\n",
		       s->codec, (unsigned long long)s->bytes,
		       (unsigned long long)s->mem_bytes,
		       (unsigned long long)s->pages,
		       (unsigned long long)s->zero_pages, ratio,
		       (double)s->ns / 1e6, (double)s->frozen_ns / 1e6,
		       (unsigned long long)s->content_hash,
		       s->incremental ? "true" : "false",
		       (unsigned long long)s->base_hash, s->links,
		       s->live ? "true" : "false", s->rounds);
		return;
	}
	if (s->incremental)
		printf("saved %s: incremental over %016llx (image %u of its "
		       "chain), %llu pages written since (%llu zero), %.1f MiB "
		       "image (%s), %.0f ms (vCPUs frozen %.0f ms)\n",
		       s->path, (unsigned long long)s->base_hash, s->links,
		       (unsigned long long)s->pages,
		       (unsigned long long)s->zero_pages,
		       (double)s->bytes / 1048576.0, s->codec,
		       (double)s->ns / 1e6, (double)s->frozen_ns / 1e6);
	else if (s->live)
		printf("saved %s live: %llu MiB of guest memory, %llu pages (%llu zero) "
		       "in %u rounds with the vCPUs running and one frozen, "
		       "%.1f MiB image (%s, %.1fx), %.0f ms (vCPUs frozen %.0f ms)\n",
		       s->path, (unsigned long long)(s->mem_bytes >> 20),
		       (unsigned long long)s->pages,
		       (unsigned long long)s->zero_pages, s->rounds,
		       (double)s->bytes / 1048576.0, s->codec, ratio,
		       (double)s->ns / 1e6, (double)s->frozen_ns / 1e6);
	else
		printf("saved %s: %llu MiB of guest memory, %llu pages (%llu zero), "
		       "%.1f MiB image (%s, %.1fx), %.0f ms (vCPUs frozen %.0f ms)\n",
		       s->path, (unsigned long long)(s->mem_bytes >> 20),
		       (unsigned long long)s->pages,
		       (unsigned long long)s->zero_pages,
		       (double)s->bytes / 1048576.0, s->codec, ratio,
		       (double)s->ns / 1e6, (double)s->frozen_ns / 1e6);
}

/* Draws the save's progress bar on stderr; returns the percentage shown. */
static int show_bar(const Vmrun__CtlProgress *p, int last)
{
	int pct = p->total ? (int)(p->done * 100 / p->total) : 100;

	if (pct == last)
		return last;
	fprintf(stderr, "\rsaving: [%-40.*s] %3d%%", pct * 40 / 100,
		"========================================", pct);
	return pct;
}

/* Parses "save FILE [options]" into @req; returns 0 or EXIT_USAGE. */
static int parse_save(int argc, char **argv, Vmrun__CtlRequest *req, char *path,
		      size_t plen, bool *json)
{
	int i;

	if (argc < 4) {
		die_msg("ctl save: expected a FILE");
		return EXIT_USAGE;
	}
	if (argv[3][0] == '/') {
		snprintf(path, plen, "%s", argv[3]);
	} else {
		char cwd[2048];

		if (!getcwd(cwd, sizeof(cwd))) {
			die_msg("ctl save: getcwd: %s", strerror(errno));
			return EXIT_USAGE;
		}
		if ((size_t)snprintf(path, plen, "%s/%s", cwd, argv[3]) >=
		    plen) {
			die_msg("ctl save: path too long");
			return EXIT_USAGE;
		}
	}
	req->path = path;
	for (i = 4; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			*json = true;
		} else if (!strcmp(argv[i], "--incremental")) {
			req->incremental = true;
		} else if (!strcmp(argv[i], "--live")) {
			req->live = true;
		} else if (!strcmp(argv[i], "--live-rounds") && i + 1 < argc) {
			if (parse_uint(argv[++i], VMSNAP_LIVE_MAX_ROUNDS,
				       &req->live_rounds)) {
				die_msg("--live-rounds %s: expected 1 to %d",
					argv[i], VMSNAP_LIVE_MAX_ROUNDS);
				return EXIT_USAGE;
			}
			req->live = true;
		} else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
			if (parse_uint(argv[++i], POOL_MAX_THREADS,
				       &req->threads)) {
				die_msg("--threads %s: expected 1 to %d",
					argv[i], POOL_MAX_THREADS);
				return EXIT_USAGE;
			}
		} else if (!strcmp(argv[i], "--compress") && i + 1 < argc) {
			enum image_codec codec;

			req->codec = argv[++i];
			if (image_codec_parse(req->codec, &codec) < 0) {
				die_msg("--compress %s: expected lz4, zstd or none",
					req->codec);
				return EXIT_USAGE;
			}
		} else {
			die_msg("ctl save: unexpected argument '%s'", argv[i]);
			return EXIT_USAGE;
		}
	}
	return 0;
}

/* vmrun ctl SOCKET OP: the client. */
int cmd_ctl(int argc, char **argv)
{
	static const struct {
		const char *name;
		Vmrun__CtlOp op;
	} ops[] = {
		{ "status", VMRUN__CTL_OP__CTL_OP_STATUS },
		{ "pause", VMRUN__CTL_OP__CTL_OP_PAUSE },
		{ "resume", VMRUN__CTL_OP__CTL_OP_RESUME },
		{ "stop", VMRUN__CTL_OP__CTL_OP_STOP },
		{ "save", VMRUN__CTL_OP__CTL_OP_SAVE },
		{ "checkpoint", VMRUN__CTL_OP__CTL_OP_CHECKPOINT },
		{ "reset", VMRUN__CTL_OP__CTL_OP_RESET },
		{ "migrate", VMRUN__CTL_OP__CTL_OP_MIGRATE },
		{ "migrate-cancel", VMRUN__CTL_OP__CTL_OP_MIGRATE_CANCEL },
	};
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	Vmrun__CtlRequest req;
	Vmrun__CtlReply *r;
	uint8_t hdr[4], *buf;
	char path[4096];
	bool json = false;
	size_t n, off;
	unsigned int i;
	uint32_t len;
	int fd, status, bar = -1;

	if (argc == 2 &&
	    (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		ctl_usage(stdout);
		return 0;
	}
	if (argc < 3) {
		ctl_usage(stderr);
		return EXIT_USAGE;
	}
	for (i = 0; i < ARRAY_SIZE(ops) && strcmp(ops[i].name, argv[2]); i++)
		;
	if (i == ARRAY_SIZE(ops)) {
		die_msg("ctl: unknown operation '%s'", argv[2]);
		return EXIT_USAGE;
	}
	vmrun__ctl_request__init(&req);
	req.op = ops[i].op;
	if (req.op == VMRUN__CTL_OP__CTL_OP_SAVE) {
		status =
			parse_save(argc, argv, &req, path, sizeof(path), &json);
		if (status)
			return status;
		/* A bar for a person at a terminal; scripts get one reply. */
		req.progress = !json && isatty(STDERR_FILENO);
	} else if (req.op == VMRUN__CTL_OP__CTL_OP_MIGRATE) {
		status = ctl_migrate_parse(argc, argv, &req, &json);
		if (status)
			return status;
		req.progress = !json && isatty(STDERR_FILENO);
	} else if (req.op == VMRUN__CTL_OP__CTL_OP_RESET && argc == 4 &&
		   !strcmp(argv[3], "--verify")) {
		req.verify = true;
	} else if (argc != 3) {
		die_msg("ctl %s: unexpected argument '%s'", argv[2], argv[3]);
		return EXIT_USAGE;
	}
	if (strlen(argv[1]) >= sizeof(sa.sun_path)) {
		die_msg("ctl: socket path too long");
		return EXIT_USAGE;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", argv[1]);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		die_msg("ctl: cannot connect to %s: %s", argv[1],
			strerror(errno));
		return EXIT_USAGE;
	}
	n = vmrun__ctl_request__get_packed_size(&req);
	buf = malloc(4 + CTL_MAX_FRAME);
	if (!buf || n > CTL_MAX_FRAME) {
		free(buf);
		close(fd);
		return EXIT_VMM_ERROR;
	}
	buf[0] = (uint8_t)n;
	buf[1] = (uint8_t)(n >> 8);
	buf[2] = (uint8_t)(n >> 16);
	buf[3] = 0;
	vmrun__ctl_request__pack(&req, buf + 4);
	if (send(fd, buf, 4 + n, MSG_NOSIGNAL) != (ssize_t)(4 + n)) {
		die_msg("ctl: the VMM closed the connection");
		free(buf);
		close(fd);
		return EXIT_VMM_ERROR;
	}
	/* Progress frames (if asked for), then the reply. */
	for (;;) {
		if (recv(fd, hdr, 4, MSG_WAITALL) != 4) {
			if (bar >= 0)
				fputc('\n', stderr);
			die_msg("ctl: the VMM closed the connection");
			free(buf);
			close(fd);
			return EXIT_VMM_ERROR;
		}
		len = hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 |
		      (uint32_t)hdr[3] << 24;
		off = len <= CTL_MAX_FRAME ?
			      (size_t)recv(fd, buf, len, MSG_WAITALL) :
			      0;
		r = off == len ? vmrun__ctl_reply__unpack(NULL, len, buf) :
				 NULL;
		if (!r || !r->progress || !req.progress)
			break;
		bar = show_bar(r->progress, bar);
		vmrun__ctl_reply__free_unpacked(r, NULL);
	}
	close(fd);
	free(buf);
	if (bar >= 0)
		fputc('\n', stderr);
	if (!r) {
		die_msg("ctl: malformed reply");
		return EXIT_VMM_ERROR;
	}
	if (r->save) {
		print_save(r->save, json);
	} else if (r->migrate) {
		ctl_migrate_print(r->migrate, json);
	} else if (r->reset) {
		if (req.op == VMRUN__CTL_OP__CTL_OP_CHECKPOINT)
			printf("checkpoint: %llu pages in %.3f ms\n",
			       (unsigned long long)r->reset->pages,
			       (double)r->reset->ns / 1e6);
		else
			printf("reset: %llu pages copied back in %.3f ms%s\n",
			       (unsigned long long)r->reset->pages,
			       (double)r->reset->ns / 1e6,
			       r->reset->verified ? ", verified" : "");
	} else if (!json) {
		printf("state %s\n", r->state);
		if (r->nr_vcpus)
			printf("vcpus %u\nmem %llu MiB\n", r->nr_vcpus,
			       (unsigned long long)(r->mem_bytes >> 20));
		if (r->mem_loading)
			printf("mem loading lazily: %llu of %llu pages read\n",
			       (unsigned long long)r->mem_loaded_pages,
			       (unsigned long long)r->mem_data_pages);
		for (n = 0; n < r->n_vcpus; n++)
			printf("vcpu %u exits %llu io %llu mmio %llu\n",
			       r->vcpus[n]->id,
			       (unsigned long long)r->vcpus[n]->exits,
			       (unsigned long long)r->vcpus[n]->io_exits,
			       (unsigned long long)r->vcpus[n]->mmio_exits);
		if (r->migrating)
			ctl_migrate_print_status(r->migrating);
	}
	status = r->error ? EXIT_VMM_ERROR : 0;
	if (r->error && json) {
		printf("{\"error\":%d,\"message\":", r->error);
		json_str(stdout, r->message);
		printf("}\n");
	}
	if (r->error)
		die_msg("ctl %s: %s", argv[2], r->message);
	vmrun__ctl_reply__free_unpacked(r, NULL);
	return status;
}
