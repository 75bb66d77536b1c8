/* SPDX-License-Identifier: MIT */
/* The control socket: pause, resume, status, stop, and hostile clients. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "control.pb-c.h"
#include "tests/kvm/kvm_tests.h"
#include "tests/kvm/run_util.h"

struct vmproc {
	pid_t pid;
	char sock[64];
	char console[64];
};

/* Starts vmrun with --ctl in the background; waits for the socket. */
static void vm_spawn(struct vmproc *v, const char *cmdline)
{
	char con[80];
	int i;

	snprintf(v->sock, sizeof(v->sock), "/tmp/vmrun-ctl-%d.sock",
		 (int)getpid());
	snprintf(v->console, sizeof(v->console), "/tmp/vmrun-ctl-%d.txt",
		 (int)getpid());
	snprintf(con, sizeof(con), "file:%s", v->console);
	unlink(v->sock);
	v->pid = fork();
	TEST_ASSERT(v->pid >= 0, "fork");
	if (v->pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		execl(VMRUN_BIN, "vmrun", "run", "--cpus", "2", "--ctl",
		      v->sock, "--console", con, "--cmdline", cmdline,
		      (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 6000 && access(v->sock, F_OK); i++)
		usleep(10000);
	TEST_ASSERT(!access(v->sock, F_OK), "no control socket at %s", v->sock);
}

static int vm_reap(struct vmproc *v, int timeout_ms)
{
	int st, i;

	for (i = 0; i < timeout_ms / 10; i++) {
		if (waitpid(v->pid, &st, WNOHANG) == v->pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) :
					       128 + WTERMSIG(st);
		usleep(10000);
	}
	kill(v->pid, SIGKILL);
	waitpid(v->pid, &st, 0);
	return -1;
}

static int ctl_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = { 60, 0 };

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	TEST_ASSERT(fd >= 0 && !connect(fd, (struct sockaddr *)&sa, sizeof(sa)),
		    "connect %s: %s", path, strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void send_frame(int fd, const void *msg, uint32_t len, uint32_t claim)
{
	uint8_t hdr[4] = { (uint8_t)claim, (uint8_t)(claim >> 8),
			   (uint8_t)(claim >> 16), (uint8_t)(claim >> 24) };

	TEST_ASSERT(send(fd, hdr, 4, MSG_NOSIGNAL) == 4, "send header");
	if (len)
		TEST_ASSERT(send(fd, msg, len, MSG_NOSIGNAL) == (ssize_t)len,
			    "send body");
}

/* Reads one reply; NULL if the connection closed. */
static Vmrun__CtlReply *read_reply(int fd)
{
	uint8_t hdr[4], buf[65536];
	uint32_t len;

	if (recv(fd, hdr, 4, MSG_WAITALL) != 4)
		return NULL;
	len = hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 |
	      (uint32_t)hdr[3] << 24;
	TEST_ASSERT(len <= sizeof(buf), "reply of %u bytes", len);
	TEST_ASSERT(recv(fd, buf, len, MSG_WAITALL) == (ssize_t)len,
		    "short reply");
	return vmrun__ctl_reply__unpack(NULL, len, buf);
}

static Vmrun__CtlReply *request(int fd, Vmrun__CtlOp op)
{
	Vmrun__CtlRequest req;
	uint8_t buf[64];
	size_t n;

	vmrun__ctl_request__init(&req);
	req.op = op;
	n = vmrun__ctl_request__pack(&req, buf);
	send_frame(fd, buf, (uint32_t)n, (uint32_t)n);
	return read_reply(fd);
}

static unsigned int count_ticks(const char *path)
{
	char buf[65536];
	unsigned int n = 0;
	const char *p = buf;
	int fd = open(path, O_RDONLY);
	ssize_t r = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : 0;

	if (fd >= 0)
		close(fd);
	buf[r > 0 ? r : 0] = 0;
	while ((p = strstr(p, "GUEST TICK "))) {
		n++;
		p++;
	}
	return n;
}

/* Waits (a deadline, not a window) until the console has @least ticks. */
static unsigned int wait_ticks(const char *path, unsigned int least)
{
	unsigned int n, i;

	for (i = 0; (n = count_ticks(path)) < least && i < 12000; i++)
		usleep(10000);
	return n;
}

static void test_ctl_pause_resume_stop(void)
{
	struct vmproc v;
	Vmrun__CtlReply *r;
	unsigned int t0, t1, t2;
	int fd, rc;

	vm_spawn(&v, "work=dirty mib=16 rate=20 tick_ms=50");
	fd = ctl_connect(v.sock);
	wait_ticks(v.console, 1);
	r = request(fd, VMRUN__CTL_OP__CTL_OP_STATUS);
	TEST_ASSERT(r && !r->error && !strcmp(r->state, "running") &&
			    r->nr_vcpus == 2 && r->n_vcpus == 2 &&
			    r->mem_bytes == 256ULL << 20,
		    "status: %s", r ? r->state : "no reply");
	vmrun__ctl_reply__free_unpacked(r, NULL);

	r = request(fd, VMRUN__CTL_OP__CTL_OP_PAUSE);
	TEST_ASSERT(r && !r->error && !strcmp(r->state, "paused"), "pause");
	vmrun__ctl_reply__free_unpacked(r, NULL);
	t0 = count_ticks(v.console);
	usleep(400000);
	t1 = count_ticks(v.console);
	TEST_ASSERT(t0 == t1 && t0 > 0,
		    "the guest ran while paused: %u ticks, then %u", t0, t1);
	r = request(fd, VMRUN__CTL_OP__CTL_OP_RESUME);
	TEST_ASSERT(r && !r->error && !strcmp(r->state, "running"), "resume");
	vmrun__ctl_reply__free_unpacked(r, NULL);
	t2 = wait_ticks(v.console, t1 + 1);
	TEST_ASSERT(t2 > t1, "no progress after resume: %u ticks", t2);
	r = request(fd, VMRUN__CTL_OP__CTL_OP_RESUME);
	TEST_ASSERT(r && r->error == EINVAL && strstr(r->message, "not paused"),
		    "resume while running accepted");
	vmrun__ctl_reply__free_unpacked(r, NULL);

	r = request(fd, VMRUN__CTL_OP__CTL_OP_STOP);
	TEST_ASSERT(r && !r->error, "stop");
	vmrun__ctl_reply__free_unpacked(r, NULL);
	close(fd);
	rc = vm_reap(&v, 60000);
	TEST_ASSERT(rc == 0, "vmrun exit %d after stop", rc);
	TEST_ASSERT(access(v.sock, F_OK), "socket file left behind");
	unlink(v.console);
}

/* Garbage, unknown operations, oversize and truncated frames, floods of
 * connections: each gets an error or a close, and the VM runs on. */
static void test_ctl_hostile_clients(void)
{
	static const uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f };
	Vmrun__CtlRequest req;
	Vmrun__CtlReply *r;
	struct vmproc v;
	int fd, fds[12], i, rc;
	uint8_t buf[64];
	size_t n;

	vm_spawn(&v, "work=idle mib=8 tick_ms=100");
	fd = ctl_connect(v.sock);
	send_frame(fd, junk, sizeof(junk), sizeof(junk));
	r = read_reply(fd);
	TEST_ASSERT(r && r->error == EINVAL, "garbage: %s",
		    r ? r->message : "closed");
	vmrun__ctl_reply__free_unpacked(r, NULL);

	vmrun__ctl_request__init(&req);
	req.op = 99;
	n = vmrun__ctl_request__pack(&req, buf);
	send_frame(fd, buf, (uint32_t)n, (uint32_t)n);
	r = read_reply(fd);
	TEST_ASSERT(r && r->error && strstr(r->message, "unknown"),
		    "unknown op: %s", r ? r->message : "closed");
	vmrun__ctl_reply__free_unpacked(r, NULL);

	/* An empty frame is a request with every field default (op 0). */
	send_frame(fd, NULL, 0, 0);
	r = read_reply(fd);
	TEST_ASSERT(r && r->error, "empty frame accepted");
	vmrun__ctl_reply__free_unpacked(r, NULL);

	send_frame(fd, NULL, 0, 0x7fffffff);
	r = read_reply(fd);
	TEST_ASSERT(r && r->error == EMSGSIZE, "oversize frame: %s",
		    r ? r->message : "closed");
	vmrun__ctl_reply__free_unpacked(r, NULL);
	TEST_ASSERT(!read_reply(fd), "connection kept after an oversize frame");
	close(fd);

	/* A frame cut short, then the client goes away. */
	fd = ctl_connect(v.sock);
	send_frame(fd, junk, 2, 100);
	close(fd);

	/* More clients than the VMM serves: extras are closed. */
	for (i = 0; i < 12; i++)
		fds[i] = ctl_connect(v.sock);
	usleep(100000);
	for (i = 0; i < 12; i++)
		close(fds[i]);

	fd = ctl_connect(v.sock);
	r = request(fd, VMRUN__CTL_OP__CTL_OP_STATUS);
	TEST_ASSERT(r && !r->error && !strcmp(r->state, "running"),
		    "VM not running after hostile clients");
	vmrun__ctl_reply__free_unpacked(r, NULL);
	r = request(fd, VMRUN__CTL_OP__CTL_OP_STOP);
	vmrun__ctl_reply__free_unpacked(r, NULL);
	close(fd);
	rc = vm_reap(&v, 60000);
	TEST_ASSERT(rc == 0, "exit %d", rc);
	unlink(v.console);
}

static void test_ctl_bad_socket_path(void)
{
	char path[] = "/tmp/vmrun-notsock-XXXXXX", out[4096], err[4096];
	int fd = mkstemp(path), rc;

	TEST_ASSERT(fd >= 0, "mkstemp");
	close(fd);
	{
		const char *const a[] = { "run",
					  "--ctl",
					  path,
					  "--kernel",
					  GUEST_DIR "/hello_mb.bin",
					  NULL };

		rc = run_vmrun(a, out, err, sizeof(out), 60000);
	}
	TEST_ASSERT(rc == 2 && strstr(err, "not a socket"), "exit %d: %s", rc,
		    err);
	TEST_ASSERT(!access(path, F_OK), "the file was removed");
	unlink(path);
	{
		const char *const a[] = { "ctl", "/tmp/vmrun-no-such.sock",
					  "status", NULL };

		rc = run_vmrun(a, out, err, sizeof(out), 60000);
	}
	TEST_ASSERT(rc == 2 && strstr(err, "cannot connect"), "exit %d: %s", rc,
		    err);
}

const struct test_case ctl_tests[] = {
	{ "pause_resume_stop", test_ctl_pause_resume_stop },
	{ "hostile_clients", test_ctl_hostile_clients },
	{ "bad_socket_path", test_ctl_bad_socket_path },
	{ NULL, NULL },
};
