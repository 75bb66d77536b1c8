/* SPDX-License-Identifier: MIT */
/*
 * The helpers of the snapshot tests (test_snapshot.c and
 * test_snapshot_bad.c): the reference guest run, saved and restored
 * through the vmrun command line, its console read.
 */
#include "tests/kvm/snapshot_util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/harness/test_util.h"
#include "tests/kvm/run_util.h"

char snap_dir[64];
static char saved_tail[256]; /* the saved console's unfinished line */

/*
 * The first tick a restored guest must print in full after @last: one
 * more, unless its console opens by finishing a tick line that the saved
 * console had begun.
 */
unsigned int snap_next_tick(const char *con, unsigned int last)
{
	char line[512];
	const char *p = snap_slurp(con), *nl = strchr(p, '\n');

	if (!saved_tail[0] || !nl)
		return last + 1;
	snprintf(line, sizeof(line), "%s%.*s", saved_tail, (int)(nl - p), p);
	return strncmp(line, "GUEST TICK n=", 13) ? last + 1 : last + 2;
}

void snap_mkpath(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", snap_dir, name);
}

void snap_setup_dir(void)
{
	snprintf(snap_dir, sizeof(snap_dir), "/tmp/vmrun-snap-%d",
		 (int)getpid());
	mkdir(snap_dir, 0700);
}

void snap_cleanup_dir(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", snap_dir);
	TEST_CHECK(system(cmd) == 0, "rm -rf %s", snap_dir);
}

/* Starts vmrun with @argv (after "vmrun"); its console goes to v->con. */
void snap_spawn(struct vmp *v, const char *const *argv)
{
	const char *a[32];
	char errf[160];
	int i, n = 0, st = 0;

	a[n++] = "vmrun";
	for (i = 0; argv[i]; i++)
		a[n++] = argv[i];
	a[n] = NULL;
	unlink(v->sock);
	snprintf(errf, sizeof(errf), "%s.stderr", v->sock);
	v->pid = fork();
	TEST_ASSERT(v->pid >= 0, "fork");
	if (v->pid == 0) {
		int null = open("/dev/null", O_RDWR);
		int e = open(errf, O_CREAT | O_TRUNC | O_WRONLY, 0600);

		dup2(null, 0);
		dup2(null, 1);
		dup2(e >= 0 ? e : null, 2);
		execv(VMRUN_BIN, (char *const *)(uintptr_t)a);
		_exit(127);
	}
	for (i = 0; i < 12000 && access(v->sock, F_OK); i++) {
		if (waitpid(v->pid, &st, WNOHANG) == v->pid)
			break; /* it is gone: no use waiting */
		usleep(10000);
	}
	TEST_ASSERT(!access(v->sock, F_OK),
		    "no control socket at %s (vmrun %s, status %#x): %s",
		    v->sock, i < 12000 ? "exited" : "still running", st,
		    snap_slurp(errf));
}

int snap_reap(struct vmp *v, int sig)
{
	int st;

	if (sig)
		kill(v->pid, sig);
	waitpid(v->pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

char *snap_slurp(const char *path)
{
	static char buf[1 << 20];
	int fd = open(path, O_RDONLY);
	ssize_t r = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : 0;

	if (fd >= 0)
		close(fd);
	buf[r > 0 ? r : 0] = 0;
	return buf;
}

struct ticks snap_scan(const char *path)
{
	struct ticks t = { .clean = true, .ordered = true };
	const char *p = snap_slurp(path);
	size_t len = strlen(p);

	t.partial = len && p[len - 1] != '\n';
	if (strstr(p, "GUEST FAIL"))
		t.clean = false;
	while ((p = strstr(p, "GUEST TICK n="))) {
		unsigned int n = (unsigned int)strtoul(p + 13, NULL, 10);
		const char *mm = strstr(p, "mismatches=");
		const char *nl = strchr(p, '\n');

		if (!nl)
			break; /* a line still being written */
		if (!mm || mm > nl || strtoul(mm + 11, NULL, 10) != 0)
			t.clean = false;
		{
			const char *vp = strstr(p, "verified=");
			unsigned long vv =
				vp && vp < nl ? strtoul(vp + 9, NULL, 10) : 0;

			if (!t.count)
				t.vfirst = vv;
			t.vlast = vv;
		}
		if (t.count && n != t.last + 1)
			t.ordered = false;
		if (!t.count)
			t.first = n;
		t.last = n;
		t.count++;
		p = nl;
	}
	return t;
}

/*
 * Waits (a deadline) until the guest has verified a whole pass of its
 * memory since the console began (after a restore: every page it owns
 * checked against what it wrote before the save), and @least ticks.
 */
struct ticks snap_wait_verified(const char *path, unsigned int least)
{
	struct ticks t;
	int i;

	for (i = 0; i < 18000; i++) {
		t = snap_scan(path);
		if (t.count >= least && t.vlast - t.vfirst >= WORK_PAGES)
			break;
		usleep(10000);
	}
	return t;
}

/* Waits (a deadline, not a window) for @least complete ticks. */
struct ticks snap_wait_ticks(const char *path, unsigned int least)
{
	struct ticks t;
	int i;

	for (i = 0; (t = snap_scan(path)).count < least && i < 18000; i++)
		usleep(10000);
	return t;
}

int snap_ctl(const char *sock, const char *op, const char *file,
	     const char *codec, char *out, char *err)
{
	const char *a[] = { "ctl", sock, op, file, "--compress", codec, NULL };

	if (!file)
		a[3] = NULL;
	else if (!codec)
		a[4] = NULL;
	return run_vmrun(a, out, err, 8192, 300000);
}

/* Pauses the VM and returns the ticks its console holds then. */
struct ticks snap_pause_scan(const struct vmp *v)
{
	char out[8192], err[8192];
	int rc = snap_ctl(v->sock, "pause", NULL, NULL, out, err);

	TEST_ASSERT(rc == 0, "pause: %d %s", rc, err);
	usleep(200000); /* let a line being written reach the file */
	return snap_scan(v->con);
}

/* Paused mid-line: the restored guest finishes that line. */
void snap_keep_tail(const char *con)
{
	const char *p = snap_slurp(con), *nl = strrchr(p, '\n');

	snprintf(saved_tail, sizeof(saved_tail), "%.200s", nl ? nl + 1 : p);
}

/* A disk copy that keeps the original's size and mtime. */
void snap_copy_disk(const char *from, const char *to)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "cp -p %s %s", from, to);
	TEST_ASSERT(system(cmd) == 0, "%s", cmd);
}

void snap_make_disk(const char *path)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);

	TEST_ASSERT(fd >= 0 && ftruncate(fd, 4 << 20) == 0, "disk %s", path);
	close(fd);
}

/* Runs the reference guest with a disk and rng, pauses it after a few
 * ticks and saves it in each codec; returns the last tick it printed. */
unsigned int snap_run_and_save(const char *cpus, const char *const *codecs,
			       unsigned int n)
{
	struct vmp v;
	char disk[128], img[128], out[8192], err[8192];
	unsigned int i;
	struct ticks t;
	int rc;

	snap_mkpath(disk, sizeof(disk), "disk.img");
	snap_mkpath(v.con, sizeof(v.con), "con0.txt");
	snap_mkpath(v.sock, sizeof(v.sock), "s0.sock");
	snap_make_disk(disk);
	{
		char con[160];
		const char *a[] = { "run",    "--cpus",	   cpus,
				    "--disk", disk,	   "--rng",
				    "--ctl",  v.sock,	   "--console",
				    con,      "--cmdline", CMDLINE,
				    NULL };

		snprintf(con, sizeof(con), "file:%s", v.con);
		snap_spawn(&v, a);
	}
	t = snap_wait_ticks(v.con, 4);
	TEST_ASSERT(t.count >= 4 && t.clean, "before the save: %u ticks%s",
		    t.count, t.clean ? "" : ", not clean");
	t = snap_pause_scan(&v);
	for (i = 0; i < n; i++) {
		snprintf(img, sizeof(img), "%s/img-%s", snap_dir, codecs[i]);
		rc = snap_ctl(v.sock, "save", img, codecs[i], out, err);
		TEST_ASSERT(rc == 0 && strstr(out, "saved "), "save %s: %d %s",
			    codecs[i], rc, err);
	}
	/* Killed, not stopped: nothing of the old process is needed. */
	snap_reap(&v, SIGKILL);
	snap_keep_tail(v.con);
	return t.last;
}

/* Restores @img (with its own disk copy) and checks the guest goes on;
 * @mode is NULL or a restore option ("--lazy"). */
/*
 * The core of snap_restore_check_mode(): @disk may be NULL (a guest without
 * one), and with @hi the first tick may be any of last + 1 .. hi + 1 (a
 * live save's point lies somewhere in the save).
 */
void snap_restore_check_span(const char *img, const char *disk,
			     unsigned int last, unsigned int hi,
			     unsigned int want_cpus, unsigned int k,
			     const char *mode, bool net)
{
	char con[160], out[8192], err[8192], name[32], spec[32];
	struct echo e = { .fd = -1 };
	const char *a[16];
	pthread_t et;
	struct vmp v;
	struct ticks t;
	int rc, n = 0, sv[2];

	snprintf(name, sizeof(name), "con-r%u.txt", k);
	snap_mkpath(v.con, sizeof(v.con), name);
	snprintf(name, sizeof(name), "r%u.sock", k);
	snap_mkpath(v.sock, sizeof(v.sock), name);
	snprintf(con, sizeof(con), "file:%s", v.con);
	a[n++] = "restore";
	a[n++] = img;
	a[n++] = "--ctl";
	a[n++] = v.sock;
	a[n++] = "--console";
	a[n++] = con;
	if (disk) {
		a[n++] = "--disk";
		a[n++] = disk;
	}
	if (net) {
		/* A new network back end: the old one went with the VM. */
		TEST_ASSERT(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0,
			    "socketpair: %s", strerror(errno));
		fcntl(sv[0], F_SETFD, FD_CLOEXEC);
		e.fd = sv[0];
		TEST_ASSERT(pthread_create(&et, NULL, echo_thread, &e) == 0,
			    "echo thread");
		snprintf(spec, sizeof(spec), "fd:%d", sv[1]);
		a[n++] = "--net";
		a[n++] = spec;
	}
	if (mode)
		a[n++] = mode;
	a[n] = NULL;
	snap_spawn(&v, a);
	if (net)
		close(sv[1]);
	rc = snap_ctl(v.sock, "status", NULL, NULL, out, err);
	TEST_ASSERT(rc == 0 && strstr(out, "state running"), "status: %d %s",
		    rc, out);
	{
		char want[32];

		snprintf(want, sizeof(want), "vcpus %u\n", want_cpus);
		TEST_ASSERT(strstr(out, want), "restored %s: want %u vCPUs: %s",
			    img, want_cpus, out);
	}
	t = snap_wait_verified(v.con, 4);
	if (net) {
		unsigned int i, before = e.frames;

		/* Frames cross the restored card (a deadline, not a window). */
		for (i = 0; i < 18000 && e.frames < before + 4; i++)
			usleep(10000);
		TEST_CHECK(e.frames >= before + 4,
			   "restored %s: %u frames echoed", img, e.frames);
	}
	rc = snap_reap(&v, SIGTERM);
	if (net) {
		const char *c = snap_slurp(v.con), *io = strstr(c, "GUEST IO");
		char first[256] = "";

		e.stop = 1;
		pthread_join(et, NULL);
		close(sv[0]);
		/* The first IO line, whole (last_kv() reads whole lines). */
		if (io)
			snprintf(first, sizeof(first), "%.*s\n",
				 (int)strcspn(io, "\n"), io);
		/* The guest got echoes back through the restored card. */
		TEST_CHECK(last_kv(c, "GUEST IO", "net_echo") >
					   last_kv(first, "GUEST IO",
						   "net_echo") &&
				   last_kv(c, "GUEST IO", "net_bad") == 0 &&
				   last_kv(c, "GUEST IO", "blk_bad") == 0,
			   "restored %s: network or disk trouble:\n%s", img, c);
	}
	TEST_ASSERT(t.count >= 4, "restored %s: %u ticks", img, t.count);
	TEST_ASSERT(
		t.vlast - t.vfirst >= WORK_PAGES,
		"restored %s: the guest verified %lu pages, not a whole pass",
		img, t.vlast - t.vfirst);
	if (hi)
		TEST_ASSERT(
			t.first > last && t.first <= hi + 1,
			"restored %s: counter at %u, saved between %u and %u",
			img, t.first, last, hi);
	else
		TEST_ASSERT(
			t.first == snap_next_tick(v.con, last),
			"restored %s: counter went from %u to %u (tail '%s')",
			img, last, t.first, saved_tail);
	TEST_ASSERT(t.clean && t.ordered,
		    "restored %s: the guest found a mismatch or skipped:\n%s",
		    img, snap_slurp(v.con));
	TEST_CHECK(rc == 128 + SIGTERM, "restored vmrun exit %d", rc);
}

void snap_restore_check_mode(const char *img, const char *disk,
			     unsigned int last, unsigned int want_cpus,
			     unsigned int k, const char *mode)
{
	snap_restore_check_span(img, disk, last, 0, want_cpus, k, mode, false);
}

void snap_restore_check(const char *img, const char *disk, unsigned int last,
			unsigned int want_cpus, unsigned int k)
{
	snap_restore_check_mode(img, disk, last, want_cpus, k, NULL);
}

void snap_write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);

	TEST_ASSERT(fd >= 0 && write(fd, data, len) == (ssize_t)len, "%s",
		    path);
	close(fd);
}
