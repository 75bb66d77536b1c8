/* SPDX-License-Identifier: MIT */
/*
 * Snapshot fuzzing and checkpoints, on a real KVM: vmrun fuzz with the
 * reference guest's example target (work=fuzz), resets verified against
 * the whole checkpoint, the crash found from a seed, afl-fuzz driving it,
 * a snapshot as the starting point, ctl checkpoint/reset, and bad input.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernel/dev/harness.h"
#include "kernel/mem.h"
#include "kernel/vm.h"
#include "kernel/x86/vmrun_harness.h"
#include "tests/harness/stamp_vm.h"
#include "tests/kvm/kvm_tests.h"
#include "tests/kvm/run_util.h"

#define CAP (1 << 20)
#define DEADLINE_MS (20 * 60 * 1000)

struct dirs {
	char top[64], corpus[96], crashes[96];
};

static void rm_tree(const char *dir)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	TEST_CHECK(system(cmd) == 0, "removing %s", dir);
}

static void dirs_make(struct dirs *d)
{
	snprintf(d->top, sizeof(d->top), "/tmp/vmrun-fuzz-XXXXXX");
	TEST_ASSERT(mkdtemp(d->top), "mkdtemp: %s", strerror(errno));
	snprintf(d->corpus, sizeof(d->corpus), "%s/corpus", d->top);
	snprintf(d->crashes, sizeof(d->crashes), "%s/crashes", d->top);
	TEST_ASSERT(!mkdir(d->corpus, 0755) && !mkdir(d->crashes, 0755),
		    "mkdir: %s", strerror(errno));
}

static void put(const char *dir, const char *name, const void *data, size_t len)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	TEST_ASSERT(fd >= 0 && write(fd, data, len) == (ssize_t)len,
		    "writing %s", path);
	close(fd);
}

static unsigned int count_files(const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	unsigned int n = 0;

	TEST_ASSERT(d, "opendir %s", dir);
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, prefix, strlen(prefix)))
			n++;
	closedir(d);
	return n;
}

/* The value of key= in vmrun fuzz's last line. */
static unsigned long long fz(const char *out, const char *key)
{
	return last_kv(out, "fuzz: execs=", key);
}

#define PUT(dir, name, lit) put(dir, name, lit, sizeof(lit) - 1)

/*
 * Seeds of every kind the tests reset: 1024 pages written, the UART's
 * registers changed, a time-out, a fault, an explicit crash report.
 */
static void put_kinds(const char *dir)
{
	PUT(dir, "pages", "VMW\x00\x04");
	PUT(dir, "uart", "VMS\x0f\x5a");
	PUT(dir, "hang", "VMH");
	PUT(dir, "fault", "VMPC\x01\xf0");
	PUT(dir, "report",
	    "VMPX\x03"
	    "BUG");
}

/*
 * Every kind of execution, each followed by a reset that --verify-reset
 * checks against the whole checkpoint (every page, the VM, vCPU and
 * device state): one that writes 1024 pages, one that changes the UART's
 * registers, one that uses the virtio-rng queue, one that times out, a
 * fault, an explicit crash report, then mutations of them. With the
 * default held pages (dirty_hold()) small executions run between large
 * ones, so held pages are given back and learned again; @no_hold runs
 * fewer, every page given back at each reset.
 */
static void verified_resets(bool no_hold)
{
	char *out = malloc(CAP), *err = malloc(CAP);
	struct dirs d;
	int rc;

	dirs_make(&d);
	put_kinds(d.corpus);
	PUT(d.corpus, "rng", "VMR");
	PUT(d.corpus, "plain", "VMPA\x02hi");
	{
		const char *argv[] = { "fuzz",
				       "--rng",
				       "--corpus",
				       d.corpus,
				       "--crashes",
				       d.crashes,
				       "--iterations",
				       no_hold ? "100" : "300",
				       "--verify-reset",
				       "--timeout-ms",
				       "300",
				       "--seed",
				       "7",
				       no_hold ? "--no-hold" : NULL,
				       NULL };

		rc = run_vmrun(argv, out, err, CAP, DEADLINE_MS);
	}
	TEST_ASSERT(rc == 0, "vmrun fuzz --verify-reset exited %d\n%s", rc,
		    err);
	TEST_ASSERT(fz(out, "execs") == (no_hold ? 100 : 300), "execs: %s",
		    out);
	TEST_ASSERT(fz(out, "crashes") >= 2 && fz(out, "timeouts") >= 1,
		    "the seeds' fault, report and hang: %s", out);
	TEST_ASSERT(count_files(d.crashes, "crash-") >= 2,
		    "crash inputs saved: %u", count_files(d.crashes, "crash-"));
	TEST_ASSERT(fz(out, "pages_per_reset") * fz(out, "execs") >= 1024,
		    "the 1024-page input was reset: %s", out);
	rm_tree(d.top);
	free(out);
	free(err);
}

static void test_fuzz_verified_resets(void)
{
	verified_resets(false);
}

static void test_fuzz_verified_resets_no_hold(void)
{
	verified_resets(true);
}

/*
 * Resets on a vCPU thread that signals keep interrupting: a 1 ms
 * time-out makes the fuzzer's timer signal the vCPU thread every
 * millisecond, so one is often pending when a reset gives the dirty
 * ring's entries back. A KVM that ends that early on a pending signal
 * left pages writable without a ring entry, and the next execution's
 * writes to them were missed (--verify-reset found the user stack or
 * the coverage page not restored, in 9 runs of 10 on a 6.18 host
 * before ring_reset() blocked signals). Every entry is given back at
 * each reset (--no-hold), so every reset goes through that path.
 */
static void test_fuzz_verified_resets_signals(void)
{
	char *out = malloc(CAP), *err = malloc(CAP);
	struct dirs d;
	int rc;

	dirs_make(&d);
	PUT(d.corpus, "pages", "VMW\x00\x04");
	PUT(d.corpus, "plain", "VMPA\x02hi");
	PUT(d.corpus, "fault", "VMPC\x01\xf0");
	{
		const char *argv[] = { "fuzz",	       "--mem",
				       "64M",	       "--corpus",
				       d.corpus,       "--crashes",
				       d.crashes,      "--iterations",
				       "300",	       "--verify-reset",
				       "--timeout-ms", "1",
				       "--seed",       "7",
				       "--no-hold",    NULL };

		rc = run_vmrun(argv, out, err, CAP, DEADLINE_MS);
	}
	TEST_ASSERT(rc == 0, "vmrun fuzz --verify-reset exited %d\n%s", rc,
		    err);
	TEST_ASSERT(fz(out, "execs") == 300, "execs: %s", out);
	rm_tree(d.top);
	free(out);
	free(err);
}

/*
 * Two jobs fuzz from one checkpoint, its memory shared copy-on-write:
 * each runs the seeds and its own mutations, every reset verified.
 */
static void test_fuzz_jobs(void)
{
	char *out = malloc(CAP), *err = malloc(CAP);
	struct dirs d;
	int rc;

	dirs_make(&d);
	put_kinds(d.corpus);
	{
		const char *argv[] = { "fuzz",
				       "--jobs",
				       "2",
				       "--corpus",
				       d.corpus,
				       "--crashes",
				       d.crashes,
				       "--iterations",
				       "200",
				       "--verify-reset",
				       "--timeout-ms",
				       "300",
				       "--seed",
				       "5",
				       NULL };

		rc = run_vmrun(argv, out, err, CAP, DEADLINE_MS);
	}
	TEST_ASSERT(rc == 0, "vmrun fuzz --jobs 2 exited %d\n%s", rc, err);
	TEST_ASSERT(fz(out, "jobs") == 2 && fz(out, "execs") == 200,
		    "jobs and executions: %s", out);
	TEST_ASSERT(fz(out, "crashes") >= 4 && fz(out, "timeouts") >= 2,
		    "each job ran the seeds: %s", out);
	rm_tree(d.top);
	free(out);
	free(err);
}

/* The same checks fail when a reset misses a page or a device's state. */
static void test_fuzz_verify_catches(void)
{
	static const struct {
		const char *fault, *seed, *want;
	} cases[] = {
		{ "page", "VMW\x08", "memory: the page at guest-physical" },
		{ "device", "VMS\x0f\x5a", "device serial" },
	};
	char *out = malloc(CAP), *err = malloc(CAP);
	unsigned int i;
	struct dirs d;
	int rc;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		const char *argv[] = { "fuzz",	  "--corpus",
				       d.corpus,  "--crashes",
				       d.crashes, "--iterations",
				       "20",	  "--verify-reset",
				       NULL };

		dirs_make(&d);
		put(d.corpus, "seed", cases[i].seed, strlen(cases[i].seed));
		setenv("VMRUN_TEST_RESET_FAULT", cases[i].fault, 1);
		rc = run_vmrun(argv, out, err, CAP, DEADLINE_MS);
		unsetenv("VMRUN_TEST_RESET_FAULT");
		TEST_ASSERT(rc == 1 &&
				    strstr(err, "--verify-reset: after "
						"execution 1 (") &&
				    strstr(err, cases[i].want),
			    "a reset missing a %s: exit %d\n%s", cases[i].fault,
			    rc, err);
		rm_tree(d.top);
	}
	free(out);
	free(err);
}

/* From one seed the mutator finds the parser's page fault. */
static void test_fuzz_finds_crash(void)
{
	char *out = malloc(CAP), *err = malloc(CAP), path[1024];
	struct dirs d, r;
	DIR *dir;
	struct dirent *de;
	int rc;

	dirs_make(&d);
	PUT(d.corpus, "seed", "VMPA\x02hi");
	{
		const char *argv[] = { "fuzz",	  "--corpus",
				       d.corpus,  "--crashes",
				       d.crashes, "--max-crashes",
				       "1",	  "--time",
				       "900",	  "--timeout-ms",
				       "200",	  "--seed",
				       "3",	  NULL };

		rc = run_vmrun(argv, out, err, CAP, DEADLINE_MS);
	}
	TEST_ASSERT(rc == 0, "vmrun fuzz exited %d\n%s", rc, err);
	TEST_ASSERT(fz(out, "unique_crashes") == 1 &&
			    count_files(d.crashes, "crash-") == 1,
		    "no crash found in %llu executions: %s", fz(out, "execs"),
		    out);
	TEST_ASSERT(fz(out, "paths") >= 2, "coverage found no path: %s", out);

	/* The saved input crashes again, alone. */
	dirs_make(&r);
	dir = opendir(d.crashes);
	while ((de = readdir(dir)))
		if (!strncmp(de->d_name, "crash-", 6))
			break;
	TEST_ASSERT(de, "crash file");
	snprintf(path, sizeof(path), "cp %s/%s %s/", d.crashes, de->d_name,
		 r.corpus);
	closedir(dir);
	TEST_ASSERT(system(path) == 0, "%s", path);
	{
		const char *argv[] = { "fuzz",	    "--corpus", r.corpus,
				       "--crashes", r.crashes,	"--iterations",
				       "1",	    NULL };

		rc = run_vmrun(argv, out, err, CAP, DEADLINE_MS);
	}
	TEST_ASSERT(rc == 0 && fz(out, "crashes") == 1,
		    "replaying the crash: exit %d %s %s", rc, out, err);
	rm_tree(d.top);
	rm_tree(r.top);
	free(out);
	free(err);
}

/* --crash-snapshots saves the machine at the crash: restored, the guest
 * goes on from its fault handler (no fuzzer now) and reports the fault. */
static void test_fuzz_crash_snapshot(void)
{
	char *out = malloc(CAP), *err = malloc(CAP), img[512];
	struct dirs d;
	DIR *dir;
	struct dirent *de;
	int rc;

	dirs_make(&d);
	PUT(d.corpus, "fault", "VMPC\x01\xf0");
	{
		const char *argv[] = { "fuzz",	  "--corpus",
				       d.corpus,  "--crashes",
				       d.crashes, "--iterations",
				       "1",	  "--crash-snapshots",
				       NULL };

		rc = run_vmrun(argv, out, err, CAP, DEADLINE_MS);
	}
	TEST_ASSERT(rc == 0 && fz(out, "crashes") == 1,
		    "the fault: exit %d %s %s", rc, out, err);
	dir = opendir(d.crashes);
	while ((de = readdir(dir)) && !strstr(de->d_name, ".vmsnap"))
		;
	TEST_ASSERT(de, "no crash snapshot in %s", d.crashes);
	snprintf(img, sizeof(img), "%s/%s", d.crashes, de->d_name);
	closedir(dir);
	{
		const char *argv[] = { "restore", img, NULL };

		rc = run_vmrun(argv, out, err, CAP, DEADLINE_MS);
	}
	TEST_ASSERT(rc == 3 && strstr(out, "GUEST FAIL exception vec=14"),
		    "the restored crash: exit %d\n%s\n%s", rc, out, err);
	rm_tree(d.top);
	free(out);
	free(err);
}

/* afl-fuzz drives vmrun fuzz --afl and finds paths beyond its seed. */
static void test_fuzz_afl(void)
{
	char cmd[1024], top[] = "/tmp/vmrun-afl-XXXXXX";
	unsigned int n;
	int rc;

	TEST_REQUIRE(!access("/usr/bin/afl-fuzz", X_OK),
		     "afl-fuzz (Debian's afl++, installed by tests/deps.sh)");
	TEST_ASSERT(mkdtemp(top), "mkdtemp");
	snprintf(cmd, sizeof(cmd),
		 "mkdir %s/in && printf 'VMPA\\002hi' > %s/in/seed && cd %s && "
		 "AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 "
		 "AFL_NO_UI=1 AFL_NO_AFFINITY=1 AFL_FORKSRV_INIT_TMOUT=600000 "
		 "AFL_BENCH_UNTIL_CRASH=1 "
		 /* afl-fuzz insists on these for a sanitizer build. */
		 "ASAN_OPTIONS=abort_on_error=1:symbolize=0:detect_leaks=0 "
		 "UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:symbolize=0 "
		 "timeout -k 10 900 afl-fuzz -i in -o out -t 5000 -V 15 -- %s "
		 "fuzz --afl > afl.log 2>&1",
		 top, top, top, VMRUN_BIN);
	rc = system(cmd);
	snprintf(cmd, sizeof(cmd), "%s/out/default/queue", top);
	n = access(cmd, F_OK) ? 0 : count_files(cmd, "id:");
	if (rc != 0 || n < 2) {
		snprintf(cmd, sizeof(cmd), "tail -25 %s/afl.log", top);
		TEST_CHECK(system(cmd) == 0, "afl.log");
	}
	TEST_ASSERT(rc == 0, "afl-fuzz exited %d", rc);
	TEST_ASSERT(n >= 2, "afl-fuzz queue holds %u inputs: no new path", n);
	rm_tree(top);
}

/* A guest saved while waiting for a fuzzer is fuzzed from the image. */
static void test_fuzz_from_snapshot(void)
{
	char *out = malloc(CAP), *err = malloc(CAP), sock[96], img[128],
	     con[128], cmd[512];
	struct dirs d;
	pid_t pid;
	int rc, st, i;

	dirs_make(&d);
	PUT(d.corpus, "seed", "VMPA\x02hi");
	snprintf(sock, sizeof(sock), "%s/ctl.sock", d.top);
	snprintf(img, sizeof(img), "%s/wait.vmsnap", d.top);
	snprintf(con, sizeof(con), "file:%s/console.txt", d.top);
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork");
	if (pid == 0) {
		/* Gone with the test process, whatever becomes of the test. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl(VMRUN_BIN, "vmrun", "run", "--cmdline", "work=fuzz",
		      "--ctl", sock, "--console", con, (char *)NULL);
		_exit(127);
	}
	snprintf(cmd, sizeof(cmd),
		 "grep -q 'GUEST FUZZ waiting' %s/console.txt 2>/dev/null",
		 d.top);
	for (i = 0; i < 60000 && system(cmd); i++)
		usleep(10000);
	snprintf(cmd, sizeof(cmd),
		 "%s ctl %s save %s >/dev/null && %s ctl %s stop >/dev/null",
		 VMRUN_BIN, sock, img, VMRUN_BIN, sock);
	rc = system(cmd);
	waitpid(pid, &st, 0);
	TEST_ASSERT(rc == 0, "saving the waiting guest");
	{
		const char *argv[] = {
			"fuzz",	  "--snapshot",	    img,       "--corpus",
			d.corpus, "--crashes",	    d.crashes, "--iterations",
			"200",	  "--verify-reset", NULL
		};

		rc = run_vmrun(argv, out, err, CAP, DEADLINE_MS);
	}
	TEST_ASSERT(rc == 0 && fz(out, "execs") == 200,
		    "fuzzing from the snapshot: exit %d %s %s", rc, out, err);
	rm_tree(d.top);
	free(out);
	free(err);
}

static unsigned int console_ticks(const char *path)
{
	char cmd[256], buf[32] = "";
	FILE *f;

	snprintf(cmd, sizeof(cmd), "grep -c 'GUEST TICK' %s 2>/dev/null", path);
	f = popen(cmd, "r");
	if (f) {
		if (!fgets(buf, sizeof(buf), f))
			buf[0] = 0;
		pclose(f);
	}
	return (unsigned int)atoi(buf);
}

static void wait_more_ticks(const char *path, unsigned int more)
{
	unsigned int want = console_ticks(path) + more, i;

	for (i = 0; i < 60000 && console_ticks(path) < want; i++)
		usleep(10000);
	TEST_ASSERT(console_ticks(path) >= want, "the guest stopped ticking");
}

/*
 * ctl checkpoint / reset on a guest writing memory all the time: every
 * reset verified against the whole checkpoint, also after a save took
 * the dirty pages for its own chain; the guest's own checks still find
 * nothing wrong; and the refusals.
 */
static void test_fuzz_ctl_checkpoint(void)
{
	char *out = malloc(CAP), *err = malloc(CAP), sock[96], con[160],
	     log[128], img[128], img2[128];
	struct console_scan cs;
	struct dirs d;
	pid_t pid;
	int rc, st, i;

	dirs_make(&d);
	snprintf(sock, sizeof(sock), "%s/ctl.sock", d.top);
	snprintf(log, sizeof(log), "%s/console.txt", d.top);
	snprintf(con, sizeof(con), "file:%s", log);
	snprintf(img, sizeof(img), "%s/full.vmsnap", d.top);
	snprintf(img2, sizeof(img2), "%s/incr.vmsnap", d.top);
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork");
	if (pid == 0) {
		/* Gone with the test process, whatever becomes of the test. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl(VMRUN_BIN, "vmrun", "run", "--mem", "128M", "--cmdline",
		      "work=dirty mib=32 rate=40 tick_ms=100", "--ctl", sock,
		      "--console", con, (char *)NULL);
		_exit(127);
	}
	wait_more_ticks(log, 2);
	{
		const char *argv[] = { "ctl", sock, "reset", NULL };

		rc = run_vmrun(argv, out, err, CAP, DEADLINE_MS);
		TEST_ASSERT(rc == 1 && strstr(err, "no checkpoint"),
			    "reset before a checkpoint: %d %s", rc, err);
	}
	{
		const char *argv[] = { "ctl", sock, "checkpoint", NULL };

		rc = run_vmrun(argv, out, err, CAP, DEADLINE_MS);
		TEST_ASSERT(rc == 0 && strstr(out, "checkpoint: "),
			    "checkpoint: %d %s %s", rc, out, err);
	}
	for (i = 0; i < 4; i++) {
		const char *argv[] = { "ctl", sock, "reset", "--verify", NULL };
		const char *save[] = { "ctl", sock, "save", img, NULL };

		wait_more_ticks(log, 2);
		if (i == 2) { /* a save takes the pages for its chain */
			rc = run_vmrun(save, out, err, CAP, DEADLINE_MS);
			TEST_ASSERT(rc == 0, "save: %d %s", rc, err);
			wait_more_ticks(log, 1);
		}
		rc = run_vmrun(argv, out, err, CAP, DEADLINE_MS);
		TEST_ASSERT(rc == 0 && strstr(out, ", verified"),
			    "reset %d: %d %s %s", i, rc, out, err);
	}
	{
		const char *argv[] = { "ctl",		sock, "save", img2,
				       "--incremental", NULL };

		rc = run_vmrun(argv, out, err, CAP, DEADLINE_MS);
		TEST_ASSERT(rc == 1 && strstr(err, "no base"),
			    "an incremental save after a reset: %d %s", rc,
			    err);
	}
	wait_more_ticks(log, 3);
	{
		const char *argv[] = { "ctl", sock, "stop", NULL };

		rc = run_vmrun(argv, out, err, CAP, DEADLINE_MS);
	}
	waitpid(pid, &st, 0);
	TEST_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "vmrun run: %d", st);
	/* A splice for each of the 4 resets, and the line the stop cut. */
	TEST_ASSERT(console_scan(log, &cs) && cs.bad == 0 && cs.broken <= 5,
		    "the guest found bad memory after a reset (%u broken "
		    "lines):%s",
		    cs.broken, cs.why);
	rm_tree(d.top);
	free(out);
	free(err);
}

/* Arguments and guests vmrun fuzz must refuse, each with a reason. */
static void test_fuzz_bad_input(void)
{
	static const struct {
		const char *argv[16];
		int rc;
		const char *want;
	} cases[] = {
		{ { "fuzz", NULL }, 2, "--corpus DIR and --crashes DIR" },
		{ { "fuzz", "--afl", NULL }, 2, "no afl-fuzz fork-server" },
		{ { "fuzz", "--corpus", "C", "--crashes", "X", "--iterations",
		    "0", NULL },
		  2,
		  "--iterations '0'" },
		{ { "fuzz", "--corpus", "C", "--crashes", "X", "--timeout-ms",
		    "soon", NULL },
		  2,
		  "--timeout-ms 'soon'" },
		{ { "fuzz", "--corpus", "C", "--crashes", "X", "--snapshot",
		    "S", "--kernel", "K", NULL },
		  2,
		  "no --kernel or --cmdline" },
		{ { "fuzz", "--corpus", "/nonexistent", "--crashes", "X",
		    NULL },
		  2,
		  "--corpus /nonexistent" },
		{ { "fuzz", "--corpus", "C", "--crashes", "X", "--snapshot",
		    "C/seed", NULL },
		  2,
		  "" },
		/* A guest with no harness: it powers off first. */
		{ { "fuzz", "--corpus", "C", "--crashes", "X", "--cmdline",
		    "work=idle mib=4 ticks=2 tick_ms=10", NULL },
		  1,
		  "stopped before its harness checkpoint" },
	};
	char *out = malloc(CAP), *err = malloc(CAP);
	const char *argv[16];
	unsigned int i, j;
	struct dirs d;
	int rc;

	dirs_make(&d);
	PUT(d.corpus, "seed", "not an image");
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		for (j = 0; cases[i].argv[j]; j++) {
			const char *a = cases[i].argv[j];

			argv[j] = !strcmp(a, "C")      ? d.corpus :
				  !strcmp(a, "X")      ? d.crashes :
				  !strcmp(a, "C/seed") ? "/dev/null" :
							 a;
		}
		argv[j] = NULL;
		rc = run_vmrun(argv, out, err, CAP, DEADLINE_MS);
		TEST_ASSERT(rc == cases[i].rc && strstr(err, cases[i].want) &&
				    strstr(err, "vmrun: "),
			    "case %u (%s): exit %d, want %d with '%s'\n%s", i,
			    cases[i].argv[1], rc, cases[i].rc, cases[i].want,
			    err);
	}
	rm_tree(d.top);
	free(out);
	free(err);
}

static void collect_page(void *opaque, size_t page)
{
	uint64_t *bits = opaque;

	bits[page / 64] |= 1ULL << (page % 64);
}

/*
 * The dirty summary: a take that visits only the 16 MiB groups holding
 * dirty pages returns exactly the pages written, in groups near and far,
 * and leaves nothing behind for the next take.
 */
static void test_fuzz_dirty_take_each(void)
{
	static const uint64_t pages[] = { 0,	1,    63,   64,	   4095,
					  4096, 4097, 8191, 70000, 131071 };
	struct vm_config cfg = { .nr_vcpus = 1 };
	struct stamp_vm *s = stamp_vm_create(&cfg);
	const size_t size = 512ULL << 20, n = size / 4096;
	struct mem_seg *seg = stamp_vm_add_mem(s, "sum", size, 0x100000000ULL);
	uint64_t *got = calloc(n / 64, 8), one = 1;
	size_t i, k;

	for (i = 0; i < ARRAY_SIZE(pages); i++)
		TEST_ASSERT(!mem_seg_write(seg, pages[i] * 4096, &one, 8),
			    "write");
	k = mem_seg_dirty_take_each(seg, collect_page, got);
	TEST_ASSERT(k == ARRAY_SIZE(pages), "took %zu pages, wrote %zu", k,
		    ARRAY_SIZE(pages));
	for (i = 0; i < ARRAY_SIZE(pages); i++)
		TEST_ASSERT(got[pages[i] / 64] >> (pages[i] % 64) & 1,
			    "page %llu missing", (unsigned long long)pages[i]);
	TEST_ASSERT(mem_seg_dirty_take_each(seg, collect_page, got) == 0,
		    "a second take found pages");
	/* Pages given back (a failed save) are taken again. */
	mem_seg_dirty_or(seg, got);
	TEST_ASSERT(mem_seg_dirty_take_each(seg, collect_page, got) ==
			    ARRAY_SIZE(pages),
		    "pages given back were not taken");
	free(got);
	stamp_vm_destroy(s);
	mem_seg_put(seg);
}

/* Hostile harness descriptors: each refused, with the reason. */
static void test_fuzz_hostile_descriptors(void)
{
	struct vm_config cfg = { .nr_vcpus = 1 };
	struct stamp_vm *s = stamp_vm_create(&cfg);
	const uint64_t base = 0x40000000ULL, size = 16ULL << 20;
	struct mem_seg *seg = stamp_vm_add_mem(s, "fuzz", size, base);
	struct vmrun_harness_desc good = {
		.magic = VMRUN_HARNESS_MAGIC,
		.version = VMRUN_HARNESS_VERSION,
		.input_gpa = base + 0x10000,
		.input_max = 4096,
		.cov_gpa = base + 0x20000,
		.cov_size = 4096,
	};
	struct {
		const char *want;
		struct vmrun_harness_desc d;
		uint64_t at;
	} cases[] = {
		{ "magic", good, 0 },
		{ "version", good, 0 },
		{ "flags", good, 0 },
		{ "must be 1..", good, 0 },
		{ "must be 1..", good, 0 },
		{ "input buffer", good, 0 },
		{ "input buffer", good, 0 },
		{ "overlaps the descriptor", good, 0 },
		{ "page aligned", good, 0 },
		{ "power of two", good, 0 },
		{ "not inside guest RAM", good, 0 },
		{ "overlaps the input", good, 0 },
		{ "not 8-byte aligned", good, 4 },
		{ "not 8-byte aligned", good, size },
	};
	struct harness_desc out;
	char err[256];
	unsigned int i;
	int ret;

	cases[0].d.magic = 0x12345678;
	cases[1].d.version = 2;
	cases[2].d.flags = 1;
	cases[2].want = "flags";
	cases[3].d.input_max = 0;
	cases[4].d.input_max = VMRUN_HARNESS_INPUT_MAX + 1;
	cases[5].d.input_gpa = base + size - 100; /* runs off RAM */
	cases[6].d.input_gpa = ~0ULL - 10;	  /* wraps */
	cases[7].d.input_gpa = base;		  /* over the descriptor */
	cases[8].d.cov_gpa = base + 0x20010;
	cases[9].d.cov_size = 3000;
	cases[10].d.cov_gpa = base + size;
	cases[11].d.cov_gpa = base + 0x10000;
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		TEST_ASSERT(!mem_write(vm_mem(s->vm), base, &cases[i].d,
				       sizeof(cases[i].d)),
			    "writing descriptor %u", i);
		err[0] = 0;
		ret = harness_check(s->vm, base + cases[i].at, &out, err,
				    sizeof(err));
		TEST_ASSERT(ret == -EINVAL && strstr(err, cases[i].want),
			    "descriptor %u: %d '%s', want '%s'", i, ret, err,
			    cases[i].want);
	}
	TEST_ASSERT(!mem_write(vm_mem(s->vm), base, &good, sizeof(good)),
		    "writing the good descriptor");
	ret = harness_check(s->vm, base, &out, err, sizeof(err));
	TEST_ASSERT(ret == 0 && out.input_gpa == good.input_gpa &&
			    out.cov_size == 4096,
		    "the good descriptor: %d %s", ret, err);
	stamp_vm_destroy(s);
	mem_seg_put(seg);
}

const struct test_case fuzz_tests[] = {
	{ "verified_resets", test_fuzz_verified_resets },
	{ "verified_resets_no_hold", test_fuzz_verified_resets_no_hold },
	{ "verified_resets_signals", test_fuzz_verified_resets_signals },
	{ "verify_catches", test_fuzz_verify_catches },
	{ "jobs", test_fuzz_jobs },
	{ "finds_crash", test_fuzz_finds_crash },
	{ "crash_snapshot", test_fuzz_crash_snapshot },
	{ "afl", test_fuzz_afl },
	{ "from_snapshot", test_fuzz_from_snapshot },
	{ "ctl_checkpoint", test_fuzz_ctl_checkpoint },
	{ "bad_input", test_fuzz_bad_input },
	{ "hostile_descriptors", test_fuzz_hostile_descriptors },
	{ "dirty_take_each", test_fuzz_dirty_take_each },
	{ NULL, NULL },
};
