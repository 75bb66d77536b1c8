/* SPDX-License-Identifier: MIT */
/*
 * A stock Debian kernel under vmrun run: the bzImage as the package ships
 * it, the project's initramfs (tests/guest/linux/prepare.sh; tests/run.sh
 * passes its directory in VMRUN_LINUX_DIR), its workload with 1 and 4
 * vCPUs, the disk both ways, frames echoed through the network device,
 * power-off and reboot (corrupt kernels and initramfs refused:
 * test_linux_bad.c).
 *
 * A stock kernel needs a KVM that runs guest ring 0 (VMX/SVM): on PVM the
 * boot tests skip, loudly; the emulated host runs them. The refusals need
 * no guest and run everywhere.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/kvm/kvm_tests.h"
#include "tests/kvm/run_util.h"

#define CAP (1 << 20)
/* A deadline for a run gone wrong: a boot in the emulated host takes
 * 15-40 s when it does not hang (docs/linux-guest.md). */
#define DEADLINE_MS 300000

static char out[CAP], err[CAP];
static char kernel[4096], vmlinux[4096], initrd[4096];
/* What boot() boots: vmlinuz unless a test says, and how (vmrun's
 * --kernel-entry: auto unpacks the vmlinux inside on the host and boots
 * it through its PVH entry). */
static const char *boot_kernel = kernel, *boot_entry = "auto";

/* True if this KVM runs an unmodified kernel (not PVM). */
static bool stock_kernels_boot(void)
{
	const char *const a[] = { "info", "--kvm", NULL };

	return run_vmrun(a, out, err, CAP, 60000) == 0 &&
	       strncmp(out, "kvm_pvm", 7) != 0;
}

/* Finds the prepared guest; false (after a failed assert) if missing. */
static bool linux_files(void)
{
	const char *dir = getenv("VMRUN_LINUX_DIR");

	TEST_CHECK(
		dir != NULL,
		"VMRUN_LINUX_DIR is not set: tests/run.sh sets it to what bash tests/guest/linux/prepare.sh prints");
	if (!dir)
		return false;
	snprintf(kernel, sizeof(kernel), "%s/vmlinuz", dir);
	snprintf(vmlinux, sizeof(vmlinux), "%s/vmlinux", dir);
	snprintf(initrd, sizeof(initrd), "%s/initrd.img", dir);
	TEST_CHECK(!access(kernel, R_OK) && !access(vmlinux, R_OK) &&
			   !access(initrd, R_OK),
		   "no %s, %s or %s", kernel, vmlinux, initrd);
	return !access(kernel, R_OK) && !access(vmlinux, R_OK) &&
	       !access(initrd, R_OK);
}

/*
 * In an emulated host (tests/kvmhost/) with more than one CPU, Debian's
 * kernel hangs early in most boots, under QEMU's own microvm as under
 * vmrun; with one CPU it boots every time (docs/linux-guest.md). There the
 * boot tests run in a one-CPU emulated host (tests/run.sh starts one for
 * this suite), or when asked, VMRUN_TEST_LINUX=1.
 */
static bool emulated_host_skips(void)
{
	const char *cpus = getenv("VMRUN_KVMHOST_CPUS");

	if (!getenv("VMRUN_KVMHOST") || getenv("VMRUN_TEST_LINUX"))
		return false;
	return !cpus || strcmp(cpus, "1") != 0;
}

#define REQUIRE_LINUX()                                                     \
	do {                                                                \
		TEST_REQUIRE(stock_kernels_boot(),                          \
			     "a KVM that runs unmodified kernels (this "    \
			     "is PVM)");                                    \
		TEST_REQUIRE(!emulated_host_skips(),                        \
			     "a host where a stock kernel boots reliably "  \
			     "(an emulated host of several CPUs hangs it; " \
			     "tests/run.sh boots it in one of one CPU)");   \
		if (!linux_files())                                         \
			return;                                             \
	} while (0)

struct ticks {
	unsigned int nr;
	unsigned long long last_n, written, verified, mismatches;
	bool increasing;
};

static void parse_ticks(const char *s, struct ticks *t)
{
	const char *p = s;

	memset(t, 0, sizeof(*t));
	t->increasing = true;
	while ((p = strstr(p, "GUEST TICK "))) {
		unsigned long long n, w, v, mm;

		if (sscanf(p,
			   "GUEST TICK n=%llu written=%llu verified=%llu mismatches=%llu",
			   &n, &w, &v, &mm) == 4) {
			if (t->nr && n <= t->last_n)
				t->increasing = false;
			t->nr++;
			t->last_n = n;
			t->written = w;
			t->verified = v;
			t->mismatches += mm;
		}
		p++;
	}
}

/*
 * Boots the guest with @cpus vCPUs and @extra on its command line (after
 * the kernel's options), plus @args (NULL-terminated, may be NULL) for
 * vmrun; returns vmrun's exit status. With @until (may be NULL) the guest
 * runs until @until says the output shows what the test waits for (a
 * deadline, not a window) and is then stopped with SIGTERM: vmrun exits
 * 128 + SIGTERM. Without, the guest ends itself (ticks=N).
 */
static int boot_until(const char *cpus, const char *extra,
		      const char *const *args, run_until_t until)
{
	char cmdline[1024];
	const char *a[32] = { "run",	   "--kernel",	     boot_kernel,
			      "--initrd",  initrd,	     "--cpus",
			      cpus,	   "--mem",	     "512M",
			      "--console", "stdio",	     "--cmdline",
			      cmdline,	   "--kernel-entry", boot_entry };
	unsigned int n = 15;

	snprintf(cmdline, sizeof(cmdline),
		 "console=ttyS0 panic=-1 quiet loglevel=4 %s", extra);
	while (args && *args && n < ARRAY_SIZE(a) - 1)
		a[n++] = *args++;
	a[n] = NULL;
	return run_vmrun_until(a, out, err, CAP, DEADLINE_MS, SIGTERM, until,
			       NULL);
}

static int boot(const char *cpus, const char *extra, const char *const *args)
{
	return boot_until(cpus, extra, args, NULL);
}

/* Disk traffic both ways: sectors written and read back. */
static bool blk_busy(const char *o, void *arg __unused)
{
	unsigned long long w = last_kv(o, "GUEST IO", "blk_w"),
			   r = last_kv(o, "GUEST IO", "blk_r");

	return w != ~0ULL && r != ~0ULL && w >= 16 && r > 16;
}

/* Frames echoed back to the guest. */
static bool net_echoed(const char *o, void *arg __unused)
{
	unsigned long long e = last_kv(o, "GUEST IO", "net_echo");

	return e != ~0ULL && e >= 3;
}

/* The workload ran: READY, at least @ticks increasing reports, no loss. */
static void check_workload(const char *cpus, unsigned int ticks, bool verified)
{
	char want[64];
	struct ticks t;
	const char *p;

	/* The serial console ends lines with "\r\n" (the tty's ONLCR). */
	snprintf(want, sizeof(want), "GUEST CPUINFO processors=%s", cpus);
	p = strstr(out, want);
	TEST_ASSERT(p && (p[strlen(want)] == '\r' || p[strlen(want)] == '\n'),
		    "no '%s' (the guest's /proc/cpuinfo): %s", want, out);
	snprintf(want, sizeof(want), "GUEST READY cpus=%s ", cpus);
	TEST_ASSERT(strstr(out, want), "no '%s': %s", want, out);
	parse_ticks(out, &t);
	TEST_ASSERT(t.nr >= ticks && t.increasing,
		    "%u TICK lines (want %u), increasing %d: %s", t.nr, ticks,
		    t.increasing, out);
	TEST_ASSERT(t.mismatches == 0 && !strstr(out, "GUEST FAIL"),
		    "mismatches %llu: %s", t.mismatches, out);
	TEST_ASSERT(t.written > 0 && (!verified || t.verified > 0),
		    "%llu pages written, %llu verified: %s", t.written,
		    t.verified, out);
	TEST_ASSERT(strstr(out, "GUEST CLOCK kvm-clock"),
		    "the guest's clocksource is not kvm-clock: %s", out);
}

/* 15 reports, and memory verified: the workload runs in full. */
static bool workload_ran(const char *o, void *arg __unused)
{
	struct ticks t;

	parse_ticks(o, &t);
	return t.nr >= 15 && t.verified > 0;
}

/*
 * The workload on @cpus vCPUs. With @poweroff the guest ends itself after
 * 15 reports and vmrun must exit 0 (whether a verification pass fits in
 * them is up to the host's speed, so that is not asked); else it runs
 * until it has verified memory and is stopped.
 */
static void workload(const char *cpus, bool poweroff)
{
	int rc;

	REQUIRE_LINUX();
	/* Paced (16 MiB/s). Unpaced on 4 vCPUs in an emulated host of one
	 * CPU, one run outlived the test's own deadlines (300 s) until the
	 * emulated host's 900 s limit, as if the test process got no CPU
	 * beside four busy vCPU threads; why is not known. */
	if (poweroff)
		rc = boot(cpus,
			  "work=dirty mib=64 rate=16 ticks=15 tick_ms=200",
			  NULL);
	else
		rc = boot_until(cpus, "work=dirty mib=64 rate=16 tick_ms=200",
				NULL, workload_ran);
	TEST_ASSERT(rc == (poweroff ? 0 : 128 + SIGTERM),
		    "%s vCPUs: exit %d, stderr: %s\nconsole: %s", cpus, rc, err,
		    out);
	check_workload(cpus, 15, !poweroff);
	TEST_ASSERT(!poweroff || strstr(out, "GUEST POWEROFF"),
		    "no POWEROFF line: %s", out);
}

/* The bzImage through its own 64-bit entry: the kernel unpacks itself. */
static void test_linux_boots_1vcpu(void)
{
	boot_entry = "bzimage";
	workload("1", false);
	boot_entry = "auto";
}

/* The vmlinux inside the bzImage, unpacked on the host (or taken from
 * its cache), through the PVH entry; "pvh" fails if it cannot. */
static void test_linux_boots_4vcpus(void)
{
	boot_entry = "pvh";
	workload("4", false);
	boot_entry = "auto";
}

/* The vmlinux ELF inside the same vmlinuz, through its PVH entry. */
static void test_linux_boots_pvh(void)
{
	boot_kernel = vmlinux;
	workload("2", true);
	boot_kernel = kernel;
}

/* reboot(2) inside: the guest resets, vmrun exits 3. */
static void test_linux_reboot(void)
{
	int rc;

	REQUIRE_LINUX();
	rc = boot("2", "work=idle mib=16 ticks=3 tick_ms=100 end=reboot", NULL);
	TEST_ASSERT(rc == 3, "exit %d (want 3, guest reset): %s\n%s", rc, err,
		    out);
	TEST_ASSERT(strstr(out, "GUEST REBOOT"), "no REBOOT line: %s", out);
}

static uint64_t sector_sum(const uint8_t *s)
{
	uint64_t sum = 0, q;
	unsigned int i;

	for (i = 0; i < 64; i++) {
		memcpy(&q, s + i * 8, 8);
		sum = (sum << 1 | sum >> 63) ^ q;
	}
	return sum;
}

/* The guest reads what the host wrote; the host finds what it wrote. */
static void test_linux_disk_both_ways(void)
{
	char path[] = "/tmp/vmrun-ldisk-XXXXXX";
	uint8_t sec[512], *img;
	unsigned int i, found = 0;
	unsigned long long host;
	const size_t size = 8 << 20;
	int fd, rc;

	REQUIRE_LINUX();
	fd = mkstemp(path);
	TEST_ASSERT(fd >= 0, "mkstemp");
	TEST_ASSERT(ftruncate(fd, (off_t)size) == 0, "ftruncate");
	memcpy(sec, "VMRUNHST", 8);
	for (i = 8; i < 512; i++)
		sec[i] = (uint8_t)(i * 13 + 5);
	TEST_ASSERT(pwrite(fd, sec, 512, 2048 * 512) == 512, "pwrite");
	{
		const char *const a[] = { "--disk", path, NULL };

		rc = boot_until("2", "work=idle mib=16 tick_ms=100", a,
				blk_busy);
	}
	TEST_ASSERT(rc == 128 + SIGTERM && blk_busy(out, NULL),
		    "exit %d (want %d, stopped once the disk was busy): %s\n%s",
		    rc, 128 + SIGTERM, err, out);
	host = last_kv(out, "GUEST DEV blk ok", "host");
	TEST_ASSERT(host == sector_sum(sec),
		    "guest saw host sector checksum %#llx, want %#llx: %s",
		    host, (unsigned long long)sector_sum(sec), out);
	TEST_ASSERT(last_kv(out, "GUEST IO", "blk_w") > 0 &&
			    last_kv(out, "GUEST IO", "blk_r") > 0 &&
			    last_kv(out, "GUEST IO", "blk_bad") == 0,
		    "IO counters: %s", out);
	img = malloc(size);
	TEST_ASSERT(img && pread(fd, img, size, 0) == (ssize_t)size, "pread");
	for (i = 0; i < 2048; i++) {
		const uint8_t *s = img + i * 512ULL;
		uint64_t k, sum = 0, q;
		unsigned int j;

		if (memcmp(s, "VMRUNBLK", 8))
			continue;
		memcpy(&k, s + 8, 8);
		TEST_ASSERT(k == i, "sector %u claims to be sector %llu", i,
			    (unsigned long long)k);
		for (j = 4; j < 64; j++) {
			memcpy(&q, s + j * 8, 8);
			sum = (sum << 1 | sum >> 63) ^ q;
		}
		memcpy(&q, s + 24, 8);
		TEST_ASSERT(q == sum, "sector %u checksum %#llx, want %#llx", i,
			    (unsigned long long)q, (unsigned long long)sum);
		found++;
	}
	TEST_ASSERT(found >= 8, "only %u guest sectors in the image", found);
	TEST_ASSERT(!memcmp(img + 2048 * 512, sec, 512),
		    "the host sector was overwritten");
	free(img);
	close(fd);
	unlink(path);
}

/* Frames cross the guest's network device and come back. */
static void test_linux_net_echo(void)
{
	struct echo e = { 0 };
	pthread_t t;
	char spec[32];
	int sv[2], rc;
	unsigned long long tx, echo, bad;

	REQUIRE_LINUX();
	TEST_ASSERT(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0,
		    "socketpair: %s", strerror(errno));
	fcntl(sv[0], F_SETFD, FD_CLOEXEC);
	e.fd = sv[0];
	pthread_create(&t, NULL, echo_thread, &e);
	snprintf(spec, sizeof(spec), "fd:%d", sv[1]);
	{
		const char *const a[] = { "--net", spec, NULL };

		rc = boot_until("1", "work=idle mib=16 tick_ms=100", a,
				net_echoed);
	}
	e.stop = 1;
	pthread_join(t, NULL);
	close(sv[0]);
	close(sv[1]);
	TEST_ASSERT(rc == 128 + SIGTERM,
		    "exit %d (want %d, stopped once frames came back): %s\n%s",
		    rc, 128 + SIGTERM, err, out);
	TEST_ASSERT(strstr(out, "GUEST DEV net ok"), "no net device: %s", out);
	tx = last_kv(out, "GUEST IO", "net_tx");
	echo = last_kv(out, "GUEST IO", "net_echo");
	bad = last_kv(out, "GUEST IO", "net_bad");
	TEST_ASSERT(tx != ~0ULL && tx > 0 && echo > 0 && bad == 0,
		    "tx %llu echo %llu bad %llu (echoed %u): %s", tx, echo, bad,
		    e.frames, out);
}

/* vmrun with @argv in the background (@keep_fd as its fd 3, if >= 0),
 * once its control socket is up. */
static pid_t spawn_ctl_fd(const char *const *argv, const char *sock,
			  int keep_fd)
{
	pid_t pid;

	unlink(sock);
	pid = spawn_vmrun(argv, NULL, keep_fd);
	TEST_ASSERT(pid > 0 && wait_file(sock, pid, DEADLINE_MS),
		    "no control socket %s", sock);
	return pid;
}

static pid_t spawn_ctl(const char *const *argv, const char *sock)
{
	return spawn_ctl_fd(argv, sock, -1);
}

/*
 * A destination in @tmp: vmrun run --incoming on a free loopback port,
 * its control socket @sock, its console in the file @con, and @net (may
 * be NULL) as its network back end over @keep_fd. Returns its pid and
 * the URI it listens on in @uri.
 */
/* Where start_incoming()'s destination listens. */
static const char *incoming_listen = "tcp:127.0.0.1:0";

static pid_t start_incoming(const char *tmp, const char *sock, const char *con,
			    const char *net, int keep_fd, char *uri,
			    size_t urilen)
{
	char errf[96], spec[128];
	const char *p = NULL;
	const char *a[] = {
		"run",	     "--incoming", incoming_listen,	 "--ctl", sock,
		"--console", spec,	   net ? "--net" : NULL, net,	  NULL
	};
	pid_t pid;
	int i;

	snprintf(errf, sizeof(errf), "%s/dst.err", tmp);
	snprintf(spec, sizeof(spec), "file:%s", con);
	pid = spawn_vmrun(a, errf, keep_fd);
	for (i = 0; i < DEADLINE_MS / 10 && !(p && strchr(p, '\n')); i++) {
		int fd = open(errf, O_RDONLY);
		ssize_t r = fd >= 0 ? read(fd, err, 4096) : 0;

		if (fd >= 0)
			close(fd);
		err[r > 0 ? r : 0] = 0;
		p = strstr(err, "on tcp:");
		usleep(10000);
	}
	TEST_ASSERT(p && strchr(p, '\n'), "no destination: %s", err);
	snprintf(uri, urilen, "%.*s", (int)(strchr(p, '\n') - p - 3), p + 3);
	return pid;
}

/*
 * Waits (a deadline, never a window) until the console @con has at
 * least @ticks whole TICK lines and the guest has verified @pages more
 * pages than at its first one; fails on anything the guest reports bad.
 */
static struct console_scan wait_console(const char *con, unsigned int ticks,
					unsigned long long pages,
					unsigned int splices)
{
	struct console_scan cs;
	long long end = now_ms() + DEADLINE_MS;

	for (;;) {
		console_scan(con, &cs);
		if (cs.bad ||
		    (cs.ticks >= ticks &&
		     cs.last_verified - cs.first_verified >= pages) ||
		    now_ms() > end)
			break;
		usleep(20000);
	}
	TEST_ASSERT(cs.bad == 0 && cs.broken <= splices,
		    "%s: the guest reported (%u broken lines: '%s' '%s'):%s",
		    con, cs.broken, cs.broken_line[0], cs.broken_line[1],
		    cs.why);
	TEST_ASSERT(cs.ticks >= ticks &&
			    cs.last_verified - cs.first_verified >= pages,
		    "%s: %u ticks, %llu pages verified (want %u, %llu); last "
		    "line '%s'",
		    con, cs.ticks, cs.last_verified - cs.first_verified, ticks,
		    pages, cs.last_line);
	return cs;
}

static void ctl_ok(const char *sock, const char *op, const char *arg,
		   const char *want)
{
	const char *a[] = { "ctl", sock, op, arg, NULL };
	int rc = run_vmrun(a, out, err, CAP, DEADLINE_MS);

	TEST_ASSERT(rc == 0 && strstr(out, want), "ctl %s: exit %d: %s %s", op,
		    rc, out, err);
}

/*
 * A Linux guest writing and verifying its memory on 2 vCPUs: put back to
 * a checkpoint twice (each reset verified against the whole checkpoint),
 * then saved, killed and restored in a new process, then migrated live to
 * a third; its kernel, timers and workload go on and it finds nothing
 * wrong at any point.
 */
static void test_linux_checkpoint_and_restore(void)
{
	char tmp[] = "/tmp/vmrun-lsnap-XXXXXX", sock[96], con[96], img[96],
	     spec[128], cmdline[256];
	/* One verification pass of the workload's 32 MiB. */
	const unsigned long long pass = 32ULL << 8;
	struct console_scan cs;
	unsigned long long last;
	pid_t pid;
	int st, i;

	REQUIRE_LINUX();
	TEST_ASSERT(mkdtemp(tmp), "mkdtemp");
	snprintf(sock, sizeof(sock), "%s/ctl.sock", tmp);
	snprintf(con, sizeof(con), "%s/con0.txt", tmp);
	snprintf(img, sizeof(img), "%s/linux.vmsnap", tmp);
	snprintf(spec, sizeof(spec), "file:%s", con);
	snprintf(cmdline, sizeof(cmdline),
		 "console=ttyS0 panic=-1 quiet loglevel=4 work=dirty mib=32 "
		 "rate=8 tick_ms=200");
	{
		const char *const a[] = { "run",       "--kernel", vmlinux,
					  "--initrd",  initrd,	   "--cpus",
					  "2",	       "--mem",	   "512M",
					  "--console", spec,	   "--cmdline",
					  cmdline,     "--ctl",	   sock,
					  NULL };

		pid = spawn_ctl(a, sock);
	}
	cs = wait_console(con, 3, 0, 0);
	ctl_ok(sock, "checkpoint", NULL, "checkpoint: ");
	for (i = 0; i < 2; i++) {
		cs = wait_console(con, cs.ticks + 3, 0, (unsigned int)i);
		ctl_ok(sock, "reset", "--verify", ", verified");
	}
	/* A whole pass verified after the last reset, then the save. */
	console_scan(con, &cs);
	last = cs.last_verified - cs.first_verified;
	wait_console(con, cs.ticks + 2, last + pass, 2);
	/* Paused first, so the console ends where the image does. */
	ctl_ok(sock, "pause", NULL, "");
	console_scan(con, &cs);
	last = cs.last_n;
	ctl_ok(sock, "save", img, "saved ");
	kill(pid, SIGKILL);
	reap_vmrun(pid, DEADLINE_MS);

	snprintf(con, sizeof(con), "%s/con1.txt", tmp);
	snprintf(spec, sizeof(spec), "file:%s", con);
	{
		const char *const a[] = { "restore", img,  "--console", spec,
					  "--ctl",   sock, NULL };

		pid = spawn_ctl(a, sock);
	}
	/* The restored console may open with the rest of a cut line, whose
	 * tick is then not counted. */
	cs = wait_console(con, 3, pass, 1);
	TEST_ASSERT(cs.first_n > last && cs.first_n <= last + 2,
		    "the restored guest's first tick is n=%llu after n=%llu",
		    cs.first_n, last);

	/* Then live to another process, which goes on from the freeze. */
	{
		char sock2[96], con2[96], uri[128];
		pid_t dst;

		snprintf(sock2, sizeof(sock2), "%s/dst.sock", tmp);
		snprintf(con2, sizeof(con2), "%s/con2.txt", tmp);
		dst = start_incoming(tmp, sock2, con2, NULL, -1, uri,
				     sizeof(uri));
		ctl_ok(sock, "migrate", uri, "migrated to ");
		st = reap_vmrun(pid, DEADLINE_MS);
		TEST_ASSERT(st == 0, "the migrated source: exit %d", st);
		console_scan(con, &cs);
		last = cs.last_n;
		cs = wait_console(con2, 3, pass, 1);
		TEST_ASSERT(cs.first_n > last && cs.first_n <= last + 2,
			    "the migrated guest's first tick is n=%llu after "
			    "n=%llu",
			    cs.first_n, last);
		pid = dst;
		snprintf(sock, sizeof(sock), "%s", sock2);
		snprintf(con, sizeof(con), "%s", con2);
	}
	ctl_ok(sock, "stop", NULL, "");
	st = reap_vmrun(pid, DEADLINE_MS);
	TEST_ASSERT(st == 0, "the last vmrun: exit %d", st);
	wait_console(con, 3, pass, 2);
	snprintf(cmdline, sizeof(cmdline), "rm -rf %s", tmp);
	TEST_CHECK(system(cmdline) == 0, "%s", cmdline);
}

/* The last value of @key in the GUEST IO lines of the console @con. */
static unsigned long long con_io(const char *con, const char *key)
{
	size_t n = 0;
	char *t = slurp_file(con, &n);
	unsigned long long v = t ? last_kv(t, "GUEST IO", key) : ~0ULL;

	free(t);
	return v;
}

/*
 * Waits (a deadline) until the console @con's IO counters pass @blk_w,
 * @blk_r and @echo: the disk written and read back and frames echoed,
 * none of it bad. Should they not, and @sock is the ctl socket of the
 * vmrun behind @con, that VM is paused and saved as evidence (its
 * devices', local APICs' and IOAPIC's state, for `vmrun image dump`):
 * beside the console (@con with ".stalled" added), or as stalled.vmsnap
 * in the directory $VMRUN_TEST_EVIDENCE names (the emulated host's /tmp
 * is gone when it stops).
 */
static void wait_io(const char *con, const char *sock, unsigned long long blk_w,
		    unsigned long long blk_r, unsigned long long echo)
{
	long long end = now_ms() + DEADLINE_MS;
	unsigned long long w, r, e, bad;
	bool ok;

	for (;;) {
		w = con_io(con, "blk_w");
		r = con_io(con, "blk_r");
		e = con_io(con, "net_echo");
		bad = con_io(con, "blk_bad") + con_io(con, "net_bad");
		if ((bad && bad < ~0ULL / 2) ||
		    (w != ~0ULL && r != ~0ULL && e != ~0ULL && w > blk_w &&
		     r > blk_r && e > echo) ||
		    now_ms() > end)
			break;
		usleep(50000);
	}
	ok = bad == 0 && w != ~0ULL && r != ~0ULL && e != ~0ULL && w > blk_w &&
	     r > blk_r && e > echo;
	if (sock && !ok) {
		const char *keep = getenv("VMRUN_TEST_EVIDENCE");
		char img[160];
		const char *const p[] = { "ctl", sock, "pause", NULL };
		const char *const a[] = { "ctl", sock, "save", img, NULL };

		if (keep)
			snprintf(img, sizeof(img), "%s/stalled.vmsnap", keep);
		else
			snprintf(img, sizeof(img), "%s.stalled", con);
		run_vmrun(p, out, err, CAP, DEADLINE_MS);
		if (run_vmrun(a, out, err, CAP, DEADLINE_MS) == 0)
			fprintf(stderr, "\n    stalled; its state: %s\n", img);
	}
	TEST_ASSERT(ok,
		    "%s: blk_w %llu (after %llu), blk_r %llu (after %llu), "
		    "net_echo %llu (after %llu), bad %llu",
		    con, w, blk_w, r, blk_r, e, echo, bad);
}

/*
 * The Linux guest migrated live with its disk and network busy: 2 vCPUs
 * writing and verifying memory, the guest writing and reading back its
 * virtio disk (a file both hosts open) and sending frames that a peer
 * echoes on each side. On the destination the workload goes on from the
 * freeze with nothing bad, the disk keeps its sectors (the guest reads
 * back what it wrote before the switch), frames flow through the
 * destination's back end, which first heard the guest announced. The
 * source runs on one host and the destination on another, network
 * namespaces joined by a veth pair that the test creates and removes,
 * and the stream crosses on two connections (over loopback where there
 * are no namespaces, saying so).
 */
static void test_linux_migrates_with_io(void)
{
	char tmp[] = "/tmp/vmrun-lmig-XXXXXX", sock[96], con[96], spec[128],
	     disk[96], sock2[96], con2[96], uri[128], cmdline[256];
	const unsigned long long pass = 32ULL << 8;
	struct echo e[2] = { { 0 } };
	pthread_t t[2];
	struct console_scan cs;
	unsigned long long w, r, echo, last;
	int sv[2][2], fd, st, i, self;
	bool hosts;
	pid_t src, dst;

	REQUIRE_LINUX();
	/* Between two hosts made of network namespaces where it can be. */
	self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	TEST_ASSERT(self >= 0, "/proc/self/ns/net");
	hosts = test_two_hosts(true);
	if (!hosts) {
		test_two_hosts(false);
		fprintf(stderr, "\n    no network namespaces or veth here: "
				"migrating over loopback");
	}
	TEST_ASSERT(mkdtemp(tmp), "mkdtemp");
	snprintf(sock, sizeof(sock), "%s/src.sock", tmp);
	snprintf(con, sizeof(con), "%s/src.txt", tmp);
	snprintf(spec, sizeof(spec), "file:%s", con);
	snprintf(disk, sizeof(disk), "%s/disk.img", tmp);
	snprintf(sock2, sizeof(sock2), "%s/dst.sock", tmp);
	snprintf(con2, sizeof(con2), "%s/dst.txt", tmp);
	fd = open(disk, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
	TEST_ASSERT(fd >= 0 && ftruncate(fd, 8 << 20) == 0, "disk");
	close(fd);
	for (i = 0; i < 2; i++) {
		TEST_ASSERT(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv[i]) == 0,
			    "socketpair: %s", strerror(errno));
		fcntl(sv[i][0], F_SETFD, FD_CLOEXEC);
		fcntl(sv[i][1], F_SETFD, FD_CLOEXEC);
		e[i].fd = sv[i][0];
		pthread_create(&t[i], NULL, echo_thread, &e[i]);
	}
	snprintf(cmdline, sizeof(cmdline),
		 "console=ttyS0 panic=-1 quiet loglevel=4 work=dirty mib=32 "
		 "rate=8 tick_ms=200");
	{
		const char *const a[] = {
			"run",	  "--kernel",  vmlinux, "--initrd", initrd,
			"--cpus", "2",	       "--mem", "512M",	    "--console",
			spec,	  "--cmdline", cmdline, "--disk",   disk,
			"--net",  "fd:3",      "--ctl", sock,	    NULL
		};

		TEST_ASSERT(!hosts || test_enter_host(0) == 0, "host a");
		src = spawn_ctl_fd(a, sock, sv[0][1]);
		TEST_ASSERT(setns(self, CLONE_NEWNET) == 0, "setns back");
	}
	wait_console(con, 3, 0, 0);
	wait_io(con, sock, 0, 0, 0);
	/* Where it got to, should a run go wrong (the emulated host is slow). */
	fprintf(stderr, "\n    source busy; migrating\n");

	/* The destination opens the disk where the source did. */
	/* The destination opens the disk where the source did; on the
	 * two hosts it listens on host b's address, and the stream goes
	 * over the veth on two connections. */
	if (hosts) {
		incoming_listen = "tcp:" TWO_HOSTS_NET "2:0";
		TEST_ASSERT(test_enter_host(1) == 0, "host b");
	}
	dst = start_incoming(tmp, sock2, con2, "fd:3", sv[1][1], uri,
			     sizeof(uri));
	TEST_ASSERT(setns(self, CLONE_NEWNET) == 0, "setns back");
	incoming_listen = "tcp:127.0.0.1:0";
	{
		const char *a[] = { "ctl",
				    sock,
				    "migrate",
				    uri,
				    hosts ? "--connections" : NULL,
				    "2",
				    NULL };

		st = run_vmrun(a, out, err, CAP, DEADLINE_MS);
		TEST_ASSERT(st == 0 && strstr(out, "migrated to ") &&
				    (!hosts || strstr(out, "2 connections")),
			    "ctl migrate %s: exit %d: %s %s", uri, st, out,
			    err);
	}
	/* Its figures (the frozen time above all), should a run go wrong. */
	fprintf(stderr, "    %s", out);
	st = reap_vmrun(src, DEADLINE_MS);
	TEST_ASSERT(st == 0, "the migrated source: exit %d", st);
	console_scan(con, &cs);
	last = cs.last_n;
	w = con_io(con, "blk_w");
	r = con_io(con, "blk_r");
	echo = con_io(con, "net_echo");
	TEST_ASSERT(w != ~0ULL && r != ~0ULL && echo != ~0ULL,
		    "no whole IO line on the source's console");
	fprintf(stderr, "    migrated; the destination goes on\n");
	cs = wait_console(con2, 3, pass, 1);
	TEST_ASSERT(cs.first_n > last && cs.first_n <= last + 2,
		    "the migrated guest's first tick is n=%llu after n=%llu",
		    cs.first_n, last);
	wait_io(con2, sock2, w, r, echo);
	TEST_ASSERT(e[1].frames > 0 && e[1].rarps > 0,
		    "the destination's peer echoed %u frames, heard %u "
		    "announcements",
		    e[1].frames, e[1].rarps);
	ctl_ok(sock2, "stop", NULL, "");
	st = reap_vmrun(dst, DEADLINE_MS);
	TEST_ASSERT(st == 0, "the destination: exit %d", st);
	for (i = 0; i < 2; i++) {
		e[i].stop = 1;
		pthread_join(t[i], NULL);
		close(sv[i][0]);
		close(sv[i][1]);
	}
	if (hosts)
		test_two_hosts(false);
	close(self);
	snprintf(cmdline, sizeof(cmdline), "rm -rf %s", tmp);
	TEST_CHECK(system(cmdline) == 0, "%s", cmdline);
}

const struct test_case linux_tests[] = {
	{ "bad_images", test_linux_bad_images },
	{ "boots_1vcpu", test_linux_boots_1vcpu },
	{ "boots_4vcpus", test_linux_boots_4vcpus },
	{ "boots_pvh", test_linux_boots_pvh },
	{ "disk_both_ways", test_linux_disk_both_ways },
	{ "net_echo", test_linux_net_echo },
	{ "reboot", test_linux_reboot },
	{ "checkpoint_and_restore", test_linux_checkpoint_and_restore },
	{ "migrates_with_io", test_linux_migrates_with_io },
	{ NULL, NULL },
};
