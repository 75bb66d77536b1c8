/* SPDX-License-Identifier: MIT */
/*
 * guest_perf: vmrun run with the reference guest, from the outside.
 *
 *   1. Time from starting `vmrun run` to the guest's READY line (median).
 *   2. The guest's page-write rate (rate=0) with dirty tracking off, and
 *      on with a harvest every 100 ms and every 10 ms, log and ring.
 *   3. The VMM's resident memory beyond guest memory: RssAnon + RssFile
 *      of the vmrun process (guest RAM is a memfd, counted in RssShmem).
 *
 * Usage: guest_perf [--quick]
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/harness/test_util.h"

static bool quick;

struct proc {
	pid_t pid;
	int out;
	char buf[1 << 20];
	size_t len;
};

static int spawn(struct proc *p, const char *const argv[])
{
	int fds[2];

	if (pipe(fds))
		return -1;
	p->len = 0;
	p->pid = fork();
	if (p->pid < 0)
		return -1;
	if (p->pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, 0);
		dup2(fds[1], 1);
		dup2(null, 2);
		execv(VMRUN_BIN, (char *const *)(uintptr_t)argv);
		_exit(127);
	}
	close(fds[1]);
	p->out = fds[0];
	return 0;
}

/* Reads output until @needle appears or @ms pass; true if it appeared. */
static bool wait_for(struct proc *p, const char *needle, int ms)
{
	unsigned long long end = now_ns() + (unsigned long long)ms * 1000000;

	while (now_ns() < end) {
		struct pollfd pf = { p->out, POLLIN, 0 };
		ssize_t n;

		p->buf[p->len] = 0;
		if (strstr(p->buf, needle))
			return true;
		if (poll(&pf, 1, 10) <= 0)
			continue;
		n = read(p->out, p->buf + p->len, sizeof(p->buf) - 1 - p->len);
		if (n <= 0)
			return false;
		p->len += (size_t)n;
	}
	return false;
}

static int finish(struct proc *p)
{
	int st = 0;

	while (wait_for(p, "\x01", 100))
		;
	kill(p->pid, SIGTERM);
	waitpid(p->pid, &st, 0);
	close(p->out);
	return st;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void bench_ready(void)
{
	const char *cpus[] = { "1", "4" };
	unsigned int runs = quick ? 5 : 15, c, r;
	static struct proc p;

	printf("\n## Time from `vmrun run` to GUEST READY (256 MiB, median of %u)\n\n",
	       runs);
	printf("| vCPUs | median ms | min ms | max ms |\n|---|---|---|---|\n");
	for (c = 0; c < 2; c++) {
		double t[32];

		for (r = 0; r < runs; r++) {
			const char *const argv[] = {
				"vmrun",
				"run",
				"--cpus",
				cpus[c],
				"--mem",
				"256M",
				"--cmdline",
				"work=idle mib=8 ticks=1 tick_ms=10",
				NULL
			};
			unsigned long long t0 = now_ns();

			if (spawn(&p, argv) < 0 ||
			    !wait_for(&p, "GUEST READY", 10000)) {
				fprintf(stderr, "guest_perf: no READY line\n");
				exit(1);
			}
			t[r] = (now_ns() - t0) / 1e6;
			finish(&p);
		}
		qsort(t, runs, sizeof(t[0]), cmp_d);
		printf("| %s | %.1f | %.1f | %.1f |\n", cpus[c], t[runs / 2],
		       t[0], t[runs - 1]);
		fflush(stdout);
	}
}

/* written= of the @nth TICK line (1-based), or -1. */
static long long tick_written(const char *s, unsigned int nth)
{
	const char *p = s;
	unsigned int i = 0;
	long long w = -1;

	while ((p = strstr(p, "GUEST TICK "))) {
		unsigned long long n, wr;

		if (sscanf(p, "GUEST TICK n=%llu written=%llu", &n, &wr) == 2 &&
		    ++i == nth)
			w = (long long)wr;
		p++;
	}
	return w;
}

static void bench_write_rate(void)
{
	static const struct {
		const char *track, *ring, *label;
	} cases[] = {
		{ NULL, NULL, "off" },
		{ "100", NULL, "log, harvest every 100 ms" },
		{ "10", NULL, "log, harvest every 10 ms" },
		{ "100", "--dirty-ring", "ring, harvest every 100 ms" },
		{ "10", "--dirty-ring", "ring, harvest every 10 ms" },
	};
	unsigned int ticks = quick ? 6 : 11, c;
	static struct proc p;
	char cmdline[128];

	snprintf(cmdline, sizeof(cmdline),
		 "work=dirty mib=256 rate=0 pattern=seq ticks=%u tick_ms=500",
		 ticks);
	printf("\n## Guest write rate, 1 vCPU, 256 MiB working set, rate=0 (ticks 2..%u)\n\n",
	       ticks);
	printf("| dirty tracking | Mpages/s | GB/s |\n|---|---|---|\n");
	for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		const char *argv[16];
		int n = 0;
		long long w0, w1;
		double rate;

		argv[n++] = "vmrun";
		argv[n++] = "run";
		argv[n++] = "--mem";
		argv[n++] = "512M";
		argv[n++] = "--cmdline";
		argv[n++] = cmdline;
		if (cases[c].track) {
			argv[n++] = "--track-dirty";
			argv[n++] = cases[c].track;
		}
		if (cases[c].ring)
			argv[n++] = cases[c].ring;
		argv[n] = NULL;
		if (spawn(&p, argv) < 0 ||
		    !wait_for(&p, "GUEST POWEROFF", 60000)) {
			fprintf(stderr, "guest_perf: run did not finish\n");
			exit(1);
		}
		finish(&p);
		p.buf[p.len] = 0;
		w0 = tick_written(p.buf, 2);
		w1 = tick_written(p.buf, ticks);
		rate = (double)(w1 - w0) / ((ticks - 2) * 0.5);
		printf("| %s | %.2f | %.2f |\n", cases[c].label, rate / 1e6,
		       rate * 4096 / 1e9);
		fflush(stdout);
	}
}

static long status_kb(pid_t pid, const char *key)
{
	char path[64], line[256];
	FILE *f;
	long v = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, strlen(key)))
			v = strtol(line + strlen(key) + 1, NULL, 10);
	fclose(f);
	return v;
}

static void bench_rss(void)
{
	static const struct {
		const char *cpus, *mem, *extra;
	} cases[] = {
		{ "1", "256M", NULL },
		{ "4", "1G", NULL },
		{ "4", "1G", "--rng" },
	};
	static struct proc p;
	unsigned int c;

	printf("\n## vmrun resident memory beyond guest RAM (idle guest, 1 s after READY)\n\n");
	printf("| vCPUs | RAM | devices | RssAnon MiB | RssFile MiB | overhead MiB | RssShmem (guest) MiB |\n|---|---|---|---|---|---|---|\n");
	for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		const char *argv[12];
		int n = 0;
		long anon, file, shm;

		argv[n++] = "vmrun";
		argv[n++] = "run";
		argv[n++] = "--cpus";
		argv[n++] = cases[c].cpus;
		argv[n++] = "--mem";
		argv[n++] = cases[c].mem;
		argv[n++] = "--cmdline";
		argv[n++] = "work=idle mib=16 tick_ms=1000";
		if (cases[c].extra)
			argv[n++] = cases[c].extra;
		argv[n] = NULL;
		if (spawn(&p, argv) < 0 ||
		    !wait_for(&p, "GUEST READY", 10000)) {
			fprintf(stderr, "guest_perf: no READY line\n");
			exit(1);
		}
		usleep(1000000);
		anon = status_kb(p.pid, "RssAnon:");
		file = status_kb(p.pid, "RssFile:");
		shm = status_kb(p.pid, "RssShmem:");
		finish(&p);
		printf("| %s | %s | %s | %.1f | %.1f | %.1f | %.1f |\n",
		       cases[c].cpus, cases[c].mem,
		       cases[c].extra ? cases[c].extra + 2 : "serial",
		       anon / 1024.0, file / 1024.0, (anon + file) / 1024.0,
		       shm / 1024.0);
		fflush(stdout);
	}
}

int main(int argc, char **argv)
{
	char date[32];
	time_t t = time(NULL);

	if (argc > 1 && !strcmp(argv[1], "--quick")) {
		quick = true;
	} else if (argc > 1) {
		fprintf(stderr, "usage: guest_perf [--quick]\n");
		return 2;
	}
	strftime(date, sizeof(date), "%Y-%m-%d", gmtime(&t));
	printf("# guest_perf %s, %ld CPUs%s\n", date,
	       sysconf(_SC_NPROCESSORS_ONLN), quick ? " (quick)" : "");
	bench_ready();
	bench_write_rate();
	bench_rss();
	return 0;
}
