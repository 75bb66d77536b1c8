/* SPDX-License-Identifier: MIT */
/*
 * Live migration between two vmrun processes over loopback: the
 * reference guest writing memory as fast as it can (with a disk and an
 * rng) moves and moves back, its counter continuing and no page lost;
 * a destination that refuses, dies or is no vmrun leaves the source
 * running, untouched, and able to migrate again; streams that are not
 * migrations, or broken ones, are refused by the destination, which then
 * runs nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "migrate/migrate_priv.h"
#include "tests/kvm/kvm_tests.h"
#include "tests/kvm/run_util.h"

#define CAP (1 << 20)
#define DEADLINE_MS 300000
/* Writing all the time: every round finds pages written again. */
#define CMDLINE "work=dirty mib=16 rate=0 tick_ms=100 verify_ms=200"
/* One verification pass of that workload. */
#define WORK_PAGES 4096ull
/* The pass wait_guest() waits for (ping_pong's guest is smaller). */
static unsigned long long work_pages = WORK_PAGES;

static char out[CAP], err[CAP], top[64];
/* Passed as fd 3 to the next destination started (-1: none), and where
 * it listens. */
static int dest_keep_fd = -1;
static const char *dest_listen = "tcp:127.0.0.1:0";

/* Every vmrun a test started, so that the next test starts clean
 * whatever became of the last (a failed assertion leaves the test at
 * once, its processes still running). */
static pid_t spawned[256];
static unsigned int nr_spawned;

static pid_t spawn(const char *const *argv, const char *err_path, int keep_fd)
{
	pid_t pid = spawn_vmrun(argv, err_path, keep_fd);

	if (nr_spawned < ARRAY_SIZE(spawned))
		spawned[nr_spawned++] = pid;
	return pid;
}

static void setup(void)
{
	char cmd[128];
	unsigned int i;

	for (i = 0; i < nr_spawned; i++)
		if (spawned[i] > 0 && waitpid(spawned[i], NULL, WNOHANG) == 0) {
			kill(spawned[i], SIGKILL);
			reap_vmrun(spawned[i], DEADLINE_MS);
		}
	nr_spawned = 0;
	snprintf(top, sizeof(top), "/tmp/vmrun-mig-%d", (int)getpid());
	snprintf(cmd, sizeof(cmd), "rm -rf %s", top);
	TEST_CHECK(system(cmd) == 0, "%s", cmd);
	mkdir(top, 0700);
}

static void cleanup(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", top);
	TEST_CHECK(system(cmd) == 0, "%s", cmd);
}

static char *slurp(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	ssize_t r = fd >= 0 ? read(fd, buf, len - 1) : 0;

	if (fd >= 0)
		close(fd);
	buf[r > 0 ? r : 0] = 0;
	return buf;
}

struct vmp {
	pid_t pid;
	char con[128], sock[128], errf[128];
};

static void names(struct vmp *v, const char *name)
{
	snprintf(v->con, sizeof(v->con), "%s/%s.con", top, name);
	snprintf(v->sock, sizeof(v->sock), "%s/%s.sock", top, name);
	snprintf(v->errf, sizeof(v->errf), "%s/%s.err", top, name);
}

/* The source: the reference guest running @cmdline, with an rng and,
 * unless @disk is NULL, a disk. */
static void start_source(struct vmp *v, const char *disk, const char *cmdline)
{
	char con[160];
	const char *a[] = { "run",	 "--cpus", "2",		"--mem",
			    "128M",	 "--rng",  "--ctl",	v->sock,
			    "--console", con,	   "--cmdline", cmdline,
			    "--disk",	 disk,	   NULL };

	if (!disk)
		a[12] = NULL;
	snprintf(con, sizeof(con), "file:%s", v->con);
	unlink(v->sock);
	v->pid = spawn(a, v->errf, -1);
	TEST_ASSERT(v->pid > 0 && wait_file(v->sock, v->pid, DEADLINE_MS),
		    "the source did not start: %s", slurp(v->errf, err, CAP));
}

/*
 * A destination on a free loopback port (tcp:127.0.0.1:0) with @extra
 * options; returns once it says where it listens, the URI in @uri.
 */
static void start_dest(struct vmp *v, const char *const *extra, char *uri,
		       size_t len)
{
	char con[160];
	const char *a[24] = { "run",   "--incoming", dest_listen, "--ctl",
			      v->sock, "--console",  con };
	unsigned int n = 7, i;
	const char *p = NULL;

	snprintf(con, sizeof(con), "file:%s", v->con);
	while (extra && *extra)
		a[n++] = *extra++;
	a[n] = NULL;
	unlink(v->sock);
	v->pid = spawn(a, v->errf, dest_keep_fd);
	TEST_ASSERT(v->pid > 0, "fork");
	for (i = 0; i < DEADLINE_MS / 10; i++) {
		p = strstr(slurp(v->errf, err, CAP), "on tcp:");
		if (p && strchr(p, '\n'))
			break;
		usleep(10000);
	}
	TEST_ASSERT(p && strchr(p, '\n'), "the destination did not listen: %s",
		    err);
	snprintf(uri, len, "%.*s", (int)(strchr(p, '\n') - p - 3), p + 3);
}

static int reap(struct vmp *v)
{
	return reap_vmrun(v->pid, DEADLINE_MS);
}

static int ctl_migrate(const struct vmp *v, const char *uri)
{
	const char *a[] = { "ctl", v->sock, "migrate", uri, "--json", NULL };

	return run_vmrun(a, out, err, CAP, DEADLINE_MS);
}

/*
 * Waits (a deadline) until @v's console has @ticks more whole ticks than
 * @from holds and a whole verification pass since its first tick; checks
 * the guest never reported anything wrong. @splices: lines a migration
 * may have cut (console_scan()).
 */
static struct console_scan wait_guest(const struct vmp *v, unsigned int ticks,
				      bool pass, unsigned int splices)
{
	struct console_scan cs;
	long long end = now_ms() + DEADLINE_MS;

	for (;;) {
		console_scan(v->con, &cs);
		if (cs.bad ||
		    (cs.ticks >= ticks &&
		     (!pass ||
		      cs.last_verified - cs.first_verified >= work_pages)) ||
		    now_ms() > end)
			break;
		usleep(20000);
	}
	TEST_ASSERT(cs.bad == 0 && cs.broken <= splices,
		    "%s: the guest reported (%u broken lines: '%s' '%s'):%s",
		    v->con, cs.broken, cs.broken_line[0], cs.broken_line[1],
		    cs.why);
	TEST_ASSERT(cs.ticks >= ticks &&
			    (!pass || cs.last_verified - cs.first_verified >=
					      work_pages),
		    "%s: %u ticks (want %u), %llu pages verified; last line "
		    "'%s'",
		    v->con, cs.ticks, ticks,
		    cs.last_verified - cs.first_verified, cs.last_line);
	return cs;
}

/* @to went on exactly where @from stopped. */
static void check_continues(const struct vmp *from, const struct vmp *to)
{
	struct console_scan a, b;

	console_scan(from->con, &a);
	b = wait_guest(to, 3, true, 2);
	/* The first whole tick is the next one, or the one after if the
	 * freeze cut a line (the destination finishes it first). */
	TEST_ASSERT(b.first_n == a.last_n + 1 || b.first_n == a.last_n + 2,
		    "the destination's first tick is n=%llu after n=%llu",
		    b.first_n, a.last_n);
}

/* Stops @v through its control socket; returns its exit status. */
static int stop_vm(struct vmp *v)
{
	const char *a[] = { "ctl", v->sock, "stop", NULL };

	run_vmrun(a, out, err, CAP, DEADLINE_MS);
	return reap(v);
}

/*
 * The migration after failures (@after names them): to a new destination
 * (with @extra), which must go on from the exact tick; then stopped.
 */
static void migrate_good(struct vmp *src, struct vmp *dst,
			 const char *const *extra, const char *after)
{
	char uri[128];
	int rc;

	names(dst, "good");
	start_dest(dst, extra, uri, sizeof(uri));
	rc = ctl_migrate(src, uri);
	TEST_ASSERT(rc == 0, "migrating after %s: exit %d: %s %s", after, rc,
		    out, err);
	TEST_ASSERT(reap(src) == 0, "the source did not exit 0");
	check_continues(src, dst);
	stop_vm(dst);
}

static void make_disk(const char *path)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);

	TEST_ASSERT(fd >= 0 && ftruncate(fd, 4 << 20) == 0, "disk %s", path);
	close(fd);
}

/*
 * The busy guest migrates, then migrates again from where it arrived;
 * each source exits 0 once the destination runs, every destination goes
 * on from the exact tick and verifies all its memory without a mismatch,
 * disk traffic included (the disk is shared, as on shared storage).
 */
static void test_migrate_loopback(void)
{
	struct vmp v[3];
	char disk[128], uri[128];
	const char *extra[] = { "--disk", disk, NULL };
	unsigned int i;
	int rc;

	setup();
	snprintf(disk, sizeof(disk), "%s/disk.img", top);
	make_disk(disk);
	names(&v[0], "src");
	start_source(&v[0], disk, CMDLINE);
	wait_guest(&v[0], 4, false, 1);
	for (i = 1; i < 3; i++) {
		char name[8];

		snprintf(name, sizeof(name), "dst%u", i);
		names(&v[i], name);
		start_dest(&v[i], extra, uri, sizeof(uri));
		if (i == 1) {
			/* The default: codec auto, a thread per CPU. */
			rc = ctl_migrate(&v[i - 1], uri);
			TEST_ASSERT(strstr(out, "\"codec\":\"lz4\"") &&
					    strstr(out, "\"auto\":true"),
				    "%s", out);
		} else {
			/* zstd on 3 threads, the stream on 3 connections. */
			const char *a[] = { "ctl",	     v[i - 1].sock,
					    "migrate",	     uri,
					    "--compress",    "zstd",
					    "--threads",     "3",
					    "--connections", "3",
					    "--json",	     NULL };

			rc = run_vmrun(a, out, err, CAP, DEADLINE_MS);
			TEST_ASSERT(strstr(out, "\"codec\":\"zstd\"") &&
					    strstr(out, "\"auto\":false") &&
					    strstr(out, "\"threads\":3,") &&
					    strstr(out, "\"connections\":3}"),
				    "%s", out);
		}
		TEST_ASSERT(rc == 0 && strstr(out, "\"migrated\""),
			    "migrate %u: exit %d: %s %s", i, rc, out, err);
		TEST_ASSERT(strstr(out, "\"rounds\":") &&
				    !strstr(out, "\"batches\":0,"),
			    "%s", out);
		rc = reap(&v[i - 1]);
		TEST_ASSERT(rc == 0, "the source %u exited %d: %s", i - 1, rc,
			    slurp(v[i - 1].errf, err, CAP));
		check_continues(&v[i - 1], &v[i]);
	}
	rc = stop_vm(&v[2]);
	TEST_ASSERT(rc == 0, "the last destination exited %d: %s", rc,
		    slurp(v[2].errf, err, CAP));
	wait_guest(&v[2], 3, true, 2);
	cleanup();
}

/*
 * A destination that refuses the machine (another memory size), and one
 * that dies after it has read it all but before it accepts it: the source
 * says why, runs on without a mismatch, and then migrates for real.
 */
static void test_migrate_failures_lose_nothing(void)
{
	struct vmp src, dst;
	char disk[128], uri[128], errbuf[4096];
	const char *small[] = { "--mem", "64M", NULL };
	const char *dies[] = { "--disk", disk, NULL };
	struct console_scan cs;
	int rc;

	setup();
	snprintf(disk, sizeof(disk), "%s/disk.img", top);
	make_disk(disk);
	names(&src, "src");
	start_source(&src, disk, CMDLINE);
	cs = wait_guest(&src, 3, false, 0);

	names(&dst, "small");
	start_dest(&dst, small, uri, sizeof(uri));
	rc = ctl_migrate(&src, uri);
	/* Refused at the check before the pages ("URI refused the machine"),
	 * not by the stream once pages were on their way. */
	TEST_ASSERT(rc == 1 &&
			    strstr(err, "refused the machine: the machine "
					"has 128 MiB of memory, this side "
					"was given 64 MiB") &&
			    strstr(err, uri),
		    "migrating to a 64 MiB destination: exit %d: %s %s", rc,
		    out, err);
	rc = reap(&dst);
	TEST_ASSERT(rc == 2, "the refusing destination exited %d: %s", rc,
		    slurp(dst.errf, errbuf, sizeof(errbuf)));
	cs = wait_guest(&src, cs.ticks + 3, false, 0);

	/* Gone in the middle of the stream. */
	names(&dst, "midway");
	setenv("VMRUN_TEST_MIGRATE_FAULT", "mid-stream", 1);
	start_dest(&dst, dies, uri, sizeof(uri));
	unsetenv("VMRUN_TEST_MIGRATE_FAULT");
	rc = ctl_migrate(&src, uri);
	TEST_ASSERT(rc == 1,
		    "migrating to a destination gone midway: exit "
		    "%d: %s %s",
		    rc, out, err);
	TEST_ASSERT(reap(&dst) != 0, "the destination gone midway exited 0");
	cs = wait_guest(&src, cs.ticks + 3, false, 0);

	/* The same with the stream on several connections. */
	names(&dst, "midway3");
	setenv("VMRUN_TEST_MIGRATE_FAULT", "mid-stream", 1);
	start_dest(&dst, dies, uri, sizeof(uri));
	unsetenv("VMRUN_TEST_MIGRATE_FAULT");
	{
		const char *a[] = { "ctl",	     src.sock, "migrate", uri,
				    "--connections", "3",      NULL };

		rc = run_vmrun(a, out, err, CAP, DEADLINE_MS);
	}
	TEST_ASSERT(rc == 1,
		    "migrating on 3 connections to a destination gone "
		    "midway: exit %d: %s %s",
		    rc, out, err);
	TEST_ASSERT(reap(&dst) != 0,
		    "the destination gone midway (3 connections) exited 0");
	cs = wait_guest(&src, cs.ticks + 3, false, 0);

	/* Killed with the whole machine read, before it said so. */
	names(&dst, "dies");
	setenv("VMRUN_TEST_MIGRATE_FAULT", "before-accept", 1);
	start_dest(&dst, dies, uri, sizeof(uri));
	unsetenv("VMRUN_TEST_MIGRATE_FAULT");
	rc = ctl_migrate(&src, uri);
	TEST_ASSERT(rc == 1 && strstr(err, "did not accept"),
		    "migrating to a destination that dies: exit %d: %s %s", rc,
		    out, err);
	rc = reap(&dst);
	TEST_ASSERT(rc != 0, "the dying destination exited 0");
	TEST_ASSERT(access(dst.con, F_OK) || !console_scan(dst.con, &cs) ||
			    cs.ticks == 0,
		    "the dying destination ran the guest");
	/* A whole pass after the failures: nothing was lost. */
	cs = wait_guest(&src, cs.ticks + 3, true, 0);

	migrate_good(&src, &dst, dies, "the failures");
	cleanup();
}

/* `ctl status` of @v, until it shows a migration in @phase (a deadline). */
static void wait_phase(const struct vmp *v, const char *phase)
{
	const char *a[] = { "ctl", v->sock, "status", NULL };
	long long end = now_ms() + DEADLINE_MS;
	char want[64];
	int rc;

	snprintf(want, sizeof(want), "phase %s,", phase);
	for (;;) {
		rc = run_vmrun(a, out, err, CAP, DEADLINE_MS);
		if (rc == 0 && strstr(out, want))
			return;
		TEST_ASSERT(now_ms() < end,
			    "no migration in phase %s: exit %d: %s %s", phase,
			    rc, out, err);
		usleep(20000);
	}
}

/* A migration of @v to @uri in the background, its client's stderr in
 * @errf; @extra options after the URI. */
static pid_t spawn_migrate(const struct vmp *v, const char *uri,
			   const char *errf, const char *const *extra)
{
	const char *a[16] = { "ctl", v->sock, "migrate", uri };
	unsigned int n = 4;

	while (extra && *extra && n < 15)
		a[n++] = *extra++;
	a[n] = NULL;
	return spawn(a, errf, -1);
}

/*
 * migrate-cancel in each phase (the destination held before it says it
 * can build the machine, or before it says it loaded it, or the rounds
 * slowed by a bandwidth cap): the migration fails saying so, the
 * destination never runs the guest, the source runs on without a
 * mismatch, and a last migration succeeds. `status` shows each phase.
 */
static void test_migrate_cancel(void)
{
	static const struct {
		const char *hold, *phase;
	} cases[] = {
		{ "ready", "handshake" },
		{ NULL, "rounds" },
		{ "accept", "accept" },
	};
	const char *slow[] = { "--bandwidth", "1", "--compress", "none", NULL };
	char uri[128], hold[128], errf[128], errbuf[4096];
	struct vmp src, dst;
	struct console_scan cs, d;
	unsigned int i;
	pid_t pid;
	int rc;

	setup();
	snprintf(hold, sizeof(hold), "%s/hold", top);
	snprintf(errf, sizeof(errf), "%s/migrate.err", top);
	names(&src, "src");
	start_source(&src, NULL, CMDLINE);
	cs = wait_guest(&src, 3, false, 0);
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		const char *a[] = { "ctl", src.sock, "migrate-cancel", NULL };

		names(&dst, cases[i].phase);
		if (cases[i].hold) {
			close(open(hold, O_CREAT | O_WRONLY, 0600));
			setenv("VMRUN_TEST_MIGRATE_HOLD", cases[i].hold, 1);
			setenv("VMRUN_TEST_MIGRATE_HOLD_FILE", hold, 1);
		}
		start_dest(&dst, NULL, uri, sizeof(uri));
		unsetenv("VMRUN_TEST_MIGRATE_HOLD");
		pid = spawn_migrate(&src, uri, errf,
				    cases[i].hold ? NULL : slow);
		wait_phase(&src, cases[i].phase);
		TEST_ASSERT(strstr(out, "expected downtime"),
			    "status shows no migration figures: %s", out);
		rc = run_vmrun(a, out, err, CAP, DEADLINE_MS);
		TEST_ASSERT(rc == 0, "migrate-cancel in %s: exit %d: %s",
			    cases[i].phase, rc, err);
		unlink(hold);
		rc = reap_vmrun(pid, DEADLINE_MS);
		slurp(errf, errbuf, sizeof(errbuf));
		TEST_ASSERT(rc == 1 && strstr(errbuf, "cancelled"),
			    "the migration cancelled in %s: exit %d: %s",
			    cases[i].phase, rc, errbuf);
		rc = reap(&dst);
		TEST_ASSERT(rc != 0,
			    "the destination of a migration cancelled "
			    "in %s exited 0",
			    cases[i].phase);
		TEST_ASSERT(access(dst.con, F_OK) ||
				    !console_scan(dst.con, &d) || d.ticks == 0,
			    "the destination ran the guest (cancelled in %s)",
			    cases[i].phase);
		/* The accept phase froze it: a line may be cut there. */
		cs = wait_guest(&src, cs.ticks + 3, i + 1 == ARRAY_SIZE(cases),
				1);
	}
	{
		const char *a[] = { "ctl", src.sock, "migrate-cancel", NULL };

		rc = run_vmrun(a, out, err, CAP, DEADLINE_MS);
		TEST_ASSERT(rc == 1 && strstr(err, "no migration"),
			    "migrate-cancel with none under way: exit %d: %s",
			    rc, err);
	}
	migrate_good(&src, &dst, NULL, "the cancels");
	cleanup();
}

/*
 * The destination killed while it checks the machine, then stalled (the
 * link open, nothing moving) in each phase: while it checks the machine,
 * during the rounds (the process stopped) and before it accepts. With a
 * link time-out of 2 s the migration fails each time saying why, the
 * source runs on without a mismatch, and a last migration succeeds.
 */
static void test_migrate_stalls(void)
{
	enum { KILL, STOP, HOLD };
	static const struct {
		const char *hold, *phase;
		int how;
		const char *want;
	} cases[] = {
		{ "ready", "handshake", KILL, "did not check the machine" },
		{ "ready", "handshake", HOLD, "timed out" },
		{ NULL, "rounds", STOP, "timed out" },
		{ "accept", "accept", HOLD, "timed out" },
	};
	const char *slow[] = { "--bandwidth",	 "1", "--compress", "none",
			       "--link-timeout", "2", NULL };
	const char *quick[] = { "--link-timeout", "2", NULL };
	char uri[128], hold[128], errf[128], errbuf[4096];
	struct vmp src, dst;
	struct console_scan cs;
	unsigned int i;
	pid_t pid;
	int rc;

	setup();
	snprintf(hold, sizeof(hold), "%s/hold", top);
	snprintf(errf, sizeof(errf), "%s/migrate.err", top);
	names(&src, "src");
	start_source(&src, NULL, CMDLINE);
	cs = wait_guest(&src, 3, false, 0);
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		char name[16];

		snprintf(name, sizeof(name), "stall%u", i);
		names(&dst, name);
		if (cases[i].hold) {
			close(open(hold, O_CREAT | O_WRONLY, 0600));
			setenv("VMRUN_TEST_MIGRATE_HOLD", cases[i].hold, 1);
			setenv("VMRUN_TEST_MIGRATE_HOLD_FILE", hold, 1);
		}
		start_dest(&dst, NULL, uri, sizeof(uri));
		unsetenv("VMRUN_TEST_MIGRATE_HOLD");
		pid = spawn_migrate(&src, uri, errf,
				    cases[i].hold ? quick : slow);
		wait_phase(&src, cases[i].phase);
		if (cases[i].how == KILL)
			kill(dst.pid, SIGKILL);
		else if (cases[i].how == STOP)
			kill(dst.pid, SIGSTOP);
		rc = reap_vmrun(pid, DEADLINE_MS);
		slurp(errf, errbuf, sizeof(errbuf));
		TEST_ASSERT(rc == 1 && strstr(errbuf, cases[i].want),
			    "case %u (%s): exit %d: %s", i, cases[i].phase, rc,
			    errbuf);
		unlink(hold);
		if (cases[i].how == STOP) {
			kill(dst.pid, SIGCONT);
			kill(dst.pid, SIGKILL);
		}
		rc = reap(&dst);
		TEST_ASSERT(rc != 0, "case %u: the destination exited 0", i);
		cs = wait_guest(&src, cs.ticks + 3, i + 1 == ARRAY_SIZE(cases),
				1);
	}
	migrate_good(&src, &dst, NULL, "the stalls");
	cleanup();
}

/* The spin the converge test's guest does per page written: enough that
 * its writing is bound by it, not by dirty tracking's write faults. */
#define SPIN "200000"

/*
 * Pages per second a guest bound by its CPU (spin=) writes here, from
 * its ticks: what the converge test sizes its link and memory by.
 */
static unsigned long long pages_per_s(void)
{
	struct vmp v;
	struct console_scan cs;
	unsigned long long w;

	names(&v, "calib");
	start_source(&v, NULL,
		     "work=dirty mib=1 rate=0 tick_ms=100 spin=" SPIN);
	wait_guest(&v, 8, false, 0);
	stop_vm(&v);
	console_scan(v.con, &cs);
	/* Between the first and the last tick: the fill before the first
	 * went unspun. */
	TEST_ASSERT(cs.ticks >= 8 && cs.last_n > cs.first_n, "calibration");
	w = (cs.last_written - cs.first_written) * 10 /
	    (cs.last_n - cs.first_n);
	TEST_ASSERT(w >= 300, "the guest writes only %llu pages/s here", w);
	return w;
}

/*
 * A guest whose memory is written four times as fast as the link takes
 * it (a bandwidth cap of a quarter of what it writes, its memory a
 * sixteenth of a second of its writing) never converges by itself: the
 * vCPUs are throttled (the default, auto-converge) until the rounds
 * shrink, and the guest arrives whole. Before that, a migration that
 * cannot be done in its time limit (1 s for 1 MB/s of a guest with more
 * than 1 MB to send, uncompressed) gives up, and the source runs on.
 */
static void test_migrate_converge(void)
{
	struct vmp src, dst;
	char uri[128], cmdline[128], mbs[16];
	const char *limited[] = { "--bandwidth", "1",	 "--max-time", "1",
				  "--compress",	 "none", "--json",     NULL };
	const char *a[] = { "ctl",	   src.sock, NULL,	   NULL,
			    "--bandwidth", mbs,	     "--compress", "none",
			    "--downtime",  "10",     "--json",	   NULL };
	unsigned long long w, mib, cap;
	struct console_scan cs;
	const char *p;
	int rc;

	setup();
	w = pages_per_s();
	mib = MIN(MAX(w / 16 / 256, 1ull), 64ull);
	/* A quarter, not less: the throttle must bring the guest below the
	 * cap, and in the emulated host a vCPU takes milliseconds to leave
	 * guest mode when paused, which it spends writing (with an eighth,
	 * a 99% throttle there once left the guest writing all of its
	 * memory every round). */
	cap = MAX(w * 4096 / 4 / 1000000, 1ull);
	snprintf(mbs, sizeof(mbs), "%llu", cap);
	snprintf(
		cmdline, sizeof(cmdline),
		"work=dirty mib=%llu rate=0 tick_ms=100 verify_ms=200 spin=" SPIN,
		mib);
	names(&src, "src");
	start_source(&src, NULL, cmdline);
	cs = wait_guest(&src, 3, false, 0);

	names(&dst, "limited");
	start_dest(&dst, NULL, uri, sizeof(uri));
	{
		pid_t pid;
		char errf[128], errbuf[4096];

		snprintf(errf, sizeof(errf), "%s/limited.err", top);
		pid = spawn_migrate(&src, uri, errf, limited);
		rc = reap_vmrun(pid, DEADLINE_MS);
		slurp(errf, errbuf, sizeof(errbuf));
		TEST_ASSERT(rc == 1 && strstr(errbuf, "time limit"),
			    "1 MB/s, 1 s: exit %d: %s", rc, errbuf);
	}
	TEST_ASSERT(reap(&dst) != 0, "the destination of a migration out of "
				     "time exited 0");
	cs = wait_guest(&src, cs.ticks + 3, false, 0);

	names(&dst, "dst");
	start_dest(&dst, NULL, uri, sizeof(uri));
	a[2] = "migrate";
	a[3] = uri;
	rc = run_vmrun(a, out, err, CAP, DEADLINE_MS);
	TEST_ASSERT(rc == 0,
		    "%llu pages/s, %llu MiB, %llu MB/s: exit %d: %s %s", w, mib,
		    cap, rc, out, err);
	p = strstr(out, "\"throttle_max\":");
	TEST_ASSERT(p && atoi(p + 15) > 0,
		    "converged without a throttle (%llu pages/s, %llu MiB, "
		    "%llu MB/s): %s",
		    w, mib, cap, out);
	TEST_ASSERT(reap(&src) == 0, "the source did not exit 0");
	check_continues(&src, &dst);
	stop_vm(&dst);
	cleanup();
}

/*
 * The guest's network card on a socket back end at both ends: once the
 * destination has it, it announces the guest's MAC (a RARP broadcast)
 * on its back end, and the guest's traffic goes on there (an echo that
 * comes back garbled is a mismatch in its ticks).
 */
static void test_migrate_announce(void)
{
	static const uint8_t mac[6] = { 0x02, 0, 0, 0, 0, 0x01 };
	int s[2], d[2];
	struct echo es = { 0 }, ed = { 0 };
	pthread_t ts, td;
	struct vmp src, dst;
	char con[160], uri[128];
	const char *a[] = { "run",    "--cpus",	   "2",	   "--mem",
			    "128M",   "--net",	   "fd:3", "--ctl",
			    src.sock, "--console", con,	   "--cmdline",
			    CMDLINE,  NULL };
	const char *extra[] = { "--net", "fd:3", NULL };
	long long end;
	int rc;

	setup();
	TEST_ASSERT(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, s) ==
				    0 &&
			    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC,
				       0, d) == 0,
		    "socketpair");
	es.fd = s[0];
	ed.fd = d[0];
	TEST_ASSERT(pthread_create(&ts, NULL, echo_thread, &es) == 0 &&
			    pthread_create(&td, NULL, echo_thread, &ed) == 0,
		    "echo threads");
	names(&src, "src");
	snprintf(con, sizeof(con), "file:%s", src.con);
	unlink(src.sock);
	src.pid = spawn(a, src.errf, s[1]);
	TEST_ASSERT(src.pid > 0 && wait_file(src.sock, src.pid, DEADLINE_MS),
		    "the source did not start: %s", slurp(src.errf, err, CAP));
	wait_guest(&src, 3, false, 0);
	TEST_ASSERT(__atomic_load_n(&es.rarps, __ATOMIC_SEQ_CST) == 0,
		    "the source announced itself");

	names(&dst, "dst");
	dest_keep_fd = d[1];
	start_dest(&dst, extra, uri, sizeof(uri));
	dest_keep_fd = -1;
	rc = ctl_migrate(&src, uri);
	TEST_ASSERT(rc == 0, "migrate: exit %d: %s %s", rc, out, err);
	TEST_ASSERT(reap(&src) == 0, "the source did not exit 0");
	end = now_ms() + DEADLINE_MS;
	while (!__atomic_load_n(&ed.rarps, __ATOMIC_SEQ_CST) && now_ms() < end)
		usleep(10000);
	TEST_ASSERT(ed.rarps >= 1 && !memcmp(ed.rarp_mac, mac, 6),
		    "no announcement of 02:00:00:00:00:01 from the "
		    "destination (%u)",
		    ed.rarps);
	check_continues(&src, &dst);
	/* The guest's own traffic goes on through the destination's card. */
	end = now_ms() + DEADLINE_MS;
	while (!__atomic_load_n(&ed.frames, __ATOMIC_SEQ_CST) && now_ms() < end)
		usleep(10000);
	TEST_ASSERT(ed.frames >= 1, "no frame from the guest at the "
				    "destination");
	stop_vm(&dst);
	es.stop = ed.stop = 1;
	pthread_join(ts, NULL);
	pthread_join(td, NULL);
	close(s[0]);
	close(s[1]);
	close(d[0]);
	close(d[1]);
	cleanup();
}

#define PING_PONG 20

/*
 * Two hosts made of network namespaces joined by a veth pair (the test
 * creates and removes them): the dirtying guest, with a shared disk,
 * migrates from one to the other and back, PING_PONG times over TCP on
 * the veth (every fourth hop on two connections); after every hop the source has exited 0 and the destination
 * goes on from the exact tick and verifies a whole pass of its memory
 * and its disk I/O without a mismatch.
 */
static void test_migrate_ping_pong(void)
{
	struct vmp v[2];
	char disk[128], uri[128], listen[64];
	const char *extra[] = { "--disk", disk, NULL };
	int self, rc, i;

	setup();
	self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	TEST_ASSERT(self >= 0, "/proc/self/ns/net");
	if (!test_two_hosts(true)) {
		test_two_hosts(false);
		close(self);
		cleanup();
		TEST_REQUIRE(false, "network namespaces and veth (ip netns, ip "
				    "link add type veth)");
	}
	snprintf(disk, sizeof(disk), "%s/disk.img", top);
	make_disk(disk);
	names(&v[0], "hop0");
	TEST_ASSERT(test_enter_host(0) == 0, "entering host a");
	/* A quarter of the usual workload: a whole pass after each of the
	 * many hops costs a quarter as much. */
	start_source(&v[0], disk,
		     "work=dirty mib=4 rate=0 tick_ms=100 verify_ms=200");
	work_pages = WORK_PAGES / 4;
	TEST_ASSERT(setns(self, CLONE_NEWNET) == 0, "setns back");
	wait_guest(&v[0], 3, false, 1);
	for (i = 1; i <= PING_PONG; i++) {
		struct vmp *from = &v[(i - 1) % 2], *to = &v[i % 2];
		char name[16];

		snprintf(name, sizeof(name), "hop%d", i);
		names(to, name);
		/* Host b listens on .2, host a on .1. */
		snprintf(listen, sizeof(listen), "tcp:" TWO_HOSTS_NET "%d:0",
			 i % 2 + 1);
		dest_listen = listen;
		TEST_ASSERT(test_enter_host(i % 2) == 0, "entering host %c",
			    'a' + i % 2);
		start_dest(to, extra, uri, sizeof(uri));
		TEST_ASSERT(setns(self, CLONE_NEWNET) == 0, "setns back");
		dest_listen = "tcp:127.0.0.1:0";
		if (i % 4 == 0) {
			/* Every fourth hop on 2 connections across the veth. */
			const char *a[] = { "ctl",	     from->sock,
					    "migrate",	     uri,
					    "--connections", "2",
					    "--json",	     NULL };

			rc = run_vmrun(a, out, err, CAP, DEADLINE_MS);
			TEST_ASSERT(rc || strstr(out, "\"connections\":2}"),
				    "%s", out);
		} else {
			rc = ctl_migrate(from, uri);
		}
		TEST_ASSERT(rc == 0 && strstr(out, "\"migrated\""),
			    "hop %d to %s: exit %d: %s %s", i, uri, rc, out,
			    err);
		rc = reap(from);
		TEST_ASSERT(rc == 0, "hop %d: the source exited %d: %s", i, rc,
			    slurp(from->errf, err, CAP));
		check_continues(from, to);
	}
	stop_vm(&v[PING_PONG % 2]);
	work_pages = WORK_PAGES;
	test_two_hosts(false);
	close(self);
	cleanup();
}

/* The handshake's HELLO and a data connection's DATA: magic, two
 * 32-bit fields (version and connections; index and count), token. */
#define HELLO_LEN 24

static void put_intro(uint8_t *b, const char *magic, uint32_t x, uint32_t y,
		      uint64_t token)
{
	memcpy(b, magic, 8);
	put32(b + 8, x);
	put32(b + 12, y);
	put64(b + 16, token);
}

/*
 * On the control connection @fd, as a source would: the answer to the
 * handshake, then the destination's progress frames (VMRP, 12 bytes
 * each) up to its "ready" (a reply with status 0 before the pages move
 * on), then the go-ahead once the stream is whole. Returns false if the
 * destination said no or went away.
 */
static bool go_ahead(int fd)
{
	uint8_t reply[12 + 1024];
	bool ok = recv(fd, reply, 12, MSG_WAITALL) == 12, more;
	size_t len;

	do {
		ok = ok && recv(fd, reply, 12, MSG_WAITALL) == 12;
		more = ok && !memcmp(reply, "VMRP", 4);
		/* A reply's message: its length is little-endian. */
		len = reply[8] | (size_t)reply[9] << 8 |
		      (size_t)reply[10] << 16 | (size_t)reply[11] << 24;
		ok = ok && (more || len <= sizeof(reply) - 12);
		if (ok && !more && len)
			ok = recv(fd, reply + 12, len, MSG_WAITALL) ==
			     (ssize_t)len;
		if (ok && !more && !reply[4])
			more = !memcmp(reply + 12, "ready", 5);
	} while (more);
	if (!ok || memcmp(reply, "VMRR", 4) || reply[4])
		return false;
	return send(fd, "VMGO", 4, MSG_NOSIGNAL) == 4;
}

/*
 * vmrun run --incoming fd:3 on one end of a socket pair: the test writes
 * @data, and with @go answers the destination's acceptance with the
 * go-ahead as a source would; returns the exit status.
 */
static int feed(const void *data, size_t len, bool go, char *errbuf,
		size_t errlen)
{
	char errf[128];
	const char *a[] = { "run",	 "--incoming", "fd:3",
			    "--console", "none",       NULL };
	int sv[2], st;
	pid_t pid;

	snprintf(errf, sizeof(errf), "%s/feed.err", top);
	TEST_ASSERT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	pid = spawn(a, errf, sv[1]);
	close(sv[1]);
	/* It may stop reading at any point: a short write is fine. */
	(void)!send(sv[0], data, len, MSG_NOSIGNAL);
	if (go)
		TEST_ASSERT(go_ahead(sv[0]), "no acceptance");
	shutdown(sv[0], SHUT_WR);
	st = reap_vmrun(pid, DEADLINE_MS);
	close(sv[0]);
	slurp(errf, errbuf, errlen);
	return st;
}

/* A connection to the destination listening on the unix socket @path,
 * which has sent @intro (HELLO_LEN bytes). */
static int dial(const char *path, const uint8_t *intro)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = DEADLINE_MS / 1000 };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	TEST_ASSERT(
		fd >= 0 &&
			connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
			setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv,
				   sizeof(tv)) == 0 &&
			send(fd, intro, HELLO_LEN, MSG_NOSIGNAL) == HELLO_LEN,
		"connecting to %s: %s", path, strerror(errno));
	return fd;
}

/* True once the destination has closed @fd (without waiting for the
 * link's time-out: well within the deadline). */
static bool closed_by_peer(int fd)
{
	char c;
	ssize_t r = recv(fd, &c, 1, 0);

	return r == 0 || (r < 0 && errno == ECONNRESET);
}

/*
 * A destination asked for two data connections (protocol version 3)
 * takes, on its listening socket, only the two the source's HELLO
 * announced. Connections that are not, each introduced in a way a
 * confused or hostile peer might (not DATA at all, another token, an
 * index beyond the count, another count, an index already taken), are
 * closed at once and not counted; the real two then carry the image @buf
 * (@n bytes) in chunks with their headers, and it runs.
 */
static void stray_connections(const uint8_t *buf, size_t n)
{
	const uint64_t token = 0x1122334455667788ull;
	char path[128], errf[128], errbuf[4096];
	const char *a[] = {
		"run", "--incoming", path, "--console", "none", NULL
	};
	uint8_t intro[HELLO_LEN], hdr[STRIPE_HEADER];
	int ctl, data[2], fd, st, i;
	unsigned int strays = 0;
	size_t off, k, chunk;
	pid_t pid;
	const char *p;

	snprintf(errf, sizeof(errf), "%s/stray.err", top);
	snprintf(path, sizeof(path), "unix:%s/stray.sock", top);
	pid = spawn(a, errf, -1);
	TEST_ASSERT(pid > 0 && wait_file(path + 5, pid, DEADLINE_MS),
		    "the destination did not listen: %s",
		    slurp(errf, errbuf, sizeof(errbuf)));
	put_intro(intro, "VMRUNMIG", 3, 2, token);
	ctl = dial(path + 5, intro);

	/* Not DATA at all. */
	memcpy(intro, "GET / HTTP/1.0\r\nHost: x\r\n\r\n", HELLO_LEN);
	fd = dial(path + 5, intro);
	TEST_ASSERT(closed_by_peer(fd), "an HTTP request: not closed");
	close(fd);
	strays++;
	/* Another migration's token; index 2 of 2; index 0 of 3. */
	{
		static const uint32_t ix[3][2] = { { 0, 2 },
						   { 2, 2 },
						   { 0, 3 } };

		for (i = 0; i < 3; i++) {
			put_intro(intro, "VMRUNDAT", ix[i][0], ix[i][1],
				  i ? token : token + 1);
			fd = dial(path + 5, intro);
			TEST_ASSERT(closed_by_peer(fd),
				    "DATA %u of %u (%s token): not closed",
				    ix[i][0], ix[i][1], i ? "the" : "another");
			close(fd);
			strays++;
		}
	}
	/* The real index 0, then another index 0, then the real index 1. */
	put_intro(intro, "VMRUNDAT", 0, 2, token);
	data[0] = dial(path + 5, intro);
	fd = dial(path + 5, intro);
	TEST_ASSERT(closed_by_peer(fd), "a second index 0: not closed");
	close(fd);
	strays++;
	put_intro(intro, "VMRUNDAT", 1, 2, token);
	data[1] = dial(path + 5, intro);

	/* The image in chunks of up to 256 KiB, chunk k on connection
	 * k mod 2 behind its length and number. */
	for (off = 0, k = 0; off < n; off += chunk, k++) {
		chunk = MIN(n - off, (size_t)STRIPE_CHUNK);
		put32(hdr, (uint32_t)chunk);
		put32(hdr + 4, (uint32_t)k);
		TEST_ASSERT(send(data[k % 2], hdr, sizeof(hdr), MSG_NOSIGNAL) ==
					    sizeof(hdr) &&
				    send(data[k % 2], buf + off, chunk,
					 MSG_NOSIGNAL) == (ssize_t)chunk,
			    "sending chunk %zu: %s", k, strerror(errno));
	}
	TEST_ASSERT(go_ahead(ctl), "no acceptance: %s",
		    slurp(errf, errbuf, sizeof(errbuf)));
	st = reap_vmrun(pid, DEADLINE_MS);
	close(ctl);
	close(data[0]);
	close(data[1]);
	slurp(errf, errbuf, sizeof(errbuf));
	TEST_ASSERT(st == 0 && strstr(errbuf, "migrated in"),
		    "the stream beside %u strays: exit %d: %s", strays, st,
		    errbuf);
	for (p = errbuf, i = 0; (p = strstr(p, "not one of the source's")); p++)
		i++;
	TEST_ASSERT(i == (int)strays, "%d of %u strays reported: %s", i, strays,
		    errbuf);
}

/*
 * What is not a migration, or a broken one: refused with exit 2 and a
 * reason, nothing run. The stream is a real image after a real handshake,
 * truncated or with a byte flipped; and the same image whole is taken.
 */
static void test_migrate_bad_streams(void)
{
	/* HELLO (version 3): the stream on this connection. */
	static const char hello[HELLO_LEN] = "VMRUNMIG\x03";
	char many[HELLO_LEN];
	char img[128], errbuf[4096];
	uint8_t *buf, *data;
	struct stat sb;
	int fd, rc;
	size_t n;

	setup();
	rc = feed("GET / HTTP/1.0\r\n\r\n", 18, false, errbuf, sizeof(errbuf));
	TEST_ASSERT(rc == 2 && strstr(errbuf, "not a vmrun migration stream"),
		    "an HTTP request: exit %d: %s", rc, errbuf);
	rc = feed("VMRUNMIG\x63\0\0\0\0\0\0\0", 16, false, errbuf,
		  sizeof(errbuf));
	TEST_ASSERT(rc == 2 && strstr(errbuf, "protocol version 99"),
		    "version 99: exit %d: %s", rc, errbuf);
	rc = feed(hello, HELLO_LEN, false, errbuf, sizeof(errbuf));
	TEST_ASSERT(rc == 2 && strstr(errbuf, "incoming migration"),
		    "a handshake and nothing: exit %d: %s", rc, errbuf);
	/* More connections than there can be, or several on fd:N. */
	memcpy(many, hello, HELLO_LEN);
	many[12] = 17;
	rc = feed(many, HELLO_LEN, false, errbuf, sizeof(errbuf));
	TEST_ASSERT(rc == 2 && strstr(errbuf, "asks for 17 connections"),
		    "17 connections: exit %d: %s", rc, errbuf);
	many[12] = 4;
	rc = feed(many, HELLO_LEN, false, errbuf, sizeof(errbuf));
	TEST_ASSERT(rc == 2 && strstr(errbuf, "this destination has one"),
		    "4 connections on fd:3: exit %d: %s", rc, errbuf);

	/* A real machine image after the handshake: the guest powers off
	 * after 30 ticks, so a destination that runs it ends by itself. */
	snprintf(img, sizeof(img), "%s/vm.vmsnap", top);
	{
		struct vmp v;
		const char *save[] = { "ctl", v.sock, "save", img, NULL };

		names(&v, "img");
		start_source(&v, NULL, CMDLINE " ticks=30");
		wait_guest(&v, 2, false, 0);
		rc = run_vmrun(save, out, err, CAP, DEADLINE_MS);
		TEST_ASSERT(rc == 0, "save: %d %s", rc, err);
		stop_vm(&v);
	}
	fd = open(img, O_RDONLY);
	TEST_ASSERT(fd >= 0 && fstat(fd, &sb) == 0, "%s", img);
	n = (size_t)sb.st_size;
	buf = malloc(HELLO_LEN + n);
	TEST_ASSERT(buf && read(fd, buf + HELLO_LEN, n) == (ssize_t)n,
		    "reading %s", img);
	close(fd);
	memcpy(buf, hello, HELLO_LEN);
	data = buf + HELLO_LEN;

	/* Cut short. */
	rc = feed(buf, HELLO_LEN + n / 2, false, errbuf, sizeof(errbuf));
	TEST_ASSERT(rc == 2 && strstr(errbuf, "incoming migration"),
		    "a truncated stream: exit %d: %s", rc, errbuf);
	/* A byte flipped in the pages. */
	data[n / 2] ^= 0x40;
	rc = feed(buf, HELLO_LEN + n, false, errbuf, sizeof(errbuf));
	TEST_ASSERT(rc == 2 && strstr(errbuf, "incoming migration"),
		    "a corrupt stream: exit %d: %s", rc, errbuf);
	data[n / 2] ^= 0x40;
	/* Whole, but the go-ahead never comes: loaded, never run. */
	rc = feed(buf, HELLO_LEN + n, false, errbuf, sizeof(errbuf));
	TEST_ASSERT(rc == 1 && strstr(errbuf, "did not confirm"),
		    "no go-ahead: exit %d: %s", rc, errbuf);
	/* Whole, with the go-ahead: it runs to its power-off. */
	rc = feed(buf, HELLO_LEN + n, true, errbuf, sizeof(errbuf));
	TEST_ASSERT(rc == 0 && strstr(errbuf, "migrated in"),
		    "the whole stream: exit %d: %s", rc, errbuf);
	/* The same on two data connections, strays among them. */
	stray_connections(data, n);
	free(buf);
	cleanup();
}

/* Wrong arguments, each refused with exit 2 and a reason. */
static void test_migrate_bad_arguments(void)
{
	static const struct {
		const char *argv[8];
		const char *want;
	} cases[] = {
		{ { "run", "--incoming", "tcp:nowhere", NULL },
		  "expected tcp:HOST:PORT" },
		{ { "run", "--incoming", "tcp:127.0.0.1:0", "--kernel", "k",
		    NULL },
		  "come with the machine" },
		{ { "run", "--incoming", "fd:999", NULL },
		  "not an open stream socket" },
		{ { "ctl", "/nonexistent.sock", "migrate", "udp:1.2.3.4:5",
		    NULL },
		  "expected tcp:HOST:PORT" },
		{ { "ctl", "/nonexistent.sock", "migrate", "tcp:127.0.0.1:9",
		    "--downtime", "0", NULL },
		  "--downtime 0" },
		{ { "ctl", "/nonexistent.sock", "migrate", "tcp:127.0.0.1:9",
		    "--compress", "fast", NULL },
		  "expected auto, lz4, zstd or none" },
		{ { "ctl", "/nonexistent.sock", "migrate", "tcp:127.0.0.1:9",
		    "--threads", "65", NULL },
		  "--threads 65: expected 1 to 64" },
		{ { "ctl", "/nonexistent.sock", "save", "/tmp/x.vmsnap",
		    "--threads", "0", NULL },
		  "--threads 0: expected 1 to 64" },
		{ { "ctl", "/nonexistent.sock", "migrate", "tcp:127.0.0.1:9",
		    "--connections", "17", NULL },
		  "--connections 17: expected 1 to 16" },
		{ { "ctl", "/nonexistent.sock", "migrate", "fd:3",
		    "--connections", "2", NULL },
		  "needs tcp:HOST:PORT or unix:PATH" },
	};
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		int rc = run_vmrun(cases[i].argv, out, err, CAP, 60000);

		TEST_ASSERT(rc == 2 && strstr(err, cases[i].want),
			    "case %u: exit %d, stderr lacks '%s': %s", i, rc,
			    cases[i].want, err);
	}
}

const struct test_case migrate_tests[] = {
	{ "loopback", test_migrate_loopback },
	{ "failures_lose_nothing", test_migrate_failures_lose_nothing },
	{ "cancel", test_migrate_cancel },
	{ "stalls", test_migrate_stalls },
	{ "converge", test_migrate_converge },
	{ "announce", test_migrate_announce },
	{ "ping_pong", test_migrate_ping_pong },
	{ "bad_streams", test_migrate_bad_streams },
	{ "bad_arguments", test_migrate_bad_arguments },
	{ NULL, NULL },
};
