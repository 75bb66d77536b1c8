/* SPDX-License-Identifier: MIT */
/*
 * The Linux test guest's init (docs/linux-guest.md): shared declarations of
 * init.c (PID 1 duties, command line, console, reports), work.c (the memory
 * workload) and io.c (disk, network and rng traffic).
 */
#ifndef VMM_LINUX_INIT_H
#define VMM_LINUX_INIT_H

#include <stdbool.h>
#include <stdint.h>

#define PAGE_SIZE_4K 4096
#define HZ 100 /* "jiffies": CLOCK_MONOTONIC in 10 ms units */
#define FAIL_LINES_MAX 32

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

enum { PAT_SEQ, PAT_RANDOM, PAT_HOT };

/* The command line, as in docs/guest.md plus end=. */
struct cfg {
	bool dirty;	      /* work=dirty (else idle) */
	uint64_t mib;	      /* memory the workload owns */
	uint64_t rate;	      /* MiB/s over all CPUs, 0 = unlimited */
	unsigned int pattern; /* PAT_* */
	uint64_t ticks;	      /* stop after this many reports; 0 never */
	uint64_t tick_ms;     /* the reporting interval */
	bool reboot;	      /* end=reboot (else power off) */
};

/* init.c */
extern bool pid1; /* running as PID 1 in the guest, not as a host test */
uint64_t jiffies_now(void);
void sleep_until_jiffy(uint64_t j);
void out_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void guest_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
uint64_t mix64(uint64_t x);

/* work.c */
struct work_totals {
	uint64_t written, verified, mismatches;
};

int work_setup(const struct cfg *cfg, unsigned int ncpus, uint64_t *mib);
bool work_step(unsigned int slot, uint64_t j);
void work_totals(struct work_totals *t);
void work_report_fails(void);

/* io.c */
struct io_totals {
	uint64_t blk_w, blk_r, blk_bad;
	uint64_t net_tx, net_rx, net_echo, net_bad;
	uint64_t rng;
};

void io_probe(void);
int io_start(void);
void io_stop(void);
bool io_any(void);
void io_watchdog(uint64_t j);
void io_totals(struct io_totals *t);

#endif
