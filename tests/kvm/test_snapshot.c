/* SPDX-License-Identifier: MIT */
/*
 * Snapshot save and restore of the reference guest through the vmrun
 * command line: save (every codec), kill, restore in a new process; the
 * guest's counter continues and its self-check (memory and disk) never
 * reports a mismatch. Failed saves leave the VM running and the old image
 * intact; bad images are refused with exit status 2.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/kvm/kvm_tests.h"
#include "tests/kvm/run_util.h"

#define CMDLINE "work=dirty mib=16 rate=20 tick_ms=100"
/* Writing all the time: every round of a live save finds pages again. */
#define CMDLINE_BUSY "work=dirty mib=16 rate=0 tick_ms=100"

struct vmp {
	pid_t pid;
	char con[128];
	char sock[128];
};

static char dir[64];
static char *slurp(const char *path);
static char saved_tail[256]; /* the saved console's unfinished line */

/*
 * The first tick a restored guest must print in full after @last: one
 * more, unless its console opens by finishing a tick line that the saved
 * console had begun.
 */
static unsigned int next_tick(const char *con, unsigned int last)
{
	char line[512];
	const char *p = slurp(con), *nl = strchr(p, '\n');

	if (!saved_tail[0] || !nl)
		return last + 1;
	snprintf(line, sizeof(line), "%s%.*s", saved_tail, (int)(nl - p), p);
	return strncmp(line, "GUEST TICK n=", 13) ? last + 1 : last + 2;
}

static void mkpath(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", dir, name);
}

static void setup_dir(void)
{
	snprintf(dir, sizeof(dir), "/tmp/vmrun-snap-%d", (int)getpid());
	mkdir(dir, 0700);
}

static void cleanup_dir(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	TEST_CHECK(system(cmd) == 0, "rm -rf %s", dir);
}

/* Starts vmrun with @argv (after "vmrun"); its console goes to v->con. */
static void spawn(struct vmp *v, const char *const *argv)
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
		    slurp(errf));
}

static int reap(struct vmp *v, int sig)
{
	int st;

	if (sig)
		kill(v->pid, sig);
	waitpid(v->pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *slurp(const char *path)
{
	static char buf[1 << 20];
	int fd = open(path, O_RDONLY);
	ssize_t r = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : 0;

	if (fd >= 0)
		close(fd);
	buf[r > 0 ? r : 0] = 0;
	return buf;
}

/*
 * Ticks on the console: their count, the first and last tick number,
 * and whether every line is clean (no mismatch, no failure line).
 */
struct ticks {
	unsigned int count, first, last;
	unsigned long vfirst, vlast; /* verified= at the first and last */
	bool clean, ordered;
	bool partial; /* the console ends mid-line */
};

static struct ticks scan(const char *path)
{
	struct ticks t = { .clean = true, .ordered = true };
	const char *p = slurp(path);
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

/* The pages of CMDLINE's workload (mib=16): one verification pass. */
#define WORK_PAGES 4096ul

/*
 * Waits (a deadline) until the guest has verified a whole pass of its
 * memory since the console began (after a restore: every page it owns
 * checked against what it wrote before the save), and @least ticks.
 */
static struct ticks wait_verified(const char *path, unsigned int least)
{
	struct ticks t;
	int i;

	for (i = 0; i < 18000; i++) {
		t = scan(path);
		if (t.count >= least && t.vlast - t.vfirst >= WORK_PAGES)
			break;
		usleep(10000);
	}
	return t;
}

/* Waits (a deadline, not a window) for @least complete ticks. */
static struct ticks wait_ticks(const char *path, unsigned int least)
{
	struct ticks t;
	int i;

	for (i = 0; (t = scan(path)).count < least && i < 18000; i++)
		usleep(10000);
	return t;
}

static int ctl(const char *sock, const char *op, const char *file,
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
static struct ticks pause_scan(const struct vmp *v)
{
	char out[8192], err[8192];
	int rc = ctl(v->sock, "pause", NULL, NULL, out, err);

	TEST_ASSERT(rc == 0, "pause: %d %s", rc, err);
	usleep(200000); /* let a line being written reach the file */
	return scan(v->con);
}

/* Paused mid-line: the restored guest finishes that line. */
static void keep_tail(const char *con)
{
	const char *p = slurp(con), *nl = strrchr(p, '\n');

	snprintf(saved_tail, sizeof(saved_tail), "%.200s", nl ? nl + 1 : p);
}

/* A disk copy that keeps the original's size and mtime. */
static void copy_disk(const char *from, const char *to)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "cp -p %s %s", from, to);
	TEST_ASSERT(system(cmd) == 0, "%s", cmd);
}

static void make_disk(const char *path)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);

	TEST_ASSERT(fd >= 0 && ftruncate(fd, 4 << 20) == 0, "disk %s", path);
	close(fd);
}

/* Runs the reference guest with a disk and rng, pauses it after a few
 * ticks and saves it in each codec; returns the last tick it printed. */
static unsigned int run_and_save(const char *cpus, const char *const *codecs,
				 unsigned int n)
{
	struct vmp v;
	char disk[128], img[128], out[8192], err[8192];
	unsigned int i;
	struct ticks t;
	int rc;

	mkpath(disk, sizeof(disk), "disk.img");
	mkpath(v.con, sizeof(v.con), "con0.txt");
	mkpath(v.sock, sizeof(v.sock), "s0.sock");
	make_disk(disk);
	{
		char con[160];
		const char *a[] = { "run",    "--cpus",	   cpus,
				    "--disk", disk,	   "--rng",
				    "--ctl",  v.sock,	   "--console",
				    con,      "--cmdline", CMDLINE,
				    NULL };

		snprintf(con, sizeof(con), "file:%s", v.con);
		spawn(&v, a);
	}
	t = wait_ticks(v.con, 4);
	TEST_ASSERT(t.count >= 4 && t.clean, "before the save: %u ticks%s",
		    t.count, t.clean ? "" : ", not clean");
	t = pause_scan(&v);
	for (i = 0; i < n; i++) {
		snprintf(img, sizeof(img), "%s/img-%s", dir, codecs[i]);
		rc = ctl(v.sock, "save", img, codecs[i], out, err);
		TEST_ASSERT(rc == 0 && strstr(out, "saved "), "save %s: %d %s",
			    codecs[i], rc, err);
	}
	/* Killed, not stopped: nothing of the old process is needed. */
	reap(&v, SIGKILL);
	keep_tail(v.con);
	return t.last;
}

/* Restores @img (with its own disk copy) and checks the guest goes on;
 * @mode is NULL or a restore option ("--lazy"). */
/*
 * The core of restore_check_mode(): @disk may be NULL (a guest without
 * one), and with @hi the first tick may be any of last + 1 .. hi + 1 (a
 * live save's point lies somewhere in the save).
 */
static void restore_check_span(const char *img, const char *disk,
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
	mkpath(v.con, sizeof(v.con), name);
	snprintf(name, sizeof(name), "r%u.sock", k);
	mkpath(v.sock, sizeof(v.sock), name);
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
	spawn(&v, a);
	if (net)
		close(sv[1]);
	rc = ctl(v.sock, "status", NULL, NULL, out, err);
	TEST_ASSERT(rc == 0 && strstr(out, "state running"), "status: %d %s",
		    rc, out);
	{
		char want[32];

		snprintf(want, sizeof(want), "vcpus %u\n", want_cpus);
		TEST_ASSERT(strstr(out, want), "restored %s: want %u vCPUs: %s",
			    img, want_cpus, out);
	}
	t = wait_verified(v.con, 4);
	if (net) {
		unsigned int i, before = e.frames;

		/* Frames cross the restored card (a deadline, not a window). */
		for (i = 0; i < 18000 && e.frames < before + 4; i++)
			usleep(10000);
		TEST_CHECK(e.frames >= before + 4,
			   "restored %s: %u frames echoed", img, e.frames);
	}
	rc = reap(&v, SIGTERM);
	if (net) {
		const char *c = slurp(v.con), *io = strstr(c, "GUEST IO");
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
			t.first == next_tick(v.con, last),
			"restored %s: counter went from %u to %u (tail '%s')",
			img, last, t.first, saved_tail);
	TEST_ASSERT(t.clean && t.ordered,
		    "restored %s: the guest found a mismatch or skipped:\n%s",
		    img, slurp(v.con));
	TEST_CHECK(rc == 128 + SIGTERM, "restored vmrun exit %d", rc);
}

static void restore_check_mode(const char *img, const char *disk,
			       unsigned int last, unsigned int want_cpus,
			       unsigned int k, const char *mode)
{
	restore_check_span(img, disk, last, 0, want_cpus, k, mode, false);
}

static void restore_check(const char *img, const char *disk, unsigned int last,
			  unsigned int want_cpus, unsigned int k)
{
	restore_check_mode(img, disk, last, want_cpus, k, NULL);
}

/* A 2-vCPU guest saved in each codec and each image restored (@mode as
 * for restore_check_mode()); returns the last tick before the save. */
static unsigned int save_restore_each(const char *mode)
{
	static const char *const codecs[] = { "lz4", "zstd", "none" };
	char disk[128], copy[128], img[128];
	unsigned int last, i;

	last = run_and_save("2", codecs, 3);
	mkpath(disk, sizeof(disk), "disk.img");
	for (i = 0; i < 3; i++) {
		snprintf(copy, sizeof(copy), "%s/disk-%u.img", dir, i);
		snprintf(img, sizeof(img), "%s/img-%s", dir, codecs[i]);
		copy_disk(disk, copy);
		restore_check_mode(img, copy, last, 2, i, mode);
	}
	return last;
}

static void test_snapshot_each_codec(void)
{
	setup_dir();
	save_restore_each(NULL);
	cleanup_dir();
}

/* One image, two independent VMs at once; four vCPUs each. */
static void test_snapshot_twice_4cpus(void)
{
	static const char *const codecs[] = { "lz4" };
	char disk[128], copy[2][128], img[128], con[2][160], out[8192],
		err[8192];
	struct vmp v[2];
	struct ticks t;
	unsigned int last, i;
	int rc;

	setup_dir();
	last = run_and_save("4", codecs, 1);
	mkpath(disk, sizeof(disk), "disk.img");
	mkpath(img, sizeof(img), "img-lz4");
	for (i = 0; i < 2; i++) {
		char name[32];

		snprintf(copy[i], sizeof(copy[i]), "%s/disk-%u.img", dir, i);
		copy_disk(disk, copy[i]);
		snprintf(name, sizeof(name), "con-t%u.txt", i);
		mkpath(v[i].con, sizeof(v[i].con), name);
		snprintf(name, sizeof(name), "t%u.sock", i);
		mkpath(v[i].sock, sizeof(v[i].sock), name);
		snprintf(con[i], sizeof(con[i]), "file:%s", v[i].con);
		{
			const char *a[] = { "restore",	 img,	  "--disk",
					    copy[i],	 "--ctl", v[i].sock,
					    "--console", con[i],  NULL };

			spawn(&v[i], a);
		}
	}
	for (i = 0; i < 2; i++) {
		rc = ctl(v[i].sock, "status", NULL, NULL, out, err);
		TEST_ASSERT(rc == 0 && strstr(out, "vcpus 4\n"),
			    "restore %u: %d %s", i, rc, out);
	}
	for (i = 0; i < 2; i++) {
		t = wait_verified(v[i].con, 4);
		TEST_ASSERT(t.count >= 4 && t.clean && t.ordered &&
				    t.vlast - t.vfirst >= WORK_PAGES &&
				    t.first == next_tick(v[i].con, last),
			    "restore %u: %u ticks from %u (saved at %u)%s", i,
			    t.count, t.first, last,
			    t.clean ? "" : ", with mismatches");
	}
	for (i = 0; i < 2; i++)
		reap(&v[i], SIGTERM);
	cleanup_dir();
}

/* A save into a full file system fails; the VM runs on, the old image
 * is intact, no temporary file is left. */
static void test_snapshot_full_fs(void)
{
	char mnt[100], img[128], out[8192], err[8192], con[160];
	struct vmp v;
	struct ticks t0, t1;
	int fd, rc;

	setup_dir();
	mkpath(mnt, sizeof(mnt), "full");
	mkdir(mnt, 0700);
	TEST_ASSERT(mount("tmpfs", mnt, "tmpfs", 0, "size=256k") == 0,
		    "mount tmpfs: %s", strerror(errno));
	snprintf(img, sizeof(img), "%s/img", mnt);
	fd = open(img, O_CREAT | O_WRONLY, 0600);
	TEST_ASSERT(fd >= 0 && write(fd, "OLD IMAGE", 9) == 9, "old image");
	close(fd);
	mkpath(v.con, sizeof(v.con), "con.txt");
	mkpath(v.sock, sizeof(v.sock), "s.sock");
	snprintf(con, sizeof(con), "file:%s", v.con);
	{
		const char *a[] = { "run",
				    "--ctl",
				    v.sock,
				    "--console",
				    con,
				    "--cmdline",
				    "work=dirty mib=32 rate=0 tick_ms=100",
				    NULL };

		spawn(&v, a);
	}
	t0 = wait_ticks(v.con, 2);
	rc = ctl(v.sock, "save", img, "none", out, err);
	TEST_CHECK(rc == 1 && strstr(err, "No space"),
		   "save into a full tmpfs: exit %d: %s", rc, err);
	TEST_CHECK(!strcmp(slurp(img), "OLD IMAGE"), "the old image changed");
	{
		char cmd[256];

		snprintf(cmd, sizeof(cmd), "test $(ls %s | wc -l) -eq 1", mnt);
		TEST_CHECK(system(cmd) == 0, "a temporary file was left in %s",
			   mnt);
	}
	rc = ctl(v.sock, "status", NULL, NULL, out, err);
	TEST_CHECK(rc == 0 && strstr(out, "state running"), "status: %s", out);
	t1 = wait_ticks(v.con, t0.count + 2);
	TEST_CHECK(t1.count >= t0.count + 2 && t1.clean,
		   "no progress after the failed save: %u then %u ticks",
		   t0.count, t1.count);
	reap(&v, SIGTERM);
	umount(mnt);
	cleanup_dir();
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);

	TEST_ASSERT(fd >= 0 && write(fd, data, len) == (ssize_t)len, "%s",
		    path);
	close(fd);
}

/* Truncated, corrupt and wrong-version images: exit 2, nothing runs. */
static void test_snapshot_bad_images(void)
{
	static const char *const codecs[] = { "zstd" };
	char img[128], bad[128], con[160], conf[128], out[8192], err[8192];
	const char *a[] = { "restore",		 bad, "--console", con,
			    "--disk-changed-ok", NULL };
	const char *v[] = { "image", "verify", bad, NULL };
	struct stat st;
	uint8_t *data;
	size_t len, offs[8];
	unsigned int i, n = 0;
	int fd, rc;

	setup_dir();
	run_and_save("1", codecs, 1);
	mkpath(img, sizeof(img), "img-zstd");
	mkpath(bad, sizeof(bad), "bad");
	mkpath(conf, sizeof(conf), "con-bad.txt");
	snprintf(con, sizeof(con), "file:%s", conf);
	TEST_ASSERT(stat(img, &st) == 0 && st.st_size > 4096, "image");
	len = (size_t)st.st_size;
	data = malloc(len);
	fd = open(img, O_RDONLY);
	TEST_ASSERT(data && fd >= 0 && read(fd, data, len) == (ssize_t)len,
		    "read image");
	close(fd);

	/* Truncations: inside the preamble, the header, mid-image, at END. */
	offs[n++] = 5;
	offs[n++] = 40;
	offs[n++] = len / 2;
	offs[n++] = len - 1;
	for (i = 0; i < n; i++) {
		write_file(bad, data, offs[i]);
		unlink(conf);
		rc = run_vmrun(a, out, err, sizeof(out), 120000);
		TEST_CHECK(rc == 2 && strstr(err, "restore"),
			   "truncated at %zu: exit %d: %s", offs[i], rc, err);
		TEST_CHECK(access(conf, F_OK) || !strstr(slurp(conf), "GUEST"),
			   "truncated at %zu: the guest ran", offs[i]);
		rc = run_vmrun(v, out, err, sizeof(out), 120000);
		TEST_CHECK(rc == 2, "verify truncated at %zu: exit %d", offs[i],
			   rc);
	}
	/* A flipped byte in the preamble, header, state, pages and END. */
	n = 0;
	offs[n++] = 2;
	offs[n++] = 50;
	offs[n++] = 300;
	offs[n++] = 2000;
	offs[n++] = len / 2;
	offs[n++] = len - 8;
	for (i = 0; i < n; i++) {
		data[offs[i]] ^= 0x40;
		write_file(bad, data, len);
		data[offs[i]] ^= 0x40;
		unlink(conf);
		rc = run_vmrun(a, out, err, sizeof(out), 120000);
		TEST_CHECK(rc == 2 && strstr(err, "restore"),
			   "byte %zu flipped: exit %d: %s", offs[i], rc, err);
		TEST_CHECK(access(conf, F_OK) || !strstr(slurp(conf), "GUEST"),
			   "byte %zu flipped: the guest ran", offs[i]);
		rc = run_vmrun(v, out, err, sizeof(out), 120000);
		TEST_CHECK(rc == 2, "verify, byte %zu flipped: exit %d",
			   offs[i], rc);
	}
	/* No image at all. */
	{
		const char *na[] = { "restore", "/nonexistent/vmrun.img",
				     "--console", con, NULL };

		rc = run_vmrun(na, out, err, sizeof(out), 120000);
		TEST_CHECK(rc == 2 && strstr(err, "No such file"),
			   "a missing image: exit %d: %s", rc, err);
	}
	/* An unknown format version (the preamble's second word). */
	data[8] = 99;
	write_file(bad, data, len);
	rc = run_vmrun(a, out, err, sizeof(out), 120000);
	TEST_CHECK(rc == 2 && strstr(err, "version"), "version 99: exit %d: %s",
		   rc, err);
	/* The good image still verifies and restores. */
	rc = run_vmrun((const char *[]){ "image", "verify", img, NULL }, out,
		       err, sizeof(out), 120000);
	TEST_CHECK(rc == 0 && strstr(out, "ok"), "verify good: %d %s", rc, err);
	/* Taken apart: every state message decodes with protoc. */
	rc = run_vmrun((const char *[]){ "image", "dump", img, NULL }, out, err,
		       sizeof(out), 120000);
	TEST_CHECK(rc == 0 && strstr(out, "vmrun.VcpuState") &&
			   strstr(out, "vmrun.SerialState (serial)") &&
			   strstr(out, "vmrun.VirtioMmioState (virtio-blk)"),
		   "image dump: %d %s %s", rc, out, err);
	rc = run_vmrun((const char *[]){ "image", "dump", img, "--section",
					 "99", NULL },
		       out, err, sizeof(out), 120000);
	TEST_CHECK(rc == 2 && strstr(err, "no section 99"),
		   "dump of a section that is not there: %d %s", rc, err);
	{
		static const struct {
			const char *section, *inner, *msg, *proto, *want;
		} dec[] = {
			{ "2", NULL, "vmrun.VmState", "vm_state.proto",
			  "pic_master" },
			{ "3", "--inner", "vmrun.VcpuState", "vcpu_x86.proto",
			  "regs" },
			{ "4", "--inner", "vmrun.SerialState", "devices.proto",
			  "lcr" },
		};
		char cmd[1024], dout[160];
		unsigned int k;

		TEST_CHECK(
			access("/usr/bin/protoc", X_OK) == 0,
			"no protoc: tests/deps.sh installs protobuf-compiler");
		mkpath(dout, sizeof(dout), "decoded.txt");
		for (k = 0; k < ARRAY_SIZE(dec); k++) {
			snprintf(
				cmd, sizeof(cmd),
				"%s image dump %s --section %s %s | protoc "
				"--proto_path=%s/proto --decode=%s %s/proto/%s "
				"> %s",
				VMRUN_BIN, img, dec[k].section,
				dec[k].inner ? dec[k].inner : "", SRC_DIR,
				dec[k].msg, SRC_DIR, dec[k].proto, dout);
			rc = system(cmd);
			TEST_CHECK(rc == 0 && strstr(slurp(dout), dec[k].want),
				   "%s: %d\n%s", cmd, rc, slurp(dout));
		}
	}
	free(data);
	cleanup_dir();
}

static int ctl_inc(const char *sock, const char *file, const char *codec,
		   char *out, char *err)
{
	const char *a[] = { "ctl",	  sock,	 "save",	  file,
			    "--compress", codec, "--incremental", NULL };

	return run_vmrun(a, out, err, 8192, 300000);
}

static int vmrun_rc(const char *const *a, char *out, char *err)
{
	return run_vmrun(a, out, err, 8192, 300000);
}

/*
 * A full image and two incremental ones saved while the guest runs (the
 * last one paused), with an incremental save between them that fails for
 * want of space and so must give its pages back to the next one; the
 * chain of three restores and the guest goes on with no mismatch. A
 * missing or replaced base is refused; a chain moved whole still reads.
 */
static void test_snapshot_chain(void)
{
	char disk[128], copy[128], a_img[128], b_img[128], c_img[128];
	char d_img[128];
	char mnt[128], full[160], con[160], out[8192], err[8192], cmd[1024];
	struct vmp v;
	struct ticks t;
	int rc;

	setup_dir();
	mkpath(disk, sizeof(disk), "disk.img");
	mkpath(a_img, sizeof(a_img), "a.img");
	mkpath(b_img, sizeof(b_img), "b.img");
	mkpath(c_img, sizeof(c_img), "c.img");
	mkpath(v.con, sizeof(v.con), "con0.txt");
	mkpath(v.sock, sizeof(v.sock), "s0.sock");
	make_disk(disk);
	snprintf(con, sizeof(con), "file:%s", v.con);
	{
		const char *a[] = { "run",    "--cpus",	   "2",
				    "--disk", disk,	   "--rng",
				    "--ctl",  v.sock,	   "--console",
				    con,      "--cmdline", CMDLINE,
				    NULL };

		spawn(&v, a);
	}
	t = wait_ticks(v.con, 3);
	rc = ctl_inc(v.sock, b_img, "lz4", out, err);
	TEST_CHECK(rc == 1 && strstr(err, "full image"),
		   "an incremental save with no base: exit %d: %s", rc, err);
	rc = ctl(v.sock, "save", a_img, "lz4", out, err);
	TEST_ASSERT(rc == 0, "full save: %d %s", rc, err);
	rc = ctl_inc(v.sock, a_img, "lz4", out, err);
	TEST_CHECK(rc == 1 && strstr(err, "base"),
		   "an incremental save over its own base: exit %d: %s", rc,
		   err);
	t = wait_ticks(v.con, t.count + 2);

	/* A one-page tmpfs, already full: the save fails after collecting. */
	mkpath(mnt, sizeof(mnt), "full");
	mkdir(mnt, 0700);
	TEST_ASSERT(mount("tmpfs", mnt, "tmpfs", 0, "size=4k") == 0,
		    "mount tmpfs: %s", strerror(errno));
	snprintf(full, sizeof(full), "%s/filler", mnt);
	{
		static char page[4096];
		int fd = open(full, O_CREAT | O_WRONLY, 0600);

		TEST_ASSERT(fd >= 0, "filler");
		TEST_CHECK(write(fd, page, sizeof(page)) > 0, "filler");
		close(fd);
	}
	snprintf(full, sizeof(full), "%s/x.img", mnt);
	rc = ctl_inc(v.sock, full, "lz4", out, err);
	TEST_CHECK(rc == 1 && strstr(err, "No space"),
		   "an incremental save into a full tmpfs: exit %d: %s", rc,
		   err);
	umount(mnt);
	t = wait_ticks(v.con, t.count + 2);
	TEST_CHECK(t.clean, "the guest found a mismatch after a failed save");

	rc = ctl_inc(v.sock, b_img, "zstd", out, err);
	TEST_ASSERT(rc == 0 && strstr(out, "incremental over") &&
			    strstr(out, "image 2 of"),
		    "incremental save: %d %s %s", rc, out, err);
	t = wait_ticks(v.con, t.count + 2);
	t = pause_scan(&v);
	rc = ctl_inc(v.sock, c_img, "none", out, err);
	TEST_ASSERT(rc == 0 && strstr(out, "image 3 of"),
		    "second incremental save: %d %s %s", rc, out, err);
	reap(&v, SIGKILL);
	keep_tail(v.con);

	/* The incremental image holds only what was written since. */
	rc = vmrun_rc(
		(const char *[]){ "image", "info", b_img, "--json", NULL }, out,
		err);
	TEST_CHECK(rc == 0 && strstr(out, "\"links\":2"), "info b: %d %s %s",
		   rc, out, err);
	{
		const char *p = strstr(out, "\"pages\":");
		unsigned long pages = p ? strtoul(p + 8, NULL, 10) : 0;

		TEST_CHECK(pages > 0 && pages < 65536 / 2,
			   "the incremental image holds %lu pages", pages);
	}
	rc = vmrun_rc((const char *[]){ "image", "verify", c_img, NULL }, out,
		      err);
	TEST_CHECK(rc == 0 && strstr(out, "3 images"), "verify c: %d %s %s", rc,
		   out, err);

	mkpath(copy, sizeof(copy), "disk-c.img");
	copy_disk(disk, copy);
	restore_check(c_img, copy, t.last, 2, 0);

	/* A restored VM saves incrementally over the image it came from. */
	mkpath(copy, sizeof(copy), "disk-r.img");
	copy_disk(disk, copy);
	mkpath(d_img, sizeof(d_img), "d.img");
	mkpath(v.con, sizeof(v.con), "con-rr.txt");
	mkpath(v.sock, sizeof(v.sock), "rr.sock");
	snprintf(con, sizeof(con), "file:%s", v.con);
	{
		const char *a[] = { "restore",	 c_img,	  "--disk",
				    copy,	 "--ctl", v.sock,
				    "--console", con,	  NULL };

		spawn(&v, a);
	}
	t = wait_ticks(v.con, 3);
	t = pause_scan(&v);
	rc = ctl_inc(v.sock, d_img, "lz4", out, err);
	TEST_ASSERT(rc == 0 && strstr(out, "image 4 of"),
		    "incremental save of a restored VM: %d %s %s", rc, out,
		    err);
	reap(&v, SIGKILL);
	keep_tail(v.con);
	mkpath(disk, sizeof(disk), "disk-d.img");
	copy_disk(copy, disk);
	restore_check(d_img, disk, t.last, 2, 1);
	/* The same chain lazily: each page from the newest link holding it. */
	mkpath(disk, sizeof(disk), "disk-dl.img");
	copy_disk(copy, disk);
	restore_check_mode(d_img, disk, t.last, 2, 2, "--lazy=demand");
	mkpath(disk, sizeof(disk), "disk-dl2.img");
	copy_disk(copy, disk);
	restore_check_mode(d_img, disk, t.last, 2, 3, "--lazy");

	/* A missing base, then a base replaced by another image. */
	snprintf(cmd, sizeof(cmd), "mv %s %s.moved", a_img, a_img);
	TEST_ASSERT(system(cmd) == 0, "%s", cmd);
	{
		const char *a[] = { "restore", c_img, "--console",
				    "file:/dev/null", NULL };

		rc = vmrun_rc(a, out, err);
		TEST_CHECK(rc == 2 && strstr(err, "missing"),
			   "restore with a missing base: exit %d: %s", rc, err);
		rc = vmrun_rc(
			(const char *[]){ "image", "verify", c_img, NULL }, out,
			err);
		TEST_CHECK(rc == 2 && strstr(err, "missing"),
			   "verify with a missing base: exit %d: %s", rc, err);
		snprintf(cmd, sizeof(cmd), "cp %s %s", c_img, a_img);
		TEST_ASSERT(system(cmd) == 0, "%s", cmd);
		rc = vmrun_rc(a, out, err);
		TEST_CHECK(rc == 2 && strstr(err, "not its base"),
			   "restore with a replaced base: exit %d: %s", rc,
			   err);
	}
	/* The chain moved as a whole: the bases are found beside it. */
	snprintf(cmd, sizeof(cmd),
		 "mv %s.moved %s && mkdir %s/moved && mv %s %s %s %s/moved/",
		 a_img, a_img, dir, a_img, b_img, c_img, dir);
	TEST_ASSERT(system(cmd) == 0, "%s", cmd);
	snprintf(c_img, sizeof(c_img), "%s/moved/c.img", dir);
	rc = vmrun_rc((const char *[]){ "image", "verify", c_img, NULL }, out,
		      err);
	TEST_CHECK(rc == 0 && strstr(out, "3 images"),
		   "verify the moved chain: %d %s %s", rc, out, err);
	cleanup_dir();
}

/* The offset of a byte inside the data of the image's first page batch
 * of more than one page (a walk over the section frames). */
static size_t data_byte(const uint8_t *d, size_t len)
{
	size_t off = 16;

	while (off + 32 <= len) {
		uint32_t type = d[off] | d[off + 1] << 8;
		uint64_t n = 0;
		int i;

		for (i = 7; i >= 0; i--)
			n = n << 8 | d[off + 8 + i];
		if (type == 4 && n > 8192 && off + 32 + n <= len)
			return off + 32 + n - 100;
		off += 32 + n;
	}
	return 0;
}

/*
 * Lazy restore: each codec with the background fill; demand-only
 * loading, saved again from there (the save reads the rest first) and
 * that image restored; a corrupt batch, which passes the structure
 * checks, stops the lazily restored VM with an error when it is read.
 */
static void test_snapshot_lazy(void)
{
	char disk[128], copy[128], img[128], again[128], bad[128], con[160];
	char out[8192], err[8192];
	struct vmp v;
	struct ticks t;
	unsigned int last;
	struct stat st;
	uint8_t *data;
	size_t len, at;
	int fd, rc;

	setup_dir();
	last = save_restore_each("--lazy");
	mkpath(disk, sizeof(disk), "disk.img");

	/* Demand only, then a full save of the VM so restored. */
	mkpath(copy, sizeof(copy), "disk-d.img");
	copy_disk(disk, copy);
	mkpath(img, sizeof(img), "img-zstd");
	mkpath(again, sizeof(again), "again.img");
	mkpath(v.con, sizeof(v.con), "con-d.txt");
	mkpath(v.sock, sizeof(v.sock), "d.sock");
	snprintf(con, sizeof(con), "file:%s", v.con);
	{
		const char *a[] = {
			"restore", img,	   "--disk",	    copy,
			"--ctl",   v.sock, "--lazy=demand", "--console",
			con,	   NULL
		};

		spawn(&v, a);
	}
	t = wait_verified(v.con, 3);
	TEST_CHECK(t.count >= 3 && t.clean && t.ordered &&
			   t.vlast - t.vfirst >= WORK_PAGES &&
			   t.first == next_tick(v.con, last),
		   "demand-loaded: %u ticks from %u (saved at %u)%s", t.count,
		   t.first, last, t.clean ? "" : ", a mismatch");
	/* Only what the guest touched was read: status says so. */
	rc = ctl(v.sock, "status", NULL, NULL, out, err);
	TEST_CHECK(rc == 0 && strstr(out, "mem loading lazily: "),
		   "status of a demand-loaded VM: %d %s", rc, out);
	t = pause_scan(&v);
	rc = ctl(v.sock, "save", again, "lz4", out, err);
	TEST_ASSERT(rc == 0 && strstr(out, "saved "),
		    "save of a demand-loaded VM: %d %s", rc, err);
	rc = ctl(v.sock, "status", NULL, NULL, out, err);
	TEST_CHECK(rc == 0 && !strstr(out, "mem loading"),
		   "status once the save read it all: %d %s", rc, out);
	reap(&v, SIGKILL);
	keep_tail(v.con);
	mkpath(disk, sizeof(disk), "disk-d2.img");
	copy_disk(copy, disk);
	restore_check(again, disk, t.last, 2, 7);

	/* Lazily from a pipe: refused before anything is built. */
	{
		char cmd[512], errf[160];

		mkpath(errf, sizeof(errf), "pipe.err");
		snprintf(cmd, sizeof(cmd),
			 "cat %s/img-lz4 | %s restore /proc/self/fd/0 --lazy "
			 "--console none 2>%s",
			 dir, VMRUN_BIN, errf);
		rc = system(cmd);
		TEST_CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 2 &&
				   strstr(slurp(errf), "regular file"),
			   "lazy restore from a pipe: %#x %s", rc, slurp(errf));
	}

	/* A flipped byte in a batch's data: found when the batch is read. */
	mkpath(img, sizeof(img), "img-none");
	mkpath(bad, sizeof(bad), "bad.img");
	TEST_ASSERT(stat(img, &st) == 0, "image");
	len = (size_t)st.st_size;
	data = malloc(len);
	fd = open(img, O_RDONLY);
	TEST_ASSERT(data && fd >= 0 && read(fd, data, len) == (ssize_t)len,
		    "read image");
	close(fd);
	at = data_byte(data, len);
	TEST_ASSERT(at > 0, "no page batch found in %s", img);
	data[at] ^= 0x40;
	write_file(bad, data, len);
	free(data);
	mkpath(disk, sizeof(disk), "disk.img");
	mkpath(copy, sizeof(copy), "disk-bad.img");
	copy_disk(disk, copy);
	{
		const char *a[] = { "restore",	      bad,
				    "--disk",	      copy,
				    "--lazy",	      "--console",
				    "file:/dev/null", NULL };

		rc = vmrun_rc(a, out, err);
		TEST_CHECK(rc == 1 && strstr(err, "lazy restore") &&
				   strstr(err, "checksum"),
			   "lazy restore of a corrupt batch: exit %d: %s", rc,
			   err);
		a[4] = "--disk-changed-ok";
		rc = vmrun_rc(a, out, err);
		TEST_CHECK(rc == 2 && strstr(err, "checksum"),
			   "restore of a corrupt batch: exit %d: %s", rc, err);
	}
	cleanup_dir();
}

/*
 * Disk, network card and rng all busy: the guest is saved (paused) in
 * the middle of it, killed, and restored with a new network back end,
 * plainly and lazily; its counter goes on, a whole pass verifies, and
 * frames cross the restored card both ways with none broken.
 */
static void test_snapshot_net_busy(void)
{
	char disk[128], copy[128], img[128], con[160], spec[32];
	struct echo e = { .fd = -1 };
	const char *c;
	pthread_t et;
	struct vmp v;
	struct ticks t;
	unsigned int i;
	int sv[2], rc;

	setup_dir();
	mkpath(disk, sizeof(disk), "disk.img");
	mkpath(img, sizeof(img), "img-net");
	mkpath(v.con, sizeof(v.con), "con0.txt");
	mkpath(v.sock, sizeof(v.sock), "s0.sock");
	make_disk(disk);
	snprintf(con, sizeof(con), "file:%s", v.con);
	TEST_ASSERT(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0,
		    "socketpair: %s", strerror(errno));
	fcntl(sv[0], F_SETFD, FD_CLOEXEC);
	e.fd = sv[0];
	TEST_ASSERT(pthread_create(&et, NULL, echo_thread, &e) == 0, "echo");
	snprintf(spec, sizeof(spec), "fd:%d", sv[1]);
	{
		const char *a[] = { "run",	 "--cpus",    "2",
				    "--disk",	 disk,	      "--rng",
				    "--net",	 spec,	      "--ctl",
				    v.sock,	 "--console", con,
				    "--cmdline", CMDLINE,     NULL };

		spawn(&v, a);
	}
	close(sv[1]);
	/* Until frames have gone both ways (a deadline, not a window). */
	for (i = 0; i < 18000; i++) {
		unsigned long long echoed;

		c = slurp(v.con);
		echoed = last_kv(c, "GUEST IO", "net_echo");
		if (echoed != ~0ULL && echoed >= 4 &&
		    last_kv(c, "GUEST IO", "blk_w") > 0)
			break;
		usleep(10000);
	}
	TEST_ASSERT(i < 18000, "no traffic before the save:\n%s", slurp(v.con));
	t = pause_scan(&v);
	{
		char out[8192], err[8192];

		rc = ctl(v.sock, "save", img, "lz4", out, err);
		TEST_ASSERT(rc == 0, "save: %d %s", rc, err);
	}
	reap(&v, SIGKILL);
	keep_tail(v.con);
	e.stop = 1;
	pthread_join(et, NULL);
	close(sv[0]);
	mkpath(copy, sizeof(copy), "disk-1.img");
	copy_disk(disk, copy);
	restore_check_span(img, copy, t.last, 0, 2, 0, NULL, true);
	mkpath(copy, sizeof(copy), "disk-2.img");
	copy_disk(disk, copy);
	restore_check_span(img, copy, t.last, 0, 2, 1, "--lazy", true);
	cleanup_dir();
}

static unsigned int json_uint(const char *out, const char *key)
{
	const char *p = strstr(out, key);

	return p ? (unsigned int)strtoul(p + strlen(key), NULL, 10) : 0;
}

/*
 * Live saves of a busy guest, full then incremental over it, each with
 * rounds written while the vCPUs run (so pages are written again); the
 * chain restores, plainly and lazily, and the guest goes on from a point
 * inside the second save, verifying a whole pass with no mismatch. No
 * disk: the guest goes on writing it after the save, so it would differ
 * from what the image records.
 */
static void test_snapshot_live(void)
{
	char a_img[128], b_img[128], con[160], out[8192], err[8192];
	unsigned int lo, hi;
	struct vmp v;
	struct ticks t;
	int rc;

	setup_dir();
	mkpath(a_img, sizeof(a_img), "a.img");
	mkpath(b_img, sizeof(b_img), "b.img");
	mkpath(v.con, sizeof(v.con), "con0.txt");
	mkpath(v.sock, sizeof(v.sock), "s0.sock");
	snprintf(con, sizeof(con), "file:%s", v.con);
	{
		const char *a[] = { "run",	  "--cpus", "2",
				    "--rng",	  "--ctl",  v.sock,
				    "--console",  con,	    "--cmdline",
				    CMDLINE_BUSY, NULL };

		spawn(&v, a);
	}
	t = wait_ticks(v.con, 3);
	{
		const char *a[] = { "ctl",	     v.sock, "save",   a_img,
				    "--live-rounds", "4",    "--json", NULL };

		rc = vmrun_rc(a, out, err);
		TEST_ASSERT(rc == 0 && strstr(out, "\"live\":true") &&
				    json_uint(out, "\"rounds\":") >= 4,
			    "live save: %d %s %s", rc, out, err);
		TEST_CHECK(json_uint(out, "\"pages\":") > 65536,
			   "a live save with 4 rounds wrote no page twice: %s",
			   out);
	}
	/* Bad live options are refused before anything is saved. */
	{
		static const char *const bad[] = { "0", "9", "x", "" };
		unsigned int k;

		for (k = 0; k < ARRAY_SIZE(bad); k++) {
			const char *a[] = { "ctl", v.sock,	    "save",
					    b_img, "--live-rounds", bad[k],
					    NULL };

			rc = vmrun_rc(a, out, err);
			TEST_CHECK(rc == 2 && strstr(err, "--live-rounds") &&
					   access(b_img, F_OK) != 0,
				   "--live-rounds '%s': %d %s", bad[k], rc,
				   err);
		}
		rc = vmrun_rc((const char *[]){ "restore", a_img,
						"--lazy=eager", NULL },
			      out, err);
		TEST_CHECK(rc == 2 && strstr(err, "--lazy=eager"),
			   "--lazy=eager: %d %s", rc, err);
	}
	/* On a terminal the save draws a progress bar, then its line. */
	{
		char cmd[1024], tty[160], c_img[128];

		mkpath(tty, sizeof(tty), "tty.txt");
		mkpath(c_img, sizeof(c_img), "c.img");
		snprintf(cmd, sizeof(cmd),
			 "script -qec '%s ctl %s save %s --live' /dev/null "
			 "> %s 2>&1",
			 VMRUN_BIN, v.sock, c_img, tty);
		rc = system(cmd);
		TEST_CHECK(rc == 0 && strstr(slurp(tty), "saving: [") &&
				   strstr(slurp(tty), "100%") &&
				   strstr(slurp(tty), "saved "),
			   "save on a terminal: %#x\n%s", rc, slurp(tty));
	}
	t = wait_ticks(v.con, t.count + 2);
	lo = scan(v.con).last;
	{
		const char *a[] = { "ctl",
				    v.sock,
				    "save",
				    b_img,
				    "--live-rounds",
				    "3",
				    "--incremental",
				    "--compress",
				    "zstd",
				    "--json",
				    NULL };

		rc = vmrun_rc(a, out, err);
		TEST_ASSERT(rc == 0 && strstr(out, "\"live\":true") &&
				    strstr(out, "\"incremental\":true"),
			    "live incremental save: %d %s %s", rc, out, err);
	}
	hi = scan(v.con).last + 1; /* a line may be on its way */
	reap(&v, SIGKILL);
	rc = vmrun_rc(
		(const char *[]){ "image", "info", b_img, "--json", NULL }, out,
		err);
	TEST_CHECK(rc == 0 && strstr(out, "\"live\":true") &&
			   strstr(out, "\"links\":2"),
		   "info: %d %s %s", rc, out, err);
	restore_check_span(b_img, NULL, lo, hi, 2, 0, NULL, false);
	restore_check_span(b_img, NULL, lo, hi, 2, 1, "--lazy", false);
	restore_check_span(a_img, NULL, 0, lo, 2, 2, "--lazy=demand", false);
	cleanup_dir();
}

const struct test_case snapshot_tests[] = {
	{ "each_codec", test_snapshot_each_codec },
	{ "twice_4cpus", test_snapshot_twice_4cpus },
	{ "full_fs", test_snapshot_full_fs },
	{ "bad_images", test_snapshot_bad_images },
	{ "chain", test_snapshot_chain },
	{ "lazy", test_snapshot_lazy },
	{ "live", test_snapshot_live },
	{ "net_busy", test_snapshot_net_busy },
	{ NULL, NULL },
};
