/* SPDX-License-Identifier: MIT */
/*
 * The control socket's server: the command table and its handlers, the
 * framing, and the connections on the event loop. The client, vmrun ctl
 * SOCKET OP, is cmd_ctl.c.
 */
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
