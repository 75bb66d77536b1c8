/* SPDX-License-Identifier: MIT */
/*
 * dirty_perf: what dirty tracking costs, measured on a running guest.
 *
 *   1. The guest's page-write rate from ring 3 (one quadword per 4 KiB
 *      page, round after round over a region) with tracking off, on, and
 *      on with a harvest every 100 ms and every 10 ms, for both modes.
 *   2. The cost of one sync (harvest + clear) and of one take, for a
 *      1 GiB and a 4 GiB guest with 0 %, 1 %, 10 % and 100 % of pages
 *      dirty, both modes, with the vCPUs running (idle in their command
 *      loop, so the harvest is exact).
 *   3. Ring versus bitmap at a few dirty pages.
 *
 * Usage: dirty_perf [--quick] [--sizes 1,4] [--markdown]
 * Timings use CLOCK_MONOTONIC; each sync figure is the median of runs.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "kernel/dirty.h"
#include "kernel/mem.h"
#include "kernel/util/bitmap.h"
#include "kernel/util/log.h"
#include "kernel/vcpu.h"
#include "tests/harness/stamp_vm.h"
#include "tests/harness/test_util.h"

#define DATA_GPA (4ULL << 30)

static bool quick;
static bool markdown;

static const char *mode_name(enum dirty_mode m)
{
	return m == DIRTY_MODE_RING ? "ring" : "log";
}

static struct stamp_vm *make_vm(enum dirty_mode mode, uint64_t bytes,
				unsigned int nr_vcpus, struct mem_seg **data)
{
	struct vm_config cfg = { .nr_vcpus = nr_vcpus,
				 .dirty = mode,
				 .dirty_ring_size = 65536 };
	struct stamp_vm *s = stamp_vm_create(&cfg);

	*data = stamp_vm_add_mem(s, "data", bytes, DATA_GPA);
	stamp_vm_boot(s);
	return s;
}

static void destroy_vm(struct stamp_vm *s, struct mem_seg *data)
{
	mem_seg_put(data);
	stamp_vm_destroy(s);
}

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/*
 * Lets vCPU 0 write round after round over @bytes for @ms, harvesting
 * every @harvest_ms (0 = never) if tracking is on; returns pages/s.
 */
static double write_rate(struct stamp_vm *s, struct mem_seg *data,
			 uint64_t bytes, bool tracking, unsigned int harvest_ms,
			 unsigned int ms)
{
	uint64_t *scratch = bitmap_alloc(mem_seg_pages(data));
	uint64_t p0, p1, done0;
	unsigned long long t0, t1, next;
	int ret;

	if (tracking) {
		ret = dirty_start(s->vm);
		TEST_ASSERT(ret == 0, "dirty_start: %s", strerror(-ret));
		/* Harvest the initial all-dirty state, so pages are
		 * write-protected and writes are tracked from here. */
		TEST_ASSERT(dirty_sync(s->vm) == 0, "sync");
		dirty_take(data, scratch);
		dirty_take(s->sys, scratch);
	}
	pthread_mutex_lock(&s->lock);
	done0 = s->cpu[0].done;
	pthread_mutex_unlock(&s->lock);
	stamp_mb_write(s, 0, MB_STOP, 0);
	stamp_mb_write(s, 0, MB_PROGRESS, 0);
	stamp_mb_write(s, 0, MB_BASE, DATA_GPA);
	stamp_mb_write(s, 0, MB_COUNT, bytes / 4096);
	stamp_post(s, 0, STAMP_CMD_LOOP);
	/* Measure from the second pass: the first one pays for the host
	 * allocating the memory. */
	t0 = now_ns();
	while (stamp_mb_read(s, 0, MB_PROGRESS) < bytes / 4096 + 64) {
		TEST_ASSERT(now_ns() - t0 < 120000000000ULL,
			    "first pass over %llu MiB took over 120 s",
			    (unsigned long long)(bytes >> 20));
		sleep_ms(1);
	}
	p0 = stamp_mb_read(s, 0, MB_PROGRESS);
	t0 = now_ns();
	next = t0 + harvest_ms * 1000000ULL;
	for (;;) {
		unsigned long long t = now_ns();

		if (t - t0 >= ms * 1000000ULL)
			break;
		if (tracking && harvest_ms && t >= next) {
			TEST_ASSERT(dirty_sync(s->vm) == 0, "sync");
			dirty_take(data, scratch);
			next += harvest_ms * 1000000ULL;
		} else {
			sleep_ms(1);
		}
	}
	p1 = stamp_mb_read(s, 0, MB_PROGRESS);
	t1 = now_ns();
	stamp_mb_write(s, 0, MB_STOP, 1);
	stamp_wait_done(s, 0, done0 + 1, 10000);
	if (tracking) {
		ret = dirty_stop(s->vm);
		TEST_ASSERT(ret == 0, "dirty_stop: %s", strerror(-ret));
		dirty_take(data, scratch);
	}
	bitmap_free(scratch);
	return (double)(p1 - p0) / ((t1 - t0) / 1e9);
}

static void bench_write_rate(void)
{
	uint64_t bytes = (quick ? 256ULL : 1024ULL) << 20;
	unsigned int ms = quick ? 500 : 2000;
	enum dirty_mode modes[] = { DIRTY_MODE_LOG, DIRTY_MODE_RING };
	unsigned int m;

	printf("\n## Guest page-write rate (ring 3, one quadword per page, %llu MiB region, %u ms)\n\n",
	       (unsigned long long)(bytes >> 20), ms);
	printf("| mode | tracking | harvest every | Mpages/s | GB/s of pages touched |\n");
	printf("|---|---|---|---|---|\n");
	for (m = 0; m < 2; m++) {
		struct mem_seg *data;
		struct stamp_vm *s = make_vm(modes[m], bytes, 1, &data);
		struct {
			bool on;
			unsigned int every;
		} cases[] = {
			{ false, 0 }, { true, 0 }, { true, 100 }, { true, 10 }
		};
		unsigned int c;

		for (c = 0; c < 4; c++) {
			double r = write_rate(s, data, bytes, cases[c].on,
					      cases[c].every, ms);
			char every[16];

			snprintf(every, sizeof(every), "%u ms", cases[c].every);
			printf("| %s | %s | %s | %.1f | %.2f |\n",
			       mode_name(modes[m]), cases[c].on ? "on" : "off",
			       cases[c].on && cases[c].every ? every : "-",
			       r / 1e6, r * 4096 / 1e9);
			fflush(stdout);
		}
		destroy_vm(s, data);
	}
}

static int cmp_ull(const void *a, const void *b)
{
	unsigned long long x = *(const unsigned long long *)a;
	unsigned long long y = *(const unsigned long long *)b;

	return x < y ? -1 : x > y;
}

/* Dirties @pct % of the data pages (spread evenly) from vCPU 0. */
static void dirty_pct(struct stamp_vm *s, uint64_t bytes, double pct,
		      uint64_t value)
{
	uint64_t pages = bytes / 4096, n, stride;

	if (pct <= 0)
		return;
	n = (uint64_t)(pages * pct / 100.0);
	if (!n)
		n = 1;
	stride = pages / n;
	stamp_stride(s, 0, value, DATA_GPA, n, stride * 4096);
}

static void bench_sync_cost(const unsigned int *gib, unsigned int nr_sizes)
{
	enum dirty_mode modes[] = { DIRTY_MODE_LOG, DIRTY_MODE_RING };
	double pcts[] = { 0, 1, 10, 100 };
	unsigned int runs = quick ? 3 : 5;
	unsigned int g, m, p, r;

	printf("\n## Harvest cost with the VM running (median of %u)\n\n",
	       runs);
	printf("| guest | mode | dirty | pages | guest write phase ms | sync ms | take ms | ring-full exits |\n");
	printf("|---|---|---|---|---|---|---|---|\n");
	for (g = 0; g < nr_sizes; g++) {
		uint64_t bytes = (uint64_t)gib[g] << 30;

		for (m = 0; m < 2; m++) {
			struct mem_seg *data;
			struct stamp_vm *s = make_vm(modes[m], bytes, 1, &data);
			uint64_t *scratch = bitmap_alloc(mem_seg_pages(data));
			int ret = dirty_start(s->vm);

			TEST_ASSERT(ret == 0, "dirty_start: %s",
				    strerror(-ret));
			/* First pass: clear the initial all-dirty state. */
			TEST_ASSERT(dirty_sync(s->vm) == 0, "sync");
			dirty_take(data, scratch);
			dirty_take(s->sys, scratch);
			for (p = 0; p < ARRAY_SIZE(pcts); p++) {
				unsigned long long tsync[8], ttake[8], tw[8];
				size_t pages = 0;
				struct vcpu_stats st0, st1;

				for (r = 0; r < runs; r++) {
					unsigned long long t0;

					vcpu_get_stats(vm_vcpu(s->vm, 0), &st0);
					t0 = now_ns();
					dirty_pct(s, bytes, pcts[p],
						  (p << 8) + r + 1);
					tw[r] = now_ns() - t0;
					vcpu_get_stats(vm_vcpu(s->vm, 0), &st1);
					t0 = now_ns();
					TEST_ASSERT(dirty_sync(s->vm) == 0,
						    "sync");
					tsync[r] = now_ns() - t0;
					t0 = now_ns();
					pages = dirty_take(data, scratch);
					ttake[r] = now_ns() - t0;
					dirty_take(s->sys, scratch);
				}
				qsort(tsync, runs, sizeof(tsync[0]), cmp_ull);
				qsort(ttake, runs, sizeof(ttake[0]), cmp_ull);
				qsort(tw, runs, sizeof(tw[0]), cmp_ull);
				printf("| %u GiB | %s | %g %% | %zu | %.1f | %.3f | %.3f | %llu |\n",
				       gib[g], mode_name(modes[m]), pcts[p],
				       pages, tw[runs / 2] / 1e6,
				       tsync[runs / 2] / 1e6,
				       ttake[runs / 2] / 1e6,
				       (unsigned long long)(st1.ring_full_exits -
							    st0.ring_full_exits));
				fflush(stdout);
			}
			TEST_ASSERT(dirty_stop(s->vm) == 0, "stop");
			bitmap_free(scratch);
			destroy_vm(s, data);
		}
	}
}

static void bench_few_pages(void)
{
	enum dirty_mode modes[] = { DIRTY_MODE_LOG, DIRTY_MODE_RING };
	uint64_t bytes = 1ULL << 30;
	unsigned int counts[] = { 0, 16, 256 };
	unsigned int runs = quick ? 5 : 21;
	unsigned int m, c, r;

	printf("\n## Ring versus bitmap at few dirty pages (1 GiB guest, median of %u)\n\n",
	       runs);
	printf("| mode | dirty pages | sync us | take us |\n");
	printf("|---|---|---|---|\n");
	for (m = 0; m < 2; m++) {
		struct mem_seg *data;
		struct stamp_vm *s = make_vm(modes[m], bytes, 1, &data);
		uint64_t *scratch = bitmap_alloc(mem_seg_pages(data));

		TEST_ASSERT(dirty_start(s->vm) == 0, "start");
		TEST_ASSERT(dirty_sync(s->vm) == 0, "sync");
		dirty_take(data, scratch);
		for (c = 0; c < ARRAY_SIZE(counts); c++) {
			unsigned long long ts[32], tt[32];

			for (r = 0; r < runs; r++) {
				unsigned long long t0;

				if (counts[c])
					stamp_stride(s, 0, r + 1, DATA_GPA,
						     counts[c],
						     bytes / counts[c]);
				t0 = now_ns();
				TEST_ASSERT(dirty_sync(s->vm) == 0, "sync");
				ts[r] = now_ns() - t0;
				t0 = now_ns();
				dirty_take(data, scratch);
				tt[r] = now_ns() - t0;
			}
			qsort(ts, runs, sizeof(ts[0]), cmp_ull);
			qsort(tt, runs, sizeof(tt[0]), cmp_ull);
			printf("| %s | %u | %.1f | %.1f |\n",
			       mode_name(modes[m]), counts[c],
			       ts[runs / 2] / 1e3, tt[runs / 2] / 1e3);
			fflush(stdout);
		}
		TEST_ASSERT(dirty_stop(s->vm) == 0, "stop");
		bitmap_free(scratch);
		destroy_vm(s, data);
	}
}

int main(int argc, char **argv)
{
	unsigned int sizes[4] = { 1, 4 }, nr_sizes = 2;
	struct utsname u;
	char date[32];
	time_t now = time(NULL);
	int i;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			quick = true;
		} else if (!strcmp(argv[i], "--markdown")) {
			markdown = true;
		} else if (!strcmp(argv[i], "--sizes") && i + 1 < argc) {
			char *p = argv[++i], *end;

			nr_sizes = 0;
			while (*p && nr_sizes < 4) {
				unsigned long v = strtoul(p, &end, 10);

				if (end == p || !v || v > 64) {
					fprintf(stderr,
						"dirty_perf: bad --sizes '%s'\n",
						argv[i]);
					return 2;
				}
				sizes[nr_sizes++] = (unsigned int)v;
				p = *end == ',' ? end + 1 : end;
			}
		} else {
			fprintf(stderr,
				"usage: dirty_perf [--quick] [--sizes GiB,GiB] [--markdown]\n");
			return 2;
		}
	}
	uname(&u);
	strftime(date, sizeof(date), "%Y-%m-%d", gmtime(&now));
	printf("# dirty_perf %s on %s %s, %ld CPUs%s\n", date, u.sysname,
	       u.release, sysconf(_SC_NPROCESSORS_ONLN),
	       quick ? " (quick)" : "");
	bench_write_rate();
	bench_sync_cost(sizes, nr_sizes);
	bench_few_pages();
	return 0;
}
